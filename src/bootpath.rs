//! The boot path's view of deployments: for a machine booting through PXE, take the catalog
//! snapshot and the history from memory ([`crate::snapshot`]), run the one decision of
//! [`crate::decision::decide`], and record what the server did (loop guard, status messages)
//! in memory at once and in the store through the write queue. DHCP uses it to decide whether to make a
//! boot offer at all (rules 8 and 9); HTTP uses it to write the machine's iPXE script.
//!
//! Until a site file declares a deployment, netdeploy boots the configuration's
//! `[boot.image]` for every PXE client (the plain network-boot server of a fresh install).

pub mod run_credentials;

use std::sync::Arc;

use crate::catalog::identity::PLACEHOLDER_UUIDS;
use crate::catalog::{BootImage, Catalog, Deployment, MachineIdentity};
use crate::content::Library;
use crate::counters::Counters;
use crate::decision::{self, Context, Decision, Outcome, Rule, ServerSettings, UuidDistrust};
use crate::dhcp::packet::{Mac, SmbiosUuid};
use crate::snapshot::{Memory, Snapshot, Write};
use crate::store::catalog as stored;
use crate::store::{StatusMessage, Store, StoreError};
use netdeploy_wire::status::{StatusKind, StatusMessage as AgentMessage};
use serde::Deserialize;

pub use run_credentials::{new_medium_key, IssueError};

/// What a PXE client is to be given.
#[derive(Debug, Clone)]
pub enum PxePlan {
    /// No deployment declared: the configured default image for everyone.
    DefaultImage,
    /// The decision of docs/selection-rules.md, with the snapshot it was made on.
    Decided {
        decision: Box<Decision>,
        snapshot: Arc<Snapshot>,
    },
}

impl PxePlan {
    /// Why no boot offer is made, or `None` when the machine is offered something.
    pub fn refusal(&self) -> Option<String> {
        match self {
            PxePlan::DefaultImage => None,
            PxePlan::Decided { decision, .. } => match &decision.action {
                decision::Action::NoDeployment { reason } => {
                    Some(format!("no deployment: {}, {reason}", reason.rule().cite()))
                }
                _ => None,
            },
        }
    }
}

/// The deployments side of the boot path.
pub struct BootPath {
    pub store: Arc<Store>,
    pub library: Library,
    /// The PXE password of rule 9 is set (`boot.pxe_password_hash`); false until the server sets it.
    pub pxe_password_set: bool,
    /// The content the catalog references, as of a store version.
    pub served: ServedContent,
    /// The requirements-not-met messages written lately, so that the many DHCP requests of one
    /// boot write one message (see [`BootPath::record_unmet`]).
    pub unmet_noted: UnmetNoted,
    /// The catalog snapshot and history decisions read, and the queue writes go through.
    pub memory: Arc<Memory>,
    /// Run credentials this server issued or checked lately, by digest: while a shared
    /// database is unreachable, the runs they belong to go on reporting to this server.
    pub recent_credentials: run_credentials::Recent,
    /// The servers asked for content this one lacks (`[content] upstream`); none until the
    /// server sets them.
    pub upstream: crate::content::upstream::Upstream,
    /// This server's name where several share a store (`server.name`).
    pub server_name: String,
}

/// The hashes of the content the catalog references, read again only when the store changed.
/// A hash found in a set checked less than [`ServedContent::FRESH`] ago is served without
/// asking the store (small files are requested by the thousand); any other is checked against
/// the store's current version, so new content is served at once and removed content stops
/// being served within that time.
#[derive(Default)]
pub struct ServedContent {
    cached: std::sync::RwLock<Option<Served>>,
}

struct Served {
    version: StoreVersion,
    checked: std::time::Instant,
    hashes: std::collections::HashSet<String>,
}

impl ServedContent {
    const FRESH: std::time::Duration = std::time::Duration::from_secs(1);
}

/// What [`Store::version`] returns.
type StoreVersion = (i64, u64);

/// Per machine identity and deployment, the rule of the last requirements-not-met message and
/// when it was written.
pub type UnmetNoted = std::sync::Mutex<std::collections::HashMap<(String, String), (Rule, i64)>>;

/// How long the same requirements-not-met message is not written again for one machine.
const UNMET_QUIET_SECONDS: i64 = 600;
/// Bound on [`UnmetNoted`]: past it, the oldest memory is dropped and messages may repeat.
const UNMET_NOTED_MAX: usize = 10_000;

/// Unix time in seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl BootPath {
    /// The boot path of a store: its catalog and history loaded into memory. Until
    /// [`crate::snapshot::keep`] runs for [`BootPath::memory`], records are written at once.
    pub fn open(
        store: Arc<Store>,
        library: Library,
        counters: Arc<Counters>,
    ) -> Result<BootPath, StoreError> {
        let memory = Arc::new(Memory::load(&store, counters)?);
        Ok(BootPath {
            store,
            library,
            pxe_password_set: false,
            served: ServedContent::default(),
            unmet_noted: Default::default(),
            memory,
            recent_credentials: Default::default(),
            upstream: Default::default(),
            server_name: crate::interfaces::host_name(),
        })
    }

    fn record(&self, w: Write) {
        self.memory.record(&self.store, w);
    }

    fn server_settings(&self, settings: &crate::catalog::site::Settings) -> ServerSettings {
        ServerSettings {
            unknown_computers_enabled: settings.unknown_computers,
            pxe_password_set: self.pxe_password_set,
            pre_production_collection: settings.pre_production_collection.clone(),
        }
    }

    /// True when a package or boot image of the catalog holds the content with this SHA-256:
    /// content that nothing references (left over, or imported by a refused site file) is not
    /// served.
    pub fn serves(&self, sha256: &str) -> Result<bool, StoreError> {
        let cache = &self.served.cached;
        if let Some(c) = &*cache.read().unwrap_or_else(|p| p.into_inner()) {
            if c.checked.elapsed() < ServedContent::FRESH && c.hashes.contains(sha256) {
                return Ok(true);
            }
        }
        let version = self.store.version()?;
        let mut c = cache.write().unwrap_or_else(|p| p.into_inner());
        match &mut *c {
            Some(c) if c.version == version => c.checked = std::time::Instant::now(),
            _ => {
                *c = Some(Served {
                    version,
                    checked: std::time::Instant::now(),
                    hashes: stored::load(&self.store)?.0.content(),
                })
            }
        }
        Ok(c.as_ref().is_some_and(|c| c.hashes.contains(sha256)))
    }

    /// Saves what this server holds of the catalog's content in the store, with the files an
    /// upstream fetch failed for (docs/fleet.md). Blocks.
    pub fn note_holding(&self, failed: std::collections::BTreeMap<String, String>) {
        // The store's catalog, which a content request was checked against; the snapshot may
        // be a moment older.
        let noted = stored::load(&self.store).and_then(|(catalog, _)| {
            crate::content::upstream::note_holding(
                &self.store,
                &self.server_name,
                &catalog,
                &self.library,
                failed,
                now(),
            )
        });
        if let Err(e) = noted {
            tracing::warn!(error = %e, "cannot record what content this server holds");
        }
    }

    /// Decides for a PXE client (rules 1-9 in `pxe` context). `choice` is a deployment id the
    /// client asks for (a menu pick or a preferred id).
    pub fn plan(
        &self,
        mac: Option<Mac>,
        uuid: Option<SmbiosUuid>,
        arch: Option<u16>,
        choice: Option<&str>,
    ) -> Result<PxePlan, StoreError> {
        let snapshot = self.memory.snapshot();
        if snapshot.catalog().deployments.is_empty() {
            return Ok(PxePlan::DefaultImage);
        }
        let machine = MachineIdentity { mac, uuid };
        let mut fresh = false;
        if let (Some(mac), Some(uuid)) = (mac, uuid.filter(|u| !PLACEHOLDER_UUIDS.contains(u))) {
            // Section 10: a UUID seen with a second MAC is a duplicate from this request on.
            // A machine sends several requests per boot: the store hears of a pair at most
            // once a minute.
            let at = now();
            let last = self
                .memory
                .with_history(|h| h.uuid_policy().sightings().last_seen(&uuid, &mac));
            fresh = last.is_none_or(|seen| at - seen >= 60);
            if fresh {
                self.record(Write::Sighting { uuid, mac, at });
            }
        }
        let settings = self.server_settings(&snapshot.settings);
        let d = self.memory.with_history(|history| {
            decision::decide(
                snapshot.view(),
                &machine,
                arch,
                // PXE cannot see whether a BIOS machine's CPU is 64-bit; lab and fleet machines are.
                true,
                Context::Pxe,
                choice,
                history,
                &settings,
            )
        });
        // Once a minute per MAC and UUID, as sightings are kept: not for every request of a
        // batch of machines that share one UUID.
        if let (true, Some(why @ UuidDistrust::Duplicate { .. })) = (fresh, &d.uuid_not_used) {
            tracing::warn!(
                mac = ?mac.map(|m| m.to_string()),
                uuid = ?uuid.map(|u| u.to_string()),
                "SMBIOS UUID not used to identify this machine: {why}; it is known by its MAC"
            );
        }
        Ok(PxePlan::Decided {
            decision: Box::new(d),
            snapshot,
        })
    }

    /// The decision behind a boot environment's policy request. A PXE boot environment names
    /// the deployment its iPXE script started; the loop guard that start set must not stop
    /// the very run it records, so it is lifted for this one decision (not in the store).
    pub fn policy_decision(
        &self,
        machine: MachineIdentity,
        context: Context,
        deployment: Option<&str>,
    ) -> Result<(Decision, Arc<Snapshot>), StoreError> {
        let snapshot = self.memory.snapshot();
        // Off the reactor and rare: a copy of the history to lift a guard in, and the plain
        // catalog so that `explain`'s evaluation of every deployment comes with the policy.
        let catalog = snapshot.catalog();
        let mut history = self.memory.with_history(|h| h.clone());
        if let (Context::Pxe, Some(requested)) = (context, deployment) {
            let device = snapshot
                .view()
                .match_device(&history.uuid_policy().effective(&machine));
            if let Some(g) = history.guard_for(snapshot.view(), &machine, device) {
                if g.deployment.to_string() == requested {
                    history.clear_machine(&g.machine);
                }
            }
        }
        let settings = self.server_settings(&snapshot.settings);
        let decide = |preferred| {
            decision::decide(
                catalog, &machine, None, true, context, preferred, &history, &settings,
            )
        };
        // The deployment a PXE script started runs for the reason the PXE decision gave (a
        // required one by rule 5, as `explain` says), not as a preferred id (rule 3); one
        // picked from the PXE menu is what the machine asked for, so rule 3 stays its reason.
        if let (Context::Pxe, Some(requested)) = (context, deployment) {
            let d = decide(None);
            if matches!(&d.action, decision::Action::RunUnattended { deployment, .. }
                if deployment.to_string() == requested)
            {
                return Ok((d, snapshot));
            }
        }
        let d = decide(deployment);
        Ok((d, snapshot))
    }

    /// Stores a status message from a boot environment; the end of a run also becomes the
    /// machine's last attempt (rule 7, rerun behaviour).
    pub fn record_agent_status(
        &self,
        machine: MachineIdentity,
        deployment: Option<&str>,
        kind: &str,
        body: serde_json::Value,
    ) -> Result<Option<i64>, StoreError> {
        self.record_agent_status_at(machine, deployment, kind, body, now())
    }

    /// [`BootPath::record_agent_status`] for a message sent at `at` (Unix seconds): one kept on
    /// full media and imported later. Blocks: call it from the blocking pool.
    pub fn record_agent_status_at(
        &self,
        machine: MachineIdentity,
        deployment: Option<&str>,
        kind: &str,
        body: serde_json::Value,
        at: i64,
    ) -> Result<Option<i64>, StoreError> {
        let snapshot = self.memory.snapshot();
        let known_as = self
            .memory
            .with_history(|h| h.uuid_policy().effective(&machine));
        let identity = known_as.key().map(|k| k.to_string());
        if let Some(id) = &identity {
            self.forget_unmet(id);
        }
        let device = snapshot
            .view()
            .match_device(&known_as)
            .map(|d| d.name.clone());
        let now = at;
        // The attempt is kept under the whole identity the machine sent (docs/identity.md). A start
        // is an attempt until its end replaces it: a run that a power cut interrupts counts as
        // run (rule 7, rerun behaviour).
        let outcome = match kind {
            "succeeded" => Some(Outcome::Succeeded),
            "failed" => Some(Outcome::Failed),
            "started" => Some(Outcome::Interrupted),
            _ => None,
        };
        let dep = deployment.and_then(|d| d.parse().ok());
        // A restart in the middle of the task sequence: the next run continues at the step
        // after the `reboot` step, and only an end (succeeded, failed) ends the deployment.
        let restart_at = match kind {
            "rebooting" => body
                .get("step_index")
                .and_then(serde_json::Value::as_u64)
                .and_then(|k| usize::try_from(k).ok()?.checked_add(1)),
            _ => None,
        };
        if let (false, Some(deployment), Some(step)) =
            (machine.record().is_empty(), dep, restart_at)
        {
            self.memory.record_surely_blocking(
                &self.store,
                Write::Restart {
                    machine,
                    deployment,
                    step,
                    at: now,
                },
            );
        }
        if let (false, Some(deployment), Some(outcome)) =
            (machine.record().is_empty(), dep, outcome)
        {
            self.memory.record_surely_blocking(
                &self.store,
                Write::Attempt {
                    machine,
                    deployment,
                    outcome,
                    at: now,
                },
            );
        }
        // After what the boot path queued before it (a start, a refusal), so that the store
        // keeps the order things happened in. While a shared database is unreachable the
        // message waits in the spool (`None`).
        self.memory.settled_blocking();
        self.store.add_status_or_keep(&StatusMessage {
            seq: 0,
            at: now,
            source: "agent".into(),
            kind: kind.to_owned(),
            identity,
            device,
            deployment: deployment.map(str::to_owned),
            body,
        })
    }

    /// Records that a deployment starts on a machine through PXE: the loop guard for a required
    /// one (rule 7) and a status message. The next decision sees the guard at once; this
    /// returns once the store has it too (through the write queue, off the reactor).
    pub async fn record_start(
        &self,
        decision: &Decision,
        deployment: &Deployment,
        image: &BootImage,
    ) {
        let identity = decision.identity_key().map(|k| k.to_string());
        let now = now();
        // The guard is kept under the whole identity the firmware sent, MAC and UUID together,
        // so it is found and cleared whichever of them the device was declared with.
        let machine = decision.machine;
        let whole = !machine.record().is_empty();
        if whole && deployment.is_required() {
            let w = Write::Guard {
                machine,
                deployment: deployment.id,
                at: now,
            };
            self.memory.record_surely(&self.store, w).await;
        }
        // An attempt from here on, until the boot environment reports its end.
        if let Some(id) = &identity {
            self.forget_unmet(id);
        }
        if whole {
            let w = Write::Attempt {
                machine,
                deployment: deployment.id,
                outcome: Outcome::Interrupted,
                at: now,
            };
            self.memory.record_surely(&self.store, w).await;
        }
        let w = Write::Status(Box::new(StatusMessage {
            seq: 0,
            at: now,
            source: "server".into(),
            kind: "pxe-start".into(),
            identity,
            device: decision.device.clone(),
            deployment: Some(deployment.id.to_string()),
            body: serde_json::json!({
                "arch": decision.arch,
                "purpose": deployment.purpose,
                "boot_image": image.id,
                "pre_production": image.pre_production,
            }),
        }));
        self.memory.record_surely(&self.store, w).await;
        // The script goes out once the guard is on disk: a server killed right after must
        // not let the machine run a required deployment again (rule 7). Decisions saw it
        // in memory from the start.
        self.memory.settled().await;
    }

    /// Records that a menu offered these deployments to a machine (Non-compliant until it runs
    /// one, docs/status.md).
    pub fn record_offered(&self, decision: &Decision, entries: &[crate::catalog::DeploymentId]) {
        for id in entries {
            self.record(Write::Status(Box::new(StatusMessage {
                seq: 0,
                at: now(),
                source: "server".into(),
                kind: "offered".into(),
                identity: decision.identity_key().map(|k| k.to_string()),
                device: decision.device.clone(),
                deployment: Some(id.to_string()),
                body: serde_json::json!({ "via": "pxe menu" }),
            })));
        }
    }

    /// Writes a `requirements-not-met` status message for each deployment that targets the
    /// machine but that it may not run now (wrong architecture, loop guard, rerun behaviour),
    /// so monitoring shows it Non-compliant with the reason (docs/status.md). The same message for
    /// the same machine is written once per [`UNMET_QUIET_SECONDS`], and again after a start
    /// or an end in between.
    pub fn record_unmet(&self, decision: &Decision) {
        let Some(identity) = decision.identity_key().map(|k| k.to_string()) else {
            return;
        };
        let now = now();
        for e in decision.unmet_requirements() {
            let key = (identity.clone(), e.deployment_id.to_string());
            {
                let mut noted = self.unmet_noted.lock().unwrap_or_else(|p| p.into_inner());
                if noted
                    .get(&key)
                    .is_some_and(|&(rule, at)| rule == e.rule && now - at < UNMET_QUIET_SECONDS)
                {
                    continue;
                }
                if noted.len() >= UNMET_NOTED_MAX {
                    noted.clear();
                }
                noted.insert(key.clone(), (e.rule, now));
            }
            self.record(Write::Status(Box::new(StatusMessage {
                seq: 0,
                at: now,
                source: "server".into(),
                kind: "requirements-not-met".into(),
                identity: Some(identity.clone()),
                device: decision.device.clone(),
                deployment: Some(key.1),
                body: serde_json::json!({
                    "context": decision.context.to_string(),
                    "rule": e.rule.cite(),
                    "requirement": e.rule.title(),
                    "reason": e.explanation,
                }),
            })));
        }
    }

    /// Forgets the requirements-not-met messages of a machine that started or ended a run, so
    /// that the next refusal is written again.
    fn forget_unmet(&self, identity: &str) {
        let mut noted = self.unmet_noted.lock().unwrap_or_else(|p| p.into_inner());
        noted.retain(|(id, _), _| id != identity);
    }

    /// Writes the decision's warnings (such as an ignored preferred id) as status messages.
    pub fn record_warnings(&self, decision: &Decision) {
        for w in &decision.warnings {
            self.record(Write::Status(Box::new(StatusMessage {
                seq: 0,
                at: now(),
                source: "server".into(),
                kind: "warning".into(),
                identity: decision.identity_key().map(|k| k.to_string()),
                device: decision.device.clone(),
                deployment: None,
                body: serde_json::json!({ "rule": w.rule.cite(), "message": w.message }),
            })));
        }
    }
}

/// The boot image a machine starts for a deployment (docs/status.md): a machine of the
/// pre-production collection gets the pre-production image that replaces the deployment's,
/// when there is one; a pre-production image is never served to anyone else. The flag says
/// whether the image is a pre-production one.
pub fn boot_image_for<'a>(
    catalog: &'a Catalog,
    settings: &crate::catalog::site::Settings,
    decision: &Decision,
    d: &Deployment,
) -> Option<(&'a BootImage, bool)> {
    let image = catalog.boot_image_of(d)?;
    let device = decision.device.as_deref().and_then(|n| catalog.device(n));
    let in_pre = settings
        .pre_production_collection
        .as_deref()
        .and_then(|c| catalog.collection(c))
        .is_some_and(|c| catalog.holds(c, device));
    if in_pre {
        if let Some(pre) = catalog
            .boot_images
            .iter()
            .find(|b| b.pre_production && b.replaces.as_deref() == Some(image.id.as_str()))
        {
            return Some((pre, true));
        }
    }
    if image.pre_production && !in_pre {
        return None;
    }
    Some((image, image.pre_production))
}

/// A status message from a boot environment, checked: what [`BootPath::record_agent_status`]
/// needs, and the message itself as the body to keep.
#[derive(Debug, Clone)]
pub struct AgentStatus {
    pub machine: MachineIdentity,
    pub deployment: Option<String>,
    pub kind: StatusKind,
    /// When the agent wrote it down (`at`, Unix seconds), for messages kept on full media.
    pub at: Option<i64>,
    pub body: serde_json::Value,
}

/// The machine a boot environment names by `mac` and/or SMBIOS `uuid`. A missing or all-zero
/// UUID (some firmware) identifies nothing.
pub fn machine_of(mac: Option<&str>, uuid: Option<&str>) -> Result<MachineIdentity, String> {
    let mac = mac
        .map(str::parse::<crate::dhcp::packet::Mac>)
        .transpose()?;
    let uuid = uuid
        .filter(|u| !u.is_empty() && u.chars().any(|c| c.is_ascii_hexdigit() && c != '0'))
        .map(crate::catalog::parse_smbios_uuid)
        .transpose()?;
    if mac.is_none() && uuid.is_none() {
        return Err("the machine must say its mac and/or uuid".into());
    }
    Ok(MachineIdentity { mac, uuid })
}

/// Checks a status message: the agent's [`AgentMessage`] with a kind this server knows and
/// the machine's identity. A placeholder UUID (all zeros or all ones) identifies nothing.
pub fn parse_agent_status(raw: serde_json::Value) -> Result<AgentStatus, String> {
    if raw.get("kind").is_none() {
        return Err("a status message needs at least kind and mac or uuid".into());
    }
    let msg = AgentMessage::deserialize(&raw).map_err(|e| e.to_string())?;
    if let StatusKind::Unknown(kind) = &msg.kind {
        let known: Vec<&str> = StatusKind::KNOWN.iter().map(StatusKind::as_str).collect();
        return Err(format!("kind {kind:?} is not one of {}", known.join(", ")));
    }
    let uuid = msg.uuid.filter(|u| !u.is_placeholder());
    if msg.mac.is_none() && uuid.is_none() {
        return Err("the machine must say its mac and/or uuid".into());
    }
    if msg.kind == StatusKind::Rebooting && (msg.step_index.is_none() || msg.deployment.is_none()) {
        return Err(
            "a rebooting status message needs the deployment and the step_index of its reboot step"
                .into(),
        );
    }
    Ok(AgentStatus {
        machine: MachineIdentity { mac: msg.mac, uuid },
        deployment: msg.deployment,
        kind: msg.kind,
        at: msg.at,
        body: raw,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn content_is_served_once_the_catalog_holds_it_and_only_then() {
        let dir = tempfile::tempdir().unwrap();
        let bp = BootPath::open(
            Arc::new(Store::in_memory().unwrap()),
            Library::new(dir.path()),
            Default::default(),
        )
        .unwrap();
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        assert!(!bp.serves(&a).unwrap());
        let package = |sha: &str| crate::catalog::Package {
            id: "p".into(),
            version: 1,
            files: vec![crate::catalog::ContentFile {
                path: "f".into(),
                size: 1,
                sha256: sha.into(),
            }],
            package_share: false,
        };
        bp.store.put("package", "p", &package(&a), 0).unwrap();
        assert!(bp.serves(&a).unwrap(), "new content is served at once");
        assert!(!bp.serves(&b).unwrap());
        bp.store.put("package", "p", &package(&b), 0).unwrap();
        assert!(bp.serves(&b).unwrap());
    }

    #[test]
    fn a_rebooting_status_is_stored_as_where_the_run_continues_until_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let bp = BootPath::open(
            Arc::new(Store::in_memory().unwrap()),
            Library::new(dir.path()),
            Default::default(),
        )
        .unwrap();
        let machine = machine_of(Some("52:54:00:00:00:07"), None).unwrap();
        let lab: crate::catalog::DeploymentId = "LAB00001".parse().unwrap();
        let resume =
            |h: &decision::History| h.resume_for(&Catalog::default(), &machine, None, &lab);
        let status = |kind: &str, body: serde_json::Value| {
            bp.record_agent_status(machine, Some("LAB00001"), kind, body)
                .unwrap();
        };
        status("rebooting", json!({"kind": "rebooting", "step_index": 1}));
        assert_eq!(bp.memory.with_history(resume), Some(2));
        // The store has it too: a server restarted in between still continues the run.
        let stored = crate::store::catalog::history(&bp.store).unwrap();
        assert_eq!(resume(&stored), Some(2));
        status("started", json!({"kind": "started"}));
        assert_eq!(bp.memory.with_history(resume), Some(2));
        status("succeeded", json!({"kind": "succeeded"}));
        assert_eq!(bp.memory.with_history(resume), None);
        let stored = crate::store::catalog::history(&bp.store).unwrap();
        assert_eq!(resume(&stored), None);
        let err = parse_agent_status(json!({"kind": "rebooting", "mac": "52:54:00:00:00:07"}))
            .unwrap_err();
        assert!(err.contains("step_index"), "{err}");
    }

    #[test]
    fn a_status_message_needs_a_known_kind_and_an_identity() {
        let m = parse_agent_status(json!({
            "kind": "succeeded", "uuid": "4e44d0e1-0d08-4c4a-9b1e-2f6d0d080001",
            "deployment": "LAB00002", "at": 1_800_000_000
        }))
        .unwrap();
        assert_eq!(m.kind, StatusKind::Succeeded);
        assert_eq!(m.deployment.as_deref(), Some("LAB00002"));
        assert_eq!(m.at, Some(1_800_000_000));
        assert!(m.machine.uuid.is_some() && m.machine.mac.is_none());

        let err = |v| parse_agent_status(v).unwrap_err();
        assert!(err(json!({"kind": "done", "mac": "52:54:00:00:00:01"})).contains("not one of"));
        assert!(err(json!({"kind": "started"})).contains("mac and/or uuid"));
        // An all-zero UUID identifies nothing.
        assert!(
            err(json!({"kind": "started", "uuid": "00000000-0000-0000-0000-000000000000"}))
                .contains("mac and/or uuid")
        );
        assert!(err(json!({"mac": "52:54:00:00:00:01"})).contains("needs at least kind"));
        assert!(err(json!({"kind": "step", "mac": "52:54:00"})).contains("not a MAC address"));
    }
}
