//! What both first stages (the iPXE script and the GRUB configuration of the Secure Boot chain)
//! share: the choice a machine's request leads to, and the kernel command line of the boot
//! image they start. Made in one place, so that both chains decide alike and hand the boot
//! environment the same parameters.

use std::sync::Arc;

use netdeploy_wire::run_token::CMDLINE_PARAMETER;

use super::AppState;
use crate::bootpath::PxePlan;
use crate::catalog::DeploymentId;
use crate::credentials::RunToken;
use crate::decision::{Action, Decision};
use crate::dhcp::packet::{Mac, SmbiosUuid};
use crate::snapshot::Snapshot;

/// What a first stage does for one machine.
pub(super) enum Choice {
    /// No deployment is declared: the configuration's default boot image.
    DefaultImage,
    /// Leave to the next boot device, for this reason.
    Nothing(String),
    /// Show the menu of these deployments (rule 6); recorded as offered.
    Menu {
        snapshot: Arc<Snapshot>,
        entries: Vec<DeploymentId>,
    },
    /// The PXE password is asked first (rule 9): the machine would get a menu or a
    /// deployment, and has not typed the password. Nothing is recorded.
    PasswordFirst,
    /// Start this deployment: unattended, or picked from the menu (`picked`).
    Run {
        decision: Box<Decision>,
        snapshot: Arc<Snapshot>,
        deployment: DeploymentId,
    },
}

/// Decides what `first_stage` ("iPXE script", "GRUB configuration") gives a machine: only one
/// seen in DHCP lately may start anything; a menu pick (`picked`) runs when it is still on the
/// menu. A machine whose decision asks for the PXE password and that has not proven it
/// (`password_proven`) gets [`Choice::PasswordFirst`] before anything is recorded. Otherwise the
/// decision's warnings and unmet requirements are recorded, and what happens logged.
pub(super) fn choose(
    s: &AppState,
    mac: Mac,
    uuid: Option<SmbiosUuid>,
    arch: Option<u16>,
    picked: Option<&str>,
    password_proven: bool,
    first_stage: &str,
) -> Choice {
    if !seen_in_dhcp(s, mac, first_stage) {
        return Choice::Nothing(format!(
            "this machine has not asked this server for a network boot in the last {} seconds",
            s.config.boot.script_after_dhcp.as_secs()
        ));
    }
    let (decision, snapshot) = match s.bootpath.plan(Some(mac), uuid, arch, picked) {
        Ok(PxePlan::DefaultImage) => return Choice::DefaultImage,
        Ok(PxePlan::Decided { decision, snapshot }) => (decision, snapshot),
        Err(e) => {
            tracing::error!(mac = %mac, error = %e, "cannot read the catalog");
            return Choice::Nothing("the server cannot read its catalog".into());
        }
    };
    if decision.password_required && !password_proven {
        tracing::info!(mac = %mac, "{first_stage}: the PXE password is asked first (rule 9)");
        return Choice::PasswordFirst;
    }
    s.bootpath.record_warnings(&decision);
    s.bootpath.record_unmet(&decision);
    let catalog = snapshot.catalog();
    match decision.action.clone() {
        Action::NoDeployment { reason } => {
            let why = format!("no deployment: {}, {reason}", reason.rule().cite());
            tracing::info!(mac = %mac, reason = %why, "{first_stage}: nothing to boot");
            Choice::Nothing(why)
        }
        Action::Menu { entries, .. } => {
            let pick = picked
                .and_then(|d| d.parse::<DeploymentId>().ok())
                .filter(|id| entries.contains(id) && catalog.deployment(id).is_some());
            if let Some(deployment) = pick {
                return Choice::Run {
                    decision,
                    snapshot,
                    deployment,
                };
            }
            tracing::info!(mac = %mac, entries = ?entries.iter().map(|e| e.to_string()).collect::<Vec<_>>(), "{first_stage}: menu (rule 6)");
            s.bootpath.record_offered(&decision, &entries);
            Choice::Menu { snapshot, entries }
        }
        Action::RunUnattended { deployment, reason } => {
            if catalog.deployment(&deployment).is_none() {
                return Choice::Nothing("the chosen deployment vanished".into());
            }
            tracing::info!(mac = %mac, deployment = %deployment, reason = ?reason, "{first_stage}: runs unattended");
            Choice::Run {
                decision,
                snapshot,
                deployment,
            }
        }
    }
}

/// Where the agent asks for its policy: the HTTPS URL and the certificate's pin while HTTPS is
/// on (the agent accepts that certificate only, docs/security.md), else the HTTP URL.
fn server(s: &AppState) -> String {
    match &s.https {
        Some(h) => format!(
            "netdeploy.server={} {}={}",
            h.base,
            netdeploy_wire::cert_pin::CMDLINE_PARAMETER,
            h.pin
        ),
        None => format!("netdeploy.server={}", s.base),
    }
}

/// The configuration's `[boot.image]`, booted while no deployment is declared.
pub(super) fn default_image(
    image_cmdline: &str,
    s: &AppState,
    mac: &Mac,
    token: &RunToken,
) -> String {
    let server = server(s);
    format!("{image_cmdline} {server} netdeploy.mac={mac} {CMDLINE_PARAMETER}={token}")
}

/// A deployment's boot image started through PXE.
pub(super) fn deployment(
    image_cmdline: &str,
    s: &AppState,
    deployment: &str,
    mac: &Mac,
    token: &RunToken,
) -> String {
    let server = server(s);
    format!(
        "{image_cmdline} {server} netdeploy.deployment={deployment} \
         netdeploy.context=pxe netdeploy.mac={mac} {CMDLINE_PARAMETER}={token}"
    )
}

/// A run token for the run a first stage is about to start (docs/security.md); `None`, logged,
/// when the store cannot keep it.
pub(super) fn run_token(
    s: &AppState,
    mac: Mac,
    uuid: Option<SmbiosUuid>,
    deployment: Option<&str>,
) -> Option<RunToken> {
    let machine = crate::catalog::MachineIdentity {
        mac: Some(mac),
        uuid,
    };
    // One SQLite write per run start: the worker says it blocks, so the runtime moves the
    // other tasks it holds (DHCP, TFTP, other requests) to another worker meanwhile.
    tokio::task::block_in_place(|| {
        s.bootpath
            .issue_run_token(&machine, deployment, s.config.boot.run_token_lifetime)
    })
    .map_err(|e| tracing::error!(mac = %mac, error = %e, "cannot issue a run token"))
    .ok()
}

/// Whether `mac` asked this server for a network boot within `boot.script_after_dhcp_seconds`:
/// only such a machine may start a run (anyone else naming its MAC would set its loop guard
/// and learn its run token). Counted and logged when not.
pub(super) fn seen_in_dhcp(s: &AppState, mac: Mac, first_stage: &str) -> bool {
    let window = s.config.boot.script_after_dhcp;
    if s.sightings
        .seen_within(mac, std::time::Instant::now(), window)
    {
        return true;
    }
    crate::counters::Counters::bump(&s.counters.boot_scripts_unproven);
    tracing::warn!(
        mac = %mac,
        window_seconds = window.as_secs(),
        "{first_stage}: the machine was not seen in a DHCP exchange lately; nothing recorded"
    );
    false
}
