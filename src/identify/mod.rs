//! [`Identify`]: libp2p-identify's behaviour, with the observed addresses of connections that
//! left from a listening port reported unchanged.
//!
//! - this file: the behaviour, delegating every call to the wrapped one;
//! - `observed`: which observations are reported as they are (pure, unit-tested).

mod observed;

use std::{
    collections::VecDeque,
    fmt,
    ops::{Deref, DerefMut},
    task::{Context, Poll},
};

use libp2p_core::{Endpoint, Multiaddr, transport::PortUse};
use libp2p_identify as identify;
use libp2p_identity::PeerId;
use libp2p_swarm::{
    ConnectionClosed, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler,
    THandlerInEvent, THandlerOutEvent, ToSwarm, behaviour::ListenAddresses,
};

use self::observed::{Observed, dialed_from_listening_port};

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
/// port; or the same observation of a connection twice. A dial that asked for port reuse but
/// left from an ephemeral port (see [`TcpStream::port_origin`](crate::TcpStream::port_origin):
/// a second connection to the same peer address, a refused listening port) gives a candidate
/// that only a NAT mapping every destination alike could make use of; DCUtR's remote tries it
/// along with the others.
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
pub struct Identify {
    inner: identify::Behaviour,
    observed: Observed,
    listen_addrs: ListenAddresses,
    /// Candidates to report before polling `inner` again. At most one per `Received` event.
    candidates: VecDeque<Multiaddr>,
}

impl Identify {
    /// Wraps `inner`, which keeps doing everything it does.
    pub fn new(inner: identify::Behaviour) -> Self {
        Self {
            inner,
            observed: Observed::default(),
            listen_addrs: ListenAddresses::default(),
            candidates: VecDeque::new(),
        }
    }

    /// The wrapped behaviour.
    pub fn into_inner(self) -> identify::Behaviour {
        self.inner
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
            self.observed.track(connection_id);
        }
        Ok(handler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        self.listen_addrs.on_swarm_event(&event);
        if let FromSwarm::ConnectionClosed(ConnectionClosed { connection_id, .. }) = event {
            self.observed.closed(connection_id);
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
