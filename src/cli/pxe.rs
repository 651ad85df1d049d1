//! `netdeploy pxe`: the PXE loop guard, and the hash of the PXE password.

use std::io::{BufRead, IsTerminal};

use anyhow::{bail, Context};
use clap::Subcommand;
use netdeploy_wire::password;

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
    /// Make the configuration line of the PXE password (rule 9) from a password.
    ///
    /// Reads the password from the terminal without echo (twice, to confirm), or one line
    /// from stdin when stdin is not a terminal, and prints `pxe_password_hash = "$argon2id$..."`
    /// under `[boot]`: an argon2id hash with a random salt. The password itself is stored
    /// nowhere. Put the line in the server's configuration and restart it.
    PasswordHash,
}

/// `netdeploy pxe password-hash`.
pub fn password_hash() -> anyhow::Result<()> {
    let typed = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("PXE password: ")
            .context("cannot read the password from the terminal")?;
        let again = rpassword::prompt_password("PXE password again: ")
            .context("cannot read the password from the terminal")?;
        if first != again {
            bail!("the two passwords differ; nothing printed");
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from stdin")?;
        let line = line.strip_suffix('\n').unwrap_or(&line);
        line.strip_suffix('\r').unwrap_or(line).to_owned()
    };
    if typed.is_empty() {
        bail!("the PXE password is empty: type a password");
    }
    // iPXE sends what was typed in a URL, GRUB cannot ask at all: printable ASCII types
    // the same on every console keyboard.
    if !typed.chars().all(|c| c.is_ascii_graphic() || c == ' ') {
        bail!(
            "the PXE password must be printable ASCII (a boot console may not type anything else)"
        );
    }
    let mut salt = [0u8; password::SALT_LEN];
    getrandom::fill(&mut salt).map_err(|e| anyhow::anyhow!("no random salt: {e}"))?;
    let phc = password::hash(&typed, &salt)?;
    println!("[boot]\npxe_password_hash = \"{phc}\"");
    Ok(())
}

pub fn pxe(dd: &DataDir, cmd: PxeCommand) -> anyhow::Result<()> {
    let store = dd.open()?;
    match cmd {
        PxeCommand::PasswordHash => password_hash(),
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
