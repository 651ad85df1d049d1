//! `netdeploy pxe`: the PXE loop guard.

use anyhow::bail;
use clap::Subcommand;

use super::DataDir;

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
