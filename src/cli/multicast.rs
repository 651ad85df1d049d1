//! `netdeploy multicast serve PACKAGE`: one multicast session of an image package
//! (docs/multicast.md), run until its receivers finished or its time is up.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Subcommand;

use netdeploy::catalog::Package;
use netdeploy::config::wire;
use netdeploy::content::Library;
use netdeploy::counters::Counters;
use netdeploy::multicast::live::{Live, SessionInfo};
use netdeploy::multicast::{self, MulticastConfig, SessionOptions};
use netdeploy_wire::Sha256Hex;

use super::DataDir;

#[derive(Debug, Subcommand)]
pub enum MulticastCommand {
    /// Send an image package to a multicast group until its receivers have it.
    ///
    /// Prints a JSON line when the session starts (its group, port, index SHA-256 and size, for
    /// `netdeploy-agent multicast-apply`) and one when it ends (receivers, bytes sent). Groups,
    /// port, TTL, rates and the interface come from `[multicast]` of the configuration.
    Serve {
        /// The package id.
        package: String,
        /// The image index in the package; the package's only `*.ndimg` when absent.
        #[arg(long)]
        index: Option<String>,
        /// The session ends when this many receivers came and each one finished.
        #[arg(long, default_value_t = 1)]
        receivers: usize,
        /// The session ends after this many seconds whatever is left; receivers then
        /// continue over HTTP.
        #[arg(long, default_value_t = 3600)]
        timeout: u64,
        /// Data goes out once `--receivers` machines asked, or this many seconds after the
        /// first one did; later machines join the running session and get what they missed.
        #[arg(long, default_value_t = 2)]
        join_window: u64,
        /// Send from this address instead of `[multicast]`'s interface.
        #[arg(long)]
        source: Option<Ipv4Addr>,
        /// Use this group instead of one of `multicast.group_range`.
        #[arg(long)]
        group: Option<Ipv4Addr>,
        /// Use this port instead of `multicast.port`.
        #[arg(long)]
        port: Option<u16>,
        /// Never send faster than this (Mbit/s) instead of `multicast.max_rate_mbps`.
        #[arg(long)]
        max_rate_mbps: Option<u64>,
    },
}

pub fn multicast(dd: &DataDir, cmd: MulticastCommand) -> anyhow::Result<()> {
    let MulticastCommand::Serve {
        package,
        index,
        receivers,
        timeout,
        join_window,
        source,
        group,
        port,
        max_rate_mbps,
    } = cmd;
    let config = match dd.full_config()? {
        Some(c) => c.multicast,
        // Without a configuration file, the defaults and the address named here.
        None => {
            let source = source.context(
                "no configuration file names the interface to send on: give --source ADDRESS",
            )?;
            MulticastConfig::from_wire(
                &wire::Multicast::default(),
                &[netdeploy::interfaces::InterfaceAddr {
                    name: "source".into(),
                    address: source,
                    netmask: Ipv4Addr::BROADCAST,
                }],
            )?
        }
    };
    let store = dd.open()?;
    let pkg: Package = store
        .get("package", &package)?
        .with_context(|| format!("no package {package}"))?;
    let lib = Library::new(&dd.data_dir);
    let indexes: Vec<_> = pkg
        .files
        .iter()
        .filter(|f| match &index {
            Some(name) => &f.path == name,
            None => f.path.ends_with(".ndimg"),
        })
        .collect();
    let [file] = indexes.as_slice() else {
        anyhow::bail!(
            "package {package} has {} image indexes{}: name one with --index",
            indexes.len(),
            index.map(|i| format!(" named {i}")).unwrap_or_default()
        );
    };
    let image = multicast::sessions::load_image(&lib, &file.path, &file.sha256.to_string())
        .with_context(|| format!("package {package}"))?;
    let mut id = [0u8; 4];
    getrandom::fill(&mut id).map_err(|e| anyhow::anyhow!("no random session id: {e}"))?;
    let session = u32::from_le_bytes(id).max(1);
    let max_rate = max_rate_mbps.map_or(config.max_rate, |m| m.max(1) * 1_000_000 / 8);
    let opts = SessionOptions {
        session,
        group: SocketAddrV4::new(
            group.unwrap_or_else(|| config.group_of(session)),
            port.unwrap_or(config.port),
        ),
        source: source.unwrap_or(config.source),
        ttl: config.ttl,
        min_rate: config.min_rate.min(max_rate),
        max_rate,
        receivers: Some(receivers),
        join_window: Duration::from_secs(join_window),
        start_with: 0,
        timeout: Duration::from_secs(timeout),
    };
    println!(
        "{}",
        serde_json::json!({"multicast_session": {
            "session": session,
            "group": opts.group.ip().to_string(),
            "port": opts.group.port(),
            "index": file.path,
            "index_sha256": file.sha256,
            "index_size": file.size,
            "chunks": image.index.chunks.len(),
            "compressed_bytes": image.index.compressed_bytes(),
        }})
    );
    let counters = Arc::new(Counters::default());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let cancel = tokio_util::sync::CancellationToken::new();
    let stop = cancel.clone();
    let report = rt.block_on(async {
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            stop.cancel();
        });
        let live = Live::new(SessionInfo {
            session,
            group: opts.group,
            package: package.clone(),
            file: file.path.clone(),
            index_sha256: Sha256Hex(image.index_sha256),
            chunks: image.index.chunks.len() as u32,
            compressed_bytes: image.index.compressed_bytes(),
            started_at: 0,
        });
        multicast::run(&image, &opts, counters, cancel, &live).await
    })?;
    println!(
        "{}",
        serde_json::json!({"multicast_report": {
            "receivers": report.receivers,
            "finished": report.finished,
            "fell_back": report.fell_back,
            "bytes_sent": report.bytes_sent,
            "datagrams": report.datagrams,
            "timed_out": report.timed_out,
        }})
    );
    Ok(())
}
