//! What the deployment decision remembers about machines: the PXE loop guard and the outcome
//! of each machine's last attempt of each deployment (SPEC section 3, rule 7).
//!
//! Everything is kept per machine identity (SMBIOS UUID, else MAC, see
//! [`MachineIdentity::key`]) so it holds for unknown computers too. `History` is a plain value
//! that serializes with serde; the store persists it so it survives a restart.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::catalog::{Catalog, DeploymentId, Device, IdentityKey, MachineIdentity};

/// How an attempt of a deployment on a machine ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The task sequence ran to its end.
    Succeeded,
    /// A step failed.
    Failed,
    /// The run started and never reported an end (a power cut, a hang): it counts as run,
    /// and not as succeeded.
    Interrupted,
}

/// The last attempt of one deployment on one machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// How it ended.
    pub outcome: Outcome,
    /// When the attempt started (unix seconds); client schedules rerun only for deadlines
    /// after it.
    pub at: i64,
}

/// The loop guard and the last attempts, per machine identity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// Machines on which a required deployment started through PXE, and which one started.
    #[serde(default)]
    loop_guard: BTreeMap<IdentityKey, DeploymentId>,
    /// The last attempt of each deployment on each machine.
    #[serde(default)]
    attempts: BTreeMap<IdentityKey, BTreeMap<DeploymentId, Attempt>>,
}

/// The keys under which state about a machine may have been recorded: its own key first, then
/// its other identity, then every identity of the device it matched. A machine that once sent
/// its UUID and now only its MAC is still recognised.
pub(crate) fn lookup_keys(machine: &MachineIdentity, device: Option<&Device>) -> Vec<IdentityKey> {
    let mut keys: Vec<IdentityKey> = Vec::new();
    let own = machine
        .uuid
        .map(IdentityKey::Uuid)
        .into_iter()
        .chain(machine.mac.map(IdentityKey::Mac));
    let known = device.map(Device::identity_keys).unwrap_or_default();
    for k in own.chain(known) {
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    keys
}

impl History {
    /// An empty history.
    pub fn new() -> History {
        History::default()
    }

    /// Records that a required deployment started on a machine through PXE: from now on PXE
    /// starts no required deployment on it until the guard is cleared (rule 7).
    pub fn record_pxe_start(&mut self, key: IdentityKey, deployment: DeploymentId) {
        self.loop_guard.insert(key, deployment);
    }

    /// The required deployment that set the loop guard under exactly this key.
    pub fn guard(&self, key: &IdentityKey) -> Option<&DeploymentId> {
        self.loop_guard.get(key)
    }

    /// The loop guard that holds for a machine, looked up under every identity it or its
    /// device is known by (see [`History::guard`] for one key).
    pub fn guard_for(
        &self,
        machine: &MachineIdentity,
        device: Option<&Device>,
    ) -> Option<(IdentityKey, DeploymentId)> {
        lookup_keys(machine, device)
            .into_iter()
            .find_map(|k| self.loop_guard.get(&k).map(|d| (k, *d)))
    }

    /// Clears the loop guard under one key; true when there was one.
    pub fn clear_machine(&mut self, key: &IdentityKey) -> bool {
        self.loop_guard.remove(key).is_some()
    }

    /// Clears the loop guard of a device under each of its identities; returns how many
    /// guards were removed.
    pub fn clear_device(&mut self, device: &Device) -> usize {
        device
            .identity_keys()
            .iter()
            .filter(|k| self.clear_machine(k))
            .count()
    }

    /// Clears the loop guard of every machine a collection holds, unknown computers included
    /// for `Unknown Computers`; returns how many guards were removed, or `None` when the
    /// collection does not exist.
    pub fn clear_collection(&mut self, catalog: &Catalog, collection_id: &str) -> Option<usize> {
        let collection = catalog.collection(collection_id)?;
        let before = self.loop_guard.len();
        self.loop_guard.retain(|key, _| {
            let machine = match key {
                IdentityKey::Uuid(u) => MachineIdentity {
                    mac: None,
                    uuid: Some(*u),
                },
                IdentityKey::Mac(m) => MachineIdentity {
                    mac: Some(*m),
                    uuid: None,
                },
            };
            !catalog.holds(collection, catalog.match_device(&machine))
        });
        Some(before - self.loop_guard.len())
    }

    /// Every loop guard currently set.
    pub fn guards(&self) -> impl Iterator<Item = (&IdentityKey, &DeploymentId)> {
        self.loop_guard.iter()
    }

    /// Records the outcome of an attempt, replacing the previous one of that deployment on
    /// that machine.
    pub fn record_attempt(&mut self, key: IdentityKey, deployment: DeploymentId, attempt: Attempt) {
        self.attempts
            .entry(key)
            .or_default()
            .insert(deployment, attempt);
    }

    /// The last attempt of a deployment recorded under exactly this key.
    pub fn last_attempt(&self, key: &IdentityKey, deployment: &DeploymentId) -> Option<&Attempt> {
        self.attempts.get(key)?.get(deployment)
    }

    /// The last attempt of a deployment on a machine, looked up under every identity it or
    /// its device is known by (the machine's own key first).
    pub fn last_attempt_for(
        &self,
        machine: &MachineIdentity,
        device: Option<&Device>,
        deployment: &DeploymentId,
    ) -> Option<Attempt> {
        lookup_keys(machine, device)
            .iter()
            .find_map(|k| self.last_attempt(k, deployment).copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Collection, CollectionKind};
    use crate::dhcp::packet::{Mac, SmbiosUuid};

    fn id(s: &str) -> DeploymentId {
        s.parse().unwrap()
    }

    #[test]
    fn guard_set_under_uuid_is_found_from_the_mac_of_the_device() {
        let dev = Device {
            name: "a".into(),
            macs: vec![Mac([2, 0, 0, 0, 0, 1])],
            uuid: Some(SmbiosUuid([1; 16])),
            server: false,
            site_system: false,
        };
        let mut h = History::new();
        h.record_pxe_start(IdentityKey::Uuid(SmbiosUuid([1; 16])), id("LAB00001"));
        let only_mac = MachineIdentity {
            mac: Some(Mac([2, 0, 0, 0, 0, 1])),
            uuid: None,
        };
        assert!(h.guard_for(&only_mac, None).is_none());
        assert_eq!(
            h.guard_for(&only_mac, Some(&dev)).unwrap().1,
            id("LAB00001")
        );
        assert_eq!(h.clear_device(&dev), 1);
        assert!(h.guard_for(&only_mac, Some(&dev)).is_none());
    }

    #[test]
    fn clearing_unknown_computers_keeps_guards_of_known_devices() {
        let known = Mac([2, 0, 0, 0, 0, 1]);
        let stranger = Mac([2, 0, 0, 0, 0, 2]);
        let catalog = Catalog {
            devices: vec![Device {
                name: "a".into(),
                macs: vec![known],
                uuid: None,
                server: false,
                site_system: false,
            }],
            collections: vec![Collection {
                id: "SMS000US".into(),
                name: "Unknown Computers".into(),
                kind: CollectionKind::UnknownComputers,
            }],
            ..Catalog::default()
        };
        let mut h = History::new();
        h.record_pxe_start(IdentityKey::Mac(known), id("LAB00001"));
        h.record_pxe_start(IdentityKey::Mac(stranger), id("LAB00002"));
        assert_eq!(h.clear_collection(&catalog, "SMS000US"), Some(1));
        assert_eq!(h.guards().count(), 1);
        assert!(h.guard(&IdentityKey::Mac(known)).is_some());
        assert_eq!(h.clear_collection(&catalog, "nope"), None);
    }

    #[test]
    fn history_round_trips_through_json() {
        let mut h = History::new();
        let key = IdentityKey::Mac(Mac([2, 0, 0, 0, 0, 1]));
        h.record_pxe_start(key, id("LAB00001"));
        h.record_attempt(
            key,
            id("LAB00002"),
            Attempt {
                outcome: Outcome::Failed,
                at: 5,
            },
        );
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(serde_json::from_str::<History>(&json).unwrap(), h);
    }
}
