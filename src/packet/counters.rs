//! Per-worker counters of the packet core. Plain integers: each worker owns
//! its counters and reports them when asked (no sharing on the packet path).

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use super::DropReason;

/// Drops by reason: one counter per [`DropReason`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DropCounters(pub [u64; DropReason::COUNT]);

impl Default for DropCounters {
    fn default() -> Self {
        DropCounters([0; DropReason::COUNT])
    }
}

impl DropCounters {
    #[inline]
    pub fn count(&mut self, reason: DropReason) {
        self.0[reason as usize] += 1;
    }

    pub fn get(&self, reason: DropReason) -> u64 {
        self.0[reason as usize]
    }

    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    pub fn iter(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL.iter().map(|&r| (r, self.0[r as usize]))
    }
}

impl Serialize for DropCounters {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(DropReason::COUNT))?;
        for (r, n) in self.iter() {
            m.serialize_entry(r.as_str(), &n)?;
        }
        m.end()
    }
}

/// What the core of one worker did, by outcome.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Frames rewritten and sent towards a server or a client.
    pub forwarded: u64,
    pub forwarded_bytes: u64,
    /// ARP replies and IPv6 neighbour advertisements for the LB's addresses.
    pub arp_replies: u64,
    pub nd_adverts: u64,
    /// ARP requests and neighbour solicitations sent to resolve a next hop.
    pub neighbour_requests: u64,
    /// Neighbour entries learned or refreshed from the wire.
    pub neighbours_learned: u64,
    pub gratuitous_arps: u64,
    /// ICMP (v4 and v6) echo replies sent.
    pub echo_replies: u64,
    /// ICMP errors farmlb generated (time exceeded, fragmentation needed).
    pub icmp_errors_sent: u64,
    /// ICMP errors generated less because of the rate limit.
    pub icmp_errors_rate_limited: u64,
    /// ICMP errors translated to a flow and forwarded.
    pub icmp_errors_forwarded: u64,
    /// Frames handed to the kernel exception path.
    pub to_exception: u64,
    /// Frames handed to another worker that owns their flow.
    pub redirected: u64,
    /// Frames held while their next hop was resolved, then sent.
    pub held_then_sent: u64,
    /// Non-first fragments that followed their first fragment's flow.
    pub fragments_forwarded: u64,
    /// TCP RSTs sent to end flows whose server went down (policy `reset`).
    pub resets_sent: u64,
    pub drops: DropCounters,
}

impl Counters {
    #[inline]
    pub fn drop(&mut self, reason: DropReason) {
        self.drops.count(reason);
    }

    /// Adds `other` into `self` (summing workers).
    pub fn add(&mut self, o: &Counters) {
        self.forwarded += o.forwarded;
        self.forwarded_bytes += o.forwarded_bytes;
        self.arp_replies += o.arp_replies;
        self.nd_adverts += o.nd_adverts;
        self.neighbour_requests += o.neighbour_requests;
        self.neighbours_learned += o.neighbours_learned;
        self.gratuitous_arps += o.gratuitous_arps;
        self.echo_replies += o.echo_replies;
        self.icmp_errors_sent += o.icmp_errors_sent;
        self.icmp_errors_rate_limited += o.icmp_errors_rate_limited;
        self.icmp_errors_forwarded += o.icmp_errors_forwarded;
        self.to_exception += o.to_exception;
        self.redirected += o.redirected;
        self.held_then_sent += o.held_then_sent;
        self.fragments_forwarded += o.fragments_forwarded;
        self.resets_sent += o.resets_sent;
        for (a, b) in self.drops.0.iter_mut().zip(o.drops.0.iter()) {
            *a += b;
        }
    }

    pub fn drops_by_reason(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        self.drops.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_serialise_with_every_reason_by_name() {
        let mut c = Counters::default();
        c.drop(DropReason::BadChecksum);
        c.drop(DropReason::BadChecksum);
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["drops"]["bad_checksum"], 2);
        assert_eq!(v["drops"].as_object().unwrap().len(), DropReason::COUNT);
    }

    #[test]
    fn add_sums_every_field() {
        let mut a = Counters {
            forwarded: 1,
            ..Default::default()
        };
        a.drop(DropReason::NoFlow);
        let mut b = a.clone();
        b.add(&a);
        assert_eq!(b.forwarded, 2);
        assert_eq!(b.drops.get(DropReason::NoFlow), 2);
    }
}
