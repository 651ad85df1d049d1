//! The imaging proof end to end on real firmware (QEMU with TCG in the lab network, a random
//! SMBIOS UUID for every machine; docs/image-format.md, "What is proven").
//!
//! 1. The test builds a reference disk from Debian packages: GPT with a BIOS boot partition
//!    (GRUB's `core.img`), an ESP (FAT32, GRUB's `BOOTX64.EFI`) and an ext4 root holding the
//!    lab's kernel, a tiny initramfs whose /init prints `NETDEPLOY-IMAGED-OS-OK <uuid>` and
//!    powers off, and GRUB's configuration. It boots that disk once and sees the marker.
//! 2. A reference machine with that disk PXE-boots and captures its root partition to the
//!    server as the package `ref-image`.
//! 3. A blank machine with a larger blank disk PXE-boots: `partition_disk` (GPT: bios_boot,
//!    esp, linux), `format` of the ESP, a `reboot`; it PXE-boots again and continues:
//!    `apply_image` of `ref-image` onto the root partition, then a `run_command` that installs
//!    the bootloader from the imaged root (as `bcdboot` does on Windows: the boot code into
//!    the MBR, `core.img` into the BIOS boot partition, `BOOTX64.EFI` onto the new ESP).
//! 4. On its next start the machine gets no offer (the loop guard) and its firmware boots the
//!    disk into the imaged OS, which prints the marker with the machine's own UUID.
//!
//! 5. (BIOS) With a chunk of `ref-image` changed in the server's library, a third machine's
//!    apply step fails naming that chunk, and the server records the failure.
//!
//! Only the root partition travels as an image: the layout is the deploy's own (a larger root
//! partition on a larger disk), so `partition_disk` and `format` are what make the disk, and a
//! whole-disk capture (which carries its partition table) would have undone them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{cli_ok, random_smbios_uuid, Server};
use crate::lab::{boot_image, lab_dhcp_config, must, Lab};

const MARKER: &str = "NETDEPLOY-IMAGED-OS-OK";
const RESULT: &str = "NETDEPLOY-AGENT-RESULT (success|failure|restarting)";

/// Where the bootloader parts wait in the imaged root, for the step that installs them.
const BOOT_PARTS: &str = "boot/netdeploy";

/// The deploy's task sequence: lay out, format the ESP, restart, image the root, install the
/// bootloader from the imaged root.
const DEPLOY_STEPS: &str = r#"
  { name = "lay out", action = "partition_disk", layout = { table = "gpt", partitions = [
      { role = "bios_boot", size = "1MiB", label = "bios" },
      { role = "esp", size = "40MiB", label = "EFI" },
      { role = "linux", size = "rest", label = "root" } ] } },
  { name = "esp", action = "format", partition = 2, filesystem = "fat32" },
  { name = "restart", action = "reboot" },
  { name = "root", action = "apply_image", package = "ref-image", file = "image.ndimg", partition = 3 },
  { name = "bootloader", action = "run_command", command = "mkdir -p /mnt/root /mnt/esp && mount -t ext4 -o ro /dev/vda3 /mnt/root && dd if=/mnt/root/boot/netdeploy/mbr.bin of=/dev/vda bs=440 count=1 conv=notrunc && dd if=/mnt/root/boot/netdeploy/core.img of=/dev/vda1 conv=notrunc && mount -t vfat /dev/vda2 /mnt/esp && mkdir -p /mnt/esp/EFI/BOOT && cp /mnt/root/boot/netdeploy/BOOTX64.EFI /mnt/esp/EFI/BOOT/BOOTX64.EFI && umount /mnt/esp && umount /mnt/root && sync && echo bootloader-installed" },
"#;

fn run_sh(script: &str) -> String {
    must(Command::new("sh").args(["-ec", script]))
}

/// A loop device with partitions over a disk file, detached when dropped.
struct Loop(String);

impl Loop {
    fn attach(file: &Path) -> Loop {
        let dev = must(Command::new("losetup").args(["-fP", "--show"]).arg(file));
        let l = Loop(dev.trim().to_owned());
        for i in 0..50 {
            if Path::new(&l.part(3)).exists() {
                return l;
            }
            if i % 10 == 5 {
                let _ = Command::new("partx").args(["-a", &l.0]).status();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("no partitions on {}", l.0);
    }

    fn part(&self, n: u32) -> String {
        format!("{}p{n}", self.0)
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

/// The imaged OS's initramfs: busybox and an /init that prints the marker with the machine's
/// SMBIOS UUID and powers off.
fn marker_initramfs(dir: &Path) -> PathBuf {
    let root = dir.join("os-initramfs");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    let init = root.join("init");
    std::fs::write(
        &init,
        format!(
            "#!/bin/busybox sh\n/bin/busybox mkdir -p /sys\n\
             /bin/busybox mount -t sysfs sysfs /sys\n\
             echo \"{MARKER} $(/bin/busybox cat /sys/class/dmi/id/product_uuid)\"\n\
             /bin/busybox poweroff -f\n"
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&init, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = dir.join("os-initrd.img");
    run_sh(&format!(
        "cd '{}' && find . | cpio -o -H newc --quiet | gzip -1 > '{}'",
        root.display(),
        out.display()
    ));
    std::fs::remove_dir_all(&root).unwrap();
    out
}

/// GRUB for BIOS and UEFI, its prefix on partition 3. `core.img` and the MBR boot code are
/// patched as grub-bios-setup would for a core image at sector 2048 (the BIOS boot partition
/// of both layouts): the boot code's kernel sector (offset 0x5c, grub's boot.S) and the first
/// sector's block list start (offset 0x1f4, grub's diskboot.S) to the sector after it.
fn grub_parts(parts: &Path) {
    std::fs::create_dir_all(parts).unwrap();
    let prefix = "(hd0,gpt3)/boot/grub";
    let core = parts.join("core.img");
    must(
        Command::new("grub-mkimage")
            .args(["-O", "i386-pc", "-p", prefix, "-o"])
            .arg(&core)
            .args(["biosdisk", "part_gpt", "ext2", "normal", "linux", "echo"]),
    );
    let mut c = std::fs::read(&core).unwrap();
    assert!(
        c.len() <= 1 << 20,
        "core.img does not fit the BIOS boot partition"
    );
    c[0x1f4..0x1fc].copy_from_slice(&2049u64.to_le_bytes());
    std::fs::write(&core, c).unwrap();
    let mut mbr = std::fs::read("/usr/lib/grub/i386-pc/boot.img").unwrap();
    mbr[0x5c..0x64].copy_from_slice(&2048u64.to_le_bytes());
    std::fs::write(parts.join("mbr.bin"), &mbr[..440]).unwrap();
    must(
        Command::new("grub-mkimage")
            .args(["-O", "x86_64-efi", "-p", prefix, "-o"])
            .arg(parts.join("BOOTX64.EFI"))
            .args(["part_gpt", "ext2", "fat", "normal", "linux", "echo"]),
    );
}

/// The reference disk (96 MiB): GPT, partition 1 BIOS boot (1 MiB at sector 2048), 2 the ESP
/// (40 MiB, FAT32), 3 the ext4 root (the rest); its bootloader installed the way the deploy's
/// step installs it.
fn reference_disk(dir: &Path) -> PathBuf {
    let file = dir.join("reference.img");
    std::fs::File::create(&file)
        .unwrap()
        .set_len(96 << 20)
        .unwrap();
    let mut sfdisk = Command::new("sfdisk")
        .args(["--quiet", "--no-reread"])
        .arg(&file)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    sfdisk
        .stdin
        .take()
        .unwrap()
        .write_all(
            b"label: gpt\nstart=2048,size=2048,type=21686148-6449-6E6F-744E-656564454649\n\
              size=40MiB,type=U\ntype=L\n",
        )
        .unwrap();
    assert!(sfdisk.wait().unwrap().success());

    let root = dir.join("reference-root");
    let parts = root.join(BOOT_PARTS);
    grub_parts(&parts);
    let (kernel, _) = boot_image();
    std::fs::copy(kernel, root.join("boot/vmlinuz")).unwrap();
    std::fs::rename(marker_initramfs(dir), root.join("boot/initrd.img")).unwrap();
    std::fs::create_dir_all(root.join("boot/grub")).unwrap();
    std::fs::write(
        root.join("boot/grub/grub.cfg"),
        "set timeout=0\nlinux /boot/vmlinuz console=ttyS0 quiet\ninitrd /boot/initrd.img\nboot\n",
    )
    .unwrap();

    let disk = Loop::attach(&file);
    must(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "root", "-d"])
            .arg(&root)
            .arg(disk.part(3)),
    );
    must(
        Command::new("mkfs.vfat")
            .args(["-F", "32", "-n", "EFI"])
            .arg(disk.part(2)),
    );
    must(Command::new("mmd").args(["-i", &disk.part(2), "::/EFI", "::/EFI/BOOT"]));
    must(
        Command::new("mcopy")
            .args(["-i", &disk.part(2)])
            .arg(parts.join("BOOTX64.EFI"))
            .arg("::/EFI/BOOT/BOOTX64.EFI"),
    );
    let p = parts.display();
    run_sh(&format!(
        "dd if='{p}/mbr.bin' of='{d}' bs=440 count=1 conv=notrunc status=none && \
         dd if='{p}/core.img' of='{d1}' conv=notrunc status=none && sync",
        d = disk.0,
        d1 = disk.part(1),
    ));
    drop(disk);
    std::fs::remove_dir_all(&root).unwrap();
    file
}

/// The lab site; with `captured`, also the captured package (declared `captured = true`, as a
/// site file that replaces the catalog must keep it) and the deployments that apply it.
fn site(dir: &Path, macs: Macs, captured: bool) -> PathBuf {
    let Macs {
        reference: ref_mac,
        blank: pc_mac,
        tampered: bad_mac,
    } = macs;
    let deploy = captured;
    let (kernel, initrd) = boot_image();
    let mut site = format!(
        r#"site_code = "LAB"
[[device]]
name = "ref"
macs = ["{ref_mac}"]
[[device]]
name = "pc1"
macs = ["{pc_mac}"]
[[collection]]
id = "reference"
members = ["ref"]
[[collection]]
id = "blank"
members = ["pc1"]
[[boot_image]]
id = "linux-x64"
arch = "x64"
kernel = {kernel:?}
initrd = {initrd:?}
cmdline = "console=ttyS0 quiet"
[[task_sequence]]
id = "capture"
name = "Capture the reference root"
boot_image = "linux-x64"
steps = [
  {{ name = "capture", action = "capture_image", package = "ref-image", partition = 3 }},
]
[[deployment]]
id = "LAB00001"
task_sequence = "capture"
collection = "reference"
purpose = "required"
available_to = "media_pxe"
"#,
        kernel = kernel.display().to_string(),
        initrd = initrd.display().to_string(),
    );
    if captured {
        site.push_str(&format!(
            r#"[[package]]
id = "ref-image"
captured = true
[[device]]
name = "pc3"
macs = ["{bad_mac}"]
[[collection]]
id = "tampered"
members = ["pc3"]
[[task_sequence]]
id = "apply"
name = "Apply the reference root"
boot_image = "linux-x64"
steps = [
  {{ name = "lay out", action = "partition_disk", layout = {{ table = "gpt", partitions = [
      {{ role = "bios_boot", size = "1MiB" }}, {{ role = "esp", size = "40MiB" }},
      {{ role = "linux", size = "rest" }} ] }} }},
  {{ name = "root", action = "apply_image", package = "ref-image", file = "image.ndimg", partition = 3 }},
]
[[deployment]]
id = "LAB00003"
task_sequence = "apply"
collection = "tampered"
purpose = "required"
available_to = "media_pxe"
accept_high_risk = true
[[task_sequence]]
id = "deploy"
name = "Image the blank machine"
boot_image = "linux-x64"
steps = [{DEPLOY_STEPS}]
[[deployment]]
id = "LAB00002"
task_sequence = "deploy"
collection = "blank"
purpose = "required"
available_to = "media_pxe"
accept_high_risk = true
"#
        ));
    }
    let path = dir.join(if deploy {
        "deploy.toml"
    } else {
        "capture.toml"
    });
    std::fs::write(&path, site).unwrap();
    path
}

fn assert_loop_guard_logged(server: &Server, mac: &str) {
    server
        .wait_for_log(&["no boot offer", mac, "rule 7"], Duration::from_secs(2))
        .unwrap_or_else(|| panic!("loop guard not logged:\n{}", server.log()));
}

fn phase(firmware: &str, name: &str, start: Instant) {
    eprintln!(
        "imaging_qemu {firmware}: {name} took {} s",
        start.elapsed().as_secs()
    );
}

/// The MACs of the reference machine and of the blank one.
#[derive(Clone, Copy)]
struct Macs {
    reference: &'static str,
    blank: &'static str,
    /// The machine that applies `ref-image` once a chunk of it is tampered with.
    tampered: &'static str,
}

#[test]
fn bios_reference_disk_is_captured_partitioned_formatted_applied_across_a_reboot_and_boots_the_imaged_os(
) {
    capture_deploy_and_boot_the_imaged_os(
        "bios",
        Macs {
            reference: "52:54:00:e2:e0:01",
            blank: "52:54:00:e2:e0:02",
            tampered: "52:54:00:e2:e0:03",
        },
    );
}

#[test]
fn uefi_reference_disk_is_captured_partitioned_formatted_applied_across_a_reboot_and_boots_the_imaged_os(
) {
    capture_deploy_and_boot_the_imaged_os(
        "uefi",
        Macs {
            reference: "52:54:00:e2:e1:01",
            blank: "52:54:00:e2:e1:02",
            tampered: "52:54:00:e2:e1:03",
        },
    );
}

/// The four phases of the module's doc on `firmware` (`bios` or `uefi`, lab/boot-vm.sh).
fn capture_deploy_and_boot_the_imaged_os(firmware: &str, macs: Macs) {
    let (ref_mac, pc_mac) = (macs.reference, macs.blank);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let lab = Lab::up();

    // Built (or found cached) before the clock of phase 1 starts.
    boot_image();

    // 1. The reference disk boots (no network): the reference is good.
    let t = Instant::now();
    let reference = reference_disk(dir.path());
    let ref_uuid = random_smbios_uuid();
    let ref_file = reference.to_str().unwrap();
    let (ok, serial, report) = lab.boot_vm_timeout(
        firmware,
        ref_mac,
        "tap0",
        dir.path(),
        &[
            "--no-net",
            "--disk",
            ref_file,
            "--smbios-uuid",
            &ref_uuid,
            "--expect",
            MARKER,
        ],
        180,
    );
    assert!(ok, "reference disk: {report}\n{serial}");
    assert!(serial.contains(&format!("{MARKER} {ref_uuid}")), "{serial}");
    phase(firmware, "reference disk built and booted", t);

    // 2. Capture: the reference machine PXE-boots and uploads its root partition.
    let t = Instant::now();
    cli_ok(
        &data,
        &[
            "site",
            "apply",
            site(dir.path(), macs, false).to_str().unwrap(),
        ],
    );
    let server = Server::start_in(dir.path(), &lab_dhcp_config(&data), &lab.exec_prefix());
    let (ok, serial, report) = lab.boot_vm_timeout(
        firmware,
        ref_mac,
        "tap1",
        dir.path(),
        &[
            "--disk",
            ref_file,
            "--smbios-uuid",
            &ref_uuid,
            "--expect",
            RESULT,
        ],
        300,
    );
    assert!(ok, "capture: {report}\n{serial}\n{}", server.log());
    assert!(
        serial.contains("NETDEPLOY-AGENT-RESULT success deployment=LAB00001"),
        "{serial}\n{}",
        server.log()
    );
    assert!(serial.contains("ext filesystem"), "{serial}");
    drop(server);
    std::fs::remove_file(&reference).unwrap();
    let listed = cli_ok(&data, &["package", "list"]);
    assert!(listed.contains("ref-image"), "{listed}");
    phase(firmware, "capture", t);

    // 3. Deploy onto a larger blank disk, across a restart.
    let t = Instant::now();
    let deploy_site = site(dir.path(), macs, true);
    cli_ok(&data, &["site", "apply", deploy_site.to_str().unwrap()]);
    let server = Server::start_in(dir.path(), &lab_dhcp_config(&data), &lab.exec_prefix());
    let blank = dir.path().join("blank.img");
    std::fs::File::create(&blank)
        .unwrap()
        .set_len(160 << 20)
        .unwrap();
    let pc_uuid = random_smbios_uuid();
    let machine = [
        "--disk",
        blank.to_str().unwrap(),
        "--smbios-uuid",
        pc_uuid.as_str(),
        "--expect",
        RESULT,
    ];
    let (ok, serial, report) =
        lab.boot_vm_timeout(firmware, pc_mac, "tap2", dir.path(), &machine, 300);
    assert!(
        ok,
        "deploy, first boot: {report}\n{serial}\n{}",
        server.log()
    );
    assert!(
        serial.contains("NETDEPLOY-AGENT-RESULT restarting deployment=LAB00002 next_step=4"),
        "{serial}"
    );
    assert!(
        serial.contains("/dev/vda: 160 MiB, writing 3 partitions"),
        "{serial}"
    );
    let (ok, serial, report) =
        lab.boot_vm_timeout(firmware, pc_mac, "tap3", dir.path(), &machine, 400);
    assert!(
        ok,
        "deploy, second boot: {report}\n{serial}\n{}",
        server.log()
    );
    assert!(
        serial.contains("continuing after a restart at step 4/5"),
        "{serial}"
    );
    assert!(!serial.contains("step 1/5"), "step 1 ran again:\n{serial}");
    assert!(serial.contains("bootloader-installed"), "{serial}");
    assert!(
        serial.contains("NETDEPLOY-AGENT-RESULT success deployment=LAB00002"),
        "{serial}\n{}",
        server.log()
    );
    phase(firmware, "deploy (two boots)", t);

    // 4. No offer (the loop guard); the firmware boots the disk into the imaged OS.
    let t = Instant::now();
    let disk = blank.to_str().unwrap();
    let uuid = pc_uuid.as_str();
    if firmware == "uefi" {
        // OVMF tries PXE and HTTP boot over IPv4 and IPv6 one after the other, minutes under
        // TCG, before the disk: the machine is seen to get no offer over IPv4, then started
        // again from its disk alone.
        let args = ["--disk", disk, "--smbios-uuid", uuid, "--expect", "PXE-E16"];
        let (ok, serial, report) =
            lab.boot_vm_timeout(firmware, pc_mac, "tap4", dir.path(), &args, 180);
        assert!(
            ok,
            "no offer: {report}
{serial}
{}",
            server.log()
        );
        assert_loop_guard_logged(&server, pc_mac);
        let args = [
            "--no-net",
            "--disk",
            disk,
            "--smbios-uuid",
            uuid,
            "--expect",
            MARKER,
        ];
        let (ok, serial, report) =
            lab.boot_vm_timeout(firmware, pc_mac, "tap5", dir.path(), &args, 180);
        assert!(ok, "boot from disk: {report}\n{serial}");
        assert!(serial.contains(&format!("{MARKER} {uuid}")), "{serial}");
    } else {
        let args = ["--disk", disk, "--smbios-uuid", uuid, "--expect", MARKER];
        let (ok, serial, report) =
            lab.boot_vm_timeout(firmware, pc_mac, "tap4", dir.path(), &args, 240);
        assert!(ok, "boot from disk: {report}\n{serial}\n{}", server.log());
        assert!(serial.contains("Booting from Hard Disk"), "{serial}");
        assert!(serial.contains(&format!("{MARKER} {uuid}")), "{serial}");
        assert_loop_guard_logged(&server, pc_mac);
    }
    phase(firmware, "boot from disk", t);

    // 5. (BIOS only, one more machine) A chunk of ref-image changes in the server's library:
    // the apply step fails naming it, and the server records the failure.
    if firmware == "bios" {
        let t = Instant::now();
        let shown: serde_json::Value =
            serde_json::from_str(&cli_ok(&data, &["package", "show", "ref-image"])).unwrap();
        let chunk = shown["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["path"] == "chunk-000001.zst")
            .unwrap_or_else(|| panic!("no chunk 1 in {shown:#}"));
        let sha = chunk["sha256"].as_str().unwrap();
        let stored = data.join("content").join(&sha[..2]).join(sha);
        let mut bytes = std::fs::read(&stored).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 0x01;
        std::fs::write(&stored, bytes).unwrap();
        std::fs::write(&blank, b"").unwrap();
        std::fs::File::create(&blank)
            .unwrap()
            .set_len(160 << 20)
            .unwrap();
        let bad_uuid = random_smbios_uuid();
        let args = [
            "--disk",
            blank.to_str().unwrap(),
            "--smbios-uuid",
            bad_uuid.as_str(),
            "--expect",
            RESULT,
        ];
        let (ok, serial, report) =
            lab.boot_vm_timeout(firmware, macs.tampered, "tap6", dir.path(), &args, 300);
        assert!(ok, "tampered chunk: {report}\n{serial}\n{}", server.log());
        assert!(
            serial.contains("NETDEPLOY-AGENT-RESULT failure deployment=LAB00003 step=\"root\""),
            "{serial}"
        );
        assert!(serial.contains("chunk 1"), "{serial}");
        server
            .wait_for_log(
                &["kind=failed", macs.tampered, "chunk 1"],
                Duration::from_secs(5),
            )
            .unwrap_or_else(|| panic!("failure not recorded:\n{}", server.log()));
        phase(firmware, "tampered chunk", t);
    }
}
