//! Putting boot media together: the boot image (kernel and initrd), the bootloaders and the
//! variables file, as a hybrid ISO or a USB disk image.
//!
//! How the booted system finds its variables: the kernel command line gets
//! `netdeploy.vars=/netdeploy/variables`; the initramfs mounts the filesystem labelled
//! `NETDEPLOY` (the ISO volume id, and the FAT label of the system partition, both of which
//! hold the file) and reads that path on it.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::bootloaders::{BiosLoader, EfiLoader, LoaderError, UsbBiosLoader};
use crate::fat::{self, FatError, FatKind, FatSpec};
use crate::gpt::GptError;
use crate::iso9660::{self, BootSpec, IsoError, IsoSpec};
use crate::mbr;
use crate::timestamp::Timestamp;
use crate::usb;
use netdeploy_wire::seal::{self, SealKey};
use netdeploy_wire::variables::VariablesError;

/// Volume id of the ISO and label of the system partition: what the initramfs mounts.
pub const MEDIA_LABEL: &str = "NETDEPLOY";
/// Where the variables file lives on every filesystem of the media.
pub const VARIABLES_PATH: &str = "/netdeploy/variables";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Hybrid ISO 9660: El Torito BIOS and UEFI, bootable as a CD or written raw to a USB stick.
    Iso,
    /// Raw disk image: GPT with one FAT32 EFI System Partition. Boots UEFI machines only;
    /// for a stick that BIOS machines boot too, write the ISO to it.
    Usb,
}

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Loader(#[from] LoaderError),
    #[error(transparent)]
    Fat(#[from] FatError),
    #[error(transparent)]
    Iso(#[from] IsoError),
    #[error(transparent)]
    Gpt(#[from] GptError),
    #[error(transparent)]
    Variables(#[from] VariablesError),
    #[error(transparent)]
    WinPe(#[from] crate::winpe::WinPeError),
    #[error("installing the USB image's BIOS boot path failed: {0}")]
    UsbBiosInstall(String),
    #[error("full media directory {dir}: {why}")]
    Payload { dir: PathBuf, why: String },
    #[error("the kernel {0} is empty (0 bytes): no machine could boot these media")]
    EmptyKernel(PathBuf),
    #[error(
        "--cmdline contains the control character {0:?}: a kernel command line is one line \
         (a line break would split the isolinux and systemd-boot entries)"
    )]
    CmdlineControl(char),
}

/// The Linux boot image and its command line as the user gave it.
#[derive(Debug, Clone)]
pub struct BootImage {
    pub kernel: Vec<u8>,
    pub initrd: Vec<u8>,
    pub cmdline: String,
}

impl BootImage {
    /// Reads kernel and initrd, refusing files FAT cannot hold before reading them (the system
    /// partition carries both, for systemd-boot).
    pub fn load(kernel: &Path, initrd: &Path, cmdline: &str) -> Result<Self, MediaError> {
        check_cmdline(cmdline)?;
        let kernel_bytes = read_input(kernel)?;
        if kernel_bytes.is_empty() {
            return Err(MediaError::EmptyKernel(kernel.to_path_buf()));
        }
        Ok(BootImage {
            kernel: kernel_bytes,
            initrd: read_input(initrd)?,
            cmdline: cmdline.to_string(),
        })
    }
}

/// What full media carry besides the boot image (docs/media.md): the policy the agent runs and
/// the content it needs, as written by `netdeploy deployment export`. Boot media carry none.
///
/// On the media: `netdeploy/policy.json` and `netdeploy/content/<sha256>`. ISO 9660 level 2
/// names stop at 30 characters, so on an ISO a content file is named by the first 30 hex
/// digits of its SHA-256 (the agent looks for both names and verifies the whole hash).
#[derive(Debug, Clone, Default)]
pub struct Payload {
    /// Paths under `netdeploy/`, in a stable order.
    pub files: Vec<(String, Vec<u8>)>,
}

/// Length of a content file's name on an ISO.
pub const ISO_CONTENT_NAME: usize = 30;

impl Payload {
    /// Reads a directory written by `netdeploy deployment export`: `policy.json` and
    /// `content/<sha256>`; anything else there is refused, so nothing unexpected lands on media.
    pub fn load(dir: &Path) -> Result<Payload, MediaError> {
        let bad = |why: String| MediaError::Payload {
            dir: dir.to_path_buf(),
            why,
        };
        let policy = dir.join("policy.json");
        let text = read_input(&policy)?;
        let json: serde_json::Value = serde_json::from_slice(&text)
            .map_err(|e| bad(format!("policy.json is not JSON: {e}")))?;
        if json.get("action").and_then(|a| a.as_str()) != Some("run") {
            return Err(bad("policy.json is not a task sequence to run \
                 (write it with netdeploy deployment export)"
                .into()));
        }
        let mut files = vec![("policy.json".to_string(), text)];
        let content = dir.join("content");
        let mut names = Vec::new();
        if content.exists() {
            for name in names_in(&content)? {
                if name.len() != 64 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(bad(format!(
                        "content/{name} is not named by a SHA-256 (64 hex digits)"
                    )));
                }
                names.push(name.to_ascii_lowercase());
            }
        }
        for name in names_in(dir)? {
            if name != "policy.json" && name != "content" {
                return Err(bad(format!(
                    "{name} does not belong there: only policy.json and content/"
                )));
            }
        }
        names.sort();
        for name in names {
            let bytes = read_input(&content.join(&name))?;
            files.push((format!("content/{name}"), bytes));
        }
        Ok(Payload { files })
    }

    /// Seals every step value marked secret in `policy.json` under `password`
    /// ([`netdeploy_wire::seal`]): the value leaves the policy and its sealed form takes its
    /// place, so no secret sits on the media in clear. A secret without a password is refused.
    /// Returns how many values were sealed.
    pub fn seal_secrets(
        &mut self,
        dir: &Path,
        password: Option<&str>,
    ) -> Result<usize, MediaError> {
        let bad = |why: String| MediaError::Payload {
            dir: dir.to_path_buf(),
            why,
        };
        let Some((_, text)) = self.files.iter_mut().find(|(n, _)| n == "policy.json") else {
            return Ok(0);
        };
        let mut policy: serde_json::Value = serde_json::from_slice(text)
            .map_err(|e| bad(format!("policy.json is not JSON: {e}")))?;
        let Some(steps) = policy.get_mut("steps").and_then(|s| s.as_array_mut()) else {
            return Ok(0);
        };
        let secret = |s: &serde_json::Value| {
            s.get("secret") == Some(&serde_json::Value::Bool(true))
                && s.get("value").is_some_and(|v| v.is_string())
        };
        let names: Vec<String> = steps
            .iter()
            .filter(|s| secret(s))
            .map(|s| s["name"].as_str().unwrap_or("?").to_owned())
            .collect();
        if names.is_empty() {
            return Ok(0);
        }
        let Some(password) = password else {
            return Err(bad(format!(
                "the task sequence has secret values (steps {}): full media with secrets need a                  media password (--password or NETDEPLOY_MEDIA_PASSWORD), under which they are                  stored encrypted",
                names.join(", ")
            )));
        };
        let random = |n: usize| -> Result<Vec<u8>, MediaError> {
            let mut b = vec![0u8; n];
            getrandom::fill(&mut b).map_err(|e| bad(format!("no random bytes to seal: {e}")))?;
            Ok(b)
        };
        let key =
            SealKey::derive(password, &random(seal::SALT_LEN)?).map_err(|e| bad(e.to_string()))?;
        for s in steps.iter_mut().filter(|s| secret(s)) {
            let value = s["value"].as_str().unwrap_or_default().to_owned();
            let nonce: [u8; seal::NONCE_LEN] = random(seal::NONCE_LEN)?
                .try_into()
                .expect("asked for NONCE_LEN bytes");
            let m = s.as_object_mut().expect("a step with a value is an object");
            m.remove("value");
            m.insert("sealed".into(), key.seal(&value, nonce).into());
        }
        *text = serde_json::to_vec_pretty(&policy).expect("JSON serializes");
        Ok(names.len())
    }

    /// True for full media.
    pub fn is_full(&self) -> bool {
        !self.files.is_empty()
    }

    /// The payload's files under `netdeploy/`, content names cut to `name_len` characters.
    /// Consumes the payload: its files go onto the media without a copy.
    fn into_entries(self, name_len: usize) -> impl Iterator<Item = (String, Vec<u8>)> {
        self.files.into_iter().map(move |(name, bytes)| {
            let name = match name.strip_prefix("content/") {
                Some(hash) => format!("content/{}", &hash[..name_len.min(hash.len())]),
                None => name,
            };
            (format!("netdeploy/{name}"), bytes)
        })
    }
}

/// The names of the entries of a directory.
fn names_in(dir: &Path) -> Result<Vec<String>, MediaError> {
    let err = |source| MediaError::Read {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::read_dir(dir)
        .map_err(err)?
        .map(|e| Ok(e.map_err(err)?.file_name().to_string_lossy().into_owned()))
        .collect()
}

fn read_input(path: &Path) -> Result<Vec<u8>, MediaError> {
    let err = |source| MediaError::Read {
        path: path.to_path_buf(),
        source,
    };
    let len = std::fs::metadata(path).map_err(err)?.len();
    fat::check_file_size(&path.display().to_string(), len)?;
    std::fs::read(path).map_err(err)
}

/// Refuses a kernel command line with a control character (a tab included): isolinux and
/// systemd-boot read their entries line by line.
pub fn check_cmdline(cmdline: &str) -> Result<(), MediaError> {
    match cmdline.chars().find(|c| c.is_control()) {
        Some(c) => Err(MediaError::CmdlineControl(c)),
        None => Ok(()),
    }
}

/// The user's command line plus the hint where the variables file is.
pub fn kernel_cmdline(user: &str) -> String {
    let hint = format!("netdeploy.vars={VARIABLES_PATH}");
    let user = user.trim();
    if user.is_empty() {
        hint
    } else {
        format!("{user} {hint}")
    }
}

/// Hash of everything that goes into the media: the seed of volume ids, disk signatures and
/// GUIDs, which must be stable across builds and differ between media.
fn seed(boot: &BootImage, variables: &str, payload: &Payload, t: &Timestamp) -> [u8; 32] {
    let mut h = Sha256::new();
    let parts = [
        &boot.kernel[..],
        &boot.initrd[..],
        boot.cmdline.as_bytes(),
        variables.as_bytes(),
    ];
    let payload = payload
        .files
        .iter()
        .flat_map(|(name, bytes)| [name.as_bytes(), &bytes[..]]);
    for part in parts.into_iter().chain(payload) {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    h.update(format!("{t:?}").as_bytes());
    h.finalize().into()
}

/// The EFI System Partition: systemd-boot as the removable-media loader, one loader entry
/// that boots the kernel at once, and the variables file.
#[allow(clippy::too_many_arguments)]
fn esp_image(
    boot: &BootImage,
    efi: &EfiLoader,
    variables: &str,
    payload: Option<Payload>,
    t: Timestamp,
    kind: FatKind,
    seed: &[u8; 32],
    extra: Vec<(String, Vec<u8>)>,
) -> Result<Vec<u8>, MediaError> {
    let entry = format!(
        "title netdeploy\nlinux /netdeploy/vmlinuz\ninitrd /netdeploy/initrd.img\noptions {}\n",
        kernel_cmdline(&boot.cmdline)
    );
    let mut files = vec![("EFI/BOOT/BOOTX64.EFI".into(), efi.bootx64_efi.clone())];
    match &efi.grubx64_efi {
        // Secure Boot: shim loads grubx64.efi from its own directory; Debian's signed GRUB
        // reads its prefix /EFI/debian on the partition it came from, else the file beside it.
        Some(grub) => {
            let cfg = grub_cfg(&boot.cmdline);
            files.push(("EFI/BOOT/grubx64.efi".into(), grub.clone()));
            files.push(("EFI/BOOT/grub.cfg".into(), cfg.clone().into_bytes()));
            files.push(("EFI/debian/grub.cfg".into(), cfg.into_bytes()));
        }
        None => {
            files.push((
                "loader/loader.conf".into(),
                b"default netdeploy.conf\ntimeout 0\n".to_vec(),
            ));
            files.push(("loader/entries/netdeploy.conf".into(), entry.into_bytes()));
        }
    }
    files.extend([
        ("netdeploy/vmlinuz".into(), boot.kernel.clone()),
        ("netdeploy/initrd.img".into(), boot.initrd.clone()),
        ("netdeploy/variables".into(), variables.as_bytes().to_vec()),
    ]);
    files.extend(extra);
    if let Some(p) = payload {
        for (name, bytes) in p.into_entries(64) {
            fat::check_file_size(&name, bytes.len() as u64)?;
            files.push((name, bytes));
        }
    }
    let spec = FatSpec {
        label: MEDIA_LABEL.into(),
        volume_id: u32::from_le_bytes([seed[0], seed[1], seed[2], seed[3]]),
        kind,
        timestamp: t,
        hidden_sectors: if kind == FatKind::Fat32 {
            usb::ESP_START as u32
        } else {
            0
        },
        files,
    };
    Ok(fat::write_image(&spec)?)
}

/// The signed GRUB's configuration (Secure Boot): boot the kernel at once from the partition
/// GRUB came from; shim checks the kernel's signature. Each word of the command line is
/// double-quoted with `$`, `"` and `\` escaped, so that GRUB passes it unchanged.
fn grub_cfg(cmdline: &str) -> String {
    let words: Vec<String> = kernel_cmdline(cmdline)
        .split_whitespace()
        .map(|w| {
            let escaped = w
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('$', "\\$");
            format!("\"{escaped}\"")
        })
        .collect();
    // GRUB reads the system partition of a USB stick (the kernel in /netdeploy) but the ISO 9660
    // tree of a CD (the kernel in /boot), whichever the firmware started it from.
    format!(
        "set timeout=0\necho 'netdeploy: booting the boot media through shim and GRUB'\n\
         if [ -e /netdeploy/vmlinuz ]; then set nd=/netdeploy; else set nd=/boot; fi\n\
         linux $nd/vmlinuz {}\ninitrd $nd/initrd.img\nboot\n",
        words.join(" ")
    )
}

/// ISOLINUX's configuration: boot the one entry at once, console also on the first serial port.
fn isolinux_cfg(cmdline: &str) -> String {
    syslinux_cfg("/boot", cmdline)
}

/// A syslinux-family configuration booting `dir/vmlinuz` with `dir/initrd.img`.
fn syslinux_cfg(dir: &str, cmdline: &str) -> String {
    format!(
        "SERIAL 0 115200\nDEFAULT netdeploy\nPROMPT 0\nTIMEOUT 0\n\nLABEL netdeploy\n  \
         LINUX {dir}/vmlinuz\n  INITRD {dir}/initrd.img\n  APPEND {}\n",
        kernel_cmdline(cmdline)
    )
}

/// Builds the hybrid ISO: El Torito BIOS (ISOLINUX, no emulation) and EFI (a FAT image with
/// systemd-boot) entries, and an MBR with the system partition so a raw USB copy boots UEFI
/// (and BIOS too when `isohdpfx.bin` is available).
pub fn build_iso(
    boot: &BootImage,
    variables: &str,
    payload: Payload,
    bios: &BiosLoader,
    efi: &EfiLoader,
    t: Timestamp,
) -> Result<Vec<u8>, MediaError> {
    let seed = seed(boot, variables, &payload, &t);
    // The system partition only starts the kernel; the initramfs reads the ISO 9660 tree.
    let esp = esp_image(
        boot,
        efi,
        variables,
        None,
        t,
        FatKind::Fat16,
        &seed,
        Vec::new(),
    )?;
    let mut files = std::collections::BTreeMap::new();
    files.insert(
        "isolinux/isolinux.bin".to_string(),
        bios.isolinux_bin.clone(),
    );
    files.insert("isolinux/ldlinux.c32".to_string(), bios.ldlinux_c32.clone());
    files.insert(
        "isolinux/isolinux.cfg".to_string(),
        isolinux_cfg(&boot.cmdline).into_bytes(),
    );
    files.insert("boot/vmlinuz".to_string(), boot.kernel.clone());
    files.insert("boot/initrd.img".to_string(), boot.initrd.clone());
    files.insert("boot/efi.img".to_string(), esp);
    if efi.grubx64_efi.is_some() {
        // Started from a CD, the signed GRUB sees the ISO 9660 tree, not the El Torito image:
        // its prefix /EFI/debian, else /boot/grub, else the directory it came from.
        let cfg = grub_cfg(&boot.cmdline).into_bytes();
        for name in [
            "EFI/debian/grub.cfg",
            "EFI/BOOT/grub.cfg",
            "boot/grub/grub.cfg",
        ] {
            files.insert(name.to_string(), cfg.clone());
        }
    }
    files.insert(
        "netdeploy/variables".to_string(),
        variables.as_bytes().to_vec(),
    );
    files.extend(payload.into_entries(ISO_CONTENT_NAME));
    let spec = IsoSpec {
        volume_id: MEDIA_LABEL.into(),
        files,
        boot: BootSpec {
            bios: Some("isolinux/isolinux.bin".into()),
            bios_info_table: true,
            efi: Some("boot/efi.img".into()),
        },
        timestamp: t,
    };
    let mut image = iso9660::write_image(&spec)?;
    let esp = image.extents["boot/efi.img"];
    let loader = image.extents["isolinux/isolinux.bin"];
    let sectors = (image.bytes.len() / iso9660::SECTOR) as u32;
    let mbr = mbr::isohybrid(
        sectors,
        Some((esp.lba, esp.len)),
        bios.isohdpfx.as_deref().map(|code| (code, loader.lba)),
        u32::from_le_bytes([seed[4], seed[5], seed[6], seed[7]]),
    );
    image.bytes[..512].copy_from_slice(&mbr.to_bytes());
    Ok(image.bytes)
}

/// Builds the USB disk image: GPT, one FAT32 system partition with systemd-boot, the boot
/// image and the variables file.
pub fn build_usb(
    boot: &BootImage,
    variables: &str,
    payload: Payload,
    efi: &EfiLoader,
    bios: Option<&UsbBiosLoader>,
    t: Timestamp,
) -> Result<Vec<u8>, MediaError> {
    let seed = seed(boot, variables, &payload, &t);
    // syslinux reads its configuration from the root of the partition it boots from; the
    // kernel and initrd are systemd-boot's own copies.
    let extra = match bios {
        Some(_) => vec![(
            "syslinux.cfg".to_owned(),
            syslinux_cfg("/netdeploy", &boot.cmdline).into_bytes(),
        )],
        None => Vec::new(),
    };
    let esp = esp_image(
        boot,
        efi,
        variables,
        Some(payload),
        t,
        FatKind::Fat32,
        &seed,
        extra,
    )?;
    let mut disk = usb::write_disk(&esp, &seed, bios.is_some())?;
    if let Some(b) = bios {
        disk[..b.gptmbr.len()].copy_from_slice(&b.gptmbr);
    }
    Ok(disk)
}

/// Installs syslinux's boot sector and `ldlinux.sys` onto the system partition of the USB image
/// at `image`, with the dates of `source_date_epoch` (Debian's installer, through mtools).
pub fn install_usb_bios(
    bios: &UsbBiosLoader,
    image: &Path,
    source_date_epoch: i64,
) -> Result<(), MediaError> {
    install_syslinux(&bios.installer, image, source_date_epoch)
}

/// Runs Debian's syslinux `installer` on the FAT partition at [`usb::ESP_START`] of the disk
/// image at `image` (its boot sector and `ldlinux.sys`), with the dates of `source_date_epoch`.
pub fn install_syslinux(
    installer: &Path,
    image: &Path,
    source_date_epoch: i64,
) -> Result<(), MediaError> {
    let offset = usb::ESP_START * crate::gpt::SECTOR;
    let out = std::process::Command::new(installer)
        .arg("--offset")
        .arg(offset.to_string())
        .arg("--install")
        .arg(image)
        .env("SOURCE_DATE_EPOCH", source_date_epoch.to_string())
        .env("MTOOLS_SKIP_CHECK", "1")
        .output()
        .map_err(|source| MediaError::Read {
            path: installer.to_path_buf(),
            source,
        })?;
    if !out.status.success() {
        return Err(MediaError::UsbBiosInstall(format!(
            "{} --offset {offset} --install {}: {}{}",
            installer.display(),
            image.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
                .trim()
                .lines()
                .last()
                .map(|l| format!(": {l}"))
                .unwrap_or_default()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secure_boot_grub_configuration_passes_each_word_unchanged_and_finds_the_kernel_on_either_tree(
    ) {
        let cfg = grub_cfg(r#"console=ttyS0 a=$x b="c" d=\e"#);
        assert!(
            cfg.contains(
                r#"linux $nd/vmlinuz "console=ttyS0" "a=\$x" "b=\"c\"" "d=\\e" "netdeploy.vars=/netdeploy/variables""#
            ),
            "{cfg}"
        );
        assert!(cfg.contains(
            "if [ -e /netdeploy/vmlinuz ]; then set nd=/netdeploy; else set nd=/boot; fi\n"
        ));
        assert!(cfg.contains("initrd $nd/initrd.img\nboot\n"), "{cfg}");
    }

    #[test]
    fn cmdline_gets_the_variables_hint() {
        assert_eq!(
            kernel_cmdline("console=ttyS0 "),
            "console=ttyS0 netdeploy.vars=/netdeploy/variables"
        );
        assert_eq!(kernel_cmdline(""), "netdeploy.vars=/netdeploy/variables");
    }

    #[test]
    fn isolinux_cfg_boots_the_kernel_with_initrd_and_hint() {
        let c = isolinux_cfg("console=ttyS0");
        assert!(c.contains("LINUX /boot/vmlinuz\n"));
        assert!(c.contains("INITRD /boot/initrd.img\n"));
        assert!(c.contains("APPEND console=ttyS0 netdeploy.vars=/netdeploy/variables\n"));
    }

    #[test]
    fn secret_values_are_sealed_under_the_password_and_refused_without_one() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("policy.json"),
            br#"{"action":"run","steps":[
                {"name":"join","action":"set_variable","variable":"P","value":"hunter2-long","secret":true},
                {"name":"plain","action":"set_variable","variable":"Q","value":"visible"}]}"#,
        )
        .unwrap();
        let mut p = Payload::load(dir.path()).unwrap();
        let err = p
            .clone()
            .seal_secrets(dir.path(), None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("steps join") && err.contains("--password"),
            "{err}"
        );

        assert_eq!(p.seal_secrets(dir.path(), Some("lab secret")).unwrap(), 1);
        let text = String::from_utf8(p.files[0].1.clone()).unwrap();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("visible"), "{text}");
        let policy: serde_json::Value = serde_json::from_str(&text).unwrap();
        let sealed = policy["steps"][0]["sealed"].as_str().unwrap();
        assert!(policy["steps"][0].get("value").is_none());
        let key = SealKey::derive("lab secret", &SealKey::salt_of(sealed).unwrap()).unwrap();
        assert_eq!(key.open(sealed).unwrap(), "hunter2-long");
    }

    #[test]
    fn a_full_media_directory_loads_and_iso_names_fit_level_two() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("policy.json"),
            br#"{"action":"run","steps":[]}"#,
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("content")).unwrap();
        let sha = "ab".repeat(32);
        std::fs::write(dir.path().join("content").join(&sha), b"bytes").unwrap();
        let p = Payload::load(dir.path()).unwrap();
        assert!(p.is_full());
        let iso: Vec<String> = p
            .clone()
            .into_entries(ISO_CONTENT_NAME)
            .map(|(n, _)| n)
            .collect();
        assert_eq!(
            iso,
            [
                "netdeploy/policy.json".to_string(),
                format!("netdeploy/content/{}", &sha[..30])
            ]
        );
        let fat: Vec<String> = p.into_entries(64).map(|(n, _)| n).collect();
        assert_eq!(fat[1], format!("netdeploy/content/{sha}"));

        std::fs::write(dir.path().join("notes.txt"), b"x").unwrap();
        let err = Payload::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("notes.txt does not belong there"), "{err}");
    }

    #[test]
    fn a_policy_that_runs_nothing_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("policy.json"),
            br#"{"action":"none","reason":"x"}"#,
        )
        .unwrap();
        let err = Payload::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("not a task sequence to run"), "{err}");
    }
}
