//! The kernel command line of a boot image started from the network, whichever first stage
//! starts it (the iPXE script or the GRUB configuration of the Secure Boot chain): built in one
//! place, so that both chains hand the boot environment the same parameters.

use netdeploy_wire::run_token::CMDLINE_PARAMETER;

use super::AppState;
use crate::credentials::RunToken;
use crate::dhcp::packet::{Mac, SmbiosUuid};

/// The configuration's `[boot.image]`, booted while no deployment is declared.
pub(super) fn default_image(
    image_cmdline: &str,
    base: &str,
    mac: &Mac,
    token: &RunToken,
) -> String {
    format!(
        "{image_cmdline} netdeploy.server={base} netdeploy.mac={mac} {CMDLINE_PARAMETER}={token}"
    )
}

/// A deployment's boot image started through PXE.
pub(super) fn deployment(
    image_cmdline: &str,
    base: &str,
    deployment: &str,
    mac: &Mac,
    token: &RunToken,
) -> String {
    format!(
        "{image_cmdline} netdeploy.server={base} netdeploy.deployment={deployment} \
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
    s.bootpath
        .issue_run_token(&machine, deployment, s.config.boot.run_token_lifetime)
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
