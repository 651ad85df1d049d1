//! Who is calling the admin API, and how often a caller may guess (docs/admin-api.md).
//!
//! Pure rules, no I/O: the request middleware in [`super::admin`] asks [`identify`] which
//! configured token a bearer secret is, and [`Throttle`] whether the caller's address has guessed
//! wrong too often lately. Time is passed in, so the rules are tested without waiting.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::config::ApiToken;

/// The configured token whose secret is `given`, if any.
///
/// Every token is compared, each as the SHA-256 of both sides with no early exit, so the time
/// taken says neither which token nor how much of a guess was right.
pub fn identify<'a>(tokens: &'a [ApiToken], given: &str) -> Option<&'a ApiToken> {
    let given = Sha256::digest(given.as_bytes());
    let mut found = None;
    for t in tokens {
        let want = Sha256::digest(t.token.as_bytes());
        let differs = want
            .iter()
            .zip(given.iter())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y));
        if differs == 0 {
            found = Some(t);
        }
    }
    found
}

/// Wrong guesses an address may make before it has to wait.
pub const FREE_FAILURES: u32 = 5;
/// The longest wait after a wrong guess.
pub const MAX_WAIT: Duration = Duration::from_secs(60);
/// A quiet address is forgotten after this long.
pub const FORGET_AFTER: Duration = Duration::from_secs(600);
/// Addresses remembered at once: a flood from many addresses cannot grow the table without end.
pub const MAX_TRACKED: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
    wait_until: Option<Instant>,
}

/// Wrong bearer tokens per caller address. After [`FREE_FAILURES`] wrong guesses within
/// [`FORGET_AFTER`], each further one makes the address wait 1 s, then 2 s, 4 s, ... up to
/// [`MAX_WAIT`], during which every request from it is answered `429` at once, a right token
/// included (or a guesser would learn the right one by being let through).
#[derive(Debug, Default)]
pub struct Throttle {
    addresses: HashMap<IpAddr, Failures>,
}

impl Throttle {
    /// How long `ip` still has to wait, if it has to.
    pub fn waiting(&mut self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let f = self.addresses.get(&ip)?;
        if now.saturating_duration_since(f.last) >= FORGET_AFTER {
            self.addresses.remove(&ip);
            return None;
        }
        f.wait_until
            .and_then(|until| until.checked_duration_since(now))
            .filter(|d| !d.is_zero())
    }

    /// Records a wrong guess from `ip`; returns the wait it now has, if any.
    pub fn failed(&mut self, ip: IpAddr, now: Instant) -> Option<Duration> {
        if !self.addresses.contains_key(&ip) && self.addresses.len() >= MAX_TRACKED {
            self.make_room(now);
        }
        let f = self.addresses.entry(ip).or_insert(Failures {
            count: 0,
            last: now,
            wait_until: None,
        });
        if now.saturating_duration_since(f.last) >= FORGET_AFTER {
            f.count = 0;
        }
        f.count = f.count.saturating_add(1);
        f.last = now;
        let over = f.count.checked_sub(FREE_FAILURES + 1)?;
        let wait = Duration::from_secs(1u64 << over.min(6)).min(MAX_WAIT);
        f.wait_until = Some(now + wait);
        Some(wait)
    }

    /// A right token from `ip` (not waiting): its wrong guesses are forgotten.
    pub fn succeeded(&mut self, ip: IpAddr) {
        self.addresses.remove(&ip);
    }

    /// Addresses remembered now.
    pub fn len(&self) -> usize {
        self.addresses.len()
    }

    /// Whether no address is remembered.
    pub fn is_empty(&self) -> bool {
        self.addresses.is_empty()
    }

    /// Forgets quiet addresses, and when none is quiet, the one quiet longest.
    fn make_room(&mut self, now: Instant) {
        self.addresses
            .retain(|_, f| now.saturating_duration_since(f.last) < FORGET_AFTER);
        if self.addresses.len() >= MAX_TRACKED {
            let oldest = self
                .addresses
                .iter()
                .min_by_key(|(_, f)| f.last)
                .map(|(ip, _)| *ip);
            if let Some(ip) = oldest {
                self.addresses.remove(&ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ApiRole;

    fn token(name: &str, role: ApiRole, secret: &str) -> ApiToken {
        ApiToken {
            name: name.into(),
            role,
            token: secret.into(),
        }
    }

    #[test]
    fn a_secret_is_identified_as_its_token_and_nothing_else_is() {
        let tokens = [
            token("admin", ApiRole::Admin, "admin-secret-0123456789"),
            token("grafana", ApiRole::Read, "read-secret-0123456789"),
        ];
        assert_eq!(
            identify(&tokens, "read-secret-0123456789").map(|t| t.name.as_str()),
            Some("grafana")
        );
        assert_eq!(
            identify(&tokens, "admin-secret-0123456789").map(|t| t.role),
            Some(ApiRole::Admin)
        );
        for wrong in ["", "read-secret-012345678", "read-secret-01234567890", "x"] {
            assert!(identify(&tokens, wrong).is_none(), "{wrong:?}");
        }
        assert!(identify(&[], "admin-secret-0123456789").is_none());
    }

    #[test]
    fn five_wrong_guesses_are_free_then_the_wait_doubles_up_to_a_minute() {
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let t0 = Instant::now();
        let mut t = Throttle::default();
        for i in 0..FREE_FAILURES {
            assert_eq!(t.failed(ip, t0), None, "guess {i}");
            assert_eq!(t.waiting(ip, t0), None);
        }
        assert_eq!(t.failed(ip, t0), Some(Duration::from_secs(1)));
        assert_eq!(t.waiting(ip, t0), Some(Duration::from_secs(1)));
        assert_eq!(t.waiting(ip, t0 + Duration::from_secs(1)), None);
        assert_eq!(t.failed(ip, t0), Some(Duration::from_secs(2)));
        assert_eq!(t.failed(ip, t0), Some(Duration::from_secs(4)));
        for _ in 0..20 {
            t.failed(ip, t0);
        }
        assert_eq!(t.failed(ip, t0), Some(MAX_WAIT));
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        assert_eq!(t.waiting(other, t0), None, "another address is not held up");
    }

    #[test]
    fn a_right_token_or_a_quiet_spell_forgets_the_wrong_guesses() {
        let ip: IpAddr = "2001:db8::7".parse().unwrap();
        let t0 = Instant::now();
        let mut t = Throttle::default();
        for _ in 0..FREE_FAILURES {
            t.failed(ip, t0);
        }
        t.succeeded(ip);
        assert_eq!(t.failed(ip, t0), None, "counting starts again");
        for _ in 0..FREE_FAILURES {
            t.failed(ip, t0);
        }
        assert!(t.waiting(ip, t0).is_some());
        let later = t0 + FORGET_AFTER;
        assert_eq!(t.waiting(ip, later), None);
        assert_eq!(t.failed(ip, later), None, "forgotten after a quiet spell");
    }

    #[test]
    fn a_flood_from_many_addresses_keeps_the_table_bounded() {
        let t0 = Instant::now();
        let mut t = Throttle::default();
        for i in 0..(MAX_TRACKED as u32 + 500) {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            t.failed(ip, t0 + Duration::from_millis(u64::from(i)));
        }
        assert_eq!(t.len(), MAX_TRACKED);
        let newest = IpAddr::from(std::net::Ipv4Addr::from(
            0x0a00_0000 + MAX_TRACKED as u32 + 499,
        ));
        assert!(t.addresses.contains_key(&newest));
    }
}
