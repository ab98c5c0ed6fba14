//! Identify's observations as DCUtR candidates, unchanged, for connections that left from the
//! listening port.
//!
//! libp2p-identify 0.48 replaces the port of an observed TCP address with a listening port
//! whenever the two differ ("address translation", meant for dials from ephemeral ports). Behind
//! a NAT that maps the listening port to another public port (a port-translating NAT; the
//! second of two hosts listening on one port behind one NAT) that turns the one good candidate,
//! the NAT's mapping, into an address nobody can dial. For a connection we dialed from the
//! listening port, the observed address is exactly that mapping: this behaviour reports it as an
//! external address candidate as it is, next to identify's translation.

use std::{
    collections::{HashSet, VecDeque},
    convert::Infallible,
    task::{Context, Poll},
};

use libp2p::{
    Multiaddr, PeerId,
    core::{Endpoint, multiaddr::Protocol, transport::PortUse},
    swarm::{
        ConnectionClosed, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler,
        THandlerInEvent, THandlerOutEvent, ToSwarm, dummy,
    },
};

#[derive(Default)]
pub(crate) struct Behaviour {
    /// Direct connections we dialed asking to reuse the listening port.
    reused: HashSet<ConnectionId>,
    candidates: VecDeque<Multiaddr>,
}

impl Behaviour {
    /// What identify's `Received` event said the remote of `connection` observes.
    pub(crate) fn observed(&mut self, connection: ConnectionId, addr: &Multiaddr) {
        if self.reused.contains(&connection) && !self.candidates.contains(addr) {
            self.candidates.push_back(addr.clone());
        }
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        connection: ConnectionId,
        _: PeerId,
        addr: &Multiaddr,
        _: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        if port_use == PortUse::Reuse && !addr.iter().any(|p| p == Protocol::P2pCircuit) {
            self.reused.insert(connection);
        }
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        if let FromSwarm::ConnectionClosed(ConnectionClosed { connection_id, .. }) = event {
            self.reused.remove(&connection_id);
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        libp2p::core::util::unreachable(event)
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Infallible, THandlerInEvent<Self>>> {
        match self.candidates.pop_front() {
            Some(addr) => Poll::Ready(ToSwarm::NewExternalAddrCandidate(addr)),
            None => Poll::Pending,
        }
    }
}
