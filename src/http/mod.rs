//! HTTP: per-machine iPXE scripts and the boot image files.
//!
//! iPXE gets `/boot.ipxe?mac=..&arch=..&uuid=..` from netdeploy's DHCP answer; an iPXE started
//! some other way gets a short script that asks again with its own `${mac}` and `${uuid}`.
//! File bodies are streamed from disk with their length, never read whole into memory.

mod script;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;

use crate::config::Config;
use crate::counters::Counters;

pub use script::render;

/// What the handlers share.
pub struct AppState {
    pub config: Arc<Config>,
    pub counters: Arc<Counters>,
    /// `http://server:port`, no trailing slash.
    pub base: String,
}

/// The router of every HTTP endpoint.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/boot.ipxe", get(boot_script))
        .route("/image/kernel", get(image_kernel))
        .route("/image/initrd", get(image_initrd))
        .route("/tftp/{*path}", get(tftp_file))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Query of `/boot.ipxe`: what the DHCP answer wrote in, or what iPXE says of itself.
#[derive(Debug, Deserialize)]
pub struct BootQuery {
    pub mac: Option<String>,
    pub arch: Option<u16>,
    pub uuid: Option<String>,
    pub platform: Option<String>,
    pub buildarch: Option<String>,
}

impl BootQuery {
    /// Option 93 value, from `arch` or from iPXE's `${platform}`/`${buildarch}`.
    fn arch_value(&self) -> Option<u16> {
        self.arch.or(
            match (self.platform.as_deref(), self.buildarch.as_deref()) {
                (Some("pcbios"), _) => Some(0),
                (Some("efi"), Some("x86_64")) => Some(7),
                (Some("efi"), Some("i386")) => Some(6),
                (Some("efi"), Some("arm64")) => Some(11),
                (Some("efi"), Some("arm32")) => Some(10),
                _ => None,
            },
        )
    }
}

/// Prometheus text format of every counter.
async fn metrics(State(s): State<Arc<AppState>>) -> Response {
    let mut out = String::new();
    for (name, value) in s.counters.snapshot() {
        out.push_str(&format!(
            "# TYPE netdeploy_{name}_total counter\nnetdeploy_{name}_total {value}\n"
        ));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

fn ipxe(text: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
}

async fn boot_script(State(s): State<Arc<AppState>>, Query(q): Query<BootQuery>) -> Response {
    Counters::bump(&s.counters.http_requests);
    let base = s.base.as_str();
    let Some(mac) = q.mac.as_deref() else {
        return ipxe(render(script::IDENTIFY, &[("base", base)]));
    };
    let Ok(mac) = mac.parse::<crate::dhcp::packet::Mac>() else {
        return (StatusCode::BAD_REQUEST, "mac is not a MAC address\n").into_response();
    };
    let mac_s = mac.to_string();
    let arch = q.arch_value();
    let arch_name = arch
        .and_then(crate::arch::ClientArch::from_option93)
        .map(|a| a.key().to_owned())
        .unwrap_or_else(|| "unknown".into());
    let arch_s = arch
        .map(|a| a.to_string())
        .unwrap_or_else(|| "unknown".into());
    let uuid = q.uuid.as_deref().unwrap_or("");
    let Some(image) = &s.config.boot.image else {
        tracing::warn!(mac = %mac_s, "iPXE script: no boot image configured");
        return ipxe(render(
            script::NOTHING,
            &[("mac", &mac_s), ("reason", "no boot image is configured")],
        ));
    };
    tracing::info!(mac = %mac_s, arch = %arch_s, arch_name = %arch_name, uuid, "iPXE script served");
    ipxe(render(
        script::LINUX,
        &[
            ("base", base),
            ("mac", &mac_s),
            ("arch", &arch_s),
            ("arch_name", &arch_name),
            ("image", &image.kernel.display().to_string()),
            ("cmdline", &image.cmdline),
        ],
    ))
}

async fn image_kernel(State(s): State<Arc<AppState>>) -> Response {
    match &s.config.boot.image {
        Some(i) => send_file(&s, &i.kernel).await,
        None => (StatusCode::NOT_FOUND, "no boot image configured\n").into_response(),
    }
}

async fn image_initrd(State(s): State<Arc<AppState>>) -> Response {
    match s.config.boot.image.as_ref().and_then(|i| i.initrd.as_ref()) {
        Some(p) => send_file(&s, p).await,
        None => (StatusCode::NOT_FOUND, "no initrd configured\n").into_response(),
    }
}

/// The TFTP root over HTTP, for UEFI HTTP boot clients (option 93 = 16, 19) and for iPXE
/// scripts that prefer HTTP: the same path rules as TFTP (case-insensitive, Windows-style
/// separators, nothing outside the root).
async fn tftp_file(
    State(s): State<Arc<AppState>>,
    axum::extract::Path(path): axum::extract::Path<String>,
) -> Response {
    let resolved = crate::tftp::path::Root::new(&s.config.tftp.root).and_then(|root| {
        root.resolve(&path)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::NotFound, e.to_string()))
    });
    match resolved {
        Ok(p) => send_file(&s, &p).await,
        Err(e) => {
            tracing::info!(path, error = %e, "HTTP boot file refused");
            (StatusCode::NOT_FOUND, "no such boot file\n").into_response()
        }
    }
}

/// Streams a file with its length.
async fn send_file(s: &AppState, path: &Path) -> Response {
    Counters::bump(&s.counters.http_requests);
    let file = match tokio::fs::File::open(path).await {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(file = %path.display(), error = %e, "cannot open boot file");
            return (StatusCode::NOT_FOUND, "file not available\n").into_response();
        }
    };
    let len = match file.metadata().await {
        Ok(m) => m.len(),
        Err(e) => {
            tracing::error!(file = %path.display(), error = %e, "cannot stat boot file");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let body = Body::from_stream(tokio_util::io::ReaderStream::with_capacity(
        file,
        256 * 1024,
    ));
    (
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_LENGTH, len.to_string()),
        ],
        body,
    )
        .into_response()
}

/// Serves HTTP on an already bound listener until cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    cancel: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { cancel.cancelled().await })
        .await
}
