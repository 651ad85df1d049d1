//! `netdeploy wake`: wake-on-LAN for a deployment's machines.

use anyhow::bail;
use clap::Args;

use netdeploy::bootpath::now;
use netdeploy::catalog::*;
use netdeploy::store::catalog as stored;

use super::{operator, DataDir};

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

/// Wakes a new required deployment's machines when it asks for wake-on-LAN (docs/operating.md).
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
