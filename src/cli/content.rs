//! `netdeploy content`: the content library (files stored once by SHA-256).

use std::path::Path;

use anyhow::Context as _;
use clap::Subcommand;

use netdeploy::content::Library;
use netdeploy::store::catalog as stored;

use super::DataDir;

#[derive(Debug, Subcommand)]
pub enum ContentCommand {
    /// Fetch every file a deployment needs (its task sequence's packages and its boot image)
    /// that this server's library lacks from the configuration's `[content] upstream`
    /// servers, checking each SHA-256 before it is stored, so that machines need not wait for
    /// the first request to fetch it (docs/fleet.md).
    Sync {
        /// The deployment, e.g. LAB00012.
        deployment: String,
    },
    /// Which server holds which package and boot image, and which files a server failed to
    /// fetch and why: every server that shares this store (docs/fleet.md).
    Status,
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
    let dry_run = match cmd {
        ContentCommand::Gc { dry_run } => dry_run,
        ContentCommand::Sync { deployment } => return sync(dd, &deployment),
        ContentCommand::Status => return status(dd),
    };
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

/// `content sync`: the files of a deployment, fetched from upstream where missing.
fn sync(dd: &DataDir, deployment: &str) -> anyhow::Result<()> {
    use netdeploy::content::upstream::{note_holding, Upstream};
    let Some(config_path) = &dd.config_path else {
        anyhow::bail!(
            "no configuration: `content sync` fetches from the configuration's [content] \
             upstream servers; give --config"
        );
    };
    let config = netdeploy::config::StorageConfig::load(config_path)?;
    if config.content_upstream.is_empty() {
        anyhow::bail!(
            "{} names no [content] upstream server to fetch from",
            config_path.display()
        );
    }
    let store = dd.open()?;
    let (catalog, _) = stored::load(&store)?;
    let d = catalog
        .deployments
        .iter()
        .find(|d| d.id.to_string() == deployment)
        .with_context(|| format!("no deployment {deployment} in the catalog"))?;
    let ts = catalog
        .task_sequences
        .iter()
        .find(|t| t.id == d.task_sequence)
        .with_context(|| {
            format!(
                "deployment {deployment}: no task sequence {}",
                d.task_sequence
            )
        })?;
    let mut wanted: Vec<(String, String)> = Vec::new();
    let package_ids = ts
        .packages
        .iter()
        .cloned()
        .chain(ts.steps.iter().filter_map(|s| s.package.clone()));
    for id in package_ids {
        if let Some(p) = catalog.packages.iter().find(|p| p.id == id) {
            for f in &p.files {
                wanted.push((format!("package {id} {}", f.path), f.sha256.clone()));
            }
        }
    }
    if let Some(b) = ts
        .boot_image
        .as_ref()
        .and_then(|id| catalog.boot_images.iter().find(|b| &b.id == id))
    {
        for f in &b.files {
            wanted.push((format!("boot image {} {}", b.id, f.path), f.sha256.clone()));
        }
    }
    wanted.sort();
    wanted.dedup();
    let lib = Library::new(&dd.data_dir);
    let upstream = Upstream::new(config.content_upstream.clone());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut failed = std::collections::BTreeMap::new();
    let (mut fetched, mut here) = (0, 0);
    for (what, sha) in &wanted {
        match rt.block_on(upstream.fetch(&lib, sha)) {
            Ok(0) => {
                here += 1;
                println!("here     {what}");
            }
            Ok(n) => {
                fetched += 1;
                println!("fetched  {what} ({n} bytes, SHA-256 checked)");
            }
            Err(e) => {
                println!("FAILED   {what}: {e}");
                failed.insert(sha.clone(), e.to_string());
            }
        }
    }
    note_holding(
        &store,
        &config.server_name,
        &catalog,
        &lib,
        failed.clone(),
        netdeploy::bootpath::now(),
    )?;
    println!(
        "deployment {deployment}: {} files, {here} here already, {fetched} fetched, {} failed",
        wanted.len(),
        failed.len()
    );
    if !failed.is_empty() {
        anyhow::bail!("{} files could not be fetched", failed.len());
    }
    Ok(())
}

/// `content status`: every server's holding.
fn status(dd: &DataDir) -> anyhow::Result<()> {
    let store = dd.open()?;
    let all = netdeploy::content::upstream::Holding::all(&store)?;
    if all.is_empty() {
        println!("no server has recorded what it holds (servers do when they share a [store] url)");
        return Ok(());
    }
    for h in all {
        println!(
            "{}  (as of {})",
            h.server,
            netdeploy::monitoring::format_time(h.at)
        );
        for name in &h.held {
            println!("    holds    {name}");
        }
        for (name, n) in &h.missing {
            println!("    lacks    {name} ({n} files)");
        }
        for (sha, why) in &h.failed {
            println!("    FAILED   {sha}: {why}");
        }
    }
    Ok(())
}
