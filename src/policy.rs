//! The policy a boot environment receives (docs/selection-rules.md, docs/deployment-checks.md and docs/content.md): which deployment runs,
//! its task sequence's steps, and every content file with its size, SHA-256 and URL. Built
//! from the same [`Decision`] the PXE path acts on: one decision, two views of it.
//!
//! Pure: the decision, the catalog and the server URL in, the policy out. The secret-free
//! shape is deliberate (rule 9): nothing here is more than the machine may see.

use std::collections::BTreeMap;

pub use netdeploy_wire::policy::{
    ContentOption, MenuEntry, Policy, PolicyDeployment, PolicyFile, Purpose, Step, StepAction,
};

use crate::catalog::{self, Catalog, DeploymentOption};
use crate::decision::{Action, Decision};

/// The body of `/agent/policy` and of a full media's `policy.json`.
pub fn encode(p: &Policy) -> Vec<u8> {
    // Only `Policy::Unknown` fails to serialize, and the server never builds it.
    p.to_json()
        .unwrap_or_else(|_| br#"{"action":"none","reason":"no policy"}"#.to_vec())
}

/// Builds the policy of a decision. `base` is the server URL for content links.
pub fn policy(decision: &Decision, catalog: &Catalog, base: &str) -> Policy {
    match &decision.action {
        Action::NoDeployment { reason } => Policy::None {
            reason: format!("{reason} ({})", reason.rule().cite()),
        },
        Action::Menu { entries, .. } => Policy::Menu {
            reason: "available deployments only: choose one (rule 6)".into(),
            entries: entries
                .iter()
                .filter_map(|id| catalog.deployment(id))
                .map(|d| MenuEntry {
                    id: d.id.to_string(),
                    name: task_sequence_name(catalog, &d.task_sequence),
                    purpose: match d.purpose {
                        catalog::Purpose::Required => Purpose::Required,
                        catalog::Purpose::Available => Purpose::Available,
                    },
                })
                .collect(),
        },
        Action::RunUnattended { deployment, reason } => {
            let Some(d) = catalog.deployment(deployment) else {
                return Policy::None {
                    reason: format!("deployment {deployment} no longer exists"),
                };
            };
            let reason = format!(
                "{reason:?} ({})",
                match reason {
                    crate::decision::RunReason::Preferred => "rule 3",
                    crate::decision::RunReason::Required => "rule 5",
                    crate::decision::RunReason::Continuing => "rule 7",
                }
            )
            .to_lowercase();
            let warnings = decision.warnings.iter().map(|w| w.message.clone());
            let mut p = run(d, catalog, base, reason, warnings.collect());
            if let Policy::Run { resume_at, .. } = &mut p {
                *resume_at = decision.resume_at;
            }
            p
        }
    }
}

/// A task sequence's name, or its id when it has gone.
fn task_sequence_name(catalog: &Catalog, ts: &str) -> String {
    catalog
        .task_sequence(ts)
        .map(|t| t.name.clone())
        .unwrap_or_else(|| ts.to_owned())
}

/// The policy of one deployment as it runs, with its packages' files.
fn run(
    d: &catalog::Deployment,
    catalog: &Catalog,
    base: &str,
    reason: String,
    mut warnings: Vec<String>,
) -> Policy {
    let ts = catalog.task_sequence(&d.task_sequence);
    let steps = ts.map(|t| t.steps.clone()).unwrap_or_default();
    let mut packages = BTreeMap::new();
    for id in ts.map(|t| t.referenced_packages()).unwrap_or_default() {
        if let Some(p) = catalog.package(id) {
            let mut files = Vec::new();
            for f in &p.files {
                // A hash the catalog could not vouch for is left out, and the run is told.
                match f.sha256.parse() {
                    Ok(sha256) => files.push(PolicyFile {
                        path: f.path.clone(),
                        size: f.size,
                        sha256,
                        url: Some(format!("{base}/content/{}", f.sha256)),
                    }),
                    Err(e) => warnings.push(format!("package {id}: file {}: {e}", f.path)),
                }
            }
            packages.insert(id.to_owned(), files);
        }
    }
    if d.option == DeploymentOption::DirectAccess {
        warnings.push(format!(
            "direct_access reads packages {} from the package share: their SHA-256 hashes are NOT verified",
            packages.keys().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    Policy::Run {
        reason,
        deployment: PolicyDeployment {
            id: d.id.to_string(),
            task_sequence: d.task_sequence.clone(),
            name: task_sequence_name(catalog, &d.task_sequence),
            option: content_option(d.option),
            multicast: d.multicast,
        },
        steps,
        packages,
        warnings,
        resume_at: 0,
    }
}

fn content_option(o: DeploymentOption) -> ContentOption {
    match o {
        DeploymentOption::DownloadOnDemand => ContentOption::DownloadOnDemand,
        DeploymentOption::DownloadAll => ContentOption::DownloadAll,
        DeploymentOption::DirectAccess => ContentOption::DirectAccess,
    }
}

/// Why a deployment cannot go on full media.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FullMediaError {
    #[error("deployment {0} does not exist")]
    NoDeployment(String),
    #[error("deployment {0} is available to running clients only, never to media (rule 1)")]
    ClientsOnly(String),
    #[error("task sequence {ts} of deployment {id} does not exist")]
    NoTaskSequence { id: String, ts: String },
}

/// The policy full media carry for `id` (docs/media.md): what `/agent/policy` would answer a
/// machine that runs it from media, with no server behind it. `base` only fills in the
/// files' URLs, which the agent ignores on full media (it reads the media's copy).
pub fn full_media(
    id: &crate::catalog::DeploymentId,
    catalog: &Catalog,
    base: &str,
) -> Result<Policy, FullMediaError> {
    let d = catalog
        .deployment(id)
        .ok_or_else(|| FullMediaError::NoDeployment(id.to_string()))?;
    if d.available_to == crate::catalog::AvailableTo::Clients {
        return Err(FullMediaError::ClientsOnly(id.to_string()));
    }
    if catalog.task_sequence(&d.task_sequence).is_none() {
        return Err(FullMediaError::NoTaskSequence {
            id: id.to_string(),
            ts: d.task_sequence.clone(),
        });
    }
    Ok(run(d, catalog, base, "full media".into(), Vec::new()))
}
