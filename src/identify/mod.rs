//! [`Identify`]: libp2p-identify's behaviour, with the observed addresses of connections that
//! left from a listening port reported unchanged, and the swarm-level diagnostics.
//!
//! - this file: the behaviour, delegating every call to the wrapped one;
//! - `observed`: which observations are reported as they are (pure, unit-tested).

mod observed;

use std::{
    collections::{HashMap, HashSet, VecDeque},
    fmt,
    ops::{Deref, DerefMut},
    task::{Context, Poll},
};

use libp2p_core::{
    Endpoint, Multiaddr,
    multiaddr::Protocol,
    transport::{ListenerId, PortUse},
};
use libp2p_identify as identify;
use libp2p_identity::PeerId;
use libp2p_swarm::{
    ConnectionClosed, ConnectionDenied, ConnectionId, FromSwarm, ListenerClosed, NetworkBehaviour,
    NewListenAddr, THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
    behaviour::{ConnectionEstablished, ListenAddresses},
};

use self::observed::{Observed, dialed_from_listening_port};
use crate::{
    diagnostics::{self, DialSource},
    multiaddr, relayed,
};

/// libp2p-identify's [`Behaviour`](libp2p_identify::Behaviour), which it wraps and delegates
/// everything to, plus the one address identify 0.48 no longer reports: what the remote observes
/// for a connection that left from our listening port, unchanged, as an external address
/// candidate (`ToSwarm::NewExternalAddrCandidate`) for DCUtR. Feature `identify`.
///
/// # When it is needed
///
/// libp2p-identify 0.48 replaces the port of an observed TCP address with a listening port
/// whenever the two differ ("address translation", meant for dials from ephemeral ports). Behind
/// a NAT that maps the listening port to another public port, that turns the one good candidate,
/// the NAT's mapping, into an address nobody can dial, and hole punching fails:
///
/// - a port-translating NAT (many carrier-grade NATs, some routers): listening port 4001 leaves
///   as 5001;
/// - two hosts behind one NAT listening on the same port: the NAT keeps 4001 for the first and
///   maps the second's 4001 to another port.
///
/// For a connection this node dialed with `PortUse::Reuse` (the swarm's default; DCUtR's
/// dials too) directly over TCP, this transport's connection left from the listening port, so
/// what the remote observes is exactly the NAT's mapping of it: `Identify` reports it unchanged,
/// next to identify's own candidates, and DCUtR's remote dials it. (In the repository's NAT zoo,
/// `scripts/natzoo.sh`, the `port-translating` and `two-hosts-one-port` cells punch with it.)
///
/// Behind a port-preserving NAT (most home routers) or on a public address, the observed port is
/// the listening port; identify reports it as it is, and `Identify` adds nothing. It never
/// reports observations of inbound connections, of dials with `PortUse::New`, of relayed
/// connections (`/p2p-circuit`) or of non-TCP connections (QUIC); observations with a listening
/// port; the same observation of a connection twice; or observations of connections that it
/// can tell left from an ephemeral port (no listener of this crate in their IP family with port
/// reuse on). A dial that asked for port reuse but left from an ephemeral port for another
/// reason (see [`TcpStream::port_origin`](crate::TcpStream::port_origin): a second connection
/// to the same peer address, a refused listening port) gives a candidate that only a NAT
/// mapping every destination alike could make use of; DCUtR's remote tries it along with the
/// others.
///
/// # Use
///
/// Replace `identify::Behaviour::new(config)` with
/// `Identify::new(identify::Behaviour::new(config))` in your behaviour: its events stay
/// `identify::Event`, so a derived behaviour's event enum does not change, and through `Deref`
/// its methods (`push`) stay callable.
///
/// ```
/// use libp2p::{identify, identity, ping, swarm::NetworkBehaviour};
/// use libp2p_reuseport::Identify;
///
/// #[derive(NetworkBehaviour)]
/// struct Behaviour {
///     identify: Identify,
///     ping: ping::Behaviour,
/// }
///
/// let key = identity::Keypair::generate_ed25519();
/// let behaviour = Behaviour {
///     identify: Identify::new(identify::Behaviour::new(identify::Config::new(
///         "/my-app/1.0.0".into(),
///         key.public(),
///     ))),
///     ping: ping::Behaviour::default(),
/// };
/// // Events arrive as before: BehaviourEvent::Identify(identify::Event::Received { .. }).
/// let _: fn(BehaviourEvent) -> Option<identify::Event> = |event| match event {
///     BehaviourEvent::Identify(event) => Some(event),
///     BehaviourEvent::Ping(_) => None,
/// };
/// ```
///
/// # Hole punches from both sides
///
/// In a hole punch (DCUtR) the two peers dial each other at about the same time; where a NAT
/// answers a SYN that comes too early with a RST, this crate's dial from the listening port
/// sends its next SYN from the same port, within
/// [`Config::rst_retry_window`](crate::Config::rst_retry_window). The dial of the side that
/// leads the punch (its role overridden) then goes on sending SYNs for a while after it failed,
/// for DCUtR's next attempt to take over. `Identify` also tells this crate's transports which
/// peers the swarm holds relayed connections with (`/p2p-circuit`, seen in
/// `ConnectionEstablished`), so that a plain dial to one of them, DCUtR's dial on the other
/// side of the punch, does the same. Dials to other peers fail when their window ends. The
/// list is the process's: every transport of this crate in it reads it.
///
/// # Diagnostics
///
/// Seeing every listening address of the swarm, whichever transport it belongs to, `Identify`
/// also warns (`tracing`, level `warn`, the fix in the message) when:
///
/// - the swarm listens on a TCP address that no transport of this crate listens on, while one
///   lives in the process: another TCP transport took it (`SwarmBuilder::with_tcp` is asked
///   first for every TCP address, so this transport never listens or dials);
/// - this crate listens with port reuse off ([`Config::port_reuse`](crate::Config::port_reuse),
///   [`PORT_REUSE_ENV`](crate::PORT_REUSE_ENV), a platform without `SO_REUSEPORT`);
/// - another listening socket joined one of this crate's listening ports through `SO_REUSEPORT`
///   (`SwarmBuilder::with_websocket` builds its own libp2p-tcp listener, which joins the port
///   when it binds second), so that Linux splits the incoming connections between the two:
///   read from `/proc/net/tcp` and `/proc/net/tcp6`, on Linux only (elsewhere, Android included,
///   this check does nothing); a listener of this crate that joins a port its transport already
///   listens on runs the same check, with or without `Identify`;
/// - a connection was dialed with port reuse while no transport of this crate listened (dialed
///   before `listen_on`): it left from an ephemeral port, and its observation is not reported.
///
/// The first two and the last look at every transport of this crate in the process: a process
/// that runs another swarm on libp2p-tcp next to one on this crate may get a warning meant for
/// the other.
pub struct Identify {
    inner: identify::Behaviour,
    observed: Observed,
    listen_addrs: ListenAddresses,
    /// Listeners whose first address went through the diagnostics.
    checked: HashSet<ListenerId>,
    /// Candidates to report before polling `inner` again. At most one per `Received` event.
    candidates: VecDeque<Multiaddr>,
    /// Whether a dial before `listen_on` was reported (once per behaviour).
    warned_not_listening: bool,
    /// The open relayed connections, entered in the process's list while they are.
    relayed: Relayed,
}

impl Identify {
    /// Wraps `inner`, which keeps doing everything it does.
    pub fn new(inner: identify::Behaviour) -> Self {
        Self {
            inner,
            observed: Observed::default(),
            listen_addrs: ListenAddresses::default(),
            checked: HashSet::new(),
            candidates: VecDeque::new(),
            warned_not_listening: false,
            relayed: Relayed::default(),
        }
    }

    /// The wrapped behaviour.
    pub fn into_inner(self) -> identify::Behaviour {
        self.inner
    }

    /// Runs the diagnostics on the first address of a listener.
    fn check_listener(&mut self, NewListenAddr { listener_id, addr }: NewListenAddr<'_>) {
        if !self.checked.insert(listener_id) {
            return;
        }
        if let Some((tcp, bare)) = multiaddr::tcp_prefix(addr) {
            diagnostics::check_listen_addr(tcp, bare, addr);
        }
    }
}

/// The relayed connections one [`Identify`] entered in [`crate::relayed`], taken out again when
/// it drops.
#[derive(Debug, Default)]
struct Relayed(HashMap<ConnectionId, PeerId>);

impl Relayed {
    fn opened(&mut self, connection: ConnectionId, peer: PeerId) {
        if self.0.insert(connection, peer).is_none() {
            relayed::opened(peer);
        }
    }

    fn closed(&mut self, connection: ConnectionId) {
        if let Some(peer) = self.0.remove(&connection) {
            relayed::closed(peer);
        }
    }
}

impl Drop for Relayed {
    fn drop(&mut self) {
        for (_, peer) in self.0.drain() {
            relayed::closed(peer);
        }
    }
}

impl Deref for Identify {
    type Target = identify::Behaviour;

    fn deref(&self) -> &identify::Behaviour {
        &self.inner
    }
}

impl DerefMut for Identify {
    fn deref_mut(&mut self) -> &mut identify::Behaviour {
        &mut self.inner
    }
}

impl fmt::Debug for Identify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identify")
            .field("observed", &self.observed)
            .field("candidates", &self.candidates)
            .finish_non_exhaustive()
    }
}

impl NetworkBehaviour for Identify {
    type ConnectionHandler = <identify::Behaviour as NetworkBehaviour>::ConnectionHandler;
    type ToSwarm = identify::Event;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.inner
            .handle_pending_inbound_connection(connection_id, local_addr, remote_addr)
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.inner.handle_established_inbound_connection(
            connection_id,
            peer,
            local_addr,
            remote_addr,
        )
    }

    fn handle_pending_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        maybe_peer: Option<PeerId>,
        addresses: &[Multiaddr],
        effective_role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        self.inner.handle_pending_outbound_connection(
            connection_id,
            maybe_peer,
            addresses,
            effective_role,
        )
    }

    fn handle_established_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        role_override: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        let handler = self.inner.handle_established_outbound_connection(
            connection_id,
            peer,
            addr,
            role_override,
            port_use,
        )?;
        if dialed_from_listening_port(addr, port_use) {
            let ip = match addr.iter().next() {
                Some(Protocol::Ip4(ip)) => Some(ip.into()),
                Some(Protocol::Ip6(ip)) => Some(ip.into()),
                _ => None,
            };
            match diagnostics::dial_source(ip) {
                DialSource::MaybeListening => self.observed.track(connection_id),
                DialSource::Ephemeral => {}
                DialSource::NotListening => {
                    if !self.warned_not_listening {
                        self.warned_not_listening = true;
                        diagnostics::warn_dialed_before_listening(addr);
                    }
                }
            }
        }
        Ok(handler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        self.listen_addrs.on_swarm_event(&event);
        match event {
            FromSwarm::NewListenAddr(new) => self.check_listener(new),
            FromSwarm::ListenerClosed(ListenerClosed { listener_id, .. }) => {
                self.checked.remove(&listener_id);
            }
            FromSwarm::ConnectionEstablished(ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            }) if endpoint.is_relayed() => self.relayed.opened(connection_id, peer_id),
            FromSwarm::ConnectionClosed(ConnectionClosed { connection_id, .. }) => {
                self.observed.closed(connection_id);
                self.relayed.closed(connection_id);
            }
            _ => {}
        }
        self.inner.on_swarm_event(event);
    }

    fn on_connection_handler_event(
        &mut self,
        peer_id: PeerId,
        connection_id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        self.inner
            .on_connection_handler_event(peer_id, connection_id, event);
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        if let Some(candidate) = self.candidates.pop_front() {
            tracing::debug!(%candidate, "observed address of a connection from a listening port");
            return Poll::Ready(ToSwarm::NewExternalAddrCandidate(candidate));
        }
        let event = std::task::ready!(self.inner.poll(cx));
        if let ToSwarm::GenerateEvent(identify::Event::Received {
            connection_id,
            info,
            ..
        }) = &event
            && let Some(candidate) = self.observed.received(
                *connection_id,
                &info.observed_addr,
                self.listen_addrs.iter(),
            )
        {
            // Reported on the next poll, before anything else.
            self.candidates.push_back(candidate);
            cx.waker().wake_by_ref();
        }
        Poll::Ready(event)
    }
}

#[cfg(test)]
mod tests {
    use libp2p_core::ConnectedPoint;
    use libp2p_identity::Keypair;

    use super::*;

    fn identify() -> Identify {
        let key = Keypair::generate_ed25519();
        Identify::new(identify::Behaviour::new(identify::Config::new(
            "/test/1".into(),
            key.public(),
        )))
    }

    fn dialed(address: String) -> ConnectedPoint {
        ConnectedPoint::Dialer {
            address: address.parse().expect("multiaddr"),
            role_override: Endpoint::Dialer,
            port_use: PortUse::Reuse,
        }
    }

    fn established(identify: &mut Identify, peer: PeerId, id: usize, endpoint: &ConnectedPoint) {
        identify.on_swarm_event(FromSwarm::ConnectionEstablished(ConnectionEstablished {
            peer_id: peer,
            connection_id: ConnectionId::new_unchecked(id),
            endpoint,
            failed_addresses: &[],
            other_established: 0,
        }));
    }

    fn closed(identify: &mut Identify, peer: PeerId, id: usize, endpoint: &ConnectedPoint) {
        identify.on_swarm_event(FromSwarm::ConnectionClosed(ConnectionClosed {
            peer_id: peer,
            connection_id: ConnectionId::new_unchecked(id),
            endpoint,
            cause: None,
            remaining_established: 0,
        }));
    }

    /// Whether a dial to `peer`'s address would get a hole punch's tail.
    fn relayed(peer: PeerId) -> bool {
        let addr = format!("/ip4/192.0.2.7/tcp/4001/p2p/{peer}");
        relayed::to_relayed_peer(&addr.parse().expect("multiaddr"))
    }

    #[test]
    fn relayed_connections_are_entered_while_open() {
        let (relay, peer, direct) = (PeerId::random(), PeerId::random(), PeerId::random());
        let mut identify = identify();
        let circuit = dialed(format!(
            "/ip4/192.0.2.1/tcp/4001/p2p/{relay}/p2p-circuit/p2p/{peer}"
        ));
        let inbound_circuit = ConnectedPoint::Listener {
            local_addr: format!("/ip4/192.0.2.1/tcp/4001/p2p/{relay}/p2p-circuit")
                .parse()
                .expect("multiaddr"),
            send_back_addr: format!("/p2p/{peer}").parse().expect("multiaddr"),
        };
        let tcp = dialed("/ip4/192.0.2.9/tcp/4001".into());

        established(&mut identify, direct, 1, &tcp);
        assert!(!relayed(direct), "a direct connection is not entered");
        established(&mut identify, peer, 2, &circuit);
        established(&mut identify, peer, 3, &inbound_circuit);
        assert!(relayed(peer));
        assert!(!relayed(relay), "the relay's own connection is direct");
        closed(&mut identify, peer, 2, &circuit);
        assert!(relayed(peer), "the inbound circuit is still open");
        closed(&mut identify, peer, 3, &inbound_circuit);
        assert!(!relayed(peer), "both closed");

        established(&mut identify, peer, 4, &circuit);
        assert!(relayed(peer));
        drop(identify);
        assert!(
            !relayed(peer),
            "a dropped behaviour takes its connections out"
        );
    }
}
