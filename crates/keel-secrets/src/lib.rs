//! keel's secret handling: [`SecretBox`] seals values for storage at rest with
//! an AEAD (ChaCha20-Poly1305, a random 96-bit nonce per value, the storage
//! key as associated data so a ciphertext cannot be moved to another key),
//! with a 256-bit key file generated on first use (mode 0600). [`mask`]
//! replaces secret values in text (for logs).

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

/// Prefix of every sealed value: marks the format and lets readers tell
/// sealed from plaintext values.
pub const ENVELOPE_PREFIX: &[u8] = b"keel:enc:chacha20poly1305:v1:";

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("read key file {path}")]
    ReadKey {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("write key file {path}")]
    WriteKey {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("key file {path} must hold exactly 32 bytes, found {len}")]
    BadKey { path: String, len: usize },
    #[error("generate random bytes")]
    Random,
    #[error("encrypt value")]
    Seal,
    #[error("decrypt value: not sealed by keel")]
    NotSealed,
    #[error("decrypt value: wrong key or tampered data")]
    Open,
}

/// An AEAD key for sealing values at rest.
pub struct SecretBox {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

impl SecretBox {
    /// A box from 32 raw key bytes.
    pub fn from_key(bytes: &[u8; 32]) -> Self {
        let key = LessSafeKey::new(
            UnboundKey::new(&CHACHA20_POLY1305, bytes).expect("32 bytes is a valid key length"),
        );
        SecretBox {
            key,
            rng: SystemRandom::new(),
        }
    }

    /// Loads the key at `path`, creating it (32 random bytes, mode 0600,
    /// fsynced) when the file does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self, SecretsError> {
        let shown = path.display().to_string();
        match std::fs::read(path) {
            Ok(bytes) => {
                let key: [u8; 32] =
                    bytes
                        .as_slice()
                        .try_into()
                        .map_err(|_| SecretsError::BadKey {
                            path: shown,
                            len: bytes.len(),
                        })?;
                Ok(Self::from_key(&key))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                SystemRandom::new()
                    .fill(&mut key)
                    .map_err(|_| SecretsError::Random)?;
                let write = |source| SecretsError::WriteKey {
                    path: shown.clone(),
                    source,
                };
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(write)?;
                }
                // Write a temp file and rename, so a crash never leaves a short key.
                let tmp = path.with_extension("tmp");
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&tmp)
                    .map_err(write)?;
                f.write_all(&key).map_err(write)?;
                f.sync_all().map_err(write)?;
                std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
                    .map_err(write)?;
                std::fs::rename(&tmp, path).map_err(write)?;
                Ok(Self::from_key(&key))
            }
            Err(source) => Err(SecretsError::ReadKey {
                path: shown,
                source,
            }),
        }
    }

    /// Encrypts `plaintext`, bound to `context` (e.g. the storage key).
    pub fn seal(&self, plaintext: &[u8], context: &[u8]) -> Result<Vec<u8>, SecretsError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| SecretsError::Random)?;
        let mut buf = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context),
                &mut buf,
            )
            .map_err(|_| SecretsError::Seal)?;
        let mut out = Vec::with_capacity(ENVELOPE_PREFIX.len() + NONCE_LEN + buf.len());
        out.extend_from_slice(ENVELOPE_PREFIX);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        Ok(out)
    }

    /// Decrypts a value made by [`SecretBox::seal`] with the same `context`.
    pub fn open(&self, sealed: &[u8], context: &[u8]) -> Result<Vec<u8>, SecretsError> {
        let rest = sealed
            .strip_prefix(ENVELOPE_PREFIX)
            .ok_or(SecretsError::NotSealed)?;
        if rest.len() < NONCE_LEN {
            return Err(SecretsError::Open);
        }
        let (nonce, ct) = rest.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| SecretsError::Open)?;
        let mut buf = ct.to_vec();
        let plain = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context),
                &mut buf,
            )
            .map_err(|_| SecretsError::Open)?;
        Ok(plain.to_vec())
    }
}

/// Whether `value` is a sealed envelope.
pub fn is_sealed(value: &[u8]) -> bool {
    value.starts_with(ENVELOPE_PREFIX)
}

/// Replaces every occurrence of each non-empty secret in `text` with `***`.
pub fn mask(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        out = out.replace(s, "***");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_roundtrip_and_context_binding() {
        let b = SecretBox::from_key(&[7; 32]);
        let sealed = b.seal(b"hunter2", b"/registry/secrets/a").unwrap();
        assert!(is_sealed(&sealed));
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(b.open(&sealed, b"/registry/secrets/a").unwrap(), b"hunter2");
        assert!(matches!(
            b.open(&sealed, b"/registry/secrets/b"),
            Err(SecretsError::Open)
        ));
        let other = SecretBox::from_key(&[8; 32]);
        assert!(other.open(&sealed, b"/registry/secrets/a").is_err());
        assert!(matches!(
            b.open(b"plain", b""),
            Err(SecretsError::NotSealed)
        ));
        // Same plaintext twice gives different ciphertexts (fresh nonce).
        assert_ne!(sealed, b.seal(b"hunter2", b"/registry/secrets/a").unwrap());
    }

    #[test]
    fn key_file_created_once_with_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/secrets.key");
        let a = SecretBox::load_or_create(&path).unwrap();
        let sealed = a.seal(b"x", b"k").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let b = SecretBox::load_or_create(&path).unwrap();
        assert_eq!(b.open(&sealed, b"k").unwrap(), b"x");
        std::fs::write(&path, b"short").unwrap();
        assert!(matches!(
            SecretBox::load_or_create(&path),
            Err(SecretsError::BadKey { len: 5, .. })
        ));
    }

    #[test]
    fn mask_hides_values() {
        assert_eq!(mask("token=abc x=abc", &["abc", ""]), "token=*** x=***");
    }
}
