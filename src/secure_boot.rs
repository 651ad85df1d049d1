//! The Secure Boot chain (docs/network-boot.md section 7): the firmware loads Debian's shim
//! (signed for the UEFI CA that machines trust) over TFTP; shim loads Debian's signed network
//! GRUB from the same TFTP directory under the name `grubx64.efi`; GRUB reads `grub/grub.cfg`
//! over TFTP, which is the same for every machine and asks netdeploy, over TFTP too, for the
//! machine's own configuration (`/netdeploy/boot.grub?mac=..`): the decision its iPXE script
//! would carry, written for GRUB. GRUB then loads the boot image's kernel over TFTP, which shim
//! checks against the distribution's key (Debian's kernels are signed), and the initrd.
//!
//! netdeploy signs nothing. This module is pure: the TFTP names, the files TFTP serves for the
//! chain, and the GRUB configurations rendered from values.

use std::sync::Arc;

use crate::arch::ClientArch;
use crate::config::{BootChain, ShimFiles};
use crate::http::render;
use crate::tftp::Provided;

/// The TFTP name of shim: the boot file of a machine on the shim chain.
pub const SHIM_TFTP_NAME: &str = "shimx64.efi";
/// The name shim loads its second stage by, from the directory it was loaded from.
pub const GRUB_TFTP_NAME: &str = "grubx64.efi";
/// Where Debian's network GRUB looks for its configuration: `$prefix/grub.cfg` with the prefix
/// `/grub` on the TFTP server (seen in QEMU: it asks for `/grub/grub.cfg`); `grub.cfg` beside
/// shim is GRUB's own fallback.
pub const GRUB_CFG_TFTP_NAMES: [&str; 2] = ["grub/grub.cfg", "grub.cfg"];

const NETBOOT: &str = include_str!("../boot/grub/netboot.cfg");
const LINUX: &str = include_str!("../boot/grub/linux.cfg");
const NOTHING: &str = include_str!("../boot/grub/nothing.cfg");

/// The TFTP directory of what netdeploy makes for GRUB: `boot.grub?QUERY` (the machine's
/// configuration), `content/<sha256>` (boot image files), `image/kernel` and `image/initrd`
/// (the configuration's `[boot.image]`). Debian's signed GRUB fetches over TFTP only: under
/// Secure Boot it loads no module, and its image holds no `http`.
pub const TFTP_DIR: &str = "netdeploy";

/// GRUB's name of a file netdeploy makes (`/content/<sha256>` -> `/netdeploy/content/<sha256>`),
/// on the TFTP server GRUB was loaded from.
pub fn grub_file(path: &str) -> String {
    format!("/{TFTP_DIR}{path}")
}

/// What GRUB asks netdeploy for over TFTP, by the name below [`TFTP_DIR`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrubRequest {
    /// `boot.grub?mac=..&uuid=..&arch=..[&deployment=..]`: the machine's configuration.
    Config {
        mac: Option<String>,
        uuid: Option<String>,
        arch: Option<u16>,
        deployment: Option<String>,
    },
    /// `content/<sha256>`: a file of a boot image.
    Content(String),
    /// `image/kernel` or `image/initrd` of the configuration's `[boot.image]`.
    ImageKernel,
    ImageInitrd,
}

impl GrubRequest {
    /// Parses a TFTP name (components joined by `/`, as `tftp::path::provided_name` gives
    /// them); `None` when it is not below [`TFTP_DIR`] or not one of these.
    pub fn parse(name: &str) -> Option<GrubRequest> {
        let (dir, rest) = name.split_once('/')?;
        if !dir.eq_ignore_ascii_case(TFTP_DIR) {
            return None;
        }
        if let Some(query) = rest.strip_prefix("boot.grub?") {
            let (mut mac, mut uuid, mut arch, mut deployment) = (None, None, None, None);
            for pair in query.split('&') {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                let v = (!v.is_empty()).then(|| v.to_owned());
                match k {
                    "mac" => mac = v,
                    "uuid" => uuid = v,
                    "arch" => arch = v.and_then(|a| a.parse().ok()),
                    "deployment" => deployment = v,
                    _ => {}
                }
            }
            return Some(GrubRequest::Config {
                mac,
                uuid,
                arch,
                deployment,
            });
        }
        if let Some(sha) = rest.strip_prefix("content/") {
            let sha = sha.to_ascii_lowercase();
            let ok = sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit());
            return ok.then_some(GrubRequest::Content(sha));
        }
        match rest.to_ascii_lowercase().as_str() {
            "image/kernel" => Some(GrubRequest::ImageKernel),
            "image/initrd" => Some(GrubRequest::ImageInitrd),
            _ => None,
        }
    }
}

/// The files TFTP serves for the chain under fixed names: shim, GRUB under the name shim asks
/// for, and the GRUB configuration that sends every machine to its own.
pub fn tftp_files(shim: &ShimFiles) -> Vec<(String, Provided)> {
    let cfg: Arc<[u8]> = netboot_cfg().into_bytes().into();
    let mut files = vec![
        (SHIM_TFTP_NAME.to_owned(), Provided::File(shim.shim.clone())),
        (GRUB_TFTP_NAME.to_owned(), Provided::File(shim.grub.clone())),
    ];
    for name in GRUB_CFG_TFTP_NAMES {
        files.push((name.to_owned(), Provided::Bytes(cfg.clone())));
    }
    files
}

/// The `grub/grub.cfg` every machine reads over TFTP.
pub fn netboot_cfg() -> String {
    render(NETBOOT, &[("config", &grub_file("/boot.grub"))])
}

/// The `explain` line that says how a firmware gets to its boot image (`[boot.chain]`), or
/// `None` for an architecture that is not booted over the network by netdeploy's chains.
pub fn explain_chain(arch: ClientArch, chain: BootChain) -> Option<String> {
    let key = arch.key();
    match (arch, chain) {
        (ClientArch::EfiX64, BootChain::Shim) => Some(format!(
            "chain:    shim (boot.chain {key} = \"shim\"): the firmware loads Debian's signed \
             {SHIM_TFTP_NAME}, then the signed network GRUB, the GRUB configuration made from this \
             decision and the boot image's signed kernel, over TFTP; for Secure Boot \
             (docs/network-boot.md section 7)"
        )),
        (a, BootChain::Ipxe) if !a.is_http_boot() => Some(format!(
            "chain:    ipxe (boot.chain {key}, the default): the firmware loads iPXE, which \
             fetches the script made from this decision; a machine with Secure Boot enforced \
             refuses it (docs/network-boot.md section 7)"
        )),
        _ => None,
    }
}

/// Free text made inert in GRUB's script: no quote, no line break, so it can stand between
/// single quotes, where GRUB expands nothing.
pub fn text(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control() && *c != '\'')
        .collect()
}

/// A word between single quotes; `None` when it holds a quote or a control character, which
/// no quoting carries through GRUB's script unchanged.
pub fn quote(word: &str) -> Option<String> {
    if word.chars().any(|c| c.is_control() || c == '\'') {
        return None;
    }
    Some(format!("'{word}'"))
}

/// What is wrong with a kernel command line for GRUB's `linux` line, or `None`.
pub fn cmdline_problem(cmdline: &str) -> Option<String> {
    if let Some(c) = cmdline.chars().find(|c| c.is_control()) {
        return Some(format!(
            "contains the control character {c:?}; a kernel command line is one line"
        ));
    }
    if cmdline.contains('\'') {
        return Some("contains a single quote, which GRUB's linux line cannot carry".into());
    }
    None
}

/// A GRUB configuration that boots a Linux kernel (and initrd) fetched over HTTP with a
/// command line, each word quoted so that GRUB passes it unchanged.
pub struct LinuxBoot<'a> {
    pub mac: &'a str,
    pub title: &'a str,
    pub kernel: String,
    pub initrd: Option<String>,
    pub cmdline: &'a str,
}

impl LinuxBoot<'_> {
    /// The configuration, or why the command line cannot go on GRUB's `linux` line.
    pub fn render(&self) -> Result<String, String> {
        if let Some(problem) = cmdline_problem(self.cmdline) {
            return Err(problem);
        }
        let words: Vec<String> = self.cmdline.split_whitespace().filter_map(quote).collect();
        let initrd_and_boot = match &self.initrd {
            Some(i) => format!("  if initrd {i}; then\n    boot\n  fi"),
            None => "  boot".to_owned(),
        };
        Ok(render(
            LINUX,
            &[
                ("mac", self.mac),
                ("title", &text(self.title)),
                (
                    "echo_title",
                    &format!("'netdeploy: {} on {}'", text(self.title), self.mac),
                ),
                ("kernel", &self.kernel),
                ("cmdline", &words.join(" ")),
            ],
        )
        .replace("{{initrd_and_boot}}", &initrd_and_boot))
    }
}

/// Leaves to the next boot device, saying why.
pub fn nothing_cfg(mac: &str, reason: &str) -> String {
    render(
        NOTHING,
        &[
            ("mac", mac),
            (
                "echo_reason",
                &format!(
                    "'netdeploy: nothing to boot for {mac} ({}); leaving to the next boot device'",
                    text(reason)
                ),
            ),
        ],
    )
}

/// The menu of visible available deployments (docs/selection-rules.md rule 6): each entry asks
/// `/boot.grub` again with the deployment picked; after the timeout, the next boot device.
pub fn menu_cfg(
    mac: &str,
    query: &str,
    entries: &[(String, String)],
    timeout_seconds: u64,
) -> String {
    let mut out = format!(
        "# netdeploy: menu for {mac} (docs/selection-rules.md rule 6)\n\
         set timeout={timeout_seconds}\nset default=local\n"
    );
    for (id, name) in entries {
        let id = text(id);
        let url = grub_file(&format!("/boot.grub?{query}&deployment={id}"));
        out.push_str(&format!(
            "menuentry '{id} {}' --id '{id}' {{\n  configfile '{}'\n}}\n",
            text(name),
            text(&url),
        ));
    }
    out.push_str(
        "menuentry 'Boot from the local disk' --id local {\n  \
         echo 'netdeploy: leaving to the next boot device'\n  exit 1\n}\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grub_requests_are_read_from_tftp_names_below_the_netdeploy_directory() {
        assert_eq!(
            GrubRequest::parse("netdeploy/boot.grub?mac=52:54:00:12:34:56&uuid=&arch=7"),
            Some(GrubRequest::Config {
                mac: Some("52:54:00:12:34:56".into()),
                uuid: None,
                arch: Some(7),
                deployment: None,
            })
        );
        let sha = "Ab".repeat(32);
        assert_eq!(
            GrubRequest::parse(&format!("netdeploy/content/{sha}")),
            Some(GrubRequest::Content(sha.to_lowercase()))
        );
        assert_eq!(
            GrubRequest::parse("NETDEPLOY/image/KERNEL"),
            Some(GrubRequest::ImageKernel)
        );
        assert_eq!(GrubRequest::parse("netdeploy/content/abc"), None);
        assert_eq!(GrubRequest::parse("grub/grub.cfg"), None);
        assert_eq!(GrubRequest::parse("boot.grub?mac=x"), None);
    }

    #[test]
    fn the_tftp_configuration_asks_for_the_machines_own_with_its_mac_and_uuid() {
        let cfg = netboot_cfg();
        assert!(cfg.contains(
            "configfile \"/netdeploy/boot.grub?mac=${net_default_mac}&uuid=${netdeploy_uuid}&arch=7\"\n"
        ), "{cfg}");
        assert!(cfg.contains("smbios --type 1 --get-uuid 8 --set netdeploy_uuid\n"));
        assert!(!cfg.contains("{{"), "{cfg}");
    }

    #[test]
    fn linux_line_quotes_every_word_and_refuses_what_grub_would_change() {
        let boot = |cmdline| LinuxBoot {
            mac: "52:54:00:12:34:56",
            title: "deployment LAB00001 (it's mine)",
            kernel: grub_file("/content/ab"),
            initrd: Some(grub_file("/content/cd")),
            cmdline,
        };
        let cfg = boot("console=ttyS0 quiet netdeploy.server=http://10.77.0.1:8080 a=$x;b")
            .render()
            .unwrap();
        assert!(
            cfg.contains(
                "if linux /netdeploy/content/ab 'console=ttyS0' 'quiet' \
             'netdeploy.server=http://10.77.0.1:8080' 'a=$x;b'; then\n  \
             if initrd /netdeploy/content/cd; then\n    boot\n  fi\nfi\n"
            ),
            "{cfg}"
        );
        assert!(
            cfg.contains("echo 'netdeploy: deployment LAB00001 (its mine) on 52:54:00:12:34:56'\n"),
            "{cfg}"
        );
        assert!(!cfg.contains("{{"), "{cfg}");
        assert!(boot("a='b c'").render().is_err());
        assert!(boot("a\nboot").render().is_err());
    }

    #[test]
    fn menu_entries_ask_again_with_the_deployment_and_default_to_the_next_device() {
        let cfg = menu_cfg(
            "52:54:00:12:34:56",
            "mac=52-54-00-12-34-56&arch=7",
            &[("LAB00002".into(), "Windows 'dev'".into())],
            30,
        );
        assert!(cfg.contains("set timeout=30\nset default=local\n"), "{cfg}");
        assert!(cfg.contains(
            "menuentry 'LAB00002 Windows dev' --id 'LAB00002' {\n  configfile '/netdeploy/boot.grub?mac=52-54-00-12-34-56&arch=7&deployment=LAB00002'\n}\n"
        ), "{cfg}");
        assert!(cfg.contains("--id local {\n"), "{cfg}");
    }

    #[test]
    fn explain_names_the_chain_of_the_firmware() {
        let shim = explain_chain(ClientArch::EfiX64, BootChain::Shim).unwrap();
        assert!(
            shim.starts_with("chain:    shim (boot.chain efi-x64 = \"shim\")"),
            "{shim}"
        );
        assert!(
            shim.contains("shimx64.efi") && shim.contains("signed kernel"),
            "{shim}"
        );
        let ipxe = explain_chain(ClientArch::BiosX86, BootChain::Ipxe).unwrap();
        assert!(
            ipxe.starts_with("chain:    ipxe (boot.chain bios, the default)"),
            "{ipxe}"
        );
        assert_eq!(explain_chain(ClientArch::HttpX64, BootChain::Ipxe), None);
    }

    proptest::proptest! {
        #[test]
        fn free_text_never_leaves_its_quotes(s in "[ -~\t\n']{0,40}") {
            let t = format!("'{}'", text(&s));
            proptest::prop_assert_eq!(t.matches('\'').count(), 2);
            proptest::prop_assert!(!t.contains('\n'));
        }
    }
}
