//! Key files (host tools only).
//!
//! Both files are text: 64 lowercase hex digits and a newline. The secret file holds the 32-byte
//! ed25519 seed and is created with mode 0600; the public file holds the public key. The development
//! key pair is [`SECRET_FILE`] and [`PUBLIC_FILE`] in a directory the build keeps out of version
//! control (`target/keys`); a production key is the operator's and is never made by the build.

use std::fmt;
use std::format;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::string::String;

use crate::{key_from_hex, SigningKey, TrustedKey};

/// The development key pair's secret file name.
pub const SECRET_FILE: &str = "dev-key.secret";
/// The development key pair's public file name.
pub const PUBLIC_FILE: &str = "dev-key.pub";

/// Why a key file could not be made or read.
#[derive(Debug)]
pub enum KeyFileError {
    /// Reading, writing or creating this path failed.
    Io(PathBuf, io::Error),
    /// The file does not hold 64 hex digits, or not a usable key.
    Malformed(PathBuf),
    /// A secret key file that group or others may read (its mode).
    Unprotected(PathBuf, u32),
    /// A key file already exists here; keys are never overwritten.
    Exists(PathBuf),
}

impl fmt::Display for KeyFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyFileError::Io(path, e) => write!(f, "{}: {e}", path.display()),
            KeyFileError::Malformed(path) => {
                write!(f, "{}: not a key file (64 hex digits of an ed25519 key expected)", path.display())
            }
            KeyFileError::Unprotected(path, mode) => write!(
                f,
                "{}: secret key readable by others (mode {mode:04o}); `chmod 600` it or make a new key",
                path.display()
            ),
            KeyFileError::Exists(path) => write!(f, "{}: already exists; a key is never overwritten", path.display()),
        }
    }
}

impl std::error::Error for KeyFileError {}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn read_hex32(path: &Path) -> Result<[u8; 32], KeyFileError> {
    let text = fs::read_to_string(path).map_err(|e| KeyFileError::Io(path.into(), e))?;
    key_from_hex(text.trim()).ok_or_else(|| KeyFileError::Malformed(path.into()))
}

/// Read a secret key file, refusing one that group or others can read.
pub fn read_secret(path: &Path) -> Result<SigningKey, KeyFileError> {
    let mode = fs::metadata(path).map_err(|e| KeyFileError::Io(path.into(), e))?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::Unprotected(path.into(), mode));
    }
    Ok(SigningKey::from_bytes(&read_hex32(path)?))
}

/// Read a public key file.
pub fn read_public(path: &Path) -> Result<TrustedKey, KeyFileError> {
    TrustedKey::from_bytes(&read_hex32(path)?).map_err(|_| KeyFileError::Malformed(path.into()))
}

fn io_error(path: &Path, e: io::Error) -> KeyFileError {
    KeyFileError::Io(path.into(), e)
}

/// A temporary name next to `path`, unique to this process.
fn temporary(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!(".tmp.{}", std::process::id()));
    path.with_file_name(name)
}

/// Write `text` to `path` with `mode` so that no reader ever sees a partial file: written under a
/// temporary name, then linked into place (`exclusive`: fails if `path` exists) or renamed over it.
fn write_atomically(path: &Path, text: &str, mode: u32, exclusive: bool) -> Result<(), KeyFileError> {
    let tmp = temporary(path);
    let result = (|| {
        let mut file =
            fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp).map_err(|e| io_error(&tmp, e))?;
        file.write_all(text.as_bytes()).and_then(|()| file.sync_all()).map_err(|e| io_error(&tmp, e))?;
        if exclusive {
            fs::hard_link(&tmp, path).map_err(|e| match e.kind() {
                io::ErrorKind::AlreadyExists => KeyFileError::Exists(path.into()),
                _ => KeyFileError::Io(path.into(), e),
            })
        } else {
            fs::rename(&tmp, path).map_err(|e| io_error(path, e))
        }
    })();
    // Gone after a link, a failure or a rename (then it no longer exists and this does nothing).
    let _ = fs::remove_file(&tmp);
    result
}

/// A new key pair from the operating system's random source, as [`SECRET_FILE`] (0600) and
/// [`PUBLIC_FILE`] in `dir` (made if missing). Refuses to replace an existing secret file.
pub fn generate(dir: &Path) -> Result<SigningKey, KeyFileError> {
    fs::create_dir_all(dir).map_err(|e| KeyFileError::Io(dir.into(), e))?;
    let secret_path = dir.join(SECRET_FILE);
    if secret_path.exists() {
        return Err(KeyFileError::Exists(secret_path));
    }
    let mut seed = [0u8; 32];
    let random = Path::new("/dev/urandom");
    fs::File::open(random).and_then(|mut f| f.read_exact(&mut seed)).map_err(|e| KeyFileError::Io(random.into(), e))?;
    let key = SigningKey::from_bytes(&seed);
    seed.fill(0);
    write_atomically(&secret_path, &(hex(key.as_bytes()) + "\n"), 0o600, true)?;
    write_public(dir, &key)?;
    Ok(key)
}

fn write_public(dir: &Path, key: &SigningKey) -> Result<(), KeyFileError> {
    write_atomically(&dir.join(PUBLIC_FILE), &(hex(&key.verifying_key().to_bytes()) + "\n"), 0o644, false)
}

/// The development key in `dir`: read if it exists (the public file rewritten if missing or not the
/// secret's), made otherwise. Safe when several builds run it at once: one secret wins, all use it.
pub fn ensure_dev_key(dir: &Path) -> Result<SigningKey, KeyFileError> {
    let secret_path = dir.join(SECRET_FILE);
    let key = match generate(dir) {
        Ok(key) => return Ok(key),
        Err(KeyFileError::Exists(_)) => read_secret(&secret_path)?,
        Err(e) => return Err(e),
    };
    let public = key.verifying_key().to_bytes();
    if read_hex32(&dir.join(PUBLIC_FILE)).ok() != Some(public) {
        write_public(dir, &key)?;
    }
    Ok(key)
}
