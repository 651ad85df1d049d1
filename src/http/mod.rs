//! HTTP: per-machine iPXE scripts and the boot image files.
//!
//! iPXE gets `/boot.ipxe?mac=..&arch=..&uuid=..` from netdeploy's DHCP answer; an iPXE started
//! some other way gets a short script that asks again with its own `${mac}` and `${uuid}`.
//! File bodies are streamed from disk with their length, never read whole into memory.

mod admin;
mod agent;
pub mod connections;
mod script;
pub mod status_page;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;

use crate::bootpath::{BootPath, PxePlan};
use crate::catalog::{Catalog, Deployment};
use crate::config::Config;
use crate::counters::Counters;
use crate::decision::{Action, Decision};
use crate::dhcp::packet::Mac;

pub use script::render;

/// What the handlers share.
pub struct AppState {
    pub config: Arc<Config>,
    pub counters: Arc<Counters>,
    /// `http://server:port`, no trailing slash.
    pub base: String,
    pub bootpath: Arc<BootPath>,
    /// Small content files kept in memory (see [`SmallFiles`]).
    pub small_files: SmallFiles,
}

/// Content files up to [`SMALL_FILE`] bytes, kept in memory after their first request: a
/// package of thousands of small driver files is then served without a trip to the blocking
/// pool per file. Only for the content library, whose files never change under their name
/// (the name is the hash); bounded in total, and once full it keeps what it has.
#[derive(Debug, Default)]
pub struct SmallFiles(std::sync::Mutex<(HashMap<std::path::PathBuf, axum::body::Bytes>, usize)>);

/// Bytes [`SmallFiles`] holds at most.
const SMALL_FILES_BYTES: usize = 32 << 20;

impl SmallFiles {
    fn get(&self, path: &Path) -> Option<axum::body::Bytes> {
        self.0.lock().ok()?.0.get(path).cloned()
    }

    fn keep(&self, path: &Path, bytes: &axum::body::Bytes) {
        let Ok(mut held) = self.0.lock() else {
            return;
        };
        if held.1 + bytes.len() <= SMALL_FILES_BYTES && !held.0.contains_key(path) {
            held.1 += bytes.len();
            held.0.insert(path.to_owned(), bytes.clone());
        }
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
        .route("/status", get(status_page::page))
        .route("/status.json", get(status_page::json))
        .route("/status/deployment", get(status_page::deployment))
        .route("/status/machine", get(status_page::machine))
        .route("/agent/status", axum::routing::post(agent::status))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .merge(admin::router(state.clone()))
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
    /// A deployment picked from the menu.
    pub deployment: Option<String>,
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
    let Ok(mac) = mac.parse::<Mac>() else {
        return (StatusCode::BAD_REQUEST, "mac is not a MAC address\n").into_response();
    };
    let uuid = q
        .uuid
        .as_deref()
        .and_then(|u| crate::catalog::parse_smbios_uuid(u).ok());
    let m = Machine {
        mac,
        uuid,
        arch: q.arch_value(),
    };
    let plan = match s
        .bootpath
        .plan(Some(mac), uuid, m.arch, q.deployment.as_deref())
    {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(mac = %mac, error = %e, "cannot read the catalog");
            return nothing(&m, "the server cannot read its catalog");
        }
    };
    let (decision, catalog, settings) = match plan {
        PxePlan::DefaultImage => return default_image(&s, &m),
        PxePlan::Decided {
            decision,
            catalog,
            settings,
        } => (decision, catalog, settings),
    };
    s.bootpath.record_warnings(&decision);
    s.bootpath.record_unmet(&decision);
    match &decision.action {
        Action::NoDeployment { reason } => {
            let why = format!("no deployment: {}, {reason}", reason.rule().cite());
            tracing::info!(mac = %mac, reason = %why, "iPXE script: nothing to boot");
            nothing(&m, &why)
        }
        Action::Menu { entries, .. } => {
            // A menu pick comes back as `deployment=ID`: boot it if it is still on the menu.
            if let Some(id) = q.deployment.as_deref().and_then(|d| d.parse().ok()) {
                if entries.contains(&id) {
                    if let Some(d) = catalog.deployment(&id) {
                        return run_deployment(&s, &m, &decision, &catalog, &settings, d);
                    }
                }
            }
            tracing::info!(mac = %mac, entries = ?entries.iter().map(|e| e.to_string()).collect::<Vec<_>>(), "iPXE script: menu (rule 6)");
            s.bootpath.record_offered(&decision, entries);
            ipxe(menu_script(&s, &m, &catalog, entries))
        }
        Action::RunUnattended { deployment, reason } => match catalog.deployment(deployment) {
            Some(d) => {
                tracing::info!(mac = %mac, deployment = %deployment, reason = ?reason, "iPXE script: runs unattended");
                run_deployment(&s, &m, &decision, &catalog, &settings, d)
            }
            None => nothing(&m, "the chosen deployment vanished"),
        },
    }
}

/// What the script request says of the machine.
struct Machine {
    mac: Mac,
    uuid: Option<crate::dhcp::packet::SmbiosUuid>,
    arch: Option<u16>,
}

impl Machine {
    fn arch_s(&self) -> String {
        self.arch
            .map(|a| a.to_string())
            .unwrap_or_else(|| "unknown".into())
    }
    fn arch_name(&self) -> String {
        self.arch
            .and_then(crate::arch::ClientArch::from_option93)
            .map(|a| a.key().to_owned())
            .unwrap_or_else(|| "unknown".into())
    }
    fn query(&self) -> String {
        let mut q = format!("mac={}", self.mac.to_string().replace(':', "-"));
        if let Some(a) = self.arch {
            q.push_str(&format!("&arch={a}"));
        }
        if let Some(u) = self.uuid {
            q.push_str(&format!("&uuid={u}"));
        }
        q
    }
}

fn nothing(m: &Machine, reason: &str) -> Response {
    ipxe(render(
        script::NOTHING,
        &[
            ("mac", &m.mac.to_string()),
            ("reason", &script::text(reason)),
        ],
    ))
}

/// The configuration's `[boot.image]`, for every machine, while no deployment is declared.
fn default_image(s: &AppState, m: &Machine) -> Response {
    let Some(image) = &s.config.boot.image else {
        tracing::warn!(mac = %m.mac, "iPXE script: no deployment and no default boot image");
        return nothing(m, "no deployment and no default boot image are configured");
    };
    if let Some(problem) = crate::catalog::kernel_cmdline_problem(&image.cmdline) {
        tracing::error!(mac = %m.mac, problem, "boot.image.cmdline cannot go on an iPXE kernel line");
        return nothing(
            m,
            "the boot image's kernel command line cannot be passed safely",
        );
    }
    tracing::info!(mac = %m.mac, arch = %m.arch_s(), arch_name = %m.arch_name(), "iPXE script served");
    let cmdline = format!(
        "{} netdeploy.server={} netdeploy.mac={}",
        image.cmdline, s.base, m.mac
    );
    let initrd = image
        .initrd
        .as_ref()
        .map(|_| {
            format!(
                "initrd --name initrd.img {}/image/initrd || goto failed",
                s.base
            )
        })
        .unwrap_or_default();
    ipxe(linux_script(
        m,
        &format!("booting {}", image.kernel.display()),
        &format!("{}/image/kernel", s.base),
        &initrd,
        &cmdline,
    ))
}

fn linux_script(
    m: &Machine,
    title: &str,
    kernel_url: &str,
    initrd_cmd: &str,
    cmdline: &str,
) -> String {
    render(
        script::LINUX,
        &[
            ("mac", &m.mac.to_string()),
            ("arch", &m.arch_s()),
            ("arch_name", &m.arch_name()),
            ("title", &script::text(title)),
            ("kernel_url", kernel_url),
            ("initrd_cmd", initrd_cmd),
            ("cmdline", cmdline),
        ],
    )
}

/// Boots a deployment's boot image, passing the deployment id and server URL to the boot
/// environment on the kernel command line, and records the start (loop guard, rule 7).
fn run_deployment(
    s: &AppState,
    m: &Machine,
    decision: &Decision,
    catalog: &Catalog,
    settings: &crate::catalog::site::Settings,
    d: &Deployment,
) -> Response {
    let Some((image, pre)) = crate::bootpath::boot_image_for(catalog, settings, decision, d) else {
        return nothing(m, "the deployment's boot image is pre-production and this machine is not in the pre-production collection");
    };
    if pre {
        tracing::info!(mac = %m.mac, boot_image = %image.id, "pre-production boot image served");
    }
    let ts_name = script::text(
        catalog
            .task_sequence(&d.task_sequence)
            .map(|t| t.name.as_str())
            .unwrap_or(&d.task_sequence),
    );
    if image.kind == crate::catalog::BootImageKind::WinPe {
        let hash = |name: &str| {
            image
                .files
                .iter()
                .find(|f| f.path == name)
                .map(|f| f.sha256.clone())
        };
        let names = crate::catalog::site::WINPE_FILES;
        let hashes: Vec<Option<String>> = names.iter().map(|n| hash(n)).collect();
        if hashes.iter().any(Option::is_none) {
            return nothing(
                m,
                "the Windows PE boot image lacks one of wimboot, bootmgr, BCD, boot.sdi, boot.wim",
            );
        }
        if let Err(e) = s.bootpath.record_start(decision, d, image) {
            tracing::error!(mac = %m.mac, error = %e, "cannot record the deployment start");
            return nothing(m, "the server cannot record the start of the deployment");
        }
        let h: Vec<String> = hashes.into_iter().flatten().collect();
        let query = format!("{}&deployment={}", m.query(), d.id);
        return ipxe(render(
            script::WINPE,
            &[
                ("base", &s.base),
                ("mac", &m.mac.to_string()),
                ("title", &format!("deployment {} ({ts_name})", d.id)),
                ("query", &query),
                ("wimboot", &h[0]),
                ("bootmgr", &h[1]),
                ("bcd", &h[2]),
                ("boot_sdi", &h[3]),
                ("boot_wim", &h[4]),
            ],
        ));
    }
    let file = |name: &str| image.files.iter().find(|f| f.path == name);
    let Some(kernel) = file("kernel") else {
        return nothing(m, "the boot image has no kernel");
    };
    // A site file with such a command line is refused at apply time; a catalog stored before
    // that check must not put iPXE syntax on the kernel line either.
    if let Some(problem) = crate::catalog::kernel_cmdline_problem(&image.cmdline) {
        tracing::error!(mac = %m.mac, boot_image = %image.id, problem, "boot image command line refused");
        return nothing(
            m,
            "the boot image's kernel command line cannot be passed safely",
        );
    }
    let initrd = file("initrd")
        .map(|f| {
            format!(
                "initrd --name initrd.img {}/content/{} || goto failed",
                s.base, f.sha256
            )
        })
        .unwrap_or_default();
    let cmdline = format!(
        "{} netdeploy.server={} netdeploy.deployment={} netdeploy.context=pxe netdeploy.mac={}",
        image.cmdline, s.base, d.id, m.mac
    );
    if let Err(e) = s.bootpath.record_start(decision, d, image) {
        // Without the loop guard record the machine would run a required deployment again on
        // its next PXE boot: better not to start it now.
        tracing::error!(mac = %m.mac, error = %e, "cannot record the deployment start");
        return nothing(m, "the server cannot record the start of the deployment");
    }
    ipxe(linux_script(
        m,
        &format!("deployment {} ({ts_name})", d.id),
        &format!("{}/content/{}", s.base, kernel.sha256),
        &initrd,
        &cmdline,
    ))
}

/// The menu of visible available deployments (rule 6); after the timeout, the local disk.
fn menu_script(
    s: &AppState,
    m: &Machine,
    catalog: &Catalog,
    entries: &[crate::catalog::DeploymentId],
) -> String {
    let clean = script::text;
    let mut out = format!(
        "#!ipxe\n# netdeploy: menu for {mac} (SPEC section 3, rule 6)\nmenu netdeploy: deployments for {mac}\n",
        mac = m.mac
    );
    for id in entries {
        let name = catalog
            .deployment(id)
            .and_then(|d| catalog.task_sequence(&d.task_sequence))
            .map(|t| clean(&t.name))
            .unwrap_or_default();
        out.push_str(&format!("item {id} {id} {name}\n"));
    }
    let timeout = s.config.boot.menu_timeout.as_millis();
    out.push_str(&format!(
        "item --gap\nitem local Boot from the local disk\n\
         choose --timeout {timeout} --default local target || goto local\n\
         iseq ${{target}} local && goto local ||\n\
         chain {base}/boot.ipxe?{q}&deployment=${{target}}\n\
         :local\necho netdeploy: leaving to the local disk\n\
         echo netdeploy: iPXE now reports \"Could not boot image: Error 0x00000001\"; that is this exit, not a failure\n\
         exit 1\n",
        base = s.base,
        q = m.query(),
    ));
    out
}

/// A file of the content library, by its SHA-256 (SPEC section 6): `Range` requests,
/// `ETag` and `Repr-Digest` (RFC 9530) from the hash in the name, never re-hashed here.
async fn content(
    State(s): State<Arc<AppState>>,
    axum::extract::Path(sha): axum::extract::Path<String>,
    headers: axum::http::HeaderMap,
) -> Response {
    Counters::bump(&s.counters.http_requests);
    let path = match s.bootpath.library.path_of(&sha) {
        Ok(p) => p,
        Err(_) => return (StatusCode::NOT_FOUND, "no such content\n").into_response(),
    };
    match s.bootpath.serves(&sha) {
        Ok(true) => {}
        Ok(false) => {
            tracing::info!(sha256 = %sha, "content request refused: no package or boot image holds it");
            return (StatusCode::NOT_FOUND, "no such content\n").into_response();
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot read the catalog to serve content");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "the catalog cannot be read\n",
            )
                .into_response();
        }
    }
    let etag = format!("\"{sha}\"");
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
    {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    let digest = format!(
        "sha-256=:{}:",
        crate::content::base64(&crate::content::unhex(&sha).unwrap_or_default())
    );
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let file = match s.small_files.get(&path) {
        Some(bytes) => Ok(OpenFile::in_memory(bytes)),
        None => OpenFile::open(&path).await.inspect(|f| {
            if let Some(bytes) = &f.whole {
                s.small_files.keep(&path, bytes);
            }
        }),
    };
    send_range(file, range.as_deref(), &etag, &digest)
}

/// The variables file wimboot injects into Windows PE (`X:\\Windows\\System32\\netdeploy.ini`):
/// what the agent or a script in WinPE reads to find the server and the deployment.
async fn winpe_variables(State(s): State<Arc<AppState>>, Query(q): Query<BootQuery>) -> Response {
    let clean = |v: &str| -> String {
        v.chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | ':' | '.'))
            .collect()
    };
    let mut out = format!(
        "[netdeploy]\r\nSMSTSServerURL={}\r\nSMSTSMediaType=PXE\r\n",
        s.base
    );
    if let Some(d) = q.deployment.as_deref() {
        out.push_str(&format!("SMSTSPreferredAdvertID={}\r\n", clean(d)));
    }
    if let Some(m) = q.mac.as_deref() {
        out.push_str(&format!("NetdeployMAC={}\r\n", clean(m)));
    }
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], out).into_response()
}

/// Streams a file or one byte range of it (RFC 9110 section 14).
fn send_range(
    file: std::io::Result<OpenFile>,
    range: Option<&str>,
    etag: &str,
    digest: &str,
) -> Response {
    let file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return (StatusCode::NOT_FOUND, "no such content\n").into_response()
        }
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    let len = file.len;
    let common = [
        (header::ETAG, etag.to_owned()),
        (
            header::HeaderName::from_static("repr-digest"),
            digest.to_owned(),
        ),
        (header::ACCEPT_RANGES, "bytes".to_owned()),
        (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
    ];
    match range.map(|r| parse_range(r, len)) {
        None | Some(RangeAsk::Ignore) => {
            let body = file.body(0, len);
            let mut r = (common, body).into_response();
            r.headers_mut().insert(header::CONTENT_LENGTH, len.into());
            r
        }
        Some(RangeAsk::Unsatisfiable) => (
            StatusCode::RANGE_NOT_SATISFIABLE,
            [(header::CONTENT_RANGE, format!("bytes */{len}"))],
        )
            .into_response(),
        Some(RangeAsk::Bytes(first, last)) => {
            let n = last - first + 1;
            let body = file.body(first, n);
            let mut r = (StatusCode::PARTIAL_CONTENT, common, body).into_response();
            let h = r.headers_mut();
            h.insert(header::CONTENT_LENGTH, n.into());
            h.insert(
                header::CONTENT_RANGE,
                format!("bytes {first}-{last}/{len}")
                    .parse()
                    .expect("valid header"),
            );
            r
        }
    }
}

/// Files up to this size are read whole before the response starts, so that the headers and
/// the body leave in one write (and one TCP segment) instead of a head followed by a small
/// body segment.
const SMALL_FILE: u64 = 64 * 1024;

/// A file opened for a response: its length, and its bytes when it is small (then the file
/// itself may be gone).
struct OpenFile {
    file: Option<std::fs::File>,
    len: u64,
    whole: Option<axum::body::Bytes>,
}

impl OpenFile {
    fn in_memory(bytes: axum::body::Bytes) -> OpenFile {
        OpenFile {
            file: None,
            len: bytes.len() as u64,
            whole: Some(bytes),
        }
    }

    /// Opens, measures and (when small) reads a file in one trip to the blocking pool.
    async fn open(path: &Path) -> std::io::Result<OpenFile> {
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || {
            use std::io::Read;
            let mut file = std::fs::File::open(&path)?;
            let len = file.metadata()?.len();
            if len > SMALL_FILE {
                return Ok(OpenFile {
                    file: Some(file),
                    len,
                    whole: None,
                });
            }
            let mut buf = Vec::with_capacity(len as usize);
            (&mut file).take(len).read_to_end(&mut buf)?;
            Ok(OpenFile {
                file: None,
                // A file cut short since it was measured is served as it is now.
                len: buf.len() as u64,
                whole: Some(buf.into()),
            })
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
    }

    /// The bytes `start..start + len` as a response body.
    fn body(self, start: u64, len: u64) -> Body {
        match (self.whole, self.file) {
            (Some(b), _) => Body::from(b.slice(start as usize..(start + len) as usize)),
            (None, Some(file)) => file_body(file, start, len),
            (None, None) => Body::empty(),
        }
    }
}

/// Bytes read per step of [`file_body`].
const FILE_CHUNK: u64 = 512 * 1024;

/// The bytes `start..start + len` of a file as a response body. Each chunk is read on the
/// blocking pool straight into the buffer that goes out (`tokio::fs::File` reads into a buffer
/// of its own and copies from it: one more copy of every byte, which shows when many machines
/// fetch an image at once). A file shorter than promised ends the body with an error, so the
/// client sees a short response rather than wrong bytes.
fn file_body(file: std::fs::File, start: u64, len: u64) -> Body {
    // The first chunk seeks to `start`; the next ones read on from where it left off.
    let state = (Arc::new(file), Some(start), len);
    let chunks = futures_util::stream::unfold(state, |(file, seek, left)| async move {
        if left == 0 {
            return None;
        }
        let want = left.min(FILE_CHUNK);
        let f = file.clone();
        let read = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
            use std::io::{Read, Seek};
            let mut handle = &*f;
            if let Some(pos) = seek {
                handle.seek(std::io::SeekFrom::Start(pos))?;
            }
            // A Vec's spare capacity is read into without zeroing it first.
            let mut buf = Vec::with_capacity(want as usize);
            handle.take(want).read_to_end(&mut buf)?;
            if (buf.len() as u64) < want {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the file is shorter than when the response started",
                ));
            }
            Ok(buf)
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        Some(match read {
            Ok(buf) => (Ok(axum::body::Bytes::from(buf)), (file, None, left - want)),
            Err(e) => (Err(e), (file, None, 0)),
        })
    });
    Body::from_stream(chunks)
}

/// What a `Range` header asks of a representation of `len` bytes.
#[derive(Debug, PartialEq, Eq)]
enum RangeAsk {
    /// Serve the whole file (no usable single byte range, such as several ranges).
    Ignore,
    Unsatisfiable,
    /// First and last byte, inclusive.
    Bytes(u64, u64),
}

fn parse_range(h: &str, len: u64) -> RangeAsk {
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        return RangeAsk::Ignore;
    };
    if spec.contains(',') {
        return RangeAsk::Ignore;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeAsk::Ignore;
    };
    let (a, b) = (a.trim(), b.trim());
    let (first, last) = if a.is_empty() {
        // Suffix: the last N bytes.
        let Ok(n) = b.parse::<u64>() else {
            return RangeAsk::Ignore;
        };
        if n == 0 || len == 0 {
            return RangeAsk::Unsatisfiable;
        }
        (len.saturating_sub(n), len - 1)
    } else {
        let Ok(first) = a.parse::<u64>() else {
            return RangeAsk::Ignore;
        };
        let last = if b.is_empty() {
            len.saturating_sub(1)
        } else {
            match b.parse::<u64>() {
                Ok(l) if l >= first => l.min(len.saturating_sub(1)),
                _ => return RangeAsk::Ignore,
            }
        };
        (first, last)
    };
    if first >= len {
        return RangeAsk::Unsatisfiable;
    }
    RangeAsk::Bytes(first, last)
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
    let file = match OpenFile::open(path).await {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(file = %path.display(), error = %e, "cannot open boot file");
            return (StatusCode::NOT_FOUND, "file not available\n").into_response();
        }
    };
    let len = file.len;
    (
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_LENGTH, len.to_string()),
        ],
        file.body(0, len),
    )
        .into_response()
}

/// Serves HTTP on an already bound listener until cancelled, holding every connection to
/// `http` limits of the configuration; `table` counts the connections of every listener.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    table: Arc<std::sync::Mutex<connections::ConnectionTable>>,
    cancel: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    let limits = state.config.http.limits;
    let counters = state.counters.clone();
    connections::serve(listener, router(state), limits, counters, table, cancel).await
}

#[cfg(test)]
mod range_tests {
    use super::*;

    #[test]
    fn small_files_are_kept_until_the_bound_and_then_left_alone() {
        let cache = SmallFiles::default();
        let chunk = axum::body::Bytes::from(vec![7u8; SMALL_FILES_BYTES / 2]);
        cache.keep(Path::new("/a"), &chunk);
        cache.keep(Path::new("/b"), &chunk);
        cache.keep(Path::new("/c"), &axum::body::Bytes::from_static(b"x"));
        assert_eq!(cache.get(Path::new("/a")), Some(chunk.clone()));
        assert!(cache.get(Path::new("/b")).is_some());
        // Full: the next file is served from disk each time.
        assert_eq!(cache.get(Path::new("/c")), None);
        // Keeping a file twice counts it once.
        let small = SmallFiles::default();
        for _ in 0..3 {
            small.keep(Path::new("/a"), &chunk);
        }
        small.keep(Path::new("/b"), &chunk);
        assert!(small.get(Path::new("/b")).is_some());
    }

    #[test]
    fn ranges_follow_rfc_9110() {
        assert_eq!(parse_range("bytes=0-99", 1000), RangeAsk::Bytes(0, 99));
        assert_eq!(parse_range("bytes=500-", 1000), RangeAsk::Bytes(500, 999));
        assert_eq!(parse_range("bytes=-100", 1000), RangeAsk::Bytes(900, 999));
        assert_eq!(
            parse_range("bytes=900-5000", 1000),
            RangeAsk::Bytes(900, 999)
        );
        assert_eq!(parse_range("bytes=1000-", 1000), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,5-9", 1000), RangeAsk::Ignore);
        assert_eq!(parse_range("items=0-1", 1000), RangeAsk::Ignore);
        assert_eq!(parse_range("bytes=9-1", 1000), RangeAsk::Ignore);
    }
}
