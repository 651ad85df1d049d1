//! Which requests only the HTTPS listener answers while `[http.tls]` is on, and what a client
//! that asked over plain HTTP is told (docs/security.md).
//!
//! The agent endpoints and the admin API carry run tokens, medium keys and bearer tokens, and
//! the agent pins the server's certificate: they are HTTPS only. The first stages stay on plain
//! HTTP, since iPXE and GRUB from Debian cannot pin our certificate: the iPXE script, the GRUB
//! configuration, the boot files and content by hash, each checked by its hash where it is
//! used. The status pages, `/healthz` and `/metrics` carry no credential and answer on both.

/// Whether `path` is answered over HTTPS only.
pub fn path_needs_https(path: &str) -> bool {
    ["/agent", "/api"]
        .iter()
        .any(|p| path == *p || path.strip_prefix(p).is_some_and(|r| r.starts_with('/')))
}

/// The body of the 403 answer: what was refused and the URL to use.
pub fn refusal(path: &str, https_base: &str, path_and_query: &str) -> String {
    format!(
        "{path} is served over HTTPS only while http.tls is on: use {https_base}{path_and_query}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_and_admin_paths_need_https_and_first_stage_paths_do_not() {
        for p in [
            "/agent/policy",
            "/agent/status",
            "/agent/capture/ref-disk/image.ndimg",
            "/api/status",
            "/api",
            "/agent",
        ] {
            assert!(path_needs_https(p), "{p}");
        }
        for p in [
            "/boot.ipxe",
            "/image/kernel",
            "/content/abc",
            "/tftp/grub/grub.cfg",
            "/status",
            "/status.json",
            "/healthz",
            "/metrics",
            "/apis",
            "/agentx/policy",
            "/winpe/variables.ini",
        ] {
            assert!(!path_needs_https(p), "{p}");
        }
    }

    #[test]
    fn refusal_names_the_https_url_with_the_query() {
        let body = refusal(
            "/agent/policy",
            "https://10.77.0.1:8443",
            "/agent/policy?mac=52:54:00:00:00:01",
        );
        assert!(
            body.contains("use https://10.77.0.1:8443/agent/policy?mac=52:54:00:00:00:01"),
            "{body}"
        );
    }
}
