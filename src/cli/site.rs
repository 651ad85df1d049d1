//! Site files: `netdeploy site apply` and `site show`.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Subcommand;

use netdeploy::bootpath::now;
use netdeploy::catalog::{shown, site};
use netdeploy::content::Library;
use netdeploy::store::catalog as stored;

use super::{operator, DataDir};

#[derive(Debug, Subcommand)]
pub enum SiteCommand {
    /// Make the catalog what a site file declares: creates, changes and removes objects so
    /// that applying the same file again changes nothing. Deployments pass every check of
    /// docs/deployment-checks.md first; nothing is written if one is refused.
    Apply { file: PathBuf },
    /// Print the stored catalog as JSON.
    Show,
}

pub fn site(dd: &DataDir, cmd: SiteCommand) -> anyhow::Result<()> {
    let store = dd.open()?;
    match cmd {
        SiteCommand::Apply { file } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let text =
                site::text(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let base = file.parent().unwrap_or(Path::new(".")).to_path_buf();
            let lib = Library::new(&dd.data_dir);
            let files = site::FileAccess::CommandLine { base };
            let s = site::parse(text, &files, |p, n| lib.import(p, n), now())
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let applied = stored::apply(&store, &s, |h| lib.has(h), &operator(), now())?;
            let ch = &applied.changes;
            if ch.is_empty() {
                println!("site {}: no change", s.site_code);
            }
            for (what, list) in [
                ("created", &ch.created),
                ("changed", &ch.changed),
                ("removed", &ch.removed),
            ] {
                for k in list {
                    println!("{what:8} {k}");
                }
            }
            for (id, w) in &applied.warnings {
                println!("warning  deployment {id}: {w}");
            }
            netdeploy::alerts::apply_site(&store, &s, now())?;
            for id in netdeploy::wake::request_for_site(&store, ch, &operator(), now())? {
                println!("wake-on-LAN: the running server wakes the machines of {id}");
            }
            Ok(())
        }
        SiteCommand::Show => {
            let (c, settings) = stored::load(&store)?;
            let out = serde_json::json!({ "settings": settings, "catalog": c });
            println!("{}", serde_json::to_string_pretty(&shown(out))?);
            Ok(())
        }
    }
}
