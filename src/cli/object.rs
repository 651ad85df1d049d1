//! What every kind of catalog object shares: `list`, `show` and `delete`.

use anyhow::bail;
use clap::{Subcommand, ValueEnum};

use netdeploy::catalog::site;
use netdeploy::catalog::*;
use netdeploy::store::catalog as stored;
use netdeploy::store::Store;

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

pub(crate) fn object(store: &Store, kind: Kind, cmd: ObjectCommand) -> anyhow::Result<()> {
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
                Some(v) => println!("{}", serde_json::to_string_pretty(&shown(v))?),
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
