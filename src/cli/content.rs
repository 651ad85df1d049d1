//! `netdeploy content`: the content library (files stored once by SHA-256).

use std::path::Path;

use anyhow::Context as _;
use clap::Subcommand;

use netdeploy::content::Library;
use netdeploy::store::catalog as stored;

use super::DataDir;

#[derive(Debug, Subcommand)]
pub enum ContentCommand {
    /// Remove the files of the content library that no package or boot image of the catalog
    /// holds (the server does not serve them either), and temporary files of imports whose
    /// process has ended. Prints each file removed and the bytes freed. Run it while no site
    /// file or package is being imported.
    Gc {
        /// Print what would be removed, and remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

pub fn content(dd: &DataDir, cmd: ContentCommand) -> anyhow::Result<()> {
    let ContentCommand::Gc { dry_run } = cmd;
    let store = dd.open()?;
    let (catalog, _) = stored::load(&store)?;
    let referenced = catalog.content();
    let lib = Library::new(&dd.data_dir);
    let verb = if dry_run { "would remove" } else { "removed" };
    let (mut files, mut bytes) = (0u64, 0u64);
    let listing = lib
        .stored()
        .with_context(|| format!("cannot list {}", dd.data_dir.join("content").display()))?;
    for f in listing {
        if referenced.contains(&f.sha256) {
            continue;
        }
        if !dry_run {
            lib.remove(&f.sha256)?;
        }
        println!("{verb} {} ({} bytes)", f.sha256, f.size);
        files += 1;
        bytes += f.size;
    }
    // import-<pid>-<n>: left behind only by a process that died mid-import.
    let tmp = dd.data_dir.join("content").join("tmp");
    if let Ok(entries) = std::fs::read_dir(&tmp) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid = name
                .strip_prefix("import-")
                .and_then(|r| r.split('-').next())
                .and_then(|p| p.parse::<u32>().ok());
            let Some(pid) = pid else { continue };
            if Path::new(&format!("/proc/{pid}")).exists() {
                continue;
            }
            let size = e.metadata().map(|m| m.len()).unwrap_or(0);
            if !dry_run {
                std::fs::remove_file(e.path())
                    .with_context(|| format!("cannot remove {}", e.path().display()))?;
            }
            println!("{verb} {} ({size} bytes)", e.path().display());
            files += 1;
            bytes += size;
        }
    }
    let freed = if dry_run { "would free" } else { "freed" };
    println!("{freed} {bytes} bytes in {files} file(s)");
    Ok(())
}
