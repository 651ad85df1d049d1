//! Secret values on full media, sealed under the media password.
//!
//! A full medium carries its task sequence; a step value marked secret must not sit on it in
//! clear. The media builder seals it: a key is derived from the media password with argon2id
//! (the parameters of [`crate::password`]) and a salt of its own, drawn once per medium and
//! never the salt of the stored password hash (that hash would then be the key), and the value
//! is encrypted with ChaCha20-Poly1305 under a random nonce. The agent, once the password is
//! typed, derives the same key and opens each value; a wrong key or an altered value fails
//! the authentication and is refused, never used.
//!
//! The sealed form is text: `nd-seal-v1:<salt hex>:<nonce hex>:<ciphertext and tag hex>`.

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

use crate::hex;

const PREFIX: &str = "nd-seal-v1";
/// Bytes of the key-derivation salt.
pub const SALT_LEN: usize = 16;
/// Bytes of a ChaCha20-Poly1305 nonce.
pub const NONCE_LEN: usize = 12;

/// A key derived from the media password and a salt.
pub struct SealKey {
    salt: Vec<u8>,
    key: Key,
}

/// A value could not be sealed or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("cannot derive the key from the media password: {0}")]
    Derive(String),
    #[error("not a sealed value (expected {PREFIX}:<salt>:<nonce>:<data> in hex)")]
    Format,
    #[error("the sealed value was made with another salt than this key's")]
    OtherSalt,
    #[error("the sealed value does not open with this password: a wrong password, or the medium was altered")]
    Open,
    #[error("the opened value is not UTF-8 text")]
    NotText,
}

impl SealKey {
    /// The key of `password` with `salt` (argon2id raw output, 32 bytes).
    pub fn derive(password: &str, salt: &[u8]) -> Result<SealKey, SealError> {
        let mut key = [0u8; 32];
        crate::password::argon2id()
            .hash_password_into(password.as_bytes(), salt, &mut key)
            .map_err(|e| SealError::Derive(e.to_string()))?;
        Ok(SealKey {
            salt: salt.to_vec(),
            key: key.into(),
        })
    }

    /// The salt this key was derived with.
    pub fn salt(&self) -> &[u8] {
        &self.salt
    }

    /// The salt a sealed value was made with, to derive its key once for a whole medium.
    pub fn salt_of(sealed: &str) -> Result<Vec<u8>, SealError> {
        parts(sealed).map(|p| p.salt)
    }

    /// `value` sealed with `nonce`, which must never be used twice under one key.
    pub fn seal(&self, value: &str, nonce: [u8; NONCE_LEN]) -> String {
        let data = ChaCha20Poly1305::new(&self.key)
            .encrypt(Nonce::from_slice(&nonce), value.as_bytes())
            .expect("encrypting a value in memory cannot fail");
        format!(
            "{PREFIX}:{}:{}:{}",
            hex::encode(&self.salt),
            hex::encode(&nonce),
            hex::encode(&data)
        )
    }

    /// The value `sealed` holds, when this key opens it.
    pub fn open(&self, sealed: &str) -> Result<String, SealError> {
        let Parts { salt, nonce, data } = parts(sealed)?;
        if salt != self.salt {
            return Err(SealError::OtherSalt);
        }
        let plain = ChaCha20Poly1305::new(&self.key)
            .decrypt(Nonce::from_slice(&nonce), data.as_slice())
            .map_err(|_| SealError::Open)?;
        String::from_utf8(plain).map_err(|_| SealError::NotText)
    }
}

/// The salt, the nonce and the ciphertext with its tag.
struct Parts {
    salt: Vec<u8>,
    nonce: Vec<u8>,
    data: Vec<u8>,
}

fn parts(sealed: &str) -> Result<Parts, SealError> {
    let mut it = sealed.split(':');
    let (Some(PREFIX), Some(salt), Some(nonce), Some(data), None) =
        (it.next(), it.next(), it.next(), it.next(), it.next())
    else {
        return Err(SealError::Format);
    };
    let salt = hex::decode(salt).ok_or(SealError::Format)?;
    let nonce = hex::decode(nonce)
        .filter(|n| n.len() == NONCE_LEN)
        .ok_or(SealError::Format)?;
    // The tag alone is 16 bytes.
    let data = hex::decode(data)
        .filter(|d| d.len() >= 16)
        .ok_or(SealError::Format)?;
    if salt.is_empty() {
        return Err(SealError::Format);
    }
    Ok(Parts { salt, nonce, data })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_with_its_password_only_and_shows_nothing_in_clear() {
        let salt = [7u8; SALT_LEN];
        let key = SealKey::derive("lab secret", &salt).unwrap();
        let sealed = key.seal("hunter2-long", [1u8; NONCE_LEN]);
        assert!(sealed.starts_with("nd-seal-v1:"), "{sealed}");
        assert!(!sealed.contains("hunter2"));
        assert!(!sealed.contains(&hex::encode(b"hunter2-long")));
        assert_eq!(SealKey::salt_of(&sealed).unwrap(), salt);
        assert_eq!(key.open(&sealed).unwrap(), "hunter2-long");

        let wrong = SealKey::derive("lab secreT", &salt).unwrap();
        assert_eq!(wrong.open(&sealed), Err(SealError::Open));
        let other_salt = SealKey::derive("lab secret", &[8u8; SALT_LEN]).unwrap();
        assert_eq!(other_salt.open(&sealed), Err(SealError::OtherSalt));
    }

    #[test]
    fn an_altered_or_malformed_sealed_value_is_refused() {
        let key = SealKey::derive("pw", &[3u8; SALT_LEN]).unwrap();
        let sealed = key.seal("value", [9u8; NONCE_LEN]);
        // Flip one hex digit of the ciphertext.
        let mut altered = sealed.clone().into_bytes();
        let last = altered.len() - 1;
        altered[last] = if altered[last] == b'0' { b'1' } else { b'0' };
        let altered = String::from_utf8(altered).unwrap();
        assert_eq!(key.open(&altered), Err(SealError::Open));
        for bad in [
            "",
            "value",
            "nd-seal-v2:00:00:00",
            "nd-seal-v1:zz:000000000000000000000000:00000000000000000000000000000000",
            "nd-seal-v1:03:0000:00000000000000000000000000000000",
            "nd-seal-v1:03:000000000000000000000000:00",
            &format!("{sealed}:extra"),
        ] {
            assert_eq!(key.open(bad), Err(SealError::Format), "{bad:?}");
        }
    }
}
