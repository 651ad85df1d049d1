//! The contract between the server and the agent: every policy the server can send is
//! encoded by the server's code and read by the agent's, and every status message the agent
//! can send is encoded by the agent's code and checked by the server's. Both sides use the
//! types of `netdeploy-wire`; these properties catch a side that stops acting on a value the
//! other produces (as when the server sent a menu and the agent refused "menu").

use netdeploy::policy::{
    ContentOption, MenuEntry, Policy, PolicyDeployment, PolicyFile, Purpose, Step, StepAction,
};
use netdeploy_agent::policy::{self as agent_policy, Policy as AgentPolicy};
use netdeploy_agent::status::{StatusKind, StatusMessage};
use netdeploy_wire::{Mac, Sha256Hex, SmbiosUuid};
use proptest::prelude::*;

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,24}"
}

fn known<T: Clone + std::fmt::Debug + 'static>(all: &'static [T]) -> impl Strategy<Value = T> {
    proptest::sample::select(all)
}

fn step() -> impl Strategy<Value = Step> {
    let opt = || proptest::option::of(text());
    (
        text(),
        known(StepAction::KNOWN),
        (opt(), opt(), opt()),
        (opt(), opt(), opt(), any::<bool>()),
    )
        .prop_map(
            |(name, action, (package, command, file), (target, variable, value, secret))| Step {
                name,
                action,
                package,
                command,
                file,
                target,
                variable,
                value,
                secret,
                sealed: None,
                disk: None,
                layout: None,
                partition: None,
                filesystem: None,
            },
        )
}

fn file() -> impl Strategy<Value = PolicyFile> {
    (
        "[a-z0-9_.-]{1,12}(/[a-z0-9_.-]{1,12}){0,2}",
        any::<u64>(),
        any::<[u8; 32]>(),
        proptest::option::of(text()),
    )
        .prop_map(|(path, size, sha, url)| PolicyFile {
            path,
            size,
            sha256: Sha256Hex(sha),
            url,
        })
}

fn deployment() -> impl Strategy<Value = PolicyDeployment> {
    (
        "[A-Z]{3}[0-9]{5}",
        text(),
        text(),
        known(ContentOption::KNOWN),
        any::<bool>(),
    )
        .prop_map(
            |(id, task_sequence, name, option, multicast)| PolicyDeployment {
                id,
                task_sequence,
                name,
                option,
                multicast,
            },
        )
}

fn menu_entry() -> impl Strategy<Value = MenuEntry> {
    ("[A-Z]{3}[0-9]{5}", text(), known(Purpose::KNOWN)).prop_map(|(id, name, purpose)| MenuEntry {
        id,
        name,
        purpose,
    })
}

/// Every policy the server builds: run, menu and none.
fn server_policy() -> impl Strategy<Value = Policy> {
    prop_oneof![
        (
            text(),
            deployment(),
            proptest::collection::vec(step(), 0..6),
            proptest::collection::btree_map(
                "[a-z0-9]{1,8}",
                proptest::collection::vec(file(), 0..4),
                0..4
            ),
            proptest::collection::vec(text(), 0..3),
            0usize..64,
        )
            .prop_map(
                |(reason, deployment, steps, packages, warnings, resume_at)| Policy::Run {
                    reason,
                    deployment,
                    steps,
                    packages,
                    warnings,
                    resume_at,
                }
            ),
        (text(), proptest::collection::vec(menu_entry(), 0..6))
            .prop_map(|(reason, entries)| Policy::Menu { reason, entries }),
        text().prop_map(|reason| Policy::None { reason }),
    ]
}

/// Every status message the agent sends: a known kind, and the machine's MAC and/or a real
/// (not placeholder) SMBIOS UUID.
fn agent_status() -> impl Strategy<Value = StatusMessage> {
    let opt = || proptest::option::of(text());
    let uuid = any::<[u8; 16]>()
        .prop_map(SmbiosUuid)
        .prop_filter("a placeholder UUID identifies nothing", |u| {
            !u.is_placeholder()
        });
    let identity = prop_oneof![
        any::<[u8; 6]>().prop_map(|m| (Some(Mac(m)), None)),
        uuid.clone().prop_map(|u| (None, Some(u))),
        (any::<[u8; 6]>(), uuid).prop_map(|(m, u)| (Some(Mac(m)), Some(u))),
    ];
    (
        known(StatusKind::KNOWN),
        identity,
        (opt(), opt(), opt(), opt()),
        (
            proptest::option::of(any::<usize>()),
            proptest::option::of(any::<bool>()),
            proptest::option::of(any::<i32>()),
            proptest::option::of(any::<i64>()),
        ),
    )
        .prop_map(
            |(kind, (mac, uuid), (deployment, step, file, reason), (step_index, ok, code, at))| {
                // The agent's `rebooting` always names its deployment and its reboot step
                // (boot/agent/src/agent.rs): the server needs both to continue the run.
                let rebooting = kind == StatusKind::Rebooting;
                let deployment = deployment.or_else(|| rebooting.then(|| "LAB00001".into()));
                let step_index = step_index.or(rebooting.then_some(1));
                StatusMessage {
                    kind,
                    mac,
                    uuid,
                    deployment,
                    step,
                    step_index,
                    ok,
                    file,
                    reason,
                    code,
                    at,
                }
            },
        )
}

proptest! {
    #[test]
    fn every_policy_the_server_sends_is_one_the_agent_acts_on(p in server_policy()) {
        let json = netdeploy::policy::encode(&p);
        let read = agent_policy::parse(&json);
        let read = match read {
            Ok(r) => r,
            Err(e) => return Err(TestCaseError::fail(format!("{e}: {}", String::from_utf8_lossy(&json)))),
        };
        match (p, read) {
            (Policy::Run { reason, deployment, steps, packages, warnings, resume_at }, AgentPolicy::Run(r)) => {
                prop_assert_eq!(r.resume_at, resume_at);
                prop_assert_eq!(&r.option, &deployment.option);
                prop_assert_eq!(r.reason, reason);
                prop_assert_eq!(r.deployment, deployment);
                prop_assert_eq!(r.steps, steps);
                prop_assert_eq!(r.packages, packages);
                prop_assert_eq!(r.warnings, warnings);
            }
            (Policy::Menu { reason, entries }, AgentPolicy::Menu { reason: r, entries: e }) => {
                prop_assert_eq!(r, reason);
                prop_assert_eq!(e, entries);
            }
            (Policy::None { reason }, AgentPolicy::Nothing { reason: r }) => {
                prop_assert_eq!(r, reason);
            }
            (sent, read) => {
                return Err(TestCaseError::fail(format!("sent {sent:?}, the agent read {read:?}")));
            }
        }
    }

    #[test]
    fn every_status_message_the_agent_sends_is_one_the_server_records(m in agent_status()) {
        let json = m.to_json().unwrap();
        let raw: serde_json::Value = serde_json::from_slice(&json).unwrap();
        let checked = netdeploy::bootpath::parse_agent_status(raw.clone());
        let checked = match checked {
            Ok(c) => c,
            Err(e) => return Err(TestCaseError::fail(format!("{e}: {raw}"))),
        };
        prop_assert_eq!(checked.kind, m.kind);
        prop_assert_eq!(checked.machine.mac, m.mac);
        prop_assert_eq!(checked.machine.uuid, m.uuid);
        prop_assert_eq!(checked.deployment, m.deployment);
        prop_assert_eq!(checked.at, m.at);
        prop_assert_eq!(checked.body, raw);
    }
}

#[test]
fn the_servers_menu_reaches_the_agent_as_a_menu() {
    let menu = Policy::Menu {
        reason: "available deployments only: choose one (rule 6)".into(),
        entries: vec![MenuEntry {
            id: "LAB00002".into(),
            name: "Say hello".into(),
            purpose: Purpose::Available,
        }],
    };
    let json = netdeploy::policy::encode(&menu);
    assert!(matches!(
        agent_policy::parse(&json).unwrap(),
        AgentPolicy::Menu { entries, .. } if entries[0].id == "LAB00002"
    ));
}

#[test]
fn a_status_kind_from_a_newer_agent_is_refused_by_name() {
    let mut m = StatusMessage::new(StatusKind::Unknown("paused".into()));
    m.mac = Some(Mac([0x52, 0x54, 0, 0, 0, 1]));
    let raw = serde_json::from_slice(&m.to_json().unwrap()).unwrap();
    let e = netdeploy::bootpath::parse_agent_status(raw).unwrap_err();
    assert!(e.contains("\"paused\" is not one of started, step"), "{e}");
}
