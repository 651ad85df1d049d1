//! `netdeploy status`: the five states per deployment and collection, failures over time, and importing the status messages full media kept.

use std::path::PathBuf;

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};

use netdeploy::bootpath::now;
use netdeploy::content::Library;
use netdeploy::store::catalog as stored;

use super::DataDir;

/// `netdeploy status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Count every deployment over this collection instead of its own.
    #[arg(long)]
    collection: Option<String>,
    /// Failures over the last N days (2 or fewer: per hour).
    #[arg(long, default_value_t = 14)]
    days: i64,
    /// Also list every machine with its state and last message.
    #[arg(long)]
    machines: bool,
    /// Print the same data as the status page's JSON.
    #[arg(long)]
    json: bool,
    #[command(subcommand)]
    action: Option<StatusAction>,
}

#[derive(Debug, Subcommand)]
pub enum StatusAction {
    /// Record status messages kept by full media that ran without a server: the JSON lines
    /// of `netdeploy/status/*.jsonl` on the medium (or the agent's --status-file). A message
    /// already recorded is not recorded twice.
    Import {
        /// Files of JSON lines, one status message each.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// `netdeploy status import`.
fn import_statuses(dd: &DataDir, files: &[PathBuf]) -> anyhow::Result<()> {
    let store = std::sync::Arc::new(dd.open()?);
    let bp = netdeploy::bootpath::BootPath::open(
        store.clone(),
        Library::new(&dd.data_dir),
        Default::default(),
    )?;
    let known: std::collections::HashSet<String> = store
        .statuses(None, 1_000_000)?
        .into_iter()
        .filter(|m| m.source == "agent")
        .map(|m| m.body.to_string())
        .collect();
    let (mut recorded, mut again, mut bad) = (0, 0, 0);
    for file in files {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let parsed = serde_json::from_str::<serde_json::Value>(line)
                .map_err(|e| e.to_string())
                .and_then(netdeploy::bootpath::parse_agent_status);
            let m = match parsed {
                Ok(m) => m,
                Err(e) => {
                    eprintln!("{}:{}: skipped: {e}", file.display(), i + 1);
                    bad += 1;
                    continue;
                }
            };
            if known.contains(&m.body.to_string()) {
                again += 1;
                continue;
            }
            bp.record_agent_status_at(
                m.machine,
                m.deployment.as_deref(),
                m.kind.as_str(),
                m.body,
                m.at.unwrap_or_else(now),
            )?;
            recorded += 1;
        }
    }
    println!("{recorded} status messages recorded, {again} already there, {bad} skipped");
    if bad > 0 && recorded == 0 {
        bail!("no status message could be read");
    }
    Ok(())
}

pub fn status(dd: &DataDir, a: StatusArgs) -> anyhow::Result<()> {
    use netdeploy::monitoring::{self, State};
    if let Some(StatusAction::Import { files }) = &a.action {
        return import_statuses(dd, files);
    }
    let store = dd.open()?;
    let (catalog, settings) = stored::load(&store)?;
    if let Some(c) = &a.collection {
        if catalog.collection(c).is_none() {
            bail!("--collection {c:?}: no such collection");
        }
    }
    let messages = store.statuses(None, 100_000)?;
    let o = monitoring::overview(
        &catalog,
        &messages,
        a.collection.as_deref(),
        settings.pre_production_collection.as_deref(),
        now(),
        a.days.clamp(1, 366),
    );
    if a.json {
        println!("{}", serde_json::to_string_pretty(&o)?);
        return Ok(());
    }
    println!(
        "{:<10} {:<20} {:>9} {:>11} {:>13} {:>6} {:>7}",
        "DEPLOYMENT",
        "COLLECTION",
        "Compliant",
        "In progress",
        "Non-compliant",
        "Failed",
        "Unknown"
    );
    for d in &o.deployments {
        let c = |s: State| d.counts[&s];
        println!(
            "{:<10} {:<20} {:>9} {:>11} {:>13} {:>6} {:>7}",
            d.deployment,
            d.collection,
            c(State::Compliant),
            c(State::InProgress),
            c(State::NonCompliant),
            c(State::Failed),
            c(State::Unknown)
        );
        if a.machines {
            for m in &d.machines {
                let last = m
                    .last
                    .as_ref()
                    .map(|l| {
                        format!(
                            "{} {}",
                            netdeploy::http::status_page::format_time(l.at),
                            l.kind
                        )
                    })
                    .unwrap_or_default();
                let why = m
                    .reason
                    .as_deref()
                    .map(|r| format!("  ({r})"))
                    .unwrap_or_default();
                println!("    {:<24} {:<14} {last}{why}", m.machine, m.state.label());
                if let Some(path) = &m.path {
                    println!("        image {path}");
                }
            }
        }
    }
    if let Some(first) = o.pre_production.first() {
        println!("\npre-production (collection {}):", first.collection);
        for d in &o.pre_production {
            let c = |s: State| d.counts[&s];
            println!(
                "{:<10} {:<20} {:>9} {:>11} {:>13} {:>6} {:>7}",
                d.deployment,
                d.collection,
                c(State::Compliant),
                c(State::InProgress),
                c(State::NonCompliant),
                c(State::Failed),
                c(State::Unknown)
            );
        }
    }
    let per = if o.period == 3600 { "hour" } else { "day" };
    let total: usize = o.failures.iter().map(|f| f.1).sum();
    println!(
        "\nfailures per {per} over the last {} days: {total} in all",
        a.days
    );
    for (t, n) in o.failures.iter().filter(|f| f.1 > 0) {
        println!("  {}  {n}", netdeploy::http::status_page::format_time(*t));
    }
    Ok(())
}
