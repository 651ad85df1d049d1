//! `netdeploy deployment`: create (after every check), export for full media, templates.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use clap::Subcommand;

use netdeploy::bootpath::now;
use netdeploy::catalog::*;
use netdeploy::content::Library;
use netdeploy::decision::checks::{self, NewDeployment};
use netdeploy::store::catalog as stored;

use super::object::{object, Kind, ObjectCommand};
use super::wake::wake_new;
use super::{operator, DataDir};

#[derive(Debug, Subcommand)]
pub enum DeploymentCommand {
    /// Deploy a task sequence to a collection, after every check of docs/deployment-checks.md.
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
        /// Images may come by multicast: machines applying the same image at the same time
        /// share one session, with HTTP as the fallback (needs `[multicast] enabled`).
        #[arg(long)]
        multicast: bool,
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
    let netdeploy::policy::Policy::Run { steps, .. } = &policy else {
        unreachable!("full_media builds a run policy");
    };
    let secrets = steps.iter().filter(|s| s.secret).count();
    // Readable by its owner only: it may hold secret values in clear until the media builder
    // seals them under the media password.
    {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let path = out.join("policy.json");
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut f| f.write_all(&netdeploy::policy::encode(&policy)))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    println!(
        "deployment {id}: policy.json and {} content files ({total} bytes) in {}",
        done.len(),
        out.display()
    );
    if secrets > 0 {
        println!(
            "policy.json holds {secrets} secret value(s) in clear (mode 0600): netdeploy-media \
             seals them under the media password (--password); delete {} once the media are built",
            out.display()
        );
    }
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
            multicast,
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
                    let t: netdeploy::decision::templates::DeploymentTemplate = store
                        .get("template", name)?
                        .ok_or_else(|| anyhow::anyhow!("--template {name:?}: no such template"))?;
                    Some(t)
                }
                None => None,
            };
            let ts = task_sequence.ok_or_else(|| anyhow::anyhow!("--task-sequence is required"))?;
            let mut new = match &base {
                Some(t) => netdeploy::decision::templates::apply_template(t, &ts),
                None => NewDeployment {
                    task_sequence: ts.clone(),
                    collection: String::new(),
                    purpose: Purpose::Available,
                    available_to: AvailableTo::MediaPxe,
                    schedule: Schedule::default(),
                    option: DeploymentOption::default(),
                    multicast: false,
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
            new.multicast |= multicast;
            if !comments.is_empty() {
                new.comments = comments;
            }
            new.accept_high_risk = accept_high_risk;
            if let Some(name) = save_template {
                store.put(
                    "template",
                    &name,
                    &netdeploy::decision::templates::DeploymentTemplate::save(&name, &new),
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
