//! `netdeploy explain`: which deployment a machine would get, and why every other one was not chosen.

use anyhow::bail;
use clap::{Args, ValueEnum};

use netdeploy::catalog::*;
use netdeploy::decision::{self, Context};
use netdeploy_wire::Mac;

use super::DataDir;

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
    /// The machine network-boots over IPv6 (DHCPv6): also say how it is answered there.
    #[arg(long)]
    ipv6: bool,
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
        pxe_password_set(dd),
    )?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&d)?);
    } else {
        print!("{}", decision::explain_text(&d));
        if let Some(line) = chain_line(dd, a.arch, context) {
            println!("{line}");
        }
        if a.ipv6 && context == Context::Pxe {
            println!("{}", ipv6_line(dd, a.arch));
        }
    }
    Ok(())
}

/// Whether the configuration found asks the PXE password (`boot.pxe_password_hash`, rule 9).
fn pxe_password_set(dd: &DataDir) -> bool {
    dd.config_path
        .as_deref()
        .and_then(|p| netdeploy::config::StorageConfig::load(p).ok())
        .is_some_and(|c| c.pxe_password_set)
}

/// How a machine that network-boots over IPv6 is answered under the configuration found.
fn ipv6_line(dd: &DataDir, arch: Option<u16>) -> String {
    let ipv6 = dd
        .config_path
        .as_deref()
        .and_then(|p| netdeploy::config::StorageConfig::load(p).ok())
        .and_then(|c| c.ipv6);
    // Without `ipv6.address` the server serves its interface's first global or unique local
    // address, which only the server resolves.
    let address = ipv6.map(|a| a.map_or("SERVER-ADDRESS".to_owned(), |a| a.to_string()));
    netdeploy::dhcp6::pxe::explain(
        arch.and_then(netdeploy::arch::ClientArch::from_option93),
        address.as_deref(),
    )
}

/// How the firmware of `arch` gets to its boot image under the configuration found
/// (`[boot.chain]`), for a PXE decision; `None` without a firmware or outside PXE.
fn chain_line(dd: &DataDir, arch: Option<u16>, context: Context) -> Option<String> {
    if context != Context::Pxe {
        return None;
    }
    let arch = netdeploy::arch::ClientArch::from_option93(arch?)?;
    let chains = dd
        .config_path
        .as_deref()
        .and_then(|p| netdeploy::config::StorageConfig::load(p).ok())
        .map(|c| c.chains)
        .unwrap_or_default();
    netdeploy::secure_boot::explain_chain(arch, chains.get(&arch).copied().unwrap_or_default())
}
