//! The media password: `SMSTSMediaPassword` holds an argon2id hash in the PHC string format
//! (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`), never the password. The media builder
//! hashes with a random salt ([`hash`]); the agent asks for the password and verifies it
//! ([`MediaPassword::matches`]) before anything else happens.
//!
//! Media built before this scheme stored `sha256$<salt hex>$<hash hex>`, with the salt
//! derived from the password; they are refused with [`FormatError::Legacy`], which tells the
//! operator to rebuild the medium.
//!
//! The server's PXE password (`boot.pxe_password_hash`, docs/security.md) is kept and checked
//! with the same scheme: `netdeploy pxe password-hash` makes it with [`hash`], the server
//! verifies what a machine typed with [`MediaPassword::matches`].

use std::fmt;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// Bytes of salt the media builder draws.
pub const SALT_LEN: usize = 16;

/// Memory (KiB), passes and lanes: the OWASP baseline for argon2id. A boot environment in an
/// emulated machine verifies in a few seconds; a stolen medium costs an attacker 19 MiB and
/// two passes per guess.
const M_COST_KIB: u32 = 19 * 1024;
const T_COST: u32 = 2;
const P_COST: u32 = 1;

pub(crate) fn argon2id() -> Argon2<'static> {
    let params = Params::new(M_COST_KIB, T_COST, P_COST, None).expect("constant parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// The hash could not be computed (a salt of the wrong size, an empty salt).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot hash the password: {0}")]
pub struct HashError(String);

/// The PHC string of `password` with `salt`. The salt must be random (or, for a
/// reproducible build, given by whoever builds), never derived from the password.
pub fn hash(password: &str, salt: &[u8]) -> Result<String, HashError> {
    let salt = SaltString::encode_b64(salt).map_err(|e| HashError(e.to_string()))?;
    argon2id()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError(e.to_string()))
}

/// A stored password this agent cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error(
        "this medium stores its password as salted SHA-256 (an older netdeploy-media): \
         rebuild this medium with the current netdeploy-media"
    )]
    Legacy,
    #[error("expected an argon2id hash in the PHC string format ($argon2id$...): {0}")]
    Phc(String),
    #[error("expected an argon2id hash, found the algorithm {0:?}")]
    Algorithm(String),
}

/// A parsed `SMSTSMediaPassword`.
#[derive(Clone, PartialEq, Eq)]
pub struct MediaPassword {
    phc: String,
}

// The hash stays out of logs and panic messages.
impl fmt::Debug for MediaPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MediaPassword($argon2id$..)")
    }
}

impl MediaPassword {
    /// Parses and checks the stored PHC string.
    pub fn parse(stored: &str) -> Result<MediaPassword, FormatError> {
        let stored = stored.trim();
        if stored
            .get(..7)
            .is_some_and(|s| s.eq_ignore_ascii_case("sha256$"))
        {
            return Err(FormatError::Legacy);
        }
        let h = PasswordHash::new(stored).map_err(|e| FormatError::Phc(e.to_string()))?;
        if h.algorithm != Algorithm::Argon2id.ident() {
            return Err(FormatError::Algorithm(h.algorithm.to_string()));
        }
        if h.salt.is_none() || h.hash.is_none() {
            return Err(FormatError::Phc("no salt or no hash".into()));
        }
        Params::try_from(&h).map_err(|e| FormatError::Phc(e.to_string()))?;
        Ok(MediaPassword {
            phc: stored.to_owned(),
        })
    }

    /// True when `password` is the one stored. The hash is recomputed with the stored
    /// parameters and salt, and compared in constant time.
    pub fn matches(&self, password: &str) -> bool {
        match PasswordHash::new(&self.phc) {
            Ok(h) => argon2id().verify_password(password.as_bytes(), &h).is_ok(),
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_is_argon2id_and_only_the_right_password_matches() {
        let stored = hash("s3cret pass", &[7; SALT_LEN]).unwrap();
        assert!(
            stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{stored}"
        );
        assert!(!stored.contains("s3cret"));
        let p = MediaPassword::parse(&stored).unwrap();
        assert!(p.matches("s3cret pass"));
        assert!(!p.matches("s3cret pass "));
        assert!(!p.matches("S3cret pass"));
        assert!(!p.matches(""));
        // The salt counts: the same password under another salt is another hash.
        let other = hash("s3cret pass", &[8; SALT_LEN]).unwrap();
        assert_ne!(stored, other);
        assert!(MediaPassword::parse(&other).unwrap().matches("s3cret pass"));
        assert!(format!("{p:?}").contains("$argon2id$.."));
    }

    #[test]
    fn old_and_foreign_hashes_say_what_to_do() {
        let old = "sha256$00$9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        let e = MediaPassword::parse(old).unwrap_err();
        assert_eq!(e, FormatError::Legacy);
        assert!(e.to_string().contains("rebuild this medium"), "{e}");
        assert!(matches!(
            MediaPassword::parse("hunter2"),
            Err(FormatError::Phc(_))
        ));
        let argon2i = hash("x", &[1; SALT_LEN])
            .unwrap()
            .replace("$argon2id$", "$argon2i$");
        assert_eq!(
            MediaPassword::parse(&argon2i),
            Err(FormatError::Algorithm("argon2i".into()))
        );
    }
}
