//! `netdeploy task-sequence`: ordered steps run in the boot environment.

use anyhow::bail;
use clap::Subcommand;

use netdeploy::bootpath::now;
use netdeploy::catalog::*;

use super::object::{object, Kind, ObjectCommand};
use super::DataDir;

#[derive(Debug, Subcommand)]
pub enum TaskSequenceCommand {
    /// Add or replace a task sequence.
    Create {
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        boot_image: Option<String>,
        /// A step, in order: `ACTION:NAME[:ARGUMENT]`, where ACTION is partition, apply_image,
        /// apply_os, run_command, install_package or reboot, and ARGUMENT is the command of a
        /// run_command step or the package of the others (repeat for several steps).
        #[arg(long = "step")]
        steps: Vec<String>,
        /// A package referenced besides those of the steps (repeat for several).
        #[arg(long = "package")]
        packages: Vec<String>,
    },
    #[command(flatten)]
    Object(ObjectCommand),
}

pub fn task_sequence(dd: &DataDir, cmd: TaskSequenceCommand) -> anyhow::Result<()> {
    let store = dd.open()?;
    match cmd {
        TaskSequenceCommand::Object(o) => object(&store, Kind::TaskSequence, o),
        TaskSequenceCommand::Create {
            id,
            name,
            boot_image,
            steps,
            packages,
        } => {
            let mut parsed = Vec::new();
            for s in &steps {
                let mut parts = s.splitn(3, ':');
                let (Some(action), Some(step_name)) = (parts.next(), parts.next()) else {
                    bail!("--step {s:?}: write ACTION:NAME[:ARGUMENT]");
                };
                let action = StepAction::from(action.to_owned());
                if action.is_unknown() {
                    bail!("--step {s:?}: unknown action {:?}", action.as_str());
                }
                let arg = parts.next().map(str::to_owned);
                let (command, package) = if action == StepAction::RunCommand {
                    (arg, None)
                } else {
                    (None, arg)
                };
                parsed.push(Step {
                    package,
                    command,
                    ..Step::new(step_name, action)
                });
            }
            let t = TaskSequence {
                name: name.unwrap_or_else(|| id.clone()),
                id: id.clone(),
                boot_image,
                steps: parsed,
                packages,
            };
            store.put("task_sequence", &id, &t, now())?;
            println!("task sequence {id} saved");
            Ok(())
        }
    }
}
