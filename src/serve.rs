//! `netdeploy serve`: binds every listener, prints one structured startup line, runs until
//! SIGINT or SIGTERM, then stops accepting and lets the listeners finish.
//!
//! The startup line is a single JSON object on standard output, for example
//! `{"netdeploy":"ready","server_address":"10.77.0.1","dhcp_mode":"proxy","dhcp":["br0 0.0.0.0:67"],"pxe":["br0 0.0.0.0:4011"],"tftp":["10.77.0.1:69"],"http":["10.77.0.1:8080"]}`.
//! With `[ipv6]` it has an `ipv6` object too (`address`, `dhcp`, `pxe`, `tftp`, `http`, `url`),
//! else `"ipv6": null`. Tests start the server on port 0 and read the ports it chose from that
//! line.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::counters::Counters;
use crate::dhcp;
use crate::dhcp::pxe::Port;
use crate::http;

/// Runs the server with a validated configuration.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let config = Arc::new(config);
    let counters = Arc::new(Counters::default());
    std::fs::create_dir_all(&config.data_dir).with_context(|| {
        format!(
            "server.data_dir: cannot create {}",
            config.data_dir.display()
        )
    })?;

    let max_connections = http_connection_cap(&config, raise_open_file_limit());

    // HTTP first: its port goes into every DHCP answer for iPXE.
    let mut http_listeners = Vec::new();
    for iface in &config.interfaces {
        let addr = SocketAddr::from((iface.address, config.http.port));
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen for HTTP on {addr}"))?;
        http_listeners.push(l);
    }
    let http_port = http_listeners[0].local_addr()?.port();
    let base = config
        .http
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{}:{http_port}", config.server_address));

    let https = match &config.http.tls {
        Some(tls) => Some(bind_https(&config, tls).await?),
        None => None,
    };

    let mut tftp_sockets = Vec::new();
    for iface in &config.interfaces {
        let addr = SocketAddr::from((iface.address, config.tftp_port));
        let s = crate::tftp::server::bind_listener(addr)
            .with_context(|| format!("cannot listen for TFTP on {addr}"))?;
        tftp_sockets.push(s);
    }
    // IPv6: the same services on each served interface's IPv6 address, HTTP on the same port.
    let mut http6_listeners = Vec::new();
    let mut tftp6_sockets = Vec::new();
    let mut base6 = None;
    if let Some(v6) = &config.ipv6 {
        for iface in &v6.interfaces {
            let addr = SocketAddr::from((iface.address, http_port));
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen for HTTP on {addr}"))?;
            http6_listeners.push(l);
            let addr = SocketAddr::from((iface.address, config.tftp_port));
            let s = crate::tftp::server::bind_listener(addr)
                .with_context(|| format!("cannot listen for TFTP on {addr}"))?;
            tftp6_sockets.push(s);
        }
        base6 = Some(format!("http://[{}]:{http_port}", v6.address));
    }

    let store = Arc::new(match &config.store_url {
        Some(url) => crate::store::Store::open_url_with_spool(url, &config.data_dir.join("spool"))?,
        None => crate::store::Store::open(&config.data_dir.join("netdeploy.db"))?,
    });
    tracing::info!(store = %store.describe(), "store opened");
    let mut bootpath = crate::bootpath::BootPath::open(
        store,
        crate::content::Library::new(&config.data_dir),
        counters.clone(),
    )?;
    bootpath.pxe_password_set = config.boot.pxe_password.is_some();
    bootpath.upstream = crate::content::upstream::Upstream::new(config.content_upstream.clone());
    bootpath.server_name = config.server_name.clone();
    let bootpath = Arc::new(bootpath);
    if bootpath.store.is_shared() {
        // What this server holds, for `netdeploy content status` on any host of the site: at
        // start and whenever the catalog changed.
        let bp = bootpath.clone();
        let mut reloads = bootpath.memory.reloads();
        tokio::spawn(async move {
            loop {
                let b = bp.clone();
                let _ =
                    tokio::task::spawn_blocking(move || b.note_holding(Default::default())).await;
                if reloads.changed().await.is_err() {
                    return;
                }
            }
        });
    }
    let dhcp_listeners = dhcp::server::bind(&config)?;
    let shared = Arc::new(dhcp::server::Shared::new(
        config.clone(),
        counters.clone(),
        base.clone(),
        bootpath.clone(),
    )?);

    let dhcp6 = match (&config.ipv6, &base6) {
        (Some(v6), Some(base6)) => {
            let listeners = crate::dhcp6::server::bind(v6)?;
            let shared6 = Arc::new(crate::dhcp6::server::Shared6::new(
                shared.clone(),
                v6.clone(),
                base6.clone(),
            ));
            Some((listeners, shared6))
        }
        _ => None,
    };
    let describe6 = |l: &crate::dhcp6::server::Listener| {
        format!(
            "{} {}",
            l.interface,
            l.socket
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_default()
        )
    };
    let ipv6 = match (&config.ipv6, &dhcp6) {
        (Some(v6), Some((listeners, _))) => serde_json::json!({
            "address": v6.address.to_string(),
            "dhcp": listeners.iter().filter(|l| l.port == crate::dhcp6::pxe::Port::Dhcp).map(describe6).collect::<Vec<_>>(),
            "pxe": listeners.iter().filter(|l| l.port == crate::dhcp6::pxe::Port::Pxe).map(describe6).collect::<Vec<_>>(),
            "tftp": tftp6_sockets.iter().map(|s| s.local_addr().map(|a| a.to_string()).unwrap_or_default()).collect::<Vec<_>>(),
            "http": http6_listeners.iter().map(|l| l.local_addr().map(|a| a.to_string()).unwrap_or_default()).collect::<Vec<_>>(),
            "url": base6,
        }),
        _ => serde_json::Value::Null,
    };
    let describe = |l: &dhcp::server::Listener| {
        format!(
            "{} {}",
            l.interface,
            l.socket
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_default()
        )
    };
    let ready = serde_json::json!({
        "netdeploy": "ready",
        "version": env!("CARGO_PKG_VERSION"),
        "server_address": config.server_address.to_string(),
        "dhcp_mode": config.dhcp.mode.name(),
        "dhcp": dhcp_listeners.iter().filter(|l| l.port == Port::Dhcp).map(describe).collect::<Vec<_>>(),
        "pxe": dhcp_listeners.iter().filter(|l| l.port == Port::Pxe).map(describe).collect::<Vec<_>>(),
        "tftp": tftp_sockets.iter().map(|s| s.local_addr().map(|a| a.to_string()).unwrap_or_default()).collect::<Vec<_>>(),
        "tftp_root": config.tftp.root.display().to_string(),
        "http": http_listeners.iter().map(|l| l.local_addr().map(|a| a.to_string()).unwrap_or_default()).collect::<Vec<_>>(),
        "url": base,
        "https": https.as_ref().map(|h| h.listeners.iter().map(|l| l.local_addr().map(|a| a.to_string()).unwrap_or_default()).collect::<Vec<_>>()),
        "https_url": https.as_ref().map(|h| h.state.base.clone()),
        "tls_pin": https.as_ref().map(|h| h.state.pin.to_string()),
        "ipv6": ipv6,
    });
    // The JSON line on stdout is for programs; the log gets a line for people, so a terminal
    // that shows both does not show the same line twice.
    tracing::info!(
        server_address = %config.server_address,
        dhcp_mode = config.dhcp.mode.name(),
        url = %base,
        "netdeploy ready"
    );
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{ready}")?;
        out.flush()?;
    }

    let cancel = CancellationToken::new();
    let mut tasks = JoinSet::new();
    // Before any listener runs, so that the boot path's writes queue from the first packet.
    tasks.spawn(crate::snapshot::keep(
        bootpath.memory.clone(),
        bootpath.store.clone(),
        cancel.clone(),
    ));
    for l in dhcp_listeners {
        tasks.spawn(dhcp::server::serve(l, shared.clone(), cancel.clone()));
    }
    if let Some((listeners, shared6)) = dhcp6 {
        for l in listeners {
            tasks.spawn(crate::dhcp6::server::serve(
                l,
                shared6.clone(),
                cancel.clone(),
            ));
        }
    }
    let multicast = Arc::new(crate::multicast::Sessions::new(
        config.multicast.clone(),
        counters.clone(),
    ));
    let state = Arc::new(http::AppState {
        config: config.clone(),
        counters: counters.clone(),
        base,
        bootpath: bootpath.clone(),
        small_files: http::SmallFiles::default(),
        admin_throttle: Default::default(),
        sightings: shared.sightings.clone(),
        pxe_password: Default::default(),
        https: https.as_ref().map(|h| h.state.clone()),
        multicast: multicast.clone(),
    });
    let mut settings = config.tftp.clone();
    if let Some(shim) = &config.boot.shim {
        let files = crate::secure_boot::tftp_files(shim);
        tracing::info!(
            shim = %shim.shim.display(),
            grub = %shim.grub.display(),
            names = ?files.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            "Secure Boot chain served over TFTP (boot.chain), with GRUB's per-machine files below {}/",
            crate::secure_boot::TFTP_DIR,
        );
        settings.provided.extend(files);
        settings.generator = Some(http::tftp_generator(state.clone()));
    }
    let settings = Arc::new(settings);
    for s in tftp_sockets.into_iter().chain(tftp6_sockets) {
        let (settings, counters, cancel) = (settings.clone(), counters.clone(), cancel.clone());
        tasks.spawn(async move {
            if let Err(e) = crate::tftp::server::serve(s, settings, counters, cancel).await {
                tracing::error!(error = %e, "TFTP listener stopped");
            }
        });
    }
    tasks.spawn(crate::alert_hooks::watch(
        bootpath.store.clone(),
        config.alert_webhooks.clone(),
        cancel.clone(),
    ));
    tasks.spawn(crate::retention::prune(
        bootpath.store.clone(),
        config.status_retention,
        cancel.clone(),
    ));
    tasks.spawn(crate::wake::serve_requests(
        bootpath.store.clone(),
        config.interfaces.clone(),
        cancel.clone(),
    ));
    let table = Arc::new(std::sync::Mutex::new(
        http::connections::ConnectionTable::new(
            max_connections,
            config.http.limits.max_connections_per_client,
        ),
    ));
    // A machine that came over IPv6 is given IPv6 URLs: the HTTP listeners on IPv6 addresses
    // render scripts and command lines with the bracketed base.
    let state6 = base6.map(|base6| {
        Arc::new(http::AppState {
            config: config.clone(),
            counters: counters.clone(),
            base: base6,
            bootpath: bootpath.clone(),
            small_files: http::SmallFiles::default(),
            admin_throttle: Default::default(),
            sightings: shared.sightings.clone(),
            pxe_password: Default::default(),
            // HTTPS listens on IPv4 only: a dual-stack machine's agent reaches it there.
            https: https.as_ref().map(|h| h.state.clone()),
            multicast: multicast.clone(),
        })
    });
    let http_all = http_listeners
        .into_iter()
        .map(|l| (l, state.clone()))
        .chain(
            http6_listeners
                .into_iter()
                .map(|l| (l, state6.clone().expect("IPv6 listeners have a state"))),
        );
    for (l, state) in http_all {
        let (table, cancel) = (table.clone(), cancel.clone());
        tasks.spawn(async move {
            if let Err(e) = http::serve(l, state, table, cancel, None).await {
                tracing::error!(error = %e, "HTTP listener stopped");
            }
        });
    }
    if let Some(https) = https {
        for l in https.listeners {
            let (state, table, cancel) = (state.clone(), table.clone(), cancel.clone());
            let accept = https.accept.clone();
            tasks.spawn(async move {
                if let Err(e) = http::serve(l, state, table, cancel, Some(accept)).await {
                    tracing::error!(error = %e, "HTTPS listener stopped");
                }
            });
        }
    }

    shutdown_signal().await;
    tracing::info!("shutting down");
    cancel.cancel();
    // Multicast sessions tell their groups they ended: their machines go on over HTTP.
    multicast.shutdown();
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(std::time::Duration::from_secs(5), drain)
        .await
        .is_err()
    {
        tracing::warn!("listeners did not stop within 5 s; aborting them");
    }
    let counts: Vec<String> = counters
        .snapshot()
        .into_iter()
        .filter(|(_, v)| *v > 0)
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    tracing::info!(counters = %counts.join(" "), "stopped");
    Ok(())
}

/// The HTTPS listeners with their certificate.
struct HttpsListeners {
    listeners: Vec<tokio::net::TcpListener>,
    accept: http::connections::TlsAccept,
    state: http::Https,
}

/// Loads (or makes, on first start) the certificate, logs its pin and binds `http.tls.port` on
/// every served address.
async fn bind_https(
    config: &Config,
    tls: &crate::config::TlsConfig,
) -> anyhow::Result<HttpsListeners> {
    let names = crate::tls::served_names(config);
    let certificate = crate::tls::certificate(tls, &config.data_dir, &names)?;
    let server_config = crate::tls::server_config(&certificate)?;
    tracing::info!(
        pin = %certificate.pin,
        certificate = %certificate.cert_path.display(),
        made = certificate.made,
        "HTTPS certificate (the agent and media pin it: netdeploy.pin, NetdeployServerPin)"
    );
    let mut listeners = Vec::new();
    for iface in &config.interfaces {
        let addr = SocketAddr::from((iface.address, tls.port));
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("http.tls.port: cannot listen for HTTPS on {addr}"))?;
        listeners.push(l);
    }
    let port = listeners[0].local_addr()?.port();
    Ok(HttpsListeners {
        listeners,
        accept: http::connections::TlsAccept {
            acceptor: tokio_rustls::TlsAcceptor::from(server_config),
            handshake_timeout: tls.handshake_timeout,
        },
        state: http::Https {
            base: format!("https://{}:{port}", config.server_address),
            pin: certificate.pin,
        },
    })
}

/// Descriptors kept for everything but HTTP connections: listeners, TFTP transfers and the
/// files they read, the database, files HTTP responses read, logs.
const RESERVED_DESCRIPTORS: u64 = 512;

/// Raises the soft limit of open files to the hard limit (a service started with the
/// default 1024 would run out with a thousand idle HTTP clients), logs it and returns it.
fn raise_open_file_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "cannot read the open file limit");
        return None;
    }
    let before = lim.rlim_cur;
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim = raised;
        } else {
            tracing::warn!(error = %std::io::Error::last_os_error(), limit = before, "cannot raise the open file limit");
        }
    }
    tracing::info!(
        open_files = lim.rlim_cur,
        was = before,
        "open file limit (RLIMIT_NOFILE)"
    );
    Some(lim.rlim_cur)
}

/// `http.max_connections`, lowered when the open file limit could not hold that many
/// connections and the descriptors the rest of the server needs.
fn http_connection_cap(config: &Config, open_files: Option<u64>) -> usize {
    let wanted = config.http.limits.max_connections;
    let Some(open_files) = open_files else {
        return wanted;
    };
    let fits = open_files.saturating_sub(RESERVED_DESCRIPTORS).max(16);
    if (wanted as u64) > fits {
        tracing::warn!(
            max_connections = wanted,
            open_files,
            lowered_to = fits,
            "http.max_connections does not fit the open file limit; lowered"
        );
        return fits as usize;
    }
    wanted
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
