//! The HTTP admin API (JSON under `/api/v1`), the same operations as the command line through
//! [`crate::admin`]. Every endpoint needs `Authorization: Bearer <token>` of one of the
//! configured tokens (`http.admin_token`, `http.api_tokens`); with none configured the API is off.
//! A `read` token may only read. Every change is recorded as an `admin-change` status message
//! with the token's name and the caller's address. An address that guesses wrong too often waits
//! ([`super::admin_auth::Throttle`]). Its OpenAPI document (`/api/v1/openapi.json`) and the boot
//! path's own endpoints (`/boot.ipxe`, `/content`, `/image`, `/tftp`) need none.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Extension, Path, Query, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::admin_auth;
use super::AppState;
use crate::admin::{self, AdminError, GuardScope};
use crate::bootpath::now;
use crate::catalog::{parse_smbios_uuid, shown, site, Collection, Device, MachineIdentity};
use crate::config::ApiRole;
use crate::counters::Counters;
use crate::decision::checks::NewDeployment;
use crate::decision::{explain_text, Context};
use crate::dhcp::packet::Mac;
use crate::store::catalog as stored;

/// The API's OpenAPI 3.1 document, every route of [`router`] with its bodies and answers.
const OPENAPI: &str = include_str!("../../docs/admin-api.openapi.json");

/// The admin routes behind the bearer-token check, and the OpenAPI document without it: a
/// description of the API holds nothing of the catalog, and tools read it before they have a
/// token.
pub fn router(state: Arc<AppState>) -> Router<Arc<AppState>> {
    let guarded = Router::new()
        .route("/api/v1/catalog", get(catalog))
        .route("/api/v1/site", post(apply_site))
        .route("/api/v1/deployments", post(create_deployment).get(list))
        .route("/api/v1/explain", get(explain))
        .route("/api/v1/pxe/clear", post(clear))
        .route("/api/v1/status", get(status))
        .route("/api/v1/alerts", get(list_alerts))
        .route(
            "/api/v1/alerts/{deployment}",
            axum::routing::put(set_alert).delete(clear_alert),
        )
        .route("/api/v1/{kind}", get(list))
        .route("/api/v1/{kind}/{id}", get(show).delete(delete).put(put))
        .route_layer(middleware::from_fn_with_state(state, require_token));
    Router::new()
        .route("/api/v1/openapi.json", get(openapi))
        .merge(guarded)
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (
        status,
        Json(serde_json::json!({ "error": message.to_string() })),
    )
        .into_response()
}

/// Who made an admin API request: the name of its token and its address.
#[derive(Debug, Clone)]
struct Caller {
    name: String,
    from: String,
}

impl Caller {
    /// As the operator of an admin operation (audit status messages).
    fn operator(&self) -> String {
        format!("admin-api:{}", self.name)
    }
}

async fn require_token(State(s): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let tokens = &s.config.http.api_tokens;
    if tokens.is_empty() {
        return error(
            StatusCode::FORBIDDEN,
            "the admin API is off: set http.admin_token in the configuration",
        );
    }
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if let Some(ip) = peer {
        let waiting = s
            .admin_throttle
            .lock()
            .expect("throttle lock")
            .waiting(ip, Instant::now());
        if let Some(wait) = waiting {
            Counters::bump(&s.counters.admin_auth_throttled);
            return too_many(wait);
        }
    }
    let from = peer.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(token) = given.and_then(|g| admin_auth::identify(tokens, g)) else {
        Counters::bump(&s.counters.admin_auth_failures);
        let wait = peer.and_then(|ip| {
            s.admin_throttle
                .lock()
                .expect("throttle lock")
                .failed(ip, Instant::now())
        });
        tracing::warn!(
            %from,
            method = %req.method(),
            path = req.uri().path(),
            token_given = given.is_some(),
            wait_seconds = wait.map(|w| w.as_secs()),
            "admin API: no valid bearer token"
        );
        if let Some(wait) = wait {
            Counters::bump(&s.counters.admin_auth_throttled);
            return too_many(wait);
        }
        let mut r = error(StatusCode::UNAUTHORIZED, "a valid bearer token is required");
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            "Bearer".parse().expect("valid header"),
        );
        return r;
    };
    if let Some(ip) = peer {
        s.admin_throttle
            .lock()
            .expect("throttle lock")
            .succeeded(ip);
    }
    let changes = !matches!(*req.method(), Method::GET | Method::HEAD);
    if changes && token.role != ApiRole::Admin {
        Counters::bump(&s.counters.admin_forbidden);
        tracing::warn!(
            %from,
            token = %token.name,
            method = %req.method(),
            path = req.uri().path(),
            "admin API: a read-only token tried a change"
        );
        return error(
            StatusCode::FORBIDDEN,
            format!(
                "the token {:?} may only read (role {}); a change needs a token with role admin",
                token.name, token.role
            ),
        );
    }
    let caller = Caller {
        name: token.name.clone(),
        from,
    };
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    req.extensions_mut().insert(caller.clone());
    let response = next.run(req).await;
    if changes && response.status().is_success() {
        let audit = admin::change_audit(
            &caller.name,
            &caller.from,
            method.as_str(),
            &path,
            response.status().as_u16(),
            now(),
        );
        let store = s.bootpath.store.clone();
        let written = tokio::task::spawn_blocking(move || store.add_status(&audit)).await;
        match written {
            Ok(Ok(_)) => {
                tracing::info!(token = %caller.name, from = %caller.from, %method, path, "admin API change")
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, %method, path, "admin API change not audited")
            }
            Err(e) => tracing::error!(error = %e, %method, path, "admin API change not audited"),
        }
    }
    response
}

/// `429` with the seconds the caller still has to wait.
fn too_many(wait: std::time::Duration) -> Response {
    let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
    let mut r = error(
        StatusCode::TOO_MANY_REQUESTS,
        format!("too many wrong tokens from this address: wait {seconds} s"),
    );
    r.headers_mut().insert(
        header::RETRY_AFTER,
        seconds.to_string().parse().expect("digits"),
    );
    r
}

fn store_kind(path: &str) -> Option<&'static str> {
    Some(match path {
        "devices" => "device",
        "collections" => "collection",
        "packages" => "package",
        "boot_images" => "boot_image",
        "task_sequences" => "task_sequence",
        "deployments" => "deployment",
        "templates" => "template",
        _ => return None,
    })
}

fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "admin API");
    error(StatusCode::INTERNAL_SERVER_ERROR, e)
}

async fn catalog(State(s): State<Arc<AppState>>) -> Response {
    match stored::load(&s.bootpath.store) {
        Ok((c, settings)) => Json(shown(
            serde_json::json!({ "settings": settings, "catalog": c }),
        ))
        .into_response(),
        Err(e) => internal(e),
    }
}

/// Applies a site file sent as TOML. It may name files only below `server.import_root`, and
/// its relative paths are relative to that directory.
async fn apply_site(
    State(s): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Response {
    let text = match site::text(&body) {
        Ok(t) => t,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let files = match &s.config.import_root {
        Some(root) => site::FileAccess::ImportRoot { root: root.clone() },
        None => site::FileAccess::NoFiles,
    };
    let lib = &s.bootpath.library;
    let store = s.bootpath.store.clone();
    let captured = |id: &str| {
        store
            .get::<crate::catalog::Package>("package", id)
            .ok()
            .flatten()
    };
    let parsed = site::parse_with_captured(
        text,
        &files,
        |p, n| lib.import(p, n),
        now(),
        &site::Silent,
        &captured,
    );
    let site = match parsed {
        Ok(site) => site,
        Err(e) => return error(StatusCode::UNPROCESSABLE_ENTITY, e),
    };
    let operator = caller.operator();
    match stored::apply(&s.bootpath.store, &site, |h| lib.has(h), &operator, now()) {
        Ok(a) => {
            if let Err(e) = crate::alerts::apply_site(&s.bootpath.store, &site, now()) {
                return internal(e);
            }
            // The wake requests are served by this server's own wake task within a second.
            let woken =
                crate::wake::request_for_site(&s.bootpath.store, &a.changes, &operator, now())
                    .unwrap_or_else(|e| {
                        tracing::warn!(error = %e, "cannot ask for wake-on-LAN");
                        Vec::new()
                    });
            Json(serde_json::json!({
            "wake_on_lan": woken.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
            "changes": a.changes,
            "warnings": a.warnings.iter().map(|(id, w)| serde_json::json!({"deployment": id, "warning": w.to_string()})).collect::<Vec<_>>(),
        }))
        .into_response()
        }
        Err(stored::ApplyError::Refused { id, refusals }) => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "deployment {id}: {}",
                refusals
                    .iter()
                    .map(|r| r.to_string())
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        ),
        Err(e) => internal(e),
    }
}

async fn list(State(s): State<Arc<AppState>>, kind: Option<Path<String>>) -> Response {
    let kind = kind
        .map(|Path(k)| k)
        .unwrap_or_else(|| "deployments".into());
    let Some(k) = store_kind(&kind) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no such collection of objects: {kind}"),
        );
    };
    if k == "collection" {
        return match stored::load(&s.bootpath.store) {
            Ok((c, _)) => Json(c.collections).into_response(),
            Err(e) => internal(e),
        };
    }
    match s.bootpath.store.list::<serde_json::Value>(k) {
        Ok(v) => Json(shown(serde_json::Value::Array(v))).into_response(),
        Err(e) => internal(e),
    }
}

async fn show(
    State(s): State<Arc<AppState>>,
    Path((kind, id)): Path<(String, String)>,
) -> Response {
    let Some(k) = store_kind(&kind) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no such collection of objects: {kind}"),
        );
    };
    match s.bootpath.store.get::<serde_json::Value>(k, &id) {
        Ok(Some(v)) => Json(shown(v)).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no {k} {id:?}")),
        Err(e) => internal(e),
    }
}

async fn delete(
    State(s): State<Arc<AppState>>,
    Path((kind, id)): Path<(String, String)>,
) -> Response {
    let Some(k) = store_kind(&kind) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no such collection of objects: {kind}"),
        );
    };
    match crate::admin::delete_object(&s.bootpath.store, k, &id) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e @ AdminError::InUse { .. }) => error(StatusCode::CONFLICT, e.to_string()),
        Err(AdminError::NotFound(m)) => error(StatusCode::NOT_FOUND, m),
        Err(e) => internal(e),
    }
}

/// Creates or replaces a device or custom collection.
async fn put(
    State(s): State<Arc<AppState>>,
    Path((kind, id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let store = &s.bootpath.store;
    let saved =
        match kind.as_str() {
            "devices" => match serde_json::from_slice::<Device>(&body) {
                Ok(d) if d.name == id => admin::put_device(store, &d),
                Ok(_) => {
                    return error(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "the name must match the path",
                    )
                }
                Err(e) => return error(StatusCode::UNPROCESSABLE_ENTITY, e),
            },
            "collections" => match serde_json::from_slice::<Collection>(&body) {
                Ok(c) if c.id == id => admin::put_collection(store, &c),
                Ok(_) => {
                    return error(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "the id must match the path",
                    )
                }
                Err(e) => return error(StatusCode::UNPROCESSABLE_ENTITY, e),
            },
            _ => return error(
                StatusCode::METHOD_NOT_ALLOWED,
                "only devices and collections are written one by one; use a site file for the rest",
            ),
        };
    match saved {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(AdminError::Invalid(m)) => error(StatusCode::UNPROCESSABLE_ENTITY, m),
        Err(e) => internal(e),
    }
}

#[derive(Deserialize)]
struct CreateBody {
    #[serde(flatten)]
    new: NewDeployment,
    site_code: Option<String>,
}

async fn create_deployment(
    State(s): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Json(b): Json<CreateBody>,
) -> Response {
    let operator = caller.operator();
    match admin::create_deployment(&s.bootpath.store, &s.bootpath.library, b.new, b.site_code, &operator) {
        Ok(c) => {
            wake_new(&s, c.id);
            (StatusCode::CREATED, Json(c)).into_response()
        }
        Err(AdminError::Refused(r)) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(serde_json::json!({ "error": "refused", "refusals": r.iter().map(|x| x.to_string()).collect::<Vec<_>>() })),
        )
            .into_response(),
        Err(AdminError::NoSiteCode) | Err(AdminError::Id(_)) | Err(AdminError::NotFound(_)) => {
            error(StatusCode::UNPROCESSABLE_ENTITY, "no site code or id space left")
        }
        Err(e) => internal(e),
    }
}

#[derive(Deserialize)]
struct ExplainQuery {
    mac: Option<String>,
    uuid: Option<String>,
    arch: Option<u16>,
    context: Option<String>,
    preferred: Option<String>,
    /// `ipv6=true`: the machine network-boots over IPv6; the text says how it is answered.
    ipv6: Option<bool>,
}

async fn explain(State(s): State<Arc<AppState>>, Query(q): Query<ExplainQuery>) -> Response {
    let mac = match q.mac.as_deref().map(str::parse::<Mac>).transpose() {
        Ok(m) => m,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let uuid = match q.uuid.as_deref().map(parse_smbios_uuid).transpose() {
        Ok(u) => u,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    if mac.is_none() && uuid.is_none() {
        return error(
            StatusCode::BAD_REQUEST,
            "name the machine with mac and/or uuid",
        );
    }
    let context = match q.context.as_deref().unwrap_or("pxe") {
        "pxe" => Context::Pxe,
        "media" => Context::Media,
        other => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("context {other:?} is not pxe or media"),
            )
        }
    };
    match admin::explain(
        &s.bootpath.store,
        MachineIdentity { mac, uuid },
        q.arch,
        context,
        q.preferred.as_deref(),
        s.config.boot.pxe_password.is_some(),
    ) {
        Ok(d) => {
            let mut text = explain_text(&d);
            // How this firmware gets to its boot image here (`[boot.chain]`), as the command
            // line says it.
            let arch = q.arch.and_then(crate::arch::ClientArch::from_option93);
            if let Some(line) = arch
                .filter(|_| context == Context::Pxe)
                .and_then(|a| crate::secure_boot::explain_chain(a, s.config.boot.chain(a)))
            {
                text.push_str(&line);
                text.push('\n');
            }
            if q.ipv6 == Some(true) && context == Context::Pxe {
                let address = s.config.ipv6.as_ref().map(|v| v.address.to_string());
                text.push_str(&crate::dhcp6::pxe::explain(arch, address.as_deref()));
                text.push('\n');
            }
            Json(serde_json::json!({ "text": text, "decision": d })).into_response()
        }
        Err(e) => internal(e),
    }
}

async fn clear(State(s): State<Arc<AppState>>, Json(scope): Json<GuardScope>) -> Response {
    match admin::clear_guard(&s.bootpath.store, &scope) {
        Ok(c) => Json(serde_json::json!({
            "cleared": c.guards.len(),
            "guards": c.guards,
            "none_because": c.none_because,
        }))
        .into_response(),
        Err(AdminError::NotFound(m)) => error(StatusCode::NOT_FOUND, m),
        Err(AdminError::Invalid(m)) => error(StatusCode::BAD_REQUEST, m),
        Err(e) => internal(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertBody {
    failure_percent: u32,
    #[serde(default = "one")]
    min_failures: usize,
}

fn one() -> usize {
    1
}

/// The thresholds and the alerts raised now.
async fn list_alerts(State(s): State<Arc<AppState>>) -> Response {
    let store = &s.bootpath.store;
    let found = crate::alerts::thresholds(store).and_then(|t| {
        let (catalog, _) = stored::load(store)?;
        let messages = store.statuses(None, 100_000)?;
        let raised = crate::alerts::current(&catalog, &messages, &t);
        Ok((t, raised))
    });
    match found {
        Ok((t, raised)) => {
            Json(serde_json::json!({ "thresholds": t, "raised": raised })).into_response()
        }
        Err(e) => internal(e),
    }
}

async fn set_alert(
    State(s): State<Arc<AppState>>,
    Path(deployment): Path<String>,
    Json(b): Json<AlertBody>,
) -> Response {
    let Ok(id) = deployment.parse::<crate::catalog::DeploymentId>() else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no deployment {deployment:?}"),
        );
    };
    match stored::load(&s.bootpath.store) {
        Ok((c, _)) if c.deployment(&id).is_some() => {}
        Ok(_) => return error(StatusCode::NOT_FOUND, format!("no deployment {id}")),
        Err(e) => return internal(e),
    }
    let t = match crate::alerts::Threshold::new(id, b.failure_percent, b.min_failures) {
        Ok(t) => t,
        Err(e) => return error(StatusCode::UNPROCESSABLE_ENTITY, e),
    };
    match crate::alerts::set(&s.bootpath.store, &t, now()) {
        Ok(()) => Json(t).into_response(),
        Err(e) => internal(e),
    }
}

async fn clear_alert(State(s): State<Arc<AppState>>, Path(deployment): Path<String>) -> Response {
    let Ok(id) = deployment.parse::<crate::catalog::DeploymentId>() else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no deployment {deployment:?}"),
        );
    };
    match crate::alerts::clear(&s.bootpath.store, &id) {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => error(StatusCode::NOT_FOUND, format!("{id} has no alert")),
        Err(e) => internal(e),
    }
}

#[derive(Deserialize)]
struct StatusQuery {
    deployment: Option<String>,
    limit: Option<usize>,
}

async fn status(State(s): State<Arc<AppState>>, Query(q): Query<StatusQuery>) -> Response {
    match s
        .bootpath
        .store
        .statuses(q.deployment.as_deref(), q.limit.unwrap_or(100).min(10_000))
    {
        Ok(v) => Json(v).into_response(),
        Err(e) => internal(e),
    }
}

/// Wakes the machines of a new required deployment with wake-on-LAN (docs/operating.md).
fn wake_new(s: &AppState, id: crate::catalog::DeploymentId) {
    let Ok((catalog, _)) = stored::load(&s.bootpath.store) else {
        return;
    };
    match crate::wake::wake_new_deployment(&catalog, &id, &s.config.interfaces) {
        Some(Ok(n)) => tracing::info!(deployment = %id, packets = n, "wake-on-LAN sent"),
        Some(Err(e)) => tracing::warn!(deployment = %id, error = %e, "wake-on-LAN not sent"),
        None => {}
    }
}
