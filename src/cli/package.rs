//! `netdeploy package`: content that task sequence steps reference, imported with a progress bar.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;

use netdeploy::catalog::site;
use netdeploy::catalog::*;
use netdeploy::content::Library;

use super::object::{object, Kind, ObjectCommand};
use super::DataDir;

#[derive(Debug, Subcommand)]
pub enum PackageCommand {
    /// Import a directory as a package: every file is hashed (SHA-256) once and stored once in
    /// the content library (`netdeploy package add ID --from DIR`).
    #[command(visible_alias = "add")]
    Create {
        /// The package id.
        #[arg(value_name = "ID", required_unless_present = "id_flag")]
        id: Option<String>,
        /// The package id, as an option.
        #[arg(long = "id", hide = true, conflicts_with = "id")]
        id_flag: Option<String>,
        /// The directory whose files make up the package.
        #[arg(long)]
        from: PathBuf,
        /// Content version, raised on every change of the files.
        #[arg(long = "package-version", default_value_t = 1)]
        package_version: u32,
        /// The content may be read straight from the server (the direct_access option).
        #[arg(long)]
        package_share: bool,
    },
    #[command(flatten)]
    Object(ObjectCommand),
}

pub fn package(dd: &DataDir, cmd: PackageCommand) -> anyhow::Result<()> {
    let store = dd.open()?;
    match cmd {
        PackageCommand::Object(o) => object(&store, Kind::Package, o),
        PackageCommand::Create {
            id,
            id_flag,
            from,
            package_version: version,
            package_share,
        } => {
            let id = id.or(id_flag).expect("clap requires one of them");
            let lib = Library::new(&dd.data_dir);
            let sources = site::package_files(&from)
                .with_context(|| format!("cannot read {}", from.display()))?;
            let total: u64 = sources.iter().map(|(_, _, n)| n).sum();
            let bar = import_bar(&id, total);
            let started = std::time::Instant::now();
            let mut files = Vec::new();
            for (rel, path, size) in sources {
                let base = bar.position();
                files.push(
                    lib.import_with_progress(&path, &rel, &mut |n| bar.set_position(base + n))?,
                );
                bar.set_position(base + size);
            }
            bar.finish();
            if bar.is_hidden() {
                // No terminal: one line for the log instead of a bar.
                eprintln!(
                    "imported {id}: {:.1} MiB in {:.1} s",
                    total as f64 / 1048576.0,
                    started.elapsed().as_secs_f64()
                );
            }
            let n = files.len();
            let p = Package {
                id: id.clone(),
                version,
                files,
                package_share,
            };
            // An image that cannot be applied whole is refused here, not on a machine.
            let images = netdeploy::admin::create_package(&store, &lib, &p, true)?;
            for i in &images {
                println!(
                    "image {}: {} chunks, {} bytes of data in {} bytes (docs/image-format.md)",
                    i.index, i.chunks, i.data_bytes, i.compressed_bytes
                );
            }
            println!("package {id} saved ({n} files, {total} bytes)");
            Ok(())
        }
    }
}

/// The import progress bar on stderr, redrawn at most 5 times a second; hidden when stderr is
/// not a terminal (a log file gets no carriage returns).
fn import_bar(id: &str, total: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(total),
        indicatif::ProgressDrawTarget::stderr_with_hz(5),
    );
    let style = indicatif::ProgressStyle::with_template(
        "importing {prefix}: [{bar:30}] {percent:>3}% {binary_bytes}/{binary_total_bytes}, {binary_bytes_per_sec}",
    )
    .expect("a valid template")
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(id.to_owned());
    bar
}
