//! The `netdeploy.*` parameters of the kernel command line (`/proc/cmdline`), which the PXE
//! script of the server writes: `netdeploy.server=URL netdeploy.deployment=ID
//! netdeploy.mac=MAC`, and optionally `netdeploy.context=pxe|media`, `netdeploy.vars=PATH`,
//! `netdeploy.menu_timeout=SECONDS`, `netdeploy.token=TOKEN` (the run token,
//! docs/agent-http.md), `netdeploy.pin=sha256:HEX` (the HTTPS certificate's pin,
//! docs/security.md).

/// The parameters the agent reads; other words of the command line are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cmdline {
    pub server: Option<String>,
    pub deployment: Option<String>,
    pub mac: Option<String>,
    pub context: Option<String>,
    pub vars: Option<String>,
    pub menu_timeout: Option<String>,
    pub token: Option<String>,
    pub pin: Option<String>,
}

/// Parses a kernel command line. Values may be double-quoted like the kernel allows
/// (`netdeploy.vars="/media/my vars"`); empty values count as absent; the last occurrence
/// of a parameter wins, as for the kernel's own parameters.
pub fn parse(text: &str) -> Cmdline {
    let mut c = Cmdline::default();
    for word in words(text) {
        let Some((key, value)) = word.split_once('=') else {
            continue;
        };
        let value = (!value.is_empty()).then(|| value.to_owned());
        match key {
            "netdeploy.server" => c.server = value,
            "netdeploy.deployment" => c.deployment = value,
            "netdeploy.mac" => c.mac = value,
            "netdeploy.context" => c.context = value,
            "netdeploy.vars" => c.vars = value,
            "netdeploy.menu_timeout" => c.menu_timeout = value,
            netdeploy_wire::run_token::CMDLINE_PARAMETER => c.token = value,
            netdeploy_wire::cert_pin::CMDLINE_PARAMETER => c.pin = value,
            _ => {}
        }
    }
    c
}

/// Words separated by white space, with double quotes grouping and removed.
fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut in_word = false;
    for ch in text.chars() {
        match ch {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_parameters_of_the_pxe_script() {
        let c = parse(
            "vmlinuz initrd=initrd.img console=ttyS0 netdeploy.server=http://10.77.0.1:8080 \
             netdeploy.deployment=LAB00001 netdeploy.mac=52:54:00:12:34:56\n",
        );
        assert_eq!(c.server.as_deref(), Some("http://10.77.0.1:8080"));
        assert_eq!(c.deployment.as_deref(), Some("LAB00001"));
        assert_eq!(c.mac.as_deref(), Some("52:54:00:12:34:56"));
        assert_eq!(c.context, None);
        assert_eq!(c.vars, None);
        assert_eq!(c.token, None);
        let t = "ab".repeat(32);
        assert_eq!(parse(&format!("netdeploy.token={t}")).token, Some(t));
    }

    #[test]
    fn handles_quotes_empty_values_and_repeats() {
        let c = parse(
            "netdeploy.vars=\"/media/my vars\" netdeploy.deployment= netdeploy.context=pxe \
             netdeploy.context=media netdeploy.serverx=1 netdeploy.server",
        );
        assert_eq!(c.vars.as_deref(), Some("/media/my vars"));
        assert_eq!(c.deployment, None);
        assert_eq!(c.context.as_deref(), Some("media"));
        assert_eq!(c.server, None);
    }

    #[test]
    fn an_empty_command_line_has_nothing() {
        assert_eq!(parse(""), Cmdline::default());
    }
}
