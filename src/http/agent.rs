//! Endpoints of the boot environment: `/agent/policy` and `/agent/status`. Each request
//! presents the run token of its run (docs/agent-http.md, docs/security.md); without one it is
//! refused 401, with one that is not its machine's, its deployment's or a live run's, 403.

use std::sync::Arc;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{Extensions, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::AppState;
use crate::catalog::MachineIdentity;
use crate::counters::Counters;
use crate::credentials::{Refusal, RunToken, Use};
use crate::decision::Context;
use netdeploy_wire::run_token::RESPONSE_HEADER;
use netdeploy_wire::status::StatusKind;

#[derive(Debug, Deserialize)]
pub struct PolicyQuery {
    mac: Option<String>,
    uuid: Option<String>,
    context: Option<String>,
    /// The deployment the PXE script started, or the media's SMSTSPreferredAdvertID.
    deployment: Option<String>,
}

fn bad(message: impl std::fmt::Display) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(serde_json::json!({ "error": message.to_string() })),
    )
        .into_response()
}

pub(super) fn unavailable(what: &str, e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "{what}");
    (StatusCode::SERVICE_UNAVAILABLE, format!("{what}\n")).into_response()
}

/// The caller's address, for the log.
fn caller(ext: &Extensions) -> String {
    ext.get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// Refuses a request for want of a valid run token: logged with the caller's address and
/// counted (`agent_unauthorized`, `agent_forbidden` in /metrics).
pub(super) fn refuse(
    s: &AppState,
    ext: &Extensions,
    endpoint: &str,
    m: &MachineIdentity,
    r: Refusal,
) -> Response {
    let status = StatusCode::from_u16(r.http_status()).unwrap_or(StatusCode::FORBIDDEN);
    Counters::bump(match r.http_status() {
        401 => &s.counters.agent_unauthorized,
        _ => &s.counters.agent_forbidden,
    });
    tracing::warn!(
        client = %caller(ext),
        mac = m.mac.map(|x| x.to_string()).unwrap_or_default(),
        uuid = m.uuid.map(|x| x.to_string()).unwrap_or_default(),
        status = status.as_u16(),
        reason = r.reason(),
        "{endpoint} refused"
    );
    let mut response = (status, Json(serde_json::json!({ "error": r.reason() }))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            axum::http::header::WWW_AUTHENTICATE,
            axum::http::HeaderValue::from_static("Bearer"),
        );
    }
    response
}

pub(super) fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

pub async fn policy(
    State(s): State<Arc<AppState>>,
    Query(q): Query<PolicyQuery>,
    headers: HeaderMap,
    ext: Extensions,
) -> Response {
    let m = match crate::bootpath::machine_of(q.mac.as_deref(), q.uuid.as_deref()) {
        Ok(m) => m,
        Err(e) => return bad(e),
    };
    let context = match q.context.as_deref().unwrap_or("pxe") {
        "pxe" => Context::Pxe,
        "media" => Context::Media,
        other => return bad(format!("context {other:?} is not pxe or media")),
    };
    // A PXE run was given its token by its iPXE script. A boot medium's first request has
    // none yet: it presents the medium's key instead, and its policy brings a run token.
    let bp = s.bootpath.clone();
    let (auth, machine, deployment) = (
        authorization(&headers).map(str::to_owned),
        m,
        q.deployment.clone(),
    );
    let held = match tokio::task::spawn_blocking(move || {
        let held = bp.check_run_token(
            auth.as_deref(),
            &machine,
            deployment.as_deref(),
            Use::Policy,
        )?;
        match held {
            Err(Refusal::Missing) if context == Context::Media => bp
                .check_medium_key(auth.as_deref())
                .map(|r| r.map(|()| None)),
            held => Ok(held.map(Some)),
        }
    })
    .await
    {
        Ok(Ok(Ok(held))) => held,
        Ok(Ok(Err(r))) => return refuse(&s, &ext, "policy request", &m, r),
        Ok(Err(e)) => return unavailable("the run token cannot be checked", e),
        Err(e) => return unavailable("the run token check failed", e),
    };
    let bp = s.bootpath.clone();
    let deployment = q.deployment.clone();
    let decided =
        tokio::task::spawn_blocking(move || bp.policy_decision(m, context, deployment.as_deref()))
            .await;
    let (decision, catalog) = match decided {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "policy: cannot read the catalog");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "the catalog cannot be read\n",
            )
                .into_response();
        }
        Err(e) => {
            tracing::error!(error = %e, "policy task failed");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    // Rule 9: a PXE run gets a token bound to a deployment only once the PXE password was
    // typed; one bound to none (the default boot image's) starts no deployment.
    if decision.password_required && matches!(&held, Some((_, c)) if c.deployment.is_none()) {
        return refuse(&s, &ext, "policy request", &m, Refusal::OtherDeployment);
    }
    s.bootpath.record_warnings(&decision);
    s.bootpath.record_unmet(&decision);
    let p = crate::policy::policy(&decision, catalog.catalog(), &s.base);
    tracing::info!(
        mac = m.mac.map(|x| x.to_string()).unwrap_or_default(),
        %context,
        policy = match &p {
            crate::policy::Policy::Run { deployment, .. } => format!("run {}", deployment.id),
            crate::policy::Policy::Menu { entries, .. } => format!("menu of {}", entries.len()),
            crate::policy::Policy::None { reason } => format!("none: {reason}"),
            crate::policy::Policy::Unknown => "unknown".into(),
        },
        "policy served"
    );
    // The token the agent uses from here on: the one it holds while the policy is for the
    // same deployment, else a new one for what was decided (the old one ends).
    let decided = match &p {
        crate::policy::Policy::Run { deployment, .. } => Some(deployment.id.to_string()),
        _ => None,
    };
    let token = match held {
        Some((token, c)) if c.deployment == decided => token,
        held => {
            let bp = s.bootpath.clone();
            let (machine, lifetime) = (m, s.config.boot.run_token_lifetime);
            let issued = tokio::task::spawn_blocking(move || {
                if let Some((old, _)) = &held {
                    bp.end_run(old)?;
                }
                bp.issue_run_token(&machine, decided.as_deref(), lifetime)
            })
            .await;
            match issued {
                Ok(Ok(t)) => t,
                Ok(Err(e)) => return unavailable("cannot issue a run token", e),
                Err(e) => return unavailable("issuing a run token failed", e),
            }
        }
    };
    (
        [
            (
                axum::http::header::CONTENT_TYPE,
                "application/json".to_owned(),
            ),
            (
                axum::http::HeaderName::from_static(RESPONSE_HEADER),
                token.to_string(),
            ),
        ],
        crate::policy::encode(&p),
    )
        .into_response()
}

pub async fn status(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    ext: Extensions,
    body: axum::body::Bytes,
) -> Response {
    let Ok(raw) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return bad("the status message is not JSON");
    };
    let msg = match crate::bootpath::parse_agent_status(raw.clone()) {
        Ok(m) => m,
        Err(e) => return bad(e),
    };
    let m = msg.machine;
    let bp = s.bootpath.clone();
    let (auth, machine, deployment) = (
        authorization(&headers).map(str::to_owned),
        m,
        msg.deployment.clone(),
    );
    let usage = match msg.kind {
        StatusKind::NoDeployment => Use::NothingDeployed,
        _ => Use::Status,
    };
    let token: RunToken = match tokio::task::spawn_blocking(move || {
        bp.check_run_token(auth.as_deref(), &machine, deployment.as_deref(), usage)
    })
    .await
    {
        Ok(Ok(Ok((token, _)))) => token,
        Ok(Ok(Err(r))) => return refuse(&s, &ext, "status message", &m, r),
        Ok(Err(e)) => return unavailable("the run token cannot be checked", e),
        Err(e) => return unavailable("the run token check failed", e),
    };
    let ends = crate::credentials::ends_run(&msg.kind);
    let level_fail = msg.kind == StatusKind::Failed;
    match msg.kind {
        StatusKind::Failed => crate::counters::Counters::bump(&s.counters.deployments_failed),
        StatusKind::Succeeded => crate::counters::Counters::bump(&s.counters.deployments_succeeded),
        _ => {}
    }
    let mac = m.mac.map(|x| x.to_string()).unwrap_or_default();
    let summary = format!(
        "{} {} {}",
        raw.get("step").and_then(|v| v.as_str()).unwrap_or(""),
        raw.get("file").and_then(|v| v.as_str()).unwrap_or(""),
        raw.get("reason").and_then(|v| v.as_str()).unwrap_or("")
    );
    if level_fail {
        tracing::warn!(mac = %mac, deployment = msg.deployment.as_deref().unwrap_or(""), kind = %msg.kind, details = summary.trim(), "agent status");
    } else {
        tracing::info!(mac = %mac, deployment = msg.deployment.as_deref().unwrap_or(""), kind = %msg.kind, details = summary.trim(), "agent status");
    }
    let bp = s.bootpath.clone();
    let dep = msg.deployment.clone();
    let kind = msg.kind.clone();
    match tokio::task::spawn_blocking(move || {
        let seq = bp.record_agent_status(m, dep.as_deref(), kind.as_str(), raw)?;
        if ends {
            bp.end_run(&token)?;
        }
        Ok::<_, crate::store::StoreError>(seq)
    })
    .await
    {
        Ok(Ok(Some(seq))) => {
            (StatusCode::CREATED, Json(serde_json::json!({ "seq": seq }))).into_response()
        }
        // The shared database is away: the message waits in this server's spool.
        Ok(Ok(None)) => (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({ "kept": true })),
        )
            .into_response(),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot store a status message");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "the status message was not stored\n",
            )
                .into_response()
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}
