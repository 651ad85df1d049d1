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
        self.store
            .run_credential_add(&credentials::digest(&token), &credential, now)?;
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
        let found = self.store.run_credential(&credentials::digest(&token))?;
        Ok(
            credentials::check(found.as_ref(), machine, deployment, usage, now())
                .map(|()| (token, found.expect("check accepts only a found credential"))),
        )
    }

    /// Ends the run of `token`: it is refused from now on.
    pub fn end_run(&self, token: &RunToken) -> Result<(), StoreError> {
        self.store
            .run_credential_end(&credentials::digest(token), now())
            .map(drop)
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
