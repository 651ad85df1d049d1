//! What bounds an HTTP peer, each proved by going past it: the idle timeout, the header
//! timeout, the cap on connections per client address and the cap in all.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::harness::{loopback_config, Server};

/// A server whose `[http]` section has these extra keys.
fn server_with(dir: &std::path::Path, http_keys: &str) -> Server {
    let config = format!("{}{http_keys}\n", loopback_config(dir, "proxy", ""));
    Server::start(dir, &config)
}

/// A connection to `to` from the loopback address `from` (any 127/8 address is local).
fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let local: SocketAddr = format!("{from}:0").parse().unwrap();
    s.bind(&local.into()).unwrap();
    s.connect_timeout(&to.into(), Duration::from_secs(5))
        .unwrap();
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

/// Sends one keep-alive GET and reads its response (head and `Content-Length` body); returns
/// the status and the body.
fn keep_alive_get(s: &mut TcpStream, path: &str) -> (u16, String) {
    write!(s, "GET {path} HTTP/1.1\r\nHost: netdeploy\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).unwrap(), 1, "connection closed mid-head");
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0; len];
    s.read_exact(&mut body).unwrap();
    (status, String::from_utf8(body).unwrap())
}

/// Reads until the server closes the connection (or the read timeout); returns what came and
/// whether the server closed it.
fn read_until_closed(s: &mut TcpStream) -> (String, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return (String::from_utf8_lossy(&got).into_owned(), true)
            }
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), false),
        }
    }
}

#[test]
fn idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_with(
        dir.path(),
        "idle_timeout_seconds = 1\nheader_timeout_seconds = 30",
    );
    let mut s = connect_from("127.0.0.1", server.http_addr());
    // Served, and kept open for the next request...
    assert_eq!(keep_alive_get(&mut s, "/healthz"), (200, "ok\n".into()));
    assert_eq!(keep_alive_get(&mut s, "/healthz"), (200, "ok\n".into()));
    // ...until it stays idle past the timeout: then the server closes it, with no answer.
    let (rest, closed) = read_until_closed(&mut s);
    assert!(closed, "an idle connection stayed open");
    assert_eq!(rest, "");
    // A connection that never sends a byte goes the same way.
    let mut silent = connect_from("127.0.0.1", server.http_addr());
    assert!(read_until_closed(&mut silent).1);
    assert_eq!(server.counter("http_connections_idle_closed"), 2);
}

#[test]
fn slow_request_head_is_cut_at_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_with(
        dir.path(),
        "header_timeout_seconds = 1\nidle_timeout_seconds = 60",
    );
    let mut s = connect_from("127.0.0.1", server.http_addr());
    let mut writer = s.try_clone().unwrap();
    // One header byte every 100 ms: the head would take 15 s to complete.
    let dribble = std::thread::spawn(move || {
        let head = format!(
            "GET /healthz HTTP/1.1\r\nX-Slow: {}\r\n\r\n",
            "a".repeat(150)
        );
        for b in head.bytes() {
            if writer.write_all(&[b]).is_err() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        true
    });
    let (answer, closed) = read_until_closed(&mut s);
    assert!(closed, "the slow sender was not cut");
    assert!(!answer.contains("200 OK"), "{answer}");
    drop(s);
    // The writer stops at its first failed write once the server has closed the socket.
    assert!(!dribble.join().unwrap(), "the whole head was accepted");
    assert_eq!(server.counter("http_connections_slow_header_closed"), 1);
    assert_eq!(server.counter("http_connections_idle_closed"), 0);
}

#[test]
fn connection_over_the_per_client_cap_is_refused_while_another_address_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_with(dir.path(), "max_connections_per_client = 2");
    let addr = server.http_addr();
    let mut first = connect_from("127.0.0.1", addr);
    let _second = connect_from("127.0.0.1", addr);
    assert_eq!(keep_alive_get(&mut first, "/healthz").0, 200);
    // The third from the same address is answered 503 and closed...
    let mut third = connect_from("127.0.0.1", addr);
    let (answer, closed) = read_until_closed(&mut third);
    assert!(closed);
    assert!(
        answer.starts_with("HTTP/1.1 503 ") && answer.contains("max_connections_per_client"),
        "{answer}"
    );
    // ...while another address is served.
    let mut other = connect_from("127.0.0.2", addr);
    assert_eq!(keep_alive_get(&mut other, "/healthz"), (200, "ok\n".into()));
    // A closed connection gives its slot back.
    drop(first);
    let mut again = retry_until_served("127.0.0.1", addr);
    assert_eq!(keep_alive_get(&mut again, "/healthz").0, 200);
    // The log line is read from the server's output a moment after the refusal was sent.
    assert!(server
        .wait_for_log(&["HTTP connection refused"], Duration::from_secs(10))
        .is_some());
}

#[test]
fn connection_over_the_total_cap_is_refused_for_every_address() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_with(
        dir.path(),
        "max_connections = 3\nmax_connections_per_client = 2",
    );
    let addr = server.http_addr();
    let mut held = vec![
        connect_from("127.0.0.1", addr),
        connect_from("127.0.0.1", addr),
        connect_from("127.0.0.2", addr),
    ];
    for s in &mut held {
        assert_eq!(keep_alive_get(s, "/healthz").0, 200);
    }
    let mut fourth = connect_from("127.0.0.3", addr);
    let (answer, closed) = read_until_closed(&mut fourth);
    assert!(closed);
    assert!(
        answer.starts_with("HTTP/1.1 503 ") && answer.contains("http.max_connections "),
        "{answer}"
    );
    drop(held);
    // The refusals of the retries while the slots come back count too.
    assert!(counter_when_served(&server, "http_connections_refused") >= 1);
    // The log line is read from the server's output a moment after the refusal was sent.
    assert!(server
        .wait_for_log(&["HTTP connection refused"], Duration::from_secs(10))
        .is_some());
    // The descriptors behind the cap: the server says what it raised its open file limit to.
    assert!(server.log().contains("open file limit (RLIMIT_NOFILE)"));
}

/// Connects from `from` until the server serves the connection rather than refusing it (a
/// dropped client socket is noticed by the server a moment later).
fn retry_until_served(from: &str, addr: SocketAddr) -> TcpStream {
    for _ in 0..100 {
        let mut s = connect_from(from, addr);
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut b = [0u8; 1];
        match s.read(&mut b) {
            // Nothing sent by the server: it waits for a request, so it was admitted.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                return s;
            }
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    panic!("the server never served a new connection from {from}");
}

/// A counter from `/metrics`, asked again while the server still refuses the connection.
fn counter_when_served(server: &Server, name: &str) -> u64 {
    let key = format!("netdeploy_{name}_total ");
    for _ in 0..100 {
        let (status, body) = crate::harness::http_get_status(server.http_addr(), "/metrics");
        if status == 200 {
            return String::from_utf8(body)
                .unwrap()
                .lines()
                .find_map(|l| l.strip_prefix(&key).map(|v| v.trim().parse().unwrap()))
                .unwrap_or_else(|| panic!("no counter {name}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("/metrics was never served");
}

#[test]
fn flood_of_idle_connections_leaves_tftp_answering_and_http_recovering() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_with(
        dir.path(),
        "max_connections = 100\nmax_connections_per_client = 100\nidle_timeout_seconds = 3",
    );
    let addr = server.http_addr();
    // Three times the cap, held open and silent: the first hundred take every slot, the rest
    // are answered 503 and closed at once, so they cost the server no descriptor.
    let flood: Vec<TcpStream> = (0..300)
        .map(|i| connect_from(&format!("127.0.0.{}", 1 + i % 3), addr))
        .collect();
    let tftp = server.tftp_addr();
    let out = std::process::Command::new("curl")
        .args(["-s", "--max-time", "10", "-o", "-"])
        .arg(format!("tftp://{tftp}/undionly.kpxe"))
        .output()
        .expect("run curl");
    assert_eq!(out.stdout, b"undionly.kpxe stand-in", "TFTP did not answer");
    // Once the idle ones are closed, a new client is served.
    let mut fresh = retry_until_served("127.0.0.9", addr);
    assert_eq!(keep_alive_get(&mut fresh, "/healthz"), (200, "ok\n".into()));
    let refused = counter_when_served(&server, "http_connections_refused");
    // Slots freed by idle closes let some of the later ones in, however slow the flood.
    assert!(refused >= 50, "refused {refused}");
    assert!(counter_when_served(&server, "http_connections_idle_closed") >= 100);
    drop(flood);
}
