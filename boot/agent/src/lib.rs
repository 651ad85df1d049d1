//! The task sequence agent of netdeploy's Linux boot environment (docs/selection-rules.md, docs/deployment-checks.md, docs/content.md, docs/status.md).
//!
//! Started by the initramfs `/init` after PXE or boot media, it asks the server for this
//! machine's policy (or reads a full media's, [`full_media`]), runs the deployment's steps,
//! fetches and verifies content, reports status, and powers off or reboots when the last step
//! says so. A protected medium first asks for its password ([`media_password`]).
//!
//! The logic is pure and tested without a network: [`config`] (kernel command line and
//! media variables), [`policy`] and [`plan`] (from the server's JSON to checked steps),
//! [`download::decide`] and [`download::backoff`] (the resume rules), [`http::wire`]. The I/O
//! around it is thin: [`http`], [`download`], [`apply_image`], [`image`] (capture and apply of
//! filesystem-aware images), [`capture_image`] (a disk to the server as a new package),
//! [`command`], [`status`],
//! [`sequence`], and [`agent`], which ties one run together.

pub mod agent;
pub mod apply_image;
pub mod capture_image;
pub mod cli;
pub mod command;
pub mod config;
pub mod console;
pub mod disk;
pub mod download;
pub mod full_media;
pub mod hash;
pub mod http;
pub mod identity;
pub mod image;
pub mod media_password;
pub mod menu;
pub mod multicast;
pub mod plan;
pub mod platform;
pub mod policy;
pub mod power;
pub mod progress;
pub mod sequence;
pub mod status;
pub mod verify;

#[cfg(test)]
#[path = "../tests/support/fake_server.rs"]
mod fake_server;
