//! The host's network interfaces and their IPv4 and IPv6 addresses (getifaddrs(3)).
//!
//! netdeploy serves only the interfaces the configuration names, so it needs each one's address
//! (the server address given to clients on that link) and netmask (the lease pool's subnet),
//! and with `[ipv6]` each one's IPv6 address and interface index (the multicast group is
//! joined per interface).

use std::ffi::CStr;
use std::net::{Ipv4Addr, Ipv6Addr};

/// One IPv4 address on one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceAddr {
    /// Interface name, such as `eth0` or `br0`.
    pub name: String,
    /// The interface's IPv4 address.
    pub address: Ipv4Addr,
    /// Its netmask.
    pub netmask: Ipv4Addr,
}

/// Calls `f` with each address of `family` (`AF_INET`, `AF_INET6`) that getifaddrs(3) lists,
/// in the kernel's order, with its interface's name.
fn each_address(family: i32, mut f: impl FnMut(&libc::ifaddrs, &CStr)) -> std::io::Result<()> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we own until freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list returned by getifaddrs, not yet freed.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: ifa_addr is non-null and points to a sockaddr of the family it names.
        if i32::from(unsafe { (*ifa.ifa_addr).sa_family }) != family {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        f(ifa, unsafe { CStr::from_ptr(ifa.ifa_name) });
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    Ok(())
}

/// Lists every IPv4 address of every interface, in the kernel's order.
pub fn ipv4_addresses() -> std::io::Result<Vec<InterfaceAddr>> {
    let mut out = Vec::new();
    each_address(libc::AF_INET, |ifa, name| {
        // SAFETY: the family is AF_INET, so the sockaddr is a sockaddr_in.
        let addr = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
        let netmask = if ifa.ifa_netmask.is_null() {
            Ipv4Addr::BROADCAST
        } else {
            // SAFETY: an AF_INET address has an AF_INET netmask.
            let mask = unsafe { &*(ifa.ifa_netmask as *const libc::sockaddr_in) };
            Ipv4Addr::from(u32::from_be(mask.sin_addr.s_addr))
        };
        out.push(InterfaceAddr {
            name: name.to_string_lossy().into_owned(),
            address: Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr)),
            netmask,
        });
    })?;
    Ok(out)
}

/// One IPv6 address on one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface6Addr {
    pub name: String,
    /// The interface index (the scope of link-local addresses, the multicast interface).
    pub index: u32,
    pub address: Ipv6Addr,
}

impl Interface6Addr {
    /// Link-local addresses (fe80::/10) name no server in a URL a client can reach off-link,
    /// and need a scope; netdeploy serves the global, unique local or loopback address.
    pub fn is_link_local(&self) -> bool {
        self.address.segments()[0] & 0xffc0 == 0xfe80
    }
}

/// Lists every IPv6 address of every interface, in the kernel's order.
pub fn ipv6_addresses() -> std::io::Result<Vec<Interface6Addr>> {
    let mut out = Vec::new();
    each_address(libc::AF_INET6, |ifa, name| {
        // SAFETY: the family is AF_INET6, so the sockaddr is a sockaddr_in6.
        let addr = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
        // SAFETY: if_nametoindex reads the NUL-terminated name only.
        let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        out.push(Interface6Addr {
            name: name.to_string_lossy().into_owned(),
            index,
            address: Ipv6Addr::from(addr.sin6_addr.s6_addr),
        });
    })?;
    Ok(out)
}

/// This host's name (`gethostname`), or `netdeploy` when it has none.
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that many bytes.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..end]) {
        Ok(n) if ok && !n.is_empty() => n.to_owned(),
        _ => "netdeploy".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_has_127_0_0_1() {
        let all = ipv4_addresses().unwrap();
        assert!(all
            .iter()
            .any(|a| a.name == "lo" && a.address == Ipv4Addr::LOCALHOST));
    }

    #[test]
    fn loopback_has_ipv6_loopback_with_its_index() {
        let all = ipv6_addresses().unwrap();
        let lo = all
            .iter()
            .find(|a| a.name == "lo" && a.address == Ipv6Addr::LOCALHOST)
            .expect("::1 on lo");
        assert!(lo.index > 0);
        assert!(!lo.is_link_local());
    }
}
