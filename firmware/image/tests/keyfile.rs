//! Key files: made once with the documented format and modes, never overwritten, reused.
#![cfg(feature = "sign")]

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use bpnet_image::keyfile::{self, KeyFileError, PUBLIC_FILE, SECRET_FILE};

/// A fresh directory under the system's temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("bpnet-image-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn generate_writes_hex_files_with_a_private_secret() {
    let dir = TempDir::new("generate");
    let key = keyfile::generate(&dir.0).unwrap();
    let secret_path = dir.0.join(SECRET_FILE);
    let secret = std::fs::read_to_string(&secret_path).unwrap();
    let public = std::fs::read_to_string(dir.0.join(PUBLIC_FILE)).unwrap();
    assert_eq!(secret, keyfile::hex(key.as_bytes()) + "\n");
    assert_eq!(public, keyfile::hex(&key.verifying_key().to_bytes()) + "\n");
    assert_eq!(std::fs::metadata(&secret_path).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(keyfile::read_secret(&secret_path).unwrap().as_bytes(), key.as_bytes());
    assert_eq!(keyfile::read_public(&dir.0.join(PUBLIC_FILE)).unwrap().to_bytes(), key.verifying_key().to_bytes());
    // No temporary files are left behind.
    assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), 2);
    // Never overwritten; ensure_dev_key reuses it.
    assert!(matches!(keyfile::generate(&dir.0), Err(KeyFileError::Exists(_))));
    assert_eq!(keyfile::ensure_dev_key(&dir.0).unwrap().as_bytes(), key.as_bytes());
    // A lost public file is made again from the secret.
    std::fs::remove_file(dir.0.join(PUBLIC_FILE)).unwrap();
    keyfile::ensure_dev_key(&dir.0).unwrap();
    assert_eq!(std::fs::read_to_string(dir.0.join(PUBLIC_FILE)).unwrap(), public);
    // Two keys made apart differ (the seed is random).
    let other = TempDir::new("generate-other");
    assert_ne!(keyfile::generate(&other.0).unwrap().as_bytes(), key.as_bytes());
}

#[test]
fn unprotected_and_malformed_files_are_refused() {
    let dir = TempDir::new("refuse");
    keyfile::generate(&dir.0).unwrap();
    let secret_path = dir.0.join(SECRET_FILE);
    std::fs::set_permissions(&secret_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(matches!(keyfile::read_secret(&secret_path), Err(KeyFileError::Unprotected(_, 0o644))));
    let public_path = dir.0.join(PUBLIC_FILE);
    std::fs::write(&public_path, "not a key\n").unwrap();
    assert!(matches!(keyfile::read_public(&public_path), Err(KeyFileError::Malformed(_))));
    assert!(matches!(keyfile::read_public(&dir.0.join("missing")), Err(KeyFileError::Io(..))));
}
