//! The public key this build trusts: images it starts or writes to flash must be signed with its
//! secret half. Built in from the file `BPNET_IMAGE_PUBKEY` names (build.rs, which refuses a file that
//! is not a valid ed25519 key; `cargo xtask firmware` passes the development key made at set-up, a
//! production build passes the release key).

use bpnet_image::TrustedKey;

include!(concat!(env!("OUT_DIR"), "/image_key.rs"));

/// The trusted key, parsed.
pub fn trusted() -> TrustedKey {
    // build.rs checked these bytes with the same parser.
    TrustedKey::from_bytes(&PUBLIC_KEY).unwrap_or_else(|_| unreachable!("build.rs checked the key"))
}
