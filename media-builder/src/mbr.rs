//! The master boot record: the isohybrid MBR that makes an ISO bootable from a USB stick,
//! and the protective MBR in front of a GPT.

/// Bytes of boot code before the isohybrid fields (isolinux's `isohdpfx.bin` fills these).
pub const ISOHYBRID_CODE_LEN: usize = 432;

/// Partition types used here.
pub const TYPE_EMPTY: u8 = 0x00;
pub const TYPE_EFI_SYSTEM: u8 = 0xEF;
/// FAT32 addressed by LBA: the Windows PE USB image's one partition, which UEFI firmware and
/// Windows' boot manager both read.
pub const TYPE_FAT32_LBA: u8 = 0x0C;
pub const TYPE_GPT_PROTECTIVE: u8 = 0xEE;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Partition {
    pub bootable: bool,
    pub kind: u8,
    /// First 512-byte sector.
    pub start: u32,
    /// Length in 512-byte sectors.
    pub sectors: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mbr {
    /// Boot code, at most 440 bytes (copied to the start of the sector).
    pub boot_code: Vec<u8>,
    /// For isohybrid: the sector (512-byte units) where ISOLINUX starts, read by `isohdpfx.bin`.
    pub isohybrid_loader_sector: Option<u64>,
    pub disk_signature: u32,
    pub partitions: [Partition; 4],
}

/// CHS address for an LBA with the usual 255 heads, 63 sectors geometry; past cylinder
/// 1023 the maximal address, as partitioning tools write.
fn chs(lba: u32) -> [u8; 3] {
    let c = lba / (255 * 63);
    if c > 1023 {
        return [0xFE, 0xFF, 0xFF];
    }
    let h = (lba / 63) % 255;
    let s = lba % 63 + 1;
    [h as u8, (s as u8) | (((c >> 8) as u8) << 6), c as u8]
}

impl Mbr {
    pub fn to_bytes(&self) -> [u8; 512] {
        let mut b = [0u8; 512];
        let n = self.boot_code.len().min(440);
        b[..n].copy_from_slice(&self.boot_code[..n]);
        if let Some(sector) = self.isohybrid_loader_sector {
            b[432..440].copy_from_slice(&sector.to_le_bytes());
        }
        b[440..444].copy_from_slice(&self.disk_signature.to_le_bytes());
        for (i, p) in self.partitions.iter().enumerate() {
            let e = &mut b[446 + 16 * i..446 + 16 * (i + 1)];
            if p.sectors == 0 {
                continue;
            }
            e[0] = if p.bootable { 0x80 } else { 0 };
            e[1..4].copy_from_slice(&chs(p.start));
            e[4] = p.kind;
            e[5..8].copy_from_slice(&chs(p.start + p.sectors - 1));
            e[8..12].copy_from_slice(&p.start.to_le_bytes());
            e[12..16].copy_from_slice(&p.sectors.to_le_bytes());
        }
        b[510] = 0x55;
        b[511] = 0xAA;
        b
    }

    pub fn parse(b: &[u8]) -> Option<Mbr> {
        if b.len() < 512 || b[510] != 0x55 || b[511] != 0xAA {
            return None;
        }
        let mut partitions = [Partition::default(); 4];
        for (i, p) in partitions.iter_mut().enumerate() {
            let e = &b[446 + 16 * i..446 + 16 * (i + 1)];
            *p = Partition {
                bootable: e[0] == 0x80,
                kind: e[4],
                start: u32::from_le_bytes(e[8..12].try_into().ok()?),
                sectors: u32::from_le_bytes(e[12..16].try_into().ok()?),
            };
        }
        Some(Mbr {
            boot_code: b[..440].to_vec(),
            isohybrid_loader_sector: None,
            disk_signature: u32::from_le_bytes(b[440..444].try_into().ok()?),
            partitions,
        })
    }
}

/// The isohybrid MBR for an ISO of `iso_sectors` 2048-byte sectors: partition 1 is the whole
/// image (type 0, active, as xorriso writes it: firmware skips it), partition 2 the EFI System
/// Partition image inside it, so UEFI firmware finds `EFI/BOOT/BOOTX64.EFI` on a raw USB copy.
/// With `isohdpfx` (isolinux's hybrid MBR code) and the ISOLINUX sector, BIOS boots it too.
pub fn isohybrid(
    iso_sectors: u32,
    esp: Option<(u32, u32)>,
    isohdpfx: Option<(&[u8], u32)>,
    disk_signature: u32,
) -> Mbr {
    let mut partitions = [Partition::default(); 4];
    partitions[0] = Partition {
        bootable: true,
        kind: TYPE_EMPTY,
        start: 0,
        sectors: iso_sectors * 4,
    };
    if let Some((lba, len)) = esp {
        partitions[1] = Partition {
            bootable: false,
            kind: TYPE_EFI_SYSTEM,
            start: lba * 4,
            sectors: len.div_ceil(512),
        };
    }
    let (boot_code, isohybrid_loader_sector) = match isohdpfx {
        Some((code, loader_lba)) => (
            code[..code.len().min(ISOHYBRID_CODE_LEN)].to_vec(),
            Some(u64::from(loader_lba) * 4),
        ),
        None => (Vec::new(), None),
    };
    Mbr {
        boot_code,
        isohybrid_loader_sector,
        disk_signature,
        partitions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mbr_round_trips_partitions_and_signature() {
        let m = isohybrid(1000, Some((40, 1 << 20)), None, 0xDEADBEEF);
        let b = m.to_bytes();
        assert_eq!(&b[510..], &[0x55, 0xAA]);
        let p = Mbr::parse(&b).unwrap();
        assert_eq!(p.disk_signature, 0xDEADBEEF);
        assert_eq!(p.partitions, m.partitions);
        assert_eq!(
            p.partitions[1],
            Partition {
                bootable: false,
                kind: 0xEF,
                start: 160,
                sectors: 2048
            }
        );
        assert!(p.partitions[0].bootable);
    }

    #[test]
    fn isohybrid_code_and_loader_sector_land_at_432() {
        let code = vec![0x90u8; 512];
        let b = isohybrid(100, None, Some((&code, 33)), 1).to_bytes();
        assert_eq!(&b[..432], &code[..432]);
        assert_eq!(u64::from_le_bytes(b[432..440].try_into().unwrap()), 132);
    }

    #[test]
    fn chs_saturates_past_cylinder_1023() {
        assert_eq!(chs(0), [0, 1, 0]);
        assert_eq!(chs(2048), [32, 33, 0]);
        assert_eq!(chs(u32::MAX), [0xFE, 0xFF, 0xFF]);
    }
}
