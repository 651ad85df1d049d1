//! Run credentials: who may ask for a policy and report status (docs/security.md).
//!
//! Each run the server starts (an iPXE script that boots a deployment or the default image,
//! the policy of a boot medium) gets a [`RunToken`] bound to the machine and the deployment.
//! The server keeps only its SHA-256 ([`digest`]) with a [`RunCredential`]; [`check`] says
//! whether a request may go on, and why not. These are the rules only: no clock, no store,
//! no random source (the token's 32 bytes come from the caller).

use sha2::{Digest, Sha256};

use crate::catalog::MachineIdentity;
pub use netdeploy_wire::run_token::{MediumKey, RunToken};
use netdeploy_wire::status::StatusKind;

/// What the server keeps of a token it issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunCredential {
    /// The machine the run was started for.
    pub machine: MachineIdentity,
    /// The deployment the run is for; `None` for a run that has not been given one yet (the
    /// default boot image, a boot medium's menu).
    pub deployment: Option<String>,
    /// Unix seconds.
    pub issued_at: i64,
    /// After this (Unix seconds), the token is refused.
    pub expires_at: i64,
    /// When the run reported its end; the token is refused from then on.
    pub ended_at: Option<i64>,
}

/// Why a policy request or status message is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No `Authorization: Bearer` header.
    Missing,
    /// A bearer value that is no run token.
    Malformed,
    /// A token or medium key this server did not issue (or forgot after it expired).
    Unknown,
    /// The run's time ran out (`boot.run_token_hours`).
    Expired,
    /// The run already reported its end.
    Ended,
    /// The token belongs to another machine.
    OtherMachine,
    /// The token belongs to another deployment of this machine.
    OtherDeployment,
    /// The boot medium's key was revoked (`netdeploy media revoke`).
    Revoked,
}

impl Refusal {
    /// 401 when the caller proved nothing, 403 when it holds a token that does not allow this.
    pub fn http_status(self) -> u16 {
        match self {
            Refusal::Missing | Refusal::Malformed | Refusal::Unknown => 401,
            Refusal::Expired
            | Refusal::Ended
            | Refusal::OtherMachine
            | Refusal::OtherDeployment
            | Refusal::Revoked => 403,
        }
    }

    /// The reason, for the log and the response body.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Missing => {
                "no run token (Authorization: Bearer) or, from a boot medium, medium key \
                 (Authorization: Medium) was sent"
            }
            Refusal::Malformed => "the bearer value is not a run token (64 hex digits)",
            Refusal::Unknown => "the run token or medium key is not one this server issued",
            Refusal::Expired => "the run token expired (boot.run_token_hours)",
            Refusal::Ended => "the run token belongs to a run that has ended",
            Refusal::OtherMachine => "the run token belongs to another machine",
            Refusal::OtherDeployment => "the run token belongs to another deployment",
            Refusal::Revoked => "the boot medium's key was revoked",
        }
    }
}

/// The SHA-256 of a token as the store keeps it (lower-case hex).
pub fn digest(token: &RunToken) -> String {
    netdeploy_wire::hex::encode(&Sha256::digest(token.bytes()))
}

/// The token an `Authorization` header value presents, if any.
pub fn presented(authorization: Option<&str>) -> Result<RunToken, Refusal> {
    match authorization.map(RunToken::from_authorization) {
        None | Some(None) => Err(Refusal::Missing),
        Some(Some(Err(_))) => Err(Refusal::Malformed),
        Some(Some(Ok(t))) => Ok(t),
    }
}

/// True when two identities name the same machine: by MAC when both have one (the MAC the
/// run was started for is the one its boot environment reports), else by SMBIOS UUID.
pub fn same_machine(a: &MachineIdentity, b: &MachineIdentity) -> bool {
    match ((a.mac, b.mac), (a.uuid, b.uuid)) {
        ((Some(x), Some(y)), _) => x == y,
        (_, (Some(x), Some(y))) => x == y,
        _ => false,
    }
}

/// What a request with a run token does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// Asks for the policy: a run not yet given a deployment may name one (a menu pick); the
    /// answer then comes with a token of what was decided.
    Policy,
    /// Reports status: only about the run's own deployment.
    Status,
    /// Reports that nothing was deployed (`no-deployment`): a run not given a deployment may
    /// name the one it asked for, which it did not get.
    NothingDeployed,
}

/// Whether a request from `machine` about `deployment` may go on with the credential found
/// for its token (`None`: the store knows no such token) at `now` (Unix seconds). A request
/// that names no deployment is about the credential's own.
pub fn check(
    credential: Option<&RunCredential>,
    machine: &MachineIdentity,
    deployment: Option<&str>,
    usage: Use,
    now: i64,
) -> Result<(), Refusal> {
    let c = credential.ok_or(Refusal::Unknown)?;
    if !same_machine(&c.machine, machine) {
        return Err(Refusal::OtherMachine);
    }
    if c.ended_at.is_some() {
        return Err(Refusal::Ended);
    }
    if now >= c.expires_at {
        return Err(Refusal::Expired);
    }
    match (c.deployment.as_deref(), deployment, usage) {
        (_, None, _) => Ok(()),
        (Some(mine), Some(asked), _) if mine == asked => Ok(()),
        (None, Some(_), Use::Policy | Use::NothingDeployed) => Ok(()),
        _ => Err(Refusal::OtherDeployment),
    }
}

/// A boot medium's key as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMedium {
    /// [`medium_digest`] of its key.
    pub digest: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// The SHA-256 of a medium key's secret as the store keeps it (lower-case hex).
pub fn medium_digest(key: &MediumKey) -> String {
    netdeploy_wire::hex::encode(&Sha256::digest(key.secret()))
}

/// The medium key an `Authorization` header presents, if any.
pub fn presented_medium(authorization: Option<&str>) -> Result<MediumKey, Refusal> {
    match authorization.map(MediumKey::from_authorization) {
        None | Some(None) => Err(Refusal::Missing),
        Some(Some(Err(_))) => Err(Refusal::Malformed),
        Some(Some(Ok(k))) => Ok(k),
    }
}

/// Whether a boot medium presenting `key` may ask for its first policy, with what the store
/// keeps under the key's id (`None`: no such medium).
pub fn check_medium(stored: Option<&StoredMedium>, key: &MediumKey) -> Result<(), Refusal> {
    let m = stored.ok_or(Refusal::Unknown)?;
    // Both sides are SHA-256 digests of a 32-byte secret: comparing them leaks nothing of it.
    if m.digest != medium_digest(key) {
        return Err(Refusal::Unknown);
    }
    match m.revoked_at {
        Some(_) => Err(Refusal::Revoked),
        None => Ok(()),
    }
}

/// True for the status kinds that end a run: its token is refused afterwards.
pub fn ends_run(kind: &StatusKind) -> bool {
    matches!(
        kind,
        StatusKind::Succeeded
            | StatusKind::Failed
            | StatusKind::NoDeployment
            | StatusKind::Rebooting
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dhcp::packet::{Mac, SmbiosUuid};

    fn mac(last: u8) -> Option<Mac> {
        Some(format!("52:54:00:00:00:{last:02x}").parse().unwrap())
    }

    fn uuid(last: u8) -> Option<SmbiosUuid> {
        Some(
            crate::catalog::parse_smbios_uuid(&format!(
                "4e44d0e1-0d08-4c4a-9b1e-2f6d0d0800{last:02x}"
            ))
            .unwrap(),
        )
    }

    fn credential(deployment: Option<&str>) -> RunCredential {
        RunCredential {
            machine: MachineIdentity {
                mac: mac(1),
                uuid: uuid(1),
            },
            deployment: deployment.map(str::to_owned),
            issued_at: 100,
            expires_at: 200,
            ended_at: None,
        }
    }

    #[test]
    fn the_token_of_the_machine_and_deployment_is_accepted_while_the_run_lasts() {
        let c = credential(Some("LAB00001"));
        let me = MachineIdentity {
            mac: mac(1),
            uuid: None,
        };
        assert_eq!(
            check(Some(&c), &me, Some("LAB00001"), Use::Status, 150),
            Ok(())
        );
        assert_eq!(check(Some(&c), &me, None, Use::Status, 199), Ok(()));
        assert_eq!(
            check(Some(&c), &me, Some("LAB00001"), Use::Status, 200),
            Err(Refusal::Expired)
        );
        let ended = RunCredential {
            ended_at: Some(160),
            ..c
        };
        assert_eq!(
            check(Some(&ended), &me, Some("LAB00001"), Use::Status, 170),
            Err(Refusal::Ended)
        );
    }

    #[test]
    fn another_machines_token_or_deployment_is_forbidden() {
        let c = credential(Some("LAB00001"));
        let other = MachineIdentity {
            mac: mac(2),
            uuid: uuid(1),
        };
        assert_eq!(
            check(Some(&c), &other, Some("LAB00001"), Use::Status, 150),
            Err(Refusal::OtherMachine),
            "the MAC decides when both sides have one"
        );
        let by_uuid = MachineIdentity {
            mac: None,
            uuid: uuid(1),
        };
        assert_eq!(check(Some(&c), &by_uuid, None, Use::Status, 150), Ok(()));
        let nothing_in_common = MachineIdentity {
            mac: None,
            uuid: uuid(3),
        };
        assert_eq!(
            check(Some(&c), &nothing_in_common, None, Use::Status, 150),
            Err(Refusal::OtherMachine)
        );
        let me = MachineIdentity {
            mac: mac(1),
            uuid: None,
        };
        assert_eq!(
            check(Some(&c), &me, Some("LAB00002"), Use::Status, 150),
            Err(Refusal::OtherDeployment)
        );
        // A run not yet given a deployment speaks for no deployment at all.
        let open = credential(None);
        assert_eq!(
            check(Some(&open), &me, Some("LAB00002"), Use::Status, 150),
            Err(Refusal::OtherDeployment)
        );
        assert_eq!(check(Some(&open), &me, None, Use::Status, 150), Ok(()));
        // It may ask for the policy of one, as after a menu.
        assert_eq!(
            check(Some(&open), &me, Some("LAB00002"), Use::Policy, 150),
            Ok(())
        );
        assert_eq!(
            check(Some(&c), &me, Some("LAB00002"), Use::Policy, 150),
            Err(Refusal::OtherDeployment)
        );
        // And say that the one it asked for was not deployed to it.
        assert_eq!(
            check(
                Some(&open),
                &me,
                Some("LAB00002"),
                Use::NothingDeployed,
                150
            ),
            Ok(())
        );
        assert_eq!(
            check(Some(&c), &me, Some("LAB00002"), Use::NothingDeployed, 150),
            Err(Refusal::OtherDeployment)
        );
    }

    #[test]
    fn no_token_is_unauthorized_and_a_held_one_that_does_not_fit_is_forbidden() {
        assert_eq!(presented(None), Err(Refusal::Missing));
        assert_eq!(presented(Some("Basic eDp5")), Err(Refusal::Missing));
        assert_eq!(presented(Some("Bearer 1234")), Err(Refusal::Malformed));
        let t = RunToken::from_bytes([7; 32]);
        assert_eq!(presented(Some(&t.authorization())), Ok(t));
        let me = MachineIdentity {
            mac: mac(1),
            uuid: None,
        };
        assert_eq!(
            check(None, &me, None, Use::Status, 0),
            Err(Refusal::Unknown)
        );
        for r in [Refusal::Missing, Refusal::Malformed, Refusal::Unknown] {
            assert_eq!(r.http_status(), 401, "{r:?}");
        }
        for r in [
            Refusal::Expired,
            Refusal::Ended,
            Refusal::OtherMachine,
            Refusal::OtherDeployment,
        ] {
            assert_eq!(r.http_status(), 403, "{r:?}");
        }
    }

    #[test]
    fn the_digest_is_the_sha256_of_the_token_bytes() {
        let t = RunToken::from_bytes([0; 32]);
        // SHA-256 of 32 zero bytes.
        assert_eq!(
            digest(&t),
            "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925"
        );
        assert_ne!(digest(&t), t.to_string());
    }

    #[test]
    fn a_medium_key_counts_until_it_is_revoked() {
        let key = MediumKey::from_bytes([1, 2, 3, 4], [9; 32]);
        let stored = StoredMedium {
            digest: medium_digest(&key),
            created_at: 1,
            revoked_at: None,
        };
        assert_eq!(check_medium(Some(&stored), &key), Ok(()));
        assert_eq!(check_medium(None, &key), Err(Refusal::Unknown));
        let forged = MediumKey::from_bytes([1, 2, 3, 4], [8; 32]);
        assert_eq!(check_medium(Some(&stored), &forged), Err(Refusal::Unknown));
        let revoked = StoredMedium {
            revoked_at: Some(2),
            ..stored
        };
        assert_eq!(check_medium(Some(&revoked), &key), Err(Refusal::Revoked));
        assert_eq!(Refusal::Revoked.http_status(), 403);
        assert_eq!(presented_medium(Some(&key.authorization())), Ok(key));
        assert_eq!(
            presented_medium(Some(&RunToken::from_bytes([0; 32]).authorization())),
            Err(Refusal::Missing)
        );
        assert_eq!(presented_medium(Some("Medium 12")), Err(Refusal::Malformed));
    }

    #[test]
    fn a_run_ends_with_its_outcome_or_with_nothing_to_deploy() {
        assert!(ends_run(&StatusKind::Succeeded));
        assert!(ends_run(&StatusKind::Failed));
        assert!(ends_run(&StatusKind::NoDeployment));
        assert!(!ends_run(&StatusKind::Started));
    }
}
