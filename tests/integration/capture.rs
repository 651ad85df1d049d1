//! `capture_image` to the server (docs/agent-http.md, docs/image-format.md): the real agent
//! (run in this process with `--root`) captures a partitioned loop device, a GPT disk with an
//! ext4 partition and an unformatted one, and uploads it chunk by chunk to the real server,
//! which hashes each file, stores it and saves the package. The package is listed, its files
//! verify, its parts are the table area, each partition and the GPT backup, and applied from
//! the server it gives back the disk byte for byte; one partition alone is captured too. An upload with a
//! bad run token is refused and stores nothing; a capture never replaces a package.

use std::path::{Path, PathBuf};
use std::process::Command;

use netdeploy_agent::http::{Client, Url};
use netdeploy_agent::image::{self, ApplyOptions, ImageRef, Store};

use crate::deployments::small_image;
use crate::harness::{
    bearer, boot_script, cli_ok, http_request, loopback_config, random_smbios_uuid, Server,
};
use crate::lab::{must, sha256};

const MAC: &str = "52:54:00:0e:0c:01";

/// A loop device with partitions (`losetup -fP`) over a sparse file, detached when dropped.
pub struct LoopDisk {
    device: String,
}

impl LoopDisk {
    fn attach(file: &Path) -> LoopDisk {
        let out = must(Command::new("losetup").args(["-fP", "--show"]).arg(file));
        LoopDisk {
            device: out.trim().to_owned(),
        }
    }

    /// The device of partition `n`; when the kernel's scan at attach has not made it (yet),
    /// `partx -a` asks for the partitions again.
    fn partition(&self, n: u32) -> String {
        let p = format!("{}p{n}", self.device);
        for i in 0..50 {
            if Path::new(&p).exists() {
                break;
            }
            if i == 10 {
                let _ = Command::new("partx").args(["-a", &self.device]).status();
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        p
    }
}

impl Drop for LoopDisk {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.device]).status();
    }
}

/// A 64 MiB sparse disk: GPT, partition 1 (24 MiB) ext4 with 9 MiB of files, partition 2 the rest
/// with a few bytes and no filesystem.
pub fn reference_disk(dir: &Path) -> (PathBuf, LoopDisk) {
    let file = dir.join("disk.img");
    std::fs::File::create(&file)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let mut sfdisk = Command::new("sfdisk")
        .args(["--quiet", "--no-reread"])
        .arg(&file)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    sfdisk
        .stdin
        .take()
        .unwrap()
        .write_all(b"label: gpt\n,24MiB,L\n,,L\n")
        .unwrap();
    assert!(sfdisk.wait().unwrap().success());
    let disk = LoopDisk::attach(&file);
    let root = dir.join("files");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/hostname"), "reference\n").unwrap();
    let text: Vec<u8> = (0..300_000u32)
        .flat_map(|i| format!("line {i}\n").into_bytes())
        .collect();
    std::fs::write(root.join("lines.txt"), text).unwrap();
    // Bytes that do not compress, so that the image takes several chunks.
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let noise: Vec<u8> = (0..5 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect();
    std::fs::write(root.join("noise.bin"), noise).unwrap();
    must(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-d"])
            .arg(&root)
            .arg(disk.partition(1)),
    );
    std::fs::OpenOptions::new()
        .write(true)
        .open(disk.partition(2))
        .and_then(|mut p| p.write_all(b"raw bytes of an unformatted partition"))
        .unwrap();
    must(&mut Command::new("sync"));
    (file, disk)
}

fn write_site(dir: &Path, device: &str) -> PathBuf {
    let (kernel, initrd) = small_image(dir);
    let site = format!(
        r#"site_code = "LAB"
[[device]]
name = "ref"
macs = ["{MAC}"]
[[collection]]
id = "lab"
members = ["ref"]
[[boot_image]]
id = "linux-x64"
arch = "x64"
kernel = {kernel:?}
initrd = {initrd:?}
[[task_sequence]]
id = "capture"
name = "Capture the reference disk"
boot_image = "linux-x64"
steps = [
  {{ name = "capture", action = "capture_image", package = "ref-disk", disk = {{ path = "{device}" }} }},
  {{ name = "capture root", action = "capture_image", package = "ref-root", disk = {{ path = "{device}" }}, partition = 1 }},
]
[[deployment]]
id = "LAB00001"
task_sequence = "capture"
collection = "lab"
purpose = "required"
available_to = "media_pxe"
"#,
        kernel = kernel.display().to_string(),
        initrd = initrd.display().to_string(),
    );
    let path = dir.join("site.toml");
    std::fs::write(&path, site).unwrap();
    path
}

/// Runs the agent with the kernel line of `script` on a machine root with this MAC and UUID,
/// whose `/sys/block` is the host's (the loop device is its disk).
fn run_agent(dir: &Path, script: &str, uuid: &str) -> i32 {
    let line = script
        .lines()
        .find(|l| l.contains("netdeploy.server="))
        .unwrap_or_else(|| panic!("no kernel line in:\n{script}"));
    let root = dir.join("root");
    let nic = root.join("sys/class/net/ens3");
    std::fs::create_dir_all(&nic).unwrap();
    std::fs::write(nic.join("address"), format!("{MAC}\n")).unwrap();
    let dmi = root.join("sys/class/dmi/id");
    std::fs::create_dir_all(&dmi).unwrap();
    std::fs::write(dmi.join("product_uuid"), format!("{uuid}\n")).unwrap();
    std::os::unix::fs::symlink("/sys/block", root.join("sys/block")).unwrap();
    std::fs::create_dir_all(root.join("proc")).unwrap();
    std::fs::write(root.join("proc/cmdline"), format!("{line}\n")).unwrap();
    netdeploy_agent::agent::run(&netdeploy_agent::cli::RunFlags {
        root: Some(root),
        ..Default::default()
    })
}

#[test]
fn a_partitioned_disk_is_captured_to_the_server_as_a_new_package_that_applies_back() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (file, disk) = reference_disk(dir.path());
    let site = write_site(dir.path(), &disk.device);
    cli_ok(&data, &["site", "apply", site.to_str().unwrap()]);
    let server = Server::start(dir.path(), &loopback_config(dir.path(), "proxy", ""));

    // A bad run token is refused and nothing is stored.
    let (code, _) = http_request(
        server.http_addr(),
        "PUT",
        &format!("/agent/capture/ref-disk/image.ndimg?mac={MAC}&deployment=LAB00001"),
        &[&bearer(&"ab".repeat(32))],
        b"not an image",
    );
    assert_eq!(code, 401);
    assert!(!data.join("capture").exists());
    assert_eq!(server.counter("captures_refused"), 1);

    let uuid = random_smbios_uuid();
    let script = boot_script(
        &server,
        &format!(
            "/boot.ipxe?mac={}&arch=7&uuid={uuid}",
            MAC.replace(':', "-")
        ),
    );
    assert_eq!(run_agent(dir.path(), &script, &uuid), 0, "{}", server.log());
    assert_eq!(server.counter("captures_saved"), 2);
    let listed = server.cli_reads(&data, &["package", "list"]);
    assert!(listed.contains("ref-disk"), "{listed}");

    // Every file of the package is in the content library under its SHA-256.
    server.settled();
    let shown = server.cli_reads(&data, &["package", "show", "ref-disk"]);
    let package: serde_json::Value = serde_json::from_str(&shown).unwrap();
    let files = package["files"].as_array().unwrap();
    assert!(files.len() > 2, "{shown}");
    let library = netdeploy::content::Library::new(&data);
    for f in files {
        let sha = f["sha256"].as_str().unwrap();
        let bytes = std::fs::read(library.path_of(sha).unwrap()).unwrap();
        assert_eq!(sha256(&bytes), sha, "{}", f["path"]);
    }
    let index = files
        .iter()
        .find(|f| f["path"] == "image.ndimg")
        .expect("the index");
    let bytes = std::fs::read(library.path_of(index["sha256"].as_str().unwrap()).unwrap()).unwrap();
    let parts: Vec<(netdeploy_wire::image::Filesystem, u64)> =
        netdeploy_wire::image::Index::decode(&bytes)
            .unwrap()
            .parts
            .iter()
            .map(|p| (p.filesystem, p.offset))
            .collect();
    use netdeploy_wire::image::Filesystem::{Ext, Raw};
    assert_eq!(
        parts,
        [
            (Raw, 0),
            (Ext, 1 << 20),
            (Raw, 25 << 20),
            (Raw, (64 << 20) - 33 * 512)
        ],
        "the table area, the ext4 partition, the unformatted one and the GPT backup"
    );

    // Applied from the server onto a blank disk, the image gives the reference disk back.
    let client = Client::default();
    let store = Store::Http {
        client: &client,
        base: Url::parse(&server.url()).unwrap(),
    };
    let target = dir.path().join("blank.img");
    std::fs::File::create(&target)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let index_sha: [u8; 32] =
        netdeploy_wire::hex::decode_array(index["sha256"].as_str().unwrap()).unwrap();
    image::apply(
        &store,
        &ImageRef {
            name: "image.ndimg",
            index_size: index["size"].as_u64().unwrap(),
            index_sha256: Some(index_sha),
        },
        &target,
        &ApplyOptions::new(dir.path().join("journal")),
    )
    .unwrap();
    assert!(
        std::fs::read(&target).unwrap() == std::fs::read(&file).unwrap(),
        "the applied disk differs from the reference disk"
    );

    // One partition alone is an image of its filesystem at offset 0.
    let root = server.cli_reads(&data, &["package", "show", "ref-root"]);
    let root: serde_json::Value = serde_json::from_str(&root).unwrap();
    let index = root["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "image.ndimg")
        .expect("the index of ref-root");
    let bytes = std::fs::read(library.path_of(index["sha256"].as_str().unwrap()).unwrap()).unwrap();
    let decoded = netdeploy_wire::image::Index::decode(&bytes).unwrap();
    assert_eq!(decoded.size, 24 << 20);
    assert_eq!(decoded.parts.len(), 1);
    assert_eq!(
        (decoded.parts[0].filesystem, decoded.parts[0].offset),
        (Ext, 0)
    );

    // A capture never replaces a package: the same package again is refused.
    let token = server.run_token(MAC, Some("LAB00001"));
    let (code, body) = http_request(
        server.http_addr(),
        "PUT",
        &format!("/agent/capture/ref-disk/chunk-000000.zst?mac={MAC}&deployment=LAB00001"),
        &[&bearer(&token)],
        b"more",
    );
    assert_eq!(code, 409, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("exists already"));
}
