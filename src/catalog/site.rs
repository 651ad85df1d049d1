//! The site file: a whole lab's catalog declared in TOML and applied in one command
//! (`netdeploy site apply FILE`, or `POST /api/v1/site`). The difference between two catalogs
//! is pure; the files a site file names are found through [`FileAccess`], which confines a site
//! file sent to the admin API to `server.import_root`, and imported through a closure the
//! caller passes (the content library). Everything a task sequence names is checked before
//! anything is applied, and a refusal names the key, such as
//! `task_sequence "ts".steps[0].package`.
//!
//! ```toml
//! site_code = "LAB"
//! [settings]                      # docs/deployment-checks.md and rule 9; these are the defaults
//! default_size = 100
//! max_size = 1000
//! block_site_systems = true
//! unknown_computers = true
//! ignored_uuids = []              # shared UUIDs that must not tell machines apart
//!
//! [[device]]
//! name = "pc1"
//! macs = ["52:54:00:12:34:56"]
//! uuid = "4c4c4544-0042-3510-8056-b4c04f4e4d31"
//!
//! [[collection]]
//! id = "lab"
//! name = "Lab machines"
//! members = ["pc1"]
//!
//! [[boot_image]]
//! id = "linux-x64"
//! arch = "x64"
//! kernel = "images/vmlinuz"       # relative to the site file
//! initrd = "images/initrd.img"
//! cmdline = "console=ttyS0"
//!
//! [[task_sequence]]
//! id = "ts-hello"
//! name = "Say hello"
//! boot_image = "linux-x64"
//! steps = [{ name = "hello", action = "run_command", command = "echo hello" }]
//!
//! [[deployment]]
//! id = "LAB00001"
//! task_sequence = "ts-hello"
//! collection = "lab"
//! purpose = "required"            # or "available"
//! available_to = "media_pxe"      # clients | clients_media_pxe | media_pxe | media_pxe_hidden
//! ```
//!
//! The built-in collections `all_systems` (All Systems) and `unknown_computers` (Unknown
//! Computers) always exist and need not be declared.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::model::*;
use crate::decision::checks::{SiteSettings, LAST_TIMESTAMP};
use netdeploy_wire::disk::{DiskChoice, DiskLayout, Filesystem};

/// Id of the built-in All Systems collection.
pub const ALL_SYSTEMS: &str = "all_systems";
/// Id of the built-in Unknown Computers collection.
pub const UNKNOWN_COMPUTERS: &str = "unknown_computers";

/// The two built-in collections.
pub fn builtin_collections() -> Vec<Collection> {
    vec![
        Collection {
            id: ALL_SYSTEMS.into(),
            name: "All Systems".into(),
            kind: CollectionKind::AllSystems,
        },
        Collection {
            id: UNKNOWN_COMPUTERS.into(),
            name: "Unknown Computers".into(),
            kind: CollectionKind::UnknownComputers,
        },
    ]
}

/// Why a site file cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    #[error("{0}")]
    Parse(String),
    #[error("{what}: {reason}")]
    Invalid { what: String, reason: String },
    #[error("{key}: {path} may not be read: {rule}")]
    FileRefused {
        key: String,
        path: PathBuf,
        rule: String,
    },
    #[error("the site file is not UTF-8: line {line}, column {column} (byte offset {offset})")]
    NotUtf8 {
        line: usize,
        column: usize,
        offset: usize,
    },
    #[error("{what}: {source}")]
    Import {
        what: String,
        source: crate::content::ContentError,
    },
}

/// Where the files a site file names may come from (issue: a site file sent to the admin API
/// must not read the server's own files, such as `/etc/shadow`, into the content store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileAccess {
    /// A site file given on the command line: relative paths are relative to its directory,
    /// and it may name any file the user running the command can read.
    CommandLine { base: PathBuf },
    /// A site file sent to the admin API with `server.import_root` set: relative paths are
    /// relative to the import root, and every file (symbolic links resolved) must be below it.
    ImportRoot { root: PathBuf },
    /// A site file sent to the admin API with no `server.import_root`: it may name no file.
    NoFiles,
}

impl FileAccess {
    /// The file `path` that the key `key` names, or why it may not be read.
    pub fn resolve(&self, key: &str, path: &Path) -> Result<PathBuf, SiteError> {
        let refused = |rule: String| SiteError::FileRefused {
            key: key.to_owned(),
            path: path.to_owned(),
            rule,
        };
        match self {
            FileAccess::CommandLine { base } => Ok(base.join(path)),
            FileAccess::NoFiles => Err(refused(
                "a site file sent to the admin API may name files only when the server's \
                 configuration sets server.import_root; they must then be below that directory"
                    .into(),
            )),
            FileAccess::ImportRoot { root } => {
                let rule = || {
                    format!(
                        "files named by a site file sent to the admin API must be below \
                         server.import_root ({}), symbolic links resolved",
                        root.display()
                    )
                };
                let root = root.canonicalize().map_err(|e| {
                    refused(format!(
                        "server.import_root {} is unusable: {e}",
                        root.display()
                    ))
                })?;
                let lexically_inside = path
                    .components()
                    .all(|c| matches!(c, std::path::Component::Normal(_)));
                let full = root.join(path).canonicalize().map_err(|e| {
                    // Say nothing about whether a file outside the root exists.
                    if lexically_inside {
                        invalid(
                            key,
                            format!("cannot read {}: {e}", root.join(path).display()),
                        )
                    } else {
                        refused(rule())
                    }
                })?;
                if full.starts_with(&root) {
                    Ok(full)
                } else {
                    Err(refused(rule()))
                }
            }
        }
    }
}

/// The text of a site file, or where its first byte that is not UTF-8 is.
pub fn text(bytes: &[u8]) -> Result<&str, SiteError> {
    std::str::from_utf8(bytes).map_err(|e| {
        let at = e.valid_up_to();
        let before = &bytes[..at];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        // The column counts characters, as an editor shows them.
        let column = String::from_utf8_lossy(&before[line_start..])
            .chars()
            .count()
            + 1;
        SiteError::NotUtf8 {
            line,
            column,
            offset: at,
        }
    })
}

fn invalid(what: impl Into<String>, reason: impl Into<String>) -> SiteError {
    SiteError::Invalid {
        what: what.into(),
        reason: reason.into(),
    }
}

/// Site-wide settings (docs/deployment-checks.md sizes, rule 9 switches).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default = "default_size")]
    pub default_size: usize,
    #[serde(default = "max_size")]
    pub max_size: usize,
    #[serde(default = "yes")]
    pub block_site_systems: bool,
    /// Unknown computers get PXE offers (rule 9).
    #[serde(default = "yes")]
    pub unknown_computers: bool,
    /// The collection that gets pre-production boot images (docs/status.md).
    #[serde(default)]
    pub pre_production_collection: Option<String>,
    /// SMBIOS UUIDs that do not tell machines apart, such as one a vendor put on every board
    /// (Configuration Manager's "duplicate hardware identifiers"). Placeholders are ignored
    /// without being listed; see [`super::identity`].
    #[serde(default, with = "super::model::text::uuids")]
    pub ignored_uuids: Vec<netdeploy_wire::SmbiosUuid>,
}

fn default_size() -> usize {
    100
}
fn max_size() -> usize {
    1000
}
fn yes() -> bool {
    true
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            default_size: default_size(),
            max_size: max_size(),
            block_site_systems: true,
            unknown_computers: true,
            pre_production_collection: None,
            ignored_uuids: Vec::new(),
        }
    }
}

impl Settings {
    /// The docs/deployment-checks.md sizes as the checks take them.
    pub fn checks(&self) -> SiteSettings {
        SiteSettings {
            default_size: self.default_size,
            max_size: self.max_size,
            block_site_systems: self.block_site_systems,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    site_code: String,
    #[serde(default)]
    settings: Settings,
    #[serde(default)]
    device: Vec<WireDevice>,
    #[serde(default)]
    collection: Vec<WireCollection>,
    #[serde(default)]
    package: Vec<WirePackage>,
    #[serde(default)]
    boot_image: Vec<WireBootImage>,
    #[serde(default)]
    task_sequence: Vec<WireTaskSequence>,
    #[serde(default)]
    deployment: Vec<WireDeployment>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireDevice {
    name: String,
    #[serde(default)]
    macs: Vec<String>,
    uuid: Option<String>,
    #[serde(default)]
    server: bool,
    #[serde(default)]
    site_system: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireCollection {
    id: String,
    name: Option<String>,
    #[serde(default)]
    members: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct WirePackage {
    id: String,
    #[serde(default)]
    version: u32,
    /// A directory whose files make up the package.
    from: Option<PathBuf>,
    /// The package was made on this server by a `capture_image` step: its files are the ones
    /// captured, kept as they are (instead of `from`).
    #[serde(default)]
    captured: bool,
    #[serde(default)]
    package_share: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireBootImage {
    id: String,
    arch: ImageArch,
    #[serde(default = "linux")]
    kind: BootImageKind,
    kernel: Option<PathBuf>,
    initrd: Option<PathBuf>,
    #[serde(default)]
    cmdline: String,
    #[serde(default)]
    pre_production: bool,
    /// For a pre-production image: the production boot image it stands in for.
    replaces: Option<String>,
    /// Windows PE: the wimboot binary and the four files it loads.
    wimboot: Option<PathBuf>,
    bootmgr: Option<PathBuf>,
    bcd: Option<PathBuf>,
    boot_sdi: Option<PathBuf>,
    boot_wim: Option<PathBuf>,
}

/// The files of a Windows PE boot image, by the names wimboot gives them.
pub const WINPE_FILES: [&str; 5] = ["wimboot", "bootmgr", "BCD", "boot.sdi", "boot.wim"];

fn linux() -> BootImageKind {
    BootImageKind::Linux
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireStep {
    name: String,
    #[serde(deserialize_with = "known_step_action")]
    action: StepAction,
    package: Option<String>,
    command: Option<String>,
    file: Option<String>,
    target: Option<String>,
    variable: Option<String>,
    value: Option<String>,
    #[serde(default)]
    secret: bool,
    disk: Option<DiskChoice>,
    layout: Option<DiskLayout>,
    partition: Option<u32>,
    filesystem: Option<Filesystem>,
}

/// A step action of the site file: one this server knows, else an error that lists them.
fn known_step_action<'de, D: serde::Deserializer<'de>>(d: D) -> Result<StepAction, D::Error> {
    match StepAction::deserialize(d)? {
        StepAction::Unknown(a) => {
            let known: Vec<&str> = StepAction::KNOWN.iter().map(StepAction::as_str).collect();
            Err(serde::de::Error::custom(format!(
                "unknown step action {a:?}, expected one of {}",
                known.join(", ")
            )))
        }
        a => Ok(a),
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireTaskSequence {
    id: String,
    name: Option<String>,
    boot_image: Option<String>,
    #[serde(default)]
    steps: Vec<WireStep>,
    #[serde(default)]
    packages: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireDeployment {
    id: String,
    task_sequence: String,
    collection: String,
    purpose: Purpose,
    available_to: AvailableTo,
    #[serde(default)]
    option: DeploymentOption,
    /// Images may come by multicast (docs/multicast.md).
    #[serde(default)]
    multicast: bool,
    #[serde(default)]
    rerun: Rerun,
    available_at: Option<i64>,
    expires_at: Option<i64>,
    #[serde(default)]
    wake_on_lan: bool,
    #[serde(default)]
    comments: String,
    /// The operator accepts the high-risk warnings of docs/deployment-checks.md for this deployment.
    #[serde(default)]
    accept_high_risk: bool,
    /// Raise an alert at this failure percentage of the collection ...
    alert_failure_percent: Option<u32>,
    /// ... and at least this many failed machines (default 1).
    alert_min_failures: Option<usize>,
}

/// A parsed site file: the catalog it declares and the site settings.
#[derive(Debug, Clone)]
pub struct Site {
    pub site_code: String,
    pub settings: Settings,
    pub catalog: Catalog,
    /// Deployment ids whose high-risk warnings the file accepts.
    pub accepted_high_risk: Vec<DeploymentId>,
    /// The alert thresholds its deployments set; a deployment it declares without one has
    /// its alert turned off.
    pub alerts: Vec<crate::alerts::Threshold>,
}

/// What a long `site apply` reports as it goes, phase by phase (`parse`, `validate`,
/// `import`, then [`crate::store::catalog::apply_reporting`]'s `compare`, `check` and `write`),
/// so that a terminal can show it. The admin API and tests report to [`Silent`].
pub trait Progress {
    /// A phase starts, of `total` steps when known.
    fn phase(&self, _name: &'static str, _total: Option<u64>) {}
    /// `n` more steps of the current phase are done.
    fn advance(&self, _n: u64) {}
}

/// Reports nothing.
pub struct Silent;

impl Progress for Silent {}

/// Parses a site file and checks everything it names. `files` says which
/// files it may read; `import` stores one file in the content library and returns its hash
/// (`import(source, name_in_package)`). `now` stamps new deployments. Nothing is imported
/// unless the whole file is valid.
pub fn parse(
    text: &str,
    files: &FileAccess,
    import: impl FnMut(&Path, &str) -> Result<ContentFile, crate::content::ContentError>,
    now: i64,
) -> Result<Site, SiteError> {
    parse_reporting(text, files, import, now, &Silent)
}

/// [`parse`], reporting its phases to `progress`: `parse` (the TOML), `validate` (every
/// object checked, no file content read) and `import` (the objects built again with the
/// content imported), the last two counting objects.
pub fn parse_reporting(
    text: &str,
    files: &FileAccess,
    import: impl FnMut(&Path, &str) -> Result<ContentFile, crate::content::ContentError>,
    now: i64,
    progress: &dyn Progress,
) -> Result<Site, SiteError> {
    parse_with_captured(text, files, import, now, progress, &|_| None)
}

/// [`parse_reporting`] where a `[[package]]` with `captured = true` takes the files of the
/// package of that id that `captured` finds (the catalog's, made by a `capture_image` step).
pub fn parse_with_captured(
    text: &str,
    files: &FileAccess,
    import: impl FnMut(&Path, &str) -> Result<ContentFile, crate::content::ContentError>,
    now: i64,
    progress: &dyn Progress,
    captured: &dyn Fn(&str) -> Option<Package>,
) -> Result<Site, SiteError> {
    // A first pass checks everything, reading directories but no file content.
    let names_only = |_: &Path, name: &str| {
        Ok(ContentFile {
            path: name.to_owned(),
            size: 0,
            sha256: String::new(),
        })
    };
    progress.phase("parse", None);
    // The TOML is parsed once; both passes build from it.
    let f: File = toml::from_str(text).map_err(|e| SiteError::Parse(e.to_string()))?;
    let objects = (f.device.len()
        + f.collection.len()
        + f.package.len()
        + f.boot_image.len()
        + f.task_sequence.len()
        + f.deployment.len()) as u64;
    progress.phase("validate", Some(objects));
    build(f.clone(), files, names_only, now, progress, captured)?;
    progress.phase("import", Some(objects));
    build(f, files, import, now, progress, captured)
}

fn build(
    f: File,
    files: &FileAccess,
    mut import: impl FnMut(&Path, &str) -> Result<ContentFile, crate::content::ContentError>,
    now: i64,
    progress: &dyn Progress,
    captured: &dyn Fn(&str) -> Option<Package>,
) -> Result<Site, SiteError> {
    let code = f.site_code.to_ascii_uppercase();
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(invalid(
            "site_code",
            format!("{:?} is not 3 letters or digits", f.site_code),
        ));
    }
    let mut catalog = Catalog {
        collections: builtin_collections(),
        ..Catalog::default()
    };
    check_settings(&f.settings)?;
    for d in f.device {
        let what = format!("device {:?}", d.name);
        nonempty(&what, "name", &d.name)?;
        let macs = d
            .macs
            .iter()
            .map(|m| m.parse::<netdeploy_wire::Mac>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(&what, e))?;
        let uuid = d
            .uuid
            .as_deref()
            .map(parse_smbios_uuid)
            .transpose()
            .map_err(|e| invalid(&what, e))?;
        if macs.is_empty() && uuid.is_none() {
            return Err(invalid(
                what,
                "needs a MAC address or an SMBIOS UUID to be recognised",
            ));
        }
        catalog.devices.push(Device {
            name: d.name,
            macs,
            uuid,
            server: d.server,
            site_system: d.site_system,
        });
        progress.advance(1);
    }
    let mut seen_macs = BTreeMap::new();
    for d in &catalog.devices {
        for (i, m) in d.macs.iter().enumerate() {
            if let Some(other) = seen_macs.insert(*m, &d.name) {
                return Err(invalid(
                    format!("device {:?}.macs[{i}]", d.name),
                    format!("{m} is already the MAC of device {other:?}; a MAC names one machine"),
                ));
            }
        }
    }
    // Members are looked up by name: one set, not a scan of every device per member.
    let declared: HashSet<&str> = catalog.devices.iter().map(|d| d.name.as_str()).collect();
    let mut collections = Vec::with_capacity(f.collection.len());
    for c in f.collection {
        nonempty(&format!("collection {:?}", c.id), "id", &c.id)?;
        if c.id == ALL_SYSTEMS || c.id == UNKNOWN_COMPUTERS {
            return Err(invalid(
                format!("collection {:?}", c.id),
                "is built in and cannot be declared",
            ));
        }
        for m in &c.members {
            if !declared.contains(m.as_str()) {
                return Err(invalid(
                    format!("collection {:?}", c.id),
                    format!("member {m:?} is not a declared device"),
                ));
            }
        }
        collections.push(Collection {
            name: c.name.unwrap_or_else(|| c.id.clone()),
            id: c.id,
            kind: CollectionKind::Custom { members: c.members },
        });
        progress.advance(1);
    }
    catalog.collections.extend(collections);
    for p in f.package {
        let what = format!("package {:?}", p.id);
        nonempty(&what, "id", &p.id)?;
        let key = format!("{what}.from");
        let from = match (&p.from, p.captured) {
            (Some(from), false) => from,
            (None, true) => {
                let Some(found) = captured(&p.id) else {
                    return Err(invalid(
                        format!("{what}.captured"),
                        "no package of this id was captured to this server (a capture_image \
                         step makes it); declare it with from = DIR, or capture it first",
                    ));
                };
                catalog.packages.push(Package {
                    id: p.id,
                    package_share: p.package_share,
                    ..found
                });
                progress.advance(1);
                continue;
            }
            (Some(_), true) => {
                return Err(invalid(
                    &key,
                    "a package is either from a directory or captured = true, not both",
                ))
            }
            (None, false) => {
                return Err(invalid(
                    &key,
                    "a package needs from = DIR (its files), or captured = true for one a \
                     capture_image step made",
                ))
            }
        };
        let dir = files.resolve(&key, from)?;
        let mut contents = Vec::new();
        let sources = package_files(&dir)
            .map_err(|e| invalid(&key, format!("cannot read {}: {e}", dir.display())))?;
        for (rel, source, _) in sources {
            // A symbolic link inside the directory must not lead out of the import root.
            let source = files.resolve(&key, &source)?;
            contents.push(import(&source, &rel).map_err(|source| SiteError::Import {
                what: what.clone(),
                source,
            })?);
        }
        catalog.packages.push(Package {
            id: p.id,
            version: p.version,
            files: contents,
            package_share: p.package_share,
        });
        progress.advance(1);
    }
    for b in f.boot_image {
        let what = format!("boot_image {:?}", b.id);
        nonempty(&what, "id", &b.id)?;
        if let Some(problem) = kernel_cmdline_problem(&b.cmdline) {
            return Err(invalid(format!("{what}.cmdline"), problem));
        }
        let mut images = Vec::new();
        if b.kind == BootImageKind::WinPe {
            let keys = ["wimboot", "bootmgr", "bcd", "boot_sdi", "boot_wim"];
            let sources = [&b.wimboot, &b.bootmgr, &b.bcd, &b.boot_sdi, &b.boot_wim];
            for ((name, source), key) in WINPE_FILES.iter().zip(sources).zip(keys) {
                let Some(source) = source else {
                    return Err(invalid(
                        what,
                        format!("a winpe boot image needs {} (wimboot, bootmgr, bcd, boot_sdi, boot_wim)", name.to_lowercase()),
                    ));
                };
                let source = files.resolve(&format!("{what}.{key}"), source)?;
                images.push(import(&source, name).map_err(|source| SiteError::Import {
                    what: what.clone(),
                    source,
                })?);
            }
        }
        if b.kind == BootImageKind::Linux {
            let Some(kernel) = &b.kernel else {
                return Err(invalid(what, "a linux boot image needs a kernel"));
            };
            let kernel = files.resolve(&format!("{what}.kernel"), kernel)?;
            images.push(
                import(&kernel, "kernel").map_err(|source| SiteError::Import {
                    what: what.clone(),
                    source,
                })?,
            );
            if let Some(initrd) = &b.initrd {
                let initrd = files.resolve(&format!("{what}.initrd"), initrd)?;
                images.push(
                    import(&initrd, "initrd").map_err(|source| SiteError::Import {
                        what: what.clone(),
                        source,
                    })?,
                );
            }
        }
        catalog.boot_images.push(BootImage {
            id: b.id,
            arch: b.arch,
            kind: b.kind,
            files: images,
            cmdline: b.cmdline,
            pre_production: b.pre_production,
            replaces: b.replaces,
        });
        progress.advance(1);
    }
    for t in f.task_sequence {
        catalog.task_sequences.push(TaskSequence {
            name: t.name.unwrap_or_else(|| t.id.clone()),
            id: t.id,
            boot_image: t.boot_image,
            steps: t
                .steps
                .into_iter()
                .map(|s| Step {
                    name: s.name,
                    action: s.action,
                    package: s.package,
                    command: s.command,
                    file: s.file,
                    target: s.target,
                    variable: s.variable,
                    value: s.value,
                    secret: s.secret,
                    sealed: None,
                    disk: s.disk,
                    layout: s.layout,
                    partition: s.partition,
                    filesystem: s.filesystem,
                })
                .collect(),
            packages: t.packages,
        });
        progress.advance(1);
    }
    let mut accepted = Vec::new();
    let mut alerts = Vec::new();
    for d in f.deployment {
        let id: DeploymentId = d.id.parse().map_err(|e: DeploymentIdError| {
            invalid(format!("deployment {:?}", d.id), e.to_string())
        })?;
        if id.site_code() != code {
            return Err(invalid(
                format!("deployment {id}"),
                format!("its site code is not the site's ({code})"),
            ));
        }
        for (key, at) in [
            ("available_at", d.available_at),
            ("expires_at", d.expires_at),
        ] {
            if let Some(t) = at.filter(|t| !(0..=LAST_TIMESTAMP).contains(t)) {
                return Err(invalid(
                    format!("deployment {id}.{key}"),
                    format!("{t} is not a time netdeploy can keep: Unix seconds from 0 to {LAST_TIMESTAMP} (9999-12-31 23:59:59 UTC)"),
                ));
            }
        }
        if d.accept_high_risk {
            accepted.push(id);
        }
        if d.alert_failure_percent.is_some() || d.alert_min_failures.is_some() {
            let t = crate::alerts::Threshold::new(
                id,
                d.alert_failure_percent.unwrap_or(0),
                d.alert_min_failures.unwrap_or(1),
            )
            .map_err(|e| invalid(format!("deployment {id}"), e.to_string()))?;
            alerts.push(t);
        }
        catalog.deployments.push(Deployment {
            id,
            task_sequence: d.task_sequence,
            collection: d.collection,
            purpose: d.purpose,
            available_to: d.available_to,
            schedule: Schedule {
                available_at: d.available_at,
                expires_at: d.expires_at,
                assignments: vec![],
                rerun: d.rerun,
            },
            option: d.option,
            multicast: d.multicast,
            wake_on_lan: d.wake_on_lan,
            comments: d.comments,
            high_risk_accepted: d.accept_high_risk,
            software_installation: false,
            pre_download: false,
            created_at: now,
        });
        progress.advance(1);
    }
    for b in &catalog.boot_images {
        if let Some(r) = &b.replaces {
            if !b.pre_production || catalog.boot_image(r).is_none() {
                return Err(invalid(format!("boot_image {:?}", b.id), format!("replaces {r:?}: only a pre_production image can stand in for an existing boot image")));
            }
        }
    }
    if let Some(c) = &f.settings.pre_production_collection {
        if catalog.collection(c).is_none() {
            return Err(invalid(
                "settings.pre_production_collection",
                format!("no collection {c:?}"),
            ));
        }
    }
    check_task_sequences(&catalog)?;
    // Every deployment, changed or not: the file may have removed what an unchanged one uses.
    for d in &catalog.deployments {
        if catalog.task_sequence(&d.task_sequence).is_none() {
            return Err(invalid(
                format!("deployment {}.task_sequence", d.id),
                format!("no task_sequence {:?} is declared", d.task_sequence),
            ));
        }
        if catalog.collection(&d.collection).is_none() {
            return Err(invalid(
                format!("deployment {}.collection", d.id),
                format!("no collection {:?} is declared", d.collection),
            ));
        }
    }
    if let Err(errors) = catalog.validate() {
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        return Err(invalid("site", text.join("; ")));
    }
    Ok(Site {
        site_code: code,
        settings: f.settings,
        catalog,
        accepted_high_risk: accepted,
        alerts,
    })
}

fn nonempty(what: &str, key: &str, id: &str) -> Result<(), SiteError> {
    if id.trim().is_empty() {
        return Err(invalid(
            format!("{what}.{key}"),
            "an id or name cannot be empty",
        ));
    }
    Ok(())
}

fn check_settings(s: &Settings) -> Result<(), SiteError> {
    if s.max_size < s.default_size {
        return Err(invalid(
            "settings.max_size",
            format!(
                "{} is smaller than settings.default_size ({}): collections over default_size \
                 need an acceptance, those over max_size are refused",
                s.max_size, s.default_size
            ),
        ));
    }
    Ok(())
}

/// Everything a task sequence names resolves: its boot
/// image, its packages, each file a step names inside its package, and the fields each step
/// action needs, as the agent will read them.
fn check_task_sequences(c: &Catalog) -> Result<(), SiteError> {
    for t in &c.task_sequences {
        let ts = format!("task_sequence {:?}", t.id);
        nonempty(&ts, "id", &t.id)?;
        if let Some(b) = &t.boot_image {
            if c.boot_image(b).is_none() {
                return Err(invalid(
                    format!("{ts}.boot_image"),
                    format!("no boot_image {b:?} is declared"),
                ));
            }
        }
        for (i, p) in t.packages.iter().enumerate() {
            if c.package(p).is_none() {
                return Err(invalid(
                    format!("{ts}.packages[{i}]"),
                    format!("no package {p:?} is declared"),
                ));
            }
        }
        for (i, step) in t.steps.iter().enumerate() {
            check_step(c, &format!("{ts}.steps[{i}]"), step)?;
        }
    }
    Ok(())
}

fn check_step(c: &Catalog, at: &str, s: &Step) -> Result<(), SiteError> {
    let action = s.action.as_str();
    let need = |field: &Option<String>, key: &str| -> Result<(), SiteError> {
        match field.as_deref() {
            Some(v) if !v.trim().is_empty() => Ok(()),
            _ => Err(invalid(
                format!("{at}.{key}"),
                format!("a {action} step needs {key}"),
            )),
        }
    };
    // A capture_image step names the package it makes, which the catalog does not hold yet.
    let package = match s.package.as_deref() {
        Some(_) if s.action == StepAction::CaptureImage => None,
        Some(id) => Some(c.package(id).ok_or_else(|| {
            invalid(
                format!("{at}.package"),
                format!("no package {id:?} is declared"),
            )
        })?),
        None => None,
    };
    if let Some(name) = s.file.as_deref() {
        let Some(p) = package else {
            return Err(invalid(
                format!("{at}.file"),
                "names a file but the step names no package",
            ));
        };
        if !p.files.iter().any(|f| f.path == name) {
            return Err(invalid(
                format!("{at}.file"),
                format!("package {:?} has no file {name:?}", p.id),
            ));
        }
    }
    // A step that reads one file of a package may leave `file` out when the package holds one.
    let one_file = |key: &str| -> Result<(), SiteError> {
        need(&s.package, "package")?;
        if s.file.is_none() && package.is_some_and(|p| p.files.len() != 1) {
            return Err(invalid(
                format!("{at}.file"),
                format!("a {action} step needs file: its package does not hold exactly one"),
            ));
        }
        need(&s.target, key)
    };
    match s.action {
        // Without a target, an image goes to partition `partition` of the disk `disk` picks,
        // or to that whole disk; one of them must be said, never the first disk by default.
        StepAction::ApplyImage if s.target.is_none() => {
            if s.disk.is_none() && s.partition.is_none() {
                return Err(invalid(
                    format!("{at}.target"),
                    "an apply_image step needs target, or partition and/or disk",
                ));
            }
            if s.partition == Some(0) {
                return Err(invalid(
                    format!("{at}.partition"),
                    "partitions are numbered from 1",
                ));
            }
            need(&s.package, "package")?;
            if s.file.is_none() && package.is_some_and(|p| p.files.len() != 1) {
                return Err(invalid(
                    format!("{at}.file"),
                    format!("a {action} step needs file: its package does not hold exactly one"),
                ));
            }
        }
        StepAction::ApplyImage | StepAction::ApplyOs => one_file("target")?,
        StepAction::RunCommand => need(&s.command, "command")?,
        StepAction::InstallPackage => need(&s.package, "package")?,
        StepAction::WriteFile => {
            if s.package.is_some() {
                one_file("target")?;
            } else {
                need(&s.value, "value")?;
                need(&s.target, "target")?;
            }
        }
        StepAction::SetVariable => {
            need(&s.variable, "variable")?;
            let name = s.variable.as_deref().unwrap_or_default();
            let mut chars = name.chars();
            let valid = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(invalid(
                    format!("{at}.variable"),
                    format!(
                        "{name:?} is not a variable name (letters, digits and _, not starting \
                         with a digit)"
                    ),
                ));
            }
        }
        StepAction::PartitionDisk => {
            let Some(layout) = &s.layout else {
                return Err(invalid(
                    format!("{at}.layout"),
                    "a partition_disk step needs layout (table and partitions)",
                ));
            };
            layout
                .check()
                .map_err(|e| invalid(format!("{at}.layout"), e.to_string()))?;
        }
        StepAction::Format => {
            if s.partition.is_none_or(|n| n == 0) {
                return Err(invalid(
                    format!("{at}.partition"),
                    "a format step needs partition (its number on the disk, from 1)",
                ));
            }
            match &s.filesystem {
                None => {
                    return Err(invalid(
                        format!("{at}.filesystem"),
                        "a format step needs filesystem (fat32, ext4, swap or ntfs)",
                    ))
                }
                Some(Filesystem::Unknown(f)) => {
                    return Err(invalid(
                        format!("{at}.filesystem"),
                        format!("unknown filesystem {f:?}, expected fat32, ext4, swap or ntfs"),
                    ))
                }
                Some(_) => {}
            }
        }
        StepAction::CaptureImage => need(&s.package, "package")?,
        StepAction::Bcdboot | StepAction::Reboot | StepAction::Poweroff => {}
        // Refused when the file is read (`known_step_action`); kept here so that a step made
        // some other way is refused too.
        StepAction::Unknown(ref a) => {
            return Err(invalid(
                format!("{at}.action"),
                format!("unknown step action {a:?}"),
            ))
        }
    }
    if s.secret && s.value.is_none() {
        return Err(invalid(
            format!("{at}.secret"),
            format!(
                "only a value can be secret: a {action} step with secret = true needs value (a \
                 set_variable value or the text of a write_file step)"
            ),
        ));
    }
    if let Some(t) = s.target.as_deref() {
        if !netdeploy_wire::policy::is_absolute_target(t) {
            return Err(invalid(
                format!("{at}.target"),
                format!(
                    "{t:?} is not an absolute path (/dev/vda, /etc/motd; in Windows PE \
                     C:\\Windows\\file or \\\\.\\PhysicalDrive0)"
                ),
            ));
        }
    }
    Ok(())
}

/// Every file below `dir`, in name order, as (path relative to `dir` with `/` separators,
/// full path, size): what a package made from a directory holds.
pub fn package_files(dir: &Path) -> std::io::Result<Vec<(String, PathBuf, u64)>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf, u64)>) -> std::io::Result<()> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let meta = e.metadata()?;
            if meta.is_dir() {
                walk(root, &p, out)?;
            } else {
                let rel = p
                    .strip_prefix(root)
                    .expect("below the root")
                    .to_string_lossy()
                    .replace('\\', "/");
                out.push((rel, p, meta.len()));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out)?;
    Ok(out)
}

/// What applying a site file changed, per kind of object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Changes {
    pub created: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
}

impl Changes {
    /// True when the catalog stays as it was.
    pub fn is_empty(&self) -> bool {
        self.created.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }
}

/// Each object of a catalog as (`kind id`, JSON), for comparing two catalogs.
pub fn objects(c: &Catalog) -> BTreeMap<String, serde_json::Value> {
    let mut out = BTreeMap::new();
    let mut put = |kind: &str, id: String, v: serde_json::Value| {
        out.insert(format!("{kind} {id}"), v);
    };
    let json = |v: &dyn erased::Ser| v.json();
    for d in &c.devices {
        put("device", d.name.clone(), json(d));
    }
    for x in &c.collections {
        put("collection", x.id.clone(), json(x));
    }
    for x in &c.packages {
        put("package", x.id.clone(), json(x));
    }
    for x in &c.boot_images {
        put("boot_image", x.id.clone(), json(x));
    }
    for x in &c.task_sequences {
        put("task_sequence", x.id.clone(), json(x));
    }
    for x in &c.deployments {
        // Creation time is not part of what the site file declares.
        let mut v = json(x);
        v.as_object_mut().map(|o| o.remove("created_at"));
        put("deployment", x.id.to_string(), v);
    }
    out
}

mod erased {
    pub trait Ser {
        fn json(&self) -> serde_json::Value;
    }
    impl<T: serde::Serialize> Ser for T {
        fn json(&self) -> serde_json::Value {
            serde_json::to_value(self).expect("catalog objects serialize")
        }
    }
}

/// The difference between the stored catalog and the declared one, each list sorted by
/// `kind id`. Objects compare as their [`objects`] do (a deployment's creation time left out),
/// by value rather than as JSON: a catalog of a hundred thousand devices is compared in
/// one pass over each kind.
pub fn diff(old: &Catalog, new: &Catalog) -> Changes {
    let mut ch = Changes::default();
    let (a, b) = (&old.devices, &new.devices);
    diff_kind(&mut ch, "device", a, b, |x| &x.name, PartialEq::eq);
    let (a, b) = (&old.collections, &new.collections);
    diff_kind(&mut ch, "collection", a, b, |x| &x.id, PartialEq::eq);
    let (a, b) = (&old.packages, &new.packages);
    diff_kind(&mut ch, "package", a, b, |x| &x.id, PartialEq::eq);
    let (a, b) = (&old.boot_images, &new.boot_images);
    diff_kind(&mut ch, "boot_image", a, b, |x| &x.id, PartialEq::eq);
    let (a, b) = (&old.task_sequences, &new.task_sequences);
    diff_kind(&mut ch, "task_sequence", a, b, |x| &x.id, PartialEq::eq);
    // Creation time is not part of what the site file declares.
    let same = |a: &Deployment, b: &Deployment| {
        a == &Deployment {
            created_at: a.created_at,
            ..b.clone()
        }
    };
    let deployments = |c: &Catalog| -> Vec<(String, Deployment)> {
        c.deployments
            .iter()
            .map(|d| (d.id.to_string(), d.clone()))
            .collect()
    };
    let (a, b) = (deployments(old), deployments(new));
    diff_kind(
        &mut ch,
        "deployment",
        &a,
        &b,
        |x| &x.0,
        |x, y| same(&x.1, &y.1),
    );
    ch.created.sort_unstable();
    ch.changed.sort_unstable();
    ch.removed.sort_unstable();
    ch
}

/// Adds the objects of one kind that `new` creates or changes and those it removes from
/// `old`. Of two objects with one id, the later counts (as in [`objects`]).
fn diff_kind<T>(
    ch: &mut Changes,
    kind: &str,
    old: &[T],
    new: &[T],
    id: fn(&T) -> &String,
    same: impl Fn(&T, &T) -> bool,
) {
    let before: HashMap<&str, &T> = old.iter().map(|x| (id(x).as_str(), x)).collect();
    let after: HashMap<&str, &T> = new.iter().map(|x| (id(x).as_str(), x)).collect();
    for (k, v) in &after {
        match before.get(k) {
            None => ch.created.push(format!("{kind} {k}")),
            Some(old) if !same(old, v) => ch.changed.push(format!("{kind} {k}")),
            _ => {}
        }
    }
    for k in before.keys() {
        if !after.contains_key(k) {
            ch.removed.push(format!("{kind} {k}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SITE: &str = r#"
site_code = "lab"
[[device]]
name = "pc1"
macs = ["52:54:00:12:34:56"]
[[collection]]
id = "lab"
members = ["pc1"]
[[boot_image]]
id = "linux-x64"
arch = "x64"
kernel = "vmlinuz"
cmdline = "console=ttyS0"
[[task_sequence]]
id = "ts"
boot_image = "linux-x64"
steps = [{ name = "hello", action = "run_command", command = "echo hi" }]
[[deployment]]
id = "LAB00001"
task_sequence = "ts"
collection = "lab"
purpose = "required"
available_to = "media_pxe"
"#;

    fn cli() -> FileAccess {
        FileAccess::CommandLine { base: "/".into() }
    }

    fn fake_import(_: &Path, name: &str) -> Result<ContentFile, crate::content::ContentError> {
        Ok(ContentFile {
            path: name.into(),
            size: 1,
            sha256: "0".repeat(64),
        })
    }

    #[test]
    fn a_site_file_declares_a_catalog_with_the_builtin_collections() {
        let s = parse(SITE, &cli(), fake_import, 7).unwrap();
        assert_eq!(s.site_code, "LAB");
        assert_eq!(s.catalog.collections.len(), 3);
        assert_eq!(s.catalog.boot_images[0].files[0].path, "kernel");
        assert_eq!(s.catalog.deployments[0].id.to_string(), "LAB00001");
    }

    #[test]
    fn applying_the_same_file_twice_changes_nothing() {
        let a = parse(SITE, &cli(), fake_import, 1).unwrap().catalog;
        let b = parse(SITE, &cli(), fake_import, 2).unwrap().catalog;
        assert!(diff(&a, &b).is_empty());
        let ch = diff(&Catalog::default(), &a);
        assert!(
            ch.created.contains(&"deployment LAB00001".to_string()),
            "{ch:?}"
        );
        let ch = diff(&a, &Catalog::default());
        assert_eq!(ch.removed.len(), 7, "{ch:?}");
    }

    /// The change summary as it was first computed: every object of both catalogs as JSON.
    fn diff_as_json(old: &Catalog, new: &Catalog) -> Changes {
        let (a, b) = (objects(old), objects(new));
        let mut ch = Changes::default();
        for (k, v) in &b {
            match a.get(k) {
                None => ch.created.push(k.clone()),
                Some(old) if old != v => ch.changed.push(k.clone()),
                _ => {}
            }
        }
        for k in a.keys() {
            if !b.contains_key(k) {
                ch.removed.push(k.clone());
            }
        }
        ch
    }

    #[test]
    fn the_change_summary_is_the_one_of_comparing_objects_as_json() {
        let base = parse(SITE, &cli(), fake_import, 1).unwrap().catalog;
        type Edit = Box<dyn Fn(&mut Catalog)>;
        let edits: Vec<(&str, Edit)> = vec![
            ("nothing", Box::new(|_| {})),
            (
                "only a deployment's creation time",
                Box::new(|c| c.deployments[0].created_at = 99),
            ),
            (
                "a deployment's comments",
                Box::new(|c| c.deployments[0].comments = "x".into()),
            ),
            (
                "a device's MAC",
                Box::new(|c| c.devices[0].macs[0] = "52:54:00:00:00:09".parse().unwrap()),
            ),
            (
                "a device's server flag",
                Box::new(|c| c.devices[0].server = true),
            ),
            ("a removed device", Box::new(|c| c.devices.clear())),
            (
                "added devices",
                Box::new(|c| {
                    for i in 0..5 {
                        let mut d = c.devices[0].clone();
                        d.name = format!("pc{}", 10 - i);
                        c.devices.push(d);
                    }
                }),
            ),
            (
                "a duplicate device name, the later one changed",
                Box::new(|c| {
                    let mut d = c.devices[0].clone();
                    d.site_system = true;
                    c.devices.push(d);
                }),
            ),
            (
                "a collection's members",
                Box::new(|c| c.collections[2].kind = CollectionKind::Custom { members: vec![] }),
            ),
            (
                "a boot image's command line",
                Box::new(|c| c.boot_images[0].cmdline.push_str(" quiet")),
            ),
            (
                "a boot image that replaces",
                Box::new(|c| c.boot_images[0].replaces = Some("y".into())),
            ),
            (
                "a package",
                Box::new(|c| {
                    c.packages.push(Package {
                        id: "disk".into(),
                        version: 1,
                        files: vec![],
                        package_share: false,
                    })
                }),
            ),
            (
                "a task sequence's step",
                Box::new(|c| c.task_sequences[0].steps[0].command = None),
            ),
            ("everything removed", Box::new(|c| *c = Catalog::default())),
        ];
        for (what, edit) in &edits {
            let mut changed = base.clone();
            edit(&mut changed);
            for (old, new) in [(&base, &changed), (&changed, &base)] {
                assert_eq!(diff(old, new), diff_as_json(old, new), "{what}");
            }
        }
        let ch = diff(&Catalog::default(), &base);
        assert_eq!(ch, diff_as_json(&Catalog::default(), &base));
        assert_eq!(ch.created.len(), 7, "{ch:?}");
    }

    #[test]
    fn a_captured_package_keeps_the_files_its_capture_made_and_must_exist() {
        let made = Package {
            id: "ref-image".into(),
            version: 3,
            files: vec![ContentFile {
                path: "image.ndimg".into(),
                size: 10,
                sha256: "ab".repeat(32),
            }],
            package_share: false,
        };
        let text = format!("{SITE}\n[[package]]\nid = \"ref-image\"\ncaptured = true\n");
        let found = |id: &str| (id == "ref-image").then(|| made.clone());
        let site = parse_with_captured(&text, &cli(), fake_import, 0, &Silent, &found).unwrap();
        assert_eq!(site.catalog.package("ref-image"), Some(&made));
        let e = parse(&text, &cli(), fake_import, 0)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("package \"ref-image\".captured")
                && e.contains("no package of this id was captured"),
            "{e}"
        );
        let both = text.replace("captured = true", "captured = true\nfrom = \"pkg\"");
        let e = parse_with_captured(&both, &cli(), fake_import, 0, &Silent, &found)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not both"), "{e}");
        let neither = text.replace("captured = true\n", "");
        let e = parse(&neither, &cli(), fake_import, 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs from = DIR"), "{e}");
    }

    #[test]
    fn a_step_action_the_server_does_not_know_is_refused_by_name() {
        let e = parse(
            &SITE.replace("action = \"run_command\"", "action = \"format_c\""),
            &cli(),
            fake_import,
            0,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("unknown step action \"format_c\", expected one of partition_disk, format, apply_image,"),
            "{e}"
        );
    }

    #[test]
    fn errors_name_the_object_or_the_line() {
        let e = parse(
            &SITE.replace("members = [\"pc1\"]", "members = [\"pc9\"]"),
            &cli(),
            fake_import,
            0,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("collection \"lab\"") && e.contains("pc9"), "{e}");
        let e = parse(
            &SITE.replace("purpose = \"required\"", "purpose = \"mandatory\""),
            &cli(),
            fake_import,
            0,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("line"), "{e}");
        let e = parse(
            &SITE.replace("id = \"LAB00001\"", "id = \"XYZ00001\""),
            &cli(),
            fake_import,
            0,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("site code"), "{e}");
    }

    /// The error of applying `SITE` with `from` replaced by `to`, and any `extra` appended.
    fn refusal(from: &str, to: &str, extra: &str) -> String {
        assert!(from.is_empty() || SITE.contains(from), "{from}");
        let text = format!("{}{extra}", SITE.replacen(from, to, 1));
        match parse(&text, &cli(), fake_import, 0) {
            Ok(_) => panic!("applied: {text}"),
            Err(e) => e.to_string(),
        }
    }

    const PACKAGE: &str = "[[package]]\nid = \"disk\"\nfrom = \"pkg\"\n";

    fn with_package(files: &[&str]) -> FileAccess {
        let dir = tempfile::tempdir().unwrap().keep();
        std::fs::create_dir_all(dir.join("pkg")).unwrap();
        for f in files {
            std::fs::write(dir.join("pkg").join(f), f).unwrap();
        }
        std::fs::write(dir.join("vmlinuz"), "k").unwrap();
        FileAccess::CommandLine { base: dir }
    }

    fn steps(steps: &str) -> String {
        SITE.replace(
            r#"steps = [{ name = "hello", action = "run_command", command = "echo hi" }]"#,
            &format!("steps = [{steps}]"),
        ) + PACKAGE
    }

    #[test]
    fn nothing_is_imported_from_a_site_file_that_is_refused() {
        let files = with_package(&["disk.img"]);
        let mut imported = Vec::new();
        let bad = steps(
            r#"{ name = "w", action = "apply_image", package = "disk", file = "disk.iso", target = "/dev/vda" }"#,
        );
        let r = parse(
            &bad,
            &files,
            |p, n| {
                imported.push(p.to_owned());
                fake_import(p, n)
            },
            0,
        );
        assert!(r.is_err());
        assert!(imported.is_empty(), "{imported:?}");
    }

    #[test]
    fn two_devices_with_one_mac_are_refused_naming_the_second() {
        let e = refusal(
            "",
            "",
            "[[device]]\nname = \"pc2\"\nmacs = [\"52:54:00:aa:bb:cc\", \"52:54:00:12:34:56\"]\n",
        );
        assert!(
            e.contains("device \"pc2\".macs[1]") && e.contains("\"pc1\""),
            "{e}"
        );
    }

    #[test]
    fn a_task_sequence_naming_a_missing_boot_image_is_refused() {
        let e = refusal(
            "boot_image = \"linux-x64\"\nsteps",
            "boot_image = \"linux-arm\"\nsteps",
            "",
        );
        assert!(
            e.contains("task_sequence \"ts\".boot_image") && e.contains("linux-arm"),
            "{e}"
        );
    }

    #[test]
    fn an_image_goes_to_a_partition_or_a_disk_when_the_step_has_no_target() {
        let files = with_package(&["disk.img", "readme.txt"]);
        for step in [
            r#"{ name = "w", action = "apply_image", package = "disk", file = "disk.img", partition = 2 }"#,
            r#"{ name = "w", action = "apply_image", package = "disk", file = "disk.img", disk = { path = "/dev/vdb" } }"#,
            r#"{ name = "w", action = "apply_image", package = "disk", file = "disk.img", partition = 1, disk = { min_size_mib = 4096 } }"#,
        ] {
            if let Err(e) = parse(&steps(step), &files, fake_import, 0) {
                panic!("{step}: {e}");
            }
        }
    }

    #[test]
    fn steps_naming_missing_packages_or_files_are_refused_with_their_key() {
        let files = with_package(&["disk.img", "readme.txt"]);
        let cases = [
            (
                r#"{ name = "w", action = "apply_image", package = "nope", file = "disk.img", target = "/dev/vda" }"#,
                "task_sequence \"ts\".steps[0].package",
                "no package \"nope\"",
            ),
            (
                r#"{ name = "w", action = "apply_image", target = "/dev/vda" }"#,
                "task_sequence \"ts\".steps[0].package",
                "needs package",
            ),
            (
                r#"{ name = "w", action = "apply_image", package = "disk", file = "disk.iso", target = "/dev/vda" }"#,
                "task_sequence \"ts\".steps[0].file",
                "has no file \"disk.iso\"",
            ),
            (
                r#"{ name = "w", action = "apply_image", package = "disk", target = "/dev/vda" }"#,
                "task_sequence \"ts\".steps[0].file",
                "exactly one",
            ),
            (
                r#"{ name = "a", action = "poweroff" }, { name = "w", action = "write_file", package = "disk", file = "readme.txt" }"#,
                "task_sequence \"ts\".steps[1].target",
                "needs target",
            ),
            (
                r#"{ name = "w", action = "apply_image", package = "disk", file = "disk.img" }"#,
                "task_sequence \"ts\".steps[0].target",
                "needs target, or partition and/or disk",
            ),
            (
                r#"{ name = "w", action = "apply_image", package = "disk", file = "disk.img", partition = 0 }"#,
                "task_sequence \"ts\".steps[0].partition",
                "numbered from 1",
            ),
            (
                r#"{ name = "f", action = "format", partition = 0, filesystem = "ext4" }"#,
                "task_sequence \"ts\".steps[0].partition",
                "from 1",
            ),
            (
                r#"{ name = "w", action = "apply_image", package = "disk", partition = 2 }"#,
                "task_sequence \"ts\".steps[0].file",
                "exactly one",
            ),
            (
                r#"{ name = "v", action = "set_variable", value = "x" }"#,
                "task_sequence \"ts\".steps[0].variable",
                "needs variable",
            ),
            (
                r#"{ name = "v", action = "set_variable", variable = "1st-name", value = "x" }"#,
                "task_sequence \"ts\".steps[0].variable",
                "not a variable name",
            ),
            (
                r#"{ name = "c", action = "run_command" }"#,
                "task_sequence \"ts\".steps[0].command",
                "needs command",
            ),
        ];
        for (step, key, why) in cases {
            let e = parse(&steps(step), &files, fake_import, 0)
                .unwrap_err()
                .to_string();
            assert!(e.contains(key) && e.contains(why), "{step}: {e}");
        }
        let ok = r#"{ name = "w", action = "apply_image", package = "disk", file = "disk.img", target = "/dev/vda" }"#;
        parse(&steps(ok), &files, fake_import, 0).unwrap();
        let e = parse(
            &(steps(ok) + "[[task_sequence]]\nid = \"t2\"\npackages = [\"tools\"]\n"),
            &files,
            fake_import,
            0,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("task_sequence \"t2\".packages[0]"), "{e}");
    }

    #[test]
    fn an_empty_collection_id_is_refused() {
        let e = refusal("", "", "[[collection]]\nid = \"\"\n");
        assert!(e.contains("collection \"\".id"), "{e}");
    }

    #[test]
    fn a_deployment_of_a_collection_the_file_no_longer_declares_is_refused() {
        let e = refusal("id = \"lab\"\nmembers", "id = \"lab2\"\nmembers", "");
        assert!(
            e.contains("deployment LAB00001.collection") && e.contains("\"lab\""),
            "{e}"
        );
        let e = refusal("task_sequence = \"ts\"", "task_sequence = \"ts2\"", "");
        assert!(e.contains("deployment LAB00001.task_sequence"), "{e}");
    }

    #[test]
    fn max_size_below_default_size_is_refused() {
        let e = refusal("", "", "[settings]\ndefault_size = 50\nmax_size = 10\n");
        assert!(
            e.contains("settings.max_size") && e.contains("default_size (50)"),
            "{e}"
        );
    }

    #[test]
    fn timestamps_past_year_9999_or_before_1970_are_refused() {
        for t in [i64::MAX, LAST_TIMESTAMP + 1, -1] {
            let e = refusal(
                "available_to = \"media_pxe\"",
                &format!("available_to = \"media_pxe\"\nexpires_at = {t}"),
                "",
            );
            assert!(e.contains("deployment LAB00001.expires_at"), "{e}");
        }
    }

    #[test]
    fn kernel_command_lines_with_ipxe_syntax_or_line_breaks_are_refused() {
        for bad in [
            "console=ttyS0 || shell",
            "a=1 && b=2",
            "x=${net0/mac}",
            "quiet #rest",
            "a\nkernel http://evil/",
        ] {
            let e = refusal(
                "cmdline = \"console=ttyS0\"",
                &format!("cmdline = {bad:?}"),
                "",
            );
            assert!(
                e.contains("boot_image \"linux-x64\".cmdline"),
                "{bad:?}: {e}"
            );
        }
        for good in ["console=ttyS0,115200 quiet", "a=b|c x=&y root=/dev/sda1#"] {
            assert_eq!(kernel_cmdline_problem(good), None, "{good}");
        }
    }

    #[test]
    fn non_utf8_input_is_refused_with_its_line_and_column() {
        let e = text(b"site_code = \"LAB\"\nname = \"\xc3\xa9t\xff\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 2, column 11") && e.contains("offset 29"),
            "{e}"
        );
    }

    #[test]
    fn a_site_file_from_the_api_reads_no_file_without_an_import_root() {
        let e = parse(SITE, &FileAccess::NoFiles, fake_import, 0)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("boot_image \"linux-x64\".kernel") && e.contains("server.import_root"),
            "{e}"
        );
    }

    #[test]
    fn a_site_file_from_the_api_reads_only_below_the_import_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("import");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("vmlinuz"), "k").unwrap();
        std::fs::write(dir.path().join("secret"), "s").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), root.join("link")).unwrap();
        let files = FileAccess::ImportRoot { root: root.clone() };
        let s = parse(SITE, &files, fake_import, 0).unwrap();
        assert_eq!(s.catalog.boot_images[0].files[0].path, "kernel");
        for outside in [
            "/etc/shadow".to_string(),
            "/etc/no-such-file".into(),
            "../secret".into(),
            "link".into(),
            dir.path().join("secret").display().to_string(),
        ] {
            let e = parse(
                &SITE.replace("\"vmlinuz\"", &format!("{outside:?}")),
                &files,
                fake_import,
                0,
            )
            .unwrap_err()
            .to_string();
            assert!(
                e.contains("boot_image \"linux-x64\".kernel") && e.contains("server.import_root"),
                "{outside}: {e}"
            );
        }
    }
}
