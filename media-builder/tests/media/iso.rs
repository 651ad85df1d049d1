//! The hybrid ISO: El Torito entries, the isohybrid MBR, the system partition, the
//! variables file, reproducibility and the errors a user sees.

use media_builder::mbr::Mbr;
use std::path::Path;

use crate::harness::{
    assert_fat_clean, build, build_ok, command, extract, require_tool, run, Inputs,
};

#[test]
fn iso_el_torito_has_bios_and_uefi_no_emulation_entries() {
    let xorriso = require_tool("xorriso", "xorriso");
    let inputs = Inputs::new();
    let iso = build_ok(&inputs, "iso", "media.iso");
    let (ok, text) = run(
        &xorriso,
        &[
            "-indev",
            iso.to_str().unwrap(),
            "-report_el_torito",
            "plain",
        ],
    );
    assert!(ok, "{text}");
    let line = |needle: &str| {
        text.lines()
            .any(|l| l.starts_with("El Torito boot img") && l.contains(needle))
    };
    assert!(
        line("BIOS  y   none"),
        "no BIOS no-emulation entry:\n{text}"
    );
    assert!(line("UEFI  y   none"), "no UEFI entry:\n{text}");
    assert!(text.contains("/ISOLINUX/ISOLINUX.BIN"), "{text}");
    assert!(text.contains("/BOOT/EFI.IMG"), "{text}");
    assert!(text.contains("boot-info-table"), "{text}");
    assert!(text.contains("Volume id    : 'NETDEPLOY'"), "{text}");
}

#[test]
fn iso_system_area_is_an_isohybrid_mbr_with_the_efi_partition() {
    let xorriso = require_tool("xorriso", "xorriso");
    let inputs = Inputs::new();
    let iso = build_ok(&inputs, "iso", "media.iso");
    let (ok, text) = run(
        &xorriso,
        &[
            "-indev",
            iso.to_str().unwrap(),
            "-report_system_area",
            "plain",
        ],
    );
    assert!(ok, "{text}");
    assert!(text.contains("MBR isohybrid"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("MBR partition      :   2") && l.contains("0xef")),
        "no EFI partition in the MBR:\n{text}"
    );
    assert!(
        text.contains("MBR partition path :   2  /BOOT/EFI.IMG"),
        "{text}"
    );
}

#[test]
fn iso_efi_partition_is_a_clean_fat_with_systemd_boot_and_the_variables() {
    let inputs = Inputs::new();
    let iso = build_ok(&inputs, "iso", "media.iso");
    let mbr = Mbr::parse(&std::fs::read(&iso).unwrap()).unwrap();
    let esp = mbr.partitions[1];
    let esp_path = inputs.path("esp.img");
    extract(
        &iso,
        u64::from(esp.start) * 512,
        u64::from(esp.sectors) * 512,
        &esp_path,
    );
    assert_fat_clean(&esp_path);
    let fs = fatfs::FileSystem::new(
        std::fs::File::open(&esp_path).unwrap(),
        fatfs::FsOptions::new(),
    )
    .unwrap();
    let root = fs.root_dir();
    let read = |p: &str| {
        let mut s = Vec::new();
        std::io::Read::read_to_end(&mut root.open_file(p).unwrap(), &mut s).unwrap();
        s
    };
    assert_eq!(
        read("EFI/BOOT/BOOTX64.EFI"),
        std::fs::read("/usr/lib/systemd/boot/efi/systemd-bootx64.efi").unwrap()
    );
    let entry = String::from_utf8(read("loader/entries/netdeploy.conf")).unwrap();
    assert!(
        entry.contains("options console=ttyS0 quiet netdeploy.vars=/netdeploy/variables"),
        "{entry}"
    );
    let vars = String::from_utf8(read("netdeploy/variables")).unwrap();
    assert!(vars.contains("SMSTSPreferredAdvertID=42\r\n"), "{vars}");
}

#[test]
fn iso_carries_the_variables_file_with_a_hashed_password() {
    let xorriso = require_tool("xorriso", "xorriso");
    let inputs = Inputs::new();
    let iso = build_ok(&inputs, "iso", "media.iso");
    let out = inputs.path("variables");
    let (ok, text) = run(
        &xorriso,
        &[
            "-osirrox",
            "on",
            "-indev",
            iso.to_str().unwrap(),
            "-extract",
            "/NETDEPLOY/VARIABLES",
            out.to_str().unwrap(),
        ],
    );
    assert!(ok, "{text}");
    let vars = std::fs::read_to_string(&out).unwrap();
    assert!(
        vars.contains("SMSTSServerURL=http://192.0.2.10:8080\r\n"),
        "{vars}"
    );
    assert!(vars.contains("SMSTSMediaType=BootMedia\r\n"), "{vars}");
    assert!(vars.contains("SMSTSPreferredAdvertID=42\r\n"), "{vars}");
    assert!(!vars.contains("hunter2"), "{vars}");
    let hash = vars
        .lines()
        .find_map(|l| l.strip_prefix("SMSTSMediaPassword="))
        .unwrap();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    let stored = netdeploy_wire::password::MediaPassword::parse(hash).unwrap();
    assert!(stored.matches("hunter2"), "{hash}");
    assert!(!stored.matches("hunter3"), "{hash}");
}

/// The `SMSTSMediaPassword` line of a built ISO.
fn password_line(iso: &Path, out: &Path) -> String {
    let xorriso = require_tool("xorriso", "xorriso");
    let (ok, text) = run(
        &xorriso,
        &[
            "-osirrox",
            "on",
            "-indev",
            iso.to_str().unwrap(),
            "-extract",
            "/NETDEPLOY/VARIABLES",
            out.to_str().unwrap(),
        ],
    );
    assert!(ok, "{text}");
    let vars = std::fs::read_to_string(out).unwrap();
    vars.lines()
        .find(|l| l.starts_with("SMSTSMediaPassword="))
        .unwrap()
        .to_owned()
}

#[test]
fn without_a_given_salt_each_build_draws_its_own() {
    let inputs = Inputs::new();
    let mut lines = Vec::new();
    for name in ["a.iso", "b.iso"] {
        let iso = inputs.path(name);
        let o = command(&inputs, "iso", &iso, "1700000000")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        lines.push(password_line(&iso, &inputs.path("vars")));
    }
    assert!(
        lines[0].starts_with("SMSTSMediaPassword=$argon2id$"),
        "{lines:?}"
    );
    assert_ne!(
        lines[0], lines[1],
        "the same password under two random salts"
    );
}

#[test]
fn two_iso_builds_are_byte_identical_and_the_epoch_changes_them() {
    let inputs = Inputs::new();
    let a = build_ok(&inputs, "iso", "a.iso");
    let b = build_ok(&inputs, "iso", "b.iso");
    assert!(
        std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(),
        "two builds differ"
    );
    let c = inputs.path("c.iso");
    assert!(build(&inputs, "iso", &c, "1700000001", &[])
        .status
        .success());
    assert!(std::fs::read(&a).unwrap() != std::fs::read(&c).unwrap());
}

#[test]
fn missing_bootloader_error_names_the_file_and_the_package() {
    let inputs = Inputs::new();
    let out = inputs.path("x.iso");
    let o = build(
        &inputs,
        "iso",
        &out,
        "0",
        &["--efi-loader", "/nonexistent/systemd-bootx64.efi"],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("/nonexistent/systemd-bootx64.efi") && err.contains("systemd-boot-efi"),
        "{err}"
    );
    let o = build(
        &inputs,
        "iso",
        &out,
        "0",
        &["--bios-loader", "/nonexistent/isolinux.bin"],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("/nonexistent/isolinux.bin") && err.contains("apt-get install isolinux"),
        "{err}"
    );
    assert!(!out.exists(), "a failed build left an image behind");
}
