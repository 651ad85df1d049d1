//! iPXE script templates (`boot/ipxe/*.ipxe`) and their rendering.

/// Boots the configured Linux boot image.
pub const LINUX: &str = include_str!("../../boot/ipxe/linux.ipxe");
/// Boots Windows PE through wimboot, injecting the variables file.
pub const WINPE: &str = include_str!("../../boot/ipxe/winpe.ipxe");
/// The lines of [`WINPE`] that inject the Windows agent and the `winpeshl.ini` that starts it.
pub const WINPE_AGENT: &str = include_str!("../../boot/ipxe/winpe-agent.ipxe");
/// Asks an iPXE that netdeploy did not start to say who it is.
pub const IDENTIFY: &str = include_str!("../../boot/ipxe/identify.ipxe");
/// Leaves to the next boot device.
pub const NOTHING: &str = include_str!("../../boot/ipxe/nothing.ipxe");
/// Asks for the PXE password and asks for the machine's script again with it.
pub const PASSWORD: &str = include_str!("../../boot/ipxe/password.ipxe");

/// Replaces each `{{name}}` with its value. Values are cleaned of line breaks so a value can
/// never add a command to the script.
pub fn render(template: &str, vars: &[(&str, &str)]) -> String {
    let mut out = template.to_owned();
    for (name, value) in vars {
        let clean: String = value.chars().filter(|c| !c.is_control()).collect();
        out = out.replace(&format!("{{{{{name}}}}}"), &clean);
    }
    out
}

/// Free text (a title, a task sequence name, a reason) made inert on an iPXE line: no line
/// break, no `${` setting expansion, no `||` or `&&` token that would end the command and start
/// another, no token starting with `#` that would cut the line short.
pub fn text(s: &str) -> String {
    let s: String = s.chars().filter(|c| !c.is_control()).collect();
    s.replace("${", "$ {")
        .split(' ')
        .map(|t| match t.trim_start_matches('#') {
            "||" => "|",
            "&&" => "&",
            t => t,
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_text_cannot_chain_commands_expand_settings_or_cut_the_line() {
        let line = render(
            "echo netdeploy: {{title}} on pc1\n",
            &[(
                "title",
                &text("Deploy || shell && chain http://x/ ${net0/ip} #cut"),
            )],
        );
        assert_eq!(
            line,
            "echo netdeploy: Deploy | shell & chain http://x/ $ {net0/ip} cut on pc1\n"
        );
        assert_eq!(
            text("Windows 11 (x64) build #42"),
            "Windows 11 (x64) build 42"
        );
        assert_eq!(text("a #|| b"), "a | b");
    }

    proptest::proptest! {
        #[test]
        fn free_text_never_carries_ipxe_syntax(s in "[ -~\t\n#$|&{}]{0,40}") {
            let t = text(&s);
            proptest::prop_assert_eq!(crate::catalog::kernel_cmdline_problem(&t), None, "{:?} -> {:?}", s, t);
        }
    }

    #[test]
    fn values_cannot_inject_commands() {
        let s = render("echo {{x}}\n", &[("x", "a\nshell")]);
        assert_eq!(s, "echo ashell\n");
    }

    #[test]
    fn linux_script_names_kernel_initrd_and_command_line() {
        let s = render(
            LINUX,
            &[
                ("mac", "52:54:00:12:34:56"),
                ("arch", "7"),
                ("arch_name", "efi-x64"),
                ("title", "deployment LAB00001"),
                ("kernel_url", "http://10.77.0.1:8080/content/ab"),
                (
                    "initrd_cmd",
                    "initrd --name initrd.img http://10.77.0.1:8080/content/cd || goto failed",
                ),
                ("cmdline", "console=ttyS0 netdeploy.deployment=LAB00001"),
            ],
        );
        assert!(s.starts_with("#!ipxe\n"));
        assert!(s.contains("kernel http://10.77.0.1:8080/content/ab initrd=initrd.img console=ttyS0 netdeploy.deployment=LAB00001 || goto failed"));
        assert!(s.contains(
            "\ninitrd --name initrd.img http://10.77.0.1:8080/content/cd || goto failed\n"
        ));
        assert!(!s.contains("{{"), "{s}");
    }
}
