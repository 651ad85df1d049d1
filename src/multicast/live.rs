//! What a session looks like while it runs and after it ended: its members and their
//! progress, its rate, bytes and repairs. The sender writes it, the status page reads it, and
//! the session manager adds members to it. One lock guards it, so that a machine added as the
//! session decides to end is either counted or sent to a new session, never lost.

use std::collections::BTreeMap;
use std::net::SocketAddrV4;
use std::sync::Mutex;

use serde::Serialize;

/// A session's fixed facts.
#[derive(Debug, Clone, Serialize)]
pub struct SessionInfo {
    pub session: u32,
    pub group: SocketAddrV4,
    pub package: String,
    pub file: String,
    /// Of the index the session sends.
    pub index_sha256: netdeploy_wire::Sha256Hex,
    pub chunks: u32,
    pub compressed_bytes: u64,
    /// Unix seconds.
    pub started_at: i64,
}

/// Where a session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Waiting for the join window to close before the first data.
    #[default]
    Joining,
    Sending,
    Ended,
    /// Ended by its timeout with machines still missing chunks (they continue over HTTP).
    TimedOut,
}

/// One machine of a session.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Member {
    /// The machine the server gave this receiver id to; `None` for a receiver that came
    /// without asking (`netdeploy-agent multicast-apply` from a shell).
    pub machine: Option<String>,
    /// Chunks it holds, as its last request said (0 before its first).
    pub chunks_held: u32,
    /// It has sent a request.
    pub heard: bool,
    pub done: bool,
    pub fell_back: bool,
    /// The loss its last request reported, in thousandths.
    pub loss_permille: u16,
}

/// What changes while a session runs.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LiveState {
    pub phase: Phase,
    /// Bytes per second.
    pub rate: u64,
    /// UDP payload bytes this session sent to its group.
    pub bytes_sent: u64,
    pub datagrams: u64,
    /// DATA datagrams that sent a block again, for receivers that missed it.
    pub repairs: u64,
    pub requests: u64,
    /// By receiver id.
    pub members: BTreeMap<u32, Member>,
    /// Unix seconds.
    pub ended_at: Option<i64>,
}

/// A session as the status page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SessionView {
    #[serde(flatten)]
    pub info: SessionInfo,
    #[serde(flatten)]
    pub state: LiveState,
}

/// The shared view of one session.
#[derive(Debug)]
pub struct Live {
    pub info: SessionInfo,
    state: Mutex<LiveState>,
}

impl Live {
    pub fn new(info: SessionInfo) -> Live {
        Live {
            info,
            state: Mutex::new(LiveState::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LiveState> {
        // A panic while holding it leaves counters, never a broken invariant.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes the state under the lock.
    pub fn update<R>(&self, f: impl FnOnce(&mut LiveState) -> R) -> R {
        f(&mut self.lock())
    }

    /// Adds `machine` as receiver `receiver`, unless the session has ended: then `false`, and
    /// the machine needs another session.
    pub fn admit(&self, receiver: u32, machine: &str) -> bool {
        let mut s = self.lock();
        if matches!(s.phase, Phase::Ended | Phase::TimedOut) {
            return false;
        }
        s.members.entry(receiver).or_default().machine = Some(machine.to_owned());
        true
    }

    /// Ends the session if `over` says so of its state: decided under the lock, so that no
    /// machine is admitted in between.
    pub fn end_if(&self, now: i64, over: impl FnOnce(&LiveState) -> Option<Phase>) -> bool {
        let mut s = self.lock();
        match over(&s) {
            Some(phase) => {
                s.phase = phase;
                s.ended_at = Some(now);
                true
            }
            None => false,
        }
    }

    pub fn is_ended(&self) -> bool {
        matches!(self.lock().phase, Phase::Ended | Phase::TimedOut)
    }

    pub fn view(&self) -> SessionView {
        SessionView {
            info: self.info.clone(),
            state: self.lock().clone(),
        }
    }
}

impl LiveState {
    /// Every machine the server admitted has been heard from, and every member is done or
    /// continues over HTTP.
    pub fn all_admitted_finished(&self) -> bool {
        !self.members.is_empty()
            && self
                .members
                .values()
                .all(|m| m.heard && (m.done || m.fell_back))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live() -> Live {
        Live::new(SessionInfo {
            session: 1,
            group: "239.255.77.2:7400".parse().unwrap(),
            package: "img".into(),
            file: "image.ndimg".into(),
            index_sha256: netdeploy_wire::Sha256Hex([7; 32]),
            chunks: 4,
            compressed_bytes: 100,
            started_at: 0,
        })
    }

    #[test]
    fn a_session_ends_only_once_every_admitted_machine_finished_and_then_admits_no_one() {
        let l = live();
        assert!(l.admit(1, "pc-1"));
        assert!(l.admit(2, "pc-2"));
        l.update(|s| {
            let m = s.members.get_mut(&1).unwrap();
            (m.heard, m.done) = (true, true);
        });
        assert!(!l.end_if(5, |s| s.all_admitted_finished().then_some(Phase::Ended)));
        l.update(|s| {
            let m = s.members.get_mut(&2).unwrap();
            (m.heard, m.fell_back) = (true, true);
        });
        assert!(l.end_if(6, |s| s.all_admitted_finished().then_some(Phase::Ended)));
        assert!(l.is_ended());
        assert!(!l.admit(3, "pc-3"), "an ended session takes no one");
        let v = l.view();
        assert_eq!(v.state.ended_at, Some(6));
        assert_eq!(v.state.members[&1].machine.as_deref(), Some("pc-1"));
    }
}
