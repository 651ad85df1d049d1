//! The DHCP and PXE sockets around the pure decisions of [`super::pxe`].
//!
//! With the real port (67) each served interface gets its own sockets bound to `0.0.0.0` with
//! `SO_BINDTODEVICE`, so broadcasts are received and sent on that link only. With any other port
//! (tests) the sockets bind the server address and replies are unicast to the sender, so tests
//! need neither root nor broadcast.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use super::leases::LeaseTable;
use super::packet::{self, Request};
use super::pxe::{self, Ignored, Outcome, Port};
use crate::bootpath::PxePlan;
use crate::config::{Config, DhcpMode};
use crate::counters::Counters;

/// One bound DHCP or PXE socket.
pub struct Listener {
    pub socket: UdpSocket,
    pub port: Port,
    /// The interface it serves.
    pub interface: String,
}

/// Binds the sockets the mode needs on every served interface.
pub fn bind(config: &Config) -> anyhow::Result<Vec<Listener>> {
    let mut out = Vec::new();
    let mut ports = Vec::new();
    if config.dhcp.mode != DhcpMode::Proxy4011 {
        ports.push((Port::Dhcp, config.dhcp.port));
    }
    ports.push((Port::Pxe, config.dhcp.proxy_port));
    for (port, number) in ports {
        if config.dhcp.test_mode() {
            let addr = SocketAddrV4::new(config.server_address, number);
            let s = std::net::UdpSocket::bind(addr)
                .map_err(|e| anyhow::anyhow!("cannot bind DHCP test socket {addr}: {e}"))?;
            s.set_nonblocking(true)?;
            out.push(Listener {
                socket: UdpSocket::from_std(s)?,
                port,
                interface: config.interfaces[0].name.clone(),
            });
            continue;
        }
        for iface in &config.interfaces {
            let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
            s.set_reuse_address(true)?;
            s.set_broadcast(true)?;
            s.bind_device(Some(iface.name.as_bytes())).map_err(|e| {
                anyhow::anyhow!(
                    "cannot bind to interface {} (needs root or CAP_NET_RAW): {e}",
                    iface.name
                )
            })?;
            let addr = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, number);
            s.bind(&addr.into()).map_err(|e| {
                anyhow::anyhow!(
                    "cannot bind UDP port {number} on {}: {e}{}",
                    iface.name,
                    if number == 67 {
                        " (is another DHCP server running here? then use mode = \"proxy-4011\")"
                    } else {
                        ""
                    }
                )
            })?;
            s.set_nonblocking(true)?;
            out.push(Listener {
                socket: UdpSocket::from_std(s.into())?,
                port,
                interface: iface.name.clone(),
            });
        }
    }
    Ok(out)
}

/// State shared by the listeners.
pub struct Shared {
    pub config: Arc<Config>,
    pub counters: Arc<Counters>,
    pub http_base: String,
    pub bootpath: Arc<crate::bootpath::BootPath>,
    /// Network-boot clients seen, for the script requests that follow (docs/security.md).
    pub sightings: Arc<super::sightings::Sightings>,
    leases: Mutex<LeaseTable>,
    lease_file: Option<PathBuf>,
}

impl Shared {
    /// Loads the lease file in `dhcp` mode (a missing file is an empty table).
    pub fn new(
        config: Arc<Config>,
        counters: Arc<Counters>,
        http_base: String,
        bootpath: Arc<crate::bootpath::BootPath>,
    ) -> anyhow::Result<Shared> {
        let (table, lease_file) = match &config.dhcp.pool {
            Some(pool) => {
                let path = config.data_dir.join("leases.json");
                let table = match std::fs::read_to_string(&path) {
                    Ok(text) => {
                        let (table, refused) = LeaseTable::from_json(pool.first, pool.last, &text)
                            .map_err(|e| {
                                anyhow::anyhow!("lease file {} is damaged: {e}", path.display())
                            })?;
                        for w in refused {
                            tracing::warn!(file = %path.display(), "lease refused on load: {w}");
                        }
                        table
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        LeaseTable::new(pool.first, pool.last)
                    }
                    Err(e) => anyhow::bail!("cannot read lease file {}: {e}", path.display()),
                };
                tracing::info!(file = %path.display(), leases = table.len(), "lease table loaded");
                (table, Some(path))
            }
            None => (
                LeaseTable::new(Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED),
                None,
            ),
        };
        Ok(Shared {
            config,
            counters,
            http_base,
            bootpath,
            sightings: Default::default(),
            leases: Mutex::new(table),
            lease_file,
        })
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Serves one listener until cancelled. Never returns an error for a client's datagram.
pub async fn serve(listener: Listener, shared: Arc<Shared>, cancel: CancellationToken) {
    let mut buf = vec![0u8; 4096];
    loop {
        let (len, from) = tokio::select! {
            _ = cancel.cancelled() => return,
            r = listener.socket.recv_from(&mut buf) => match r {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(interface = %listener.interface, error = %e, "DHCP receive failed");
                    continue;
                }
            },
        };
        let Some((reply, to)) = handle(&buf[..len], from, &listener, &shared) else {
            continue;
        };
        if let Err(e) = listener.socket.send_to(&reply, to).await {
            tracing::warn!(%to, error = %e, "DHCP reply not sent");
        }
    }
}

/// Decides on one datagram: the reply bytes and where to send them.
fn handle(
    bytes: &[u8],
    from: SocketAddr,
    l: &Listener,
    shared: &Shared,
) -> Option<(Vec<u8>, SocketAddr)> {
    let c = &shared.counters;
    let req = match packet::decode(bytes) {
        Ok(r) => r,
        Err(e) => {
            Counters::bump(&c.dhcp_malformed);
            tracing::debug!(%from, len = bytes.len(), error = %e, "malformed DHCP datagram dropped");
            return None;
        }
    };
    let config = &shared.config;
    let span =
        tracing::info_span!("dhcp", mac = %req.mac, xid = format_args!("{:#010x}", req.msg.xid()));
    let _enter = span.enter();
    let no_boot = if req.is_netboot() {
        shared.sightings.saw(
            req.mac,
            std::time::Instant::now(),
            config.boot.script_after_dhcp,
        );
        refusal(shared, Some(req.mac), req.uuid, req.arch_value())
    } else {
        None
    };
    if let Some(reason) = &no_boot {
        Counters::bump(&shared.counters.dhcp_ignored_no_deployment);
        tracing::info!(
            interface = %l.interface,
            uuid = req.uuid.map(|u| u.to_string()).unwrap_or_else(|| "none".into()),
            %reason,
            "no boot offer"
        );
    }
    let ctx = pxe::Context {
        mode: config.dhcp.mode,
        server: config.server_address,
        boot_files: &config.boot.files,
        http_base: &shared.http_base,
        pool: config.dhcp.pool.as_ref(),
        no_boot,
    };
    let (outcome, table_json) = {
        let mut table = shared.leases.lock().unwrap_or_else(|p| p.into_inner());
        let outcome = pxe::respond(&req, l.port, &ctx, &mut table, now());
        let changed = matches!(
            outcome,
            Outcome::Reply {
                leases_changed: true,
                ..
            } | Outcome::Ignore {
                leases_changed: true,
                ..
            }
        );
        (outcome, changed.then(|| table.to_json()))
    };
    if let (Some(json), Some(path)) = (table_json, &shared.lease_file) {
        // Off the reactor, in order, through the boot path's write queue.
        let w = crate::snapshot::Write::Leases {
            path: path.clone(),
            json,
        };
        shared.bootpath.memory.record(&shared.bootpath.store, w);
    }
    match outcome {
        Outcome::Ignore { reason, .. } => {
            log_ignored(&req, &reason, l, c);
            None
        }
        Outcome::Reply { msg, boot, .. } => {
            let kind = msg.opts().msg_type();
            match kind {
                Some(dhcproto::v4::MessageType::Offer) => Counters::bump(&c.dhcp_offers),
                Some(dhcproto::v4::MessageType::Ack) => Counters::bump(&c.dhcp_acks),
                Some(dhcproto::v4::MessageType::Nak) => Counters::bump(&c.dhcp_naks),
                _ => {}
            }
            let to = destination(&req, from, l.port, config.dhcp.test_mode());
            match &boot {
                Some(b) => tracing::info!(
                    interface = %l.interface,
                    mode = config.dhcp.mode.name(),
                    reply = ?kind.unwrap_or(dhcproto::v4::MessageType::Unknown(0)),
                    arch = b.arch_value,
                    arch_name = %b.arch,
                    ipxe = b.ipxe,
                    uuid = req.uuid.map(|u| u.to_string()).unwrap_or_else(|| "none".into()),
                    yiaddr = %msg.yiaddr(),
                    file = %b.file,
                    %to,
                    "PXE boot reply"
                ),
                None => tracing::info!(
                    interface = %l.interface,
                    reply = ?kind.unwrap_or(dhcproto::v4::MessageType::Unknown(0)),
                    yiaddr = %msg.yiaddr(),
                    %to,
                    "DHCP reply"
                ),
            }
            Some((pxe::encode(&msg), to))
        }
    }
}

fn log_ignored(req: &Request, reason: &Ignored, l: &Listener, c: &Counters) {
    match reason {
        Ignored::NotNetboot(_) => {
            Counters::bump(&c.dhcp_ignored_not_pxe);
            tracing::debug!(interface = %l.interface, %reason, "left alone");
        }
        Ignored::UnknownArch(_) | Ignored::NoArch => {
            Counters::bump(&c.dhcp_ignored_unknown_arch);
            tracing::warn!(interface = %l.interface, vendor_class = req.vendor_class.as_deref().unwrap_or(""), %reason, "PXE request not answered");
        }
        Ignored::NotForThisPort(_) | Ignored::OtherServer(_) => {
            tracing::debug!(interface = %l.interface, msg_type = ?req.msg_type, %reason, "not answered");
        }
        // Logged and counted where it was decided, in `handle`.
        Ignored::NoDeployment(_) => {}
        Ignored::NoBootFile(_) | Ignored::PoolExhausted => {
            Counters::bump(&c.dhcp_ignored_other);
            tracing::warn!(interface = %l.interface, %reason, "request not answered");
        }
    }
}

/// Asks the deployments whether this network-boot client (over DHCP or DHCPv6) gets a boot
/// offer (docs/selection-rules.md rules 8 and 9): `Some(reason)` when it does not.
/// A store that cannot be read withholds the offer: better no boot than a wrong one.
pub fn refusal(
    shared: &Shared,
    mac: Option<crate::dhcp::packet::Mac>,
    uuid: Option<crate::dhcp::packet::SmbiosUuid>,
    arch: Option<u16>,
) -> Option<String> {
    match shared.bootpath.plan(mac, uuid, arch, None) {
        Ok(plan) => {
            if let PxePlan::Decided { decision, .. } = &plan {
                shared.bootpath.record_unmet(decision);
            }
            plan.refusal()
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot read the catalog");
            Some(format!("the catalog cannot be read: {e}"))
        }
    }
}

/// Where a reply goes (RFC 2131 section 4.1, and docs/network-boot.md for port 4011).
fn destination(req: &Request, from: SocketAddr, port: Port, test_mode: bool) -> SocketAddr {
    // Port 4011 requests come from a configured client (OVMF even sends from port 4011):
    // answer its source address and port. Tests are answered the same way.
    if test_mode || port == Port::Pxe {
        return from;
    }
    let giaddr = req.msg.giaddr();
    if !giaddr.is_unspecified() {
        return SocketAddr::from((giaddr, 67));
    }
    let ciaddr = req.msg.ciaddr();
    if !ciaddr.is_unspecified() {
        return SocketAddr::from((ciaddr, 68));
    }
    // A client without an address cannot receive unicast before it has one (no ARP entry):
    // broadcast, which every client accepts.
    SocketAddr::from((Ipv4Addr::BROADCAST, 68))
}
