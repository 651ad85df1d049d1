//! The boot path's run credentials (docs/security.md): issued when a run starts, checked on
//! every policy request and status message, ended with the run. The rules are in
//! [`crate::credentials`], the table in [`crate::store::credentials`].

use std::time::Duration;

use super::{now, BootPath};
use crate::catalog::MachineIdentity;
use crate::credentials::{self, MediumKey, Refusal, RunCredential, RunToken, Use};
use crate::store::{Store, StoreError};

/// Why a token could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("the operating system gave no random bytes for a run token: {0}")]
    Random(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl BootPath {
    /// Makes a token for a run of `deployment` (or of none yet) on `machine`, valid for
    /// `lifetime` unless the run ends first, and keeps its SHA-256.
    pub fn issue_run_token(
        &self,
        machine: &MachineIdentity,
        deployment: Option<&str>,
        lifetime: Duration,
    ) -> Result<RunToken, IssueError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| IssueError::Random(e.to_string()))?;
        let token = RunToken::from_bytes(bytes);
        let now = now();
        let credential = RunCredential {
            machine: *machine,
            deployment: deployment.map(str::to_owned),
            issued_at: now,
            expires_at: now.saturating_add(lifetime.as_secs() as i64),
            ended_at: None,
        };
        let digest = credentials::digest(&token);
        self.store.run_credential_add(&digest, &credential, now)?;
        self.recent_credentials.note(&digest, &credential);
        Ok(token)
    }

    /// Whether `authorization` (the request's header) lets `machine` ask about `deployment`
    /// for `usage`;
    /// the credential it presents, when it does.
    pub fn check_run_token(
        &self,
        authorization: Option<&str>,
        machine: &MachineIdentity,
        deployment: Option<&str>,
        usage: Use,
    ) -> Result<Result<(RunToken, RunCredential), Refusal>, StoreError> {
        let token = match credentials::presented(authorization) {
            Ok(t) => t,
            Err(r) => return Ok(Err(r)),
        };
        let digest = credentials::digest(&token);
        let found = match self.store.run_credential(&digest) {
            Ok(Some(c)) => {
                self.recent_credentials.note(&digest, &c);
                Some(c)
            }
            Ok(None) => None,
            // The shared database is away: a run this server issued or checked goes on.
            Err(e) if e.is_unreachable() => match self.recent_credentials.get(&digest) {
                Some(c) => Some(c),
                None => return Err(e),
            },
            Err(e) => return Err(e),
        };
        Ok(
            credentials::check(found.as_ref(), machine, deployment, usage, now())
                .map(|()| (token, found.expect("check accepts only a found credential"))),
        )
    }

    /// Ends the run of `token`: it is refused from now on.
    pub fn end_run(&self, token: &RunToken) -> Result<(), StoreError> {
        let digest = credentials::digest(token);
        let now = now();
        self.recent_credentials.end(&digest, now);
        self.store.run_credential_end(&digest, now).map(drop)
    }

    /// Whether `authorization` presents the key of a boot medium that is not revoked.
    pub fn check_medium_key(
        &self,
        authorization: Option<&str>,
    ) -> Result<Result<(), Refusal>, StoreError> {
        let key = match credentials::presented_medium(authorization) {
            Ok(k) => k,
            Err(r) => return Ok(Err(r)),
        };
        let stored = self.store.medium(&key.id())?;
        Ok(credentials::check_medium(stored.as_ref(), &key))
    }
}

/// Makes a new boot medium's key (`netdeploy media key`) and keeps the SHA-256 of its secret.
pub fn new_medium_key(store: &Store) -> Result<MediumKey, IssueError> {
    let (mut id, mut secret) = ([0u8; 4], [0u8; 32]);
    getrandom::fill(&mut id).map_err(|e| IssueError::Random(e.to_string()))?;
    getrandom::fill(&mut secret).map_err(|e| IssueError::Random(e.to_string()))?;
    let key = MediumKey::from_bytes(id, secret);
    store.medium_add(&key.id(), &credentials::medium_digest(&key), now())?;
    Ok(key)
}

/// Credentials seen lately, at most [`Recent::CAPACITY`] (past it, the oldest half goes).
#[derive(Default)]
pub struct Recent {
    /// A counter, and each credential by digest with the counter when it was noted.
    seen: std::sync::Mutex<(u64, Noted)>,
}

type Noted = std::collections::HashMap<String, (u64, RunCredential)>;

impl Recent {
    pub const CAPACITY: usize = 20_000;

    fn note(&self, digest: &str, c: &RunCredential) {
        let mut g = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let (tick, map) = &mut *g;
        *tick += 1;
        map.insert(digest.to_owned(), (*tick, c.clone()));
        if map.len() > Self::CAPACITY {
            let cut = *tick - (Self::CAPACITY as u64) / 2;
            map.retain(|_, (t, _)| *t > cut);
        }
    }

    fn get(&self, digest: &str) -> Option<RunCredential> {
        let g = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        g.1.get(digest).map(|(_, c)| c.clone())
    }

    fn end(&self, digest: &str, at: i64) {
        let mut g = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, c)) = g.1.get_mut(digest) {
            c.ended_at.get_or_insert(at);
        }
    }
}
