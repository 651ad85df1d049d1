//! The DHCPv6 network-boot decisions: given a decoded client message and the port it came in
//! on, what to answer. Pure: no socket, no clock, no file.
//!
//! netdeploy answers in proxy fashion only: the site's DHCPv6 server (or its routers'
//! advertisements) gives addresses, netdeploy gives boot information (docs/network-boot.md,
//! "IPv6"). What the firmware needs, as UEFI's PXE base code (edk2 NetworkPkg) selects offers:
//! - a SOLICIT gets an ADVERTISE with no IA_NA, this server's DUID, vendor class 16 under
//!   enterprise 343 with `PXEClient`, and the boot file URL (option 59): the firmware sorts it
//!   as a "proxy BINL" offer, takes its address from the site's server, and then asks this
//!   server again on port 4011;
//! - that REQUEST on port 4011 (it names this server's DUID) gets a REPLY with the same boot
//!   information, which the firmware boots;
//! - no preference option: a preference of 255 would make the client take this offer, which
//!   has no address, at once;
//! - an INFORMATION-REQUEST (a client configured by router advertisements with the "other
//!   configuration" flag, as iPXE is then) gets a REPLY with the boot file URL.
//!
//! The boot file URL is `tftp://[server]/file` for UEFI PXE, an `http://[server]:port/...` URL
//! for UEFI HTTP boot, and the machine's script URL for iPXE (so it never loops).

use std::net::Ipv6Addr;

use dhcproto::v6::{self, DhcpOption, MessageType, OptionCode, UnknownOption};
use dhcproto::Encodable;

use super::packet::{code, Kind, Request};
use crate::arch::ClientArch;
use crate::dhcp::packet::Mac;

/// The two ports netdeploy listens on for DHCPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    /// UDP 547, the DHCPv6 server port (multicast to ff02::1:2).
    Dhcp,
    /// UDP 4011, where UEFI asks the boot server it chose.
    Pxe,
}

/// The enterprise number UEFI's PXE base code uses in its vendor class (edk2 names it
/// `PXEBC_DHCP6_ENTERPRISE_NUM`; it is Intel's) and looks for in an offer.
pub const PXE_ENTERPRISE: u32 = 343;

/// What the decisions need to know of the server.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    /// The address in boot file URLs: the served interface's global (or unique local) address.
    pub server: Ipv6Addr,
    /// This server's DUID (option 2).
    pub server_duid: &'a [u8],
    /// First-stage boot file per architecture.
    pub boot_files: &'a std::collections::BTreeMap<ClientArch, String>,
    /// `http://[server]:port`, no trailing slash.
    pub http_base: &'a str,
    /// The machine, as the caller worked it out (DUID or source address).
    pub mac: Option<Mac>,
    /// Why this client must get no boot offer (docs/selection-rules.md rules 8 and 9), decided
    /// by the caller; `None` to offer.
    pub no_boot: Option<String>,
}

/// Why a message got no reply. Logged with the client's identity, and counted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Ignored {
    #[error("not a PXE or HTTP boot client (vendor class {0:?})")]
    NotNetboot(Option<String>),
    #[error("architecture {0} (option 61) is not one netdeploy boots")]
    UnknownArch(u16),
    #[error("no option 61 and no architecture in the vendor class")]
    NoArch,
    #[error("no boot file configured for {0}")]
    NoBootFile(ClientArch),
    #[error("{0:?} is not answered on this port (netdeploy leases no IPv6 address)")]
    NotForThisPort(Kind),
    #[error("the client addresses another server")]
    OtherServer,
    #[error("no MAC in the DUID and the source address is not EUI-64")]
    NoMac,
    #[error("{0}")]
    NoDeployment(String),
}

/// The boot information for one client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootInfo {
    /// `None` for iPXE without option 61: its script decides by what it asks.
    pub arch: Option<ClientArch>,
    /// The boot file URL (option 59).
    pub url: String,
    /// The client already runs iPXE.
    pub ipxe: bool,
}

/// The outcome of one message.
#[derive(Debug, Clone)]
pub enum Outcome {
    Reply { msg: v6::Message, boot: BootInfo },
    Ignore(Ignored),
}

/// Works out the boot file URL for a network-boot client.
pub fn boot_info(req: &Request, ctx: &Context<'_>) -> Result<BootInfo, Ignored> {
    let arch_value = req.arch_value();
    let arch = match arch_value {
        Some(v) => Some(ClientArch::from_option93(v).ok_or(Ignored::UnknownArch(v))?),
        None if req.is_ipxe() => None,
        None => return Err(Ignored::NoArch),
    };
    if let Some(reason) = &ctx.no_boot {
        return Err(Ignored::NoDeployment(reason.clone()));
    }
    if req.is_ipxe() {
        let mac = ctx.mac.ok_or(Ignored::NoMac)?;
        let mut url = format!(
            "{}/boot.ipxe?mac={}",
            ctx.http_base,
            mac.to_string().replace(':', "-")
        );
        if let Some(v) = arch_value {
            url.push_str(&format!("&arch={v}"));
        }
        if let Some(uuid) = req.uuid() {
            url.push_str(&format!("&uuid={uuid}"));
        }
        return Ok(BootInfo {
            arch,
            url,
            ipxe: true,
        });
    }
    let arch = arch.expect("only iPXE goes without an architecture");
    let name = ctx.boot_files.get(&arch).ok_or(Ignored::NoBootFile(arch))?;
    let path = name.trim_start_matches(['/', '\\']);
    let url = if arch.is_http_boot() {
        format!("{}/tftp/{path}", ctx.http_base)
    } else {
        format!("tftp://[{}]/{path}", ctx.server)
    };
    Ok(BootInfo {
        arch: Some(arch),
        url,
        ipxe: false,
    })
}

/// Decides the answer to one message.
pub fn respond(req: &Request, port: Port, ctx: &Context<'_>) -> Outcome {
    if !req.is_netboot() {
        return Outcome::Ignore(Ignored::NotNetboot(req.vendor_text().map(str::to_owned)));
    }
    // A message that names a server is for that server alone (RFC 8415 section 16).
    if req
        .server_id
        .as_deref()
        .is_some_and(|id| id != ctx.server_duid)
    {
        return Outcome::Ignore(Ignored::OtherServer);
    }
    let kind = match (port, req.kind) {
        (Port::Dhcp, Kind::Solicit) => MessageType::Advertise,
        (Port::Dhcp, Kind::InformationRequest) => MessageType::Reply,
        // UEFI's request to the boot server it chose names this server (checked above).
        (Port::Pxe, Kind::Request | Kind::InformationRequest) if req.server_id.is_some() => {
            MessageType::Reply
        }
        (_, k) => return Outcome::Ignore(Ignored::NotForThisPort(k)),
    };
    let boot = match boot_info(req, ctx) {
        Ok(b) => b,
        Err(e) => return Outcome::Ignore(e),
    };
    let mut m = v6::Message::new_with_id(kind, req.xid);
    let http = boot.arch.is_some_and(ClientArch::is_http_boot) && !boot.ipxe;
    let o = m.opts_mut();
    o.insert(DhcpOption::ServerId(ctx.server_duid.to_vec()));
    o.insert(DhcpOption::ClientId(req.client_id.clone()));
    // Built by hand: dhcproto 0.14 writes option 16's length without its class data.
    let class: &[u8] = if http { b"HTTPClient" } else { b"PXEClient" };
    let mut vendor = PXE_ENTERPRISE.to_be_bytes().to_vec();
    vendor.extend_from_slice(&(class.len() as u16).to_be_bytes());
    vendor.extend_from_slice(class);
    o.insert(DhcpOption::Unknown(UnknownOption::new(
        OptionCode::VendorClass,
        vendor,
    )));
    o.insert(DhcpOption::Unknown(UnknownOption::new(
        OptionCode::from(code::BOOTFILE_URL),
        boot.url.clone().into_bytes(),
    )));
    Outcome::Reply { msg: m, boot }
}

/// The `explain` line of a machine that network-boots over IPv6: how it is answered, with
/// which boot file URL, or why it is not (`address`: the `[ipv6]` address as text, `None`
/// when `[ipv6]` is off).
pub fn explain(arch: Option<ClientArch>, address: Option<&str>) -> String {
    let Some(a) = address else {
        return "ipv6:     off ([ipv6] enabled = false): a machine that network-boots over IPv6 \
                gets no DHCPv6 answer; it boots only over IPv4 (docs/network-boot.md, \"IPv6\")"
            .into();
    };
    let how = match arch {
        Some(arch) if arch.is_http_boot() => format!(
            "UEFI HTTP boot gets http://[{a}]:PORT/tftp/FILE (option 59, vendor class \
             HTTPClient) in a proxy ADVERTISE"
        ),
        Some(_) => format!(
            "UEFI PXE gets tftp://[{a}]/FILE (option 59) in a proxy ADVERTISE (no address: the \
             site's DHCPv6 server gives it) and again in the REPLY to its request on port 4011"
        ),
        None => "the firmware says its architecture in option 61".into(),
    };
    format!(
        "ipv6:     {how}; iPXE then gets http://[{a}]:PORT/boot.ipxe?mac=... in the REPLY to its \
         Information-Request (routers must set the O flag), and its script and kernel command \
         line name http://[{a}]:PORT; the machine is matched by its DUID-UUID, else the MAC in \
         its DUID-LL/LLT or EUI-64 address, with this same decision (docs/network-boot.md, \
         \"IPv6\")"
    )
}

/// Encodes a reply.
pub fn encode(msg: &v6::Message) -> Vec<u8> {
    msg.to_vec().expect("a reply built by netdeploy encodes")
}

/// A DUID-LL (RFC 8415 section 11.4) of an Ethernet interface: this server's identity.
pub fn duid_ll(mac: Mac) -> Vec<u8> {
    let mut d = vec![0, 3, 0, 1];
    d.extend_from_slice(&mac.0);
    d
}

#[cfg(test)]
mod tests {
    use super::super::packet::{decode, tests as pkt};
    use super::*;
    use dhcproto::Decodable;
    use std::collections::BTreeMap;

    fn files() -> BTreeMap<ClientArch, String> {
        crate::config::DEFAULT_BOOT_FILES
            .iter()
            .map(|(a, f)| (*a, f.to_string()))
            .collect()
    }

    const SERVER_DUID: [u8; 10] = [0, 3, 0, 1, 0x02, 0, 0, 0, 0, 1];

    fn ctx(files: &BTreeMap<ClientArch, String>) -> Context<'_> {
        Context {
            server: "fd77::1".parse().unwrap(),
            server_duid: &SERVER_DUID,
            boot_files: files,
            http_base: "http://[fd77::1]:8080",
            mac: Some(Mac([0x52, 0x54, 0x00, 0x12, 0x34, 0x56])),
            no_boot: None,
        }
    }

    /// The reply as a client reads it: decoded from the bytes netdeploy sends.
    fn reply(o: Outcome) -> (v6::Message, Vec<u8>) {
        match o {
            Outcome::Reply { msg, .. } => {
                let bytes = encode(&msg);
                let m = v6::Message::decode(&mut dhcproto::Decoder::new(&bytes)).unwrap();
                (m, bytes)
            }
            Outcome::Ignore(reason) => panic!("ignored: {reason}"),
        }
    }

    fn unknown(m: &v6::Message, c: u16) -> Option<String> {
        m.opts().iter().find_map(|o| match o {
            DhcpOption::Unknown(u) if u16::from(u.code()) == c => {
                Some(String::from_utf8_lossy(u.data()).into_owned())
            }
            _ => None,
        })
    }

    /// Option 16 as a client reads it (the request decoder reads the reply's bytes too).
    fn vendor(bytes: &[u8]) -> (u32, String) {
        let mut as_request = bytes.to_vec();
        as_request[0] = 1;
        decode(&as_request).unwrap().vendor_class.unwrap()
    }

    #[test]
    fn solicit_from_uefi_pxe_gets_a_proxy_advertise_the_firmware_takes_as_boot_server() {
        let f = files();
        let req = decode(&pkt::ovmf_solicit(1)).unwrap();
        let (m, bytes) = reply(respond(&req, Port::Dhcp, &ctx(&f)));
        assert_eq!(m.msg_type(), MessageType::Advertise);
        assert_eq!(m.xid(), [0x5a, 0x1c, 0x07]);
        assert_eq!(
            unknown(&m, code::BOOTFILE_URL).as_deref(),
            Some("tftp://[fd77::1]/snponly.efi")
        );
        // What makes UEFI sort it as a proxy offer: PXEClient under enterprise 343, no IA_NA.
        assert_eq!(vendor(&bytes), (343, "PXEClient".to_owned()));
        assert!(m.opts().get(OptionCode::IANA).is_none());
        // No preference: 255 would make the firmware take this address-less offer at once.
        assert!(m.opts().get(OptionCode::Preference).is_none());
        assert!(matches!(
            m.opts().get(OptionCode::ServerId),
            Some(DhcpOption::ServerId(d)) if d[..] == SERVER_DUID
        ));
        assert!(matches!(
            m.opts().get(OptionCode::ClientId),
            Some(DhcpOption::ClientId(d)) if *d == req.client_id
        ));
    }

    #[test]
    fn request_on_port_4011_naming_this_server_gets_the_boot_file_in_a_reply() {
        let f = files();
        let mut bytes = pkt::ovmf_solicit(3);
        bytes.extend_from_slice(&[0, 2, 0, SERVER_DUID.len() as u8]);
        bytes.extend_from_slice(&SERVER_DUID);
        let req = decode(&bytes).unwrap();
        let (m, _) = reply(respond(&req, Port::Pxe, &ctx(&f)));
        assert_eq!(m.msg_type(), MessageType::Reply);
        assert_eq!(
            unknown(&m, code::BOOTFILE_URL).as_deref(),
            Some("tftp://[fd77::1]/snponly.efi")
        );
        // The same REQUEST on 547 is the site's business: netdeploy leases nothing.
        assert!(matches!(
            respond(&req, Port::Dhcp, &ctx(&f)),
            Outcome::Ignore(Ignored::NotForThisPort(Kind::Request))
        ));
    }

    #[test]
    fn messages_for_another_server_are_left_alone() {
        let f = files();
        let mut bytes = pkt::ovmf_solicit(3);
        bytes.extend_from_slice(&[0, 2, 0, 10, 0, 3, 0, 1, 0x02, 0, 0, 0, 0, 9]);
        let req = decode(&bytes).unwrap();
        for port in [Port::Dhcp, Port::Pxe] {
            assert!(matches!(
                respond(&req, port, &ctx(&f)),
                Outcome::Ignore(Ignored::OtherServer)
            ));
        }
    }

    #[test]
    fn ipxe_gets_its_script_url_with_bracketed_address_never_the_boot_file_again() {
        let f = files();
        let req = decode(&pkt::ipxe_information_request()).unwrap();
        let (m, _) = reply(respond(&req, Port::Dhcp, &ctx(&f)));
        assert_eq!(m.msg_type(), MessageType::Reply);
        assert_eq!(
            unknown(&m, code::BOOTFILE_URL).as_deref(),
            Some(
                "http://[fd77::1]:8080/boot.ipxe?mac=52-54-00-12-34-56\
                 &uuid=43fd3687-f5ff-4904-a82e-e5fa7b1b0dc8"
            )
        );
        // Without a MAC (no link-layer DUID, no EUI-64 source) there is no script to name.
        let mut c = ctx(&f);
        c.mac = None;
        assert!(matches!(
            respond(&req, Port::Dhcp, &c),
            Outcome::Ignore(Ignored::NoMac)
        ));
    }

    #[test]
    fn uefi_http_boot_gets_an_http_url_and_says_httpclient() {
        let f = files();
        let mut bytes = pkt::ovmf_solicit(1);
        let at = bytes.windows(4).position(|w| w == [0, 61, 0, 2]).unwrap();
        bytes[at + 5] = 16;
        let req = decode(&bytes).unwrap();
        let (m, bytes) = reply(respond(&req, Port::Dhcp, &ctx(&f)));
        assert_eq!(
            unknown(&m, code::BOOTFILE_URL).as_deref(),
            Some("http://[fd77::1]:8080/tftp/snponly.efi")
        );
        assert_eq!(vendor(&bytes).1, "HTTPClient");
    }

    #[test]
    fn no_deployment_unknown_architecture_and_plain_clients_get_nothing() {
        let f = files();
        let req = decode(&pkt::ovmf_solicit(1)).unwrap();
        let mut c = ctx(&f);
        c.no_boot = Some("rule 8: no deployment".into());
        assert!(matches!(
            respond(&req, Port::Dhcp, &c),
            Outcome::Ignore(Ignored::NoDeployment(_))
        ));
        let mut bytes = pkt::ovmf_solicit(1);
        let at = bytes.windows(4).position(|w| w == [0, 61, 0, 2]).unwrap();
        bytes[at + 5] = 12;
        let req = decode(&bytes).unwrap();
        assert!(matches!(
            respond(&req, Port::Dhcp, &ctx(&f)),
            Outcome::Ignore(Ignored::UnknownArch(12))
        ));
        // A plain DHCPv6 client (dhclient -6): DUID-LLT, IA_NA, no class, no architecture.
        let mut b = vec![1, 0, 0, 9, 0, 1, 0, 14, 0, 1, 0, 1, 1, 2, 3, 4];
        b.extend_from_slice(&[0x52, 0x54, 0, 0, 0, 1]);
        let req = decode(&b).unwrap();
        assert!(matches!(
            respond(&req, Port::Dhcp, &ctx(&f)),
            Outcome::Ignore(Ignored::NotNetboot(None))
        ));
    }

    #[test]
    fn explain_names_the_ipv6_urls_or_says_ipv6_is_off() {
        let on = explain(Some(ClientArch::EfiX64), Some("fd77::1"));
        assert!(
            on.contains("tftp://[fd77::1]/FILE") && on.contains("port 4011"),
            "{on}"
        );
        assert!(on.contains("http://[fd77::1]:PORT/boot.ipxe"), "{on}");
        let http = explain(Some(ClientArch::HttpX64), Some("fd77::1"));
        assert!(
            http.contains("HTTPClient") && !http.contains("tftp://"),
            "{http}"
        );
        assert!(explain(Some(ClientArch::EfiX64), None).contains("enabled = false"));
    }

    proptest::proptest! {
        /// Whatever a client sends, the answer encodes and decodes back (and nothing panics).
        #[test]
        fn any_answer_round_trips(idx in 0usize..120, val in proptest::prelude::any::<u8>()) {
            let f = files();
            let mut b = pkt::ovmf_solicit(1);
            if idx < b.len() { b[idx] = val; }
            if let Ok(req) = decode(&b) {
                if let Outcome::Reply { msg, .. } = respond(&req, Port::Dhcp, &ctx(&f)) {
                    let back = v6::Message::decode(&mut dhcproto::Decoder::new(&encode(&msg))).unwrap();
                    proptest::prop_assert_eq!(back.xid(), req.xid);
                }
            }
        }
    }
}
