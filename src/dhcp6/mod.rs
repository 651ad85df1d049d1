//! DHCPv6 for network-boot clients on IPv6 links, in proxy fashion beside the site's DHCPv6
//! server or router advertisements (docs/network-boot.md, "IPv6").
//!
//! - [`packet`]: decoding untrusted datagrams (our walk of the options, then dhcproto);
//! - [`pxe`]: the pure decisions: who is answered, with which boot file URL;
//! - [`server`]: the sockets (UDP 547 joined to ff02::1:2, and 4011).

pub mod packet;
pub mod pxe;
pub mod server;
