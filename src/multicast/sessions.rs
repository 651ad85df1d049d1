//! The sessions deployments start (docs/multicast.md, section 1): the first machine that asks
//! for an image starts its session; machines asking for the same image while it runs join
//! it, each with a receiver id of its own, so that the session knows who it waits for and the
//! status page names them. A machine that asks once a session ended starts a new one.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddrV4;
use std::path::Path;
use std::sync::{Arc, Mutex};

use netdeploy_wire::image::Index;
use netdeploy_wire::policy::MulticastSession;
use netdeploy_wire::Sha256Hex;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::live::{Live, SessionInfo, SessionView};
use super::session::{self, SessionImage, SessionOptions};
use super::MulticastConfig;
use crate::content::Library;
use crate::counters::Counters;

/// Ended sessions the status page still shows.
const KEEP_ENDED: usize = 16;

/// Why a session of an image cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("cannot read the image index {path} from the content library: {reason}")]
    Index { path: String, reason: String },
    #[error("no free group in multicast.group_range for another session ({running} are running)")]
    NoGroup { running: usize },
}

/// Reads an image package's index and finds its chunks in the content library: what a
/// session sends. `index` is the index file's path in the package, `sha256` its content hash.
pub fn load_image(lib: &Library, index: &str, sha256: &str) -> Result<SessionImage, JoinError> {
    let err = |reason: String| JoinError::Index {
        path: index.to_owned(),
        reason,
    };
    let path = lib.path_of(sha256).map_err(|e| err(e.to_string()))?;
    let bytes = std::fs::read(&path).map_err(|e| err(e.to_string()))?;
    let decoded = Index::decode(&bytes).map_err(|e| err(e.to_string()))?;
    let chunk_files = decoded
        .chunks
        .iter()
        .map(|c| lib.path_of(&netdeploy_wire::hex::encode(&c.sha256)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if let Some(missing) = chunk_files.iter().find(|p| !Path::new(p).is_file()) {
        return Err(err(format!(
            "the content library lacks chunk {}",
            missing.display()
        )));
    }
    Ok(SessionImage {
        index_sha256: Sha256::digest(&bytes).into(),
        index: decoded,
        chunk_files,
    })
}

/// A random non-zero id.
fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    // Without the system's randomness ids still differ by time, which is all they need.
    if getrandom::fill(&mut b).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.subsec_nanos());
        b = t.to_le_bytes();
    }
    u32::from_le_bytes(b).max(1)
}

#[derive(Default)]
struct Inner {
    /// Running sessions by the SHA-256 of the index they send.
    running: HashMap<[u8; 32], Arc<Live>>,
    ended: VecDeque<Arc<Live>>,
}

/// The server's multicast sessions.
pub struct Sessions {
    config: MulticastConfig,
    counters: Arc<Counters>,
    cancel: CancellationToken,
    inner: Mutex<Inner>,
}

impl Sessions {
    pub fn new(config: MulticastConfig, counters: Arc<Counters>) -> Sessions {
        Sessions {
            config,
            counters,
            cancel: CancellationToken::new(),
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Moves ended sessions to the ended list.
    fn tidy(inner: &mut Inner) {
        let ended: Vec<[u8; 32]> = inner
            .running
            .iter()
            .filter(|(_, l)| l.is_ended())
            .map(|(k, _)| *k)
            .collect();
        for k in ended {
            if let Some(l) = inner.running.remove(&k) {
                inner.ended.push_front(l);
            }
        }
        inner.ended.truncate(KEEP_ENDED);
    }

    /// Admits `machine` to the running session of `image` (whose index is `file` of
    /// `package`), starting one when none runs. Must be called inside the tokio runtime.
    pub fn join(
        &self,
        package: &str,
        file: &str,
        machine: &str,
        image: impl FnOnce() -> Result<SessionImage, JoinError>,
        index_sha256: [u8; 32],
    ) -> Result<MulticastSession, JoinError> {
        let mut inner = self.lock();
        Self::tidy(&mut inner);
        let receiver = random_u32();
        if let Some(live) = inner.running.get(&index_sha256) {
            if live.admit(receiver, machine) {
                tracing::info!(
                    session = live.info.session,
                    group = %live.info.group,
                    machine,
                    receiver,
                    package,
                    "machine joins the running multicast session"
                );
                return Ok(Self::answer(live, receiver));
            }
        }
        let image = image()?;
        let used: Vec<SocketAddrV4> = inner.running.values().map(|l| l.info.group).collect();
        let (session, group) = (0..64)
            .map(|_| random_u32())
            .map(|s| {
                (
                    s,
                    SocketAddrV4::new(self.config.group_of(s), self.config.port),
                )
            })
            .find(|(_, g)| !used.contains(g))
            .ok_or(JoinError::NoGroup {
                running: used.len(),
            })?;
        let live = Arc::new(Live::new(SessionInfo {
            session,
            group,
            package: package.to_owned(),
            file: file.to_owned(),
            index_sha256: Sha256Hex(image.index_sha256),
            chunks: image.index.chunks.len() as u32,
            compressed_bytes: image.index.compressed_bytes(),
            started_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64),
        }));
        live.admit(receiver, machine);
        let opts = SessionOptions {
            session,
            group,
            source: self.config.source,
            ttl: self.config.ttl,
            min_rate: self.config.min_rate,
            max_rate: self.config.max_rate,
            receivers: None,
            join_window: self.config.join_window,
            start_with: self.config.wait_for_machines,
            timeout: self.config.session_timeout,
        };
        tracing::info!(
            session,
            %group,
            machine,
            receiver,
            package,
            file,
            join_window_s = self.config.join_window.as_secs(),
            wait_for_machines = self.config.wait_for_machines,
            "multicast session started for a deployment"
        );
        let (counters, cancel, running) = (
            self.counters.clone(),
            self.cancel.child_token(),
            live.clone(),
        );
        tokio::spawn(async move {
            if let Err(e) = session::run(&image, &opts, counters, cancel, &running).await {
                tracing::error!(session, error = %e, "multicast session failed; its machines continue over HTTP");
                running.end_if(0, |_| Some(super::live::Phase::Ended));
            }
        });
        let answer = Self::answer(&live, receiver);
        inner.running.insert(index_sha256, live);
        Ok(answer)
    }

    fn answer(live: &Live, receiver: u32) -> MulticastSession {
        MulticastSession {
            session: live.info.session,
            group: live.info.group,
            receiver,
            index_sha256: live.info.index_sha256,
        }
    }

    /// Running sessions first, then the most recently ended.
    pub fn views(&self) -> Vec<SessionView> {
        let mut inner = self.lock();
        Self::tidy(&mut inner);
        let mut running: Vec<_> = inner.running.values().map(|l| l.view()).collect();
        running.sort_by_key(|v| std::cmp::Reverse(v.info.started_at));
        running.extend(inner.ended.iter().map(|l| l.view()));
        running
    }

    /// Ends every session (the server stops).
    pub fn shutdown(&self) {
        self.cancel.cancel();
    }
}
