//! The TFTP server in-process on 127.0.0.1 with an ephemeral port and a temporary root, against
//! real clients run as subprocesses (curl, atftp, tftp-hpa) and a raw UDP socket for what no
//! client does on purpose (an ERROR after the OACK, garbage, holding a transfer open).
//!
//! A missing client fails the test with the Debian package to install: CI installs them.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use netdeploy::counters::Counters;
use netdeploy::tftp::packet::{ErrorCode, Mode, Packet, Request};
use netdeploy::tftp::{server, TftpSettings};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Pseudo-random bytes, the same for the same length.
fn content(len: usize) -> Vec<u8> {
    let mut x = 0x2545_f491_4f6c_dd1d_u64 ^ len as u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

struct Server {
    addr: SocketAddr,
    port: u16,
    root: tempfile::TempDir,
    counters: Arc<Counters>,
    cancel: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start() -> Server {
        Server::start_with(|_| {}).await
    }

    async fn start_with(tweak: impl FnOnce(&mut TftpSettings)) -> Server {
        let root = tempfile::tempdir().unwrap();
        let mut settings = TftpSettings {
            root: root.path().to_owned(),
            max_transfers: 8,
            max_transfers_per_client: 8,
            max_blksize: 65464,
            max_windowsize: 64,
            timeout: Duration::from_secs(1),
            retries: 5,
            fragmented_windows: false,
            provided: Default::default(),
            generator: None,
        };
        tweak(&mut settings);
        let socket = server::bind_listener(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).unwrap();
        let addr = socket.local_addr().unwrap();
        let counters = Arc::new(Counters::default());
        let cancel = CancellationToken::new();
        let task = tokio::spawn(server::serve(
            socket,
            Arc::new(settings),
            Arc::clone(&counters),
            cancel.clone(),
        ));
        Server {
            addr,
            port: addr.port(),
            root,
            counters,
            cancel,
            task,
        }
    }

    fn put(&self, name: &str, bytes: &[u8]) -> Vec<u8> {
        let path = self.root.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
        bytes.to_vec()
    }

    fn count(&self, pick: impl Fn(&Counters) -> &std::sync::atomic::AtomicU64) -> u64 {
        pick(&self.counters).load(Ordering::Relaxed)
    }

    /// Waits up to `within` for a counter to reach `value`; returns how long it took.
    async fn wait_count(
        &self,
        pick: impl Fn(&Counters) -> &std::sync::atomic::AtomicU64,
        value: u64,
        within: Duration,
    ) -> Duration {
        let start = Instant::now();
        while self.count(&pick) < value {
            assert!(
                start.elapsed() < within,
                "counter stayed at {} (wanted {value}) for {within:?}",
                self.count(&pick)
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        start.elapsed()
    }

    async fn stop(self) {
        self.cancel.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("server did not stop")
            .unwrap()
            .unwrap();
    }
}

/// The path of `program`, or a failure naming the Debian package that provides it.
fn require(program: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!("`{program}` is not installed: install the Debian package `{package}` (apt-get install {package})")
        })
}

/// Runs a client with a time limit, off the runtime's thread so the server keeps running.
async fn run(program: &str, package: &str, args: Vec<String>, dir: &Path) -> Output {
    let program = require(program, package);
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || {
        Command::new("timeout")
            .arg("60")
            .arg(&program)
            .args(&args)
            .current_dir(dir)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn assert_success(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed with {}: {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

async fn curl_get(server: &Server, name: &str, extra: &[&str], out: &Path) -> Output {
    let mut args: Vec<String> = vec![
        "-s".into(),
        "--max-time".into(),
        "30".into(),
        format!("tftp://127.0.0.1:{}/{name}", server.port),
        "-o".into(),
        out.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    run("curl", "curl", args, out.parent().unwrap()).await
}

async fn atftp_get(server: &Server, name: &str, options: &[&str], out: &Path) -> Output {
    let mut args = Vec::new();
    for option in options {
        args.push("--option".to_string());
        args.push(option.to_string());
    }
    args.extend([
        "-g".into(),
        "-r".into(),
        name.into(),
        "-l".into(),
        out.display().to_string(),
        "127.0.0.1".into(),
        server.port.to_string(),
    ]);
    run("atftp", "atftp", args, out.parent().unwrap()).await
}

async fn tftp_hpa_get(server: &Server, name: &str, out: &Path) -> Output {
    let args = vec![
        "-m".into(),
        "binary".into(),
        "127.0.0.1".into(),
        server.port.to_string(),
        "-c".into(),
        "get".into(),
        name.into(),
        out.display().to_string(),
    ];
    run("tftp", "tftp-hpa", args, out.parent().unwrap()).await
}

fn assert_same(out: &Path, expected: &[u8], what: &str) {
    let got = std::fs::read(out).unwrap_or_else(|e| panic!("{what}: no output file: {e}"));
    assert!(
        got == expected,
        "{what}: got {} bytes, expected {} bytes, first difference at {:?}",
        got.len(),
        expected.len(),
        got.iter().zip(expected).position(|(a, b)| a != b)
    );
}

#[tokio::test]
async fn curl_downloads_are_byte_identical_with_blksize_1468() {
    let server = Server::start().await;
    let files = [
        ("random.bin", server.put("random.bin", &content(3 << 20))),
        ("whole.bin", server.put("whole.bin", &content(1468 * 700))),
    ];
    let out = tempfile::tempdir().unwrap();
    for (name, expected) in &files {
        let target = out.path().join(name);
        let output = curl_get(&server, name, &["--tftp-blksize", "1468"], &target).await;
        assert_success(&output, name);
        assert_same(&target, expected, name);
    }
    // curl rejects an OACK whose tsize is 0 (which RFC 2349 allows), so the empty file goes
    // without options.
    server.put("empty.bin", b"");
    let target = out.path().join("empty.bin");
    let output = curl_get(&server, "empty.bin", &["--tftp-no-options"], &target).await;
    assert_success(&output, "empty.bin");
    assert_same(&target, b"", "empty.bin");
    // The client is done once it has sent the last ACK, which the server may still be reading.
    server
        .wait_count(|c| &c.tftp_transfers_completed, 3, Duration::from_secs(2))
        .await;
    assert!(server.count(|c| &c.tftp_bytes_sent) >= (3 << 20) + 1468 * 700);
    server.stop().await;
}

#[tokio::test]
async fn atftp_downloads_are_byte_identical_with_windowsize_16() {
    let server = Server::start().await;
    let files = [
        ("random.bin", server.put("random.bin", &content(3 << 20))),
        (
            "whole.bin",
            server.put("whole.bin", &content(1468 * 16 * 40)),
        ),
        ("empty.bin", server.put("empty.bin", b"")),
    ];
    let out = tempfile::tempdir().unwrap();
    for (name, expected) in &files {
        let target = out.path().join(name);
        let output = atftp_get(
            &server,
            name,
            &["windowsize 16", "blksize 1468", "tsize 0"],
            &target,
        )
        .await;
        assert_success(&output, name);
        assert_same(&target, expected, name);
    }
    // The client is done once it has sent the last ACK, which the server may still be reading.
    server
        .wait_count(|c| &c.tftp_transfers_completed, 3, Duration::from_secs(2))
        .await;
    server.stop().await;
}

#[tokio::test]
async fn tftp_hpa_downloads_are_byte_identical_in_lock_step() {
    let server = Server::start().await;
    let files = [
        ("random.bin", server.put("random.bin", &content(1 << 20))),
        ("whole.bin", server.put("whole.bin", &content(512 * 300))),
        ("empty.bin", server.put("empty.bin", b"")),
    ];
    let out = tempfile::tempdir().unwrap();
    for (name, expected) in &files {
        let target = out.path().join(name);
        let output = tftp_hpa_get(&server, name, &target).await;
        assert_success(&output, name);
        assert_same(&target, expected, name);
    }
    // The client is done once it has sent the last ACK, which the server may still be reading.
    server
        .wait_count(|c| &c.tftp_transfers_completed, 3, Duration::from_secs(2))
        .await;
    server.stop().await;
}

#[tokio::test]
async fn block_numbers_wrap_past_65535_for_a_file_over_32_mib() {
    let server = Server::start().await;
    let expected = server.put("big.bin", &content(512 * 65_536 + 1000));
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("big.bin");
    let output = atftp_get(
        &server,
        "big.bin",
        &["windowsize 32", "blksize 512"],
        &target,
    )
    .await;
    assert_success(&output, "big.bin");
    assert_same(&target, &expected, "big.bin");
    server.stop().await;
}

#[tokio::test]
async fn windows_style_path_in_another_case_is_served() {
    let server = Server::start().await;
    let expected = server.put("SUB/file.bin", &content(5000));
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("file.bin");
    let output = atftp_get(&server, "\\sub\\File.BIN", &["blksize 1468"], &target).await;
    assert_success(&output, "\\sub\\File.BIN");
    assert_same(&target, &expected, "\\sub\\File.BIN");
    // GRUB's leading slash is relative to the root too.
    let output = curl_get(&server, "/sub/FILE.bin", &[], &target).await;
    assert_success(&output, "/sub/FILE.bin");
    assert_same(&target, &expected, "/sub/FILE.bin");
    server.stop().await;
}

/// A raw client socket.
struct Raw {
    socket: UdpSocket,
}

impl Raw {
    async fn new() -> Raw {
        Raw::from_address(Ipv4Addr::LOCALHOST).await
    }

    /// A client on another loopback address (any 127/8 address is local).
    async fn from_address(ip: Ipv4Addr) -> Raw {
        Raw {
            socket: UdpSocket::bind((ip, 0)).await.unwrap(),
        }
    }

    async fn send(&self, to: SocketAddr, bytes: &[u8]) {
        self.socket.send_to(bytes, to).await.unwrap();
    }

    async fn rrq(&self, server: &Server, name: &str, options: &[(&str, &str)]) {
        let request = Packet::Rrq(Request {
            filename: name.to_owned(),
            mode: Mode::Octet,
            options: options
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        });
        self.send(server.addr, &request.to_bytes()).await;
    }

    /// The next datagram, within two seconds.
    async fn recv(&self) -> (Vec<u8>, SocketAddr) {
        let mut buf = vec![0u8; 70_000];
        let (len, from) =
            tokio::time::timeout(Duration::from_secs(2), self.socket.recv_from(&mut buf))
                .await
                .expect("no reply within 2 s")
                .unwrap();
        buf.truncate(len);
        (buf, from)
    }

    /// The next datagram, which must be an ERROR; returns its code and the sender.
    async fn expect_error(&self) -> (ErrorCode, String, SocketAddr) {
        let (bytes, from) = self.recv().await;
        match Packet::parse(&bytes) {
            Ok(Packet::Error { code, message }) => (code, message, from),
            other => panic!("expected an ERROR, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn escapes_from_the_root_are_refused_with_an_error() {
    let server = Server::start().await;
    server.put("sub/inside.bin", b"inside");
    let outside = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(outside.path(), b"secret").unwrap();
    std::os::unix::fs::symlink(outside.path(), server.root.path().join("escape.bin")).unwrap();
    let raw = Raw::new().await;
    for name in [
        "../etc/passwd",
        "sub/../../etc/passwd",
        "..\\..\\etc\\passwd",
        "escape.bin",
        "ESCAPE.BIN",
    ] {
        raw.rrq(&server, name, &[]).await;
        let (code, message, _) = raw.expect_error().await;
        assert_eq!(code, ErrorCode::AccessViolation, "{name}: {message}");
    }
    // An absolute host path is looked up under the root, where it does not exist.
    raw.rrq(&server, "/etc/passwd", &[]).await;
    let (code, _, _) = raw.expect_error().await;
    assert_eq!(code, ErrorCode::FileNotFound);
    assert_eq!(server.count(|c| &c.tftp_refused), 6);
    assert_eq!(server.count(|c| &c.tftp_transfers_started), 0);
    // And a real client gets an error, not the file.
    let out = tempfile::tempdir().unwrap();
    let output = curl_get(&server, "escape.bin", &[], &out.path().join("x")).await;
    assert!(!output.status.success());
    server.stop().await;
}

#[tokio::test]
async fn missing_file_gets_file_not_found() {
    let server = Server::start().await;
    let raw = Raw::new().await;
    raw.rrq(&server, "grub/grub.cfg-01-52-54-00-12-34-56", &[])
        .await;
    let (code, _, from) = raw.expect_error().await;
    assert_eq!(code, ErrorCode::FileNotFound);
    // From the transfer's own port, as RFC 1350 section 4 has every reply to a request.
    assert_ne!(from, server.addr);
    let out = tempfile::tempdir().unwrap();
    let output = tftp_hpa_get(&server, "nothing-here", &out.path().join("x")).await;
    assert!(String::from_utf8_lossy(&output.stdout).contains("Error code 1"));
    server.stop().await;
}

#[tokio::test]
async fn write_request_is_refused_by_the_read_only_server() {
    let server = Server::start().await;
    let raw = Raw::new().await;
    let wrq = Packet::Wrq(Request {
        filename: "upload.bin".into(),
        mode: Mode::Octet,
        options: vec![],
    });
    raw.send(server.addr, &wrq.to_bytes()).await;
    let (code, _, _) = raw.expect_error().await;
    assert_eq!(code, ErrorCode::AccessViolation);
    assert!(!server.root.path().join("upload.bin").exists());
    assert_eq!(server.count(|c| &c.tftp_refused), 1);
    server.stop().await;
}

#[tokio::test]
async fn client_error_after_the_oack_ends_the_transfer_at_once_and_frees_the_slot() {
    // UEFI firmware asks for tsize, reads the OACK and aborts (docs/network-boot.md).
    let server = Server::start_with(|s| {
        s.max_transfers = 1;
        s.timeout = Duration::from_secs(5);
    })
    .await;
    server.put("bootx64.efi", &content(100_000));
    let raw = Raw::new().await;
    raw.rrq(
        &server,
        "bootx64.efi",
        &[("tsize", "0"), ("blksize", "1468")],
    )
    .await;
    let (oack, transfer) = raw.recv().await;
    assert_eq!(
        Packet::parse(&oack).unwrap(),
        Packet::Oack {
            options: vec![
                ("tsize".into(), "100000".into()),
                ("blksize".into(), "1468".into())
            ]
        }
    );
    let sent = Instant::now();
    raw.send(
        transfer,
        &Packet::Error {
            code: ErrorCode::OptionsRefused,
            message: "size probe".into(),
        }
        .to_bytes(),
    )
    .await;
    let took = server
        .wait_count(|c| &c.tftp_transfers_aborted, 1, Duration::from_secs(1))
        .await;
    assert!(sent.elapsed() < Duration::from_millis(500), "{took:?}");
    // The only slot is free again: the real download that follows is served.
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("bootx64.efi");
    let output = atftp_get(
        &server,
        "bootx64.efi",
        &["windowsize 4", "tsize 0"],
        &target,
    )
    .await;
    assert_success(&output, "download after the probe");
    assert_same(&target, &content(100_000), "bootx64.efi");
    assert_eq!(server.count(|c| &c.tftp_transfers_timed_out), 0);
    assert_eq!(server.count(|c| &c.tftp_refused), 0);
    server.stop().await;
}

#[tokio::test]
async fn transfers_over_the_bound_get_a_busy_error() {
    let server = Server::start_with(|s| s.max_transfers = 1).await;
    server.put("a.bin", &content(10_000));
    let holder = Raw::new().await;
    holder.rrq(&server, "a.bin", &[("tsize", "0")]).await;
    let (_, transfer) = holder.recv().await;
    let second = Raw::new().await;
    second.rrq(&server, "a.bin", &[]).await;
    let (code, message, _) = second.expect_error().await;
    assert_eq!(code, ErrorCode::NotDefined);
    assert!(message.contains("busy"), "{message}");
    assert_eq!(server.count(|c| &c.tftp_refused), 1);
    holder
        .send(
            transfer,
            &Packet::Error {
                code: ErrorCode::NotDefined,
                message: String::new(),
            }
            .to_bytes(),
        )
        .await;
    server
        .wait_count(|c| &c.tftp_transfers_aborted, 1, Duration::from_secs(1))
        .await;
    server.stop().await;
}

#[tokio::test]
async fn client_over_its_transfer_share_is_refused_while_another_address_is_served() {
    let server = Server::start_with(|s| s.max_transfers_per_client = 2).await;
    server.put("a.bin", &content(10_000));
    // Two transfers held open from 127.0.0.1 (OACKs never acknowledged)...
    let mut held = Vec::new();
    for _ in 0..2 {
        let raw = Raw::new().await;
        raw.rrq(&server, "a.bin", &[("tsize", "0")]).await;
        let (oack, _) = raw.recv().await;
        assert!(matches!(Packet::parse(&oack), Ok(Packet::Oack { .. })));
        held.push(raw);
    }
    // ...and a third from the same address is refused, though slots are free...
    let third = Raw::new().await;
    third.rrq(&server, "a.bin", &[]).await;
    let (code, message, _) = third.expect_error().await;
    assert_eq!(code, ErrorCode::NotDefined);
    assert!(message.contains("busy"), "{message}");
    // ...while another address is served.
    let other = Raw::from_address(Ipv4Addr::new(127, 0, 0, 2)).await;
    other.rrq(&server, "a.bin", &[]).await;
    let (data, _) = other.recv().await;
    assert!(
        matches!(Packet::parse(&data), Ok(Packet::Data { block: 1, .. })),
        "{data:?}"
    );
    assert_eq!(server.count(|c| &c.tftp_refused), 1);
    server.stop().await;
}

#[tokio::test]
async fn stalled_transfers_give_way_to_a_waiting_client() {
    // Transfers that would outlive the test: 50 retries at 100 ms after the first ones.
    let server = Server::start_with(|s| {
        s.max_transfers = 2;
        s.max_transfers_per_client = 2;
        s.timeout = Duration::from_millis(100);
        s.retries = 50;
    })
    .await;
    let expected = server.put("boot.efi", &content(3000));
    // One host takes every slot with requests it never acknowledges.
    let attacker = Raw::new().await;
    for _ in 0..2 {
        attacker.rrq(&server, "boot.efi", &[]).await;
    }
    server
        .wait_count(|c| &c.tftp_transfers_started, 2, Duration::from_secs(2))
        .await;
    // Another machine asks, and asks again as firmware does after a "busy"; once the
    // attacker's transfers have stalled, one gives way and the machine gets its file.
    let machine = Raw::from_address(Ipv4Addr::new(127, 0, 0, 2)).await;
    let mut first_data = None;
    for _ in 0..40 {
        machine.rrq(&server, "boot.efi", &[]).await;
        let (bytes, from) = machine.recv().await;
        if let Ok(Packet::Data { block: 1, .. }) = Packet::parse(&bytes) {
            first_data = Some((bytes, from));
            break;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let (bytes, from) = first_data.expect("the machine was never served");
    let Ok(Packet::Data { data, .. }) = Packet::parse(&bytes) else {
        unreachable!()
    };
    assert_eq!(data, &expected[..512]);
    assert!(server.count(|c| &c.tftp_transfers_gave_way) >= 1);
    // Given way, not timed out: the stalled transfers had retries left.
    assert_eq!(server.count(|c| &c.tftp_transfers_timed_out), 0);
    machine
        .send(from, &Packet::Ack { block: 1 }.to_bytes())
        .await;
    server.stop().await;
}

#[tokio::test]
async fn malformed_datagrams_are_counted_and_the_server_keeps_answering() {
    let server = Server::start().await;
    let expected = server.put("ok.bin", &content(20_000));
    let raw = Raw::new().await;
    let mut garbage: Vec<Vec<u8>> = vec![
        vec![],
        vec![0],
        vec![0xff, 0xff, 0xff],
        b"\x00\x01file".to_vec(),
        b"\x00\x01file\x00oct".to_vec(),
        b"\x00\x01file\x00binary\x00".to_vec(),
        b"\x00\x01\xff\xfe\x00octet\x00".to_vec(),
        b"\x00\x03\x00\x01data".to_vec(),
        b"\x00\x04\x00\x01".to_vec(),
        b"\x00\x05\x00\x01oops\x00".to_vec(),
        b"\x00\x06blksize\x00512\x00".to_vec(),
        b"\x00\x07".to_vec(),
        vec![0; 1500],
    ];
    // And pseudo-random datagrams whose opcode is none of the six.
    let noise = content(64 * 300);
    for (i, chunk) in noise.chunks(300).enumerate() {
        let mut datagram = chunk[..(i * 7) % 300].to_vec();
        if datagram.len() >= 2 {
            datagram[0] |= 0x80;
        }
        garbage.push(datagram);
    }
    for datagram in &garbage {
        raw.send(server.addr, datagram).await;
    }
    server
        .wait_count(
            |c| &c.tftp_malformed,
            garbage.len() as u64,
            Duration::from_secs(2),
        )
        .await;
    assert_eq!(server.count(|c| &c.tftp_transfers_started), 0);
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("ok.bin");
    let output = curl_get(&server, "ok.bin", &[], &target).await;
    assert_success(&output, "ok.bin after garbage");
    assert_same(&target, &expected, "ok.bin");
    server.stop().await;
}

#[tokio::test]
async fn cancellation_stops_the_listener_and_ends_running_transfers() {
    let server = Server::start().await;
    server.put("a.bin", &content(10_000));
    let raw = Raw::new().await;
    raw.rrq(&server, "a.bin", &[("tsize", "0")]).await;
    let (oack, _) = raw.recv().await;
    assert!(matches!(Packet::parse(&oack), Ok(Packet::Oack { .. })));
    let addr = server.addr;
    server.stop().await;
    let (code, message, _) = raw.expect_error().await;
    assert_eq!(code, ErrorCode::NotDefined);
    assert!(message.contains("shutting down"), "{message}");
    // Nothing listens any more.
    let rrq = Packet::Rrq(Request {
        filename: "a.bin".into(),
        mode: Mode::Octet,
        options: vec![],
    });
    raw.send(addr, &rrq.to_bytes()).await;
    let mut buf = [0u8; 1500];
    let reply =
        tokio::time::timeout(Duration::from_millis(300), raw.socket.recv_from(&mut buf)).await;
    assert!(reply.is_err(), "the stopped server answered");
}
