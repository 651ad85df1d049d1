//! Decoding a DHCPv6 datagram into the facts netdeploy decides on.
//!
//! As for DHCPv4 ([`crate::dhcp::packet`]), every datagram is first walked here as raw
//! code-length-value options (RFC 8415 section 21.1): one whose framing is wrong, or whose
//! fixed-size option has the wrong size, is dropped as malformed. The network-boot options
//! (RFC 5970: 59 to 62) are unknown to dhcproto and read from that walk; dhcproto then decodes
//! the message behind `catch_unwind`, so that what it refuses is dropped the same way.

use std::net::Ipv6Addr;

use dhcproto::v6;
use dhcproto::Decodable;

pub use netdeploy_wire::{Mac, SmbiosUuid};

/// The message header: type and a 3-byte transaction id (RFC 8415 section 8).
const HEADER_LEN: usize = 4;

/// Option codes netdeploy reads or writes.
pub mod code {
    pub const CLIENT_ID: u16 = 1;
    pub const SERVER_ID: u16 = 2;
    pub const IA_NA: u16 = 3;
    pub const ORO: u16 = 6;
    pub const PREFERENCE: u16 = 7;
    pub const ELAPSED_TIME: u16 = 8;
    pub const USER_CLASS: u16 = 15;
    pub const VENDOR_CLASS: u16 = 16;
    /// RFC 5970 section 3.1.
    pub const BOOTFILE_URL: u16 = 59;
    /// RFC 5970 section 3.2.
    pub const BOOTFILE_PARAM: u16 = 60;
    /// RFC 5970 section 3.3: client system architecture types, as option 93 of DHCPv4.
    pub const CLIENT_ARCH: u16 = 61;
    /// RFC 5970 section 3.4: network interface identifier.
    pub const NII: u16 = 62;
}

/// The message types netdeploy tells apart (RFC 8415 section 7.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Solicit,
    Request,
    Confirm,
    Renew,
    Rebind,
    Release,
    Decline,
    InformationRequest,
    /// Any other type a client or relay may send (relay-forward, lease query, ...).
    Other(u8),
}

impl Kind {
    fn from_byte(b: u8) -> Kind {
        match b {
            1 => Kind::Solicit,
            3 => Kind::Request,
            4 => Kind::Confirm,
            5 => Kind::Renew,
            6 => Kind::Rebind,
            8 => Kind::Release,
            9 => Kind::Decline,
            11 => Kind::InformationRequest,
            b => Kind::Other(b),
        }
    }
}

/// Why a datagram was not decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("shorter than a DHCPv6 header ({0} bytes)")]
    TooShort(usize),
    #[error("message type {0} is one only servers send")]
    ServerMessage(u8),
    #[error("option {code} runs past the end of the datagram")]
    Truncated { code: u16 },
    #[error("option {code} has length {len}, which is not valid for it")]
    BadLength { code: u16, len: usize },
    #[error("no client identifier (option 1)")]
    NoClientId,
    #[error("decoder rejected it: {0}")]
    Decoder(String),
}

/// A client's DUID (RFC 8415 section 11), as far as it names the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Duid {
    /// DUID-LLT (type 1) or DUID-LL (type 3) of an Ethernet interface: its MAC.
    LinkLayer(Mac),
    /// DUID-UUID (type 4, RFC 6355): the 16 bytes as sent; see [`Request::uuid`] for their
    /// order.
    Uuid([u8; 16]),
    /// Any other DUID: an identity for the client, but not a MAC or UUID netdeploy matches.
    Other,
}

impl Duid {
    /// Reads a DUID.
    pub fn parse(bytes: &[u8]) -> Duid {
        let Some((kind, rest)) = bytes.split_first_chunk::<2>() else {
            return Duid::Other;
        };
        match u16::from_be_bytes(*kind) {
            // DUID-LLT: hardware type, time, link-layer address.
            1 if rest.len() == 12 && rest[..2] == [0, 1] => {
                Duid::LinkLayer(Mac(rest[6..12].try_into().expect("6 bytes")))
            }
            // DUID-LL: hardware type, link-layer address.
            3 if rest.len() == 8 && rest[..2] == [0, 1] => {
                Duid::LinkLayer(Mac(rest[2..8].try_into().expect("6 bytes")))
            }
            4 if rest.len() == 16 => Duid::Uuid(rest.try_into().expect("16 bytes")),
            _ => Duid::Other,
        }
    }
}

/// The MAC behind a modified EUI-64 interface identifier (RFC 4291 appendix A), as a client
/// forms its link-local source address from its MAC: `fe80::5054:ff:fe12:3456` is
/// `52:54:00:12:34:56`. `None` for an address not formed that way (privacy or stable-opaque
/// identifiers).
pub fn mac_from_eui64(addr: Ipv6Addr) -> Option<Mac> {
    let o = addr.octets();
    if o[11] != 0xff || o[12] != 0xfe {
        return None;
    }
    Some(Mac([o[8] ^ 0x02, o[9], o[10], o[13], o[14], o[15]]))
}

/// A decoded client message.
#[derive(Debug, Clone)]
pub struct Request {
    pub kind: Kind,
    pub xid: [u8; 3],
    /// Option 1, as sent (echoed in replies).
    pub client_id: Vec<u8>,
    pub duid: Duid,
    /// Option 2, when the client addresses one server.
    pub server_id: Option<Vec<u8>>,
    /// Option 61 values (usually one).
    pub arch: Vec<u16>,
    /// Option 16: the enterprise number and the first vendor-class-data, lossily as text.
    pub vendor_class: Option<(u32, String)>,
    /// Option 15: the user-class-data items.
    pub user_class: Vec<Vec<u8>>,
    /// Option 3 present: the client asks for an address.
    pub wants_address: bool,
}

impl Request {
    /// The vendor class text (`PXEClient:Arch:00007:UNDI:003000`), whatever the enterprise.
    pub fn vendor_text(&self) -> Option<&str> {
        self.vendor_class.as_ref().map(|(_, t)| t.as_str())
    }

    /// iPXE says so in its user class (option 15 `iPXE`).
    pub fn is_ipxe(&self) -> bool {
        self.user_class.iter().any(|c| c == b"iPXE")
    }

    /// A network-boot client: it sends its architecture (option 61), a vendor class that
    /// starts with `PXEClient` or `HTTPClient`, or iPXE's user class.
    pub fn is_netboot(&self) -> bool {
        !self.arch.is_empty()
            || self
                .vendor_text()
                .is_some_and(|v| v.starts_with("PXEClient") || v.starts_with("HTTPClient"))
            || self.is_ipxe()
    }

    /// The first option 61 value, else the one a `PXEClient:Arch:xxxxx` vendor class names.
    pub fn arch_value(&self) -> Option<u16> {
        if let Some(a) = self.arch.first() {
            return Some(*a);
        }
        let v = self.vendor_text()?;
        let rest = v
            .strip_prefix("PXEClient:Arch:")
            .or_else(|| v.strip_prefix("HTTPClient:Arch:"))?;
        rest.get(..5)?.parse().ok()
    }

    /// The machine's MAC: from a link-layer DUID, else from the client's EUI-64 source address.
    pub fn mac(&self, source: Ipv6Addr) -> Option<Mac> {
        match self.duid {
            Duid::LinkLayer(mac) => Some(mac),
            _ => mac_from_eui64(source),
        }
    }

    /// The machine's SMBIOS UUID, when its DUID is a DUID-UUID. UEFI copies the GUID as
    /// SMBIOS stores it (first three fields little-endian), as into DHCPv4 option 97; iPXE
    /// sends it in the canonical order (seen in QEMU: the same machine's OVMF and iPXE DUIDs
    /// differ in just those fields). All zeros or all ones name no machine.
    pub fn uuid(&self) -> Option<SmbiosUuid> {
        let Duid::Uuid(raw) = self.duid else {
            return None;
        };
        if self.is_ipxe() {
            let u = SmbiosUuid(raw);
            return (!u.is_placeholder()).then_some(u);
        }
        let mut o97 = vec![0u8];
        o97.extend_from_slice(&raw);
        SmbiosUuid::from_option97(&o97)
    }
}

/// Walks the options of a message: `(code, value)` pairs.
fn raw_options(bytes: &[u8]) -> Result<Vec<(u16, &[u8])>, Malformed> {
    let mut out = Vec::new();
    let mut i = HEADER_LEN;
    while i < bytes.len() {
        let head = bytes.get(i..i + 4).ok_or(Malformed::Truncated {
            code: bytes
                .get(i..i + 2)
                .map_or(0, |c| u16::from_be_bytes([c[0], c[1]])),
        })?;
        let code = u16::from_be_bytes([head[0], head[1]]);
        let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
        let value = bytes
            .get(i + 4..i + 4 + len)
            .ok_or(Malformed::Truncated { code })?;
        i += 4 + len;
        let ok = match code {
            // A DUID has a 2-byte type and at most 128 bytes (RFC 8415 section 11.1).
            code::CLIENT_ID | code::SERVER_ID => (3..=130).contains(&len),
            code::ELAPSED_TIME => len == 2,
            code::PREFERENCE => len == 1,
            code::ORO => len % 2 == 0,
            code::IA_NA => len >= 12,
            code::CLIENT_ARCH => len >= 2 && len % 2 == 0,
            code::NII => len == 3,
            code::VENDOR_CLASS => len >= 4,
            _ => true,
        };
        if !ok {
            return Err(Malformed::BadLength { code, len });
        }
        out.push((code, value));
    }
    Ok(out)
}

/// The `len (2 bytes) | data` items of options 15 and 16 (RFC 8415 sections 21.15, 21.16).
fn class_items(mut v: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some((len, rest)) = v.split_first_chunk::<2>() {
        let len = usize::from(u16::from_be_bytes(*len));
        let Some(item) = rest.get(..len) else { break };
        out.push(item.to_vec());
        v = &rest[len..];
    }
    out
}

/// Decodes a datagram received on the DHCPv6 server port or the PXE port.
pub fn decode(bytes: &[u8]) -> Result<Request, Malformed> {
    if bytes.len() < HEADER_LEN {
        return Err(Malformed::TooShort(bytes.len()));
    }
    let kind = Kind::from_byte(bytes[0]);
    // Advertise, Reply, Reconfigure and Relay-reply come from servers and relays.
    if matches!(bytes[0], 2 | 7 | 10 | 13) {
        return Err(Malformed::ServerMessage(bytes[0]));
    }
    let opts = raw_options(bytes)?;
    let find = |c: u16| opts.iter().find(|(k, _)| *k == c).map(|(_, v)| *v);
    // dhcproto must accept it too: the replies are built with it, and what it cannot read is
    // no message netdeploy answers.
    std::panic::catch_unwind(|| v6::Message::decode(&mut dhcproto::Decoder::new(bytes)))
        .map_err(|_| Malformed::Decoder("panicked".into()))?
        .map_err(|e| Malformed::Decoder(e.to_string()))?;
    let client_id = find(code::CLIENT_ID).ok_or(Malformed::NoClientId)?;
    let vendor_class = find(code::VENDOR_CLASS).map(|v| {
        let num = u32::from_be_bytes(v[..4].try_into().expect("4 bytes"));
        let first = class_items(&v[4..]).into_iter().next().unwrap_or_default();
        (num, String::from_utf8_lossy(&first).into_owned())
    });
    Ok(Request {
        kind,
        xid: [bytes[1], bytes[2], bytes[3]],
        client_id: client_id.to_vec(),
        duid: Duid::parse(client_id),
        server_id: find(code::SERVER_ID).map(<[u8]>::to_vec),
        arch: find(code::CLIENT_ARCH)
            .map(|v| {
                v.chunks_exact(2)
                    .map(|c| u16::from_be_bytes([c[0], c[1]]))
                    .collect()
            })
            .unwrap_or_default(),
        vendor_class,
        user_class: find(code::USER_CLASS).map(class_items).unwrap_or_default(),
        wants_address: find(code::IA_NA).is_some(),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The SMBIOS UUID the test messages carry, as `product_uuid` prints it.
    pub(crate) const UUID: &str = "43fd3687-f5ff-4904-a82e-e5fa7b1b0dc8";

    fn opt(out: &mut Vec<u8>, code: u16, value: &[u8]) {
        out.extend_from_slice(&code.to_be_bytes());
        out.extend_from_slice(&(value.len() as u16).to_be_bytes());
        out.extend_from_slice(value);
    }

    /// A SOLICIT as OVMF's PXE base code sends it (NetworkPkg/UefiPxeBcDxe): DUID-UUID from
    /// SMBIOS, an IA_NA, an option request for the boot file URL, parameters, vendor class
    /// and DNS, the network interface identifier, the architecture and the vendor class
    /// `PXEClient:Arch:00007:UNDI:003000` under enterprise 343.
    pub(crate) fn ovmf_solicit(kind: u8) -> Vec<u8> {
        let mut b = vec![kind, 0x5a, 0x1c, 0x07];
        let mut duid = vec![0, 4];
        duid.extend_from_slice(&[
            0x87, 0x36, 0xfd, 0x43, 0xff, 0xf5, 0x04, 0x49, 0xa8, 0x2e, 0xe5, 0xfa, 0x7b, 0x1b,
            0x0d, 0xc8,
        ]);
        opt(&mut b, code::CLIENT_ID, &duid);
        opt(&mut b, code::ELAPSED_TIME, &[0, 0]);
        opt(&mut b, code::IA_NA, &[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
        opt(&mut b, code::ORO, &[0, 59, 0, 60, 0, 23, 0, 16]);
        opt(&mut b, code::NII, &[1, 3, 0]);
        opt(&mut b, code::CLIENT_ARCH, &[0, 7]);
        let vendor = b"PXEClient:Arch:00007:UNDI:003000";
        let mut vc = 343u32.to_be_bytes().to_vec();
        vc.extend_from_slice(&(vendor.len() as u16).to_be_bytes());
        vc.extend_from_slice(vendor);
        opt(&mut b, code::VENDOR_CLASS, &vc);
        b
    }

    /// An INFORMATION-REQUEST as iPXE sends it when the router says "other configuration":
    /// DUID-UUID (the same machine as [`ovmf_solicit`], canonical order), the option request,
    /// and the user class `iPXE`.
    pub(crate) fn ipxe_information_request() -> Vec<u8> {
        let mut b = vec![11, 0x01, 0x02, 0x03];
        let mut duid = vec![0, 4];
        duid.extend_from_slice(&[
            0x43, 0xfd, 0x36, 0x87, 0xf5, 0xff, 0x49, 0x04, 0xa8, 0x2e, 0xe5, 0xfa, 0x7b, 0x1b,
            0x0d, 0xc8,
        ]);
        opt(&mut b, code::CLIENT_ID, &duid);
        opt(&mut b, code::ORO, &[0, 23, 0, 24, 0, 59, 0, 60]);
        opt(&mut b, code::USER_CLASS, &[0, 4, b'i', b'P', b'X', b'E']);
        opt(&mut b, code::ELAPSED_TIME, &[0, 0]);
        b
    }

    #[test]
    fn reads_the_pxe_facts_of_an_ovmf_solicit() {
        let r = decode(&ovmf_solicit(1)).unwrap();
        assert_eq!(r.kind, Kind::Solicit);
        assert_eq!(r.xid, [0x5a, 0x1c, 0x07]);
        assert!(r.is_netboot());
        assert!(!r.is_ipxe());
        assert!(r.wants_address);
        assert_eq!(r.arch_value(), Some(7));
        assert_eq!(r.vendor_class.as_ref().unwrap().0, 343);
        assert_eq!(r.uuid().unwrap().to_string(), UUID);
        let ll: Ipv6Addr = "fe80::5054:ff:fe12:3456".parse().unwrap();
        assert_eq!(r.mac(ll).unwrap().to_string(), "52:54:00:12:34:56");
    }

    #[test]
    fn ipxe_information_request_is_netboot_by_its_user_class() {
        let r = decode(&ipxe_information_request()).unwrap();
        assert_eq!(r.kind, Kind::InformationRequest);
        assert!(r.is_ipxe());
        assert!(r.is_netboot());
        assert_eq!(r.arch_value(), None);
    }

    #[test]
    fn link_layer_duids_carry_the_mac() {
        let mac = Mac([0x52, 0x54, 0x00, 0xab, 0xcd, 0xef]);
        let mut llt = vec![0, 1, 0, 1, 0x2a, 0x2b, 0x2c, 0x2d];
        llt.extend_from_slice(&mac.0);
        assert_eq!(Duid::parse(&llt), Duid::LinkLayer(mac));
        let mut ll = vec![0, 3, 0, 1];
        ll.extend_from_slice(&mac.0);
        assert_eq!(Duid::parse(&ll), Duid::LinkLayer(mac));
        // Not Ethernet (hardware type 6), or an enterprise DUID: no MAC.
        let mut ieee802 = vec![0, 3, 0, 6];
        ieee802.extend_from_slice(&mac.0);
        assert_eq!(Duid::parse(&ieee802), Duid::Other);
        assert_eq!(Duid::parse(&[0, 2, 0, 0, 0, 9, 1, 2]), Duid::Other);
    }

    #[test]
    fn duid_uuid_is_read_in_each_firmware_byte_order_and_a_zero_one_names_nobody() {
        // The same machine: OVMF's DUID-UUID is mixed-endian, iPXE's canonical.
        let uefi = decode(&ovmf_solicit(1)).unwrap();
        assert_eq!(uefi.uuid().unwrap().to_string(), UUID);
        let mut b = ipxe_information_request();
        assert_eq!(decode(&b).unwrap().uuid().unwrap().to_string(), UUID);
        b[10..26].copy_from_slice(&[0; 16]);
        assert_eq!(decode(&b).unwrap().uuid(), None);
    }

    #[test]
    fn a_link_layer_duid_wins_over_the_source_address() {
        let mut b = ovmf_solicit(1);
        // Replace the DUID-UUID (option 1, 18 bytes) by a DUID-LL of another MAC.
        b.splice(4..26, {
            let mut o = vec![0, 1, 0, 10, 0, 3, 0, 1];
            o.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x42]);
            o
        });
        let r = decode(&b).unwrap();
        let ll: Ipv6Addr = "fe80::5054:ff:fe12:3456".parse().unwrap();
        assert_eq!(r.mac(ll).unwrap().to_string(), "02:00:00:00:00:42");
        assert_eq!(r.uuid(), None);
    }

    #[test]
    fn eui64_source_addresses_give_the_mac_and_others_do_not() {
        let a: Ipv6Addr = "fe80::200:ff:fe00:42".parse().unwrap();
        assert_eq!(mac_from_eui64(a).unwrap().to_string(), "00:00:00:00:00:42");
        let privacy: Ipv6Addr = "fe80::1c2d:3e4f:5a6b:7c8d".parse().unwrap();
        assert_eq!(mac_from_eui64(privacy), None);
    }

    #[test]
    fn server_messages_and_broken_framing_are_malformed() {
        let mut b = ovmf_solicit(1);
        b[0] = 2;
        assert_eq!(decode(&b).unwrap_err(), Malformed::ServerMessage(2));
        let mut b = ovmf_solicit(1);
        b.truncate(b.len() - 1);
        assert!(matches!(
            decode(&b),
            Err(Malformed::Truncated {
                code: code::VENDOR_CLASS
            })
        ));
        // Option 61 with an odd length.
        let mut b = vec![1, 0, 0, 1];
        opt(&mut b, code::CLIENT_ID, &[0, 3, 0, 1, 1, 2, 3, 4, 5, 6]);
        opt(&mut b, code::CLIENT_ARCH, &[0, 7, 0]);
        assert_eq!(
            decode(&b).unwrap_err(),
            Malformed::BadLength {
                code: code::CLIENT_ARCH,
                len: 3
            }
        );
        assert_eq!(decode(&[1, 0]).unwrap_err(), Malformed::TooShort(2));
        assert_eq!(decode(&[1, 0, 0, 1]).unwrap_err(), Malformed::NoClientId);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn corrupted_solicit_never_panics(idx in 0usize..120, val in any::<u8>(), cut in 0usize..100) {
            let mut b = ovmf_solicit(1);
            if idx < b.len() { b[idx] = val; }
            let keep = b.len().saturating_sub(cut);
            b.truncate(keep);
            let _ = decode(&b);
        }
    }
}
