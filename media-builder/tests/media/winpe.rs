//! Windows PE media (`build --winpe`) from a synthetic Windows PE: a `boot.wim` captured by
//! wimlib from a test directory, and stand-ins for bootmgr, the BCD stores, boot.sdi and the
//! ADK's El Torito files. No Windows file is needed, so no Windows PE boots here; what the
//! tests prove is what the media hold: wimlib reads the agent, `winpeshl.ini` and
//! `netdeploy.ini` back out of the medium's `boot.wim`, byte for byte.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use media_builder::variables::{MediaType, MediaVariables};
use netdeploy_wire::winpe::winpeshl_ini;

use crate::boot::{boot_until, Attach, Firmware};
use crate::harness::{assert_fat_clean, extract, require_tool, run};

const SERVER: &str = "http://192.0.2.10:8080";
const KEY: &str = "0123abcd.00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const PIN: &str = "sha256:aabbccddeeff00112233445566778899aabbccddeeff00112233445566778899";

/// A `copype`-like directory with a captured `boot.wim`, and a stand-in agent.
struct WinPe {
    dir: tempfile::TempDir,
}

impl WinPe {
    fn new(fwfiles: &[&str]) -> WinPe {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root/Windows/System32");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("wpeinit.exe"), b"MZ wpeinit").unwrap();
        let media = dir.path().join("pe/media");
        for f in media_builder::winpe::REQUIRED {
            let p = media.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, format!("{f} of the test Windows PE")).unwrap();
        }
        let wimlib = require_tool("wimlib-imagex", "wimtools");
        let (ok, text) = run(
            &wimlib,
            &[
                "capture",
                dir.path().join("root").to_str().unwrap(),
                media.join("sources/boot.wim").to_str().unwrap(),
                "Microsoft Windows PE (amd64)",
                "--boot",
            ],
        );
        assert!(ok, "wimlib-imagex capture: {text}");
        let fw = dir.path().join("pe/fwfiles");
        std::fs::create_dir_all(&fw).unwrap();
        for f in fwfiles {
            // The ADK's etfsboot.com is 8 sectors of 512 bytes (4 in older ADKs); its bytes
            // 8..64 are code, which must stay as they are.
            let bytes: Vec<u8> = (0..4096u32).map(|i| (i * 7 + 3) as u8).collect();
            std::fs::write(fw.join(f), bytes).unwrap();
        }
        let agent: Vec<u8> = b"MZ"
            .iter()
            .copied()
            .chain((0..100_000u32).map(|i| (i * 31 + 5) as u8))
            .collect();
        std::fs::write(dir.path().join("netdeploy-agent.exe"), agent).unwrap();
        WinPe { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn build(&self, format: &str, output: &str) -> Output {
        self.build_with(format, output, &[])
    }

    fn build_with(&self, format: &str, output: &str, extra: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_netdeploy-media"))
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .env_remove("NETDEPLOY_MEDIUM_KEY")
            .env_remove("NETDEPLOY_MEDIA_PASSWORD")
            .args(["build", "--winpe"])
            .arg(self.path("pe"))
            .arg("--windows-agent")
            .arg(self.path("netdeploy-agent.exe"))
            .args(["--server-url", SERVER, "--preferred-deployment", "LAB00007"])
            .args(["--medium-key", KEY, "--server-pin", PIN])
            .args(["--format", format, "--output"])
            .arg(self.path(output))
            .args(extra)
            .output()
            .unwrap()
    }

    fn build_ok(&self, format: &str, output: &str, extra: &[&str]) -> (PathBuf, String) {
        let o = self.build_with(format, output, extra);
        let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(o.status.success(), "netdeploy-media: {stderr}");
        (self.path(output), stderr)
    }

    /// The three files wimlib extracts from `\Windows\System32` of `wim`'s image 1.
    fn read_back(&self, wim: &Path) -> [Vec<u8>; 3] {
        let wimlib = require_tool("wimlib-imagex", "wimtools");
        let out = self.path("extracted");
        let _ = std::fs::remove_dir_all(&out);
        let (ok, text) = run(
            &wimlib,
            &[
                "extract",
                wim.to_str().unwrap(),
                "1",
                "/Windows/System32/netdeploy-agent.exe",
                "/Windows/System32/winpeshl.ini",
                "/Windows/System32/netdeploy.ini",
                &format!("--dest-dir={}", out.display()),
                "--no-acls",
            ],
        );
        assert!(ok, "wimlib-imagex extract: {text}");
        ["netdeploy-agent.exe", "winpeshl.ini", "netdeploy.ini"]
            .map(|f| std::fs::read(out.join(f)).unwrap())
    }

    /// Checks the injected files against the agent, the one `winpeshl.ini` writer and the
    /// media variables the options ask for.
    fn assert_injected(&self, wim: &Path) {
        let [agent, winpeshl, ini] = self.read_back(wim);
        assert!(
            agent == std::fs::read(self.path("netdeploy-agent.exe")).unwrap(),
            "the agent in boot.wim differs from --windows-agent"
        );
        assert_eq!(String::from_utf8(winpeshl).unwrap(), winpeshl_ini());
        let expected = MediaVariables {
            server_url: Some(SERVER.into()),
            media_type: MediaType::BootMedia,
            preferred_advert_id: Some("LAB00007".into()),
            media_password: None,
            medium_key: Some(KEY.into()),
            mac: None,
            run_token: None,
            server_pin: Some(PIN.parse().unwrap()),
        }
        .render()
        .unwrap();
        let ini = String::from_utf8(ini).unwrap();
        assert_eq!(ini, expected);
        for line in [
            "SMSTSServerURL=http://192.0.2.10:8080\r\n",
            "SMSTSMediaType=BootMedia\r\n",
            "SMSTSPreferredAdvertID=LAB00007\r\n",
        ] {
            assert!(ini.contains(line), "{ini}");
        }
        assert!(
            ini.contains(&format!("NetdeployMediumKey={KEY}\r\n")),
            "{ini}"
        );
        assert!(
            ini.contains(&format!("NetdeployServerPin={PIN}\r\n")),
            "{ini}"
        );
    }

    /// A file of the ISO, extracted with xorriso.
    fn extract_from_iso(&self, iso: &Path, iso_path: &str, to: &str) -> PathBuf {
        let xorriso = require_tool("xorriso", "xorriso");
        let dst = self.path(to);
        let (ok, text) = run(
            &xorriso,
            &[
                "-osirrox",
                "on",
                "-indev",
                iso.to_str().unwrap(),
                "-extract",
                iso_path,
                dst.to_str().unwrap(),
            ],
        );
        assert!(ok, "xorriso -extract {iso_path}: {text}");
        dst
    }
}

#[test]
fn winpe_iso_boot_wim_holds_the_agent_winpeshl_ini_and_the_media_variables() {
    let pe = WinPe::new(&["etfsboot.com", "efisys.bin"]);
    let before = std::fs::read(pe.path("pe/media/sources/boot.wim")).unwrap();
    let (iso, stderr) = pe.build_ok("iso", "winpe.iso", &[]);
    assert!(stderr.contains("boots UEFI and BIOS"), "{stderr}");
    let wim = pe.extract_from_iso(&iso, "/SOURCES/BOOT.WIM", "boot.wim");
    pe.assert_injected(&wim);
    assert!(
        std::fs::read(pe.path("pe/media/sources/boot.wim")).unwrap() == before,
        "the user's boot.wim was changed"
    );
    for (on_iso, file) in [
        ("/BOOTMGR", "bootmgr"),
        ("/BOOTMGR.EFI", "bootmgr.efi"),
        ("/BOOT/BCD", "Boot/BCD"),
        ("/BOOT/BOOT.SDI", "Boot/boot.sdi"),
        ("/EFI/BOOT/BOOTX64.EFI", "EFI/Boot/bootx64.efi"),
        ("/EFI/MICROSOFT/BOOT/BCD", "EFI/Microsoft/Boot/BCD"),
    ] {
        let got = pe.extract_from_iso(&iso, on_iso, "copied");
        assert_eq!(
            std::fs::read(&got).unwrap(),
            std::fs::read(pe.path("pe/media").join(file)).unwrap(),
            "{on_iso}"
        );
        std::fs::remove_file(got).unwrap();
    }
}

#[test]
fn winpe_iso_boots_bios_through_the_adks_etfsboot_unpatched_and_uefi_through_efisys() {
    let pe = WinPe::new(&["etfsboot.com", "efisys.bin"]);
    let (iso, _) = pe.build_ok("iso", "winpe.iso", &[]);
    let bytes = std::fs::read(&iso).unwrap();
    let parsed = media_builder::iso9660::parse(&bytes).unwrap();
    let platforms: Vec<u8> = parsed.boot_entries.iter().map(|e| e.0).collect();
    assert_eq!(platforms, [0, 0xEF], "{:?}", parsed.boot_entries);
    let sector = |lba: u32| lba as usize * media_builder::iso9660::SECTOR;
    let (_, bios_lba, bios_count) = parsed.boot_entries[0];
    assert_eq!(
        bios_count, 8,
        "etfsboot.com loads whole: 8 sectors of 512 bytes"
    );
    assert!(
        bytes[sector(bios_lba)..][..4096]
            == std::fs::read(pe.path("pe/fwfiles/etfsboot.com")).unwrap()[..],
        "etfsboot.com was changed on the ISO (no boot info table may be written into it)"
    );
    let (_, efi_lba, _) = parsed.boot_entries[1];
    let efisys = std::fs::read(pe.path("pe/fwfiles/efisys.bin")).unwrap();
    assert!(bytes[sector(efi_lba)..][..efisys.len()] == efisys[..]);
}

#[test]
fn winpe_iso_without_etfsboot_is_uefi_only_and_says_so() {
    let pe = WinPe::new(&["efisys.bin"]);
    let (iso, stderr) = pe.build_ok("iso", "winpe.iso", &[]);
    assert!(stderr.contains("UEFI only: no etfsboot.com in"), "{stderr}");
    let parsed = media_builder::iso9660::parse(&std::fs::read(&iso).unwrap()).unwrap();
    let platforms: Vec<u8> = parsed.boot_entries.iter().map(|e| e.0).collect();
    assert_eq!(platforms, [0xEF], "{:?}", parsed.boot_entries);
}

#[test]
fn winpe_iso_without_an_adk_efi_image_is_refused_naming_where_it_looked() {
    let pe = WinPe::new(&[]);
    let o = pe.build("iso", "winpe.iso");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("El Torito EFI image")
            && err.contains(&pe.path("pe/fwfiles/efisys.bin").display().to_string()),
        "{err}"
    );
    assert!(!pe.path("winpe.iso").exists());
}

/// The first partition of an MBR disk image, copied out: (its MBR entry, its path).
fn first_partition(pe: &WinPe, img: &Path) -> (media_builder::mbr::Partition, PathBuf) {
    let disk = std::fs::read(img).unwrap();
    let mbr = media_builder::mbr::Mbr::parse(&disk[..512]).expect("an MBR");
    let p = mbr.partitions[0];
    let part = pe.path("part.img");
    extract(
        img,
        u64::from(p.start) * 512,
        u64::from(p.sectors) * 512,
        &part,
    );
    (p, part)
}

#[test]
fn winpe_usb_partition_holds_the_tree_and_boot_wim_holds_the_injected_files() {
    let pe = WinPe::new(&[]);
    let (img, stderr) = pe.build_ok("usb", "winpe.img", &[]);
    assert!(
        stderr.contains("boots UEFI and BIOS (syslinux, chain.c32 ntldr=/bootmgr)"),
        "{stderr}"
    );
    let (p, part) = first_partition(&pe, &img);
    assert!(
        p.bootable,
        "the partition is active, for syslinux's MBR code"
    );
    assert_eq!(p.kind, media_builder::mbr::TYPE_FAT32_LBA);
    assert_eq!(p.start, 2048);
    let disk = std::fs::read(&img).unwrap();
    let mbr_bin = std::fs::read("/usr/lib/syslinux/mbr/mbr.bin").unwrap();
    assert!(disk[..440] == mbr_bin[..], "syslinux's MBR code");
    assert_fat_clean(&part);
    let fs = fatfs::FileSystem::new(std::fs::File::open(&part).unwrap(), fatfs::FsOptions::new())
        .unwrap();
    assert_eq!(fs.fat_type(), fatfs::FatType::Fat32);
    let read = |path: &str| {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut fs.root_dir().open_file(path).unwrap(), &mut bytes)
            .unwrap();
        bytes
    };
    for f in media_builder::winpe::REQUIRED {
        if f != "sources/boot.wim" {
            assert_eq!(
                read(f),
                std::fs::read(pe.path("pe/media").join(f)).unwrap(),
                "{f}"
            );
        }
    }
    assert_eq!(
        read("syslinux.cfg"),
        media_builder::winpe::SYSLINUX_CFG.as_bytes()
    );
    assert_eq!(
        read("chain.c32"),
        std::fs::read("/usr/lib/syslinux/modules/bios/chain.c32").unwrap()
    );
    assert!(
        !read("ldlinux.sys").is_empty(),
        "syslinux installed its loader"
    );
    let wim = pe.path("boot.wim");
    std::fs::write(&wim, read("sources/boot.wim")).unwrap();
    drop(fs);
    std::fs::remove_file(&part).unwrap();
    pe.assert_injected(&wim);
}

#[test]
fn winpe_usb_uefi_only_has_no_bios_boot_path() {
    let pe = WinPe::new(&[]);
    let (img, stderr) = pe.build_ok("usb", "winpe.img", &["--uefi-only"]);
    assert!(stderr.contains("boots UEFI only (--uefi-only)"), "{stderr}");
    let disk = std::fs::read(&img).unwrap();
    assert!(disk[..440].iter().all(|b| *b == 0), "no MBR boot code");
    let (_, part) = first_partition(&pe, &img);
    let fs = fatfs::FileSystem::new(std::fs::File::open(&part).unwrap(), fatfs::FsOptions::new())
        .unwrap();
    assert!(fs.root_dir().open_file("syslinux.cfg").is_err());
    assert!(fs.root_dir().open_file("ldlinux.sys").is_err());
    assert!(fs.root_dir().open_file("EFI/Boot/bootx64.efi").is_ok());
}

#[test]
fn winpe_missing_input_names_the_file_and_the_path_looked_at() {
    let pe = WinPe::new(&["efisys.bin"]);
    std::fs::remove_file(pe.path("pe/media/EFI/Microsoft/Boot/BCD")).unwrap();
    let o = pe.build("usb", "winpe.img");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    let looked = pe.path("pe/media").join("EFI/Microsoft/Boot/BCD");
    assert!(
        err.contains("EFI/Microsoft/Boot/BCD is missing")
            && err.contains(&format!("looked at {}", looked.display())),
        "{err}"
    );

    let pe = WinPe::new(&["efisys.bin"]);
    std::fs::remove_file(pe.path("netdeploy-agent.exe")).unwrap();
    let o = pe.build("usb", "winpe.img");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("no Windows agent")
            && err.contains(&pe.path("netdeploy-agent.exe").display().to_string()),
        "{err}"
    );
    assert!(!pe.path("winpe.img").exists());
}

#[test]
fn winpe_media_put_netdeploy_ini_where_the_windows_agent_reads_it_by_default() {
    // The agent's Windows platform module is compiled for Windows only, so its default path is
    // read from its source: X: is the drive Windows PE boots from its RAM disk.
    let source = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../boot/agent/src/platform/windows.rs"),
    )
    .unwrap();
    let default = source
        .lines()
        .find_map(|l| l.strip_prefix("pub const DEFAULT_VARIABLES: &str = r\""))
        .and_then(|rest| rest.strip_suffix("\";"))
        .expect("DEFAULT_VARIABLES in boot/agent/src/platform/windows.rs");
    let injected = format!(
        "X:{}\\{}",
        netdeploy_wire::winpe::SYSTEM32,
        netdeploy_wire::winpe::VARIABLES_INI
    );
    assert_eq!(default, injected);
    let files = media_builder::winpe::injected_files(Vec::new(), "");
    let commands = media_builder::winpe::wimupdate_commands(Path::new("/w"), &files);
    assert!(
        commands.contains(&format!(
            "\"{}\"\n",
            injected.trim_start_matches("X:").replace('\\', "/")
        )),
        "{commands}"
    );
}

#[test]
fn winpe_refuses_the_linux_boot_image_options() {
    let pe = WinPe::new(&["efisys.bin"]);
    std::fs::write(pe.path("vmlinuz"), b"kernel").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_netdeploy-media"))
        .args(["build", "--winpe"])
        .arg(pe.path("pe"))
        .arg("--kernel")
        .arg(pe.path("vmlinuz"))
        .args(["--server-url", SERVER, "--output"])
        .arg(pe.path("winpe.iso"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("'--winpe <DIR>' cannot be used with '--kernel <KERNEL>'"),
        "{err}"
    );
    assert!(!pe.path("winpe.iso").exists());
}

/// A stand-in for a real-mode Windows boot file (`bootmgr`, `etfsboot.com`): position-free
/// code that prints `marker` on the first serial port and halts. Where it runs proves which
/// boot path reached it.
fn serial_stub(marker: &str) -> Vec<u8> {
    // mov dx,0x3FB; mov al,3; out dx,al: 8N1 with the divisor latch off, so 0x3F8 is the
    // transmit register whoever set the port up before.
    let mut code = vec![0xBA, 0xFB, 0x03, 0xB0, 0x03, 0xEE, 0xBA, 0xF8, 0x03];
    for b in format!("\r\n{marker}\r\n").bytes() {
        code.extend([0xB0, b, 0xEE]); // mov al,b; out dx,al
    }
    code.extend([0xFA, 0xF4, 0xEB, 0xFD]); // cli; hlt; jmp hlt
    code.resize(2048, 0);
    code
}

fn serial_marker(marker: &'static str) -> impl Fn(&str) -> Option<String> {
    move |text: &str| {
        text.lines()
            .find(|l| l.trim() == marker)
            .map(|l| l.trim().to_owned())
    }
}

#[test]
fn winpe_usb_image_under_seabios_starts_bootmgr_through_syslinux_chain_loader() {
    let pe = WinPe::new(&[]);
    std::fs::write(
        pe.path("pe/media/bootmgr"),
        serial_stub("NETDEPLOY-TEST-BOOTMGR-STARTED"),
    )
    .unwrap();
    let (img, _) = pe.build_ok("usb", "winpe.img", &[]);
    let seen = boot_until(
        &img,
        Firmware::SeaBios,
        Attach::UsbStick,
        "the stand-in bootmgr's line",
        serial_marker("NETDEPLOY-TEST-BOOTMGR-STARTED"),
    );
    assert_eq!(seen, "NETDEPLOY-TEST-BOOTMGR-STARTED");
}

#[test]
fn winpe_iso_under_seabios_starts_etfsboot_from_its_el_torito_bios_entry() {
    let pe = WinPe::new(&["efisys.bin"]);
    std::fs::write(
        pe.path("pe/fwfiles/etfsboot.com"),
        serial_stub("NETDEPLOY-TEST-ETFSBOOT-STARTED"),
    )
    .unwrap();
    let (iso, _) = pe.build_ok("iso", "winpe.iso", &[]);
    let seen = boot_until(
        &iso,
        Firmware::SeaBios,
        Attach::Cdrom,
        "the stand-in etfsboot.com's line",
        serial_marker("NETDEPLOY-TEST-ETFSBOOT-STARTED"),
    );
    assert_eq!(seen, "NETDEPLOY-TEST-ETFSBOOT-STARTED");
}

#[test]
fn winpe_without_wimlib_names_the_package_to_install() {
    let pe = WinPe::new(&["efisys.bin"]);
    let o = Command::new(env!("CARGO_BIN_EXE_netdeploy-media"))
        .env("PATH", pe.path("no-such-bin"))
        .args(["build", "--winpe"])
        .arg(pe.path("pe"))
        .arg("--windows-agent")
        .arg(pe.path("netdeploy-agent.exe"))
        .args([
            "--server-url",
            SERVER,
            "--format",
            "usb",
            "--uefi-only",
            "--output",
        ])
        .arg(pe.path("winpe.img"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("wimlib-imagex is missing") && err.contains("apt-get install wimtools"),
        "{err}"
    );
    assert!(!pe.path("winpe.img").exists());
}

#[test]
fn winpe_iso_without_efisys_boots_uefi_through_the_adks_cd_boot_loader_in_an_image_of_its_own() {
    let pe = WinPe::new(&[]);
    let cdboot = pe.path("pe/media/EFI/Microsoft/Boot/cdboot_noprompt.efi");
    std::fs::write(&cdboot, b"MZ the ADK's CD boot loader").unwrap();
    let (iso, _) = pe.build_ok("iso", "winpe.iso", &[]);
    let efi = pe.extract_from_iso(&iso, "/BOOT/EFISYS.BIN", "efisys.img");
    assert_fat_clean(&efi);
    let fs = fatfs::FileSystem::new(std::fs::File::open(&efi).unwrap(), fatfs::FsOptions::new())
        .unwrap();
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(
        &mut fs.root_dir().open_file("EFI/Boot/bootx64.efi").unwrap(),
        &mut bytes,
    )
    .unwrap();
    assert_eq!(bytes, std::fs::read(&cdboot).unwrap());
    let parsed = media_builder::iso9660::parse(&std::fs::read(&iso).unwrap()).unwrap();
    assert_eq!(parsed.boot_entries.len(), 1);
    assert_eq!(parsed.boot_entries[0].0, 0xEF);
}

/// A stand-in UEFI loader that says on the console that it runs: iPXE's EFI build (Debian's
/// `ipxe`), which prints its banner through the firmware's console, mirrored to the serial
/// port by OVMF.
const EFI_STAND_IN: &str = "/usr/lib/ipxe/ipxe.efi";

/// Fails (never skips) without the stand-in, naming its Debian package.
fn efi_stand_in() -> &'static Path {
    assert!(
        Path::new(EFI_STAND_IN).exists(),
        "{EFI_STAND_IN} is missing: apt-get install -y ipxe"
    );
    Path::new(EFI_STAND_IN)
}

fn ipxe_banner(text: &str) -> Option<String> {
    text.lines()
        .find(|l| l.contains("iPXE") && l.contains("Open Source Network Boot Firmware"))
        .map(|l| l.trim().to_owned())
}

#[test]
fn winpe_usb_image_under_ovmf_starts_its_efi_boot_loader() {
    let pe = WinPe::new(&[]);
    std::fs::copy(efi_stand_in(), pe.path("pe/media/EFI/Boot/bootx64.efi")).unwrap();
    let (img, _) = pe.build_ok("usb", "winpe.img", &[]);
    let seen = boot_until(
        &img,
        Firmware::Ovmf,
        Attach::UsbStick,
        "the stand-in bootx64.efi's banner",
        ipxe_banner,
    );
    assert!(seen.contains("iPXE"), "{seen}");
}

#[test]
fn winpe_iso_under_ovmf_starts_the_cd_boot_loader_from_its_el_torito_efi_entry() {
    let pe = WinPe::new(&[]);
    std::fs::copy(
        efi_stand_in(),
        pe.path("pe/media/EFI/Microsoft/Boot/cdboot_noprompt.efi"),
    )
    .unwrap();
    let (iso, _) = pe.build_ok("iso", "winpe.iso", &[]);
    let seen = boot_until(
        &iso,
        Firmware::Ovmf,
        Attach::Cdrom,
        "the stand-in CD boot loader's banner",
        ipxe_banner,
    );
    assert!(seen.contains("iPXE"), "{seen}");
}
