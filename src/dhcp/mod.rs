//! DHCP for network-boot clients: proxyDHCP (boot information only), proxy on port 4011 only,
//! and full DHCP with leases (docs/network-boot.md).
//!
//! - [`packet`]: decoding untrusted datagrams (dhcproto plus our own walk of the PXE options);
//! - [`pxe`]: the pure decisions: who is answered, with what;
//! - [`leases`]: the lease table of `dhcp` mode and its crash-safe file;
//! - [`sightings`]: which machines asked for a network boot lately, for the HTTP side;
//! - [`server`]: the sockets.

pub mod leases;
pub mod packet;
pub mod pxe;
pub mod server;
pub mod sightings;
