//! `GET /agent/multicast`: the session that sends an image to this machine
//! (docs/multicast.md, section 1). The agent asks before an `apply_image` of a deployment
//! with `multicast = true`, with its run token; the answer is a
//! `netdeploy_wire::policy::MulticastSession`, or a refusal whose reason the agent puts in its
//! status as it applies the image over HTTP instead.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{Extensions, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::AppState;
use crate::counters::Counters;
use crate::credentials::Use;
use crate::multicast::sessions::{load_image, JoinError};

/// Who asks, and for which image.
#[derive(Debug, Deserialize)]
pub struct MulticastQuery {
    mac: Option<String>,
    uuid: Option<String>,
    deployment: Option<String>,
    package: String,
    file: String,
}

fn no(s: &AppState, status: StatusCode, why: impl std::fmt::Display) -> Response {
    Counters::bump(&s.counters.multicast_refused);
    tracing::info!(status = status.as_u16(), reason = %why, "multicast session refused; the machine uses HTTP");
    (
        status,
        Json(serde_json::json!({ "error": why.to_string() })),
    )
        .into_response()
}

pub async fn session(
    State(s): State<Arc<AppState>>,
    Query(q): Query<MulticastQuery>,
    headers: HeaderMap,
    ext: Extensions,
) -> Response {
    let m = match crate::bootpath::machine_of(q.mac.as_deref(), q.uuid.as_deref()) {
        Ok(m) => m,
        Err(e) => return no(&s, StatusCode::BAD_REQUEST, e),
    };
    let auth = super::agent::authorization(&headers).map(str::to_owned);
    let bp = s.bootpath.clone();
    let deployment = q.deployment.clone();
    let checked = tokio::task::spawn_blocking(move || {
        bp.check_run_token(auth.as_deref(), &m, deployment.as_deref(), Use::Status)
    })
    .await;
    let credential = match checked {
        Ok(Ok(Ok((_, credential)))) => credential,
        Ok(Ok(Err(r))) => return super::agent::refuse(&s, &ext, "multicast session", &m, r),
        Ok(Err(e)) => return super::agent::unavailable("the run token cannot be checked", e),
        Err(e) => return super::agent::unavailable("the run token check failed", e),
    };
    if !s.config.multicast.enabled {
        return no(
            &s,
            StatusCode::CONFLICT,
            "multicast is off on this server ([multicast] enabled = false)",
        );
    }
    let snapshot = s.bootpath.memory.snapshot();
    let view = snapshot.view();
    let catalog = snapshot.catalog();
    let Some(d) = credential
        .deployment
        .as_deref()
        .and_then(|d| d.parse().ok())
        .and_then(|d| catalog.deployment(&d))
    else {
        return no(&s, StatusCode::FORBIDDEN, "this run has no deployment");
    };
    if !d.multicast {
        return no(
            &s,
            StatusCode::CONFLICT,
            format!(
                "deployment {} does not allow multicast (multicast = true in the site file)",
                d.id
            ),
        );
    }
    let applies = catalog.task_sequence(&d.task_sequence).is_some_and(|ts| {
        ts.steps.iter().any(|step| {
            step.action == netdeploy_wire::policy::StepAction::ApplyImage
                && step.package.as_deref() == Some(q.package.as_str())
        })
    });
    if !applies {
        return no(
            &s,
            StatusCode::FORBIDDEN,
            format!(
                "the task sequence of deployment {} applies no image of package {:?}",
                d.id, q.package
            ),
        );
    }
    let Some(file) = catalog
        .package(&q.package)
        .and_then(|p| p.files.iter().find(|f| f.path == q.file))
        .filter(|f| f.path.ends_with(".ndimg"))
        .cloned()
    else {
        return no(
            &s,
            StatusCode::NOT_FOUND,
            format!(
                "package {:?} has no image index {:?}: only netdeploy images (.ndimg) are sent by multicast",
                q.package, q.file
            ),
        );
    };
    let machine = view
        .match_device(&m)
        .map(|dev| dev.name.clone())
        .or(m.mac.map(|x| x.to_string()))
        .unwrap_or_else(|| "unknown".into());
    let Ok(index_sha256) = file.sha256.parse::<netdeploy_wire::Sha256Hex>() else {
        return no(
            &s,
            StatusCode::INTERNAL_SERVER_ERROR,
            "the package's index hash is not a SHA-256",
        );
    };
    let lib = s.bootpath.library.clone();
    let sessions = s.multicast.clone();
    let (package, path) = (q.package.clone(), file.path.clone());
    // Reading the index and finding its chunks touches the disk: off the runtime's workers,
    // but inside the runtime, which the session's task needs.
    let joined = tokio::task::block_in_place(|| {
        sessions.join(
            &package,
            &path,
            &machine,
            || load_image(&lib, &path, &file.sha256),
            index_sha256.0,
        )
    });
    match joined {
        Ok(session) => {
            Counters::bump(&s.counters.multicast_joined);
            Json(session).into_response()
        }
        Err(e @ JoinError::Index { .. }) => no(&s, StatusCode::SERVICE_UNAVAILABLE, e),
        Err(e @ JoinError::NoGroup { .. }) => no(&s, StatusCode::SERVICE_UNAVAILABLE, e),
    }
}
