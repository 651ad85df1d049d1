//! Who a machine is, as the server matches devices: its Ethernet MAC address and its SMBIOS
//! system UUID. On the wire both are text (`52:54:00:12:34:56`,
//! `4c4c4544-0042-3510-8052-b4c04f564433`).

use std::fmt;
use std::str::FromStr;

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

use crate::hex;

/// The SMBIOS UUID of a machine, in the canonical order of `/sys/class/dmi/id/product_uuid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SmbiosUuid(pub [u8; 16]);

impl SmbiosUuid {
    /// Reads option 97 (RFC 4578 section 2.3: type 0 then 16 bytes). Firmware copies the GUID
    /// as SMBIOS stores it, with the first three fields little-endian; they are swapped back
    /// here so the value equals what Linux prints in `product_uuid`.
    pub fn from_option97(data: &[u8]) -> Option<SmbiosUuid> {
        if data.len() != 17 || data[0] != 0 {
            return None;
        }
        let mut g = [0u8; 16];
        g.copy_from_slice(&data[1..]);
        g[0..4].reverse();
        g[4..6].reverse();
        g[6..8].reverse();
        if g == [0; 16] || g == [0xff; 16] {
            return None;
        }
        Some(SmbiosUuid(g))
    }

    /// All zeros or all ones: what firmware without a real UUID reports, shared by many
    /// machines and so no identity.
    pub fn is_placeholder(&self) -> bool {
        self.0 == [0; 16] || self.0 == [0xff; 16]
    }
}

impl fmt::Display for SmbiosUuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = hex::encode(&self.0);
        write!(
            f,
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }
}

impl FromStr for SmbiosUuid {
    type Err = String;
    /// Accepts the UUID as Linux prints it (`4c4c4544-0042-...`): 32 hex digits, dashes
    /// optional, either case.
    fn from_str(s: &str) -> Result<SmbiosUuid, String> {
        let digits: String = s.chars().filter(|&c| c != '-').collect();
        hex::decode_array(&digits)
            .map(SmbiosUuid)
            .ok_or_else(|| format!("{s:?} is not an SMBIOS UUID"))
    }
}

/// An Ethernet MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac(pub [u8; 6]);

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl FromStr for Mac {
    type Err = String;
    /// Accepts `52:54:00:12:34:56`, `52-54-00-12-34-56` and `525400123456`.
    fn from_str(s: &str) -> Result<Mac, String> {
        let digits: String = s.chars().filter(|c| !matches!(c, ':' | '-')).collect();
        hex::decode_array(&digits)
            .map(Mac)
            .ok_or_else(|| format!("{s:?} is not a MAC address"))
    }
}

macro_rules! serde_as_text {
    ($t:ty, $what:literal) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<$t, D::Error> {
                struct Visitor;
                impl de::Visitor<'_> for Visitor {
                    type Value = $t;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($what)
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$t, E> {
                        v.parse().map_err(E::custom)
                    }
                }
                d.deserialize_str(Visitor)
            }
        }
    };
}

serde_as_text!(Mac, "a MAC address as text");
serde_as_text!(SmbiosUuid, "an SMBIOS UUID as text");

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn macs_parse_in_three_spellings_and_print_in_one() {
        let m: Mac = "52-54-00-AB-cd-01".parse().unwrap();
        assert_eq!(m, Mac([0x52, 0x54, 0, 0xab, 0xcd, 1]));
        assert_eq!(m.to_string(), "52:54:00:ab:cd:01");
        assert_eq!("525400abcd01".parse::<Mac>(), Ok(m));
        assert!("52:54:00:ab:cd".parse::<Mac>().is_err());
        assert!("52:54:00:ab:cd:0g".parse::<Mac>().is_err());
        // Twelve bytes that are not twelve hex digits: refused, not a panic.
        assert!("éééééé".parse::<Mac>().is_err());
    }

    #[test]
    fn uuids_print_as_linux_does_and_option_97_swaps_the_first_fields() {
        let u: SmbiosUuid = "4C4C4544-0042-3510-8052-B4C04F564433".parse().unwrap();
        assert_eq!(u.to_string(), "4c4c4544-0042-3510-8052-b4c04f564433");
        assert_eq!(
            "4c4c454400423510 8052b4c04f564433".parse::<SmbiosUuid>(),
            Err("\"4c4c454400423510 8052b4c04f564433\" is not an SMBIOS UUID".into())
        );
        let mut opt = vec![0u8];
        opt.extend([0x44, 0x45, 0x4c, 0x4c, 0x42, 0x00, 0x10, 0x35]);
        opt.extend([0x80, 0x52, 0xb4, 0xc0, 0x4f, 0x56, 0x44, 0x33]);
        assert_eq!(SmbiosUuid::from_option97(&opt), Some(u));
        assert_eq!(SmbiosUuid::from_option97(&[0; 17]), None);
        assert!(SmbiosUuid([0xff; 16]).is_placeholder());
    }

    proptest! {
        #[test]
        fn identities_round_trip_through_text_and_json(
            mac in any::<[u8; 6]>(),
            uuid in any::<[u8; 16]>(),
        ) {
            let (mac, uuid) = (Mac(mac), SmbiosUuid(uuid));
            prop_assert_eq!(mac.to_string().parse::<Mac>(), Ok(mac));
            prop_assert_eq!(uuid.to_string().parse::<SmbiosUuid>(), Ok(uuid));
            let json = serde_json::to_string(&(mac, uuid)).unwrap();
            prop_assert_eq!(serde_json::from_str::<(Mac, SmbiosUuid)>(&json).unwrap(), (mac, uuid));
        }
    }
}
