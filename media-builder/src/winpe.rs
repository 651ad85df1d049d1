//! Windows PE boot media from a user's own Windows PE files (docs/media.md, "Windows PE
//! media"): the ADK's `copype` output, with the netdeploy agent, the `winpeshl.ini` that
//! starts it and the media variables (`netdeploy.ini`) put into `boot.wim` by wimlib's
//! `wimupdate` (Debian's `wimtools`).
//!
//! On the medium, UEFI firmware starts `EFI/Boot/bootx64.efi` (Windows Boot Manager), which
//! reads `EFI/Microsoft/Boot/BCD` and boots `sources/boot.wim` from a RAM disk with
//! `Boot/boot.sdi`. On the ISO, the El Torito EFI image is the ADK's own `efisys` image
//! (its CD boot loader finds the files in the ISO 9660 tree); BIOS machines boot the ISO
//! through the ADK's `etfsboot.com`, which starts `bootmgr` with `Boot/BCD`, when the user's
//! `fwfiles/` has it. The USB image is an MBR disk with one FAT32 partition holding the
//! same tree; BIOS machines boot it through syslinux, whose chain loader starts `bootmgr`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

use crate::bootloaders::WinPeUsbBios;
use crate::fat::{self, FatKind, FatSpec};
use crate::iso9660::{self, BootSpec, IsoSpec};
use crate::mbr;
use crate::media::{MediaError, MEDIA_LABEL};
use crate::timestamp::Timestamp;
use crate::usb;
use netdeploy_wire::winpe;

/// The files every Windows PE medium needs, as `copype` lays them out under `media/`.
pub const REQUIRED: [&str; 7] = [
    "bootmgr",
    "bootmgr.efi",
    "Boot/BCD",
    "Boot/boot.sdi",
    "EFI/Boot/bootx64.efi",
    "EFI/Microsoft/Boot/BCD",
    "sources/boot.wim",
];

/// The boot image inside the medium, which gets the agent and its files.
const BOOT_WIM: &str = "sources/boot.wim";

/// The ADK's El Torito EFI images, in the order tried: under `fwfiles/` of a `copype`
/// directory, else in the media's `EFI/Microsoft/Boot/`.
const EFISYS: [&str; 2] = ["efisys_noprompt.bin", "efisys.bin"];

/// The ADK's El Torito BIOS boot sector for `bootmgr`, under `fwfiles/`.
const ETFSBOOT: &str = "etfsboot.com";

/// The ADK's CD boot loaders, from which an El Torito EFI image is made when no `efisys`
/// image is there.
const CDBOOT: [&str; 2] = ["cdboot_noprompt.efi", "cdboot.efi"];

#[derive(Debug, thiserror::Error)]
pub enum WinPeError {
    #[error(
        "{dir} is not a Windows PE directory: {file} is missing (looked at {looked}); give the \
         directory the ADK's `copype amd64 DIR` made, or its media/ folder"
    )]
    Missing {
        dir: PathBuf,
        file: &'static str,
        looked: PathBuf,
    },
    #[error(
        "no Windows agent: {looked} is not a file; build it with `cargo build --release \
         --target x86_64-pc-windows-gnu -p netdeploy-agent` and give it with --windows-agent PATH"
    )]
    NoAgent { looked: String },
    #[error(
        "the ISO needs the ADK's El Torito EFI image: none of {looked} is a file (copype puts \
         efisys.bin in fwfiles/); or build --format usb"
    )]
    NoCdEfi { looked: String },
    #[error("{tool} is missing ({source}): apt-get install wimtools")]
    NoWimlib {
        tool: &'static str,
        source: std::io::Error,
    },
    #[error("{command} failed ({status}): {stderr}")]
    Wimlib {
        command: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> WinPeError + '_ {
    move |source| WinPeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A user's Windows PE files, found but not read yet.
#[derive(Debug, Clone)]
pub struct WinPeDir {
    /// The folder that becomes the medium's root (`media/` of a `copype` directory).
    pub media: PathBuf,
    /// Each of [`REQUIRED`], where it is (names are matched without regard to case, as
    /// Windows wrote them).
    pub required: Vec<(&'static str, PathBuf)>,
    /// `fwfiles/etfsboot.com`, when there: the ISO then boots BIOS machines too.
    pub etfsboot: Option<PathBuf>,
    /// The ADK's El Torito EFI image, when there.
    pub efisys: Option<PathBuf>,
    /// The ADK's CD boot loader, when there and no `efisys` image is.
    pub cdboot: Option<PathBuf>,
    /// What was looked at for the El Torito EFI image, for the error when none is there.
    cd_efi_looked: Vec<PathBuf>,
}

/// `rel` below `base`, each component matched without regard to ASCII case.
pub fn find_case_insensitive(base: &Path, rel: &str) -> Option<PathBuf> {
    let exact = base.join(rel);
    if exact.exists() {
        return Some(exact);
    }
    let mut at = base.to_path_buf();
    for comp in rel.split('/') {
        let found = std::fs::read_dir(&at)
            .ok()?
            .flatten()
            .find(|e| e.file_name().to_string_lossy().eq_ignore_ascii_case(comp))?;
        at = found.path();
    }
    Some(at)
}

impl WinPeDir {
    /// Finds the files in `dir`: a `copype` directory (`media/`, `fwfiles/`) or a media
    /// folder itself. A missing required file is named, with the path looked at.
    pub fn locate(dir: &Path) -> Result<WinPeDir, WinPeError> {
        let (media, fwfiles) = match find_case_insensitive(dir, "media").filter(|m| m.is_dir()) {
            Some(m) => (m, find_case_insensitive(dir, "fwfiles")),
            None => (dir.to_path_buf(), None),
        };
        let mut required = Vec::new();
        for file in REQUIRED {
            match find_case_insensitive(&media, file).filter(|p| p.is_file()) {
                Some(p) => required.push((file, p)),
                None => {
                    return Err(WinPeError::Missing {
                        dir: dir.to_path_buf(),
                        file,
                        looked: media.join(file),
                    })
                }
            }
        }
        let in_fwfiles = |name: &str| fwfiles.as_ref().map(|f| f.join(name));
        let ms_boot = |name: &str| media.join("EFI/Microsoft/Boot").join(name);
        let mut cd_efi_looked: Vec<PathBuf> = EFISYS.iter().filter_map(|n| in_fwfiles(n)).collect();
        cd_efi_looked.extend(EFISYS.iter().map(|n| ms_boot(n)));
        cd_efi_looked.extend(CDBOOT.iter().map(|n| ms_boot(n)));
        let found = |p: &PathBuf| {
            let parent = p.parent()?;
            find_case_insensitive(parent, &p.file_name()?.to_string_lossy()).filter(|f| f.is_file())
        };
        let n_efisys = cd_efi_looked.len() - CDBOOT.len();
        let efisys = cd_efi_looked[..n_efisys].iter().find_map(found);
        let cdboot = cd_efi_looked[n_efisys..].iter().find_map(found);
        let etfsboot = fwfiles
            .as_ref()
            .and_then(|f| find_case_insensitive(f, ETFSBOOT))
            .filter(|p| p.is_file());
        Ok(WinPeDir {
            media,
            required,
            etfsboot,
            efisys,
            cdboot,
            cd_efi_looked,
        })
    }

    /// The path of one of [`REQUIRED`].
    pub fn path(&self, file: &str) -> &Path {
        &self
            .required
            .iter()
            .find(|(f, _)| *f == file)
            .expect("one of REQUIRED")
            .1
    }

    /// Refuses an ISO build when the ADK's El Torito EFI image and CD boot loader are both
    /// missing, naming where they were looked for: before any work is done.
    pub fn check_iso(&self) -> Result<(), WinPeError> {
        match (&self.efisys, &self.cdboot) {
            (None, None) => Err(self.no_cd_efi()),
            _ => Ok(()),
        }
    }

    fn no_cd_efi(&self) -> WinPeError {
        let looked = self
            .cd_efi_looked
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        WinPeError::NoCdEfi { looked }
    }

    /// The ISO's El Torito EFI image: the ADK's `efisys` image, else a FAT image with the
    /// ADK's CD boot loader as `EFI/Boot/bootx64.efi` (the layout of `efisys`).
    fn cd_efi_image(&self, t: Timestamp, volume_id: u32) -> Result<Vec<u8>, MediaError> {
        let cdboot = match (&self.efisys, &self.cdboot) {
            (Some(efisys), _) => return read(efisys),
            (None, Some(cdboot)) => cdboot,
            (None, None) => return Err(self.no_cd_efi().into()),
        };
        let spec = FatSpec {
            label: "EFISECTOR".into(),
            volume_id,
            kind: FatKind::Fat16,
            timestamp: t,
            hidden_sectors: 0,
            files: vec![("EFI/Boot/bootx64.efi".into(), read(cdboot)?)],
        };
        Ok(fat::write_image(&spec)?)
    }
}

/// The Windows agent: `named` (`--windows-agent`), else beside this program, else where the
/// Debian package installs it (the rule the server follows, [`winpe::agent_candidates`]).
pub fn find_agent(named: Option<&Path>) -> Result<PathBuf, WinPeError> {
    let exe = std::env::current_exe().ok();
    let candidates = match named {
        Some(p) => vec![p.to_path_buf()],
        None => winpe::agent_candidates(exe.as_deref()),
    };
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| WinPeError::NoAgent {
            looked: candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", nor "),
        })
}

/// What goes into `\Windows\System32` of `boot.wim`: the agent, `winpeshl.ini` and the media
/// variables as `netdeploy.ini`.
pub fn injected_files(agent: Vec<u8>, variables: &str) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (winpe::AGENT_EXE, agent),
        (winpe::WINPESHL_INI, winpe::winpeshl_ini().into_bytes()),
        (winpe::VARIABLES_INI, variables.as_bytes().to_vec()),
    ]
}

/// A `wimupdate` command script adding each file of `dir` named in `files` to
/// `\Windows\System32` (wimlib takes `/` in image paths; double quotes around both paths).
pub fn wimupdate_commands(dir: &Path, files: &[(&str, Vec<u8>)]) -> String {
    files
        .iter()
        .map(|(name, _)| {
            format!(
                "add \"{}\" \"{}/{name}\"\n",
                dir.join(name).display(),
                winpe::SYSTEM32.replace('\\', "/")
            )
        })
        .collect()
}

/// The image `wimupdate` changes: the WIM's boot index (the image bootmgr boots), else the
/// first, from `wimlib-imagex info`.
fn boot_image_index(wim: &Path) -> Result<u32, WinPeError> {
    let text = run("wimlib-imagex", &["info".as_ref(), wim.as_os_str()], None)?;
    let boot_index = text
        .lines()
        .find_map(|l| l.strip_prefix("Boot Index:"))
        .and_then(|v| v.trim().parse::<u32>().ok());
    Ok(boot_index.filter(|i| *i > 0).unwrap_or(1))
}

/// Runs a wimlib `tool` with `args`, and `stdin` as its input; returns its standard output.
fn run(
    tool: &'static str,
    args: &[&std::ffi::OsStr],
    stdin: Option<&str>,
) -> Result<String, WinPeError> {
    let shown = std::iter::once(tool.to_owned())
        .chain(args.iter().map(|a| a.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = Command::new(tool)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| WinPeError::NoWimlib { tool, source })?;
    if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
        input
            .write_all(text.as_bytes())
            .map_err(io(Path::new(tool)))?;
    }
    let out = child.wait_with_output().map_err(io(Path::new(tool)))?;
    if !out.status.success() {
        return Err(WinPeError::Wimlib {
            command: shown,
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Copies `boot_wim` into a temporary directory, adds `files` to `\Windows\System32` of its
/// boot image with `wimupdate`, and returns the changed WIM's bytes. The user's file is never
/// written.
pub fn inject(boot_wim: &Path, files: &[(&str, Vec<u8>)]) -> Result<Vec<u8>, WinPeError> {
    let work = tempfile::Builder::new()
        .prefix("netdeploy-winpe-")
        .tempdir()
        .map_err(io(&std::env::temp_dir()))?;
    let wim = work.path().join("boot.wim");
    std::fs::copy(boot_wim, &wim).map_err(io(boot_wim))?;
    let add = work.path().join("add");
    std::fs::create_dir(&add).map_err(io(&add))?;
    for (name, bytes) in files {
        let p = add.join(name);
        std::fs::write(&p, bytes).map_err(io(&p))?;
    }
    let index = boot_image_index(&wim)?;
    let index = index.to_string();
    run(
        "wimupdate",
        &[wim.as_os_str(), index.as_ref()],
        Some(&wimupdate_commands(&add, files)),
    )?;
    std::fs::read(&wim).map_err(io(&wim))
}

fn read(path: &Path) -> Result<Vec<u8>, MediaError> {
    std::fs::read(path).map_err(|source| MediaError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The medium's files: [`REQUIRED`] from the user's folder, `boot.wim` replaced by `boot_wim`.
pub fn medium_files(
    dir: &WinPeDir,
    boot_wim: Vec<u8>,
) -> Result<Vec<(String, Vec<u8>)>, MediaError> {
    let mut files = Vec::new();
    for (name, path) in &dir.required {
        if *name == BOOT_WIM {
            continue;
        }
        files.push((name.to_string(), read(path)?));
    }
    files.push((BOOT_WIM.to_string(), boot_wim));
    Ok(files)
}

/// Hash of the medium's files and date: the seed of volume ids and GUIDs.
fn seed(files: &[(String, Vec<u8>)], t: &Timestamp) -> [u8; 32] {
    let mut h = Sha256::new();
    for (name, bytes) in files {
        for part in [name.as_bytes(), &bytes[..]] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
    }
    h.update(format!("{t:?}").as_bytes());
    h.finalize().into()
}

/// Where the El Torito images sit in the ISO 9660 tree.
const ISO_EFI_IMAGE: &str = "Boot/efisys.bin";
const ISO_BIOS_LOADER: &str = "Boot/etfsboot.com";

/// Builds the WinPE ISO: the medium's tree in ISO 9660, El Torito EFI (the ADK's `efisys`
/// image) and, when `fwfiles/etfsboot.com` is there, El Torito BIOS. Returns the image and
/// whether BIOS machines boot it.
pub fn build_iso(
    dir: &WinPeDir,
    files: Vec<(String, Vec<u8>)>,
    t: Timestamp,
) -> Result<(Vec<u8>, bool), MediaError> {
    let seed = seed(&files, &t);
    let efi = dir.cd_efi_image(t, u32::from_le_bytes([seed[0], seed[1], seed[2], seed[3]]))?;
    let mut tree: BTreeMap<String, Vec<u8>> = files.into_iter().collect();
    tree.insert(ISO_EFI_IMAGE.into(), efi);
    let bios = match &dir.etfsboot {
        Some(p) => {
            tree.insert(ISO_BIOS_LOADER.into(), read(p)?);
            Some(ISO_BIOS_LOADER.to_string())
        }
        None => None,
    };
    let has_bios = bios.is_some();
    let spec = IsoSpec {
        volume_id: MEDIA_LABEL.into(),
        files: tree,
        boot: BootSpec {
            bios,
            bios_info_table: false,
            efi: Some(ISO_EFI_IMAGE.into()),
        },
        timestamp: t,
    };
    Ok((iso9660::write_image(&spec)?.bytes, has_bios))
}

/// The syslinux configuration of the Windows PE USB image's BIOS path: at once, syslinux's
/// chain loader starts `bootmgr` from the partition syslinux booted from, as NTLDR-style
/// loaders expect (the boot sector's parameters in place, the file at 2000:0000).
pub const SYSLINUX_CFG: &str =
    "DEFAULT winpe\nPROMPT 0\nTIMEOUT 0\n\nLABEL winpe\n  COM32 chain.c32\n  APPEND fs ntldr=/bootmgr\n";

/// Builds the WinPE USB image: an MBR disk with one active FAT32 partition at 1 MiB holding the
/// medium's tree. UEFI firmware starts `EFI/Boot/bootx64.efi` from it; with `bios`, BIOS
/// firmware runs syslinux's MBR code, then syslinux (installed onto the partition afterwards by
/// [`crate::media::install_syslinux`]), whose chain loader starts `bootmgr`.
pub fn build_usb(
    mut files: Vec<(String, Vec<u8>)>,
    bios: Option<&WinPeUsbBios>,
    t: Timestamp,
) -> Result<Vec<u8>, MediaError> {
    let seed = seed(&files, &t);
    if let Some(b) = bios {
        files.push(("syslinux.cfg".into(), SYSLINUX_CFG.as_bytes().to_vec()));
        files.extend(b.modules.iter().cloned());
    }
    for (name, bytes) in &files {
        fat::check_file_size(name, bytes.len() as u64)?;
    }
    let spec = FatSpec {
        label: MEDIA_LABEL.into(),
        volume_id: u32::from_le_bytes([seed[0], seed[1], seed[2], seed[3]]),
        kind: FatKind::Fat32,
        timestamp: t,
        hidden_sectors: usb::ESP_START as u32,
        files,
    };
    let part = fat::write_image(&spec)?;
    let start = usb::ESP_START as usize * 512;
    let mut disk = vec![0u8; start + part.len()];
    disk[start..].copy_from_slice(&part);
    let sectors =
        u32::try_from(part.len() / 512).map_err(|_| MediaError::Fat(fat::FatError::TooLarge))?;
    let mut partitions = [mbr::Partition::default(); 4];
    partitions[0] = mbr::Partition {
        bootable: true,
        kind: mbr::TYPE_FAT32_LBA,
        start: usb::ESP_START as u32,
        sectors,
    };
    let table = mbr::Mbr {
        boot_code: bios.map(|b| b.mbr.clone()).unwrap_or_default(),
        isohybrid_loader_sector: None,
        disk_signature: u32::from_le_bytes([seed[4], seed[5], seed[6], seed[7]]),
        partitions,
    };
    disk[..512].copy_from_slice(&table.to_bytes());
    Ok(disk)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copype(dir: &Path) {
        for f in REQUIRED {
            let p = dir.join("media").join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, f.as_bytes()).unwrap();
        }
    }

    #[test]
    fn a_missing_file_is_named_with_the_path_looked_at() {
        let dir = tempfile::tempdir().unwrap();
        copype(dir.path());
        std::fs::remove_file(dir.path().join("media/Boot/boot.sdi")).unwrap();
        let err = WinPeDir::locate(dir.path()).unwrap_err().to_string();
        let looked = dir.path().join("media").join("Boot/boot.sdi");
        assert!(
            err.contains("Boot/boot.sdi is missing")
                && err.contains(&format!("looked at {}", looked.display())),
            "{err}"
        );
    }

    #[test]
    fn names_match_without_regard_to_case_and_the_adk_boot_files_are_found() {
        let dir = tempfile::tempdir().unwrap();
        copype(dir.path());
        std::fs::rename(
            dir.path().join("media/EFI/Boot"),
            dir.path().join("media/EFI/BOOT"),
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("fwfiles")).unwrap();
        std::fs::write(dir.path().join("fwfiles/etfsboot.com"), b"e").unwrap();
        std::fs::write(dir.path().join("fwfiles/efisys.bin"), b"f").unwrap();
        let w = WinPeDir::locate(dir.path()).unwrap();
        assert_eq!(
            w.path("EFI/Boot/bootx64.efi"),
            dir.path().join("media/EFI/BOOT/bootx64.efi")
        );
        assert_eq!(w.etfsboot, Some(dir.path().join("fwfiles/etfsboot.com")));
        assert_eq!(w.efisys, Some(dir.path().join("fwfiles/efisys.bin")));
    }

    #[test]
    fn the_media_folder_itself_is_accepted_and_then_the_iso_has_no_bios_loader() {
        let dir = tempfile::tempdir().unwrap();
        copype(dir.path());
        let w = WinPeDir::locate(&dir.path().join("media")).unwrap();
        assert_eq!(w.media, dir.path().join("media"));
        assert_eq!(w.etfsboot, None);
    }

    #[test]
    fn wimupdate_adds_each_file_to_system32() {
        let files = injected_files(b"MZ".to_vec(), "[netdeploy]\r\n");
        assert_eq!(
            wimupdate_commands(Path::new("/tmp/w/add"), &files),
            "add \"/tmp/w/add/netdeploy-agent.exe\" \"/Windows/System32/netdeploy-agent.exe\"\n\
             add \"/tmp/w/add/winpeshl.ini\" \"/Windows/System32/winpeshl.ini\"\n\
             add \"/tmp/w/add/netdeploy.ini\" \"/Windows/System32/netdeploy.ini\"\n"
        );
    }
}
