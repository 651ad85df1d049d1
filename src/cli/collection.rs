//! `netdeploy collection`: sets of devices.

use clap::Subcommand;

use netdeploy::catalog::*;

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
            let col = Collection {
                name: name.unwrap_or_else(|| id.clone()),
                id: id.clone(),
                kind: CollectionKind::Custom { members },
            };
            netdeploy::admin::put_collection(&store, &col)?;
            println!("collection {id} saved");
            Ok(())
        }
    }
}
