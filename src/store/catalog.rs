//! The catalog in the [`Store`]: loading it whole, replacing it with a site file's in one
//! transaction, and the per-machine history (loop guard, attempts) the decision reads.

use super::{StatusMessage, Store, StoreError};
use crate::catalog::identity::{Sighting, Sightings, UuidPolicy};
use crate::catalog::membership::MachineIdentity;
use crate::catalog::model::*;
use crate::catalog::site::{self, Changes, Settings, Site};
use crate::decision::checks::{check_new_deployment, NewDeployment, Refusal, Warning};
use crate::decision::{Attempt, History, Outcome};
use netdeploy_wire::{Mac, SmbiosUuid};

const SETTINGS: (&str, &str) = ("settings", "site");
const SITE_CODE: (&str, &str) = ("settings", "site_code");

/// Why a site file was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("deployment {id} cannot be created: {}", join(.refusals))]
    Refused {
        id: DeploymentId,
        refusals: Vec<Refusal>,
    },
}

fn join<T: ToString>(v: &[T]) -> String {
    v.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

/// The stored catalog (the built-in collections always included) and site settings.
pub fn load(store: &Store) -> Result<(Catalog, Settings), StoreError> {
    store.transaction(|tx| {
        let mut c = Catalog {
            devices: tx.list("device")?,
            collections: tx.list("collection")?,
            packages: tx.list("package")?,
            boot_images: tx.list("boot_image")?,
            task_sequences: tx.list("task_sequence")?,
            deployments: tx.list("deployment")?,
        };
        for b in site::builtin_collections() {
            if c.collection(&b.id).is_none() {
                c.collections.push(b);
            }
        }
        let settings = tx.get(SETTINGS.0, SETTINGS.1)?.unwrap_or_default();
        Ok((c, settings))
    })
}

/// The site code of the stored catalog, once a site file set it.
pub fn site_code(store: &Store) -> Result<Option<String>, StoreError> {
    store.get(SITE_CODE.0, SITE_CODE.1)
}

/// What [`apply`] did.
#[derive(Debug, Clone)]
pub struct Applied {
    pub changes: Changes,
    /// Warnings of created or changed deployments (accepted ones included).
    pub warnings: Vec<(DeploymentId, Warning)>,
}

/// Checks every created or changed deployment (docs/deployment-checks.md), then replaces the stored
/// catalog with the site's in one transaction. Accepted high-risk warnings are recorded as
/// audit status messages (who: `operator`, when: `now`). Nothing is written when any
/// deployment is refused.
pub fn apply(
    store: &Store,
    site: &Site,
    content_present: impl Fn(&str) -> bool,
    operator: &str,
    now: i64,
) -> Result<Applied, ApplyError> {
    let (old, old_settings) = load(store)?;
    let mut changes = site::diff(&old, &site.catalog);
    if old_settings != site.settings {
        changes.changed.push("settings site".into());
    }
    let mut warnings = Vec::new();
    let mut audits = Vec::new();
    for d in &site.catalog.deployments {
        let key = format!("deployment {}", d.id);
        if !changes.created.contains(&key) && !changes.changed.contains(&key) {
            continue;
        }
        let new = NewDeployment {
            task_sequence: d.task_sequence.clone(),
            collection: d.collection.clone(),
            purpose: d.purpose,
            available_to: d.available_to,
            schedule: d.schedule.clone(),
            option: d.option,
            wake_on_lan: d.wake_on_lan,
            comments: d.comments.clone(),
            software_installation: d.software_installation,
            pre_download: d.pre_download,
            accept_high_risk: site.accepted_high_risk.contains(&d.id),
            available_content: content_hashes(&site.catalog, &content_present),
        };
        let found = check_new_deployment(&site.catalog, &new, &site.settings.checks())
            .map_err(|refusals| ApplyError::Refused { id: d.id, refusals })?;
        if new.accept_high_risk && found.iter().any(|w| w.needs_acceptance()) {
            audits.push(high_risk_audit(d.id, &found, operator, now));
        }
        warnings.extend(found.into_iter().map(|w| (d.id, w)));
    }
    store.transaction(|tx| {
        let c = &site.catalog;
        for k in &changes.removed {
            let (kind, id) = k.split_once(' ').expect("kind id");
            tx.delete(kind, id)?;
        }
        let touched = |k: String| changes.created.contains(&k) || changes.changed.contains(&k);
        for x in &c.devices {
            if touched(format!("device {}", x.name)) {
                tx.put("device", &x.name, x, now)?;
            }
        }
        for x in &c.collections {
            if touched(format!("collection {}", x.id)) {
                tx.put("collection", &x.id, x, now)?;
            }
        }
        for x in &c.packages {
            if touched(format!("package {}", x.id)) {
                tx.put("package", &x.id, x, now)?;
            }
        }
        for x in &c.boot_images {
            if touched(format!("boot_image {}", x.id)) {
                tx.put("boot_image", &x.id, x, now)?;
            }
        }
        for x in &c.task_sequences {
            if touched(format!("task_sequence {}", x.id)) {
                tx.put("task_sequence", &x.id, x, now)?;
            }
        }
        for x in &c.deployments {
            let id = x.id.to_string();
            if changes.created.contains(&format!("deployment {id}")) {
                tx.put("deployment", &id, x, now)?;
            } else if changes.changed.contains(&format!("deployment {id}")) {
                // Keep the original creation time of a deployment the file changes.
                let mut x = x.clone();
                if let Some(old) = old.deployment(&x.id) {
                    x.created_at = old.created_at;
                }
                tx.put("deployment", &id, &x, now)?;
            }
        }
        tx.put(SETTINGS.0, SETTINGS.1, &site.settings, now)?;
        tx.put(SITE_CODE.0, SITE_CODE.1, &site.site_code, now)?;
        Ok(())
    })?;
    for a in &audits {
        store.add_status(a)?;
    }
    Ok(Applied { changes, warnings })
}

fn content_hashes(
    c: &Catalog,
    present: &impl Fn(&str) -> bool,
) -> std::collections::BTreeSet<String> {
    c.packages
        .iter()
        .flat_map(|p| &p.files)
        .chain(c.boot_images.iter().flat_map(|b| &b.files))
        .map(|f| f.sha256.clone())
        .filter(|h| present(h))
        .collect()
}

/// The loop guard and last attempts of every machine, as the decision reads them, with the
/// site's ignored UUIDs and the server's sightings deciding which UUIDs tell machines apart.
/// Rows recorded by older versions under a single `uuid:` or `mac:` key read as identities
/// with only that part.
pub fn history(store: &Store) -> Result<History, StoreError> {
    let mut h = History::new();
    for (identity, deployment) in store.guards()? {
        if let (Ok(k), Ok(d)) = (MachineIdentity::from_record(&identity), deployment.parse()) {
            h.record_pxe_start(k, d);
        }
    }
    for (identity, deployment, outcome) in store.attempts()? {
        let outcome = match outcome.as_str() {
            "succeeded" => Outcome::Succeeded,
            "started" => Outcome::Interrupted,
            _ => Outcome::Failed,
        };
        if let (Ok(k), Ok(d)) = (MachineIdentity::from_record(&identity), deployment.parse()) {
            h.record_attempt(k, d, Attempt { outcome, at: 0 });
        }
    }
    Ok(h.with_uuid_policy(uuid_policy(store)?))
}

const SIGHTING: &str = "sighting";

/// Which UUIDs tell machines apart: the site's `ignored_uuids` and every (UUID, MAC) pair the
/// server has seen.
pub fn uuid_policy(store: &Store) -> Result<UuidPolicy, StoreError> {
    store.transaction(|tx| {
        let settings: Settings = tx.get(SETTINGS.0, SETTINGS.1)?.unwrap_or_default();
        let mut seen = Sightings::new();
        for s in tx.list::<Sighting>(SIGHTING)? {
            seen.load(&s);
        }
        Ok(UuidPolicy::new(
            settings.ignored_uuids.iter().copied(),
            seen,
        ))
    })
}

/// Notes that a boot request carried this MAC and UUID together at `now`, so a UUID that shows
/// up with a second MAC is known as a duplicate. Returns true when the pair was new.
pub fn record_sighting(
    store: &Store,
    mac: Mac,
    uuid: SmbiosUuid,
    now: i64,
) -> Result<bool, StoreError> {
    let id = uuid.to_string();
    store.quiet_transaction(|tx| {
        let mut seen = Sightings::new();
        if let Some(s) = tx.get::<Sighting>(SIGHTING, &id)? {
            seen.load(&s);
        }
        // A machine sends several requests per boot: write at most once a minute per pair,
        // so the boot path does not wait on the disk for what it already knows.
        if seen.last_seen(&uuid, &mac).is_some_and(|at| now - at < 60) {
            return Ok(false);
        }
        let new = seen.record(uuid, mac, now);
        tx.put(SIGHTING, &id, &seen.stored(&uuid), now)?;
        Ok(new)
    })
}

/// The audit status message of accepted high-risk warnings (docs/deployment-checks.md: who, when, which).
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
