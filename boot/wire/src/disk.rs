//! Disks in a task sequence: which disk a step works on ([`DiskChoice`]), the partition layout
//! a `partition_disk` step lays down ([`DiskLayout`]), the filesystems a `format` step makes,
//! and where each partition lands on a disk of a given size ([`DiskLayout::place`]).
//!
//! Placement is pure arithmetic shared by every agent: the Linux agent hands the result to
//! `sfdisk`, the Windows agent to a `diskpart` script, and the server checks a layout when the
//! site file is read, so that a layout that cannot work is refused before any machine boots.

use serde::{Deserialize, Serialize};

const MIB: u64 = 1024 * 1024;

closed_set! {
    /// The partition table a layout writes.
    pub enum PartitionTable {
        /// GUID partition table; what UEFI machines boot from.
        Gpt = "gpt",
        /// The classic master boot record: at most four partitions, BIOS machines.
        Mbr = "mbr",
    }
}

closed_set! {
    /// What a partition is for; it decides the partition type written in the table.
    pub enum PartitionRole {
        /// EFI system partition, FAT32.
        Esp = "esp",
        /// GRUB's BIOS boot partition on a GPT disk (1 MiB is enough), never formatted.
        BiosBoot = "bios_boot",
        /// Microsoft reserved partition (GPT only), never formatted.
        Msr = "msr",
        /// Swap space.
        Swap = "swap",
        /// A Linux filesystem.
        Linux = "linux",
        /// A Windows (basic data) filesystem: NTFS or FAT.
        Windows = "windows",
    }
}

closed_set! {
    /// A filesystem a `format` step makes.
    pub enum Filesystem {
        Fat32 = "fat32",
        Ext4 = "ext4",
        Swap = "swap",
        Ntfs = "ntfs",
    }
}

impl PartitionRole {
    /// The GPT partition type GUID of the role.
    pub fn gpt_type(&self) -> Option<&'static str> {
        Some(match self {
            PartitionRole::Esp => "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
            PartitionRole::BiosBoot => "21686148-6449-6E6F-744E-656564454649",
            PartitionRole::Msr => "E3C9E316-0B5C-4DB8-817D-F92DF00215AE",
            PartitionRole::Swap => "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F",
            PartitionRole::Linux => "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
            PartitionRole::Windows => "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7",
            PartitionRole::Unknown(_) => return None,
        })
    }

    /// The MBR partition type byte of the role; `None` for roles that exist only on GPT.
    pub fn mbr_type(&self) -> Option<u8> {
        match self {
            PartitionRole::Esp => Some(0xef),
            PartitionRole::Swap => Some(0x82),
            PartitionRole::Linux => Some(0x83),
            PartitionRole::Windows => Some(0x07),
            PartitionRole::BiosBoot | PartitionRole::Msr | PartitionRole::Unknown(_) => None,
        }
    }

    /// The filesystems a partition of this role may be formatted with.
    pub fn allows(&self, fs: &Filesystem) -> bool {
        matches!(
            (self, fs),
            (PartitionRole::Esp, Filesystem::Fat32)
                | (PartitionRole::Swap, Filesystem::Swap)
                | (PartitionRole::Linux, Filesystem::Ext4)
                | (PartitionRole::Windows, Filesystem::Ntfs | Filesystem::Fat32)
        )
    }
}

/// How large a partition is: `"512MiB"`, `"20GiB"`, `"40%"` of the disk, or `"rest"`, what is
/// left after every other partition (last partition only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum PartitionSize {
    Mib(u64),
    Percent(u8),
    Rest,
}

impl TryFrom<String> for PartitionSize {
    type Error = String;

    fn try_from(s: String) -> Result<PartitionSize, String> {
        s.parse()
    }
}

impl std::str::FromStr for PartitionSize {
    type Err = String;

    fn from_str(s: &str) -> Result<PartitionSize, String> {
        let bad = || {
            format!(
                "{s:?} is not a partition size: write a whole number of MiB or GiB (\"512MiB\", \
                 \"20GiB\"), a percentage of the disk (\"40%\") or \"rest\""
            )
        };
        let t = s.trim();
        if t == "rest" {
            return Ok(PartitionSize::Rest);
        }
        let (digits, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
        let n: u64 = digits.parse().map_err(|_| bad())?;
        let size = match unit {
            "MiB" => PartitionSize::Mib(n),
            "GiB" => PartitionSize::Mib(n.checked_mul(1024).ok_or_else(bad)?),
            "%" if (1..=100).contains(&n) => PartitionSize::Percent(n as u8),
            _ => return Err(bad()),
        };
        if size == PartitionSize::Mib(0) {
            return Err(bad());
        }
        Ok(size)
    }
}

impl std::fmt::Display for PartitionSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PartitionSize::Mib(n) if n % 1024 == 0 => write!(f, "{}GiB", n / 1024),
            PartitionSize::Mib(n) => write!(f, "{n}MiB"),
            PartitionSize::Percent(p) => write!(f, "{p}%"),
            PartitionSize::Rest => f.write_str("rest"),
        }
    }
}

impl From<PartitionSize> for String {
    fn from(s: PartitionSize) -> String {
        s.to_string()
    }
}

/// One partition of a layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionSpec {
    pub role: PartitionRole,
    pub size: PartitionSize,
    /// The partition's name in the GPT (and the filesystem label a `format` step gives it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// MBR: the partition the BIOS boots (the active flag). At most one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub active: bool,
}

/// The layout a `partition_disk` step writes, replacing whatever the disk held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskLayout {
    pub table: PartitionTable,
    pub partitions: Vec<PartitionSpec>,
}

/// Which disk a step works on. With nothing set: the first disk that is not removable (USB
/// sticks, card readers and optical drives are never chosen), in the order the boot
/// environment lists them. `path` names one disk; the size bounds skip disks outside them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskChoice {
    /// `/dev/vda`, `/dev/disk/by-path/...`, or `\\.\PhysicalDrive0` in Windows PE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_size_mib: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size_mib: Option<u64>,
}

/// A disk as the boot environment sees it, for [`DiskChoice::choose`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskInfo {
    pub path: String,
    pub size_bytes: u64,
    pub removable: bool,
}

impl DiskChoice {
    /// The disk this choice picks among `disks` (in the boot environment's order), or why none.
    pub fn choose<'a>(&self, disks: &'a [DiskInfo]) -> Result<&'a DiskInfo, String> {
        if let Some(p) = &self.path {
            return disks
                .iter()
                .find(|d| &d.path == p)
                .ok_or_else(|| format!("no disk {p:?} here (disks: {})", Self::listed(disks)));
        }
        let fits = |d: &&DiskInfo| {
            let mib = d.size_bytes / MIB;
            !d.removable
                && self.min_size_mib.is_none_or(|m| mib >= m)
                && self.max_size_mib.is_none_or(|m| mib <= m)
        };
        disks.iter().find(fits).ok_or_else(|| {
            format!(
                "no disk here is {} (disks: {})",
                self.describe(),
                Self::listed(disks)
            )
        })
    }

    /// What the choice asks for, in words.
    pub fn describe(&self) -> String {
        if let Some(p) = &self.path {
            return p.clone();
        }
        let mut s = "non-removable".to_owned();
        if let Some(m) = self.min_size_mib {
            s.push_str(&format!(", at least {m} MiB"));
        }
        if let Some(m) = self.max_size_mib {
            s.push_str(&format!(", at most {m} MiB"));
        }
        s
    }

    fn listed(disks: &[DiskInfo]) -> String {
        if disks.is_empty() {
            return "none".into();
        }
        disks
            .iter()
            .map(|d| {
                format!(
                    "{} {} MiB{}",
                    d.path,
                    d.size_bytes / MIB,
                    if d.removable { " removable" } else { "" }
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The device of partition `number` of the Linux disk `disk`: the kernel puts a `p` between a
/// disk name that ends in a digit and the number (`/dev/nvme0n1p1`, `/dev/loop0p1`,
/// `/dev/mmcblk0p1`), and nothing otherwise (`/dev/vda1`, `/dev/sda1`).
pub fn partition_device(disk: &str, number: u32) -> String {
    if disk.ends_with(|c: char| c.is_ascii_digit()) {
        format!("{disk}p{number}")
    } else {
        format!("{disk}{number}")
    }
}

/// A partition placed on a disk: 1-based number, start and size in bytes (MiB-aligned).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub number: u32,
    pub start: u64,
    pub size: u64,
    pub spec: PartitionSpec,
}

/// Why a layout cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("a layout needs at least one partition")]
    Empty,
    #[error("partition {0}: the table {1:?} is not one netdeploy knows (gpt or mbr)")]
    UnknownTable(usize, String),
    #[error("partition {0}: the role {1:?} is not one netdeploy knows (esp, bios_boot, msr, swap, linux, windows)")]
    UnknownRole(usize, String),
    #[error("partition {0}: a {1} partition exists only on a GPT disk")]
    GptOnly(usize, String),
    #[error("an MBR disk holds at most 4 partitions; this layout has {0}")]
    TooManyForMbr(usize),
    #[error("partition {0}: only the last partition can be \"rest\"")]
    RestNotLast(usize),
    #[error("partition {0}: the active flag exists only on MBR disks")]
    ActiveOnGpt(usize),
    #[error("more than one partition is active; the BIOS boots one")]
    SeveralActive,
    #[error("the percentages add up to {0}%, more than the whole disk")]
    OverHundredPercent(u32),
    #[error(
        "partition {number} ({size}) does not fit: it needs {need_mib} MiB and {left_mib} MiB \
         are left on a disk of {disk_mib} MiB"
    )]
    DoesNotFit {
        number: usize,
        size: PartitionSize,
        need_mib: u64,
        left_mib: u64,
        disk_mib: u64,
    },
    #[error("partition {0} (rest) is left no room on a disk of {1} MiB")]
    NoRoomForRest(usize, u64),
}

/// Space kept free at the start (alignment and the table) and, on GPT, at the end (the backup
/// table), in MiB.
const LEAD_MIB: u64 = 1;
const GPT_TAIL_MIB: u64 = 1;

impl DiskLayout {
    /// Checks what can be checked without a disk; numbers in errors are 1-based.
    pub fn check(&self) -> Result<(), LayoutError> {
        if self.partitions.is_empty() {
            return Err(LayoutError::Empty);
        }
        let gpt = match &self.table {
            PartitionTable::Gpt => true,
            PartitionTable::Mbr => false,
            PartitionTable::Unknown(t) => return Err(LayoutError::UnknownTable(1, t.clone())),
        };
        if !gpt && self.partitions.len() > 4 {
            return Err(LayoutError::TooManyForMbr(self.partitions.len()));
        }
        let last = self.partitions.len();
        let mut percent = 0u32;
        for (i, p) in self.partitions.iter().enumerate() {
            let n = i + 1;
            if let PartitionRole::Unknown(r) = &p.role {
                return Err(LayoutError::UnknownRole(n, r.clone()));
            }
            if !gpt && p.role.mbr_type().is_none() {
                return Err(LayoutError::GptOnly(n, p.role.to_string()));
            }
            if p.size == PartitionSize::Rest && n != last {
                return Err(LayoutError::RestNotLast(n));
            }
            if gpt && p.active {
                return Err(LayoutError::ActiveOnGpt(n));
            }
            if let PartitionSize::Percent(x) = p.size {
                percent += u32::from(x);
            }
        }
        if self.partitions.iter().filter(|p| p.active).count() > 1 {
            return Err(LayoutError::SeveralActive);
        }
        if percent > 100 {
            return Err(LayoutError::OverHundredPercent(percent));
        }
        Ok(())
    }

    /// Where each partition lands on a disk of `disk_bytes`: in order, each starting on a MiB
    /// boundary after 1 MiB, a percentage taken of the whole disk, `rest` up to the end (less
    /// the backup GPT). Nothing is rounded up past what the disk holds.
    pub fn place(&self, disk_bytes: u64) -> Result<Vec<Placed>, LayoutError> {
        self.check()?;
        let disk_mib = disk_bytes / MIB;
        let tail = if self.table == PartitionTable::Gpt {
            GPT_TAIL_MIB
        } else {
            0
        };
        let end = disk_mib.saturating_sub(tail);
        let mut at = LEAD_MIB;
        let mut out = Vec::with_capacity(self.partitions.len());
        for (i, p) in self.partitions.iter().enumerate() {
            let number = i + 1;
            let left = end.saturating_sub(at);
            let mib = match p.size {
                PartitionSize::Mib(n) => n,
                PartitionSize::Percent(x) => (disk_mib * u64::from(x) / 100).max(1),
                PartitionSize::Rest if left == 0 => {
                    return Err(LayoutError::NoRoomForRest(number, disk_mib))
                }
                PartitionSize::Rest => left,
            };
            if mib > left {
                return Err(LayoutError::DoesNotFit {
                    number,
                    size: p.size,
                    need_mib: mib,
                    left_mib: left,
                    disk_mib,
                });
            }
            out.push(Placed {
                number: number as u32,
                start: at * MIB,
                size: mib * MIB,
                spec: p.clone(),
            });
            at += mib;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn part(role: &str, size: &str) -> PartitionSpec {
        PartitionSpec {
            role: PartitionRole::from(role.to_owned()),
            size: size.parse().unwrap(),
            label: None,
            active: false,
        }
    }

    fn uefi() -> DiskLayout {
        DiskLayout {
            table: PartitionTable::Gpt,
            partitions: vec![
                part("esp", "512MiB"),
                part("swap", "10%"),
                part("linux", "rest"),
            ],
        }
    }

    #[test]
    fn sizes_read_and_write_back_in_one_spelling() {
        for (text, size) in [
            ("512MiB", PartitionSize::Mib(512)),
            ("20GiB", PartitionSize::Mib(20 * 1024)),
            ("40%", PartitionSize::Percent(40)),
            ("rest", PartitionSize::Rest),
        ] {
            assert_eq!(text.parse::<PartitionSize>().unwrap(), size);
            assert_eq!(size.to_string(), text);
        }
        assert_eq!(
            "2048MiB".parse::<PartitionSize>().unwrap().to_string(),
            "2GiB"
        );
        for bad in [
            "", "0MiB", "12", "12MB", "101%", "0%", "-5MiB", "1.5GiB", "rest ",
        ] {
            let e = bad.parse::<PartitionSize>();
            assert!(e.is_err() || bad == "rest ", "{bad:?} was read");
        }
        let e = "12MB".parse::<PartitionSize>().unwrap_err();
        assert!(e.contains("\"12MB\"") && e.contains("MiB"), "{e}");
    }

    #[test]
    fn a_uefi_layout_is_placed_on_mib_boundaries_and_rest_stops_before_the_backup_table() {
        let disk = 10 * 1024 * MIB;
        let placed = uefi().place(disk).unwrap();
        assert_eq!(placed.len(), 3);
        assert_eq!(
            (placed[0].number, placed[0].start, placed[0].size),
            (1, MIB, 512 * MIB)
        );
        assert_eq!(placed[1].start, 513 * MIB);
        assert_eq!(placed[1].size, 1024 * MIB);
        assert_eq!(placed[2].start, (513 + 1024) * MIB);
        assert_eq!(placed[2].start + placed[2].size, disk - MIB);
    }

    #[test]
    fn a_layout_too_large_for_the_disk_names_the_partition_and_the_sizes() {
        let e = uefi().place(400 * MIB).unwrap_err();
        assert_eq!(
            e.to_string(),
            "partition 1 (512MiB) does not fit: it needs 512 MiB and 398 MiB are left on a disk \
             of 400 MiB"
        );
        assert!(uefi().place(5 * 1024 * MIB).is_ok());
    }

    #[test]
    fn layouts_that_cannot_work_are_refused_before_any_disk_is_seen() {
        let mut l = uefi();
        l.partitions.swap(1, 2);
        assert_eq!(l.check(), Err(LayoutError::RestNotLast(2)));
        let mbr = |parts: Vec<PartitionSpec>| DiskLayout {
            table: PartitionTable::Mbr,
            partitions: parts,
        };
        assert_eq!(
            mbr(vec![part("msr", "16MiB")]).check(),
            Err(LayoutError::GptOnly(1, "msr".into()))
        );
        assert_eq!(
            mbr(vec![part("linux", "1GiB"); 5]).check(),
            Err(LayoutError::TooManyForMbr(5))
        );
        let mut two_active = vec![part("linux", "1GiB"); 2];
        two_active[0].active = true;
        two_active[1].active = true;
        assert_eq!(mbr(two_active).check(), Err(LayoutError::SeveralActive));
        let mut active = uefi();
        active.partitions[2].active = true;
        assert_eq!(active.check(), Err(LayoutError::ActiveOnGpt(3)));
        assert_eq!(
            mbr(vec![part("linux", "60%"), part("swap", "50%")]).check(),
            Err(LayoutError::OverHundredPercent(110))
        );
        assert_eq!(
            mbr(vec![part("raid", "1GiB")]).check(),
            Err(LayoutError::UnknownRole(1, "raid".into()))
        );
        assert_eq!(mbr(vec![]).check(), Err(LayoutError::Empty));
    }

    #[test]
    fn a_layout_reads_from_toml_shaped_json() {
        let l: DiskLayout = serde_json::from_str(
            r#"{"table":"mbr","partitions":[
                {"role":"windows","size":"rest","label":"Windows","active":true}]}"#,
        )
        .unwrap();
        assert!(l.check().is_ok());
        assert!(l.partitions[0].active);
        let back: DiskLayout = serde_json::from_slice(&serde_json::to_vec(&l).unwrap()).unwrap();
        assert_eq!(back, l);
        assert!(serde_json::from_str::<DiskLayout>(
            r#"{"table":"gpt","partitions":[{"role":"esp","size":"big"}]}"#
        )
        .is_err());
    }

    #[test]
    fn partition_devices_take_a_p_after_a_disk_name_ending_in_a_digit() {
        assert_eq!(partition_device("/dev/vda", 1), "/dev/vda1");
        assert_eq!(partition_device("/dev/sda", 12), "/dev/sda12");
        assert_eq!(partition_device("/dev/nvme0n1", 1), "/dev/nvme0n1p1");
        assert_eq!(partition_device("/dev/loop0", 2), "/dev/loop0p2");
        assert_eq!(partition_device("/dev/mmcblk1", 3), "/dev/mmcblk1p3");
    }

    #[test]
    fn the_first_fixed_disk_is_chosen_unless_a_path_or_a_size_says_otherwise() {
        let disks = vec![
            DiskInfo {
                path: "/dev/sda".into(),
                size_bytes: 16 * 1024 * MIB,
                removable: true,
            },
            DiskInfo {
                path: "/dev/vda".into(),
                size_bytes: 2 * 1024 * MIB,
                removable: false,
            },
            DiskInfo {
                path: "/dev/vdb".into(),
                size_bytes: 40 * 1024 * MIB,
                removable: false,
            },
        ];
        let any = DiskChoice::default();
        assert_eq!(any.choose(&disks).unwrap().path, "/dev/vda");
        let big = DiskChoice {
            min_size_mib: Some(10 * 1024),
            ..DiskChoice::default()
        };
        assert_eq!(big.choose(&disks).unwrap().path, "/dev/vdb");
        let by_path = DiskChoice {
            path: Some("/dev/sda".into()),
            ..DiskChoice::default()
        };
        assert_eq!(by_path.choose(&disks).unwrap().path, "/dev/sda");
        let huge = DiskChoice {
            min_size_mib: Some(100 * 1024),
            ..DiskChoice::default()
        };
        let e = huge.choose(&disks).unwrap_err();
        assert!(
            e.contains("at least 102400 MiB") && e.contains("/dev/sda 16384 MiB removable"),
            "{e}"
        );
    }

    proptest! {
        #[test]
        fn placed_partitions_never_overlap_and_stay_on_the_disk(
            sizes in proptest::collection::vec(
                prop_oneof![
                    (1u64..4096).prop_map(PartitionSize::Mib),
                    (1u8..40).prop_map(PartitionSize::Percent),
                ],
                1..4,
            ),
            rest in any::<bool>(),
            gpt in any::<bool>(),
            disk_mib in 1u64..200_000,
        ) {
            let mut partitions: Vec<PartitionSpec> = sizes
                .into_iter()
                .map(|size| PartitionSpec { role: PartitionRole::Linux, size, label: None, active: false })
                .collect();
            if rest {
                partitions.push(PartitionSpec { role: PartitionRole::Linux, size: PartitionSize::Rest, label: None, active: false });
            }
            let layout = DiskLayout {
                table: if gpt { PartitionTable::Gpt } else { PartitionTable::Mbr },
                partitions,
            };
            if let Ok(placed) = layout.place(disk_mib * MIB) {
                let mut end = MIB;
                for p in &placed {
                    prop_assert!(p.start >= end && p.start % MIB == 0 && p.size > 0);
                    end = p.start + p.size;
                }
                let tail = if gpt { MIB } else { 0 };
                prop_assert!(end + tail <= disk_mib * MIB);
            }
        }
    }
}
