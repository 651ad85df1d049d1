//! Who may start a transfer: a bound on transfers in all and per client address, and, when
//! every slot is taken, which stalled transfer gives way to a waiting client.
//!
//! One host could otherwise hold every slot: read requests that it never acknowledges keep
//! their transfers alive through all their retries, and a request re-sent as each one times
//! out keeps the server answering "busy" to every other machine.

use std::collections::HashMap;
use std::net::IpAddr;

/// A running transfer, as the table knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Running {
    pub id: u64,
    pub client: IpAddr,
    /// The client has stayed silent through retransmissions (see `Transfer::stalled`).
    pub stalled: bool,
}

/// What to do with a read request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Start the transfer; `id` names its slot.
    Start { id: u64 },
    /// The client holds `tftp.max_transfers_per_client` transfers already.
    PerClient,
    /// Every slot is taken. `give_way` names a stalled transfer told to end so that a client
    /// asking again soon is served.
    Busy { give_way: Option<u64> },
}

/// Running transfers.
#[derive(Debug)]
pub struct SlotTable {
    max_total: usize,
    max_per_client: usize,
    next_id: u64,
    running: HashMap<u64, Running>,
}

impl SlotTable {
    pub fn new(max_total: usize, max_per_client: usize) -> SlotTable {
        SlotTable {
            max_total,
            max_per_client,
            next_id: 1,
            running: HashMap::new(),
        }
    }

    /// Decides on a read request from `client`, taking a slot when it may start.
    pub fn admit(&mut self, client: IpAddr) -> Admission {
        let held = self.running.values().filter(|r| r.client == client).count();
        if held >= self.max_per_client {
            return Admission::PerClient;
        }
        if self.running.len() >= self.max_total {
            return Admission::Busy {
                give_way: self.give_way(),
            };
        }
        let id = self.next_id;
        self.next_id += 1;
        self.running.insert(
            id,
            Running {
                id,
                client,
                stalled: false,
            },
        );
        Admission::Start { id }
    }

    /// The stalled transfer to end for a waiting client: of the client holding the most
    /// transfers, the oldest (lowest id), so that one host's stalled requests go first.
    fn give_way(&self) -> Option<u64> {
        let mut per_client: HashMap<IpAddr, usize> = HashMap::new();
        for r in self.running.values() {
            *per_client.entry(r.client).or_default() += 1;
        }
        self.running
            .values()
            .filter(|r| r.stalled)
            .max_by_key(|r| (per_client[&r.client], std::cmp::Reverse(r.id)))
            .map(|r| r.id)
    }

    /// The transfer in slot `id` is (or no longer is) stalled.
    pub fn set_stalled(&mut self, id: u64, stalled: bool) {
        if let Some(r) = self.running.get_mut(&id) {
            r.stalled = stalled;
        }
    }

    /// The transfer in slot `id` ended.
    pub fn release(&mut self, id: u64) {
        self.running.remove(&id);
    }

    /// Transfers running.
    pub fn len(&self) -> usize {
        self.running.len()
    }

    pub fn is_empty(&self) -> bool {
        self.running.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    fn started(a: Admission) -> u64 {
        match a {
            Admission::Start { id } => id,
            other => panic!("expected a start, got {other:?}"),
        }
    }

    #[test]
    fn client_over_its_share_is_refused_while_others_start() {
        let mut t = SlotTable::new(8, 2);
        let a = started(t.admit(ip(1)));
        started(t.admit(ip(1)));
        assert_eq!(t.admit(ip(1)), Admission::PerClient);
        started(t.admit(ip(2)));
        t.release(a);
        started(t.admit(ip(1)));
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn full_table_is_busy_and_names_no_transfer_while_none_is_stalled() {
        let mut t = SlotTable::new(2, 2);
        started(t.admit(ip(1)));
        started(t.admit(ip(2)));
        assert_eq!(t.admit(ip(3)), Admission::Busy { give_way: None });
    }

    #[test]
    fn stalled_transfer_of_the_client_holding_most_gives_way() {
        let mut t = SlotTable::new(4, 3);
        let a1 = started(t.admit(ip(1)));
        let a2 = started(t.admit(ip(1)));
        let a3 = started(t.admit(ip(1)));
        let b = started(t.admit(ip(2)));
        t.set_stalled(b, true);
        t.set_stalled(a2, true);
        t.set_stalled(a3, true);
        assert_eq!(t.admit(ip(3)), Admission::Busy { give_way: Some(a2) });
        // A transfer that made progress again is left alone.
        t.set_stalled(a2, false);
        t.set_stalled(a3, false);
        assert_eq!(t.admit(ip(3)), Admission::Busy { give_way: Some(b) });
        t.release(b);
        started(t.admit(ip(3)));
        assert!(!t.is_empty());
        let _ = a1;
    }
}
