//! The USB disk image: a valid GPT with one clean FAT32 system partition; files FAT32
//! cannot hold are refused.

use media_builder::gpt::{Gpt, Guid};

use crate::harness::{assert_fat_clean, build, build_ok, extract, require_tool, run, Inputs};

#[test]
fn usb_image_gpt_passes_sgdisk_verify() {
    let sgdisk = require_tool("sgdisk", "gdisk");
    let inputs = Inputs::new();
    let img = build_ok(&inputs, "usb", "media.img");
    let (ok, text) = run(&sgdisk, &["-v", img.to_str().unwrap()]);
    assert!(ok && text.contains("No problems found"), "{text}");
    let (ok, text) = run(&sgdisk, &["-p", img.to_str().unwrap()]);
    assert!(
        ok && text.contains("EF00"),
        "no EFI system partition:\n{text}"
    );
}

#[test]
fn usb_system_partition_is_a_clean_fat32_labelled_netdeploy() {
    let inputs = Inputs::new();
    let img = build_ok(&inputs, "usb", "media.img");
    let gpt = Gpt::read(&std::fs::read(&img).unwrap(), true).unwrap();
    let p = &gpt.partitions[0];
    assert_eq!(p.type_guid, Guid::EFI_SYSTEM);
    let part = inputs.path("part.img");
    extract(
        &img,
        p.first_lba * 512,
        (p.last_lba - p.first_lba + 1) * 512,
        &part,
    );
    assert_fat_clean(&part);
    let fs = fatfs::FileSystem::new(std::fs::File::open(&part).unwrap(), fatfs::FsOptions::new())
        .unwrap();
    assert_eq!(fs.fat_type(), fatfs::FatType::Fat32);
    assert_eq!(fs.volume_label(), "NETDEPLOY");
    let mut vars = String::new();
    std::io::Read::read_to_string(
        &mut fs.root_dir().open_file("netdeploy/variables").unwrap(),
        &mut vars,
    )
    .unwrap();
    assert!(
        vars.contains("SMSTSServerURL=http://192.0.2.10:8080\r\n"),
        "{vars}"
    );
}

#[test]
fn usb_image_has_a_bios_boot_path_beside_the_esp_unless_uefi_only() {
    let inputs = Inputs::new();
    let img = build_ok(&inputs, "usb", "media.img");
    let disk = std::fs::read(&img).unwrap();
    let gpt = Gpt::read(&disk, true).unwrap();
    let p = &gpt.partitions[0];
    assert_eq!(p.attributes & (1 << 2), 1 << 2, "legacy BIOS bootable");
    let gptmbr = std::fs::read("/usr/lib/syslinux/mbr/gptmbr.bin").unwrap();
    assert_eq!(&disk[..440], &gptmbr[..], "syslinux's GPT MBR code");
    assert_eq!(&disk[510..512], &[0x55, 0xAA]);
    let part = inputs.path("part.img");
    extract(
        &img,
        p.first_lba * 512,
        (p.last_lba - p.first_lba + 1) * 512,
        &part,
    );
    assert_fat_clean(&part);
    let fs = fatfs::FileSystem::new(std::fs::File::open(&part).unwrap(), fatfs::FsOptions::new())
        .unwrap();
    let root = fs.root_dir();
    let names: Vec<String> = root.iter().map(|e| e.unwrap().file_name()).collect();
    assert!(
        names.iter().any(|n| n.eq_ignore_ascii_case("ldlinux.sys")),
        "{names:?}"
    );
    let mut cfg = String::new();
    std::io::Read::read_to_string(&mut root.open_file("syslinux.cfg").unwrap(), &mut cfg).unwrap();
    assert!(cfg.contains("LINUX /netdeploy/vmlinuz\n"), "{cfg}");
    assert!(cfg.contains("INITRD /netdeploy/initrd.img\n"), "{cfg}");

    let uefi = inputs.path("uefi.img");
    let o = build(&inputs, "usb", &uefi, "0", &["--uefi-only"]);
    assert!(o.status.success(), "{o:?}");
    let disk = std::fs::read(&uefi).unwrap();
    let gpt = Gpt::read(&disk, true).unwrap();
    assert_eq!(gpt.partitions[0].attributes, 0);
    assert_ne!(&disk[..440], &gptmbr[..]);
}

#[test]
fn two_usb_builds_are_byte_identical() {
    let inputs = Inputs::new();
    let a = build_ok(&inputs, "usb", "a.img");
    let b = build_ok(&inputs, "usb", "b.img");
    assert!(
        std::fs::read(a).unwrap() == std::fs::read(b).unwrap(),
        "two builds differ"
    );
}

#[test]
fn initrd_over_4_gib_is_refused_for_fat32_without_splitting() {
    let inputs = Inputs::new();
    let big = inputs.path("initrd.img");
    // Sparse: no disk space or memory used, only the size is looked at.
    std::fs::File::options()
        .write(true)
        .open(&big)
        .unwrap()
        .set_len((4 << 30) + 1)
        .unwrap();
    let out = inputs.path("x.img");
    let o = build(&inputs, "usb", &out, "0", &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("initrd.img") && err.contains("4 GiB"), "{err}");
    assert!(!out.exists());
}
