//! Which machines asked this server for a network boot lately (docs/security.md): the proof a
//! script request needs before it may record a start or hand out a run token. A request for
//! `/boot.ipxe?mac=M` changes something only when M was seen in a DHCP or proxyDHCP exchange
//! of a PXE or HTTP boot client shortly before.
//!
//! Kept in memory: a restart forgets them, and a machine then simply DHCPs again. The clock is
//! the caller's, so the rules are tested without waiting.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::dhcp::packet::Mac;

/// MACs seen, with when; at most [`Sightings::MAX`] of them.
#[derive(Debug, Default)]
pub struct Sightings {
    seen: Mutex<HashMap<Mac, Instant>>,
}

impl Sightings {
    /// Machines remembered at once. Past it, those older than the window go first, then all:
    /// a flood of made-up MACs costs the real machines one more DHCP exchange, never memory.
    pub const MAX: usize = 65_536;

    /// Notes that `mac` asked for a network boot at `now`.
    pub fn saw(&self, mac: Mac, now: Instant, window: Duration) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= Self::MAX && !seen.contains_key(&mac) {
            seen.retain(|_, at| now.saturating_duration_since(*at) < window);
            if seen.len() >= Self::MAX {
                seen.clear();
            }
        }
        seen.insert(mac, now);
    }

    /// True when `mac` asked within `window` before `now`.
    pub fn seen_within(&self, mac: Mac, now: Instant, window: Duration) -> bool {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.get(&mac)
            .is_some_and(|at| now.saturating_duration_since(*at) < window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(n: u32) -> Mac {
        let b = n.to_be_bytes();
        format!("52:54:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3])
            .parse()
            .unwrap()
    }

    #[test]
    fn a_machine_counts_as_seen_only_within_the_window() {
        let s = Sightings::default();
        let t0 = Instant::now();
        let w = Duration::from_secs(300);
        assert!(!s.seen_within(mac(1), t0, w));
        s.saw(mac(1), t0, w);
        assert!(s.seen_within(mac(1), t0 + Duration::from_secs(299), w));
        assert!(!s.seen_within(mac(1), t0 + Duration::from_secs(300), w));
        assert!(!s.seen_within(mac(2), t0, w));
    }

    #[test]
    fn a_flood_of_made_up_macs_stays_bounded() {
        let s = Sightings::default();
        let t0 = Instant::now();
        let w = Duration::from_secs(300);
        for n in 0..(Sightings::MAX as u32 + 10) {
            s.saw(mac(n), t0, w);
        }
        assert!(s.seen.lock().unwrap().len() <= Sightings::MAX);
        // The newest is remembered.
        assert!(s.seen_within(mac(Sightings::MAX as u32 + 9), t0, w));
    }
}
