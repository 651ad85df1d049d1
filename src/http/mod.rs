//! HTTP: the router and the state its handlers share. Each area has its own module:
//! - `ipxe`: per-machine iPXE scripts and the fallback boot image;
//! - `grub`: per-machine GRUB configurations of the Secure Boot chain, served over TFTP;
//! - `cmdline`: the kernel command line both first stages pass to the boot image;
//! - `pxe_password`: the PXE password a first stage asks for (rule 9);
//! - `files`: content by hash and the TFTP root over HTTP, with `Range`;
//! - `agent`: the boot environment's policy and status messages;
//! - `admin`: the admin API; [`status_page`]: the status pages; `metrics`: counters;
//! - [`connections`]: the accept loop with its limits, over HTTP and HTTPS;
//! - [`https_only`]: which paths only HTTPS answers while it is on (docs/security.md).

mod admin;
mod admin_auth;
mod agent;
mod capture;
mod cmdline;
pub mod connections;
mod files;
mod grub;
pub mod https_only;
mod ipxe;
mod metrics;
mod multicast;
mod pxe_password;
mod script;
pub mod status_page;

use std::sync::Arc;

use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::bootpath::BootPath;
use crate::config::Config;
use crate::counters::Counters;

pub use grub::tftp_generator;
pub use script::render;

pub use files::SmallFiles;
use files::{content, tftp_file};
use ipxe::{boot_script, image_initrd, image_kernel, windows_agent, winpe_variables, winpeshl_ini};
use metrics::metrics;

/// What the handlers share.
pub struct AppState {
    pub config: Arc<Config>,
    pub counters: Arc<Counters>,
    /// `http://server:port`, no trailing slash.
    pub base: String,
    pub bootpath: Arc<BootPath>,
    /// Small content files kept in memory (see [`SmallFiles`]).
    pub small_files: SmallFiles,
    /// Wrong admin API tokens per address.
    pub admin_throttle: std::sync::Mutex<admin_auth::Throttle>,
    /// Network-boot clients the DHCP side saw lately: a script request records a start only
    /// for one of them (docs/security.md).
    pub sightings: Arc<crate::dhcp::sightings::Sightings>,
    /// Checks of the PXE password, and wrong ones per address.
    pub pxe_password: pxe_password::Gate,
    /// The HTTPS listener's base URL and certificate pin, when `[http.tls]` is on.
    pub https: Option<Https>,
    /// The multicast sessions deployments started.
    pub multicast: Arc<crate::multicast::Sessions>,
}

/// Where the agent and the admin API are served while HTTPS is on.
#[derive(Debug, Clone)]
pub struct Https {
    /// `https://server:port`, no trailing slash.
    pub base: String,
    pub pin: netdeploy_wire::cert_pin::CertPin,
}

impl AppState {
    /// The base URL the boot environment's agent is given for its policy and status: the
    /// HTTPS one while HTTPS is on.
    pub fn agent_base(&self) -> &str {
        self.https.as_ref().map_or(&self.base, |h| &h.base)
    }
}

/// The router of every HTTP endpoint.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/boot.ipxe", get(boot_script))
        .route("/image/kernel", get(image_kernel))
        .route("/image/initrd", get(image_initrd))
        .route("/tftp/{*path}", get(tftp_file))
        .route("/content/{sha256}", get(content))
        .route("/agent/policy", get(agent::policy))
        .route("/winpe/variables.ini", get(winpe_variables))
        .route("/winpe/netdeploy-agent.exe", get(windows_agent))
        .route("/winpe/winpeshl.ini", get(winpeshl_ini))
        .route("/status", get(status_page::page))
        .route("/status.json", get(status_page::json))
        .route("/status/deployment", get(status_page::deployment))
        .route("/status/machine", get(status_page::machine))
        .route("/agent/status", axum::routing::post(agent::status))
        .route("/agent/multicast", get(multicast::session))
        .route(
            "/agent/capture/{package}/done",
            axum::routing::post(capture::done),
        )
        .route(
            "/agent/capture/{package}/{file}",
            axum::routing::put(capture::put_file),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .merge(admin::router(state.clone()))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            store_consistency,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            refuse_plain_http,
        ))
        .with_state(state)
}

/// The admin API and the status views read the store, which the boot path writes through a
/// queue: they first wait for what is queued. A change made through the admin API is in the
/// boot path's snapshot before the answer goes out, so the next decision uses it.
async fn store_consistency(
    axum::extract::State(s): axum::extract::State<Arc<AppState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let path = request.uri().path();
    let reads_store = path.starts_with("/api/") || path.starts_with("/status");
    let changes = reads_store && request.method() != axum::http::Method::GET;
    if reads_store {
        s.bootpath.memory.settled().await;
    }
    let response = next.run(request).await;
    if changes {
        s.bootpath.memory.reloaded().await;
    }
    response
}

/// While HTTPS is on, the agent endpoints and the admin API over plain HTTP are answered 403
/// with the HTTPS URL to use, unless `http.tls.allow_plain_http` says otherwise: their run
/// tokens, medium keys and bearer tokens must not cross the network in clear.
async fn refuse_plain_http(
    axum::extract::State(s): axum::extract::State<Arc<AppState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let transport = request
        .extensions()
        .get::<connections::Transport>()
        .copied()
        .unwrap_or(connections::Transport::Http);
    let allowed = s
        .config
        .http
        .tls
        .as_ref()
        .is_none_or(|t| t.allow_plain_http);
    match &s.https {
        Some(https)
            if transport == connections::Transport::Http
                && !allowed
                && https_only::path_needs_https(request.uri().path()) =>
        {
            crate::counters::Counters::bump(&s.counters.http_plain_refused);
            let peer = request
                .extensions()
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.to_string())
                .unwrap_or_default();
            let path = request.uri().path();
            tracing::warn!(client = %peer, path, "refused over plain HTTP: HTTPS only (http.tls)");
            let target = request.uri().path_and_query().map_or(path, |p| p.as_str());
            (
                axum::http::StatusCode::FORBIDDEN,
                https_only::refusal(path, &https.base, target),
            )
                .into_response()
        }
        _ => next.run(request).await,
    }
}

/// Serves HTTP (HTTPS with `tls`) on an already bound listener until cancelled, holding every
/// connection to `http` limits of the configuration; `table` counts the connections of every
/// listener.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    table: Arc<std::sync::Mutex<connections::ConnectionTable>>,
    cancel: tokio_util::sync::CancellationToken,
    tls: Option<connections::TlsAccept>,
) -> std::io::Result<()> {
    let limits = state.config.http.limits;
    let counters = state.counters.clone();
    connections::serve(
        listener,
        router(state),
        limits,
        counters,
        table,
        cancel,
        tls,
    )
    .await
}
