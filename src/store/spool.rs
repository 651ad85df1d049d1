//! What a server records while its shared database (PostgreSQL, docs/fleet.md) is unreachable:
//! status messages, loop-guard records, attempts and ended runs, kept in order as files in
//! `<data_dir>/spool/` and sent when the database answers again. Nothing is lost, and nothing
//! is recorded twice:
//!
//! - each record is one file, written to a temporary name, synced, then renamed, so a crash
//!   leaves either the whole record or none of it;
//! - a file is removed only after the database committed its record; a crash between the two
//!   sends it again, which changes nothing: loop guards, attempts and ended runs are set, not
//!   added, and a status message carries a unique id the database keeps once.

use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::StatusMessage;

/// One record kept on disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub enum Kept {
    /// A status message; `uid` makes sending it twice record it once.
    Status {
        uid: String,
        message: StatusMessage,
    },
    Guard {
        identity: String,
        deployment: String,
        at: i64,
    },
    Attempt {
        identity: String,
        deployment: String,
        outcome: String,
        at: i64,
    },
    Resume {
        identity: String,
        deployment: String,
        step: usize,
        at: i64,
    },
    ResumeEnded {
        identity: String,
        deployment: String,
    },
    RunIssued {
        digest: String,
        mac: Option<String>,
        uuid: Option<String>,
        deployment: Option<String>,
        issued_at: i64,
        expires_at: i64,
    },
    RunEnded {
        digest: String,
        at: i64,
    },
}

/// The spool directory.
pub struct Spool {
    dir: PathBuf,
    next: AtomicU64,
    len: AtomicUsize,
    /// One drain at a time, in order.
    draining: Mutex<()>,
}

impl Spool {
    /// Opens (creating) the spool in `dir`; records left by an earlier run are kept.
    pub fn open(dir: &Path) -> io::Result<Spool> {
        std::fs::create_dir_all(dir)?;
        let mut last = 0;
        let mut len = 0;
        for e in std::fs::read_dir(dir)? {
            let name = e?.file_name();
            if let Some(n) = seq_of(&name.to_string_lossy()) {
                last = last.max(n);
                len += 1;
            }
        }
        Ok(Spool {
            dir: dir.to_owned(),
            next: AtomicU64::new(last + 1),
            len: AtomicUsize::new(len),
            draining: Mutex::new(()),
        })
    }

    /// Where the records are.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How many records wait.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keeps one record, durably, after every record kept before it.
    pub fn keep(&self, k: &Kept) -> io::Result<()> {
        let seq = self.next.fetch_add(1, Ordering::AcqRel);
        let name = format!("{seq:020}.json");
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(k).map_err(io::Error::other)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, self.dir.join(&name))?;
        std::fs::File::open(&self.dir)?.sync_all()?;
        self.len.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// Sends the records in order with `send`, removing each once sent; stops at the first
    /// that fails and returns how many were sent, with that failure. A file that does not
    /// decode (damaged) is moved aside to `<name>.bad` and logged, not retried forever.
    pub fn drain<E>(&self, mut send: impl FnMut(&Kept) -> Result<(), E>) -> (usize, Option<E>) {
        let _one = self.draining.lock().unwrap_or_else(|p| p.into_inner());
        let mut names: Vec<(u64, PathBuf)> = match std::fs::read_dir(&self.dir) {
            Ok(d) => d
                .flatten()
                .filter_map(|e| {
                    let n = seq_of(&e.file_name().to_string_lossy())?;
                    Some((n, e.path()))
                })
                .collect(),
            Err(e) => {
                tracing::error!(dir = %self.dir.display(), error = %e, "cannot read the spool");
                return (0, None);
            }
        };
        names.sort();
        let mut sent = 0;
        for (_, path) in names {
            let record = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<Kept>(&b).map_err(|e| e.to_string()));
            match record {
                Ok(k) => {
                    if let Err(e) = send(&k) {
                        return (sent, Some(e));
                    }
                    sent += 1;
                }
                Err(e) => {
                    let mut bad = path.clone().into_os_string();
                    bad.push(".bad");
                    tracing::error!(file = %path.display(), error = %e, "a spooled record does not decode; moved aside");
                    let _ = std::fs::rename(&path, &bad);
                }
            }
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::error!(file = %path.display(), error = %e, "cannot remove a sent record");
            }
            self.len.fetch_sub(1, Ordering::AcqRel);
        }
        (sent, None)
    }
}

fn seq_of(name: &str) -> Option<u64> {
    name.strip_suffix(".json")?.parse().ok()
}

/// A new unique id for a status message kept here.
pub fn new_uid() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the system has randomness");
    netdeploy_wire::hex::encode(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(n: i64) -> Kept {
        Kept::Guard {
            identity: format!("mac:{n}"),
            deployment: "LAB00001".into(),
            at: n,
        }
    }

    #[test]
    fn records_come_back_in_order_once_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let s = Spool::open(dir.path()).unwrap();
        for n in 0..5 {
            s.keep(&guard(n)).unwrap();
        }
        drop(s);
        let s = Spool::open(dir.path()).unwrap();
        assert_eq!(s.len(), 5);
        s.keep(&guard(5)).unwrap();
        // The database fails at the fourth: three are sent and removed, the rest wait.
        let mut seen = Vec::new();
        let (sent, err) = s.drain(|k| {
            if seen.len() == 3 {
                return Err("unreachable");
            }
            seen.push(k.clone());
            Ok(())
        });
        assert_eq!((sent, err), (3, Some("unreachable")));
        assert_eq!(seen, vec![guard(0), guard(1), guard(2)]);
        assert_eq!(s.len(), 3);
        let mut rest = Vec::new();
        let (sent, err) = s.drain(|k| {
            rest.push(k.clone());
            Ok::<(), ()>(())
        });
        assert_eq!((sent, err), (3, None));
        assert_eq!(rest, vec![guard(3), guard(4), guard(5)]);
        assert!(s.is_empty());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_damaged_record_is_moved_aside_and_the_others_are_sent() {
        let dir = tempfile::tempdir().unwrap();
        let s = Spool::open(dir.path()).unwrap();
        s.keep(&guard(1)).unwrap();
        std::fs::write(dir.path().join("00000000000000000002.json"), b"{not json").unwrap();
        let s = Spool::open(dir.path()).unwrap();
        s.keep(&guard(3)).unwrap();
        let mut seen = Vec::new();
        let (sent, _) = s.drain(|k| {
            seen.push(k.clone());
            Ok::<(), ()>(())
        });
        assert_eq!((sent, seen), (2, vec![guard(1), guard(3)]));
        assert!(dir.path().join("00000000000000000002.json.bad").exists());
    }
}
