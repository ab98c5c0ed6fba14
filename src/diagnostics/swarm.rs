//! The checks [`Identify`](crate::Identify) runs on what the swarm reports: its listening
//! addresses, whichever transport they belong to, and its connections.

use std::{
    fmt::Display,
    net::{IpAddr, SocketAddr},
};

use super::{check_port_sharing, covers, registry};
use crate::config::PORT_REUSE_ENV;

/// What the swarm reported listening on `tcp` (the `/ip4|ip6/<ip>/tcp/<port>` at the start of its
/// address; `bare`: nothing but an optional `/p2p/<id>` follows) says about this crate's
/// transports: warns if no transport of this crate listens there although one lives in the
/// process (another TCP transport took the address), or if ours does with port reuse off; then
/// runs [`check_port_sharing`].
pub(crate) fn check_listen_addr(tcp: SocketAddr, bare: bool, shown: &dyn Display) {
    if bare {
        match listener_of(tcp) {
            Listener::Other => tracing::warn!(
                "the swarm listens on {shown} but no libp2p-reuseport transport does: another TCP \
                 transport took the address (SwarmBuilder::with_tcp before \
                 with_other_transport?), so dials do not leave from this port and hole punching \
                 fails; remove with_tcp"
            ),
            Listener::OursWithoutReuse => tracing::warn!(
                "libp2p-reuseport listens on {shown} with port reuse off \
                 (Config::port_reuse(false), {PORT_REUSE_ENV}=false, or a platform without \
                 SO_REUSEPORT): dials leave from ephemeral ports, so the addresses peers observe \
                 for us cannot be dialed and hole punching fails; turn port reuse on"
            ),
            Listener::Ours | Listener::Unknown => {}
        }
    }
    check_port_sharing(tcp);
}

/// Which transport listens on an address the swarm reported.
enum Listener {
    /// A socket of this crate with port reuse on.
    Ours,
    /// Sockets of this crate, none with port reuse on.
    OursWithoutReuse,
    /// Another transport, although transports of this crate live.
    Other,
    /// Another transport, and no transport of this crate lives: none is expected to listen.
    Unknown,
}

fn listener_of(addr: SocketAddr) -> Listener {
    let registry = registry();
    let mut covering = registry.sockets.iter().filter(|s| covers(s.addr, addr));
    match covering.next() {
        None if registry.transports > 0 => Listener::Other,
        None => Listener::Unknown,
        Some(first) if first.reuse || covering.any(|s| s.reuse) => Listener::Ours,
        Some(_) => Listener::OursWithoutReuse,
    }
}

/// Where a connection dialed with port reuse left from, as far as the registry tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DialSource {
    /// Maybe a listening port: a transport of this crate listens in the remote's family with
    /// port reuse on, or no transport of this crate lives (the connection is another
    /// transport's), or the remote's family is unknown (a DNS name).
    MaybeListening,
    /// An ephemeral port: transports of this crate live, but none listens in the remote's
    /// family with port reuse on.
    Ephemeral,
    /// An ephemeral port: transports of this crate live, but none listens at all (the connection
    /// was dialed before `listen_on`).
    NotListening,
}

/// Where a connection dialed with port reuse to `remote` (its IP, if the address names one) left
/// from: see [`DialSource`].
pub(crate) fn dial_source(remote: Option<IpAddr>) -> DialSource {
    let registry = registry();
    if registry.transports == 0 {
        DialSource::MaybeListening
    } else if registry.sockets.is_empty() {
        DialSource::NotListening
    } else if remote.is_some_and(|ip| {
        !registry
            .sockets
            .iter()
            .any(|s| s.reuse && s.addr.is_ipv4() == ip.is_ipv4())
    }) {
        DialSource::Ephemeral
    } else {
        DialSource::MaybeListening
    }
}

/// Warns that a connection to `shown` was dialed with port reuse before `listen_on`
/// ([`DialSource::NotListening`]).
pub(crate) fn warn_dialed_before_listening(shown: &dyn Display) {
    tracing::warn!(
        "a connection to {shown} was dialed with port reuse while no libp2p-reuseport transport \
         listened, so it left from an ephemeral port and the address the remote observes for it \
         cannot be dialed; call listen_on before dialing (relays, bootstrap peers) for hole \
         punching"
    );
}
