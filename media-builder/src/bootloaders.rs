//! Finding the bootloader files: ISOLINUX for BIOS, systemd-boot for UEFI. Paths the user
//! names win; otherwise the Debian package paths. A missing file names the path, the Debian
//! package that ships it and the flag that overrides it.

use std::path::{Path, PathBuf};

/// ISOLINUX's El Torito loader (package `isolinux`).
pub const ISOLINUX_BIN: &str = "usr/lib/ISOLINUX/isolinux.bin";
/// isolinux's hybrid MBR code, for BIOS boot of a raw USB copy (package `isolinux`).
pub const ISOHDPFX_BIN: &str = "usr/lib/ISOLINUX/isohdpfx.bin";
/// The syslinux core module ISOLINUX loads next (package `syslinux-common`).
pub const LDLINUX_C32: &str = "usr/lib/syslinux/modules/bios/ldlinux.c32";
/// systemd-boot for x86-64 UEFI (package `systemd-boot-efi`).
pub const SYSTEMD_BOOT_EFI: &str = "usr/lib/systemd/boot/efi/systemd-bootx64.efi";
/// syslinux's MBR code for GPT disks: it boots the partition marked legacy BIOS bootable
/// (package `syslinux-common`).
pub const GPTMBR_BIN: &str = "usr/lib/syslinux/mbr/gptmbr.bin";
/// syslinux's MBR code for MBR disks: it boots the active partition (package
/// `syslinux-common`).
pub const MBR_BIN: &str = "usr/lib/syslinux/mbr/mbr.bin";
/// syslinux's chain loader and the libraries it needs: with `ntldr=/bootmgr` it starts Windows'
/// boot manager from the partition syslinux booted from (package `syslinux-common`).
pub const CHAIN_MODULES: [&str; 3] = [
    "usr/lib/syslinux/modules/bios/chain.c32",
    "usr/lib/syslinux/modules/bios/libcom32.c32",
    "usr/lib/syslinux/modules/bios/libutil.c32",
];
/// syslinux's installer for FAT file systems, through mtools (packages `syslinux`, `mtools`).
pub const SYSLINUX: &str = "usr/bin/syslinux";
/// shim signed for Microsoft's UEFI CA, for Secure Boot (package `shim-signed`).
pub const SHIM_SIGNED: &str = "usr/lib/shim/shimx64.efi.signed";
/// GRUB for disks and media signed by Debian, which shim trusts (package
/// `grub-efi-amd64-signed`). Its configuration is `/EFI/debian/grub.cfg` on its own partition.
pub const GRUB_SIGNED: &str = "usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed";

#[derive(Debug, thiserror::Error)]
pub enum LoaderError {
    #[error("{what} not found at {path}: install the Debian package `{package}` (apt-get install {package}) or pass {flag} FILE")]
    Missing {
        what: &'static str,
        path: PathBuf,
        package: &'static str,
        flag: &'static str,
    },
    #[error("{what} not found at {path}: it gives the USB image its BIOS boot path; install the Debian packages {packages} (apt-get install {packages}), or pass --uefi-only for an image that boots UEFI only")]
    UsbBios {
        what: &'static str,
        path: PathBuf,
        packages: &'static str,
    },
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where to look: `root` is `/` except in tests; the overrides come from `--bios-loader`
/// (isolinux.bin; ldlinux.c32 is looked for beside it first) and `--efi-loader`.
#[derive(Debug, Clone)]
pub struct Locator {
    pub root: PathBuf,
    pub bios_loader: Option<PathBuf>,
    pub efi_loader: Option<PathBuf>,
    /// Secure Boot: shim as `BOOTX64.EFI` and the signed GRUB beside it, not systemd-boot.
    pub secure_boot: bool,
    /// The signed GRUB to use instead of grub-efi-amd64-signed's (with `secure_boot`).
    pub signed_grub: Option<PathBuf>,
}

impl Default for Locator {
    fn default() -> Self {
        Locator {
            root: PathBuf::from("/"),
            bios_loader: None,
            efi_loader: None,
            secure_boot: false,
            signed_grub: None,
        }
    }
}

/// What makes a USB image boot on BIOS: the GPT MBR code, and the syslinux installer that puts
/// its boot sector and `ldlinux.sys` onto the system partition. The installer is Debian's, not
/// ours: it patches the sectors `ldlinux.sys` lands on into the boot code, which only it knows.
#[derive(Debug, Clone)]
pub struct UsbBiosLoader {
    /// The first 440 bytes of the disk.
    pub gptmbr: Vec<u8>,
    pub installer: PathBuf,
}

/// The BIOS boot path of a Windows PE USB image: syslinux's MBR code, syslinux installed on the
/// FAT32 partition, and its chain loader handing over to `bootmgr`.
#[derive(Debug, Clone)]
pub struct WinPeUsbBios {
    /// The first 440 bytes of the disk.
    pub mbr: Vec<u8>,
    /// `chain.c32` and its libraries, by file name, for the partition's root.
    pub modules: Vec<(String, Vec<u8>)>,
    pub installer: PathBuf,
}

#[derive(Debug, Clone)]
pub struct BiosLoader {
    pub isolinux_bin: Vec<u8>,
    pub ldlinux_c32: Vec<u8>,
    /// Absent when the `isolinux` package's hybrid MBR is missing: the ISO then boots BIOS
    /// from CD only.
    pub isohdpfx: Option<Vec<u8>>,
}

#[derive(Debug, Clone)]
pub struct EfiLoader {
    /// Becomes `EFI/BOOT/BOOTX64.EFI`.
    pub bootx64_efi: Vec<u8>,
    /// Secure Boot: the signed GRUB that shim (`bootx64_efi`) loads as `EFI/BOOT/grubx64.efi`.
    pub grubx64_efi: Option<Vec<u8>>,
}

fn read(
    path: &Path,
    what: &'static str,
    package: &'static str,
    flag: &'static str,
) -> Result<Vec<u8>, LoaderError> {
    match std::fs::read(path) {
        Ok(b) => Ok(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(LoaderError::Missing {
            what,
            path: path.to_path_buf(),
            package,
            flag,
        }),
        Err(source) => Err(LoaderError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

impl Locator {
    pub fn bios(&self) -> Result<BiosLoader, LoaderError> {
        let isolinux = self
            .bios_loader
            .clone()
            .unwrap_or_else(|| self.root.join(ISOLINUX_BIN));
        let isolinux_bin = read(
            &isolinux,
            "ISOLINUX BIOS loader isolinux.bin",
            "isolinux",
            "--bios-loader",
        )?;
        let beside = isolinux.with_file_name("ldlinux.c32");
        let ldlinux = if self.bios_loader.is_some() && beside.exists() {
            beside
        } else {
            self.root.join(LDLINUX_C32)
        };
        let ldlinux_c32 = read(
            &ldlinux,
            "syslinux core module ldlinux.c32",
            "syslinux-common",
            "--bios-loader",
        )?;
        let isohdpfx = std::fs::read(self.root.join(ISOHDPFX_BIN))
            .ok()
            .filter(|b| b.len() >= 432);
        Ok(BiosLoader {
            isolinux_bin,
            ldlinux_c32,
            isohdpfx,
        })
    }

    /// The BIOS boot path of a USB image.
    pub fn usb_bios(&self) -> Result<UsbBiosLoader, LoaderError> {
        let path = self.root.join(GPTMBR_BIN);
        let gptmbr = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(LoaderError::UsbBios {
                    what: "syslinux's GPT MBR code gptmbr.bin",
                    path,
                    packages: "syslinux-common",
                })
            }
            Err(source) => return Err(LoaderError::Read { path, source }),
        };
        if gptmbr.len() != 440 {
            return Err(LoaderError::Read {
                path,
                source: std::io::Error::other(format!(
                    "{} bytes, not the 440 bytes of MBR boot code",
                    gptmbr.len()
                )),
            });
        }
        let installer = self.root.join(SYSLINUX);
        if !installer.is_file() {
            return Err(LoaderError::UsbBios {
                what: "the syslinux installer",
                path: installer,
                packages: "syslinux mtools",
            });
        }
        Ok(UsbBiosLoader { gptmbr, installer })
    }

    /// The BIOS boot path of a Windows PE USB image.
    pub fn winpe_usb_bios(&self) -> Result<WinPeUsbBios, LoaderError> {
        let missing = |what, path: PathBuf, packages| LoaderError::UsbBios {
            what,
            path,
            packages,
        };
        let read_or = |rel: &str, what| {
            let path = self.root.join(rel);
            match std::fs::read(&path) {
                Ok(b) => Ok(b),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    Err(missing(what, path, "syslinux-common"))
                }
                Err(source) => Err(LoaderError::Read { path, source }),
            }
        };
        let mbr = read_or(MBR_BIN, "syslinux's MBR code mbr.bin")?;
        if mbr.len() != 440 {
            return Err(LoaderError::Read {
                path: self.root.join(MBR_BIN),
                source: std::io::Error::other(format!(
                    "{} bytes, not the 440 bytes of MBR boot code",
                    mbr.len()
                )),
            });
        }
        let mut modules = Vec::new();
        for rel in CHAIN_MODULES {
            let name = rel.rsplit('/').next().expect("a file name").to_owned();
            modules.push((name, read_or(rel, "syslinux's chain loader module")?));
        }
        let installer = self.root.join(SYSLINUX);
        if !installer.is_file() {
            return Err(missing(
                "the syslinux installer",
                installer,
                "syslinux mtools",
            ));
        }
        Ok(WinPeUsbBios {
            mbr,
            modules,
            installer,
        })
    }

    pub fn efi(&self) -> Result<EfiLoader, LoaderError> {
        if self.secure_boot {
            let shim = self
                .efi_loader
                .clone()
                .unwrap_or_else(|| self.root.join(SHIM_SIGNED));
            let grub = self
                .signed_grub
                .clone()
                .unwrap_or_else(|| self.root.join(GRUB_SIGNED));
            return Ok(EfiLoader {
                bootx64_efi: read(&shim, "signed shim", "shim-signed", "--efi-loader")?,
                grubx64_efi: Some(read(
                    &grub,
                    "signed GRUB",
                    "grub-efi-amd64-signed",
                    "--signed-grub",
                )?),
            });
        }
        let path = self
            .efi_loader
            .clone()
            .unwrap_or_else(|| self.root.join(SYSTEMD_BOOT_EFI));
        let bootx64_efi = read(
            &path,
            "systemd-boot UEFI loader",
            "systemd-boot-efi",
            "--efi-loader",
        )?;
        Ok(EfiLoader {
            bootx64_efi,
            grubx64_efi: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_loaders_name_the_file_and_the_package() {
        let dir = tempfile::tempdir().unwrap();
        let l = Locator {
            root: dir.path().to_path_buf(),
            ..Locator::default()
        };
        let e = l.bios().unwrap_err().to_string();
        assert!(
            e.contains("usr/lib/ISOLINUX/isolinux.bin") && e.contains("`isolinux`"),
            "{e}"
        );
        let e = l.efi().unwrap_err().to_string();
        assert!(
            e.contains("systemd-bootx64.efi") && e.contains("`systemd-boot-efi`"),
            "{e}"
        );
    }

    #[test]
    fn named_loader_wins_and_ldlinux_is_found_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("isolinux.bin"), b"iso").unwrap();
        std::fs::write(dir.path().join("ldlinux.c32"), b"ld").unwrap();
        let l = Locator {
            root: dir.path().join("empty"),
            bios_loader: Some(dir.path().join("isolinux.bin")),
            efi_loader: None,
            secure_boot: false,
            signed_grub: None,
        };
        let b = l.bios().unwrap();
        assert_eq!(
            (b.isolinux_bin.as_slice(), b.ldlinux_c32.as_slice()),
            (&b"iso"[..], &b"ld"[..])
        );
        assert!(b.isohdpfx.is_none());
    }
}
