//! Boot media end to end (docs/media.md), in QEMU: media built by `netdeploy media build` boot
//! a machine whose firmware does not PXE-boot, and the agent on them runs the task sequence.
//!
//! - Unattended boot media naming a hidden deployment: the machine boots the ISO, asks the
//!   server in `media` context, runs that deployment with no key press, and the server records
//!   success.
//! - Boot media with a password and without a preferred deployment: the test types the
//!   password into the serial console, the server answers a menu of the visible available
//!   deployments, the test types one, it runs and the server records it.
//! - Full media, ISO under SeaBIOS and USB image under OVMF: no network device at all; the
//!   agent runs the exported task sequence from the media and the disk ends with the image.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::harness::{cli, cli_ok, random_smbios_uuid, Server};
use crate::lab::{
    boot_image, disk_image, lab_dhcp_config, repo, sha256, vm_turn, wait_for_serial, Lab,
};

const MAC: &str = "52:54:00:0d:08:01";
/// The SMBIOS UUID of the same machine, random per test run: with no network device, its only
/// identity.
fn uuid() -> &'static str {
    static UUID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    UUID.get_or_init(random_smbios_uuid)
}

/// A site with one machine, a disk-image package and three deployments: LAB00001 hidden
/// and available (only a preferred id on media reaches it), LAB00002 what full media carry,
/// LAB00003 the same task sequence as LAB00001 but visible, so that media without a
/// preferred id get a menu of LAB00002 and LAB00003.
fn site(dir: &Path, image: &[u8]) -> PathBuf {
    let (kernel, initrd) = boot_image();
    let pkg = dir.join("disk");
    std::fs::create_dir_all(&pkg).unwrap();
    std::fs::write(pkg.join("disk.img"), image).unwrap();
    let text = format!(
        r#"site_code = "LAB"
[[device]]
name = "pc1"
macs = ["{MAC}"]
uuid = "{uuid}"
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
id = "hello"
name = "Say hello from the media"
boot_image = "linux-x64"
steps = [
  {{ name = "hello", action = "run_command", command = "echo hello from boot media" }},
  {{ name = "done", action = "poweroff" }},
]
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
task_sequence = "hello"
collection = "lab"
purpose = "available"
available_to = "media_pxe_hidden"
[[deployment]]
id = "LAB00002"
task_sequence = "image"
collection = "lab"
purpose = "available"
available_to = "media_pxe"
accept_high_risk = true
[[deployment]]
id = "LAB00003"
task_sequence = "hello"
collection = "lab"
purpose = "available"
available_to = "media_pxe"
"#,
        kernel = kernel.display().to_string(),
        initrd = initrd.display().to_string(),
        pkg = pkg.display().to_string(),
        uuid = uuid(),
    );
    let path = dir.join("site.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `netdeploy media build` with the test boot image.
fn build_media(data: &Path, output: &Path, extra: &[&str]) {
    let (kernel, initrd) = boot_image();
    let key = crate::harness::medium_key(data);
    let mut args = vec![
        "media",
        "build",
        "--medium-key",
        &key,
        "--kernel",
        kernel.to_str().unwrap(),
        "--initrd",
        initrd.to_str().unwrap(),
        "--cmdline",
        "console=ttyS0 quiet",
        "--output",
        output.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let (ok, out) = cli(data, &args);
    assert!(ok, "netdeploy media build failed:\n{out}");
}

/// A random SMBIOS UUID, never all zeros: the machine is known by its MAC.
#[test]
fn protected_boot_media_without_a_preferred_deployment_run_the_one_typed_into_the_menu() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let site = site(dir.path(), &disk_image(1));
    cli_ok(&data, &["site", "apply", site.to_str().unwrap()]);
    let iso = dir.path().join("boot.iso");
    build_media(
        &data,
        &iso,
        &[
            "--server-url",
            "http://10.77.0.1:8080",
            "--password",
            "lab secret",
        ],
    );
    let config = lab_dhcp_config(&data);
    let lab = Lab::up();
    let server = Server::start_in(dir.path(), &config, &lab.exec_prefix());
    let _turn = vm_turn();
    lab.tap("tap0");
    let serial = dir.path().join("serial-menu.log");
    let console = dir.path().join("console.in");
    let mut vm = lab
        .boot_vm_command("bios", MAC, "tap0", &serial, 300)
        .args(["--no-pxe", "--cdrom", iso.to_str().unwrap()])
        .args(["--expect", "NETDEPLOY-AGENT-RESULT", "--smbios-uuid"])
        .arg(random_smbios_uuid())
        .arg("--serial-input")
        .arg(&console)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run lab/boot-vm.sh");
    // What a person types into the console FIFO: a line and Enter. QEMU holds the FIFO open
    // for reading from its start, so opening it for writing does not wait.
    let answer = |line: &[u8]| {
        let mut console = std::fs::OpenOptions::new()
            .write(true)
            .open(&console)
            .unwrap();
        std::io::Write::write_all(&mut console, line).unwrap();
    };
    let password_asked = wait_for_serial(&serial, "media password:", 1, &mut vm);
    if password_asked {
        answer(b"lab secret\n");
    }
    let asked = password_asked
        && wait_for_serial(&serial, "choose a deployment (number or id):", 1, &mut vm);
    if asked {
        answer(b"LAB00003\n");
    }
    let out = vm.wait_with_output().unwrap();
    let serial = std::fs::read_to_string(&serial).unwrap_or_default();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        asked,
        "no password prompt, or no menu after it:\n{report}\n{serial}\n{}",
        server.log()
    );
    assert!(serial.contains("media password accepted"), "{serial}");
    assert!(
        !serial.contains("lab secret"),
        "the password is not echoed:\n{serial}"
    );
    assert!(out.status.success(), "{report}\n{serial}\n{}", server.log());
    assert!(
        serial.contains("LAB00002  Apply the lab disk image  (available)"),
        "{serial}"
    );
    assert!(
        serial.contains("LAB00003  Say hello from the media  (available)"),
        "{serial}"
    );
    assert!(
        !serial.contains("LAB00001"),
        "a hidden deployment is never listed:\n{serial}"
    );
    assert!(serial.contains("chosen: LAB00003"), "{serial}");
    assert!(serial.contains("hello from boot media"), "{serial}");
    assert!(
        serial.contains("NETDEPLOY-AGENT-RESULT success deployment=LAB00003"),
        "{serial}"
    );
    server
        .wait_for_log(
            &["policy served", "context=media", "menu of 2"],
            Duration::from_secs(5),
        )
        .expect("the server logs the menu");
    server
        .wait_for_log(
            &["policy served", "context=media", "run LAB00003"],
            Duration::from_secs(5),
        )
        .expect("the server logs the chosen deployment's policy");
    let status: serde_json::Value =
        serde_json::from_str(&cli_ok(&data, &["status", "--json"])).unwrap();
    let d = status["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["deployment"] == "LAB00003")
        .unwrap_or_else(|| panic!("{status}"));
    assert_eq!(d["counts"]["compliant"], 1, "{status}");
}

/// Boots a machine with no network device; returns (success, serial log, boot-vm.sh output).
fn boot_offline(firmware: &str, dir: &Path, media: &[&str], disk: &Path) -> (bool, String, String) {
    let _turn = vm_turn();
    let serial = dir.join(format!("serial-{firmware}.log"));
    let out = Command::new(repo().join("lab/boot-vm.sh"))
        .args(["--no-net", "--firmware", firmware, "--serial-log"])
        .arg(&serial)
        .args(["--timeout", "300", "--expect", "NETDEPLOY-AGENT-RESULT"])
        .args(["--smbios-uuid", uuid()])
        .args(media)
        .arg("--disk")
        .arg(disk)
        .output()
        .expect("run lab/boot-vm.sh");
    let log = std::fs::read_to_string(&serial).unwrap_or_default();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), log, report)
}

#[test]
fn unattended_boot_media_run_a_hidden_deployment_and_the_server_records_success() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let site = site(dir.path(), &disk_image(1));
    cli_ok(&data, &["site", "apply", site.to_str().unwrap()]);
    let iso = dir.path().join("boot.iso");
    build_media(
        &data,
        &iso,
        &[
            "--server-url",
            "http://10.77.0.1:8080",
            "--preferred-deployment",
            "LAB00001",
        ],
    );
    let config = lab_dhcp_config(&data);
    let lab = Lab::up();
    let server = Server::start_in(dir.path(), &config, &lab.exec_prefix());
    let (ok, serial, report) = lab.boot_vm_timeout(
        "bios",
        MAC,
        "tap0",
        dir.path(),
        &[
            "--no-pxe",
            "--cdrom",
            iso.to_str().unwrap(),
            "--expect",
            "NETDEPLOY-AGENT-RESULT",
        ],
        300,
    );
    assert!(ok, "{report}\n{serial}\n{}", server.log());
    assert!(
        serial.contains("context=media deployment=LAB00001"),
        "the agent did not take the media's preferred deployment:\n{serial}"
    );
    assert!(serial.contains("hello from boot media"), "{serial}");
    assert!(
        serial.contains("NETDEPLOY-AGENT-RESULT success deployment=LAB00001"),
        "{serial}"
    );
    server
        .wait_for_log(
            &["policy served", "context=media", "run LAB00001"],
            Duration::from_secs(5),
        )
        .expect("the server logs the media policy");
    let status: serde_json::Value =
        serde_json::from_str(&cli_ok(&data, &["status", "--json"])).unwrap();
    let d = status["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["deployment"] == "LAB00001")
        .unwrap_or_else(|| panic!("{status}"));
    assert_eq!(d["counts"]["compliant"], 1, "{status}");
    // Nothing went through PXE: the firmware booted the CD.
    assert!(!server.log().contains("PXE boot reply"), "{}", server.log());
}

/// Exports LAB00002 and builds full media of it in `format`.
fn full_media(dir: &Path, format: &str, image: &[u8]) -> PathBuf {
    full_media_with(dir, format, image, &[])
}

/// [`full_media`] with more `media build` arguments.
fn full_media_with(dir: &Path, format: &str, image: &[u8], extra: &[&str]) -> PathBuf {
    let data = dir.join("data");
    let site = site(dir, image);
    cli_ok(&data, &["site", "apply", site.to_str().unwrap()]);
    let export = dir.join("export");
    let out = cli_ok(
        &data,
        &[
            "deployment",
            "export",
            "LAB00002",
            "--out",
            export.to_str().unwrap(),
        ],
    );
    assert!(out.contains("1 content files"), "{out}");
    let media = dir.join(format!("full.{format}"));
    let mut args = vec!["--full", export.to_str().unwrap(), "--format", format];
    args.extend_from_slice(extra);
    build_media(&data, &media, &args);
    media
}

fn assert_disk_holds(disk: &Path, image: &[u8]) {
    // Give the guest a moment to power off and QEMU to flush the disk file.
    std::thread::sleep(Duration::from_secs(1));
    let written = std::fs::read(disk).unwrap();
    assert_eq!(
        sha256(&written[..image.len()]),
        sha256(image),
        "the disk does not hold the image"
    );
}

#[test]
fn full_media_iso_runs_its_task_sequence_with_no_network_under_seabios() {
    let dir = tempfile::tempdir().unwrap();
    let img = disk_image(4);
    let iso = full_media(dir.path(), "iso", &img);
    let disk = dir.path().join("vda.img");
    std::fs::write(&disk, vec![0u8; 5 << 20]).unwrap();
    let (ok, serial, report) = boot_offline(
        "bios",
        dir.path(),
        &["--cdrom", iso.to_str().unwrap()],
        &disk,
    );
    assert!(ok, "{report}\n{serial}");
    assert!(
        serial.contains("NETDEPLOY-AGENT-RESULT success deployment=LAB00002"),
        "{serial}"
    );
    assert_disk_holds(&disk, &img);
}

#[test]
fn full_media_usb_image_runs_its_task_sequence_with_no_network_under_ovmf() {
    let dir = tempfile::tempdir().unwrap();
    let img = disk_image(4);
    let usb = full_media(dir.path(), "usb", &img);
    let disk = dir.path().join("vda.img");
    std::fs::write(&disk, vec![0u8; 5 << 20]).unwrap();
    let (ok, serial, report) =
        boot_offline("uefi", dir.path(), &["--usb", usb.to_str().unwrap()], &disk);
    assert!(ok, "{report}\n{serial}");
    assert!(
        serial.contains("NETDEPLOY-AGENT-RESULT success deployment=LAB00002"),
        "{serial}"
    );
    assert_disk_holds(&disk, &img);

    // The stick kept the status messages; imported, the server counts the machine compliant.
    let kept = read_stick_file(&usb, &format!("netdeploy/status/{}.jsonl", uuid()));
    let kept_file = dir.path().join("kept.jsonl");
    std::fs::write(&kept_file, &kept).unwrap();
    assert!(kept.contains("\"kind\":\"succeeded\""), "{kept}");
    let data = dir.path().join("data");
    let out = cli_ok(&data, &["status", "import", kept_file.to_str().unwrap()]);
    assert!(
        out.contains("status messages recorded, 0 already there, 0 skipped"),
        "{out}"
    );
    let again = cli_ok(&data, &["status", "import", kept_file.to_str().unwrap()]);
    assert!(again.starts_with("0 status messages recorded"), "{again}");
    let status: serde_json::Value =
        serde_json::from_str(&cli_ok(&data, &["status", "--json"])).unwrap();
    let d = status["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["deployment"] == "LAB00002")
        .unwrap_or_else(|| panic!("{status}"));
    assert_eq!(d["counts"]["compliant"], 1, "{status}");
}

/// Full media built with `--secure-boot` in `format`, booted offline with Secure Boot enforced.
fn secure_boot_media(format: &str, attach: &str) {
    let dir = tempfile::tempdir().unwrap();
    let img = disk_image(4);
    let media = full_media_with(dir.path(), format, &img, &["--secure-boot"]);
    let disk = dir.path().join("vda.img");
    std::fs::write(&disk, vec![0u8; 5 << 20]).unwrap();
    let (ok, serial, report) = boot_offline(
        "uefi-secureboot",
        dir.path(),
        &[attach, media.to_str().unwrap()],
        &disk,
    );
    assert!(ok, "{report}\n{serial}");
    // Secure Boot enforced: shim started Debian's signed GRUB, which booted the signed kernel.
    assert!(
        serial.contains("netdeploy: booting the boot media through shim and GRUB"),
        "{serial}"
    );
    assert!(
        serial.contains("NETDEPLOY-AGENT-RESULT success deployment=LAB00002"),
        "{serial}"
    );
    assert_disk_holds(&disk, &img);
}

#[test]
fn secure_boot_media_iso_runs_its_task_sequence_through_shim_grub_and_the_signed_kernel() {
    secure_boot_media("iso", "--cdrom");
}

#[test]
fn secure_boot_media_usb_image_runs_its_task_sequence_through_shim_grub_and_the_signed_kernel() {
    secure_boot_media("usb", "--usb");
}

/// A file on the FAT system partition of a USB image (GPT, the partition at 1 MiB).
fn read_stick_file(image: &Path, path: &str) -> String {
    use std::io::Read;
    let bytes = std::fs::read(image).unwrap();
    let fs = fatfs::FileSystem::new(
        std::io::Cursor::new(bytes[1 << 20..].to_vec()),
        fatfs::FsOptions::new(),
    )
    .unwrap();
    let mut text = String::new();
    fs.root_dir()
        .open_file(path)
        .unwrap_or_else(|e| panic!("{path} is not on the stick: {e}"))
        .read_to_string(&mut text)
        .unwrap();
    text
}

/// Builds media only (no machine boots): the exported policy holds the secret, the media do not.
#[test]
fn full_media_seal_secret_values_under_the_media_password_and_refuse_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let site_path = site(dir.path(), &disk_image(1));
    let text = std::fs::read_to_string(&site_path).unwrap().replace(
        r#"  {{ name = "write the disk", action = "apply_image""#.replace("{{", "{").as_str(),
        r#"  { name = "join", action = "set_variable", variable = "DomainPassword", value = "hunter2-long", secret = true },
  { name = "write the disk", action = "apply_image""#,
    );
    assert!(text.contains("hunter2-long"));
    std::fs::write(&site_path, text).unwrap();
    cli_ok(&data, &["site", "apply", site_path.to_str().unwrap()]);
    let export = dir.path().join("export");
    let out = cli_ok(
        &data,
        &[
            "deployment",
            "export",
            "LAB00002",
            "--out",
            export.to_str().unwrap(),
        ],
    );
    assert!(
        out.contains("1 secret value(s) in clear (mode 0600)"),
        "{out}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(export.join("policy.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let (kernel, initrd) = boot_image();
    let iso = dir.path().join("full.iso");
    let args = |extra: &[&str]| {
        let mut a: Vec<String> = [
            "media",
            "build",
            "--kernel",
            kernel.to_str().unwrap(),
            "--initrd",
            initrd.to_str().unwrap(),
            "--output",
            iso.to_str().unwrap(),
            "--full",
            export.to_str().unwrap(),
            "--format",
            "iso",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let no_password = args(&[]);
    let refs: Vec<&str> = no_password.iter().map(String::as_str).collect();
    let (ok, out) = crate::harness::cli(&data, &refs);
    assert!(!ok, "{out}");
    assert!(
        out.contains("secret values (steps join)") && out.contains("--password"),
        "{out}"
    );
    assert!(!iso.exists(), "nothing is written");

    let with_password = args(&["--password", "lab secret"]);
    let refs: Vec<&str> = with_password.iter().map(String::as_str).collect();
    let (ok, out) = crate::harness::cli(&data, &refs);
    assert!(ok, "{out}");
    assert!(out.contains("1 secret value(s) sealed"), "{out}");
    let bytes = std::fs::read(&iso).unwrap();
    let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(has(b"nd-seal-v1:"), "the sealed value is on the media");
    assert!(!has(b"hunter2"), "the secret is not on the media in clear");
}
