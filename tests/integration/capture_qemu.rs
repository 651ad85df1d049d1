//! `capture_image` on real firmware (QEMU in the lab network, a random SMBIOS UUID): a machine
//! whose disk is the GPT reference disk of tests/integration/capture.rs PXE-boots the real boot
//! image, whose partclone maps the ext4 partition's used blocks, and the agent uploads the disk
//! to the server as a new package.

use crate::capture::reference_disk;
use crate::harness::{cli_ok, random_smbios_uuid, Server};
use crate::lab::{apply_one_deployment_site_with_steps, lab_dhcp_config, Lab};

const MAC: &str = "52:54:00:0d:0c:11";

#[test]
fn bios_machine_captures_its_disk_to_the_server_with_partclone_in_the_boot_image() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (disk_file, loop_disk) = reference_disk(dir.path());
    drop(loop_disk);
    apply_one_deployment_site_with_steps(
        dir.path(),
        "ref",
        &format!("macs = [\"{MAC}\"]"),
        r#"{ name = "capture", action = "capture_image", package = "ref-disk" }"#,
    );
    let lab = Lab::up();
    let server = Server::start_in(dir.path(), &lab_dhcp_config(&data), &lab.exec_prefix());
    let uuid = random_smbios_uuid();
    let disk = disk_file.to_str().unwrap();
    let args = [
        "--smbios-uuid",
        uuid.as_str(),
        "--disk",
        disk,
        "--expect",
        "NETDEPLOY-AGENT-RESULT",
    ];
    let (ok, serial, report) = lab.boot_vm("bios", MAC, "tap0", dir.path(), &args);
    assert!(ok, "{report}\n{serial}\n{}", server.log());
    assert!(
        serial.contains("NETDEPLOY-AGENT-RESULT success deployment=LAB00001"),
        "{serial}\n{}",
        server.log()
    );
    assert!(
        serial.contains("/dev/vda1: ext filesystem"),
        "partclone did not map the ext4 partition:\n{serial}"
    );
    // The server runs in the lab's namespace: the store is read directly.
    let listed = cli_ok(&data, &["package", "list"]);
    assert!(listed.contains("ref-disk"), "{listed}");
}
