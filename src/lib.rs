//! netdeploy: an operating-system deployment server.
//!
//! The crate is split by what the program does on the wire:
//! - [`config`]: the TOML configuration, parsed then validated;
//! - [`arch`]: the client firmware architecture (DHCP option 93) and its boot file;
//! - [`catalog`]: devices, collections, task sequences and deployments (docs/site-file.md);
//! - [`decision`]: which deployment a booting machine gets, and the checks on new deployments
//!   (docs/selection-rules.md and docs/deployment-checks.md), pure;
//! - [`dhcp`]: proxyDHCP and DHCP for PXE clients (pure decisions in `dhcp::pxe`, leases in
//!   `dhcp::leases`, sockets in `dhcp::server`);
//! - [`tftp`]: the read-only TFTP server (pure state machine and path rules, thin tokio layer);
//! - [`http`]: per-machine iPXE scripts and boot image files;
//! - [`tls`]: the HTTPS certificate (configured, or self-signed and kept) and its pin;
//! - [`secure_boot`]: the Secure Boot chain (shim, signed GRUB, signed kernel): what TFTP serves
//!   for it and the GRUB configurations, pure;
//! - [`credentials`]: the run token rules of the boot environment's channel, pure;
//! - [`snapshot`]: the indexed catalog and the machines' history the boot path decides from,
//!   and the queue that persists what it records;
//! - [`counters`]: what the server counted (offers, drops, transfers), for logs and metrics;
//! - [`multicast`]: multicast imaging sessions, the sender of the protocol in
//!   `netdeploy_wire::multicast`;
//! - [`retention`]: status messages forgotten past their age or count;
//! - [`serve`]: starts everything and prints the startup line.

pub mod admin;
pub mod alert_hooks;
pub mod alerts;
pub mod arch;
pub mod bootpath;
pub mod catalog;
pub mod config;
pub mod content;
pub mod counters;
pub mod credentials;
pub mod decision;
pub mod dhcp;
pub mod dhcp6;
pub mod http;
pub mod interfaces;
pub mod monitoring;
pub mod multicast;
pub mod policy;
pub mod retention;
pub mod secure_boot;
pub mod serve;
pub mod snapshot;
pub mod store;
pub mod tftp;
pub mod tls;
pub mod wake;
