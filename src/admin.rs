//! Catalog operations shared by the command line and the HTTP admin API, so both apply the
//! same checks: creating a deployment (docs/deployment-checks.md), deleting an object, explaining a
//! decision (rule 10), and lifting the PXE loop guard (rule 7).

use crate::bootpath::now;
use crate::catalog::{parse_smbios_uuid, DeploymentId, MachineIdentity};
use crate::content::Library;
use crate::decision::checks::{self, NewDeployment, Refusal, Warning};
use crate::decision::{self, Context, Decision, Guard, ServerSettings};
use crate::dhcp::packet::Mac;
use crate::store::catalog as stored;
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
    #[error("{0}")]
    Invalid(String),
    #[error("{kind} {id:?} is still used by {user}; delete that first")]
    InUse {
        kind: &'static str,
        id: String,
        user: String,
    },
}

/// Saves the package `package`, whose files are in the content library already: an image
/// index among them must decode and name only chunks of the package (docs/image-format.md),
/// so a machine never starts an apply that cannot finish. With `replace` false an existing
/// package of that id is left as it is and the package refused. `netdeploy package create`
/// and a capture to the server (docs/agent-http.md) both save packages through here.
pub fn create_package(
    store: &Store,
    library: &Library,
    package: &crate::catalog::Package,
    replace: bool,
) -> Result<Vec<crate::content::image_package::ImageSummary>, AdminError> {
    if !replace
        && store
            .get::<crate::catalog::Package>("package", &package.id)?
            .is_some()
    {
        return Err(AdminError::Invalid(format!(
            "package {:?} exists already: a capture never replaces a package; name a new one \
             in the capture_image step",
            package.id
        )));
    }
    let images = crate::content::image_package::check(&package.files, |f| {
        let path = library.path_of(&f.sha256).map_err(std::io::Error::other)?;
        std::fs::read(path)
    })
    .map_err(|e| AdminError::Invalid(format!("package {} is not saved: {e}", package.id)))?;
    store.put("package", &package.id, package, now())?;
    Ok(images)
}

/// Adds or replaces a device. It needs a MAC or a UUID to be recognised when it boots, and no
/// other device may hold one of its MACs (two devices with one MAC would be one machine).
pub fn put_device(store: &Store, device: &crate::catalog::Device) -> Result<(), AdminError> {
    if device.name.trim().is_empty() {
        return Err(AdminError::Invalid("a device needs a name".into()));
    }
    if device.macs.is_empty() && device.uuid.is_none() {
        return Err(AdminError::Invalid(format!(
            "device {:?} needs a MAC or a UUID to be recognised when it boots",
            device.name
        )));
    }
    let (catalog, _) = stored::load(store)?;
    for other in catalog.devices.iter().filter(|d| d.name != device.name) {
        if let Some(mac) = device.macs.iter().find(|m| other.macs.contains(m)) {
            return Err(AdminError::Invalid(format!(
                "MAC {mac} already belongs to device {:?}",
                other.name
            )));
        }
    }
    store.put("device", &device.name, device, now())?;
    Ok(())
}

/// Adds or replaces a custom collection: not a built-in one, and every member a device of the
/// catalog.
pub fn put_collection(
    store: &Store,
    collection: &crate::catalog::Collection,
) -> Result<(), AdminError> {
    use crate::catalog::{site, CollectionKind};
    let id = collection.id.as_str();
    if id.trim().is_empty() {
        return Err(AdminError::Invalid("a collection needs an id".into()));
    }
    if id == site::ALL_SYSTEMS || id == site::UNKNOWN_COMPUTERS {
        return Err(AdminError::Invalid(format!(
            "{id} is a built-in collection"
        )));
    }
    let CollectionKind::Custom { members } = &collection.kind else {
        return Err(AdminError::Invalid(
            "only custom collections can be written".into(),
        ));
    };
    let (catalog, _) = stored::load(store)?;
    if let Some(m) = members.iter().find(|m| catalog.device(m).is_none()) {
        return Err(AdminError::Invalid(format!(
            "collection {id:?}: member {m:?} is no device"
        )));
    }
    store.put("collection", id, collection, now())?;
    Ok(())
}

/// Deletes one catalog object of a store kind (`device`, `collection`, `package`,
/// `boot_image`, `task_sequence`, `deployment`, `template`). An object that another one still
/// uses is refused, naming the user: a collection or task sequence a deployment uses, a boot
/// image or package a task sequence uses, a device a custom collection lists.
pub fn delete_object(store: &Store, kind: &'static str, id: &str) -> Result<(), AdminError> {
    let (catalog, _) = stored::load(store)?;
    if let Some(user) = user_of(&catalog, kind, id) {
        return Err(AdminError::InUse {
            kind,
            id: id.to_owned(),
            user,
        });
    }
    if !store.delete(kind, id)? {
        return Err(AdminError::NotFound(format!("no {kind} {id:?}")));
    }
    Ok(())
}

/// The first object that still uses `id`, as "deployment LAB00001".
fn user_of(c: &crate::catalog::Catalog, kind: &str, id: &str) -> Option<String> {
    use crate::catalog::CollectionKind;
    let deployment = |d: &crate::catalog::Deployment| format!("deployment {}", d.id);
    let task_sequence = |t: &crate::catalog::TaskSequence| format!("task sequence {}", t.id);
    match kind {
        "collection" => c
            .deployments
            .iter()
            .find(|d| d.collection == id)
            .map(deployment),
        "task_sequence" => c
            .deployments
            .iter()
            .find(|d| d.task_sequence == id)
            .map(deployment),
        "boot_image" => c
            .task_sequences
            .iter()
            .find(|t| t.boot_image.as_deref() == Some(id))
            .map(task_sequence),
        "package" => c
            .task_sequences
            .iter()
            .find(|t| t.referenced_packages().contains(&id))
            .map(task_sequence),
        "device" => c
            .collections
            .iter()
            .find(|col| {
                matches!(&col.kind, CollectionKind::Custom { members } if members.iter().any(|m| m == id))
            })
            .map(|col| format!("collection {}", col.id)),
        _ => None,
    }
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
    let id = crate::decision::deployment_id::next_deployment_id(&code, issued.iter())?;
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

pub use crate::store::catalog::high_risk_audit;

/// The audit status message of a change made through the admin API (docs/admin-api.md): who
/// (the token's name), from where, when, and the request; never its body, which may hold secrets.
pub fn change_audit(
    who: &str,
    from: &str,
    method: &str,
    path: &str,
    status: u16,
    at: i64,
) -> StatusMessage {
    StatusMessage {
        seq: 0,
        at,
        source: "server".into(),
        kind: "admin-change".into(),
        identity: None,
        device: None,
        deployment: None,
        body: serde_json::json!({
            "who": who,
            "from": from,
            "when": at,
            "request": format!("{method} {path}"),
            "status": status,
        }),
    }
}

/// The decision for a machine in a context, as `explain` shows it: the same decision the
/// server makes, loop guard included. A machine named by MAC alone is looked at with the UUID
/// that MAC was last seen with, as the firmware sends it; the decision's identity notes say
/// which recorded identities were looked at. `pxe_password_set`: the server asks the PXE
/// password (rule 9), which the decision then says.
pub fn explain(
    store: &Store,
    machine: MachineIdentity,
    arch: Option<u16>,
    context: Context,
    preferred: Option<&str>,
    pxe_password_set: bool,
) -> Result<Decision, StoreError> {
    let (catalog, settings) = stored::load(store)?;
    let history = stored::history(store)?;
    let (machine, notes) = identify(&history, machine);
    let mut d = decision::decide(
        &catalog,
        &machine,
        arch,
        true,
        context,
        preferred,
        &history,
        &ServerSettings {
            unknown_computers_enabled: settings.unknown_computers,
            pxe_password_set,
            pre_production_collection: settings.pre_production_collection.clone(),
        },
    );
    d.identity_notes = notes;
    Ok(d)
}

/// Completes a machine named by MAC alone with the UUID the server last saw with that MAC,
/// and says which recorded identities a decision for it looks at.
fn identify(
    history: &decision::History,
    mut machine: MachineIdentity,
) -> (MachineIdentity, Vec<String>) {
    let mut notes = Vec::new();
    if let (Some(mac), None) = (machine.mac, machine.uuid) {
        match history.uuid_policy().sightings().last_uuid_of(&mac) {
            Some((uuid, at)) => {
                notes.push(format!(
                    "no UUID given: mac {mac} was last seen with uuid {uuid} (at {when} UTC), so \
                     records under uuid {uuid} and under mac {mac} are looked at",
                    when = crate::monitoring::format_time(at)
                ));
                machine.uuid = Some(uuid);
            }
            None => notes.push(format!(
                "no UUID given, and mac {mac} was never seen with one: records under mac {mac} \
                 and under the identities of its device are looked at"
            )),
        }
    }
    (machine, notes)
}

/// Which machines to lift the loop guard for: a device, every machine of a collection, or one
/// machine (an unknown computer, say) by the MAC or UUID it was recorded with.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuardScope {
    Device(String),
    Collection(String),
    Mac(String),
    Uuid(String),
}

impl std::fmt::Display for GuardScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GuardScope::Device(d) => write!(f, "device {d}"),
            GuardScope::Collection(c) => write!(f, "collection {c}"),
            GuardScope::Mac(m) => write!(f, "mac {m}"),
            GuardScope::Uuid(u) => write!(f, "uuid {u}"),
        }
    }
}

/// One loop guard that was lifted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ClearedGuard {
    /// The whole identity it was recorded under (`uuid:... mac:...`).
    pub identity: String,
    /// The required deployment whose PXE start had set it.
    pub deployment: String,
}

/// What [`clear_guard`] did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Cleared {
    /// The guards lifted.
    pub guards: Vec<ClearedGuard>,
    /// When nothing was lifted, why.
    pub none_because: Option<String>,
}

/// Lifts the PXE loop guard (rule 7) for a scope; says which guards went, or why none did.
pub fn clear_guard(store: &Store, scope: &GuardScope) -> Result<Cleared, AdminError> {
    let (catalog, _) = stored::load(store)?;
    let mut history = stored::history(store)?;
    let total = history.guards().count();
    let gone: Vec<Guard> = match scope {
        GuardScope::Device(d) => {
            let dev = catalog
                .device(d)
                .ok_or_else(|| AdminError::NotFound(format!("no device {d:?}")))?;
            history.clear_device(&catalog, dev)
        }
        GuardScope::Collection(c) => history
            .clear_collection(&catalog, c)
            .ok_or_else(|| AdminError::NotFound(format!("no collection {c:?}")))?,
        GuardScope::Mac(m) => {
            let mac = m.parse::<Mac>().map_err(AdminError::Invalid)?;
            history.clear_mac(&mac)
        }
        GuardScope::Uuid(u) => {
            let uuid = parse_smbios_uuid(u).map_err(AdminError::Invalid)?;
            history.clear_uuid(&uuid)
        }
    };
    // Delete the stored rows by their own text, whichever form (old single key or whole
    // identity) they were written in.
    let rows: Vec<String> = store
        .guards()?
        .into_iter()
        .map(|(identity, _)| identity)
        .filter(|text| {
            MachineIdentity::from_record(text).is_ok_and(|m| gone.iter().any(|g| g.machine == m))
        })
        .collect();
    store.guard_clear(&rows)?;
    let none_because = gone.is_empty().then(|| {
        if total == 0 {
            "no machine is under the loop guard".to_string()
        } else {
            format!(
                "none of the {total} machine(s) under the loop guard was recorded with an \
                 identity of {scope}; `netdeploy pxe guards` lists them, `--mac` or `--uuid` clears one"
            )
        }
    });
    Ok(Cleared {
        guards: gone
            .iter()
            .map(|g| ClearedGuard {
                identity: g.machine.record(),
                deployment: g.deployment.to_string(),
            })
            .collect(),
        none_because,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Device;
    use crate::store::catalog as stored;

    const MAC: &str = "52:54:00:0e:05:01";
    const UUID: &str = "6f1d0c62-93a1-4d7e-8a52-3c0b1e4f5a61";

    fn store_with_pc1_by_mac() -> Store {
        let store = Store::in_memory().unwrap();
        let pc1 = Device {
            name: "pc1".into(),
            macs: vec![MAC.parse().unwrap()],
            uuid: None,
            server: false,
            site_system: false,
        };
        store.put("device", "pc1", &pc1, 1).unwrap();
        store
    }

    #[test]
    fn a_guard_stored_under_a_uuid_alone_is_cleared_by_the_device_declared_by_mac() {
        let store = store_with_pc1_by_mac();
        // As older versions stored it: under the UUID alone.
        store
            .guard_set(&format!("uuid:{UUID}"), "LAB00001", 5)
            .unwrap();
        // It still holds the machine back when it boots with both.
        let (catalog, _) = stored::load(&store).unwrap();
        let machine = MachineIdentity {
            mac: Some(MAC.parse().unwrap()),
            uuid: Some(parse_smbios_uuid(UUID).unwrap()),
        };
        let history = stored::history(&store).unwrap();
        let guard = history.guard_for(&catalog, &machine, catalog.device("pc1"));
        assert_eq!(guard.unwrap().deployment.to_string(), "LAB00001");
        // Until the server has seen this MAC and UUID together, nothing ties the old guard to
        // pc1; once it has, clearing pc1 lifts it.
        let none = clear_guard(&store, &GuardScope::Device("pc1".into())).unwrap();
        assert!(none.guards.is_empty());
        assert!(none
            .none_because
            .unwrap()
            .contains("none of the 1 machine(s)"));
        stored::record_sighting(
            &store,
            MAC.parse().unwrap(),
            parse_smbios_uuid(UUID).unwrap(),
            6,
        )
        .unwrap();
        let cleared = clear_guard(&store, &GuardScope::Device("pc1".into())).unwrap();
        assert_eq!(
            cleared.guards,
            vec![ClearedGuard {
                identity: format!("uuid:{UUID}"),
                deployment: "LAB00001".into()
            }]
        );
        assert!(store.guards().unwrap().is_empty());
    }

    #[test]
    fn a_guard_stored_under_a_mac_alone_is_cleared_by_that_mac() {
        let store = store_with_pc1_by_mac();
        store
            .guard_set(&format!("mac:{MAC}"), "LAB00001", 5)
            .unwrap();
        let cleared = clear_guard(&store, &GuardScope::Mac(MAC.into())).unwrap();
        assert_eq!(cleared.guards.len(), 1);
        assert!(store.guards().unwrap().is_empty());
        assert!(matches!(
            clear_guard(&store, &GuardScope::Uuid("not a uuid".into())),
            Err(AdminError::Invalid(_))
        ));
        assert!(matches!(
            clear_guard(&store, &GuardScope::Device("ghost".into())),
            Err(AdminError::NotFound(_))
        ));
    }
}
