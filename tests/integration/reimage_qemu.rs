//! The whole re-imaging cycle on real firmware with a real, random SMBIOS UUID (QEMU in the lab
//! network): the machine runs its required deployment; booted again it gets no offer and the
//! firmware goes on to its next boot device; the operator runs `netdeploy pxe clear`; the
//! machine runs the deployment again. BIOS with the device declared by MAC, UEFI with the
//! device declared by UUID.

use std::path::Path;
use std::time::Duration;

use crate::harness::{cli_ok, random_smbios_uuid, Server};
use crate::lab::{boot_image, lab_dhcp_config, Lab};

/// How the site file declares the machine.
#[derive(Clone, Copy, PartialEq)]
enum DeclaredBy {
    Mac,
    Uuid,
}

fn write_site(dir: &Path, mac: &str, uuid: &str, by: DeclaredBy) -> std::path::PathBuf {
    let (kernel, initrd) = boot_image();
    let identity = match by {
        DeclaredBy::Mac => format!("macs = [\"{mac}\"]"),
        DeclaredBy::Uuid => format!("uuid = \"{uuid}\""),
    };
    let text = format!(
        r#"site_code = "LAB"
[[device]]
name = "pc1"
{identity}
[[collection]]
id = "lab"
members = ["pc1"]
[[boot_image]]
id = "linux-x64"
arch = "x64"
kernel = {kernel:?}
initrd = {initrd:?}
cmdline = "console=ttyS0 quiet"
[[task_sequence]]
id = "hello"
name = "Say hello"
boot_image = "linux-x64"
steps = [{{ name = "hello", action = "run_command", command = "echo hello" }}]
[[deployment]]
id = "LAB00001"
task_sequence = "hello"
collection = "lab"
purpose = "required"
available_to = "media_pxe"
"#,
        kernel = kernel.display().to_string(),
        initrd = initrd.display().to_string(),
    );
    let path = dir.join("site.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs the cycle; `clear` is the `pxe clear` selector the operator uses.
fn reimage(firmware: &str, mac: &str, by: DeclaredBy, clear: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let uuid = random_smbios_uuid();
    let site = write_site(dir.path(), mac, &uuid, by);
    cli_ok(&data, &["site", "apply", site.to_str().unwrap()]);
    let lab = Lab::up();
    let server = Server::start_in(dir.path(), &lab_dhcp_config(&data), &lab.exec_prefix());
    let machine = ["--smbios-uuid", uuid.as_str()];
    let arch = if firmware == "bios" { "0" } else { "7" };

    // (a) The required deployment runs.
    let (ok, serial, report) = lab.boot_vm(firmware, mac, "tap0", dir.path(), &machine);
    assert!(ok, "first boot: {report}\n{serial}\n{}", server.log());
    assert!(serial.contains("netdeploy.deployment=LAB00001"), "{serial}");

    // (b) Booted again: no offer, so the firmware goes on to its next boot device (the local
    // disk for SeaBIOS, PXE over IPv6 for OVMF), and the boot image never starts.
    let (no_offer, next_device) = if firmware == "bios" {
        ("Nothing to boot", "Booting from Hard Disk")
    } else {
        ("PXE-E16: No valid offer received", "Start PXE over IPv6")
    };
    let mut args = machine.to_vec();
    args.extend(["--expect", next_device]);
    let (ok, serial, report) = lab.boot_vm_timeout(firmware, mac, "tap1", dir.path(), &args, 120);
    assert!(
        ok,
        "the firmware did not go on: {report}\n{serial}\n{}",
        server.log()
    );
    assert!(serial.contains(no_offer), "{serial}");
    assert!(!serial.contains("NETDEPLOY-BOOT-OK"), "{serial}");
    let refused = server
        .wait_for_log(
            &["no boot offer", mac, &format!("uuid=\"{uuid}\""), "rule 7"],
            Duration::from_secs(2),
        )
        .unwrap_or_else(|| panic!("loop guard with uuid {uuid} not logged:\n{}", server.log()));
    eprintln!("{refused}");

    // explain, given only the MAC, reaches the server's verdict through the UUID it last sent.
    let explained = cli_ok(&data, &["explain", "--mac", mac, "--arch", arch]);
    assert!(
        explained.contains(&format!("was last seen with uuid {uuid}")),
        "{explained}"
    );
    assert!(explained.contains("matched:  device pc1"), "{explained}");
    assert!(explained.contains("loop guard"), "{explained}");

    // (c) The operator clears the guard with the real command line.
    let mut args = vec!["pxe", "clear"];
    args.extend_from_slice(clear);
    let cleared = cli_ok(&data, &args);
    assert!(cleared.contains(": 1 machine(s)"), "{cleared}");
    assert!(
        cleared.contains(&format!(
            "uuid:{uuid} mac:{mac}  set by deployment LAB00001"
        )),
        "{cleared}"
    );

    // (d) It runs the deployment again.
    let (ok, serial, report) = lab.boot_vm(firmware, mac, "tap0", dir.path(), &machine);
    assert!(ok, "after pxe clear: {report}\n{serial}\n{}", server.log());
    assert!(serial.contains("netdeploy.deployment=LAB00001"), "{serial}");
}

#[test]
fn bios_machine_declared_by_mac_is_reimaged_after_pxe_clear_by_device() {
    reimage(
        "bios",
        "52:54:00:0d:0b:01",
        DeclaredBy::Mac,
        &["--device", "pc1"],
    );
}

#[test]
fn uefi_machine_declared_by_uuid_is_reimaged_after_pxe_clear_by_collection() {
    reimage(
        "uefi",
        "52:54:00:0d:0b:02",
        DeclaredBy::Uuid,
        &["--collection", "lab"],
    );
}
