//! The site file: a whole lab's catalog declared in TOML and applied in one command
//! (`netdeploy site apply FILE`). Parsing and the difference between two catalogs are pure; the
//! files a boot image names are imported through a closure the caller passes (the content
//! library), so this module does no I/O itself.
//!
//! ```toml
//! site_code = "LAB"
//! [settings]                      # SPEC section 4 and rule 9; these are the defaults
//! default_size = 100
//! max_size = 1000
//! block_site_systems = true
//! unknown_computers = true
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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::model::*;
use crate::decision::checks::SiteSettings;

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
    #[error("{what}: {source}")]
    Import {
        what: String,
        source: crate::content::ContentError,
    },
}

fn invalid(what: impl Into<String>, reason: impl Into<String>) -> SiteError {
    SiteError::Invalid {
        what: what.into(),
        reason: reason.into(),
    }
}

/// Site-wide settings (SPEC section 4 sizes, rule 9 switches).
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
    /// The collection that gets pre-production boot images (SPEC section 8).
    #[serde(default)]
    pub pre_production_collection: Option<String>,
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
        }
    }
}

impl Settings {
    /// The section 4 sizes as the checks take them.
    pub fn checks(&self) -> SiteSettings {
        SiteSettings {
            default_size: self.default_size,
            max_size: self.max_size,
            block_site_systems: self.block_site_systems,
        }
    }
}

#[derive(Debug, Deserialize)]
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

#[derive(Debug, Deserialize)]
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireCollection {
    id: String,
    name: Option<String>,
    #[serde(default)]
    members: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WirePackage {
    id: String,
    #[serde(default)]
    version: u32,
    /// A directory whose files make up the package.
    from: PathBuf,
    #[serde(default)]
    package_share: bool,
}

#[derive(Debug, Deserialize)]
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireStep {
    name: String,
    action: StepAction,
    package: Option<String>,
    command: Option<String>,
    file: Option<String>,
    target: Option<String>,
    variable: Option<String>,
    value: Option<String>,
}

#[derive(Debug, Deserialize)]
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireDeployment {
    id: String,
    task_sequence: String,
    collection: String,
    purpose: Purpose,
    available_to: AvailableTo,
    #[serde(default)]
    option: DeploymentOption,
    #[serde(default)]
    rerun: Rerun,
    available_at: Option<i64>,
    expires_at: Option<i64>,
    #[serde(default)]
    wake_on_lan: bool,
    #[serde(default)]
    comments: String,
    /// The operator accepts the high-risk warnings of section 4 for this deployment.
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

/// Parses a site file. `base` resolves relative paths; `import` stores one file in the content
/// library and returns its hash (`import(source, name_in_package)`). `now` stamps new
/// deployments.
pub fn parse(
    text: &str,
    base: &Path,
    mut import: impl FnMut(&Path, &str) -> Result<ContentFile, crate::content::ContentError>,
    now: i64,
) -> Result<Site, SiteError> {
    let f: File = toml::from_str(text).map_err(|e| SiteError::Parse(e.to_string()))?;
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
    for d in f.device {
        let what = format!("device {:?}", d.name);
        let macs = d
            .macs
            .iter()
            .map(|m| m.parse::<crate::dhcp::packet::Mac>())
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
    }
    for c in f.collection {
        if c.id == ALL_SYSTEMS || c.id == UNKNOWN_COMPUTERS {
            return Err(invalid(
                format!("collection {:?}", c.id),
                "is built in and cannot be declared",
            ));
        }
        for m in &c.members {
            if catalog.device(m).is_none() {
                return Err(invalid(
                    format!("collection {:?}", c.id),
                    format!("member {m:?} is not a declared device"),
                ));
            }
        }
        catalog.collections.push(Collection {
            name: c.name.unwrap_or_else(|| c.id.clone()),
            id: c.id,
            kind: CollectionKind::Custom { members: c.members },
        });
    }
    for p in f.package {
        let what = format!("package {:?}", p.id);
        let dir = base.join(&p.from);
        let mut files = Vec::new();
        let sources = package_files(&dir)
            .map_err(|e| invalid(&what, format!("cannot read {}: {e}", dir.display())))?;
        for (rel, source, _) in sources {
            files.push(import(&source, &rel).map_err(|source| SiteError::Import {
                what: what.clone(),
                source,
            })?);
        }
        catalog.packages.push(Package {
            id: p.id,
            version: p.version,
            files,
            package_share: p.package_share,
        });
    }
    for b in f.boot_image {
        let what = format!("boot_image {:?}", b.id);
        let mut files = Vec::new();
        if b.kind == BootImageKind::WinPe {
            let sources = [&b.wimboot, &b.bootmgr, &b.bcd, &b.boot_sdi, &b.boot_wim];
            for (name, source) in WINPE_FILES.iter().zip(sources) {
                let Some(source) = source else {
                    return Err(invalid(
                        what,
                        format!("a winpe boot image needs {} (wimboot, bootmgr, bcd, boot_sdi, boot_wim)", name.to_lowercase()),
                    ));
                };
                files.push(import(&base.join(source), name).map_err(|source| {
                    SiteError::Import {
                        what: what.clone(),
                        source,
                    }
                })?);
            }
        }
        if b.kind == BootImageKind::Linux {
            let Some(kernel) = &b.kernel else {
                return Err(invalid(what, "a linux boot image needs a kernel"));
            };
            files.push(import(&base.join(kernel), "kernel").map_err(|source| {
                SiteError::Import {
                    what: what.clone(),
                    source,
                }
            })?);
            if let Some(initrd) = &b.initrd {
                files.push(import(&base.join(initrd), "initrd").map_err(|source| {
                    SiteError::Import {
                        what: what.clone(),
                        source,
                    }
                })?);
            }
        }
        catalog.boot_images.push(BootImage {
            id: b.id,
            arch: b.arch,
            kind: b.kind,
            files,
            cmdline: b.cmdline,
            pre_production: b.pre_production,
            replaces: b.replaces,
        });
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
                })
                .collect(),
            packages: t.packages,
        });
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
            wake_on_lan: d.wake_on_lan,
            comments: d.comments,
            high_risk_accepted: d.accept_high_risk,
            software_installation: false,
            pre_download: false,
            created_at: now,
        });
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

/// The difference between the stored catalog and the declared one.
pub fn diff(old: &Catalog, new: &Catalog) -> Changes {
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

    fn fake_import(_: &Path, name: &str) -> Result<ContentFile, crate::content::ContentError> {
        Ok(ContentFile {
            path: name.into(),
            size: 1,
            sha256: "0".repeat(64),
        })
    }

    #[test]
    fn a_site_file_declares_a_catalog_with_the_builtin_collections() {
        let s = parse(SITE, Path::new("/"), fake_import, 7).unwrap();
        assert_eq!(s.site_code, "LAB");
        assert_eq!(s.catalog.collections.len(), 3);
        assert_eq!(s.catalog.boot_images[0].files[0].path, "kernel");
        assert_eq!(s.catalog.deployments[0].id.to_string(), "LAB00001");
    }

    #[test]
    fn applying_the_same_file_twice_changes_nothing() {
        let a = parse(SITE, Path::new("/"), fake_import, 1).unwrap().catalog;
        let b = parse(SITE, Path::new("/"), fake_import, 2).unwrap().catalog;
        assert!(diff(&a, &b).is_empty());
        let ch = diff(&Catalog::default(), &a);
        assert!(
            ch.created.contains(&"deployment LAB00001".to_string()),
            "{ch:?}"
        );
        let ch = diff(&a, &Catalog::default());
        assert_eq!(ch.removed.len(), 7, "{ch:?}");
    }

    #[test]
    fn errors_name_the_object_or_the_line() {
        let e = parse(
            &SITE.replace("members = [\"pc1\"]", "members = [\"pc9\"]"),
            Path::new("/"),
            fake_import,
            0,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("collection \"lab\"") && e.contains("pc9"), "{e}");
        let e = parse(
            &SITE.replace("purpose = \"required\"", "purpose = \"mandatory\""),
            Path::new("/"),
            fake_import,
            0,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("line"), "{e}");
        let e = parse(
            &SITE.replace("id = \"LAB00001\"", "id = \"XYZ00001\""),
            Path::new("/"),
            fake_import,
            0,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("site code"), "{e}");
    }
}
