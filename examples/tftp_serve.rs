//! Serves a directory over TFTP until interrupted, for benchmarks and manual tests (the full
//! `netdeploy serve` starts DHCP and HTTP too). Prints `tftp_listening=ADDR` once ready, and
//! the TFTP counters on exit.
//!
//! ```text
//! cargo run --release --example tftp_serve -- DIR [ADDR]    # ADDR defaults to 127.0.0.1:0
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use netdeploy::counters::Counters;
use netdeploy::tftp::{server, TftpSettings};
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut args = std::env::args().skip(1);
    let root = PathBuf::from(args.next().context("usage: tftp_serve DIR [ADDR]")?);
    let addr: SocketAddr = args
        .next()
        .as_deref()
        .unwrap_or("127.0.0.1:0")
        .parse()
        .context("ADDR must be IP:PORT")?;
    let settings = Arc::new(TftpSettings {
        root,
        max_transfers: 64,
        // Benchmarks run every client on loopback, from one address.
        max_transfers_per_client: 64,
        max_blksize: 65464,
        max_windowsize: 64,
        timeout: Duration::from_secs(1),
        retries: 5,
        // As netdeploy's default; NETDEPLOY_TFTP_FRAGMENTED_WINDOWS=1 grants them as asked.
        fragmented_windows: std::env::var("NETDEPLOY_TFTP_FRAGMENTED_WINDOWS")
            .is_ok_and(|v| v == "1"),
        provided: Default::default(),
        generator: None,
    });
    let socket = server::bind_listener(addr).with_context(|| format!("cannot bind {addr}"))?;
    println!("tftp_listening={}", socket.local_addr()?);

    let cancel = CancellationToken::new();
    let stop = cancel.clone();
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        stop.cancel();
    });
    let counters = Arc::new(Counters::default());
    server::serve(socket, settings, Arc::clone(&counters), cancel).await?;
    for (name, value) in counters.snapshot() {
        if name.starts_with("tftp") {
            eprintln!("{name}={value}");
        }
    }
    Ok(())
}
