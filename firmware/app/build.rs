//! Link the firmware with the common script (linker/link.x), the board's memory map
//! (linker/<board>/memory.x) and defmt's table script.
use std::path::PathBuf;

const BOARD: &str = "mpc8349emds";

fn main() {
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() != Ok("powerpc") {
        return;
    }
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("../../linker");
    println!("cargo:rustc-link-search={}", root.display());
    println!("cargo:rustc-link-search={}", root.join(BOARD).display());
    println!("cargo:rustc-link-arg=-Tlink.x");
    println!("cargo:rustc-link-arg=-Tdefmt.x");
    println!("cargo:rerun-if-changed={}", root.join("link.x").display());
    println!("cargo:rerun-if-changed={}", root.join(BOARD).join("memory.x").display());
    println!("cargo:rerun-if-env-changed=DEFMT_LOG");
}
