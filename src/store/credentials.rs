//! Run credentials in the store: issued, looked up by the SHA-256 of their token, ended, and
//! forgotten once expired (docs/security.md). The rules are in [`crate::credentials`].

use rusqlite::{params, OptionalExtension};

use super::{Store, StoreError};
use crate::catalog::MachineIdentity;
use crate::credentials::{RunCredential, StoredMedium};

/// Live credentials kept per MAC: a machine that is sent many scripts keeps only its newest
/// runs, so that requests cannot fill the table.
pub const PER_MACHINE: i64 = 8;

/// Credentials kept in all: past it the oldest go, whichever machine they were for.
pub const MAX_KEPT: i64 = 100_000;

impl Store {
    /// Keeps a credential under `digest`, forgets every expired one, and keeps at most
    /// [`PER_MACHINE`] for the machine's MAC and [`MAX_KEPT`] in all (the oldest go).
    pub fn run_credential_add(
        &self,
        digest: &str,
        c: &RunCredential,
        now: i64,
    ) -> Result<(), StoreError> {
        let mac = c.machine.mac.map(|m| m.to_string());
        self.transaction(|tx| {
            tx.tx.execute(
                "DELETE FROM run_credential WHERE expires_at <= ?1",
                params![now],
            )?;
            tx.tx.execute(
                "INSERT OR REPLACE INTO run_credential
                 (digest, mac, uuid, deployment, issued_at, expires_at, ended_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    digest,
                    mac,
                    c.machine.uuid.map(|u| u.to_string()),
                    c.deployment,
                    c.issued_at,
                    c.expires_at,
                    c.ended_at
                ],
            )?;
            if let Some(mac) = &mac {
                tx.tx.execute(
                    "DELETE FROM run_credential WHERE mac = ?1 AND digest NOT IN (
                        SELECT digest FROM run_credential WHERE mac = ?1
                        ORDER BY issued_at DESC, rowid DESC LIMIT ?2)",
                    params![mac, PER_MACHINE],
                )?;
            }
            tx.tx.execute(
                "DELETE FROM run_credential WHERE digest IN (
                    SELECT digest FROM run_credential ORDER BY issued_at DESC, rowid DESC
                    LIMIT -1 OFFSET ?1)",
                params![MAX_KEPT],
            )?;
            Ok(())
        })
    }

    /// The credential kept under `digest`.
    pub fn run_credential(&self, digest: &str) -> Result<Option<RunCredential>, StoreError> {
        let conn = self.conn();
        let row = conn
            .query_row(
                "SELECT mac, uuid, deployment, issued_at, expires_at, ended_at
                 FROM run_credential WHERE digest = ?1",
                params![digest],
                |r| {
                    Ok((
                        r.get::<_, Option<String>>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, Option<i64>>(5)?,
                    ))
                },
            )
            .optional()?;
        Ok(
            row.map(|(mac, uuid, deployment, issued_at, expires_at, ended_at)| {
                RunCredential {
                    machine: MachineIdentity {
                        // Written by this module from parsed values: they parse again.
                        mac: mac.and_then(|m| m.parse().ok()),
                        uuid: uuid.and_then(|u| crate::catalog::parse_smbios_uuid(&u).ok()),
                    },
                    deployment,
                    issued_at,
                    expires_at,
                    ended_at,
                }
            }),
        )
    }

    /// Marks the run of `digest` ended at `now`; false when there is no such live credential.
    pub fn run_credential_end(&self, digest: &str, now: i64) -> Result<bool, StoreError> {
        Ok(self.conn().execute(
            "UPDATE run_credential SET ended_at = ?2 WHERE digest = ?1 AND ended_at IS NULL",
            params![digest, now],
        )? > 0)
    }

    /// How many credentials are kept (live, ended or expired but not yet forgotten).
    pub fn run_credential_count(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn()
            .query_row("SELECT COUNT(*) FROM run_credential", [], |r| r.get(0))?)
    }
}

impl Store {
    /// Keeps a new boot medium's key under `id`.
    pub fn medium_add(&self, id: &str, digest: &str, now: i64) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO medium (id, digest, created_at) VALUES (?1, ?2, ?3)",
            params![id, digest, now],
        )?;
        Ok(())
    }

    /// The medium kept under `id`.
    pub fn medium(&self, id: &str) -> Result<Option<StoredMedium>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT digest, created_at, revoked_at FROM medium WHERE id = ?1",
                params![id],
                |r| {
                    Ok(StoredMedium {
                        digest: r.get(0)?,
                        created_at: r.get(1)?,
                        revoked_at: r.get(2)?,
                    })
                },
            )
            .optional()?)
    }

    /// Every medium: (id, created at, revoked at), oldest first.
    pub fn media(&self) -> Result<Vec<(String, i64, Option<i64>)>, StoreError> {
        let conn = self.conn();
        let mut st =
            conn.prepare("SELECT id, created_at, revoked_at FROM medium ORDER BY created_at, id")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Revokes the medium `id`; false when there is none (or it was revoked before).
    pub fn medium_revoke(&self, id: &str, now: i64) -> Result<bool, StoreError> {
        Ok(self.conn().execute(
            "UPDATE medium SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
            params![id, now],
        )? > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cred(mac: &str, issued_at: i64, expires_at: i64) -> RunCredential {
        RunCredential {
            machine: MachineIdentity {
                mac: Some(mac.parse().unwrap()),
                uuid: Some(
                    crate::catalog::parse_smbios_uuid("4e44d0e1-0d08-4c4a-9b1e-2f6d0d080001")
                        .unwrap(),
                ),
            },
            deployment: Some("LAB00001".into()),
            issued_at,
            expires_at,
            ended_at: None,
        }
    }

    #[test]
    fn a_credential_round_trips_and_ends_once() {
        let s = Store::in_memory().unwrap();
        let c = cred("52:54:00:00:00:01", 10, 100);
        s.run_credential_add("d1", &c, 10).unwrap();
        assert_eq!(s.run_credential("d1").unwrap(), Some(c.clone()));
        assert_eq!(s.run_credential("d2").unwrap(), None);
        assert!(s.run_credential_end("d1", 20).unwrap());
        assert!(!s.run_credential_end("d1", 30).unwrap());
        assert_eq!(s.run_credential("d1").unwrap().unwrap().ended_at, Some(20));
    }

    #[test]
    fn expired_credentials_are_forgotten_and_each_machine_keeps_its_newest() {
        let s = Store::in_memory().unwrap();
        s.run_credential_add("old", &cred("52:54:00:00:00:02", 1, 50), 1)
            .unwrap();
        for i in 0..PER_MACHINE + 5 {
            s.run_credential_add(
                &format!("d{i}"),
                &cred("52:54:00:00:00:01", 60 + i, 1000),
                60 + i,
            )
            .unwrap();
        }
        assert_eq!(s.run_credential_count().unwrap(), PER_MACHINE);
        assert!(s.run_credential("old").unwrap().is_none());
        assert!(s.run_credential("d0").unwrap().is_none());
        assert!(s
            .run_credential(&format!("d{}", PER_MACHINE + 4))
            .unwrap()
            .is_some());
    }
}
