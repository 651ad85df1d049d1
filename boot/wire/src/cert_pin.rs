//! The pin of the server's HTTPS certificate: the SHA-256 digest of the certificate's DER
//! bytes, written `sha256:<64 lower-case hex digits>`. The server prints it
//! (`netdeploy tls fingerprint`), the first stages put it on the kernel command line
//! ([`CMDLINE_PARAMETER`]), the media builder writes it into the media variables
//! ([`crate::variables::SERVER_PIN`]), and the agent accepts exactly that certificate.

use std::fmt;
use std::str::FromStr;

/// The kernel command line parameter that carries the pin.
pub const CMDLINE_PARAMETER: &str = "netdeploy.pin";

/// The only digest a pin is written in.
const PREFIX: &str = "sha256:";

/// The SHA-256 digest of a DER-encoded certificate.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CertPin([u8; 32]);

impl CertPin {
    /// The pin of the certificate whose DER bytes have this SHA-256 digest.
    pub fn from_digest(digest: [u8; 32]) -> CertPin {
        CertPin(digest)
    }

    pub fn digest(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for CertPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}", crate::hex::encode(&self.0))
    }
}

impl fmt::Debug for CertPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for CertPin {
    type Err = String;

    /// `sha256:` (in any case) and 64 hex digits in either case; anything else is refused
    /// with what was expected.
    fn from_str(s: &str) -> Result<CertPin, String> {
        let hex = s
            .get(..PREFIX.len())
            .filter(|p| p.eq_ignore_ascii_case(PREFIX))
            .map(|_| &s[PREFIX.len()..])
            .ok_or_else(|| format!("{s:?} does not start with {PREFIX}"))?;
        crate::hex::decode_array(hex)
            .map(CertPin)
            .ok_or_else(|| format!("{s:?}: expected {PREFIX} and 64 hex digits"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_what_it_writes_and_upper_case_too() {
        let pin = CertPin::from_digest([0xab; 32]);
        let text = pin.to_string();
        assert_eq!(text, format!("sha256:{}", "ab".repeat(32)));
        assert_eq!(text.parse::<CertPin>(), Ok(pin));
        assert_eq!(text.to_uppercase().parse::<CertPin>(), Ok(pin));
    }

    #[test]
    fn refuses_other_digests_and_lengths() {
        for bad in [
            "",
            "sha256:",
            &format!("sha1:{}", "ab".repeat(32)),
            &"ab".repeat(32),
            &format!("sha256:{}", "ab".repeat(31)),
            &format!("sha256:{}zz", "ab".repeat(31)),
            &format!("sha256: {}", "ab".repeat(32)),
        ] {
            assert!(bad.parse::<CertPin>().is_err(), "{bad:?} was accepted");
        }
    }

    proptest! {
        #[test]
        fn every_digest_round_trips(bytes in proptest::array::uniform32(any::<u8>())) {
            let pin = CertPin::from_digest(bytes);
            prop_assert_eq!(pin.to_string().parse::<CertPin>(), Ok(pin));
        }
    }
}
