//! The running server's side of deployment alerts: every two seconds it evaluates the alerts
//! (off the reactor), remembers in the store which are raised, and posts each change once as
//! JSON to the configured webhooks: `{"event": "raised", "alert": {...}}` when an alert is
//! raised, `{"event": "cleared", "deployment": ID}` when it clears.
//!
//! Posting never holds up the evaluation or status recording: changes go through a bounded
//! queue to one poster, which gives each URL a few attempts, each with a timeout. A change
//! that finds the queue full is logged and dropped.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, Request, Uri};
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::alerts::{self, Alert};
use crate::store::{StatusMessage, Store, StoreError};

/// The store's object kind of an alert that was raised and not yet cleared.
const RAISED: &str = "alert-raised";
/// How often the alerts are evaluated.
const EVERY: Duration = Duration::from_secs(2);
/// Changes waiting to be posted, at most.
const QUEUE: usize = 64;
/// Attempts per webhook and change.
const ATTEMPTS: u32 = 3;
/// Time for one attempt: connect, send, and read the answer's head.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// What changed since the last evaluation, as posted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Change {
    Raised { alert: Alert },
    Cleared { deployment: String },
}

/// Evaluates the alerts and records what changed since the last call: newly raised alerts and
/// cleared ones, each also written as a status message.
pub fn changes(store: &Store) -> Result<Vec<Change>, StoreError> {
    let thresholds = alerts::thresholds(store)?;
    let before: Vec<Alert> = store.list(RAISED)?;
    if thresholds.is_empty() && before.is_empty() {
        return Ok(Vec::new());
    }
    let (catalog, _) = crate::store::catalog::load(store)?;
    // Only the messages of the deployments with a threshold (indexed by deployment).
    let mut now_raised = Vec::new();
    for t in &thresholds {
        let messages = store.statuses(Some(&t.deployment.to_string()), 100_000)?;
        now_raised.extend(alerts::current(
            &catalog,
            &messages,
            std::slice::from_ref(t),
        ));
    }
    let now = crate::bootpath::now();
    let mut out = Vec::new();
    for a in &now_raised {
        if !before.iter().any(|b| b.deployment == a.deployment) {
            store.put(RAISED, &a.deployment, a, now)?;
            out.push(Change::Raised { alert: a.clone() });
        }
    }
    for b in &before {
        if !now_raised.iter().any(|a| a.deployment == b.deployment) {
            store.delete(RAISED, &b.deployment)?;
            out.push(Change::Cleared {
                deployment: b.deployment.clone(),
            });
        }
    }
    for c in &out {
        let (kind, deployment, message) = match c {
            Change::Raised { alert } => ("alert-raised", &alert.deployment, alert.message.clone()),
            Change::Cleared { deployment } => (
                "alert-cleared",
                deployment,
                format!("deployment {deployment}: failures are back under the threshold"),
            ),
        };
        tracing::warn!(deployment = %deployment, %message, "{kind}");
        store.add_status(&StatusMessage {
            seq: 0,
            at: now,
            source: "server".into(),
            kind: kind.into(),
            identity: None,
            device: None,
            deployment: Some(deployment.clone()),
            body: serde_json::json!({ "message": message }),
        })?;
    }
    Ok(out)
}

/// Runs until `cancel`: evaluates the alerts every [`EVERY`] and posts each change to
/// `webhooks`.
pub async fn watch(store: Arc<Store>, webhooks: Vec<Uri>, cancel: CancellationToken) {
    let (tx, rx) = mpsc::channel::<Change>(QUEUE);
    tokio::spawn(post_all(rx, webhooks, cancel.clone()));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(EVERY) => {}
        }
        let st = store.clone();
        let found = match tokio::task::spawn_blocking(move || changes(&st)).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot evaluate the deployment alerts");
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "alert evaluation failed");
                continue;
            }
        };
        for c in found {
            if tx.try_send(c).is_err() {
                tracing::warn!("alert webhook queue full: a change is not posted");
            }
        }
    }
}

async fn post_all(mut rx: mpsc::Receiver<Change>, webhooks: Vec<Uri>, cancel: CancellationToken) {
    loop {
        let change = tokio::select! {
            _ = cancel.cancelled() => return,
            c = rx.recv() => match c { Some(c) => c, None => return },
        };
        let body = Bytes::from(serde_json::to_vec(&change).unwrap_or_default());
        for url in &webhooks {
            for attempt in 1..=ATTEMPTS {
                match tokio::time::timeout(ATTEMPT_TIMEOUT, post(url, body.clone())).await {
                    Ok(Ok(status)) if (200..300).contains(&status) => {
                        tracing::info!(%url, status, "alert posted");
                        break;
                    }
                    Ok(Ok(status)) => {
                        tracing::warn!(%url, status, attempt, "alert webhook refused the post")
                    }
                    Ok(Err(e)) => tracing::warn!(%url, error = %e, attempt, "alert not posted"),
                    Err(_) => tracing::warn!(%url, attempt, "alert webhook timed out"),
                }
                if attempt < ATTEMPTS {
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(u64::from(attempt))) => {}
                    }
                }
            }
        }
    }
}

/// One POST of `body` to `url` (plain HTTP/1.1); the answer's status code.
async fn post(url: &Uri, body: Bytes) -> Result<u16, Box<dyn std::error::Error + Send + Sync>> {
    let host = url.host().ok_or("the URL has no host")?;
    let port = url.port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((host, port)).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let authority = url.authority().map(|a| a.as_str()).unwrap_or(host);
    let req = Request::post(url.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
        .header(header::HOST, authority)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(body))?;
    let res = sender.send_request(req).await?;
    Ok(res.status().as_u16())
}
