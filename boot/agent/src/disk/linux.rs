//! Linux: disks from `/sys/block`, layouts written with `sfdisk`, filesystems made with
//! `mkfs.vfat`, `mkfs.ext4`, `mkswap` and `mkntfs`.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use netdeploy_wire::disk::{partition_device, DiskChoice, DiskInfo, DiskLayout, Filesystem};

use super::{run_tool, sfdisk, DiskError, Disks};

/// Block devices that are never a machine's disk: loop devices, RAM disks, compressed swap
/// in RAM, optical drives, device-mapper and software RAID volumes. A step's `disk.path` may
/// still name one (tests lay layouts onto loop devices).
const NOT_DISKS: &[&str] = &["loop", "ram", "zram", "sr", "dm-", "md", "nbd", "fd"];

/// How long the partition devices may take to appear after the table is written.
const PARTITIONS_APPEAR: Duration = Duration::from_secs(15);

impl Disks {
    /// The machine's disks, by name (`nvme0n1`, `sda`, `vda`, ...), as `/sys/block` lists them.
    pub fn list(&self) -> Vec<DiskInfo> {
        let Ok(entries) = std::fs::read_dir(&self.sys_block) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| !NOT_DISKS.iter().any(|p| n.starts_with(p)))
            .collect();
        names.sort();
        names
            .into_iter()
            .filter_map(|name| {
                let sectors: u64 = self.read_sys(&name, "size")?.parse().ok()?;
                (sectors > 0).then(|| DiskInfo {
                    path: format!("/dev/{name}"),
                    size_bytes: sectors * 512,
                    removable: self.read_sys(&name, "removable").as_deref() == Some("1"),
                })
            })
            .collect()
    }

    fn read_sys(&self, name: &str, file: &str) -> Option<String> {
        std::fs::read_to_string(self.sys_block.join(name).join(file))
            .ok()
            .map(|s| s.trim().to_owned())
    }

    /// The disk `choice` picks. A `path` (also a `/dev/disk/by-*` link) is taken as it is,
    /// whatever kind of device it is, and its size read from the device.
    pub fn choose(&self, choice: &DiskChoice) -> Result<DiskInfo, DiskError> {
        let Some(path) = &choice.path else {
            return choice
                .choose(&self.list())
                .cloned()
                .map_err(DiskError::Choose);
        };
        let real = std::fs::canonicalize(path)
            .map_err(|e| DiskError::Choose(format!("no disk {path:?} here: {e}")))?;
        let read_err = |source| DiskError::Read {
            path: real.clone(),
            source,
        };
        let size_bytes = File::open(&real)
            .and_then(|mut f| f.seek(SeekFrom::End(0)))
            .map_err(read_err)?;
        let name = real
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(DiskInfo {
            path: real.to_string_lossy().into_owned(),
            size_bytes,
            removable: self.read_sys(&name, "removable").as_deref() == Some("1"),
        })
    }

    /// The disk's logical sector size, in which sfdisk counts.
    fn sector_size(&self, disk: &str) -> u64 {
        let name = disk.rsplit('/').next().unwrap_or(disk);
        self.read_sys(name, "queue/logical_block_size")
            .and_then(|s| s.parse().ok())
            .filter(|n: &u64| n.is_power_of_two() && *n >= 512)
            .unwrap_or(512)
    }

    /// Writes `layout` onto the disk `choice` picks, replacing its table and wiping old
    /// filesystem signatures, then waits for the kernel's partition devices.
    pub fn partition(&mut self, choice: &DiskChoice, layout: &DiskLayout) -> Result<(), DiskError> {
        let disk = self.choose(choice)?;
        let placed = layout
            .place(disk.size_bytes)
            .map_err(|source| DiskError::Layout {
                disk: disk.path.clone(),
                source,
            })?;
        let script = sfdisk::script(&layout.table, &placed, self.sector_size(&disk.path));
        crate::console::say(format!(
            "{}: {} MiB, writing {} partitions",
            disk.path,
            disk.size_bytes >> 20,
            placed.len()
        ));
        let mut child = Command::new("sfdisk")
            .args(["--quiet", "--wipe", "always", "--wipe-partitions", "always"])
            .arg(&disk.path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| DiskError::Spawn {
                tool: "sfdisk".into(),
                source,
            })?;
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("piped stdin");
            stdin
                .write_all(script.as_bytes())
                .map_err(|source| DiskError::Spawn {
                    tool: "sfdisk".into(),
                    source,
                })?;
        }
        let out = child
            .wait_with_output()
            .map_err(|source| DiskError::Spawn {
                tool: "sfdisk".into(),
                source,
            })?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if !out.status.success() {
            return Err(DiskError::Tool {
                tool: "sfdisk".into(),
                target: disk.path.clone(),
                status: out.status.to_string(),
                output: format!("{}\nscript:\n{script}", text.trim()),
            });
        }
        // sfdisk asks the kernel to re-read the table; partx adds what it could not (a
        // partition of the old table still busy), blockdev is the older way.
        if run_tool(
            "partx",
            &disk.path,
            Command::new("partx").arg("-u").arg(&disk.path),
        )
        .is_err()
        {
            let _ = run_tool(
                "blockdev",
                &disk.path,
                Command::new("blockdev").arg("--rereadpt").arg(&disk.path),
            );
        }
        for p in &placed {
            let device = partition_device(&disk.path, p.number);
            if !appears(Path::new(&device), PARTITIONS_APPEAR) {
                return Err(DiskError::NoDevice {
                    disk: disk.path.clone(),
                    number: p.number,
                    device,
                });
            }
        }
        self.forget_journals(&disk.path);
        self.partitioned
            .insert(disk.path.clone(), (layout.clone(), placed));
        Ok(())
    }

    /// Makes `fs` on partition `number` of the disk `choice` picks, labelled as the layout of
    /// this run names the partition.
    pub fn format(
        &mut self,
        choice: &DiskChoice,
        number: u32,
        fs: &Filesystem,
    ) -> Result<(), DiskError> {
        let disk = self.choose(choice)?;
        let label = self.check_format(&disk.path, number, fs)?;
        let device = self.partition_path(&disk.path, number)?;
        let mut cmd = mkfs(fs, label.as_deref())?;
        cmd.arg(&device);
        self.forget_journals(&device.to_string_lossy());
        run_tool(&fs.to_string(), &device.to_string_lossy(), &mut cmd)?;
        // A step that reported ok survives a power cut: the new filesystem is on the device.
        File::open(&device)
            .and_then(|f| f.sync_all())
            .map_err(|source| DiskError::Read {
                path: device.clone(),
                source,
            })
    }

    fn partition_path(&self, disk: &str, number: u32) -> Result<PathBuf, DiskError> {
        self.laid_out(disk, number)?;
        let device = PathBuf::from(partition_device(disk, number));
        if !appears(&device, Duration::ZERO) {
            return Err(DiskError::NoDevice {
                disk: disk.to_owned(),
                number,
                device: device.to_string_lossy().into_owned(),
            });
        }
        Ok(device)
    }

    /// What an `apply_image` step without a `target` writes: partition `partition` of the
    /// disk `choice` picks, or that whole disk.
    pub fn target(
        &self,
        choice: &DiskChoice,
        partition: Option<u32>,
    ) -> Result<PathBuf, DiskError> {
        let disk = self.choose(choice)?;
        match partition {
            Some(n) => self.partition_path(&disk.path, n),
            None => Ok(PathBuf::from(disk.path)),
        }
    }

    /// After an image was applied onto a partition: an ext2/3/4 filesystem smaller than the
    /// partition is grown to fill it (`e2fsck -f`, then `resize2fs`), as an image captured
    /// from a small reference disk is applied to larger ones. Other filesystems are left as
    /// they are. Returns what was done, for the console and the step's status.
    pub fn grow(&self, partition: &Path) -> Result<Option<String>, DiskError> {
        let mut head = [0u8; super::EXT_SUPERBLOCK_END];
        let read = File::open(partition)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
            .map_err(|source| DiskError::Read {
                path: partition.to_owned(),
                source,
            });
        let Some(fs) = read.ok().and_then(|()| super::ext_size(&head)) else {
            return Ok(None);
        };
        let target = partition.to_string_lossy();
        let size = partition_bytes(partition)?;
        if fs + (1 << 20) > size {
            return Ok(None);
        }
        // resize2fs refuses a filesystem not checked since it was last mounted; 1 is
        // "errors corrected", which a freshly applied image never has, but is not a failure.
        let mut check = Command::new("e2fsck");
        check.args(["-f", "-y"]).arg(partition);
        match run_tool("e2fsck", &target, &mut check) {
            Ok(_) => {}
            Err(DiskError::Tool { status, .. }) if status.ends_with("exit status: 1") => {}
            Err(e) => return Err(e),
        }
        run_tool(
            "resize2fs",
            &target,
            Command::new("resize2fs").arg(partition),
        )?;
        File::open(partition)
            .and_then(|f| f.sync_all())
            .map_err(|source| DiskError::Read {
                path: partition.to_owned(),
                source,
            })?;
        Ok(Some(format!(
            "ext4 filesystem grown from {} MiB to the partition's {} MiB",
            fs >> 20,
            size >> 20
        )))
    }

    /// A WIM is applied with `dism`, which exists only in Windows PE.
    pub fn apply_wim(&self, image: &Path, _target: &Path) -> Result<(), DiskError> {
        Err(DiskError::Unsupported(format!(
            "{} is a Windows image: it is applied with dism in Windows PE only",
            image.display()
        )))
    }

    /// `bcdboot` exists only in Windows PE.
    pub fn bcdboot(&self) -> Result<(), DiskError> {
        Err(DiskError::Unsupported(
            "bcdboot steps run in Windows PE only: the Linux boot environment has no bcdboot"
                .into(),
        ))
    }
}

/// The command that makes `fs`, with `label` cut to what the filesystem holds.
fn mkfs(fs: &Filesystem, label: Option<&str>) -> Result<Command, DiskError> {
    let cut = |n: usize| label.map(|l| l.chars().take(n).collect::<String>());
    let mut cmd;
    match fs {
        Filesystem::Fat32 => {
            cmd = Command::new("mkfs.vfat");
            cmd.args(["-F", "32"]);
            if let Some(l) = cut(11) {
                cmd.arg("-n").arg(l);
            }
        }
        Filesystem::Ext4 => {
            cmd = Command::new("mkfs.ext4");
            cmd.args(["-F", "-q"]);
            if let Some(l) = cut(16) {
                cmd.arg("-L").arg(l);
            }
        }
        Filesystem::Swap => {
            cmd = Command::new("mkswap");
            if let Some(l) = cut(16) {
                cmd.arg("-L").arg(l);
            }
        }
        Filesystem::Ntfs => {
            cmd = Command::new("mkntfs");
            cmd.args(["--quick", "--force"]);
            if let Some(l) = cut(32) {
                cmd.arg("-L").arg(l);
            }
        }
        Filesystem::Unknown(f) => {
            return Err(DiskError::Unsupported(format!(
                "the filesystem {f:?} is unknown to this boot image (fat32, ext4, swap, ntfs)"
            )))
        }
    }
    Ok(cmd)
}

/// Waits up to `wait` for `device` to exist as a block device.
fn appears(device: &Path, wait: Duration) -> bool {
    let start = Instant::now();
    loop {
        if std::fs::metadata(device).is_ok_and(|m| m.file_type().is_block_device()) {
            return true;
        }
        if start.elapsed() >= wait {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The bytes a partition (or an image file standing in for one) holds.
fn partition_bytes(partition: &Path) -> Result<u64, DiskError> {
    File::open(partition)
        .and_then(|mut f| std::io::Seek::seek(&mut f, std::io::SeekFrom::End(0)))
        .map_err(|source| DiskError::Read {
            path: partition.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sys_disk(sys: &Path, name: &str, sectors: u64, removable: bool) {
        let d = sys.join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("size"), format!("{sectors}\n")).unwrap();
        std::fs::write(d.join("removable"), if removable { "1\n" } else { "0\n" }).unwrap();
    }

    #[test]
    fn disks_are_listed_from_sys_block_without_loop_ram_and_optical_devices() {
        let dir = tempfile::tempdir().unwrap();
        let sys = dir.path().join("sys/block");
        sys_disk(&sys, "vdb", 8 << 21, false);
        sys_disk(&sys, "sda", 4 << 21, true);
        sys_disk(&sys, "vda", 2 << 21, false);
        sys_disk(&sys, "loop0", 1 << 21, false);
        sys_disk(&sys, "zram0", 1 << 21, false);
        sys_disk(&sys, "sr0", 1 << 21, true);
        sys_disk(&sys, "ram0", 1 << 21, false);
        sys_disk(&sys, "vdc", 0, false);
        let disks = Disks::new(sys, dir.path().into());
        let listed: Vec<(String, u64, bool)> = disks
            .list()
            .into_iter()
            .map(|d| (d.path, d.size_bytes >> 20, d.removable))
            .collect();
        assert_eq!(
            listed,
            [
                ("/dev/sda".into(), 4096, true),
                ("/dev/vda".into(), 2048, false),
                ("/dev/vdb".into(), 8192, false),
            ]
        );
        let first = disks.choose(&DiskChoice::default()).unwrap();
        assert_eq!(first.path, "/dev/vda");
        let e = disks
            .choose(&DiskChoice {
                min_size_mib: Some(10_000),
                ..DiskChoice::default()
            })
            .unwrap_err();
        assert!(e.to_string().contains("at least 10000 MiB"), "{e}");
    }

    #[test]
    fn a_disk_named_by_path_is_read_from_the_device_itself() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("disk.img");
        File::create(&file).unwrap().set_len(64 << 20).unwrap();
        let disks = Disks::new(dir.path().join("sys/block"), dir.path().into());
        let d = disks
            .choose(&DiskChoice {
                path: Some(file.to_string_lossy().into_owned()),
                ..DiskChoice::default()
            })
            .unwrap();
        assert_eq!(d.size_bytes, 64 << 20);
        let e = disks
            .choose(&DiskChoice {
                path: Some("/dev/netdeploy-no-such-disk".into()),
                ..DiskChoice::default()
            })
            .unwrap_err();
        assert!(e.to_string().contains("no disk"), "{e}");
    }

    #[test]
    fn a_filesystem_the_role_does_not_take_is_refused_naming_the_partition() {
        let dir = tempfile::tempdir().unwrap();
        let mut disks = Disks::new(dir.path().join("sys/block"), dir.path().into());
        let layout: DiskLayout = serde_json::from_str(
            r#"{"table":"gpt","partitions":[{"role":"esp","size":"64MiB","label":"EFI"},
                {"role":"linux","size":"rest"}]}"#,
        )
        .unwrap();
        let placed = layout.place(1 << 30).unwrap();
        disks
            .partitioned
            .insert("/dev/vda".into(), (layout, placed));
        assert_eq!(
            disks
                .check_format("/dev/vda", 1, &Filesystem::Fat32)
                .unwrap(),
            Some("EFI".into())
        );
        let e = disks
            .check_format("/dev/vda", 2, &Filesystem::Fat32)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "partition 2 of /dev/vda is a linux partition, which takes no fat32"
        );
        let e = disks
            .check_format("/dev/vda", 3, &Filesystem::Ext4)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "/dev/vda has no partition 3: the layout written in this run has 2"
        );
        assert_eq!(
            disks
                .check_format("/dev/vdb", 3, &Filesystem::Ext4)
                .unwrap(),
            None
        );
    }
}
