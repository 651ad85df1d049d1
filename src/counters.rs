//! What the server counted since it started: packets answered, dropped and why, transfers.
//!
//! Counters are plain atomics shared by every listener; a malformed packet is counted here
//! and logged, never allowed to stop a listener. The status page and `/metrics` read
//! [`Counters::snapshot`].

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($(#[doc = $doc:literal])* $name:ident),* $(,)?) => {
        /// Monotonic event counters, one per field.
        #[derive(Debug, Default)]
        pub struct Counters {
            $($(#[doc = $doc])* pub $name: AtomicU64,)*
        }

        impl Counters {
            /// Every counter by name, in declaration order.
            pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($name), self.$name.load(Ordering::Relaxed)),)*]
            }
        }
    };
}

counters! {
    /// DHCP datagrams that did not decode as a DHCP message.
    dhcp_malformed,
    /// DHCP requests from clients that are not PXE or HTTP boot clients (left alone).
    dhcp_ignored_not_pxe,
    /// PXE requests whose option 93 names an architecture netdeploy does not boot.
    dhcp_ignored_unknown_arch,
    /// PXE requests given no boot offer because no deployment is for the machine (rules 8, 9).
    dhcp_ignored_no_deployment,
    /// PXE requests ignored for another reason (no boot file configured, wrong message type...).
    dhcp_ignored_other,
    /// OFFER replies sent (proxy or full DHCP).
    dhcp_offers,
    /// ACK replies sent (proxy port 4011 or full DHCP).
    dhcp_acks,
    /// NAK replies sent in full DHCP mode.
    dhcp_naks,
    /// DHCPv6 datagrams that did not decode as a client message.
    dhcp6_malformed,
    /// DHCPv6 messages from clients that are not PXE, HTTP boot or iPXE clients (left alone).
    dhcp6_ignored_not_pxe,
    /// DHCPv6 network-boot messages given no boot URL (no deployment, unknown architecture,
    /// another server's message...).
    dhcp6_ignored,
    /// DHCPv6 ADVERTISE and REPLY messages sent with a boot file URL.
    dhcp6_replies,
    /// TFTP datagrams on the listening port that did not parse as a read request.
    tftp_malformed,
    /// TFTP read requests refused (not found, outside the root, write requests, busy).
    tftp_refused,
    /// TFTP transfers started.
    tftp_transfers_started,
    /// TFTP transfers that sent the whole file and got the last acknowledgement.
    tftp_transfers_completed,
    /// TFTP transfers ended by a client ERROR packet (such as UEFI's size probe).
    tftp_transfers_aborted,
    /// TFTP transfers that timed out after their retries.
    tftp_transfers_timed_out,
    /// Stalled TFTP transfers ended so that another client could have their slot.
    tftp_transfers_gave_way,
    /// File bytes sent by TFTP (retransmissions included).
    tftp_bytes_sent,
    /// HTTP requests answered.
    http_requests,
    /// Content files fetched from an upstream server (`[content] upstream`), hash checked.
    content_fetched,
    /// Content requests this server could not fill from its upstream servers.
    content_fetch_failed,
    /// HTTP connections answered 503 and closed: over `http.max_connections` in all or
    /// `http.max_connections_per_client` from one address.
    http_connections_refused,
    /// HTTP connections closed after `http.idle_timeout_seconds` without a request.
    http_connections_idle_closed,
    /// HTTP connections closed because a request head took longer than
    /// `http.header_timeout_seconds`.
    http_connections_slow_header_closed,
    /// HTTPS connections closed because their TLS handshake failed or did not end within
    /// `http.tls.handshake_timeout_seconds`.
    http_tls_handshakes_failed,
    /// Agent and admin API requests over plain HTTP refused while HTTPS is on (answered 403).
    http_plain_refused,
    /// Admin API requests without a valid bearer token (answered 401).
    admin_auth_failures,
    /// Admin API requests answered 429 because their address guessed wrong too often.
    admin_auth_throttled,
    /// Admin API changes tried with a read-only token (answered 403).
    admin_forbidden,
    /// iPXE script requests for a MAC that no DHCP exchange showed lately: answered with a
    /// script that boots nothing, and nothing recorded.
    boot_scripts_unproven,
    /// Script requests that carried a wrong PXE password (rule 9): nothing recorded.
    pxe_password_wrong,
    /// Script requests whose PXE password was not checked because their address typed wrong
    /// ones too often lately.
    pxe_password_throttled,
    /// Policy requests and status messages refused 401: no run token, or one never issued.
    agent_unauthorized,
    /// Policy requests and status messages refused 403: a run token of another machine or
    /// deployment, or of a run that ended or expired.
    agent_forbidden,
    /// Store writes that found the write queue full (src/snapshot.rs): a sighting, status
    /// message or lease file the DHCP path wrote was not persisted, or a start waited.
    store_queue_full,
    /// Catalog snapshots reloaded because the store changed.
    snapshot_reloads,
    /// Task sequence runs the boot environment reported as failed.
    deployments_failed,
    /// Task sequence runs the boot environment reported as succeeded.
    deployments_succeeded,
    /// Capture uploads refused (docs/agent-http.md): a bad run token, a package that exists
    /// or that the run's task sequence does not capture to, a file too large or not an image's.
    captures_refused,
    /// Captured images saved as new packages.
    captures_saved,
    /// Multicast imaging: UDP payload bytes sent to session groups (DATA, ANNOUNCE, END).
    multicast_bytes_sent,
    /// Multicast imaging: DATA datagrams sent (repairs included).
    multicast_datagrams_sent,
    /// Multicast imaging: receiver requests taken.
    multicast_requests,
    /// Multicast imaging: datagrams on a session's socket that did not decode or named
    /// another session.
    multicast_malformed,
    /// Multicast imaging: `/agent/multicast` answered with a refusal (the machine applies
    /// the image over HTTP, and its status says why).
    multicast_refused,
    /// Multicast imaging: machines given a session by `/agent/multicast`.
    multicast_joined,
}

impl Counters {
    /// Adds one to a counter.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
