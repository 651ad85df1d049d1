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
            // Absolute, so that a package's files (found below `base.join(from)`) resolve
            // once, not twice, when the site file was named by a relative path.
            let base = std::path::absolute(file.parent().unwrap_or(Path::new(".")))
                .with_context(|| format!("cannot resolve {}", file.display()))?;
            let lib = Library::new(&dd.data_dir);
            let files = site::FileAccess::CommandLine { base };
            let progress = Phases::default();
            let captured = |id: &str| {
                store
                    .get::<netdeploy::catalog::Package>("package", id)
                    .ok()
                    .flatten()
            };
            let s = site::parse_with_captured(
                text,
                &files,
                |p, n| lib.import(p, n),
                now(),
                &progress,
                &captured,
            )
            .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let applied =
                stored::apply_reporting(&store, &s, |h| lib.has(h), &operator(), now(), &progress)?;
            progress.done();
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

/// The phases of `site apply` on stderr, one line each, redrawn at most 5 times a second;
/// nothing at all when stderr is not a terminal (scripts read stdout and stderr).
#[derive(Default)]
struct Phases {
    bar: std::cell::RefCell<Option<indicatif::ProgressBar>>,
}

impl Phases {
    /// Leaves the current phase's line with its count and time.
    fn done(&self) {
        let Some(bar) = self.bar.borrow_mut().take() else {
            return;
        };
        let took = bar.elapsed().as_secs_f64();
        let message = match bar.length() {
            Some(n) => format!("{n} in {took:.1} s"),
            None => format!("{took:.1} s"),
        };
        let style =
            indicatif::ProgressStyle::with_template("{prefix:>8} {msg}").expect("a valid template");
        bar.set_style(style);
        bar.finish_with_message(message);
        if !bar.is_hidden() {
            // The next phase starts on a line of its own.
            eprintln!();
        }
    }
}

impl site::Progress for Phases {
    fn phase(&self, name: &'static str, total: Option<u64>) {
        self.done();
        let target = indicatif::ProgressDrawTarget::stderr_with_hz(5);
        let (bar, template) = match total {
            Some(n) => (
                indicatif::ProgressBar::with_draw_target(Some(n), target),
                "{prefix:>8} [{bar:30}] {pos}/{len} {elapsed_precise}",
            ),
            None => (
                indicatif::ProgressBar::with_draw_target(None, target),
                "{prefix:>8} {spinner} {elapsed_precise}",
            ),
        };
        let style = indicatif::ProgressStyle::with_template(template)
            .expect("a valid template")
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(name);
        if total.is_none() {
            bar.enable_steady_tick(std::time::Duration::from_millis(200));
        }
        *self.bar.borrow_mut() = Some(bar);
    }

    fn advance(&self, n: u64) {
        if let Some(bar) = &*self.bar.borrow() {
            bar.inc(n);
        }
    }
}
