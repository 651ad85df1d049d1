//! Which SMBIOS UUIDs tell machines apart (docs/identity.md, the identity of a machine).
//!
//! Many boards share one UUID: all zeros, all FF, or a vendor placeholder. Such a UUID must never
//! merge two machines into one, so a UUID is not used to tell machines apart when it is
//! - a well-known placeholder ([`PLACEHOLDER_UUIDS`]),
//! - listed in the site's `ignored_uuids` (as Configuration Manager's "duplicate hardware
//!   identifiers"), or
//! - seen by the server with more than one MAC ([`Sightings`]).
//!
//! Such a machine is known by its MAC alone. Everything here is a plain value: the store keeps
//! the sightings, the boot path records them, the decision reads [`UuidPolicy`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use super::membership::MachineIdentity;
use netdeploy_wire::{Mac, SmbiosUuid};

/// UUIDs that firmware sends when the board has none of its own: all zeros, all FF, and the
/// placeholder of many boards whose SMBIOS tables were never filled in.
pub const PLACEHOLDER_UUIDS: [SmbiosUuid; 3] = [
    SmbiosUuid([0; 16]),
    SmbiosUuid([0xff; 16]),
    SmbiosUuid([
        0x03, 0x00, 0x02, 0x00, 0x04, 0x00, 0x05, 0x00, 0x00, 0x06, 0x00, 0x07, 0x00, 0x08, 0x00,
        0x09,
    ]),
];

/// The MACs one SMBIOS UUID was seen with, and when each was last seen (Unix seconds), as the
/// store keeps them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sighting {
    /// The UUID, as text.
    pub uuid: String,
    /// MAC (as text) to the last time it was seen with this UUID.
    pub macs: BTreeMap<String, i64>,
}

/// Every (UUID, MAC) pair the server has seen in a boot request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sightings {
    by_uuid: BTreeMap<SmbiosUuid, BTreeMap<Mac, i64>>,
    /// The same pairs by MAC, so a MAC's UUIDs are found without reading every UUID's.
    by_mac: BTreeMap<Mac, BTreeMap<SmbiosUuid, i64>>,
}

impl Sightings {
    /// No sightings.
    pub fn new() -> Sightings {
        Sightings::default()
    }

    /// Notes that a machine sent this MAC and UUID together at `at`. Returns true when the
    /// pair was new.
    pub fn record(&mut self, uuid: SmbiosUuid, mac: Mac, at: i64) -> bool {
        let macs = self.by_uuid.entry(uuid).or_default();
        let new = !macs.contains_key(&mac);
        let last = macs.entry(mac).or_insert(at);
        *last = (*last).max(at);
        let last = *last;
        self.by_mac.entry(mac).or_default().insert(uuid, last);
        new
    }

    /// When this UUID was last seen with this MAC.
    pub fn last_seen(&self, uuid: &SmbiosUuid, mac: &Mac) -> Option<i64> {
        self.by_uuid.get(uuid)?.get(mac).copied()
    }

    /// The MACs a UUID was seen with, in order.
    pub fn macs_of(&self, uuid: &SmbiosUuid) -> Vec<Mac> {
        self.by_uuid
            .get(uuid)
            .map(|m| m.keys().copied().collect())
            .unwrap_or_default()
    }

    /// The UUID a MAC was last seen with, and when. On a tie the smaller UUID wins, so the
    /// answer does not depend on storage order.
    pub fn last_uuid_of(&self, mac: &Mac) -> Option<(SmbiosUuid, i64)> {
        self.by_mac
            .get(mac)?
            .iter()
            .map(|(u, at)| (*u, *at))
            .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
    }

    /// How many MACs a UUID was seen with.
    pub fn mac_count(&self, uuid: &SmbiosUuid) -> usize {
        self.by_uuid.get(uuid).map_or(0, BTreeMap::len)
    }

    /// The first `n` MACs a UUID was seen with, in order.
    pub fn macs_of_first(&self, uuid: &SmbiosUuid, n: usize) -> Vec<Mac> {
        self.by_uuid
            .get(uuid)
            .map(|m| m.keys().take(n).copied().collect())
            .unwrap_or_default()
    }

    /// The UUIDs a MAC was seen with, in order.
    pub fn uuids_of(&self, mac: &Mac) -> Vec<SmbiosUuid> {
        self.by_mac
            .get(mac)
            .map(|u| u.keys().copied().collect())
            .unwrap_or_default()
    }

    /// The sightings of one UUID, as the store keeps them.
    pub fn stored(&self, uuid: &SmbiosUuid) -> Sighting {
        Sighting {
            uuid: uuid.to_string(),
            macs: self
                .by_uuid
                .get(uuid)
                .map(|m| m.iter().map(|(mac, at)| (mac.to_string(), *at)).collect())
                .unwrap_or_default(),
        }
    }

    /// Adds what the store kept for one UUID; entries that do not parse are skipped.
    pub fn load(&mut self, stored: &Sighting) {
        let Ok(uuid) = super::parse_smbios_uuid(&stored.uuid) else {
            return;
        };
        for (mac, at) in &stored.macs {
            if let Ok(mac) = mac.parse() {
                self.record(uuid, mac, *at);
            }
        }
    }
}

/// Why a UUID is not used to tell machines apart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UuidDistrust {
    /// A well-known placeholder ([`PLACEHOLDER_UUIDS`]).
    Placeholder,
    /// Listed in the site's `ignored_uuids`.
    Ignored,
    /// Seen with more than one MAC.
    Duplicate {
        /// The MACs it was seen with, as text: the first [`UuidDistrust::MACS_SHOWN`].
        macs: Vec<String>,
        /// How many more MACs it was seen with.
        #[serde(default, skip_serializing_if = "is_zero")]
        more: usize,
    },
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl UuidDistrust {
    /// How many of a duplicate UUID's MACs are named: a UUID a whole batch of machines
    /// shares is seen with thousands, and every decision for them says why.
    pub const MACS_SHOWN: usize = 8;
}

impl fmt::Display for UuidDistrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UuidDistrust::Placeholder => f.write_str("a well-known placeholder UUID"),
            UuidDistrust::Ignored => f.write_str("listed in the site's ignored_uuids"),
            UuidDistrust::Duplicate { macs, more: 0 } => {
                write!(f, "a duplicate UUID, seen with MACs {}", macs.join(", "))
            }
            UuidDistrust::Duplicate { macs, more } => write!(
                f,
                "a duplicate UUID, seen with MACs {} and {more} more",
                macs.join(", ")
            ),
        }
    }
}

/// Which UUIDs tell machines apart: the placeholders, the site's ignore list and the sightings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UuidPolicy {
    ignored: BTreeSet<SmbiosUuid>,
    sightings: Sightings,
}

impl UuidPolicy {
    /// A policy from the site's ignore list and what the server has seen.
    pub fn new(ignored: impl IntoIterator<Item = SmbiosUuid>, sightings: Sightings) -> UuidPolicy {
        UuidPolicy {
            ignored: ignored.into_iter().collect(),
            sightings,
        }
    }

    /// What the server has seen.
    pub fn sightings(&self) -> &Sightings {
        &self.sightings
    }

    /// Notes a sighting (see [`Sightings::record`]); true when the pair was new.
    pub fn record_sighting(&mut self, uuid: SmbiosUuid, mac: Mac, at: i64) -> bool {
        self.sightings.record(uuid, mac, at)
    }

    /// Why `uuid` does not tell machines apart, or `None` when it does.
    pub fn distrust(&self, uuid: &SmbiosUuid) -> Option<UuidDistrust> {
        if PLACEHOLDER_UUIDS.contains(uuid) {
            return Some(UuidDistrust::Placeholder);
        }
        if self.ignored.contains(uuid) {
            return Some(UuidDistrust::Ignored);
        }
        let seen = self.sightings.mac_count(uuid);
        if seen > 1 {
            let shown = self.sightings.macs_of_first(uuid, UuidDistrust::MACS_SHOWN);
            return Some(UuidDistrust::Duplicate {
                more: seen - shown.len(),
                macs: shown.iter().map(Mac::to_string).collect(),
            });
        }
        None
    }

    /// Whether `uuid` tells machines apart.
    pub fn trusts(&self, uuid: &SmbiosUuid) -> bool {
        // What `distrust` says, without naming the MACs.
        !PLACEHOLDER_UUIDS.contains(uuid)
            && !self.ignored.contains(uuid)
            && self.sightings.mac_count(uuid) <= 1
    }

    /// The identity a machine is known by: its UUID is dropped when it does not tell machines
    /// apart, so the machine is known by its MAC alone.
    pub fn effective(&self, machine: &MachineIdentity) -> MachineIdentity {
        MachineIdentity {
            mac: machine.mac,
            uuid: machine.uuid.filter(|u| self.trusts(u)),
        }
    }

    /// A recorded identity completed with what the server saw, for records that hold one part
    /// only (as older versions recorded them): a trusted UUID gets the one MAC it was seen
    /// with, a MAC the trusted UUID it was last seen with.
    pub fn complete(&self, recorded: &MachineIdentity) -> MachineIdentity {
        let mut m = *recorded;
        match (m.mac, m.uuid) {
            (None, Some(u)) if self.trusts(&u) => {
                if let [mac] = self.sightings.macs_of(&u).as_slice() {
                    m.mac = Some(*mac);
                }
            }
            (Some(mac), None) => {
                m.uuid = self
                    .sightings
                    .last_uuid_of(&mac)
                    .map(|(u, _)| u)
                    .filter(|u| self.trusts(u));
            }
            _ => {}
        }
        m
    }

    /// The identity a recorded one stands for: its untrusted UUID left out, then completed
    /// with what the server saw ([`UuidPolicy::complete`]).
    pub fn known_as(&self, recorded: &MachineIdentity) -> MachineIdentity {
        self.complete(&self.effective(recorded))
    }

    /// Whether two recorded identities are the same machine: the same trusted UUID, or, when
    /// either lacks a trusted UUID, the same MAC. Two different trusted UUIDs are two machines
    /// even if they share a MAC (a network card moved to another machine).
    pub fn same_machine(&self, a: &MachineIdentity, b: &MachineIdentity) -> bool {
        let (a, b) = (self.known_as(a), self.known_as(b));
        match (a.uuid, b.uuid) {
            (Some(x), Some(y)) => x == y,
            _ => a.mac.is_some() && a.mac == b.mac,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn mac(n: u8) -> Mac {
        Mac([0x52, 0x54, 0, 0, 0, n])
    }

    fn uuid(n: u8) -> SmbiosUuid {
        SmbiosUuid([n; 16])
    }

    fn machine(m: Option<u8>, u: Option<u8>) -> MachineIdentity {
        MachineIdentity {
            mac: m.map(mac),
            uuid: u.map(uuid),
        }
    }

    #[test]
    fn placeholders_are_ignored_by_default() {
        let p = UuidPolicy::default();
        let vendor =
            crate::catalog::parse_smbios_uuid("03000200-0400-0500-0006-000700080009").unwrap();
        for u in [SmbiosUuid([0; 16]), SmbiosUuid([0xff; 16]), vendor] {
            assert_eq!(p.distrust(&u), Some(UuidDistrust::Placeholder), "{u}");
        }
        assert!(p.trusts(&uuid(7)));
    }

    #[test]
    fn a_uuid_listed_by_the_site_is_ignored() {
        let p = UuidPolicy::new([uuid(7)], Sightings::new());
        assert_eq!(p.distrust(&uuid(7)), Some(UuidDistrust::Ignored));
        assert_eq!(
            p.effective(&machine(Some(1), Some(7))),
            machine(Some(1), None)
        );
    }

    #[test]
    fn a_uuid_seen_with_a_second_mac_becomes_a_duplicate() {
        let mut s = Sightings::new();
        assert!(s.record(uuid(7), mac(1), 10));
        assert!(!s.record(uuid(7), mac(1), 20));
        assert_eq!(s.last_seen(&uuid(7), &mac(1)), Some(20));
        assert!(UuidPolicy::new([], s.clone()).trusts(&uuid(7)));
        assert!(s.record(uuid(7), mac(2), 30));
        let p = UuidPolicy::new([], s);
        assert_eq!(
            p.distrust(&uuid(7)),
            Some(UuidDistrust::Duplicate {
                macs: vec![mac(1).to_string(), mac(2).to_string()],
                more: 0,
            })
        );
        // Two machines sharing the UUID stay two machines, each known by its MAC.
        assert!(!p.same_machine(&machine(Some(1), Some(7)), &machine(Some(2), Some(7))));
        assert!(p.same_machine(&machine(Some(1), Some(7)), &machine(Some(1), None)));
    }

    #[test]
    fn last_uuid_of_a_mac_is_the_latest_sighting() {
        let mut s = Sightings::new();
        s.record(uuid(7), mac(1), 10);
        s.record(uuid(8), mac(1), 30);
        s.record(uuid(9), mac(2), 40);
        assert_eq!(s.last_uuid_of(&mac(1)), Some((uuid(8), 30)));
        assert_eq!(s.last_uuid_of(&mac(3)), None);
    }

    #[test]
    fn sightings_round_trip_through_their_stored_form() {
        let mut s = Sightings::new();
        s.record(uuid(7), mac(1), 10);
        s.record(uuid(7), mac(2), 11);
        let mut back = Sightings::new();
        back.load(&s.stored(&uuid(7)));
        assert_eq!(back, s);
    }

    fn arb_machine() -> impl Strategy<Value = MachineIdentity> {
        (
            proptest::option::of(1u8..4),
            proptest::option::of(prop_oneof![Just(0u8), Just(0xff), 5u8..8]),
        )
            .prop_map(|(m, u)| machine(m, u))
    }

    proptest! {
        /// Two machines with different MACs are never merged by a UUID they both send, however
        /// the server came to see them.
        #[test]
        fn machines_with_different_macs_sharing_a_uuid_are_never_merged(
            seen in proptest::collection::vec((5u8..8, 1u8..4, 0i64..100), 0..8),
            ignored in proptest::collection::vec(5u8..8, 0..2),
            a in arb_machine(),
            b in arb_machine(),
        ) {
            let mut s = Sightings::new();
            for (u, m, at) in seen {
                s.record(uuid(u), mac(m), at);
            }
            // The server records every pair it decides for.
            for x in [&a, &b] {
                if let (Some(m), Some(u)) = (x.mac, x.uuid) {
                    s.record(u, m, 100);
                }
            }
            let p = UuidPolicy::new(ignored.into_iter().map(uuid), s);
            if a.mac.is_some() && b.mac.is_some() && a.mac != b.mac {
                prop_assert!(!p.same_machine(&a, &b));
            }
            prop_assert_eq!(p.same_machine(&a, &b), p.same_machine(&b, &a));
            if a.mac.is_some() || a.uuid.is_some_and(|u| p.trusts(&u)) {
                prop_assert!(p.same_machine(&a, &a));
            }
        }
    }
}
