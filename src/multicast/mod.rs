//! Multicast imaging (docs/multicast.md): one session sends an image package's chunks to
//! every machine that asks, with the protocol of `netdeploy_wire::multicast`.
//!
//! - [`config`]: `[multicast]`, validated;
//! - [`session`]: the sender, a thin tokio layer around the protocol's pure scheduler.

pub mod config;
pub mod session;

pub use config::MulticastConfig;
pub use session::{run, Report, SessionImage, SessionOptions};
