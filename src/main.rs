//! The `netdeploy` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

mod cli;

/// netdeploy: network-boot (PXE/iPXE, BIOS and UEFI) and deployment server.
///
/// It answers DHCP/proxyDHCP for PXE clients, serves first-stage boot files over TFTP and iPXE
/// scripts and boot images over HTTP.
#[derive(Debug, Parser)]
#[command(
    version,
    propagate_version = true,
    after_help = "Reference: README.md and docs/ (installed in /usr/share/doc/netdeploy/)"
)]
struct Cli {
    /// Log filter (tracing's syntax), e.g. `info`, `debug`, `netdeploy::tftp=debug`.
    #[arg(long, global = true, env = "NETDEPLOY_LOG", default_value = "info")]
    log: String,
    #[command(flatten)]
    locate: cli::locate::Locate,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server: DHCP/PXE, TFTP and HTTP on the configured interfaces.
    ///
    /// The configuration is `--config FILE`, else NETDEPLOY_CONFIG, else
    /// /etc/netdeploy/netdeploy.toml. Prints one JSON line on standard output when every port
    /// is bound (with the addresses and ports chosen), logs to standard error, and stops
    /// cleanly on SIGINT or SIGTERM. Serving DHCP on port 67 needs root (or
    /// CAP_NET_BIND_SERVICE and CAP_NET_RAW).
    Serve,
    /// Check the configuration (found as `serve` finds it) and print what it resolves to,
    /// without serving.
    Check,
    /// Print an annotated example configuration.
    ConfigExample,
    /// Site files: declare a whole lab's catalog and apply it in one command.
    #[command(subcommand)]
    Site(cli::site::SiteCommand),
    /// Devices (machines known by MAC and SMBIOS UUID).
    #[command(subcommand)]
    Device(cli::device::DeviceCommand),
    /// Collections of devices (built in: all_systems, unknown_computers).
    #[command(subcommand)]
    Collection(cli::collection::CollectionCommand),
    /// Packages (content referenced by task sequence steps).
    #[command(subcommand)]
    Package(cli::package::PackageCommand),
    /// Boot images (what PXE and media start).
    #[command(subcommand)]
    BootImage(cli::boot_image::BootImageCommand),
    /// Task sequences (ordered steps run in the boot environment).
    #[command(subcommand)]
    TaskSequence(cli::task_sequence::TaskSequenceCommand),
    /// Deployments of task sequences to collections.
    #[command(subcommand)]
    Deployment(cli::deployment::DeploymentCommand),
    /// Say which deployment a machine would get and why every other one was not chosen.
    Explain(cli::explain::ExplainArgs),
    /// Build boot media (ISO or USB image): runs `netdeploy-media` with these arguments, the
    /// one beside this executable first, else the one on PATH. See docs/media.md. Also
    /// `media key` (a new medium's key, for `media build --medium-key`), `media keys` and
    /// `media revoke ID` (docs/security.md).
    #[command(disable_help_flag = true)]
    Media {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Send wake-on-LAN magic packets on the served interfaces (of the configuration).
    Wake(cli::wake::WakeArgs),
    /// Where each deployment stands: the five states per collection, failures over time.
    Status(cli::status::StatusArgs),
    /// The PXE loop guard (docs/selection-rules.md rule 7) and the PXE password (rule 9).
    #[command(subcommand)]
    Pxe(cli::pxe::PxeCommand),
    /// The content library (files stored once by SHA-256).
    #[command(subcommand)]
    Content(cli::content::ContentCommand),
    /// Deployment alerts: raised when a deployment's failures pass its threshold.
    #[command(subcommand)]
    Alert(cli::alert::AlertCommand),
    /// HTTPS of the agent and the admin API (`[http.tls]`): the certificate's pin.
    #[command(subcommand)]
    Tls(cli::tls::TlsCommand),
    /// Multicast imaging: send an image package to many machines at once.
    #[command(subcommand)]
    Multicast(cli::multicast::MulticastCommand),
}

const EXAMPLE: &str = include_str!("../netdeploy.example.toml");

/// Where the Debian package installs `docs/` (packaging/build-deb.sh): the help names the
/// installed page too, since an installed binary has no repository beside it.
const INSTALLED_DOCS: &str = "/usr/share/doc/netdeploy/docs/";

/// The reference pages under `docs/` of each command, named on the last line of its help and
/// of the help of each of its subcommands.
const REFERENCES: &[(&str, &[&str])] = &[
    ("serve", &["configuration.md"]),
    ("check", &["configuration.md"]),
    ("config-example", &["configuration.md"]),
    ("site", &["site-file.md"]),
    ("device", &["site-file.md"]),
    ("collection", &["site-file.md"]),
    ("package", &["site-file.md"]),
    ("boot-image", &["site-file.md"]),
    ("task-sequence", &["site-file.md"]),
    ("deployment", &["deployment-checks.md"]),
    ("explain", &["selection-rules.md", "operating.md"]),
    ("media", &["media.md"]),
    ("wake", &["operating.md"]),
    ("status", &["status.md"]),
    ("pxe", &["selection-rules.md", "operating.md"]),
    ("content", &["content.md"]),
    ("alert", &["status.md"]),
    ("tls", &["security.md", "configuration.md"]),
    ("multicast", &["multicast.md", "configuration.md"]),
];

/// The command line with each command's reference line (clap panics on a name it lacks).
fn command_line() -> clap::Command {
    let mut cli = Cli::command();
    for (name, pages) in REFERENCES {
        let pages: Vec<String> = pages.iter().map(|p| format!("docs/{p}")).collect();
        let line = format!(
            "Reference: {} (installed in {INSTALLED_DOCS})",
            pages.join(", ")
        );
        cli = cli.mut_subcommand(name, |c| with_reference(c, &line));
    }
    cli
}

fn with_reference(c: clap::Command, line: &str) -> clap::Command {
    let subcommands: Vec<String> = c.get_subcommands().map(|s| s.get_name().into()).collect();
    subcommands
        .iter()
        .fold(c.after_help(line.to_owned()), |c, name| {
            c.mut_subcommand(name, |s| with_reference(s, line))
        })
}

fn main() -> ExitCode {
    let cli = Cli::from_arg_matches(&command_line().get_matches()).unwrap_or_else(|e| e.exit());
    // The PostgreSQL driver logs every statement at debug: kept at info unless named.
    let filter = if cli.log.contains("postgres") {
        cli.log.clone()
    } else {
        format!("{},tokio_postgres=info,postgres=info", cli.log)
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
    match run(cli.command, cli.locate) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netdeploy: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command, locate: cli::locate::Locate) -> anyhow::Result<()> {
    if let Command::Media { args } = &command {
        if args
            .first()
            .is_some_and(|a| cli::media::KEY_COMMANDS.contains(&a.as_str()))
        {
            return cli::media::keys(&locate.resolve(false)?, args);
        }
        return media(args, &locate);
    }
    if let Command::ConfigExample = command {
        print!("{EXAMPLE}");
        return Ok(());
    }
    if let Command::Serve = command {
        let (_, config) = locate.server_config()?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        return rt.block_on(netdeploy::serve::run(config));
    }
    if let Command::Check = command {
        let (path, config) = locate.server_config()?;
        return check(&path, &config);
    }
    // Makes a configuration line from a typed password: no data directory involved.
    if let Command::Pxe(cli::pxe::PxeCommand::PasswordHash) = command {
        return cli::pxe::password_hash();
    }
    if let Command::Tls(c) = command {
        let (_, config) = locate.server_config()?;
        return cli::tls::tls(&config, c);
    }
    let data = &locate.resolve(command.creates_objects())?;
    // Only wake-on-LAN needs the served interfaces; every other command reads the data
    // directory alone, so it works on a host where those interfaces do not exist.
    let config = match &command {
        Command::Wake(_) => data.full_config()?,
        // Wake-on-LAN on create is best effort here: without the interfaces it says how to
        // send the packets later.
        Command::Deployment(cli::deployment::DeploymentCommand::Create { .. }) => {
            data.full_config().ok().flatten()
        }
        _ => None,
    };
    let config = config.as_ref();
    match command {
        Command::Site(c) => cli::site::site(data, c),
        Command::Device(c) => cli::device::device(data, c),
        Command::Collection(c) => cli::collection::collection(data, c),
        Command::Package(c) => cli::package::package(data, c),
        Command::BootImage(c) => cli::boot_image::boot_image(data, c),
        Command::TaskSequence(c) => cli::task_sequence::task_sequence(data, c),
        Command::Deployment(c) => cli::deployment::deployment(data, config, c),
        Command::Wake(a) => cli::wake::wake(data, config, a),
        Command::Explain(a) => cli::explain::explain(data, a),
        Command::Pxe(c) => cli::pxe::pxe(data, c),
        Command::Status(a) => cli::status::status(data, a),
        Command::Content(c) => cli::content::content(data, c),
        Command::Alert(c) => cli::alert::alert(data, c),
        Command::Multicast(c) => cli::multicast::multicast(data, c),
        Command::Media { .. }
        | Command::ConfigExample
        | Command::Serve
        | Command::Check
        | Command::Tls(_) => {
            unreachable!("handled above")
        }
    }
}

impl Command {
    /// Whether the command creates catalog objects, and so may start a catalog in a data
    /// directory that has none. Every other command needs an existing catalog.
    fn creates_objects(&self) -> bool {
        use cli::{
            boot_image::BootImageCommand, collection::CollectionCommand,
            deployment::DeploymentCommand, device::DeviceCommand, package::PackageCommand,
            site::SiteCommand, task_sequence::TaskSequenceCommand,
        };
        matches!(
            self,
            Command::Site(SiteCommand::Apply { .. })
                | Command::Device(DeviceCommand::Create { .. })
                | Command::Collection(CollectionCommand::Create { .. })
                | Command::Package(PackageCommand::Create { .. })
                | Command::BootImage(BootImageCommand::Create { .. })
                | Command::TaskSequence(TaskSequenceCommand::Create { .. })
                | Command::Deployment(DeploymentCommand::Create { .. })
        )
    }
}

/// `netdeploy check`: what the configuration resolves to.
fn check(path: &std::path::Path, c: &netdeploy::config::Config) -> anyhow::Result<()> {
    println!("configuration OK: {}", path.display());
    println!(
        "  interfaces: {}",
        c.interfaces
            .iter()
            .map(|i| format!("{} ({})", i.name, i.address))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("  server address: {}", c.server_address);
    println!(
        "  dhcp mode: {} (port {}, PXE port {})",
        c.dhcp.mode.name(),
        c.dhcp.port,
        c.dhcp.proxy_port
    );
    if let Some(p) = &c.dhcp.pool {
        println!(
            "  lease range: {} - {} ({}s)",
            p.first,
            p.last,
            p.lease_time.as_secs()
        );
    }
    match &c.ipv6 {
        Some(v6) => println!(
            "  ipv6: {} on {} (DHCPv6 port {}, PXE port {}; TFTP and HTTP on IPv6 too)",
            v6.address,
            v6.interfaces
                .iter()
                .map(|i| format!("{} ({})", i.name, i.address))
                .collect::<Vec<_>>()
                .join(", "),
            v6.dhcp_port,
            v6.proxy_port
        ),
        None => println!("  ipv6: off (no DHCPv6; TFTP and HTTP on IPv4 only)"),
    }
    println!(
        "  tftp root: {} (port {})",
        c.tftp.root.display(),
        c.tftp_port
    );
    for (arch, file) in &c.boot.files {
        println!("  boot file {arch}: {file}");
    }
    println!("  data dir: {}", c.data_dir.display());
    match &c.http.tls {
        None => println!("  https: off (the agent and the admin API use plain HTTP)"),
        Some(t) => println!(
            "  https: port {}, {}; /agent and /api over plain HTTP {} (`netdeploy tls \
             fingerprint` prints the pin)",
            t.port,
            match &t.certificate {
                netdeploy::config::CertificateSource::Files { cert, .. } =>
                    format!("certificate {}", cert.display()),
                netdeploy::config::CertificateSource::SelfSigned => format!(
                    "self-signed certificate kept in {}",
                    c.data_dir.join(netdeploy::tls::SELF_SIGNED_DIR).display()
                ),
            },
            if t.allow_plain_http {
                "allowed"
            } else {
                "refused"
            },
        ),
    }
    match &c.import_root {
        Some(r) => println!(
            "  import root: {} (files a site file sent to the admin API may name)",
            r.display()
        ),
        None => {
            println!("  import root: none (a site file sent to the admin API may name no file)")
        }
    }
    for line in boot_image_lines(c) {
        println!("  {line}");
    }
    Ok(())
}

/// Which boot image machines get: the site file's `[[boot_image]]` of each deployment, and the
/// configuration's `[boot.image]` only while the catalog declares no deployment at all.
fn boot_image_lines(c: &netdeploy::config::Config) -> Vec<String> {
    let db = c.data_dir.join("netdeploy.db");
    let store = match &c.store_url {
        Some(url) => netdeploy::store::Store::open_url(url).ok(),
        None => db
            .is_file()
            .then(|| netdeploy::store::Store::open(&db).ok())
            .flatten(),
    };
    let catalog = store
        .and_then(|store| netdeploy::store::catalog::load(&store).ok())
        .map(|(catalog, _)| catalog);
    let fallback = match &c.boot.image {
        Some(i) => format!("[boot.image] {} {}", i.kernel.display(), i.cmdline),
        None => "none".to_owned(),
    };
    let mut lines = Vec::new();
    match catalog {
        Some(cat) if !cat.deployments.is_empty() => {
            let ids: Vec<&str> = cat.boot_images.iter().map(|b| b.id.as_str()).collect();
            lines.push(format!(
                "boot images: each deployment's own, from the catalog ({} deployment(s); boot \
                 images {}); `netdeploy explain` says which one a machine gets",
                cat.deployments.len(),
                if ids.is_empty() {
                    "none".to_owned()
                } else {
                    ids.join(", ")
                }
            ));
            lines.push(format!(
                "fallback boot image: {fallback}, not used: the catalog declares deployments"
            ));
        }
        Some(_) | None => {
            let whence = if db.is_file() {
                "the catalog declares no deployment"
            } else {
                "no catalog yet"
            };
            lines.push(match &c.boot.image {
                Some(_) => format!("boot image: {fallback}, for every PXE machine ({whence})"),
                None => format!(
                    "boot image: none ({whence}; iPXE clients are sent to their next boot device)"
                ),
            });
        }
    }
    lines
}

/// Runs the media builder installed beside this binary (or on PATH) in place of this process.
/// `media build` without `--server-pin` gets the pin of the configuration's HTTPS certificate
/// when the configuration has one.
fn media(args: &[String], locate: &cli::locate::Locate) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    let mut args = args.to_vec();
    let builds = args.first().is_some_and(|a| a == "build");
    let has_pin = args.iter().any(|a| a.starts_with("--server-pin"));
    if builds && !has_pin {
        if let Ok((_, config)) = locate.server_config() {
            if config.http.tls.is_some() {
                let pin = cli::tls::fingerprint(&config)?;
                eprintln!("--server-pin {pin} (the configuration's HTTPS certificate)");
                args.extend(["--server-pin".to_owned(), pin.to_string()]);
            }
        }
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("netdeploy-media")))
        .filter(|p| p.is_file());
    let program = beside.unwrap_or_else(|| PathBuf::from("netdeploy-media"));
    let err = std::process::Command::new(&program).args(&args).exec();
    anyhow::bail!(
        "cannot run {}: {err} (build both with cargo build --release -p netdeploy -p media-builder, \
         or install netdeploy-media beside netdeploy or on PATH)",
        program.display()
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn command_line_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
