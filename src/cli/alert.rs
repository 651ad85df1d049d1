//! `netdeploy alert`: thresholds that raise a deployment alert.

use anyhow::bail;
use clap::Subcommand;

use netdeploy::bootpath::now;
use netdeploy::catalog::*;
use netdeploy::store::catalog as stored;

use super::DataDir;

/// `netdeploy alert`.
#[derive(Debug, Subcommand)]
pub enum AlertCommand {
    /// Raise an alert when at least MIN machines of the deployment's collection failed and
    /// they make at least PERCENT percent of it (the running server posts it to its webhooks).
    Set {
        #[arg(long)]
        deployment: String,
        #[arg(long, value_name = "PERCENT")]
        failure_percent: u32,
        #[arg(long, value_name = "MIN", default_value_t = 1)]
        min_failures: usize,
    },
    /// Turn a deployment's alert off.
    Clear {
        #[arg(long)]
        deployment: String,
    },
    /// The thresholds, and the alerts raised now.
    List,
}

pub fn alert(dd: &DataDir, c: AlertCommand) -> anyhow::Result<()> {
    use netdeploy::alerts;
    let store = dd.open()?;
    let (catalog, _) = stored::load(&store)?;
    let known = |id: &str| -> anyhow::Result<DeploymentId> {
        let id: DeploymentId = id.parse()?;
        if catalog.deployment(&id).is_none() {
            bail!("no deployment {id}");
        }
        Ok(id)
    };
    match c {
        AlertCommand::Set {
            deployment,
            failure_percent,
            min_failures,
        } => {
            let t = alerts::Threshold::new(known(&deployment)?, failure_percent, min_failures)?;
            alerts::set(&store, &t, now())?;
            println!(
                "alert for {}: at least {min_failures} failed and {failure_percent}% of its collection",
                t.deployment
            );
        }
        AlertCommand::Clear { deployment } => {
            let id: DeploymentId = deployment.parse()?;
            if alerts::clear(&store, &id)? {
                println!("alert for {id} turned off");
            } else {
                println!("{id} had no alert");
            }
        }
        AlertCommand::List => {
            let thresholds = alerts::thresholds(&store)?;
            for t in &thresholds {
                println!(
                    "{}  {}%  at least {}",
                    t.deployment, t.failure_percent, t.min_failures
                );
            }
            let messages = store.statuses(None, 100_000)?;
            for a in alerts::current(&catalog, &messages, &thresholds) {
                println!("RAISED  {}", a.message);
            }
        }
    }
    Ok(())
}
