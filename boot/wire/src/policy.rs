//! What `GET /agent/policy` answers a boot environment, and what a full media carries in
//! `policy.json`: run this deployment (its steps and the files of its packages), choose from
//! a menu, or nothing is deployed.
//!
//! Fields a newer server adds are ignored by an older agent: a boot image on a USB stick
//! outlives server upgrades. A policy action, step action, content option or menu entry
//! purpose it does not know is kept as `Unknown`, so that the agent refuses it by name rather
//! than guessing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::disk::{DiskChoice, DiskLayout, Filesystem};
use crate::Sha256Hex;

/// What `/agent/policy` answers, tagged by `action`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Policy {
    /// Run this task sequence.
    Run {
        #[serde(default)]
        reason: String,
        deployment: PolicyDeployment,
        #[serde(default)]
        steps: Vec<Step>,
        /// Files of every referenced package, by package id.
        #[serde(default)]
        packages: BTreeMap<String, Vec<PolicyFile>>,
        #[serde(default)]
        warnings: Vec<String>,
        /// The 0-based step to start at: after a `reboot` step in the middle of the sequence,
        /// the run continues at the step after it. The steps before it are not run again.
        #[serde(default, skip_serializing_if = "is_zero")]
        resume_at: usize,
    },
    /// Let the person at the machine pick one of these; the machine then asks for the policy
    /// of the one picked, as media with a preferred deployment do.
    Menu {
        #[serde(default)]
        reason: String,
        entries: Vec<MenuEntry>,
    },
    /// Nothing is deployed to this machine, said plainly.
    None {
        #[serde(default)]
        reason: String,
    },
    /// An action from a newer server; [`PolicyError::UnknownAction`] names it. Never sent.
    #[serde(other, skip_serializing)]
    Unknown,
}

/// Why policy JSON was not read.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("the policy is not valid JSON of the expected shape: {0}")]
    Json(#[from] serde_json::Error),
    #[error(
        "the server sent the policy action {0:?}, which this boot image does not know \
         (expected run, menu or none): rebuild the boot image with this server's netdeploy"
    )]
    UnknownAction(String),
}

impl Policy {
    /// The JSON the server sends.
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }

    /// Reads policy JSON; an action this side does not know is an error that names it.
    pub fn from_json(json: &[u8]) -> Result<Policy, PolicyError> {
        match serde_json::from_slice(json)? {
            Policy::Unknown => {
                #[derive(Deserialize)]
                struct Tag {
                    action: String,
                }
                let tag: Tag = serde_json::from_slice(json)?;
                Err(PolicyError::UnknownAction(tag.action))
            }
            p => Ok(p),
        }
    }
}

/// The deployment that runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyDeployment {
    pub id: String,
    #[serde(default)]
    pub task_sequence: String,
    /// The task sequence's name.
    #[serde(default)]
    pub name: String,
    /// `download_on_demand` when absent: the option that verifies and needs no disk space.
    #[serde(default)]
    pub option: ContentOption,
    /// Images of this deployment may come by multicast: before an `apply_image` of a
    /// netdeploy image, the agent asks `GET /agent/multicast` for a session (a
    /// [`MulticastSession`]) and falls back to HTTP for whatever multicast does not bring.
    #[serde(default, skip_serializing_if = "is_false")]
    pub multicast: bool,
}

/// What `GET /agent/multicast?mac=...&uuid=...&deployment=...&package=ID&file=PATH` answers
/// (with the run token, as every agent request): the session that sends that image, joined
/// by this machine as `receiver`. Any other status is a refusal whose body,
/// `{"error": "..."}`, says why (multicast is off on this server, the file is not an image,
/// ...); the agent then applies the image over HTTP and says so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MulticastSession {
    /// The session id every datagram carries.
    pub session: u32,
    /// The group and UDP port the session sends to (`239.255.77.21:7400`).
    pub group: std::net::SocketAddrV4,
    /// The receiver id this machine uses in its requests: the server knows from it which
    /// machine is which, and ends the session once every machine it gave an id to is done.
    pub receiver: u32,
    /// The SHA-256 of the image index the session announces.
    pub index_sha256: Sha256Hex,
}

/// One deployment a menu offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MenuEntry {
    /// The deployment id, what the machine sends back as its choice.
    pub id: String,
    /// The task sequence's name.
    pub name: String,
    pub purpose: Purpose,
}

closed_set! {
    /// Whether a deployment must run or may be chosen.
    pub enum Purpose {
        Required = "required",
        Available = "available",
    }
}

/// One content file as the agent downloads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyFile {
    /// Relative path inside the package.
    pub path: String,
    pub size: u64,
    pub sha256: Sha256Hex,
    /// Where to GET it; `{server}/content/{sha256}` when absent. A path is relative to the
    /// server URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

closed_set! {
    /// How the boot environment gets content.
    #[derive(Default)]
    pub enum ContentOption {
        /// Each step downloads what it needs right before it runs; hashes verified.
        #[default]
        DownloadOnDemand = "download_on_demand",
        /// Every package's files before the first step; hashes verified.
        DownloadAll = "download_all",
        /// Streamed from the server; hashes are NOT verified.
        DirectAccess = "direct_access",
    }
}

impl ContentOption {
    /// True for the options that check every file's SHA-256 before use.
    pub fn verifies(&self) -> bool {
        *self != ContentOption::DirectAccess
    }
}

closed_set! {
    /// What a task sequence step does.
    pub enum StepAction {
        /// Write `layout` to the disk `disk` chooses, replacing what it held.
        PartitionDisk = "partition_disk",
        /// Make `filesystem` on partition `partition` of the disk `disk` chooses.
        Format = "format",
        /// Write an image (netdeploy's format or raw) from a package to `target`, or to
        /// partition `partition` of the disk `disk` chooses, or to that whole disk.
        ApplyImage = "apply_image",
        /// Capture the partitions of the disk `disk` chooses to the server, as the new
        /// package `package`.
        CaptureImage = "capture_image",
        /// Windows PE: make the applied Windows bootable (`bcdboot`).
        Bcdboot = "bcdboot",
        /// Install an operating system from its setup files in a package.
        ApplyOs = "apply_os",
        /// Run a command line, optionally from a package.
        RunCommand = "run_command",
        /// Install a package's content.
        InstallPackage = "install_package",
        /// Restart the machine; a later step continues after the restart, the last one ends
        /// the deployment.
        Reboot = "reboot",
        /// Write a file of a package (`package`, `file`) or the text `value` to `target`.
        WriteFile = "write_file",
        /// Set the task sequence variable `variable` to `value`.
        SetVariable = "set_variable",
        /// Power the machine off.
        Poweroff = "poweroff",
    }
}

/// One step of a task sequence; which fields matter depends on `action`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// Name shown in progress and status messages.
    pub name: String,
    pub action: StepAction,
    /// The package the step reads, when it reads one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    /// The command line of a `run_command` step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// The file of `package` the step reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Where the step writes: a block device (`apply_image`) or a path (`write_file`), as an
    /// absolute path of the boot environment ([`is_absolute_target`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The variable a `set_variable` step sets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variable: Option<String>,
    /// The value of a `set_variable` step, or the text of a `write_file` step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// `value` is a secret: never logged, shown or reported, and masked on the console.
    #[serde(default, skip_serializing_if = "is_false")]
    pub secret: bool,
    /// A secret `value` as full media carry it: sealed under the media password
    /// (`crate::seal`, feature `password`), with `value` left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<String>,
    /// The disk a disk step works on; the first non-removable disk when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<DiskChoice>,
    /// The partitions a `partition_disk` step writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<DiskLayout>,
    /// The 1-based partition number a `format`, `apply_image` or `capture_image` step works
    /// on, on the disk `disk` chooses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<u32>,
    /// The filesystem a `format` step makes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filesystem: Option<Filesystem>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// What a secret value is shown as.
pub const MASK: &str = "********";

/// True for a step target that is an absolute path on the boot environment it is meant for:
/// `/dev/vda` or `/etc/motd` in Linux, `C:\Windows\Panther\unattend.xml` (a drive letter, then
/// `\` or `/`) or `\\.\PhysicalDrive0` in Windows PE. The agent then checks that it is
/// absolute on the machine it runs on.
pub fn is_absolute_target(t: &str) -> bool {
    let b = t.as_bytes();
    let drive =
        b.len() >= 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && matches!(b[2], b'\\' | b'/');
    t.starts_with('/') || t.starts_with(r"\\") || drive
}

impl Step {
    /// The step as it may be shown: a secret value replaced by [`MASK`].
    pub fn masked(&self) -> Step {
        let mut s = self.clone();
        if s.secret && s.value.is_some() {
            s.value = Some(MASK.to_owned());
        }
        s
    }
}

/// Replaces every secret in `text` with [`MASK`], longest first (so a secret inside another is
/// not left half shown). Empty secrets are ignored.
pub fn mask_secrets(text: &str, secrets: &[String]) -> String {
    let mut sorted: Vec<&String> = secrets.iter().filter(|s| !s.is_empty()).collect();
    sorted.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut out = text.to_owned();
    for s in sorted {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), MASK);
        }
    }
    out
}

impl Step {
    /// A step with only a name and an action.
    pub fn new(name: impl Into<String>, action: StepAction) -> Step {
        Step {
            name: name.into(),
            action,
            package: None,
            command: None,
            file: None,
            target: None,
            variable: None,
            value: None,
            secret: false,
            sealed: None,
            disk: None,
            layout: None,
            partition: None,
            filesystem: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_absolute_in_linux_or_in_windows_pe() {
        for t in [
            "/dev/vda",
            "/etc/motd",
            r"C:\Windows\Panther\unattend.xml",
            "x:/temp/a",
            r"\\.\PhysicalDrive0",
        ] {
            assert!(is_absolute_target(t), "{t}");
        }
        for t in [
            "etc/motd",
            "C:",
            "C:relative",
            r"\temp",
            "",
            "1:\\x",
            "ü:\\x",
        ] {
            assert!(!is_absolute_target(t), "{t}");
        }
    }

    #[test]
    fn a_menu_reads_back_with_its_entries() {
        let json = br#"{"action":"menu","reason":"choose","entries":[
            {"id":"LAB00002","name":"Windows 11","purpose":"available"},
            {"id":"LAB00003","name":"Ubuntu","purpose":"required","since":"v9"}]}"#;
        let Policy::Menu { entries, .. } = Policy::from_json(json).unwrap() else {
            panic!("expected a menu");
        };
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1].purpose, Purpose::Required);
    }

    #[test]
    fn a_multicast_session_reads_back_with_its_group_as_address_and_port() {
        let json = br#"{"session":7,"group":"239.255.77.21:7400","receiver":3,
            "index_sha256":"00000000000000000000000000000000000000000000000000000000000000ff"}"#;
        let s: MulticastSession = serde_json::from_slice(json).unwrap();
        assert_eq!(s.group.to_string(), "239.255.77.21:7400");
        assert_eq!(s.receiver, 3);
        let again: MulticastSession =
            serde_json::from_slice(&serde_json::to_vec(&s).unwrap()).unwrap();
        assert_eq!(again, s);
        // A deployment without multicast says nothing of it, as older servers did.
        let d = PolicyDeployment {
            id: "LAB00001".into(),
            task_sequence: String::new(),
            name: String::new(),
            option: ContentOption::DownloadOnDemand,
            multicast: false,
        };
        assert!(!String::from_utf8(serde_json::to_vec(&d).unwrap())
            .unwrap()
            .contains("multicast"));
    }

    #[test]
    fn unknown_actions_and_values_are_named_never_defaulted() {
        let e = Policy::from_json(br#"{"action":"teleport","reason":"x"}"#).unwrap_err();
        assert!(matches!(&e, PolicyError::UnknownAction(a) if a == "teleport"));
        assert!(e.to_string().contains("\"teleport\""), "{e}");
        let p = Policy::from_json(
            br#"{"action":"run","deployment":{"id":"X","option":"multicast"},
                 "steps":[{"name":"a","action":"fly"}]}"#,
        )
        .unwrap();
        let Policy::Run {
            deployment, steps, ..
        } = p
        else {
            panic!("expected run")
        };
        assert_eq!(
            deployment.option,
            ContentOption::Unknown("multicast".into())
        );
        assert_eq!(steps[0].action, StepAction::Unknown("fly".into()));
        assert!(Policy::from_json(b"{}").is_err());
    }

    #[test]
    fn a_secret_step_is_shown_masked_and_its_value_is_masked_in_any_text() {
        let mut s = Step::new("join", StepAction::SetVariable);
        s.variable = Some("DomainPassword".into());
        s.value = Some("hunter2-long".into());
        assert_eq!(s.masked(), s, "not secret: shown as it is");
        assert!(!String::from_utf8(serde_json::to_vec(&s).unwrap())
            .unwrap()
            .contains("secret"));
        s.secret = true;
        assert_eq!(s.masked().value.as_deref(), Some(MASK));
        let json = serde_json::to_string(&s).unwrap();
        let back: Step = serde_json::from_str(&json).unwrap();
        assert!(back.secret && back.value.as_deref() == Some("hunter2-long"));
        let secrets = vec![
            "hunter2".to_owned(),
            "hunter2-long".to_owned(),
            String::new(),
        ];
        assert_eq!(
            mask_secrets("net use x: /p:hunter2-long and hunter2", &secrets),
            format!("net use x: /p:{MASK} and {MASK}")
        );
        assert_eq!(mask_secrets("nothing here", &secrets), "nothing here");
    }

    #[test]
    fn an_unknown_variant_is_never_written() {
        assert!(Policy::Unknown.to_json().is_err());
    }
}
