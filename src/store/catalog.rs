//! The catalog in the [`Store`]: loading it whole, replacing it with a site file's in one
//! transaction, and the per-machine history (loop guard, attempts) the decision reads.

use std::collections::HashSet;

use super::{StatusMessage, Store, StoreError};
use crate::catalog::identity::{Sighting, Sightings, UuidPolicy};
use crate::catalog::membership::{DevicesByName, MachineIdentity};
use crate::catalog::model::*;
use crate::catalog::site::{self, Changes, Settings, Site};
use crate::decision::checks::{check_new_deployment_with, NewDeployment, Refusal, Warning};
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
    apply_reporting(store, site, content_present, operator, now, &site::Silent)
}

/// [`apply`], reporting its phases to `progress`: `compare` (the stored catalog read and
/// compared with the site's), `check` (each created or changed deployment) and `write` (each
/// object created, changed or removed, in one transaction).
pub fn apply_reporting(
    store: &Store,
    site: &Site,
    content_present: impl Fn(&str) -> bool,
    operator: &str,
    now: i64,
    progress: &dyn site::Progress,
) -> Result<Applied, ApplyError> {
    progress.phase("compare", None);
    let (old, old_settings) = load(store)?;
    let mut changes = site::diff(&old, &site.catalog);
    if old_settings != site.settings {
        changes.changed.push("settings site".into());
    }
    // Created or changed, by `kind id`: one set, not a scan of the change lists per object.
    let touched: HashSet<&str> = changes
        .created
        .iter()
        .chain(&changes.changed)
        .map(String::as_str)
        .collect();
    let created: HashSet<&str> = changes.created.iter().map(String::as_str).collect();
    let is_touched = |kind: &str, id: &str| touched.contains(format!("{kind} {id}").as_str());
    let available_content = content_hashes(&site.catalog, &content_present);
    let by_name = DevicesByName::new(&site.catalog);
    let mut warnings = Vec::new();
    let mut audits = Vec::new();
    let checked = site
        .catalog
        .deployments
        .iter()
        .filter(|d| is_touched("deployment", &d.id.to_string()));
    progress.phase("check", Some(checked.clone().count() as u64));
    for d in checked {
        let new = NewDeployment {
            task_sequence: d.task_sequence.clone(),
            collection: d.collection.clone(),
            purpose: d.purpose,
            available_to: d.available_to,
            schedule: d.schedule.clone(),
            option: d.option,
            multicast: d.multicast,
            wake_on_lan: d.wake_on_lan,
            comments: d.comments.clone(),
            software_installation: d.software_installation,
            pre_download: d.pre_download,
            accept_high_risk: site.accepted_high_risk.contains(&d.id),
            available_content: available_content.clone(),
        };
        let found = check_new_deployment_with(
            &site.catalog,
            &|c| by_name.members(c),
            &new,
            &site.settings.checks(),
        )
        .map_err(|refusals| ApplyError::Refused { id: d.id, refusals })?;
        if new.accept_high_risk && found.iter().any(|w| w.needs_acceptance()) {
            audits.push(high_risk_audit(d.id, &found, operator, now));
        }
        warnings.extend(found.into_iter().map(|w| (d.id, w)));
        progress.advance(1);
    }
    let writes = changes.removed.len() + touched.len();
    progress.phase("write", Some(writes as u64));
    store.transaction(|tx| {
        let c = &site.catalog;
        for k in &changes.removed {
            let (kind, id) = k.split_once(' ').expect("kind id");
            tx.delete(kind, id)?;
            progress.advance(1);
        }
        for x in &c.devices {
            if is_touched("device", &x.name) {
                tx.put("device", &x.name, x, now)?;
                progress.advance(1);
            }
        }
        for x in &c.collections {
            if is_touched("collection", &x.id) {
                tx.put("collection", &x.id, x, now)?;
                progress.advance(1);
            }
        }
        for x in &c.packages {
            if is_touched("package", &x.id) {
                tx.put("package", &x.id, x, now)?;
                progress.advance(1);
            }
        }
        for x in &c.boot_images {
            if is_touched("boot_image", &x.id) {
                tx.put("boot_image", &x.id, x, now)?;
                progress.advance(1);
            }
        }
        for x in &c.task_sequences {
            if is_touched("task_sequence", &x.id) {
                tx.put("task_sequence", &x.id, x, now)?;
                progress.advance(1);
            }
        }
        for x in &c.deployments {
            let id = x.id.to_string();
            if created.contains(format!("deployment {id}").as_str()) {
                tx.put("deployment", &id, x, now)?;
                progress.advance(1);
            } else if is_touched("deployment", &id) {
                // Keep the original creation time of a deployment the file changes.
                let mut x = x.clone();
                if let Some(old) = old.deployment(&x.id) {
                    x.created_at = old.created_at;
                }
                tx.put("deployment", &id, &x, now)?;
                progress.advance(1);
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
    for (identity, deployment, step) in store.resumes()? {
        if let (Ok(k), Ok(d)) = (MachineIdentity::from_record(&identity), deployment.parse()) {
            h.record_restart(k, d, step);
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

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;
    use crate::catalog::site::{FileAccess, Progress, Silent};

    /// Every phase with its total and the steps reported in it.
    #[derive(Default)]
    struct Recorded(RefCell<Vec<(&'static str, Option<u64>, u64)>>);

    impl Progress for Recorded {
        fn phase(&self, name: &'static str, total: Option<u64>) {
            self.0.borrow_mut().push((name, total, 0));
        }
        fn advance(&self, n: u64) {
            self.0.borrow_mut().last_mut().expect("a phase").2 += n;
        }
    }

    fn site_text(devices: usize) -> String {
        let mut s = String::from("site_code = \"LAB\"\n");
        for i in 0..devices {
            s += &format!(
                "[[device]]\nname = \"pc{i}\"\nmacs = [\"52:54:00:00:{:02x}:{:02x}\"]\n",
                i / 256,
                i % 256
            );
        }
        let members: Vec<String> = (0..devices).map(|i| format!("pc{i}")).collect();
        s += &format!("[[collection]]\nid = \"lab\"\nmembers = {members:?}\n");
        s += "[[boot_image]]\nid = \"img\"\narch = \"x64\"\nkernel = \"vmlinuz\"\n\
              [[task_sequence]]\nid = \"ts\"\nboot_image = \"img\"\n\
              steps = [{ name = \"hi\", action = \"run_command\", command = \"echo hi\" }]\n\
              [[deployment]]\nid = \"LAB00001\"\ntask_sequence = \"ts\"\ncollection = \"lab\"\n\
              purpose = \"required\"\navailable_to = \"media_pxe\"\n";
        s
    }

    fn parsed(text: &str, progress: &dyn Progress) -> Site {
        let files = FileAccess::CommandLine { base: "/".into() };
        let import = |_: &std::path::Path, name: &str| {
            Ok(ContentFile {
                path: name.into(),
                size: 1,
                sha256: "0".repeat(64),
            })
        };
        site::parse_reporting(text, &files, import, 1, progress).unwrap()
    }

    #[test]
    fn every_phase_of_a_site_apply_reports_as_many_steps_as_its_total() {
        let store = Store::in_memory().unwrap();
        let text = site_text(300);
        let progress = Recorded::default();
        let s = parsed(&text, &progress);
        let applied = apply_reporting(&store, &s, |_| true, "op", 1, &progress).unwrap();
        assert_eq!(applied.changes.created.len(), 300 + 4);
        let objects = 300 + 1 + 1 + 1 + 1;
        assert_eq!(
            *progress.0.borrow(),
            [
                ("parse", None, 0),
                ("validate", Some(objects), objects),
                ("import", Some(objects), objects),
                ("compare", None, 0),
                ("check", Some(1), 1),
                ("write", Some(304), 304),
            ]
        );

        // One device changed: one deployment-free write, nothing to check.
        let progress = Recorded::default();
        let s = parsed(
            &text.replace(
                "name = \"pc7\"\nmacs = [\"52:54:00:00:00:07\"]",
                "name = \"pc7\"\nmacs = [\"52:54:00:00:10:07\"]",
            ),
            &Silent,
        );
        let applied = apply_reporting(&store, &s, |_| true, "op", 2, &progress).unwrap();
        assert_eq!(applied.changes.changed, ["device pc7"]);
        assert_eq!(
            *progress.0.borrow(),
            [
                ("compare", None, 0),
                ("check", Some(0), 0),
                ("write", Some(1), 1)
            ]
        );
        assert!(apply(&store, &s, |_| true, "op", 3)
            .unwrap()
            .changes
            .is_empty());
    }
}
