//! Read-only TFTP server (RFC 1350 with RFC 2347/2348/2349 options and RFC 7440 windowsize).

use std::path::PathBuf;
use std::time::Duration;

/// Validated TFTP settings.
#[derive(Debug, Clone)]
pub struct TftpSettings {
    /// Files are served from below this directory only.
    pub root: PathBuf,
    /// Transfers running at once; further read requests get an ERROR "busy".
    pub max_transfers: usize,
    /// Largest blksize granted (RFC 2348 allows 8 to 65464).
    pub max_blksize: u16,
    /// Largest windowsize granted (RFC 7440 allows 1 to 65535).
    pub max_windowsize: u16,
    /// Retransmission timeout when the client names none.
    pub timeout: Duration,
    /// Retransmissions of one window before the transfer is abandoned.
    pub retries: u32,
}

pub mod server {
    //! Placeholder until the TFTP server lands.
    use std::net::SocketAddr;
    use std::sync::Arc;

    use tokio_util::sync::CancellationToken;

    use super::TftpSettings;
    use crate::counters::Counters;

    pub fn bind_listener(addr: SocketAddr) -> std::io::Result<tokio::net::UdpSocket> {
        let s = std::net::UdpSocket::bind(addr)?;
        s.set_nonblocking(true)?;
        tokio::net::UdpSocket::from_std(s)
    }

    pub async fn serve(
        _socket: tokio::net::UdpSocket,
        _settings: Arc<TftpSettings>,
        _counters: Arc<Counters>,
        cancel: CancellationToken,
    ) -> std::io::Result<()> {
        cancel.cancelled().await;
        Ok(())
    }
}
