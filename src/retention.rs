//! Status retention (`[status]` in docs/configuration.md): status messages older than
//! `retention_days` and all but the newest `max_messages` are forgotten, at start and then
//! every ten minutes, so that a flood of messages cannot fill the disk.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::StatusRetention;
use crate::store::Store;

/// How often the status messages are pruned.
const EVERY: Duration = Duration::from_secs(600);

/// Prunes until cancelled; a failure is logged and tried again next time.
pub async fn prune(store: Arc<Store>, rule: StatusRetention, cancel: CancellationToken) {
    loop {
        let before = crate::bootpath::now().saturating_sub(rule.max_age.as_secs() as i64);
        let s = store.clone();
        match tokio::task::spawn_blocking(move || s.prune_status(before, rule.max_messages)).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(
                removed = n,
                retention_days = rule.max_age.as_secs() / 86_400,
                max_messages = rule.max_messages,
                "old status messages removed (status retention)"
            ),
            Ok(Err(e)) => tracing::error!(error = %e, "cannot prune status messages"),
            Err(e) => tracing::error!(error = %e, "status pruning failed"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(EVERY) => {}
        }
    }
}
