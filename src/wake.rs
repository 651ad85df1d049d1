//! Wake-on-LAN (docs/operating.md): magic packets for the machines of a required deployment with
//! wake-on-LAN, sent only on the interfaces netdeploy serves (`SO_BINDTODEVICE`), as UDP
//! broadcasts to port 9.
//!
//! Only the running server knows its interfaces. A site file or a deployment created where
//! they are not known (the CLI without `--server-config`, a site file posted to the API) leaves
//! a [`WakeRequest`] in the store, and the server sends it within a second ([`serve_requests`]).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use socket2::{Domain, Protocol, Socket, Type};
use tokio_util::sync::CancellationToken;

use crate::catalog::{Catalog, DeploymentId};
use crate::dhcp::packet::Mac;
use crate::interfaces::InterfaceAddr;
use crate::store::{StatusMessage, Store, StoreError};

/// The store's object kind of a pending wake request.
const REQUEST_KIND: &str = "wake-request";

/// A deployment's machines to be woken by the running server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WakeRequest {
    /// The deployment whose collection is woken.
    pub deployment: DeploymentId,
    /// Who asked (operator, `admin-api`).
    pub by: String,
    /// When (Unix seconds).
    pub at: i64,
}

/// Asks the running server to wake a new deployment's machines, when it is required and asks
/// for wake-on-LAN; returns whether a request was left.
pub fn request_for_new(
    store: &Store,
    catalog: &Catalog,
    id: &DeploymentId,
    by: &str,
    now: i64,
) -> Result<bool, StoreError> {
    let Some(d) = catalog.deployment(id) else {
        return Ok(false);
    };
    if !(d.wake_on_lan && d.is_required()) {
        return Ok(false);
    }
    let r = WakeRequest {
        deployment: *id,
        by: by.to_owned(),
        at: now,
    };
    store.put(REQUEST_KIND, &id.to_string(), &r, now)?;
    Ok(true)
}

/// Asks the running server to wake the machines of every deployment a site file created that
/// is required and asks for wake-on-LAN; returns those deployments.
pub fn request_for_site(
    store: &Store,
    changes: &crate::catalog::site::Changes,
    by: &str,
    now: i64,
) -> Result<Vec<DeploymentId>, StoreError> {
    let created: Vec<DeploymentId> = changes
        .created
        .iter()
        .filter_map(|k| k.strip_prefix("deployment ")?.parse().ok())
        .collect();
    if created.is_empty() {
        return Ok(Vec::new());
    }
    // The deployments are all it reads: not the devices of a whole site.
    let catalog = Catalog {
        deployments: store.list("deployment")?,
        ..Catalog::default()
    };
    let mut asked = Vec::new();
    for id in created {
        if request_for_new(store, &catalog, &id, by, now)? {
            asked.push(id);
        }
    }
    Ok(asked)
}

/// Sends the pending wake requests on `interfaces` and removes them; returns how many
/// requests were served. Each send is written as a `wake-on-lan` status message.
pub fn serve_pending(store: &Store, interfaces: &[InterfaceAddr]) -> Result<usize, StoreError> {
    let pending: Vec<WakeRequest> = store.list(REQUEST_KIND)?;
    if pending.is_empty() {
        return Ok(0);
    }
    let (catalog, _) = crate::store::catalog::load(store)?;
    for r in &pending {
        let macs = macs_of_deployment(&catalog, &r.deployment).unwrap_or_default();
        let (sent, error) = match send(interfaces, &macs) {
            Ok(n) => {
                tracing::info!(deployment = %r.deployment, by = %r.by, packets = n, "wake-on-LAN sent");
                (n, None)
            }
            Err(e) => {
                tracing::warn!(deployment = %r.deployment, error = %e, "wake-on-LAN not sent");
                (0, Some(e.to_string()))
            }
        };
        store.add_status(&StatusMessage {
            seq: 0,
            at: crate::bootpath::now(),
            source: "server".into(),
            kind: "wake-on-lan".into(),
            identity: None,
            device: None,
            deployment: Some(r.deployment.to_string()),
            body: serde_json::json!({
                "requested_by": r.by, "machines": macs.len(), "packets": sent, "error": error,
            }),
        })?;
        store.delete(REQUEST_KIND, &r.deployment.to_string())?;
    }
    Ok(pending.len())
}

/// The running server's side: serves pending wake requests once a second, off the reactor,
/// until `cancel`.
pub async fn serve_requests(
    store: Arc<Store>,
    interfaces: Vec<InterfaceAddr>,
    cancel: CancellationToken,
) {
    let interfaces = Arc::new(interfaces);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let (store, interfaces) = (store.clone(), interfaces.clone());
        match tokio::task::spawn_blocking(move || serve_pending(&store, &interfaces)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot read the wake-on-LAN requests"),
            Err(e) => tracing::error!(error = %e, "wake-on-LAN task failed"),
        }
    }
}

/// Six bytes of 0xFF, then the MAC sixteen times (the AMD "Magic Packet" format).
pub fn magic_packet(mac: Mac) -> [u8; 102] {
    let mut p = [0xffu8; 102];
    for i in 0..16 {
        p[6 + i * 6..12 + i * 6].copy_from_slice(&mac.0);
    }
    p
}

/// The MACs to wake for a deployment: every MAC of every device of its collection.
pub fn macs_of_deployment(catalog: &Catalog, id: &DeploymentId) -> Option<Vec<Mac>> {
    let d = catalog.deployment(id)?;
    let c = catalog.collection(&d.collection)?;
    Some(
        catalog
            .members(c)
            .iter()
            .flat_map(|dev| dev.macs.iter().copied())
            .collect(),
    )
}

/// Wakes the machines of a new deployment when it is required and asks for wake-on-LAN
/// (docs/operating.md); `None` when it does not ask, else the number of packets sent.
pub fn wake_new_deployment(
    catalog: &Catalog,
    id: &DeploymentId,
    interfaces: &[InterfaceAddr],
) -> Option<std::io::Result<usize>> {
    let d = catalog.deployment(id)?;
    if !(d.wake_on_lan && d.is_required()) {
        return None;
    }
    let macs = macs_of_deployment(catalog, id).unwrap_or_default();
    Some(send(interfaces, &macs))
}

/// Sends one magic packet per MAC on each interface; returns how many datagrams went out.
pub fn send(interfaces: &[InterfaceAddr], macs: &[Mac]) -> std::io::Result<usize> {
    let mut sent = 0;
    for iface in interfaces {
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        s.set_broadcast(true)?;
        s.bind_device(Some(iface.name.as_bytes()))?;
        s.bind(&SocketAddrV4::new(iface.address, 0).into())?;
        let to = SocketAddrV4::new(Ipv4Addr::BROADCAST, 9).into();
        for mac in macs {
            s.send_to(&magic_packet(*mac), &to)?;
            sent += 1;
        }
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_packet_is_ff_then_the_mac_sixteen_times() {
        let mac: Mac = "52:54:00:12:34:56".parse().unwrap();
        let p = magic_packet(mac);
        assert_eq!(&p[..6], &[0xff; 6]);
        for i in 0..16 {
            assert_eq!(&p[6 + i * 6..12 + i * 6], &mac.0);
        }
    }
}
