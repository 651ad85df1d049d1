//! The checks on a new deployment (docs/deployment-checks.md): references, deployment options, high-risk
//! deployments. The id sequence is in [`super::deployment_id`], templates in
//! [`super::templates`].
//!
//! Pure like the rest of [`crate::decision`]: what content the server holds is passed in
//! ([`NewDeployment::available_content`]), and writing the audit status message for an
//! accepted high-risk deployment is the caller's job, from the warnings returned.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::catalog::{
    AvailableTo, Catalog, Collection, CollectionKind, ContentFile, Deployment, DeploymentId,
    DeploymentOption, Device, Purpose, Schedule,
};

/// The site's deployment verification settings (docs/deployment-checks.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteSettings {
    /// A high-risk deployment to a collection with more members needs acceptance (100).
    pub default_size: usize,
    /// A high-risk deployment to a collection with more members is refused (1000).
    pub max_size: usize,
    /// A high-risk deployment to a collection holding a site system is refused (true), or
    /// needs acceptance (false).
    pub block_site_systems: bool,
}

impl Default for SiteSettings {
    fn default() -> SiteSettings {
        SiteSettings {
            default_size: 100,
            max_size: 1000,
            block_site_systems: true,
        }
    }
}

/// A deployment as an operator asks for it, before it has an id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewDeployment {
    /// The task sequence to deploy.
    pub task_sequence: String,
    /// The target collection.
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
    /// Images may come by multicast (docs/multicast.md).
    #[serde(default)]
    pub multicast: bool,
    /// Send wake-on-LAN packets to the collection (docs/operating.md).
    #[serde(default)]
    pub wake_on_lan: bool,
    /// Free text for operators.
    #[serde(default)]
    pub comments: String,
    /// Clients may install outside a maintenance window after the deadline.
    #[serde(default)]
    pub software_installation: bool,
    /// Clients download content ahead of the deadline.
    #[serde(default)]
    pub pre_download: bool,
    /// The operator accepts the high-risk warnings (`--accept-high-risk`).
    #[serde(default)]
    pub accept_high_risk: bool,
    /// SHA-256 of every file the server holds; filled by the server, never by a request.
    #[serde(skip)]
    pub available_content: BTreeSet<String>,
}

impl NewDeployment {
    /// True for a required deployment of a task sequence that installs an OS (docs/deployment-checks.md).
    pub fn is_high_risk(&self, catalog: &Catalog) -> bool {
        self.purpose == Purpose::Required
            && catalog
                .task_sequence(&self.task_sequence)
                .is_some_and(|ts| ts.installs_os())
    }

    /// The deployment to store once the checks passed.
    pub fn into_deployment(self, id: DeploymentId, created_at: i64) -> Deployment {
        Deployment {
            id,
            task_sequence: self.task_sequence,
            collection: self.collection,
            purpose: self.purpose,
            available_to: self.available_to,
            schedule: self.schedule,
            option: self.option,
            multicast: self.multicast,
            wake_on_lan: self.wake_on_lan,
            comments: self.comments,
            high_risk_accepted: self.accept_high_risk,
            software_installation: self.software_installation,
            pre_download: self.pre_download,
            created_at,
        }
    }
}

/// Something the operator is told; the deployment is created anyway (high-risk ones only with
/// acceptance, see [`Warning::needs_acceptance`]). `Display` gives the message to show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Warning {
    /// `direct_access`: the boot environment reads these packages from the package share and
    /// does not verify their hashes.
    #[error(
        "direct_access reads packages {} from the package share: their SHA-256 hashes are NOT verified",
        .packages.join(", ")
    )]
    DirectAccessUnverified {
        /// Every package the task sequence references.
        packages: Vec<String>,
    },
    /// High-risk: the collection is larger than `default_size` (but not than `max_size`).
    #[error(
        "high-risk: collection {collection} has {members} members, more than the default size {default_size}"
    )]
    HighRiskOverDefaultSize {
        /// The collection id.
        collection: String,
        /// Its member count now.
        members: usize,
        /// The site's `default_size`.
        default_size: usize,
    },
    /// High-risk: the collection holds site systems and the site does not block them.
    #[error("high-risk: collection {collection} holds site systems {}", .devices.join(", "))]
    HighRiskSiteSystem {
        /// The collection id.
        collection: String,
        /// The site-system devices, by name.
        devices: Vec<String>,
    },
    /// High-risk: the collection holds devices flagged `server`.
    #[error("high-risk: collection {collection} holds servers {}", .devices.join(", "))]
    HighRiskServer {
        /// The collection id.
        collection: String,
        /// The server devices, by name.
        devices: Vec<String>,
    },
    /// Wake-on-LAN is set on an available deployment, where it does nothing (docs/operating.md).
    #[error("wake-on-LAN only wakes machines for required deployments; this one is available")]
    WakeOnLanNotRequired,
}

impl Warning {
    /// A high-risk warning: the deployment is created only with an explicit acceptance, which
    /// writes an audit status message.
    pub fn needs_acceptance(&self) -> bool {
        matches!(
            self,
            Warning::HighRiskOverDefaultSize { .. }
                | Warning::HighRiskSiteSystem { .. }
                | Warning::HighRiskServer { .. }
        )
    }
}

/// Why a deployment cannot be created. Each names the reference or setting to fix; `Display`
/// gives the message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Refusal {
    /// The task sequence to deploy does not exist.
    #[error("task sequence {task_sequence} does not exist")]
    TaskSequenceMissing {
        /// The id asked for.
        task_sequence: String,
    },
    /// The target collection does not exist.
    #[error("collection {collection} does not exist")]
    CollectionMissing {
        /// The id asked for.
        collection: String,
    },
    /// The task sequence references a package that does not exist.
    #[error("task sequence {task_sequence} references package {package}, which does not exist")]
    PackageMissing {
        /// The task sequence id.
        task_sequence: String,
        /// The unresolved package id.
        package: String,
    },
    /// The task sequence references a boot image that does not exist.
    #[error(
        "task sequence {task_sequence} references boot image {boot_image}, which does not exist"
    )]
    BootImageMissing {
        /// The task sequence id.
        task_sequence: String,
        /// The unresolved boot image id.
        boot_image: String,
    },
    /// A task sequence without a boot image can only run in a client's full OS.
    #[error(
        "task sequence {task_sequence} has no boot image, so it cannot be made available to media and PXE ({available_to})"
    )]
    NoBootImage {
        /// The task sequence id.
        task_sequence: String,
        /// The availability asked for.
        available_to: AvailableTo,
    },
    /// A file of a referenced package or of the boot image is not on the server.
    #[error("{owner} file {path} (sha256 {sha256}) is not on the server")]
    ContentMissing {
        /// `package <id>` or `boot image <id>`.
        owner: String,
        /// The file's path in its package or boot image.
        path: String,
        /// The SHA-256 the server lacks.
        sha256: String,
    },
    /// `download_all` is not offered for media and PXE.
    #[error(
        "download_all is not allowed for a deployment available to media and PXE ({available_to}); use download_on_demand"
    )]
    DownloadAllWithMediaPxe {
        /// The availability asked for.
        available_to: AvailableTo,
    },
    /// `direct_access` needs every referenced package on the package share.
    #[error(
        "direct_access needs a package share on every referenced package; packages {} have none",
        .packages.join(", ")
    )]
    DirectAccessWithoutShare {
        /// The packages without `package_share`.
        packages: Vec<String>,
    },
    /// High-risk: a built-in collection other than `Unknown Computers`.
    #[error(
        "high-risk: built-in collection {collection} cannot be used; only custom collections and Unknown Computers"
    )]
    HighRiskBuiltinCollection {
        /// The collection id.
        collection: String,
    },
    /// High-risk: the collection is larger than `max_size`.
    #[error(
        "high-risk: collection {collection} has {members} members, more than the maximum size {max_size}"
    )]
    HighRiskOverMaxSize {
        /// The collection id.
        collection: String,
        /// Its member count now.
        members: usize,
        /// The site's `max_size`.
        max_size: usize,
    },
    /// High-risk: the collection holds site systems and the site blocks them.
    #[error(
        "high-risk: collection {collection} holds site systems {} and the site blocks them",
        .devices.join(", ")
    )]
    HighRiskSiteSystemBlocked {
        /// The collection id.
        collection: String,
        /// The site-system devices, by name.
        devices: Vec<String>,
    },
    /// High-risk warnings were raised and the request did not accept them.
    #[error(
        "high-risk deployment needs --accept-high-risk: {}",
        .warnings.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    )]
    HighRiskNotAccepted {
        /// The warnings to accept.
        warnings: Vec<Warning>,
    },
    /// The schedule ends before it starts.
    #[error("the deployment expires ({expires_at}) before it becomes available ({available_at})")]
    ExpiresBeforeAvailable {
        /// The available time asked for.
        available_at: i64,
        /// The expiry asked for.
        expires_at: i64,
    },
    /// A time of the schedule before 1970 or after the year 9999.
    #[error(
        "{field} {value} is not a time netdeploy can keep: Unix seconds from 0 to \
         {LAST_TIMESTAMP} (9999-12-31 23:59:59 UTC)"
    )]
    TimeOutOfRange {
        /// `available_at` or `expires_at`.
        field: String,
        /// The time asked for.
        value: i64,
    },
}

/// The last time a schedule may name: 9999-12-31 23:59:59 UTC, so that every date computed
/// from it (days, ISO 8601 text) fits.
pub const LAST_TIMESTAMP: i64 = 253_402_300_799;

/// Checks a new deployment against the catalog and the site settings (docs/deployment-checks.md).
///
/// Every problem is reported, not just the first. `Ok` carries the warnings to show; when any
/// of them [needs acceptance](Warning::needs_acceptance) the request had
/// `accept_high_risk` set, and the caller writes the audit status message (who, when, which
/// warnings). Membership is checked as it is now and never again later.
pub fn check_new_deployment(
    catalog: &Catalog,
    new: &NewDeployment,
    site: &SiteSettings,
) -> Result<Vec<Warning>, Vec<Refusal>> {
    check_new_deployment_with(catalog, &|c| catalog.members(c), new, site)
}

/// [`check_new_deployment`], with the members of a collection found by `members` (which
/// answers as [`Catalog::members`]): a site file checks hundreds of deployments against one
/// catalog and looks members up by name
/// ([`DevicesByName`](crate::catalog::membership::DevicesByName)).
pub fn check_new_deployment_with<'a>(
    catalog: &'a Catalog,
    members: &dyn Fn(&Collection) -> Vec<&'a Device>,
    new: &NewDeployment,
    site: &SiteSettings,
) -> Result<Vec<Warning>, Vec<Refusal>> {
    let mut refusals = Vec::new();
    let mut warnings = Vec::new();

    for (field, at) in [
        ("available_at", new.schedule.available_at),
        ("expires_at", new.schedule.expires_at),
    ] {
        if let Some(value) = at.filter(|t| !(0..=LAST_TIMESTAMP).contains(t)) {
            refusals.push(Refusal::TimeOutOfRange {
                field: field.into(),
                value,
            });
        }
    }
    if let (Some(available_at), Some(expires_at)) =
        (new.schedule.available_at, new.schedule.expires_at)
    {
        if expires_at <= available_at {
            refusals.push(Refusal::ExpiresBeforeAvailable {
                available_at,
                expires_at,
            });
        }
    }
    if new.wake_on_lan && new.purpose == Purpose::Available {
        warnings.push(Warning::WakeOnLanNotRequired);
    }

    let ts = catalog.task_sequence(&new.task_sequence);
    match ts {
        None => refusals.push(Refusal::TaskSequenceMissing {
            task_sequence: new.task_sequence.clone(),
        }),
        Some(ts) => {
            check_references(catalog, new, ts, &mut refusals, &mut warnings);
        }
    }

    let collection = catalog.collection(&new.collection);
    if collection.is_none() {
        refusals.push(Refusal::CollectionMissing {
            collection: new.collection.clone(),
        });
    }
    if let (Some(collection), true) = (collection, new.is_high_risk(catalog)) {
        let before = warnings.len();
        check_high_risk(members, collection, site, &mut refusals, &mut warnings);
        let high_risk: Vec<Warning> = warnings[before..]
            .iter()
            .filter(|w| w.needs_acceptance())
            .cloned()
            .collect();
        if !high_risk.is_empty() && !new.accept_high_risk {
            refusals.push(Refusal::HighRiskNotAccepted {
                warnings: high_risk,
            });
        }
    }

    if refusals.is_empty() {
        Ok(warnings)
    } else {
        Err(refusals)
    }
}

/// Packages, boot image, content and the deployment option of a resolved task sequence.
fn check_references(
    catalog: &Catalog,
    new: &NewDeployment,
    ts: &crate::catalog::TaskSequence,
    refusals: &mut Vec<Refusal>,
    warnings: &mut Vec<Warning>,
) {
    let mut missing_content = |owner: String, files: &[ContentFile]| {
        for f in files {
            if !new.available_content.contains(&f.sha256) {
                refusals.push(Refusal::ContentMissing {
                    owner: owner.clone(),
                    path: f.path.clone(),
                    sha256: f.sha256.clone(),
                });
            }
        }
    };

    let mut packages = Vec::new();
    let mut unresolved = Vec::new();
    for id in ts.referenced_packages() {
        match catalog.package(id) {
            Some(p) => {
                missing_content(format!("package {}", p.id), &p.files);
                packages.push(p);
            }
            None => unresolved.push(id),
        }
    }
    match ts.boot_image.as_deref() {
        Some(image_id) => match catalog.boot_image(image_id) {
            Some(image) => missing_content(format!("boot image {}", image.id), &image.files),
            None => refusals.push(Refusal::BootImageMissing {
                task_sequence: ts.id.clone(),
                boot_image: image_id.to_string(),
            }),
        },
        None if new.available_to.reaches_media_pxe() => refusals.push(Refusal::NoBootImage {
            task_sequence: ts.id.clone(),
            available_to: new.available_to,
        }),
        None => {}
    }
    for package in unresolved {
        refusals.push(Refusal::PackageMissing {
            task_sequence: ts.id.clone(),
            package: package.to_string(),
        });
    }

    match new.option {
        DeploymentOption::DownloadOnDemand => {}
        DeploymentOption::DownloadAll => {
            if new.available_to.reaches_media_pxe() {
                refusals.push(Refusal::DownloadAllWithMediaPxe {
                    available_to: new.available_to,
                });
            }
        }
        DeploymentOption::DirectAccess => {
            let unshared: Vec<String> = packages
                .iter()
                .filter(|p| !p.package_share)
                .map(|p| p.id.clone())
                .collect();
            if unshared.is_empty() {
                warnings.push(Warning::DirectAccessUnverified {
                    packages: packages.iter().map(|p| p.id.clone()).collect(),
                });
            } else {
                refusals.push(Refusal::DirectAccessWithoutShare { packages: unshared });
            }
        }
    }
}

/// The high-risk rules of docs/deployment-checks.md for a required, OS-installing deployment.
fn check_high_risk<'a>(
    members: &dyn Fn(&Collection) -> Vec<&'a Device>,
    collection: &Collection,
    site: &SiteSettings,
    refusals: &mut Vec<Refusal>,
    warnings: &mut Vec<Warning>,
) {
    let id = || collection.id.clone();
    if matches!(collection.kind, CollectionKind::AllSystems) {
        refusals.push(Refusal::HighRiskBuiltinCollection { collection: id() });
        return;
    }
    let members = members(collection);
    if members.len() > site.max_size {
        refusals.push(Refusal::HighRiskOverMaxSize {
            collection: id(),
            members: members.len(),
            max_size: site.max_size,
        });
    } else if members.len() > site.default_size {
        warnings.push(Warning::HighRiskOverDefaultSize {
            collection: id(),
            members: members.len(),
            default_size: site.default_size,
        });
    }
    let site_systems: Vec<String> = members
        .iter()
        .filter(|d| d.site_system)
        .map(|d| d.name.clone())
        .collect();
    if !site_systems.is_empty() {
        if site.block_site_systems {
            refusals.push(Refusal::HighRiskSiteSystemBlocked {
                collection: id(),
                devices: site_systems,
            });
        } else {
            warnings.push(Warning::HighRiskSiteSystem {
                collection: id(),
                devices: site_systems,
            });
        }
    }
    let servers: Vec<String> = members
        .iter()
        .filter(|d| d.server)
        .map(|d| d.name.clone())
        .collect();
    if !servers.is_empty() {
        warnings.push(Warning::HighRiskServer {
            collection: id(),
            devices: servers,
        });
    }
}

/// The collections to offer for a high-risk deployment (docs/deployment-checks.md): custom collections and
/// `Unknown Computers`, without those [`check_new_deployment`] would refuse (over `max_size`,
/// or holding a site system when the site blocks them). Collections with more members than
/// `default_size` are hidden unless `show_up_to_max`. Catalog order.
pub fn collections_for_high_risk<'a>(
    catalog: &'a Catalog,
    site: &SiteSettings,
    show_up_to_max: bool,
) -> Vec<&'a Collection> {
    let limit = if show_up_to_max {
        site.max_size
    } else {
        site.default_size.min(site.max_size)
    };
    catalog
        .collections
        .iter()
        .filter(|c| !matches!(c.kind, CollectionKind::AllSystems))
        .filter(|c| {
            let members = catalog.members(c);
            members.len() <= limit
                && !(site.block_site_systems && members.iter().any(|d| d.site_system))
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {

    use super::*;
    use crate::catalog::{
        AvailableTo::*, BootImage, BootImageKind, Device, ImageArch, Package, Purpose::*, Step,
        StepAction, TaskSequence,
    };

    const SITE: SiteSettings = SiteSettings {
        default_size: 100,
        max_size: 1000,
        block_site_systems: true,
    };

    fn file(path: &str, sha: &str) -> ContentFile {
        ContentFile {
            path: path.into(),
            size: 1,
            sha256: sha.into(),
        }
    }

    fn step(action: StepAction, package: Option<&str>) -> Step {
        Step {
            name: format!("{action:?}"),
            action,
            package: package.map(Into::into),
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
        }
    }

    fn device(name: String) -> Device {
        Device {
            name,
            macs: vec![],
            uuid: None,
            server: false,
            site_system: false,
        }
    }

    fn custom(id: &str, members: &[String]) -> Collection {
        Collection {
            id: id.into(),
            name: id.to_lowercase(),
            kind: CollectionKind::Custom {
                members: members.to_vec(),
            },
        }
    }

    /// A catalog with `os` (installs an OS from `image`, boot image `bi-x64`), `tools` (runs
    /// a command from `scripts`, no boot image), `size` devices `dev-0000...` and custom
    /// collection `SIZED` holding them all, plus the built-ins.
    fn catalog(size: usize) -> Catalog {
        let names: Vec<String> = (0..size).map(|i| format!("dev-{i:04}")).collect();
        Catalog {
            devices: names.iter().cloned().map(device).collect(),
            collections: vec![
                Collection {
                    id: "SMS00001".into(),
                    name: "All Systems".into(),
                    kind: CollectionKind::AllSystems,
                },
                Collection {
                    id: "SMS000US".into(),
                    name: "Unknown Computers".into(),
                    kind: CollectionKind::UnknownComputers,
                },
                custom("SIZED", &names),
            ],
            packages: vec![
                Package {
                    id: "image".into(),
                    version: 1,
                    files: vec![file("os.wim", "aa")],
                    package_share: true,
                },
                Package {
                    id: "scripts".into(),
                    version: 1,
                    files: vec![file("setup.sh", "bb")],
                    package_share: true,
                },
                Package {
                    id: "drivers".into(),
                    version: 3,
                    files: vec![file("net.inf", "cc")],
                    package_share: false,
                },
            ],
            boot_images: vec![BootImage {
                id: "bi-x64".into(),
                arch: ImageArch::X64,
                kind: BootImageKind::WinPe,
                files: vec![file("boot.wim", "dd")],
                cmdline: String::new(),
                pre_production: false,
                replaces: None,
            }],
            task_sequences: vec![
                TaskSequence {
                    id: "os".into(),
                    name: "install".into(),
                    boot_image: Some("bi-x64".into()),
                    steps: vec![
                        step(StepAction::PartitionDisk, None),
                        step(StepAction::ApplyImage, Some("image")),
                    ],
                    packages: vec![],
                },
                TaskSequence {
                    id: "tools".into(),
                    name: "tools".into(),
                    boot_image: None,
                    steps: vec![step(StepAction::RunCommand, Some("scripts"))],
                    packages: vec![],
                },
            ],
            deployments: vec![],
        }
    }

    fn all_content() -> BTreeSet<String> {
        ["aa", "bb", "cc", "dd"].map(String::from).into()
    }

    /// A deployment request of `task_sequence` to `collection`, to media and PXE, with every
    /// file's content on the server.
    pub(crate) fn new(task_sequence: &str, collection: &str, purpose: Purpose) -> NewDeployment {
        NewDeployment {
            task_sequence: task_sequence.into(),
            collection: collection.into(),
            purpose,
            available_to: MediaPxe,
            schedule: Schedule::default(),
            option: DeploymentOption::DownloadOnDemand,
            multicast: false,
            wake_on_lan: false,
            comments: String::new(),
            software_installation: false,
            pre_download: false,
            accept_high_risk: false,
            available_content: all_content(),
        }
    }

    #[test]
    fn unresolved_references_are_named() {
        let mut c = catalog(3);
        c.task_sequences.push(TaskSequence {
            id: "broken".into(),
            name: "broken".into(),
            boot_image: Some("bi-gone".into()),
            steps: vec![step(StepAction::InstallPackage, Some("pkg-gone"))],
            packages: vec!["drivers".into()],
        });
        let table: Vec<(&str, NewDeployment, Vec<Refusal>)> = vec![
            (
                "task sequence missing",
                new("nope", "SIZED", Available),
                vec![Refusal::TaskSequenceMissing {
                    task_sequence: "nope".into(),
                }],
            ),
            (
                "collection missing",
                new("os", "NOPE", Available),
                vec![Refusal::CollectionMissing {
                    collection: "NOPE".into(),
                }],
            ),
            (
                "package and boot image missing",
                new("broken", "SIZED", Available),
                vec![
                    Refusal::BootImageMissing {
                        task_sequence: "broken".into(),
                        boot_image: "bi-gone".into(),
                    },
                    Refusal::PackageMissing {
                        task_sequence: "broken".into(),
                        package: "pkg-gone".into(),
                    },
                ],
            ),
            (
                "content not on the server",
                NewDeployment {
                    available_content: ["bb", "cc"].map(String::from).into(),
                    ..new("os", "SIZED", Available)
                },
                vec![
                    Refusal::ContentMissing {
                        owner: "package image".into(),
                        path: "os.wim".into(),
                        sha256: "aa".into(),
                    },
                    Refusal::ContentMissing {
                        owner: "boot image bi-x64".into(),
                        path: "boot.wim".into(),
                        sha256: "dd".into(),
                    },
                ],
            ),
            (
                "no boot image, offered to media and pxe",
                new("tools", "SIZED", Available),
                vec![Refusal::NoBootImage {
                    task_sequence: "tools".into(),
                    available_to: MediaPxe,
                }],
            ),
        ];
        for (name, request, refusals) in table {
            assert_eq!(
                check_new_deployment(&c, &request, &SITE),
                Err(refusals),
                "{name}"
            );
        }
        let clients_only = NewDeployment {
            available_to: Clients,
            ..new("tools", "SIZED", Available)
        };
        assert_eq!(check_new_deployment(&c, &clients_only, &SITE), Ok(vec![]));
        let err = Refusal::PackageMissing {
            task_sequence: "broken".into(),
            package: "pkg-gone".into(),
        };
        assert!(err.to_string().contains("pkg-gone"), "{err}");
    }

    #[test]
    fn download_all_is_refused_when_available_to_media_or_pxe() {
        let c = catalog(3);
        for (to, refused) in [
            (Clients, false),
            (ClientsMediaPxe, true),
            (MediaPxe, true),
            (MediaPxeHidden, true),
        ] {
            let request = NewDeployment {
                available_to: to,
                option: DeploymentOption::DownloadAll,
                ..new("os", "SIZED", Available)
            };
            let got = check_new_deployment(&c, &request, &SITE);
            if refused {
                assert_eq!(
                    got,
                    Err(vec![Refusal::DownloadAllWithMediaPxe { available_to: to }]),
                    "{to}"
                );
            } else {
                assert_eq!(got, Ok(vec![]), "{to}");
            }
        }
    }

    #[test]
    fn direct_access_needs_package_share_everywhere_and_warns_hashes_are_not_verified() {
        let mut c = catalog(3);
        let request = NewDeployment {
            option: DeploymentOption::DirectAccess,
            ..new("os", "SIZED", Available)
        };
        let warnings = check_new_deployment(&c, &request, &SITE).unwrap();
        assert_eq!(
            warnings,
            vec![Warning::DirectAccessUnverified {
                packages: vec!["image".into()]
            }]
        );
        assert!(warnings[0].to_string().contains("NOT verified"));
        assert!(!warnings[0].needs_acceptance());

        c.task_sequences[0].packages.push("drivers".into());
        assert_eq!(
            check_new_deployment(&c, &request, &SITE),
            Err(vec![Refusal::DirectAccessWithoutShare {
                packages: vec!["drivers".into()]
            }])
        );
    }

    fn high_risk(collection: &str) -> NewDeployment {
        new("os", collection, Required)
    }

    fn over_default(members: usize) -> Warning {
        Warning::HighRiskOverDefaultSize {
            collection: "SIZED".into(),
            members,
            default_size: 100,
        }
    }

    #[test]
    fn high_risk_collection_size_around_default_and_max_size() {
        enum Want {
            Clean,
            Warned,
            Refused,
        }
        for (members, want) in [
            (99, Want::Clean),
            (100, Want::Clean),
            (101, Want::Warned),
            (999, Want::Warned),
            (1000, Want::Warned),
            (1001, Want::Refused),
        ] {
            let c = catalog(members);
            let unaccepted = check_new_deployment(&c, &high_risk("SIZED"), &SITE);
            let accepted = check_new_deployment(
                &c,
                &NewDeployment {
                    accept_high_risk: true,
                    ..high_risk("SIZED")
                },
                &SITE,
            );
            match want {
                Want::Clean => {
                    assert_eq!(unaccepted, Ok(vec![]), "{members}");
                    assert_eq!(accepted, Ok(vec![]), "{members}");
                }
                Want::Warned => {
                    assert_eq!(
                        unaccepted,
                        Err(vec![Refusal::HighRiskNotAccepted {
                            warnings: vec![over_default(members)]
                        }]),
                        "{members}"
                    );
                    assert_eq!(accepted, Ok(vec![over_default(members)]), "{members}");
                }
                Want::Refused => {
                    let refusal = Refusal::HighRiskOverMaxSize {
                        collection: "SIZED".into(),
                        members,
                        max_size: 1000,
                    };
                    assert_eq!(unaccepted, Err(vec![refusal.clone()]), "{members}");
                    assert_eq!(accepted, Err(vec![refusal]), "{members}");
                }
            }
        }
    }

    #[test]
    fn high_risk_refuses_builtin_collections_except_unknown_computers() {
        let c = catalog(3);
        for accept in [false, true] {
            let all = NewDeployment {
                accept_high_risk: accept,
                ..high_risk("SMS00001")
            };
            assert_eq!(
                check_new_deployment(&c, &all, &SITE),
                Err(vec![Refusal::HighRiskBuiltinCollection {
                    collection: "SMS00001".into()
                }])
            );
        }
        assert_eq!(
            check_new_deployment(&c, &high_risk("SMS000US"), &SITE),
            Ok(vec![])
        );
    }

    #[test]
    fn high_risk_site_systems_are_refused_when_blocked_and_warned_otherwise() {
        let mut c = catalog(50);
        c.devices[7].site_system = true;
        let blocked = check_new_deployment(
            &c,
            &NewDeployment {
                accept_high_risk: true,
                ..high_risk("SIZED")
            },
            &SITE,
        );
        assert_eq!(
            blocked,
            Err(vec![Refusal::HighRiskSiteSystemBlocked {
                collection: "SIZED".into(),
                devices: vec!["dev-0007".into()],
            }])
        );
        let warn_only = SiteSettings {
            block_site_systems: false,
            ..SITE
        };
        let warning = Warning::HighRiskSiteSystem {
            collection: "SIZED".into(),
            devices: vec!["dev-0007".into()],
        };
        assert_eq!(
            check_new_deployment(&c, &high_risk("SIZED"), &warn_only),
            Err(vec![Refusal::HighRiskNotAccepted {
                warnings: vec![warning.clone()]
            }])
        );
        assert_eq!(
            check_new_deployment(
                &c,
                &NewDeployment {
                    accept_high_risk: true,
                    ..high_risk("SIZED")
                },
                &warn_only
            ),
            Ok(vec![warning])
        );
    }

    #[test]
    fn high_risk_servers_and_every_warning_need_acceptance() {
        let mut c = catalog(101);
        c.devices[3].server = true;
        c.devices[4].site_system = true;
        let site = SiteSettings {
            block_site_systems: false,
            ..SITE
        };
        let expected = vec![
            over_default(101),
            Warning::HighRiskSiteSystem {
                collection: "SIZED".into(),
                devices: vec!["dev-0004".into()],
            },
            Warning::HighRiskServer {
                collection: "SIZED".into(),
                devices: vec!["dev-0003".into()],
            },
        ];
        assert!(expected.iter().all(Warning::needs_acceptance));
        assert_eq!(
            check_new_deployment(&c, &high_risk("SIZED"), &site),
            Err(vec![Refusal::HighRiskNotAccepted {
                warnings: expected.clone()
            }])
        );
        let accepted = NewDeployment {
            accept_high_risk: true,
            ..high_risk("SIZED")
        };
        assert_eq!(check_new_deployment(&c, &accepted, &site), Ok(expected));
        let stored = accepted.into_deployment("LAB00001".parse().unwrap(), 7);
        assert!(stored.high_risk_accepted);
    }

    #[test]
    fn only_required_os_installs_are_high_risk() {
        let mut c = catalog(1001);
        c.devices[0].server = true;
        c.devices[1].site_system = true;
        // Available: no high-risk checks, whatever the collection.
        for collection in ["SIZED", "SMS00001"] {
            assert_eq!(
                check_new_deployment(&c, &new("os", collection, Available), &SITE),
                Ok(vec![]),
                "{collection}"
            );
        }
        // Required, but installs no OS.
        let tools = NewDeployment {
            available_to: Clients,
            ..new("tools", "SMS00001", Required)
        };
        assert_eq!(check_new_deployment(&c, &tools, &SITE), Ok(vec![]));
    }

    #[test]
    fn schedule_and_wake_on_lan_sanity() {
        let c = catalog(3);
        let backwards = NewDeployment {
            schedule: Schedule {
                available_at: Some(200),
                expires_at: Some(100),
                ..Schedule::default()
            },
            ..new("os", "SIZED", Available)
        };
        assert_eq!(
            check_new_deployment(&c, &backwards, &SITE),
            Err(vec![Refusal::ExpiresBeforeAvailable {
                available_at: 200,
                expires_at: 100
            }])
        );
        let overflowing = NewDeployment {
            schedule: Schedule {
                available_at: Some(-1),
                expires_at: Some(i64::MAX),
                ..Schedule::default()
            },
            ..new("os", "SIZED", Available)
        };
        assert_eq!(
            check_new_deployment(&c, &overflowing, &SITE),
            Err(vec![
                Refusal::TimeOutOfRange {
                    field: "available_at".into(),
                    value: -1
                },
                Refusal::TimeOutOfRange {
                    field: "expires_at".into(),
                    value: i64::MAX
                }
            ])
        );
        let wol = NewDeployment {
            wake_on_lan: true,
            ..new("os", "SIZED", Available)
        };
        assert_eq!(
            check_new_deployment(&c, &wol, &SITE),
            Ok(vec![Warning::WakeOnLanNotRequired])
        );
    }

    #[test]
    fn collections_for_high_risk_hide_those_over_default_size() {
        let names = |n: usize| -> Vec<String> { (0..n).map(|i| format!("dev-{i:04}")).collect() };
        let mut c = catalog(1001);
        c.collections.retain(|col| col.id != "SIZED");
        for n in [99, 100, 101, 1000, 1001] {
            c.collections.push(custom(&format!("C{n}"), &names(n)));
        }
        c.devices[1000].site_system = true;
        c.collections
            .push(custom("SITESYS", &["dev-1000".to_string()]));
        let ids = |site: &SiteSettings, show: bool| -> Vec<String> {
            collections_for_high_risk(&c, site, show)
                .iter()
                .map(|col| col.id.clone())
                .collect()
        };
        assert_eq!(ids(&SITE, false), ["SMS000US", "C99", "C100"]);
        assert_eq!(
            ids(&SITE, true),
            ["SMS000US", "C99", "C100", "C101", "C1000"]
        );
        let warn_only = SiteSettings {
            block_site_systems: false,
            ..SITE
        };
        assert_eq!(
            ids(&warn_only, false),
            ["SMS000US", "C99", "C100", "SITESYS"]
        );
    }
}
