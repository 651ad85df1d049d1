//! Per-machine iPXE scripts (`/boot.ipxe`), the Windows PE variables file, and the
//! configuration's fallback boot image (`/image/kernel`, `/image/initrd`).
//!
//! iPXE gets `/boot.ipxe?mac=..&arch=..&uuid=..` from netdeploy's DHCP answer; an iPXE started
//! some other way gets a short script that asks again with its own `${mac}` and `${uuid}`.

use super::cmdline::Choice;
use super::pxe_password;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use netdeploy_wire::variables::{MediaType, MediaVariables};

use crate::catalog::{Catalog, Deployment};
use crate::counters::Counters;
use crate::decision::Decision;
use crate::dhcp::packet::Mac;

use super::files::send_file;
use super::script::{self, render};
use super::AppState;

/// Query of `/boot.ipxe`: what the DHCP answer wrote in, or what iPXE says of itself.
#[derive(Debug, Deserialize)]
pub struct BootQuery {
    pub mac: Option<String>,
    pub arch: Option<u16>,
    pub uuid: Option<String>,
    pub platform: Option<String>,
    pub buildarch: Option<String>,
    /// A deployment picked from the menu.
    pub deployment: Option<String>,
    /// The run token a Windows PE script passes on to its variables file.
    pub token: Option<String>,
    /// The PXE password typed at the prompt (rule 9).
    pub pxe_password: Option<String>,
    /// Wrong PXE passwords typed before in this boot.
    pub pxe_tries: Option<u32>,
}

impl BootQuery {
    /// Option 93 value, from `arch` or from iPXE's `${platform}`/`${buildarch}`.
    fn arch_value(&self) -> Option<u16> {
        self.arch.or(
            match (self.platform.as_deref(), self.buildarch.as_deref()) {
                (Some("pcbios"), _) => Some(0),
                (Some("efi"), Some("x86_64")) => Some(7),
                (Some("efi"), Some("i386")) => Some(6),
                (Some("efi"), Some("arm64")) => Some(11),
                (Some("efi"), Some("arm32")) => Some(10),
                _ => None,
            },
        )
    }
}

pub(super) fn ipxe(text: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
}

pub(super) async fn boot_script(
    State(s): State<Arc<AppState>>,
    connection: axum::http::Extensions,
    Query(q): Query<BootQuery>,
) -> Response {
    Counters::bump(&s.counters.http_requests);
    let base = s.base.as_str();
    let Some(mac) = q.mac.as_deref() else {
        return ipxe(render(script::IDENTIFY, &[("base", base)]));
    };
    let Ok(mac) = mac.parse::<Mac>() else {
        return (StatusCode::BAD_REQUEST, "mac is not a MAC address\n").into_response();
    };
    let uuid = q
        .uuid
        .as_deref()
        .and_then(|u| crate::catalog::parse_smbios_uuid(u).ok());
    let m = Machine {
        mac,
        uuid,
        arch: q.arch_value(),
    };
    let caller = connection
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let proof =
        pxe_password::check(&s, caller, mac, q.pxe_password.as_deref(), "iPXE script").await;
    let choice = super::cmdline::choose(
        &s,
        mac,
        uuid,
        m.arch,
        q.deployment.as_deref(),
        proof.proven(),
        "iPXE script",
    );
    match choice {
        Choice::DefaultImage => default_image(&s, &m),
        Choice::Nothing(why) => nothing(&m, &why),
        Choice::PasswordFirst => {
            let tries = pxe_password::tries_made(q.pxe_tries, proof);
            if tries >= pxe_password::TRIES {
                tracing::info!(mac = %m.mac, "iPXE script: {tries} wrong PXE passwords; leaving to the next boot device (rule 9)");
                return nothing(&m, &format!("{tries} wrong PXE passwords (rule 9)"));
            }
            // A menu pick asks again with the deployment it picked.
            let mut query = m.query();
            if let Some(d) = q
                .deployment
                .as_deref()
                .filter(|d| d.chars().all(|c| c.is_ascii_alphanumeric()) && !d.is_empty())
            {
                query.push_str(&format!("&deployment={d}"));
            }
            ipxe(pxe_password::ipxe_prompt(
                &s.base, &m.mac, &query, tries, proof,
            ))
        }
        Choice::Menu { snapshot, entries } => {
            ipxe(menu_script(&s, &m, snapshot.catalog(), &entries))
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
            run_deployment(&s, &m, &decision, catalog, settings, d).await
        }
    }
}

/// What the script request says of the machine.
pub(super) struct Machine {
    mac: Mac,
    uuid: Option<crate::dhcp::packet::SmbiosUuid>,
    arch: Option<u16>,
}

impl Machine {
    fn arch_s(&self) -> String {
        self.arch
            .map(|a| a.to_string())
            .unwrap_or_else(|| "unknown".into())
    }
    fn arch_name(&self) -> String {
        self.arch
            .and_then(crate::arch::ClientArch::from_option93)
            .map(|a| a.key().to_owned())
            .unwrap_or_else(|| "unknown".into())
    }
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
}

pub(super) fn nothing(m: &Machine, reason: &str) -> Response {
    ipxe(render(
        script::NOTHING,
        &[
            ("mac", &m.mac.to_string()),
            ("reason", &script::text(reason)),
        ],
    ))
}

/// The configuration's `[boot.image]`, for every machine, while no deployment is declared.
pub(super) fn default_image(s: &AppState, m: &Machine) -> Response {
    let Some(image) = &s.config.boot.image else {
        tracing::warn!(mac = %m.mac, "iPXE script: no deployment and no default boot image");
        return nothing(m, "no deployment and no default boot image are configured");
    };
    if let Some(problem) = crate::catalog::kernel_cmdline_problem(&image.cmdline) {
        tracing::error!(mac = %m.mac, problem, "boot.image.cmdline cannot go on an iPXE kernel line");
        return nothing(
            m,
            "the boot image's kernel command line cannot be passed safely",
        );
    }
    tracing::info!(mac = %m.mac, arch = %m.arch_s(), arch_name = %m.arch_name(), "iPXE script served");
    let Some(token) = super::cmdline::run_token(s, m.mac, m.uuid, None) else {
        return nothing(m, "the server cannot issue a run token");
    };
    let cmdline = super::cmdline::default_image(&image.cmdline, s, &m.mac, &token);
    let initrd = image
        .initrd
        .as_ref()
        .map(|_| {
            format!(
                "initrd --name initrd.img {}/image/initrd || goto failed",
                s.base
            )
        })
        .unwrap_or_default();
    ipxe(linux_script(
        m,
        &format!("booting {}", image.kernel.display()),
        &format!("{}/image/kernel", s.base),
        &initrd,
        &cmdline,
    ))
}

pub(super) fn linux_script(
    m: &Machine,
    title: &str,
    kernel_url: &str,
    initrd_cmd: &str,
    cmdline: &str,
) -> String {
    render(
        script::LINUX,
        &[
            ("mac", &m.mac.to_string()),
            ("arch", &m.arch_s()),
            ("arch_name", &m.arch_name()),
            ("title", &script::text(title)),
            ("kernel_url", kernel_url),
            ("initrd_cmd", initrd_cmd),
            ("cmdline", cmdline),
        ],
    )
}

/// Boots a deployment's boot image, passing the deployment id and server URL to the boot
/// environment on the kernel command line, and records the start (loop guard, rule 7).
pub(super) async fn run_deployment(
    s: &AppState,
    m: &Machine,
    decision: &Decision,
    catalog: &Catalog,
    settings: &crate::catalog::site::Settings,
    d: &Deployment,
) -> Response {
    let Some((image, pre)) = crate::bootpath::boot_image_for(catalog, settings, decision, d) else {
        return nothing(m, "the deployment's boot image is pre-production and this machine is not in the pre-production collection");
    };
    if pre {
        tracing::info!(mac = %m.mac, boot_image = %image.id, "pre-production boot image served");
    }
    let ts_name = script::text(
        catalog
            .task_sequence(&d.task_sequence)
            .map(|t| t.name.as_str())
            .unwrap_or(&d.task_sequence),
    );
    if image.kind == crate::catalog::BootImageKind::WinPe {
        let hash = |name: &str| {
            image
                .files
                .iter()
                .find(|f| f.path == name)
                .map(|f| f.sha256.clone())
        };
        let names = crate::catalog::site::WINPE_FILES;
        let hashes: Vec<Option<String>> = names.iter().map(|n| hash(n)).collect();
        if hashes.iter().any(Option::is_none) {
            return nothing(
                m,
                "the Windows PE boot image lacks one of wimboot, bootmgr, BCD, boot.sdi, boot.wim",
            );
        }
        let Some(token) = super::cmdline::run_token(s, m.mac, m.uuid, Some(&d.id.to_string()))
        else {
            return nothing(m, "the server cannot issue a run token");
        };
        s.bootpath.record_start(decision, d, image).await;
        let h: Vec<String> = hashes.into_iter().flatten().collect();
        let query = format!("{}&deployment={}&token={token}", m.query(), d.id);
        let agent = if s.config.boot.windows_agent.is_some() {
            render(script::WINPE_AGENT, &[("base", &s.base)])
        } else {
            tracing::warn!(mac = %m.mac, deployment = %d.id, "no Windows agent to inject (boot.windows_agent): Windows PE will stop at its prompt");
            "echo netdeploy: the server has no Windows agent (boot.windows_agent): Windows PE will stop at its prompt\n".to_owned()
        };
        return ipxe(
            render(
                script::WINPE,
                &[
                    ("base", &s.base),
                    ("mac", &m.mac.to_string()),
                    ("title", &format!("deployment {} ({ts_name})", d.id)),
                    ("query", &query),
                    ("wimboot", &h[0]),
                    ("bootmgr", &h[1]),
                    ("bcd", &h[2]),
                    ("boot_sdi", &h[3]),
                    ("boot_wim", &h[4]),
                ],
            )
            .replace("{{agent}}\n", &agent),
        );
    }
    let file = |name: &str| image.files.iter().find(|f| f.path == name);
    let Some(kernel) = file("kernel") else {
        return nothing(m, "the boot image has no kernel");
    };
    // A site file with such a command line is refused at apply time; a catalog stored before
    // that check must not put iPXE syntax on the kernel line either.
    if let Some(problem) = crate::catalog::kernel_cmdline_problem(&image.cmdline) {
        tracing::error!(mac = %m.mac, boot_image = %image.id, problem, "boot image command line refused");
        return nothing(
            m,
            "the boot image's kernel command line cannot be passed safely",
        );
    }
    let initrd = file("initrd")
        .map(|f| {
            format!(
                "initrd --name initrd.img {}/content/{} || goto failed",
                s.base, f.sha256
            )
        })
        .unwrap_or_default();
    let Some(token) = super::cmdline::run_token(s, m.mac, m.uuid, Some(&d.id.to_string())) else {
        return nothing(m, "the server cannot issue a run token");
    };
    let cmdline = super::cmdline::deployment(&image.cmdline, s, &d.id.to_string(), &m.mac, &token);
    // The loop guard holds from here for the next decision; the store follows.
    s.bootpath.record_start(decision, d, image).await;
    ipxe(linux_script(
        m,
        &format!("deployment {} ({ts_name})", d.id),
        &format!("{}/content/{}", s.base, kernel.sha256),
        &initrd,
        &cmdline,
    ))
}

/// The menu of visible available deployments (rule 6); after the timeout, the local disk.
pub(super) fn menu_script(
    s: &AppState,
    m: &Machine,
    catalog: &Catalog,
    entries: &[crate::catalog::DeploymentId],
) -> String {
    let clean = script::text;
    let mut out = format!(
        "#!ipxe\n# netdeploy: menu for {mac} (docs/selection-rules.md rule 6)\nmenu netdeploy: deployments for {mac}\n",
        mac = m.mac
    );
    for id in entries {
        let name = catalog
            .deployment(id)
            .and_then(|d| catalog.task_sequence(&d.task_sequence))
            .map(|t| clean(&t.name))
            .unwrap_or_default();
        out.push_str(&format!("item {id} {id} {name}\n"));
    }
    let timeout = s.config.boot.menu_timeout.as_millis();
    out.push_str(&format!(
        "item --gap\nitem local Boot from the local disk\n\
         choose --timeout {timeout} --default local target || goto local\n\
         iseq ${{target}} local && goto local ||\n\
         chain {base}/boot.ipxe?{q}&deployment=${{target}}{password}\n\
         :local\necho netdeploy: leaving to the local disk\n\
         echo netdeploy: iPXE now reports \"Could not boot image: Error 0x00000001\"; that is this exit, not a failure\n\
         exit 1\n",
        base = s.base,
        q = m.query(),
        // The pick is a new request: it proves the password again with the one iPXE keeps.
        password = if s.config.boot.pxe_password.is_some() {
            "&pxe_password=${password:uristring}"
        } else {
            ""
        },
    ));
    out
}

/// The variables file wimboot injects into Windows PE (`X:\\Windows\\System32\\netdeploy.ini`):
/// what the agent or a script in WinPE reads to find the server and the deployment.
pub(super) async fn winpe_variables(
    State(s): State<Arc<AppState>>,
    Query(q): Query<BootQuery>,
) -> Response {
    let clean = |v: &str| -> String {
        v.chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | ':' | '.'))
            .collect()
    };
    let variables = MediaVariables {
        server_url: Some(s.agent_base().to_owned()),
        media_type: MediaType::Pxe,
        preferred_advert_id: q.deployment.as_deref().map(clean),
        media_password: None,
        medium_key: None,
        mac: q.mac.as_deref().map(clean),
        run_token: q.token.as_deref().map(clean),
        server_pin: s.https.as_ref().map(|h| h.pin),
    };
    let out = match variables.render() {
        Ok(out) => out,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], out).into_response()
}

/// The Windows build of the agent, which a Windows PE deployment's script injects.
pub(super) async fn windows_agent(State(s): State<Arc<AppState>>) -> Response {
    match &s.config.boot.windows_agent {
        Some(p) => send_file(&s, p).await,
        None => (
            StatusCode::NOT_FOUND,
            "no Windows agent configured (boot.windows_agent)\n",
        )
            .into_response(),
    }
}

/// The `winpeshl.ini` that makes Windows PE start the agent, the same text WinPE media carry.
pub(super) async fn winpeshl_ini() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        netdeploy_wire::winpe::winpeshl_ini(),
    )
        .into_response()
}

pub(super) async fn image_kernel(State(s): State<Arc<AppState>>) -> Response {
    match &s.config.boot.image {
        Some(i) => send_file(&s, &i.kernel).await,
        None => (StatusCode::NOT_FOUND, "no boot image configured\n").into_response(),
    }
}

pub(super) async fn image_initrd(State(s): State<Arc<AppState>>) -> Response {
    match s.config.boot.image.as_ref().and_then(|i| i.initrd.as_ref()) {
        Some(p) => send_file(&s, p).await,
        None => (StatusCode::NOT_FOUND, "no initrd configured\n").into_response(),
    }
}
