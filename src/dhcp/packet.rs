//! Decoding a DHCP datagram into the facts netdeploy decides on.
//!
//! dhcproto decodes the BOOTP header and the common options, but it leaves the PXE options to
//! us: option 43 and 175 are opaque bytes to it, option 93 is read as exactly one value whatever
//! its length (a list of two architectures would misalign every option after it), and some
//! fixed-size options are only checked by `debug_assert!`. So every datagram is first walked
//! here as raw type-length-value options: one whose framing is wrong is dropped as malformed,
//! and the PXE options are read from that walk. dhcproto is then used, behind `catch_unwind`,
//! for the header and the standard options.

use std::net::Ipv4Addr;

use dhcproto::v4::{self, MessageType};
use dhcproto::Decodable;

/// Options 0 (pad) and 255 (end) carry no length byte.
const PAD: u8 = 0;
const END: u8 = 255;
/// The DHCP magic cookie after the 236-byte BOOTP header (RFC 2131 section 3).
const MAGIC: [u8; 4] = [99, 130, 83, 99];
const HEADER_LEN: usize = 236;

/// Why a datagram was not decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("shorter than a BOOTP header with a magic cookie ({0} bytes)")]
    TooShort(usize),
    #[error("no DHCP magic cookie")]
    NoMagic,
    #[error("option {code} runs past the end of the datagram")]
    Truncated { code: u8 },
    #[error("option {code} has length {len}, which is not valid for it")]
    BadLength { code: u8, len: usize },
    #[error("not a BOOTREQUEST")]
    NotRequest,
    #[error("hardware address length {0} is not 6 (Ethernet)")]
    NotEthernet(u8),
    #[error("no DHCP message type")]
    NoMessageType,
    #[error("decoder rejected it: {0}")]
    Decoder(String),
}

/// The identity types live with the contract the agent shares; the codec only reads them.
pub use netdeploy_wire::{Mac, SmbiosUuid};

/// A decoded client request: the dhcproto message plus the PXE facts read from raw options.
#[derive(Debug, Clone)]
pub struct Request {
    pub msg: v4::Message,
    pub msg_type: MessageType,
    pub mac: Mac,
    /// Option 60, lossily as text.
    pub vendor_class: Option<String>,
    /// Option 93 values (usually one).
    pub arch: Vec<u16>,
    /// Option 97.
    pub uuid: Option<SmbiosUuid>,
    /// Option 77 is `iPXE` or option 175 (iPXE's encapsulated options) is present.
    pub is_ipxe: bool,
    /// Option 54, when the client names a server.
    pub server_id: Option<Ipv4Addr>,
    /// Option 50.
    pub requested_ip: Option<Ipv4Addr>,
}

impl Request {
    /// A PXE or UEFI HTTP boot client: option 60 starts with `PXEClient` or `HTTPClient`.
    pub fn is_netboot(&self) -> bool {
        self.vendor_class
            .as_deref()
            .is_some_and(|v| v.starts_with("PXEClient") || v.starts_with("HTTPClient"))
    }

    /// The first option 93 value, or 0 when a `PXEClient:Arch:xxxxx` vendor class names it and
    /// option 93 is missing (old PXE ROMs).
    pub fn arch_value(&self) -> Option<u16> {
        if let Some(a) = self.arch.first() {
            return Some(*a);
        }
        let v = self.vendor_class.as_deref()?;
        let rest = v
            .strip_prefix("PXEClient:Arch:")
            .or_else(|| v.strip_prefix("HTTPClient:Arch:"))?;
        rest.get(..5)?.parse().ok()
    }
}

/// Walks the options of a datagram: `(code, value)` pairs, pad and end excluded.
fn raw_options(bytes: &[u8]) -> Result<Vec<(u8, &[u8])>, Malformed> {
    let mut out = Vec::new();
    let mut i = HEADER_LEN + MAGIC.len();
    while i < bytes.len() {
        let code = bytes[i];
        i += 1;
        match code {
            PAD => continue,
            END => break,
            _ => {}
        }
        let Some(&len) = bytes.get(i) else {
            return Err(Malformed::Truncated { code });
        };
        let len = usize::from(len);
        let value = bytes
            .get(i + 1..i + 1 + len)
            .ok_or(Malformed::Truncated { code })?;
        i += 1 + len;
        let ok = match code {
            // Fixed sizes of the options netdeploy reads (RFC 2132, RFC 4578).
            53 => len == 1,
            50 | 54 => len == 4,
            57 => len == 2,
            93 => len >= 2 && len % 2 == 0,
            94 => len == 3,
            97 => len == 17 || len == 0,
            _ => true,
        };
        if !ok {
            return Err(Malformed::BadLength { code, len });
        }
        out.push((code, value));
    }
    Ok(out)
}

/// Decodes a datagram received on a DHCP or PXE port.
pub fn decode(bytes: &[u8]) -> Result<Request, Malformed> {
    if bytes.len() < HEADER_LEN + MAGIC.len() {
        return Err(Malformed::TooShort(bytes.len()));
    }
    if bytes[HEADER_LEN..HEADER_LEN + 4] != MAGIC {
        return Err(Malformed::NoMagic);
    }
    if bytes[0] != 1 {
        return Err(Malformed::NotRequest);
    }
    if bytes[1] != 1 || bytes[2] != 6 {
        return Err(Malformed::NotEthernet(bytes[2]));
    }
    let opts = raw_options(bytes)?;
    let find = |code: u8| opts.iter().find(|(c, _)| *c == code).map(|(_, v)| *v);

    // dhcproto only debug-asserts on some option lengths; the walk above already refused those,
    // and the unwind guard keeps any other surprise from taking a listener down.
    let msg = std::panic::catch_unwind(|| v4::Message::decode(&mut dhcproto::Decoder::new(bytes)))
        .map_err(|_| Malformed::Decoder("panicked".into()))?
        .map_err(|e| Malformed::Decoder(e.to_string()))?;
    let msg_type = match find(53) {
        Some([t]) => MessageType::from(*t),
        _ => return Err(Malformed::NoMessageType),
    };
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&bytes[28..34]);
    let ipv4 = |v: &[u8]| <[u8; 4]>::try_from(v).ok().map(Ipv4Addr::from);
    let user_class_ipxe = find(77).is_some_and(|v| {
        // iPXE sends the raw bytes `iPXE`; RFC 3004 form is length-prefixed.
        v == b"iPXE" || (v.len() == 5 && v[0] == 4 && &v[1..] == b"iPXE")
    });
    Ok(Request {
        msg_type,
        mac: Mac(mac),
        vendor_class: find(60).map(|v| String::from_utf8_lossy(v).into_owned()),
        arch: find(93)
            .map(|v| {
                v.chunks_exact(2)
                    .map(|c| u16::from_be_bytes([c[0], c[1]]))
                    .collect()
            })
            .unwrap_or_default(),
        uuid: find(97).and_then(SmbiosUuid::from_option97),
        is_ipxe: user_class_ipxe || find(175).is_some(),
        server_id: find(54).and_then(ipv4),
        requested_ip: find(50).and_then(ipv4),
        msg,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A DISCOVER as SeaBIOS's iPXE ROM sends it (from the lab capture), built by hand.
    pub(crate) fn discover(arch: u16, vendor: &str, ipxe: bool) -> Vec<u8> {
        let mut b = vec![0u8; HEADER_LEN];
        b[0] = 1;
        b[1] = 1;
        b[2] = 6;
        b[4..8].copy_from_slice(&0x6d31_4072u32.to_be_bytes());
        b[10] = 0x80;
        b[28..34].copy_from_slice(&[0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
        b.extend_from_slice(&MAGIC);
        b.extend_from_slice(&[53, 1, 1, 57, 2, 0x05, 0xc0]);
        b.extend_from_slice(&[93, 2]);
        b.extend_from_slice(&arch.to_be_bytes());
        b.extend_from_slice(&[94, 3, 1, 2, 1]);
        b.push(60);
        b.push(vendor.len() as u8);
        b.extend_from_slice(vendor.as_bytes());
        if ipxe {
            b.extend_from_slice(&[77, 4, b'i', b'P', b'X', b'E']);
        }
        b.extend_from_slice(&[
            97, 17, 0, 0x87, 0x36, 0xfd, 0x43, 0xff, 0xf5, 0x04, 0x49, 0xa8, 0x2e, 0xe5, 0xfa,
            0x7b, 0x1b, 0x0d, 0xc8,
        ]);
        b.push(255);
        b
    }

    #[test]
    fn reads_the_pxe_facts_of_an_ipxe_discover() {
        let r = decode(&discover(0, "PXEClient:Arch:00000:UNDI:002001", true)).unwrap();
        assert_eq!(r.msg_type, MessageType::Discover);
        assert!(r.is_netboot());
        assert!(r.is_ipxe);
        assert_eq!(r.arch_value(), Some(0));
        assert_eq!(r.mac.to_string(), "52:54:00:12:34:56");
        assert_eq!(
            r.uuid.unwrap().to_string(),
            "43fd3687-f5ff-4904-a82e-e5fa7b1b0dc8"
        );
    }

    #[test]
    fn option97_first_three_fields_are_byte_swapped() {
        let mut o = vec![0u8];
        o.extend_from_slice(&[
            0x78, 0x56, 0x34, 0x12, 0x34, 0x12, 0x78, 0x56, 0x9a, 0xbc, 1, 2, 3, 4, 5, 6,
        ]);
        assert_eq!(
            SmbiosUuid::from_option97(&o).unwrap().to_string(),
            "12345678-1234-5678-9abc-010203040506"
        );
    }

    #[test]
    fn option93_with_odd_length_is_malformed() {
        let mut b = discover(7, "PXEClient:Arch:00007:UNDI:003000", false);
        let at = b.windows(2).position(|w| w == [93, 2]).unwrap();
        b[at + 1] = 3;
        assert!(matches!(
            decode(&b),
            Err(Malformed::BadLength { code: 93, .. })
        ));
    }

    #[test]
    fn truncated_option_is_malformed() {
        let mut b = discover(7, "PXEClient:Arch:00007:UNDI:003000", false);
        b.pop();
        b.truncate(b.len() - 3);
        assert!(matches!(decode(&b), Err(Malformed::Truncated { .. })));
    }

    #[test]
    fn arch_from_vendor_class_when_option93_is_missing() {
        let mut b = discover(7, "PXEClient:Arch:00007:UNDI:003000", false);
        let at = b.windows(2).position(|w| w == [93, 2]).unwrap();
        b.drain(at..at + 4);
        assert_eq!(decode(&b).unwrap().arch_value(), Some(7));
    }

    #[test]
    fn mac_parses_common_spellings() {
        for s in ["52:54:00:12:34:56", "52-54-00-12-34-56", "525400123456"] {
            assert_eq!(s.parse::<Mac>().unwrap().to_string(), "52:54:00:12:34:56");
        }
        assert!("52:54:00".parse::<Mac>().is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn corrupted_discover_never_panics(
            idx in 240usize..330, val in any::<u8>(), cut in 0usize..100,
        ) {
            let mut b = discover(0, "PXEClient:Arch:00000:UNDI:002001", true);
            if idx < b.len() { b[idx] = val; }
            let keep = b.len().saturating_sub(cut);
            b.truncate(keep);
            let _ = decode(&b);
        }
    }
}
