//! The `explain` report (docs/selection-rules.md rule 10): which deployment would run for a machine in
//! a context, and why each other deployment was not chosen, citing the rules.

use std::fmt::Write;

use super::{Action, Context, Decision, RunReason};
use crate::arch::ClientArch;

/// Renders a decision for an operator: the machine, the context, the action, the warnings, then
/// one line per deployment of the catalog (highest id first) with the rule that settled it.
///
/// The text is for people; programs read the [`Decision`] itself (it serializes with serde).
pub fn explain_text(decision: &Decision) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_report(&mut out, decision);
    out
}

fn write_report(out: &mut String, d: &Decision) -> std::fmt::Result {
    let mut ids = Vec::new();
    if let Some(u) = d.machine.uuid {
        ids.push(format!("uuid {u}"));
    }
    if let Some(m) = d.machine.mac {
        ids.push(format!("mac {m}"));
    }
    if ids.is_empty() {
        ids.push("no uuid, no mac".into());
    }
    writeln!(out, "machine:  {}", ids.join(", "))?;
    if let (Some(u), Some(why)) = (d.machine.uuid, &d.uuid_not_used) {
        writeln!(
            out,
            "identity: uuid {u} is not used to identify this machine ({why}); it is known by its \
             MAC (docs/identity.md)"
        )?;
    }
    for note in &d.identity_notes {
        writeln!(out, "identity: {note}")?;
    }
    match &d.device {
        Some(name) => writeln!(out, "matched:  device {name}")?,
        None => writeln!(
            out,
            "matched:  unknown computer (no device has this UUID or MAC)"
        )?,
    }
    match d.context {
        Context::Client { now } => {
            writeln!(out, "context:  client at {now}; schedules apply (rule 2)")?
        }
        c => writeln!(
            out,
            "context:  {c}; schedules are not evaluated: available time, expiry and deadlines \
             do not matter (rule 2)"
        )?,
    }
    match d.arch {
        _ if !d.context.is_boot_environment() => {
            writeln!(out, "firmware: not checked for a running client (rule 5a)")?
        }
        Some(v) => match ClientArch::from_option93(v) {
            Some(a) => writeln!(out, "firmware: option 93 = {v} ({a})")?,
            None => writeln!(
                out,
                "firmware: option 93 = {v}, not a firmware netdeploy boots"
            )?,
        },
        None => writeln!(out, "firmware: not given; architecture not checked")?,
    }

    match &d.action {
        Action::RunUnattended { deployment, reason } => {
            let why = match reason {
                RunReason::Preferred => "named by the preferred deployment id (rule 3)",
                RunReason::Required => "required (rule 5)",
                RunReason::Continuing => "continuing after a restart (rule 7)",
            };
            writeln!(out, "decision: run {deployment} unattended, no menu: {why}")?;
            if *reason == RunReason::Continuing {
                writeln!(
                    out,
                    "resume:   the machine restarted in the middle of the task sequence; it \
                     continues at step {} (the loop guard does not hold it back)",
                    d.resume_at + 1
                )?;
            }
        }
        Action::Menu { entries, .. } => {
            let list: Vec<String> = entries.iter().map(ToString::to_string).collect();
            writeln!(
                out,
                "decision: menu of {}; after the timeout, boot from the local disk (rule 6)",
                list.join(", ")
            )?;
        }
        Action::NoDeployment { reason } => {
            writeln!(
                out,
                "decision: no deployment: {reason} ({}); {}",
                reason.rule(),
                match d.context {
                    Context::Pxe => "no boot offer is sent (rule 8)",
                    _ => "the machine is told nothing is deployed to it (rule 8)",
                }
            )?;
        }
    }
    if d.password_required {
        writeln!(
            out,
            "password: the PXE password is asked before the deployment starts (rule 9)"
        )?;
    }
    for w in &d.warnings {
        writeln!(out, "warning:  {}: {}", w.rule, w.message)?;
    }

    if d.evaluations.is_empty() {
        writeln!(out, "deployments: none in the catalog")?;
        return Ok(());
    }
    writeln!(out, "deployments:")?;
    let chosen = d.unattended();
    for e in &d.evaluations {
        let status = if chosen == Some(e.deployment_id) {
            "runs"
        } else if e.admitted {
            "listed"
        } else {
            "not chosen"
        };
        writeln!(
            out,
            "  {:<8}  {:<10}  {:<9}  {}",
            e.deployment_id.to_string(),
            status,
            e.rule.cite(),
            e.explanation
        )?;
    }
    Ok(())
}
