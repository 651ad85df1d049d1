//! Per-machine GRUB configurations of the Secure Boot chain (docs/network-boot.md section 7):
//! the same decision as `/boot.ipxe`, written for Debian's signed network GRUB, and the
//! boot image files GRUB loads. Served over TFTP (under Secure Boot that GRUB loads no module,
//! and its image has no HTTP), by names below `netdeploy/` ([`GrubRequest`]); made from the
//! same state as the iPXE scripts, so they live beside them.
//!
//! What a configuration boots: the deployment's Linux boot image (its kernel must be signed by
//! a key shim trusts, as Debian's are), the menu of rule 6, or the next boot device. Windows PE
//! starts through iPXE and wimboot only, so a machine on the shim chain is told so and leaves.
//! With a PXE password set (rule 9) a machine on this chain gets no menu and no deployment:
//! Debian's signed GRUB has no `read` command to ask for the password (docs/security.md).

use super::cmdline::Choice;
use std::net::IpAddr;
use std::sync::Arc;

use crate::catalog::{BootImageKind, Catalog, Deployment};
use crate::decision::Decision;
use crate::dhcp::packet::{Mac, SmbiosUuid};
use crate::secure_boot::{self, grub_file, GrubRequest, LinuxBoot};
use crate::tftp::{Generator, Provided};

use super::AppState;

/// The TFTP generator of the names below `netdeploy/`.
pub fn tftp_generator(state: Arc<AppState>) -> Generator {
    Generator(Arc::new(move |name: &str, client: IpAddr| {
        let request = GrubRequest::parse(name)?;
        serve(&state, request, client)
    }))
}

/// `None` leaves the name to the TFTP root, where it is not found.
fn serve(s: &AppState, request: GrubRequest, client: IpAddr) -> Option<Provided> {
    match request {
        GrubRequest::Config {
            mac,
            uuid,
            arch,
            deployment,
        } => {
            let cfg = config(s, mac, uuid, arch, deployment, client);
            Some(Provided::Bytes(cfg.into_bytes().into()))
        }
        GrubRequest::Content(sha) => {
            // As `/content/<sha256>` over HTTP: only content the catalog references.
            match (s.bootpath.serves(&sha), s.bootpath.library.path_of(&sha)) {
                (Ok(true), Ok(path)) => Some(Provided::File(path)),
                _ => {
                    tracing::info!(%client, sha256 = %sha, "GRUB asked for content the catalog does not reference");
                    None
                }
            }
        }
        GrubRequest::ImageKernel => s
            .config
            .boot
            .image
            .as_ref()
            .map(|i| Provided::File(i.kernel.clone())),
        GrubRequest::ImageInitrd => s
            .config
            .boot
            .image
            .as_ref()
            .and_then(|i| i.initrd.clone())
            .map(Provided::File),
    }
}

struct Machine {
    mac: Mac,
    uuid: Option<SmbiosUuid>,
    arch: Option<u16>,
}

impl Machine {
    fn query(&self) -> String {
        let mut q = format!("mac={}", self.mac.to_string().replace(':', "-"));
        if let Some(a) = self.arch {
            q.push_str(&format!("&arch={a}"));
        }
        if let Some(u) = self.uuid {
            q.push_str(&format!("&uuid={u}"));
        }
        q
    }

    fn nothing(&self, reason: &str) -> String {
        secure_boot::nothing_cfg(&self.mac.to_string(), reason)
    }
}

/// The configuration for one machine, from what `grub/grub.cfg` asked with.
fn config(
    s: &AppState,
    mac: Option<String>,
    uuid: Option<String>,
    arch: Option<u16>,
    deployment: Option<String>,
    client: IpAddr,
) -> String {
    let Some(Ok(mac)) = mac.as_deref().map(str::parse::<Mac>) else {
        tracing::warn!(%client, "GRUB configuration asked without a MAC address");
        return secure_boot::nothing_cfg("this machine", "GRUB did not say its MAC address");
    };
    // GRUB leaves the UUID empty when the firmware has no SMBIOS table.
    let uuid = uuid
        .as_deref()
        .and_then(|u| crate::catalog::parse_smbios_uuid(u).ok());
    let m = Machine { mac, uuid, arch };
    match super::cmdline::choose(
        s,
        mac,
        uuid,
        arch,
        deployment.as_deref(),
        // Debian's signed network GRUB cannot ask for the PXE password: its image has no
        // `read` command, and under Secure Boot it loads no module that would add one.
        s.config.boot.pxe_password.is_none(),
        "GRUB configuration",
    ) {
        Choice::DefaultImage => default_image(s, &m),
        Choice::Nothing(why) => m.nothing(&why),
        Choice::PasswordFirst => {
            tracing::warn!(mac = %m.mac, "GRUB configuration: a PXE password is set, which the Secure Boot chain cannot ask for; leaving to the next boot device (rule 9)");
            m.nothing(
                "a PXE password is set (boot.pxe_password_hash) and the signed GRUB of Debian has no command to ask for it; boot this machine through iPXE (Secure Boot off) or from boot media",
            )
        }
        Choice::Menu { snapshot, entries } => {
            let catalog = snapshot.catalog();
            let named: Vec<(String, String)> = entries
                .iter()
                .map(|id| {
                    let name = catalog
                        .deployment(id)
                        .and_then(|d| catalog.task_sequence(&d.task_sequence))
                        .map(|t| t.name.clone())
                        .unwrap_or_default();
                    (id.to_string(), name)
                })
                .collect();
            secure_boot::menu_cfg(
                &mac.to_string(),
                &m.query(),
                &named,
                s.config.boot.menu_timeout.as_secs(),
            )
        }
        Choice::Run {
            decision,
            snapshot,
            deployment,
        } => {
            let (catalog, settings) = (snapshot.catalog(), &snapshot.settings);
            let d = catalog
                .deployment(&deployment)
                .expect("chosen from this catalog");
            run_deployment(s, &m, &decision, catalog, settings, d)
        }
    }
}

/// The configuration's `[boot.image]`, for every machine, while no deployment is declared.
fn default_image(s: &AppState, m: &Machine) -> String {
    let Some(image) = &s.config.boot.image else {
        tracing::warn!(mac = %m.mac, "GRUB configuration: no deployment and no default boot image");
        return m.nothing("no deployment and no default boot image are configured");
    };
    let Some(token) = super::cmdline::run_token(s, m.mac, m.uuid, None) else {
        return m.nothing("the server cannot issue a run token");
    };
    let cmdline = super::cmdline::default_image(&image.cmdline, s, &m.mac, &token);
    let mac = m.mac.to_string();
    let boot = LinuxBoot {
        mac: &mac,
        title: &format!("booting {}", image.kernel.display()),
        kernel: grub_file("/image/kernel"),
        initrd: image.initrd.as_ref().map(|_| grub_file("/image/initrd")),
        cmdline: &cmdline,
    };
    match boot.render() {
        Ok(cfg) => {
            tracing::info!(mac = %m.mac, "GRUB configuration served");
            cfg
        }
        Err(problem) => {
            tracing::error!(mac = %m.mac, problem, "boot.image.cmdline cannot go on GRUB's linux line");
            m.nothing("the boot image's kernel command line cannot be passed safely")
        }
    }
}

/// Boots a deployment's Linux boot image and records the start (loop guard, rule 7), as the
/// iPXE script does.
fn run_deployment(
    s: &AppState,
    m: &Machine,
    decision: &Decision,
    catalog: &Catalog,
    settings: &crate::catalog::site::Settings,
    d: &Deployment,
) -> String {
    let Some((image, pre)) = crate::bootpath::boot_image_for(catalog, settings, decision, d) else {
        return m.nothing("the deployment's boot image is pre-production and this machine is not in the pre-production collection");
    };
    if pre {
        tracing::info!(mac = %m.mac, boot_image = %image.id, "pre-production boot image served");
    }
    if image.kind == BootImageKind::WinPe {
        tracing::warn!(mac = %m.mac, boot_image = %image.id, "GRUB configuration: a Windows PE boot image starts through iPXE only");
        return m.nothing(
            "Windows PE boot images start through iPXE and wimboot, not through shim and GRUB (boot.chain)",
        );
    }
    let file = |name: &str| image.files.iter().find(|f| f.path == name);
    let Some(kernel) = file("kernel") else {
        return m.nothing("the boot image has no kernel");
    };
    let Some(token) = super::cmdline::run_token(s, m.mac, m.uuid, Some(&d.id.to_string())) else {
        return m.nothing("the server cannot issue a run token");
    };
    let cmdline = super::cmdline::deployment(&image.cmdline, s, &d.id.to_string(), &m.mac, &token);
    let ts_name = catalog
        .task_sequence(&d.task_sequence)
        .map(|t| t.name.as_str())
        .unwrap_or(&d.task_sequence);
    let mac = m.mac.to_string();
    let boot = LinuxBoot {
        mac: &mac,
        title: &format!("deployment {} ({ts_name})", d.id),
        kernel: grub_file(&format!("/content/{}", kernel.sha256)),
        initrd: file("initrd").map(|f| grub_file(&format!("/content/{}", f.sha256))),
        cmdline: &cmdline,
    };
    let cfg = match boot.render() {
        Ok(cfg) => cfg,
        Err(problem) => {
            tracing::error!(mac = %m.mac, boot_image = %image.id, problem, "boot image command line refused");
            return m.nothing("the boot image's kernel command line cannot be passed safely");
        }
    };
    // The TFTP server asks for this file from its own (synchronous) code on one of the
    // runtime's worker threads; the start is recorded as for the iPXE script, and the
    // configuration goes out once the loop guard is on disk (rule 7).
    let runtime = tokio::runtime::Handle::current();
    tokio::task::block_in_place(|| runtime.block_on(s.bootpath.record_start(decision, d, image)));
    tracing::info!(mac = %m.mac, deployment = %d.id, "GRUB configuration served");
    cfg
}
