//! Network boot over IPv6 against the real server on ::1 (test mode: ephemeral ports, replies
//! to the sender): DHCPv6 answers with the boot file URL, TFTP and HTTP serve over IPv6, and a
//! machine that came over IPv6 gets bracketed IPv6 URLs in its iPXE script.

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::Duration;

use crate::harness::{loopback_config, Server};

const IPV6: &str = "\n[ipv6]\nenabled = true\ndhcp_port = 0\nproxy_port = 0\n";

/// The MAC the test machine's DUID-LL carries.
const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x0d, 0x06, 0x01];

fn opt(out: &mut Vec<u8>, code: u16, value: &[u8]) {
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(&(value.len() as u16).to_be_bytes());
    out.extend_from_slice(value);
}

fn duid_ll() -> Vec<u8> {
    let mut d = vec![0, 3, 0, 1];
    d.extend_from_slice(&MAC);
    d
}

/// A SOLICIT as UEFI's PXE base code sends it: IA_NA, option request, architecture 7 and
/// the vendor class under enterprise 343.
fn uefi_solicit() -> Vec<u8> {
    let mut b = vec![1, 0x11, 0x22, 0x33];
    opt(&mut b, 1, &duid_ll());
    opt(&mut b, 8, &[0, 0]);
    opt(&mut b, 3, &[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
    opt(&mut b, 6, &[0, 59, 0, 60, 0, 23, 0, 16]);
    opt(&mut b, 61, &[0, 7]);
    let vendor = b"PXEClient:Arch:00007:UNDI:003000";
    let mut vc = 343u32.to_be_bytes().to_vec();
    vc.extend_from_slice(&(vendor.len() as u16).to_be_bytes());
    vc.extend_from_slice(vendor);
    opt(&mut b, 16, &vc);
    b
}

/// An INFORMATION-REQUEST as iPXE sends it, with its user class.
fn ipxe_information_request() -> Vec<u8> {
    let mut b = vec![11, 0x44, 0x55, 0x66];
    opt(&mut b, 1, &duid_ll());
    opt(&mut b, 6, &[0, 23, 0, 59]);
    opt(&mut b, 15, &[0, 4, b'i', b'P', b'X', b'E']);
    b
}

/// The `(code, value)` options of a reply.
fn options(reply: &[u8]) -> Vec<(u16, Vec<u8>)> {
    let mut out = Vec::new();
    let mut i = 4;
    while i + 4 <= reply.len() {
        let code = u16::from_be_bytes([reply[i], reply[i + 1]]);
        let len = usize::from(u16::from_be_bytes([reply[i + 2], reply[i + 3]]));
        out.push((code, reply[i + 4..i + 4 + len].to_vec()));
        i += 4 + len;
    }
    assert_eq!(i, reply.len(), "options fill the reply exactly");
    out
}

fn exchange(to: SocketAddr, request: &[u8]) -> Option<Vec<u8>> {
    let s = UdpSocket::bind("[::1]:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    s.send_to(request, to).unwrap();
    let mut buf = [0u8; 1500];
    let (n, _) = s.recv_from(&mut buf).ok()?;
    Some(buf[..n].to_vec())
}

fn boot_url(reply: &[u8]) -> String {
    let (_, v) = options(reply)
        .into_iter()
        .find(|(c, _)| *c == 59)
        .expect("option 59");
    String::from_utf8(v).unwrap()
}

/// `"lo [::1]:PORT"` from the startup line's `ipv6` object.
fn addr(server: &Server, key: &str) -> SocketAddr {
    let s = server.ready["ipv6"][key][0].as_str().unwrap();
    let s = s.split_once(' ').map_or(s, |(_, a)| a);
    s.parse().unwrap()
}

fn curl(url: &str) -> (bool, Vec<u8>) {
    let out = Command::new("curl")
        .args(["-sS", "-g", "--max-time", "20", url])
        .output()
        .expect("curl (Debian package curl)");
    (out.status.success(), out.stdout)
}

#[test]
fn dhcpv6_solicit_and_port_4011_request_get_the_tftp_url_which_tftp_serves_over_ipv6() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &loopback_config(dir.path(), "proxy", IPV6));
    assert_eq!(server.ready["ipv6"]["address"], "::1");

    let advertise = exchange(addr(&server, "dhcp"), &uefi_solicit()).expect("ADVERTISE");
    assert_eq!(advertise[0], 2, "ADVERTISE");
    assert_eq!(advertise[1..4], [0x11, 0x22, 0x33], "same transaction id");
    let opts = options(&advertise);
    assert!(
        opts.iter().all(|(c, _)| *c != 3),
        "a proxy offers no address"
    );
    let vendor = &opts.iter().find(|(c, _)| *c == 16).expect("option 16").1;
    assert_eq!(vendor[..4], 343u32.to_be_bytes());
    assert_eq!(&vendor[6..], b"PXEClient");
    let url = boot_url(&advertise);
    assert_eq!(url, "tftp://[::1]/snponly.efi");
    let server_id = opts
        .iter()
        .find(|(c, _)| *c == 2)
        .expect("server id")
        .1
        .clone();

    // UEFI then asks the server it chose on port 4011, naming it.
    let mut request = uefi_solicit();
    request[0] = 3;
    opt(&mut request, 2, &server_id);
    let s = UdpSocket::bind("[::1]:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.send_to(&request, addr(&server, "pxe")).unwrap();
    let mut buf = [0u8; 1500];
    let n = s.recv(&mut buf).expect("REPLY on 4011");
    let reply = buf[..n].to_vec();
    assert_eq!(reply[0], 7, "REPLY");
    assert_eq!(boot_url(&reply), url);
    // UEFI may not listen yet when the first copy comes: a second one follows.
    let n = s.recv(&mut buf).expect("the REPLY again");
    assert_eq!(buf[..n], reply[..]);

    // The file the URL names comes over TFTP on IPv6.
    let tftp = addr(&server, "tftp");
    let (ok, body) = curl(&format!("tftp://[::1]:{}/snponly.efi", tftp.port()));
    assert!(ok, "TFTP over IPv6 failed");
    assert_eq!(body, b"snponly.efi stand-in");

    server
        .wait_for_log(
            &[
                "PXE boot reply (DHCPv6)",
                "52:54:00:0d:06:01",
                "arch_name=efi-x64",
            ],
            Duration::from_secs(5),
        )
        .expect("the reply is logged with the machine's MAC");
}

#[test]
fn ipxe_over_ipv6_is_sent_to_its_script_whose_urls_are_bracketed_ipv6() {
    let dir = tempfile::tempdir().unwrap();
    let kernel = dir.path().join("vmlinuz");
    std::fs::write(&kernel, b"kernel bytes").unwrap();
    let extra = format!(
        "{IPV6}[boot.image]\nkernel = {:?}\ncmdline = \"console=ttyS0\"\n",
        kernel.display().to_string()
    );
    let server = Server::start(dir.path(), &loopback_config(dir.path(), "proxy", &extra));
    let reply =
        exchange(addr(&server, "dhcp"), &ipxe_information_request()).expect("REPLY to iPXE");
    assert_eq!(reply[0], 7, "REPLY");
    let url = boot_url(&reply);
    let http = addr(&server, "http");
    assert_eq!(
        url,
        format!(
            "http://[::1]:{}/boot.ipxe?mac=52-54-00-0d-06-01",
            http.port()
        )
    );
    let (ok, script) = curl(&url);
    assert!(ok, "HTTP over IPv6 failed");
    let script = String::from_utf8(script).unwrap();
    assert!(script.starts_with("#!ipxe"), "{script}");
    assert!(
        script.contains(&format!("http://[::1]:{}/image/kernel", http.port())),
        "the kernel URL is the IPv6 one:\n{script}"
    );
    assert!(
        script.contains(&format!("netdeploy.server=http://[::1]:{}", http.port())),
        "the boot image is told the IPv6 server:\n{script}"
    );
}

#[test]
fn malformed_dhcpv6_datagrams_are_dropped_and_counted_and_plain_clients_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &loopback_config(dir.path(), "proxy", IPV6));
    let to = addr(&server, "dhcp");
    // Option 61 with an odd length; then a truncated option.
    let mut odd = vec![1, 0, 0, 1];
    opt(&mut odd, 1, &duid_ll());
    opt(&mut odd, 61, &[0, 7, 0]);
    assert_eq!(exchange(to, &odd), None);
    let mut cut = uefi_solicit();
    cut.truncate(cut.len() - 3);
    assert_eq!(exchange(to, &cut), None);
    // dhclient -6: DUID-LLT, IA_NA, no class and no architecture.
    let mut plain = vec![1, 0, 0, 2];
    opt(
        &mut plain,
        1,
        &[0, 1, 0, 1, 1, 2, 3, 4, 0x52, 0x54, 0, 0, 0, 9],
    );
    opt(&mut plain, 3, &[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(exchange(to, &plain), None);
    // The server still answers afterwards.
    assert!(exchange(to, &uefi_solicit()).is_some());
    let metrics = curl(&format!(
        "http://[::1]:{}/metrics",
        addr(&server, "http").port()
    ));
    let metrics = String::from_utf8(metrics.1).unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.contains("dhcp6_malformed") && l.trim_end().ends_with(" 2")),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.contains("dhcp6_ignored_not_pxe") && l.trim_end().ends_with(" 1")),
        "{metrics}"
    );
}

/// `netdeploy explain --ipv6` runs the same decision and says how the machine is answered
/// over IPv6 under the configuration, or that IPv6 is off.
#[test]
fn explain_shows_the_ipv6_path_or_that_ipv6_is_off() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("netdeploy.toml");
    let explain = |toml: &str| {
        std::fs::write(&config, toml).unwrap();
        let out = Command::new(crate::harness::binary())
            .args([
                "explain",
                "--mac",
                "52:54:00:0d:06:02",
                "--arch",
                "7",
                "--ipv6",
            ])
            .env_remove("NETDEPLOY_DATA_DIR")
            .env("NETDEPLOY_CONFIG", &config)
            .env("NO_COLOR", "1")
            .output()
            .expect("run netdeploy");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{text}");
        text
    };
    let data = dir.path().join("data").display().to_string();
    let site = dir.path().join("site.toml");
    std::fs::write(&site, "site_code = \"LAB\"\n").unwrap();
    crate::harness::cli_ok(
        &dir.path().join("data"),
        &["site", "apply", site.to_str().unwrap()],
    );
    let on = explain(&format!(
        "[server]\ndata_dir = {data:?}\n[ipv6]\nenabled = true\naddress = \"fd77::1\"\n"
    ));
    assert!(
        on.contains("ipv6:") && on.contains("tftp://[fd77::1]/FILE") && on.contains("port 4011"),
        "{on}"
    );
    assert!(on.contains("http://[fd77::1]:PORT/boot.ipxe"), "{on}");
    let off = explain(&format!("[server]\ndata_dir = {data:?}\n"));
    assert!(
        off.contains("ipv6:") && off.contains("enabled = false"),
        "{off}"
    );
}

#[test]
fn check_says_where_ipv6_is_served_or_that_it_is_off() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("netdeploy.toml");
    let check = |text: &str| {
        std::fs::write(&config, text).unwrap();
        let out = Command::new(crate::harness::binary())
            .args(["check", "--config"])
            .arg(&config)
            .env("NO_COLOR", "1")
            .output()
            .expect("run netdeploy");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{text}");
        text
    };
    let on = check(&loopback_config(dir.path(), "proxy", IPV6));
    assert!(on.contains("ipv6: ::1 on lo (::1)"), "{on}");
    let off = check(&loopback_config(dir.path(), "proxy", ""));
    assert!(off.contains("ipv6: off"), "{off}");
}

/// HTTP on IPv6 holds a client to the same limits: past `max_connections_per_client` from
/// one IPv6 address a connection is answered 503 and closed.
#[test]
fn http_on_ipv6_refuses_a_connection_over_the_per_client_cap() {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}max_connections_per_client = 2\n",
        loopback_config(dir.path(), "proxy", IPV6)
    );
    let server = Server::start(dir.path(), &config);
    let http = addr(&server, "http");
    let connect = || {
        let s = TcpStream::connect_timeout(&http, Duration::from_secs(5)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s
    };
    let mut first = connect();
    let _second = connect();
    write!(first, "GET /healthz HTTP/1.1\r\nHost: [::1]\r\n\r\n").unwrap();
    let mut buf = [0u8; 512];
    let n = first.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200 "));
    let mut third = connect();
    let mut answer = Vec::new();
    let _ = third.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 503 ") && answer.contains("max_connections_per_client"),
        "{answer}"
    );
}
