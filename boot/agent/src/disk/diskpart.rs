//! Windows PE: the `diskpart` scripts of `partition_disk` and `format`, and the command lines
//! of `dism` and `bcdboot`. Pure text, so that what Windows PE runs is tested on any machine.
//!
//! Drive letters are fixed, because `dism` and `bcdboot` need them after diskpart ran:
//! the ESP gets `S:`, the first Windows partition `W:`, further Windows partitions `T:`,
//! `U:` and `V:` (docs/windows-pe.md). Other partitions get none.

use netdeploy_wire::disk::{DiskLayout, Filesystem, PartitionRole, PartitionSize, PartitionTable};

use super::DiskError;

/// The ESP's drive letter.
pub const ESP_LETTER: char = 'S';
/// The first Windows partition's drive letter: where `dism` applies a WIM and `bcdboot`
/// finds `\Windows`.
pub const WINDOWS_LETTER: char = 'W';
const MORE_WINDOWS_LETTERS: [char; 3] = ['T', 'U', 'V'];

/// The number N of a disk path `\\.\PhysicalDriveN` (any case), which diskpart selects.
pub fn disk_number(path: &str) -> Option<u32> {
    let rest = path.strip_prefix(r"\\.\")?;
    let (name, n) = rest.split_at_checked("PhysicalDrive".len())?;
    if !name.eq_ignore_ascii_case("PhysicalDrive")
        || n.is_empty()
        || !n.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    n.parse().ok()
}

/// The drive letter of each partition of `layout`, in order.
pub fn letters(layout: &DiskLayout) -> Vec<Option<char>> {
    let mut windows = std::iter::once(WINDOWS_LETTER).chain(MORE_WINDOWS_LETTERS);
    layout
        .partitions
        .iter()
        .map(|p| match p.role {
            PartitionRole::Esp => Some(ESP_LETTER),
            PartitionRole::Windows => windows.next(),
            _ => None,
        })
        .collect()
}

/// The filesystem `partition_disk` makes on a partition of `role` in Windows PE: FAT32 on the
/// ESP, NTFS on Windows partitions, nothing on the others (diskpart makes no ext4 or swap).
pub fn default_filesystem(role: &PartitionRole) -> Option<Filesystem> {
    match role {
        PartitionRole::Esp => Some(Filesystem::Fat32),
        PartitionRole::Windows => Some(Filesystem::Ntfs),
        _ => None,
    }
}

/// `format quick fs=... [label="..."]`; a label loses the characters diskpart cannot quote.
fn format_line(fs: &Filesystem, label: Option<&str>) -> Result<String, DiskError> {
    let fs = match fs {
        Filesystem::Fat32 => "fat32",
        Filesystem::Ntfs => "ntfs",
        other => {
            return Err(DiskError::Unsupported(format!(
                "diskpart makes no {other} filesystem in Windows PE (fat32 or ntfs)"
            )))
        }
    };
    let mut line = format!("format quick fs={fs}");
    if let Some(l) = label {
        let clean: String = l.chars().filter(|c| *c != '"' && !c.is_control()).collect();
        line.push_str(&format!(" label=\"{clean}\""));
    }
    Ok(line)
}

/// The script that writes `layout` on disk `disk` (`\\.\PhysicalDrive<disk>`), formats its
/// ESP and Windows partitions and gives them their letters. `disk_bytes` is needed only for
/// percentages: a `rest` partition is created without a size, which diskpart reads as
/// everything left.
pub fn partition_script(
    disk: u32,
    layout: &DiskLayout,
    disk_bytes: Option<u64>,
) -> Result<String, DiskError> {
    layout.check().map_err(|source| DiskError::Layout {
        disk: format!(r"\\.\PhysicalDrive{disk}"),
        source,
    })?;
    let placed = match disk_bytes {
        Some(bytes) => Some(layout.place(bytes).map_err(|source| DiskError::Layout {
            disk: format!(r"\\.\PhysicalDrive{disk}"),
            source,
        })?),
        None => None,
    };
    let gpt = layout.table == PartitionTable::Gpt;
    let mut s = format!(
        "select disk {disk}\nclean\nconvert {}\n",
        if gpt { "gpt" } else { "mbr" }
    );
    let letters = letters(layout);
    for (i, p) in layout.partitions.iter().enumerate() {
        let size = match (p.size, &placed) {
            (PartitionSize::Rest, _) => None,
            (_, Some(placed)) => Some(placed[i].size >> 20),
            (PartitionSize::Mib(n), None) => Some(n),
            (PartitionSize::Percent(_), None) => {
                return Err(DiskError::SizeNeeded {
                    disk: format!(r"\\.\PhysicalDrive{disk}"),
                    number: i + 1,
                })
            }
        };
        let kind = match (&p.role, gpt) {
            (PartitionRole::Esp, true) => "efi".to_owned(),
            (PartitionRole::Msr, _) => "msr".to_owned(),
            (PartitionRole::Windows, _) => "primary".to_owned(),
            (role, true) => format!("primary id={}", role.gpt_type().unwrap_or_default()),
            (role, false) => format!("primary id={:02x}", role.mbr_type().unwrap_or_default()),
        };
        s.push_str(&format!("create partition {kind}"));
        if let Some(mib) = size {
            s.push_str(&format!(" size={mib}"));
        }
        s.push('\n');
        if let Some(fs) = default_filesystem(&p.role) {
            s.push_str(&format_line(&fs, p.label.as_deref())?);
            s.push('\n');
        }
        if let Some(letter) = letters[i] {
            s.push_str(&format!("assign letter={letter}\n"));
        }
        if p.active {
            s.push_str("active\n");
        }
    }
    s.push_str("exit\n");
    Ok(s)
}

/// The script of a `format` step: partition `number` of disk `disk` gets `fs` and `label`.
/// `letter` is given when the partition has no letter yet (a disk not partitioned in this
/// run); one laid out in this run kept the letter `partition_script` gave it.
pub fn format_script(
    disk: u32,
    number: u32,
    fs: &Filesystem,
    label: Option<&str>,
    letter: Option<char>,
) -> Result<String, DiskError> {
    let mut s = format!(
        "select disk {disk}\nselect partition {number}\n{}\n",
        format_line(fs, label)?
    );
    if let Some(l) = letter {
        s.push_str(&format!("assign letter={l}\n"));
    }
    s.push_str("exit\n");
    Ok(s)
}

/// The letter a `format` step gives a partition this run did not lay out: `S:` to FAT32 (an
/// ESP), `W:` to NTFS.
pub fn letter_for(fs: &Filesystem) -> Option<char> {
    match fs {
        Filesystem::Fat32 => Some(ESP_LETTER),
        Filesystem::Ntfs => Some(WINDOWS_LETTER),
        _ => None,
    }
}

/// `dism`'s arguments that apply the first image of the WIM `image` to `apply_dir` (`W:\`).
pub fn dism_args(image: &str, apply_dir: &str) -> Vec<String> {
    vec![
        "/Apply-Image".into(),
        format!("/ImageFile:{image}"),
        "/Index:1".into(),
        format!("/ApplyDir:{apply_dir}"),
    ]
}

/// The firmware `bcdboot` writes boot files for, from `GetFirmwareType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    Uefi,
    Bios,
    /// Unknown: files for both.
    All,
}

/// `bcdboot`'s arguments: boot files from `<windows>:\Windows` onto the system partition
/// `system` (the ESP on UEFI, the active Windows partition itself on BIOS).
pub fn bcdboot_args(windows: char, system: char, firmware: Firmware) -> Vec<String> {
    vec![
        format!(r"{windows}:\Windows"),
        "/s".into(),
        format!("{system}:"),
        "/f".into(),
        match firmware {
            Firmware::Uefi => "UEFI",
            Firmware::Bios => "BIOS",
            Firmware::All => "ALL",
        }
        .into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use netdeploy_wire::disk::PartitionSpec;

    fn part(role: PartitionRole, size: &str, label: Option<&str>, active: bool) -> PartitionSpec {
        PartitionSpec {
            role,
            size: size.parse().unwrap(),
            label: label.map(str::to_owned),
            active,
        }
    }

    /// What a UEFI machine's Windows needs: ESP, MSR, Windows.
    pub fn uefi() -> DiskLayout {
        DiskLayout {
            table: PartitionTable::Gpt,
            partitions: vec![
                part(PartitionRole::Esp, "260MiB", Some("System"), false),
                part(PartitionRole::Msr, "16MiB", None, false),
                part(PartitionRole::Windows, "rest", Some("Windows"), false),
            ],
        }
    }

    #[test]
    fn a_uefi_layout_is_esp_fat32_msr_and_ntfs_windows_with_their_letters() {
        let want = "select disk 0\nclean\nconvert gpt\n\
                    create partition efi size=260\n\
                    format quick fs=fat32 label=\"System\"\n\
                    assign letter=S\n\
                    create partition msr size=16\n\
                    create partition primary\n\
                    format quick fs=ntfs label=\"Windows\"\n\
                    assign letter=W\n\
                    exit\n";
        assert_eq!(partition_script(0, &uefi(), None).unwrap(), want);
        // With the disk's size known the script is the same: sizes in MiB, rest without.
        assert_eq!(partition_script(0, &uefi(), Some(64 << 30)).unwrap(), want);
    }

    #[test]
    fn a_bios_layout_is_mbr_with_an_active_ntfs_partition() {
        let layout = DiskLayout {
            table: PartitionTable::Mbr,
            partitions: vec![
                part(PartitionRole::Windows, "50%", Some("Windows"), true),
                part(PartitionRole::Windows, "rest", Some("Data \"D\""), false),
            ],
        };
        assert_eq!(
            partition_script(1, &layout, Some(100 << 30)).unwrap(),
            "select disk 1\nclean\nconvert mbr\n\
             create partition primary size=51200\n\
             format quick fs=ntfs label=\"Windows\"\n\
             assign letter=W\n\
             active\n\
             create partition primary\n\
             format quick fs=ntfs label=\"Data D\"\n\
             assign letter=T\n\
             exit\n"
        );
        let e = partition_script(1, &layout, None).unwrap_err();
        assert!(
            e.to_string().contains("partition 1") && e.to_string().contains("PhysicalDrive1"),
            "{e}"
        );
        let e = partition_script(1, &layout, Some(1 << 20)).unwrap_err();
        assert!(e.to_string().contains("partition 1"), "{e}");
    }

    #[test]
    fn linux_roles_get_their_type_and_no_filesystem() {
        let layout = DiskLayout {
            table: PartitionTable::Gpt,
            partitions: vec![
                part(PartitionRole::Swap, "1GiB", None, false),
                part(PartitionRole::Linux, "rest", Some("root"), false),
            ],
        };
        assert_eq!(
            partition_script(2, &layout, None).unwrap(),
            "select disk 2\nclean\nconvert gpt\n\
             create partition primary id=0657FD6D-A4AB-43C4-84E5-0933C84B4F4F size=1024\n\
             create partition primary id=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n\
             exit\n"
        );
    }

    #[test]
    fn a_format_script_selects_the_partition_and_assigns_a_letter_only_when_asked() {
        assert_eq!(
            format_script(0, 3, &Filesystem::Ntfs, Some("Windows"), None).unwrap(),
            "select disk 0\nselect partition 3\nformat quick fs=ntfs label=\"Windows\"\nexit\n"
        );
        assert_eq!(
            format_script(
                0,
                1,
                &Filesystem::Fat32,
                None,
                letter_for(&Filesystem::Fat32)
            )
            .unwrap(),
            "select disk 0\nselect partition 1\nformat quick fs=fat32\nassign letter=S\nexit\n"
        );
        let e = format_script(0, 2, &Filesystem::Ext4, None, None).unwrap_err();
        assert!(e.to_string().contains("no ext4 filesystem"), "{e}");
    }

    #[test]
    fn disks_are_named_by_their_physical_drive_number() {
        assert_eq!(disk_number(r"\\.\PhysicalDrive0"), Some(0));
        assert_eq!(disk_number(r"\\.\physicaldrive12"), Some(12));
        for bad in [
            r"\\.\PhysicalDrive",
            r"\\.\PhysicalDrive-1",
            r"\\.\PhysicalDrive1 ",
            r"\\.\C:",
            "/dev/vda",
            r"PhysicalDrive0",
        ] {
            assert_eq!(disk_number(bad), None, "{bad}");
        }
    }

    #[test]
    fn dism_and_bcdboot_command_lines() {
        assert_eq!(
            dism_args(r"X:\netdeploy\install.wim", r"W:\"),
            [
                "/Apply-Image",
                r"/ImageFile:X:\netdeploy\install.wim",
                "/Index:1",
                r"/ApplyDir:W:\"
            ]
        );
        assert_eq!(
            bcdboot_args('W', 'S', Firmware::Uefi).join(" "),
            r"W:\Windows /s S: /f UEFI"
        );
        assert_eq!(
            bcdboot_args('W', 'W', Firmware::Bios).join(" "),
            r"W:\Windows /s W: /f BIOS"
        );
    }
}
