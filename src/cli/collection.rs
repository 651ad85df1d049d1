//! `netdeploy collection`: sets of devices.

use anyhow::bail;
use clap::Subcommand;

use netdeploy::bootpath::now;
use netdeploy::catalog::site;
use netdeploy::catalog::*;
use netdeploy::store::catalog as stored;

use super::object::{object, Kind, ObjectCommand};
use super::DataDir;

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
