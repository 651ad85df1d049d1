//! The `netdeploy` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cli;
use cli::catalog as cat;

/// netdeploy: network-boot (PXE/iPXE, BIOS and UEFI) and deployment server.
///
/// It answers DHCP/proxyDHCP for PXE clients, serves first-stage boot files over TFTP and iPXE
/// scripts and boot images over HTTP.
#[derive(Debug, Parser)]
#[command(version, propagate_version = true)]
struct Cli {
    /// Log filter (tracing's syntax), e.g. `info`, `debug`, `netdeploy::tftp=debug`.
    #[arg(long, global = true, env = "NETDEPLOY_LOG", default_value = "info")]
    log: String,
    #[command(flatten)]
    data: cat::DataDir,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server: DHCP/PXE, TFTP and HTTP on the configured interfaces.
    ///
    /// Prints one JSON line on standard output when every port is bound (with the addresses
    /// and ports chosen), logs to standard error, and stops cleanly on SIGINT or SIGTERM.
    /// Serving DHCP on port 67 needs root (or CAP_NET_BIND_SERVICE and CAP_NET_RAW).
    Serve {
        /// The configuration file (TOML). See `netdeploy config example`.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Check a configuration file and print what it resolves to, without serving.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Print an annotated example configuration.
    ConfigExample,
    /// Site files: declare a whole lab's catalog and apply it in one command.
    #[command(subcommand)]
    Site(cat::SiteCommand),
    /// Devices (machines known by MAC and SMBIOS UUID).
    #[command(subcommand)]
    Device(cat::DeviceCommand),
    /// Collections of devices (built in: all_systems, unknown_computers).
    #[command(subcommand)]
    Collection(cat::CollectionCommand),
    /// Packages (content referenced by task sequence steps).
    #[command(subcommand)]
    Package(cat::PackageCommand),
    /// Boot images (what PXE and media start).
    #[command(subcommand)]
    BootImage(cat::BootImageCommand),
    /// Task sequences (ordered steps run in the boot environment).
    #[command(subcommand)]
    TaskSequence(cat::TaskSequenceCommand),
    /// Deployments of task sequences to collections.
    #[command(subcommand)]
    Deployment(cat::DeploymentCommand),
    /// Say which deployment a machine would get and why every other one was not chosen.
    Explain(cat::ExplainArgs),
    /// Build boot media (ISO or USB image): runs `netdeploy-media` with these arguments.
    #[command(disable_help_flag = true)]
    Media {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Send wake-on-LAN magic packets on the served interfaces (needs --server-config).
    Wake(cat::WakeArgs),
    /// Where each deployment stands: the five states per collection, failures over time.
    Status(cat::StatusArgs),
    /// The PXE loop guard (SPEC section 3, rule 7).
    #[command(subcommand)]
    Pxe(cat::PxeCommand),
    /// Deployment alerts: raised when a deployment's failures pass its threshold.
    #[command(subcommand)]
    Alert(cat::AlertCommand),
}

const EXAMPLE: &str = include_str!("../netdeploy.example.toml");

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&cli.log).unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
    match run(cli.command, cli.data) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netdeploy: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command, data: cat::DataDir) -> anyhow::Result<()> {
    // `serve`, `check` and `config-example` take their own configuration; the catalog commands
    // take the data directory, from --server-config when given.
    if let Command::Media { args } = &command {
        return media(args);
    }
    let needs_data = !matches!(
        command,
        Command::Serve { .. } | Command::Check { .. } | Command::ConfigExample
    );
    let (data, config) = if needs_data {
        data.resolve()?
    } else {
        (data, None)
    };
    let data = &data;
    let config = config.as_ref();
    match command {
        Command::Site(c) => cat::site(data, c),
        Command::Device(c) => cat::device(data, c),
        Command::Collection(c) => cat::collection(data, c),
        Command::Package(c) => cat::package(data, c),
        Command::BootImage(c) => cat::boot_image(data, c),
        Command::TaskSequence(c) => cat::task_sequence(data, c),
        Command::Deployment(c) => cat::deployment(data, config, c),
        Command::Wake(a) => cat::wake(data, config, a),
        Command::Media { .. } => unreachable!("handled above"),
        Command::Explain(a) => cat::explain(data, a),
        Command::Pxe(c) => cat::pxe(data, c),
        Command::Status(a) => cat::status(data, a),
        Command::Alert(c) => cat::alert(data, c),
        Command::Serve { config } => {
            let config = netdeploy::config::Config::load(&config)?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(netdeploy::serve::run(config))
        }
        Command::Check { config } => {
            let c = netdeploy::config::Config::load(&config)?;
            println!("configuration OK");
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
            println!(
                "  tftp root: {} (port {})",
                c.tftp.root.display(),
                c.tftp_port
            );
            for (arch, file) in &c.boot.files {
                println!("  boot file {arch}: {file}");
            }
            match &c.boot.image {
                Some(i) => println!("  boot image: {} {}", i.kernel.display(), i.cmdline),
                None => {
                    println!("  boot image: none (iPXE clients are sent to their next boot device)")
                }
            }
            println!("  data dir: {}", c.data_dir.display());
            Ok(())
        }
        Command::ConfigExample => {
            print!("{EXAMPLE}");
            Ok(())
        }
    }
}

/// Runs the media builder installed beside this binary (or on PATH) in place of this process.
fn media(args: &[String]) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    let beside = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("netdeploy-media")))
        .filter(|p| p.is_file());
    let program = beside.unwrap_or_else(|| PathBuf::from("netdeploy-media"));
    let err = std::process::Command::new(&program).args(args).exec();
    anyhow::bail!(
        "cannot run {}: {err} (build it with cargo build -p media-builder)",
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
