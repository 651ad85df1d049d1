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
