//! The policy the server hands the boot environment (`GET /agent/policy`): either "run this
//! deployment" with its steps and the files of its packages, or "nothing is deployed to you"
//! (SPEC section 3, rule 8).
//!
//! Unknown fields are ignored rather than refused: a boot image on a USB stick outlives
//! server upgrades, and a newer server may add fields this agent does not use. Step actions
//! stay strings here so that an unknown one fails its step, not the whole policy.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The JSON of the policy, as sent.
#[derive(Debug, Clone, Deserialize)]
pub struct PolicyWire {
    pub action: String,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub deployment: Option<DeploymentWire>,
    #[serde(default)]
    pub steps: Vec<StepWire>,
    /// Package id → its files.
    #[serde(default)]
    pub packages: BTreeMap<String, Vec<FileWire>>,
    #[serde(default)]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DeploymentWire {
    pub id: String,
    #[serde(default)]
    pub task_sequence: String,
    #[serde(default)]
    pub name: String,
    /// `download_on_demand` when absent: the option that verifies and needs no disk space.
    #[serde(default)]
    pub option: Option<String>,
}

/// One step; which fields matter depends on `action`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StepWire {
    pub name: String,
    pub action: String,
    #[serde(default)]
    pub package: Option<String>,
    #[serde(default)]
    pub command: Option<String>,
    #[serde(default)]
    pub file: Option<String>,
    #[serde(default)]
    pub target: Option<String>,
    #[serde(default)]
    pub variable: Option<String>,
    #[serde(default)]
    pub value: Option<String>,
}

/// One file of a package.
#[derive(Debug, Clone, Deserialize)]
pub struct FileWire {
    /// Relative path inside the package.
    pub path: String,
    pub size: u64,
    /// Lowercase hex.
    #[serde(default)]
    pub sha256: String,
    /// Where to GET it; `{server}/content/{sha256}` when absent. A path is relative to the
    /// server URL.
    #[serde(default)]
    pub url: Option<String>,
}

/// How the boot environment gets content (SPEC section 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentOption {
    /// Each step downloads what it needs right before it runs; hashes verified.
    DownloadOnDemand,
    /// Every package's files before the first step; hashes verified.
    DownloadAll,
    /// Streamed from the server; hashes are NOT verified.
    DirectAccess,
}

impl ContentOption {
    pub fn parse(s: &str) -> Option<ContentOption> {
        match s {
            "download_on_demand" => Some(ContentOption::DownloadOnDemand),
            "download_all" => Some(ContentOption::DownloadAll),
            "direct_access" => Some(ContentOption::DirectAccess),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ContentOption::DownloadOnDemand => "download_on_demand",
            ContentOption::DownloadAll => "download_all",
            ContentOption::DirectAccess => "direct_access",
        }
    }

    /// True for the options that check every file's SHA-256 before use.
    pub fn verifies(self) -> bool {
        self != ContentOption::DirectAccess
    }
}

/// A checked policy.
#[derive(Debug, Clone)]
pub enum Policy {
    /// Nothing is deployed to this machine; `reason` says why.
    Nothing {
        reason: String,
    },
    Run(RunPolicy),
}

/// A deployment to run.
#[derive(Debug, Clone)]
pub struct RunPolicy {
    pub reason: String,
    pub deployment: DeploymentWire,
    pub option: ContentOption,
    pub steps: Vec<StepWire>,
    pub packages: BTreeMap<String, Vec<FileWire>>,
    pub warnings: Vec<String>,
}

/// A policy the agent cannot act on.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("the policy is not valid JSON of the expected shape: {0}")]
    Json(#[from] serde_json::Error),
    #[error("unknown policy action {0:?} (expected run or none)")]
    Action(String),
    #[error("the policy says run but names no deployment")]
    NoDeployment,
    #[error("deployment {id}: unknown deployment option {option:?}")]
    Option { id: String, option: String },
}

/// Parses and checks the policy JSON.
pub fn parse(json: &[u8]) -> Result<Policy, PolicyError> {
    let w: PolicyWire = serde_json::from_slice(json)?;
    match w.action.as_str() {
        "none" => Ok(Policy::Nothing { reason: w.reason }),
        "run" => {
            let deployment = w.deployment.ok_or(PolicyError::NoDeployment)?;
            let option = match deployment.option.as_deref() {
                None => ContentOption::DownloadOnDemand,
                Some(o) => ContentOption::parse(o).ok_or_else(|| PolicyError::Option {
                    id: deployment.id.clone(),
                    option: o.to_owned(),
                })?,
            };
            Ok(Policy::Run(RunPolicy {
                reason: w.reason,
                deployment,
                option,
                steps: w.steps,
                packages: w.packages,
                warnings: w.warnings,
            }))
        }
        other => Err(PolicyError::Action(other.to_owned())),
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
    fn ignores_unknown_fields_and_refuses_unknown_actions_and_options() {
        let p = parse(
            br#"{"action":"run","future":1,"deployment":{"id":"LAB00002","extra":true},"steps":[]}"#,
        )
        .unwrap();
        assert!(matches!(p, Policy::Run(r) if r.option == ContentOption::DownloadOnDemand));
        assert!(matches!(
            parse(br#"{"action":"menu"}"#),
            Err(PolicyError::Action(a)) if a == "menu"
        ));
        assert!(matches!(
            parse(br#"{"action":"run"}"#),
            Err(PolicyError::NoDeployment)
        ));
        assert!(matches!(
            parse(br#"{"action":"run","deployment":{"id":"X","option":"teleport"}}"#),
            Err(PolicyError::Option { .. })
        ));
        assert!(matches!(parse(b"<html>"), Err(PolicyError::Json(_))));
    }
}
