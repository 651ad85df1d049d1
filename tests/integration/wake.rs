//! Wake-on-LAN in the lab network: magic packets reach the bridge and no other interface.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::harness::cli_ok;
use crate::lab::{must, Lab};

fn capture(ns: &str, iface: &str, out: &std::path::Path) -> Child {
    let c = Command::new("ip")
        .args([
            "netns", "exec", ns, "tcpdump", "-i", iface, "-n", "-U", "-c", "16", "-w",
        ])
        .arg(out)
        .args(["udp", "port", "9"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tcpdump is installed (Debian package tcpdump)");
    c
}

fn stop(mut c: Child) {
    // SAFETY: kill(2) on our own child's PID.
    unsafe { libc::kill(c.id() as i32, libc::SIGINT) };
    let end = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < end {
        if let Ok(Some(_)) = c.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = c.kill();
    let _ = c.wait();
}

#[test]
fn magic_packets_go_out_on_the_served_interface_only() {
    let dir = tempfile::tempdir().unwrap();
    let lab = Lab::up();
    // A second interface in the server namespace that netdeploy does not serve.
    must(Command::new("ip").args([
        "netns", "exec", &lab.name, "ip", "link", "add", "ndextra", "type", "veth", "peer", "name",
        "ndextra1",
    ]));
    must(Command::new("ip").args([
        "netns",
        "exec",
        &lab.name,
        "ip",
        "addr",
        "add",
        "10.78.0.1/24",
        "dev",
        "ndextra",
    ]));
    must(Command::new("ip").args([
        "netns", "exec", &lab.name, "ip", "link", "set", "ndextra", "up",
    ]));
    must(Command::new("ip").args([
        "netns", "exec", &lab.name, "ip", "link", "set", "ndextra1", "up",
    ]));
    let data = dir.path().join("data");
    let config = dir.path().join("netdeploy.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\ninterfaces = [\"ndbr0\"]\ndata_dir = {:?}\n[tftp]\nroot = {:?}\n",
            data.display().to_string(),
            dir.path().display().to_string()
        ),
    )
    .unwrap();
    cli_ok(
        &data,
        &[
            "device",
            "create",
            "--name",
            "pc1",
            "--mac",
            "52:54:00:0f:00:01",
        ],
    );

    let on_bridge = dir.path().join("bridge.pcap");
    let on_extra = dir.path().join("extra.pcap");
    let on_lo = dir.path().join("lo.pcap");
    let caps = [
        capture(&lab.name, "ndbr0", &on_bridge),
        capture(&lab.name, "ndextra", &on_extra),
        capture(&lab.name, "lo", &on_lo),
    ];
    std::thread::sleep(Duration::from_millis(1500));
    let out = must(
        Command::new("ip")
            .args(["netns", "exec", &lab.name])
            .arg(crate::harness::binary())
            .arg("--server-config")
            .arg(&config)
            .args(["wake", "--device", "pc1"]),
    );
    assert!(out.contains("sent 1 magic packet"), "{out}");
    std::thread::sleep(Duration::from_millis(1000));
    for c in caps {
        stop(c);
    }
    let bridge = crate::pcap::udp_datagrams_at(&on_bridge);
    assert_eq!(bridge.len(), 1, "one magic packet on the bridge");
    let p = &bridge[0].payload;
    assert_eq!(p.len(), 102);
    assert_eq!(&p[..6], &[0xff; 6]);
    for i in 0..16 {
        assert_eq!(
            &p[6 + i * 6..12 + i * 6],
            &[0x52, 0x54, 0x00, 0x0f, 0x00, 0x01],
            "copy {i}"
        );
    }
    assert!(
        crate::pcap::udp_datagrams_at(&on_extra).is_empty(),
        "a packet left on an interface netdeploy does not serve"
    );
    assert!(
        crate::pcap::udp_datagrams_at(&on_lo).is_empty(),
        "a packet left on loopback"
    );
}
