//! Wake-on-LAN in the lab network: magic packets reach the bridge and no other interface.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::harness::{cli_ok, Server};
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

/// Waits until tcpdump says it captures, so that nothing sent after is missed.
fn wait_listening(c: &mut Child) {
    use std::io::BufRead;
    let stderr = c.stderr.take().expect("tcpdump's stderr is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("listening on") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("tcpdump started capturing");
}

#[test]
fn a_site_file_or_a_cli_without_server_config_has_the_running_server_wake_the_machines() {
    let dir = tempfile::tempdir().unwrap();
    let lab = Lab::up();
    let data = dir.path().join("data");
    let tftp = dir.path().join("tftp");
    std::fs::create_dir_all(&tftp).unwrap();
    // The server serves the lab bridge only, with its ports chosen by the system.
    let server = Server::start_in(
        dir.path(),
        &format!(
            "[server]\ninterfaces = [\"ndbr0\"]\ndata_dir = {:?}\n[dhcp]\nmode = \"proxy\"\n\
             port = 0\nproxy_port = 0\n[tftp]\nroot = {:?}\nport = 0\n[http]\nport = 0\n",
            data.display().to_string(),
            tftp.display().to_string()
        ),
        &lab.exec_prefix(),
    );
    let on_bridge = dir.path().join("bridge.pcap");
    let mut cap = capture(&lab.name, "ndbr0", &on_bridge);
    wait_listening(&mut cap);

    // A site file whose required deployment asks for wake-on-LAN, applied by a CLI that does
    // not know the server's interfaces (no --server-config, outside its namespace).
    let k = dir.path().join("vmlinuz");
    let i = dir.path().join("initrd.img");
    std::fs::write(&k, b"kernel").unwrap();
    std::fs::write(&i, b"initrd").unwrap();
    let site = crate::deployments::write_site(
        dir.path(),
        &k,
        &i,
        "52:54:00:0f:01:01",
        "52:54:00:0f:01:09",
        "",
    );
    let text = std::fs::read_to_string(&site).unwrap().replacen(
        "purpose = \"required\"\n",
        "purpose = \"required\"\nwake_on_lan = true\n",
        1,
    );
    std::fs::write(&site, text).unwrap();
    let out = cli_ok(&data, &["site", "apply", site.to_str().unwrap()]);
    assert!(
        out.contains("the running server wakes the machines of LAB00001"),
        "{out}"
    );
    server
        .wait_for_log(&["wake-on-LAN sent", "LAB00001"], Duration::from_secs(10))
        .expect("the server sends the site file's wake-on-LAN");

    // The CLI creates another one the same way.
    let out = cli_ok(
        &data,
        &[
            "deployment",
            "create",
            "--task-sequence",
            "hello",
            "--collection",
            "lab",
            "--purpose",
            "required",
            "--available-to",
            "media-pxe",
            "--wake-on-lan",
        ],
    );
    assert!(
        out.contains("the running server wakes the machines of"),
        "{out}"
    );
    let created = out
        .split_whitespace()
        .find(|w| w.starts_with("LAB") && *w != "LAB00001")
        .expect("the new deployment's id")
        .trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned();
    server
        .wait_for_log(&["wake-on-LAN sent", &created], Duration::from_secs(10))
        .expect("the server sends the CLI's wake-on-LAN");
    // tcpdump writes each packet as it sees it (-U); give a loaded machine time to.
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while crate::pcap::udp_datagrams_at(&on_bridge).len() < 2 && std::time::Instant::now() < end {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    stop(cap);
    let bridge = crate::pcap::udp_datagrams_at(&on_bridge);
    assert_eq!(
        bridge.len(),
        2,
        "one magic packet per new deployment: {}",
        server.log()
    );
    for p in &bridge {
        assert_eq!(&p.payload[..6], &[0xff; 6]);
        assert_eq!(&p.payload[6..12], &[0x52, 0x54, 0x00, 0x0f, 0x01, 0x01]);
    }
    // Sent once: nothing is pending any more.
    let pending = cli_ok(&data, &["status", "--json"]);
    assert_eq!(pending.matches("\"wake-on-lan\"").count(), 2, "{pending}");
}
