//! `netdeploy device`: machines known by MAC and SMBIOS UUID.

use clap::Subcommand;

use netdeploy::catalog::*;
use netdeploy_wire::Mac;

use super::object::{object, Kind, ObjectCommand};
use super::DataDir;

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
            let d = Device {
                name: name.clone(),
                macs,
                uuid,
                server,
                site_system,
            };
            netdeploy::admin::put_device(&store, &d)?;
            println!("device {name} saved");
            Ok(())
        }
    }
}
