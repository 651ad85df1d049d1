//! The `capture_image` step: the disk a [`DiskChoice`] picks (or one partition of it) becomes
//! an image (docs/image-format.md) uploaded to the server as a new package
//! (docs/agent-http.md). Each chunk file is uploaded as soon as it is written and then
//! removed, so the boot environment's memory never holds more than a chunk or two of it.
//!
//! A whole disk is captured as parts: the partition table area raw (the first MiB, or up to
//! the first partition), each partition by the used blocks of its filesystem, and on GPT the
//! backup table in the last 33 sectors raw. The gaps between partitions are not captured.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use netdeploy_wire::disk::{DiskChoice, DiskInfo};
use netdeploy_wire::image::{Extent, Filesystem, Part};

use crate::console::say;
use crate::http::{self, Client, RunToken, Url};
use crate::image::{self, CaptureOptions, Region};

/// The partition table area captured raw at the start of a disk.
const TABLE_AREA: u64 = 1 << 20;
/// A GPT backup: its header sector and 32 sectors of entries, at the end of the disk.
const GPT_BACKUP: u64 = 33 * 512;
/// Attempts per uploaded file.
const ATTEMPTS: u32 = 3;

/// Where a capture reads the disks from and sends the image to.
#[derive(Debug, Clone)]
pub struct CaptureSetup {
    /// `/sys/block`, where the disks and their partitions are listed.
    pub sys_block: PathBuf,
    /// A directory for the chunk files on their way to the server.
    pub scratch: PathBuf,
    /// The server; `None` on full media, where a capture cannot run.
    pub upload: Option<Upload>,
}

/// The server's capture endpoint and what each request presents.
#[derive(Debug, Clone)]
pub struct Upload {
    pub client: Client,
    pub server: Url,
    pub token: Option<RunToken>,
    /// `mac=...&uuid=...&deployment=...`, as the status messages name the run.
    pub query: String,
}

/// A partition as `/sys/block` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub number: u32,
    pub device: PathBuf,
    /// Offset and size on the disk, in bytes.
    pub start: u64,
    pub size: u64,
}

fn read_number(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The disks of `sys_block`, in name order, with their sizes; disks of no size (a loop
/// device without a file) are left out.
pub fn list_disks(sys_block: &Path) -> Vec<DiskInfo> {
    let mut names: Vec<String> = std::fs::read_dir(sys_block)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
        .into_iter()
        .filter_map(|name| {
            let dir = sys_block.join(&name);
            let size = read_number(&dir.join("size"))? * 512;
            (size > 0).then(|| DiskInfo {
                path: format!("/dev/{name}"),
                size_bytes: size,
                removable: read_number(&dir.join("removable")) == Some(1),
            })
        })
        .collect()
}

/// The partitions of disk `name` (`vda`, `loop0`), by start.
pub fn partitions(sys_block: &Path, name: &str) -> Vec<Partition> {
    let dir = sys_block.join(name);
    let mut parts: Vec<Partition> = std::fs::read_dir(&dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    let p = e.path();
                    Some(Partition {
                        number: read_number(&p.join("partition"))? as u32,
                        device: PathBuf::from("/dev").join(e.file_name()),
                        start: read_number(&p.join("start"))? * 512,
                        size: read_number(&p.join("size"))? * 512,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    parts.sort_by_key(|p| p.start);
    parts
}

/// The raw regions around the partitions of a disk of `size` bytes: the table area up to the
/// first partition, and on GPT (`gpt`) the backup table after the last one.
pub fn table_regions(
    size: u64,
    parts: &[Partition],
    gpt: bool,
) -> (Option<Region>, Option<Region>) {
    let raw = |offset: u64, len: u64| Region {
        part: Part {
            filesystem: Filesystem::Raw,
            offset,
            size: len,
            used: len,
        },
        used: vec![Extent { offset, len }],
    };
    let first = parts.first().map_or(size, |p| p.start);
    let head = TABLE_AREA.min(first).min(size);
    let last_end = parts.iter().map(|p| p.start + p.size).max().unwrap_or(head);
    let tail_start = size.saturating_sub(GPT_BACKUP).max(last_end).max(head);
    (
        (head > 0).then(|| raw(0, head)),
        (gpt && tail_start < size).then(|| raw(tail_start, size - tail_start)),
    )
}

fn open(path: &Path) -> Result<(File, u64), String> {
    use std::io::{Seek, SeekFrom};
    let mut f = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let size = f
        .seek(SeekFrom::End(0))
        .map_err(|e| format!("cannot size {}: {e}", path.display()))?;
    Ok((f, size))
}

/// Captures what `disk` and `partition` name and uploads it as package `package`; returns a
/// line saying what the server saved.
pub fn run(
    setup: &CaptureSetup,
    package: &str,
    disk: &DiskChoice,
    partition: Option<u32>,
) -> Result<String, String> {
    let upload = setup
        .upload
        .as_ref()
        .ok_or("capture_image sends the image to the server, and this run has none (full media)")?;
    let disks = list_disks(&setup.sys_block);
    let chosen = disk.choose(&disks)?;
    let name = chosen.path.trim_start_matches("/dev/");
    let parts = partitions(&setup.sys_block, name);
    let scratch = setup.scratch.join(package);
    let err = |e: image::ImageError| e.to_string();
    let (source, size, regions) = match partition {
        Some(n) => {
            let p = parts
                .iter()
                .find(|p| p.number == n)
                .ok_or_else(|| format!("{} has no partition {n}", chosen.path))?;
            let (f, size) = open(&p.device)?;
            let r = image::region_of(&p.device, &f, 0, size, &scratch).map_err(err)?;
            (p.device.clone(), size, vec![r])
        }
        None => {
            let device = PathBuf::from(&chosen.path);
            let (f, size) = open(&device)?;
            let mut head = [0u8; 520];
            crate::platform::read_exact_at(&f, &mut head, 0)
                .map_err(|e| format!("cannot read {}: {e}", device.display()))?;
            let gpt = &head[512..520] == b"EFI PART";
            let (table, backup) = table_regions(size, &parts, gpt);
            let mut regions: Vec<Region> = table.into_iter().collect();
            say(format!(
                "{}: {} table, {} partitions",
                device.display(),
                if gpt { "GPT" } else { "MBR or no" },
                parts.len()
            ));
            for p in &parts {
                let (pf, psize) = open(&p.device)?;
                let r = image::region_of(&p.device, &pf, p.start, psize.min(p.size), &scratch)
                    .map_err(err)?;
                regions.push(r);
            }
            regions.extend(backup);
            (device, size, regions)
        }
    };
    let mut sent = 0u64;
    let mut sink = |file: &Path| -> Result<(), String> {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let body =
            std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        put(upload, package, &name, &body)?;
        sent += body.len() as u64;
        let _ = std::fs::remove_file(file);
        Ok(())
    };
    let captured = image::capture_regions(
        &source,
        size,
        regions,
        &scratch,
        &CaptureOptions::default(),
        &mut sink,
    )
    .map_err(err)?;
    let _ = std::fs::remove_dir_all(&scratch);
    let done = post_done(upload, package)?;
    Ok(format!(
        "package {package}: {} chunks, {sent} bytes sent; the server says {done}",
        captured.index.chunks.len()
    ))
}

fn url(upload: &Upload, path: &str) -> Result<Url, String> {
    upload
        .server
        .join(path)
        .map(|u| u.with_query(&upload.query))
        .map_err(|e| e.to_string())
}

/// PUTs one file, retrying a broken connection or a `5xx`; a `4xx` fails at once.
fn put(upload: &Upload, package: &str, name: &str, body: &[u8]) -> Result<(), String> {
    let target = url(upload, &format!("/agent/capture/{package}/{name}"))?;
    let mut last = String::new();
    for attempt in 1..=ATTEMPTS {
        match upload
            .client
            .put(&target, body, upload.token.as_ref())
            .map(answer)
        {
            Ok((201, _)) => return Ok(()),
            Ok((status, text)) if status < 500 => {
                return Err(format!("the server refused {name}: HTTP {status} {text}"))
            }
            Ok((status, text)) => last = format!("HTTP {status} {text}"),
            Err(e) => last = e.to_string(),
        }
        if attempt < ATTEMPTS {
            say(format!("uploading {name}: {last}; trying again"));
            std::thread::sleep(Duration::from_secs(u64::from(attempt)));
        }
    }
    Err(format!("uploading {name} failed: {last}"))
}

fn post_done(upload: &Upload, package: &str) -> Result<String, String> {
    let target = url(upload, &format!("/agent/capture/{package}/done"))?;
    let (status, text) = upload
        .client
        .post_json(&target, b"{}", upload.token.as_ref())
        .map(answer)
        .map_err(|e| e.to_string())?;
    match status {
        201 => Ok(text),
        _ => Err(format!(
            "the server did not save package {package}: HTTP {status} {text}"
        )),
    }
}

/// The status and up to 300 characters of the body.
fn answer(r: http::Response) -> (u16, String) {
    let status = r.status();
    let body = r.read_body(64 * 1024).unwrap_or_default();
    let text: String = String::from_utf8_lossy(&body)
        .trim()
        .chars()
        .take(300)
        .collect();
    (status, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(start_mib: u64, size_mib: u64) -> Partition {
        Partition {
            number: 1,
            device: "/dev/x1".into(),
            start: start_mib << 20,
            size: size_mib << 20,
        }
    }

    #[test]
    fn the_table_area_stops_at_the_first_partition_and_gpt_keeps_its_backup() {
        let size = 64 << 20;
        let (head, tail) = table_regions(size, &[part(1, 62)], true);
        let head = head.unwrap();
        assert_eq!((head.part.offset, head.part.size), (0, 1 << 20));
        let tail = tail.unwrap();
        assert_eq!(tail.part.offset, size - GPT_BACKUP);
        assert_eq!(
            tail.used,
            [Extent {
                offset: size - GPT_BACKUP,
                len: GPT_BACKUP
            }]
        );
        // MBR: no backup; a first partition at sector 63 ends the table area there.
        let old = Partition {
            start: 63 * 512,
            ..part(0, 10)
        };
        let (head, tail) = table_regions(size, &[old], false);
        assert_eq!(head.unwrap().part.size, 63 * 512);
        assert!(tail.is_none());
        // A partition reaching the end leaves no room for a backup to capture twice.
        let (_, tail) = table_regions(size, &[part(1, 63)], true);
        assert!(tail.is_none());
    }

    #[test]
    fn disks_and_partitions_are_read_from_sys_block() {
        let dir = tempfile::tempdir().unwrap();
        let w = |p: &str, v: &str| {
            let p = dir.path().join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, v).unwrap();
        };
        w("vda/size", "131072\n");
        w("vda/removable", "0\n");
        w("vda/vda2/partition", "2\n");
        w("vda/vda2/start", "67584\n");
        w("vda/vda2/size", "63455\n");
        w("vda/vda1/partition", "1\n");
        w("vda/vda1/start", "2048\n");
        w("vda/vda1/size", "65536\n");
        w("loop7/size", "0\n");
        w("sr0/size", "2048\n");
        w("sr0/removable", "1\n");
        let disks = list_disks(dir.path());
        assert_eq!(
            disks,
            [
                DiskInfo {
                    path: "/dev/sr0".into(),
                    size_bytes: 2048 * 512,
                    removable: true
                },
                DiskInfo {
                    path: "/dev/vda".into(),
                    size_bytes: 64 << 20,
                    removable: false
                },
            ]
        );
        assert_eq!(
            DiskChoice::default().choose(&disks).unwrap().path,
            "/dev/vda"
        );
        let parts = partitions(dir.path(), "vda");
        assert_eq!(
            parts
                .iter()
                .map(|p| (p.number, p.start))
                .collect::<Vec<_>>(),
            [(1, 1 << 20), (2, 67584 * 512)]
        );
        assert_eq!(parts[0].device, Path::new("/dev/vda1"));
    }
}
