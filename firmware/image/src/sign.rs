//! Signing (host tools only): the firmware verifies, it never signs.

use std::vec;
use std::vec::Vec;

use ed25519_dalek::Signer;
pub use ed25519_dalek::SigningKey;
use sha2::{Digest, Sha256};

use crate::{key_id, Error, HeaderRepr, FORMAT_VERSION};

/// The signed image of `payload`, to be loaded at `load` and started at `entry`. ed25519 signatures
/// are deterministic, so the same inputs always give the same bytes. Refuses what [`crate::verify`]
/// would refuse from the header alone (an empty payload, misaligned addresses, an entry outside the
/// payload, a version above `major.minor.patch`); the RAM range is the loader's to check.
pub fn sign(payload: &[u8], load: u32, entry: u32, image_version: u32, key: &SigningKey) -> Result<Vec<u8>, Error> {
    sign_with(payload, load, entry, image_version, 0, FORMAT_VERSION, key)
}

/// [`sign`] with a security counter (refused when an update finds it below the boot state's
/// minimum).
pub fn sign_counter(
    payload: &[u8],
    load: u32,
    entry: u32,
    image_version: u32,
    security_counter: u32,
    key: &SigningKey,
) -> Result<Vec<u8>, Error> {
    sign_with(payload, load, entry, image_version, security_counter, FORMAT_VERSION, key)
}

/// [`sign_counter`] in a given header format: format 1 (no counter) only to make the images older
/// firmware wrote, for tests of reading them.
pub fn sign_with(
    payload: &[u8],
    load: u32,
    entry: u32,
    image_version: u32,
    security_counter: u32,
    format_version: u16,
    key: &SigningKey,
) -> Result<Vec<u8>, Error> {
    let payload_len = u32::try_from(payload.len()).map_err(|_| Error::PayloadTooLong)?;
    let mut payload_sha256 = [0u8; 32];
    payload_sha256.copy_from_slice(&Sha256::digest(payload));
    let repr = HeaderRepr {
        format_version,
        image_version,
        security_counter,
        flags: 0,
        load,
        entry,
        payload_len,
        payload_sha256,
        key_id: key_id(&key.verifying_key().to_bytes()),
        // Written below, once the bytes it covers are in place.
        signature: [0; 64],
    };
    let (header_len, signed_len) = (repr.header_len(), repr.signed_len());
    let mut image = vec![0u8; header_len + payload.len()];
    repr.emit(&mut image)?;
    image[header_len..].copy_from_slice(payload);
    let signature = key.sign(&image[..signed_len]).to_bytes();
    image[signed_len..header_len].copy_from_slice(&signature);
    Ok(image)
}
