//! Who this machine is, as the server matches devices (docs/site-file.md): the SMBIOS UUID from
//! `/sys/class/dmi/id/product_uuid` and the MAC addresses of `/sys/class/net/*/address`.

use std::path::Path;

use netdeploy_wire::{Mac, SmbiosUuid};

/// The machine's identity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// `None` when missing or a placeholder (all zeros, all ones).
    pub uuid: Option<SmbiosUuid>,
    /// `(interface, mac)` sorted by interface name, without `lo` and all-zero addresses.
    pub macs: Vec<(String, Mac)>,
}

impl Identity {
    /// The MAC of the first interface by name.
    pub fn primary_mac(&self) -> Option<Mac> {
        self.macs.first().map(|(_, m)| *m)
    }
}

/// Reads the identity from the sysfs under `root` (`/` in the boot environment). Missing
/// files mean missing values, never an error: a machine without DMI still boots.
pub fn read(root: &Path) -> Identity {
    let uuid = std::fs::read_to_string(root.join("sys/class/dmi/id/product_uuid"))
        .ok()
        .and_then(|s| normalize_uuid(&s));
    let mut macs = Vec::new();
    if let Ok(dir) = std::fs::read_dir(root.join("sys/class/net")) {
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == "lo" {
                continue;
            }
            if let Some(mac) = std::fs::read_to_string(entry.path().join("address"))
                .ok()
                .and_then(|s| normalize_mac(&s))
            {
                macs.push((name, mac));
            }
        }
    }
    macs.sort();
    Identity { uuid, macs }
}

/// A SMBIOS UUID, or `None` for an empty value or a placeholder that many machines share
/// (all zeros, all `f`).
pub fn normalize_uuid(s: &str) -> Option<SmbiosUuid> {
    s.trim()
        .parse::<SmbiosUuid>()
        .ok()
        .filter(|u| !u.is_placeholder())
}

/// A MAC address, or `None` for something else or all zeros.
pub fn normalize_mac(s: &str) -> Option<Mac> {
    s.trim().parse::<Mac>().ok().filter(|m| m.0 != [0; 6])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholder_uuids_are_no_identity() {
        assert_eq!(
            normalize_uuid("4C4C4544-0042-3510-8052-B4C04F564433\n").map(|u| u.to_string()),
            Some("4c4c4544-0042-3510-8052-b4c04f564433".into())
        );
        assert_eq!(normalize_uuid("00000000-0000-0000-0000-000000000000"), None);
        assert_eq!(normalize_uuid("FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF"), None);
        assert_eq!(normalize_uuid("Not Settable"), None);
        assert_eq!(normalize_uuid(""), None);
    }

    #[test]
    fn macs_are_lowercase_and_never_zero() {
        assert_eq!(
            normalize_mac("52:54:00:AB:CD:EF\n").map(|m| m.to_string()),
            Some("52:54:00:ab:cd:ef".into())
        );
        assert_eq!(
            normalize_mac("52-54-00-AB-CD-EF").map(|m| m.to_string()),
            Some("52:54:00:ab:cd:ef".into())
        );
        assert_eq!(normalize_mac("00:00:00:00:00:00"), None);
        assert_eq!(normalize_mac("52:54:00:ab:cd"), None);
        assert_eq!(
            normalize_mac("00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00"),
            None
        );
    }

    #[test]
    fn reads_the_sysfs_and_sorts_interfaces_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let nic = |name: &str, mac: &str| {
            let d = root.join("sys/class/net").join(name);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("address"), mac).unwrap();
        };
        nic("lo", "00:00:00:00:00:00\n");
        nic("ens4", "52:54:00:00:00:04\n");
        nic("ens3", "52:54:00:00:00:03\n");
        nic("sit0", "00:00:00:00\n");
        let dmi = root.join("sys/class/dmi/id");
        std::fs::create_dir_all(&dmi).unwrap();
        std::fs::write(
            dmi.join("product_uuid"),
            "00000000-0000-0000-0000-000000000000\n",
        )
        .unwrap();
        let id = read(root);
        assert_eq!(id.uuid, None);
        assert_eq!(
            id.primary_mac().map(|m| m.to_string()),
            Some("52:54:00:00:00:03".into())
        );
        assert_eq!(id.macs.len(), 2);
        assert_eq!(read(&root.join("nothing")), Identity::default());
    }
}
