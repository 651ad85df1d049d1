//! PostgreSQL as the store that several netdeploy servers share (`[store] url`,
//! docs/fleet.md): the same tables as SQLite, numbered migrations applied under an advisory
//! lock (several servers may start at once), and a change counter that every write of the
//! catalog or the loop guard moves, which each server's boot path polls
//! ([`super::Store::version`]) to reload within a second what another server or the CLI
//! changed.
//!
//! One connection per process, made again when it broke: while the database is away every
//! call fails at once with the reason (after the connect timeout), and the callers decide:
//! the boot path goes on deciding from its last snapshot.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use super::sql::{both, PgParams, PgRun, Stmt};
use super::StoreError;

/// How long connecting may take before the store reports the database unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Numbered migrations, as SQLite's ([`super::MIGRATIONS`]); index + 1 is the version.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: catalog documents, PXE loop guard, attempts, status messages, the change counter.
    "CREATE TABLE object (
        kind TEXT NOT NULL,
        id TEXT NOT NULL,
        body TEXT NOT NULL,
        updated_at BIGINT NOT NULL,
        PRIMARY KEY (kind, id)
    );
    CREATE TABLE pxe_guard (
        identity TEXT NOT NULL,
        deployment TEXT NOT NULL,
        started_at BIGINT NOT NULL,
        PRIMARY KEY (identity, deployment)
    );
    CREATE TABLE attempt (
        identity TEXT NOT NULL,
        deployment TEXT NOT NULL,
        outcome TEXT NOT NULL,
        at BIGINT NOT NULL,
        PRIMARY KEY (identity, deployment)
    );
    CREATE TABLE status_message (
        seq BIGSERIAL PRIMARY KEY,
        at BIGINT NOT NULL,
        source TEXT NOT NULL,
        kind TEXT NOT NULL,
        identity TEXT,
        device TEXT,
        deployment TEXT,
        body TEXT NOT NULL
    );
    CREATE INDEX status_by_deployment ON status_message (deployment, at);
    CREATE INDEX status_by_identity ON status_message (identity, at);
    CREATE TABLE netdeploy_change (n BIGINT NOT NULL);
    INSERT INTO netdeploy_change (n) VALUES (0);",
    // 2: run credentials, by the SHA-256 of their token; `seq` orders those issued in one second.
    "CREATE TABLE run_credential (
        digest TEXT PRIMARY KEY,
        mac TEXT,
        uuid TEXT,
        deployment TEXT,
        issued_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        ended_at BIGINT,
        seq BIGSERIAL
    );
    CREATE INDEX run_credential_by_expiry ON run_credential (expires_at);
    CREATE INDEX run_credential_by_mac ON run_credential (mac, issued_at);",
    // 3: boot media keys.
    "CREATE TABLE medium (
        id TEXT PRIMARY KEY,
        digest TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        revoked_at BIGINT
    );",
    // 4: the unique id of a status message kept in a server's spool.
    super::MIGRATION_4,
    // 5: runs continuing after a restart mid-sequence.
    super::MIGRATION_5,
];

/// Moves the change counter (inside the writing transaction).
pub(super) const BUMP: Stmt = both("UPDATE netdeploy_change SET n = n + 1");
/// Reads the change counter.
pub(super) const VERSION: Stmt = both("SELECT n FROM netdeploy_change");

/// Any number, the same for every netdeploy: the advisory lock migrations run under.
const MIGRATION_LOCK: i64 = 0x6e65_7464_6570;

/// A PostgreSQL database and this process's connection to it.
pub struct Pg {
    config: postgres::Config,
    conn: Mutex<Option<Conn>>,
    shown: String,
}

/// A connection and the statements prepared on it, by their text: each is parsed once per
/// connection rather than once per use (a site file writes a hundred thousand rows).
pub struct Conn {
    client: postgres::Client,
    prepared: HashMap<String, postgres::Statement>,
}

/// A transaction on a [`Conn`], which statements run in through a shared reference.
pub struct PgTx<'c> {
    tx: RefCell<postgres::Transaction<'c>>,
    prepared: RefCell<&'c mut HashMap<String, postgres::Statement>>,
}

impl PgTx<'_> {
    fn statement(&self, sql: &str) -> Result<postgres::Statement, postgres::Error> {
        if let Some(s) = self.prepared.borrow().get(sql) {
            return Ok(s.clone());
        }
        let s = self.tx.borrow_mut().prepare(sql)?;
        self.prepared.borrow_mut().insert(sql.to_owned(), s.clone());
        Ok(s)
    }
}

impl PgRun for PgTx<'_> {
    fn execute(&self, sql: &str, params: &PgParams<'_>) -> Result<u64, postgres::Error> {
        let st = self.statement(sql)?;
        self.tx.borrow_mut().execute(&st, params)
    }

    fn query(
        &self,
        sql: &str,
        params: &PgParams<'_>,
    ) -> Result<Vec<postgres::Row>, postgres::Error> {
        let st = self.statement(sql)?;
        self.tx.borrow_mut().query(&st, params)
    }
}

impl Pg {
    /// Connects, checks the schema version and applies pending migrations.
    pub fn connect(url: &str) -> Result<Pg, StoreError> {
        let mut config = parse_url(url)?;
        config.connect_timeout(CONNECT_TIMEOUT);
        if config.get_application_name().is_none() {
            config.application_name("netdeploy");
        }
        let pg = Pg {
            shown: describe(&config),
            config,
            conn: Mutex::new(None),
        };
        pg.with(|conn| migrate(&mut conn.client))?;
        Ok(pg)
    }

    /// `PostgreSQL host/database`, without user or password.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// Runs `f` with the connection, connecting first when there is none or it broke. The
    /// driver blocks; on a worker of the server's runtime the runtime is told first
    /// (`block_in_place`), so that it moves its other tasks to another worker meanwhile.
    pub fn with<T>(
        &self,
        f: impl FnOnce(&mut Conn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        use tokio::runtime::{Handle, RuntimeFlavor};
        match Handle::try_current() {
            Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| self.with_blocking(f))
            }
            _ => self.with_blocking(f),
        }
    }

    /// Runs `f` in one transaction, committed when `f` succeeds.
    pub fn in_transaction<T>(
        &self,
        f: impl FnOnce(&PgTx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.with(|conn| {
            let t = PgTx {
                tx: RefCell::new(conn.client.transaction()?),
                prepared: RefCell::new(&mut conn.prepared),
            };
            let out = f(&t)?;
            t.tx.into_inner().commit()?;
            Ok(out)
        })
    }

    fn with_blocking<T>(
        &self,
        f: impl FnOnce(&mut Conn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut slot = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if slot.as_ref().is_none_or(|c| c.client.is_closed()) {
            *slot = None;
            let client = self
                .config
                .connect(postgres::NoTls)
                .map_err(|source| StoreError::Pg {
                    at: self.shown.clone(),
                    source,
                })?;
            *slot = Some(Conn {
                client,
                prepared: HashMap::new(),
            });
        }
        let conn = slot.as_mut().expect("connected above");
        let out = f(conn);
        if conn.client.is_closed() {
            *slot = None;
        }
        out.map_err(|e| match e {
            StoreError::Pg { at, source } if at == "PostgreSQL" => StoreError::Pg {
                at: self.shown.clone(),
                source,
            },
            other => other,
        })
    }
}

/// Reads `[store] url`: a `postgresql://` or `postgres://` URL (or libpq's `key=value` form);
/// the error never repeats the URL, which may hold a password.
pub fn parse_url(url: &str) -> Result<postgres::Config, StoreError> {
    url.parse::<postgres::Config>()
        .map_err(|source| StoreError::Pg {
            at: "[store] url".into(),
            source,
        })
}

fn describe(c: &postgres::Config) -> String {
    let host = match c.get_hosts().first() {
        Some(postgres::config::Host::Tcp(h)) => h.clone(),
        Some(postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = c.get_ports().first().copied().unwrap_or(5432);
    let db = c
        .get_dbname()
        .or(c.get_user())
        .unwrap_or("(default database)");
    format!("PostgreSQL {host}:{port}/{db}")
}

fn migrate(client: &mut postgres::Client) -> Result<(), StoreError> {
    let mut tx = client.transaction()?;
    // `CREATE TABLE IF NOT EXISTS` of an existing table is a NOTICE, not news.
    tx.batch_execute("SET LOCAL client_min_messages = warning")?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS netdeploy_schema (version BIGINT NOT NULL)")?;
    let found: Option<i64> = tx
        .query_opt("SELECT version FROM netdeploy_schema", &[])?
        .map(|r| r.get(0));
    let version = match found {
        Some(v) => v,
        None => {
            tx.execute("INSERT INTO netdeploy_schema (version) VALUES (0)", &[])?;
            0
        }
    };
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(StoreError::TooNew {
            found: version,
            known,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.batch_execute(sql)?;
        tx.execute(
            "UPDATE netdeploy_schema SET version = $1",
            &[&(i as i64 + 1)],
        )?;
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_databases_have_the_same_migrations() {
        assert_eq!(MIGRATIONS.len(), super::super::MIGRATIONS.len());
    }

    #[test]
    fn a_bad_url_is_refused_without_repeating_it() {
        let e = parse_url("postgresql://u:hunter2@host:notaport/db")
            .expect_err("refused")
            .to_string();
        assert!(e.contains("[store] url") && !e.contains("hunter2"), "{e}");
    }

    #[test]
    fn the_shown_address_has_no_user_or_password() {
        let c = parse_url("postgresql://admin:hunter2@db.example:6543/netdeploy").unwrap();
        assert_eq!(describe(&c), "PostgreSQL db.example:6543/netdeploy");
        let c = parse_url("host=/run/pg dbname=nd user=admin password=x").unwrap();
        assert_eq!(describe(&c), "PostgreSQL /run/pg:5432/nd");
    }
}
