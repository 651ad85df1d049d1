//! The embedded database: SQLite (bundled) in WAL mode, behind this module so that a server
//! database can be added later without touching the callers.
//!
//! Catalog objects (devices, collections, packages, boot images, task sequences, deployments,
//! templates) are stored as one JSON document per object, keyed by kind and id: their fields
//! change with the product, the table does not. What the boot path writes often (the PXE loop
//! guard, attempts, status messages) has tables of its own.
//!
//! Durability: every change is one transaction; `synchronous = FULL` with WAL means a committed
//! change survives `kill -9` and power loss, and a crash mid-write leaves the last committed
//! state (SQLite's journal guarantees it). Schema changes are numbered migrations applied at
//! start-up inside one transaction (`PRAGMA user_version`).

pub mod catalog;
pub mod credentials;

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("stored {kind} {id:?} does not decode: {source}")]
    Decode {
        kind: String,
        id: String,
        source: serde_json::Error,
    },
    #[error("database schema version {found} is newer than this netdeploy knows ({known}); upgrade netdeploy")]
    TooNew { found: i64, known: i64 },
    #[error(
        "database {path} is an empty file (0 bytes), not a netdeploy database: it was truncated \
         or created by something else. Restore it from a backup, or remove it to start with an \
         empty catalog"
    )]
    EmptyFile { path: String },
    #[error(
        "database {path} is damaged (SQLite's quick_check found: {problems}). Restore it from a \
         backup; `sqlite3 {path} .recover` may save what is left"
    )]
    Damaged { path: String, problems: String },
    #[error("database {path} cannot be opened for writing: {tried}")]
    Unwritable {
        path: String,
        source: rusqlite::Error,
        tried: String,
    },
}

/// Numbered schema migrations; index + 1 is the `user_version` after applying it.
const MIGRATIONS: &[&str] = &[
    // 1: catalog documents, PXE loop guard, attempts, status messages.
    "CREATE TABLE object (
        kind TEXT NOT NULL,
        id TEXT NOT NULL,
        body TEXT NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (kind, id)
    );
    CREATE TABLE pxe_guard (
        identity TEXT NOT NULL,
        deployment TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        PRIMARY KEY (identity, deployment)
    );
    CREATE TABLE attempt (
        identity TEXT NOT NULL,
        deployment TEXT NOT NULL,
        outcome TEXT NOT NULL,
        at INTEGER NOT NULL,
        PRIMARY KEY (identity, deployment)
    );
    CREATE TABLE status_message (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        at INTEGER NOT NULL,
        source TEXT NOT NULL,
        kind TEXT NOT NULL,
        identity TEXT,
        device TEXT,
        deployment TEXT,
        body TEXT NOT NULL
    );
    CREATE INDEX status_by_deployment ON status_message (deployment, at);
    CREATE INDEX status_by_identity ON status_message (identity, at);",
    // 2: run credentials (src/store/credentials.rs), by the SHA-256 of their token.
    "CREATE TABLE run_credential (
        digest TEXT PRIMARY KEY,
        mac TEXT,
        uuid TEXT,
        deployment TEXT,
        issued_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        ended_at INTEGER
    );
    CREATE INDEX run_credential_by_expiry ON run_credential (expires_at);
    CREATE INDEX run_credential_by_mac ON run_credential (mac, issued_at);",
    // 3: boot media keys (src/store/credentials.rs), by id, with the SHA-256 of their secret.
    "CREATE TABLE medium (
        id TEXT PRIMARY KEY,
        digest TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        revoked_at INTEGER
    );",
    // 4: runs that restarted the machine mid-sequence and continue at `step` (docs/selection-rules.md rule 7).
    "CREATE TABLE resume (
        identity TEXT NOT NULL,
        deployment TEXT NOT NULL,
        step INTEGER NOT NULL,
        at INTEGER NOT NULL,
        PRIMARY KEY (identity, deployment)
    );",
];

/// A status message (docs/status.md), from the agent or the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusMessage {
    /// Order of arrival, assigned by the store.
    #[serde(default)]
    pub seq: i64,
    /// Unix seconds.
    pub at: i64,
    /// `server` or `agent`.
    pub source: String,
    /// What happened: `pxe-offer`, `started`, `step`, `succeeded`, `failed`, ...
    pub kind: String,
    /// Machine identity key (SMBIOS UUID, else MAC).
    pub identity: Option<String>,
    /// Known device name.
    pub device: Option<String>,
    pub deployment: Option<String>,
    /// Free-form details as JSON.
    pub body: serde_json::Value,
}

/// The database handle; cheap to share behind an `Arc`.
pub struct Store {
    conn: Mutex<Connection>,
    /// Transactions committed through this handle (see [`Store::version`]).
    commits: std::sync::atomic::AtomicU64,
}

impl Store {
    /// Opens (creating if needed) the database, checks it (SQLite's `quick_check`) and applies
    /// pending migrations. An existing empty file is refused rather than taken for a new,
    /// empty catalog.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let shown = path.display().to_string();
        let open_err = |source| match why_unwritable(path) {
            Some(tried) => StoreError::Unwritable {
                path: shown.clone(),
                source,
                tried,
            },
            None => StoreError::Open {
                path: shown.clone(),
                source,
            },
        };
        if is_empty_file(path) {
            return Err(StoreError::EmptyFile { path: shown });
        }
        let conn = Connection::open(path).map_err(open_err)?;
        let problems = match quick_check(&conn) {
            Ok(p) => p,
            // Damage can stop the check itself from reading on.
            Err(e)
                if matches!(
                    e.sqlite_error_code(),
                    Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
                ) =>
            {
                vec![e.to_string()]
            }
            Err(e) => return Err(open_err(e)),
        };
        if !problems.is_empty() {
            return Err(StoreError::Damaged {
                path: shown,
                problems: problems.join("; "),
            });
        }
        Store::init(conn).map_err(|e| match e {
            StoreError::Sql(source) => open_err(source),
            other => other,
        })
    }

    /// An in-memory database, for tests.
    pub fn in_memory() -> Result<Store, StoreError> {
        Store::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Store, StoreError> {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(StoreError::TooNew {
                found: version,
                known,
            });
        }
        if version < known {
            let tx = conn.transaction()?;
            for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
                tx.execute_batch(sql)?;
                tx.pragma_update(None, "user_version", i as i64 + 1)?;
            }
            tx.commit()?;
        }
        Ok(Store {
            conn: Mutex::new(conn),
            commits: std::sync::atomic::AtomicU64::new(0),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` in one transaction: all of its changes commit together or none do.
    pub fn transaction<T>(
        &self,
        f: impl FnOnce(&Tx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.transact(f, true)
    }

    /// [`Store::transaction`] for what the boot path records and keeps in its own memory
    /// (UUID sightings): it does not change [`Store::version`], so the boot path does not
    /// reload its snapshot for its own writes.
    pub fn quiet_transaction<T>(
        &self,
        f: impl FnOnce(&Tx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.transact(f, false)
    }

    fn transact<T>(
        &self,
        f: impl FnOnce(&Tx<'_>) -> Result<T, StoreError>,
        counted: bool,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn();
        let before = conn.total_changes();
        let tx = conn.transaction()?;
        let out = f(&Tx { tx: &tx })?;
        tx.commit()?;
        // Reading changes nothing that was read before.
        if counted && conn.total_changes() != before {
            self.commits
                .fetch_add(1, std::sync::atomic::Ordering::Release);
        }
        Ok(out)
    }

    /// A value that changes whenever a transaction that changed something commits, through
    /// this handle or through another process's (SQLite's `data_version`): what was read from
    /// the catalog before is still current while it stays the same. Catalog objects are only
    /// written in transactions.
    pub fn version(&self) -> Result<(i64, u64), StoreError> {
        let conn = self.conn();
        let theirs: i64 = conn.pragma_query_value(None, "data_version", |r| r.get(0))?;
        Ok((
            theirs,
            self.commits.load(std::sync::atomic::Ordering::Acquire),
        ))
    }

    /// Reads one object.
    pub fn get<T: DeserializeOwned>(&self, kind: &str, id: &str) -> Result<Option<T>, StoreError> {
        self.transaction(|tx| tx.get(kind, id))
    }

    /// Every object of a kind, ordered by id.
    pub fn list<T: DeserializeOwned>(&self, kind: &str) -> Result<Vec<T>, StoreError> {
        self.transaction(|tx| tx.list(kind))
    }

    /// Creates or replaces one object.
    pub fn put<T: Serialize>(
        &self,
        kind: &str,
        id: &str,
        value: &T,
        now: i64,
    ) -> Result<(), StoreError> {
        self.transaction(|tx| tx.put(kind, id, value, now))
    }

    /// Deletes one object; false when there was none.
    pub fn delete(&self, kind: &str, id: &str) -> Result<bool, StoreError> {
        self.transaction(|tx| tx.delete(kind, id))
    }

    /// Records that a required deployment started on a machine through PXE (docs/selection-rules.md rule 7).
    pub fn guard_set(&self, identity: &str, deployment: &str, now: i64) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT OR REPLACE INTO pxe_guard (identity, deployment, started_at) VALUES (?1, ?2, ?3)",
            params![identity, deployment, now],
        )?;
        Ok(())
    }

    /// Every (identity, deployment) pair under the loop guard.
    pub fn guards(&self) -> Result<Vec<(String, String)>, StoreError> {
        let conn = self.conn();
        let mut st = conn
            .prepare("SELECT identity, deployment FROM pxe_guard ORDER BY identity, deployment")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Lifts the loop guard for these machine identities; returns how many entries went.
    pub fn guard_clear(&self, identities: &[String]) -> Result<usize, StoreError> {
        self.transaction(|tx| {
            let mut n = 0;
            for id in identities {
                n += tx
                    .tx
                    .execute("DELETE FROM pxe_guard WHERE identity = ?1", params![id])?;
            }
            Ok(n)
        })
    }

    /// Records the outcome of a machine's last attempt at a deployment.
    pub fn attempt_set(
        &self,
        identity: &str,
        deployment: &str,
        outcome: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT OR REPLACE INTO attempt (identity, deployment, outcome, at) VALUES (?1, ?2, ?3, ?4)",
            params![identity, deployment, outcome, now],
        )?;
        Ok(())
    }

    /// Records that a machine's run of a deployment restarted it mid-sequence and continues
    /// at `step` on its next boot.
    pub fn resume_set(
        &self,
        identity: &str,
        deployment: &str,
        step: usize,
        now: i64,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT OR REPLACE INTO resume (identity, deployment, step, at) VALUES (?1, ?2, ?3, ?4)",
            params![identity, deployment, step as i64, now],
        )?;
        Ok(())
    }

    /// Forgets that a machine's run of a deployment continues: it ended.
    pub fn resume_clear(&self, identity: &str, deployment: &str) -> Result<(), StoreError> {
        self.conn().execute(
            "DELETE FROM resume WHERE identity = ?1 AND deployment = ?2",
            params![identity, deployment],
        )?;
        Ok(())
    }

    /// Every (identity, deployment, step) of runs continuing after a restart.
    pub fn resumes(&self) -> Result<Vec<(String, String, usize)>, StoreError> {
        let conn = self.conn();
        let mut st = conn.prepare(
            "SELECT identity, deployment, step FROM resume ORDER BY identity, deployment",
        )?;
        let rows = st.query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)?.max(0) as usize))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every (identity, deployment, outcome) of last attempts.
    pub fn attempts(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        let conn = self.conn();
        let mut st = conn.prepare(
            "SELECT identity, deployment, outcome FROM attempt ORDER BY identity, deployment",
        )?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Appends a status message; returns its sequence number.
    pub fn add_status(&self, m: &StatusMessage) -> Result<i64, StoreError> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO status_message (at, source, kind, identity, device, deployment, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                m.at,
                m.source,
                m.kind,
                m.identity,
                m.device,
                m.deployment,
                m.body.to_string()
            ],
        )?;
        Ok(conn.last_insert_rowid())
    }

    /// Forgets the status messages older than `before` (Unix seconds) and all but the newest
    /// `keep`; returns how many went.
    pub fn prune_status(&self, before: i64, keep: u64) -> Result<usize, StoreError> {
        self.transaction(|tx| {
            let old = tx
                .tx
                .execute("DELETE FROM status_message WHERE at < ?1", params![before])?;
            let over = tx.tx.execute(
                "DELETE FROM status_message WHERE seq <= (
                    SELECT seq FROM status_message ORDER BY seq DESC LIMIT 1 OFFSET ?1)",
                params![i64::try_from(keep).unwrap_or(i64::MAX)],
            )?;
            Ok(old + over)
        })
    }

    /// Status messages, newest last; optionally of one deployment, at most `limit`.
    pub fn statuses(
        &self,
        deployment: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StatusMessage>, StoreError> {
        let conn = self.conn();
        let mut st = conn.prepare(
            "SELECT seq, at, source, kind, identity, device, deployment, body FROM (
                SELECT * FROM status_message WHERE ?1 IS NULL OR deployment = ?1
                ORDER BY seq DESC LIMIT ?2
             ) ORDER BY seq",
        )?;
        let rows = st.query_map(params![deployment, limit as i64], |r| {
            let body: String = r.get(7)?;
            Ok(StatusMessage {
                seq: r.get(0)?,
                at: r.get(1)?,
                source: r.get(2)?,
                kind: r.get(3)?,
                identity: r.get(4)?,
                device: r.get(5)?,
                deployment: r.get(6)?,
                body: serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body)),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// An existing database file of 0 bytes. SQLite takes one for a new database; netdeploy writes
/// the first page when it creates one, so an empty file was truncated by something else. While
/// SQLite's write-ahead log beside it holds data, the file may legitimately be empty.
fn is_empty_file(path: &Path) -> bool {
    let len = |p: &Path| std::fs::metadata(p).map(|m| m.len()).ok();
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    len(path) == Some(0) && len(Path::new(&wal)).unwrap_or(0) == 0
}

/// What `PRAGMA quick_check` finds wrong (nothing: an empty list). It reads every page once, so
/// damage anywhere in the file is found at start rather than by the first request that reads it.
fn quick_check(conn: &Connection) -> Result<Vec<String>, rusqlite::Error> {
    let mut st = conn.prepare("PRAGMA quick_check(20)")?;
    let rows = st.query_map([], |r| r.get::<_, String>(0))?;
    let found: Vec<String> = rows.collect::<Result<_, _>>()?;
    Ok(found.into_iter().filter(|r| r != "ok").collect())
}

/// When the database cannot be opened: which of the files SQLite needs (the database, its
/// `-wal` and `-shm` files beside it) cannot be opened for writing, and why.
fn why_unwritable(path: &Path) -> Option<String> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let open = |p: &Path, create: bool| {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(p)
    };
    if path.exists() {
        if let Err(e) = open(path, false) {
            return Some(format!(
                "opening {} for writing failed: {e}",
                path.display()
            ));
        }
    }
    // SQLite creates these beside the database; try to do the same (and tidy up).
    let probe = dir.join(format!(".netdeploy-probe-{}", std::process::id()));
    match open(&probe, true) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            None
        }
        Err(e) => Some(format!(
            "SQLite writes the database and its -wal and -shm files in {}; creating a file \
             there failed: {e}",
            dir.display()
        )),
    }
}

/// Operations inside one [`Store::transaction`].
pub struct Tx<'a> {
    tx: &'a rusqlite::Transaction<'a>,
}

impl Tx<'_> {
    pub fn get<T: DeserializeOwned>(&self, kind: &str, id: &str) -> Result<Option<T>, StoreError> {
        let body: Option<String> = self
            .tx
            .query_row(
                "SELECT body FROM object WHERE kind = ?1 AND id = ?2",
                params![kind, id],
                |r| r.get(0),
            )
            .optional()?;
        body.map(|b| decode(kind, id, &b)).transpose()
    }

    pub fn list<T: DeserializeOwned>(&self, kind: &str) -> Result<Vec<T>, StoreError> {
        let mut st = self
            .tx
            .prepare("SELECT id, body FROM object WHERE kind = ?1 ORDER BY id")?;
        let rows = st.query_map(params![kind], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, body) = row?;
            out.push(decode(kind, &id, &body)?);
        }
        Ok(out)
    }

    pub fn put<T: Serialize>(
        &self,
        kind: &str,
        id: &str,
        value: &T,
        now: i64,
    ) -> Result<(), StoreError> {
        let body = serde_json::to_string(value).expect("catalog objects serialize");
        // Cached: a site file writes a hundred thousand objects in one transaction.
        self.tx
            .prepare_cached(
                "INSERT INTO object (kind, id, body, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (kind, id) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
            )?
            .execute(params![kind, id, body, now])?;
        Ok(())
    }

    pub fn delete(&self, kind: &str, id: &str) -> Result<bool, StoreError> {
        Ok(self
            .tx
            .prepare_cached("DELETE FROM object WHERE kind = ?1 AND id = ?2")?
            .execute(params![kind, id])?
            > 0)
    }
}

fn decode<T: DeserializeOwned>(kind: &str, id: &str, body: &str) -> Result<T, StoreError> {
    serde_json::from_str(body).map_err(|source| StoreError::Decode {
        kind: kind.into(),
        id: id.into(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Thing {
        name: String,
        n: u32,
    }

    #[test]
    fn objects_round_trip_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("netdeploy.db");
        {
            let s = Store::open(&path).unwrap();
            s.put(
                "thing",
                "b",
                &Thing {
                    name: "b".into(),
                    n: 2,
                },
                1,
            )
            .unwrap();
            s.put(
                "thing",
                "a",
                &Thing {
                    name: "a".into(),
                    n: 1,
                },
                1,
            )
            .unwrap();
            s.put(
                "thing",
                "a",
                &Thing {
                    name: "a".into(),
                    n: 3,
                },
                2,
            )
            .unwrap();
            s.guard_set("uuid:1", "LAB00001", 5).unwrap();
        }
        let s = Store::open(&path).unwrap();
        let all: Vec<Thing> = s.list("thing").unwrap();
        assert_eq!(
            all,
            vec![
                Thing {
                    name: "a".into(),
                    n: 3
                },
                Thing {
                    name: "b".into(),
                    n: 2
                }
            ]
        );
        assert_eq!(
            s.guards().unwrap(),
            vec![("uuid:1".into(), "LAB00001".into())]
        );
        assert!(s.delete("thing", "a").unwrap());
        assert!(!s.delete("thing", "a").unwrap());
        assert_eq!(s.guard_clear(&["uuid:1".into()]).unwrap(), 1);
    }

    #[test]
    fn an_empty_database_file_is_refused_not_taken_for_an_empty_catalog() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("netdeploy.db");
        std::fs::write(&path, b"").unwrap();
        let e = Store::open(&path).err().expect("refused").to_string();
        assert!(
            e.contains("empty file (0 bytes)") && e.contains("netdeploy.db"),
            "{e}"
        );
        // A new database is fine, and so is opening it again.
        std::fs::remove_file(&path).unwrap();
        drop(Store::open(&path).unwrap());
        drop(Store::open(&path).unwrap());
    }

    #[test]
    fn garbage_in_the_middle_of_the_database_is_found_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("netdeploy.db");
        {
            let s = Store::open(&path).unwrap();
            for i in 0..400 {
                let name = format!("thing {i} {}", "x".repeat(200));
                s.put("thing", &format!("{i:04}"), &Thing { name, n: i }, 1)
                    .unwrap();
            }
        }
        let mut bytes = std::fs::read(&path).unwrap();
        assert!(bytes.len() > 16 * 4096, "{}", bytes.len());
        let middle = bytes.len() / 2 / 4096 * 4096;
        for (i, b) in bytes[middle..middle + 4096].iter_mut().enumerate() {
            *b = (i * 7 + 3) as u8;
        }
        std::fs::write(&path, &bytes).unwrap();
        let e = Store::open(&path).err().expect("refused").to_string();
        assert!(e.contains("is damaged (SQLite's quick_check found:"), "{e}");
    }

    #[test]
    fn a_failed_transaction_changes_nothing() {
        let s = Store::in_memory().unwrap();
        let r: Result<(), StoreError> = s.transaction(|tx| {
            tx.put(
                "thing",
                "x",
                &Thing {
                    name: "x".into(),
                    n: 1,
                },
                1,
            )?;
            Err(StoreError::TooNew { found: 0, known: 0 })
        });
        assert!(r.is_err());
        assert!(s.get::<Thing>("thing", "x").unwrap().is_none());
    }

    #[test]
    fn pruning_keeps_the_newest_messages_within_the_age() {
        let s = Store::in_memory().unwrap();
        for at in 0..10 {
            s.add_status(&StatusMessage {
                seq: 0,
                at,
                source: "agent".into(),
                kind: "step".into(),
                identity: None,
                device: None,
                deployment: None,
                body: serde_json::json!({}),
            })
            .unwrap();
        }
        assert_eq!(s.prune_status(3, 100).unwrap(), 3);
        assert_eq!(s.prune_status(0, 4).unwrap(), 3);
        let left: Vec<i64> = s
            .statuses(None, 100)
            .unwrap()
            .iter()
            .map(|m| m.at)
            .collect();
        assert_eq!(left, [6, 7, 8, 9]);
        assert_eq!(s.prune_status(0, 4).unwrap(), 0);
    }

    #[test]
    fn status_messages_keep_their_order() {
        let s = Store::in_memory().unwrap();
        for (i, kind) in ["started", "step", "succeeded"].iter().enumerate() {
            s.add_status(&StatusMessage {
                seq: 0,
                at: i as i64,
                source: "agent".into(),
                kind: (*kind).into(),
                identity: Some("mac:52:54:00:00:00:01".into()),
                device: None,
                deployment: Some("LAB00001".into()),
                body: serde_json::json!({"step": i}),
            })
            .unwrap();
        }
        let last2 = s.statuses(Some("LAB00001"), 2).unwrap();
        assert_eq!(
            last2.iter().map(|m| m.kind.as_str()).collect::<Vec<_>>(),
            ["step", "succeeded"]
        );
    }
}
