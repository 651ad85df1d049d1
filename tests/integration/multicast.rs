//! Multicast imaging through the real server and agent (docs/multicast.md): an image package
//! is sent by `netdeploy multicast serve` to receivers on loopback, each of which writes it
//! with the agent's multicast apply, checking every chunk before it is written; egress is
//! counted by the sender. Without a session the apply falls back to HTTP and says so.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use netdeploy_agent::http::{Client, Url};
use netdeploy_agent::image::{self, ImageRef, Store};
use netdeploy_agent::multicast::{self as receiver, Fallback, MulticastOptions};
use netdeploy_wire::image::INDEX_FILE;

use crate::harness::{bearer, binary, cli_ok, http_get, http_request, loopback_config, Server};

/// A 3 MiB disk of noise and text, captured raw in 256 KiB chunks into `dir/pkg`. Returns
/// the source's bytes, the package directory and the capture.
pub fn captured_disk(dir: &Path) -> (Vec<u8>, PathBuf, image::Captured) {
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let mut disk: Vec<u8> = (0..2 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as u8
        })
        .collect();
    disk.extend((0..1 << 20).map(|i| b"netdeploy multicast\n"[i % 20]));
    let src = dir.join("disk.img");
    std::fs::write(&src, &disk).unwrap();
    let pkg = dir.join("pkg");
    let captured = image::capture(
        &src,
        &pkg,
        &image::CaptureOptions {
            chunk_size: 256 << 10,
            level: 3,
        },
    )
    .unwrap();
    std::fs::remove_file(&src).unwrap();
    (disk, pkg, captured)
}

/// [`captured_disk`] imported as package `disk`. Returns the source, the capture and the
/// data directory.
fn image_package(dir: &Path) -> (Vec<u8>, image::Captured, PathBuf) {
    let (disk, pkg, captured) = captured_disk(dir);
    let data = dir.join("data");
    cli_ok(
        &data,
        &["package", "create", "disk", "--from", pkg.to_str().unwrap()],
    );
    (disk, captured, data)
}

/// `netdeploy multicast serve disk` on loopback; returns the process and its start line.
fn sender(
    data: &Path,
    group: SocketAddrV4,
    receivers: usize,
    join_window: u64,
) -> (Child, serde_json::Value) {
    let mut child = Command::new(binary())
        .arg("--data-dir")
        .arg(data)
        .args(["multicast", "serve", "disk", "--source", "127.0.0.1"])
        .args(["--group", &group.ip().to_string()])
        .args(["--port", &group.port().to_string()])
        .args(["--receivers", &receivers.to_string()])
        .args(["--join-window", &join_window.to_string()])
        .args(["--timeout", "60", "--max-rate-mbps", "16"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).expect(&line);
    (child, v)
}

/// Waits for the sender and returns its end line.
fn report(mut child: Child) -> serde_json::Value {
    let mut out = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert!(child.wait().unwrap().success());
    serde_json::from_str(out.trim()).expect(&out)
}

fn target(dir: &Path, name: &str, size: u64) -> PathBuf {
    let t = dir.join(name);
    std::fs::write(&t, vec![0xA5u8; size as usize]).unwrap();
    t
}

fn apply(
    server: &str,
    captured: &image::Captured,
    t: &Path,
    o: MulticastOptions,
) -> receiver::Received {
    let client = Client::default();
    let store = Store::Http {
        client: &client,
        base: Url::parse(server).unwrap(),
    };
    let image = ImageRef {
        name: INDEX_FILE,
        index_size: captured.index_len,
        index_sha256: Some(captured.index_sha256),
    };
    receiver::apply(&store, &image, t, &o).unwrap()
}

#[test]
fn three_receivers_get_the_image_from_one_multicast_session_sent_about_once() {
    let dir = tempfile::tempdir().unwrap();
    let (disk, captured, data) = image_package(dir.path());
    let server = Server::start(dir.path(), &loopback_config(dir.path(), "proxy", ""));
    let group = SocketAddrV4::new(Ipv4Addr::new(239, 255, 77, 21), 7421);
    let url = server.url();
    // The receivers listen first, as machines that boot together do; the session starts
    // once all three asked.
    let handles: Vec<_> = (0..3)
        .map(|i| {
            let t = target(dir.path(), &format!("vd{i}"), disk.len() as u64);
            let (url, captured) = (url.clone(), captured.clone());
            let o = MulticastOptions {
                interface: Ipv4Addr::LOCALHOST,
                ..MulticastOptions::new(group)
            };
            std::thread::spawn(move || (apply(&url, &captured, &t, o), t))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let (child, start) = sender(&data, group, 3, 2);
    assert_eq!(
        start["multicast_session"]["chunks"],
        captured.index.chunks.len()
    );
    for h in handles {
        let (got, t) = h.join().unwrap();
        assert_eq!(got.fallback, None, "{got:?}");
        assert_eq!((got.multicast, got.http), (got.chunks, 0));
        assert!(
            std::fs::read(&t).unwrap() == disk,
            "{} differs",
            t.display()
        );
    }
    let end = report(child);
    let r = &end["multicast_report"];
    assert_eq!(
        (r["receivers"].as_u64(), r["finished"].as_u64()),
        (Some(3), Some(3))
    );
    let compressed = captured.index.compressed_bytes() as f64;
    let sent = r["bytes_sent"].as_u64().unwrap() as f64;
    assert!(
        sent <= 1.2 * compressed,
        "sent {sent} bytes for an image of {compressed}"
    );
}

#[test]
fn a_receiver_that_joins_late_gets_what_it_missed() {
    let dir = tempfile::tempdir().unwrap();
    let (disk, captured, data) = image_package(dir.path());
    let server = Server::start(dir.path(), &loopback_config(dir.path(), "proxy", ""));
    let group = SocketAddrV4::new(Ipv4Addr::new(239, 255, 77, 22), 7422);
    let (child, _) = sender(&data, group, 2, 0);
    let o = MulticastOptions {
        interface: Ipv4Addr::LOCALHOST,
        ..MulticastOptions::new(group)
    };
    let first = {
        let t = target(dir.path(), "vda", disk.len() as u64);
        let (url, captured, o) = (server.url(), captured.clone(), o.clone());
        std::thread::spawn(move || (apply(&url, &captured, &t, o), t))
    };
    // At 16 Mbit/s the 3 MiB image takes more than a second: the second machine comes
    // in the middle of it.
    std::thread::sleep(Duration::from_millis(900));
    let late = target(dir.path(), "vdb", disk.len() as u64);
    let got = apply(&server.url(), &captured, &late, o);
    assert_eq!((got.fallback.clone(), got.http), (None, 0), "{got:?}");
    assert!(std::fs::read(&late).unwrap() == disk);
    let (got, t) = first.join().unwrap();
    assert_eq!((got.fallback.clone(), got.http), (None, 0), "{got:?}");
    assert!(std::fs::read(&t).unwrap() == disk);
    assert_eq!(report(child)["multicast_report"]["finished"], 2);
}

#[test]
fn a_receiver_waits_out_a_join_window_longer_than_its_stall_time() {
    let dir = tempfile::tempdir().unwrap();
    let (disk, captured, data) = image_package(dir.path());
    let server = Server::start(dir.path(), &loopback_config(dir.path(), "proxy", ""));
    let group = SocketAddrV4::new(Ipv4Addr::new(239, 255, 77, 24), 7424);
    // Two receivers expected, one comes: data goes out 3 s after it asked, three times the
    // time without data after which a joined receiver gives up on a running session.
    let (mut child, _) = sender(&data, group, 2, 3);
    let o = MulticastOptions {
        interface: Ipv4Addr::LOCALHOST,
        stall: Duration::from_secs(1),
        ..MulticastOptions::new(group)
    };
    let t = target(dir.path(), "vda", disk.len() as u64);
    let got = apply(&server.url(), &captured, &t, o);
    // The session waits for its second receiver until its timeout: it is stopped here.
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!((got.fallback.clone(), got.http), (None, 0), "{got:?}");
    assert!(std::fs::read(&t).unwrap() == disk);
}

#[test]
fn without_a_multicast_session_the_apply_falls_back_to_http_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let (disk, captured, _) = image_package(dir.path());
    let server = Server::start(dir.path(), &loopback_config(dir.path(), "proxy", ""));
    let t = target(dir.path(), "vda", disk.len() as u64);
    let o = MulticastOptions {
        interface: Ipv4Addr::LOCALHOST,
        wait: Duration::from_secs(1),
        ..MulticastOptions::new(SocketAddrV4::new(Ipv4Addr::new(239, 255, 77, 23), 7423))
    };
    let got = apply(&server.url(), &captured, &t, o);
    assert_eq!(got.fallback, Some(Fallback::NoSession));
    assert_eq!((got.multicast, got.http), (0, got.chunks));
    assert!(std::fs::read(&t).unwrap() == disk);
}

const PC1: &str = "52:54:00:4d:43:01";
const PC2: &str = "52:54:00:4d:43:02";

/// A site of pc1 and pc2 whose deployment `LAB00001` (multicast as given) applies the image
/// package `disk` of [`image_package`] to a file.
fn apply_multicast_site(dir: &Path, data: &Path, multicast: bool) {
    std::fs::write(dir.join("vmlinuz"), b"kernel").unwrap();
    std::fs::write(dir.join("initrd.img"), b"initrd").unwrap();
    let site = format!(
        r#"site_code = "LAB"
[[device]]
name = "pc1"
macs = ["{PC1}"]
[[device]]
name = "pc2"
macs = ["{PC2}"]
[[collection]]
id = "lab"
members = ["pc1", "pc2"]
[[package]]
id = "disk"
from = "pkg"
[[boot_image]]
id = "linux-x64"
arch = "x64"
kernel = "vmlinuz"
initrd = "initrd.img"
[[task_sequence]]
id = "image"
name = "Image the disk"
boot_image = "linux-x64"
steps = [ {{ name = "image", action = "apply_image", package = "disk", file = "image.ndimg", target = "/dev/null" }} ]
[[deployment]]
id = "LAB00001"
task_sequence = "image"
collection = "lab"
purpose = "required"
available_to = "media_pxe"
multicast = {multicast}
"#
    );
    let path = dir.join("site.toml");
    std::fs::write(&path, site).unwrap();
    cli_ok(data, &["site", "apply", path.to_str().unwrap()]);
}

/// `GET /agent/multicast` for `package` as machine `mac` of `LAB00001`, with a run token
/// of that run unless `token` is false: the status and the JSON body.
fn ask(server: &Server, mac: &str, package: &str, token: bool) -> (u16, serde_json::Value) {
    let auth = bearer(&server.run_token(mac, Some("LAB00001")));
    let headers: Vec<&str> = if token { vec![&auth] } else { vec![] };
    let (status, body) = http_request(
        server.http_addr(),
        "GET",
        &format!(
            "/agent/multicast?mac={mac}&deployment=LAB00001&package={package}&file=image.ndimg"
        ),
        &headers,
        b"",
    );
    (
        status,
        serde_json::from_slice(&body).unwrap_or_else(|_| {
            panic!("not JSON: {}", String::from_utf8_lossy(&body));
        }),
    )
}

fn multicast_sessions(server: &Server) -> Vec<serde_json::Value> {
    let v: serde_json::Value =
        serde_json::from_str(&http_get(server.http_addr(), "/status.json")).unwrap();
    v["multicast_sessions"].as_array().unwrap().clone()
}

#[test]
fn machines_of_a_multicast_deployment_share_the_session_the_server_starts_and_the_status_page_names_them(
) {
    let dir = tempfile::tempdir().unwrap();
    let (disk, captured, data) = image_package(dir.path());
    apply_multicast_site(dir.path(), &data, true);
    let server = Server::start(
        dir.path(),
        &loopback_config(
            dir.path(),
            "proxy",
            // Data goes out once both machines asked, not after the minute's window.
            "[multicast]\nenabled = true\njoin_window_s = 60\nwait_for_machines = 2\n\
             port = 7433\nmax_rate_mbps = 16\n",
        ),
    );
    // Without a run token nothing is said; a package the task sequence does not apply is refused.
    assert_eq!(ask(&server, PC1, "disk", false).0, 401);
    let (status, body) = ask(&server, PC1, "other", true);
    assert_eq!(status, 403, "{body}");
    assert!(body["error"]
        .as_str()
        .unwrap()
        .contains("applies no image of package \"other\""));

    let (s1, a) = ask(&server, PC1, "disk", true);
    let (s2, b) = ask(&server, PC2, "disk", true);
    assert_eq!((s1, s2), (200, 200), "{a} {b}");
    assert_eq!(a["session"], b["session"], "one session for both machines");
    assert_eq!(a["group"], b["group"]);
    assert_ne!(a["receiver"], b["receiver"]);
    assert_eq!(
        a["index_sha256"],
        netdeploy_wire::hex::encode(&captured.index_sha256)
    );
    let group: SocketAddrV4 = a["group"].as_str().unwrap().parse().unwrap();
    assert!(group.ip().octets()[..3] == [239, 255, 77], "{group}");

    let handles: Vec<_> = [&a, &b]
        .into_iter()
        .enumerate()
        .map(|(i, answer)| {
            let t = target(dir.path(), &format!("vd{i}"), disk.len() as u64);
            let (url, captured) = (server.url(), captured.clone());
            let o = MulticastOptions {
                interface: Ipv4Addr::LOCALHOST,
                receiver: Some(answer["receiver"].as_u64().unwrap() as u32),
                ..MulticastOptions::new(group)
            };
            std::thread::spawn(move || (apply(&url, &captured, &t, o), t))
        })
        .collect();
    for h in handles {
        let (got, t) = h.join().unwrap();
        assert_eq!((got.fallback.clone(), got.http), (None, 0), "{got:?}");
        assert!(
            std::fs::read(&t).unwrap() == disk,
            "{} differs",
            t.display()
        );
    }

    // The session ends once both admitted machines have every chunk; the status page keeps it.
    let mut sessions = vec![];
    for _ in 0..100 {
        sessions = multicast_sessions(&server);
        if sessions.first().is_some_and(|s| s["phase"] == "ended") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let s = &sessions[0];
    assert_eq!(s["phase"], "ended", "{s}");
    assert_eq!(s["package"], "disk");
    let members = s["members"].as_object().unwrap();
    let mut machines: Vec<&str> = members
        .values()
        .map(|m| m["machine"].as_str().unwrap())
        .collect();
    machines.sort();
    assert_eq!(machines, ["pc1", "pc2"]);
    assert!(
        members
            .values()
            .all(|m| m["done"] == true && m["chunks_held"] == s["chunks"]),
        "{s}"
    );
    let took = s["ended_at"].as_i64().unwrap() - s["started_at"].as_i64().unwrap();
    assert!(took < 60, "the session waited out its join window: {s}");
    let compressed = captured.index.compressed_bytes() as f64;
    let sent = s["bytes_sent"].as_u64().unwrap() as f64;
    assert!(
        sent <= 1.2 * compressed,
        "sent {sent} bytes for {compressed}"
    );
    let page = http_get(server.http_addr(), "/status");
    assert!(
        page.contains("Multicast sessions") && page.contains("pc2"),
        "{page}"
    );
    assert!(server.counter("multicast_joined") >= 2);

    // A machine that asks once the session ended gets a new one.
    let (_, again) = ask(&server, PC1, "disk", true);
    assert_ne!(again["session"], a["session"]);
}

#[test]
fn multicast_is_refused_with_its_reason_when_the_server_or_the_deployment_does_not_allow_it() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, data) = image_package(dir.path());
    apply_multicast_site(dir.path(), &data, true);
    let off = Server::start(dir.path(), &loopback_config(dir.path(), "proxy", ""));
    let (status, body) = ask(&off, PC1, "disk", true);
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("[multicast] enabled = false"),
        "{body}"
    );
    drop(off);

    apply_multicast_site(dir.path(), &data, false);
    let on = Server::start(
        dir.path(),
        &loopback_config(
            dir.path(),
            "proxy",
            "[multicast]\nenabled = true\nport = 7434\n",
        ),
    );
    let (status, body) = ask(&on, PC1, "disk", true);
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("does not allow multicast"),
        "{body}"
    );
    assert_eq!(on.counter("multicast_refused"), 1);
}
