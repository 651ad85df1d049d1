//! The kernel command line of a boot image started from the network, whichever first stage
//! starts it (the iPXE script or the GRUB configuration of the Secure Boot chain): built in one
//! place, so that both chains hand the boot environment the same parameters.

use crate::dhcp::packet::Mac;

/// The configuration's `[boot.image]`, booted while no deployment is declared.
pub(super) fn default_image(image_cmdline: &str, base: &str, mac: &Mac) -> String {
    format!("{image_cmdline} netdeploy.server={base} netdeploy.mac={mac}")
}

/// A deployment's boot image started through PXE.
pub(super) fn deployment(image_cmdline: &str, base: &str, deployment: &str, mac: &Mac) -> String {
    format!(
        "{image_cmdline} netdeploy.server={base} netdeploy.deployment={deployment} \
         netdeploy.context=pxe netdeploy.mac={mac}"
    )
}
