//! Several servers, one site, on real firmware (QEMU in two lab networks): server A serves lab
//! 1 and server B lab 2, both on one throwaway PostgreSQL (docs/fleet.md). A link between the
//! two server namespaces carries B's content requests to A. The site is applied through A's
//! host; B starts with an empty content library. Machine 1 runs the deployment through A,
//! machine 2 through B, which fetches the boot image and the package from A; the loop guard,
//! the status and the content records are shared, the leases are not.

use std::path::Path;
use std::time::{Duration, Instant};

use netdeploy::store::pg_cluster::Cluster;

use crate::harness::{ipxe_discover, random_smbios_uuid, Server};
use crate::lab::{boot_image, dhcp_reply_in, disk_image, lab_dhcp_config, sha256, Lab, Link};
use crate::shared_store::{cli_of, within};

const M1: &str = "52:54:00:0d:12:01";
const M2: &str = "52:54:00:0d:12:02";
const RESULT: &str = "NETDEPLOY-AGENT-RESULT (success|failure)";

/// The boot file a DHCP reply offers (option 67), if any.
fn boot_file(reply: &[u8]) -> Option<String> {
    use dhcproto::Decodable as _;
    let msg = dhcproto::v4::Message::decode(&mut dhcproto::Decoder::new(reply)).unwrap();
    match msg.opts().get(dhcproto::v4::OptionCode::BootfileName) {
        Some(dhcproto::v4::DhcpOption::BootfileName(f)) => {
            Some(String::from_utf8_lossy(f).into_owned())
        }
        _ => None,
    }
}

/// The MACs a server's `leases.json` holds a bound lease for (not those only offered).
fn leased_macs(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("data/leases.json")).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    v.as_array()
        .map(|a| {
            a.iter()
                .filter(|e| e["bound"] == true)
                .filter_map(|e| e["mac"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The site: m1 known by MAC, m2 by its SMBIOS UUID, both in `lab` under the required
/// LAB00001, which writes a note, prints it changed by a command, applies a small raw image
/// to the disk and powers off.
fn write_site(dir: &Path, uuid2: &str, pkg: &Path) -> std::path::PathBuf {
    let (kernel, initrd) = boot_image();
    let text = format!(
        r#"site_code = "LAB"
[[device]]
name = "m1"
macs = ["{M1}"]
[[device]]
name = "m2"
uuid = "{uuid2}"
[[collection]]
id = "lab"
members = ["m1", "m2"]
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
id = "fleet"
name = "Note and image"
boot_image = "linux-x64"
steps = [
  {{ name = "note", action = "write_file", value = "written by the fleet site", target = "/tmp/note" }},
  {{ name = "shout", action = "run_command", command = "tr a-z A-Z </tmp/note" }},
  {{ name = "write the disk", action = "apply_image", package = "disk", file = "disk.img", target = "/dev/vda" }},
  {{ name = "done", action = "poweroff" }},
]
[[deployment]]
id = "LAB00001"
task_sequence = "fleet"
collection = "lab"
purpose = "required"
available_to = "media_pxe"
accept_high_risk = true
"#,
        kernel = kernel.display().to_string(),
        initrd = initrd.display().to_string(),
        pkg = pkg.display().to_string(),
    );
    let path = dir.join("site.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Boots `mac` with `uuid` on `lab` with a blank 2 MiB disk until the agent's result; asserts
/// it succeeded, printed the note and wrote the image. Returns the serial log.
fn boot_and_check(lab: &Lab, mac: &str, uuid: &str, dir: &Path, image_sha: &str) -> String {
    let disk = dir.join(format!("disk-{}.img", &mac[15..]));
    std::fs::write(&disk, vec![0u8; 2 << 20]).unwrap();
    let args = [
        "--disk",
        disk.to_str().unwrap(),
        "--smbios-uuid",
        uuid,
        "--expect",
        RESULT,
    ];
    let (ok, serial, report) = lab.boot_vm_timeout("bios", mac, "tap0", dir, &args, 300);
    assert!(ok, "{mac}: {report}\n{serial}");
    assert!(
        serial.contains("NETDEPLOY-AGENT-RESULT success deployment=LAB00001"),
        "{mac}:\n{serial}"
    );
    assert!(
        serial.contains("WRITTEN BY THE FLEET SITE"),
        "{mac}: the command's output is not on the console:\n{serial}"
    );
    // Give the guest a moment to power off and QEMU to flush the disk file.
    std::thread::sleep(Duration::from_secs(1));
    let written = std::fs::read(&disk).unwrap();
    let _ = std::fs::remove_file(&disk);
    assert_eq!(
        sha256(&written[..1 << 20]),
        image_sha,
        "{mac}: the disk does not hold the image"
    );
    serial
}

#[test]
fn two_servers_on_two_lab_networks_share_one_site_and_the_second_images_from_content_it_fetched() {
    let started = Instant::now();
    let pg = Cluster::start().expect("a throwaway PostgreSQL server starts");
    let url = pg.new_database().unwrap();
    let root = tempfile::tempdir().unwrap();
    let (a, b) = (root.path().join("a"), root.path().join("b"));
    for d in [&a, &b] {
        std::fs::create_dir_all(d).unwrap();
    }
    let pkg = root.path().join("disk");
    std::fs::create_dir_all(&pkg).unwrap();
    let image = disk_image(1);
    std::fs::write(pkg.join("disk.img"), &image).unwrap();
    let image_sha = sha256(&image);
    let (uuid1, uuid2) = (random_smbios_uuid(), random_smbios_uuid());

    let lab1 = Lab::up();
    let lab2 = Lab::up();
    let _link = Link::between(&lab1, "10.78.0.1/30", &lab2, "10.78.0.2/30");
    let store = format!("[store]\nurl = {url:?}\n");
    // A also serves the link, so its HTTP (and content) listens there (docs/fleet.md).
    let config_a = lab_dhcp_config(&a.join("data")).replace(
        "interfaces = [\"ndbr0\"]",
        "name = \"a\"\ninterfaces = [\"ndbr0\", \"ndlink0\"]",
    ) + &store;
    let server_a = Server::start_in(&a, &config_a, &lab1.exec_prefix());
    let upstream = server_a.ready["http"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h.as_str())
        .find(|h| h.starts_with("10.78.0.1:"))
        .unwrap_or_else(|| panic!("A listens for HTTP on the link: {}", server_a.ready))
        .to_owned();
    let config_b = lab_dhcp_config(&b.join("data")).replace(
        "interfaces = [\"ndbr0\"]",
        "name = \"b\"\ninterfaces = [\"ndbr0\"]",
    ) + &store
        + &format!("[content]\nupstream = [\"http://{upstream}\"]\n");
    let server_b = Server::start_in(&b, &config_b, &lab2.exec_prefix());

    // The site, applied through A's host only: its files enter A's library only.
    let site = write_site(root.path(), &uuid2, &pkg);
    let applied = cli_of(&a, &["site", "apply", site.to_str().unwrap()]);
    assert!(applied.contains("LAB00001"), "{applied}");
    let b_library = b.join("data/content");
    let held_by_b = || {
        walk_files(&b_library)
            .iter()
            .filter(|p| p.file_name().and_then(|n| n.to_str()) == Some(image_sha.as_str()))
            .count()
    };
    assert!(
        walk_files(&b_library).is_empty(),
        "B starts with an empty library"
    );

    // Machine 1 on lab 1 runs LAB00001 through A.
    let serial1 = boot_and_check(&lab1, M1, &uuid1, &a, &image_sha);
    assert!(
        serial1.contains("netdeploy.deployment=LAB00001"),
        "{serial1}"
    );

    // The loop guard holds across servers: m1's DISCOVER (its MAC and UUID) sent by a client
    // on lab 2 gets no boot offer from B, which logs rule 7 (in `dhcp` mode B still leases it
    // an address, as to any client of its subnet). m2's, from the same place, gets one.
    let discover1 = ipxe_discover(M1, Some(&uuid1));
    let reply = dhcp_reply_in(&lab2.peer(), "10.77.0.255:67", &discover1)
        .unwrap_or_else(|| panic!("B does not answer on lab 2:\n{}", server_b.log()));
    assert_eq!(
        boot_file(&reply),
        None,
        "B offers m1, which started through A, a boot:\n{}",
        server_b.log()
    );
    server_b
        .wait_for_log(&["no boot offer", M1, "rule 7"], Duration::from_secs(5))
        .unwrap_or_else(|| panic!("B does not log the loop guard:\n{}", server_b.log()));
    let reply = dhcp_reply_in(
        &lab2.peer(),
        "10.77.0.255:67",
        &ipxe_discover(M2, Some(&uuid2)),
    )
    .expect("B answers m2");
    assert!(
        boot_file(&reply).is_some_and(|f| f.contains("/boot.ipxe?mac=52-54-00-0d-12-02")),
        "B offers m2 no boot:\n{}",
        server_b.log()
    );

    // Machine 2 on lab 2 runs it through B, from content B fetched from A.
    let serial2 = boot_and_check(&lab2, M2, &uuid2, &b, &image_sha);
    assert!(
        serial2.contains("netdeploy.deployment=LAB00001"),
        "{serial2}"
    );
    server_b
        .wait_for_log(&["content fetched from upstream"], Duration::from_secs(5))
        .unwrap_or_else(|| panic!("B fetched nothing:\n{}", server_b.log()));
    assert_eq!(held_by_b(), 1, "the image is in B's library");
    let (kernel, initrd) = boot_image();
    for f in [kernel, initrd] {
        let sha = sha256(&std::fs::read(f).unwrap());
        assert!(
            walk_files(&b_library)
                .iter()
                .any(|p| p.file_name().and_then(|n| n.to_str()) == Some(sha.as_str())),
            "{} is not in B's library",
            f.display()
        );
    }
    let mut held = String::new();
    assert!(
        within(Duration::from_secs(5), || {
            held = cli_of(&a, &["content", "status"]);
            section(&held, "b").contains("holds    boot_image:linux-x64")
                && section(&held, "b").contains("holds    package:disk")
        }),
        "content status does not show B holding the deployment's content:\n{held}"
    );
    assert!(!section(&held, "b").contains("FAILED"), "{held}");

    // Either host's status shows both machines' messages, the same on both (once each
    // server's queued writes reached the database).
    let (mut on_a, mut on_b) = (String::new(), String::new());
    // m1: Compliant by A's agent messages, last B's refusal (rule 7); m2: by B's.
    let compliant = |shown: &str, name: &str, last: &str| {
        shown.lines().any(|l| {
            l.trim_start().starts_with(name) && l.contains("Compliant") && l.ends_with(last)
        })
    };
    assert!(
        within(Duration::from_secs(10), || {
            on_a = cli_of(&a, &["status", "--machines"]);
            on_b = cli_of(&b, &["status", "--machines"]);
            on_a == on_b
                && compliant(&on_b, "m1", "requirements-not-met")
                && compliant(&on_b, "m2", "succeeded")
        }),
        "on A's host:\n{on_a}\non B's host:\n{on_b}"
    );

    // Leases stay per server: each has bound its own machine only.
    let (leases_a, leases_b) = (leased_macs(&a), leased_macs(&b));
    assert!(leases_a.iter().any(|m| m == M1), "{leases_a:?}");
    assert!(!leases_a.iter().any(|m| m == M2), "{leases_a:?}");
    assert!(leases_b.iter().any(|m| m == M2), "{leases_b:?}");
    assert!(!leases_b.iter().any(|m| m == M1), "{leases_b:?}");
    eprintln!(
        "two servers, two machines: {} s",
        started.elapsed().as_secs()
    );
}

/// The lines of one server's part of `netdeploy content status`.
fn section(shown: &str, name: &str) -> String {
    shown
        .lines()
        .skip_while(|l| !l.starts_with(&format!("{name}  ")))
        .skip(1)
        .take_while(|l| l.starts_with("    "))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Every file under `dir`.
fn walk_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}
