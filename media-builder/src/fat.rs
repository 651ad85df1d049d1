//! FAT16 and FAT32 images (EFI System Partitions), written in one pass from a known set of
//! files: layout first (directories, then files, each contiguous), then the bytes. Long names
//! get VFAT entries; every date is the build timestamp; the volume id is given, so the same
//! inputs give the same image. Follows Microsoft's "FAT: General Overview of On-Disk Format".

use std::collections::BTreeMap;

use crate::timestamp::Timestamp;

/// Largest file FAT can hold: its size field is 32 bits (4 GiB - 1 byte).
pub const MAX_FILE_SIZE: u64 = u32::MAX as u64;
const SECTOR: u64 = 512;
/// Cluster counts that decide the FAT type (FAT specification, "FAT type determination").
const FAT16_MIN_CLUSTERS: u64 = 4085;
const FAT32_MIN_CLUSTERS: u64 = 65_525;
const FAT16_ROOT_ENTRIES: u64 = 512;

#[derive(Debug, thiserror::Error)]
pub enum FatError {
    #[error("{path} is {size} bytes: FAT32 holds files up to 4 GiB - 1 byte ({max} bytes); \
             use a smaller file (splitting is not supported)", max = MAX_FILE_SIZE)]
    FileTooLarge { path: String, size: u64 },
    #[error("FAT name {0:?} is not valid")]
    BadName(String),
    #[error("{0:?} is both a file and a directory")]
    FileAndDirectory(String),
    #[error("{0:?} differs from another name only in case, which FAT does not tell apart")]
    CaseClash(String),
    #[error("the files need more than FAT32 can address")]
    TooLarge,
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
    /// FAT16: the small system partition image inside an ISO.
    Fat16,
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
    /// Sectors before the volume on its disk (the partition's start), for the BPB.
    pub hidden_sectors: u32,
    /// `/`-separated paths and contents.
    pub files: Vec<(String, Vec<u8>)>,
}

#[derive(Debug, Default)]
struct Dir {
    /// Name as given, to directory or file index.
    entries: BTreeMap<String, Node>,
    first_cluster: u32,
    clusters: u32,
}

#[derive(Debug)]
enum Node {
    Dir(Dir),
    File { index: usize, first_cluster: u32 },
}

struct Geometry {
    kind: FatKind,
    total_sectors: u64,
    sectors_per_cluster: u64,
    reserved: u64,
    fat_sectors: u64,
    root_dir_sectors: u64,
    clusters: u64,
}

impl Geometry {
    fn data_start(&self) -> u64 {
        self.reserved + 2 * self.fat_sectors + self.root_dir_sectors
    }
    fn cluster_bytes(&self) -> u64 {
        self.sectors_per_cluster * SECTOR
    }
    fn cluster_offset(&self, cluster: u32) -> usize {
        ((self.data_start() + (u64::from(cluster) - 2) * self.sectors_per_cluster) * SECTOR)
            as usize
    }

    /// Sizes the FAT for `total_sectors`, repeating until the FAT size and cluster count agree.
    fn new(kind: FatKind, total_sectors: u64, sectors_per_cluster: u64) -> Geometry {
        let (reserved, root_dir_sectors, entry_bytes) = match kind {
            FatKind::Fat16 => (4, FAT16_ROOT_ENTRIES * 32 / SECTOR, 2),
            FatKind::Fat32 => (32, 0, 4),
        };
        let mut fat_sectors = 1;
        loop {
            let data = total_sectors - reserved - 2 * fat_sectors - root_dir_sectors;
            let clusters = data / sectors_per_cluster;
            let need = ((clusters + 2) * entry_bytes).div_ceil(SECTOR);
            if need <= fat_sectors {
                return Geometry {
                    kind,
                    total_sectors,
                    sectors_per_cluster,
                    reserved,
                    fat_sectors,
                    root_dir_sectors,
                    clusters,
                };
            }
            fat_sectors = need;
        }
    }
}

/// DOS date and time (FAT dates start in 1980; earlier timestamps become 1980-01-01).
fn dos_date_time(t: &Timestamp) -> (u16, u16) {
    if t.year < 1980 {
        return ((1 << 5) | 1, 0);
    }
    let date = ((t.year.min(2107) - 1980) << 9) | (u16::from(t.month) << 5) | u16::from(t.day);
    let time = (u16::from(t.hour) << 11) | (u16::from(t.minute) << 5) | (u16::from(t.second) / 2);
    (date, time)
}

const SFN_SPECIAL: &str = "!#$%&'()-@^_`{}~";

fn sfn_char_ok(c: char) -> bool {
    c.is_ascii_alphanumeric() || SFN_SPECIAL.contains(c)
}

/// An 8.3 name stored as is, with the case flags of byte 12 (0x08 lower-case base, 0x10
/// lower-case extension), when `name` fits; otherwise `None` and a long name is needed.
fn plain_short_name(name: &str) -> Option<([u8; 11], u8)> {
    let (base, ext) = name.rsplit_once('.').unwrap_or((name, ""));
    if base.is_empty()
        || base.len() > 8
        || ext.len() > 3
        || !base.chars().chain(ext.chars()).all(sfn_char_ok)
    {
        return None;
    }
    let case = |s: &str, flag: u8| {
        let lower = s.chars().any(|c| c.is_ascii_lowercase());
        let upper = s.chars().any(|c| c.is_ascii_uppercase());
        match (lower, upper) {
            (true, true) => None,
            (true, false) => Some(flag),
            _ => Some(0),
        }
    };
    let flags = case(base, 0x08)? | case(ext, 0x10)?;
    let mut sfn = [b' '; 11];
    for (d, c) in sfn.iter_mut().zip(base.bytes()) {
        *d = c.to_ascii_uppercase();
    }
    for (d, c) in sfn[8..].iter_mut().zip(ext.bytes()) {
        *d = c.to_ascii_uppercase();
    }
    Some((sfn, flags))
}

/// `BASIS~N.EXT` for a long name, unique among `taken`.
fn generated_short_name(name: &str, taken: &[[u8; 11]]) -> [u8; 11] {
    let clean = |s: &str| -> Vec<u8> {
        s.chars()
            .filter(|c| *c != ' ' && *c != '.')
            .map(|c| {
                if sfn_char_ok(c) {
                    c.to_ascii_uppercase() as u8
                } else {
                    b'_'
                }
            })
            .collect()
    };
    let (base, ext) = match name.rsplit_once('.') {
        Some((b, e)) if !b.is_empty() => (clean(b), clean(e)),
        _ => (clean(name), Vec::new()),
    };
    for n in 1u32.. {
        let tail = format!("~{n}");
        let keep = 8 - tail.len();
        let mut sfn = [b' '; 11];
        let stem: Vec<u8> = base
            .iter()
            .copied()
            .take(keep)
            .chain(tail.bytes())
            .collect();
        sfn[..stem.len()].copy_from_slice(&stem);
        for (d, c) in sfn[8..].iter_mut().zip(ext.iter().take(3)) {
            *d = *c;
        }
        if !taken.contains(&sfn) {
            return sfn;
        }
    }
    unreachable!("an unused ~N suffix exists")
}

/// VFAT checksum of a short name, stored in each of its long-name entries.
pub fn lfn_checksum(sfn: &[u8; 11]) -> u8 {
    sfn.iter().fold(0u8, |s, &b| {
        ((s & 1) << 7).wrapping_add(s >> 1).wrapping_add(b)
    })
}

/// Long-name entries for `name`, in on-disk order (last part first).
fn lfn_entries(name: &str, sfn: &[u8; 11]) -> Vec<[u8; 32]> {
    let mut units: Vec<u16> = name.encode_utf16().collect();
    if units.len() % 13 != 0 {
        units.push(0);
        while units.len() % 13 != 0 {
            units.push(0xFFFF);
        }
    }
    let sum = lfn_checksum(sfn);
    let parts = units.len() / 13;
    (0..parts)
        .rev()
        .map(|i| {
            let mut e = [0u8; 32];
            e[0] = (i as u8 + 1) | if i + 1 == parts { 0x40 } else { 0 };
            e[11] = 0x0F;
            e[13] = sum;
            let chunk = &units[i * 13..i * 13 + 13];
            let slots = (1..11)
                .step_by(2)
                .chain((14..26).step_by(2))
                .chain((28..32).step_by(2));
            for (off, u) in slots.zip(chunk) {
                e[off..off + 2].copy_from_slice(&u.to_le_bytes());
            }
            e
        })
        .collect()
}

fn short_entry(
    sfn: &[u8; 11],
    attr: u8,
    case: u8,
    cluster: u32,
    size: u32,
    t: (u16, u16),
) -> [u8; 32] {
    let mut e = [0u8; 32];
    e[..11].copy_from_slice(sfn);
    e[11] = attr;
    e[12] = case;
    e[14..16].copy_from_slice(&t.1.to_le_bytes());
    e[16..18].copy_from_slice(&t.0.to_le_bytes());
    e[18..20].copy_from_slice(&t.0.to_le_bytes());
    e[20..22].copy_from_slice(&((cluster >> 16) as u16).to_le_bytes());
    e[22..24].copy_from_slice(&t.1.to_le_bytes());
    e[24..26].copy_from_slice(&t.0.to_le_bytes());
    e[26..28].copy_from_slice(&(cluster as u16).to_le_bytes());
    e[28..32].copy_from_slice(&size.to_le_bytes());
    e
}

const ATTR_DIRECTORY: u8 = 0x10;
const ATTR_ARCHIVE: u8 = 0x20;
const ATTR_VOLUME_ID: u8 = 0x08;

fn label_bytes(label: &str) -> [u8; 11] {
    let mut l = [b' '; 11];
    for (d, s) in l.iter_mut().zip(label.to_ascii_uppercase().bytes()) {
        *d = s;
    }
    l
}

fn build_tree(files: &[(String, Vec<u8>)]) -> Result<Dir, FatError> {
    let mut root = Dir::default();
    for (index, (path, data)) in files.iter().enumerate() {
        check_file_size(path, data.len() as u64)?;
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let Some((name, dirs)) = parts.split_last() else {
            return Err(FatError::BadName(path.clone()));
        };
        let mut d = &mut root;
        for comp in dirs {
            if d.entries
                .keys()
                .any(|k| k != comp && k.eq_ignore_ascii_case(comp))
            {
                return Err(FatError::CaseClash(path.clone()));
            }
            let node = d
                .entries
                .entry(comp.to_string())
                .or_insert_with(|| Node::Dir(Dir::default()));
            d = match node {
                Node::Dir(x) => x,
                Node::File { .. } => return Err(FatError::FileAndDirectory(path.clone())),
            };
        }
        if name
            .chars()
            .any(|c| c.is_control() || "\"*/:<>?\\|".contains(c))
            || name.len() > 255
        {
            return Err(FatError::BadName(path.clone()));
        }
        if d.entries
            .keys()
            .any(|k| k != name && k.eq_ignore_ascii_case(name))
        {
            return Err(FatError::CaseClash(path.clone()));
        }
        if d.entries
            .insert(
                name.to_string(),
                Node::File {
                    index,
                    first_cluster: 0,
                },
            )
            .is_some()
        {
            return Err(FatError::FileAndDirectory(path.clone()));
        }
    }
    Ok(root)
}

/// The directory's 32-byte entries (without `.` and `..`), with clusters already assigned.
fn dir_entries(d: &Dir, files: &[(String, Vec<u8>)], t: (u16, u16)) -> Vec<[u8; 32]> {
    let mut out = Vec::new();
    let mut taken: Vec<[u8; 11]> = Vec::new();
    for (name, node) in &d.entries {
        let (attr, cluster, size) = match node {
            Node::Dir(sub) => (ATTR_DIRECTORY, sub.first_cluster, 0),
            Node::File {
                index,
                first_cluster,
            } => (ATTR_ARCHIVE, *first_cluster, files[*index].1.len() as u32),
        };
        let (sfn, case, lfn) = match plain_short_name(name).filter(|(s, _)| !taken.contains(s)) {
            Some((s, c)) => (s, c, Vec::new()),
            None => {
                let s = generated_short_name(name, &taken);
                (s, 0, lfn_entries(name, &s))
            }
        };
        taken.push(sfn);
        out.extend(lfn);
        out.push(short_entry(&sfn, attr, case, cluster, size, t));
    }
    out
}

fn entry_count(d: &Dir, files: &[(String, Vec<u8>)]) -> u64 {
    dir_entries(d, files, (0, 0)).len() as u64
}

/// Chooses the volume size and cluster size: room for every file's clusters, the
/// directories and 1 MiB spare, with a cluster count inside the FAT type's range.
fn choose_geometry(
    kind: FatKind,
    root: &Dir,
    files: &[(String, Vec<u8>)],
) -> Result<Geometry, FatError> {
    fn dirs(d: &Dir, files: &[(String, Vec<u8>)], out: &mut Vec<u64>) {
        out.push(entry_count(d, files) + 2);
        for n in d.entries.values() {
            if let Node::Dir(s) = n {
                dirs(s, files, out);
            }
        }
    }
    let mut dir_sizes = Vec::new();
    dirs(root, files, &mut dir_sizes);
    for spc in [1u64, 2, 4, 8, 16, 32, 64] {
        let cb = spc * SECTOR;
        let need: u64 = files
            .iter()
            .map(|(_, d)| (d.len() as u64).div_ceil(cb).max(1))
            .sum::<u64>()
            + dir_sizes.iter().map(|e| (e * 32).div_ceil(cb)).sum::<u64>();
        let min_clusters = match kind {
            FatKind::Fat16 => FAT16_MIN_CLUSTERS + 16,
            FatKind::Fat32 => FAT32_MIN_CLUSTERS + 16,
        };
        let clusters = (need + (1 << 20) / cb).max(min_clusters);
        if kind == FatKind::Fat16 && clusters >= FAT32_MIN_CLUSTERS - 16 {
            continue;
        }
        if kind == FatKind::Fat32 && clusters >= 0x0FFF_FFF0 {
            return Err(FatError::TooLarge);
        }
        // Round the volume to whole MiB; the geometry then gives the exact cluster count.
        let entry = if kind == FatKind::Fat16 { 2 } else { 4 };
        let overhead = 64 + 2 * ((clusters + 2) * entry).div_ceil(SECTOR) + 32;
        let total = ((clusters * spc + overhead) * SECTOR).div_ceil(1 << 20) * (1 << 20) / SECTOR;
        let g = Geometry::new(kind, total, spc);
        let ok = match kind {
            FatKind::Fat16 => (FAT16_MIN_CLUSTERS..FAT32_MIN_CLUSTERS).contains(&g.clusters),
            FatKind::Fat32 => g.clusters >= FAT32_MIN_CLUSTERS,
        };
        if ok && g.clusters >= need {
            return Ok(g);
        }
    }
    Err(FatError::TooLarge)
}

/// Gives each directory its clusters; the FAT16 root lives in its fixed region instead.
fn assign_clusters(
    d: &mut Dir,
    files: &[(String, Vec<u8>)],
    next: &mut u32,
    cluster_bytes: u64,
    is_root: bool,
    fat32: bool,
) {
    if !is_root || fat32 {
        // The root holds the volume label entry; other directories hold "." and "..".
        let entries = entry_count(d, files) + if is_root { 1 } else { 2 };
        d.clusters = ((entries * 32).div_ceil(cluster_bytes)).max(1) as u32;
        d.first_cluster = *next;
        *next += d.clusters;
    }
    for node in d.entries.values_mut() {
        if let Node::Dir(sub) = node {
            assign_clusters(sub, files, next, cluster_bytes, false, fat32);
        }
    }
}

fn assign_file_clusters(
    d: &mut Dir,
    files: &[(String, Vec<u8>)],
    next: &mut u32,
    cluster_bytes: u64,
) {
    for node in d.entries.values_mut() {
        match node {
            Node::Dir(sub) => assign_file_clusters(sub, files, next, cluster_bytes),
            Node::File {
                index,
                first_cluster,
            } => {
                let len = files[*index].1.len() as u64;
                if len > 0 {
                    *first_cluster = *next;
                    *next += len.div_ceil(cluster_bytes) as u32;
                }
            }
        }
    }
}

fn boot_sector(g: &Geometry, spec: &FatSpec) -> [u8; 512] {
    let mut b = [0u8; 512];
    let fat32 = g.kind == FatKind::Fat32;
    b[0..3].copy_from_slice(if fat32 {
        &[0xEB, 0x58, 0x90]
    } else {
        &[0xEB, 0x3C, 0x90]
    });
    b[3..11].copy_from_slice(b"NETDEPLY");
    b[11..13].copy_from_slice(&(SECTOR as u16).to_le_bytes());
    b[13] = g.sectors_per_cluster as u8;
    b[14..16].copy_from_slice(&(g.reserved as u16).to_le_bytes());
    b[16] = 2;
    if !fat32 {
        b[17..19].copy_from_slice(&(FAT16_ROOT_ENTRIES as u16).to_le_bytes());
    }
    if g.total_sectors < 0x10000 {
        b[19..21].copy_from_slice(&(g.total_sectors as u16).to_le_bytes());
    } else {
        b[32..36].copy_from_slice(&(g.total_sectors as u32).to_le_bytes());
    }
    b[21] = 0xF8;
    b[24..26].copy_from_slice(&63u16.to_le_bytes());
    b[26..28].copy_from_slice(&255u16.to_le_bytes());
    b[28..32].copy_from_slice(&spec.hidden_sectors.to_le_bytes());
    let ext = if fat32 {
        b[36..40].copy_from_slice(&(g.fat_sectors as u32).to_le_bytes());
        b[44..48].copy_from_slice(&2u32.to_le_bytes());
        b[48..50].copy_from_slice(&1u16.to_le_bytes());
        b[50..52].copy_from_slice(&6u16.to_le_bytes());
        64
    } else {
        b[22..24].copy_from_slice(&(g.fat_sectors as u16).to_le_bytes());
        36
    };
    b[ext] = 0x80;
    b[ext + 2] = 0x29;
    b[ext + 3..ext + 7].copy_from_slice(&spec.volume_id.to_le_bytes());
    b[ext + 7..ext + 18].copy_from_slice(&label_bytes(&spec.label));
    b[ext + 18..ext + 26].copy_from_slice(if fat32 { b"FAT32   " } else { b"FAT16   " });
    b[510] = 0x55;
    b[511] = 0xAA;
    b
}

/// Writes the image. Same spec, same bytes.
pub fn write_image(spec: &FatSpec) -> Result<Vec<u8>, FatError> {
    let files = &spec.files;
    let mut root = build_tree(files)?;
    let g = choose_geometry(spec.kind, &root, files)?;
    let cb = g.cluster_bytes();
    let fat32 = g.kind == FatKind::Fat32;
    let mut next = 2u32;
    assign_clusters(&mut root, files, &mut next, cb, true, fat32);
    assign_file_clusters(&mut root, files, &mut next, cb);
    let used = u64::from(next - 2);
    debug_assert!(used <= g.clusters);

    let mut img = vec![0u8; (g.total_sectors * SECTOR) as usize];
    let boot = boot_sector(&g, spec);
    img[..512].copy_from_slice(&boot);
    if fat32 {
        let mut info = [0u8; 512];
        info[0..4].copy_from_slice(&0x4161_5252u32.to_le_bytes());
        info[484..488].copy_from_slice(&0x6141_7272u32.to_le_bytes());
        info[488..492].copy_from_slice(&((g.clusters - used) as u32).to_le_bytes());
        info[492..496].copy_from_slice(&next.to_le_bytes());
        info[508..512].copy_from_slice(&0xAA55_0000u32.to_le_bytes());
        img[512..1024].copy_from_slice(&info);
        img[6 * 512..7 * 512].copy_from_slice(&boot);
        img[7 * 512..8 * 512].copy_from_slice(&info);
    }

    // FAT: media and end-of-chain markers, then one contiguous chain per directory and file.
    let mut fat: Vec<u32> = vec![0; (g.clusters + 2) as usize];
    fat[0] = if fat32 { 0x0FFF_FFF8 } else { 0xFFF8 };
    fat[1] = if fat32 { 0x0FFF_FFFF } else { 0xFFFF };
    let eoc = if fat32 { 0x0FFF_FFFF } else { 0xFFFF };
    let mut chain = |first: u32, count: u32| {
        for c in first..first + count {
            fat[c as usize] = if c + 1 == first + count { eoc } else { c + 1 };
        }
    };
    let t = dos_date_time(&spec.timestamp);
    let mut stack: Vec<(&Dir, u32, bool)> = vec![(&root, 0, true)];
    let mut dir_writes: Vec<(usize, Vec<[u8; 32]>)> = Vec::new();
    while let Some((d, parent_cluster, is_root)) = stack.pop() {
        let mut entries = Vec::new();
        if is_root {
            entries.push(short_entry(
                &label_bytes(&spec.label),
                ATTR_VOLUME_ID,
                0,
                0,
                0,
                t,
            ));
        } else {
            entries.push(short_entry(
                b".          ",
                ATTR_DIRECTORY,
                0,
                d.first_cluster,
                0,
                t,
            ));
            // ".." of a first-level directory is cluster 0, even when the root is in cluster 2.
            entries.push(short_entry(
                b"..         ",
                ATTR_DIRECTORY,
                0,
                parent_cluster,
                0,
                t,
            ));
        }
        entries.extend(dir_entries(d, files, t));
        let offset = if is_root && !fat32 {
            ((g.reserved + 2 * g.fat_sectors) * SECTOR) as usize
        } else {
            chain(d.first_cluster, d.clusters);
            g.cluster_offset(d.first_cluster)
        };
        dir_writes.push((offset, entries));
        for node in d.entries.values() {
            match node {
                Node::Dir(sub) => {
                    stack.push((sub, if is_root { 0 } else { d.first_cluster }, false))
                }
                Node::File {
                    index,
                    first_cluster,
                } => {
                    let data = &files[*index].1;
                    if !data.is_empty() {
                        chain(*first_cluster, data.len().div_ceil(cb as usize) as u32);
                        let off = g.cluster_offset(*first_cluster);
                        img[off..off + data.len()].copy_from_slice(data);
                    }
                }
            }
        }
    }
    for (offset, entries) in dir_writes {
        for (i, e) in entries.iter().enumerate() {
            img[offset + 32 * i..offset + 32 * (i + 1)].copy_from_slice(e);
        }
    }
    let fat_bytes: Vec<u8> = if fat32 {
        fat.iter().flat_map(|v| v.to_le_bytes()).collect()
    } else {
        fat.iter().flat_map(|v| (*v as u16).to_le_bytes()).collect()
    };
    for copy in 0..2 {
        let off = ((g.reserved + copy * g.fat_sectors) * SECTOR) as usize;
        img[off..off + fat_bytes.len()].copy_from_slice(&fat_bytes);
    }
    Ok(img)
}

#[cfg(test)]
mod tests {
    use std::io::{Cursor, Read};

    use super::*;

    fn spec(kind: FatKind) -> FatSpec {
        FatSpec {
            label: "NETDEPLOY".into(),
            volume_id: 0x1234_5678,
            kind,
            timestamp: Timestamp::from_unix(1_700_000_000),
            hidden_sectors: 0,
            files: vec![
                ("EFI/BOOT/BOOTX64.EFI".into(), vec![0x4D; 10_000]),
                (
                    "loader/entries/netdeploy.conf".into(),
                    b"title netdeploy\n".to_vec(),
                ),
                ("loader/loader.conf".into(), b"timeout 0\n".to_vec()),
                ("netdeploy/variables".into(), Vec::new()),
            ],
        }
    }

    #[test]
    fn files_read_back_through_an_independent_fat_reader() {
        for kind in [FatKind::Fat16, FatKind::Fat32] {
            let img = write_image(&spec(kind)).unwrap();
            let fs = fatfs::FileSystem::new(Cursor::new(img), fatfs::FsOptions::new()).unwrap();
            let want = if kind == FatKind::Fat32 {
                fatfs::FatType::Fat32
            } else {
                fatfs::FatType::Fat16
            };
            assert_eq!(fs.fat_type(), want);
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
            let names: Vec<String> = fs
                .root_dir()
                .open_dir("loader")
                .unwrap()
                .iter()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(names, [".", "..", "entries", "loader.conf"]);
        }
    }

    #[test]
    fn same_spec_gives_same_bytes() {
        assert_eq!(
            write_image(&spec(FatKind::Fat16)).unwrap(),
            write_image(&spec(FatKind::Fat16)).unwrap()
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
    fn short_names_keep_case_flags_and_long_names_get_vfat_entries() {
        assert_eq!(
            plain_short_name("initrd.img"),
            Some((*b"INITRD  IMG", 0x18))
        );
        assert_eq!(plain_short_name("BOOTX64.EFI"), Some((*b"BOOTX64 EFI", 0)));
        assert_eq!(plain_short_name("netdeploy.conf"), None);
        assert_eq!(plain_short_name("Mixed"), None);
        let sfn = generated_short_name("netdeploy.conf", &[]);
        assert_eq!(&sfn, b"NETDEP~1CON");
        assert_eq!(
            &generated_short_name("netdeploy.conf", &[sfn]),
            b"NETDEP~2CON"
        );
        let lfn = lfn_entries("netdeploy.conf", &sfn);
        assert_eq!(lfn.len(), 2);
        assert_eq!(lfn[0][0], 0x42);
        assert_eq!(lfn[1][0], 0x01);
        assert!(lfn
            .iter()
            .all(|e| e[11] == 0x0F && e[13] == lfn_checksum(&sfn)));
    }

    #[test]
    fn names_equal_but_for_case_are_refused() {
        let files = vec![
            ("EFI/a".to_string(), vec![1]),
            ("efi/b".to_string(), vec![2]),
        ];
        assert!(matches!(build_tree(&files), Err(FatError::CaseClash(p)) if p == "efi/b"));
    }

    #[test]
    fn cluster_counts_stay_inside_the_fat_type_range() {
        let g = choose_geometry(FatKind::Fat32, &Dir::default(), &[]).unwrap();
        assert!(g.clusters >= FAT32_MIN_CLUSTERS);
        let g = choose_geometry(FatKind::Fat16, &Dir::default(), &[]).unwrap();
        assert!((FAT16_MIN_CLUSTERS..FAT32_MIN_CLUSTERS).contains(&g.clusters));
        let big = vec![("a".to_string(), vec![0u8; 40 << 20])];
        let g = choose_geometry(FatKind::Fat16, &build_tree(&big).unwrap(), &big).unwrap();
        assert!(g.clusters < FAT32_MIN_CLUSTERS && g.clusters * g.cluster_bytes() >= 40 << 20);
    }

    fn name_strategy() -> impl proptest::strategy::Strategy<Value = String> {
        proptest::prop_oneof![
            "[a-z]{1,8}",
            "[A-Z0-9]{1,8}\\.[A-Z]{1,3}",
            "[a-z][a-z0-9 _.-]{8,40}",
            "[A-Za-z]{2,12}\\.[a-z]{4}",
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
        #[test]
        fn any_file_tree_reads_back_unchanged(
            entries in proptest::collection::btree_map(
                proptest::collection::vec(name_strategy(), 1..4),
                0usize..9000,
                1..40,
            ),
            fat32 in proptest::bool::ANY,
        ) {
            // Drop paths whose directory part is also a file, and names FAT treats as equal.
            let mut files: Vec<(String, Vec<u8>)> = Vec::new();
            let mut seen = std::collections::BTreeSet::new();
            for (parts, len) in &entries {
                let path = parts.join("/");
                let lower = path.to_lowercase();
                let clash = seen.iter().any(|p: &String| {
                    lower.starts_with(&format!("{p}/")) || p.starts_with(&format!("{lower}/")) || *p == lower
                });
                if !clash && !parts.iter().any(|p| p.ends_with('.') || p.starts_with(' ') || p.ends_with(' ')) {
                    seen.insert(lower);
                    files.push((path, (0..*len).map(|i| (i % 251) as u8).collect()));
                }
            }
            let kind = if fat32 { FatKind::Fat32 } else { FatKind::Fat16 };
            let img = write_image(&FatSpec { files: files.clone(), kind, ..spec(kind) }).unwrap();
            let fs = fatfs::FileSystem::new(Cursor::new(img), fatfs::FsOptions::new()).unwrap();
            for (path, data) in &files {
                let mut buf = Vec::new();
                fs.root_dir().open_file(path).unwrap().read_to_end(&mut buf).unwrap();
                proptest::prop_assert_eq!(&buf, data, "{}", path);
            }
        }
    }
}
