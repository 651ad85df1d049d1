//! Wake-on-LAN (SPEC section 9): magic packets for the machines of a required deployment with
//! wake-on-LAN, sent only on the interfaces netdeploy serves (`SO_BINDTODEVICE`), as UDP
//! broadcasts to port 9.

use std::net::{Ipv4Addr, SocketAddrV4};

use socket2::{Domain, Protocol, Socket, Type};

use crate::catalog::{Catalog, DeploymentId};
use crate::dhcp::packet::Mac;
use crate::interfaces::InterfaceAddr;

/// Six bytes of 0xFF, then the MAC sixteen times (the AMD "Magic Packet" format).
pub fn magic_packet(mac: Mac) -> [u8; 102] {
    let mut p = [0xffu8; 102];
    for i in 0..16 {
        p[6 + i * 6..12 + i * 6].copy_from_slice(&mac.0);
    }
    p
}

/// The MACs to wake for a deployment: every MAC of every device of its collection.
pub fn macs_of_deployment(catalog: &Catalog, id: &DeploymentId) -> Option<Vec<Mac>> {
    let d = catalog.deployment(id)?;
    let c = catalog.collection(&d.collection)?;
    Some(
        catalog
            .members(c)
            .iter()
            .flat_map(|dev| dev.macs.iter().copied())
            .collect(),
    )
}

/// Wakes the machines of a new deployment when it is required and asks for wake-on-LAN
/// (SPEC section 9); `None` when it does not ask, else the number of packets sent.
pub fn wake_new_deployment(
    catalog: &Catalog,
    id: &DeploymentId,
    interfaces: &[InterfaceAddr],
) -> Option<std::io::Result<usize>> {
    let d = catalog.deployment(id)?;
    if !(d.wake_on_lan && d.is_required()) {
        return None;
    }
    let macs = macs_of_deployment(catalog, id).unwrap_or_default();
    Some(send(interfaces, &macs))
}

/// Sends one magic packet per MAC on each interface; returns how many datagrams went out.
pub fn send(interfaces: &[InterfaceAddr], macs: &[Mac]) -> std::io::Result<usize> {
    let mut sent = 0;
    for iface in interfaces {
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        s.set_broadcast(true)?;
        s.bind_device(Some(iface.name.as_bytes()))?;
        s.bind(&SocketAddrV4::new(iface.address, 0).into())?;
        let to = SocketAddrV4::new(Ipv4Addr::BROADCAST, 9).into();
        for mac in macs {
            s.send_to(&magic_packet(*mac), &to)?;
            sent += 1;
        }
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_packet_is_ff_then_the_mac_sixteen_times() {
        let mac: Mac = "52:54:00:12:34:56".parse().unwrap();
        let p = magic_packet(mac);
        assert_eq!(&p[..6], &[0xff; 6]);
        for i in 0..16 {
            assert_eq!(&p[6 + i * 6..12 + i * 6], &mac.0);
        }
    }
}
