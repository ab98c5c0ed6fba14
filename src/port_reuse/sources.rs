//! The remote addresses our listeners have accepted connections from, which a dial consults to
//! decide whether to look at its listener's accept queue before it connects.
//!
//! A dial from a listening address to a remote meets the kernel's refusal (`EADDRNOTAVAIL`) when
//! a connection from that remote to that address waits in the listener's accept queue: the
//! remote dialed us from the very address we dial, as a peer that reuses its own listening port
//! does. Looking at the queue costs every dial a `poll` ([`super::Backlog::drain`]); only a
//! remote that has dialed us from that address before is likely to do so again, so a dial looks
//! only for those, and otherwise lets the kernel's refusal, which sends no packet, tell it to
//! look.

use std::{collections::hash_map::RandomState, hash::BuildHasher};

use super::table::Endpoint;

/// How many remote addresses are remembered. A new one takes the slot its hash falls in, so that
/// memory stays bounded (32 KiB, allocated with the first accepted connection); a forgotten
/// address costs a dial to it a refused `connect` in a crossing, not a wrong choice.
const SLOTS: usize = 4096;

/// A set of remote addresses with one slot per hash: [`Self::contains`] may forget an address
/// another has taken the slot of, and never reports one not inserted but with the
/// probability of two 64-bit hashes being equal.
#[derive(Default)]
pub(super) struct Sources {
    /// Each address's hash, at the index it selects; 0 marks an empty slot (hashes are odd).
    slots: Vec<u64>,
    hasher: RandomState,
}

impl Sources {
    /// Remembers `remote` as an address a connection to us came from.
    pub(super) fn insert(&mut self, remote: Endpoint) {
        if self.slots.is_empty() {
            self.slots = vec![0; SLOTS];
        }
        let hash = self.hash(remote);
        self.slots[slot(hash)] = hash;
    }

    /// Whether a connection to us came from `remote` and no later address took its slot.
    pub(super) fn contains(&self, remote: Endpoint) -> bool {
        let hash = self.hash(remote);
        self.slots.get(slot(hash)) == Some(&hash)
    }

    fn hash(&self, remote: Endpoint) -> u64 {
        self.hasher.hash_one(remote) | 1
    }
}

/// The slot of `hash`. Its upper bits are used: the low bit is always set.
fn slot(hash: u64) -> usize {
    // SLOTS is a power of two below 2^32; the shift leaves log2(SLOTS) bits, which fit a usize.
    (hash >> (64 - SLOTS.trailing_zeros())) as usize
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddr};

    use super::*;

    fn endpoint(port: u16) -> Endpoint {
        SocketAddr::from((Ipv4Addr::new(192, 0, 2, 1), port)).into()
    }

    #[test]
    fn remembers_what_was_inserted_and_nothing_else() {
        let mut sources = Sources::default();
        assert!(!sources.contains(endpoint(4001)), "empty");
        sources.insert(endpoint(4001));
        assert!(sources.contains(endpoint(4001)));
        assert!(!sources.contains(endpoint(4002)));
        assert!(!sources.contains(SocketAddr::from((Ipv4Addr::new(192, 0, 2, 2), 4001)).into()));
    }

    #[test]
    fn stays_bounded_and_keeps_the_latest() {
        let mut sources = Sources::default();
        for port in 1..=u16::MAX {
            sources.insert(endpoint(port));
        }
        assert_eq!(sources.slots.len(), SLOTS);
        assert!(
            sources.contains(endpoint(u16::MAX)),
            "the last one inserted"
        );
        let remembered = (1..=u16::MAX)
            .filter(|p| sources.contains(endpoint(*p)))
            .count();
        assert!(
            remembered <= SLOTS && remembered > SLOTS / 2,
            "{remembered} of 65,535 remembered in {SLOTS} slots"
        );
    }
}
