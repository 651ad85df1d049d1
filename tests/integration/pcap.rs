//! Reads the DHCP payloads out of the firmware captures in `tests/vectors`.

use std::path::PathBuf;

/// One UDP datagram of a capture.
#[derive(Debug, Clone)]
#[allow(dead_code)] // every field of the capture is kept for the tests to come
pub struct Datagram {
    pub src_port: u16,
    pub dst_port: u16,
    pub payload: Vec<u8>,
}

pub fn vector(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors")
        .join(name)
}

/// Every IPv4/UDP datagram of a classic pcap file with Ethernet framing.
pub fn udp_datagrams(name: &str) -> Vec<Datagram> {
    udp_datagrams_at(&vector(name))
}

/// Same, of a capture file anywhere (an empty or missing file has none).
pub fn udp_datagrams_at(path: &std::path::Path) -> Vec<Datagram> {
    let bytes = std::fs::read(path).unwrap_or_default();
    if bytes.len() < 24 {
        return Vec::new();
    }
    assert_eq!(
        &bytes[..4],
        &[0xd4, 0xc3, 0xb2, 0xa1],
        "little-endian pcap expected"
    );
    let mut out = Vec::new();
    let mut i = 24;
    while i + 16 <= bytes.len() {
        let caplen = u32::from_le_bytes(bytes[i + 8..i + 12].try_into().unwrap()) as usize;
        let frame = &bytes[i + 16..i + 16 + caplen];
        i += 16 + caplen;
        if frame.len() < 14 + 20 + 8 || frame[12..14] != [0x08, 0x00] {
            continue;
        }
        let ip = &frame[14..];
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        if ip[9] != 17 {
            continue;
        }
        let udp = &ip[ihl..];
        let len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
        out.push(Datagram {
            src_port: u16::from_be_bytes([udp[0], udp[1]]),
            dst_port: u16::from_be_bytes([udp[2], udp[3]]),
            payload: udp[8..len.min(udp.len())].to_vec(),
        });
    }
    out
}

/// Client requests (BOOTREQUEST) sent to `port` in a capture.
pub fn requests_to(name: &str, port: u16) -> Vec<Vec<u8>> {
    udp_datagrams(name)
        .into_iter()
        .filter(|d| d.dst_port == port && d.payload.first() == Some(&1))
        .map(|d| d.payload)
        .collect()
}
