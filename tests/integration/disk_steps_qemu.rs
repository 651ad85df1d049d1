//! The disk steps in a real boot (QEMU with TCG in the lab network): a machine PXE-boots the
//! Linux boot image, whose agent lays out its blank virtio disk (`/dev/vda`, the first disk
//! that is not removable) with the initramfs's own `sfdisk`, formats the ESP FAT32 and the
//! Linux partition ext4 with its `mkfs.vfat` and `mkfs.ext4`, applies a captured `.ndimg` onto
//! partition 2 and powers off. The host then reads the disk file: table, labels, a clean ext4
//! and its files.

use std::time::Duration;

use crate::disk_steps::{assert_laid_out_and_imaged, captured_ext4, layout_steps, LoopDisk};
use crate::harness::{cli_ok, random_smbios_uuid, Server};
use crate::lab::{boot_image, lab_dhcp_config, Lab};

const MAC: &str = "52:54:00:d1:5c:0e";

#[test]
fn a_pxe_booted_machine_lays_out_formats_and_images_its_blank_disk() {
    let dir = tempfile::tempdir().unwrap();
    let (kernel, initrd) = boot_image();
    let (pkg, files) = captured_ext4(dir.path());
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
id = "image"
from = {pkg:?}
[[task_sequence]]
id = "disk"
name = "Lay out and image the disk"
boot_image = "linux-x64"
steps = [
{steps}
  {{ name = "done", action = "poweroff" }},
]
[[deployment]]
id = "LAB00001"
task_sequence = "disk"
collection = "lab"
purpose = "required"
available_to = "media_pxe"
accept_high_risk = true
"#,
        kernel = kernel.display().to_string(),
        initrd = initrd.display().to_string(),
        pkg = pkg.display().to_string(),
        steps = layout_steps(""),
    );
    let site_path = dir.path().join("site.toml");
    std::fs::write(&site_path, site).unwrap();
    let data = dir.path().join("data");
    cli_ok(&data, &["site", "apply", site_path.to_str().unwrap()]);
    let disk_file = dir.path().join("vda.img");
    std::fs::File::create(&disk_file)
        .unwrap()
        .set_len(160 << 20)
        .unwrap();
    let lab = Lab::up();
    let server = Server::start_in(dir.path(), &lab_dhcp_config(&data), &lab.exec_prefix());
    let uuid = random_smbios_uuid();
    let (ok, serial, report) = lab.boot_vm_timeout(
        "bios",
        MAC,
        "tap0",
        dir.path(),
        &[
            "--disk",
            disk_file.to_str().unwrap(),
            "--smbios-uuid",
            &uuid,
            "--expect",
            "NETDEPLOY-AGENT-RESULT",
        ],
        400,
    );
    assert!(ok, "{report}\n{serial}\n{}", server.log());
    assert!(
        serial.contains("NETDEPLOY-AGENT-RESULT success deployment=LAB00001"),
        "{serial}"
    );
    assert!(
        serial.contains("partition_disk gpt (2 partitions) -> disk non-removable"),
        "{serial}"
    );
    assert!(
        serial.contains("/dev/vda: 160 MiB, writing 2 partitions"),
        "{serial}"
    );
    // Give the guest a moment to power off and QEMU to flush the disk file.
    std::thread::sleep(Duration::from_secs(1));
    let disk = LoopDisk::attach(&disk_file);
    assert_laid_out_and_imaged(&disk, &files);
}
