//! The PXE password (docs/selection-rules.md rule 9, docs/security.md): when
//! `boot.pxe_password_hash` is set, a machine's first menu or deployment script is given only
//! after the password was typed at the first stage's prompt and sent back with the script
//! request. Here: checking what was typed (argon2id on the blocking pool, a bounded number at
//! once), slowing down an address that guesses wrong (the admin API's [`Throttle`]), and the
//! iPXE prompt. A wrong try records nothing: it is counted (`pxe_password_wrong`) and logged
//! with the MAC and the caller's address.

use std::net::IpAddr;
use std::time::Instant;

use super::admin_auth::Throttle;
use super::script::{self, render};
use super::AppState;
use crate::counters::Counters;
use crate::dhcp::packet::Mac;

/// Tries a machine gets in one boot; after the last wrong one it leaves to its next boot device.
pub const TRIES: u32 = 3;

/// Password checks running at once: each holds argon2id's 19 MiB for a moment. More wait.
const CHECKS_AT_ONCE: usize = 2;

/// What the server keeps to check typed passwords.
pub struct Gate {
    /// Wrong passwords per caller address.
    throttle: std::sync::Mutex<Throttle>,
    checks: tokio::sync::Semaphore,
}

impl Default for Gate {
    fn default() -> Gate {
        Gate {
            throttle: Default::default(),
            checks: tokio::sync::Semaphore::new(CHECKS_AT_ONCE),
        }
    }
}

/// What a script request showed of the PXE password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    /// No password is configured, or the right one was typed.
    Proven,
    /// None was typed yet.
    NotTyped,
    /// A wrong one was typed.
    Wrong,
    /// The address typed wrong ones too often lately: what was typed is not checked, and
    /// counts as a wrong try.
    Throttled,
}

impl Proof {
    /// May the machine be given a menu or a deployment?
    pub fn proven(self) -> bool {
        self == Proof::Proven
    }
}

/// Checks `typed`, the password a script request carried, for the machine `mac` asking from
/// `caller`.
pub async fn check(
    s: &AppState,
    caller: Option<IpAddr>,
    mac: Mac,
    typed: Option<&str>,
    first_stage: &str,
) -> Proof {
    let Some(stored) = &s.config.boot.pxe_password else {
        return Proof::Proven;
    };
    let Some(typed) = typed else {
        return Proof::NotTyped;
    };
    let gate = &s.pxe_password;
    let address = caller
        .map(|ip| ip.to_string())
        .unwrap_or_else(|| "unknown".into());
    if let Some(ip) = caller {
        let wait = gate
            .throttle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .waiting(ip, Instant::now());
        if let Some(wait) = wait {
            Counters::bump(&s.counters.pxe_password_throttled);
            tracing::warn!(mac = %mac, caller = %address, wait_seconds = wait.as_secs(), "{first_stage}: PXE password not checked: this address typed wrong passwords too often (rule 9)");
            return Proof::Throttled;
        }
    }
    let right = match gate.checks.acquire().await {
        Ok(_permit) => {
            let (stored, typed) = (stored.clone(), typed.to_owned());
            tokio::task::spawn_blocking(move || stored.matches(&typed))
                .await
                .unwrap_or(false)
        }
        Err(_) => false,
    };
    let mut throttle = gate.throttle.lock().unwrap_or_else(|p| p.into_inner());
    if right {
        if let Some(ip) = caller {
            throttle.succeeded(ip);
        }
        tracing::info!(mac = %mac, caller = %address, "{first_stage}: PXE password accepted (rule 9)");
        return Proof::Proven;
    }
    if let Some(ip) = caller {
        throttle.failed(ip, Instant::now());
    }
    Counters::bump(&s.counters.pxe_password_wrong);
    tracing::warn!(mac = %mac, caller = %address, "{first_stage}: wrong PXE password; nothing recorded (rule 9)");
    Proof::Wrong
}

/// Wrong tries so far in this boot: those the request says were made before, plus this one.
/// The count comes from the machine; one that lies about it only gets more tries, each of them
/// checked and slowed down like any other.
pub fn tries_made(before: Option<u32>, proof: Proof) -> u32 {
    before
        .unwrap_or(0)
        .min(TRIES)
        .saturating_add(u32::from(matches!(proof, Proof::Wrong | Proof::Throttled)))
}

/// The iPXE script that asks for the password (iPXE's `login`, which shows stars for what is
/// typed) and asks for `/boot.ipxe?{query}` again with it; `tries` wrong ones were made before,
/// the last one as `last`.
pub fn ipxe_prompt(base: &str, mac: &Mac, query: &str, tries: u32, last: Proof) -> String {
    let left = TRIES.saturating_sub(tries);
    let wrong = if last == Proof::Throttled {
        format!(
            "echo netdeploy: too many wrong PXE passwords from this address lately: not checked; wait a minute ({left} {} left)\n",
            if left == 1 { "try" } else { "tries" }
        )
    } else if tries > 0 {
        format!(
            "echo netdeploy: wrong PXE password, {left} {} left\n",
            if left == 1 { "try" } else { "tries" }
        )
    } else {
        String::new()
    };
    render(
        script::PASSWORD,
        &[
            ("base", base),
            ("mac", &mac.to_string()),
            ("query", query),
            ("tries", &tries.to_string()),
        ],
    )
    .replacen("{{wrong}}", &wrong, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrong_try_counts_and_a_machine_cannot_count_past_the_limit() {
        assert_eq!(tries_made(None, Proof::NotTyped), 0);
        assert_eq!(tries_made(None, Proof::Wrong), 1);
        assert_eq!(tries_made(Some(2), Proof::Wrong), 3);
        assert_eq!(tries_made(Some(1), Proof::Proven), 1);
        assert_eq!(tries_made(Some(u32::MAX), Proof::Wrong), TRIES + 1);
        assert_eq!(tries_made(Some(1), Proof::Throttled), 2);
    }

    #[test]
    fn the_prompt_asks_with_login_and_sends_the_password_back_uri_encoded() {
        let mac: Mac = "52:54:00:12:34:56".parse().unwrap();
        let first = ipxe_prompt(
            "http://10.0.0.1:8080",
            &mac,
            "mac=52-54-00-12-34-56",
            0,
            Proof::NotTyped,
        );
        assert!(first.starts_with("#!ipxe\n"), "{first}");
        assert!(first.contains("\nlogin "), "{first}");
        assert!(first.contains(
            "chain --replace http://10.0.0.1:8080/boot.ipxe?mac=52-54-00-12-34-56&pxe_tries=0&pxe_password=${password:uristring} "
        ), "{first}");
        assert!(!first.contains("wrong PXE password"), "{first}");
        assert!(!first.contains("{{"), "{first}");
        let again = ipxe_prompt(
            "http://10.0.0.1:8080",
            &mac,
            "mac=52-54-00-12-34-56",
            2,
            Proof::Wrong,
        );
        assert!(
            again.contains("wrong PXE password, 1 try left\n"),
            "{again}"
        );
        assert!(again.contains("&pxe_tries=2&"), "{again}");
    }
}
