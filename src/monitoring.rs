//! Deployment monitoring (docs/status.md): each machine of a collection in exactly one of five
//! states for a deployment, and failures over time. Pure: the catalog and the status messages
//! in, the summary out; the web page, the JSON endpoints and `netdeploy status` all show this.
//!
//! The state of a machine is read from its messages about the deployment, newest last:
//! - a run started (`pxe-start` from the server, `started` or `step` from the agent) after its
//!   last end: In progress;
//! - else its last end (`succeeded` / `failed`): Compliant / Failed;
//! - else it was offered the deployment (`offered`: a menu listed it), was told it has none
//!   (`no-deployment`), or was refused it (`requirements-not-met`: wrong architecture, loop
//!   guard, rerun behaviour): Non-compliant, with the reason of the refusal;
//! - else: Unknown.
//!
//! A run that has not ended but whose machine was refused since (a power cut, then the loop
//! guard or the rerun behaviour) is Non-compliant too, not In progress for ever.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::catalog::{Catalog, Collection, CollectionKind, Device, IdentityKey};
use crate::store::StatusMessage;

/// The five states, in the order the page shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Compliant,
    InProgress,
    NonCompliant,
    Failed,
    Unknown,
}

impl State {
    pub const ALL: [State; 5] = [
        State::Compliant,
        State::InProgress,
        State::NonCompliant,
        State::Failed,
        State::Unknown,
    ];

    /// Name shown to operators.
    pub fn label(self) -> &'static str {
        match self {
            State::Compliant => "Compliant",
            State::InProgress => "In progress",
            State::NonCompliant => "Non-compliant",
            State::Failed => "Failed",
            State::Unknown => "Unknown",
        }
    }
}

/// One machine's state and the last message behind it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MachineState {
    /// Device name, or the identity of an unknown computer.
    pub machine: String,
    pub state: State,
    /// Why a Non-compliant machine is so, when its requirements were not met (wrong
    /// architecture, loop guard, rerun behaviour): the rule and the reason the server gave.
    pub reason: Option<String>,
    /// Its MACs and SMBIOS UUID as declared, or the identity an unknown computer sent.
    pub addresses: Vec<String>,
    pub last: Option<StatusMessage>,
    /// The path the machine's newest image took, as its step said it (`path multicast: 12
    /// chunks by multicast, 0 over HTTP`), for deployments that apply images.
    pub path: Option<String>,
}

/// A deployment's states over one collection.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub deployment: String,
    pub collection: String,
    pub counts: BTreeMap<State, usize>,
    pub machines: Vec<MachineState>,
}

/// The kind of the server's message that a machine may not run a deployment that targets it.
pub const REQUIREMENTS_NOT_MET: &str = "requirements-not-met";

/// The state of a machine from its messages about one deployment, arrival order, and the
/// reason when its requirements were not met.
fn state_of(messages: &[&StatusMessage]) -> (State, Option<String>) {
    let last_end = messages
        .iter()
        .rposition(|m| matches!(m.kind.as_str(), "succeeded" | "failed"));
    let last_start = messages.iter().rposition(|m| {
        matches!(
            m.kind.as_str(),
            "pxe-start" | "started" | "step" | "rebooting"
        )
    });
    let last_unmet = messages
        .iter()
        .rposition(|m| m.kind == REQUIREMENTS_NOT_MET);
    let unmet = |i: usize| {
        let body = &messages[i].body;
        let text = |k: &str| body.get(k).and_then(|v| v.as_str()).unwrap_or("");
        Some(format!(
            "{} ({}): {}",
            text("rule"),
            text("requirement"),
            text("reason")
        ))
    };
    // A run that has not ended is in progress, unless the machine came back and was refused
    // since (a power cut, then the loop guard or rerun behaviour): then it is not met.
    let running = |s: usize| match last_unmet {
        Some(u) if u > s => (State::NonCompliant, unmet(u)),
        _ if messages[s].kind == "rebooting" => (State::InProgress, restarting(messages[s])),
        _ => (State::InProgress, None),
    };
    match (last_start, last_end) {
        (Some(s), Some(e)) if s > e => running(s),
        (Some(s), None) => running(s),
        // The last run's end stands: a refused rerun does not undo it.
        (_, Some(e)) if messages[e].kind == "succeeded" => (State::Compliant, None),
        (_, Some(_)) => (State::Failed, None),
        (None, None) => match last_unmet {
            Some(u) => (State::NonCompliant, unmet(u)),
            None if messages
                .iter()
                .any(|m| matches!(m.kind.as_str(), "offered" | "no-deployment")) =>
            {
                (State::NonCompliant, None)
            }
            None => (State::Unknown, None),
        },
    }
}

/// The path the newest image of these messages took: the `reason` of the newest step that
/// succeeded and says `path ...`.
fn image_path(messages: &[&StatusMessage]) -> Option<String> {
    messages.iter().rev().find_map(|m| {
        let ok = m.body.get("ok").and_then(|v| v.as_bool()).unwrap_or(true);
        let reason = m.body.get("reason").and_then(|v| v.as_str())?;
        (m.kind == "step" && ok && reason.starts_with("path ")).then(|| reason.to_owned())
    })
}

/// What a `rebooting` message means for a person: the machine restarts in the middle of the
/// task sequence and continues at the step after the `reboot` step (1-based, as the agent's
/// console counts).
pub fn restarting(m: &StatusMessage) -> Option<String> {
    let k = m.body.get("step_index")?.as_u64()?;
    Some(format!(
        "restarting: the task sequence continues at step {}",
        k + 2
    ))
}

/// States of every machine of `collection` for `deployment`. `messages` in arrival order.
/// For Unknown Computers the machines are the unknown identities the messages name.
pub fn summarize(
    catalog: &Catalog,
    deployment: &str,
    collection: &str,
    messages: &[StatusMessage],
) -> Option<Summary> {
    let col = catalog.collection(collection)?;
    let about: Vec<&StatusMessage> = messages
        .iter()
        .filter(|m| m.deployment.as_deref() == Some(deployment))
        .collect();
    let mut machines = Vec::new();
    if matches!(col.kind, CollectionKind::UnknownComputers) {
        let mut by_identity: BTreeMap<&str, Vec<&StatusMessage>> = BTreeMap::new();
        for m in &about {
            if let (None, Some(id)) = (&m.device, &m.identity) {
                by_identity.entry(id.as_str()).or_default().push(m);
            }
        }
        for (id, ms) in by_identity {
            let (state, reason) = state_of(&ms);
            machines.push(MachineState {
                machine: id.to_owned(),
                state,
                reason,
                addresses: vec![id.to_owned()],
                last: ms.last().map(|m| (*m).clone()),
                path: image_path(&ms),
            });
        }
    } else {
        for d in catalog.members(col) {
            let keys = identity_keys(d);
            let ms: Vec<&StatusMessage> = about
                .iter()
                .copied()
                .filter(|m| is_about_device(m, d, &keys))
                .collect();
            let (state, reason) = state_of(&ms);
            machines.push(MachineState {
                machine: d.name.clone(),
                state,
                reason,
                addresses: d
                    .macs
                    .iter()
                    .map(|m| m.to_string())
                    .chain(d.uuid.map(|u| u.to_string()))
                    .collect(),
                last: ms.last().map(|m| (*m).clone()),
                path: image_path(&ms),
            });
        }
    }
    let mut counts: BTreeMap<State, usize> = State::ALL.iter().map(|s| (*s, 0)).collect();
    for m in &machines {
        *counts.entry(m.state).or_default() += 1;
    }
    Some(Summary {
        deployment: deployment.to_owned(),
        collection: collection.to_owned(),
        counts,
        machines,
    })
}

fn identity_keys(d: &Device) -> Vec<String> {
    d.identity_keys()
        .iter()
        .map(IdentityKey::to_string)
        .collect()
}

/// Whether a message is about device `d` (`keys`: its identity keys), by name or identity.
fn is_about_device(m: &StatusMessage, d: &Device, keys: &[String]) -> bool {
    m.device.as_deref() == Some(d.name.as_str())
        || m.identity.as_ref().is_some_and(|i| keys.contains(i))
}

/// The messages about machines of `collection`: its member devices, or for Unknown Computers
/// the machines that matched no device. Section 8 scopes every summary, the failures over time
/// included, to the chosen collection.
pub fn scoped<'a>(
    catalog: &Catalog,
    collection: &Collection,
    messages: impl IntoIterator<Item = &'a StatusMessage>,
) -> Vec<&'a StatusMessage> {
    if matches!(collection.kind, CollectionKind::UnknownComputers) {
        let known: Vec<String> = catalog.devices.iter().flat_map(identity_keys).collect();
        return messages
            .into_iter()
            .filter(|m| {
                m.device.is_none() && m.identity.as_ref().is_some_and(|i| !known.contains(i))
            })
            .collect();
    }
    let members: Vec<(&Device, Vec<String>)> = catalog
        .members(collection)
        .into_iter()
        .map(|d| (d, identity_keys(d)))
        .collect();
    messages
        .into_iter()
        .filter(|m| members.iter().any(|(d, keys)| is_about_device(m, d, keys)))
        .collect()
}

/// One step of a run as the status messages tell it: the agent reports a step when it ends,
/// so it started when the message before it arrived.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepRecord {
    /// The step's name, as the task sequence names it.
    pub name: String,
    pub started_at: i64,
    pub ended_at: i64,
    /// True when the step succeeded.
    pub ok: bool,
    /// `ok`, or the failure reason (with the exit code and file when given).
    pub message: String,
}

/// One run of a deployment on a machine: from its start (the PXE script, or the agent's
/// `started`) to its end, if it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Run {
    pub started_at: i64,
    pub ended_at: Option<i64>,
    /// `succeeded` or `failed` once it ended.
    pub outcome: Option<String>,
    /// How it started: `pxe` when the server started it, `agent` when the boot environment
    /// reported the start first (boot media).
    pub via: String,
    pub steps: Vec<StepRecord>,
}

/// The runs of one deployment on one machine, from its messages about that deployment in
/// arrival order.
pub fn runs(messages: &[&StatusMessage]) -> Vec<Run> {
    let mut out: Vec<Run> = Vec::new();
    let mut open: Option<Run> = None;
    let mut last_at = 0;
    // The run restarted the machine mid-sequence: the next start continues it.
    let mut restarted = false;
    let new_run = |at: i64, via: &str| Run {
        started_at: at,
        ended_at: None,
        outcome: None,
        via: via.to_owned(),
        steps: Vec::new(),
    };
    for m in messages {
        let text = |k: &str| m.body.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        match m.kind.as_str() {
            "pxe-start" if restarted && open.is_some() => {}
            "pxe-start" => {
                out.extend(open.take());
                open = Some(new_run(m.at, "pxe"));
            }
            // The agent's start of the run the PXE script began is the same run, and so is
            // the start after a restart in the middle of the task sequence.
            "started" => {
                let same = open.as_ref().is_some_and(|r| {
                    (r.via == "pxe" && r.steps.is_empty()) || std::mem::take(&mut restarted)
                });
                if !same {
                    out.extend(open.take());
                    open = Some(new_run(m.at, "agent"));
                }
            }
            "step" => {
                let run = open.get_or_insert_with(|| new_run(last_at.min(m.at), "agent"));
                let ok = m.body.get("ok").and_then(|v| v.as_bool()).unwrap_or(true);
                run.steps.push(StepRecord {
                    name: text("step").unwrap_or_default(),
                    started_at: last_at.max(run.started_at),
                    ended_at: m.at,
                    ok,
                    // A step that succeeded may say how it went (the path an image took).
                    message: if ok {
                        text("reason").map_or_else(|| "ok".into(), |r| format!("ok: {r}"))
                    } else {
                        text("reason").unwrap_or_default()
                    },
                });
            }
            "rebooting" => {
                let run = open.get_or_insert_with(|| new_run(last_at.min(m.at), "agent"));
                run.steps.push(StepRecord {
                    name: text("step").unwrap_or_default(),
                    started_at: last_at.max(run.started_at),
                    ended_at: m.at,
                    ok: true,
                    message: restarting(m).unwrap_or_else(|| "restarting".into()),
                });
                restarted = true;
            }
            "succeeded" | "failed" => {
                restarted = false;
                let mut run = open
                    .take()
                    .unwrap_or_else(|| new_run(last_at.min(m.at), "agent"));
                if m.kind == "failed" {
                    let mut message = text("reason").unwrap_or_else(|| "failed".into());
                    if let Some(code) = m.body.get("code").filter(|c| !c.is_null()) {
                        message.push_str(&format!(" (exit code {code})"));
                    }
                    if let Some(file) = text("file") {
                        message.push_str(&format!(" (file {file})"));
                    }
                    if let Some(step) = text("step") {
                        run.steps.push(StepRecord {
                            name: step,
                            started_at: last_at.max(run.started_at),
                            ended_at: m.at,
                            ok: false,
                            message,
                        });
                    }
                }
                run.ended_at = Some(m.at);
                run.outcome = Some(m.kind.clone());
                out.push(run);
            }
            _ => {}
        }
        last_at = m.at;
    }
    out.extend(open);
    out
}

/// Everything the page of one machine shows for one deployment.
#[derive(Debug, Clone, Serialize)]
pub struct MachineDetail {
    pub deployment: String,
    pub state: MachineState,
    /// Every run of the deployment on the machine, oldest first.
    pub runs: Vec<Run>,
    /// Every status message about the machine, any deployment, in order.
    pub messages: Vec<StatusMessage>,
}

/// The detail of `machine` (a device name, or an unknown computer's identity) for
/// `deployment`, over `collection`; `None` when the collection does not hold it.
pub fn machine_detail(
    catalog: &Catalog,
    deployment: &str,
    collection: &str,
    machine: &str,
    messages: &[StatusMessage],
) -> Option<MachineDetail> {
    let summary = summarize(catalog, deployment, collection, messages)?;
    let state = summary
        .machines
        .into_iter()
        .find(|m| m.machine == machine)?;
    let about: Vec<&StatusMessage> = match catalog.device(machine) {
        Some(d) => {
            let keys = identity_keys(d);
            messages
                .iter()
                .filter(|m| is_about_device(m, d, &keys))
                .collect()
        }
        None => messages
            .iter()
            .filter(|m| m.device.is_none() && m.identity.as_deref() == Some(machine))
            .collect(),
    };
    let of_deployment: Vec<&StatusMessage> = about
        .iter()
        .copied()
        .filter(|m| m.deployment.as_deref() == Some(deployment))
        .collect();
    Some(MachineDetail {
        deployment: deployment.to_owned(),
        state,
        runs: runs(&of_deployment),
        messages: about.into_iter().cloned().collect(),
    })
}

/// Failures per period (`bucket` seconds: 86400 per day, 3600 per hour) from `from` up to
/// `to`, optionally of one deployment: `(period start, count)`, every period listed.
pub fn failures_over_time<'a>(
    messages: impl IntoIterator<Item = &'a StatusMessage>,
    deployment: Option<&str>,
    from: i64,
    to: i64,
    bucket: i64,
) -> Vec<(i64, usize)> {
    let start = from - from.rem_euclid(bucket);
    let n = ((to - start) / bucket + 1).clamp(0, 10_000) as usize;
    let mut out: Vec<(i64, usize)> = (0..n).map(|i| (start + i as i64 * bucket, 0)).collect();
    for m in messages {
        if m.kind != "failed"
            || m.at < from
            || m.at > to
            || (deployment.is_some() && m.deployment.as_deref() != deployment)
        {
            continue;
        }
        let i = ((m.at - start) / bucket) as usize;
        if let Some(slot) = out.get_mut(i) {
            slot.1 += 1;
        }
    }
    out
}

/// `YYYY-MM-DD HH:MM` in UTC, without a time zone library (civil-from-days).
pub fn format_time(t: i64) -> String {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::site::builtin_collections;
    use crate::catalog::{Collection, Device};

    fn msg(
        seq: i64,
        kind: &str,
        device: Option<&str>,
        identity: &str,
        deployment: &str,
        at: i64,
    ) -> StatusMessage {
        StatusMessage {
            seq,
            at,
            source: "agent".into(),
            kind: kind.into(),
            identity: Some(identity.into()),
            device: device.map(Into::into),
            deployment: Some(deployment.into()),
            body: serde_json::Value::Null,
        }
    }

    fn catalog() -> Catalog {
        let dev = |n: &str, mac: &str| Device {
            name: n.into(),
            macs: vec![mac.parse().unwrap()],
            uuid: None,
            server: false,
            site_system: false,
        };
        let mut c = Catalog {
            devices: vec![
                dev("a", "52:54:00:00:00:01"),
                dev("b", "52:54:00:00:00:02"),
                dev("c", "52:54:00:00:00:03"),
                dev("d", "52:54:00:00:00:04"),
                dev("e", "52:54:00:00:00:05"),
            ],
            collections: builtin_collections(),
            ..Catalog::default()
        };
        c.collections.push(Collection {
            id: "lab".into(),
            name: "lab".into(),
            kind: CollectionKind::Custom {
                members: vec!["a".into(), "b".into(), "c".into(), "d".into(), "e".into()],
            },
        });
        c.collections.push(Collection {
            id: "two".into(),
            name: "two".into(),
            kind: CollectionKind::Custom {
                members: vec!["a".into(), "d".into()],
            },
        });
        c
    }

    #[test]
    fn every_machine_is_in_exactly_one_state_per_scope() {
        let c = catalog();
        let ms = vec![
            msg(
                1,
                "started",
                Some("a"),
                "mac:52:54:00:00:00:01",
                "LAB00001",
                10,
            ),
            msg(
                2,
                "succeeded",
                Some("a"),
                "mac:52:54:00:00:00:01",
                "LAB00001",
                20,
            ),
            msg(
                3,
                "started",
                Some("b"),
                "mac:52:54:00:00:00:02",
                "LAB00001",
                10,
            ),
            msg(
                4,
                "failed",
                Some("c"),
                "mac:52:54:00:00:00:03",
                "LAB00001",
                30,
            ),
            msg(
                5,
                "offered",
                Some("d"),
                "mac:52:54:00:00:00:04",
                "LAB00001",
                30,
            ),
            // A rerun after success is in progress again.
            msg(
                6,
                "pxe-start",
                None,
                "mac:52:54:00:00:00:01",
                "LAB00002",
                40,
            ),
            msg(
                7,
                "started",
                Some("x"),
                "mac:52:54:00:00:00:09",
                "LAB00001",
                40,
            ),
            msg(8, "failed", None, "mac:52:54:00:00:00:09", "LAB00001", 50),
        ];
        let s = summarize(&c, "LAB00001", "lab", &ms).unwrap();
        let get = |st| s.counts[&st];
        assert_eq!(
            (
                get(State::Compliant),
                get(State::InProgress),
                get(State::NonCompliant),
                get(State::Failed),
                get(State::Unknown)
            ),
            (1, 1, 1, 1, 1)
        );
        assert_eq!(s.machines.len(), 5);
        // Another scope: a device in two collections counts in each.
        let s2 = summarize(&c, "LAB00001", "two", &ms).unwrap();
        assert_eq!(
            (
                s2.counts[&State::Compliant],
                s2.counts[&State::NonCompliant]
            ),
            (1, 1)
        );
        // Unknown computers are the identities that match no device.
        let u = summarize(&c, "LAB00001", "unknown_computers", &ms).unwrap();
        assert_eq!(u.machines.len(), 1);
        assert_eq!(u.machines[0].state, State::Failed);
    }

    #[test]
    fn failures_over_time_are_scoped_to_the_chosen_collection() {
        let c = catalog();
        let day = 86_400;
        let now = day * 20;
        let ms = vec![
            msg(
                1,
                "failed",
                Some("a"),
                "mac:52:54:00:00:00:01",
                "LAB00001",
                now - 5,
            ),
            msg(
                2,
                "failed",
                Some("c"),
                "mac:52:54:00:00:00:03",
                "LAB00001",
                now - 5,
            ),
            // Device d reported by identity only.
            msg(
                3,
                "failed",
                None,
                "mac:52:54:00:00:00:04",
                "LAB00002",
                now - day,
            ),
            // An unknown computer.
            msg(
                4,
                "failed",
                None,
                "mac:52:54:00:00:00:09",
                "LAB00001",
                now - day,
            ),
        ];
        let total = |scope: Option<&str>| -> usize {
            overview(&c, &ms, scope, None, now, 14)
                .failures
                .iter()
                .map(|f| f.1)
                .sum()
        };
        assert_eq!(total(None), 4);
        assert_eq!(total(Some("two")), 2, "a and d, not c");
        assert_eq!(total(Some("lab")), 3);
        assert_eq!(total(Some("unknown_computers")), 1);
    }

    #[test]
    fn requirements_not_met_is_non_compliant_with_its_reason() {
        let c = catalog();
        let unmet = |seq, device: &str, identity: &str, rule: &str, requirement: &str, at| {
            StatusMessage {
                source: "server".into(),
                body: serde_json::json!({
                    "rule": rule, "requirement": requirement, "reason": format!("{requirement} said no"),
                }),
                ..msg(
                    seq,
                    REQUIREMENTS_NOT_MET,
                    Some(device),
                    identity,
                    "LAB00001",
                    at,
                )
            }
        };
        let ms = vec![
            // a: never ran, its firmware does not fit.
            unmet(
                1,
                "a",
                "mac:52:54:00:00:00:01",
                "rule 5a",
                "architecture",
                10,
            ),
            // b: started, power cut, refused by the loop guard when it came back.
            msg(
                2,
                "pxe-start",
                Some("b"),
                "mac:52:54:00:00:00:02",
                "LAB00001",
                10,
            ),
            unmet(3, "b", "mac:52:54:00:00:00:02", "rule 7", "loop guard", 20),
            // c: failed, then refused a rerun: the failure stands.
            msg(
                4,
                "failed",
                Some("c"),
                "mac:52:54:00:00:00:03",
                "LAB00001",
                10,
            ),
            unmet(
                5,
                "c",
                "mac:52:54:00:00:00:03",
                "rule 7",
                "rerun behaviour",
                20,
            ),
            // d: refused, then cleared and started: in progress.
            unmet(6, "d", "mac:52:54:00:00:00:04", "rule 7", "loop guard", 10),
            msg(
                7,
                "started",
                Some("d"),
                "mac:52:54:00:00:00:04",
                "LAB00001",
                20,
            ),
        ];
        let s = summarize(&c, "LAB00001", "lab", &ms).unwrap();
        let of = |name: &str| s.machines.iter().find(|m| m.machine == name).unwrap();
        assert_eq!(of("a").state, State::NonCompliant);
        assert_eq!(
            of("a").reason.as_deref(),
            Some("rule 5a (architecture): architecture said no")
        );
        assert_eq!(of("b").state, State::NonCompliant);
        assert!(of("b").reason.as_deref().unwrap().contains("loop guard"));
        assert_eq!(
            (of("c").state, of("c").reason.as_deref()),
            (State::Failed, None)
        );
        assert_eq!(
            (of("d").state, of("d").reason.as_deref()),
            (State::InProgress, None)
        );
        assert_eq!(of("e").state, State::Unknown);
    }

    #[test]
    fn a_run_restarting_mid_sequence_is_one_run_in_progress_until_it_ends() {
        let id = "mac:52:54:00:00:00:01";
        let with = |m: StatusMessage, body: serde_json::Value| StatusMessage { body, ..m };
        let mut ms = vec![
            msg(1, "pxe-start", Some("a"), id, "LAB00001", 10),
            msg(2, "started", Some("a"), id, "LAB00001", 12),
            with(
                msg(3, "step", Some("a"), id, "LAB00001", 20),
                serde_json::json!({"step": "one", "ok": true}),
            ),
            with(
                msg(4, "rebooting", Some("a"), id, "LAB00001", 25),
                serde_json::json!({"step": "restart", "step_index": 1}),
            ),
        ];
        let state = |ms: &[StatusMessage]| state_of(&ms.iter().collect::<Vec<_>>());
        assert_eq!(
            state(&ms),
            (
                State::InProgress,
                Some("restarting: the task sequence continues at step 3".into())
            )
        );
        ms.extend([
            msg(5, "pxe-start", Some("a"), id, "LAB00001", 60),
            msg(6, "started", Some("a"), id, "LAB00001", 62),
            with(
                msg(7, "step", Some("a"), id, "LAB00001", 70),
                serde_json::json!({"step": "two", "ok": true}),
            ),
        ]);
        assert_eq!(state(&ms), (State::InProgress, None));
        ms.push(msg(8, "succeeded", Some("a"), id, "LAB00001", 80));
        assert_eq!(state(&ms), (State::Compliant, None));
        let refs: Vec<&StatusMessage> = ms.iter().collect();
        let r = runs(&refs);
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!((r[0].started_at, r[0].ended_at), (10, Some(80)));
        let steps: Vec<(&str, &str)> = r[0]
            .steps
            .iter()
            .map(|s| (s.name.as_str(), s.message.as_str()))
            .collect();
        assert_eq!(
            steps,
            [
                ("one", "ok"),
                (
                    "restart",
                    "restarting: the task sequence continues at step 3"
                ),
                ("two", "ok")
            ]
        );
    }

    #[test]
    fn runs_list_each_step_with_its_start_end_result_and_message() {
        let id = "mac:52:54:00:00:00:01";
        let with = |m: StatusMessage, body: serde_json::Value| StatusMessage { body, ..m };
        let ms = [
            msg(1, "pxe-start", Some("a"), id, "LAB00001", 10),
            msg(2, "started", Some("a"), id, "LAB00001", 12),
            with(
                msg(3, "step", Some("a"), id, "LAB00001", 20),
                serde_json::json!({"step": "hello", "ok": true,
                    "reason": "path multicast: 3 chunks by multicast, 0 over HTTP"}),
            ),
            with(
                msg(4, "failed", Some("a"), id, "LAB00001", 30),
                serde_json::json!({"step": "write", "reason": "disk full", "code": 3}),
            ),
            msg(5, "started", Some("a"), id, "LAB00001", 40),
        ];
        let refs: Vec<&StatusMessage> = ms.iter().collect();
        let r = runs(&refs);
        assert_eq!(r.len(), 2);
        assert_eq!(
            (
                r[0].started_at,
                r[0].ended_at,
                r[0].outcome.as_deref(),
                r[0].via.as_str()
            ),
            (10, Some(30), Some("failed"), "pxe")
        );
        assert_eq!(
            r[0].steps,
            vec![
                StepRecord {
                    name: "hello".into(),
                    started_at: 12,
                    ended_at: 20,
                    ok: true,
                    message: "ok: path multicast: 3 chunks by multicast, 0 over HTTP".into()
                },
                StepRecord {
                    name: "write".into(),
                    started_at: 20,
                    ended_at: 30,
                    ok: false,
                    message: "disk full (exit code 3)".into()
                },
            ]
        );
        assert_eq!((r[1].started_at, r[1].ended_at), (40, None));
        assert_eq!(
            image_path(&refs).as_deref(),
            Some("path multicast: 3 chunks by multicast, 0 over HTTP")
        );
        assert_eq!(image_path(&refs[3..]), None);
    }

    #[test]
    fn failures_are_counted_per_day_with_empty_days_listed() {
        let day = 86_400;
        let ms = vec![
            msg(1, "failed", Some("a"), "m", "LAB00001", day * 10 + 5),
            msg(2, "failed", Some("a"), "m", "LAB00001", day * 10 + 50),
            msg(3, "failed", Some("a"), "m", "LAB00002", day * 12),
            msg(4, "succeeded", Some("a"), "m", "LAB00001", day * 12),
        ];
        let f = failures_over_time(&ms, None, day * 10, day * 12 + 10, day);
        assert_eq!(f, vec![(day * 10, 2), (day * 11, 0), (day * 12, 1)]);
        let f = failures_over_time(&ms, Some("LAB00002"), day * 10, day * 12 + 10, day);
        assert_eq!(f.iter().map(|x| x.1).sum::<usize>(), 1);
    }
}

/// Everything the status page shows, also served as JSON and printed by `netdeploy status`.
#[derive(Debug, Clone, Serialize)]
pub struct Overview {
    /// One summary per deployment, over its own collection or the chosen scope.
    pub deployments: Vec<Summary>,
    /// Failures per period over the chosen span.
    pub failures: Vec<(i64, usize)>,
    /// Seconds per failure period (86400 or 3600).
    pub period: i64,
    /// The newest status messages, newest last.
    pub recent: Vec<StatusMessage>,
    /// The same deployments over the pre-production collection, reported separately.
    pub pre_production: Vec<Summary>,
}

/// Builds the overview at time `now` over the last `days` days (per hour when `days` is 2 or
/// fewer). `scope` replaces each deployment's own collection when given.
/// `pre_production` is the pre-production collection, whose states are reported separately.
pub fn overview(
    catalog: &Catalog,
    messages: &[StatusMessage],
    scope: Option<&str>,
    pre_production: Option<&str>,
    now: i64,
    days: i64,
) -> Overview {
    let mut deployments: Vec<&crate::catalog::Deployment> = catalog.deployments.iter().collect();
    deployments.sort_by_key(|d| std::cmp::Reverse(d.id));
    let summaries = deployments
        .iter()
        .filter_map(|d| {
            summarize(
                catalog,
                &d.id.to_string(),
                scope.unwrap_or(&d.collection),
                messages,
            )
        })
        .collect();
    let period = if days <= 2 { 3600 } else { 86_400 };
    let recent: Vec<StatusMessage> = messages.iter().rev().take(30).rev().cloned().collect();
    let pre_production: Vec<Summary> = pre_production
        .map(|c| {
            deployments
                .iter()
                .filter_map(|d| summarize(catalog, &d.id.to_string(), c, messages))
                .collect()
        })
        .unwrap_or_default();
    let in_scope = match scope.and_then(|c| catalog.collection(c)) {
        Some(c) => scoped(catalog, c, messages.iter().filter(|m| m.kind == "failed")),
        None => messages.iter().collect(),
    };
    Overview {
        deployments: summaries,
        failures: failures_over_time(in_scope, None, now - days * 86_400, now, period),
        period,
        recent,
        pre_production,
    }
}
