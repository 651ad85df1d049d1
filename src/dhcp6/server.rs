//! The DHCPv6 sockets around the pure decisions of [`super::pxe`].
//!
//! With the real port (547) each served interface gets a socket bound to `[::]:547` with
//! `SO_BINDTODEVICE` that joins ff02::1:2 (All_DHCP_Relay_Agents_and_Servers, RFC 8415 section
//! 7.1) on that interface, and one on `[::]:4011` for the firmware's request to the boot server
//! it chose. Replies go to the sender's (link-local) address and port. With any other port
//! (tests) the sockets bind the served IPv6 address and need no multicast and no root.

use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};
use std::sync::Arc;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use super::packet::{self, Request};
use super::pxe::{self, Ignored, Outcome, Port};
use crate::config::Ipv6Config;
use crate::counters::Counters;
use crate::dhcp::packet::Mac;
use crate::dhcp::server::Shared;

/// All_DHCP_Relay_Agents_and_Servers (RFC 8415 section 7.1).
pub const ALL_DHCP_SERVERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 2);

/// One bound DHCPv6 socket.
pub struct Listener {
    pub socket: UdpSocket,
    pub port: Port,
    /// The interface it serves.
    pub interface: String,
}

/// Binds the DHCPv6 sockets on every served interface.
pub fn bind(v6: &Ipv6Config) -> anyhow::Result<Vec<Listener>> {
    let mut out = Vec::new();
    for (port, number) in [(Port::Dhcp, v6.dhcp_port), (Port::Pxe, v6.proxy_port)] {
        for iface in &v6.interfaces {
            let s = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
            // The IPv4 sockets hold port 4011 (and 67) on 0.0.0.0.
            s.set_only_v6(true)?;
            s.set_reuse_address(true)?;
            let addr = if v6.test_mode() {
                SocketAddrV6::new(iface.address, number, 0, 0)
            } else {
                s.bind_device(Some(iface.name.as_bytes())).map_err(|e| {
                    anyhow::anyhow!(
                        "cannot bind to interface {} (needs root or CAP_NET_RAW): {e}",
                        iface.name
                    )
                })?;
                SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, number, 0, 0)
            };
            s.bind(&addr.into()).map_err(|e| {
                anyhow::anyhow!(
                    "cannot bind UDP port {number} on {} (IPv6): {e}",
                    iface.name
                )
            })?;
            if port == Port::Dhcp && !v6.test_mode() {
                s.join_multicast_v6(&ALL_DHCP_SERVERS, iface.index)
                    .map_err(|e| {
                        anyhow::anyhow!("cannot join {ALL_DHCP_SERVERS} on {}: {e}", iface.name)
                    })?;
            }
            s.set_nonblocking(true)?;
            out.push(Listener {
                socket: UdpSocket::from_std(s.into())?,
                port,
                interface: iface.name.clone(),
            });
            if v6.test_mode() {
                // One socket per port is enough on loopback.
                break;
            }
        }
    }
    Ok(out)
}

/// What the DHCPv6 listeners share beyond the DHCPv4 side's state.
pub struct Shared6 {
    pub v4: Arc<Shared>,
    pub v6: Ipv6Config,
    /// `http://[address]:port`.
    pub http_base: String,
    /// This server's DUID (option 2).
    pub duid: Vec<u8>,
}

impl Shared6 {
    /// The server's DUID is a DUID-LL of the first served interface's MAC, so it stays the
    /// same across restarts; an interface without one (loopback) gets a locally administered
    /// MAC made from its IPv6 address.
    pub fn new(v4: Arc<Shared>, v6: Ipv6Config, http_base: String) -> Shared6 {
        let iface = &v6.interfaces[0];
        let mac = std::fs::read_to_string(format!("/sys/class/net/{}/address", iface.name))
            .ok()
            .and_then(|s| s.trim().parse::<Mac>().ok())
            .filter(|m| m.0 != [0; 6])
            .unwrap_or_else(|| {
                let o = iface.address.octets();
                Mac([0x02, o[11], o[12], o[13], o[14], o[15]])
            });
        Shared6 {
            duid: pxe::duid_ll(mac),
            v4,
            v6,
            http_base,
        }
    }
}

/// How long after a REPLY on port 4011 it is sent again. UEFI's PXE base code (edk2
/// `PxeBcRequestBootService`) sends its request to the boot server first and only then
/// configures the socket it reads the answer on; a fast answer to a slow (emulated) machine
/// can come in between and is lost, and the firmware does not ask again. The second copy
/// comes when it listens; one it already has is ignored.
const PXE_REPLY_AGAIN: std::time::Duration = std::time::Duration::from_millis(400);

/// Second copies waiting at once, so a flood of requests on 4011 cannot pile up tasks: past
/// it a REPLY is sent once.
const PXE_REPLIES_AGAIN_MAX: usize = 64;

/// Serves one listener until cancelled. Never returns an error for a client's datagram.
pub async fn serve(listener: Listener, shared: Arc<Shared6>, cancel: CancellationToken) {
    let mut buf = vec![0u8; 4096];
    let socket = Arc::new(listener.socket);
    let listener = Served {
        port: listener.port,
        interface: listener.interface,
    };
    let again = Arc::new(tokio::sync::Semaphore::new(PXE_REPLIES_AGAIN_MAX));
    loop {
        let (len, from) = tokio::select! {
            _ = cancel.cancelled() => return,
            r = socket.recv_from(&mut buf) => match r {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(interface = %listener.interface, error = %e, "DHCPv6 receive failed");
                    continue;
                }
            },
        };
        let Some(reply) = handle(&buf[..len], from, &listener, &shared) else {
            continue;
        };
        // The sender's address (link-local, with its scope) and port: 546 for a SOLICIT,
        // 4011 for UEFI's request to the boot server.
        if let Err(e) = socket.send_to(&reply, from).await {
            tracing::warn!(to = %from, error = %e, "DHCPv6 reply not sent");
            continue;
        }
        if listener.port == Port::Pxe {
            if let Ok(permit) = again.clone().try_acquire_owned() {
                let (socket, cancel) = (socket.clone(), cancel.clone());
                tokio::spawn(async move {
                    tokio::select! {
                        _ = cancel.cancelled() => {}
                        _ = tokio::time::sleep(PXE_REPLY_AGAIN) => {
                            let _ = socket.send_to(&reply, from).await;
                        }
                    }
                    drop(permit);
                });
            }
        }
    }
}

/// The port and interface a datagram came in on (the socket is shared with the second copies).
struct Served {
    port: Port,
    interface: String,
}

/// Decides on one datagram: the reply bytes, if any.
fn handle(bytes: &[u8], from: SocketAddr, l: &Served, shared: &Shared6) -> Option<Vec<u8>> {
    let c = &shared.v4.counters;
    let req = match packet::decode(bytes) {
        Ok(r) => r,
        Err(e) => {
            Counters::bump(&c.dhcp6_malformed);
            tracing::debug!(%from, len = bytes.len(), error = %e, "malformed DHCPv6 datagram dropped");
            return None;
        }
    };
    let source = match from {
        SocketAddr::V6(a) => *a.ip(),
        SocketAddr::V4(_) => return None,
    };
    let mac = req.mac(source);
    let uuid = req.uuid();
    let span = tracing::info_span!(
        "dhcp6",
        mac = mac
            .map(|m| m.to_string())
            .unwrap_or_else(|| "unknown".into()),
        xid = format_args!(
            "{:#08x}",
            u32::from_be_bytes([0, req.xid[0], req.xid[1], req.xid[2]])
        ),
    );
    let _enter = span.enter();
    let no_boot = if req.is_netboot() {
        if let Some(mac) = mac {
            shared.v4.sightings.saw(
                mac,
                std::time::Instant::now(),
                shared.v4.config.boot.script_after_dhcp,
            );
        }
        // The same decision as over IPv4 (docs/selection-rules.md), by UUID first, then MAC.
        crate::dhcp::server::refusal(&shared.v4, mac, uuid, req.arch_value())
    } else {
        None
    };
    let ctx = pxe::Context {
        server: shared.v6.address,
        server_duid: &shared.duid,
        boot_files: &shared.v4.config.boot.files,
        http_base: &shared.http_base,
        mac,
        no_boot,
    };
    match pxe::respond(&req, l.port, &ctx) {
        Outcome::Ignore(reason) => {
            log_ignored(&req, &reason, l, c, uuid);
            None
        }
        Outcome::Reply { msg, boot } => {
            Counters::bump(&c.dhcp6_replies);
            tracing::info!(
                interface = %l.interface,
                reply = ?msg.msg_type(),
                arch = req.arch_value().map(i32::from).unwrap_or(-1),
                arch_name = %boot.arch.map(|a| a.to_string()).unwrap_or_else(|| "unknown".into()),
                ipxe = boot.ipxe,
                uuid = uuid.map(|u| u.to_string()).unwrap_or_else(|| "none".into()),
                url = %boot.url,
                to = %from,
                "PXE boot reply (DHCPv6)"
            );
            Some(pxe::encode(&msg))
        }
    }
}

fn log_ignored(
    req: &Request,
    reason: &Ignored,
    l: &Served,
    c: &Counters,
    uuid: Option<crate::dhcp::packet::SmbiosUuid>,
) {
    match reason {
        Ignored::NotNetboot(_) => {
            Counters::bump(&c.dhcp6_ignored_not_pxe);
            tracing::debug!(interface = %l.interface, %reason, "left alone");
        }
        Ignored::NoDeployment(_) => {
            Counters::bump(&c.dhcp6_ignored);
            tracing::info!(
                interface = %l.interface,
                uuid = uuid.map(|u| u.to_string()).unwrap_or_else(|| "none".into()),
                %reason,
                "no boot offer (DHCPv6)"
            );
        }
        Ignored::NotForThisPort(_) | Ignored::OtherServer => {
            tracing::debug!(interface = %l.interface, kind = ?req.kind, %reason, "not answered");
        }
        _ => {
            Counters::bump(&c.dhcp6_ignored);
            tracing::warn!(
                interface = %l.interface,
                vendor_class = req.vendor_text().unwrap_or(""),
                %reason,
                "DHCPv6 network-boot request not answered"
            );
        }
    }
}
