//! Multicast imaging on real firmware (docs/multicast.md, section 6): four machines (SeaBIOS
//! and iPXE, QEMU with TCG, each with its own random SMBIOS UUID) PXE-boot in the lab network
//! and run a deployment with `multicast = true` whose task sequence applies a small netdeploy
//! image onto the disk. One machine starts 10 s after the others; another loses 5% of what
//! its tap delivers to it once its boot environment is up. Every machine completes, every
//! disk holds the image's bytes, each machine's step status says `path multicast`, and the
//! server's own `multicast_bytes_sent` is at most 1.2 times the image's compressed size where
//! unicast would send it four times.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::harness::{cli_ok, random_smbios_uuid, Server};
use crate::lab::{boot_image, lab_dhcp_config, must, sha256, vm_turn, Lab};
use crate::shared_store::within;

const MACS: [&str; 4] = [
    "52:54:00:0d:15:01",
    "52:54:00:0d:15:02",
    "52:54:00:0d:15:03",
    "52:54:00:0d:15:04",
];
/// The machine whose tap loses 5%.
const LOSSY: usize = 1;
/// The machine that starts 10 s after the others.
const LATE: usize = 3;
const RESULT: &str = "NETDEPLOY-AGENT-RESULT (success|failure)";

/// The disk of [`crate::multicast::captured_disk`]: its bytes, the package directory, the
/// image's compressed size and its chunks.
fn image_package(dir: &Path) -> (Vec<u8>, PathBuf, u64, usize) {
    let (disk, pkg, captured) = crate::multicast::captured_disk(dir);
    (
        disk,
        pkg,
        captured.index.compressed_bytes(),
        captured.index.chunks.len(),
    )
}

/// The site: the four machines by MAC in `lab`, the required LAB00001 with `multicast = true`
/// applying the image onto the disk, then powering off.
fn apply_site(dir: &Path, pkg: &Path) {
    let (kernel, initrd) = boot_image();
    let devices: String = MACS
        .iter()
        .enumerate()
        .map(|(i, m)| format!("[[device]]\nname = \"m{}\"\nmacs = [\"{m}\"]\n", i + 1))
        .collect();
    let site = format!(
        r#"site_code = "LAB"
{devices}[[collection]]
id = "lab"
members = ["m1", "m2", "m3", "m4"]
[[boot_image]]
id = "linux-x64"
arch = "x64"
kernel = {kernel:?}
initrd = {initrd:?}
cmdline = "console=ttyS0 quiet"
[[package]]
id = "disk"
from = {pkg:?}
[[task_sequence]]
id = "image"
name = "Image the disk"
boot_image = "linux-x64"
steps = [
  {{ name = "image", action = "apply_image", package = "disk", file = "image.ndimg", target = "/dev/vda" }},
  {{ name = "done", action = "poweroff" }},
]
[[deployment]]
id = "LAB00001"
task_sequence = "image"
collection = "lab"
purpose = "required"
available_to = "media_pxe"
accept_high_risk = true
multicast = true
"#,
        kernel = kernel.display().to_string(),
        initrd = initrd.display().to_string(),
        pkg = pkg.display().to_string(),
    );
    let path = dir.join("site.toml");
    std::fs::write(&path, site).unwrap();
    cli_ok(
        &dir.join("data"),
        &["site", "apply", path.to_str().unwrap()],
    );
}

/// 5% loss on what `tap` delivers to its machine: netem when the kernel has it, else an
/// nftables rule in a bridge table of the lab namespace. Removed when dropped (the qdisc goes
/// with the tap).
struct Loss {
    ns: String,
    tap: String,
    table: Option<&'static str>,
}

impl Loss {
    const TABLE: &'static str = "ndmcloss";

    fn on(lab: &Lab, tap: &str) -> Loss {
        let netem = Command::new("ip")
            .args(["netns", "exec", &lab.name, "tc", "qdisc", "add", "dev", tap])
            .args(["root", "netem", "loss", "5%"])
            .output()
            .unwrap();
        if netem.status.success() {
            println!("5% loss on {tap}: tc netem");
            return Loss {
                ns: lab.name.clone(),
                tap: tap.to_owned(),
                table: None,
            };
        }
        // Bridge postrouting sees both what the bridge forwards to the tap and what the
        // server's own socket on the bridge sends through it.
        let nft = |args: &[&str]| {
            must(
                Command::new("ip")
                    .args(["netns", "exec", &lab.name, "nft"])
                    .args(args),
            )
        };
        let t = Self::TABLE;
        nft(&["add", "table", "bridge", t]);
        let hook = "{ type filter hook postrouting priority 0; }";
        nft(&["add", "chain", "bridge", t, "out", hook]);
        nft(&[
            "add",
            "rule",
            "bridge",
            t,
            "out",
            "oifname",
            &format!("\"{tap}\""),
            "numgen",
            "random",
            "mod",
            "100",
            "<",
            "5",
            "counter",
            "drop",
        ]);
        println!(
            "5% loss on {tap}: nftables (tc netem: {})",
            String::from_utf8_lossy(&netem.stderr).trim()
        );
        Loss {
            ns: lab.name.clone(),
            tap: tap.to_owned(),
            table: Some(Self::TABLE),
        }
    }
}

impl Loss {
    /// The packets dropped so far: the rule's counter, or netem's `dropped`.
    fn dropped(&self) -> u64 {
        let (args, key): (Vec<&str>, &str) = match self.table {
            Some(t) => (vec!["nft", "list", "table", "bridge", t], "packets "),
            None => (
                vec!["tc", "-s", "qdisc", "show", "dev", &self.tap],
                "dropped ",
            ),
        };
        let out = must(
            Command::new("ip")
                .args(["netns", "exec", &self.ns])
                .args(args),
        );
        out.split(key)
            .nth(1)
            .and_then(|rest| {
                rest.split(|c: char| !c.is_ascii_digit())
                    .next()
                    .and_then(|n| n.parse().ok())
            })
            .unwrap_or_else(|| panic!("no drop count in:\n{out}"))
    }
}

impl Drop for Loss {
    fn drop(&mut self) {
        if let Some(t) = self.table {
            let _ = Command::new("ip")
                .args([
                    "netns", "exec", &self.ns, "nft", "delete", "table", "bridge", t,
                ])
                .output();
        }
    }
}

/// GET `path` from the server, inside the lab namespace (it listens on the lab's bridge only).
fn lab_get(lab: &Lab, server: &Server, path: &str) -> String {
    let http = server.ready["http"]
        .as_array()
        .and_then(|a| a.iter().filter_map(|h| h.as_str()).next())
        .unwrap_or_else(|| panic!("no HTTP listener: {}", server.ready))
        .to_owned();
    must(Command::new("ip").args([
        "netns",
        "exec",
        &lab.name,
        "curl",
        "-sSf",
        &format!("http://{http}{path}"),
    ]))
}

/// A counter of the server's `/metrics`.
fn lab_counter(lab: &Lab, server: &Server, name: &str) -> u64 {
    let body = lab_get(lab, server, "/metrics");
    let key = format!("netdeploy_{name}_total ");
    body.lines()
        .find_map(|l| l.strip_prefix(&key))
        .unwrap_or_else(|| panic!("no counter {name} in:\n{body}"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn four_machines_image_at_once_from_one_multicast_session_with_a_late_and_a_lossy_one() {
    let _turn = vm_turn();
    let lab = Lab::up();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    let data = dir.join("data");
    let (raw, pkg, compressed, chunks) = image_package(dir);
    apply_site(dir, &pkg);
    // Data goes out once all four machines asked, the late one too, however long four TCG
    // boots on two busy cores take (within 300 s), so all four share the first round. The
    // rate is capped at what four emulated machines on two cores take: the rate control
    // comes down to 8 to 12.5 Mbit/s from the default 100 by itself, but the first burst
    // at 100 cost a run beside other tests 302 repaired datagrams (1.22 times the image).
    let config = lab_dhcp_config(&data)
        + "[multicast]\nenabled = true\njoin_window_s = 300\nwait_for_machines = 4\n\
           max_rate_mbps = 10\n";
    let server = Server::start_in(dir, &config, &lab.exec_prefix());

    let machines: Vec<(String, PathBuf, PathBuf)> = (0..MACS.len())
        .map(|i| {
            let tap = format!("tap{i}");
            lab.tap(&tap);
            let disk = dir.join(format!("disk{i}.img"));
            std::fs::write(&disk, vec![0u8; 4 << 20]).unwrap();
            (tap, disk, dir.join(format!("serial-{i}.log")))
        })
        .collect();
    let uuids: Vec<String> = MACS.iter().map(|_| random_smbios_uuid()).collect();
    let (results, dropped) = std::thread::scope(|s| {
        let vms: Vec<_> = (0..MACS.len())
            .map(|i| {
                let (tap, disk, serial) = &machines[i];
                let mut cmd = lab.boot_vm_command("bios", MACS[i], tap, serial, 900);
                cmd.arg("--disk")
                    .arg(disk)
                    .args(["--smbios-uuid", &uuids[i], "--expect", RESULT]);
                s.spawn(move || {
                    if i == LATE {
                        std::thread::sleep(Duration::from_secs(10));
                    }
                    let out = cmd.output().unwrap();
                    (
                        out.status.success(),
                        format!(
                            "{}{}",
                            String::from_utf8_lossy(&out.stdout),
                            String::from_utf8_lossy(&out.stderr)
                        ),
                    )
                })
            })
            .collect();
        // The loss starts once the lossy machine's boot environment is up: it is about the
        // session, and TCG boots over a lossy TFTP and HTTP would only cost CI time.
        let serial = &machines[LOSSY].2;
        let up = within(Duration::from_secs(600), || {
            std::fs::read_to_string(serial)
                .unwrap_or_default()
                .contains("NETDEPLOY-BOOT-OK")
                || vms[LOSSY].is_finished()
        });
        let loss = up.then(|| Loss::on(&lab, &machines[LOSSY].0));
        let results: Vec<(bool, String)> = vms.into_iter().map(|v| v.join().unwrap()).collect();
        (results, loss.map(|l| l.dropped()))
    });
    println!("dropped on the lossy tap: {dropped:?}");

    let log = server.log();
    for (i, (ok, report)) in results.iter().enumerate() {
        let serial = std::fs::read_to_string(&machines[i].2).unwrap_or_default();
        assert!(*ok, "m{}: {report}\n{serial}\n{log}", i + 1);
        assert!(
            serial.contains("NETDEPLOY-AGENT-RESULT success deployment=LAB00001"),
            "m{}:\n{serial}",
            i + 1
        );
        assert!(
            serial.contains("image.ndimg: path multicast:"),
            "m{} did not take the multicast path:\n{serial}",
            i + 1
        );
    }
    // The lossy machine did lose packets on its way through the session.
    assert!(
        dropped.is_some_and(|n| n > 0),
        "no packet dropped on the lossy tap: {dropped:?}"
    );
    // Give the guests a moment to power off and QEMU to flush the disk files.
    std::thread::sleep(Duration::from_secs(1));
    let want = sha256(&raw);
    for (i, (_, disk, _)) in machines.iter().enumerate() {
        let written = std::fs::read(disk).unwrap();
        let _ = std::fs::remove_file(disk);
        assert_eq!(
            sha256(&written[..raw.len()]),
            want,
            "m{}: the disk does not hold the image",
            i + 1
        );
    }

    // Each machine's page on the status page shows its imaging step's path.
    for i in 0..MACS.len() {
        let page = lab_get(
            &lab,
            &server,
            &format!("/status/machine?deployment=LAB00001&machine=m{}", i + 1),
        );
        let want = format!(
            "reason=path multicast: {} chunks by multicast, 0 over HTTP",
            chunks
        );
        assert!(
            page.contains(&want),
            "m{}'s status page does not say {want:?}:\n{page}",
            i + 1
        );
    }

    // So does `netdeploy status --machines`, under each machine.
    let listed = cli_ok(&data, &["status", "--machines"]);
    assert_eq!(
        listed.matches("image path multicast: ").count(),
        MACS.len(),
        "netdeploy status --machines does not give each machine's path:\n{listed}"
    );

    // What the session did, for the log of a run that fails: its members, rate and repairs.
    let status: serde_json::Value =
        serde_json::from_str(&lab_get(&lab, &server, "/status.json")).unwrap();
    println!("multicast sessions: {}", status["multicast_sessions"]);
    let sent = lab_counter(&lab, &server, "multicast_bytes_sent");
    println!(
        "multicast_bytes_sent {sent} for an image of {compressed} compressed bytes ({:.2}x)",
        sent as f64 / compressed as f64
    );
    assert!(
        sent as f64 <= 1.2 * compressed as f64,
        "the server sent {sent} bytes by multicast for an image of {compressed}"
    );
}
