//! The policy the server hands the boot environment (`GET /agent/policy`), as the agent acts
//! on it: run this deployment, let the person at the machine choose from a menu, or nothing
//! is deployed (docs/selection-rules.md rules 6 and 8). The JSON and its types are the contract in
//! `netdeploy-wire`; this module only refuses what the agent cannot act on, by name.

use std::collections::BTreeMap;

pub use netdeploy_wire::policy::{
    ContentOption, MenuEntry, PolicyDeployment, PolicyFile, Purpose, Step, StepAction,
};
use netdeploy_wire::policy::{Policy as Wire, PolicyError as WireError};

/// A checked policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Policy {
    /// Nothing is deployed to this machine; `reason` says why.
    Nothing {
        reason: String,
    },
    Run(RunPolicy),
    /// Someone at the machine chooses one of `entries` (never a hidden deployment).
    Menu {
        reason: String,
        entries: Vec<MenuEntry>,
    },
}

/// A deployment to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunPolicy {
    pub reason: String,
    pub deployment: PolicyDeployment,
    pub option: ContentOption,
    pub steps: Vec<Step>,
    pub packages: BTreeMap<String, Vec<PolicyFile>>,
    pub warnings: Vec<String>,
    /// The step to start at, after a restart in the middle of the sequence.
    pub resume_at: usize,
}

/// A policy the agent cannot act on.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error(
        "deployment {id}: the content option {option:?} is unknown to this boot image \
         (expected download_on_demand, download_all or direct_access)"
    )]
    Option { id: String, option: String },
}

/// Parses and checks the policy JSON.
pub fn parse(json: &[u8]) -> Result<Policy, PolicyError> {
    match Wire::from_json(json)? {
        Wire::None { reason } => Ok(Policy::Nothing { reason }),
        Wire::Menu { reason, entries } => Ok(Policy::Menu { reason, entries }),
        Wire::Run {
            reason,
            deployment,
            steps,
            packages,
            warnings,
            resume_at,
        } => {
            if let ContentOption::Unknown(option) = &deployment.option {
                return Err(PolicyError::Option {
                    id: deployment.id.clone(),
                    option: option.clone(),
                });
            }
            Ok(Policy::Run(RunPolicy {
                reason,
                option: deployment.option.clone(),
                deployment,
                steps,
                packages,
                warnings,
                resume_at,
            }))
        }
        // `from_json` names an unknown action as an error.
        Wire::Unknown => Err(PolicyError::Wire(WireError::UnknownAction(String::new()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the contract, verbatim.
    pub const EXAMPLE: &str = r#"{"action":"run","reason":"required (rule 5)",
 "deployment":{"id":"LAB00001","task_sequence":"ts","name":"Say hello","option":"download_on_demand"},
 "steps":[{"name":"write the disk","action":"apply_image","package":"disk","file":"disk.img","target":"/dev/vda"},
          {"name":"hello","action":"run_command","command":"echo hello"},
          {"name":"set","action":"set_variable","variable":"OSDComputerName","value":"pc1"},
          {"name":"motd","action":"write_file","package":"tools","file":"etc/motd","target":"/tmp/motd"},
          {"name":"note","action":"write_file","value":"text","target":"/tmp/note"},
          {"name":"off","action":"poweroff"}],
 "packages":{"disk":[{"path":"disk.img","size":4194304,"sha256":"0000000000000000000000000000000000000000000000000000000000000000","url":"http://10.77.0.1:8080/content/0000000000000000000000000000000000000000000000000000000000000000"}]},
 "warnings":["direct_access reads packages ... hashes are NOT verified"]}"#;

    #[test]
    fn parses_the_contract_example() {
        let Policy::Run(p) = parse(EXAMPLE.as_bytes()).unwrap() else {
            panic!("expected run");
        };
        assert_eq!(p.deployment.id, "LAB00001");
        assert_eq!(p.option, ContentOption::DownloadOnDemand);
        assert_eq!(p.steps.len(), 6);
        assert_eq!(p.steps[3].file.as_deref(), Some("etc/motd"));
        assert_eq!(p.packages["disk"][0].size, 4 << 20);
        assert_eq!(p.warnings.len(), 1);
    }

    #[test]
    fn parses_nothing_deployed() {
        let p =
            parse(br#"{"action":"none","reason":"nothing is deployed to this machine (rule 8)"}"#)
                .unwrap();
        assert!(
            matches!(p, Policy::Nothing { reason } if reason == "nothing is deployed to this machine (rule 8)")
        );
    }

    #[test]
    fn a_menu_is_a_policy_the_agent_acts_on() {
        let p = parse(
            br#"{"action":"menu","reason":"available deployments only: choose one (rule 6)",
                 "entries":[{"id":"LAB00002","name":"Windows 11","purpose":"available"}]}"#,
        )
        .unwrap();
        let Policy::Menu { entries, .. } = p else {
            panic!("expected a menu, got {p:?}");
        };
        assert_eq!(entries[0].id, "LAB00002");
        assert_eq!(entries[0].purpose, Purpose::Available);
    }

    #[test]
    fn ignores_unknown_fields_and_refuses_unknown_actions_and_options_by_name() {
        let p = parse(
            br#"{"action":"run","future":1,"deployment":{"id":"LAB00002","extra":true},"steps":[]}"#,
        )
        .unwrap();
        assert!(matches!(p, Policy::Run(r) if r.option == ContentOption::DownloadOnDemand));
        let e = parse(br#"{"action":"teleport"}"#).unwrap_err();
        assert!(e.to_string().contains("\"teleport\""), "{e}");
        assert!(parse(br#"{"action":"run"}"#)
            .unwrap_err()
            .to_string()
            .contains("deployment"));
        let e =
            parse(br#"{"action":"run","deployment":{"id":"X","option":"teleport"}}"#).unwrap_err();
        assert!(matches!(&e, PolicyError::Option { option, .. } if option == "teleport"));
        assert!(parse(b"<html>").is_err());
    }
}
