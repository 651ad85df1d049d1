//! What the deployment decision remembers about machines: the PXE loop guard and the outcome
//! of each machine's last attempt of each deployment (docs/selection-rules.md rule 7).
//!
//! Everything is kept under the whole identity the machine sent (MAC and SMBIOS UUID together),
//! so it holds for unknown computers too, and is found again by identity whatever mix of MAC
//! and UUID the device was declared with. UUIDs that do not tell machines
//! apart (see [`crate::catalog::identity`]) are left out when matching. `History` is a plain
//! value; the store persists it so it survives a restart.

use serde::{Deserialize, Serialize};

use crate::catalog::identity::UuidPolicy;
use crate::catalog::{Catalog, DeploymentId, Device, MachineIdentity};
use netdeploy_wire::{Mac, SmbiosUuid};

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

/// A loop guard: the whole identity the machine was recorded with, and the required deployment
/// whose PXE start set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Guard {
    /// The MAC and UUID the machine sent when the deployment started.
    pub machine: MachineIdentity,
    /// The deployment that set the guard.
    pub deployment: DeploymentId,
}

/// One recorded last attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Recorded {
    machine: MachineIdentity,
    deployment: DeploymentId,
    attempt: Attempt,
}

/// The loop guard and the last attempts, each under the whole identity the machine sent (MAC
/// and UUID together), found again by identity: the same trusted UUID, else
/// the same MAC, else the device the recorded identity matches.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// Machines on which a required deployment started through PXE, and which one started.
    #[serde(default)]
    loop_guard: Vec<Guard>,
    /// The last attempt of each deployment under each recorded identity.
    #[serde(default)]
    attempts: Vec<Recorded>,
    /// Which UUIDs tell machines apart; set by whoever loads the history.
    #[serde(skip)]
    uuids: UuidPolicy,
}

impl History {
    /// An empty history.
    pub fn new() -> History {
        History::default()
    }

    /// The same history read with this UUID policy.
    pub fn with_uuid_policy(mut self, uuids: UuidPolicy) -> History {
        self.uuids = uuids;
        self
    }

    /// Which UUIDs tell machines apart.
    pub fn uuid_policy(&self) -> &UuidPolicy {
        &self.uuids
    }

    /// Whether state recorded under `recorded` belongs to `machine`, matched to `device`: the
    /// same machine by identity, or a recorded identity that the catalog matches to the same
    /// device.
    fn belongs(
        &self,
        catalog: &Catalog,
        recorded: &MachineIdentity,
        machine: &MachineIdentity,
        device: Option<&Device>,
    ) -> bool {
        if self.uuids.same_machine(recorded, machine) {
            return true;
        }
        device.is_some_and(|d| self.device_of(catalog, recorded) == Some(d.name.as_str()))
    }

    /// The device a recorded identity matches, with untrusted UUIDs left out.
    fn device_of<'c>(&self, catalog: &'c Catalog, recorded: &MachineIdentity) -> Option<&'c str> {
        catalog
            .match_device(&self.uuids.known_as(recorded))
            .map(|d| d.name.as_str())
    }

    /// Records that a required deployment started on a machine through PXE: from now on PXE
    /// starts no required deployment on it until the guard is cleared (rule 7).
    pub fn record_pxe_start(
        &mut self,
        machine: impl Into<MachineIdentity>,
        deployment: DeploymentId,
    ) {
        let machine = machine.into();
        self.loop_guard.retain(|g| g.machine != machine);
        self.loop_guard.push(Guard {
            machine,
            deployment,
        });
    }

    /// The loop guard that holds for a machine matched to `device`: one recorded under its own
    /// identity first, then one recorded under any identity of the same device.
    pub fn guard_for(
        &self,
        catalog: &Catalog,
        machine: &MachineIdentity,
        device: Option<&Device>,
    ) -> Option<Guard> {
        let own = self
            .loop_guard
            .iter()
            .find(|g| self.uuids.same_machine(&g.machine, machine));
        own.or_else(|| {
            self.loop_guard
                .iter()
                .find(|g| self.belongs(catalog, &g.machine, machine, device))
        })
        .copied()
    }

    /// Removes every guard `lift` selects; returns them.
    fn clear_where(&mut self, lift: impl Fn(&Guard) -> bool) -> Vec<Guard> {
        let (gone, kept) = self.loop_guard.iter().partition(|g| lift(g));
        self.loop_guard = kept;
        gone
    }

    /// Clears the guard recorded under exactly this identity; true when there was one.
    pub fn clear_machine(&mut self, machine: &MachineIdentity) -> bool {
        !self.clear_where(|g| g.machine == *machine).is_empty()
    }

    /// Clears the loop guard of a device: every guard recorded with one of its MACs or its
    /// (trusted) UUID, or whose recorded identity the catalog matches to it.
    pub fn clear_device(&mut self, catalog: &Catalog, device: &Device) -> Vec<Guard> {
        let uuids = self.uuids.clone();
        self.clear_where(|g| {
            let m = uuids.known_as(&g.machine);
            m.mac.is_some_and(|m| device.macs.contains(&m))
                || m.uuid
                    .is_some_and(|u| device.uuid == Some(u) && uuids.trusts(&u))
                || catalog
                    .match_device(&m)
                    .is_some_and(|d| d.name == device.name)
        })
    }

    /// Clears the loop guard of every machine a collection holds, unknown computers included
    /// for `Unknown Computers`; `None` when the collection does not exist.
    pub fn clear_collection(
        &mut self,
        catalog: &Catalog,
        collection_id: &str,
    ) -> Option<Vec<Guard>> {
        let collection = catalog.collection(collection_id)?;
        let uuids = self.uuids.clone();
        Some(self.clear_where(|g| {
            let m = uuids.known_as(&g.machine);
            catalog.holds(collection, catalog.match_device(&m))
        }))
    }

    /// Clears every guard recorded with this MAC.
    pub fn clear_mac(&mut self, mac: &Mac) -> Vec<Guard> {
        self.clear_where(|g| g.machine.mac == Some(*mac))
    }

    /// Clears every guard recorded with this UUID. An operator naming a UUID means it, so
    /// this holds for placeholder and duplicate UUIDs too.
    pub fn clear_uuid(&mut self, uuid: &SmbiosUuid) -> Vec<Guard> {
        self.clear_where(|g| g.machine.uuid == Some(*uuid))
    }

    /// Every loop guard currently set.
    pub fn guards(&self) -> impl Iterator<Item = &Guard> {
        self.loop_guard.iter()
    }

    /// Records the outcome of an attempt, replacing the previous one of that deployment under
    /// that identity.
    pub fn record_attempt(
        &mut self,
        machine: impl Into<MachineIdentity>,
        deployment: DeploymentId,
        attempt: Attempt,
    ) {
        let machine = machine.into();
        self.attempts
            .retain(|r| !(r.machine == machine && r.deployment == deployment));
        self.attempts.push(Recorded {
            machine,
            deployment,
            attempt,
        });
    }

    /// The last attempt of a deployment recorded under exactly this identity.
    pub fn last_attempt(
        &self,
        machine: &MachineIdentity,
        deployment: &DeploymentId,
    ) -> Option<&Attempt> {
        self.attempts
            .iter()
            .find(|r| r.machine == *machine && r.deployment == *deployment)
            .map(|r| &r.attempt)
    }

    /// The last attempt of a deployment on a machine matched to `device`: one recorded under
    /// its own identity first, then under any identity of the same device.
    pub fn last_attempt_for(
        &self,
        catalog: &Catalog,
        machine: &MachineIdentity,
        device: Option<&Device>,
        deployment: &DeploymentId,
    ) -> Option<Attempt> {
        let of = |r: &&Recorded| r.deployment == *deployment;
        let own = self
            .attempts
            .iter()
            .filter(of)
            .find(|r| self.uuids.same_machine(&r.machine, machine));
        own.or_else(|| {
            self.attempts
                .iter()
                .filter(of)
                .find(|r| self.belongs(catalog, &r.machine, machine, device))
        })
        .map(|r| r.attempt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Collection, CollectionKind, IdentityKey};
    use netdeploy_wire::{Mac, SmbiosUuid};

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
        let catalog = Catalog {
            devices: vec![dev.clone()],
            ..Catalog::default()
        };
        assert!(h.guard_for(&catalog, &only_mac, None).is_none());
        assert_eq!(
            h.guard_for(&catalog, &only_mac, Some(&dev))
                .unwrap()
                .deployment,
            id("LAB00001")
        );
        assert_eq!(h.clear_device(&catalog, &dev).len(), 1);
        assert!(h.guard_for(&catalog, &only_mac, Some(&dev)).is_none());
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
        let gone = h.clear_collection(&catalog, "SMS000US").unwrap();
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].machine.mac, Some(stranger));
        assert_eq!(h.guards().count(), 1);
        assert_eq!(h.guards().next().unwrap().machine.mac, Some(known));
        assert!(h.clear_collection(&catalog, "nope").is_none());
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
