//! `[multicast]` (docs/multicast.md): the group range, port, TTL, rate limits and the
//! interface sessions send on, validated with a message that names the field.

use std::net::Ipv4Addr;

use crate::config::wire;
use crate::config::ConfigError;
use crate::interfaces::InterfaceAddr;

/// The validated `[multicast]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MulticastConfig {
    /// Whether deployments may use multicast at all (off by default).
    pub enabled: bool,
    /// The administratively scoped range (RFC 2365) session groups are taken from.
    pub group_base: Ipv4Addr,
    pub group_prefix: u8,
    /// The UDP port of the groups.
    pub port: u16,
    /// Multicast TTL: 1 keeps sessions on the served link.
    pub ttl: u32,
    /// Bytes per second a session never exceeds, and never slows below.
    pub max_rate: u64,
    pub min_rate: u64,
    /// The address sessions send from (its interface carries the group).
    pub source: Ipv4Addr,
    /// A session a deployment starts sends data this long after its first machine asked,
    /// so that machines started together share the first round.
    pub join_window: std::time::Duration,
    /// ...or as soon as this many machines asked for its data, when not 0: a rack or a
    /// classroom of known size starts as soon as it is all there, and a slow boot among
    /// them still has the whole window.
    pub wait_for_machines: usize,
    /// A session ends after this long whatever is left; its machines continue over HTTP.
    pub session_timeout: std::time::Duration,
}

/// The defaults: off, 239.255.77.0/24 port 7400, TTL 1, 1 to 100 Mbit/s.
pub const DEFAULT_RANGE: &str = "239.255.77.0/24";
pub const DEFAULT_PORT: u16 = 7400;
pub const DEFAULT_MAX_RATE_MBPS: u64 = 100;
pub const DEFAULT_MIN_RATE_MBPS: u64 = 1;
pub const DEFAULT_JOIN_WINDOW_S: u64 = 10;
pub const DEFAULT_SESSION_TIMEOUT_S: u64 = 4 * 3600;

fn field(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Field {
        field,
        reason: reason.into(),
    }
}

/// Parses `a.b.c.d/n` inside 239.0.0.0/8, with room for at least two groups.
pub fn parse_range(text: &str) -> Result<(Ipv4Addr, u8), String> {
    let (addr, prefix) = text
        .split_once('/')
        .ok_or_else(|| format!("{text:?} is not a range such as {DEFAULT_RANGE:?}"))?;
    let addr: Ipv4Addr = addr
        .parse()
        .map_err(|_| format!("{addr:?} is not an IPv4 address"))?;
    let prefix: u8 = prefix
        .parse()
        .ok()
        .filter(|p| (8..=30).contains(p))
        .ok_or_else(|| format!("/{prefix} is not a prefix length from 8 to 30"))?;
    if addr.octets()[0] != 239 {
        return Err(format!(
            "{text} is not inside 239.0.0.0/8, the administratively scoped range (RFC 2365)"
        ));
    }
    let mask = u32::MAX << (32 - prefix);
    Ok((Ipv4Addr::from(u32::from(addr) & mask), prefix))
}

impl MulticastConfig {
    /// Validates `[multicast]` against the served interfaces (the first one sends unless
    /// `interfaces` names another served one).
    pub fn from_wire(
        w: &wire::Multicast,
        served: &[InterfaceAddr],
    ) -> Result<MulticastConfig, ConfigError> {
        let (group_base, group_prefix) =
            parse_range(w.group_range.as_deref().unwrap_or(DEFAULT_RANGE))
                .map_err(|e| field("multicast.group_range", e))?;
        let port = w.port.unwrap_or(DEFAULT_PORT);
        if port == 0 {
            return Err(field("multicast.port", "must be a port from 1 to 65535"));
        }
        let ttl = w.ttl.unwrap_or(1);
        if !(1..=32).contains(&ttl) {
            return Err(field(
                "multicast.ttl",
                "must be from 1 (the served link only, the default) to 32",
            ));
        }
        let max = w.max_rate_mbps.unwrap_or(DEFAULT_MAX_RATE_MBPS);
        let min = w.min_rate_mbps.unwrap_or(DEFAULT_MIN_RATE_MBPS.min(max));
        if !(1..=100_000).contains(&max) {
            return Err(field(
                "multicast.max_rate_mbps",
                "must be from 1 to 100000 (Mbit/s)",
            ));
        }
        if min == 0 || min > max {
            return Err(field(
                "multicast.min_rate_mbps",
                format!("must be from 1 to multicast.max_rate_mbps ({max})"),
            ));
        }
        let source = match w.interfaces.as_deref() {
            None | Some([]) => served.first().map(|i| i.address),
            Some([name, ..]) => Some(
                served
                    .iter()
                    .find(|i| &i.name == name)
                    .ok_or_else(|| {
                        field(
                            "multicast.interfaces",
                            format!("{name:?} is not one of server.interfaces"),
                        )
                    })?
                    .address,
            ),
        }
        .ok_or_else(|| field("multicast.interfaces", "no served interface to send on"))?;
        let join_window = w.join_window_s.unwrap_or(DEFAULT_JOIN_WINDOW_S);
        if join_window > 600 {
            return Err(field(
                "multicast.join_window_s",
                "must be from 0 to 600 (seconds)",
            ));
        }
        let wait_for_machines = w.wait_for_machines.unwrap_or(0);
        if wait_for_machines > 100_000 {
            return Err(field(
                "multicast.wait_for_machines",
                "must be from 0 (always wait out join_window_s, the default) to 100000",
            ));
        }
        let session_timeout = w.session_timeout_s.unwrap_or(DEFAULT_SESSION_TIMEOUT_S);
        if !(60..=7 * 86_400).contains(&session_timeout) {
            return Err(field(
                "multicast.session_timeout_s",
                "must be from 60 to 604800 (seconds)",
            ));
        }
        Ok(MulticastConfig {
            enabled: w.enabled.unwrap_or(false),
            group_base,
            group_prefix,
            port,
            ttl,
            max_rate: max * 1_000_000 / 8,
            min_rate: min * 1_000_000 / 8,
            source,
            join_window: std::time::Duration::from_secs(join_window),
            wait_for_machines: wait_for_machines as usize,
            session_timeout: std::time::Duration::from_secs(session_timeout),
        })
    }

    /// The group of a session: one of the range's addresses chosen by the session id, never
    /// the range's first or last.
    pub fn group_of(&self, session: u32) -> Ipv4Addr {
        let size = 1u32 << (32 - self.group_prefix);
        Ipv4Addr::from(u32::from(self.group_base) + 1 + session % (size - 2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served() -> Vec<InterfaceAddr> {
        vec![
            InterfaceAddr {
                name: "br0".into(),
                address: Ipv4Addr::new(10, 0, 0, 1),
                netmask: Ipv4Addr::new(255, 255, 255, 0),
            },
            InterfaceAddr {
                name: "eth1".into(),
                address: Ipv4Addr::new(10, 1, 0, 1),
                netmask: Ipv4Addr::new(255, 255, 255, 0),
            },
        ]
    }

    fn err_field(w: wire::Multicast) -> &'static str {
        match MulticastConfig::from_wire(&w, &served()) {
            Err(ConfigError::Field { field, .. }) => field,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn defaults_are_off_ttl_1_in_the_administratively_scoped_range() {
        let c = MulticastConfig::from_wire(&wire::Multicast::default(), &served()).unwrap();
        assert!(!c.enabled);
        assert_eq!(c.ttl, 1);
        assert_eq!(
            (c.group_base, c.group_prefix),
            (Ipv4Addr::new(239, 255, 77, 0), 24)
        );
        assert_eq!(c.source, Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(c.max_rate, 12_500_000);
    }

    #[test]
    fn bad_values_name_their_field() {
        let w = |f: fn(&mut wire::Multicast)| {
            let mut w = wire::Multicast::default();
            f(&mut w);
            w
        };
        assert_eq!(
            err_field(w(|w| w.group_range = Some("224.0.0.0/24".into()))),
            "multicast.group_range"
        );
        assert_eq!(
            err_field(w(|w| w.group_range = Some("239.1.1.0/31".into()))),
            "multicast.group_range"
        );
        assert_eq!(err_field(w(|w| w.ttl = Some(0))), "multicast.ttl");
        assert_eq!(err_field(w(|w| w.port = Some(0))), "multicast.port");
        assert_eq!(
            err_field(w(|w| w.max_rate_mbps = Some(0))),
            "multicast.max_rate_mbps"
        );
        assert_eq!(
            err_field(w(|w| {
                w.max_rate_mbps = Some(10);
                w.min_rate_mbps = Some(20)
            })),
            "multicast.min_rate_mbps"
        );
        assert_eq!(
            err_field(w(|w| w.interfaces = Some(vec!["wlan0".into()]))),
            "multicast.interfaces"
        );
        assert_eq!(
            err_field(w(|w| w.join_window_s = Some(601))),
            "multicast.join_window_s"
        );
        assert_eq!(
            err_field(w(|w| w.wait_for_machines = Some(100_001))),
            "multicast.wait_for_machines"
        );
        assert_eq!(
            err_field(w(|w| w.session_timeout_s = Some(5))),
            "multicast.session_timeout_s"
        );
    }

    #[test]
    fn a_named_interface_sends_and_groups_stay_inside_the_range() {
        let mut w = wire::Multicast {
            interfaces: Some(vec!["eth1".into()]),
            group_range: Some("239.9.9.9/30".into()),
            ..Default::default()
        };
        let c = MulticastConfig::from_wire(&w, &served()).unwrap();
        assert_eq!(c.source, Ipv4Addr::new(10, 1, 0, 1));
        for s in [0, 1, 2, 77, u32::MAX] {
            let g = c.group_of(s);
            assert!(
                g == Ipv4Addr::new(239, 9, 9, 9) || g == Ipv4Addr::new(239, 9, 9, 10),
                "{g}"
            );
        }
        w.group_range = None;
        let c = MulticastConfig::from_wire(&w, &served()).unwrap();
        assert_eq!(c.group_of(0), Ipv4Addr::new(239, 255, 77, 1));
    }
}
