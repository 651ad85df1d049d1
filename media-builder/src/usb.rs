//! The raw USB disk image: a GPT with one FAT32 EFI System Partition, aligned to 1 MiB.

use sha2::{Digest, Sha256};

use crate::gpt::{Gpt, GptError, Guid, Partition, SECTOR};

/// First sector of the system partition (1 MiB, the usual alignment).
pub const ESP_START: u64 = 2048;

/// GPT partition attribute bit 2: legacy BIOS bootable, the partition syslinux's GPT MBR code
/// boots.
pub const LEGACY_BIOS_BOOTABLE: u64 = 1 << 2;

/// Wraps a FAT32 image into a GPT disk. GUIDs come from `seed` (a hash of the build
/// inputs), so the same inputs give the same disk. With `bios_bootable` the system partition is
/// marked legacy BIOS bootable.
pub fn write_disk(esp: &[u8], seed: &[u8], bios_bootable: bool) -> Result<Vec<u8>, GptError> {
    let esp_sectors = (esp.len() as u64).div_ceil(SECTOR);
    // 1 MiB in front, and 1 MiB behind for the backup table, rounded as partitioners do.
    let disk_sectors = ESP_START + esp_sectors + 2048;
    let guid = |what: &[u8]| {
        Guid::from_hash(
            &Sha256::new()
                .chain_update(seed)
                .chain_update(what)
                .finalize(),
        )
    };
    let gpt = Gpt {
        disk_guid: guid(b"disk"),
        disk_sectors,
        partitions: vec![Partition {
            type_guid: Guid::EFI_SYSTEM,
            unique_guid: guid(b"esp"),
            first_lba: ESP_START,
            last_lba: ESP_START + esp_sectors - 1,
            attributes: if bios_bootable {
                LEGACY_BIOS_BOOTABLE
            } else {
                0
            },
            name: "EFI system partition".into(),
        }],
    };
    let mut disk = vec![0u8; (disk_sectors * SECTOR) as usize];
    gpt.write(&mut disk)?;
    let start = (ESP_START * SECTOR) as usize;
    disk[start..start + esp.len()].copy_from_slice(esp);
    Ok(disk)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn esp_sits_at_one_mib_inside_a_valid_gpt() {
        let esp = vec![0x5A; 4 << 20];
        let disk = write_disk(&esp, b"seed", false).unwrap();
        let gpt = Gpt::read(&disk, true).unwrap();
        assert_eq!(gpt, Gpt::read(&disk, false).unwrap());
        let p = &gpt.partitions[0];
        assert_eq!(p.type_guid, Guid::EFI_SYSTEM);
        assert_eq!((p.first_lba, p.last_lba), (2048, 2048 + 8192 - 1));
        assert_eq!(&disk[1 << 20..(1 << 20) + esp.len()], &esp[..]);
        assert_eq!(disk, write_disk(&esp, b"seed", false).unwrap());
        assert_ne!(
            gpt.disk_guid,
            Gpt::read(&write_disk(&esp, b"other", false).unwrap(), true)
                .unwrap()
                .disk_guid
        );
    }
}
