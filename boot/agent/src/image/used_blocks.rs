//! Which blocks of a filesystem hold data: the filesystem is told by its superblock, and its
//! used ranges come from partclone's ddrescue domain map (`partclone.<fs> -D`), the tool
//! FOG and Clonezilla capture with. What is not a known filesystem, or what partclone cannot
//! map, is captured whole ([`Filesystem::Raw`]).

use std::path::Path;
use std::process::Command;

use netdeploy_wire::image::{push_extent, Extent, Filesystem};

use crate::console::say;

/// Bytes of the start of a device that [`detect`] looks at.
pub const HEAD: usize = 4096;

/// The filesystem whose superblock starts `head` (the first [`HEAD`] bytes, fewer for a
/// tiny device); [`Filesystem::Raw`] for anything else.
pub fn detect(head: &[u8]) -> Filesystem {
    let at = |o: usize, s: &[u8]| head.get(o..o + s.len()) == Some(s);
    // ext2/3/4: s_magic 0xEF53 at byte 56 of the superblock, which starts at byte 1024.
    if at(1024 + 56, &[0x53, 0xEF]) {
        return Filesystem::Ext;
    }
    // NTFS: the OEM id of its boot sector.
    if at(3, b"NTFS    ") {
        return Filesystem::Ntfs;
    }
    // FAT: a boot sector signature and the type string of the FAT32 or the FAT12/16 BPB.
    if at(510, &[0x55, 0xAA]) && (at(82, b"FAT32   ") || at(54, b"FAT1") || at(54, b"FAT   ")) {
        return Filesystem::Fat;
    }
    Filesystem::Raw
}

/// The used ranges (`+`) of a ddrescue map file as partclone writes it: comment lines,
/// one status line (current position and status), then `pos size status` lines in hex.
/// Touching ranges are merged; every range must end within `size`. Bytes of the device past
/// the last range of the map are outside the filesystem's blocks and count as used: NTFS
/// keeps its backup boot sector there.
pub fn parse_domain_map(text: &str, size: u64) -> Result<Vec<Extent>, String> {
    let mut used = Vec::new();
    let mut covered = 0u64;
    let mut status_line_seen = false;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if !status_line_seen {
            status_line_seen = true;
            continue;
        }
        let mut f = line.split_whitespace();
        let (Some(pos), Some(len), Some(status)) = (f.next(), f.next(), f.next()) else {
            return Err(format!("line {}: {line:?} is not `pos size status`", n + 1));
        };
        let hex = |s: &str| {
            s.strip_prefix("0x")
                .and_then(|h| u64::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("line {}: {s:?} is not a hex number", n + 1))
        };
        let e = Extent {
            offset: hex(pos)?,
            len: hex(len)?,
        };
        if e.offset.checked_add(e.len).is_none_or(|end| end > size) {
            return Err(format!(
                "line {}: {}+{} is beyond the device's {size} bytes",
                n + 1,
                e.offset,
                e.len
            ));
        }
        if covered > e.offset {
            return Err(format!("line {}: ranges are not in order", n + 1));
        }
        covered = e.end();
        if status == "+" {
            push_extent(&mut used, e);
        }
    }
    push_extent(
        &mut used,
        Extent {
            offset: covered,
            len: size - covered,
        },
    );
    Ok(used)
}

/// The partclone program that maps `fs`.
fn partclone_for(fs: Filesystem) -> Option<&'static str> {
    match fs {
        Filesystem::Ext => Some("partclone.extfs"),
        Filesystem::Fat => Some("partclone.fat"),
        Filesystem::Ntfs => Some("partclone.ntfs"),
        Filesystem::Raw => None,
    }
}

/// The used ranges of `device` (`size` bytes) holding `fs`, with the filesystem they were
/// found for: [`Filesystem::Raw`] and the whole device when partclone is missing or fails,
/// which is said on the console. `scratch` is a directory for partclone's map and log.
pub fn used_extents(
    device: &Path,
    fs: Filesystem,
    size: u64,
    scratch: &Path,
) -> (Filesystem, Vec<Extent>) {
    let whole = || {
        vec![Extent {
            offset: 0,
            len: size,
        }]
    };
    let Some(program) = partclone_for(fs) else {
        return (Filesystem::Raw, whole());
    };
    let map = scratch.join(".partclone.map");
    let log = scratch.join(".partclone.log");
    let run = Command::new(program)
        .arg("-D")
        .arg("-s")
        .arg(device)
        .arg("-o")
        .arg(&map)
        .arg("-L")
        .arg(&log)
        .arg("-q")
        .output();
    let result = match run {
        Err(e) => Err(format!("cannot run {program}: {e}")),
        Ok(out) if !out.status.success() => Err(format!(
            "{program} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Ok(_) => std::fs::read_to_string(&map)
            .map_err(|e| format!("cannot read {program}'s map {}: {e}", map.display()))
            .and_then(|text| parse_domain_map(&text, size)),
    };
    let _ = std::fs::remove_file(&map);
    let _ = std::fs::remove_file(&log);
    match result {
        Ok(used) => (fs, used),
        Err(why) => {
            say(format!(
                "{}: {} filesystem, but {why}: capturing every block",
                device.display(),
                fs.name()
            ));
            (Filesystem::Raw, whole())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // What partclone 0.3.23 wrote for a 64 MiB ext4 with 1 KiB blocks.
    const EXT4_MAP: &str = "\
# Domain logfile created by unset_name v0.3.23
# Source: fs.img
# Offset: 0x00000000
# current_pos  current_status
0x04000000     ?
#      pos        size  status
0x00000000  0x0049A400  +
0x0049A400  0x00366000  ?
0x00800400  0x00040800  +
0x00840C00  0x007BF800  ?
";

    #[test]
    fn a_partclone_domain_map_gives_its_used_ranges() {
        let used = parse_domain_map(EXT4_MAP, MAP_END).unwrap();
        assert_eq!(
            used,
            [
                Extent {
                    offset: 0,
                    len: 0x49A400
                },
                Extent {
                    offset: 0x800400,
                    len: 0x40800
                }
            ]
        );
    }

    /// Where the excerpt's last range ends.
    const MAP_END: u64 = 0x840C00 + 0x7BF800;

    #[test]
    fn bytes_past_the_end_of_the_map_count_as_used() {
        let used = parse_domain_map(EXT4_MAP, MAP_END + 4096).unwrap();
        assert_eq!(used.len(), 3);
        assert_eq!(
            used[2],
            Extent {
                offset: MAP_END,
                len: 4096
            }
        );
    }

    #[test]
    fn a_map_beyond_the_device_is_refused() {
        let err = parse_domain_map(EXT4_MAP, 0x800000).unwrap_err();
        assert!(err.contains("beyond"), "{err}");
    }

    #[test]
    fn a_map_line_that_is_not_hex_is_refused() {
        let err = parse_domain_map("0x0 ?\n12 34 +\n", 100).unwrap_err();
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn superblocks_tell_the_filesystem() {
        let mut ext = vec![0u8; HEAD];
        ext[1080..1082].copy_from_slice(&[0x53, 0xEF]);
        assert_eq!(detect(&ext), Filesystem::Ext);
        let mut ntfs = vec![0u8; HEAD];
        ntfs[3..11].copy_from_slice(b"NTFS    ");
        assert_eq!(detect(&ntfs), Filesystem::Ntfs);
        let mut fat = vec![0u8; HEAD];
        fat[510..512].copy_from_slice(&[0x55, 0xAA]);
        fat[82..90].copy_from_slice(b"FAT32   ");
        assert_eq!(detect(&fat), Filesystem::Fat);
        fat[510] = 0;
        assert_eq!(detect(&fat), Filesystem::Raw);
        assert_eq!(detect(&[]), Filesystem::Raw);
    }
}
