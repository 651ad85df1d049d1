//! `/metrics`: the server's counters in Prometheus' text format, and how many store writes
//! wait in the boot path's queue.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::AppState;

/// Prometheus text format of every counter.
pub(super) async fn metrics(State(s): State<Arc<AppState>>) -> Response {
    let mut out = String::new();
    for (name, value) in s.counters.snapshot() {
        out.push_str(&format!(
            "# TYPE netdeploy_{name}_total counter\nnetdeploy_{name}_total {value}\n"
        ));
    }
    out.push_str(&format!(
        "# TYPE netdeploy_store_writes_pending gauge\nnetdeploy_store_writes_pending {}\n",
        s.bootpath.memory.pending()
    ));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
