//! Endpoints of the boot environment (no token: what they return is decided per machine and
//! holds no secret, docs/selection-rules.md rule 9): `/agent/policy` and `/agent/status`.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::AppState;
use crate::decision::Context;
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

pub async fn policy(State(s): State<Arc<AppState>>, Query(q): Query<PolicyQuery>) -> Response {
    let m = match crate::bootpath::machine_of(q.mac.as_deref(), q.uuid.as_deref()) {
        Ok(m) => m,
        Err(e) => return bad(e),
    };
    let context = match q.context.as_deref().unwrap_or("pxe") {
        "pxe" => Context::Pxe,
        "media" => Context::Media,
        other => return bad(format!("context {other:?} is not pxe or media")),
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
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        crate::policy::encode(&p),
    )
        .into_response()
}

pub async fn status(State(s): State<Arc<AppState>>, body: axum::body::Bytes) -> Response {
    let Ok(raw) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return bad("the status message is not JSON");
    };
    let msg = match crate::bootpath::parse_agent_status(raw.clone()) {
        Ok(m) => m,
        Err(e) => return bad(e),
    };
    let m = msg.machine;
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
        bp.record_agent_status(m, dep.as_deref(), kind.as_str(), raw)
    })
    .await
    {
        Ok(Ok(seq)) => {
            (StatusCode::CREATED, Json(serde_json::json!({ "seq": seq }))).into_response()
        }
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
