//! Catalog commands: site files, objects, deployments, explain, the PXE loop guard.
//! They open the database in the data directory directly; SQLite lets them run beside a
//! running server, whose next decision sees the change.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand, ValueEnum};

use netdeploy::bootpath::now;
use netdeploy::catalog::site;
use netdeploy::catalog::*;
use netdeploy::content::Library;
use netdeploy::decision::checks::{self, NewDeployment};
use netdeploy::decision::{self, Context};
use netdeploy::dhcp::packet::Mac;
use netdeploy::store::catalog as stored;
use netdeploy::store::Store;

pub use super::locate::DataDir;

#[derive(Debug, Subcommand)]
pub enum SiteCommand {
    /// Make the catalog what a site file declares: creates, changes and removes objects so
    /// that applying the same file again changes nothing. Deployments pass every check of
    /// SPEC section 4 first; nothing is written if one is refused.
    Apply { file: PathBuf },
    /// Print the stored catalog as JSON.
    Show,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Kind {
    Device,
    Collection,
    Package,
    BootImage,
    TaskSequence,
    Deployment,
}

impl Kind {
    fn store_kind(self) -> &'static str {
        match self {
            Kind::Device => "device",
            Kind::Collection => "collection",
            Kind::Package => "package",
            Kind::BootImage => "boot_image",
            Kind::TaskSequence => "task_sequence",
            Kind::Deployment => "deployment",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum ObjectCommand {
    /// One line per object.
    List,
    /// One object as JSON.
    Show { id: String },
    /// Delete one object (a deployment, collection or device still referenced is refused).
    Delete { id: String },
}

#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// Add or replace a device.
    Create {
        #[arg(long)]
        name: String,
        /// A MAC address the machine boots from (repeat for several).
        #[arg(long = "mac")]
        macs: Vec<String>,
        /// The SMBIOS UUID (`/sys/class/dmi/id/product_uuid`).
        #[arg(long)]
        uuid: Option<String>,
        #[arg(long)]
        server: bool,
        #[arg(long)]
        site_system: bool,
    },
    #[command(flatten)]
    Object(ObjectCommand),
}

#[derive(Debug, Subcommand)]
pub enum CollectionCommand {
    /// Add or replace a custom collection.
    Create {
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: Option<String>,
        /// A member device name (repeat for several).
        #[arg(long = "member")]
        members: Vec<String>,
    },
    #[command(flatten)]
    Object(ObjectCommand),
}

#[derive(Debug, Subcommand)]
pub enum BootImageCommand {
    /// Make a pre-production boot image the production one it replaces (SPEC section 8): the
    /// production image takes its files and command line, and the pre-production one goes.
    Promote { id: String },
    /// Import a Linux boot image (kernel and initrd are hashed into the content library).
    Create {
        #[arg(long)]
        id: String,
        #[arg(long, value_enum)]
        arch: ImageArch,
        #[arg(long)]
        kernel: PathBuf,
        #[arg(long)]
        initrd: Option<PathBuf>,
        #[arg(long, default_value = "")]
        cmdline: String,
    },
    #[command(flatten)]
    Object(ObjectCommand),
}

#[derive(Debug, Subcommand)]
pub enum ContentCommand {
    /// Remove the files of the content library that no package or boot image of the catalog
    /// holds (the server does not serve them either), and temporary files of imports whose
    /// process has ended. Prints each file removed and the bytes freed. Run it while no site
    /// file or package is being imported.
    Gc {
        /// Print what would be removed, and remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum PackageCommand {
    /// Import a directory as a package: every file is hashed (SHA-256) once and stored once in
    /// the content library (`netdeploy package add ID --from DIR`).
    #[command(visible_alias = "add")]
    Create {
        /// The package id.
        #[arg(value_name = "ID", required_unless_present = "id_flag")]
        id: Option<String>,
        /// The package id, as an option.
        #[arg(long = "id", hide = true, conflicts_with = "id")]
        id_flag: Option<String>,
        /// The directory whose files make up the package.
        #[arg(long)]
        from: PathBuf,
        /// Content version, raised on every change of the files.
        #[arg(long = "package-version", default_value_t = 1)]
        package_version: u32,
        /// The content may be read straight from the server (the direct_access option).
        #[arg(long)]
        package_share: bool,
    },
    #[command(flatten)]
    Object(ObjectCommand),
}

#[derive(Debug, Subcommand)]
pub enum TaskSequenceCommand {
    /// Add or replace a task sequence.
    Create {
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        boot_image: Option<String>,
        /// A step, in order: `ACTION:NAME[:ARGUMENT]`, where ACTION is partition, apply_image,
        /// apply_os, run_command, install_package or reboot, and ARGUMENT is the command of a
        /// run_command step or the package of the others (repeat for several steps).
        #[arg(long = "step")]
        steps: Vec<String>,
        /// A package referenced besides those of the steps (repeat for several).
        #[arg(long = "package")]
        packages: Vec<String>,
    },
    #[command(flatten)]
    Object(ObjectCommand),
}

#[derive(Debug, Subcommand)]
pub enum DeploymentCommand {
    /// Deploy a task sequence to a collection, after every check of SPEC section 4.
    ///
    /// The id is the site code and the next 5 hex digits. A high-risk deployment (required,
    /// installing an OS) is refused for built-in collections other than Unknown Computers,
    /// collections over max_size and (when blocked) collections holding site systems; it needs
    /// --accept-high-risk for collections over default_size, with site systems or servers.
    Create {
        #[arg(long)]
        task_sequence: Option<String>,
        #[arg(long)]
        collection: Option<String>,
        #[arg(long, value_enum)]
        purpose: Option<Purpose>,
        #[arg(long, value_enum)]
        available_to: Option<AvailableTo>,
        #[arg(long = "option", value_enum)]
        deployment_option: Option<DeploymentOption>,
        #[arg(long, value_enum, default_value = "always")]
        rerun: Rerun,
        /// Unix time before which running clients are not offered it (PXE and media ignore it).
        #[arg(long)]
        available_at: Option<i64>,
        /// Unix time from which running clients are no longer offered it.
        #[arg(long)]
        expires_at: Option<i64>,
        #[arg(long)]
        wake_on_lan: bool,
        #[arg(long, default_value = "")]
        comments: String,
        /// Accept the high-risk warnings (recorded as an audit status message).
        #[arg(long)]
        accept_high_risk: bool,
        /// Start from a saved template (its settings; the options given here win).
        #[arg(long)]
        template: Option<String>,
        /// Save these settings as a template under this name.
        #[arg(long)]
        save_template: Option<String>,
        /// Site code for the id when no site file set one.
        #[arg(long)]
        site_code: Option<String>,
    },
    /// Write what full boot media carry for a deployment into a directory: `policy.json` (the
    /// task sequence's policy, as a machine would receive it) and `content/<sha256>` (every file
    /// of its packages, checked against its hash while copied). Then
    /// `netdeploy media build --full DIR ...` puts them on media that run with no server.
    Export {
        /// The deployment, e.g. LAB00003.
        id: String,
        /// Directory to write (created; must be empty if it exists).
        #[arg(long)]
        out: PathBuf,
    },
    /// The collections a high-risk deployment may target: those over default_size are hidden
    /// unless --show-up-to-max.
    Collections {
        #[arg(long)]
        show_up_to_max: bool,
    },
    #[command(flatten)]
    Object(ObjectCommand),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ContextArg {
    Pxe,
    Media,
}

/// `netdeploy explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    #[arg(long)]
    mac: Option<String>,
    #[arg(long)]
    uuid: Option<String>,
    /// Option 93 value of the firmware (0 BIOS, 7 UEFI x64, ...).
    #[arg(long)]
    arch: Option<u16>,
    #[arg(long, value_enum, default_value = "pxe")]
    context: ContextArg,
    /// A preferred deployment id (SMSTSPreferredAdvertID).
    #[arg(long)]
    preferred: Option<String>,
    /// Print the decision as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
pub enum PxeCommand {
    /// Lift the PXE loop guard (rule 7) so required deployments run again through PXE.
    ///
    /// Once a required deployment has started on a machine through PXE, PXE offers that
    /// machine no required deployment again (the firmware boots from its next device) until
    /// the guard is cleared. The guard is recorded under the MAC and SMBIOS UUID the machine
    /// sent, and cleared here by device, by collection, or for one machine by MAC or UUID.
    /// Exactly one of --device, --collection, --mac or --uuid is needed. Prints each guard it
    /// lifted, with the deployment that had set it, or why it lifted none.
    #[command(group = clap::ArgGroup::new("scope").required(true).multiple(false))]
    Clear {
        /// A device of the catalog: every guard recorded with one of its MACs or its UUID.
        #[arg(long, group = "scope")]
        device: Option<String>,
        /// A collection id: every machine it holds (`unknown_computers`: every machine that
        /// matches no device).
        #[arg(long, group = "scope")]
        collection: Option<String>,
        /// One machine, known or not, by a MAC it was recorded with.
        #[arg(long, group = "scope")]
        mac: Option<String>,
        /// One machine, known or not, by the SMBIOS UUID it was recorded with.
        #[arg(long, group = "scope")]
        uuid: Option<String>,
    },
    /// List the machines under the loop guard.
    Guards,
}

fn operator() -> String {
    std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown".into())
}

pub fn site(dd: &DataDir, cmd: SiteCommand) -> anyhow::Result<()> {
    let store = dd.open()?;
    match cmd {
        SiteCommand::Apply { file } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let text =
                site::text(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let base = file.parent().unwrap_or(Path::new(".")).to_path_buf();
            let lib = Library::new(&dd.data_dir);
            let files = site::FileAccess::CommandLine { base };
            let s = site::parse(text, &files, |p, n| lib.import(p, n), now())
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let applied = stored::apply(&store, &s, |h| lib.has(h), &operator(), now())?;
            let ch = &applied.changes;
            if ch.is_empty() {
                println!("site {}: no change", s.site_code);
            }
            for (what, list) in [
                ("created", &ch.created),
                ("changed", &ch.changed),
                ("removed", &ch.removed),
            ] {
                for k in list {
                    println!("{what:8} {k}");
                }
            }
            for (id, w) in &applied.warnings {
                println!("warning  deployment {id}: {w}");
            }
            netdeploy::alerts::apply_site(&store, &s, now())?;
            for id in netdeploy::wake::request_for_site(&store, ch, &operator(), now())? {
                println!("wake-on-LAN: the running server wakes the machines of {id}");
            }
            Ok(())
        }
        SiteCommand::Show => {
            let (c, settings) = stored::load(&store)?;
            let out = serde_json::json!({ "settings": settings, "catalog": c });
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(())
        }
    }
}

pub fn content(dd: &DataDir, cmd: ContentCommand) -> anyhow::Result<()> {
    let ContentCommand::Gc { dry_run } = cmd;
    let store = dd.open()?;
    let (catalog, _) = stored::load(&store)?;
    let referenced = catalog.content();
    let lib = Library::new(&dd.data_dir);
    let verb = if dry_run { "would remove" } else { "removed" };
    let (mut files, mut bytes) = (0u64, 0u64);
    let listing = lib
        .stored()
        .with_context(|| format!("cannot list {}", dd.data_dir.join("content").display()))?;
    for f in listing {
        if referenced.contains(&f.sha256) {
            continue;
        }
        if !dry_run {
            lib.remove(&f.sha256)?;
        }
        println!("{verb} {} ({} bytes)", f.sha256, f.size);
        files += 1;
        bytes += f.size;
    }
    // import-<pid>-<n>: left behind only by a process that died mid-import.
    let tmp = dd.data_dir.join("content").join("tmp");
    if let Ok(entries) = std::fs::read_dir(&tmp) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid = name
                .strip_prefix("import-")
                .and_then(|r| r.split('-').next())
                .and_then(|p| p.parse::<u32>().ok());
            let Some(pid) = pid else { continue };
            if Path::new(&format!("/proc/{pid}")).exists() {
                continue;
            }
            let size = e.metadata().map(|m| m.len()).unwrap_or(0);
            if !dry_run {
                std::fs::remove_file(e.path())
                    .with_context(|| format!("cannot remove {}", e.path().display()))?;
            }
            println!("{verb} {} ({size} bytes)", e.path().display());
            files += 1;
            bytes += size;
        }
    }
    let freed = if dry_run { "would free" } else { "freed" };
    println!("{freed} {bytes} bytes in {files} file(s)");
    Ok(())
}

fn object(store: &Store, kind: Kind, cmd: ObjectCommand) -> anyhow::Result<()> {
    let k = kind.store_kind();
    let (catalog, _) = stored::load(store)?;
    match cmd {
        ObjectCommand::List => {
            let all: Vec<serde_json::Value> = store.list(k)?;
            let builtin = matches!(kind, Kind::Collection);
            if builtin {
                for b in site::builtin_collections() {
                    if !all.iter().any(|v| v["id"] == b.id.as_str()) {
                        println!(
                            "{:<20} {} (built in, {} members)",
                            b.id,
                            b.name,
                            catalog.members(&b).len()
                        );
                    }
                }
            }
            for v in all {
                println!("{}", summary(kind, &v, &catalog));
            }
        }
        ObjectCommand::Show { id } => {
            let v: Option<serde_json::Value> = store.get(k, &id)?;
            let v = v.or_else(|| {
                matches!(kind, Kind::Collection)
                    .then(|| site::builtin_collections().into_iter().find(|b| b.id == id))
                    .flatten()
                    .map(|b| serde_json::to_value(b).expect("serializes"))
            });
            match v {
                Some(v) => println!("{}", serde_json::to_string_pretty(&v)?),
                None => bail!("no {k} {id:?}"),
            }
        }
        ObjectCommand::Delete { id } => {
            netdeploy::admin::delete_object(store, k, &id)?;
            println!("deleted {k} {id}");
        }
    }
    Ok(())
}

fn summary(kind: Kind, v: &serde_json::Value, c: &Catalog) -> String {
    let s = |k: &str| v[k].as_str().unwrap_or("").to_owned();
    match kind {
        Kind::Device => format!(
            "{:<20} macs={} uuid={}{}{}",
            s("name"),
            v["macs"],
            v["uuid"].as_str().unwrap_or("-"),
            if v["server"] == true { " server" } else { "" },
            if v["site_system"] == true {
                " site_system"
            } else {
                ""
            }
        ),
        Kind::Collection => {
            let n = c
                .collection(&s("id"))
                .map(|col| c.members(col).len())
                .unwrap_or(0);
            format!("{:<20} {} ({n} members)", s("id"), s("name"))
        }
        Kind::Package => format!(
            "{:<20} version {} ({} files)",
            s("id"),
            v["version"],
            v["files"].as_array().map_or(0, |f| f.len())
        ),
        Kind::BootImage => format!(
            "{:<20} {} {}{}",
            s("id"),
            s("arch"),
            s("kind"),
            if v["pre_production"] == true {
                " pre-production"
            } else {
                ""
            }
        ),
        Kind::TaskSequence => format!(
            "{:<20} {} (boot image {}, {} steps)",
            s("id"),
            s("name"),
            v["boot_image"].as_str().unwrap_or("-"),
            v["steps"].as_array().map_or(0, |x| x.len())
        ),
        Kind::Deployment => format!(
            "{} {:<8} {:<18} ts={} collection={} option={}",
            s("id"),
            s("purpose"),
            s("available_to"),
            s("task_sequence"),
            s("collection"),
            s("option")
        ),
    }
}

pub fn device(dd: &DataDir, cmd: DeviceCommand) -> anyhow::Result<()> {
    let store = dd.open()?;
    match cmd {
        DeviceCommand::Object(o) => object(&store, Kind::Device, o),
        DeviceCommand::Create {
            name,
            macs,
            uuid,
            server,
            site_system,
        } => {
            let macs = macs
                .iter()
                .map(|m| m.parse::<Mac>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(anyhow::Error::msg)?;
            let uuid = uuid
                .as_deref()
                .map(parse_smbios_uuid)
                .transpose()
                .map_err(anyhow::Error::msg)?;
            if macs.is_empty() && uuid.is_none() {
                bail!("a device needs --mac or --uuid to be recognised when it boots");
            }
            let d = Device {
                name: name.clone(),
                macs,
                uuid,
                server,
                site_system,
            };
            store.put("device", &name, &d, now())?;
            println!("device {name} saved");
            Ok(())
        }
    }
}

pub fn collection(dd: &DataDir, cmd: CollectionCommand) -> anyhow::Result<()> {
    let store = dd.open()?;
    match cmd {
        CollectionCommand::Object(o) => object(&store, Kind::Collection, o),
        CollectionCommand::Create { id, name, members } => {
            if id == site::ALL_SYSTEMS || id == site::UNKNOWN_COMPUTERS {
                bail!("{id} is a built-in collection");
            }
            let (c, _) = stored::load(&store)?;
            for m in &members {
                if c.device(m).is_none() {
                    bail!("--member {m:?}: no such device");
                }
            }
            let col = Collection {
                name: name.unwrap_or_else(|| id.clone()),
                id: id.clone(),
                kind: CollectionKind::Custom { members },
            };
            store.put("collection", &id, &col, now())?;
            println!("collection {id} saved");
            Ok(())
        }
    }
}

pub fn boot_image(dd: &DataDir, cmd: BootImageCommand) -> anyhow::Result<()> {
    let store = dd.open()?;
    match cmd {
        BootImageCommand::Object(o) => object(&store, Kind::BootImage, o),
        BootImageCommand::Promote { id } => {
            let pre: BootImage = store
                .get("boot_image", &id)?
                .ok_or_else(|| anyhow::anyhow!("no boot image {id:?}"))?;
            let Some(target) = pre.replaces.clone().filter(|_| pre.pre_production) else {
                bail!("boot image {id} is not a pre-production image that replaces another");
            };
            let mut prod: BootImage = store
                .get("boot_image", &target)?
                .ok_or_else(|| anyhow::anyhow!("the production boot image {target:?} is gone"))?;
            prod.files = pre.files.clone();
            prod.cmdline = pre.cmdline.clone();
            store.transaction(|tx| {
                tx.put("boot_image", &target, &prod, now())?;
                tx.delete("boot_image", &id)?;
                Ok(())
            })?;
            store.add_status(&netdeploy::store::StatusMessage {
                seq: 0,
                at: now(),
                source: "server".into(),
                kind: "boot-image-promoted".into(),
                identity: None,
                device: None,
                deployment: None,
                body: serde_json::json!({ "from": id, "to": target, "who": operator() }),
            })?;
            println!("boot image {id} promoted: {target} now boots its files");
            Ok(())
        }
        BootImageCommand::Create {
            id,
            arch,
            kernel,
            initrd,
            cmdline,
        } => {
            if let Some(problem) = netdeploy::catalog::kernel_cmdline_problem(&cmdline) {
                bail!("--cmdline {problem}");
            }
            let lib = Library::new(&dd.data_dir);
            let mut files = vec![lib.import(&kernel, "kernel")?];
            if let Some(i) = initrd {
                files.push(lib.import(&i, "initrd")?);
            }
            let b = BootImage {
                id: id.clone(),
                arch,
                kind: BootImageKind::Linux,
                files,
                cmdline,
                pre_production: false,
                replaces: None,
            };
            store.put("boot_image", &id, &b, now())?;
            println!("boot image {id} saved");
            Ok(())
        }
    }
}

/// `netdeploy deployment export`: the policy and content of full media.
fn export(dd: &DataDir, catalog: &Catalog, id: &str, out: &Path) -> anyhow::Result<()> {
    let id: DeploymentId = id.parse()?;
    let policy = netdeploy::policy::full_media(&id, catalog, "http://netdeploy.invalid")?;
    let netdeploy::policy::Policy::Run { packages, .. } = &policy else {
        unreachable!("full_media builds a run policy");
    };
    if out.exists() && std::fs::read_dir(out)?.next().is_some() {
        bail!(
            "{} is not empty: give a new or empty directory",
            out.display()
        );
    }
    let content = out.join("content");
    std::fs::create_dir_all(&content).with_context(|| format!("creating {}", content.display()))?;
    let lib = Library::new(&dd.data_dir);
    let mut total = 0u64;
    let mut done = std::collections::BTreeSet::new();
    for (package, files) in packages {
        for f in files {
            if !done.insert(f.sha256) {
                continue;
            }
            let file = ContentFile {
                path: f.path.clone(),
                size: f.size,
                sha256: f.sha256.to_string(),
            };
            lib.export(&file, &content.join(&file.sha256))
                .with_context(|| format!("package {package}: {} (run site apply again)", f.path))?;
            total += f.size;
        }
    }
    std::fs::write(out.join("policy.json"), netdeploy::policy::encode(&policy))?;
    println!(
        "deployment {id}: policy.json and {} content files ({total} bytes) in {}",
        done.len(),
        out.display()
    );
    Ok(())
}

pub fn deployment(
    dd: &DataDir,
    config: Option<&netdeploy::config::Config>,
    cmd: DeploymentCommand,
) -> anyhow::Result<()> {
    let store = dd.open()?;
    let (catalog, settings) = stored::load(&store)?;
    match cmd {
        DeploymentCommand::Object(o) => object(&store, Kind::Deployment, o),
        DeploymentCommand::Export { id, out } => export(dd, &catalog, &id, &out),
        DeploymentCommand::Collections { show_up_to_max } => {
            for c in checks::collections_for_high_risk(&catalog, &settings.checks(), show_up_to_max)
            {
                println!(
                    "{:<20} {} ({} members)",
                    c.id,
                    c.name,
                    catalog.members(c).len()
                );
            }
            Ok(())
        }
        DeploymentCommand::Create {
            task_sequence,
            collection,
            purpose,
            available_to,
            deployment_option,
            rerun,
            available_at,
            expires_at,
            wake_on_lan,
            comments,
            accept_high_risk,
            template,
            save_template,
            site_code,
        } => {
            let base = match &template {
                Some(name) => {
                    let t: checks::DeploymentTemplate = store
                        .get("template", name)?
                        .ok_or_else(|| anyhow::anyhow!("--template {name:?}: no such template"))?;
                    Some(t)
                }
                None => None,
            };
            let ts = task_sequence.ok_or_else(|| anyhow::anyhow!("--task-sequence is required"))?;
            let mut new = match &base {
                Some(t) => checks::apply_template(t, &ts),
                None => NewDeployment {
                    task_sequence: ts.clone(),
                    collection: String::new(),
                    purpose: Purpose::Available,
                    available_to: AvailableTo::MediaPxe,
                    schedule: Schedule::default(),
                    option: DeploymentOption::default(),
                    wake_on_lan: false,
                    comments: String::new(),
                    software_installation: false,
                    pre_download: false,
                    accept_high_risk: false,
                    available_content: Default::default(),
                },
            };
            if let Some(c) = collection {
                new.collection = c;
            }
            if new.collection.is_empty() {
                bail!("--collection is required (or a --template that names one)");
            }
            if let Some(p) = purpose {
                new.purpose = p;
            }
            if let Some(a) = available_to {
                new.available_to = a;
            }
            if let Some(o) = deployment_option {
                new.option = o;
            }
            new.schedule.rerun = rerun;
            new.schedule.available_at = available_at;
            new.schedule.expires_at = expires_at;
            new.wake_on_lan |= wake_on_lan;
            if !comments.is_empty() {
                new.comments = comments;
            }
            new.accept_high_risk = accept_high_risk;
            if let Some(name) = save_template {
                store.put(
                    "template",
                    &name,
                    &checks::DeploymentTemplate::save(&name, &new),
                    now(),
                )?;
                println!("template {name} saved");
            }
            let lib = Library::new(&dd.data_dir);
            match netdeploy::admin::create_deployment(&store, &lib, new, site_code, &operator()) {
                Ok(created) => {
                    for w in &created.warnings {
                        eprintln!("warning: {w}");
                    }
                    if created.audited {
                        println!(
                            "high-risk warnings accepted by {} (audit status message written)",
                            operator()
                        );
                    }
                    println!("deployment {} created", created.id);
                    wake_new(dd, config, created.id)
                }
                Err(netdeploy::admin::AdminError::Refused(refusals)) => {
                    for r in &refusals {
                        eprintln!("refused: {r}");
                    }
                    bail!("the deployment was not created");
                }
                Err(e) => Err(e.into()),
            }
        }
    }
}

pub fn explain(dd: &DataDir, a: ExplainArgs) -> anyhow::Result<()> {
    let store = dd.open()?;
    let mac = a
        .mac
        .as_deref()
        .map(str::parse::<Mac>)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let uuid = a
        .uuid
        .as_deref()
        .map(parse_smbios_uuid)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    if mac.is_none() && uuid.is_none() {
        bail!("name the machine with --mac and/or --uuid");
    }
    let context = match a.context {
        ContextArg::Pxe => Context::Pxe,
        ContextArg::Media => Context::Media,
    };
    let d = netdeploy::admin::explain(
        &store,
        MachineIdentity { mac, uuid },
        a.arch,
        context,
        a.preferred.as_deref(),
    )?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&d)?);
    } else {
        print!("{}", decision::explain_text(&d));
    }
    Ok(())
}

pub fn pxe(dd: &DataDir, cmd: PxeCommand) -> anyhow::Result<()> {
    let store = dd.open()?;
    match cmd {
        PxeCommand::Guards => {
            for (identity, deployment) in store.guards()? {
                println!("{identity} {deployment}");
            }
            Ok(())
        }
        PxeCommand::Clear {
            device,
            collection,
            mac,
            uuid,
        } => {
            use netdeploy::admin::GuardScope;
            let scope = match (device, collection, mac, uuid) {
                (Some(d), _, _, _) => GuardScope::Device(d),
                (_, Some(c), _, _) => GuardScope::Collection(c),
                (_, _, Some(m), _) => GuardScope::Mac(m),
                (_, _, _, Some(u)) => GuardScope::Uuid(u),
                _ => bail!("name --device, --collection, --mac or --uuid"),
            };
            let cleared = netdeploy::admin::clear_guard(&store, &scope)?;
            if let Some(why) = &cleared.none_because {
                println!("PXE loop guard: nothing cleared for {scope}: {why}");
                return Ok(());
            }
            println!(
                "PXE loop guard cleared for {scope}: {} machine(s)",
                cleared.guards.len()
            );
            for g in &cleared.guards {
                println!("  {}  set by deployment {}", g.identity, g.deployment);
            }
            Ok(())
        }
    }
}

pub fn package(dd: &DataDir, cmd: PackageCommand) -> anyhow::Result<()> {
    let store = dd.open()?;
    match cmd {
        PackageCommand::Object(o) => object(&store, Kind::Package, o),
        PackageCommand::Create {
            id,
            id_flag,
            from,
            package_version: version,
            package_share,
        } => {
            let id = id.or(id_flag).expect("clap requires one of them");
            let lib = Library::new(&dd.data_dir);
            let sources = site::package_files(&from)
                .with_context(|| format!("cannot read {}", from.display()))?;
            let total: u64 = sources.iter().map(|(_, _, n)| n).sum();
            let mut bar = ImportProgress::new(&id, total);
            let mut files = Vec::new();
            for (rel, path, size) in sources {
                let base = bar.done;
                files.push(
                    lib.import_with_progress(&path, &rel, &mut |n| bar.show(base + n, false))?,
                );
                bar.show(base + size, false);
            }
            bar.show(total, true);
            let n = files.len();
            let p = Package {
                id: id.clone(),
                version,
                files,
                package_share,
            };
            store.put("package", &id, &p, now())?;
            println!("package {id} saved ({n} files, {total} bytes)");
            Ok(())
        }
    }
}

/// The import progress bar on stderr: redrawn at most 5 times a second on a terminal, one
/// final line otherwise (a log file gets no carriage returns).
struct ImportProgress<'a> {
    id: &'a str,
    total: u64,
    done: u64,
    started: std::time::Instant,
    last: Option<std::time::Instant>,
    tty: bool,
}

impl<'a> ImportProgress<'a> {
    fn new(id: &'a str, total: u64) -> Self {
        use std::io::IsTerminal;
        ImportProgress {
            id,
            total,
            done: 0,
            started: std::time::Instant::now(),
            last: None,
            tty: std::io::stderr().is_terminal(),
        }
    }

    fn show(&mut self, done: u64, last: bool) {
        self.done = done;
        let due = self
            .last
            .is_none_or(|t| t.elapsed() >= std::time::Duration::from_millis(200));
        if !(last || self.tty && due) {
            return;
        }
        self.last = Some(std::time::Instant::now());
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let pct = (done * 100).checked_div(self.total).unwrap_or(100);
        let filled = (pct as usize * 30) / 100;
        let line = format!(
            "importing {}: [{}{}] {pct:>3}% {:.1}/{:.1} MiB, {:.0} MiB/s",
            self.id,
            "=".repeat(filled),
            " ".repeat(30 - filled),
            done as f64 / 1048576.0,
            self.total as f64 / 1048576.0,
            done as f64 / 1048576.0 / secs
        );
        match (self.tty, last) {
            (true, false) => eprint!("\r{line}"),
            (true, true) => eprintln!("\r{line}"),
            (false, _) => eprintln!("{line}"),
        }
    }
}

pub fn task_sequence(dd: &DataDir, cmd: TaskSequenceCommand) -> anyhow::Result<()> {
    let store = dd.open()?;
    match cmd {
        TaskSequenceCommand::Object(o) => object(&store, Kind::TaskSequence, o),
        TaskSequenceCommand::Create {
            id,
            name,
            boot_image,
            steps,
            packages,
        } => {
            let mut parsed = Vec::new();
            for s in &steps {
                let mut parts = s.splitn(3, ':');
                let (Some(action), Some(step_name)) = (parts.next(), parts.next()) else {
                    bail!("--step {s:?}: write ACTION:NAME[:ARGUMENT]");
                };
                let action = StepAction::from(action.to_owned());
                if action.is_unknown() {
                    bail!("--step {s:?}: unknown action {:?}", action.as_str());
                }
                let arg = parts.next().map(str::to_owned);
                let (command, package) = if action == StepAction::RunCommand {
                    (arg, None)
                } else {
                    (None, arg)
                };
                parsed.push(Step {
                    name: step_name.into(),
                    action,
                    package,
                    command,
                    file: None,
                    target: None,
                    variable: None,
                    value: None,
                });
            }
            let t = TaskSequence {
                name: name.unwrap_or_else(|| id.clone()),
                id: id.clone(),
                boot_image,
                steps: parsed,
                packages,
            };
            store.put("task_sequence", &id, &t, now())?;
            println!("task sequence {id} saved");
            Ok(())
        }
    }
}

/// `netdeploy status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Count every deployment over this collection instead of its own.
    #[arg(long)]
    collection: Option<String>,
    /// Failures over the last N days (2 or fewer: per hour).
    #[arg(long, default_value_t = 14)]
    days: i64,
    /// Also list every machine with its state and last message.
    #[arg(long)]
    machines: bool,
    /// Print the same data as the status page's JSON.
    #[arg(long)]
    json: bool,
    #[command(subcommand)]
    action: Option<StatusAction>,
}

#[derive(Debug, Subcommand)]
pub enum StatusAction {
    /// Record status messages kept by full media that ran without a server: the JSON lines
    /// of `netdeploy/status/*.jsonl` on the medium (or the agent's --status-file). A message
    /// already recorded is not recorded twice.
    Import {
        /// Files of JSON lines, one status message each.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// `netdeploy status import`.
fn import_statuses(dd: &DataDir, files: &[PathBuf]) -> anyhow::Result<()> {
    let store = std::sync::Arc::new(dd.open()?);
    let bp = netdeploy::bootpath::BootPath {
        store: store.clone(),
        library: Library::new(&dd.data_dir),
        pxe_password_set: false,
        served: Default::default(),
        unmet_noted: Default::default(),
    };
    let known: std::collections::HashSet<String> = store
        .statuses(None, 1_000_000)?
        .into_iter()
        .filter(|m| m.source == "agent")
        .map(|m| m.body.to_string())
        .collect();
    let (mut recorded, mut again, mut bad) = (0, 0, 0);
    for file in files {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let parsed = serde_json::from_str::<serde_json::Value>(line)
                .map_err(|e| e.to_string())
                .and_then(netdeploy::bootpath::parse_agent_status);
            let m = match parsed {
                Ok(m) => m,
                Err(e) => {
                    eprintln!("{}:{}: skipped: {e}", file.display(), i + 1);
                    bad += 1;
                    continue;
                }
            };
            if known.contains(&m.body.to_string()) {
                again += 1;
                continue;
            }
            bp.record_agent_status_at(
                m.machine,
                m.deployment.as_deref(),
                m.kind.as_str(),
                m.body,
                m.at.unwrap_or_else(now),
            )?;
            recorded += 1;
        }
    }
    println!("{recorded} status messages recorded, {again} already there, {bad} skipped");
    if bad > 0 && recorded == 0 {
        bail!("no status message could be read");
    }
    Ok(())
}

pub fn status(dd: &DataDir, a: StatusArgs) -> anyhow::Result<()> {
    use netdeploy::monitoring::{self, State};
    if let Some(StatusAction::Import { files }) = &a.action {
        return import_statuses(dd, files);
    }
    let store = dd.open()?;
    let (catalog, settings) = stored::load(&store)?;
    if let Some(c) = &a.collection {
        if catalog.collection(c).is_none() {
            bail!("--collection {c:?}: no such collection");
        }
    }
    let messages = store.statuses(None, 100_000)?;
    let o = monitoring::overview(
        &catalog,
        &messages,
        a.collection.as_deref(),
        settings.pre_production_collection.as_deref(),
        now(),
        a.days.clamp(1, 366),
    );
    if a.json {
        println!("{}", serde_json::to_string_pretty(&o)?);
        return Ok(());
    }
    println!(
        "{:<10} {:<20} {:>9} {:>11} {:>13} {:>6} {:>7}",
        "DEPLOYMENT",
        "COLLECTION",
        "Compliant",
        "In progress",
        "Non-compliant",
        "Failed",
        "Unknown"
    );
    for d in &o.deployments {
        let c = |s: State| d.counts[&s];
        println!(
            "{:<10} {:<20} {:>9} {:>11} {:>13} {:>6} {:>7}",
            d.deployment,
            d.collection,
            c(State::Compliant),
            c(State::InProgress),
            c(State::NonCompliant),
            c(State::Failed),
            c(State::Unknown)
        );
        if a.machines {
            for m in &d.machines {
                let last = m
                    .last
                    .as_ref()
                    .map(|l| {
                        format!(
                            "{} {}",
                            netdeploy::http::status_page::format_time(l.at),
                            l.kind
                        )
                    })
                    .unwrap_or_default();
                let why = m
                    .reason
                    .as_deref()
                    .map(|r| format!("  ({r})"))
                    .unwrap_or_default();
                println!("    {:<24} {:<14} {last}{why}", m.machine, m.state.label());
            }
        }
    }
    if let Some(first) = o.pre_production.first() {
        println!("\npre-production (collection {}):", first.collection);
        for d in &o.pre_production {
            let c = |s: State| d.counts[&s];
            println!(
                "{:<10} {:<20} {:>9} {:>11} {:>13} {:>6} {:>7}",
                d.deployment,
                d.collection,
                c(State::Compliant),
                c(State::InProgress),
                c(State::NonCompliant),
                c(State::Failed),
                c(State::Unknown)
            );
        }
    }
    let per = if o.period == 3600 { "hour" } else { "day" };
    let total: usize = o.failures.iter().map(|f| f.1).sum();
    println!(
        "\nfailures per {per} over the last {} days: {total} in all",
        a.days
    );
    for (t, n) in o.failures.iter().filter(|f| f.1 > 0) {
        println!("  {}  {n}", netdeploy::http::status_page::format_time(*t));
    }
    Ok(())
}

/// `netdeploy alert`.
#[derive(Debug, Subcommand)]
pub enum AlertCommand {
    /// Raise an alert when at least MIN machines of the deployment's collection failed and
    /// they make at least PERCENT percent of it (the running server posts it to its webhooks).
    Set {
        #[arg(long)]
        deployment: String,
        #[arg(long, value_name = "PERCENT")]
        failure_percent: u32,
        #[arg(long, value_name = "MIN", default_value_t = 1)]
        min_failures: usize,
    },
    /// Turn a deployment's alert off.
    Clear {
        #[arg(long)]
        deployment: String,
    },
    /// The thresholds, and the alerts raised now.
    List,
}

pub fn alert(dd: &DataDir, c: AlertCommand) -> anyhow::Result<()> {
    use netdeploy::alerts;
    let store = dd.open()?;
    let (catalog, _) = stored::load(&store)?;
    let known = |id: &str| -> anyhow::Result<DeploymentId> {
        let id: DeploymentId = id.parse()?;
        if catalog.deployment(&id).is_none() {
            bail!("no deployment {id}");
        }
        Ok(id)
    };
    match c {
        AlertCommand::Set {
            deployment,
            failure_percent,
            min_failures,
        } => {
            let t = alerts::Threshold::new(known(&deployment)?, failure_percent, min_failures)?;
            alerts::set(&store, &t, now())?;
            println!(
                "alert for {}: at least {min_failures} failed and {failure_percent}% of its collection",
                t.deployment
            );
        }
        AlertCommand::Clear { deployment } => {
            let id: DeploymentId = deployment.parse()?;
            if alerts::clear(&store, &id)? {
                println!("alert for {id} turned off");
            } else {
                println!("{id} had no alert");
            }
        }
        AlertCommand::List => {
            let thresholds = alerts::thresholds(&store)?;
            for t in &thresholds {
                println!(
                    "{}  {}%  at least {}",
                    t.deployment, t.failure_percent, t.min_failures
                );
            }
            let messages = store.statuses(None, 100_000)?;
            for a in alerts::current(&catalog, &messages, &thresholds) {
                println!("RAISED  {}", a.message);
            }
        }
    }
    Ok(())
}

/// `netdeploy wake`.
#[derive(Debug, Args)]
pub struct WakeArgs {
    /// Wake the machines of this deployment's collection.
    #[arg(long, conflicts_with = "device", required_unless_present = "device")]
    deployment: Option<String>,
    /// Wake this device.
    #[arg(long)]
    device: Option<String>,
}

pub fn wake(
    dd: &DataDir,
    config: Option<&netdeploy::config::Config>,
    a: WakeArgs,
) -> anyhow::Result<()> {
    let Some(config) = config else {
        bail!("no configuration found (give --config FILE or set NETDEPLOY_CONFIG): magic packets go out only on the interfaces the server serves");
    };
    let store = dd.open()?;
    let (catalog, _) = stored::load(&store)?;
    let macs = match (&a.deployment, &a.device) {
        (Some(id), _) => {
            let id: DeploymentId = id.parse()?;
            netdeploy::wake::macs_of_deployment(&catalog, &id)
                .ok_or_else(|| anyhow::anyhow!("no deployment {id}"))?
        }
        (None, Some(d)) => catalog
            .device(d)
            .ok_or_else(|| anyhow::anyhow!("no device {d:?}"))?
            .macs
            .clone(),
        (None, None) => bail!("name --deployment or --device"),
    };
    let n = netdeploy::wake::send(&config.interfaces, &macs)?;
    let names: Vec<&str> = config.interfaces.iter().map(|i| i.name.as_str()).collect();
    println!(
        "sent {n} magic packet(s) for {} machine address(es) on {}",
        macs.len(),
        names.join(", ")
    );
    Ok(())
}

/// Wakes a new required deployment's machines when it asks for wake-on-LAN (SPEC section 9).
pub fn wake_new(
    dd: &DataDir,
    config: Option<&netdeploy::config::Config>,
    id: DeploymentId,
) -> anyhow::Result<()> {
    let store = dd.open()?;
    let (catalog, _) = stored::load(&store)?;
    let Some(config) = config else {
        // Only the running server knows the interfaces it serves: it sends them.
        if netdeploy::wake::request_for_new(&store, &catalog, &id, &operator(), now())? {
            println!("wake-on-LAN: the running server wakes the machines of {id}");
        }
        return Ok(());
    };
    if let Some(r) = netdeploy::wake::wake_new_deployment(&catalog, &id, &config.interfaces) {
        println!("wake-on-LAN: sent {} magic packet(s)", r?);
    }
    Ok(())
}
