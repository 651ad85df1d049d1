//! Configuration: `wire` parses the TOML file, [`Config::from_wire`] validates it against the
//! host (interfaces, paths) and fails with a message that names the field to fix.

pub mod wire;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::arch::ClientArch;
use crate::interfaces::{Interface6Addr, InterfaceAddr};
use crate::tftp::TftpSettings;

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{field}: {reason}")]
    Field { field: &'static str, reason: String },
}

fn field(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Field {
        field,
        reason: reason.into(),
    }
}

/// How netdeploy takes part in DHCP (docs/network-boot.md). A closed set in the file too: another
/// value is refused where the file is parsed, with its line and the values there are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
pub enum DhcpMode {
    /// Another server leases addresses; netdeploy answers PXE clients on 67 and 4011 with boot
    /// information only.
    #[default]
    #[serde(rename = "proxy")]
    Proxy,
    /// Another DHCP server on this same host owns port 67 (and sends option 60 `PXEClient`);
    /// netdeploy answers on 4011 only.
    #[serde(rename = "proxy-4011")]
    Proxy4011,
    /// netdeploy leases addresses too (isolated labs).
    #[serde(rename = "dhcp")]
    Dhcp,
}

impl DhcpMode {
    /// The name used in the configuration file and the logs.
    pub fn name(self) -> &'static str {
        match self {
            DhcpMode::Proxy => "proxy",
            DhcpMode::Proxy4011 => "proxy-4011",
            DhcpMode::Dhcp => "dhcp",
        }
    }
}

/// How a UEFI machine is booted before the boot image (docs/network-boot.md section 7).
/// Option 93 does not say whether Secure Boot is on, so the configuration chooses, per
/// architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
pub enum BootChain {
    /// The firmware loads iPXE (`boot.files`), which fetches the machine's iPXE script.
    #[default]
    #[serde(rename = "ipxe")]
    Ipxe,
    /// The firmware loads Debian's signed shim, shim the signed network GRUB, GRUB the
    /// machine's GRUB configuration and the boot image's signed kernel: what a machine with
    /// Secure Boot enforced accepts.
    #[serde(rename = "shim")]
    Shim,
}

impl BootChain {
    /// The name used in the configuration file, the logs and `explain`.
    pub fn name(self) -> &'static str {
        match self {
            BootChain::Ipxe => "ipxe",
            BootChain::Shim => "shim",
        }
    }
}

/// The signed binaries of the Secure Boot chain, served over TFTP under the names shim and its
/// firmware expect ([`crate::secure_boot::SHIM_TFTP_NAME`], [`crate::secure_boot::GRUB_TFTP_NAME`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShimFiles {
    /// shim signed by the UEFI CA (Debian: shim-signed).
    pub shim: PathBuf,
    /// The network GRUB signed by the distribution (Debian: grub-efi-amd64-signed).
    pub grub: PathBuf,
}

/// Debian's paths of the Secure Boot chain's binaries.
pub const DEFAULT_SHIM: &str = "/usr/lib/shim/shimx64.efi.signed";
pub const DEFAULT_SIGNED_GRUB: &str = "/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed";

/// The address pool of `dhcp` mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    pub first: Ipv4Addr,
    pub last: Ipv4Addr,
    pub netmask: Ipv4Addr,
    pub router: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub lease_time: Duration,
}

/// DHCP settings.
#[derive(Debug, Clone)]
pub struct DhcpConfig {
    pub mode: DhcpMode,
    /// The DHCP server port. 67 is the real one; any other value (0 for an ephemeral port) is
    /// the test mode, where replies are unicast to the sender instead of broadcast.
    pub port: u16,
    /// The PXE boot server port (4011; 0 for an ephemeral port in tests).
    pub proxy_port: u16,
    /// Present in `dhcp` mode only.
    pub pool: Option<Pool>,
}

impl DhcpConfig {
    /// True when replies go to the sender's address and port (tests on loopback).
    pub fn test_mode(&self) -> bool {
        self.port != 67
    }
}

/// HTTP settings.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Port to listen on, on every served interface address (0: ephemeral).
    pub port: u16,
    /// Base URL clients use, when set; otherwise `http://<server address>:<port>`.
    pub public_url: Option<String>,
    /// Bearer tokens of the admin API (`http.admin_token` is the one named `admin`); none turns
    /// the API off.
    pub api_tokens: Vec<ApiToken>,
    pub limits: HttpLimits,
    /// HTTPS (`[http.tls]`); `None`: plain HTTP only.
    pub tls: Option<TlsConfig>,
}

/// HTTPS for the agent endpoints and the admin API (docs/security.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// Port to listen on for HTTPS, on every served interface address (0: ephemeral).
    pub port: u16,
    pub certificate: CertificateSource,
    /// Time a client has to finish the TLS handshake once connected.
    pub handshake_timeout: Duration,
    /// Whether `/agent/*` and `/api/*` are still answered over plain HTTP.
    pub allow_plain_http: bool,
}

/// Where the HTTPS certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateSource {
    /// `http.tls.cert` and `http.tls.key`: PEM files, the certificate chain leaf first.
    Files { cert: PathBuf, key: PathBuf },
    /// Made on first start and kept in the data directory (src/tls.rs).
    SelfSigned,
}

/// What a bearer token of the admin API may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiRole {
    /// Reads: the catalog, status, explain, alerts.
    Read,
    /// Reads and changes.
    Admin,
}

impl std::fmt::Display for ApiRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ApiRole::Read => "read",
            ApiRole::Admin => "admin",
        })
    }
}

/// One bearer token of the admin API. Its name says who made a change in the audit status
/// messages.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken {
    pub name: String,
    pub role: ApiRole,
    pub token: String,
}

impl std::fmt::Debug for ApiToken {
    /// Never the secret itself, so a logged configuration does not give it away.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiToken")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// What one HTTP peer may hold, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Time a client has to complete a request head once its first byte arrived.
    pub header_timeout: Duration,
    /// Time a connection may stay open with no request in progress.
    pub idle_timeout: Duration,
    /// Connections open at once, from every client together.
    pub max_connections: usize,
    /// Connections open at once from one client address.
    pub max_connections_per_client: usize,
}

impl Default for HttpLimits {
    /// iPXE, UEFI HTTP boot and the agent send a request head in one segment and fetch files
    /// one or a few at a time: a machine needs a handful of connections, a few seconds for a
    /// head, and nothing kept open for long between files.
    fn default() -> HttpLimits {
        HttpLimits {
            header_timeout: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(60),
            max_connections: 4096,
            max_connections_per_client: 64,
        }
    }
}

/// The Linux boot image booted when no deployment decides otherwise.
#[derive(Debug, Clone)]
pub struct BootImage {
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    pub cmdline: String,
}

/// What to boot.
#[derive(Debug, Clone)]
pub struct BootConfig {
    /// First-stage boot file (relative to the TFTP root) per client architecture.
    pub files: BTreeMap<ClientArch, String>,
    pub image: Option<BootImage>,
    /// How long the deployment menu waits before it leaves to the local disk (rule 6).
    pub menu_timeout: Duration,
    /// The first-stage chain of each architecture that does not use iPXE (`boot.chain`).
    pub chains: BTreeMap<ClientArch, BootChain>,
    /// The Secure Boot chain's binaries, when an architecture uses it.
    pub shim: Option<ShimFiles>,
    /// How long a run token is accepted when its run does not end first (docs/security.md).
    pub run_token_lifetime: Duration,
    /// How long after its DHCP exchange a machine's script request may start a run.
    pub script_after_dhcp: Duration,
    /// The PXE password asked before a deployment starts through PXE (rule 9,
    /// `boot.pxe_password_hash`), as its argon2id hash.
    pub pxe_password: Option<PxePassword>,
    /// `netdeploy-agent.exe`, which a Windows PE deployment's script injects with a
    /// `winpeshl.ini` that starts it; `None` leaves such a machine at the WinPE prompt.
    pub windows_agent: Option<PathBuf>,
}

/// The stored form of the PXE password: an argon2id hash, never the password.
pub type PxePassword = netdeploy_wire::password::MediaPassword;

/// `boot.pxe_password_hash`: an argon2id PHC string, as `netdeploy pxe password-hash` prints.
fn pxe_password(w: &wire::Boot) -> Result<Option<PxePassword>, ConfigError> {
    let Some(text) = &w.pxe_password_hash else {
        return Ok(None);
    };
    PxePassword::parse(text).map(Some).map_err(|e| {
        let why = match e {
            netdeploy_wire::password::FormatError::Legacy => {
                "a salted SHA-256 hash is not accepted".to_owned()
            }
            e => e.to_string(),
        };
        field(
            "boot.pxe_password_hash",
            format!(
                "{why}; expected an argon2id hash in the PHC string format ($argon2id$...), \
                 as `netdeploy pxe password-hash` prints it"
            ),
        )
    })
}

impl BootConfig {
    /// The first-stage chain of an architecture.
    pub fn chain(&self, arch: ClientArch) -> BootChain {
        self.chains.get(&arch).copied().unwrap_or_default()
    }
}

/// The validated runtime configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Served interfaces with their address.
    pub interfaces: Vec<InterfaceAddr>,
    /// The address given to clients as the boot server (option 54, siaddr, URLs).
    pub server_address: Ipv4Addr,
    pub data_dir: PathBuf,
    /// The directory below which a site file sent to the admin API may name files; `None`:
    /// such a site file may name no file at all.
    pub import_root: Option<PathBuf>,
    pub dhcp: DhcpConfig,
    pub tftp_port: u16,
    pub tftp: TftpSettings,
    pub http: HttpConfig,
    pub boot: BootConfig,
    /// Where deployment alerts are posted (`[alerts] webhooks`): plain `http://` URLs.
    pub alert_webhooks: Vec<axum::http::Uri>,
    pub status_retention: StatusRetention,
    /// Network boot over IPv6 (`[ipv6]`); `None` when it is off (the default).
    pub ipv6: Option<Ipv6Config>,
    /// `[store] url`: a PostgreSQL database shared by several servers; `None`: SQLite in
    /// `data_dir`. May hold a password: never log it ([`crate::store::Store::describe`]).
    pub store_url: Option<String>,
    /// `server.name`: how this server is named where several share a store (the host name
    /// by default).
    pub server_name: String,
    /// `[content] upstream`: servers asked for content this one lacks, in order.
    pub content_upstream: Vec<axum::http::Uri>,
    /// `[multicast]`: multicast imaging sessions (docs/multicast.md).
    pub multicast: crate::multicast::config::MulticastConfig,
}

/// Network boot over IPv6: DHCPv6 in proxy fashion, and TFTP and HTTP on the served
/// interfaces' IPv6 addresses (docs/network-boot.md, "IPv6").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv6Config {
    /// The address in boot file URLs (`tftp://[address]/...`, `http://[address]:port/...`).
    pub address: Ipv6Addr,
    /// Each served interface with its index and the IPv6 address TFTP and HTTP listen on.
    pub interfaces: Vec<Interface6Addr>,
    /// The DHCPv6 server port. 547 is the real one (multicast to ff02::1:2); any other value
    /// (0 for an ephemeral port) is the test mode: bound to the address, replies to the sender.
    pub dhcp_port: u16,
    /// The port UEFI asks its chosen boot server on (4011; 0 for an ephemeral port in tests).
    pub proxy_port: u16,
}

impl Ipv6Config {
    /// True when replies go to the sender's address and port (tests on loopback).
    pub fn test_mode(&self) -> bool {
        self.dhcp_port != 547
    }
}

/// `[ipv6]` against the host's IPv6 addresses: each served interface needs a global, unique
/// local or loopback address (a link-local one cannot be put in a URL without its scope).
fn ipv6_config(
    w: &wire::Ipv6,
    served: &[InterfaceAddr],
    host6: &[Interface6Addr],
) -> Result<Option<Ipv6Config>, ConfigError> {
    if !w.enabled.unwrap_or(false) {
        if w.address.is_some() || w.dhcp_port.is_some() || w.proxy_port.is_some() {
            return Err(field(
                "ipv6.enabled",
                "the [ipv6] settings take effect only with enabled = true",
            ));
        }
        return Ok(None);
    }
    let mut interfaces = Vec::new();
    for iface in served {
        let mine: Vec<&Interface6Addr> = host6
            .iter()
            .filter(|a| a.name == iface.name && !a.is_link_local())
            .collect();
        let chosen = match w.address {
            Some(a) => mine.iter().find(|m| m.address == a).or(mine.first()),
            None => mine.first(),
        };
        let Some(chosen) = chosen else {
            return Err(field(
                "ipv6.enabled",
                format!(
                    "interface {:?} has no global or unique local IPv6 address to serve on",
                    iface.name
                ),
            ));
        };
        interfaces.push((*chosen).clone());
    }
    let address = match w.address {
        Some(a) if interfaces.iter().any(|i| i.address == a) => a,
        Some(a) => {
            return Err(field(
                "ipv6.address",
                format!("{a} is not an IPv6 address of the served interfaces"),
            ))
        }
        None => interfaces[0].address,
    };
    Ok(Some(Ipv6Config {
        address,
        interfaces,
        dhcp_port: w.dhcp_port.unwrap_or(547),
        proxy_port: w.proxy_port.unwrap_or(4011),
    }))
}

/// How long status messages are kept, and how many at most (`[status]`): a flood of
/// messages cannot fill the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusRetention {
    pub max_age: Duration,
    pub max_messages: u64,
}

impl Default for StatusRetention {
    fn default() -> StatusRetention {
        StatusRetention {
            max_age: Duration::from_secs(90 * 86_400),
            max_messages: 1_000_000,
        }
    }
}

/// Default first-stage boot files, as Debian's `ipxe` package installs them in /usr/lib/ipxe.
/// `snponly.efi` rather than `ipxe.efi`: it drives the NIC through the firmware's own network
/// stack, and Debian ships `ipxe.efi` as a symlink out of /usr/lib/ipxe, which a confined TFTP
/// root refuses to follow.
pub const DEFAULT_BOOT_FILES: [(ClientArch, &str); 5] = [
    (ClientArch::BiosX86, "undionly.kpxe"),
    (ClientArch::EfiX64, "snponly.efi"),
    // UEFI HTTP boot loads the same iPXE, as a URL under /tftp/.
    (ClientArch::HttpX64, "snponly.efi"),
    // iPXE built for ARM64 (`make bin-arm64-efi/snponly.efi`); Debian ships none, so these
    // are offered only once the file is put under the TFTP root.
    (ClientArch::EfiArm64, "arm64-efi/snponly.efi"),
    (ClientArch::HttpArm64, "arm64-efi/snponly.efi"),
];

/// Where every command looks for the configuration when neither `--config` nor
/// `NETDEPLOY_CONFIG` names one (the Debian package installs it there).
pub const DEFAULT_CONFIG_PATH: &str = "/etc/netdeploy/netdeploy.toml";

/// The data directory when the configuration does not name one.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/netdeploy";

/// What the offline commands (`site apply`, `status`, `explain`, `pxe clear`, ...) take from a
/// configuration file: only where the data lives. Unlike [`Config::load`] it does not ask
/// whether the served interfaces exist, so those commands work on any host, outside the
/// server's network namespace too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageConfig {
    pub data_dir: PathBuf,
    /// `[boot.chain]`, for `explain` (an unknown architecture key is left out here; the
    /// server refuses it).
    pub chains: BTreeMap<ClientArch, BootChain>,
    /// `boot.pxe_password_hash` is set, for `explain` (rule 9).
    pub pxe_password_set: bool,
    /// `[ipv6]`, for `explain`: the address when it is enabled (`None` without an address
    /// in the file: the served interface's, which only the server resolves).
    pub ipv6: Option<Option<Ipv6Addr>>,
    /// `[store] url`, checked as the server checks it.
    pub store_url: Option<String>,
    /// `server.name`, as the server takes it.
    pub server_name: String,
    /// `[content] upstream`, as the server checks it.
    pub content_upstream: Vec<axum::http::Uri>,
}

impl StorageConfig {
    /// Reads and parses a configuration file (every key is still checked for spelling).
    pub fn load(path: &Path) -> Result<StorageConfig, ConfigError> {
        let wire = read_wire(path)?;
        Ok(StorageConfig {
            data_dir: data_dir_of(&wire),
            chains: wire
                .boot
                .chain
                .iter()
                .filter_map(|(k, c)| Some((ClientArch::from_key(k)?, *c)))
                .collect(),
            pxe_password_set: wire.boot.pxe_password_hash.is_some(),
            ipv6: wire
                .ipv6
                .enabled
                .unwrap_or(false)
                .then_some(wire.ipv6.address),
            store_url: store_url_of(&wire)?,
            server_name: server_name_of(&wire)?,
            content_upstream: upstream_of(&wire)?,
        })
    }
}

/// `server.name`, else the host name.
fn server_name_of(w: &wire::File) -> Result<String, ConfigError> {
    match &w.server.name {
        Some(n)
            if n.is_empty()
                || n.len() > 64
                || n.chars().any(|c| c.is_control() || c.is_whitespace()) =>
        {
            Err(field(
                "server.name",
                "must be 1 to 64 characters without spaces",
            ))
        }
        Some(n) => Ok(n.clone()),
        None => Ok(crate::interfaces::host_name()),
    }
}

/// `[content] upstream`: plain `http://host[:port]` base URLs of other netdeploy servers.
fn upstream_of(w: &wire::File) -> Result<Vec<axum::http::Uri>, ConfigError> {
    let mut out = Vec::new();
    for (i, u) in w.content.upstream.iter().enumerate() {
        let uri: axum::http::Uri = u
            .parse()
            .map_err(|e| field("content.upstream", format!("entry {i}, {u:?}: {e}")))?;
        if uri.scheme_str() != Some("http")
            || uri.host().is_none()
            || uri
                .path_and_query()
                .is_some_and(|p| p.as_str() != "/" && !p.as_str().is_empty())
        {
            return Err(field(
                "content.upstream",
                format!(
                    "entry {i}, {u:?}: write another netdeploy server's http://HOST[:PORT], \
                     where it serves /content/<sha256> (content is checked by its hash, so \
                     plain HTTP is enough)"
                ),
            ));
        }
        out.push(uri);
    }
    Ok(out)
}

/// `[store] url`: a PostgreSQL URL (`postgresql://` or `postgres://`), checked without ever
/// repeating it (it may hold a password).
fn store_url_of(w: &wire::File) -> Result<Option<String>, ConfigError> {
    let Some(url) = &w.store.url else {
        return Ok(None);
    };
    if !(url.starts_with("postgresql://") || url.starts_with("postgres://")) {
        return Err(field(
            "store.url",
            "must be a postgresql:// URL (leave [store] out to keep the catalog in SQLite in \
             server.data_dir)",
        ));
    }
    if let Err(e) = crate::store::pg::parse_url(url) {
        let why = match e {
            crate::store::StoreError::Pg { source, .. } => source.to_string(),
            other => other.to_string(),
        };
        return Err(field(
            "store.url",
            format!("is not a valid PostgreSQL URL: {why}"),
        ));
    }
    Ok(Some(url.clone()))
}

fn read_wire(path: &Path) -> Result<wire::File, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text).map_err(|message| ConfigError::Parse {
        path: path.to_owned(),
        message,
    })
}

fn data_dir_of(w: &wire::File) -> PathBuf {
    w.server
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR))
}

impl Config {
    /// Reads, parses and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let wire = read_wire(path)?;
        let host = crate::interfaces::ipv4_addresses()
            .map_err(|e| field("server.interfaces", format!("cannot list interfaces: {e}")))?;
        let host6 = crate::interfaces::ipv6_addresses()
            .map_err(|e| field("ipv6.enabled", format!("cannot list IPv6 addresses: {e}")))?;
        Config::from_wire_with_ipv6(wire, &host, &host6)
    }

    /// Validates a parsed file against the host's IPv4 interface addresses (a host without
    /// IPv6 addresses: `[ipv6]` cannot be enabled).
    pub fn from_wire(w: wire::File, host: &[InterfaceAddr]) -> Result<Config, ConfigError> {
        Config::from_wire_with_ipv6(w, host, &[])
    }

    /// Validates a parsed file against the host's IPv4 and IPv6 interface addresses.
    pub fn from_wire_with_ipv6(
        w: wire::File,
        host: &[InterfaceAddr],
        host6: &[Interface6Addr],
    ) -> Result<Config, ConfigError> {
        let data_dir = data_dir_of(&w);
        let store_url = store_url_of(&w)?;
        let server_name = server_name_of(&w)?;
        let content_upstream = upstream_of(&w)?;
        let names = w.server.interfaces.unwrap_or_default();
        if names.is_empty() {
            return Err(field(
                "server.interfaces",
                format!(
                    "name the interface(s) to serve, e.g. interfaces = [\"eth1\"]; this host has: {}",
                    host_names(host)
                ),
            ));
        }
        let mut interfaces = Vec::new();
        for name in &names {
            let Some(found) = host.iter().find(|a| &a.name == name) else {
                return Err(field(
                    "server.interfaces",
                    format!(
                        "no interface {name:?} with an IPv4 address; this host has: {}",
                        host_names(host)
                    ),
                ));
            };
            interfaces.push(found.clone());
        }
        let server_address = match w.server.address {
            Some(a) if interfaces.iter().any(|i| i.address == a) => a,
            Some(a) => {
                return Err(field(
                    "server.address",
                    format!("{a} is not an address of the served interfaces"),
                ))
            }
            None => interfaces[0].address,
        };

        let import_root = match w.server.import_root.clone() {
            Some(r) if !r.is_absolute() => {
                return Err(field("server.import_root", "must be an absolute path"))
            }
            Some(r) if !r.is_dir() => {
                return Err(field(
                    "server.import_root",
                    format!("{} is not a directory", r.display()),
                ))
            }
            r => r,
        };
        let ipv6 = ipv6_config(&w.ipv6, &interfaces, host6)?;
        let mode = w.dhcp.mode.unwrap_or_default();
        let pool = match mode {
            DhcpMode::Dhcp => Some(pool(&w.dhcp, &interfaces[0])?),
            _ => {
                if w.dhcp.range.is_some() {
                    return Err(field(
                        "dhcp.range",
                        "a lease range needs mode = \"dhcp\" (proxy modes lease nothing)",
                    ));
                }
                None
            }
        };
        let dhcp = DhcpConfig {
            mode,
            port: w.dhcp.port.unwrap_or(67),
            proxy_port: w.dhcp.proxy_port.unwrap_or(4011),
            pool,
        };

        let root = w
            .tftp
            .root
            .unwrap_or_else(|| PathBuf::from("/usr/lib/ipxe"));
        if !root.is_dir() {
            return Err(field(
                "tftp.root",
                format!(
                    "{} is not a directory (install Debian's ipxe package for the default /usr/lib/ipxe)",
                    root.display()
                ),
            ));
        }
        let max_blksize = w.tftp.max_blksize.unwrap_or(65464);
        if !(512..=65464).contains(&max_blksize) {
            return Err(field("tftp.max_blksize", "must be between 512 and 65464"));
        }
        let max_windowsize = w.tftp.max_windowsize.unwrap_or(64);
        if max_windowsize == 0 {
            return Err(field("tftp.max_windowsize", "must be at least 1"));
        }
        let max_transfers = w.tftp.max_transfers.unwrap_or(64);
        if max_transfers == 0 {
            return Err(field("tftp.max_transfers", "must be at least 1"));
        }
        // A machine fetches its boot files one at a time; a few more allow for a firmware that
        // re-sends its request, or a UEFI size probe still ending.
        let max_transfers_per_client = match w.tftp.max_transfers_per_client {
            None => max_transfers.min(4),
            Some(0) => return Err(field("tftp.max_transfers_per_client", "must be at least 1")),
            Some(n) if n > max_transfers => {
                return Err(field(
                    "tftp.max_transfers_per_client",
                    format!("must not be more than tftp.max_transfers ({max_transfers})"),
                ))
            }
            Some(n) => n,
        };
        let timeout_ms = w.tftp.timeout_ms.unwrap_or(1000);
        if !(10..=255_000).contains(&timeout_ms) {
            return Err(field("tftp.timeout_ms", "must be between 10 and 255000"));
        }
        let tftp = TftpSettings {
            root: root.clone(),
            max_transfers,
            max_transfers_per_client,
            max_blksize,
            max_windowsize,
            timeout: Duration::from_millis(timeout_ms),
            retries: w.tftp.retries.unwrap_or(5),
            fragmented_windows: w.tftp.fragmented_windows.unwrap_or(false),
            // Made by `serve` once the HTTP address is known (the Secure Boot chain's files).
            provided: Default::default(),
            generator: None,
        };

        let mut files: BTreeMap<ClientArch, String> = DEFAULT_BOOT_FILES
            .iter()
            .map(|(a, f)| (*a, f.to_string()))
            .collect();
        let configured: Vec<ClientArch> = w
            .boot
            .files
            .keys()
            .filter_map(|k| ClientArch::from_key(k))
            .collect();
        for (key, file) in w.boot.files.clone() {
            let Some(arch) = ClientArch::from_key(&key) else {
                return Err(field(
                    "boot.files",
                    format!(
                        "unknown architecture {key:?}; use one of: {}",
                        ClientArch::ALL.map(|a| a.key()).join(", ")
                    ),
                ));
            };
            if file.is_empty() {
                files.remove(&arch);
            } else {
                files.insert(arch, file);
            }
        }
        let (chains, shim) = boot_chains(&w.boot, &mut files)?;
        let pxe_password = pxe_password(&w.boot)?;
        // HTTP boot files are served from the TFTP root too, under /tftp/. A default whose
        // file is not there is not offered: a machine would get an offer it cannot boot. A file
        // the configuration names is offered anyway (it may be put there later), with a warning.
        files.retain(|arch, file| {
            // The shim chain's files come from their Debian paths, not the TFTP root.
            if chains.get(arch) == Some(&BootChain::Shim)
                || root.join(file.trim_start_matches(['/', '\\'])).is_file()
            {
                return true;
            }
            if configured.contains(arch) {
                tracing::warn!(%arch, file, root = %root.display(), "boot file not found under the TFTP root");
                return true;
            }
            tracing::info!(%arch, file, root = %root.display(), "default boot file not under the TFTP root: machines of this architecture get no offer until it is there (or boot.files names another)");
            false
        });
        let image = match w.boot.image {
            Some(i) => {
                for (name, p) in [
                    ("boot.image.kernel", Some(&i.kernel)),
                    ("boot.image.initrd", i.initrd.as_ref()),
                ] {
                    if let Some(p) = p {
                        if !p.is_file() {
                            return Err(field(
                                if name.ends_with("kernel") {
                                    "boot.image.kernel"
                                } else {
                                    "boot.image.initrd"
                                },
                                format!("{} is not a file", p.display()),
                            ));
                        }
                    }
                }
                if let Some(problem) = crate::catalog::kernel_cmdline_problem(&i.cmdline) {
                    return Err(field("boot.image.cmdline", problem));
                }
                Some(BootImage {
                    kernel: i.kernel,
                    initrd: i.initrd,
                    cmdline: i.cmdline,
                })
            }
            None => None,
        };
        let api_tokens = api_tokens(&w.http)?;
        let limits = http_limits(&w.http)?;
        let tls = w.http.tls.as_ref().map(tls_config).transpose()?;
        if let Some(url) = &w.http.public_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(field(
                    "http.public_url",
                    "must start with http:// or https://",
                ));
            }
        }
        let mut alert_webhooks = Vec::new();
        for (i, u) in w.alerts.webhooks.iter().enumerate() {
            let uri: axum::http::Uri = u
                .parse()
                .map_err(|e| field("alerts.webhooks", format!("entry {i}, {u:?}: {e}")))?;
            if uri.scheme_str() != Some("http") || uri.host().is_none() {
                return Err(field(
                    "alerts.webhooks",
                    format!("entry {i}, {u:?}: only http://HOST[:PORT]/PATH URLs are posted to"),
                ));
            }
            alert_webhooks.push(uri);
        }
        let run_token_lifetime = match w.boot.run_token_hours {
            None => Duration::from_secs(24 * 3600),
            Some(h) if (1..=720).contains(&h) => Duration::from_secs(h * 3600),
            Some(_) => return Err(field("boot.run_token_hours", "must be between 1 and 720")),
        };
        let script_after_dhcp = match w.boot.script_after_dhcp_seconds {
            None => Duration::from_secs(300),
            Some(s) if (10..=86_400).contains(&s) => Duration::from_secs(s),
            Some(_) => {
                return Err(field(
                    "boot.script_after_dhcp_seconds",
                    "must be between 10 and 86400",
                ))
            }
        };
        let d = StatusRetention::default();
        let status_retention = StatusRetention {
            max_age: match w.status.retention_days {
                None => d.max_age,
                Some(n) if (1..=36_500).contains(&n) => Duration::from_secs(n * 86_400),
                Some(_) => {
                    return Err(field(
                        "status.retention_days",
                        "must be between 1 and 36500",
                    ))
                }
            },
            max_messages: match w.status.max_messages {
                None => d.max_messages,
                Some(n) if n >= 1000 => n,
                Some(_) => return Err(field("status.max_messages", "must be at least 1000")),
            },
        };
        let multicast =
            crate::multicast::config::MulticastConfig::from_wire(&w.multicast, &interfaces)?;
        Ok(Config {
            multicast,
            store_url,
            server_name,
            content_upstream,
            ipv6,
            status_retention,
            alert_webhooks,
            interfaces,
            server_address,
            data_dir,
            import_root,
            dhcp,
            tftp_port: w.tftp.port.unwrap_or(69),
            tftp,
            http: HttpConfig {
                port: w.http.port.unwrap_or(8080),
                public_url: w
                    .http
                    .public_url
                    .map(|u| u.trim_end_matches('/').to_owned()),
                api_tokens,
                limits,
                tls,
            },
            boot: BootConfig {
                files,
                image,
                menu_timeout: Duration::from_secs(u64::from(
                    w.boot.menu_timeout_seconds.unwrap_or(30),
                )),
                chains,
                shim,
                run_token_lifetime,
                script_after_dhcp,
                pxe_password,
                windows_agent: windows_agent(w.boot.windows_agent.as_deref())?,
            },
        })
    }
}

/// `boot.chain` and `boot.shim`: the chain of each architecture, and for the shim chain the
/// signed binaries, which then take the place of the architecture's `boot.files` entry.
fn boot_chains(
    w: &wire::Boot,
    files: &mut BTreeMap<ClientArch, String>,
) -> Result<(BTreeMap<ClientArch, BootChain>, Option<ShimFiles>), ConfigError> {
    let mut chains = BTreeMap::new();
    for (key, chain) in &w.chain {
        let Some(arch) = ClientArch::from_key(key) else {
            return Err(field(
                "boot.chain",
                format!(
                    "unknown architecture {key:?}; use one of: {}",
                    ClientArch::ALL.map(|a| a.key()).join(", ")
                ),
            ));
        };
        if *chain == BootChain::Shim && arch != ClientArch::EfiX64 {
            return Err(field(
                "boot.chain",
                format!(
                    "{key} = \"shim\": the Secure Boot chain is built from Debian's x86-64 shim \
                     and GRUB, so only efi-x64 can use it"
                ),
            ));
        }
        if *chain == BootChain::Shim {
            if w.files.contains_key(key) {
                return Err(field(
                    "boot.files",
                    format!(
                        "{key} is booted through shim (boot.chain), whose file is boot.shim.shim; \
                         remove boot.files.{key}"
                    ),
                ));
            }
            files.insert(arch, crate::secure_boot::SHIM_TFTP_NAME.to_owned());
        }
        chains.insert(arch, *chain);
    }
    let uses_shim = chains.values().any(|c| *c == BootChain::Shim);
    if !uses_shim {
        if w.shim.shim.is_some() || w.shim.grub.is_some() {
            tracing::warn!("boot.shim is set but no architecture boots through shim (boot.chain)");
        }
        return Ok((chains, None));
    }
    let shim = ShimFiles {
        shim: w.shim.shim.clone().unwrap_or_else(|| DEFAULT_SHIM.into()),
        grub: w
            .shim
            .grub
            .clone()
            .unwrap_or_else(|| DEFAULT_SIGNED_GRUB.into()),
    };
    for (name, path, package) in [
        ("boot.shim.shim", &shim.shim, "shim-signed"),
        ("boot.shim.grub", &shim.grub, "grub-efi-amd64-signed"),
    ] {
        if !path.is_file() {
            return Err(field(
                name,
                format!(
                    "{} is not a file (install Debian's {package} package for the default)",
                    path.display()
                ),
            ));
        }
    }
    Ok((chains, Some(shim)))
}

/// The file name Windows PE starts (`winpeshl.ini`) and the name the agent is installed
/// under, beside `netdeploy`.
pub const WINDOWS_AGENT: &str = netdeploy_wire::winpe::AGENT_EXE;

/// Where the Debian package installs the Windows agent.
pub const PACKAGED_WINDOWS_AGENT: &str = netdeploy_wire::winpe::PACKAGED_AGENT;

/// `boot.windows_agent`, which must be a file when set; else `netdeploy-agent.exe` beside the
/// server's own executable, else [`PACKAGED_WINDOWS_AGENT`], when one is there.
fn windows_agent(configured: Option<&Path>) -> Result<Option<PathBuf>, ConfigError> {
    if let Some(p) = configured {
        if !p.is_file() {
            return Err(field(
                "boot.windows_agent",
                format!(
                    "{} is not a file (the Windows build of netdeploy-agent: cargo build \
                     --release --target x86_64-pc-windows-gnu -p netdeploy-agent)",
                    p.display()
                ),
            ));
        }
        return Ok(Some(p.to_owned()));
    }
    let exe = std::env::current_exe().ok();
    Ok(netdeploy_wire::winpe::agent_candidates(exe.as_deref())
        .into_iter()
        .find(|p| p.is_file()))
}

/// Parses the TOML text; the error names the line and column.
pub fn parse(text: &str) -> Result<wire::File, String> {
    toml::from_str(text).map_err(|e| e.to_string())
}

/// The admin API's tokens: `http.admin_token` (named `admin`, role admin) and each of
/// `http.api_tokens`, with unique names and unique secrets of 16 characters or more.
fn api_tokens(w: &wire::Http) -> Result<Vec<ApiToken>, ConfigError> {
    let mut tokens = Vec::new();
    if let Some(t) = &w.admin_token {
        if t.len() < 16 {
            return Err(field("http.admin_token", "must be at least 16 characters"));
        }
        tokens.push(ApiToken {
            name: "admin".into(),
            role: ApiRole::Admin,
            token: t.clone(),
        });
    }
    for (i, t) in w.api_tokens.iter().enumerate() {
        let entry = |reason: String| field("http.api_tokens", format!("entry {i}: {reason}"));
        let name_ok = !t.name.is_empty()
            && t.name.len() <= 64
            && t.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !name_ok {
            return Err(entry(format!(
                "name {:?} must be 1 to 64 letters, digits, '-', '_' or '.'",
                t.name
            )));
        }
        let role = match t.role.as_str() {
            "read" => ApiRole::Read,
            "admin" => ApiRole::Admin,
            other => {
                return Err(entry(format!(
                    "role {other:?} is not \"read\" or \"admin\""
                )))
            }
        };
        if t.token.len() < 16 {
            return Err(entry(format!(
                "the token of {:?} must be at least 16 characters",
                t.name
            )));
        }
        if tokens.iter().any(|o: &ApiToken| o.name == t.name) {
            return Err(entry(format!(
                "the name {:?} is used twice (http.admin_token is named \"admin\")",
                t.name
            )));
        }
        if tokens.iter().any(|o| o.token == t.token) {
            return Err(entry(format!(
                "the token of {:?} is the same as another token's",
                t.name
            )));
        }
        tokens.push(ApiToken {
            name: t.name.clone(),
            role,
            token: t.token.clone(),
        });
    }
    Ok(tokens)
}

/// `[http.tls]`: the certificate and key go together, and name files.
fn tls_config(w: &wire::Tls) -> Result<TlsConfig, ConfigError> {
    let certificate = match (&w.cert, &w.key) {
        (None, None) => CertificateSource::SelfSigned,
        (Some(_), None) => {
            return Err(field(
                "http.tls.key",
                "missing: http.tls.cert needs the key that goes with it",
            ))
        }
        (None, Some(_)) => {
            return Err(field(
                "http.tls.cert",
                "missing: http.tls.key needs the certificate that goes with it",
            ))
        }
        (Some(cert), Some(key)) => {
            for (name, p) in [("http.tls.cert", cert), ("http.tls.key", key)] {
                if !p.is_file() {
                    return Err(field(name, format!("{} is not a file", p.display())));
                }
            }
            CertificateSource::Files {
                cert: cert.clone(),
                key: key.clone(),
            }
        }
    };
    let handshake_timeout = match w.handshake_timeout_seconds {
        None => Duration::from_secs(10),
        Some(s) if (1..=300).contains(&s) => Duration::from_secs(s),
        Some(_) => {
            return Err(field(
                "http.tls.handshake_timeout_seconds",
                "must be between 1 and 300",
            ))
        }
    };
    Ok(TlsConfig {
        port: w.port.unwrap_or(8443),
        certificate,
        handshake_timeout,
        allow_plain_http: w.allow_plain_http.unwrap_or(false),
    })
}

fn http_limits(w: &wire::Http) -> Result<HttpLimits, ConfigError> {
    let d = HttpLimits::default();
    let seconds = |value: Option<u64>, default: Duration, name: &'static str| match value {
        None => Ok(default),
        Some(s) if (1..=86_400).contains(&s) => Ok(Duration::from_secs(s)),
        Some(_) => Err(field(name, "must be between 1 and 86400")),
    };
    let header_timeout = seconds(
        w.header_timeout_seconds,
        d.header_timeout,
        "http.header_timeout_seconds",
    )?;
    let idle_timeout = seconds(
        w.idle_timeout_seconds,
        d.idle_timeout,
        "http.idle_timeout_seconds",
    )?;
    let max_connections = w.max_connections.unwrap_or(d.max_connections);
    if max_connections == 0 {
        return Err(field("http.max_connections", "must be at least 1"));
    }
    let max_connections_per_client = w
        .max_connections_per_client
        .unwrap_or(d.max_connections_per_client);
    if max_connections_per_client == 0 {
        return Err(field(
            "http.max_connections_per_client",
            "must be at least 1",
        ));
    }
    if max_connections_per_client > max_connections {
        return Err(field(
            "http.max_connections_per_client",
            format!("must not be more than http.max_connections ({max_connections})"),
        ));
    }
    Ok(HttpLimits {
        header_timeout,
        idle_timeout,
        max_connections,
        max_connections_per_client,
    })
}

fn host_names(host: &[InterfaceAddr]) -> String {
    let names: Vec<String> = host
        .iter()
        .map(|a| format!("{} ({})", a.name, a.address))
        .collect();
    if names.is_empty() {
        "no interface with an IPv4 address".into()
    } else {
        names.join(", ")
    }
}

fn pool(w: &wire::Dhcp, iface: &InterfaceAddr) -> Result<Pool, ConfigError> {
    let Some([first, last]) = w.range else {
        return Err(field(
            "dhcp.range",
            "mode = \"dhcp\" needs a lease range, e.g. range = [\"10.0.0.100\", \"10.0.0.199\"]",
        ));
    };
    if u32::from(first) > u32::from(last) {
        return Err(field("dhcp.range", format!("{first} comes after {last}")));
    }
    let netmask = w.netmask.unwrap_or(iface.netmask);
    let net = |a: Ipv4Addr| u32::from(a) & u32::from(netmask);
    if net(first) != net(iface.address) || net(last) != net(iface.address) {
        return Err(field(
            "dhcp.range",
            format!(
                "{first}-{last} is not inside {}'s subnet {}/{}",
                iface.name, iface.address, netmask
            ),
        ));
    }
    let server = u32::from(iface.address);
    if (u32::from(first)..=u32::from(last)).contains(&server) {
        return Err(field(
            "dhcp.range",
            format!("the range holds the server's own address {}", iface.address),
        ));
    }
    let lease_seconds = w.lease_seconds.unwrap_or(3600);
    if lease_seconds < 60 {
        return Err(field("dhcp.lease_seconds", "must be at least 60"));
    }
    Ok(Pool {
        first,
        last,
        netmask,
        router: w.router,
        dns: w.dns.clone().unwrap_or_default(),
        lease_time: Duration::from_secs(u64::from(lease_seconds)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> Vec<InterfaceAddr> {
        vec![InterfaceAddr {
            name: "br0".into(),
            address: "10.77.0.1".parse().unwrap(),
            netmask: "255.255.255.0".parse().unwrap(),
        }]
    }

    /// A TFTP root holding Debian's x86 iPXE files (stand-ins), for every test.
    fn tftp_root() -> &'static Path {
        static ROOT: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
        ROOT.get_or_init(|| {
            let d = tempfile::tempdir().unwrap();
            for f in ["undionly.kpxe", "snponly.efi"] {
                std::fs::write(d.path().join(f), f).unwrap();
            }
            d
        })
        .path()
    }

    fn load(text: &str) -> Result<Config, ConfigError> {
        load_with_root(text, tftp_root())
    }

    fn load_with_root(text: &str, root: &Path) -> Result<Config, ConfigError> {
        let text = format!("{text}\n[tftp]\nroot = {:?}\n", root.display().to_string());
        Config::from_wire(parse(&text).map_err(|m| field("parse", m))?, &host())
    }

    #[test]
    fn the_pxe_password_is_an_argon2id_hash_and_anything_else_is_refused_naming_the_field() {
        let phc = netdeploy_wire::password::hash("letmein", &[3; 16]).unwrap();
        let with = |value: &str| {
            load(&format!(
                "[server]\ninterfaces = [\"br0\"]\n[boot]\npxe_password_hash = {value:?}"
            ))
        };
        let c = with(&phc).unwrap();
        assert!(c.boot.pxe_password.as_ref().unwrap().matches("letmein"));
        assert!(!c.boot.pxe_password.unwrap().matches("letmein "));
        assert!(load("[server]\ninterfaces = [\"br0\"]")
            .unwrap()
            .boot
            .pxe_password
            .is_none());
        let argon2i = phc.replace("$argon2id$", "$argon2i$");
        for bad in ["letmein", "", "$argon2id$v=19$m=19456,t=2,p=1$", &argon2i] {
            let err = with(bad).unwrap_err().to_string();
            assert!(
                err.starts_with("boot.pxe_password_hash: "),
                "{bad:?}: {err}"
            );
            assert!(err.contains("netdeploy pxe password-hash"), "{err}");
        }
    }

    #[test]
    fn a_default_boot_file_missing_from_the_tftp_root_is_not_offered_but_a_configured_one_is() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("snponly.efi"), "x").unwrap();
        let c = load_with_root("[server]\ninterfaces = [\"br0\"]", root.path()).unwrap();
        let archs: Vec<ClientArch> = c.boot.files.keys().copied().collect();
        assert_eq!(archs, [ClientArch::EfiX64, ClientArch::HttpX64]);
        std::fs::create_dir(root.path().join("arm64-efi")).unwrap();
        std::fs::write(root.path().join("arm64-efi/snponly.efi"), "x").unwrap();
        let c = load_with_root(
            "[server]\ninterfaces = [\"br0\"]\n[boot.files]\nbios = \"later.kpxe\"",
            root.path(),
        )
        .unwrap();
        assert_eq!(c.boot.files[&ClientArch::EfiArm64], "arm64-efi/snponly.efi");
        assert_eq!(
            c.boot.files[&ClientArch::HttpArm64],
            "arm64-efi/snponly.efi"
        );
        assert_eq!(
            c.boot.files[&ClientArch::BiosX86],
            "later.kpxe",
            "configured: kept"
        );
    }

    #[test]
    fn minimal_config_gets_debian_ipxe_defaults() {
        let c = load("[server]\ninterfaces = [\"br0\"]").unwrap();
        assert_eq!(c.dhcp.mode, DhcpMode::Proxy);
        assert_eq!(c.server_address, "10.77.0.1".parse::<Ipv4Addr>().unwrap());
        assert_eq!(c.boot.files[&ClientArch::BiosX86], "undionly.kpxe");
        assert_eq!(c.boot.files[&ClientArch::EfiX64], "snponly.efi");
        assert!(!c.dhcp.test_mode());
    }

    #[test]
    fn the_shim_chain_boots_efi_x64_through_debians_signed_shim_and_grub() {
        let dir = tempfile::tempdir().unwrap();
        let (shim, grub) = (dir.path().join("shim.efi"), dir.path().join("grub.efi"));
        std::fs::write(&shim, b"shim").unwrap();
        std::fs::write(&grub, b"grub").unwrap();
        let with = |extra: &str| {
            load(&format!(
                "[server]\ninterfaces = [\"br0\"]\n{extra}\n[boot.shim]\nshim = {shim:?}\ngrub = {grub:?}\n"
            ))
        };
        let c = with("[boot.chain]\nefi-x64 = \"shim\"").unwrap();
        assert_eq!(c.boot.chain(ClientArch::EfiX64), BootChain::Shim);
        assert_eq!(c.boot.chain(ClientArch::BiosX86), BootChain::Ipxe);
        assert_eq!(c.boot.files[&ClientArch::EfiX64], "shimx64.efi");
        assert_eq!(c.boot.shim.as_ref().unwrap().grub, grub);
        let plain = with("").unwrap();
        assert_eq!(plain.boot.chain(ClientArch::EfiX64), BootChain::Ipxe);
        assert_eq!(plain.boot.shim, None);
        let err = with("[boot.chain]\nbios = \"shim\"")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("boot.chain:") && err.contains("only efi-x64"),
            "{err}"
        );
        let err = with("[boot.files]\nefi-x64 = \"ipxe.efi\"\n[boot.chain]\nefi-x64 = \"shim\"")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("boot.files:"), "{err}");
        let err = load(
            "[server]\ninterfaces = [\"br0\"]\n[boot.chain]\nefi-x64 = \"shim\"\n[boot.shim]\nshim = \"/nonexistent/shimx64.efi.signed\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("boot.shim.shim:") && err.contains("shim-signed"),
            "{err}"
        );
        let err = parse("[boot.chain]\nefi-x64 = \"grub\"\n").unwrap_err();
        assert!(err.contains("ipxe") && err.contains("shim"), "{err}");
    }

    #[test]
    fn unknown_field_is_named_with_its_line() {
        let err = parse("[server]\ninterfaces = [\"br0\"]\ninterface = 1\n").unwrap_err();
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("interface"), "{err}");
    }

    #[test]
    fn api_tokens_have_a_role_and_unique_names_and_secrets_and_bad_ones_name_the_entry() {
        let base =
            "[server]\ninterfaces = [\"br0\"]\n[http]\nadmin_token = \"admin-secret-0123456789\"\n";
        let entry = |name: &str, role: &str, token: &str| {
            format!("[[http.api_tokens]]\nname = {name:?}\nrole = {role:?}\ntoken = {token:?}\n")
        };
        let c = load(&format!(
            "{base}{}",
            entry("grafana", "read", "read-secret-0123456789")
        ))
        .unwrap();
        let got: Vec<_> = c
            .http
            .api_tokens
            .iter()
            .map(|t| (t.name.as_str(), t.role))
            .collect();
        assert_eq!(got, [("admin", ApiRole::Admin), ("grafana", ApiRole::Read)]);
        assert!(
            !format!("{:?}", c.http.api_tokens).contains("secret"),
            "a token's Debug never shows the secret"
        );
        for (bad, want) in [
            (
                entry("grafana", "reader", "read-secret-0123456789"),
                "entry 0: role \"reader\" is not \"read\" or \"admin\"",
            ),
            (
                entry("grafana", "read", "short"),
                "entry 0: the token of \"grafana\" must be at least 16",
            ),
            (
                entry("admin", "read", "read-secret-0123456789"),
                "entry 0: the name \"admin\" is used twice",
            ),
            (
                entry("graf ana", "read", "read-secret-0123456789"),
                "entry 0: name \"graf ana\" must be",
            ),
            (
                entry("grafana", "read", "admin-secret-0123456789"),
                "the same as another token's",
            ),
        ] {
            let err = load(&format!("{base}{bad}")).unwrap_err().to_string();
            assert!(err.starts_with("http.api_tokens:"), "{err}");
            assert!(err.contains(want), "{err}");
        }
        let c = load("[server]\ninterfaces = [\"br0\"]").unwrap();
        assert!(
            c.http.api_tokens.is_empty(),
            "no token: the admin API is off"
        );
    }

    #[test]
    fn missing_interface_lists_what_the_host_has() {
        let err = load("[server]\ninterfaces = [\"eth9\"]")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("server.interfaces:"), "{err}");
        assert!(err.contains("br0 (10.77.0.1)"), "{err}");
    }

    #[test]
    fn dhcp_mode_needs_a_range_inside_the_subnet() {
        let err = load("[server]\ninterfaces = [\"br0\"]\n[dhcp]\nmode = \"dhcp\"")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("dhcp.range:"), "{err}");
        let err = load(
            "[server]\ninterfaces = [\"br0\"]\n[dhcp]\nmode = \"dhcp\"\nrange = [\"10.78.0.10\", \"10.78.0.20\"]",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("not inside"), "{err}");
        let ok = load(
            "[server]\ninterfaces = [\"br0\"]\n[dhcp]\nmode = \"dhcp\"\nrange = [\"10.77.0.100\", \"10.77.0.199\"]",
        )
        .unwrap();
        assert_eq!(
            ok.dhcp.pool.unwrap().netmask,
            "255.255.255.0".parse::<Ipv4Addr>().unwrap()
        );
    }

    #[test]
    fn alert_webhooks_must_be_plain_http_urls() {
        let with = |url: &str| {
            load(&format!(
                "[server]\ninterfaces = [\"br0\"]\n[alerts]\nwebhooks = [{url:?}]"
            ))
        };
        let ok = with("http://127.0.0.1:9000/hook").unwrap();
        assert_eq!(ok.alert_webhooks[0].port_u16(), Some(9000));
        for bad in ["https://monitor.lan/hook", "monitor.lan/hook", "http://"] {
            let err = with(bad).unwrap_err().to_string();
            assert!(err.starts_with("alerts.webhooks:"), "{bad}: {err}");
        }
    }

    #[test]
    fn http_limits_default_and_bad_values_name_the_field() {
        let c = load("[server]\ninterfaces = [\"br0\"]").unwrap();
        assert_eq!(c.http.limits, HttpLimits::default());
        let c = load(
            "[server]\ninterfaces = [\"br0\"]\n[http]\nidle_timeout_seconds = 2\nheader_timeout_seconds = 1\nmax_connections = 10\nmax_connections_per_client = 3",
        )
        .unwrap();
        assert_eq!(
            c.http.limits,
            HttpLimits {
                header_timeout: Duration::from_secs(1),
                idle_timeout: Duration::from_secs(2),
                max_connections: 10,
                max_connections_per_client: 3,
            }
        );
        for (text, name) in [
            ("idle_timeout_seconds = 0", "http.idle_timeout_seconds:"),
            ("header_timeout_seconds = 0", "http.header_timeout_seconds:"),
            ("max_connections = 0", "http.max_connections:"),
            (
                "max_connections = 4\nmax_connections_per_client = 5",
                "http.max_connections_per_client:",
            ),
        ] {
            let err = load(&format!("[server]\ninterfaces = [\"br0\"]\n[http]\n{text}"))
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(name), "{text}: {err}");
        }
    }

    #[test]
    fn tftp_transfers_per_client_default_to_four_within_the_total() {
        let c = load("[server]\ninterfaces = [\"br0\"]").unwrap();
        assert_eq!(c.tftp.max_transfers_per_client, 4);
        let text = |extra: &str| {
            let root = std::env::temp_dir().display().to_string();
            format!("[server]\ninterfaces = [\"br0\"]\n[tftp]\nroot = {root:?}\n{extra}")
        };
        let parsed = |t: &str| Config::from_wire(parse(t).unwrap(), &host());
        let c = parsed(&text("max_transfers = 2")).unwrap();
        assert_eq!(c.tftp.max_transfers_per_client, 2);
        for bad in [
            "max_transfers_per_client = 0",
            "max_transfers = 8\nmax_transfers_per_client = 9",
        ] {
            let err = parsed(&text(bad)).unwrap_err().to_string();
            assert!(
                err.starts_with("tftp.max_transfers_per_client:"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn bad_mode_and_arch_keys_name_the_field() {
        let err = load("[server]\ninterfaces = [\"br0\"]\n[dhcp]\nmode = \"full\"")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("mode = \"full\"") && err.contains("`proxy`, `proxy-4011`, `dhcp`"),
            "{err}"
        );
        let err = load("[server]\ninterfaces = [\"br0\"]\n[boot.files]\nefi-x86 = \"a.efi\"")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("boot.files:") && err.contains("efi-x64"),
            "{err}"
        );
    }

    fn load6(text: &str, host6: &[Interface6Addr]) -> Result<Config, ConfigError> {
        let text = format!(
            "{text}\n[tftp]\nroot = {:?}\n",
            tftp_root().display().to_string()
        );
        Config::from_wire_with_ipv6(parse(&text).unwrap(), &host(), host6)
    }

    fn br0_v6(address: &str) -> Interface6Addr {
        Interface6Addr {
            name: "br0".into(),
            index: 4,
            address: address.parse().unwrap(),
        }
    }

    #[test]
    fn ipv6_is_off_by_default_and_serves_the_interfaces_global_address_when_on() {
        let base = "[server]\ninterfaces = [\"br0\"]\n";
        assert_eq!(load(base).unwrap().ipv6, None);
        let host6 = [br0_v6("fe80::1"), br0_v6("fd77::1"), br0_v6("fd77::2")];
        let c = load6(&format!("{base}[ipv6]\nenabled = true\n"), &host6).unwrap();
        let v6 = c.ipv6.unwrap();
        assert_eq!(v6.address, "fd77::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!((v6.dhcp_port, v6.proxy_port), (547, 4011));
        assert!(!v6.test_mode());
        assert_eq!(v6.interfaces[0].index, 4);
        let c = load6(
            &format!("{base}[ipv6]\nenabled = true\naddress = \"fd77::2\"\n"),
            &host6,
        )
        .unwrap();
        assert_eq!(c.ipv6.unwrap().interfaces[0].address.segments()[7], 2);
    }

    #[test]
    fn ipv6_settings_name_the_field_to_fix() {
        let base = "[server]\ninterfaces = [\"br0\"]\n";
        let err =
            |text: &str, host6: &[Interface6Addr]| load6(text, host6).unwrap_err().to_string();
        let e = err(
            &format!("{base}[ipv6]\nenabled = true\n"),
            &[br0_v6("fe80::1")],
        );
        assert!(e.starts_with("ipv6.enabled:") && e.contains("br0"), "{e}");
        let e = err(
            &format!("{base}[ipv6]\nenabled = true\naddress = \"fd00::9\"\n"),
            &[br0_v6("fd77::1")],
        );
        assert!(e.starts_with("ipv6.address:"), "{e}");
        let e = err(
            &format!("{base}[ipv6]\ndhcp_port = 547\n"),
            &[br0_v6("fd77::1")],
        );
        assert!(e.starts_with("ipv6.enabled:"), "{e}");
    }
}
