//! GUID Partition Table (UEFI 2.10 section 5.3): protective MBR, primary header and entry
//! array at the start, backup entry array and header at the end, CRC32 over both.

use crate::mbr::{Mbr, Partition as MbrPartition, TYPE_GPT_PROTECTIVE};

pub const SECTOR: u64 = 512;
const ENTRIES: u32 = 128;
const ENTRY_SIZE: u32 = 128;
/// Sectors taken by the entry array (128 entries of 128 bytes).
pub const ENTRY_SECTORS: u64 = (ENTRIES * ENTRY_SIZE) as u64 / SECTOR;

/// A GUID as it is written on disk (first three fields little-endian).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// EFI System Partition type, C12A7328-F81F-11D2-BA4B-00A0C93EC93B.
    pub const EFI_SYSTEM: Guid = Guid([
        0x28, 0x73, 0x2A, 0xC1, 0x1F, 0xF8, 0xD2, 0x11, 0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E, 0xC9,
        0x3B,
    ]);

    /// A version-4-shaped GUID from the first 16 bytes of a hash, so that the same inputs
    /// give the same GUID (no randomness in a reproducible image).
    pub fn from_hash(h: &[u8]) -> Guid {
        let mut g = [0u8; 16];
        g.copy_from_slice(&h[..16]);
        g[7] = (g[7] & 0x0F) | 0x40;
        g[8] = (g[8] & 0x3F) | 0x80;
        Guid(g)
    }
}

impl std::fmt::Display for Guid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let g = &self.0;
        write!(
            f,
            "{:08X}-{:04X}-{:04X}-{:02X}{:02X}-",
            u32::from_le_bytes([g[0], g[1], g[2], g[3]]),
            u16::from_le_bytes([g[4], g[5]]),
            u16::from_le_bytes([g[6], g[7]]),
            g[8],
            g[9]
        )?;
        g[10..].iter().try_for_each(|b| write!(f, "{b:02X}"))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub type_guid: Guid,
    pub unique_guid: Guid,
    pub first_lba: u64,
    pub last_lba: u64,
    pub attributes: u64,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gpt {
    pub disk_guid: Guid,
    /// Size of the disk in 512-byte sectors.
    pub disk_sectors: u64,
    pub partitions: Vec<Partition>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GptError {
    #[error("disk image is too small for a GPT")]
    TooSmall,
    #[error("partition {0} lies outside the usable sectors")]
    OutOfRange(String),
    #[error("{0} GPT header is missing or its CRC32 is wrong")]
    BadHeader(&'static str),
    #[error("{0} GPT entry array CRC32 is wrong")]
    BadEntries(&'static str),
}

impl Gpt {
    /// First sector a partition may use.
    pub fn first_usable() -> u64 {
        2 + ENTRY_SECTORS
    }

    pub fn last_usable(&self) -> u64 {
        self.disk_sectors - 2 - ENTRY_SECTORS
    }

    fn entry_array(&self) -> Vec<u8> {
        let mut a = vec![0u8; (ENTRIES * ENTRY_SIZE) as usize];
        for (i, p) in self.partitions.iter().enumerate() {
            let e = &mut a[i * ENTRY_SIZE as usize..(i + 1) * ENTRY_SIZE as usize];
            e[0..16].copy_from_slice(&p.type_guid.0);
            e[16..32].copy_from_slice(&p.unique_guid.0);
            e[32..40].copy_from_slice(&p.first_lba.to_le_bytes());
            e[40..48].copy_from_slice(&p.last_lba.to_le_bytes());
            e[48..56].copy_from_slice(&p.attributes.to_le_bytes());
            for (j, u) in p.name.encode_utf16().take(36).enumerate() {
                e[56 + 2 * j..58 + 2 * j].copy_from_slice(&u.to_le_bytes());
            }
        }
        a
    }

    fn header(&self, this: u64, other: u64, entries_lba: u64, entries_crc: u32) -> [u8; 512] {
        let mut h = [0u8; 512];
        h[0..8].copy_from_slice(b"EFI PART");
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        h[24..32].copy_from_slice(&this.to_le_bytes());
        h[32..40].copy_from_slice(&other.to_le_bytes());
        h[40..48].copy_from_slice(&Self::first_usable().to_le_bytes());
        h[48..56].copy_from_slice(&self.last_usable().to_le_bytes());
        h[56..72].copy_from_slice(&self.disk_guid.0);
        h[72..80].copy_from_slice(&entries_lba.to_le_bytes());
        h[80..84].copy_from_slice(&ENTRIES.to_le_bytes());
        h[84..88].copy_from_slice(&ENTRY_SIZE.to_le_bytes());
        h[88..92].copy_from_slice(&entries_crc.to_le_bytes());
        let crc = crc32fast::hash(&h[..92]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    }

    /// Writes the protective MBR, both headers and both entry arrays into `disk`, which must
    /// be `disk_sectors * 512` bytes long.
    pub fn write(&self, disk: &mut [u8]) -> Result<(), GptError> {
        if self.disk_sectors < 2 * (2 + ENTRY_SECTORS) + 1
            || disk.len() as u64 != self.disk_sectors * SECTOR
        {
            return Err(GptError::TooSmall);
        }
        for p in &self.partitions {
            if p.first_lba < Self::first_usable()
                || p.last_lba > self.last_usable()
                || p.first_lba > p.last_lba
            {
                return Err(GptError::OutOfRange(p.name.clone()));
            }
        }
        let last = self.disk_sectors - 1;
        let mut partitions = [MbrPartition::default(); 4];
        partitions[0] = MbrPartition {
            bootable: false,
            kind: TYPE_GPT_PROTECTIVE,
            start: 1,
            sectors: u32::try_from(last).unwrap_or(u32::MAX),
        };
        let mbr = Mbr {
            boot_code: Vec::new(),
            isohybrid_loader_sector: None,
            disk_signature: 0,
            partitions,
        };
        disk[..512].copy_from_slice(&mbr.to_bytes());
        let entries = self.entry_array();
        let crc = crc32fast::hash(&entries);
        let at = |lba: u64| (lba * SECTOR) as usize;
        disk[at(1)..at(2)].copy_from_slice(&self.header(1, last, 2, crc));
        disk[at(2)..at(2) + entries.len()].copy_from_slice(&entries);
        let backup_entries = last - ENTRY_SECTORS;
        disk[at(backup_entries)..at(backup_entries) + entries.len()].copy_from_slice(&entries);
        disk[at(last)..].copy_from_slice(&self.header(last, 1, backup_entries, crc));
        Ok(())
    }

    /// Reads and checks one header (`primary` or backup) and its entries.
    pub fn read(disk: &[u8], primary: bool) -> Result<Gpt, GptError> {
        let which = if primary { "primary" } else { "backup" };
        let sectors = disk.len() as u64 / SECTOR;
        if sectors < 3 {
            return Err(GptError::TooSmall);
        }
        let lba = if primary { 1 } else { sectors - 1 };
        let h = &disk[(lba * SECTOR) as usize..((lba + 1) * SECTOR) as usize];
        let mut check = h[..92].to_vec();
        check[16..20].fill(0);
        if &h[0..8] != b"EFI PART" || crc32fast::hash(&check).to_le_bytes() != h[16..20] {
            return Err(GptError::BadHeader(which));
        }
        let u64_at = |o: usize| u64::from_le_bytes(h[o..o + 8].try_into().expect("8 bytes"));
        let entries_lba = u64_at(72) as usize * SECTOR as usize;
        let entries = disk
            .get(entries_lba..entries_lba + (ENTRIES * ENTRY_SIZE) as usize)
            .ok_or(GptError::BadEntries(which))?;
        if crc32fast::hash(entries).to_le_bytes() != h[88..92] {
            return Err(GptError::BadEntries(which));
        }
        let mut disk_guid = [0u8; 16];
        disk_guid.copy_from_slice(&h[56..72]);
        let partitions = entries
            .chunks(ENTRY_SIZE as usize)
            .filter(|e| e[..16].iter().any(|&b| b != 0))
            .map(|e| {
                let g = |o: usize| {
                    let mut x = [0u8; 16];
                    x.copy_from_slice(&e[o..o + 16]);
                    Guid(x)
                };
                let name: Vec<u16> = e[56..128]
                    .chunks(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .take_while(|&u| u != 0)
                    .collect();
                Partition {
                    type_guid: g(0),
                    unique_guid: g(16),
                    first_lba: u64::from_le_bytes(e[32..40].try_into().expect("8 bytes")),
                    last_lba: u64::from_le_bytes(e[40..48].try_into().expect("8 bytes")),
                    attributes: u64::from_le_bytes(e[48..56].try_into().expect("8 bytes")),
                    name: String::from_utf16_lossy(&name),
                }
            })
            .collect();
        Ok(Gpt {
            disk_guid: Guid(disk_guid),
            disk_sectors: sectors,
            partitions,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Gpt {
        Gpt {
            disk_guid: Guid::from_hash(&[7u8; 32]),
            disk_sectors: 8192,
            partitions: vec![Partition {
                type_guid: Guid::EFI_SYSTEM,
                unique_guid: Guid::from_hash(&[9u8; 32]),
                first_lba: 2048,
                last_lba: 6143,
                attributes: 0,
                name: "EFI system partition".into(),
            }],
        }
    }

    #[test]
    fn efi_system_guid_displays_in_canonical_form() {
        assert_eq!(
            Guid::EFI_SYSTEM.to_string(),
            "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
        );
    }

    #[test]
    fn primary_and_backup_round_trip_with_valid_crcs() {
        let g = table();
        let mut disk = vec![0u8; 8192 * 512];
        g.write(&mut disk).unwrap();
        assert_eq!(Gpt::read(&disk, true).unwrap(), g);
        assert_eq!(Gpt::read(&disk, false).unwrap(), g);
        let mbr = Mbr::parse(&disk).unwrap();
        assert_eq!(mbr.partitions[0].kind, TYPE_GPT_PROTECTIVE);
        assert_eq!(mbr.partitions[0].sectors, 8191);
    }

    #[test]
    fn corrupted_entries_fail_the_crc_check() {
        let mut disk = vec![0u8; 8192 * 512];
        table().write(&mut disk).unwrap();
        disk[2 * 512 + 60] ^= 1;
        assert_eq!(Gpt::read(&disk, true), Err(GptError::BadEntries("primary")));
        assert!(Gpt::read(&disk, false).is_ok());
    }

    #[test]
    fn partition_outside_usable_range_is_refused() {
        let mut g = table();
        g.partitions[0].last_lba = 8190;
        let mut disk = vec![0u8; 8192 * 512];
        assert!(matches!(g.write(&mut disk), Err(GptError::OutOfRange(_))));
    }
}
