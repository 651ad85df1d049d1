//! The host's network interfaces and their IPv4 addresses (getifaddrs(3)).
//!
//! netdeploy serves only the interfaces the configuration names, so it needs each one's address
//! (the server address given to clients on that link) and netmask (the lease pool's subnet).

use std::ffi::CStr;
use std::net::Ipv4Addr;

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

/// Lists every IPv4 address of every interface, in the kernel's order.
pub fn ipv4_addresses() -> std::io::Result<Vec<InterfaceAddr>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we own until freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list returned by getifaddrs, not yet freed.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: ifa_addr is non-null and points to a sockaddr of the family it names.
        let family = unsafe { (*ifa.ifa_addr).sa_family };
        if i32::from(family) != libc::AF_INET {
            continue;
        }
        // SAFETY: the family is AF_INET, so the sockaddr is a sockaddr_in.
        let addr = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
        let netmask = if ifa.ifa_netmask.is_null() {
            Ipv4Addr::BROADCAST
        } else {
            // SAFETY: an AF_INET address has an AF_INET netmask.
            let mask = unsafe { &*(ifa.ifa_netmask as *const libc::sockaddr_in) };
            Ipv4Addr::from(u32::from_be(mask.sin_addr.s_addr))
        };
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let name = unsafe { CStr::from_ptr(ifa.ifa_name) }
            .to_string_lossy()
            .into_owned();
        out.push(InterfaceAddr {
            name,
            address: Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr)),
            netmask,
        });
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
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
}
