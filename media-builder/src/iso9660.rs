//! An ISO 9660 (ECMA-119) writer with an El Torito boot catalog.
//!
//! The image holds a primary volume descriptor, an optional El Torito boot record, the
//! L and M path tables, one extent per directory and one per file. Names follow
//! interchange level 2 (upper-case d-characters, up to 30 characters, `NAME.EXT;1` for
//! files); Linux's isofs shows them in lower case and without the `;1`, and ISOLINUX
//! compares names case-insensitively. Every date is the one build timestamp.

use std::collections::BTreeMap;

use crate::timestamp::Timestamp;

/// Logical sector size of the image.
pub const SECTOR: usize = 2048;
/// Sector of the primary volume descriptor (after the 32 KiB system area).
pub const PVD_LBA: u32 = 16;

#[derive(Debug, thiserror::Error)]
pub enum IsoError {
    #[error("ISO 9660 name {0:?} is not valid: use A-Z, 0-9 and _, at most 30 characters, one dot in a file name")]
    BadName(String),
    #[error("{0:?} is both a file and a directory")]
    FileAndDirectory(String),
    #[error("boot file {0:?} is not among the image's files")]
    MissingBootFile(String),
    #[error("the image is larger than ISO 9660 can address")]
    TooLarge,
}

/// The El Torito entries: a BIOS no-emulation loader and an EFI System Partition image.
#[derive(Debug, Clone, Default)]
pub struct BootSpec {
    /// Path of a BIOS no-emulation boot file (ISOLINUX, or Windows' `etfsboot.com`).
    pub bios: Option<String>,
    /// Fill in the BIOS boot file's boot info table (ISOLINUX has one; `etfsboot.com` has
    /// none, and its bytes there are code).
    pub bios_info_table: bool,
    /// Path of a FAT image holding `EFI/BOOT/BOOTX64.EFI`.
    pub efi: Option<String>,
}

/// Files to put on the image, by `/`-separated path; directories are implied.
#[derive(Debug, Clone)]
pub struct IsoSpec {
    pub volume_id: String,
    pub files: BTreeMap<String, Vec<u8>>,
    pub boot: BootSpec,
    pub timestamp: Timestamp,
}

/// Where a file landed in the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub lba: u32,
    pub len: u32,
}

/// A written image and the extents of its files.
#[derive(Debug, Clone)]
pub struct IsoImage {
    pub bytes: Vec<u8>,
    pub extents: BTreeMap<String, Extent>,
}

#[derive(Debug, Default)]
struct Dir {
    dirs: BTreeMap<String, Dir>,
    files: BTreeMap<String, String>,
    lba: u32,
    size: u32,
    number: u16,
    parent: u16,
}

fn valid_component(name: &str, is_file: bool) -> bool {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_' || c == '.');
    let dots = name.matches('.').count();
    ok_chars
        && !name.is_empty()
        && name.len() <= 30
        && (if is_file { dots <= 1 } else { dots == 0 })
}

/// The ISO 9660 name for a path component: upper-cased, checked, and `NAME.EXT;1` for files.
pub fn iso_name(component: &str, is_file: bool) -> Result<String, IsoError> {
    let upper = component.to_ascii_uppercase();
    if !valid_component(&upper, is_file) {
        return Err(IsoError::BadName(component.to_string()));
    }
    Ok(if is_file {
        if upper.contains('.') {
            format!("{upper};1")
        } else {
            format!("{upper}.;1")
        }
    } else {
        upper
    })
}

fn both_u32(v: u32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&v.to_le_bytes());
    b[4..].copy_from_slice(&v.to_be_bytes());
    b
}

fn both_u16(v: u16) -> [u8; 4] {
    let mut b = [0u8; 4];
    b[..2].copy_from_slice(&v.to_le_bytes());
    b[2..].copy_from_slice(&v.to_be_bytes());
    b
}

fn record_date(t: &Timestamp) -> [u8; 7] {
    [
        (t.year.saturating_sub(1900)).min(255) as u8,
        t.month,
        t.day,
        t.hour,
        t.minute,
        t.second,
        0,
    ]
}

fn volume_date(t: &Timestamp) -> [u8; 17] {
    let s = format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}00",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    );
    let mut b = [0u8; 17];
    b[..16].copy_from_slice(s.as_bytes());
    b
}

/// One directory record (ECMA-119 9.1); `id` is the raw identifier (0x00 for `.`, 0x01 for `..`).
pub fn directory_record(id: &[u8], lba: u32, len: u32, is_dir: bool, t: &Timestamp) -> Vec<u8> {
    let mut r = vec![0u8; 33];
    r[2..10].copy_from_slice(&both_u32(lba));
    r[10..18].copy_from_slice(&both_u32(len));
    r[18..25].copy_from_slice(&record_date(t));
    r[25] = if is_dir { 0x02 } else { 0 };
    r[28..32].copy_from_slice(&both_u16(1));
    r[32] = id.len() as u8;
    r.extend_from_slice(id);
    if r.len() % 2 == 1 {
        r.push(0);
    }
    r[0] = r.len() as u8;
    r
}

fn sectors(bytes: usize) -> u32 {
    bytes.div_ceil(SECTOR) as u32
}

/// Size of a directory extent: records never cross a sector boundary (ECMA-119 6.8.1.1).
fn dir_extent_size(record_lens: &[usize]) -> u32 {
    let mut used = 0usize;
    for &l in record_lens {
        let off = used % SECTOR;
        if off + l > SECTOR {
            used += SECTOR - off;
        }
        used += l;
    }
    (used.div_ceil(SECTOR) * SECTOR) as u32
}

fn dir_record_lens(d: &Dir) -> Vec<usize> {
    let mut lens = vec![34, 34];
    for name in d.dirs.keys() {
        lens.push(directory_record(name.as_bytes(), 0, 0, true, &Timestamp::from_unix(0)).len());
    }
    for name in d.files.keys() {
        lens.push(directory_record(name.as_bytes(), 0, 0, false, &Timestamp::from_unix(0)).len());
    }
    lens
}

/// Directories in path-table order: breadth first, children sorted (ECMA-119 9.4 / 6.9.1).
fn bfs_paths(root: &Dir) -> Vec<Vec<String>> {
    let mut order = vec![Vec::new()];
    let mut i = 0;
    while i < order.len() {
        let path = order[i].clone();
        let d = lookup(root, &path);
        for name in d.dirs.keys() {
            let mut p = path.clone();
            p.push(name.clone());
            order.push(p);
        }
        i += 1;
    }
    order
}

fn lookup<'a>(root: &'a Dir, path: &[String]) -> &'a Dir {
    path.iter().fold(root, |d, n| &d.dirs[n])
}

fn lookup_mut<'a>(root: &'a mut Dir, path: &[String]) -> &'a mut Dir {
    path.iter()
        .fold(root, |d, n| d.dirs.get_mut(n).expect("directory exists"))
}

fn build_tree(files: &BTreeMap<String, Vec<u8>>) -> Result<Dir, IsoError> {
    let mut root = Dir::default();
    for path in files.keys() {
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let Some((file, dirs)) = parts.split_last() else {
            return Err(IsoError::BadName(path.clone()));
        };
        let mut d = &mut root;
        for comp in dirs {
            let n = iso_name(comp, false)?;
            if d.files
                .contains_key(&iso_name(comp, true).unwrap_or_default())
            {
                return Err(IsoError::FileAndDirectory(path.clone()));
            }
            d = d.dirs.entry(n).or_default();
        }
        let n = iso_name(file, true)?;
        if d.dirs.contains_key(&file.to_ascii_uppercase()) {
            return Err(IsoError::FileAndDirectory(path.clone()));
        }
        d.files.insert(n, path.clone());
    }
    Ok(root)
}

fn path_table(root: &Dir, order: &[Vec<String>], big_endian: bool) -> Vec<u8> {
    let mut t = Vec::new();
    for path in order {
        let d = lookup(root, path);
        let id: &[u8] = match path.last() {
            Some(n) => n.as_bytes(),
            None => &[0],
        };
        t.push(id.len() as u8);
        t.push(0);
        if big_endian {
            t.extend_from_slice(&d.lba.to_be_bytes());
            t.extend_from_slice(&d.parent.to_be_bytes());
        } else {
            t.extend_from_slice(&d.lba.to_le_bytes());
            t.extend_from_slice(&d.parent.to_le_bytes());
        }
        t.extend_from_slice(id);
        if id.len() % 2 == 1 {
            t.push(0);
        }
    }
    t
}

/// The catalog's validation entry for the default entry's `platform`: 0 (x86 BIOS), or 0xEF
/// (EFI) when an image has no BIOS loader.
pub fn validation_entry(platform: u8) -> [u8; 32] {
    let mut e = [0u8; 32];
    e[0] = 1;
    e[1] = platform;
    e[4..13].copy_from_slice(b"NETDEPLOY");
    e[30] = 0x55;
    e[31] = 0xAA;
    let sum = e.chunks(2).fold(0u16, |s, w| {
        s.wrapping_add(u16::from_le_bytes([w[0], w[1]]))
    });
    e[28..30].copy_from_slice(&0u16.wrapping_sub(sum).to_le_bytes());
    e
}

fn boot_entry(lba: u32, sector_count: u16) -> [u8; 32] {
    let mut e = [0u8; 32];
    e[0] = 0x88; // bootable
    e[1] = 0; // no emulation
    e[6..8].copy_from_slice(&sector_count.to_le_bytes());
    e[8..12].copy_from_slice(&lba.to_le_bytes());
    e
}

/// Fills the ISOLINUX boot info table (mkisofs `-boot-info-table`): at offset 8 the PVD
/// sector, the file's sector, its length and the 32-bit sum of its words from offset 64.
pub fn patch_boot_info_table(file: &mut [u8], file_lba: u32) {
    if file.len() < 64 {
        return;
    }
    let sum = file[64..]
        .chunks(4)
        .map(|c| {
            let mut w = [0u8; 4];
            w[..c.len()].copy_from_slice(c);
            u32::from_le_bytes(w)
        })
        .fold(0u32, u32::wrapping_add);
    file[8..12].copy_from_slice(&PVD_LBA.to_le_bytes());
    file[12..16].copy_from_slice(&file_lba.to_le_bytes());
    let len = file.len() as u32;
    file[16..20].copy_from_slice(&len.to_le_bytes());
    file[20..24].copy_from_slice(&sum.to_le_bytes());
    file[24..64].fill(0);
}

fn pad_str(dst: &mut [u8], s: &str) {
    dst.fill(b' ');
    let n = s.len().min(dst.len());
    dst[..n].copy_from_slice(&s.as_bytes()[..n]);
}

fn normalize(path: &str) -> String {
    path.split('/')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("/")
}

/// Lays out and writes the image. Same spec, same bytes.
pub fn write_image(spec: &IsoSpec) -> Result<IsoImage, IsoError> {
    let files: BTreeMap<String, Vec<u8>> = spec
        .files
        .iter()
        .map(|(k, v)| (normalize(k), v.clone()))
        .collect();
    let bios = spec.boot.bios.as_deref().map(normalize);
    let efi = spec.boot.efi.as_deref().map(normalize);
    for p in bios.iter().chain(efi.iter()) {
        if !files.contains_key(p) {
            return Err(IsoError::MissingBootFile(p.clone()));
        }
    }
    let el_torito = bios.is_some() || efi.is_some();
    let t = spec.timestamp;
    let mut root = build_tree(&files)?;

    // Layout: system area, PVD, [boot record], terminator, [catalog], path tables, dirs, files.
    let mut next = PVD_LBA + 1;
    let boot_record_lba = el_torito.then(|| {
        next += 1;
        next - 1
    });
    let terminator_lba = next;
    next += 1;
    let catalog_lba = el_torito.then(|| {
        next += 1;
        next - 1
    });
    let order = bfs_paths(&root);
    for (i, path) in order.iter().enumerate() {
        let parent = match path.split_last() {
            Some((_, parent_path)) => order
                .iter()
                .position(|p| p == parent_path)
                .map_or(1, |x| x as u16 + 1),
            None => 1,
        };
        let d = lookup_mut(&mut root, path);
        d.number = i as u16 + 1;
        d.parent = parent;
    }
    let pt_size = path_table(&root, &order, false).len();
    let l_table_lba = next;
    next += sectors(pt_size);
    let m_table_lba = next;
    next += sectors(pt_size);
    for path in &order {
        let d = lookup_mut(&mut root, path);
        d.size = dir_extent_size(&dir_record_lens(d));
        d.lba = next;
        next += d.size / SECTOR as u32;
    }
    let mut extents = BTreeMap::new();
    for (path, data) in &files {
        let len = u32::try_from(data.len()).map_err(|_| IsoError::TooLarge)?;
        extents.insert(path.clone(), Extent { lba: next, len });
        next = next
            .checked_add(sectors(data.len()))
            .ok_or(IsoError::TooLarge)?;
    }
    let total = next;
    let mut img = vec![0u8; total as usize * SECTOR];
    let at = |lba: u32| lba as usize * SECTOR;

    // Primary volume descriptor (ECMA-119 8.4).
    {
        let p = &mut img[at(PVD_LBA)..at(PVD_LBA + 1)];
        p[0] = 1;
        p[1..6].copy_from_slice(b"CD001");
        p[6] = 1;
        pad_str(&mut p[8..40], "");
        pad_str(&mut p[40..72], &spec.volume_id.to_ascii_uppercase());
        p[80..88].copy_from_slice(&both_u32(total));
        p[120..124].copy_from_slice(&both_u16(1));
        p[124..128].copy_from_slice(&both_u16(1));
        p[128..132].copy_from_slice(&both_u16(SECTOR as u16));
        p[132..140].copy_from_slice(&both_u32(pt_size as u32));
        p[140..144].copy_from_slice(&l_table_lba.to_le_bytes());
        p[148..152].copy_from_slice(&m_table_lba.to_be_bytes());
        p[156..190].copy_from_slice(&directory_record(&[0], root.lba, root.size, true, &t));
        pad_str(&mut p[190..318], "");
        pad_str(&mut p[318..446], "");
        pad_str(&mut p[446..574], "");
        pad_str(&mut p[574..702], "NETDEPLOY-MEDIA");
        pad_str(&mut p[702..813], "");
        p[813..830].copy_from_slice(&volume_date(&t));
        p[830..847].copy_from_slice(&volume_date(&t));
        p[847..863].fill(b'0');
        p[864..881].copy_from_slice(&volume_date(&t));
        p[881] = 1;
    }
    if let (Some(br), Some(cat)) = (boot_record_lba, catalog_lba) {
        // El Torito boot record volume descriptor (El Torito 2.0).
        let b = &mut img[at(br)..at(br + 1)];
        b[1..6].copy_from_slice(b"CD001");
        b[6] = 1;
        b[7..30].copy_from_slice(b"EL TORITO SPECIFICATION");
        b[71..75].copy_from_slice(&cat.to_le_bytes());

        let c = &mut img[at(cat)..at(cat + 1)];
        let platform = if bios.is_some() { 0 } else { 0xEF };
        c[0..32].copy_from_slice(&validation_entry(platform));
        let mut off = 32;
        // The default entry is BIOS; with no BIOS loader it is the EFI image itself.
        let entry_for = |path: &String, is_efi: bool| {
            let e = extents[path];
            // ISOLINUX loads the rest of itself (4 sectors, as mkisofs -boot-load-size 4); a
            // boot file without a boot info table (Windows' etfsboot.com) is loaded whole.
            let count = if is_efi || !spec.boot.bios_info_table {
                e.len.div_ceil(512).min(0xFFFF) as u16
            } else {
                4
            };
            boot_entry(e.lba, count)
        };
        match (&bios, &efi) {
            (Some(b), _) => c[off..off + 32].copy_from_slice(&entry_for(b, false)),
            (None, Some(e)) => c[off..off + 32].copy_from_slice(&entry_for(e, true)),
            (None, None) => {}
        }
        off += 32;
        if let (Some(_), Some(e)) = (&bios, &efi) {
            // Final section header for platform 0xEF (EFI) with one entry.
            c[off] = 0x91;
            c[off + 1] = 0xEF;
            c[off + 2..off + 4].copy_from_slice(&1u16.to_le_bytes());
            off += 32;
            c[off..off + 32].copy_from_slice(&entry_for(e, true));
        }
    }
    {
        let term = &mut img[at(terminator_lba)..at(terminator_lba + 1)];
        term[0] = 255;
        term[1..6].copy_from_slice(b"CD001");
        term[6] = 1;
    }
    let lt = path_table(&root, &order, false);
    img[at(l_table_lba)..at(l_table_lba) + lt.len()].copy_from_slice(&lt);
    let mt = path_table(&root, &order, true);
    img[at(m_table_lba)..at(m_table_lba) + mt.len()].copy_from_slice(&mt);

    for path in &order {
        let d = lookup(&root, path);
        let parent = match path.split_last() {
            Some((_, pp)) => lookup(&root, pp),
            None => &root,
        };
        let mut records = vec![
            directory_record(&[0], d.lba, d.size, true, &t),
            directory_record(&[1], parent.lba, parent.size, true, &t),
        ];
        // Directories and files in one sorted sequence (ECMA-119 9.3).
        let mut entries: Vec<(String, Vec<u8>)> = Vec::new();
        for (name, sub) in &d.dirs {
            entries.push((
                name.clone(),
                directory_record(name.as_bytes(), sub.lba, sub.size, true, &t),
            ));
        }
        for (name, full) in &d.files {
            let e = extents[full];
            entries.push((
                name.clone(),
                directory_record(name.as_bytes(), e.lba, e.len, false, &t),
            ));
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        records.extend(entries.into_iter().map(|(_, r)| r));
        let mut pos = at(d.lba);
        let end = pos + d.size as usize;
        for r in records {
            if pos % SECTOR + r.len() > SECTOR {
                pos += SECTOR - pos % SECTOR;
            }
            debug_assert!(pos + r.len() <= end);
            img[pos..pos + r.len()].copy_from_slice(&r);
            pos += r.len();
        }
    }
    for (path, data) in &files {
        let e = extents[path];
        let dst = &mut img[at(e.lba)..at(e.lba) + data.len()];
        dst.copy_from_slice(data);
        if spec.boot.bios_info_table && bios.as_deref() == Some(path.as_str()) {
            patch_boot_info_table(dst, e.lba);
        }
    }
    Ok(IsoImage {
        bytes: img,
        extents,
    })
}

/// The parts of an image that tests and the hybrid MBR need back: volume id and size,
/// and the boot catalog's entries as (platform, load sector, sector count).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedIso {
    pub volume_id: String,
    pub volume_sectors: u32,
    pub boot_entries: Vec<(u8, u32, u16)>,
}

/// Reads back the primary volume descriptor and the El Torito catalog.
pub fn parse(img: &[u8]) -> Option<ParsedIso> {
    let pvd = img.get(PVD_LBA as usize * SECTOR..(PVD_LBA as usize + 1) * SECTOR)?;
    if pvd[0] != 1 || &pvd[1..6] != b"CD001" {
        return None;
    }
    let volume_id = String::from_utf8_lossy(&pvd[40..72]).trim_end().to_string();
    let volume_sectors = u32::from_le_bytes(pvd[80..84].try_into().ok()?);
    let mut boot_entries = Vec::new();
    let br = img.get(17 * SECTOR..18 * SECTOR)?;
    if br[0] == 0 && &br[7..30] == b"EL TORITO SPECIFICATION" {
        let cat = u32::from_le_bytes(br[71..75].try_into().ok()?) as usize;
        let c = img.get(cat * SECTOR..(cat + 1) * SECTOR)?;
        let mut platform = c[1];
        for e in c[32..].chunks(32) {
            match e[0] {
                0x88 => boot_entries.push((
                    platform,
                    u32::from_le_bytes(e[8..12].try_into().ok()?),
                    u16::from_le_bytes([e[6], e[7]]),
                )),
                0x90 | 0x91 => platform = e[1],
                _ => break,
            }
        }
    }
    Some(ParsedIso {
        volume_id,
        volume_sectors,
        boot_entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> IsoSpec {
        let mut files = BTreeMap::new();
        files.insert("isolinux/isolinux.bin".into(), vec![0xAB; 5000]);
        files.insert("boot/efi.img".into(), vec![0xCD; 4096]);
        files.insert("netdeploy/variables".into(), b"x=1\n".to_vec());
        IsoSpec {
            volume_id: "NETDEPLOY".into(),
            files,
            boot: BootSpec {
                bios: Some("isolinux/isolinux.bin".into()),
                bios_info_table: true,
                efi: Some("boot/efi.img".into()),
            },
            timestamp: Timestamp::from_unix(1_700_000_000),
        }
    }

    #[test]
    fn names_are_upper_case_level_two_with_version() {
        assert_eq!(iso_name("vmlinuz", true).unwrap(), "VMLINUZ.;1");
        assert_eq!(iso_name("initrd.img", true).unwrap(), "INITRD.IMG;1");
        assert_eq!(iso_name("netdeploy", false).unwrap(), "NETDEPLOY");
        assert!(iso_name("a-b", true).is_err());
        assert!(iso_name("a.b.c", true).is_err());
        assert!(iso_name(&"A".repeat(31), true).is_err());
    }

    #[test]
    fn validation_entry_words_sum_to_zero() {
        let e = validation_entry(0xEF);
        assert_eq!(e[1], 0xEF);
        let sum = e.chunks(2).fold(0u16, |s, w| {
            s.wrapping_add(u16::from_le_bytes([w[0], w[1]]))
        });
        assert_eq!(sum, 0);
        assert_eq!(&e[30..], &[0x55, 0xAA]);
    }

    #[test]
    fn directory_records_are_even_and_carry_both_endian_fields() {
        let t = Timestamp::from_unix(0);
        let r = directory_record(b"ABC.;1", 20, 4096, false, &t);
        assert_eq!(r.len() % 2, 0);
        assert_eq!(r[0] as usize, r.len());
        assert_eq!(u32::from_le_bytes(r[2..6].try_into().unwrap()), 20);
        assert_eq!(u32::from_be_bytes(r[6..10].try_into().unwrap()), 20);
        assert_eq!(u32::from_be_bytes(r[14..18].try_into().unwrap()), 4096);
        assert_eq!(directory_record(&[0], 1, 2, true, &t).len(), 34);
    }

    #[test]
    fn catalog_round_trips_bios_then_efi_entry() {
        let img = write_image(&spec()).unwrap();
        let parsed = parse(&img.bytes).unwrap();
        assert_eq!(parsed.volume_id, "NETDEPLOY");
        assert_eq!(parsed.volume_sectors as usize * SECTOR, img.bytes.len());
        let bios = img.extents["isolinux/isolinux.bin"];
        let efi = img.extents["boot/efi.img"];
        assert_eq!(
            parsed.boot_entries,
            vec![(0, bios.lba, 4), (0xEF, efi.lba, 8)]
        );
    }

    #[test]
    fn boot_info_table_is_filled_with_sum_from_offset_64() {
        let img = write_image(&spec()).unwrap();
        let e = img.extents["isolinux/isolinux.bin"];
        let f = &img.bytes[e.lba as usize * SECTOR..][..e.len as usize];
        assert_eq!(u32::from_le_bytes(f[8..12].try_into().unwrap()), PVD_LBA);
        assert_eq!(u32::from_le_bytes(f[12..16].try_into().unwrap()), e.lba);
        assert_eq!(u32::from_le_bytes(f[16..20].try_into().unwrap()), 5000);
        let sum = f[64..].chunks(4).fold(0u32, |s, c| {
            let mut w = [0u8; 4];
            w[..c.len()].copy_from_slice(c);
            s.wrapping_add(u32::from_le_bytes(w))
        });
        assert_eq!(u32::from_le_bytes(f[20..24].try_into().unwrap()), sum);
    }

    #[test]
    fn same_spec_gives_same_bytes_and_timestamp_changes_them() {
        let a = write_image(&spec()).unwrap().bytes;
        assert_eq!(a, write_image(&spec()).unwrap().bytes);
        let mut s = spec();
        s.timestamp = Timestamp::from_unix(1);
        assert_ne!(a, write_image(&s).unwrap().bytes);
    }

    /// Walks directory records from the PVD's root record, as a reader does.
    fn read_back(img: &[u8], path: &str) -> Option<Vec<u8>> {
        let pvd = &img[PVD_LBA as usize * SECTOR..];
        let mut rec = pvd[156..190].to_vec();
        for (i, comp) in path.split('/').enumerate() {
            let last = i == path.split('/').count() - 1;
            let want = iso_name(comp, last).ok()?;
            let lba = u32::from_le_bytes(rec[2..6].try_into().ok()?) as usize;
            let len = u32::from_le_bytes(rec[10..14].try_into().ok()?) as usize;
            let dir = &img[lba * SECTOR..lba * SECTOR + len];
            let mut off = 0;
            let mut found = None;
            while off < dir.len() {
                let l = dir[off] as usize;
                if l == 0 {
                    off = (off / SECTOR + 1) * SECTOR;
                    continue;
                }
                let r = &dir[off..off + l];
                if &r[33..33 + r[32] as usize] == want.as_bytes() {
                    found = Some(r.to_vec());
                }
                off += l;
            }
            rec = found?;
        }
        let lba = u32::from_le_bytes(rec[2..6].try_into().ok()?) as usize;
        let len = u32::from_le_bytes(rec[10..14].try_into().ok()?) as usize;
        Some(img[lba * SECTOR..lba * SECTOR + len].to_vec())
    }

    #[test]
    fn files_read_back_through_directory_records() {
        let mut s = spec();
        for i in 0..60 {
            s.files
                .insert(format!("many/file_{i:02}.txt"), vec![i as u8; i]);
        }
        let img = write_image(&s).unwrap();
        assert_eq!(
            read_back(&img.bytes, "netdeploy/variables").unwrap(),
            b"x=1\n"
        );
        for i in [0usize, 31, 59] {
            assert_eq!(
                read_back(&img.bytes, &format!("many/file_{i:02}.txt")).unwrap(),
                vec![i as u8; i]
            );
        }
        assert!(read_back(&img.bytes, "many/missing.txt").is_none());
    }

    #[test]
    fn l_and_m_path_tables_describe_the_same_directories() {
        let img = write_image(&spec()).unwrap().bytes;
        let pvd = &img[PVD_LBA as usize * SECTOR..];
        let size = u32::from_le_bytes(pvd[132..136].try_into().unwrap()) as usize;
        let l = u32::from_le_bytes(pvd[140..144].try_into().unwrap()) as usize * SECTOR;
        let m = u32::from_be_bytes(pvd[148..152].try_into().unwrap()) as usize * SECTOR;
        let (lt, mt) = (&img[l..l + size], &img[m..m + size]);
        let mut off = 0;
        let mut names = Vec::new();
        while off < size {
            let n = lt[off] as usize;
            assert_eq!(lt[off], mt[off]);
            let lba_l = u32::from_le_bytes(lt[off + 2..off + 6].try_into().unwrap());
            let lba_m = u32::from_be_bytes(mt[off + 2..off + 6].try_into().unwrap());
            assert_eq!(lba_l, lba_m);
            names.push(String::from_utf8_lossy(&lt[off + 8..off + 8 + n]).into_owned());
            off += 8 + n + n % 2;
        }
        assert_eq!(names, ["\0", "BOOT", "ISOLINUX", "NETDEPLOY"]);
    }

    #[test]
    fn directory_extent_never_splits_a_record() {
        let lens = vec![100usize; 30];
        // 20 records fill 2000 bytes; the 21st starts the next sector.
        assert_eq!(dir_extent_size(&lens), 2 * SECTOR as u32);
    }

    #[test]
    fn missing_boot_file_is_an_error() {
        let mut s = spec();
        s.boot.efi = Some("nope.img".into());
        assert!(matches!(write_image(&s), Err(IsoError::MissingBootFile(_))));
    }
}
