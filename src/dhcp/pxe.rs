//! The DHCP/PXE decisions: given a decoded request, which port it came in on, the mode and the
//! lease table, what to answer. Pure: no socket, no clock (the time is an argument), no file.
//!
//! What firmware needs (docs/network-boot.md): option 54, `siaddr` and the `file` field as well as
//! options 66/67; option 60 `PXEClient` and option 43 in proxy replies; replies padded to the
//! 300-byte BOOTP minimum. A client that is already iPXE gets the URL of its script instead of
//! the first-stage boot file, so it never loops.

use std::net::Ipv4Addr;

use dhcproto::v4::{self, DhcpOption, MessageType, Opcode};
use dhcproto::Encodable;

use super::leases::{LeaseTable, Refusal};
use super::packet::Request;
use crate::arch::ClientArch;
use crate::config::{DhcpMode, Pool};

/// The two ports netdeploy listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    /// UDP 67, the DHCP server port.
    Dhcp,
    /// UDP 4011, the PXE boot server port (proxyDHCP REQUESTs).
    Pxe,
}

/// What the decisions need to know of the server.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    pub mode: DhcpMode,
    /// Option 54, `siaddr`, the TFTP server.
    pub server: Ipv4Addr,
    /// First-stage boot file per architecture.
    pub boot_files: &'a std::collections::BTreeMap<ClientArch, String>,
    /// `http://server:port`, no trailing slash.
    pub http_base: &'a str,
    /// The lease pool in `dhcp` mode.
    pub pool: Option<&'a Pool>,
    /// Why this client must get no boot offer (no deployment for it, docs/selection-rules.md rules 8
    /// and 9), decided by the caller; `None` to offer.
    pub no_boot: Option<String>,
}

/// Why a request got no reply. Logged with the client's MAC, and counted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Ignored {
    #[error("not a PXE or HTTP boot client (option 60 {0:?})")]
    NotNetboot(Option<String>),
    #[error("architecture {0} (option 93) is not one netdeploy boots")]
    UnknownArch(u16),
    #[error("no option 93 and no architecture in option 60")]
    NoArch,
    #[error("no boot file configured for {0}")]
    NoBootFile(ClientArch),
    #[error("{0:?} is not answered on this port in this mode")]
    NotForThisPort(MessageType),
    #[error("the client chose server {0}")]
    OtherServer(Ipv4Addr),
    #[error("the lease range is exhausted")]
    PoolExhausted,
    #[error("{0}")]
    NoDeployment(String),
}

/// The boot information for one client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootInfo {
    pub arch: ClientArch,
    /// The raw option 93 value, as logged.
    pub arch_value: u16,
    /// TFTP path of the first stage, or the URL of the iPXE script (or HTTP boot file).
    pub file: String,
    /// The client already runs iPXE.
    pub ipxe: bool,
}

/// The outcome of one request.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Send this reply.
    Reply {
        msg: v4::Message,
        boot: Option<BootInfo>,
        /// The lease table changed and must be saved.
        leases_changed: bool,
    },
    /// Answer nothing.
    Ignore {
        reason: Ignored,
        leases_changed: bool,
    },
}

/// Works out the boot file or script URL for a network-boot client.
pub fn boot_info(req: &Request, ctx: &Context<'_>) -> Result<BootInfo, Ignored> {
    let arch_value = req.arch_value().ok_or(Ignored::NoArch)?;
    let arch = ClientArch::from_option93(arch_value).ok_or(Ignored::UnknownArch(arch_value))?;
    if let Some(reason) = &ctx.no_boot {
        return Err(Ignored::NoDeployment(reason.clone()));
    }
    if req.is_ipxe {
        let mut file = format!(
            "{}/boot.ipxe?mac={}&arch={}",
            ctx.http_base,
            req.mac.to_string().replace(':', "-"),
            arch_value
        );
        if let Some(uuid) = req.uuid {
            let with_uuid = format!("{file}&uuid={uuid}");
            // The BOOTP `file` field holds 127 characters; option 67 alone could hold more, but
            // the script asks iPXE for ${uuid} anyway when it is missing.
            if with_uuid.len() <= 127 {
                file = with_uuid;
            }
        }
        return Ok(BootInfo {
            arch,
            arch_value,
            file,
            ipxe: true,
        });
    }
    let name = ctx.boot_files.get(&arch).ok_or(Ignored::NoBootFile(arch))?;
    let file = if arch.is_http_boot() {
        format!("{}/tftp/{}", ctx.http_base, name.trim_start_matches('/'))
    } else {
        name.clone()
    };
    Ok(BootInfo {
        arch,
        arch_value,
        file,
        ipxe: false,
    })
}

/// Decides the answer to one request. `now` is Unix time in seconds.
pub fn respond(
    req: &Request,
    port: Port,
    ctx: &Context<'_>,
    leases: &mut LeaseTable,
    now: u64,
) -> Outcome {
    let ignore = |reason| Outcome::Ignore {
        reason,
        leases_changed: false,
    };
    let netboot = req.is_netboot();
    let boot = if netboot {
        match boot_info(req, ctx) {
            Ok(b) => Some(b),
            // In full DHCP mode an unbootable PXE client still gets an address, like any other.
            Err(e) if ctx.mode != DhcpMode::Dhcp || port == Port::Pxe => return ignore(e),
            Err(_) => None,
        }
    } else {
        None
    };

    match (port, ctx.mode) {
        (Port::Pxe, _) => {
            let Some(boot) = boot else {
                return ignore(Ignored::NotNetboot(req.vendor_class.clone()));
            };
            match req.msg_type {
                MessageType::Request | MessageType::Inform => Outcome::Reply {
                    msg: proxy_reply(req, MessageType::Ack, ctx, &boot),
                    boot: Some(boot),
                    leases_changed: false,
                },
                t => ignore(Ignored::NotForThisPort(t)),
            }
        }
        (Port::Dhcp, DhcpMode::Proxy | DhcpMode::Proxy4011) => {
            let Some(boot) = boot else {
                return ignore(Ignored::NotNetboot(req.vendor_class.clone()));
            };
            match req.msg_type {
                MessageType::Discover => Outcome::Reply {
                    msg: proxy_reply(req, MessageType::Offer, ctx, &boot),
                    boot: Some(boot),
                    leases_changed: false,
                },
                // The REQUEST goes to the site's DHCP server; the proxy has nothing to add.
                t => ignore(Ignored::NotForThisPort(t)),
            }
        }
        (Port::Dhcp, DhcpMode::Dhcp) => lease_reply(req, ctx, leases, now, boot),
    }
}

fn base_reply(req: &Request, kind: MessageType, server: Ipv4Addr) -> v4::Message {
    let mut m = v4::Message::new_with_id(
        req.msg.xid(),
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        server,
        req.msg.giaddr(),
        &req.mac.0,
    );
    m.set_opcode(Opcode::BootReply);
    m.set_flags(req.msg.flags());
    let o = m.opts_mut();
    o.insert(DhcpOption::MessageType(kind));
    o.insert(DhcpOption::ServerIdentifier(server));
    m
}

fn add_boot(m: &mut v4::Message, boot: &BootInfo, server: Ipv4Addr) {
    if boot.file.len() <= 127 {
        m.set_fname_str(&boot.file);
    }
    m.set_siaddr(server);
    let o = m.opts_mut();
    o.insert(DhcpOption::TFTPServerName(server.to_string().into_bytes()));
    o.insert(DhcpOption::BootfileName(boot.file.clone().into_bytes()));
}

/// Option 43 of a proxy reply (PXE 2.1 section 2.2.5): discovery control 8 (boot the file named
/// in this offer, no boot server discovery or menu), a menu prompt with timeout 0, end.
const PXE_VENDOR_OPTIONS: [u8; 10] = [6, 1, 8, 10, 4, 0, b'P', b'X', b'E', 255];

/// A proxyDHCP OFFER (port 67) or ACK (port 4011): boot information only, no address.
fn proxy_reply(
    req: &Request,
    kind: MessageType,
    ctx: &Context<'_>,
    boot: &BootInfo,
) -> v4::Message {
    let mut m = base_reply(req, kind, ctx.server);
    if kind == MessageType::Ack {
        m.set_ciaddr(req.msg.ciaddr());
    }
    add_boot(&mut m, boot, ctx.server);
    let http = boot.arch.is_http_boot() && !boot.ipxe;
    let o = m.opts_mut();
    o.insert(DhcpOption::ClassIdentifier(
        if http { "HTTPClient" } else { "PXEClient" }
            .as_bytes()
            .to_vec(),
    ));
    if !http {
        o.insert(DhcpOption::VendorExtensions(PXE_VENDOR_OPTIONS.to_vec()));
    }
    if let Some(DhcpOption::ClientMachineIdentifier(id)) =
        req.msg.opts().get(v4::OptionCode::ClientMachineIdentifier)
    {
        o.insert(DhcpOption::ClientMachineIdentifier(id.clone()));
    }
    m
}

/// Full DHCP mode on port 67 (RFC 2131 section 4.3).
fn lease_reply(
    req: &Request,
    ctx: &Context<'_>,
    leases: &mut LeaseTable,
    now: u64,
    boot: Option<BootInfo>,
) -> Outcome {
    let pool = ctx.pool.expect("dhcp mode has a pool");
    let lease_secs = pool.lease_time.as_secs();
    let ack = |ip: Ipv4Addr, kind: MessageType, boot: Option<BootInfo>, changed: bool| {
        let mut m = base_reply(req, kind, ctx.server);
        if kind == MessageType::Ack && !req.msg.ciaddr().is_unspecified() {
            m.set_ciaddr(req.msg.ciaddr());
        }
        if kind != MessageType::Ack || req.msg_type != MessageType::Inform {
            m.set_yiaddr(ip);
            let o = m.opts_mut();
            o.insert(DhcpOption::AddressLeaseTime(lease_secs as u32));
            o.insert(DhcpOption::Renewal((lease_secs / 2) as u32));
            o.insert(DhcpOption::Rebinding((lease_secs * 7 / 8) as u32));
        }
        let o = m.opts_mut();
        o.insert(DhcpOption::SubnetMask(pool.netmask));
        let bcast = u32::from(ip) | !u32::from(pool.netmask);
        o.insert(DhcpOption::BroadcastAddr(Ipv4Addr::from(bcast)));
        if let Some(r) = pool.router {
            o.insert(DhcpOption::Router(vec![r]));
        }
        if !pool.dns.is_empty() {
            o.insert(DhcpOption::DomainNameServer(pool.dns.clone()));
        }
        if let Some(b) = &boot {
            add_boot(&mut m, b, ctx.server);
            // iPXE waits about 3 s for proxyDHCP offers unless the offer says `PXEClient`;
            // OVMF must not see it here, as it refuses a `PXEClient` offer without option 43.
            if b.ipxe {
                m.opts_mut()
                    .insert(DhcpOption::ClassIdentifier(b"PXEClient".to_vec()));
            } else if b.arch.is_http_boot() {
                // UEFI HTTP boot takes only an offer that says `HTTPClient` (UEFI 2.x, 24.7):
                // without it OVMF discovers again and again.
                m.opts_mut()
                    .insert(DhcpOption::ClassIdentifier(b"HTTPClient".to_vec()));
            }
        }
        Outcome::Reply {
            msg: m,
            boot,
            leases_changed: changed,
        }
    };
    let nak = |changed: bool| {
        let mut m = base_reply(req, MessageType::Nak, ctx.server);
        m.set_siaddr(Ipv4Addr::UNSPECIFIED);
        Outcome::Reply {
            msg: m,
            boot: None,
            leases_changed: changed,
        }
    };
    match req.msg_type {
        MessageType::Discover => match leases.offer(req.mac, req.requested_ip, now) {
            Some(ip) => ack(ip, MessageType::Offer, boot, true),
            None => Outcome::Ignore {
                reason: Ignored::PoolExhausted,
                leases_changed: false,
            },
        },
        MessageType::Request => {
            if let Some(sid) = req.server_id.filter(|s| *s != ctx.server) {
                let changed =
                    leases.get(&req.mac).is_some_and(|l| !l.bound) && leases.release(&req.mac);
                return Outcome::Ignore {
                    reason: Ignored::OtherServer(sid),
                    leases_changed: changed,
                };
            }
            let ciaddr = req.msg.ciaddr();
            let wanted = req
                .requested_ip
                .or((!ciaddr.is_unspecified()).then_some(ciaddr));
            let Some(ip) = wanted else {
                return nak(false);
            };
            match leases.bind(req.mac, ip, now, lease_secs) {
                Ok(_) => ack(ip, MessageType::Ack, boot, true),
                Err(Refusal::OutsidePool(_)) | Err(Refusal::Taken { .. }) => nak(false),
            }
        }
        MessageType::Release | MessageType::Decline => Outcome::Ignore {
            reason: Ignored::NotForThisPort(req.msg_type),
            leases_changed: leases.release(&req.mac),
        },
        MessageType::Inform => ack(req.msg.ciaddr(), MessageType::Ack, boot, false),
        t => Outcome::Ignore {
            reason: Ignored::NotForThisPort(t),
            leases_changed: false,
        },
    }
}

/// The minimum BOOTP message size (RFC 1542 section 3.3): some PXE ROMs drop shorter replies.
pub const MIN_REPLY_LEN: usize = 300;

/// Encodes a reply, padded with zeros to [`MIN_REPLY_LEN`].
pub fn encode(msg: &v4::Message) -> Vec<u8> {
    let mut out = msg.to_vec().expect("a reply built by netdeploy encodes");
    if out.len() < MIN_REPLY_LEN {
        out.resize(MIN_REPLY_LEN, 0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::packet::{decode, tests::discover};
    use super::*;
    use std::collections::BTreeMap;
    use std::time::Duration;

    fn files() -> BTreeMap<ClientArch, String> {
        crate::config::DEFAULT_BOOT_FILES
            .iter()
            .map(|(a, f)| (*a, f.to_string()))
            .collect()
    }

    fn ctx<'a>(
        mode: DhcpMode,
        files: &'a BTreeMap<ClientArch, String>,
        pool: Option<&'a Pool>,
    ) -> Context<'a> {
        Context {
            mode,
            server: Ipv4Addr::new(10, 77, 0, 1),
            boot_files: files,
            http_base: "http://10.77.0.1:8080",
            pool,
            no_boot: None,
        }
    }

    fn reply(o: Outcome) -> (v4::Message, Option<BootInfo>) {
        match o {
            Outcome::Reply { msg, boot, .. } => {
                // What goes on the wire decodes back to the same message.
                let bytes = encode(&msg);
                assert!(bytes.len() >= MIN_REPLY_LEN);
                (msg, boot)
            }
            Outcome::Ignore { reason, .. } => panic!("ignored: {reason}"),
        }
    }

    fn opt_bytes(m: &v4::Message, code: v4::OptionCode) -> Vec<u8> {
        match m.opts().get(code) {
            Some(DhcpOption::ClassIdentifier(v))
            | Some(DhcpOption::VendorExtensions(v))
            | Some(DhcpOption::BootfileName(v)) => v.clone(),
            other => panic!("option {code:?}: {other:?}"),
        }
    }

    #[test]
    fn proxy_offer_to_ovmf_carries_everything_firmware_needs() {
        let f = files();
        let req = decode(&discover(7, "PXEClient:Arch:00007:UNDI:003000", false)).unwrap();
        let mut t = LeaseTable::new(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 1));
        let (m, boot) = reply(respond(
            &req,
            Port::Dhcp,
            &ctx(DhcpMode::Proxy, &f, None),
            &mut t,
            0,
        ));
        assert_eq!(boot.unwrap().arch, ClientArch::EfiX64);
        assert_eq!(m.opts().msg_type(), Some(MessageType::Offer));
        assert_eq!(m.yiaddr(), Ipv4Addr::UNSPECIFIED);
        assert_eq!(m.siaddr(), Ipv4Addr::new(10, 77, 0, 1));
        assert_eq!(m.fname_str().unwrap().unwrap(), "snponly.efi");
        assert_eq!(opt_bytes(&m, v4::OptionCode::BootfileName), b"snponly.efi");
        assert_eq!(opt_bytes(&m, v4::OptionCode::ClassIdentifier), b"PXEClient");
        assert_eq!(
            opt_bytes(&m, v4::OptionCode::VendorExtensions)[..3],
            [6, 1, 8]
        );
        assert!(matches!(
            m.opts().get(v4::OptionCode::ServerIdentifier),
            Some(DhcpOption::ServerIdentifier(a)) if *a == Ipv4Addr::new(10, 77, 0, 1)
        ));
        assert!(m
            .opts()
            .get(v4::OptionCode::ClientMachineIdentifier)
            .is_some());
        assert_eq!(m.xid(), 0x6d31_4072);
    }

    #[test]
    fn ipxe_client_gets_its_script_url_never_the_boot_file_again() {
        let f = files();
        let req = decode(&discover(0, "PXEClient:Arch:00000:UNDI:002001", true)).unwrap();
        let mut t = LeaseTable::new(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 1));
        let (m, _) = reply(respond(
            &req,
            Port::Dhcp,
            &ctx(DhcpMode::Proxy, &f, None),
            &mut t,
            0,
        ));
        let file = m.fname_str().unwrap().unwrap();
        assert!(
            file.starts_with("http://10.77.0.1:8080/boot.ipxe?mac=52-54-00-12-34-56&arch=0"),
            "{file}"
        );
        assert!(
            file.contains("uuid=43fd3687-f5ff-4904-a82e-e5fa7b1b0dc8"),
            "{file}"
        );
    }

    #[test]
    fn unknown_architecture_and_non_pxe_clients_are_not_answered_in_proxy_mode() {
        let f = files();
        let c = ctx(DhcpMode::Proxy, &f, None);
        let mut t = LeaseTable::new(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 1));
        let req = decode(&discover(12, "PXEClient:Arch:00012:UNDI:003000", false)).unwrap();
        assert!(matches!(
            respond(&req, Port::Dhcp, &c, &mut t, 0),
            Outcome::Ignore {
                reason: Ignored::UnknownArch(12),
                ..
            }
        ));
        let req = decode(&discover(0, "udhcp 1.35.0", false)).unwrap();
        assert!(matches!(
            respond(&req, Port::Dhcp, &c, &mut t, 0),
            Outcome::Ignore {
                reason: Ignored::NotNetboot(_),
                ..
            }
        ));
    }

    #[test]
    fn full_dhcp_mode_leases_an_address_with_boot_information() {
        let f = files();
        let pool = Pool {
            first: Ipv4Addr::new(10, 77, 0, 100),
            last: Ipv4Addr::new(10, 77, 0, 199),
            netmask: Ipv4Addr::new(255, 255, 255, 0),
            router: None,
            dns: vec![],
            lease_time: Duration::from_secs(3600),
        };
        let c = ctx(DhcpMode::Dhcp, &f, Some(&pool));
        let mut t = LeaseTable::new(pool.first, pool.last);
        let req = decode(&discover(0, "PXEClient:Arch:00000:UNDI:002001", false)).unwrap();
        let (m, _) = reply(respond(&req, Port::Dhcp, &c, &mut t, 0));
        assert_eq!(m.yiaddr(), Ipv4Addr::new(10, 77, 0, 100));
        assert_eq!(m.fname_str().unwrap().unwrap(), "undionly.kpxe");
        // No option 60 in a full DHCP offer: the client must not look for a proxy on 4011.
        assert!(m.opts().get(v4::OptionCode::ClassIdentifier).is_none());

        // UEFI HTTP boot (option 93 = 16) gets a URL, and an offer that says HTTPClient.
        let req = decode(&discover(16, "HTTPClient:Arch:00016:UNDI:003001", false)).unwrap();
        let (m, boot) = reply(respond(&req, Port::Dhcp, &c, &mut t, 0));
        assert_eq!(
            opt_bytes(&m, v4::OptionCode::BootfileName),
            b"http://10.77.0.1:8080/tftp/snponly.efi"
        );
        assert_eq!(
            opt_bytes(&m, v4::OptionCode::ClassIdentifier),
            b"HTTPClient"
        );
        assert_eq!(boot.unwrap().arch, ClientArch::HttpX64);
    }

    #[test]
    fn arm64_pxe_and_http_boot_get_ipxe_for_arm64_by_default() {
        let f = files();
        let c = ctx(DhcpMode::Proxy, &f, None);
        let mut t = LeaseTable::new(Ipv4Addr::new(10, 77, 0, 100), Ipv4Addr::new(10, 77, 0, 199));
        let req = decode(&discover(11, "PXEClient:Arch:00011:UNDI:003000", false)).unwrap();
        let (m, boot) = reply(respond(&req, Port::Dhcp, &c, &mut t, 0));
        assert_eq!(m.fname_str().unwrap().unwrap(), "arm64-efi/snponly.efi");
        assert_eq!(opt_bytes(&m, v4::OptionCode::ClassIdentifier), b"PXEClient");
        assert_eq!(boot.unwrap().arch, ClientArch::EfiArm64);
        let req = decode(&discover(19, "HTTPClient:Arch:00019:UNDI:003001", false)).unwrap();
        let (m, boot) = reply(respond(&req, Port::Dhcp, &c, &mut t, 0));
        assert_eq!(
            opt_bytes(&m, v4::OptionCode::BootfileName),
            b"http://10.77.0.1:8080/tftp/arm64-efi/snponly.efi"
        );
        assert_eq!(
            opt_bytes(&m, v4::OptionCode::ClassIdentifier),
            b"HTTPClient"
        );
        assert_eq!(boot.unwrap().arch, ClientArch::HttpArm64);
    }
}
