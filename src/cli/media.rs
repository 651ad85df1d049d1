//! `netdeploy media key|keys|revoke`: the keys of boot media (docs/security.md). Every other
//! `netdeploy media` command runs the media builder.

use anyhow::bail;

use super::DataDir;

/// The subcommands handled here rather than by the media builder.
pub const KEY_COMMANDS: [&str; 3] = ["key", "keys", "revoke"];

const USAGE: &str = "usage: netdeploy media key | netdeploy media keys | netdeploy media revoke ID";

/// Runs `netdeploy media key`, `keys` or `revoke ID`.
pub fn keys(dd: &DataDir, args: &[String]) -> anyhow::Result<()> {
    let store = dd.open()?;
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["key"] => {
            let key = netdeploy::bootpath::new_medium_key(&store)?;
            eprintln!(
                "medium {}: give the key below to netdeploy media build --medium-key \
                 (or NETDEPLOY_MEDIUM_KEY); the server keeps only its SHA-256, so it is shown \
                 this once",
                key.id()
            );
            println!("{key}");
            Ok(())
        }
        ["keys"] => {
            for (id, created, revoked) in store.media()? {
                let state = match revoked {
                    Some(at) => format!("revoked {} UTC", netdeploy::monitoring::format_time(at)),
                    None => "valid".to_owned(),
                };
                println!(
                    "{id}  created {} UTC  {state}",
                    netdeploy::monitoring::format_time(created)
                );
            }
            Ok(())
        }
        ["revoke", id] => {
            if store.medium_revoke(id, netdeploy::bootpath::now())? {
                println!("medium {id} revoked: its boot media are refused from now on");
                Ok(())
            } else if store.medium(id)?.is_some() {
                bail!("medium {id} was revoked before")
            } else {
                bail!("no medium {id} (netdeploy media keys lists them)")
            }
        }
        _ => bail!("{USAGE}"),
    }
}
