//! Catalog operations shared by the command line and the HTTP admin API, so both apply the
//! same checks: creating a deployment (SPEC section 4), explaining a decision (rule 10), and
//! lifting the PXE loop guard (rule 7).

use crate::bootpath::now;
use crate::catalog::stored;
use crate::catalog::{DeploymentId, MachineIdentity};
use crate::content::Library;
use crate::decision::checks::{self, NewDeployment, Refusal, Warning};
use crate::decision::{self, Context, Decision, ServerSettings};
use crate::store::{StatusMessage, Store, StoreError};

/// Why an operation was not done.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the deployment was not created: {}", .0.iter().map(|r| r.to_string()).collect::<Vec<_>>().join("; "))]
    Refused(Vec<Refusal>),
    #[error("no site code: apply a site file or name one")]
    NoSiteCode,
    #[error("{0}")]
    Id(#[from] crate::catalog::DeploymentIdError),
    #[error("{0}")]
    NotFound(String),
}

/// A created deployment and the warnings it was created with.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Created {
    pub id: DeploymentId,
    pub warnings: Vec<Warning>,
    /// The high-risk warnings were accepted and an audit status message written.
    pub audited: bool,
}

/// Checks and creates a deployment; `operator` is recorded if high-risk warnings are accepted.
pub fn create_deployment(
    store: &Store,
    library: &Library,
    mut new: NewDeployment,
    site_code: Option<String>,
    operator: &str,
) -> Result<Created, AdminError> {
    let (catalog, settings) = stored::load(store)?;
    new.available_content = catalog
        .packages
        .iter()
        .flat_map(|p| &p.files)
        .chain(catalog.boot_images.iter().flat_map(|b| &b.files))
        .filter(|f| library.has(&f.sha256))
        .map(|f| f.sha256.clone())
        .collect();
    let warnings = checks::check_new_deployment(&catalog, &new, &settings.checks())
        .map_err(AdminError::Refused)?;
    let code = match site_code {
        Some(c) => c,
        None => stored::site_code(store)?.ok_or(AdminError::NoSiteCode)?,
    };
    let issued: Vec<DeploymentId> = catalog.deployments.iter().map(|d| d.id).collect();
    let id = checks::next_deployment_id(&code, issued.iter())?;
    let audited = new.accept_high_risk && warnings.iter().any(|w| w.needs_acceptance());
    let at = now();
    let d = new.into_deployment(id, at);
    store.put("deployment", &id.to_string(), &d, at)?;
    if audited {
        store.add_status(&high_risk_audit(id, &warnings, operator, at))?;
    }
    Ok(Created {
        id,
        warnings,
        audited,
    })
}

/// The audit status message of accepted high-risk warnings (SPEC section 4: who, when, which).
pub fn high_risk_audit(
    id: DeploymentId,
    warnings: &[Warning],
    who: &str,
    at: i64,
) -> StatusMessage {
    StatusMessage {
        seq: 0,
        at,
        source: "server".into(),
        kind: "high-risk-accepted".into(),
        identity: None,
        device: None,
        deployment: Some(id.to_string()),
        body: serde_json::json!({
            "who": who,
            "when": at,
            "warnings": warnings.iter().filter(|w| w.needs_acceptance()).map(|w| w.to_string()).collect::<Vec<_>>(),
        }),
    }
}

/// The decision for a machine in a context, as `explain` shows it.
pub fn explain(
    store: &Store,
    machine: MachineIdentity,
    arch: Option<u16>,
    context: Context,
    preferred: Option<&str>,
) -> Result<Decision, StoreError> {
    let (catalog, settings) = stored::load(store)?;
    let history = stored::history(store)?;
    Ok(decision::decide(
        &catalog,
        &machine,
        arch,
        true,
        context,
        preferred,
        &history,
        &ServerSettings {
            unknown_computers_enabled: settings.unknown_computers,
            pxe_password_set: false,
            pre_production_collection: settings.pre_production_collection.clone(),
        },
    ))
}

/// What to lift the loop guard for.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuardScope {
    Device(String),
    Collection(String),
}

/// Lifts the PXE loop guard (rule 7) for a device or every machine of a collection; returns
/// how many machines it held.
pub fn clear_guard(store: &Store, scope: &GuardScope) -> Result<usize, AdminError> {
    let (catalog, _) = stored::load(store)?;
    let before = stored::history(store)?;
    let mut after = before.clone();
    match scope {
        GuardScope::Device(d) => {
            let dev = catalog
                .device(d)
                .ok_or_else(|| AdminError::NotFound(format!("no device {d:?}")))?;
            after.clear_device(dev);
        }
        GuardScope::Collection(c) => {
            after
                .clear_collection(&catalog, c)
                .ok_or_else(|| AdminError::NotFound(format!("no collection {c:?}")))?;
        }
    }
    let kept: Vec<String> = after.guards().map(|(k, _)| k.to_string()).collect();
    let gone: Vec<String> = before
        .guards()
        .map(|(k, _)| k.to_string())
        .filter(|k| !kept.contains(k))
        .collect();
    Ok(store.guard_clear(&gone)?)
}
