//! The contract between the netdeploy server, the agent of its Linux boot environment and
//! its media builder: what one side writes, the other reads, with the same types on both
//! sides so that they cannot drift apart.
//!
//! - [`policy`]: what `GET /agent/policy` answers (every action, the menu included) and the
//!   task sequence steps;
//! - [`status`]: the status messages of `POST /agent/status`;
//! - [`disk`]: which disk a step works on, partition layouts and where they land;
//! - [`variables`]: the media variables file, one writer and one parser;
//! - [`winpe`]: what Windows PE gets to start the agent (`winpeshl.ini`), over the network or
//!   from WinPE media, and where the Windows agent is found;
//! - [`cert_pin`]: the pin of the server's HTTPS certificate the agent accepts;
//! - [`image`]: the image format, index and chunks, that capture writes and apply reads;
//! - [`multicast`]: the multicast imaging protocol, its receiver and its sender's scheduler;
//! - [`run_token`]: the credential the agent presents on every policy and status request;
//! - [`password`] (feature `password`): the media password and the server's PXE password, argon2id
//!   in the PHC string format;
//! - [`Mac`], [`SmbiosUuid`] and [`Sha256Hex`]: who a machine is and what a file is, with
//!   the one hex codec ([`hex`]) under them.
//!
//! Values from a newer peer that this side does not know (a policy action, a step action, a
//! status kind) become an explicit `Unknown` variant, never a silent default: the reader
//! decides what to refuse and says why.

pub mod cert_pin;
#[macro_use]
mod closed_set;
pub mod disk;
pub mod hex;
mod identity;
pub mod image;
pub mod multicast;
#[cfg(feature = "password")]
pub mod password;
pub mod policy;
pub mod run_token;
#[cfg(feature = "password")]
pub mod seal;
mod sha256;
pub mod status;
pub mod variables;
pub mod winpe;

pub use identity::{Mac, SmbiosUuid};
pub use sha256::Sha256Hex;
