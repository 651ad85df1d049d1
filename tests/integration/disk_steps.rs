//! The disk steps on a real block device (docs/site-file.md): a loop device over a sparse file
//! stands for the machine's disk. A real server's deployment partitions it (GPT: ESP and a
//! Linux partition), formats the ESP FAT32 and the Linux partition ext4, and applies a captured
//! `.ndimg` of an ext4 filesystem onto partition 2; `blkid`, `fsck.ext4 -n` and `debugfs` then
//! read the disk. An MBR layout gets its types, active flag, ext4 and swap, and a filesystem
//! the partition's role does not take fails the step. A layout too large for the disk fails
//! the step naming the partition.
//!
//! The Linux agent (`target/debug/netdeploy-agent`, built with the workspace) runs as root
//! with `--root` for its identity and kernel line, and on the real `/dev`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::harness::{boot_script, cli_ok, loopback_config, Server};

const MAC: &str = "52:54:00:d1:5c:01";

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A loop device with partition scanning over a sparse file; detached when dropped.
pub struct LoopDisk {
    pub device: String,
}

impl LoopDisk {
    /// A new sparse file of `mib` MiB, attached.
    pub fn new(file: &Path, mib: u64) -> LoopDisk {
        std::fs::File::create(file)
            .unwrap()
            .set_len(mib << 20)
            .unwrap();
        LoopDisk::loop_device(file)
    }

    fn loop_device(file: &Path) -> LoopDisk {
        let out = run(Command::new("losetup")
            .args(["-f", "-P", "--show"])
            .arg(file));
        LoopDisk {
            device: String::from_utf8(out).unwrap().trim().to_owned(),
        }
    }

    /// The disk file `file`, which holds a partition table, attached, with its partitions
    /// as devices.
    pub fn attach(file: &Path) -> LoopDisk {
        let disk = LoopDisk::loop_device(file);
        // losetup's own scan of the table does not always make the partition devices (in a
        // container); partx adds them from the table.
        run(Command::new("partx").arg("-u").arg(&disk.device));
        disk
    }

    pub fn partition(&self, n: u32) -> String {
        netdeploy_wire::disk::partition_device(&self.device, n)
    }
}

impl Drop for LoopDisk {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.device).status();
    }
}

/// `target/debug/netdeploy-agent`, beside the server binary.
fn linux_agent() -> PathBuf {
    let exe = Path::new(crate::harness::binary()).with_file_name("netdeploy-agent");
    assert!(
        exe.is_file(),
        "{} is missing: build it with `cargo build --workspace`",
        exe.display()
    );
    exe
}

/// An ext4 filesystem of 32 MiB with a few files, captured as the image directory
/// `dir/image`; returns it and the files.
pub fn captured_ext4(dir: &Path) -> (PathBuf, Vec<(String, Vec<u8>)>) {
    let root = dir.join("fsroot");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let noise: Vec<u8> = (0..1 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect();
    let files = vec![
        ("etc/hostname".to_owned(), b"imaged-by-netdeploy\n".to_vec()),
        ("noise.bin".to_owned(), noise),
    ];
    for (name, data) in &files {
        std::fs::write(root.join(name), data).unwrap();
    }
    let img = dir.join("fs.img");
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-b", "4096", "-d"])
        .arg(&root)
        .arg(&img)
        .arg("32M"));
    let pkg = dir.join("image");
    netdeploy_agent::image::capture(
        &img,
        &pkg,
        &netdeploy_agent::image::CaptureOptions {
            chunk_size: 256 << 10,
            level: 3,
        },
    )
    .unwrap();
    std::fs::remove_file(&img).unwrap();
    (pkg, files)
}

/// The site: pc1 runs `steps` (TOML array items) with content `option`, with the image
/// package `image`.
fn write_site(dir: &Path, steps: &str, option: &str) -> PathBuf {
    std::fs::write(dir.join("vmlinuz"), b"kernel").unwrap();
    std::fs::write(dir.join("initrd.img"), b"initrd").unwrap();
    let site = format!(
        r#"site_code = "LAB"
[[device]]
name = "pc1"
macs = ["{MAC}"]

[[collection]]
id = "lab"
members = ["pc1"]

[[package]]
id = "image"
from = "image"

[[boot_image]]
id = "linux-x64"
arch = "x64"
kernel = "vmlinuz"
initrd = "initrd.img"

[[task_sequence]]
id = "disk"
name = "Lay out and image the disk"
boot_image = "linux-x64"
steps = [
{steps}
]

[[deployment]]
id = "LAB00001"
task_sequence = "disk"
collection = "lab"
purpose = "required"
available_to = "media_pxe"
option = "{option}"
"#
    );
    let path = dir.join("site.toml");
    std::fs::write(&path, site).unwrap();
    path
}

/// Runs pc1's deployment: the site applied, the server started, the agent run with the
/// kernel line of the iPXE script. Returns the server (for its records) and the agent's run.
fn deploy(dir: &Path, steps: &str, option: &str) -> (Server, Output, String) {
    let site = write_site(dir, steps, option);
    let data = dir.join("data");
    cli_ok(&data, &["site", "apply", site.to_str().unwrap()]);
    let server = Server::start(dir, &loopback_config(dir, "proxy", ""));
    let script = boot_script(
        &server,
        &format!("/boot.ipxe?mac={}&arch=0", MAC.replace(':', "-")),
    );
    let line = script
        .lines()
        .find(|l| l.contains("netdeploy.server="))
        .unwrap_or_else(|| panic!("no kernel line in:\n{script}"))
        .to_owned();
    let root = dir.join("root");
    let nic = root.join("sys/class/net/ens3");
    std::fs::create_dir_all(&nic).unwrap();
    std::fs::write(nic.join("address"), format!("{MAC}\n")).unwrap();
    std::fs::create_dir_all(root.join("proc")).unwrap();
    std::fs::write(root.join("proc/cmdline"), format!("{line}\n")).unwrap();
    let out = Command::new(linux_agent())
        .arg("--root")
        .arg(&root)
        .output()
        .unwrap();
    let console = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (server, out, console)
}

fn counts(server: &Server) -> serde_json::Value {
    let status: serde_json::Value =
        serde_json::from_str(&cli_ok(&server.data_dir(), &["status", "--json"])).unwrap();
    status["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["deployment"] == "LAB00001")
        .unwrap()["counts"]
        .clone()
}

#[test]
fn a_deployment_partitions_a_loop_disk_formats_it_and_applies_an_ndimg_onto_partition_2() {
    partition_format_and_apply("download_on_demand");
}

/// The deployment that lays out, formats and images a loop disk, checked; returns the
/// agent's console.
fn partition_format_and_apply(option: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let (_pkg, files) = captured_ext4(dir.path());
    let disk = LoopDisk::new(&dir.path().join("disk.raw"), 160);
    let steps = layout_steps(&format!("disk = {{ path = {:?} }}, ", disk.device));
    let (server, out, console) = deploy(dir.path(), &steps, option);
    assert!(out.status.success(), "{console}");
    assert!(
        console.contains("SHA-256 of every chunk verified"),
        "{console}"
    );

    assert_laid_out_and_imaged(&disk, &files);
    assert_eq!(counts(&server)["compliant"], 1, "{console}");
    console
}

/// The steps that lay out a disk (GPT: a 40 MiB ESP and a Linux partition), format both and
/// apply the package `image` onto partition 2; `disk` is put in each step (`disk = {...}, `).
pub fn layout_steps(disk: &str) -> String {
    format!(
        r#"{{ name = "lay out", action = "partition_disk", {disk}layout = {{ table = "gpt", partitions = [
      {{ role = "esp", size = "40MiB", label = "EFI" }},
      {{ role = "linux", size = "rest", label = "root" }} ] }} }},
  {{ name = "esp", action = "format", {disk}partition = 1, filesystem = "fat32" }},
  {{ name = "root", action = "format", {disk}partition = 2, filesystem = "ext4" }},
  {{ name = "image", action = "apply_image", package = "image", file = "image.ndimg", {disk}partition = 2 }},"#
    )
}

/// `disk` holds the layout of these tests (GPT: a 40 MiB ESP named EFI formatted FAT32, and a
/// Linux partition named root) with the captured ext4 filesystem `files` on partition 2.
pub fn assert_laid_out_and_imaged(disk: &LoopDisk, files: &[(String, Vec<u8>)]) {
    // The table: GPT, the ESP type and name, the Linux partition after it.
    let table: serde_json::Value =
        serde_json::from_slice(&run(Command::new("sfdisk").arg("--json").arg(&disk.device)))
            .unwrap();
    let parts = table["partitiontable"]["partitions"].as_array().unwrap();
    assert_eq!(table["partitiontable"]["label"], "gpt", "{table:#}");
    assert_eq!(parts.len(), 2, "{table:#}");
    assert_eq!(parts[0]["start"], 2048);
    assert_eq!(parts[0]["size"], 40 * 2048);
    assert_eq!(parts[0]["type"], "C12A7328-F81F-11D2-BA4B-00A0C93EC93B");
    assert_eq!(parts[0]["name"], "EFI");
    assert_eq!(parts[1]["type"], "0FC63DAF-8483-4772-8E79-3D69D8477DE4");
    assert_eq!(parts[1]["name"], "root");

    // The ESP: FAT32 with the layout's label.
    let blkid = String::from_utf8(run(Command::new("blkid")
        .args(["-o", "export"])
        .arg(disk.partition(1))))
    .unwrap();
    assert!(blkid.contains("TYPE=vfat"), "{blkid}");
    assert!(blkid.contains("LABEL=EFI"), "{blkid}");
    // Partition 2 holds the applied filesystem, clean and with its files.
    let p2 = disk.partition(2);
    run(Command::new("fsck.ext4").arg("-fn").arg(&p2));
    for (name, data) in files {
        let got = run(Command::new("debugfs")
            .arg("-R")
            .arg(format!("cat /{name}"))
            .arg(&p2));
        assert!(got == *data, "{name} differs on {p2}");
    }
    // The 32 MiB filesystem of the image was grown to fill its larger partition.
    let head = String::from_utf8(run(Command::new("dumpe2fs").arg("-h").arg(&p2))).unwrap();
    let field = |name: &str| -> u64 {
        head.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in:\n{head}"))
    };
    let fs = field("Block count:") * field("Block size:");
    let part: u64 = String::from_utf8(run(Command::new("blockdev").arg("--getsize64").arg(&p2)))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        fs > 32 << 20 && part - fs < 4096,
        "the filesystem ({fs} bytes) does not fill partition 2 ({part} bytes)"
    );
}

#[test]
fn a_layout_too_large_for_the_disk_fails_the_step_naming_the_partition() {
    let dir = tempfile::tempdir().unwrap();
    captured_ext4(dir.path());
    let disk = LoopDisk::new(&dir.path().join("disk.raw"), 64);
    let steps = format!(
        r#"{{ name = "lay out", action = "partition_disk", disk = {{ path = {:?} }}, layout = {{ table = "mbr", partitions = [
      {{ role = "linux", size = "32MiB", active = true }},
      {{ role = "swap", size = "1GiB" }} ] }} }},
  {{ name = "never", action = "format", disk = {{ path = {:?} }}, partition = 1, filesystem = "ext4" }},"#,
        disk.device, disk.device
    );
    let (server, out, console) = deploy(dir.path(), &steps, "download_on_demand");
    assert!(!out.status.success(), "{console}");
    let why = format!(
        "{}: partition 2 (1GiB) does not fit: it needs 1024 MiB and 31 MiB are left on a disk \
         of 64 MiB",
        disk.device
    );
    assert!(console.contains(&why), "{console}");
    assert!(console.contains("step 1/2 \"lay out\" failed"), "{console}");
    // Nothing was written: the disk still has no partition table.
    let probe = Command::new("sfdisk")
        .arg("--dump")
        .arg(&disk.device)
        .output()
        .unwrap();
    assert!(!probe.status.success(), "a table was written: {probe:?}");
    assert_eq!(counts(&server)["failed"], 1, "{console}");
}

#[test]
fn an_mbr_layout_gets_its_active_flag_ext4_and_swap_and_a_filesystem_its_role_refuses_fails() {
    let dir = tempfile::tempdir().unwrap();
    captured_ext4(dir.path());
    let disk = LoopDisk::new(&dir.path().join("disk.raw"), 96);
    let d = format!("disk = {{ path = {:?} }}", disk.device);
    let steps = format!(
        r#"{{ name = "lay out", action = "partition_disk", {d}, layout = {{ table = "mbr", partitions = [
      {{ role = "linux", size = "48MiB", label = "boot", active = true }},
      {{ role = "swap", size = "25%", label = "swap" }},
      {{ role = "linux", size = "rest" }} ] }} }},
  {{ name = "boot", action = "format", {d}, partition = 1, filesystem = "ext4" }},
  {{ name = "swap", action = "format", {d}, partition = 2, filesystem = "swap" }},
  {{ name = "wrong", action = "format", {d}, partition = 3, filesystem = "fat32" }},"#
    );
    let (server, out, console) = deploy(dir.path(), &steps, "download_on_demand");
    assert!(!out.status.success(), "{console}");
    let why = format!(
        "partition 3 of {} is a linux partition, which takes no fat32",
        disk.device
    );
    assert!(console.contains(&why), "{console}");
    assert!(console.contains("step 4/4 \"wrong\" failed"), "{console}");
    assert_eq!(counts(&server)["failed"], 1, "{console}");

    let table: serde_json::Value =
        serde_json::from_slice(&run(Command::new("sfdisk").arg("--json").arg(&disk.device)))
            .unwrap();
    let parts = table["partitiontable"]["partitions"].as_array().unwrap();
    assert_eq!(table["partitiontable"]["label"], "dos", "{table:#}");
    let summary: Vec<(u64, u64, String, bool)> = parts
        .iter()
        .map(|p| {
            (
                p["start"].as_u64().unwrap(),
                p["size"].as_u64().unwrap(),
                p["type"].as_str().unwrap().to_owned(),
                p["bootable"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    // 1 MiB lead, 48 MiB, 24 MiB (25% of 96), and the 23 MiB left; sectors of 512 bytes.
    assert_eq!(
        summary,
        [
            (2048, 48 * 2048, "83".to_owned(), true),
            (49 * 2048, 24 * 2048, "82".to_owned(), false),
            (73 * 2048, 23 * 2048, "83".to_owned(), false),
        ],
        "{table:#}"
    );
    let blkid = |n: u32| {
        String::from_utf8(run(Command::new("blkid")
            .args(["-o", "export"])
            .arg(disk.partition(n))))
        .unwrap()
    };
    let one = blkid(1);
    assert!(
        one.contains("TYPE=ext4") && one.contains("LABEL=boot"),
        "{one}"
    );
    let two = blkid(2);
    assert!(
        two.contains("TYPE=swap") && two.contains("LABEL=swap"),
        "{two}"
    );
    // Nothing was made on partition 3.
    let three = Command::new("blkid")
        .args(["-p", "-o", "export"])
        .arg(disk.partition(3))
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&three.stdout)
            .lines()
            .any(|l| l.starts_with("TYPE=")),
        "{three:?}"
    );
}
