//! DHCP for network-boot clients: proxyDHCP (boot information only), proxy on port 4011 only,
//! and full DHCP with leases (docs/network-boot.md).
//!
//! - [`packet`]: decoding untrusted datagrams (dhcproto plus our own walk of the PXE options);
//! - [`pxe`]: the pure decisions: who is answered, with what;
//! - [`leases`]: the lease table of `dhcp` mode and its crash-safe file;
//! - [`server`]: the sockets.

pub mod leases;
pub mod packet;
pub mod pxe;
pub mod server;
