//! Link the firmware and its test images with the board's memory map (linker/mpc8349emds/memory.x);
//! build in the public key images must be signed with (the library's `key`, which the boot stage uses
//! too).
use std::path::PathBuf;

include!("../../linker/link.rs");

/// The public key file (64 hex digits, `bpnet-image keygen`) whose images this build starts.
const KEY_VAR: &str = "BPNET_IMAGE_PUBKEY";

fn main() {
    if !link_firmware("mpc8349emds") {
        return;
    }
    println!("cargo:rerun-if-env-changed=DEFMT_LOG");
    public_key();
}

/// `$OUT_DIR/image_key.rs`: the trusted public key as a byte array (`crate::key`).
fn public_key() {
    println!("cargo:rerun-if-env-changed={KEY_VAR}");
    let Some(path) = std::env::var_os(KEY_VAR) else {
        panic!(
            "{KEY_VAR} is not set: build the firmware with `cargo xtask firmware`, which passes the development key"
        );
    };
    let path = PathBuf::from(path);
    println!("cargo:rerun-if-changed={}", path.display());
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{KEY_VAR}={}: {e}", path.display()));
    let hex = text.trim();
    let bytes: Option<Vec<u8>> = (hex.len() == 64)
        .then(|| (0..32).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()).collect())
        .flatten();
    let Some(bytes) = bytes else {
        panic!("{KEY_VAR}={}: not a public key file (64 hex digits)", path.display());
    };
    let key: [u8; 32] = bytes.try_into().unwrap();
    if bpnet_image::TrustedKey::from_bytes(&key).is_err() {
        panic!("{KEY_VAR}={}: not a valid ed25519 public key", path.display());
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("image_key.rs");
    let body =
        format!("/// The ed25519 public key of `{}`.\npub const PUBLIC_KEY: [u8; 32] = {key:?};\n", path.display());
    std::fs::write(&out, body).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
}
