//! The objects of docs/site-file.md as plain values: devices, collections, packages, boot images,
//! task sequences and deployments, and the [`Catalog`] that holds them.
//!
//! Nothing here reads a clock, a file or a database: the store builds a `Catalog`, the deciding
//! code only reads it. Times are unix seconds (`i64`). Every type serializes with serde, MAC
//! addresses and SMBIOS UUIDs as their usual text forms.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use netdeploy_wire::{Mac, SmbiosUuid};

/// A known machine (docs/site-file.md, "Device").
///
/// A booting machine is this device when its SMBIOS UUID equals [`Device::uuid`], or, failing
/// that, when its MAC is one of [`Device::macs`] (see [`Catalog::match_device`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// Unique name; custom collections list their members by this name.
    pub name: String,
    /// Every network interface the machine may boot from.
    #[serde(default, with = "text::macs")]
    pub macs: Vec<Mac>,
    /// The SMBIOS UUID, as `/sys/class/dmi/id/product_uuid` prints it.
    #[serde(default, with = "text::opt_uuid")]
    pub uuid: Option<SmbiosUuid>,
    /// A server: a high-risk deployment to a collection holding it needs acceptance (docs/deployment-checks.md).
    #[serde(default)]
    pub server: bool,
    /// A site system (a server netdeploy itself depends on): high-risk deployments to a
    /// collection holding it are refused or need acceptance (docs/deployment-checks.md, `block_site_systems`).
    #[serde(default)]
    pub site_system: bool,
}

/// A set of devices (docs/site-file.md, "Collection").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Collection {
    /// Unique id, the one deployments refer to.
    pub id: String,
    /// Name shown to operators.
    pub name: String,
    /// Built-in or custom, and for custom ones the members.
    #[serde(flatten)]
    pub kind: CollectionKind,
}

/// What a collection holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CollectionKind {
    /// Built-in: every known device.
    AllSystems,
    /// Built-in: every booting machine that matches no device.
    UnknownComputers,
    /// Operator-made: the devices named here (names that match no device hold nothing).
    Custom {
        /// Device names.
        #[serde(default)]
        members: Vec<String>,
    },
}

impl Collection {
    /// `All Systems` and `Unknown Computers` are built in; high-risk deployments may use only
    /// the latter of the two (docs/deployment-checks.md).
    pub fn is_builtin(&self) -> bool {
        !matches!(self.kind, CollectionKind::Custom { .. })
    }
}

/// One file of a package or boot image, stored once by its SHA-256 (docs/content.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentFile {
    /// Path relative to the package or boot image root, `/`-separated.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Lowercase hex SHA-256 of the file's bytes.
    pub sha256: String,
}

/// Content that task sequence steps reference (docs/site-file.md, "Package").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    /// Unique id.
    pub id: String,
    /// Content version, raised on every change of the files.
    #[serde(default)]
    pub version: u32,
    /// The files of this version.
    #[serde(default)]
    pub files: Vec<ContentFile>,
    /// The content may be read straight from the server's package share; required of every
    /// referenced package by the `direct_access` deployment option (docs/deployment-checks.md).
    #[serde(default)]
    pub package_share: bool,
}

/// The processor architecture a boot image is built for.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum ImageArch {
    /// 32-bit x86: BIOS and 32-bit UEFI firmware.
    X86,
    /// x86-64: 64-bit UEFI firmware, and BIOS firmware on a 64-bit CPU.
    X64,
    /// 64-bit ARM UEFI firmware.
    Arm64,
}

impl fmt::Display for ImageArch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ImageArch::X86 => "x86",
            ImageArch::X64 => "x64",
            ImageArch::Arm64 => "arm64",
        })
    }
}

/// What kind of boot environment a boot image starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BootImageKind {
    /// A Linux kernel and initrd running netdeploy's agent.
    #[serde(rename = "linux")]
    Linux,
    /// Windows PE (`boot.wim`), started with wimboot.
    #[serde(rename = "winpe")]
    WinPe,
}

/// What PXE or boot media starts (docs/site-file.md, "Boot image").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootImage {
    /// Unique id.
    pub id: String,
    /// The architecture it runs on; decides which firmware may start it (rule 5a).
    pub arch: ImageArch,
    /// Linux or Windows PE.
    pub kind: BootImageKind,
    /// Kernel, initrd, or `boot.wim` and its companions. A Linux image names its files
    /// `kernel` and `initrd`.
    #[serde(default)]
    pub files: Vec<ContentFile>,
    /// Kernel command line of a Linux image (netdeploy adds its own variables).
    #[serde(default)]
    pub cmdline: String,
    /// Served only to a pre-production collection until promoted (docs/status.md); the deployment
    /// selection of docs/selection-rules.md does not look at it.
    #[serde(default)]
    pub pre_production: bool,
    /// The production boot image this pre-production one stands in for: machines of the
    /// site's pre-production collection get this one instead of that one until `promote`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<String>,
}

/// Why a kernel command line cannot go onto an iPXE `kernel` line as it is, or `None` when it
/// can. iPXE expands `${...}` settings, ends a command at a `||` or `&&` token and ignores
/// everything from a token that starts with `#`; it has no quoting that would make them literal.
/// A line break would start a new command (here and in the boot loaders of boot media).
pub fn kernel_cmdline_problem(cmdline: &str) -> Option<String> {
    if let Some(c) = cmdline.chars().find(|c| c.is_control()) {
        return Some(format!(
            "contains the control character {c:?}; a kernel command line is one line"
        ));
    }
    if cmdline.contains("${") {
        return Some("contains \"${\", which iPXE expands as a setting".into());
    }
    for token in cmdline.split(' ') {
        if token == "||" || token == "&&" {
            return Some(format!(
                "contains the token {token:?}, which ends the kernel command in iPXE"
            ));
        }
        if token.starts_with('#') {
            return Some(format!(
                "contains the token {token:?}: iPXE ignores the rest of the line from a \"#\""
            ));
        }
    }
    None
}

/// A task sequence step and its action are the agent's contract: the catalog keeps them as
/// the policy sends them. An action this server does not know is refused where steps come in
/// (the site file, `task-sequence create --step`), so the catalog holds known ones only.
pub use netdeploy_wire::policy::{Step, StepAction};

/// Ordered steps run in a boot environment (docs/site-file.md, "Task sequence").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSequence {
    /// Unique id.
    pub id: String,
    /// Name shown in menus.
    pub name: String,
    /// The boot image it runs in. A task sequence without one runs only in a client's full OS
    /// and cannot be offered through PXE or media.
    #[serde(default)]
    pub boot_image: Option<String>,
    /// The steps, in order.
    #[serde(default)]
    pub steps: Vec<Step>,
    /// Packages referenced besides those named by steps (drivers, tools).
    #[serde(default)]
    pub packages: Vec<String>,
}

impl TaskSequence {
    /// True when a step applies an image or installs an OS: a required deployment of such a
    /// task sequence is high-risk (docs/deployment-checks.md).
    pub fn installs_os(&self) -> bool {
        self.steps
            .iter()
            .any(|s| matches!(s.action, StepAction::ApplyImage | StepAction::ApplyOs))
    }

    /// Every package id the task sequence references, from [`TaskSequence::packages`] and
    /// from its steps, sorted and without duplicates. The package a `capture_image` step names
    /// is not one: the step makes it.
    pub fn referenced_packages(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self
            .packages
            .iter()
            .map(String::as_str)
            .chain(
                self.steps
                    .iter()
                    .filter(|s| s.action != StepAction::CaptureImage)
                    .filter_map(|s| s.package.as_deref()),
            )
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

/// Why a deployment id was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeploymentIdError {
    /// The text is not a site code followed by 5 hex digits.
    #[error(
        "{0:?} is not a deployment id (a 3-character site code and 5 hex digits, like LAB00012)"
    )]
    Malformed(String),
    /// The site code is not 3 ASCII letters or digits.
    #[error("{0:?} is not a site code (3 letters or digits, like LAB)")]
    SiteCode(String),
    /// The site has no deployment number left.
    #[error("site {0} has used every deployment id (up to {0}FFFFF)")]
    Exhausted(String),
}

/// A deployment id: a 3-character site code and 5 hex digits, `LAB00012`.
///
/// Parsing accepts either case and keeps the id in upper case. Ids order by their number, then
/// by site code: this is the order in which "the highest deployment id wins" (docs/selection-rules.md,
/// rule 5), and it is total, so every choice made with it is deterministic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DeploymentId {
    // Field order is the comparison order.
    number: u32,
    site: [u8; 3],
}

impl DeploymentId {
    /// The largest number a deployment id can carry.
    pub const MAX_NUMBER: u32 = 0xF_FFFF;

    /// Builds an id from a site code (validated as in [`DeploymentId::site_code`]) and a number
    /// up to [`DeploymentId::MAX_NUMBER`].
    pub fn new(site_code: &str, number: u32) -> Result<DeploymentId, DeploymentIdError> {
        let site = parse_site_code(site_code)?;
        if number > Self::MAX_NUMBER {
            return Err(DeploymentIdError::Exhausted(site_code.to_ascii_uppercase()));
        }
        Ok(DeploymentId { number, site })
    }

    /// The upper-case site code, `LAB`.
    pub fn site_code(&self) -> &str {
        // Only ASCII alphanumerics are ever stored.
        std::str::from_utf8(&self.site).unwrap_or("???")
    }

    /// The number the 5 hex digits encode.
    pub fn number(&self) -> u32 {
        self.number
    }
}

/// Validates a site code: exactly 3 ASCII letters or digits, returned in upper case.
pub(crate) fn parse_site_code(code: &str) -> Result<[u8; 3], DeploymentIdError> {
    let bytes = code.as_bytes();
    if bytes.len() != 3 || !bytes.iter().all(u8::is_ascii_alphanumeric) {
        return Err(DeploymentIdError::SiteCode(code.to_string()));
    }
    Ok([
        bytes[0].to_ascii_uppercase(),
        bytes[1].to_ascii_uppercase(),
        bytes[2].to_ascii_uppercase(),
    ])
}

impl FromStr for DeploymentId {
    type Err = DeploymentIdError;

    fn from_str(s: &str) -> Result<DeploymentId, DeploymentIdError> {
        let malformed = || DeploymentIdError::Malformed(s.to_string());
        if s.len() != 8 || !s.is_ascii() {
            return Err(malformed());
        }
        let site = parse_site_code(&s[..3]).map_err(|_| malformed())?;
        let digits = &s[3..];
        if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(malformed());
        }
        let number = u32::from_str_radix(digits, 16).map_err(|_| malformed())?;
        Ok(DeploymentId { number, site })
    }
}

impl fmt::Display for DeploymentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{:05X}", self.site_code(), self.number)
    }
}

impl TryFrom<String> for DeploymentId {
    type Error = DeploymentIdError;
    fn try_from(s: String) -> Result<DeploymentId, DeploymentIdError> {
        s.parse()
    }
}

impl From<DeploymentId> for String {
    fn from(id: DeploymentId) -> String {
        id.to_string()
    }
}

/// Whether the user picks the deployment or it runs by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// Offered; someone picks it (menu, list).
    Available,
    /// Runs by itself (rule 5).
    Required,
}

/// Which kinds of requester the deployment is offered to (rules 1 and 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum AvailableTo {
    /// Running clients only: never reaches PXE or media.
    Clients,
    /// Running clients, boot media and PXE.
    ClientsMediaPxe,
    /// Boot media and PXE only.
    MediaPxe,
    /// Boot media and PXE only, never shown in a menu or list: runs when required, or when
    /// named by a preferred deployment id.
    MediaPxeHidden,
}

impl AvailableTo {
    /// Offered to boot media and PXE.
    pub fn reaches_media_pxe(self) -> bool {
        !matches!(self, AvailableTo::Clients)
    }

    /// Offered to running clients.
    pub fn reaches_clients(self) -> bool {
        matches!(self, AvailableTo::Clients | AvailableTo::ClientsMediaPxe)
    }

    /// Never listed in a menu (rule 4).
    pub fn is_hidden(self) -> bool {
        matches!(self, AvailableTo::MediaPxeHidden)
    }
}

impl fmt::Display for AvailableTo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AvailableTo::Clients => "clients",
            AvailableTo::ClientsMediaPxe => "clients_media_pxe",
            AvailableTo::MediaPxe => "media_pxe",
            AvailableTo::MediaPxeHidden => "media_pxe_hidden",
        })
    }
}

/// When a required deployment runs again on a machine where it already ran (docs/selection-rules.md,
/// rule 7 for media; the client schedule).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum Rerun {
    /// Never again once it has run, whatever the outcome.
    Never,
    /// Every time (the default).
    #[default]
    Always,
    /// Again only when the last attempt failed.
    IfFailed,
    /// Again only when the last attempt succeeded.
    IfSucceeded,
}

impl fmt::Display for Rerun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rerun::Never => "never",
            Rerun::Always => "always",
            Rerun::IfFailed => "if_failed",
            Rerun::IfSucceeded => "if_succeeded",
        })
    }
}

/// When a deployment applies. Only running clients evaluate it; PXE and media never do
/// (rule 2).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Schedule {
    /// Not offered to clients before this time; `None`: from creation.
    #[serde(default)]
    pub available_at: Option<i64>,
    /// Not offered to clients from this time on; `None`: never expires.
    #[serde(default)]
    pub expires_at: Option<i64>,
    /// Deadlines at which a required deployment runs on clients; empty: as soon as available.
    #[serde(default)]
    pub assignments: Vec<i64>,
    /// Rerun behaviour of a required deployment.
    #[serde(default)]
    pub rerun: Rerun,
}

impl Schedule {
    /// True when no time is set (the rerun behaviour is not a time).
    pub fn is_unscheduled(&self) -> bool {
        self.available_at.is_none() && self.expires_at.is_none() && self.assignments.is_empty()
    }
}

/// How the boot environment gets content (docs/deployment-checks.md).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentOption {
    /// Each step downloads what it needs, hash verified (the default).
    #[default]
    DownloadOnDemand,
    /// All content before the first step, hash verified; not for media or PXE.
    DownloadAll,
    /// Read from the server's package share; hashes are not verified.
    DirectAccess,
}

impl fmt::Display for DeploymentOption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeploymentOption::DownloadOnDemand => "download_on_demand",
            DeploymentOption::DownloadAll => "download_all",
            DeploymentOption::DirectAccess => "direct_access",
        })
    }
}

/// A task sequence offered to one collection, with its settings (docs/site-file.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    /// Unique id, `LAB00012`.
    pub id: DeploymentId,
    /// The task sequence it runs.
    pub task_sequence: String,
    /// The collection it targets.
    pub collection: String,
    /// Available or required.
    pub purpose: Purpose,
    /// Clients, media and PXE, hidden or not.
    pub available_to: AvailableTo,
    /// Times and rerun behaviour.
    #[serde(default)]
    pub schedule: Schedule,
    /// How content reaches the boot environment.
    #[serde(default)]
    pub option: DeploymentOption,
    /// Images may come by multicast (docs/multicast.md): machines applying the same image
    /// at the same time share one session; HTTP is the fallback.
    #[serde(default)]
    pub multicast: bool,
    /// Send wake-on-LAN packets to the collection (docs/operating.md).
    #[serde(default)]
    pub wake_on_lan: bool,
    /// Free text for operators.
    #[serde(default)]
    pub comments: String,
    /// The high-risk warnings of docs/deployment-checks.md were accepted at creation.
    #[serde(default)]
    pub high_risk_accepted: bool,
    /// Clients may install outside a maintenance window after the deadline.
    #[serde(default)]
    pub software_installation: bool,
    /// Clients download content ahead of the deadline.
    #[serde(default)]
    pub pre_download: bool,
    /// Creation time.
    pub created_at: i64,
}

impl Deployment {
    /// True for a required deployment.
    pub fn is_required(&self) -> bool {
        self.purpose == Purpose::Required
    }
}

/// Why a catalog is not consistent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    /// Two objects of one kind share an id.
    #[error("two {kind}s have the id {id:?}")]
    Duplicate {
        /// `device`, `collection`, `package`, `boot image`, `task sequence` or `deployment`.
        kind: &'static str,
        /// The shared id (a device's name).
        id: String,
    },
}

/// Every object of docs/site-file.md, as the store holds them at one moment.
///
/// Lookups scan the vectors; ids are expected to be unique within each kind (see
/// [`Catalog::validate`]). Membership rules live in [`crate::catalog::membership`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    /// Known machines.
    #[serde(default)]
    pub devices: Vec<Device>,
    /// Built-in and custom collections.
    #[serde(default)]
    pub collections: Vec<Collection>,
    /// Content packages.
    #[serde(default)]
    pub packages: Vec<Package>,
    /// Boot images.
    #[serde(default)]
    pub boot_images: Vec<BootImage>,
    /// Task sequences.
    #[serde(default)]
    pub task_sequences: Vec<TaskSequence>,
    /// Deployments.
    #[serde(default)]
    pub deployments: Vec<Deployment>,
}

impl Catalog {
    /// The SHA-256 of every file a package or a boot image of the catalog holds: the content
    /// the server serves; anything else in the content library is not served.
    pub fn content(&self) -> std::collections::HashSet<String> {
        self.packages
            .iter()
            .flat_map(|p| &p.files)
            .chain(self.boot_images.iter().flat_map(|b| &b.files))
            .map(|f| f.sha256.clone())
            .collect()
    }

    /// The device with this name.
    pub fn device(&self, name: &str) -> Option<&Device> {
        self.devices.iter().find(|d| d.name == name)
    }

    /// The collection with this id.
    pub fn collection(&self, id: &str) -> Option<&Collection> {
        self.collections.iter().find(|c| c.id == id)
    }

    /// The package with this id.
    pub fn package(&self, id: &str) -> Option<&Package> {
        self.packages.iter().find(|p| p.id == id)
    }

    /// The boot image with this id.
    pub fn boot_image(&self, id: &str) -> Option<&BootImage> {
        self.boot_images.iter().find(|b| b.id == id)
    }

    /// The task sequence with this id.
    pub fn task_sequence(&self, id: &str) -> Option<&TaskSequence> {
        self.task_sequences.iter().find(|t| t.id == id)
    }

    /// The deployment with this id.
    pub fn deployment(&self, id: &DeploymentId) -> Option<&Deployment> {
        self.deployments.iter().find(|d| d.id == *id)
    }

    /// The boot image a deployment's task sequence starts in, when both resolve.
    pub fn boot_image_of(&self, deployment: &Deployment) -> Option<&BootImage> {
        let ts = self.task_sequence(&deployment.task_sequence)?;
        self.boot_image(ts.boot_image.as_deref()?)
    }

    /// Checks that ids are unique within each kind of object, listing every duplicate.
    pub fn validate(&self) -> Result<(), Vec<CatalogError>> {
        let mut errors = Vec::new();
        let mut check = |kind: &'static str, mut ids: Vec<String>| {
            ids.sort_unstable();
            for pair in ids.windows(2) {
                if pair[0] == pair[1] {
                    errors.push(CatalogError::Duplicate {
                        kind,
                        id: pair[0].clone(),
                    });
                }
            }
        };
        check(
            "device",
            self.devices.iter().map(|d| d.name.clone()).collect(),
        );
        check(
            "collection",
            self.collections.iter().map(|c| c.id.clone()).collect(),
        );
        check(
            "package",
            self.packages.iter().map(|p| p.id.clone()).collect(),
        );
        check(
            "boot image",
            self.boot_images.iter().map(|b| b.id.clone()).collect(),
        );
        check(
            "task sequence",
            self.task_sequences.iter().map(|t| t.id.clone()).collect(),
        );
        check(
            "deployment",
            self.deployments.iter().map(|d| d.id.to_string()).collect(),
        );
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// Parses an SMBIOS UUID as Linux prints it (`4c4c4544-0042-...`): 32 hex digits, dashes
/// optional, either case.
pub fn parse_smbios_uuid(s: &str) -> Result<SmbiosUuid, String> {
    s.parse()
}

/// Serde helpers that write MAC addresses and UUIDs as text, so catalogs read well in TOML and
/// JSON; the DHCP types themselves stay free of serde.
pub(crate) mod text {
    pub(crate) mod macs {
        use serde::{de::Error, Deserialize, Deserializer, Serializer};

        use netdeploy_wire::Mac;

        pub(crate) fn serialize<S: Serializer>(macs: &[Mac], s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(macs.iter().map(|m| m.to_string()))
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Mac>, D::Error> {
            Vec::<String>::deserialize(d)?
                .iter()
                .map(|m| m.parse().map_err(D::Error::custom))
                .collect()
        }
    }

    pub(crate) mod opt_mac {
        use serde::{de::Error, Deserialize, Deserializer, Serializer};

        use netdeploy_wire::Mac;

        pub(crate) fn serialize<S: Serializer>(mac: &Option<Mac>, s: S) -> Result<S::Ok, S::Error> {
            match mac {
                Some(m) => s.serialize_some(&m.to_string()),
                None => s.serialize_none(),
            }
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<Mac>, D::Error> {
            Option::<String>::deserialize(d)?
                .map(|m| m.parse().map_err(D::Error::custom))
                .transpose()
        }
    }

    pub(crate) mod uuids {
        use serde::{de::Error, Deserialize, Deserializer, Serializer};

        use netdeploy_wire::SmbiosUuid;

        pub(crate) fn serialize<S: Serializer>(
            uuids: &[SmbiosUuid],
            s: S,
        ) -> Result<S::Ok, S::Error> {
            s.collect_seq(uuids.iter().map(|u| u.to_string()))
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Vec<SmbiosUuid>, D::Error> {
            Vec::<String>::deserialize(d)?
                .iter()
                .map(|u| super::super::parse_smbios_uuid(u).map_err(D::Error::custom))
                .collect()
        }
    }

    pub(crate) mod opt_uuid {
        use serde::{de::Error, Deserialize, Deserializer, Serializer};

        use netdeploy_wire::SmbiosUuid;

        pub(crate) fn serialize<S: Serializer>(
            uuid: &Option<SmbiosUuid>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match uuid {
                Some(u) => s.serialize_some(&u.to_string()),
                None => s.serialize_none(),
            }
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<SmbiosUuid>, D::Error> {
            Option::<String>::deserialize(d)?
                .map(|u| super::super::parse_smbios_uuid(&u).map_err(D::Error::custom))
                .transpose()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_ids_parse_in_either_case_and_print_upper_case() {
        let id: DeploymentId = "lab0001a".parse().unwrap();
        assert_eq!(id.to_string(), "LAB0001A");
        assert_eq!(id.site_code(), "LAB");
        assert_eq!(id.number(), 0x1a);
        for bad in [
            "LAB0001",
            "LAB000123",
            "LA-00012",
            "LAB0001G",
            "",
            "ÄBC00001",
        ] {
            assert!(bad.parse::<DeploymentId>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn deployment_ids_order_by_number_then_site() {
        let a: DeploymentId = "ZZZ00001".parse().unwrap();
        let b: DeploymentId = "AAA00002".parse().unwrap();
        let c: DeploymentId = "BBB00002".parse().unwrap();
        assert!(a < b && b < c);
    }

    #[test]
    fn installs_os_needs_an_apply_step() {
        let mut ts = TaskSequence {
            id: "TS1".into(),
            name: "tools".into(),
            boot_image: None,
            steps: vec![Step {
                name: "run".into(),
                action: StepAction::RunCommand,
                package: Some("P2".into()),
                command: Some("true".into()),
                file: None,
                target: None,
                variable: None,
                value: None,
                secret: false,
                sealed: None,
                disk: None,
                layout: None,
                partition: None,
                filesystem: None,
            }],
            packages: vec!["P1".into(), "P2".into()],
        };
        assert!(!ts.installs_os());
        assert_eq!(ts.referenced_packages(), vec!["P1", "P2"]);
        ts.steps.push(Step {
            name: "apply".into(),
            action: StepAction::ApplyOs,
            package: Some("P0".into()),
            command: None,
            file: None,
            target: None,
            variable: None,
            value: None,
            secret: false,
            sealed: None,
            disk: None,
            layout: None,
            partition: None,
            filesystem: None,
        });
        assert!(ts.installs_os());
        assert_eq!(ts.referenced_packages(), vec!["P0", "P1", "P2"]);
    }

    #[test]
    fn catalog_round_trips_through_json_with_text_addresses() {
        let catalog = Catalog {
            devices: vec![Device {
                name: "lab-01".into(),
                macs: vec!["52:54:00:12:34:56".parse().unwrap()],
                uuid: Some(parse_smbios_uuid("4C4C4544-0042-3510-8051-B7C04F4E4D31").unwrap()),
                server: false,
                site_system: false,
            }],
            collections: vec![Collection {
                id: "LAB00010".into(),
                name: "lab".into(),
                kind: CollectionKind::Custom {
                    members: vec!["lab-01".into()],
                },
            }],
            deployments: vec![Deployment {
                id: "LAB00012".parse().unwrap(),
                task_sequence: "TS1".into(),
                collection: "LAB00010".into(),
                purpose: Purpose::Required,
                available_to: AvailableTo::MediaPxeHidden,
                schedule: Schedule::default(),
                option: DeploymentOption::default(),
                multicast: false,
                wake_on_lan: false,
                comments: String::new(),
                high_risk_accepted: false,
                software_installation: false,
                pre_download: false,
                created_at: 0,
            }],
            ..Catalog::default()
        };
        let json = serde_json::to_string(&catalog).unwrap();
        assert!(json.contains("\"52:54:00:12:34:56\""), "{json}");
        assert!(
            json.contains("\"4c4c4544-0042-3510-8051-b7c04f4e4d31\""),
            "{json}"
        );
        assert!(json.contains("\"LAB00012\""), "{json}");
        assert!(json.contains("\"media_pxe_hidden\""), "{json}");
        let back: Catalog = serde_json::from_str(&json).unwrap();
        assert_eq!(back, catalog);
        assert_eq!(back.deployments[0].schedule.rerun, Rerun::Always);
    }

    #[test]
    fn catalog_reads_from_a_toml_site_file() {
        let text = r#"
            [[devices]]
            name = "lab-01"
            macs = ["52-54-00-12-34-56"]
            uuid = "4c4c4544-0042-3510-8051-b7c04f4e4d31"

            [[collections]]
            id = "SMS000US"
            name = "Unknown Computers"
            kind = "unknown_computers"

            [[collections]]
            id = "LAB00100"
            name = "lab"
            kind = "custom"
            members = ["lab-01"]

            [[boot_images]]
            id = "linux-x64"
            arch = "x64"
            kind = "linux"

            [[task_sequences]]
            id = "wipe"
            name = "Wipe and install"
            boot_image = "linux-x64"
            steps = [
                { name = "partition", action = "partition_disk", layout = { table = "gpt", partitions = [{ role = "linux", size = "rest" }] } },
                { name = "apply", action = "apply_image", package = "image" },
            ]

            [[deployments]]
            id = "LAB00012"
            task_sequence = "wipe"
            collection = "LAB00100"
            purpose = "required"
            available_to = "media_pxe"
            created_at = 1700000000
            schedule = { rerun = "if_failed", expires_at = 1700100000 }
        "#;
        let catalog: Catalog = toml::from_str(text).unwrap();
        assert_eq!(catalog.validate(), Ok(()));
        assert_eq!(catalog.devices[0].macs[0].to_string(), "52:54:00:12:34:56");
        assert!(matches!(
            catalog.collection("LAB00100").unwrap().kind,
            CollectionKind::Custom { ref members } if members == &["lab-01"]
        ));
        assert!(catalog.task_sequence("wipe").unwrap().installs_os());
        let d = &catalog.deployments[0];
        assert_eq!(d.schedule.rerun, Rerun::IfFailed);
        assert_eq!(d.option, DeploymentOption::DownloadOnDemand);
        assert_eq!(catalog.boot_image_of(d).unwrap().arch, ImageArch::X64);
    }

    #[test]
    fn validate_names_duplicate_ids() {
        let mut catalog = Catalog::default();
        for _ in 0..2 {
            catalog.packages.push(Package {
                id: "P1".into(),
                version: 1,
                files: vec![],
                package_share: false,
            });
        }
        assert_eq!(
            catalog.validate(),
            Err(vec![CatalogError::Duplicate {
                kind: "package",
                id: "P1".into()
            }])
        );
    }
}

/// A catalog object, or the whole catalog, as JSON that may be shown: the value of every step
/// marked secret replaced by [`netdeploy_wire::policy::MASK`]. The store keeps the value; every
/// view of it (the command line, the admin API) goes through here.
pub fn shown(mut v: serde_json::Value) -> serde_json::Value {
    fn walk(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                if m.get("secret") == Some(&serde_json::Value::Bool(true))
                    && m.get("value").is_some_and(|x| !x.is_null())
                {
                    m.insert(
                        "value".into(),
                        serde_json::Value::String(netdeploy_wire::policy::MASK.into()),
                    );
                }
                m.values_mut().for_each(walk);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut v);
    v
}

#[cfg(test)]
mod shown_tests {
    use super::*;

    #[test]
    fn a_secret_value_is_masked_wherever_it_sits_and_nothing_else_changes() {
        let v = serde_json::json!({
            "catalog": {"task_sequences": [{"id": "join", "steps": [
                {"name": "a", "action": "set_variable", "variable": "P", "value": "s3cret!", "secret": true},
                {"name": "b", "action": "set_variable", "variable": "Q", "value": "plain"}
            ]}]}
        });
        let out = shown(v.clone());
        let text = out.to_string();
        assert!(!text.contains("s3cret!"), "{text}");
        assert!(text.contains("plain"), "{text}");
        assert_eq!(
            out["catalog"]["task_sequences"][0]["steps"][0]["value"],
            netdeploy_wire::policy::MASK
        );
        assert_eq!(
            out["catalog"]["task_sequences"][0]["steps"][1],
            v["catalog"]["task_sequences"][0]["steps"][1]
        );
    }
}
