//! The configuration file as written: parsed only, nothing resolved or checked beyond types.
//! `super::Config::from_wire` turns it into the validated runtime configuration.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    #[serde(default)]
    pub server: Server,
    #[serde(default)]
    pub dhcp: Dhcp,
    #[serde(default)]
    pub tftp: Tftp,
    #[serde(default)]
    pub http: Http,
    #[serde(default)]
    pub boot: Boot,
    #[serde(default)]
    pub alerts: Alerts,
    #[serde(default)]
    pub status: Status,
    #[serde(default)]
    pub ipv6: Ipv6,
    #[serde(default)]
    pub store: StoreSection,
    #[serde(default)]
    pub content: ContentSection,
    #[serde(default)]
    pub multicast: Multicast,
}

/// `[content]`: where a server gets content it lacks.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContentSection {
    /// Base URLs of other netdeploy servers (`http://host:port`), asked in order.
    #[serde(default)]
    pub upstream: Vec<String>,
}

/// `[multicast]`: multicast imaging sessions (docs/multicast.md).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Multicast {
    pub enabled: Option<bool>,
    pub group_range: Option<String>,
    pub port: Option<u16>,
    pub ttl: Option<u32>,
    pub max_rate_mbps: Option<u64>,
    pub min_rate_mbps: Option<u64>,
    pub interfaces: Option<Vec<String>>,
    pub join_window_s: Option<u64>,
    pub wait_for_machines: Option<u64>,
    pub session_timeout_s: Option<u64>,
}

/// `[store]`: where the catalog, the loop guard and the status messages are kept.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// `postgresql://...`: a PostgreSQL database shared by several servers; absent: SQLite in
    /// the data directory.
    pub url: Option<String>,
}

/// `[ipv6]`: network boot over IPv6 (DHCPv6 in proxy fashion, TFTP and HTTP on IPv6).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ipv6 {
    pub enabled: Option<bool>,
    pub address: Option<std::net::Ipv6Addr>,
    pub dhcp_port: Option<u16>,
    pub proxy_port: Option<u16>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Status {
    pub retention_days: Option<u64>,
    pub max_messages: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alerts {
    /// URLs that each raised or cleared deployment alert is posted to as JSON.
    #[serde(default)]
    pub webhooks: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    pub name: Option<String>,
    pub interfaces: Option<Vec<String>>,
    pub address: Option<Ipv4Addr>,
    pub data_dir: Option<PathBuf>,
    pub import_root: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dhcp {
    pub mode: Option<super::DhcpMode>,
    pub port: Option<u16>,
    pub proxy_port: Option<u16>,
    pub range: Option<[Ipv4Addr; 2]>,
    pub netmask: Option<Ipv4Addr>,
    pub router: Option<Ipv4Addr>,
    pub dns: Option<Vec<Ipv4Addr>>,
    pub lease_seconds: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tftp {
    pub root: Option<PathBuf>,
    pub port: Option<u16>,
    pub max_transfers: Option<usize>,
    pub max_transfers_per_client: Option<usize>,
    pub max_blksize: Option<u16>,
    pub max_windowsize: Option<u16>,
    pub timeout_ms: Option<u64>,
    pub retries: Option<u32>,
    pub fragmented_windows: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Http {
    pub port: Option<u16>,
    pub public_url: Option<String>,
    pub admin_token: Option<String>,
    /// More bearer tokens of the admin API, each with a name and a role.
    #[serde(default)]
    pub api_tokens: Vec<ApiToken>,
    pub header_timeout_seconds: Option<u64>,
    pub idle_timeout_seconds: Option<u64>,
    pub max_connections: Option<usize>,
    pub max_connections_per_client: Option<usize>,
    /// HTTPS for the agent endpoints and the admin API; absent: plain HTTP only.
    pub tls: Option<Tls>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    pub port: Option<u16>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub handshake_timeout_seconds: Option<u64>,
    pub allow_plain_http: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiToken {
    pub name: String,
    pub role: String,
    pub token: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Boot {
    /// Boot file per architecture key (`bios`, `efi-x64`, ...).
    #[serde(default)]
    pub files: BTreeMap<String, String>,
    pub image: Option<BootImage>,
    pub menu_timeout_seconds: Option<u32>,
    pub run_token_hours: Option<u64>,
    pub script_after_dhcp_seconds: Option<u64>,
    /// First-stage chain per architecture key: `ipxe` (the default) or `shim`.
    #[serde(default)]
    pub chain: BTreeMap<String, super::BootChain>,
    /// Where the Secure Boot chain's signed binaries are.
    #[serde(default)]
    pub shim: Shim,
    /// The PXE password (rule 9) as an argon2id hash in the PHC string format.
    pub pxe_password_hash: Option<String>,
    /// The Windows build of the agent, which Windows PE deployments inject through wimboot.
    pub windows_agent: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shim {
    pub shim: Option<PathBuf>,
    pub grub: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootImage {
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    #[serde(default)]
    pub cmdline: String,
}
