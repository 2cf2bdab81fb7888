//! Recovery: when no slot holds an image that verifies, the boot stage waits for the host to write
//! one into agent RAM through the BAR (posted writes) and ring a doorbell with its length.
//!
//! The length is the host's word, so it is untrusted: it is checked against the area the image was
//! written into before a single byte is read, and the image is verified before it is started (the
//! boot stage starts it; this crate never jumps anywhere).

/// Why a recovery image was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecoveryError {
    /// A declared length of zero or beyond the recovery area (declared, area bytes).
    Length { declared: u32, area: usize },
    /// The image failed verification.
    Verify,
}

/// The image the host declared (`declared_len` bytes at the start of `area`), once it verifies.
pub fn recovery_image(
    area: &[u8],
    declared_len: u32,
    verify: impl FnOnce(&[u8]) -> bool,
) -> Result<&[u8], RecoveryError> {
    let image = usize::try_from(declared_len)
        .ok()
        .filter(|&n| n != 0)
        .and_then(|n| area.get(..n))
        .ok_or(RecoveryError::Length { declared: declared_len, area: area.len() })?;
    if !verify(image) {
        return Err(RecoveryError::Verify);
    }
    Ok(image)
}
