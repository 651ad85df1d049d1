//! Multicast imaging (docs/multicast.md): one session sends an image package's chunks to
//! every machine that asks, with the protocol of `netdeploy_wire::multicast`.
//!
//! - [`config`]: `[multicast]`, validated;
//! - [`session`]: the sender, a thin tokio layer around the protocol's pure scheduler;
//! - [`sessions`]: the sessions deployments start, and who joined them;
//! - [`live`]: what the status page shows of each session.

pub mod config;
pub mod live;
pub mod session;
pub mod sessions;

pub use config::MulticastConfig;
pub use session::{run, Report, SessionImage, SessionOptions};
pub use sessions::Sessions;
