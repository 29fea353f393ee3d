//! Encryption at rest for secrets orch keeps for later (info-request answers, forge tokens):
//! XChaCha20-Poly1305 with a random 24-byte nonce per encryption, written as versioned text
//! `enc:v1:<base64(nonce || ciphertext)>` so a later key or algorithm can be told apart.
//!
//! The key is 32 bytes: `ORCH_SECRET_KEY` (base64) when set (the CLI's config reads it and
//! passes it here), else `<home>/secret.key` (base64 text), created with 32 random bytes and
//! mode 0600 at first use and refused if group or others can read it. Losing the key loses every
//! secret encrypted with it: back the file up with the home. Rotation (decrypt with the old key,
//! encrypt with the new) comes with the first stored secrets.
//!
//! Why here and not in `orch-core`: encrypting draws a random nonce and the key is read from a
//! file, and the domain crate does neither; the store is where encrypted values will live.

use std::path::Path;

use base64::Engine;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

/// The prefix of every encrypted value of this version.
pub const PREFIX_V1: &str = "enc:v1:";

/// The key file in an orch home.
pub const KEY_FILE: &str = "secret.key";

/// Bytes of a nonce.
const NONCE_LEN: usize = 24;

/// Why a key could not be had or a value not decrypted.
#[derive(Debug, thiserror::Error)]
pub enum SecretBoxError {
    /// `ORCH_SECRET_KEY` or the key file does not hold 32 bytes of base64.
    #[error("{source_name} does not hold a key: {reason}; it must be 32 bytes in base64 (e.g. `head -c 32 /dev/urandom | base64`)")]
    BadKey {
        /// `ORCH_SECRET_KEY` or the file's path.
        source_name: String,
        /// What is wrong.
        reason: String,
    },
    /// The key file can be read by group or others.
    #[error("{path} can be read by other users (mode {mode:o}); run `chmod 600 {path}`, and if others may have read it, re-encrypt with a new key")]
    KeyExposed {
        /// The key file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// Reading or creating the key file failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
    /// The text is not an encrypted value this version knows.
    #[error("not an encrypted value (expected `{PREFIX_V1}` and base64): {0}")]
    Malformed(String),
    /// Authentication failed: another key, or the value was altered.
    #[error("the value cannot be decrypted with this key: it was encrypted with another key (is ORCH_SECRET_KEY or secret.key the one it was written with?) or it was altered")]
    WrongKeyOrTampered,
}

/// Encrypts and decrypts secrets with one key.
#[derive(Clone)]
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.write_str("SecretBox(..)")
    }
}

impl SecretBox {
    /// A box for a 32-byte key.
    pub fn new(key: &[u8; 32]) -> SecretBox {
        SecretBox {
            cipher: XChaCha20Poly1305::new(key.into()),
        }
    }

    /// The home's key: `env_key` (the value of `ORCH_SECRET_KEY`) if given, else
    /// `<home>/secret.key`, created (0600, 32 random bytes) if missing.
    pub fn load(home: &Path, env_key: Option<&str>) -> Result<SecretBox, SecretBoxError> {
        let key = match env_key {
            Some(text) => decode_key("ORCH_SECRET_KEY", text)?,
            None => load_or_create_key_file(&home.join(KEY_FILE))?,
        };
        Ok(SecretBox::new(&key))
    }

    /// Encrypt `plaintext` with a fresh random nonce: `enc:v1:<base64(nonce || ciphertext)>`.
    pub fn encrypt(&self, plaintext: &[u8]) -> String {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let ciphertext = self
            .cipher
            .encrypt(&nonce, plaintext)
            // Only a plaintext beyond the cipher's limit (256 GiB) fails.
            .expect("a secret is far below the cipher's size limit");
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&ciphertext);
        format!(
            "{PREFIX_V1}{}",
            base64::engine::general_purpose::STANDARD.encode(sealed)
        )
    }

    /// Decrypt a value written by [`SecretBox::encrypt`].
    pub fn decrypt(&self, text: &str) -> Result<Vec<u8>, SecretBoxError> {
        let encoded = text
            .trim()
            .strip_prefix(PREFIX_V1)
            .ok_or_else(|| SecretBoxError::Malformed("no `enc:v1:` prefix".to_owned()))?;
        let sealed = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|e| SecretBoxError::Malformed(e.to_string()))?;
        if sealed.len() < NONCE_LEN {
            return Err(SecretBoxError::Malformed("shorter than a nonce".to_owned()));
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        self.cipher
            .decrypt(XNonce::from_slice(nonce), ciphertext)
            .map_err(|_| SecretBoxError::WrongKeyOrTampered)
    }
}

fn decode_key(source_name: &str, text: &str) -> Result<[u8; 32], SecretBoxError> {
    let bad = |reason: String| SecretBoxError::BadKey {
        source_name: source_name.to_owned(),
        reason,
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| bad(format!("not base64 ({e})")))?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| bad(format!("{} bytes", bytes.len())))
}

fn load_or_create_key_file(path: &Path) -> Result<[u8; 32], SecretBoxError> {
    let fresh: [u8; 32] = rand::random();
    let fresh_text = base64::engine::general_purpose::STANDARD.encode(fresh);
    let (text, _) =
        crate::home::load_or_create_private(path, &fresh_text).map_err(|e| match e {
            crate::home::PrivateFileError::Exposed { path, mode } => {
                SecretBoxError::KeyExposed { path, mode }
            }
            crate::home::PrivateFileError::Io { context, source } => {
                SecretBoxError::Io { context, source }
            }
        })?;
    decode_key(&path.display().to_string(), &text)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn boxed(byte: u8) -> SecretBox {
        SecretBox::new(&[byte; 32])
    }

    #[test]
    fn a_secret_round_trips_through_encrypt_and_decrypt() {
        let secret_box = boxed(7);
        let sealed = secret_box.encrypt(b"forge token");
        assert!(sealed.starts_with(PREFIX_V1), "{sealed}");
        assert!(!sealed.contains("forge token"));
        assert_eq!(secret_box.decrypt(&sealed).unwrap(), b"forge token");
    }

    #[test]
    fn the_wrong_key_fails_with_a_clear_error() {
        let sealed = boxed(1).encrypt(b"answer");
        let error = boxed(2).decrypt(&sealed).unwrap_err();
        assert!(matches!(error, SecretBoxError::WrongKeyOrTampered));
        assert!(error.to_string().contains("another key"), "{error}");
    }

    #[test]
    fn a_tampered_ciphertext_fails() {
        let secret_box = boxed(3);
        let sealed = secret_box.encrypt(b"answer");
        let mut bytes = base64::engine::general_purpose::STANDARD
            .decode(sealed.strip_prefix(PREFIX_V1).unwrap())
            .unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let tampered = format!(
            "{PREFIX_V1}{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        );
        assert!(matches!(
            secret_box.decrypt(&tampered),
            Err(SecretBoxError::WrongKeyOrTampered)
        ));
        assert!(matches!(
            secret_box.decrypt("plain text"),
            Err(SecretBoxError::Malformed(_))
        ));
    }

    #[test]
    fn each_encryption_uses_a_new_nonce() {
        let secret_box = boxed(4);
        assert_ne!(secret_box.encrypt(b"same"), secret_box.encrypt(b"same"));
    }

    #[test]
    fn the_key_file_is_created_private_reused_and_refused_when_others_can_read_it() {
        let home = tempfile::tempdir().unwrap();
        let first = SecretBox::load(home.path(), None).unwrap();
        let path = home.path().join(KEY_FILE);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let sealed = first.encrypt(b"kept");
        let again = SecretBox::load(home.path(), None).unwrap();
        assert_eq!(again.decrypt(&sealed).unwrap(), b"kept");

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = SecretBox::load(home.path(), None).unwrap_err();
        assert!(
            matches!(error, SecretBoxError::KeyExposed { .. }),
            "{error}"
        );
    }

    #[test]
    fn the_environment_key_wins_and_a_bad_one_is_refused() {
        let home = tempfile::tempdir().unwrap();
        let key = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
        let from_env = SecretBox::load(home.path(), Some(&key)).unwrap();
        assert!(!home.path().join(KEY_FILE).exists());
        assert_eq!(from_env.decrypt(&boxed(9).encrypt(b"x")).unwrap(), b"x");
        let error = SecretBox::load(home.path(), Some("c2hvcnQ=")).unwrap_err();
        assert!(error.to_string().contains("ORCH_SECRET_KEY"), "{error}");
    }
}
