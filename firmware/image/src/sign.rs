//! Signing (host tools only): the firmware verifies, it never signs.

use std::vec;
use std::vec::Vec;

use ed25519_dalek::Signer;
pub use ed25519_dalek::SigningKey;
use sha2::{Digest, Sha256};

use crate::{key_id, Error, HeaderRepr, HEADER_LEN, SIGNED_LEN};

/// The signed image of `payload`, to be loaded at `load` and started at `entry`. ed25519 signatures
/// are deterministic, so the same inputs always give the same bytes. Refuses what [`crate::verify`]
/// would refuse from the header alone (an empty payload, misaligned addresses, an entry outside the
/// payload, a version above `major.minor.patch`); the RAM range is the loader's to check.
pub fn sign(payload: &[u8], load: u32, entry: u32, image_version: u32, key: &SigningKey) -> Result<Vec<u8>, Error> {
    let payload_len = u32::try_from(payload.len()).map_err(|_| Error::PayloadTooLong)?;
    let mut payload_sha256 = [0u8; 32];
    payload_sha256.copy_from_slice(&Sha256::digest(payload));
    let repr = HeaderRepr {
        image_version,
        flags: 0,
        load,
        entry,
        payload_len,
        payload_sha256,
        key_id: key_id(&key.verifying_key().to_bytes()),
        // Written below, once the bytes it covers are in place.
        signature: [0; 64],
    };
    let mut image = vec![0u8; HEADER_LEN + payload.len()];
    repr.emit(&mut image)?;
    image[HEADER_LEN..].copy_from_slice(payload);
    let signature = key.sign(&image[..SIGNED_LEN]).to_bytes();
    image[SIGNED_LEN..HEADER_LEN].copy_from_slice(&signature);
    Ok(image)
}
