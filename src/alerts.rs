//! Deployment alerts: an alert is raised when a deployment's failures pass its threshold (a
//! failure percentage of the machines it targets and a minimum count, both off until set), and
//! cleared when they fall back under it, as Configuration Manager's deployment alerts do.
//!
//! [`evaluate`] is pure: the thresholds and the summaries in, the raised alerts out. The status
//! page and `/status.json` show its result; the running server ([`crate::alert_hooks`]) posts
//! each alert once to the configured webhooks.

use serde::{Deserialize, Serialize};

use crate::catalog::{Catalog, DeploymentId};
use crate::monitoring::{State, Summary};
use crate::store::{StatusMessage, Store, StoreError};

/// The store's object kind of a deployment's threshold.
const KIND: &str = "alert-threshold";

/// When a deployment raises an alert: at least `min_failures` Failed machines, making at least
/// `failure_percent` percent of the machines of its collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    pub deployment: DeploymentId,
    /// 0 to 100.
    pub failure_percent: u32,
    /// At least 1.
    pub min_failures: usize,
}

/// A threshold that cannot be used, naming the field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ThresholdError {
    #[error("failure_percent {0} is not between 0 and 100")]
    Percent(u32),
    #[error("min_failures must be at least 1")]
    MinFailures,
}

impl Threshold {
    /// Checks the ranges.
    pub fn new(
        deployment: DeploymentId,
        failure_percent: u32,
        min_failures: usize,
    ) -> Result<Threshold, ThresholdError> {
        if failure_percent > 100 {
            return Err(ThresholdError::Percent(failure_percent));
        }
        if min_failures == 0 {
            return Err(ThresholdError::MinFailures);
        }
        Ok(Threshold {
            deployment,
            failure_percent,
            min_failures,
        })
    }
}

/// A raised alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    pub deployment: String,
    pub collection: String,
    /// Failed machines.
    pub failed: usize,
    /// Machines of the collection.
    pub machines: usize,
    pub failure_percent: u32,
    pub min_failures: usize,
    /// One sentence for an operator.
    pub message: String,
}

/// The alerts that `thresholds` raise over `summaries` (each deployment over its own
/// collection).
pub fn evaluate(thresholds: &[Threshold], summaries: &[Summary]) -> Vec<Alert> {
    let mut out = Vec::new();
    for t in thresholds {
        let id = t.deployment.to_string();
        let Some(s) = summaries.iter().find(|s| s.deployment == id) else {
            continue;
        };
        let failed = s.counts.get(&State::Failed).copied().unwrap_or(0);
        let machines = s.machines.len();
        let passes = failed >= t.min_failures
            && machines > 0
            && failed * 100 >= t.failure_percent as usize * machines;
        if passes {
            out.push(Alert {
                deployment: id.clone(),
                collection: s.collection.clone(),
                failed,
                machines,
                failure_percent: t.failure_percent,
                min_failures: t.min_failures,
                message: format!(
                    "deployment {id}: {failed} of {machines} machines of {} failed, at or over \
                     the threshold of {}% and {} machine(s)",
                    s.collection, t.failure_percent, t.min_failures
                ),
            });
        }
    }
    out
}

/// The alerts raised now: each thresholded deployment over its own collection.
pub fn current(
    catalog: &Catalog,
    messages: &[StatusMessage],
    thresholds: &[Threshold],
) -> Vec<Alert> {
    let summaries: Vec<Summary> = thresholds
        .iter()
        .filter_map(|t| {
            let d = catalog.deployment(&t.deployment)?;
            crate::monitoring::summarize(catalog, &d.id.to_string(), &d.collection, messages)
        })
        .collect();
    evaluate(thresholds, &summaries)
}

/// Sets the thresholds a site file declares, and turns off the alert of every deployment it
/// declares without one.
pub fn apply_site(
    store: &Store,
    site: &crate::catalog::site::Site,
    now: i64,
) -> Result<(), StoreError> {
    for d in &site.catalog.deployments {
        match site.alerts.iter().find(|t| t.deployment == d.id) {
            Some(t) => set(store, t, now)?,
            None => {
                clear(store, &d.id)?;
            }
        }
    }
    Ok(())
}

/// Every stored threshold.
pub fn thresholds(store: &Store) -> Result<Vec<Threshold>, StoreError> {
    store.list(KIND)
}

/// Sets (or replaces) a deployment's threshold.
pub fn set(store: &Store, t: &Threshold, now: i64) -> Result<(), StoreError> {
    store.put(KIND, &t.deployment.to_string(), t, now)
}

/// Turns a deployment's alert off; returns whether it had one.
pub fn clear(store: &Store, deployment: &DeploymentId) -> Result<bool, StoreError> {
    store.delete(KIND, &deployment.to_string())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::monitoring::MachineState;

    fn summary(deployment: &str, states: &[State]) -> Summary {
        let mut counts: BTreeMap<State, usize> = State::ALL.iter().map(|s| (*s, 0)).collect();
        for s in states {
            *counts.get_mut(s).unwrap() += 1;
        }
        Summary {
            deployment: deployment.into(),
            collection: "lab".into(),
            counts,
            machines: states
                .iter()
                .enumerate()
                .map(|(i, s)| MachineState {
                    machine: format!("pc{i}"),
                    state: *s,
                    reason: None,
                    addresses: vec![],
                    last: None,
                    path: None,
                })
                .collect(),
        }
    }

    #[test]
    fn an_alert_needs_both_the_percentage_and_the_count_and_clears_below_them() {
        use State::*;
        let id: DeploymentId = "LAB00001".parse().unwrap();
        let t = Threshold::new(id, 50, 2).unwrap();
        let raised = |states: &[State]| !evaluate(&[t], &[summary("LAB00001", states)]).is_empty();
        // 1 of 2 is 50%, but under the count of 2.
        assert!(!raised(&[Failed, Compliant]));
        // 2 of 4: both passed.
        assert!(raised(&[Failed, Failed, Compliant, Unknown]));
        // 2 of 5 is under 50%.
        assert!(!raised(&[Failed, Failed, Compliant, Unknown, Unknown]));
        // Rerun and succeeded: back under, the alert clears.
        assert!(!raised(&[Failed, Compliant, Compliant, Unknown]));
        // No threshold, no alert.
        assert!(evaluate(&[], &[summary("LAB00001", &[Failed, Failed])]).is_empty());
        let a = &evaluate(&[t], &[summary("LAB00001", &[Failed, Failed])])[0];
        assert_eq!((a.failed, a.machines), (2, 2));
        assert!(
            a.message.contains("2 of 2 machines of lab failed"),
            "{}",
            a.message
        );
    }

    #[test]
    fn thresholds_out_of_range_are_refused() {
        let id: DeploymentId = "LAB00001".parse().unwrap();
        assert_eq!(
            Threshold::new(id, 101, 1),
            Err(ThresholdError::Percent(101))
        );
        assert_eq!(Threshold::new(id, 10, 0), Err(ThresholdError::MinFailures));
    }
}
