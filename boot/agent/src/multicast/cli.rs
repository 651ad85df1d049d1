//! `netdeploy-agent multicast-apply`: the multicast apply from a shell, for operators and the
//! multicast benchmark. Exit code 0 on success, 1 on failure (said on stderr), 2 for operands
//! that cannot be understood.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;

use netdeploy_wire::image::INDEX_FILE;

use super::{apply, MulticastOptions};
use crate::console::say;
use crate::hash;
use crate::http::{Client, Url};
use crate::image::{ImageRef, Store};

/// Applies the image whose index is `sha256` (`size` bytes) from the server `from` onto
/// `target`, its chunks from the multicast session on `group` (`ADDRESS:PORT`) joined on
/// `interface` (an address of it; any interface when absent).
pub fn run(
    from: &str,
    sha256: &str,
    size: &str,
    target: &Path,
    group: &str,
    interface: Option<&str>,
) -> i32 {
    let (Some(sha), Ok(size)) = (hash::parse_hex(sha256), size.parse::<u64>()) else {
        say(format!(
            "multicast-apply: {sha256:?} is not a SHA-256 or {size:?} not a size (see --help)"
        ));
        return 2;
    };
    let Ok(group) = group.parse::<SocketAddrV4>() else {
        say(format!(
            "multicast-apply: {group:?} is not a group and port such as 239.255.77.1:7400"
        ));
        return 2;
    };
    let interface = match interface.map(str::parse::<Ipv4Addr>) {
        None => Ipv4Addr::UNSPECIFIED,
        Some(Ok(a)) => a,
        Some(Err(_)) => {
            say("multicast-apply: the interface is given by one of its IPv4 addresses");
            return 2;
        }
    };
    let base = match Url::parse(from) {
        Ok(base) => base,
        Err(e) => {
            say(format!("multicast-apply: {from}: {e}"));
            return 2;
        }
    };
    let client = Client::default();
    let store = Store::Http {
        client: &client,
        base,
    };
    let image = ImageRef {
        name: INDEX_FILE,
        index_size: size,
        index_sha256: Some(sha),
    };
    let opts = MulticastOptions {
        interface,
        ..MulticastOptions::new(group)
    };
    match apply(&store, &image, target, &opts) {
        Ok(_) => 0,
        Err(e) => {
            say(e);
            1
        }
    }
}
