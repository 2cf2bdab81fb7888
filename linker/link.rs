// Included by the build.rs of every firmware program's package (firmware/app, firmware/boot): the one
// place that says how a program for the board is linked.

/// Link this package's binaries with the common script (`linker/link.x`), the memory map
/// `linker/<memory_map>/memory.x` and defmt's table script. False when not building for the
/// PowerPC target (nothing to link).
fn link_firmware(memory_map: &str) -> bool {
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() != Ok("powerpc") {
        return false;
    }
    let root = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("../../linker");
    let memory = root.join(memory_map);
    println!("cargo:rustc-link-search={}", root.display());
    // For this package's binaries only: a search path given with rustc-link-search would also reach
    // the programs of the packages that depend on this one (the boot stage depends on the firmware's
    // library and links with a memory map of its own).
    println!("cargo:rustc-link-arg-bins=-L{}", memory.display());
    println!("cargo:rustc-link-arg-bins=-Tlink.x");
    println!("cargo:rustc-link-arg-bins=-Tdefmt.x");
    println!("cargo:rerun-if-changed={}", root.join("link.x").display());
    println!("cargo:rerun-if-changed={}", memory.join("memory.x").display());
    true
}
