//! The media password (SPEC section 7): the media builder stores
//! `SMSTSMediaPassword=sha256$<salt hex>$<hash hex>` in the variables file, where the hash is
//! SHA-256 of the salt's bytes followed by the password's UTF-8 bytes. The agent asks for
//! the password on the console before it contacts a server or runs anything.
//!
//! This module only parses and compares; [`prompt`] asks on the console.

pub mod prompt;

use sha2::{Digest, Sha256};

use crate::hash::{self, Sha256Digest};

/// Attempts before the agent gives up.
pub const ATTEMPTS: usize = 3;

/// A stored password hash that is not `sha256$<salt hex>$<64 hex digits>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("expected sha256$<salt hex>$<SHA-256 hex>, the scheme is {0:?}")]
    Scheme(String),
    #[error("expected sha256$<salt hex>$<SHA-256 hex>, found {0} fields separated by $")]
    Fields(usize),
    #[error("the salt is not an even number of hex digits")]
    Salt,
    #[error("the hash is not 64 hex digits")]
    Hash,
}

/// A parsed `SMSTSMediaPassword`.
#[derive(Clone, PartialEq, Eq)]
pub struct MediaPassword {
    salt: Vec<u8>,
    sha256: Sha256Digest,
}

// The hash stays out of logs and panics messages.
impl std::fmt::Debug for MediaPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MediaPassword(sha256$..)")
    }
}

impl MediaPassword {
    /// Parses `sha256$<salt hex>$<hash hex>` (hex digits in either case).
    pub fn parse(stored: &str) -> Result<MediaPassword, FormatError> {
        let fields: Vec<&str> = stored.trim().split('$').collect();
        let [scheme, salt, sha] = fields.as_slice() else {
            return Err(FormatError::Fields(fields.len()));
        };
        if !scheme.eq_ignore_ascii_case("sha256") {
            return Err(FormatError::Scheme((*scheme).to_owned()));
        }
        let salt = parse_hex_bytes(salt).ok_or(FormatError::Salt)?;
        let sha256 = hash::parse_hex(sha).ok_or(FormatError::Hash)?;
        Ok(MediaPassword { salt, sha256 })
    }

    /// True when `password` is the one stored. The comparison takes the same time wherever
    /// the digests differ.
    pub fn matches(&self, password: &str) -> bool {
        let mut h = Sha256::new();
        h.update(&self.salt);
        h.update(password.as_bytes());
        let actual: Sha256Digest = h.finalize().into();
        actual
            .iter()
            .zip(self.sha256.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

/// Any even number of hex digits, none included.
fn parse_hex_bytes(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    s.as_bytes()
        .chunks(2)
        .map(|pair| {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            Some((hi * 16 + lo) as u8)
        })
        .collect()
}

/// A line typed on the console without its line end (`\n` or `\r\n`); other white space
/// belongs to the password.
pub fn typed(line: &str) -> &str {
    let line = line.strip_suffix('\n').unwrap_or(line);
    line.strip_suffix('\r').unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the media builder stores for `password` with `salt`.
    fn stored(salt: &[u8], password: &str) -> String {
        let mut h = Sha256::new();
        h.update(salt);
        h.update(password.as_bytes());
        format!(
            "sha256${}${}",
            hash::to_hex(salt),
            hash::to_hex(&h.finalize())
        )
    }

    #[test]
    fn the_right_password_matches_and_others_do_not() {
        let salt = [0x5a, 0x00, 0xff, 0x10, 0x20, 0x30, 0x40, 0x50];
        let p = MediaPassword::parse(&stored(&salt, "s3cret pass")).unwrap();
        assert!(p.matches("s3cret pass"));
        assert!(!p.matches("s3cret pass "));
        assert!(!p.matches("S3cret pass"));
        assert!(!p.matches(""));
        // The salt counts: the same password under another salt is another hash.
        let other = MediaPassword::parse(&stored(&[1, 2, 3], "s3cret pass")).unwrap();
        assert_ne!(p, other);
        assert!(other.matches("s3cret pass"));
    }

    #[test]
    fn a_known_vector_matches() {
        // SHA-256("test"), stored with an empty salt and in upper case.
        let p = MediaPassword::parse(
            "SHA256$$9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08",
        )
        .unwrap();
        assert!(p.matches("test"));
        let p = MediaPassword::parse(&stored("salt".as_bytes(), "päss")).unwrap();
        assert!(p.matches("päss"));
    }

    #[test]
    fn malformed_hashes_say_what_is_wrong() {
        let sha = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        assert_eq!(
            MediaPassword::parse(&format!("md5$00${sha}")),
            Err(FormatError::Scheme("md5".into()))
        );
        assert_eq!(MediaPassword::parse("hunter2"), Err(FormatError::Fields(1)));
        assert_eq!(
            MediaPassword::parse(&format!("sha256$00${sha}$x")),
            Err(FormatError::Fields(4))
        );
        assert_eq!(
            MediaPassword::parse(&format!("sha256$0${sha}")),
            Err(FormatError::Salt)
        );
        assert_eq!(
            MediaPassword::parse(&format!("sha256$zz${sha}")),
            Err(FormatError::Salt)
        );
        assert_eq!(
            MediaPassword::parse("sha256$00$abcd"),
            Err(FormatError::Hash)
        );
        assert!(
            format!("{:?}", MediaPassword::parse(&format!("sha256$00${sha}")))
                .contains("sha256$..")
        );
    }

    #[test]
    fn a_typed_line_loses_only_its_line_end() {
        assert_eq!(typed("pw\r\n"), "pw");
        assert_eq!(typed("pw\n"), "pw");
        assert_eq!(typed(" pw "), " pw ");
        assert_eq!(typed(""), "");
    }
}
