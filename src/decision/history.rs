//! What the deployment decision remembers about machines: the PXE loop guard and the outcome
//! of each machine's last attempt of each deployment (docs/selection-rules.md rule 7).
//!
//! Everything is kept under the whole identity the machine sent (MAC and SMBIOS UUID together),
//! so it holds for unknown computers too, and is found again by identity whatever mix of MAC
//! and UUID the device was declared with. UUIDs that do not tell machines
//! apart (see [`crate::catalog::identity`]) are left out when matching. `History` is a plain
//! value; the store persists it so it survives a restart.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::catalog::identity::UuidPolicy;
use crate::catalog::index::CatalogView;
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

/// A run of a deployment that restarted the machine in the middle of its task sequence (a
/// `reboot` step that is not the last): the next run of it on that machine continues at step
/// `step` (0-based), and the loop guard does not hold it back (docs/selection-rules.md rule 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resume {
    /// The MAC and UUID the machine sent when it reported the restart.
    pub machine: MachineIdentity,
    /// The deployment that continues.
    pub deployment: DeploymentId,
    /// The step the next run starts at.
    pub step: usize,
}

/// One recorded last attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Recorded {
    machine: MachineIdentity,
    deployment: DeploymentId,
    attempt: Attempt,
}

/// What is recorded under a machine identity.
trait Keyed: Copy {
    fn machine(&self) -> &MachineIdentity;
}

impl Keyed for Guard {
    fn machine(&self) -> &MachineIdentity {
        &self.machine
    }
}

impl Keyed for Resume {
    fn machine(&self) -> &MachineIdentity {
        &self.machine
    }
}

impl Keyed for Recorded {
    fn machine(&self) -> &MachineIdentity {
        &self.machine
    }
}

/// Records in the order they were made, indexed by the MAC and by the UUID they were recorded
/// with, so that the records of one machine are found without reading the others. A replaced
/// record leaves a hole that is swept once holes outnumber records.
#[derive(Debug, Clone)]
struct Records<T> {
    items: Vec<Option<T>>,
    live: usize,
    by_mac: HashMap<Mac, Vec<usize>>,
    by_uuid: HashMap<SmbiosUuid, Vec<usize>>,
    /// Records with neither a MAC nor a UUID.
    bare: Vec<usize>,
}

impl<T> Default for Records<T> {
    fn default() -> Records<T> {
        Records {
            items: Vec::new(),
            live: 0,
            by_mac: HashMap::new(),
            by_uuid: HashMap::new(),
            bare: Vec::new(),
        }
    }
}

impl<T: Keyed> Records<T> {
    fn from_vec(items: Vec<T>) -> Records<T> {
        let mut r = Records::default();
        for t in items {
            r.push(t);
        }
        r
    }

    fn push(&mut self, t: T) {
        let i = self.items.len();
        let m = t.machine();
        if let Some(mac) = m.mac {
            self.by_mac.entry(mac).or_default().push(i);
        }
        if let Some(uuid) = m.uuid {
            self.by_uuid.entry(uuid).or_default().push(i);
        }
        if m.mac.is_none() && m.uuid.is_none() {
            self.bare.push(i);
        }
        self.items.push(Some(t));
        self.live += 1;
    }

    fn iter(&self) -> impl Iterator<Item = &T> {
        self.items.iter().flatten()
    }

    /// Positions of the records made under any of these MACs or UUIDs (or, for an identity
    /// with neither, of the records with neither), in the order they were made.
    fn positions(&self, macs: &[Mac], uuids: &[SmbiosUuid], bare: bool) -> Vec<usize> {
        let mut at: Vec<usize> = macs
            .iter()
            .filter_map(|m| self.by_mac.get(m))
            .chain(uuids.iter().filter_map(|u| self.by_uuid.get(u)))
            .flatten()
            .copied()
            .filter(|&i| self.items[i].is_some())
            .collect();
        if bare {
            at.extend(self.bare.iter().filter(|&&i| self.items[i].is_some()));
        }
        at.sort_unstable();
        at.dedup();
        at
    }

    /// The records made under any of these MACs or UUIDs, in the order they were made.
    fn candidates(&self, keys: &Keys) -> impl Iterator<Item = &T> {
        self.positions(&keys.macs, &keys.uuids, false)
            .into_iter()
            .filter_map(|i| self.items[i].as_ref())
    }

    /// Removes the records made under exactly this identity that `also` selects.
    fn remove_exact(&mut self, machine: &MachineIdentity, also: impl Fn(&T) -> bool) {
        let macs: Vec<Mac> = machine.mac.into_iter().collect();
        let uuids: Vec<SmbiosUuid> = machine.uuid.into_iter().collect();
        let bare = macs.is_empty() && uuids.is_empty();
        for i in self.positions(&macs, &uuids, bare) {
            if self.items[i].is_some_and(|t| t.machine() == machine && also(&t)) {
                self.items[i] = None;
                self.live -= 1;
            }
        }
        if self.items.len() > 2 * self.live + 64 {
            *self = Records::from_vec(self.iter().copied().collect());
        }
    }

    /// Removes every record `lift` selects; returns them.
    fn remove_where(&mut self, lift: impl Fn(&T) -> bool) -> Vec<T> {
        let (gone, kept): (Vec<T>, Vec<T>) = self.iter().partition(|t| lift(t));
        if !gone.is_empty() {
            *self = Records::from_vec(kept);
        }
        gone
    }
}

/// The MACs and UUIDs under which something recorded may belong to a machine.
struct Keys {
    macs: Vec<Mac>,
    uuids: Vec<SmbiosUuid>,
}

/// The loop guard and the last attempts, each under the whole identity the machine sent (MAC
/// and UUID together), found again by identity: the same trusted UUID, else
/// the same MAC, else the device the recorded identity matches.
///
/// Both are indexed by the MAC and the UUID they were recorded with: finding a machine's
/// guard reads the records of that machine, its device and the UUIDs and MACs seen with them,
/// not every record.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(from = "StoredHistory", into = "StoredHistory")]
pub struct History {
    /// Machines on which a required deployment started through PXE, and which one started.
    loop_guard: Records<Guard>,
    /// The last attempt of each deployment under each recorded identity.
    attempts: Records<Recorded>,
    /// Runs that restarted the machine mid-sequence and continue on its next boot.
    resuming: Records<Resume>,
    /// Which UUIDs tell machines apart; set by whoever loads the history.
    uuids: UuidPolicy,
}

/// [`History`] as JSON.
#[derive(Clone, Serialize, Deserialize)]
struct StoredHistory {
    #[serde(default)]
    loop_guard: Vec<Guard>,
    #[serde(default)]
    attempts: Vec<Recorded>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    resuming: Vec<Resume>,
}

impl From<StoredHistory> for History {
    fn from(s: StoredHistory) -> History {
        History {
            loop_guard: Records::from_vec(s.loop_guard),
            attempts: Records::from_vec(s.attempts),
            resuming: Records::from_vec(s.resuming),
            uuids: UuidPolicy::default(),
        }
    }
}

impl From<History> for StoredHistory {
    fn from(h: History) -> StoredHistory {
        StoredHistory {
            loop_guard: h.loop_guard.iter().copied().collect(),
            attempts: h.attempts.iter().copied().collect(),
            resuming: h.resuming.iter().copied().collect(),
        }
    }
}

impl PartialEq for History {
    fn eq(&self, other: &History) -> bool {
        self.loop_guard.iter().eq(other.loop_guard.iter())
            && self.attempts.iter().eq(other.attempts.iter())
            && self.resuming.iter().eq(other.resuming.iter())
            && self.uuids == other.uuids
    }
}

impl Eq for History {}

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

    /// Notes that a boot request carried this MAC and UUID together at `at` (see
    /// [`crate::catalog::identity::Sightings::record`]); true when the pair was new.
    pub fn record_sighting(&mut self, uuid: SmbiosUuid, mac: Mac, at: i64) -> bool {
        self.uuids.record_sighting(uuid, mac, at)
    }

    /// Whether state recorded under `recorded` belongs to `machine`, matched to `device`: the
    /// same machine by identity, or a recorded identity that the catalog matches to the same
    /// device.
    fn belongs(
        &self,
        catalog: CatalogView<'_>,
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
    fn device_of<'c>(
        &self,
        catalog: CatalogView<'c>,
        recorded: &MachineIdentity,
    ) -> Option<&'c str> {
        catalog
            .match_device(&self.uuids.known_as(recorded))
            .map(|d| d.name.as_str())
    }

    /// Every MAC and UUID under which a record may belong to `machine` matched to `device`
    /// ([`History::belongs`]): theirs, what the machine is known as, and the UUIDs and MACs
    /// seen with those (a record holding one part is completed from the sightings).
    fn keys(&self, machine: &MachineIdentity, device: Option<&Device>) -> Keys {
        let known = self.uuids.known_as(machine);
        let mut macs: Vec<Mac> = machine.mac.into_iter().chain(known.mac).collect();
        let mut uuids: Vec<SmbiosUuid> = machine.uuid.into_iter().chain(known.uuid).collect();
        if let Some(d) = device {
            macs.extend(&d.macs);
            uuids.extend(d.uuid);
        }
        let seen = self.uuids.sightings();
        let mut more: Vec<SmbiosUuid> = macs.iter().flat_map(|m| seen.uuids_of(m)).collect();
        uuids.append(&mut more);
        uuids.sort_unstable();
        uuids.dedup();
        // Only a trusted UUID completes a record (and a duplicate one has many MACs).
        macs.extend(
            uuids
                .iter()
                .filter(|u| self.uuids.trusts(u))
                .flat_map(|u| seen.macs_of(u)),
        );
        macs.sort_unstable();
        macs.dedup();
        Keys { macs, uuids }
    }

    /// Records that a required deployment started on a machine through PXE: from now on PXE
    /// starts no required deployment on it until the guard is cleared (rule 7).
    pub fn record_pxe_start(
        &mut self,
        machine: impl Into<MachineIdentity>,
        deployment: DeploymentId,
    ) {
        let machine = machine.into();
        self.loop_guard.remove_exact(&machine, |_| true);
        self.loop_guard.push(Guard {
            machine,
            deployment,
        });
    }

    /// The loop guard that holds for a machine matched to `device`: one recorded under its own
    /// identity first, then one recorded under any identity of the same device.
    pub fn guard_for<'c>(
        &self,
        catalog: impl Into<CatalogView<'c>>,
        machine: &MachineIdentity,
        device: Option<&Device>,
    ) -> Option<Guard> {
        let catalog = catalog.into();
        if self.loop_guard.live == 0 {
            return None;
        }
        let keys = self.keys(machine, device);
        let own = self
            .loop_guard
            .candidates(&keys)
            .find(|g| self.uuids.same_machine(&g.machine, machine));
        own.or_else(|| {
            self.loop_guard
                .candidates(&keys)
                .find(|g| self.belongs(catalog, &g.machine, machine, device))
        })
        .copied()
    }

    /// Clears the guard recorded under exactly this identity; true when there was one.
    pub fn clear_machine(&mut self, machine: &MachineIdentity) -> bool {
        let before = self.loop_guard.live;
        self.loop_guard.remove_exact(machine, |_| true);
        self.loop_guard.live != before
    }

    /// Clears the loop guard of a device: every guard recorded with one of its MACs or its
    /// (trusted) UUID, or whose recorded identity the catalog matches to it.
    pub fn clear_device(&mut self, catalog: &Catalog, device: &Device) -> Vec<Guard> {
        let uuids = self.uuids.clone();
        self.loop_guard.remove_where(|g| {
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
        Some(self.loop_guard.remove_where(|g| {
            let m = uuids.known_as(&g.machine);
            catalog.holds(collection, catalog.match_device(&m))
        }))
    }

    /// Clears every guard recorded with this MAC.
    pub fn clear_mac(&mut self, mac: &Mac) -> Vec<Guard> {
        self.loop_guard
            .remove_where(|g| g.machine.mac == Some(*mac))
    }

    /// Clears every guard recorded with this UUID. An operator naming a UUID means it, so
    /// this holds for placeholder and duplicate UUIDs too.
    pub fn clear_uuid(&mut self, uuid: &SmbiosUuid) -> Vec<Guard> {
        self.loop_guard
            .remove_where(|g| g.machine.uuid == Some(*uuid))
    }

    /// Every loop guard currently set.
    pub fn guards(&self) -> impl Iterator<Item = &Guard> {
        self.loop_guard.iter()
    }

    /// Records the outcome of an attempt, replacing the previous one of that deployment under
    /// that identity. An end (succeeded or failed) ends a run that was continuing after a
    /// restart too.
    pub fn record_attempt(
        &mut self,
        machine: impl Into<MachineIdentity>,
        deployment: DeploymentId,
        attempt: Attempt,
    ) {
        let machine = machine.into();
        if attempt.outcome != Outcome::Interrupted {
            self.resuming
                .remove_exact(&machine, |r| r.deployment == deployment);
        }
        self.attempts
            .remove_exact(&machine, |r| r.deployment == deployment);
        self.attempts.push(Recorded {
            machine,
            deployment,
            attempt,
        });
    }

    /// Records that a run of `deployment` restarts the machine in the middle of its task
    /// sequence: its next run continues at `step`, until an end is recorded
    /// ([`History::record_attempt`]).
    pub fn record_restart(
        &mut self,
        machine: impl Into<MachineIdentity>,
        deployment: DeploymentId,
        step: usize,
    ) {
        let machine = machine.into();
        self.resuming
            .remove_exact(&machine, |r| r.deployment == deployment);
        self.resuming.push(Resume {
            machine,
            deployment,
            step,
        });
    }

    /// The step a run of `deployment` on a machine matched to `device` continues at after a
    /// restart: one recorded under its own identity first, then under any identity of the same
    /// device.
    pub fn resume_for<'c>(
        &self,
        catalog: impl Into<CatalogView<'c>>,
        machine: &MachineIdentity,
        device: Option<&Device>,
        deployment: &DeploymentId,
    ) -> Option<usize> {
        let catalog = catalog.into();
        if self.resuming.live == 0 {
            return None;
        }
        let keys = self.keys(machine, device);
        let of = |r: &&Resume| r.deployment == *deployment;
        let own = self
            .resuming
            .candidates(&keys)
            .filter(of)
            .find(|r| self.uuids.same_machine(&r.machine, machine));
        own.or_else(|| {
            self.resuming
                .candidates(&keys)
                .filter(of)
                .find(|r| self.belongs(catalog, &r.machine, machine, device))
        })
        .map(|r| r.step)
    }

    /// Every run that continues after a restart.
    pub fn resuming(&self) -> impl Iterator<Item = &Resume> {
        self.resuming.iter()
    }

    /// The last attempt of a deployment recorded under exactly this identity.
    pub fn last_attempt(
        &self,
        machine: &MachineIdentity,
        deployment: &DeploymentId,
    ) -> Option<&Attempt> {
        let macs: Vec<Mac> = machine.mac.into_iter().collect();
        let uuids: Vec<SmbiosUuid> = machine.uuid.into_iter().collect();
        let bare = macs.is_empty() && uuids.is_empty();
        self.attempts
            .positions(&macs, &uuids, bare)
            .into_iter()
            .filter_map(|i| self.attempts.items[i].as_ref())
            .find(|r| r.machine == *machine && r.deployment == *deployment)
            .map(|r| &r.attempt)
    }

    /// The last attempt of a deployment on a machine matched to `device`: one recorded under
    /// its own identity first, then under any identity of the same device.
    pub fn last_attempt_for<'c>(
        &self,
        catalog: impl Into<CatalogView<'c>>,
        machine: &MachineIdentity,
        device: Option<&Device>,
        deployment: &DeploymentId,
    ) -> Option<Attempt> {
        let catalog = catalog.into();
        if self.attempts.live == 0 {
            return None;
        }
        let keys = self.keys(machine, device);
        let of = |r: &&Recorded| r.deployment == *deployment;
        let own = self
            .attempts
            .candidates(&keys)
            .filter(of)
            .find(|r| self.uuids.same_machine(&r.machine, machine));
        own.or_else(|| {
            self.attempts
                .candidates(&keys)
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

    /// The loop guard as it was found before the index: the first guard, in the order they
    /// were recorded, of the same machine, else of any identity of the same device.
    fn linear_guard_for(
        h: &History,
        catalog: &Catalog,
        machine: &MachineIdentity,
        device: Option<&Device>,
    ) -> Option<Guard> {
        let all: Vec<Guard> = h.guards().copied().collect();
        let p = h.uuid_policy();
        let belongs = |g: &Guard| {
            p.same_machine(&g.machine, machine)
                || device.is_some_and(|d| {
                    catalog
                        .match_device(&p.known_as(&g.machine))
                        .map(|x| &x.name)
                        == Some(&d.name)
                })
        };
        all.iter()
            .find(|g| p.same_machine(&g.machine, machine))
            .or_else(|| all.iter().find(|g| belongs(g)))
            .copied()
    }

    fn small_mac() -> impl proptest::strategy::Strategy<Value = Mac> {
        (1u8..5).prop_map(|n| Mac([2, 0, 0, 0, 0, n]))
    }

    fn small_uuid() -> impl proptest::strategy::Strategy<Value = SmbiosUuid> {
        (1u8..5).prop_map(|n| SmbiosUuid([n; 16]))
    }

    fn small_machine() -> impl proptest::strategy::Strategy<Value = MachineIdentity> {
        (
            proptest::option::of(small_mac()),
            proptest::option::of(small_uuid()),
        )
            .prop_map(|(mac, uuid)| MachineIdentity { mac, uuid })
    }

    use proptest::prelude::*;

    proptest! {
        #[test]
        fn indexed_guards_and_attempts_are_found_as_a_scan_finds_them(
            devices in proptest::collection::vec(
                (proptest::collection::vec(small_mac(), 0..3), proptest::option::of(small_uuid())),
                0..4,
            ),
            sightings in proptest::collection::vec((small_uuid(), small_mac(), 0i64..4), 0..6),
            records in proptest::collection::vec((small_machine(), 1u32..4, any::<bool>()), 0..12),
            cleared in proptest::option::of(small_machine()),
            machine in small_machine(),
        ) {
            let catalog = Catalog {
                devices: devices
                    .into_iter()
                    .enumerate()
                    .map(|(i, (macs, uuid))| Device {
                        name: format!("d{}", 3 - i),
                        macs,
                        uuid,
                        server: false,
                        site_system: false,
                    })
                    .collect(),
                ..Catalog::default()
            };
            let mut seen = crate::catalog::identity::Sightings::new();
            for (u, m, at) in sightings {
                seen.record(u, m, at);
            }
            let mut h = History::new().with_uuid_policy(UuidPolicy::new([], seen));
            for (m, n, guard) in &records {
                let dep = DeploymentId::new("LAB", *n).unwrap();
                if *guard {
                    h.record_pxe_start(*m, dep);
                } else {
                    h.record_attempt(*m, dep, Attempt { outcome: Outcome::Failed, at: *n as i64 });
                }
            }
            if let Some(m) = cleared {
                h.clear_machine(&m);
            }
            let indexed = crate::catalog::index::IndexedCatalog::new(catalog.clone());
            let known = h.uuid_policy().effective(&machine);
            let device = catalog.match_device(&known);
            let want = linear_guard_for(&h, &catalog, &known, device);
            prop_assert_eq!(h.guard_for(&catalog, &known, device), want);
            prop_assert_eq!(h.guard_for(&indexed, &known, device), want);
            // A JSON round trip keeps the order the guards were recorded in.
            let back: History = serde_json::from_str(&serde_json::to_string(&h).unwrap()).unwrap();
            prop_assert_eq!(back.guards().collect::<Vec<_>>(), h.guards().collect::<Vec<_>>());
            for n in 1u32..4 {
                let dep = DeploymentId::new("LAB", n).unwrap();
                let p = h.uuid_policy();
                let all: Vec<(MachineIdentity, Attempt)> = records
                    .iter()
                    .filter(|(_, k, guard)| !guard && *k == n)
                    .map(|(m, k, _)| (*m, Attempt { outcome: Outcome::Failed, at: *k as i64 }))
                    .collect();
                // The last record of an identity replaces its earlier ones and goes last.
                let mut latest: Vec<(MachineIdentity, Attempt)> = Vec::new();
                for (m, a) in all {
                    latest.retain(|(x, _)| *x != m);
                    latest.push((m, a));
                }
                let belongs = |m: &MachineIdentity| {
                    p.same_machine(m, &known)
                        || device.is_some_and(|d| {
                            catalog.match_device(&p.known_as(m)).map(|x| &x.name) == Some(&d.name)
                        })
                };
                let want = latest
                    .iter()
                    .find(|(m, _)| p.same_machine(m, &known))
                    .or_else(|| latest.iter().find(|(m, _)| belongs(m)))
                    .map(|(_, a)| *a);
                prop_assert_eq!(h.last_attempt_for(&indexed, &known, device, &dep), want);
                prop_assert_eq!(h.last_attempt_for(&catalog, &known, device, &dep), want);
            }
        }
    }
}
