//! Who this machine is, as the server matches devices (docs/site-file.md): the SMBIOS UUID from
//! `/sys/class/dmi/id/product_uuid` and the MAC addresses of `/sys/class/net/*/address`; in
//! Windows PE from the firmware's SMBIOS table ([`uuid_from_raw_smbios`]) and the adapters
//! (`crate::platform`).

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

/// The system UUID of a raw SMBIOS table as Windows returns it
/// (`GetSystemFirmwareTable('RSMB')`: a `RawSMBIOSData` header of 8 bytes, the major and minor
/// version in bytes 1 and 2, then the structures). The UUID is in the System Information
/// structure (type 1) at offset 8. From SMBIOS 2.6 on, its first three fields are stored
/// little-endian, as option 97 carries them; they are swapped here as Linux does for
/// `product_uuid`, so both give the same text. `None` for a table without it or a placeholder.
pub fn uuid_from_raw_smbios(raw: &[u8]) -> Option<SmbiosUuid> {
    let (major, minor) = (*raw.get(1)?, *raw.get(2)?);
    let len = u32::from_le_bytes(raw.get(4..8)?.try_into().ok()?) as usize;
    let table = raw.get(8..8 + len).unwrap_or(&raw[8.min(raw.len())..]);
    let mut at = 0;
    while at + 4 <= table.len() {
        let (kind, formatted) = (table[at], table[at + 1] as usize);
        if formatted < 4 || at + formatted > table.len() {
            return None;
        }
        if kind == 1 && formatted >= 0x18 {
            let mut g: [u8; 16] = table[at + 8..at + 24].try_into().ok()?;
            if (major, minor) >= (2, 6) {
                g[0..4].reverse();
                g[4..6].reverse();
                g[6..8].reverse();
            }
            return Some(SmbiosUuid(g)).filter(|u| !u.is_placeholder());
        }
        if kind == 127 {
            return None;
        }
        // The strings after the formatted area end with two NULs.
        let strings = &table[at + formatted..];
        let end = strings.windows(2).position(|w| w == [0, 0])?;
        at += formatted + end + 2;
    }
    None
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

    /// A raw table as `GetSystemFirmwareTable('RSMB')` returns it: a BIOS structure with
    /// strings, then System Information with the UUID bytes as the firmware stores them.
    fn raw_smbios(major: u8, minor: u8, stored: [u8; 16]) -> Vec<u8> {
        let mut t = vec![0u8, 0x12, 0, 0];
        t.resize(0x12, 0);
        t.extend_from_slice(b"Vendor\0Version\0\0");
        let mut sys = vec![1u8, 0x1b, 1, 0, 1, 2, 3, 0];
        sys.extend_from_slice(&stored);
        sys.resize(0x1b, 0);
        t.extend_from_slice(&sys);
        t.extend_from_slice(b"Maker\0\0");
        t.extend_from_slice(&[127, 4, 2, 0, 0, 0]);
        let mut raw = vec![0, major, minor, 0];
        raw.extend_from_slice(&(t.len() as u32).to_le_bytes());
        raw.extend_from_slice(&t);
        raw
    }

    #[test]
    fn the_windows_firmware_table_gives_the_uuid_option_97_and_linux_give() {
        // 4c4c4544-0042-3510-8052-b4c04f564433 as SMBIOS 2.6+ stores it.
        let stored = [
            0x44, 0x45, 0x4c, 0x4c, 0x42, 0x00, 0x10, 0x35, 0x80, 0x52, 0xb4, 0xc0, 0x4f, 0x56,
            0x44, 0x33,
        ];
        let uuid = uuid_from_raw_smbios(&raw_smbios(3, 4, stored)).unwrap();
        assert_eq!(uuid.to_string(), "4c4c4544-0042-3510-8052-b4c04f564433");
        let option97: Vec<u8> = [0].into_iter().chain(stored).collect();
        assert_eq!(SmbiosUuid::from_option97(&option97), Some(uuid));
        // Before 2.6 the bytes were stored in text order.
        assert_eq!(
            uuid_from_raw_smbios(&raw_smbios(2, 4, stored))
                .unwrap()
                .to_string(),
            "44454c4c-4200-1035-8052-b4c04f564433"
        );
        assert_eq!(uuid_from_raw_smbios(&raw_smbios(3, 0, [0; 16])), None);
        assert_eq!(uuid_from_raw_smbios(&raw_smbios(3, 0, [0xff; 16])), None);
        // Cut anywhere, the table gives the UUID or nothing, never a panic.
        let raw = raw_smbios(3, 4, stored);
        for cut in 0..raw.len() {
            let got = uuid_from_raw_smbios(&raw[..cut]);
            assert!(got.is_none() || got == Some(uuid));
        }
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
