//! Run credentials in the store: issued, looked up by the SHA-256 of their token, ended, and
//! forgotten once expired (docs/security.md). The rules are in [`crate::credentials`].

use super::sql::{both, each, P};
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
        let r = self.run_credential_add_now(digest, c, now);
        self.or_keep(
            r,
            || super::spool::Kept::RunIssued {
                digest: digest.to_owned(),
                mac: c.machine.mac.map(|m| m.to_string()),
                uuid: c.machine.uuid.map(|u| u.to_string()),
                deployment: c.deployment.clone(),
                issued_at: c.issued_at,
                expires_at: c.expires_at,
            },
            (),
        )
    }

    pub(super) fn run_credential_add_now(
        &self,
        digest: &str,
        c: &RunCredential,
        now: i64,
    ) -> Result<(), StoreError> {
        let mac = c.machine.mac.map(|m| m.to_string());
        let uuid = c.machine.uuid.map(|u| u.to_string());
        // Not a change of the catalog or the loop guard: other servers need not reload.
        self.quiet_transaction(|tx| {
            tx.exec(
                both("DELETE FROM run_credential WHERE expires_at <= ?1"),
                &[P::Int(now)],
            )?;
            tx.exec(
                both(
                    "INSERT INTO run_credential
                     (digest, mac, uuid, deployment, issued_at, expires_at, ended_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT (digest) DO UPDATE SET mac = excluded.mac, uuid = excluded.uuid,
                     deployment = excluded.deployment, issued_at = excluded.issued_at,
                     expires_at = excluded.expires_at, ended_at = excluded.ended_at",
                ),
                &[
                    P::Text(digest),
                    P::OptText(mac.as_deref()),
                    P::OptText(uuid.as_deref()),
                    P::OptText(c.deployment.as_deref()),
                    P::Int(c.issued_at),
                    P::Int(c.expires_at),
                    P::OptInt(c.ended_at),
                ],
            )?;
            if let Some(mac) = &mac {
                tx.exec(
                    each(
                        "DELETE FROM run_credential WHERE mac = ?1 AND digest NOT IN (
                            SELECT digest FROM run_credential WHERE mac = ?1
                            ORDER BY issued_at DESC, rowid DESC LIMIT ?2)",
                        "DELETE FROM run_credential WHERE mac = $1 AND digest NOT IN (
                            SELECT digest FROM run_credential WHERE mac = $1
                            ORDER BY issued_at DESC, seq DESC LIMIT $2)",
                    ),
                    &[P::Text(mac), P::Int(PER_MACHINE)],
                )?;
            }
            tx.exec(
                each(
                    "DELETE FROM run_credential WHERE digest IN (
                        SELECT digest FROM run_credential ORDER BY issued_at DESC, rowid DESC
                        LIMIT -1 OFFSET ?1)",
                    "DELETE FROM run_credential WHERE digest IN (
                        SELECT digest FROM run_credential ORDER BY issued_at DESC, seq DESC
                        OFFSET $1)",
                ),
                &[P::Int(MAX_KEPT)],
            )?;
            Ok(())
        })
    }

    /// The credential kept under `digest`.
    pub fn run_credential(&self, digest: &str) -> Result<Option<RunCredential>, StoreError> {
        let row = self.read(|on| {
            on.query_opt(
                both(
                    "SELECT mac, uuid, deployment, issued_at, expires_at, ended_at
                     FROM run_credential WHERE digest = ?1",
                ),
                &[P::Text(digest)],
            )
        })?;
        Ok(row.map(|r| RunCredential {
            machine: MachineIdentity {
                // Written by this module from parsed values: they parse again.
                mac: r.opt_text(0).and_then(|m| m.parse().ok()),
                uuid: r
                    .opt_text(1)
                    .and_then(|u| crate::catalog::parse_smbios_uuid(&u).ok()),
            },
            deployment: r.opt_text(2),
            issued_at: r.int(3),
            expires_at: r.int(4),
            ended_at: r.opt_int(5),
        }))
    }

    /// Marks the run of `digest` ended at `now`; false when there is no such live credential.
    /// While the database is unreachable a server keeps the end in its spool (true).
    pub fn run_credential_end(&self, digest: &str, now: i64) -> Result<bool, StoreError> {
        let r = self.run_credential_end_now(digest, now);
        self.or_keep(
            r,
            || super::spool::Kept::RunEnded {
                digest: digest.to_owned(),
                at: now,
            },
            true,
        )
    }

    pub(super) fn run_credential_end_now(
        &self,
        digest: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        Ok(self.write(false, |on| {
            on.exec(
                both(
                    "UPDATE run_credential SET ended_at = ?2 WHERE digest = ?1 AND ended_at IS NULL",
                ),
                &[P::Text(digest), P::Int(now)],
            )
        })? > 0)
    }

    /// How many credentials are kept (live, ended or expired but not yet forgotten).
    pub fn run_credential_count(&self) -> Result<i64, StoreError> {
        self.read(|on| Ok(on.query(both("SELECT COUNT(*) FROM run_credential"), &[])?[0].int(0)))
    }
}

impl Store {
    /// Keeps a new boot medium's key under `id`.
    pub fn medium_add(&self, id: &str, digest: &str, now: i64) -> Result<(), StoreError> {
        self.write(false, |on| {
            on.exec(
                both("INSERT INTO medium (id, digest, created_at) VALUES (?1, ?2, ?3)"),
                &[P::Text(id), P::Text(digest), P::Int(now)],
            )
        })?;
        Ok(())
    }

    /// The medium kept under `id`.
    pub fn medium(&self, id: &str) -> Result<Option<StoredMedium>, StoreError> {
        let row = self.read(|on| {
            on.query_opt(
                both("SELECT digest, created_at, revoked_at FROM medium WHERE id = ?1"),
                &[P::Text(id)],
            )
        })?;
        Ok(row.map(|r| StoredMedium {
            digest: r.text(0),
            created_at: r.int(1),
            revoked_at: r.opt_int(2),
        }))
    }

    /// Every medium: (id, created at, revoked at), oldest first.
    pub fn media(&self) -> Result<Vec<(String, i64, Option<i64>)>, StoreError> {
        let rows = self.read(|on| {
            on.query(
                both("SELECT id, created_at, revoked_at FROM medium ORDER BY created_at, id"),
                &[],
            )
        })?;
        Ok(rows
            .iter()
            .map(|r| (r.text(0), r.int(1), r.opt_int(2)))
            .collect())
    }

    /// Revokes the medium `id`; false when there is none (or it was revoked before).
    pub fn medium_revoke(&self, id: &str, now: i64) -> Result<bool, StoreError> {
        Ok(self.write(false, |on| {
            on.exec(
                both("UPDATE medium SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL"),
                &[P::Text(id), P::Int(now)],
            )
        })? > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::each_backend;
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
        each_backend(|s| {
            let c = cred("52:54:00:00:00:01", 10, 100);
            s.run_credential_add("d1", &c, 10).unwrap();
            assert_eq!(s.run_credential("d1").unwrap(), Some(c.clone()));
            assert_eq!(s.run_credential("d2").unwrap(), None);
            assert!(s.run_credential_end("d1", 20).unwrap());
            assert!(!s.run_credential_end("d1", 30).unwrap());
            assert_eq!(s.run_credential("d1").unwrap().unwrap().ended_at, Some(20));
        });
    }

    #[test]
    fn expired_credentials_are_forgotten_and_each_machine_keeps_its_newest() {
        each_backend(|s| {
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
        });
    }

    #[test]
    fn media_keys_are_kept_listed_and_revoked_once() {
        each_backend(|s| {
            s.medium_add("m1", "digest1", 10).unwrap();
            s.medium_add("m2", "digest2", 20).unwrap();
            assert!(s.medium_add("m1", "again", 30).is_err(), "ids are unique");
            assert_eq!(s.medium("m1").unwrap().unwrap().digest, "digest1");
            assert!(s.medium_revoke("m1", 40).unwrap());
            assert!(!s.medium_revoke("m1", 50).unwrap());
            assert_eq!(
                s.media().unwrap(),
                vec![("m1".into(), 10, Some(40)), ("m2".into(), 20, None)]
            );
        });
    }
}
