//! The run token: the credential of one run of the boot environment (docs/agent-http.md).
//!
//! The server makes one when it starts a machine's run and writes it on the kernel command
//! line of the iPXE script (`netdeploy.token=`); a boot medium's policy response carries one in
//! the [`RESPONSE_HEADER`]. The agent sends it on every `/agent/policy` and `/agent/status`
//! request as `Authorization: Bearer <token>`. On the wire it is 64 lower-case hex digits
//! (32 random bytes); the server keeps only its SHA-256.

use std::fmt;
use std::str::FromStr;

use crate::hex;

/// The kernel command line parameter that carries the token of a PXE run.
pub const CMDLINE_PARAMETER: &str = "netdeploy.token";

/// The response header of `/agent/policy` that carries the token the agent uses from then on
/// (a boot medium's run, or a run whose deployment the policy decided).
pub const RESPONSE_HEADER: &str = "netdeploy-run-token";

/// The scheme of the `Authorization` header.
pub const AUTH_SCHEME: &str = "Bearer";

/// A run token: 32 bytes. `Debug` does not show it, so that it stays out of logs.
#[derive(Clone, PartialEq, Eq)]
pub struct RunToken([u8; 32]);

impl RunToken {
    pub fn from_bytes(bytes: [u8; 32]) -> RunToken {
        RunToken(bytes)
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The value of an `Authorization` header that presents this token.
    pub fn authorization(&self) -> String {
        format!("{AUTH_SCHEME} {self}")
    }

    /// The token an `Authorization` header presents: `None` when the header is not a bearer
    /// credential; an error when it is one but not a run token.
    pub fn from_authorization(value: &str) -> Option<Result<RunToken, String>> {
        let (scheme, rest) = value.trim().split_once(' ')?;
        scheme
            .eq_ignore_ascii_case(AUTH_SCHEME)
            .then(|| rest.trim().parse())
    }
}

impl fmt::Display for RunToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(&self.0))
    }
}

impl fmt::Debug for RunToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RunToken(..)")
    }
}

impl FromStr for RunToken {
    type Err = String;
    fn from_str(s: &str) -> Result<RunToken, String> {
        hex::decode_array(s)
            .map(RunToken)
            .ok_or_else(|| "a run token is 64 hex digits".to_owned())
    }
}

/// The scheme of the `Authorization` header that presents a [`MediumKey`].
pub const MEDIUM_SCHEME: &str = "Medium";

/// A boot medium's own credential (docs/security.md): an id the server lists and revokes it
/// by, and a 32-byte secret the server keeps only the SHA-256 of. Written `<id>.<secret>`
/// (8 and 64 lower-case hex digits) in the media variables file (`NetdeployMediumKey`), and
/// presented as `Authorization: Medium <id>.<secret>` on the medium's first policy request,
/// which has no run token yet. `Debug` does not show the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct MediumKey {
    id: [u8; 4],
    secret: [u8; 32],
}

impl MediumKey {
    pub fn from_bytes(id: [u8; 4], secret: [u8; 32]) -> MediumKey {
        MediumKey { id, secret }
    }

    /// The id, 8 hex digits.
    pub fn id(&self) -> String {
        hex::encode(&self.id)
    }

    pub fn secret(&self) -> &[u8; 32] {
        &self.secret
    }

    /// The value of an `Authorization` header that presents this key.
    pub fn authorization(&self) -> String {
        format!("{MEDIUM_SCHEME} {self}")
    }

    /// The key an `Authorization` header presents: `None` when it is not a medium key header;
    /// an error when it is one but malformed.
    pub fn from_authorization(value: &str) -> Option<Result<MediumKey, String>> {
        let (scheme, rest) = value.trim().split_once(' ')?;
        scheme
            .eq_ignore_ascii_case(MEDIUM_SCHEME)
            .then(|| rest.trim().parse())
    }
}

impl fmt::Display for MediumKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", hex::encode(&self.id), hex::encode(&self.secret))
    }
}

impl fmt::Debug for MediumKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MediumKey({}, ..)", self.id())
    }
}

impl FromStr for MediumKey {
    type Err = String;
    fn from_str(s: &str) -> Result<MediumKey, String> {
        let bad = || "a medium key is <8 hex digits>.<64 hex digits>".to_owned();
        let (id, secret) = s.split_once('.').ok_or_else(bad)?;
        Ok(MediumKey {
            id: hex::decode_array(id).ok_or_else(bad)?,
            secret: hex::decode_array(secret).ok_or_else(bad)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_token_is_read_back_from_its_authorization_header() {
        let t = RunToken::from_bytes([0xab; 32]);
        let header = t.authorization();
        assert_eq!(header, format!("Bearer {}", "ab".repeat(32)));
        assert_eq!(RunToken::from_authorization(&header).unwrap().unwrap(), t);
        assert_eq!(
            RunToken::from_authorization(&format!("bearer  {}", "AB".repeat(32)))
                .unwrap()
                .unwrap(),
            t
        );
    }

    #[test]
    fn other_schemes_are_no_token_and_bad_values_are_errors() {
        assert!(RunToken::from_authorization("Basic dXNlcjpwdw==").is_none());
        assert!(RunToken::from_authorization("Bearer").is_none());
        assert!(RunToken::from_authorization("Bearer abc").unwrap().is_err());
        assert!(
            RunToken::from_authorization(&format!("Bearer {}", "g".repeat(64)))
                .unwrap()
                .is_err()
        );
    }

    #[test]
    fn debug_does_not_show_the_token() {
        let t = RunToken::from_bytes([0x5a; 32]);
        assert!(!format!("{t:?}").contains("5a5a"));
    }

    #[test]
    fn a_medium_key_is_read_back_and_does_not_show_its_secret() {
        let k = MediumKey::from_bytes([0x0a, 0x0b, 0x0c, 0x0d], [0x5a; 32]);
        assert_eq!(k.id(), "0a0b0c0d");
        assert_eq!(k.to_string(), format!("0a0b0c0d.{}", "5a".repeat(32)));
        assert_eq!(
            MediumKey::from_authorization(&k.authorization())
                .unwrap()
                .unwrap(),
            k
        );
        assert!(
            MediumKey::from_authorization(&RunToken::from_bytes([1; 32]).authorization()).is_none()
        );
        assert!(RunToken::from_authorization(&k.authorization()).is_none());
        assert!("0a0b0c0d".parse::<MediumKey>().is_err());
        assert!(format!("0a0b.{}", "5a".repeat(32))
            .parse::<MediumKey>()
            .is_err());
        assert!(!format!("{k:?}").contains("5a5a"));
    }

    proptest! {
        #[test]
        fn every_token_round_trips_through_its_text(bytes in any::<[u8; 32]>()) {
            let t = RunToken::from_bytes(bytes);
            prop_assert_eq!(t.to_string().parse::<RunToken>().unwrap(), t);
        }
    }
}
