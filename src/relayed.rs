//! The peers this process holds relayed connections with (`/p2p-circuit`), as [`Identify`]
//! sees them, so that the transport can tell a hole punch's plain dial from other dials.
//!
//! In a hole punch only the side that leads dials with the role overridden
//! (`DialOpts::role`); the other side's dial is a plain one, like a dial to a stale address. The
//! swarm appends `/p2p/<peer>` to every address it dials, though, and DCUtR punches only to a
//! peer it holds a relayed connection with. A plain dial to such a peer gets what the leading
//! side's dial gets: its SYNs go on after a refused window ([`crate::dial`], the punch's tail),
//! for the next attempt's dial to take over. Dials to every other peer fail at the end of their
//! window, as before.
//!
//! One registry per process: [`Identify`] writes it (feature `identify`), every [`Transport`]
//! of the process reads it. A process that runs two swarms gives a dial of either the tail for a
//! peer the other holds a relayed connection with; the tail costs at most a few dozen SYNs
//! after a dial that failed anyway.
//!
//! [`Identify`]: crate::Identify
//! [`Transport`]: crate::Transport

use std::{
    collections::HashMap,
    sync::{
        LazyLock, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
};

use libp2p_core::{Multiaddr, multiaddr::Protocol};
use libp2p_identity::PeerId;

/// Open relayed connections per peer.
static PEERS: LazyLock<Mutex<HashMap<PeerId, usize>>> = LazyLock::new(Mutex::default);

/// How many peers [`PEERS`] holds: a dial reads this, not the map, while it is zero (a process
/// without relayed connections, or without `Identify`, never takes the lock).
static HELD: AtomicUsize = AtomicUsize::new(0);

fn peers() -> MutexGuard<'static, HashMap<PeerId, usize>> {
    PEERS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A relayed connection with `peer` was established.
#[cfg(any(feature = "identify", test))]
pub(crate) fn opened(peer: PeerId) {
    let mut peers = peers();
    *peers.entry(peer).or_insert(0) += 1;
    HELD.store(peers.len(), Ordering::Relaxed);
}

/// A relayed connection with `peer` closed (each [`opened`] is matched by one `closed`).
#[cfg(any(feature = "identify", test))]
pub(crate) fn closed(peer: PeerId) {
    let mut peers = peers();
    if let Some(open) = peers.get_mut(&peer) {
        *open -= 1;
        if *open == 0 {
            peers.remove(&peer);
        }
    }
    HELD.store(peers.len(), Ordering::Relaxed);
}

/// Whether `addr` ends with `/p2p/<peer>` for a peer this process holds a relayed connection
/// with.
pub(crate) fn to_relayed_peer(addr: &Multiaddr) -> bool {
    if HELD.load(Ordering::Relaxed) == 0 {
        return false;
    }
    match addr.iter().last() {
        Some(Protocol::P2p(peer)) => peers().contains_key(&peer),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(peer: PeerId) -> Multiaddr {
        format!("/ip4/192.0.2.1/tcp/4001/p2p/{peer}")
            .parse()
            .expect("multiaddr")
    }

    // The registry is the process's: each test uses peers of its own, and counts nothing else.
    #[test]
    fn a_peer_is_relayed_while_one_of_its_relayed_connections_is_open() {
        let (peer, other) = (PeerId::random(), PeerId::random());
        assert!(!to_relayed_peer(&addr(peer)));
        opened(peer);
        opened(peer);
        assert!(to_relayed_peer(&addr(peer)));
        assert!(!to_relayed_peer(&addr(other)), "another peer");
        let bare: Multiaddr = "/ip4/192.0.2.1/tcp/4001".parse().expect("multiaddr");
        assert!(!to_relayed_peer(&bare), "no peer in the address");
        closed(peer);
        assert!(to_relayed_peer(&addr(peer)), "one relayed connection left");
        closed(peer);
        assert!(!to_relayed_peer(&addr(peer)), "none left");
        closed(peer);
        assert!(
            !to_relayed_peer(&addr(peer)),
            "an unmatched close counts nothing"
        );
    }
}
