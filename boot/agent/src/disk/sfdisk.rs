//! The script `sfdisk` (util-linux) reads on its standard input to write a layout placed by
//! [`DiskLayout::place`](netdeploy_wire::disk::DiskLayout::place): one line per partition with
//! its start and size in sectors, its type (GPT type GUID or MBR type byte), its GPT name and,
//! on MBR, the bootable flag.

use netdeploy_wire::disk::{PartitionTable, Placed};

/// The `sfdisk` script of `placed` on a disk with `table` and logical sectors of
/// `sector_size` bytes (sfdisk counts in the device's own). The layout was checked (`DiskLayout::check`), so every role has a type for the
/// table; a label loses the characters an sfdisk script cannot quote (`"`, `\`, controls).
pub fn script(table: &PartitionTable, placed: &[Placed], sector_size: u64) -> String {
    let gpt = *table == PartitionTable::Gpt;
    let mut s = format!(
        "label: {}\nunit: sectors\n\n",
        if gpt { "gpt" } else { "dos" }
    );
    for p in placed {
        let ty = if gpt {
            p.spec.role.gpt_type().unwrap_or_default().to_owned()
        } else {
            format!("{:x}", p.spec.role.mbr_type().unwrap_or_default())
        };
        s.push_str(&format!(
            "start={}, size={}, type={ty}",
            p.start / sector_size,
            p.size / sector_size
        ));
        if let (true, Some(label)) = (gpt, &p.spec.label) {
            let clean: String = label
                .chars()
                .filter(|c| !matches!(c, '"' | '\\') && !c.is_control())
                .collect();
            s.push_str(&format!(", name=\"{clean}\""));
        }
        if !gpt && p.spec.active {
            s.push_str(", bootable");
        }
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use netdeploy_wire::disk::{DiskLayout, PartitionRole, PartitionSpec};

    fn part(role: PartitionRole, size: &str, label: Option<&str>, active: bool) -> PartitionSpec {
        PartitionSpec {
            role,
            size: size.parse().unwrap(),
            label: label.map(str::to_owned),
            active,
        }
    }

    #[test]
    fn a_gpt_layout_becomes_sectors_type_guids_and_names() {
        let layout = DiskLayout {
            table: PartitionTable::Gpt,
            partitions: vec![
                part(PartitionRole::Esp, "256MiB", Some("EFI \"system\""), false),
                part(PartitionRole::Swap, "10%", None, false),
                part(PartitionRole::Linux, "rest", Some("root"), false),
            ],
        };
        let placed = layout.place(2048 << 20).unwrap();
        assert_eq!(
            script(&layout.table, &placed, 512),
            "label: gpt\nunit: sectors\n\n\
             start=2048, size=524288, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=\"EFI system\"\n\
             start=526336, size=417792, type=0657FD6D-A4AB-43C4-84E5-0933C84B4F4F\n\
             start=944128, size=3248128, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=\"root\"\n"
        );
    }

    #[test]
    fn an_mbr_layout_has_type_bytes_the_bootable_flag_and_no_names() {
        let layout = DiskLayout {
            table: PartitionTable::Mbr,
            partitions: vec![
                part(PartitionRole::Linux, "100MiB", Some("boot"), true),
                part(PartitionRole::Swap, "64MiB", None, false),
                part(PartitionRole::Windows, "rest", None, false),
            ],
        };
        let placed = layout.place(1 << 30).unwrap();
        assert_eq!(
            script(&layout.table, &placed, 4096),
            "label: dos\nunit: sectors\n\n\
             start=256, size=25600, type=83, bootable\n\
             start=25856, size=16384, type=82\n\
             start=42240, size=219904, type=7\n"
        );
    }
}
