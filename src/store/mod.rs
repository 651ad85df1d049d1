//! The store: the embedded SQLite database (bundled, WAL mode) by default, or a PostgreSQL
//! database that several servers share (`[store] url`, [`pg`]), behind one interface. Each
//! statement is written once ([`sql`]); the few that the dialects spell differently have a
//! text for each.
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
pub mod pg;
pub mod pg_cluster;
pub mod spool;
pub mod sql;

use std::cell::Cell;
use std::path::Path;
use std::sync::Mutex;

use rusqlite::Connection;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sql::{both, each, On, Row, P};

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
    /// PostgreSQL failed; the message never holds the URL (it may hold a password).
    #[error("{at}: {source}")]
    Pg { at: String, source: postgres::Error },
    #[error("stored {kind} {id:?} does not decode: {source}")]
    Decode {
        kind: String,
        id: String,
        source: serde_json::Error,
    },
    #[error("spool {dir}: {source}")]
    Spool { dir: String, source: std::io::Error },
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
    // 4: the unique id of a status message kept on disk while the database was away
    // (src/store/spool.rs), so that sending it twice records it once.
    MIGRATION_4,
    // 5: runs that restarted the machine mid-sequence and continue at `step`
    // (docs/selection-rules.md rule 7).
    MIGRATION_5,
];

/// Migration 5, the same text for both databases.
const MIGRATION_5: &str = "CREATE TABLE resume (
        identity TEXT NOT NULL,
        deployment TEXT NOT NULL,
        step BIGINT NOT NULL,
        at BIGINT NOT NULL,
        PRIMARY KEY (identity, deployment)
    );";

/// Migration 4, the same text for both databases.
const MIGRATION_4: &str = "ALTER TABLE status_message ADD COLUMN uid TEXT;
    CREATE UNIQUE INDEX status_by_uid ON status_message (uid);";

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

impl StoreError {
    /// True when the database could not be reached (PostgreSQL down, the network, a
    /// connection cut), as opposed to a statement it refused.
    pub fn is_unreachable(&self) -> bool {
        match self {
            StoreError::Pg { source, .. } => match source.code() {
                // Connection exceptions, and the server shutting down or starting.
                Some(c) => c.code().starts_with("08") || c.code().starts_with("57"),
                None => true,
            },
            _ => false,
        }
    }
}

impl From<postgres::Error> for StoreError {
    fn from(source: postgres::Error) -> StoreError {
        StoreError::Pg {
            at: "PostgreSQL".into(),
            source,
        }
    }
}

/// The database handle; cheap to share behind an `Arc`.
pub struct Store {
    backend: Backend,
    /// Where records wait while a shared database is unreachable ([`spool`]); a server's
    /// store has one, the command line's does not (it reports the failure instead).
    spool: Option<spool::Spool>,
    /// Transactions committed through this handle (see [`Store::version`]).
    commits: std::sync::atomic::AtomicU64,
}

enum Backend {
    Lite(Mutex<Connection>),
    Pg(Box<pg::Pg>),
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
            backend: Backend::Lite(Mutex::new(conn)),
            spool: None,
            commits: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Connects to the PostgreSQL database at `url` (`postgresql://...`) and applies pending
    /// migrations; several servers may do so at once.
    pub fn open_url(url: &str) -> Result<Store, StoreError> {
        Ok(Store {
            backend: Backend::Pg(Box::new(pg::Pg::connect(url)?)),
            spool: None,
            commits: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// [`Store::open_url`] for a server: what it records while the database is unreachable
    /// waits in `spool_dir` (kept from an earlier run too) and goes to the database with
    /// [`Store::send_kept`].
    pub fn open_url_with_spool(url: &str, spool_dir: &Path) -> Result<Store, StoreError> {
        let mut s = Store::open_url(url)?;
        s.spool = Some(
            spool::Spool::open(spool_dir).map_err(|e| StoreError::Spool {
                dir: spool_dir.display().to_string(),
                source: e,
            })?,
        );
        Ok(s)
    }

    /// How many records wait in the spool.
    pub fn kept(&self) -> usize {
        self.spool.as_ref().map_or(0, spool::Spool::len)
    }

    /// Sends what the spool holds, in order; returns how many went, or the failure that
    /// stopped it (the rest wait).
    pub fn send_kept(&self) -> Result<usize, StoreError> {
        let Some(sp) = &self.spool else {
            return Ok(0);
        };
        match sp.drain(|k| self.apply_kept(k)) {
            (n, None) => Ok(n),
            (_, Some(e)) => Err(e),
        }
    }

    fn apply_kept(&self, k: &spool::Kept) -> Result<(), StoreError> {
        match k {
            spool::Kept::Status { uid, message } => {
                self.insert_status(message, Some(uid)).map(drop)
            }
            spool::Kept::Guard {
                identity,
                deployment,
                at,
            } => self.guard_set_now(identity, deployment, *at),
            spool::Kept::Attempt {
                identity,
                deployment,
                outcome,
                at,
            } => self.attempt_set_now(identity, deployment, outcome, *at),
            spool::Kept::RunIssued {
                digest,
                mac,
                uuid,
                deployment,
                issued_at,
                expires_at,
            } => {
                let credential = crate::credentials::RunCredential {
                    machine: crate::catalog::MachineIdentity {
                        mac: mac.as_deref().and_then(|m| m.parse().ok()),
                        uuid: uuid
                            .as_deref()
                            .and_then(|u| crate::catalog::parse_smbios_uuid(u).ok()),
                    },
                    deployment: deployment.clone(),
                    issued_at: *issued_at,
                    expires_at: *expires_at,
                    ended_at: None,
                };
                self.run_credential_add_now(digest, &credential, *issued_at)
            }
            spool::Kept::Resume {
                identity,
                deployment,
                step,
                at,
            } => self.resume_set_now(identity, deployment, *step, *at),
            spool::Kept::ResumeEnded {
                identity,
                deployment,
            } => self.resume_clear_now(identity, deployment),
            spool::Kept::RunEnded { digest, at } => {
                self.run_credential_end_now(digest, *at).map(drop)
            }
        }
    }

    /// Keeps `k` in the spool when `r` failed because the database is unreachable and this
    /// store has a spool; `kept` is then the answer.
    pub(crate) fn or_keep<T>(
        &self,
        r: Result<T, StoreError>,
        k: impl FnOnce() -> spool::Kept,
        kept: T,
    ) -> Result<T, StoreError> {
        match (r, &self.spool) {
            (Err(e), Some(sp)) if e.is_unreachable() => {
                sp.keep(&k()).map_err(|source| StoreError::Spool {
                    dir: sp.dir().display().to_string(),
                    source,
                })?;
                tracing::debug!(error = %e, "kept in the spool while the database is away");
                Ok(kept)
            }
            (r, _) => r,
        }
    }

    /// Where the store is, to be shown: the SQLite file, or PostgreSQL's host and database
    /// (never a user or password).
    pub fn describe(&self) -> String {
        match &self.backend {
            Backend::Lite(c) => {
                let c = c.lock().unwrap_or_else(|p| p.into_inner());
                format!("SQLite {}", c.path().unwrap_or("(in memory)"))
            }
            Backend::Pg(p) => p.shown().to_owned(),
        }
    }

    /// True when the store is PostgreSQL, which other servers may write too.
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Pg(_))
    }

    /// Runs `f` on the database outside a [`Store::transaction`]: a single statement commits
    /// on its own in SQLite; PostgreSQL runs `f` in a transaction of its own, and with `shared`
    /// marks the change for every server's [`Store::version`].
    fn write<T>(
        &self,
        shared: bool,
        f: impl FnOnce(&On<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match &self.backend {
            Backend::Lite(c) => f(&On::Lite(&c.lock().unwrap_or_else(|p| p.into_inner()))),
            Backend::Pg(p) => p.in_transaction(|t| {
                let out = f(&On::Pg(t))?;
                if shared {
                    On::Pg(t).exec(pg::BUMP, &[])?;
                }
                Ok(out)
            }),
        }
    }

    /// Reads outside a transaction.
    fn read<T>(&self, f: impl FnOnce(&On<'_>) -> Result<T, StoreError>) -> Result<T, StoreError> {
        self.write(false, f)
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
        let changed = match &self.backend {
            Backend::Lite(c) => {
                let mut conn = c.lock().unwrap_or_else(|p| p.into_inner());
                let before = conn.total_changes();
                let tx = conn.transaction()?;
                let t = Tx {
                    on: On::Lite(&tx),
                    wrote: Cell::new(false),
                };
                let out = f(&t)?;
                tx.commit()?;
                // Reading changes nothing that was read before.
                (out, conn.total_changes() != before)
            }
            Backend::Pg(p) => p.in_transaction(|pt| {
                let t = Tx {
                    on: On::Pg(pt),
                    wrote: Cell::new(false),
                };
                let out = f(&t)?;
                let wrote = t.wrote.get();
                if counted && wrote {
                    t.on.exec(pg::BUMP, &[])?;
                }
                Ok((out, wrote))
            })?,
        };
        let (out, changed) = changed;
        if counted && changed {
            self.commits
                .fetch_add(1, std::sync::atomic::Ordering::Release);
        }
        Ok(out)
    }

    /// A value that changes whenever a transaction that changed something commits, through
    /// this handle or through another process's (SQLite's `data_version`; in PostgreSQL a
    /// change counter that every server's writes move): what was read from the catalog before
    /// is still current while it stays the same. Catalog objects are only written in
    /// transactions.
    pub fn version(&self) -> Result<(i64, u64), StoreError> {
        let theirs: i64 = match &self.backend {
            Backend::Lite(c) => c
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pragma_query_value(None, "data_version", |r| r.get(0))?,
            Backend::Pg(_) => self.read(|on| Ok(on.query(pg::VERSION, &[])?[0].int(0)))?,
        };
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
        let r = self.guard_set_now(identity, deployment, now);
        self.or_keep(
            r,
            || spool::Kept::Guard {
                identity: identity.to_owned(),
                deployment: deployment.to_owned(),
                at: now,
            },
            (),
        )
    }

    fn guard_set_now(&self, identity: &str, deployment: &str, now: i64) -> Result<(), StoreError> {
        self.write(true, |on| {
            on.exec(
                both(
                    "INSERT INTO pxe_guard (identity, deployment, started_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (identity, deployment) DO UPDATE SET started_at = excluded.started_at",
                ),
                &[P::Text(identity), P::Text(deployment), P::Int(now)],
            )
        })?;
        Ok(())
    }

    /// Every (identity, deployment) pair under the loop guard.
    pub fn guards(&self) -> Result<Vec<(String, String)>, StoreError> {
        let rows = self.read(|on| {
            on.query(
                both("SELECT identity, deployment FROM pxe_guard ORDER BY identity, deployment"),
                &[],
            )
        })?;
        Ok(rows.iter().map(|r| (r.text(0), r.text(1))).collect())
    }

    /// Lifts the loop guard for these machine identities; returns how many entries went.
    pub fn guard_clear(&self, identities: &[String]) -> Result<usize, StoreError> {
        self.transaction(|tx| {
            let mut n = 0;
            for id in identities {
                n += tx.exec(
                    both("DELETE FROM pxe_guard WHERE identity = ?1"),
                    &[P::Text(id)],
                )?;
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
        let r = self.attempt_set_now(identity, deployment, outcome, now);
        self.or_keep(
            r,
            || spool::Kept::Attempt {
                identity: identity.to_owned(),
                deployment: deployment.to_owned(),
                outcome: outcome.to_owned(),
                at: now,
            },
            (),
        )
    }

    fn attempt_set_now(
        &self,
        identity: &str,
        deployment: &str,
        outcome: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.write(true, |on| {
            on.exec(
                both(
                    "INSERT INTO attempt (identity, deployment, outcome, at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (identity, deployment)
                     DO UPDATE SET outcome = excluded.outcome, at = excluded.at",
                ),
                &[
                    P::Text(identity),
                    P::Text(deployment),
                    P::Text(outcome),
                    P::Int(now),
                ],
            )
        })?;
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
        let r = self.resume_set_now(identity, deployment, step, now);
        self.or_keep(
            r,
            || spool::Kept::Resume {
                identity: identity.to_owned(),
                deployment: deployment.to_owned(),
                step,
                at: now,
            },
            (),
        )
    }

    fn resume_set_now(
        &self,
        identity: &str,
        deployment: &str,
        step: usize,
        now: i64,
    ) -> Result<(), StoreError> {
        self.write(true, |on| {
            on.exec(
                both(
                    "INSERT INTO resume (identity, deployment, step, at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (identity, deployment) DO UPDATE SET step = excluded.step, at = excluded.at",
                ),
                &[
                    P::Text(identity),
                    P::Text(deployment),
                    P::Int(i64::try_from(step).unwrap_or(i64::MAX)),
                    P::Int(now),
                ],
            )
        })?;
        Ok(())
    }

    /// Forgets that a machine's run of a deployment continues: it ended.
    pub fn resume_clear(&self, identity: &str, deployment: &str) -> Result<(), StoreError> {
        let r = self.resume_clear_now(identity, deployment);
        self.or_keep(
            r,
            || spool::Kept::ResumeEnded {
                identity: identity.to_owned(),
                deployment: deployment.to_owned(),
            },
            (),
        )
    }

    fn resume_clear_now(&self, identity: &str, deployment: &str) -> Result<(), StoreError> {
        self.write(true, |on| {
            on.exec(
                both("DELETE FROM resume WHERE identity = ?1 AND deployment = ?2"),
                &[P::Text(identity), P::Text(deployment)],
            )
        })?;
        Ok(())
    }

    /// Every (identity, deployment, step) of runs continuing after a restart.
    pub fn resumes(&self) -> Result<Vec<(String, String, usize)>, StoreError> {
        let rows = self.read(|on| {
            on.query(
                both("SELECT identity, deployment, step FROM resume ORDER BY identity, deployment"),
                &[],
            )
        })?;
        Ok(rows
            .iter()
            .map(|r| (r.text(0), r.text(1), r.int(2).max(0) as usize))
            .collect())
    }

    /// Every (identity, deployment, outcome) of last attempts.
    pub fn attempts(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        let rows = self.read(|on| {
            on.query(
                both(
                    "SELECT identity, deployment, outcome FROM attempt ORDER BY identity, deployment",
                ),
                &[],
            )
        })?;
        Ok(rows
            .iter()
            .map(|r| (r.text(0), r.text(1), r.text(2)))
            .collect())
    }

    /// Appends a status message; returns its sequence number.
    pub fn add_status(&self, m: &StatusMessage) -> Result<i64, StoreError> {
        Ok(self
            .insert_status(m, None)?
            .expect("a message without a uid is always inserted"))
    }

    /// Appends a status message, or keeps it in the spool while the database is unreachable:
    /// its sequence number, or `None` when it waits.
    pub fn add_status_or_keep(&self, m: &StatusMessage) -> Result<Option<i64>, StoreError> {
        let r = self.insert_status(m, None);
        self.or_keep(
            r,
            || spool::Kept::Status {
                uid: spool::new_uid(),
                message: m.clone(),
            },
            None,
        )
    }

    /// Inserts a status message; with `uid`, only if no message with that uid is stored
    /// (`None` then).
    fn insert_status(
        &self,
        m: &StatusMessage,
        uid: Option<&str>,
    ) -> Result<Option<i64>, StoreError> {
        let body = m.body.to_string();
        self.write(false, |on| {
            let rows = on.query(
                both(
                    "INSERT INTO status_message (at, source, kind, identity, device, deployment, body, uid)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (uid) DO NOTHING RETURNING seq",
                ),
                &[
                    P::Int(m.at),
                    P::Text(&m.source),
                    P::Text(&m.kind),
                    P::OptText(m.identity.as_deref()),
                    P::OptText(m.device.as_deref()),
                    P::OptText(m.deployment.as_deref()),
                    P::Text(&body),
                    P::OptText(uid),
                ],
            )?;
            Ok(rows.first().map(|r| r.int(0)))
        })
    }

    /// Forgets the status messages older than `before` (Unix seconds) and all but the newest
    /// `keep`; returns how many went.
    pub fn prune_status(&self, before: i64, keep: u64) -> Result<usize, StoreError> {
        self.transaction(|tx| {
            let old = tx.exec(
                both("DELETE FROM status_message WHERE at < ?1"),
                &[P::Int(before)],
            )?;
            let over = tx.exec(
                both(
                    "DELETE FROM status_message WHERE seq <= (
                    SELECT seq FROM status_message ORDER BY seq DESC LIMIT 1 OFFSET ?1)",
                ),
                &[P::Int(i64::try_from(keep).unwrap_or(i64::MAX))],
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
        let rows = self.read(|on| {
            on.query(
                each(
                    "SELECT seq, at, source, kind, identity, device, deployment, body FROM (
                        SELECT * FROM status_message WHERE ?1 IS NULL OR deployment = ?1
                        ORDER BY seq DESC LIMIT ?2
                     ) ORDER BY seq",
                    "SELECT seq, at, source, kind, identity, device, deployment, body FROM (
                        SELECT * FROM status_message WHERE $1::text IS NULL OR deployment = $1
                        ORDER BY seq DESC LIMIT $2
                     ) AS newest ORDER BY seq",
                ),
                &[
                    P::OptText(deployment),
                    P::Int(i64::try_from(limit).unwrap_or(i64::MAX)),
                ],
            )
        })?;
        Ok(rows.iter().map(status_of_row).collect())
    }
}

fn status_of_row(r: &Row) -> StatusMessage {
    let body = r.text(7);
    StatusMessage {
        seq: r.int(0),
        at: r.int(1),
        source: r.text(2),
        kind: r.text(3),
        identity: r.opt_text(4),
        device: r.opt_text(5),
        deployment: r.opt_text(6),
        body: serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body)),
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
    on: On<'a>,
    /// A statement changed a row (PostgreSQL then moves the change counter).
    wrote: Cell<bool>,
}

impl Tx<'_> {
    /// Runs a statement in the transaction; returns how many rows it changed.
    pub(crate) fn exec(&self, st: sql::Stmt, params: &[P<'_>]) -> Result<usize, StoreError> {
        let n = self.on.exec(st, params)?;
        if n > 0 {
            self.wrote.set(true);
        }
        Ok(n)
    }

    pub fn get<T: DeserializeOwned>(&self, kind: &str, id: &str) -> Result<Option<T>, StoreError> {
        let row = self.on.query_opt(
            both("SELECT body FROM object WHERE kind = ?1 AND id = ?2"),
            &[P::Text(kind), P::Text(id)],
        )?;
        row.map(|r| decode(kind, id, &r.text(0))).transpose()
    }

    pub fn list<T: DeserializeOwned>(&self, kind: &str) -> Result<Vec<T>, StoreError> {
        self.on
            .query(
                both("SELECT id, body FROM object WHERE kind = ?1 ORDER BY id"),
                &[P::Text(kind)],
            )?
            .iter()
            .map(|r| decode(kind, &r.text(0), &r.text(1)))
            .collect()
    }

    pub fn put<T: Serialize>(
        &self,
        kind: &str,
        id: &str,
        value: &T,
        now: i64,
    ) -> Result<(), StoreError> {
        let body = serde_json::to_string(value).expect("catalog objects serialize");
        // Cached in SQLite: a site file writes a hundred thousand objects in one transaction.
        self.exec(
            both(
                "INSERT INTO object (kind, id, body, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (kind, id) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
            ),
            &[P::Text(kind), P::Text(id), P::Text(&body), P::Int(now)],
        )?;
        Ok(())
    }

    pub fn delete(&self, kind: &str, id: &str) -> Result<bool, StoreError> {
        Ok(self.exec(
            both("DELETE FROM object WHERE kind = ?1 AND id = ?2"),
            &[P::Text(kind), P::Text(id)],
        )? > 0)
    }
}

fn decode<T: DeserializeOwned>(kind: &str, id: &str, body: &str) -> Result<T, StoreError> {
    serde_json::from_str(body).map_err(|source| StoreError::Decode {
        kind: kind.into(),
        id: id.into(),
        source,
    })
}

/// The stores every store test runs against: SQLite in memory and a new database of a
/// throwaway PostgreSQL server shared by the tests of this process.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::{Arc, Mutex, Weak};

    use super::pg_cluster::Cluster;
    use super::Store;

    static CLUSTER: Mutex<Weak<Cluster>> = Mutex::new(Weak::new());

    /// The shared server, started by the first test that needs it and stopped when the last
    /// one holding it ends.
    pub fn cluster() -> Arc<Cluster> {
        let mut slot = CLUSTER.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = slot.upgrade() {
            return c;
        }
        let c = Arc::new(Cluster::start().expect("a throwaway PostgreSQL server starts"));
        *slot = Arc::downgrade(&c);
        c
    }

    /// A store on a new, empty PostgreSQL database, with the server it lives on and its URL.
    pub fn pg() -> (Arc<Cluster>, String, Store) {
        let c = cluster();
        let url = c.new_database().expect("a database is created");
        let store = Store::open_url(&url).expect("the new database opens");
        (c, url, store)
    }

    /// Runs `f` on an SQLite store and on a PostgreSQL one, naming the backend on failure.
    pub fn each_backend(f: impl Fn(&Store)) {
        f(&Store::in_memory().unwrap());
        let (_server, _url, store) = pg();
        f(&store);
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{each_backend, pg};
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Thing {
        name: String,
        n: u32,
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
        each_backend(|s| {
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
        });
    }

    #[test]
    fn pruning_keeps_the_newest_messages_within_the_age() {
        each_backend(|s| {
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
        });
    }

    #[test]
    fn status_messages_keep_their_order() {
        each_backend(|s| {
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
            assert_eq!(s.statuses(None, 10).unwrap().len(), 3);
        });
    }

    /// Objects, guards and attempts written through one handle read back through a new one.
    fn round_trips_and_survives_reopening(open: impl Fn() -> Store) {
        {
            let s = open();
            for (id, n, at) in [("b", 2, 1), ("a", 1, 1), ("a", 3, 2)] {
                s.put("thing", id, &Thing { name: id.into(), n }, at)
                    .unwrap();
            }
            s.guard_set("uuid:1", "LAB00001", 5).unwrap();
            s.guard_set("uuid:1", "LAB00001", 6).unwrap();
            s.attempt_set("uuid:1", "LAB00001", "failed", 7).unwrap();
            s.attempt_set("uuid:1", "LAB00001", "succeeded", 8).unwrap();
        }
        let s = open();
        let all: Vec<Thing> = s.list("thing").unwrap();
        assert_eq!(
            all.iter()
                .map(|t| (t.name.as_str(), t.n))
                .collect::<Vec<_>>(),
            [("a", 3), ("b", 2)],
            "{}",
            s.describe()
        );
        assert_eq!(
            s.guards().unwrap(),
            vec![("uuid:1".into(), "LAB00001".into())]
        );
        assert_eq!(
            s.attempts().unwrap(),
            vec![("uuid:1".into(), "LAB00001".into(), "succeeded".into())]
        );
        assert!(s.delete("thing", "a").unwrap());
        assert!(!s.delete("thing", "a").unwrap());
        assert_eq!(s.guard_clear(&["uuid:1".into()]).unwrap(), 1);
    }

    #[test]
    fn objects_round_trip_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("netdeploy.db");
        round_trips_and_survives_reopening(|| Store::open(&path).unwrap());
    }

    #[test]
    fn objects_round_trip_in_postgresql_and_survive_reconnecting() {
        let (_server, url, first) = pg();
        assert!(
            first.describe().starts_with("PostgreSQL "),
            "{}",
            first.describe()
        );
        drop(first);
        round_trips_and_survives_reopening(|| Store::open_url(&url).unwrap());
    }

    #[test]
    fn a_write_through_another_handle_changes_the_version_in_either_backend() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("netdeploy.db");
        let (_server, url, _first) = pg();
        for (a, b) in [
            (Store::open(&path).unwrap(), Store::open(&path).unwrap()),
            (
                Store::open_url(&url).unwrap(),
                Store::open_url(&url).unwrap(),
            ),
        ] {
            let v0 = a.version().unwrap();
            // Only reads and status messages: not a change of what the boot path loads.
            assert_eq!(b.get::<Thing>("thing", "x").unwrap(), None);
            assert_eq!(a.version().unwrap(), v0, "{}", a.describe());
            b.put(
                "thing",
                "x",
                &Thing {
                    name: "x".into(),
                    n: 1,
                },
                1,
            )
            .unwrap();
            let v1 = a.version().unwrap();
            assert_ne!(
                v1.0,
                v0.0,
                "{}: another handle's write is seen",
                a.describe()
            );
            b.guard_set("mac:1", "LAB00001", 2).unwrap();
            assert_ne!(
                a.version().unwrap().0,
                v1.0,
                "{}: a guard is seen",
                a.describe()
            );
        }
    }

    #[test]
    fn a_newer_postgresql_schema_is_refused_by_name() {
        let (_server, url, s) = pg();
        drop(s);
        let mut c = pg::parse_url(&url)
            .unwrap()
            .connect(postgres::NoTls)
            .unwrap();
        c.batch_execute("UPDATE netdeploy_schema SET version = 99")
            .unwrap();
        let e = Store::open_url(&url).err().expect("refused").to_string();
        assert!(e.contains("schema version 99 is newer"), "{e}");
    }
}
