//! The address leases of `dhcp` mode: a pure table (time is passed in) plus its file format.
//!
//! The table lives in memory; `dhcp::server` writes it to `<data_dir>/leases.json` after every
//! change through [`crate::dhcp::leases::save`], which writes a temporary file, syncs it and
//! renames it over the old one, so a crash leaves either the old or the new table, never half
//! of one. A client that comes back (after a restart of netdeploy too) gets its address again.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::packet::Mac;

/// Seconds an offered (not yet requested) address stays reserved for its client.
pub const OFFER_HOLD_SECS: u64 = 60;

/// One client's address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub ip: Ipv4Addr,
    /// Unix time (seconds) at which the lease ends.
    pub expires: u64,
    /// False while only offered.
    pub bound: bool,
}

/// Why a REQUEST cannot be acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{0} is outside the lease range")]
    OutsidePool(Ipv4Addr),
    #[error("{ip} is leased to {holder}")]
    Taken { ip: Ipv4Addr, holder: Mac },
}

/// Leases by client MAC, over the range `first..=last`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseTable {
    first: u32,
    last: u32,
    leases: BTreeMap<Mac, Lease>,
}

#[derive(Serialize, Deserialize)]
struct FileEntry {
    mac: String,
    #[serde(flatten)]
    lease: Lease,
}

impl LeaseTable {
    /// An empty table over an address range.
    pub fn new(first: Ipv4Addr, last: Ipv4Addr) -> LeaseTable {
        LeaseTable {
            first: first.into(),
            last: last.into(),
            leases: BTreeMap::new(),
        }
    }

    /// The lease of a client, expired or not.
    pub fn get(&self, mac: &Mac) -> Option<&Lease> {
        self.leases.get(mac)
    }

    /// Number of leases held (expired ones included until their address is reused).
    pub fn len(&self) -> usize {
        self.leases.len()
    }

    /// True when no lease is held.
    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }

    fn in_pool(&self, ip: Ipv4Addr) -> bool {
        (self.first..=self.last).contains(&u32::from(ip))
    }

    fn holder(&self, ip: Ipv4Addr, now: u64) -> Option<Mac> {
        self.leases
            .iter()
            .find(|(_, l)| l.ip == ip && l.expires > now)
            .map(|(m, _)| *m)
    }

    /// Chooses an address for a DISCOVER and holds it for [`OFFER_HOLD_SECS`]: the client's own
    /// lease (even expired, if nobody took its address), else the address it asks for, else the
    /// lowest free one. `None` when the range is exhausted.
    pub fn offer(&mut self, mac: Mac, requested: Option<Ipv4Addr>, now: u64) -> Option<Ipv4Addr> {
        let own = self
            .leases
            .get(&mac)
            .map(|l| l.ip)
            .filter(|ip| self.holder(*ip, now).is_none_or(|h| h == mac));
        let wanted = requested.filter(|ip| self.in_pool(*ip) && self.holder(*ip, now).is_none());
        let ip = own.or(wanted).or_else(|| {
            (self.first..=self.last)
                .map(Ipv4Addr::from)
                .find(|ip| self.holder(*ip, now).is_none() && !self.reserved_by_other(*ip, mac))
                .or_else(|| {
                    // Every address has a live or remembered lease: reuse an expired one.
                    (self.first..=self.last)
                        .map(Ipv4Addr::from)
                        .find(|ip| self.holder(*ip, now).is_none())
                })
        })?;
        let entry = self.leases.entry(mac).or_insert(Lease {
            ip,
            expires: 0,
            bound: false,
        });
        if entry.ip != ip || !entry.bound || entry.expires < now + OFFER_HOLD_SECS {
            let bound = entry.bound && entry.ip == ip && entry.expires > now;
            *entry = Lease {
                ip,
                expires: if bound {
                    entry.expires
                } else {
                    now + OFFER_HOLD_SECS
                },
                bound,
            };
        }
        self.forget_others_of(ip, mac);
        Some(ip)
    }

    /// An address remembered (expired) for another client is kept for it while free ones last.
    fn reserved_by_other(&self, ip: Ipv4Addr, mac: Mac) -> bool {
        self.leases.iter().any(|(m, l)| l.ip == ip && *m != mac)
    }

    fn forget_others_of(&mut self, ip: Ipv4Addr, mac: Mac) {
        self.leases.retain(|m, l| l.ip != ip || *m == mac);
    }

    /// Binds `ip` to `mac` for `lease_secs` (a REQUEST), or says why not.
    pub fn bind(
        &mut self,
        mac: Mac,
        ip: Ipv4Addr,
        now: u64,
        lease_secs: u64,
    ) -> Result<&Lease, Refusal> {
        if !self.in_pool(ip) {
            return Err(Refusal::OutsidePool(ip));
        }
        if let Some(holder) = self.holder(ip, now).filter(|h| *h != mac) {
            return Err(Refusal::Taken { ip, holder });
        }
        self.forget_others_of(ip, mac);
        self.leases.insert(
            mac,
            Lease {
                ip,
                expires: now + lease_secs,
                bound: true,
            },
        );
        Ok(&self.leases[&mac])
    }

    /// Ends a client's lease (RELEASE, DECLINE, or a REQUEST for another server's offer).
    /// Returns whether anything changed.
    pub fn release(&mut self, mac: &Mac) -> bool {
        self.leases.remove(mac).is_some()
    }

    /// The table as the JSON text of the lease file.
    pub fn to_json(&self) -> String {
        let entries: Vec<FileEntry> = self
            .leases
            .iter()
            .map(|(m, l)| FileEntry {
                mac: m.to_string(),
                lease: l.clone(),
            })
            .collect();
        serde_json::to_string_pretty(&entries).expect("lease entries serialize")
    }

    /// Reads a lease file's JSON; entries outside the current range are dropped. A file this
    /// server wrote never holds two leases on one address or two for one client; one that does
    /// (edited by hand, or copied together) keeps of each pair the lease that ends last, and
    /// every lease refused is described in the returned warnings. Its client is refused the
    /// address at its next REQUEST and gets another one.
    pub fn from_json(
        first: Ipv4Addr,
        last: Ipv4Addr,
        text: &str,
    ) -> Result<(LeaseTable, Vec<String>), String> {
        let mut entries: Vec<FileEntry> = serde_json::from_str(text).map_err(|e| e.to_string())?;
        // Latest end first, so the lease kept of a pair is the one that ends last.
        entries.sort_by_key(|e| std::cmp::Reverse(e.lease.expires));
        let mut t = LeaseTable::new(first, last);
        let mut warnings = Vec::new();
        for e in entries {
            let mac: Mac = e.mac.parse()?;
            if !t.in_pool(e.lease.ip) {
                continue;
            }
            if let Some(kept) = t.leases.get(&mac) {
                warnings.push(format!(
                    "two leases for {mac}: {} refused, {} kept (it ends later)",
                    e.lease.ip, kept.ip
                ));
                continue;
            }
            if let Some((holder, _)) = t.leases.iter().find(|(_, l)| l.ip == e.lease.ip) {
                warnings.push(format!(
                    "two leases on {}: the one of {mac} refused, the one of {holder} kept (it ends later)",
                    e.lease.ip
                ));
                continue;
            }
            t.leases.insert(mac, e.lease);
        }
        Ok((t, warnings))
    }
}

/// Writes `text` to `path` atomically: temporary file, fsync, rename, fsync of the directory.
pub fn save(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension("json.tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(n: u8) -> Mac {
        Mac([0x52, 0x54, 0, 0, 0, n])
    }
    fn ip(n: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, 0, n)
    }
    fn table() -> LeaseTable {
        LeaseTable::new(ip(100), ip(102))
    }

    #[test]
    fn a_client_gets_its_address_back() {
        let mut t = table();
        let a = t.offer(mac(1), None, 1000).unwrap();
        t.bind(mac(1), a, 1000, 3600).unwrap();
        t.offer(mac(2), None, 1000).unwrap();
        assert_eq!(t.offer(mac(1), None, 2000), Some(a));
        // Even after expiry, while nobody else took it.
        assert_eq!(t.offer(mac(1), None, 100_000), Some(a));
    }

    #[test]
    fn survives_a_round_trip_through_the_file_format() {
        let mut t = table();
        let a = t.offer(mac(1), None, 1000).unwrap();
        t.bind(mac(1), a, 1000, 3600).unwrap();
        let (back, warnings) = LeaseTable::from_json(ip(100), ip(102), &t.to_json()).unwrap();
        assert_eq!(back, t);
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn two_leases_on_one_address_are_refused_on_load_keeping_the_later_one() {
        let text = r#"[
            {"mac": "52:54:00:00:00:01", "ip": "10.77.0.100", "expires": 5000, "bound": true},
            {"mac": "52:54:00:00:00:02", "ip": "10.77.0.100", "expires": 9000, "bound": true},
            {"mac": "52:54:00:00:00:03", "ip": "10.77.0.101", "expires": 100, "bound": true},
            {"mac": "52:54:00:00:00:03", "ip": "10.77.0.102", "expires": 200, "bound": true}
        ]"#;
        let (t, warnings) = LeaseTable::from_json(ip(100), ip(102), text).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t.get(&mac(2)).unwrap().ip, ip(100));
        assert_eq!(t.get(&mac(1)), None);
        assert_eq!(t.get(&mac(3)).unwrap().ip, ip(102));
        assert_eq!(
            warnings,
            [
                "two leases on 10.77.0.100: the one of 52:54:00:00:00:01 refused, the one of \
                 52:54:00:00:00:02 kept (it ends later)",
                "two leases for 52:54:00:00:00:03: 10.77.0.101 refused, 10.77.0.102 kept (it \
                 ends later)",
            ]
        );
        // The client that lost its lease is refused the address and offered another.
        let mut t = t;
        assert!(matches!(
            t.bind(mac(1), ip(100), 1000, 3600),
            Err(Refusal::Taken { .. })
        ));
        assert_eq!(t.offer(mac(1), None, 1000), Some(ip(101)));
    }

    #[test]
    fn a_taken_address_is_refused_and_the_range_can_run_out() {
        let mut t = table();
        for n in 1..=3 {
            let a = t.offer(mac(n), None, 0).unwrap();
            t.bind(mac(n), a, 0, 3600).unwrap();
        }
        assert_eq!(t.offer(mac(9), None, 10), None);
        assert!(matches!(
            t.bind(mac(9), ip(100), 10, 3600),
            Err(Refusal::Taken { .. })
        ));
        assert_eq!(
            t.bind(mac(9), ip(50), 10, 3600),
            Err(Refusal::OutsidePool(ip(50)))
        );
        // Once a lease has expired its address can go to someone else.
        assert!(t.offer(mac(9), None, 10_000).is_some());
    }

    #[test]
    fn requested_address_is_honoured_when_free() {
        let mut t = table();
        assert_eq!(t.offer(mac(1), Some(ip(102)), 0), Some(ip(102)));
        assert_eq!(t.offer(mac(2), Some(ip(102)), 0), Some(ip(100)));
    }
}
