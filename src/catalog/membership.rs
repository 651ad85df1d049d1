//! Who a booting machine is, and which collections hold it (docs/site-file.md).
//!
//! A machine is matched by SMBIOS UUID first, then by any MAC; a machine that matches no device
//! is an unknown computer. `All Systems` holds every known device, `Unknown Computers` every
//! machine that matches no device, and a custom collection the devices it names.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::model::{parse_smbios_uuid, text, Catalog, Collection, CollectionKind, Device};
use netdeploy_wire::{Mac, SmbiosUuid};

/// What a booting machine tells about itself: the MAC it boots from and, when the firmware
/// sends option 97 (or the boot environment reads it), its SMBIOS UUID.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub struct MachineIdentity {
    /// The MAC of the interface it boots from (the DHCP `chaddr`).
    #[serde(default, with = "text::opt_mac")]
    pub mac: Option<Mac>,
    /// Its SMBIOS UUID (DHCP option 97, or read by the boot environment).
    #[serde(default, with = "text::opt_uuid")]
    pub uuid: Option<SmbiosUuid>,
}

impl MachineIdentity {
    /// The key this machine's loop guard and run history are kept under (rule 7):
    /// the SMBIOS UUID, else the MAC; `None` when the machine sent neither.
    pub fn key(&self) -> Option<IdentityKey> {
        self.uuid
            .map(IdentityKey::Uuid)
            .or(self.mac.map(IdentityKey::Mac))
    }

    /// The whole identity as the history records it: `uuid:<uuid> mac:<mac>`, either part
    /// left out when the machine did not send it (see [`MachineIdentity::from_record`]).
    pub fn record(&self) -> String {
        let mut parts = Vec::new();
        if let Some(u) = self.uuid {
            parts.push(IdentityKey::Uuid(u).to_string());
        }
        if let Some(m) = self.mac {
            parts.push(IdentityKey::Mac(m).to_string());
        }
        parts.join(" ")
    }

    /// Reads [`MachineIdentity::record`]; a single `uuid:` or `mac:` key, as older versions
    /// recorded, reads as an identity with only that part.
    pub fn from_record(s: &str) -> Result<MachineIdentity, String> {
        let mut m = MachineIdentity::default();
        for part in s.split_whitespace() {
            match part.parse::<IdentityKey>()? {
                IdentityKey::Uuid(u) if m.uuid.is_none() => m.uuid = Some(u),
                IdentityKey::Mac(x) if m.mac.is_none() => m.mac = Some(x),
                _ => return Err(format!("{s:?} names a uuid or a mac twice")),
            }
        }
        if m == MachineIdentity::default() {
            return Err(format!("{s:?} names no uuid and no mac"));
        }
        Ok(m)
    }
}

impl From<IdentityKey> for MachineIdentity {
    fn from(k: IdentityKey) -> MachineIdentity {
        match k {
            IdentityKey::Uuid(u) => MachineIdentity {
                mac: None,
                uuid: Some(u),
            },
            IdentityKey::Mac(m) => MachineIdentity {
                mac: Some(m),
                uuid: None,
            },
        }
    }
}

/// The identity one piece of per-machine state is kept under: an SMBIOS UUID or a MAC.
///
/// Written as `uuid:4c4c4544-...` or `mac:52:54:00:12:34:56`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum IdentityKey {
    /// Kept under the SMBIOS UUID.
    Uuid(SmbiosUuid),
    /// Kept under the MAC, for a machine that sent no UUID.
    Mac(Mac),
}

impl fmt::Display for IdentityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdentityKey::Uuid(u) => write!(f, "uuid:{u}"),
            IdentityKey::Mac(m) => write!(f, "mac:{m}"),
        }
    }
}

impl FromStr for IdentityKey {
    type Err = String;

    fn from_str(s: &str) -> Result<IdentityKey, String> {
        if let Some(u) = s.strip_prefix("uuid:") {
            parse_smbios_uuid(u).map(IdentityKey::Uuid)
        } else if let Some(m) = s.strip_prefix("mac:") {
            m.parse().map(IdentityKey::Mac)
        } else {
            Err(format!("{s:?} is not uuid:<uuid> or mac:<mac>"))
        }
    }
}

impl TryFrom<String> for IdentityKey {
    type Error = String;
    fn try_from(s: String) -> Result<IdentityKey, String> {
        s.parse()
    }
}

impl From<IdentityKey> for String {
    fn from(k: IdentityKey) -> String {
        k.to_string()
    }
}

impl Device {
    /// Every identity key this device may be seen under: its UUID, then each MAC.
    pub fn identity_keys(&self) -> Vec<IdentityKey> {
        self.uuid
            .map(IdentityKey::Uuid)
            .into_iter()
            .chain(self.macs.iter().copied().map(IdentityKey::Mac))
            .collect()
    }
}

impl Catalog {
    /// The device a booting machine is: the one whose SMBIOS UUID equals the machine's, else
    /// one that has the machine's MAC; `None` for an unknown computer.
    ///
    /// Should several devices match (an inconsistent catalog), the one with the smallest name
    /// wins, so the answer does not depend on the order the devices are stored in.
    pub fn match_device(&self, machine: &MachineIdentity) -> Option<&Device> {
        let first = |hit: &dyn Fn(&Device) -> bool| {
            self.devices
                .iter()
                .filter(|d| hit(d))
                .min_by(|a, b| a.name.cmp(&b.name))
        };
        if let Some(uuid) = machine.uuid {
            if let Some(d) = first(&|d: &Device| d.uuid == Some(uuid)) {
                return Some(d);
            }
        }
        let mac = machine.mac?;
        first(&|d: &Device| d.macs.contains(&mac))
    }

    /// Whether a collection holds a machine matched to `device` (`None`: an unknown computer).
    pub fn holds(&self, collection: &Collection, device: Option<&Device>) -> bool {
        match (&collection.kind, device) {
            (CollectionKind::AllSystems, Some(_)) => true,
            (CollectionKind::UnknownComputers, None) => true,
            (CollectionKind::Custom { members }, Some(d)) => members.contains(&d.name),
            _ => false,
        }
    }

    /// The known devices a collection holds, sorted by name. `Unknown Computers` holds no
    /// known device, so it is empty.
    pub fn members(&self, collection: &Collection) -> Vec<&Device> {
        let mut out: Vec<&Device> = match &collection.kind {
            // One set of the names, not a scan of the member list per device.
            CollectionKind::Custom { members } => {
                let names: HashSet<&str> = members.iter().map(String::as_str).collect();
                self.devices
                    .iter()
                    .filter(|d| names.contains(d.name.as_str()))
                    .collect()
            }
            _ => self
                .devices
                .iter()
                .filter(|d| self.holds(collection, Some(d)))
                .collect(),
        };
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out.dedup_by(|a, b| a.name == b.name);
        out
    }

    /// The collections holding a machine matched to `device`, in catalog order.
    pub fn collections_holding(&self, device: Option<&Device>) -> Vec<&Collection> {
        self.collections
            .iter()
            .filter(|c| self.holds(c, device))
            .collect()
    }
}

/// The devices of a catalog by name, for code that asks for the members of many collections
/// (the deployment checks of a site file): a lookup costs the size of the collection, not of
/// the catalog. Answers as [`Catalog::members`] does, duplicate names included (the first
/// device of a name in catalog order).
pub struct DevicesByName<'a> {
    catalog: &'a Catalog,
    by_name: HashMap<&'a str, &'a Device>,
}

impl<'a> DevicesByName<'a> {
    pub fn new(catalog: &'a Catalog) -> DevicesByName<'a> {
        let mut by_name = HashMap::with_capacity(catalog.devices.len());
        for d in &catalog.devices {
            by_name.entry(d.name.as_str()).or_insert(d);
        }
        DevicesByName { catalog, by_name }
    }

    /// The device with this name.
    pub fn get(&self, name: &str) -> Option<&'a Device> {
        self.by_name.get(name).copied()
    }

    /// The known devices a collection holds, sorted by name, as [`Catalog::members`].
    pub fn members(&self, collection: &Collection) -> Vec<&'a Device> {
        match &collection.kind {
            CollectionKind::Custom { members } => {
                let mut out: Vec<&Device> = members.iter().filter_map(|m| self.get(m)).collect();
                out.sort_by(|a, b| a.name.cmp(&b.name));
                out.dedup_by(|a, b| a.name == b.name);
                out
            }
            _ => self.catalog.members(collection),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(s: &str) -> Mac {
        s.parse().unwrap()
    }

    fn uuid(n: u8) -> SmbiosUuid {
        SmbiosUuid([n; 16])
    }

    fn device(name: &str, macs: &[&str], u: Option<u8>) -> Device {
        Device {
            name: name.into(),
            macs: macs.iter().map(|m| mac(m)).collect(),
            uuid: u.map(uuid),
            server: false,
            site_system: false,
        }
    }

    #[test]
    fn devices_by_name_give_the_members_the_catalog_gives() {
        let custom = |id: &str, members: &[&str]| Collection {
            id: id.into(),
            name: id.into(),
            kind: CollectionKind::Custom {
                members: members.iter().map(|m| m.to_string()).collect(),
            },
        };
        let mut twin = device("b", &["52:54:00:00:00:09"], None);
        twin.server = true;
        let catalog = Catalog {
            devices: vec![
                device("c", &["52:54:00:00:00:03"], None),
                device("b", &["52:54:00:00:00:02"], Some(2)),
                device("a", &[], Some(1)),
                twin,
            ],
            collections: vec![
                custom("some", &["c", "a", "missing", "c"]),
                custom("twin", &["b"]),
                custom("none", &[]),
                Collection {
                    id: "all".into(),
                    name: "all".into(),
                    kind: CollectionKind::AllSystems,
                },
                Collection {
                    id: "unknown".into(),
                    name: "unknown".into(),
                    kind: CollectionKind::UnknownComputers,
                },
            ],
            ..Catalog::default()
        };
        let by_name = DevicesByName::new(&catalog);
        for c in &catalog.collections {
            assert_eq!(by_name.members(c), catalog.members(c), "{}", c.id);
        }
        let names = |c: &Collection| -> Vec<String> {
            by_name.members(c).iter().map(|d| d.name.clone()).collect()
        };
        assert_eq!(names(&catalog.collections[0]), ["a", "c"]);
        assert!(!by_name.members(&catalog.collections[1])[0].server);
        assert_eq!(names(&catalog.collections[3]), ["a", "b", "c"]);
        assert_eq!(by_name.get("b").unwrap().uuid, Some(uuid(2)));
        assert!(by_name.get("missing").is_none());
    }

    #[test]
    fn uuid_is_matched_before_mac() {
        let catalog = Catalog {
            devices: vec![
                device("by-mac", &["52:54:00:00:00:01"], None),
                device("by-uuid", &["52:54:00:00:00:02"], Some(7)),
            ],
            ..Catalog::default()
        };
        let m = MachineIdentity {
            mac: Some(mac("52:54:00:00:00:01")),
            uuid: Some(uuid(7)),
        };
        assert_eq!(catalog.match_device(&m).unwrap().name, "by-uuid");
        let m = MachineIdentity {
            mac: Some(mac("52:54:00:00:00:01")),
            uuid: Some(uuid(9)),
        };
        assert_eq!(catalog.match_device(&m).unwrap().name, "by-mac");
        assert!(catalog.match_device(&MachineIdentity::default()).is_none());
    }

    #[test]
    fn builtin_collections_split_known_and_unknown() {
        let all = Collection {
            id: "SMS00001".into(),
            name: "All Systems".into(),
            kind: CollectionKind::AllSystems,
        };
        let unknown = Collection {
            id: "SMS000US".into(),
            name: "Unknown Computers".into(),
            kind: CollectionKind::UnknownComputers,
        };
        let custom = Collection {
            id: "LAB00001".into(),
            name: "lab".into(),
            kind: CollectionKind::Custom {
                members: vec!["a".into(), "ghost".into()],
            },
        };
        let catalog = Catalog {
            devices: vec![device("a", &[], Some(1)), device("b", &[], Some(2))],
            collections: vec![all.clone(), unknown.clone(), custom.clone()],
            ..Catalog::default()
        };
        let a = catalog.device("a");
        assert!(catalog.holds(&all, a) && !catalog.holds(&unknown, a));
        assert!(catalog.holds(&unknown, None) && !catalog.holds(&all, None));
        assert!(catalog.holds(&custom, a) && !catalog.holds(&custom, catalog.device("b")));
        assert_eq!(catalog.members(&all).len(), 2);
        assert_eq!(catalog.members(&unknown).len(), 0);
        assert_eq!(catalog.members(&custom).len(), 1);
    }

    #[test]
    fn identity_keys_prefer_uuid_and_round_trip_as_text() {
        let m = MachineIdentity {
            mac: Some(mac("52:54:00:00:00:01")),
            uuid: Some(uuid(0xab)),
        };
        let k = m.key().unwrap();
        assert!(matches!(k, IdentityKey::Uuid(_)));
        assert_eq!(k.to_string().parse::<IdentityKey>().unwrap(), k);
        let m = MachineIdentity { uuid: None, ..m };
        let k = m.key().unwrap();
        assert_eq!(k.to_string(), "mac:52:54:00:00:00:01");
        assert_eq!(k.to_string().parse::<IdentityKey>().unwrap(), k);
    }

    #[test]
    fn whole_identity_records_round_trip_and_old_single_keys_still_read() {
        let both = MachineIdentity {
            mac: Some(mac("52:54:00:00:00:01")),
            uuid: Some(uuid(0xab)),
        };
        let text = both.record();
        assert_eq!(
            text,
            "uuid:abababab-abab-abab-abab-abababababab mac:52:54:00:00:00:01"
        );
        assert_eq!(MachineIdentity::from_record(&text).unwrap(), both);
        let old = MachineIdentity::from_record("uuid:abababab-abab-abab-abab-abababababab");
        assert_eq!(old.unwrap(), MachineIdentity { mac: None, ..both });
        let old = MachineIdentity::from_record("mac:52:54:00:00:00:01").unwrap();
        assert_eq!(old, MachineIdentity { uuid: None, ..both });
        assert!(MachineIdentity::from_record("").is_err());
        assert!(
            MachineIdentity::from_record("mac:52:54:00:00:00:01 mac:52:54:00:00:00:02").is_err()
        );
    }
}
