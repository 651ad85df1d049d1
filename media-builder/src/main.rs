//! `netdeploy-media`: builds netdeploy boot media.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use media_builder::bootloaders::Locator;
use media_builder::media::{self, BootImage, Format};
use media_builder::timestamp::{self, Timestamp};
use media_builder::variables::{MediaType, MediaVariables};
use media_builder::winpe;
use netdeploy_wire::password;

#[derive(Parser)]
#[command(
    name = "netdeploy-media",
    version,
    about = "Builds netdeploy boot media (hybrid ISO or USB disk image) from the Linux boot image, or from your own Windows PE files (build --winpe DIR)",
    after_help = REFERENCE
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The last line of the help: the how-to page, as the Debian package installs it too.
const REFERENCE: &str = "Reference: docs/media.md (installed in /usr/share/doc/netdeploy/docs/)";

#[derive(Subcommand)]
enum Command {
    /// Build boot media: the boot image plus /netdeploy/variables; with --full, also a task
    /// sequence's policy and content, so the media run it with no server. With --winpe, Windows
    /// PE media from your own Windows PE files instead, the agent put into its boot.wim. Dates
    /// come from SOURCE_DATE_EPOCH (0 when unset): same inputs, same bytes.
    #[command(after_help = REFERENCE)]
    Build(BuildArgs),
}

#[derive(clap::Args, Clone)]
struct BuildArgs {
    /// Linux kernel of the boot image.
    #[arg(long, required_unless_present = "winpe")]
    kernel: Option<PathBuf>,
    /// Initramfs of the boot image.
    #[arg(long, required_unless_present = "winpe")]
    initrd: Option<PathBuf>,
    /// Windows PE media instead of the Linux boot image: DIR is what the Windows ADK's
    /// `copype amd64 DIR` made (media/ with bootmgr, bootmgr.efi, Boot/BCD, Boot/boot.sdi,
    /// EFI/Boot/bootx64.efi, EFI/Microsoft/Boot/BCD, sources/boot.wim; fwfiles/ with
    /// efisys.bin and etfsboot.com), or its media/ folder. A copy of boot.wim gets
    /// netdeploy-agent.exe, winpeshl.ini (which starts it) and netdeploy.ini (the media
    /// variables) in \Windows\System32, through wimupdate (apt-get install wimtools); your files
    /// are not changed. The ISO boots UEFI through the ADK's efisys.bin, and BIOS through
    /// fwfiles/etfsboot.com when it is there; the USB image (MBR, one FAT32 partition) boots
    /// UEFI, and BIOS through syslinux's chain.c32 starting bootmgr (apt-get install syslinux
    /// syslinux-common mtools, or --uefi-only).
    #[arg(
        long,
        value_name = "DIR",
        conflicts_with_all = ["kernel", "initrd", "cmdline", "full", "bios_loader", "efi_loader", "secure_boot"]
    )]
    winpe: Option<PathBuf>,
    /// With --winpe: the Windows build of netdeploy-agent (cargo build --release --target
    /// x86_64-pc-windows-gnu -p netdeploy-agent). Default: netdeploy-agent.exe beside this
    /// program, else /usr/lib/netdeploy/netdeploy-agent.exe (where the Debian package puts it).
    #[arg(long, value_name = "PATH", requires = "winpe")]
    windows_agent: Option<PathBuf>,
    /// Kernel command line, on one line (control characters are refused);
    /// `netdeploy.vars=/netdeploy/variables` is appended.
    #[arg(long, default_value = "")]
    cmdline: String,
    /// The netdeploy server the booted machine asks for its policy (SMSTSServerURL). Full
    /// media need none; given there, status messages go to it when it can be reached.
    #[arg(long, required_unless_present = "full", default_value = "")]
    server_url: String,
    /// Full media: a directory written by `netdeploy deployment export ID --out DIR`
    /// (policy.json and content/). The media then run that task sequence without a server,
    /// verifying every file's SHA-256 (SMSTSMediaType=FullMedia).
    #[arg(long, value_name = "DIR")]
    full: Option<PathBuf>,
    /// Deployment to run unattended (SMSTSPreferredAdvertID).
    #[arg(long)]
    preferred_deployment: Option<String>,
    /// Password asked before a deployment runs; stored only as an argon2id hash (PHC string)
    /// with a random salt. An empty password is refused. Prefer the environment variable: a
    /// command line is visible to other users.
    #[arg(long, env = "NETDEPLOY_MEDIA_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// The password's salt, 8 to 48 bytes in hex, instead of a random one: for reproducible
    /// builds, where the same inputs must give the same bytes. Never derive it from the
    /// password.
    #[arg(
        long,
        env = "NETDEPLOY_MEDIA_PASSWORD_SALT",
        hide_env_values = true,
        value_name = "HEX",
        value_parser = parse_salt
    )]
    password_salt: Option<Salt>,
    /// The medium's key, from `netdeploy media key`: without it the server refuses a boot
    /// medium's policy request (NetdeployMediumKey, docs/security.md). Prefer the environment
    /// variable: a command line is visible to other users.
    #[arg(
        long,
        env = "NETDEPLOY_MEDIUM_KEY",
        hide_env_values = true,
        value_name = "KEY",
        value_parser = parse_medium_key
    )]
    medium_key: Option<netdeploy_wire::run_token::MediumKey>,
    /// The SHA-256 pin of the server's HTTPS certificate, `sha256:<hex>` as `netdeploy tls
    /// fingerprint` prints it: the agent then accepts that certificate only
    /// (NetdeployServerPin, docs/security.md). Needed when --server-url is https://.
    #[arg(long, value_name = "PIN", value_parser = parse_server_pin)]
    server_pin: Option<netdeploy_wire::cert_pin::CertPin>,
    #[arg(long, value_enum, default_value = "iso")]
    format: Format,
    /// Image to write (replaced if it exists; it is written as OUTPUT with the extension
    /// `.partial` first, and renamed when complete). It may not be one of the inputs.
    #[arg(long)]
    output: PathBuf,
    /// ISOLINUX isolinux.bin to use instead of the isolinux package's (ldlinux.c32 beside it is used if present).
    #[arg(long)]
    bios_loader: Option<PathBuf>,
    /// UEFI loader to install as EFI/BOOT/BOOTX64.EFI instead of systemd-boot-efi's (with
    /// --secure-boot: instead of shim-signed's shimx64.efi.signed).
    #[arg(long)]
    efi_loader: Option<PathBuf>,
    /// A USB image without its BIOS boot path (syslinux's MBR code, and syslinux on the
    /// system partition, installed by Debian's `syslinux` with `mtools`): it boots UEFI only.
    #[arg(long)]
    uefi_only: bool,
    /// Boot UEFI machines with Secure Boot enforced: Debian's signed shim as BOOTX64.EFI, the
    /// signed GRUB beside it, and the boot image's kernel, which must be signed by a key shim
    /// trusts (Debian's kernels are), instead of systemd-boot.
    #[arg(long)]
    secure_boot: bool,
    /// Signed GRUB to use with --secure-boot instead of grub-efi-amd64-signed's grubx64.efi.signed.
    #[arg(long, requires = "secure_boot")]
    signed_grub: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let Command::Build(args) = Cli::parse().command;
    build(args)
}

fn build(args: BuildArgs) -> anyhow::Result<()> {
    if args.password.as_deref().is_some_and(str::is_empty) {
        anyhow::bail!(
            "the media password is empty (--password or NETDEPLOY_MEDIA_PASSWORD): give a \
             password, or leave both out for media without one"
        );
    }
    if args
        .server_url
        .get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
        && args.server_pin.is_none()
    {
        anyhow::bail!(
            "--server-url is https:// but --server-pin is missing: the agent accepts only a              pinned certificate (give the output of `netdeploy tls fingerprint`)"
        );
    }
    if let Some(dir) = args.winpe.clone() {
        return build_winpe(&dir, args);
    }
    let (Some(kernel), Some(initrd)) = (args.kernel.clone(), args.initrd.clone()) else {
        anyhow::bail!("--kernel and --initrd are needed (or --winpe DIR for Windows PE media)");
    };
    media::check_cmdline(&args.cmdline)?;
    let mut inputs = vec![kernel.clone(), initrd.clone()];
    inputs.extend(args.bios_loader.iter().cloned());
    inputs.extend(args.efi_loader.iter().cloned());
    inputs.extend(args.signed_grub.iter().cloned());
    if let Some(dir) = &args.full {
        inputs.extend(files_below(dir));
    }
    refuse_output_over_input(&args.output, &inputs)?;
    let t = Timestamp::from_env().map_err(anyhow::Error::msg)?;
    let locator = Locator {
        bios_loader: args.bios_loader.clone(),
        efi_loader: args.efi_loader.clone(),
        secure_boot: args.secure_boot,
        signed_grub: args.signed_grub.clone(),
        ..Locator::default()
    };
    let efi = locator.efi()?;
    let bios = match args.format {
        Format::Iso => Some(locator.bios()?),
        Format::Usb => None,
    };
    let usb_bios = match args.format {
        Format::Usb if !args.uefi_only => Some(locator.usb_bios()?),
        _ => None,
    };
    let media_password = media_password(&args)?;
    let payload = match &args.full {
        Some(dir) => {
            let mut p = media::Payload::load(dir)?;
            let sealed = p.seal_secrets(dir, args.password.as_deref())?;
            if sealed > 0 {
                eprintln!("{sealed} secret value(s) sealed under the media password");
            }
            p
        }
        None => media::Payload::default(),
    };
    let media_type = if payload.is_full() {
        MediaType::FullMedia
    } else {
        MediaType::BootMedia
    };
    let variables = media_variables(args.clone(), media_type, media_password)?;
    let boot = BootImage::load(&kernel, &initrd, &args.cmdline)?;
    let image = match bios {
        Some(bios) => media::build_iso(&boot, &variables, payload, &bios, &efi, t)?,
        None => media::build_usb(&boot, &variables, payload, &efi, usb_bios.as_ref(), t)?,
    };
    let epoch = timestamp::source_date_epoch().map_err(anyhow::Error::msg)?;
    write_with_progress(&args.output, &image, |written| match &usb_bios {
        Some(b) => Ok(media::install_usb_bios(b, written, epoch)?),
        None => Ok(()),
    })?;
    eprintln!("wrote {} ({} bytes)", args.output.display(), image.len());
    Ok(())
}

/// The media password's hash, with the given salt or a random one.
fn media_password(args: &BuildArgs) -> anyhow::Result<Option<String>> {
    let Some(pw) = &args.password else {
        return Ok(None);
    };
    let salt = match &args.password_salt {
        Some(Salt(salt)) => salt.clone(),
        None => {
            let mut salt = vec![0u8; password::SALT_LEN];
            getrandom::fill(&mut salt)
                .map_err(|e| anyhow::anyhow!("no random salt for the password: {e}"))?;
            salt
        }
    };
    Ok(Some(password::hash(pw, &salt)?))
}

/// The variables file of every medium, Linux or Windows PE, from the same options: the
/// server, the media kind, the preferred deployment, the password's hash, the medium's key and
/// the server's pin.
fn media_variables(
    args: BuildArgs,
    media_type: MediaType,
    media_password: Option<String>,
) -> anyhow::Result<String> {
    Ok(MediaVariables {
        server_url: Some(args.server_url).filter(|u| !u.is_empty()),
        media_type,
        preferred_advert_id: args.preferred_deployment,
        media_password,
        medium_key: args.medium_key.map(|k| k.to_string()),
        mac: None,
        run_token: None,
        server_pin: args.server_pin,
    }
    .render()?)
}

/// `build --winpe DIR`: Windows PE media, the agent, `winpeshl.ini` and the variables put into a
/// copy of the user's `boot.wim`.
fn build_winpe(dir: &Path, args: BuildArgs) -> anyhow::Result<()> {
    let found = winpe::WinPeDir::locate(dir)?;
    let agent_path = winpe::find_agent(args.windows_agent.as_deref())?;
    let mut inputs: Vec<PathBuf> = found.required.iter().map(|(_, p)| p.clone()).collect();
    inputs.push(agent_path.clone());
    refuse_output_over_input(&args.output, &inputs)?;
    let t = Timestamp::from_env().map_err(anyhow::Error::msg)?;
    let agent = std::fs::read(&agent_path)
        .with_context(|| format!("reading the Windows agent {}", agent_path.display()))?;
    let media_password = media_password(&args)?;
    let (format, output) = (args.format, args.output.clone());
    // What the medium boots with is checked before boot.wim is copied and updated.
    let usb_bios = match format {
        Format::Iso => {
            found.check_iso()?;
            None
        }
        Format::Usb if args.uefi_only => None,
        Format::Usb => Some(Locator::default().winpe_usb_bios()?),
    };
    let variables = media_variables(args, MediaType::BootMedia, media_password)?;
    eprintln!(
        "putting {} into {}",
        agent_path.display(),
        found.path("sources/boot.wim").display()
    );
    let boot_wim = winpe::inject(
        found.path("sources/boot.wim"),
        &winpe::injected_files(agent, &variables),
    )?;
    let files = winpe::medium_files(&found, boot_wim)?;
    let (image, boots) = match format {
        Format::Iso => {
            let (image, bios) = winpe::build_iso(&found, files, t)?;
            let boots = if bios {
                "UEFI and BIOS (fwfiles/etfsboot.com)".to_owned()
            } else {
                format!(
                    "UEFI only: no etfsboot.com in {}, so no BIOS boot",
                    dir.join("fwfiles").display()
                )
            };
            (image, boots)
        }
        Format::Usb => (
            winpe::build_usb(files, usb_bios.as_ref(), t)?,
            match usb_bios {
                Some(_) => "UEFI and BIOS (syslinux, chain.c32 ntldr=/bootmgr)",
                None => "UEFI only (--uefi-only)",
            }
            .to_owned(),
        ),
    };
    let epoch = timestamp::source_date_epoch().map_err(anyhow::Error::msg)?;
    write_with_progress(&output, &image, |written| match &usb_bios {
        Some(b) => Ok(media::install_syslinux(&b.installer, written, epoch)?),
        None => Ok(()),
    })?;
    eprintln!(
        "wrote {} ({} bytes): Windows PE media, boots {boots}",
        output.display(),
        image.len()
    );
    Ok(())
}

/// Every file below `dir` (unreadable entries are left to the payload loader to report).
fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn partial(output: &Path) -> PathBuf {
    output.with_extension("partial")
}

/// The output (or its temporary file) must not be one of the inputs, by name or as the same
/// file under another name (a hard or symbolic link): building would overwrite the input.
fn refuse_output_over_input(output: &Path, inputs: &[PathBuf]) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let id = |p: &Path| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    for written in [output.to_path_buf(), partial(output)] {
        let Some(w) = id(&written) else { continue };
        if let Some(input) = inputs.iter().find(|i| id(i) == Some(w)) {
            anyhow::bail!(
                "--output {}: {} is the input {}; the media would overwrite it (nothing was written)",
                output.display(),
                written.display(),
                input.display()
            );
        }
    }
    Ok(())
}

/// `--medium-key`: `<id>.<secret>` as `netdeploy media key` prints it.
fn parse_medium_key(s: &str) -> Result<netdeploy_wire::run_token::MediumKey, String> {
    s.trim().parse()
}

/// `--server-pin`: `sha256:<hex>` as `netdeploy tls fingerprint` prints it.
fn parse_server_pin(s: &str) -> Result<netdeploy_wire::cert_pin::CertPin, String> {
    s.trim().parse()
}

/// The bytes of `--password-salt`.
#[derive(Clone)]
struct Salt(Vec<u8>);

/// `--password-salt`: 8 to 48 bytes of hex (PHC salts are 4 to 64 characters of base64).
fn parse_salt(s: &str) -> Result<Salt, String> {
    match netdeploy_wire::hex::decode(s) {
        Some(b) if (8..=48).contains(&b.len()) => Ok(Salt(b)),
        _ => Err("expected 16 to 96 hex digits (8 to 48 bytes)".into()),
    }
}

/// Writes through a temporary file beside the output, then renames, so a failed build
/// never leaves a half image under the output name, and removes the temporary file when
/// writing fails.
/// Writes `image` to the output's partial file, runs `finish` on it, then renames it.
fn write_with_progress(
    output: &Path,
    image: &[u8],
    finish: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let tmp = partial(output);
    let written = write_file(&tmp, output, image, finish);
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

fn write_file(
    tmp: &Path,
    output: &Path,
    image: &[u8],
    finish: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let bar = ProgressBar::with_draw_target(
        Some(image.len() as u64),
        indicatif::ProgressDrawTarget::stderr(),
    );
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {bytes}/{total_bytes}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(format!("writing {}", output.display()));
    let mut f =
        std::fs::File::create(tmp).with_context(|| format!("creating {}", tmp.display()))?;
    for chunk in image.chunks(1 << 20) {
        f.write_all(chunk)
            .with_context(|| format!("writing {}", tmp.display()))?;
        bar.inc(chunk.len() as u64);
    }
    f.sync_all()?;
    drop(f);
    bar.finish_and_clear();
    finish(tmp)?;
    std::fs::rename(tmp, output).with_context(|| format!("renaming to {}", output.display()))?;
    Ok(())
}
