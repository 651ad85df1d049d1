//! The task sequence runs for real (QEMU in the lab network): a machine PXE-boots, the agent
//! applies a raw disk image to its virtual disk and powers off; the disk's bytes and the
//! server's records are checked. The first run has HTTPS on, so the agent pins the server's
//! certificate in a real boot. Also: altered content fails naming the file; a download cut by
//! a server restart resumes with Range.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::harness::{cli_ok, Server};
use crate::lab::{boot_image, disk_image, lab_dhcp_config, sha256, Lab};

const MAC: &str = "52:54:00:0d:07:01";

struct Setup {
    dir: tempfile::TempDir,
    lab: Lab,
    server: Server,
    config: String,
    image: Vec<u8>,
    sha: String,
    disk: PathBuf,
}

/// The lab with LAB00001 for the machine; `extra` is added to the server's configuration.
fn setup(image_mib: usize, tamper: bool, extra: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let (kernel, initrd) = boot_image();
    let pkg = dir.path().join("disk");
    std::fs::create_dir_all(&pkg).unwrap();
    let image = disk_image(image_mib);
    std::fs::write(pkg.join("disk.img"), &image).unwrap();
    let sha = sha256(&image);
    let site = format!(
        r#"site_code = "LAB"
[[device]]
name = "pc1"
macs = ["{MAC}"]
[[collection]]
id = "lab"
members = ["pc1"]
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
name = "Apply the lab disk image"
boot_image = "linux-x64"
steps = [
  {{ name = "write the disk", action = "apply_image", package = "disk", file = "disk.img", target = "/dev/vda" }},
  {{ name = "done", action = "poweroff" }},
]
[[deployment]]
id = "LAB00001"
task_sequence = "image"
collection = "lab"
purpose = "required"
available_to = "media_pxe"
accept_high_risk = true
"#,
        kernel = kernel.display().to_string(),
        initrd = initrd.display().to_string(),
        pkg = pkg.display().to_string(),
    );
    let site_path = dir.path().join("site.toml");
    std::fs::write(&site_path, site).unwrap();
    let data = dir.path().join("data");
    cli_ok(&data, &["site", "apply", site_path.to_str().unwrap()]);
    if tamper {
        // The content on the server changes after import: one byte in the middle.
        let stored = netdeploy::content::Library::new(&data)
            .path_of(&sha)
            .unwrap();
        let mut bytes = std::fs::read(&stored).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::fs::write(&stored, bytes).unwrap();
    }
    let disk = dir.path().join("vda.img");
    std::fs::write(&disk, vec![0u8; (image_mib + 1) * 1024 * 1024]).unwrap();
    let config = format!("{}{extra}", lab_dhcp_config(&data));
    let lab = Lab::up();
    let server = Server::start_in(dir.path(), &config, &lab.exec_prefix());
    Setup {
        dir,
        lab,
        server,
        config,
        image,
        sha,
        disk,
    }
}

fn status_of(data: &Path) -> serde_json::Value {
    serde_json::from_str(&cli_ok(data, &["status", "--json"])).unwrap()
}

fn state_counts(v: &serde_json::Value) -> (u64, u64) {
    let d = v["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["deployment"] == "LAB00001")
        .unwrap();
    (
        d["counts"]["compliant"].as_u64().unwrap(),
        d["counts"]["failed"].as_u64().unwrap(),
    )
}

#[test]
fn machine_applies_a_disk_image_over_https_and_the_server_records_success() {
    let s = setup(4, false, "[http.tls]\n");
    let disk = s.disk.to_str().unwrap().to_owned();
    let (ok, serial, report) = s.lab.boot_vm_timeout(
        "bios",
        MAC,
        "tap0",
        s.dir.path(),
        &["--disk", &disk, "--expect", "NETDEPLOY-AGENT-RESULT"],
        300,
    );
    assert!(ok, "{report}\n{serial}\n{}", s.server.log());
    assert!(
        serial.contains("NETDEPLOY-AGENT-RESULT success deployment=LAB00001"),
        "{serial}"
    );
    // The agent had the HTTPS URL and the pin from the iPXE script, and used them: over plain
    // HTTP its policy request would have been refused.
    assert!(
        serial.contains("certificate pin from netdeploy.pin"),
        "{serial}"
    );
    assert!(
        serial.contains("asking https://10.77.0.1:8443/agent/policy"),
        "{serial}"
    );
    assert!(
        s.server
            .log()
            .lines()
            .all(|l| !l.contains("TLS handshake failed")),
        "{}",
        s.server.log()
    );
    // Give the guest a moment to power off and QEMU to flush the disk file.
    std::thread::sleep(Duration::from_secs(1));
    let written = std::fs::read(&s.disk).unwrap();
    assert_eq!(
        sha256(&written[..s.image.len()]),
        s.sha,
        "the disk does not hold the image"
    );
    let status = status_of(&s.dir.path().join("data"));
    assert_eq!(state_counts(&status), (1, 0), "{status}");
}

#[test]
fn altered_content_fails_the_step_naming_the_file_and_the_server_records_failure() {
    let s = setup(4, true, "");
    let disk = s.disk.to_str().unwrap().to_owned();
    let (ok, serial, report) = s.lab.boot_vm_timeout(
        "bios",
        MAC,
        "tap0",
        s.dir.path(),
        &["--disk", &disk, "--expect", "NETDEPLOY-AGENT-RESULT"],
        300,
    );
    assert!(ok, "{report}\n{serial}\n{}", s.server.log());
    let line = serial
        .lines()
        .find(|l| l.contains("NETDEPLOY-AGENT-RESULT"))
        .unwrap();
    assert!(line.contains("failure deployment=LAB00001"), "{line}");
    assert!(line.contains("write the disk"), "{line}");
    assert!(
        serial.contains("disk.img") && serial.contains("SHA-256"),
        "{serial}"
    );
    let status = status_of(&s.dir.path().join("data"));
    assert_eq!(state_counts(&status), (0, 1), "{status}");
    s.server
        .wait_for_log(&["agent status", "failed"], Duration::from_secs(5))
        .expect("the failure is logged");
}

#[test]
fn a_download_cut_by_a_server_restart_resumes_with_range() {
    let mut s = setup(64, false, "");
    let disk = s.disk.to_str().unwrap().to_owned();
    let serial_path = s.dir.path().join("serial-tap0.log");
    let dir = s.dir.path().to_owned();
    let lab_name = s.lab.name.clone();
    std::thread::scope(|scope| {
        let lab = &s.lab;
        let vm = scope.spawn(move || {
            lab.boot_vm_timeout(
                "bios",
                MAC,
                "tap0",
                &dir,
                &["--disk", &disk, "--expect", "NETDEPLOY-AGENT-RESULT"],
                400,
            )
        });
        // Once the image is streaming, the server goes down hard and comes back.
        let end = Instant::now() + Duration::from_secs(300);
        while Instant::now() < end {
            let log = std::fs::read_to_string(&serial_path).unwrap_or_default();
            if log
                .lines()
                .any(|l| l.contains("disk.img -> /dev/vda: ") && l.contains("% ("))
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        s.server.crash();
        std::thread::sleep(Duration::from_millis(500));
        s.server = Server::start_in(s.dir.path(), &s.config, &["ip", "netns", "exec", &lab_name]);
        let (ok, serial, report) = vm.join().unwrap();
        assert!(ok, "{report}\n{serial}");
        assert!(
            serial.contains("retrying from byte"),
            "the download was not cut and resumed:\n{serial}"
        );
        assert!(
            serial.contains("NETDEPLOY-AGENT-RESULT success deployment=LAB00001"),
            "{serial}"
        );
    });
    std::thread::sleep(Duration::from_secs(1));
    let written = std::fs::read(&s.disk).unwrap();
    assert_eq!(sha256(&written[..s.image.len()]), s.sha);
}
