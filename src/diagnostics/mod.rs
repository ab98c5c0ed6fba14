//! Misconfigurations that leave the transport silently unused or split its connections, caught
//! and reported with `tracing::warn!`, the fix in the message.
//!
//! A process-wide registry knows how many transports of this crate live and which sockets they
//! listen on; each entry is a guard its owner (a [`Transport`](crate::Transport), a listening
//! socket) holds and removes on drop, so the registry keeps nothing alive. The swarm-level checks
//! run in [`Identify`](crate::Identify) (feature `identify`), which sees every listening address
//! of the swarm, whichever transport it belongs to; the port-sharing check also runs when a
//! listener of this crate joins a port it already listens on.
//!
//! - this file: the registry, and [`check_port_sharing`]: a listening socket on one of our ports
//!   that is not ours (through `SO_REUSEPORT`, e.g. `SwarmBuilder::with_websocket`'s own TCP
//!   listener);
//! - `proc_net`: the listening sockets the kernel lists in `/proc/net/tcp{,6}`, parsed (pure)
//!   and read (Linux only: elsewhere the port-sharing check does nothing);
//! - `swarm` (feature `identify`): a TCP address the swarm listens on that no transport of this
//!   crate listens on (another TCP transport took it: `SwarmBuilder::with_tcp`), or one this
//!   crate listens on with port reuse off; whether a connection dialed with port reuse can have
//!   left from a listening port (none can before `listen_on`).

mod proc_net;

pub(crate) use self::proc_net::parse_listening;
// Only `Identify` sees the swarm's listening addresses and connections.
#[cfg(feature = "identify")]
mod swarm;

use std::{
    net::SocketAddr,
    sync::{Mutex, MutexGuard, PoisonError},
};

#[cfg(feature = "identify")] // See `mod swarm`.
pub(crate) use self::swarm::{
    DialSource, check_listen_addr, dial_source, warn_dialed_before_listening,
};

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    transports: 0,
    sockets: Vec::new(),
    next_id: 0,
});

struct Registry {
    /// How many transports of this crate live in the process.
    transports: usize,
    /// The listening sockets of this crate in the process.
    sockets: Vec<Socket>,
    next_id: u64,
}

struct Socket {
    id: u64,
    /// The bound address: the port is concrete, the IP may be unspecified.
    addr: SocketAddr,
    /// Whether the socket set `SO_REUSEPORT` (port reuse on).
    reuse: bool,
    /// Whether its transport allows sockets outside it on its port
    /// (`Config::foreign_port_sharing`).
    foreign_sharing: bool,
    /// How many foreign listening sockets on its port were last reported.
    foreign_reported: usize,
}

fn registry() -> MutexGuard<'static, Registry> {
    // Nothing panics while holding the lock; every update leaves the registry consistent.
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Counts a transport of this crate as alive until dropped.
pub(crate) struct TransportEntry(());

impl TransportEntry {
    pub(crate) fn new() -> Self {
        registry().transports += 1;
        Self(())
    }
}

impl Drop for TransportEntry {
    fn drop(&mut self) {
        registry().transports -= 1;
    }
}

/// Lists a listening socket of this crate until dropped.
pub(crate) struct Listening {
    id: u64,
}

impl Listening {
    /// A socket listening on `addr`; `reuse`: it set `SO_REUSEPORT`; `foreign_sharing`: its
    /// transport lets sockets outside it share the port.
    pub(crate) fn new(addr: SocketAddr, reuse: bool, foreign_sharing: bool) -> Self {
        let mut registry = registry();
        let id = registry.next_id;
        registry.next_id += 1;
        registry.sockets.push(Socket {
            id,
            addr,
            reuse,
            foreign_sharing,
            foreign_reported: 0,
        });
        Self { id }
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        registry().sockets.retain(|socket| socket.id != self.id);
    }
}

/// Whether a socket listening on `ours` takes connections to `addr`: the same port and family,
/// and the same IP or ours unspecified.
fn covers(ours: SocketAddr, addr: SocketAddr) -> bool {
    ours.port() == addr.port()
        && ours.is_ipv4() == addr.is_ipv4()
        && (ours.ip() == addr.ip() || ours.ip().is_unspecified())
}

/// Whether two sockets listening on `a` and `b` share connections: the same port and family, and
/// the same IP or either unspecified.
fn overlap(a: SocketAddr, b: SocketAddr) -> bool {
    covers(a, b) || covers(b, a)
}

/// Warns if more sockets listen on `addr`'s port (in its family, on an overlapping IP) than this
/// crate holds there: a socket outside it joined the port through `SO_REUSEPORT`, and Linux
/// splits the incoming connections between them. Looks only at our sockets with `SO_REUSEPORT`
/// whose transport does not allow foreign sharing; warns when the number of foreign sockets on
/// one of them grows. Reads `/proc/net/tcp` or `tcp6`: on Linux only, elsewhere it does nothing.
pub(crate) fn check_port_sharing(addr: SocketAddr) {
    let watched = |s: &Socket| {
        s.reuse
            && !s.foreign_sharing
            && s.addr.port() == addr.port()
            && s.addr.is_ipv4() == addr.is_ipv4()
    };
    if !registry().sockets.iter().any(watched) {
        return;
    }
    // Read without the lock held.
    let Some(listening) = crate::sys::listening_sockets(addr.is_ipv6()) else {
        return;
    };
    let mut registry = registry();
    let ours: Vec<SocketAddr> = registry.sockets.iter().map(|s| s.addr).collect();
    // Our sockets on one address see the same foreign ones: one warning for them.
    let mut grown: Vec<(SocketAddr, usize)> = Vec::new();
    for socket in registry.sockets.iter_mut().filter(|s| watched(s)) {
        let all = listening
            .iter()
            .filter(|l| overlap(**l, socket.addr))
            .count();
        let mine = ours.iter().filter(|o| overlap(**o, socket.addr)).count();
        let foreign = all.saturating_sub(mine);
        let reported = std::mem::replace(&mut socket.foreign_reported, foreign);
        if foreign > reported && !grown.iter().any(|(addr, _)| *addr == socket.addr) {
            grown.push((socket.addr, foreign));
        }
    }
    drop(registry);
    for (addr, foreign) in grown {
        tracing::warn!(
            "{foreign} listening socket(s) outside libp2p-reuseport share its listening port \
             {addr} through SO_REUSEPORT, and Linux splits the incoming connections between them \
             (another TCP listener of this process, such as SwarmBuilder::with_websocket's, or \
             another process); serve /ws through SharedListeners::websocket() instead of \
             SwarmBuilder::with_websocket, or listen on another port"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coverage_and_overlap() {
        // (ours, address, ours covers it, the two overlap)
        let table = [
            ("0.0.0.0:4001", "192.0.2.1:4001", true, true),
            ("192.0.2.1:4001", "0.0.0.0:4001", false, true),
            ("192.0.2.1:4001", "192.0.2.1:4001", true, true),
            ("192.0.2.1:4001", "192.0.2.2:4001", false, false),
            ("0.0.0.0:4001", "192.0.2.1:4002", false, false),
            ("0.0.0.0:4001", "[::1]:4001", false, false),
            ("[::]:4001", "[::1]:4001", true, true),
            ("[::1]:4001", "[::]:4001", false, true),
        ];
        for (ours, addr, covered, overlapping) in table {
            let (ours, addr) = (ours.parse().unwrap(), addr.parse().unwrap());
            assert_eq!(covers(ours, addr), covered, "{ours} covers {addr}");
            assert_eq!(overlap(ours, addr), overlapping, "{ours} overlaps {addr}");
        }
    }
}
