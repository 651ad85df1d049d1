//! The disk steps: `partition_disk`, `format`, `apply_image` onto a disk or a partition, and
//! `bcdboot` (docs/site-file.md). Which disk, where each partition lands and what a layout may
//! hold is decided by `netdeploy_wire::disk`, shared with the server; this module turns those
//! decisions into the platform's own tools: `sfdisk`, `mkfs.*` and `mkswap` on Linux
//! ([`sfdisk`] writes their input), `diskpart`, `dism` and `bcdboot` in Windows PE
//! ([`diskpart`]). The scripts are pure functions; running them is the thin part.

pub mod diskpart;
pub mod sfdisk;

#[cfg(unix)]
mod linux;
#[cfg(test)]
mod tests;
#[cfg(windows)]
mod windows;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use netdeploy_wire::disk::{DiskLayout, Filesystem, LayoutError, PartitionSpec, Placed};

/// Why a disk step failed; each names the disk, the partition or the tool at fault.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// No disk fits the step's `disk` (the reason lists the disks seen).
    #[error("{0}")]
    Choose(String),
    #[error("{disk}: {source}")]
    Layout { disk: String, source: LayoutError },
    #[error(
        "{disk}: partition {number} is sized in percent, and the size of the disk cannot be read"
    )]
    SizeNeeded { disk: String, number: usize },
    #[error("{tool} failed on {target} ({status}): {output}")]
    Tool {
        tool: String,
        target: String,
        status: String,
        output: String,
    },
    #[error("cannot run {tool}: {source}")]
    Spawn {
        tool: String,
        source: std::io::Error,
    },
    #[error("partition {number} of {disk} did not appear as {device}")]
    NoDevice {
        disk: String,
        number: u32,
        device: String,
    },
    #[error("{disk} has no partition {number}: the layout written in this run has {count}")]
    NoPartition {
        disk: String,
        number: u32,
        count: usize,
    },
    #[error("partition {number} of {disk} is a {role} partition, which takes no {filesystem}")]
    WrongFilesystem {
        disk: String,
        number: u32,
        role: String,
        filesystem: String,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Unsupported(String),
}

/// The disks of one run: where the platform lists them, where state is kept, and the
/// layouts written in this run (a later `format` takes its label and role from them).
#[derive(Debug, Clone)]
pub struct Disks {
    /// `/sys/block` on Linux (under `--root` in tests).
    pub sys_block: PathBuf,
    /// The agent's state directory (`/var/lib/netdeploy`): apply journals.
    pub state_dir: PathBuf,
    /// Disk path → the layout written there in this run, placed.
    partitioned: HashMap<String, (DiskLayout, Vec<Placed>)>,
}

impl Disks {
    pub fn new(sys_block: PathBuf, state_dir: PathBuf) -> Disks {
        Disks {
            sys_block,
            state_dir,
            partitioned: HashMap::new(),
        }
    }

    /// Partition `number` of `disk` as this run laid it out; `Ok(None)` when this run did
    /// not partition `disk`.
    fn laid_out(&self, disk: &str, number: u32) -> Result<Option<&PartitionSpec>, DiskError> {
        let Some((layout, _)) = self.partitioned.get(disk) else {
            return Ok(None);
        };
        layout
            .partitions
            .get((number as usize).wrapping_sub(1))
            .map(Some)
            .ok_or_else(|| DiskError::NoPartition {
                disk: disk.to_owned(),
                number,
                count: layout.partitions.len(),
            })
    }

    /// Refuses `fs` on a partition whose role (known when this run laid it out) does not
    /// take it; returns the label the layout gives the partition.
    fn check_format(
        &self,
        disk: &str,
        number: u32,
        fs: &Filesystem,
    ) -> Result<Option<String>, DiskError> {
        let Some(spec) = self.laid_out(disk, number)? else {
            return Ok(None);
        };
        if !spec.role.allows(fs) {
            return Err(DiskError::WrongFilesystem {
                disk: disk.to_owned(),
                number,
                role: spec.role.to_string(),
                filesystem: fs.to_string(),
            });
        }
        Ok(spec.label.clone())
    }

    /// Where an apply onto `target` keeps its resume journal.
    pub fn journal(&self, target: &Path) -> PathBuf {
        self.state_dir
            .join(format!("apply{}.journal", journal_key(target)))
    }

    /// Forgets the resume journals of applies onto `disk` and its partitions: what they
    /// recorded as written is gone once the disk is partitioned or formatted again. (A
    /// journal of another disk whose name starts the same goes too; that apply then starts
    /// over, which is always safe.)
    fn forget_journals(&self, disk: &str) {
        let prefix = format!("apply{}", journal_key(Path::new(disk)));
        let Ok(entries) = std::fs::read_dir(&self.state_dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(&prefix) && name.ends_with(".journal") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// A device path as part of a file name: `/dev/vda2` → `_dev_vda2`.
fn journal_key(target: &Path) -> String {
    target
        .to_string_lossy()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// A Windows image (`.wim`): applied with `dism` in Windows PE, never written raw.
pub fn is_wim(path: &str) -> bool {
    path.to_ascii_lowercase().ends_with(".wim")
}

/// The first bytes of a partition that hold an ext2/3/4 superblock (at 1024, 1024 long).
pub const EXT_SUPERBLOCK_END: usize = 2048;

/// The size in bytes of the ext2/3/4 filesystem whose first [`EXT_SUPERBLOCK_END`] bytes are
/// `head`; `None` for anything else.
pub fn ext_size(head: &[u8]) -> Option<u64> {
    let sb = head.get(1024..EXT_SUPERBLOCK_END)?;
    let u32_at = |o: usize| u32::from_le_bytes(sb[o..o + 4].try_into().expect("4 bytes"));
    if sb[0x38..0x3A] != [0x53, 0xEF] {
        return None;
    }
    let log = u32_at(0x18);
    if log > 6 {
        return None;
    }
    let block = 1024u64 << log;
    let mut blocks = u64::from(u32_at(0x04));
    // INCOMPAT_64BIT: the count's high half.
    if u32_at(0x60) & 0x80 != 0 {
        blocks |= u64::from(u32_at(0x150)) << 32;
    }
    Some(blocks * block)
}

/// Runs `cmd`; its output goes to the console, its exit code decides.
fn run_tool(tool: &str, target: &str, cmd: &mut Command) -> Result<String, DiskError> {
    crate::console::say(format!("{target}: {tool} {}", args_text(cmd)));
    let out = cmd.output().map_err(|source| DiskError::Spawn {
        tool: tool.to_owned(),
        source,
    })?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        crate::console::say(format!("{tool}: {}", line.trim_end()));
    }
    if !out.status.success() {
        return Err(DiskError::Tool {
            tool: tool.to_owned(),
            target: target.to_owned(),
            status: out.status.to_string(),
            output: text.trim().to_owned(),
        });
    }
    Ok(text)
}

fn args_text(cmd: &Command) -> String {
    cmd.get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}
