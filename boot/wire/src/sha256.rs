//! A SHA-256 digest as the wire writes it: 64 hex digits, lower case when written, either
//! case when read.

use std::fmt;
use std::str::FromStr;

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

use crate::hex;

/// A SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256Hex(pub [u8; 32]);

impl Sha256Hex {
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Sha256Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(&self.0))
    }
}

impl fmt::Debug for Sha256Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256Hex({self})")
    }
}

impl FromStr for Sha256Hex {
    type Err = String;
    fn from_str(s: &str) -> Result<Sha256Hex, String> {
        hex::decode_array(s)
            .map(Sha256Hex)
            .ok_or_else(|| format!("{s:?} is not a SHA-256 (64 hex digits)"))
    }
}

impl From<[u8; 32]> for Sha256Hex {
    fn from(d: [u8; 32]) -> Sha256Hex {
        Sha256Hex(d)
    }
}

impl Serialize for Sha256Hex {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Sha256Hex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Sha256Hex, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Sha256Hex;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a SHA-256 as 64 hex digits")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Sha256Hex, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    #[test]
    fn reads_either_case_and_writes_lower_case() {
        let d: Sha256Hex = HELLO.to_uppercase().parse().unwrap();
        assert_eq!(d.to_string(), HELLO);
        assert_eq!(serde_json::to_string(&d).unwrap(), format!("\"{HELLO}\""));
        assert!(HELLO[..63].parse::<Sha256Hex>().is_err());
        let e = serde_json::from_str::<Sha256Hex>("\"abc\"").unwrap_err();
        assert!(e.to_string().contains("is not a SHA-256"), "{e}");
    }
}
