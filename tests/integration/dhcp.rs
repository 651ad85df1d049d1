//! DHCP/PXE against the real server in test mode (ephemeral ports, unicast replies), fed with
//! the DISCOVER and REQUEST bytes real firmware sent (tests/vectors).

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use dhcproto::v4::{DhcpOption, Message, MessageType, OptionCode};
use dhcproto::Decodable;

use crate::harness::{loopback_config, Server};
use crate::pcap::requests_to;

fn exchange(to: SocketAddr, request: &[u8]) -> Option<Message> {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    s.send_to(request, to).unwrap();
    let mut buf = [0u8; 1500];
    let (n, _) = s.recv_from(&mut buf).ok()?;
    assert!(
        n >= 300,
        "reply of {n} bytes is not padded to the BOOTP minimum"
    );
    Some(Message::decode(&mut dhcproto::Decoder::new(&buf[..n])).unwrap())
}

fn file(m: &Message) -> String {
    m.fname_str()
        .unwrap()
        .unwrap()
        .trim_end_matches(char::from(0))
        .to_owned()
}

fn bootfile_option(m: &Message) -> String {
    match m.opts().get(OptionCode::BootfileName) {
        Some(DhcpOption::BootfileName(v)) => String::from_utf8(v.clone()).unwrap(),
        other => panic!("no option 67: {other:?}"),
    }
}

fn class(m: &Message) -> Option<Vec<u8>> {
    match m.opts().get(OptionCode::ClassIdentifier) {
        Some(DhcpOption::ClassIdentifier(v)) => Some(v.clone()),
        _ => None,
    }
}

#[test]
fn proxy_offer_to_ovmf_names_the_uefi_boot_file_and_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &loopback_config(dir.path(), "proxy", ""));
    let discover = &requests_to("uefi-ovmf-native_proxy.pcap", 67)[0];
    let offer = exchange(server.dhcp_addr(), discover).expect("proxy offer");
    assert_eq!(offer.opts().msg_type(), Some(MessageType::Offer));
    assert_eq!(
        offer.yiaddr(),
        Ipv4Addr::UNSPECIFIED,
        "a proxy offers no address"
    );
    assert_eq!(offer.siaddr(), Ipv4Addr::LOCALHOST);
    assert_eq!(file(&offer), "snponly.efi");
    assert_eq!(bootfile_option(&offer), "snponly.efi");
    assert_eq!(class(&offer).as_deref(), Some(&b"PXEClient"[..]));
    assert!(
        offer.opts().get(OptionCode::VendorExtensions).is_some(),
        "option 43"
    );
    assert!(matches!(
        offer.opts().get(OptionCode::ServerIdentifier),
        Some(DhcpOption::ServerIdentifier(a)) if *a == Ipv4Addr::LOCALHOST
    ));
    let line = server
        .wait_for_log(
            &["PXE boot reply", "arch=7", "arch_name=efi-x64"],
            Duration::from_secs(5),
        )
        .expect("the architecture is logged");
    assert!(
        line.contains("mode=\"proxy\"") || line.contains("mode=proxy"),
        "{line}"
    );
}

#[test]
fn ovmf_port_4011_request_gets_an_ack_with_the_boot_file() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &loopback_config(dir.path(), "proxy", ""));
    let request = &requests_to("uefi-ovmf-native_proxy.pcap", 4011)[0];
    let ack = exchange(server.pxe_addr(), request).expect("ACK on the PXE port");
    assert_eq!(ack.opts().msg_type(), Some(MessageType::Ack));
    assert_eq!(file(&ack), "snponly.efi");
    assert_eq!(
        ack.xid(),
        Message::decode(&mut dhcproto::Decoder::new(request))
            .unwrap()
            .xid()
    );
}

#[test]
fn ipxe_bios_client_is_sent_to_its_http_script_not_the_boot_file() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &loopback_config(dir.path(), "proxy", ""));
    let discover = &requests_to("bios-ipxe-rom_proxy.pcap", 67)[0];
    let offer = exchange(server.dhcp_addr(), discover).expect("proxy offer");
    let f = file(&offer);
    assert!(
        f.starts_with(&format!("{}/boot.ipxe?mac=", server.url())),
        "{f}"
    );
    assert!(f.contains("&arch=0"), "{f}");
    server
        .wait_for_log(
            &["PXE boot reply", "arch=0", "ipxe=true"],
            Duration::from_secs(5),
        )
        .expect("logged as iPXE BIOS");
    // The script it is sent to exists and, with no boot image configured, leaves to the disk.
    let path = f.strip_prefix(&server.url()).unwrap();
    let script = crate::harness::http_get(server.http_addr(), path);
    assert!(script.starts_with("#!ipxe"), "{script}");
    assert!(script.contains("exit"), "{script}");
}

#[test]
fn proxy_4011_mode_answers_only_on_the_pxe_port() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &loopback_config(dir.path(), "proxy-4011", ""));
    assert!(
        server.ready["dhcp"].as_array().unwrap().is_empty(),
        "{}",
        server.ready
    );
    let request = &requests_to("uefi-ovmf-native_proxy.pcap", 4011)[0];
    let ack = exchange(server.pxe_addr(), request).expect("ACK on the PXE port");
    assert_eq!(file(&ack), "snponly.efi");
}

#[test]
fn non_pxe_and_unknown_architecture_requests_get_no_answer_in_proxy_mode() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &loopback_config(dir.path(), "proxy", ""));
    let mut discover = requests_to("uefi-ovmf-native_proxy.pcap", 67)[0].clone();
    // Option 93 = 0x0007 -> 0x000c (an architecture netdeploy does not boot).
    let at = discover
        .windows(4)
        .position(|w| w == [93, 2, 0, 7])
        .unwrap();
    discover[at + 3] = 12;
    assert!(exchange(server.dhcp_addr(), &discover).is_none());
    server
        .wait_for_log(
            &["PXE request not answered", "architecture 12"],
            Duration::from_secs(5),
        )
        .expect("unknown architecture logged");
    // A plain DHCP client (option 60 not PXEClient).
    let at = discover.windows(9).position(|w| w == b"PXEClient").unwrap();
    discover[at..at + 9].copy_from_slice(b"MSFT 5.0 ");
    assert!(exchange(server.dhcp_addr(), &discover).is_none());
    assert_eq!(server.counter("dhcp_ignored_unknown_arch"), 1);
    assert_eq!(server.counter("dhcp_ignored_not_pxe"), 1);
}

#[test]
fn dhcp_mode_lease_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = loopback_config(
        dir.path(),
        "dhcp",
        "range = [\"127.0.0.100\", \"127.0.0.199\"]\nlease_seconds = 600",
    );
    let discover = &requests_to("bios-ipxe-rom_full-dhcp.pcap", 67)[0];
    let request = requests_to("bios-ipxe-rom_full-dhcp.pcap", 67)
        .into_iter()
        .find(|r| {
            Message::decode(&mut dhcproto::Decoder::new(r))
                .unwrap()
                .opts()
                .msg_type()
                == Some(MessageType::Request)
        })
        .unwrap();
    let first = {
        let server = Server::start(dir.path(), &config);
        let offer = exchange(server.dhcp_addr(), discover).expect("offer");
        assert_eq!(offer.opts().msg_type(), Some(MessageType::Offer));
        let ip = offer.yiaddr();
        assert!(ip >= Ipv4Addr::new(127, 0, 0, 100) && ip <= Ipv4Addr::new(127, 0, 0, 199));
        // The captured REQUEST names the reference server (10.77.0.1): a client that chose
        // another server is not answered.
        assert!(exchange(server.dhcp_addr(), &request).is_none());
        // Addressed to us but for the address the reference server gave (10.77.0.193): NAK.
        let mut mine = request.clone();
        let sid = mine.windows(2).position(|w| w == [54, 4]).unwrap();
        mine[sid + 2..sid + 6].copy_from_slice(&Ipv4Addr::LOCALHOST.octets());
        let nak = exchange(server.dhcp_addr(), &mine).expect("nak");
        assert_eq!(nak.opts().msg_type(), Some(MessageType::Nak));
        let at = mine.windows(2).position(|w| w == [50, 4]).unwrap();
        mine[at + 2..at + 6].copy_from_slice(&ip.octets());
        let ack = exchange(server.dhcp_addr(), &mine).expect("ack");
        assert_eq!(ack.opts().msg_type(), Some(MessageType::Ack));
        assert_eq!(ack.yiaddr(), ip);
        assert!(
            file(&ack).contains("/boot.ipxe?mac="),
            "iPXE gets its script in full mode too"
        );
        ip
    };
    let server = Server::start(dir.path(), &config);
    let offer = exchange(server.dhcp_addr(), discover).expect("offer after restart");
    assert_eq!(offer.yiaddr(), first, "the same address after a restart");
}

#[test]
fn malformed_datagrams_are_counted_and_the_server_keeps_answering() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &loopback_config(dir.path(), "proxy", ""));
    let good = requests_to("uefi-ovmf-native_proxy.pcap", 67)[0].clone();
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut bad: Vec<Vec<u8>> = vec![
        vec![],
        vec![1],
        vec![0xff; 1000],
        good[..240].to_vec(),
        good[..good.len() - 20].to_vec(),
    ];
    // Every option length byte set to 255 (runs past the end).
    let mut long = good.clone();
    long[241] = 255;
    bad.push(long);
    // Option 93 with a bad length.
    let mut odd = good.clone();
    let at = odd.windows(2).position(|w| w == [93, 2]).unwrap();
    odd[at + 1] = 1;
    bad.push(odd);
    // Pseudo-random junk with a valid header start.
    let mut x: u32 = 0x1234_5678;
    for len in [236usize, 300, 548, 1400] {
        let mut b = good[..240.min(good.len())].to_vec();
        while b.len() < len {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            b.push(x as u8);
        }
        bad.push(b);
    }
    for b in &bad {
        s.send_to(b, server.dhcp_addr()).unwrap();
    }
    let offer = exchange(server.dhcp_addr(), &good).expect("still answering");
    assert_eq!(file(&offer), "snponly.efi");
    assert!(
        server.counter("dhcp_malformed") >= 7,
        "malformed counted: {}",
        server.counter("dhcp_malformed")
    );
}
