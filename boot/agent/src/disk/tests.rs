use super::*;

#[test]
fn journals_of_a_disk_and_its_partitions_are_forgotten_and_others_kept() {
    let dir = tempfile::tempdir().unwrap();
    let disks = Disks::new(dir.path().join("sys/block"), dir.path().to_owned());
    let names: Vec<PathBuf> = ["/dev/vda", "/dev/vda2", "/dev/vdb1"]
        .iter()
        .map(|d| disks.journal(Path::new(d)))
        .collect();
    assert_eq!(names[1], dir.path().join("apply_dev_vda2.journal"));
    for n in &names {
        std::fs::write(n, "x 3\n").unwrap();
    }
    std::fs::write(dir.path().join("apply_dev_vda.note"), "").unwrap();
    disks.forget_journals("/dev/vda");
    assert!(!names[0].exists() && !names[1].exists());
    assert!(names[2].exists());
    assert!(dir.path().join("apply_dev_vda.note").exists());
}

#[test]
fn wim_files_are_told_by_their_extension() {
    assert!(is_wim("sources/install.wim"));
    assert!(is_wim("INSTALL.WIM"));
    assert!(!is_wim("image.ndimg"));
    assert!(!is_wim("disk.img"));
}

/// Makes an ext4 filesystem of `size` (`24M`) in the file `path`, with 4 KiB blocks.
fn mkfs_ext4(path: &Path, size: &str) {
    let made = std::process::Command::new("mkfs.ext4")
        .args(["-q", "-F", "-b", "4096"])
        .arg(path)
        .arg(size)
        .stdout(std::process::Stdio::null())
        .status();
    assert!(
        made.is_ok_and(|s| s.success()),
        "mkfs.ext4 (e2fsprogs) is needed by this test"
    );
}

#[test]
fn an_ext4_filesystem_is_told_with_its_size_and_anything_else_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("fs.img");
    mkfs_ext4(&img, "24M");
    let head = &std::fs::read(&img).unwrap()[..EXT_SUPERBLOCK_END];
    assert_eq!(ext_size(head), Some(24 << 20));
    let mut other = head.to_vec();
    other[1024 + 0x38] = 0;
    assert_eq!(ext_size(&other), None, "no magic");
    assert_eq!(ext_size(&[0u8; 100]), None, "too short");
    assert_eq!(ext_size(&vec![0u8; EXT_SUPERBLOCK_END]), None, "zeros");
}

#[cfg(target_os = "linux")]
#[test]
fn an_applied_ext4_smaller_than_its_partition_is_grown_to_fill_it() {
    let dir = tempfile::tempdir().unwrap();
    let part = dir.path().join("part.img");
    mkfs_ext4(&part, "16M");
    // The partition is larger than the filesystem the image held.
    std::fs::File::options()
        .write(true)
        .open(&part)
        .unwrap()
        .set_len(48 << 20)
        .unwrap();
    let disks = Disks::new(dir.path().join("sys/block"), dir.path().to_owned());
    let said = disks.grow(&part).unwrap().expect("grown");
    assert!(
        said.contains("from 16 MiB to the partition's 48 MiB"),
        "{said}"
    );
    let head = &std::fs::read(&part).unwrap()[..EXT_SUPERBLOCK_END];
    assert_eq!(ext_size(head), Some(48 << 20));
    // Once it fills the partition, and for what is not ext4, nothing is done.
    assert_eq!(disks.grow(&part).unwrap(), None);
    let raw = dir.path().join("raw.img");
    std::fs::write(&raw, vec![0u8; 4 << 20]).unwrap();
    assert_eq!(disks.grow(&raw).unwrap(), None);
}
