//! FAT images (EFI System Partitions), written through the `fatfs` crate with a fixed
//! volume id and every date set to the build timestamp.

use std::io::{Cursor, Write};

use fatfs::{
    Date, DateTime, FatType, FileSystem, FormatVolumeOptions, FsOptions, Time, TimeProvider,
};

use crate::timestamp::Timestamp;

/// Largest file FAT can hold: its size field is 32 bits (4 GiB - 1 byte).
pub const MAX_FILE_SIZE: u64 = u32::MAX as u64;
/// FAT32 needs at least 65525 clusters (Microsoft FAT specification, "FAT type determination").
const FAT32_MIN_CLUSTERS: u64 = 65_525;

#[derive(Debug, thiserror::Error)]
pub enum FatError {
    #[error("{path} is {size} bytes: FAT32 holds files up to 4 GiB - 1 byte ({max} bytes); \
             use the ISO format or a smaller file (splitting is not supported)", max = MAX_FILE_SIZE)]
    FileTooLarge { path: String, size: u64 },
    #[error("writing the FAT image: {0}")]
    Io(#[from] std::io::Error),
}

/// Refuses a file that cannot be stored in FAT, before it is read.
pub fn check_file_size(path: &str, size: u64) -> Result<(), FatError> {
    if size > MAX_FILE_SIZE {
        return Err(FatError::FileTooLarge {
            path: path.to_string(),
            size,
        });
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FatKind {
    /// FAT12 or FAT16, as fits the size: the small ESP image inside an ISO.
    Auto,
    /// FAT32: the system partition of a USB disk image.
    Fat32,
}

#[derive(Debug, Clone)]
pub struct FatSpec {
    /// Volume label, up to 11 characters.
    pub label: String,
    pub volume_id: u32,
    pub kind: FatKind,
    pub timestamp: Timestamp,
    /// `/`-separated paths and contents.
    pub files: Vec<(String, Vec<u8>)>,
}

#[derive(Debug)]
struct FixedTime(DateTime);

impl TimeProvider for FixedTime {
    fn get_current_date(&self) -> Date {
        self.0.date
    }
    fn get_current_date_time(&self) -> DateTime {
        self.0
    }
}

/// FAT dates start in 1980; earlier build timestamps are written as 1980-01-01.
fn fat_date_time(t: &Timestamp) -> DateTime {
    if t.year < 1980 {
        return DateTime {
            date: Date {
                year: 1980,
                month: 1,
                day: 1,
            },
            time: Time {
                hour: 0,
                min: 0,
                sec: 0,
                millis: 0,
            },
        };
    }
    DateTime {
        date: Date {
            year: t.year.min(2107),
            month: t.month.into(),
            day: t.day.into(),
        },
        time: Time {
            hour: t.hour.into(),
            min: t.minute.into(),
            sec: u16::from(t.second) / 2 * 2,
            millis: 0,
        },
    }
}

/// Bytes of image for `files`, with room for the FAT, directories and cluster slack.
pub fn image_size(spec: &FatSpec) -> (u64, Option<u32>) {
    const MIB: u64 = 1 << 20;
    let data: u64 = spec
        .files
        .iter()
        .map(|(_, d)| (d.len() as u64).div_ceil(32 * 1024) * 32 * 1024)
        .sum();
    let mut size = (data + data / 32 + 2 * MIB).div_ceil(MIB) * MIB;
    match spec.kind {
        FatKind::Auto => (size, None),
        FatKind::Fat32 => {
            // The largest cluster that still leaves FAT32 enough clusters; the smallest
            // FAT32 volume (512-byte clusters) is about 33 MiB.
            size = size.max(34 * MIB);
            let cluster = [4096u64, 2048, 1024, 512]
                .into_iter()
                .find(|c| size / c >= FAT32_MIN_CLUSTERS + FAT32_MIN_CLUSTERS / 50)
                .unwrap_or(512);
            (size, Some(cluster as u32))
        }
    }
}

/// Formats a FAT image and copies the files in, creating directories as needed.
pub fn write_image(spec: &FatSpec) -> Result<Vec<u8>, FatError> {
    for (path, data) in &spec.files {
        check_file_size(path, data.len() as u64)?;
    }
    let (size, cluster) = image_size(spec);
    let mut label = [b' '; 11];
    for (d, s) in label
        .iter_mut()
        .zip(spec.label.to_ascii_uppercase().bytes())
    {
        *d = s;
    }
    let mut opts = FormatVolumeOptions::new()
        .volume_id(spec.volume_id)
        .volume_label(label);
    if spec.kind == FatKind::Fat32 {
        opts = opts.fat_type(FatType::Fat32);
    }
    if let Some(c) = cluster {
        opts = opts.bytes_per_cluster(c);
    }
    let mut disk = Cursor::new(vec![0u8; size as usize]);
    fatfs::format_volume(&mut disk, opts)?;
    disk.set_position(0);
    // fatfs wants a 'static time provider; one small leak per image keeps dates fixed.
    let time: &'static FixedTime = Box::leak(Box::new(FixedTime(fat_date_time(&spec.timestamp))));
    {
        let fs = FileSystem::new(
            &mut disk,
            FsOptions::new()
                .time_provider(time)
                .update_accessed_date(false),
        )?;
        for (path, data) in &spec.files {
            let root = fs.root_dir();
            let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
            let Some((name, dirs)) = parts.split_last() else {
                continue;
            };
            let mut dir = root;
            for d in dirs {
                dir = match dir.open_dir(d) {
                    Ok(x) => x,
                    Err(_) => dir.create_dir(d)?,
                };
            }
            let mut f = dir.create_file(name)?;
            f.truncate()?;
            f.write_all(data)?;
            f.flush()?;
        }
        fs.unmount()?;
    }
    Ok(disk.into_inner())
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn spec(kind: FatKind) -> FatSpec {
        FatSpec {
            label: "NETDEPLOY".into(),
            volume_id: 0x1234_5678,
            kind,
            timestamp: Timestamp::from_unix(1_700_000_000),
            files: vec![
                ("EFI/BOOT/BOOTX64.EFI".into(), vec![0x4D; 10_000]),
                (
                    "loader/entries/netdeploy.conf".into(),
                    b"title netdeploy\n".to_vec(),
                ),
            ],
        }
    }

    #[test]
    fn files_read_back_from_the_image() {
        for kind in [FatKind::Auto, FatKind::Fat32] {
            let img = write_image(&spec(kind)).unwrap();
            let fs = FileSystem::new(Cursor::new(img), FsOptions::new()).unwrap();
            if kind == FatKind::Fat32 {
                assert_eq!(fs.fat_type(), FatType::Fat32);
            }
            assert_eq!(fs.volume_label(), "NETDEPLOY");
            let mut buf = Vec::new();
            fs.root_dir()
                .open_file("EFI/BOOT/BOOTX64.EFI")
                .unwrap()
                .read_to_end(&mut buf)
                .unwrap();
            assert_eq!(buf, vec![0x4D; 10_000]);
            let mut s = String::new();
            fs.root_dir()
                .open_file("loader/entries/netdeploy.conf")
                .unwrap()
                .read_to_string(&mut s)
                .unwrap();
            assert_eq!(s, "title netdeploy\n");
        }
    }

    #[test]
    fn same_spec_gives_same_bytes() {
        assert_eq!(
            write_image(&spec(FatKind::Auto)).unwrap(),
            write_image(&spec(FatKind::Auto)).unwrap()
        );
    }

    #[test]
    fn file_of_four_gib_is_refused_with_its_name() {
        assert!(check_file_size("a", MAX_FILE_SIZE).is_ok());
        let err = check_file_size("boot/initrd.img", 4 << 30).unwrap_err();
        assert!(err.to_string().contains("boot/initrd.img"), "{err}");
        assert!(err.to_string().contains("4 GiB"), "{err}");
    }

    #[test]
    fn fat32_size_has_enough_clusters() {
        let (size, cluster) = image_size(&spec(FatKind::Fat32));
        assert!(size / u64::from(cluster.unwrap()) >= FAT32_MIN_CLUSTERS);
    }
}
