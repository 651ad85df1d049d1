//! Read-only TFTP server (RFC 1350 with RFC 2347/2348/2349 options and RFC 7440 windowsize).
//!
//! - [`packet`]: parse and encode the packets, never panicking on any bytes;
//! - [`path`]: which file under the root a requested name means, or why it is refused;
//! - [`transfer`]: one read transfer as a pure state machine (options, windows, loss recovery);
//! - [`server`]: the tokio layer: the listening socket, one socket per transfer;
//! - [`slots`]: the bound on concurrent transfers, in all and per client, and which stalled
//!   transfer gives way to a waiting client;
//! - [`batch`]: a window of datagrams sent in one system call.
//!
//! netdeploy has its own TFTP code instead of the `async-tftp` crate, which ignores an ERROR
//! packet from the client: UEFI firmware reads the file size from the OACK and then aborts with
//! an ERROR (docs/network-boot.md), and that transfer would hold its slot until it timed out. Booting
//! fleets also need what that crate lacks: windowsize (RFC 7440) with a retransmission strategy
//! that does not collapse when datagrams are lost, listeners bound to the address of each
//! configured interface, and a bound on concurrent transfers.

pub mod batch;
pub mod packet;
pub mod path;
pub mod server;
pub mod slots;
pub mod transfer;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A file served under a fixed name rather than from the root: a file elsewhere on disk (a
/// distribution's signed boot loader) or bytes made by the server (a boot loader's
/// configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provided {
    File(PathBuf),
    Bytes(Arc<[u8]>),
}

/// Validated TFTP settings.
#[derive(Debug, Clone)]
pub struct TftpSettings {
    /// Files are served from below this directory only.
    pub root: PathBuf,
    /// Transfers running at once; further read requests get an ERROR "busy".
    pub max_transfers: usize,
    /// Transfers running at once for one client address; further requests from it get an
    /// ERROR "busy".
    pub max_transfers_per_client: usize,
    /// Largest blksize granted (RFC 2348 allows 8 to 65464).
    pub max_blksize: u16,
    /// Largest windowsize granted (RFC 7440 allows 1 to 65535).
    pub max_windowsize: u16,
    /// Longest retransmission timeout when the client names none (shorter ones follow the
    /// measured round trip, see `transfer`).
    pub timeout: Duration,
    /// Retransmissions at that longest timeout before a silent client's transfer is abandoned.
    pub retries: u32,
    /// Grant windows of blocks larger than the path MTU as asked (default: such blocks are
    /// lowered to fit the MTU when a window is negotiated; see `transfer`).
    pub fragmented_windows: bool,
    /// Files served under these names (keys as [`path::provided_name`] makes them, in lower
    /// case) before the root is looked at.
    pub provided: BTreeMap<String, Provided>,
    /// Files made on request, asked after `provided` and before the root.
    pub generator: Option<Generator>,
}

/// Makes a file for a requested name ([`path::provided_name`], case kept) and the client's
/// address, or says `None` to leave the name to the root. It runs on the transfer's blocking
/// thread, so it may read the store.
#[derive(Clone)]
pub struct Generator(pub Arc<GenerateFn>);

/// What a [`Generator`] calls.
pub type GenerateFn = dyn Fn(&str, std::net::IpAddr) -> Option<Provided> + Send + Sync;

impl std::fmt::Debug for Generator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Generator")
    }
}
