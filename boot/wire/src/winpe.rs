//! What Windows PE needs to start the agent, whichever way it booted: over the network (the
//! iPXE script injects these files through wimboot) or from WinPE boot media (the media
//! builder puts them into `boot.wim`). One text, one name, one search rule, for both.

use std::path::{Path, PathBuf};

/// The agent's file name in `X:\Windows\System32`, and the name it is installed under beside
/// `netdeploy` and `netdeploy-media`.
pub const AGENT_EXE: &str = "netdeploy-agent.exe";

/// Where the Debian package installs the Windows agent.
pub const PACKAGED_AGENT: &str = "/usr/lib/netdeploy/netdeploy-agent.exe";

/// The directory of Windows PE the three files go into, as a path inside `boot.wim`.
pub const SYSTEM32: &str = r"\Windows\System32";

/// The variables file's name there, which the agent reads by default in Windows PE.
pub const VARIABLES_INI: &str = "netdeploy.ini";

/// The name of the file Windows PE runs instead of its command prompt.
pub const WINPESHL_INI: &str = "winpeshl.ini";

/// `winpeshl.ini`: `wpeinit` (the network), then the agent, which reads `netdeploy.ini`
/// beside it. CR LF line ends, as Windows writes it.
pub fn winpeshl_ini() -> String {
    format!(
        "[LaunchApps]\r\n%SYSTEMROOT%\\System32\\wpeinit.exe\r\n\
         %SYSTEMROOT%\\System32\\{AGENT_EXE}, run\r\n"
    )
}

/// Where to look for the Windows agent when none is named, in order: beside the running
/// program (`exe`, from `std::env::current_exe`), then [`PACKAGED_AGENT`]. The caller takes
/// the first that is a file.
pub fn agent_candidates(exe: Option<&Path>) -> Vec<PathBuf> {
    exe.and_then(Path::parent)
        .map(|dir| dir.join(AGENT_EXE))
        .into_iter()
        .chain([PathBuf::from(PACKAGED_AGENT)])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn winpeshl_ini_starts_the_network_then_the_agent_with_crlf_lines() {
        assert_eq!(
            winpeshl_ini(),
            "[LaunchApps]\r\n%SYSTEMROOT%\\System32\\wpeinit.exe\r\n\
             %SYSTEMROOT%\\System32\\netdeploy-agent.exe, run\r\n"
        );
    }

    #[test]
    fn the_agent_is_looked_for_beside_the_program_then_where_debian_installs_it() {
        assert_eq!(
            agent_candidates(Some(Path::new("/opt/nd/bin/netdeploy-media"))),
            [
                PathBuf::from("/opt/nd/bin/netdeploy-agent.exe"),
                PathBuf::from("/usr/lib/netdeploy/netdeploy-agent.exe")
            ]
        );
        assert_eq!(
            agent_candidates(None),
            [PathBuf::from("/usr/lib/netdeploy/netdeploy-agent.exe")]
        );
    }
}
