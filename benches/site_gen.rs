//! A realistic site file at scale, for `benches/site_apply.sh` and the scale test of
//! `site apply` (tests/integration/site_scale.rs includes this file).
//!
//! `cargo run --release --example site_gen -- DIR DEVICES [--one-change]` writes `DIR/site.toml`
//! and the files it names (a small kernel, initrd and disk image). For DEVICES devices it declares
//! DEVICES / 100 collections and DEVICES / 200 deployments (100,000 devices: 1,000 collections,
//! 500 deployments), in the format of docs/site-file.md:
//!
//! - a third of the devices are known by SMBIOS UUID only, a third by MAC only, a third by
//!   both; one in ten of those has a second MAC; one in 500 is a server;
//! - collection `building-NNNN` holds the next block of devices; every tenth collection also
//!   holds 20 devices of the next block, so some devices are in two collections;
//! - deployments alternate between a required OS install (high-risk, accepted), a required
//!   command, an available command and a hidden OS install, each to its own collection; the
//!   last one is available to unknown computers.
//!
//! `--one-change` writes the same site with one device (`pc-0000001`) marked a server: the file
//! of a re-apply that changes one object among all of them.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Devices per collection.
pub const BLOCK: usize = 100;

/// How many collections and deployments a site of `devices` devices declares.
pub fn shape(devices: usize) -> (usize, usize) {
    ((devices / BLOCK).max(1), (devices / (2 * BLOCK)).max(1))
}

/// The name of device `i`.
pub fn device_name(i: usize) -> String {
    format!("pc-{i:07}")
}

/// The MACs of device `i` (locally administered addresses).
pub fn device_macs(i: usize) -> Vec<String> {
    let mac = |nic: u8| {
        let b = (i as u32).to_be_bytes();
        format!(
            "02:{nic:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3]
        )
    };
    match i % 3 {
        0 => vec![],
        _ if i % 10 == 7 => vec![mac(0), mac(1)],
        _ => vec![mac(0)],
    }
}

/// The SMBIOS UUID of device `i`, when it is known by one.
pub fn device_uuid(i: usize) -> Option<String> {
    (i % 3 != 1).then(|| format!("{:08x}-5eed-4000-8000-{:012x}", i + 1, i * 7919 + 13))
}

/// Whether device `i` is a server (`one_change` makes `pc-0000001` one too).
pub fn device_is_server(i: usize, one_change: bool) -> bool {
    i % 500 == 0 || (one_change && i == 1)
}

/// The id of collection `c`.
pub fn collection_id(c: usize) -> String {
    format!("building-{c:04}")
}

/// The devices collection `c` of `devices` holds, in the order the file lists them.
pub fn collection_members(c: usize, devices: usize) -> Vec<usize> {
    let (collections, _) = shape(devices);
    let block = devices / collections;
    let end = if c + 1 == collections {
        devices
    } else {
        (c + 1) * block
    };
    let mut members: Vec<usize> = (c * block..end).collect();
    if c % 10 == 0 && end < devices {
        members.extend(end..(end + 20).min(devices));
    }
    members
}

/// The deployment `k`: (id, task sequence, collection, purpose, available_to).
pub fn deployment(
    k: usize,
    devices: usize,
) -> (String, &'static str, String, &'static str, &'static str) {
    let (collections, deployments) = shape(devices);
    let id = format!("BIG{:05X}", k + 1);
    if k + 1 == deployments && deployments > 1 {
        return (
            id,
            "hello",
            "unknown_computers".into(),
            "available",
            "clients_media_pxe",
        );
    }
    let collection = collection_id(k * collections / deployments);
    let (ts, purpose, to) = match k % 4 {
        0 => ("install", "required", "media_pxe"),
        1 => ("hello", "required", "media_pxe"),
        2 => ("hello", "available", "clients_media_pxe"),
        _ => ("install", "available", "media_pxe_hidden"),
    };
    (id, ts, collection, purpose, to)
}

/// The text of the site file.
pub fn site_text(devices: usize, one_change: bool) -> String {
    let (collections, deployments) = shape(devices);
    let mut s = String::with_capacity(devices * 140);
    s.push_str("site_code = \"BIG\"\n\n");
    for i in 0..devices {
        let _ = writeln!(s, "[[device]]\nname = \"{}\"", device_name(i));
        let macs = device_macs(i);
        if !macs.is_empty() {
            let _ = writeln!(s, "macs = {macs:?}");
        }
        if let Some(u) = device_uuid(i) {
            let _ = writeln!(s, "uuid = \"{u}\"");
        }
        if device_is_server(i, one_change) {
            s.push_str("server = true\n");
        }
        s.push('\n');
    }
    for c in 0..collections {
        let names: Vec<String> = collection_members(c, devices)
            .into_iter()
            .map(device_name)
            .collect();
        let _ = writeln!(
            s,
            "[[collection]]\nid = \"{}\"\nname = \"Building {c}\"\nmembers = {names:?}\n",
            collection_id(c)
        );
    }
    s.push_str(
        r#"[[package]]
id = "disk"
version = 1
from = "packages/disk"

[[boot_image]]
id = "linux-x64"
arch = "x64"
kernel = "images/vmlinuz"
initrd = "images/initrd.img"
cmdline = "console=ttyS0"

[[task_sequence]]
id = "install"
name = "Install the building image"
boot_image = "linux-x64"
steps = [
    { name = "write the disk", action = "apply_image", package = "disk", file = "disk.img", target = "/dev/vda" },
    { name = "off", action = "poweroff" },
]

[[task_sequence]]
id = "hello"
boot_image = "linux-x64"
steps = [{ name = "hello", action = "run_command", command = "echo hello" }]

"#,
    );
    for k in 0..deployments {
        let (id, ts, collection, purpose, to) = deployment(k, devices);
        let _ = writeln!(
            s,
            "[[deployment]]\nid = \"{id}\"\ntask_sequence = \"{ts}\"\ncollection = \"{collection}\"\n\
             purpose = \"{purpose}\"\navailable_to = \"{to}\""
        );
        if ts == "install" && purpose == "required" {
            s.push_str("accept_high_risk = true\n");
        }
        s.push('\n');
    }
    s
}

/// Writes `dir/site.toml` and the files it names; returns the site file's path.
pub fn write(dir: &Path, devices: usize, one_change: bool) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir.join("images"))?;
    std::fs::create_dir_all(dir.join("packages/disk"))?;
    std::fs::write(dir.join("images/vmlinuz"), b"kernel of the scale site")?;
    std::fs::write(dir.join("images/initrd.img"), b"initrd of the scale site")?;
    std::fs::write(
        dir.join("packages/disk/disk.img"),
        b"disk image of the scale site",
    )?;
    let path = dir.join("site.toml");
    std::fs::write(&path, site_text(devices, one_change))?;
    Ok(path)
}

#[allow(dead_code)]
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: site_gen DIR DEVICES [--one-change]";
    let (Some(dir), Some(devices)) = (args.first(), args.get(1).and_then(|n| n.parse().ok()))
    else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let one_change = args.iter().skip(2).any(|a| a == "--one-change");
    match write(Path::new(dir), devices, one_change) {
        Ok(path) => println!("{}", path.display()),
        Err(e) => {
            eprintln!("site_gen: {dir}: {e}");
            std::process::exit(1);
        }
    }
}
