//! Interoperability with libp2p implementations this crate did not write: rust-libp2p's own TCP
//! transport (libp2p-tcp), js-libp2p (Node, `js/peer.mjs`) and go-libp2p (`go/`, which reuses
//! its listening port when it dials, as this crate does). In each direction, over 127.0.0.1 and
//! ::1: the connection is secured and multiplexed, identify and ping work both ways, and when we
//! dial, the remote sees our listening port and identify's observed address reports it back.
//! `shared.rs` does the same for one port shared by TCP and WebSocket (`SharedListeners`), with
//! js-libp2p over `@libp2p/websockets` and go-libp2p's own shared TCP listener.
//!
//! The js-libp2p tests need Node 20+ and `npm ci` in `tests/interop/js`, the go-libp2p tests need
//! Go (they build `go/` with `go build`); both are ignored by a plain `cargo test` (and say so)
//! and run by `.ci/run`. Asked to run without their tools, they fail.

#[path = "../util/mod.rs"]
mod util;

mod go;
mod js;
mod remote;
mod shared;

use futures::StreamExt;
use libp2p::{Multiaddr, PeerId, Swarm, core::ConnectedPoint, identify, ping, swarm::SwarmEvent};
use util::{
    swarm::{Behaviour, BehaviourEvent, libp2p_tcp, listen_on, reuseport},
    *,
};

const FAMILIES: [&str; 2] = ["/ip4/127.0.0.1/tcp/0", "/ip6/::1/tcp/0"];

/// What one side of a connection saw.
#[derive(Debug, Default)]
struct Seen {
    /// The remote address of the connection.
    remote: Option<Multiaddr>,
    /// Whether this side dialed the connection.
    dialed: Option<bool>,
    /// Identify's observed address, as the remote reported it.
    observed: Option<Multiaddr>,
    /// A successful ping on this side.
    pinged: bool,
}

impl Seen {
    fn done(&self) -> bool {
        self.remote.is_some() && self.observed.is_some() && self.pinged
    }
}

/// Applies a swarm event to what that side saw of `peer`.
fn record(seen: &mut Seen, peer: PeerId, event: SwarmEvent<BehaviourEvent>) {
    match event {
        SwarmEvent::ConnectionEstablished {
            peer_id, endpoint, ..
        } if peer_id == peer => {
            seen.dialed = Some(endpoint.is_dialer());
            seen.remote = Some(match endpoint {
                ConnectedPoint::Dialer { address, .. } => address,
                ConnectedPoint::Listener { send_back_addr, .. } => send_back_addr,
            });
        }
        SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
            peer_id,
            info,
            ..
        })) if peer_id == peer => seen.observed = Some(info.observed_addr),
        SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event {
            peer: p,
            result: Ok(_),
            ..
        })) if p == peer => seen.pinged = true,
        SwarmEvent::OutgoingConnectionError { error, .. } => panic!("dial failed: {error}"),
        _ => {}
    }
}

/// Runs both swarms until each has seen the other connect, identify and ping.
async fn drive(a: &mut Swarm<Behaviour>, b: &mut Swarm<Behaviour>) -> (Seen, Seen) {
    let (a_id, b_id) = (*a.local_peer_id(), *b.local_peer_id());
    let (mut at_a, mut at_b) = (Seen::default(), Seen::default());
    within("connect, identify and ping both ways", async {
        while !at_a.done() || !at_b.done() {
            tokio::select! {
                event = a.select_next_some() => record(&mut at_a, b_id, event),
                event = b.select_next_some() => record(&mut at_b, a_id, event),
            }
        }
    })
    .await;
    (at_a, at_b)
}

fn port(addr: &Multiaddr) -> u16 {
    socket_addr(addr).port()
}

#[tokio::test]
async fn we_dial_libp2p_tcp() {
    if !port_sharing_here("we_dial_libp2p_tcp") {
        return;
    }
    for family in FAMILIES {
        let mut ours = reuseport();
        let mut theirs = libp2p_tcp();
        let our_addr = listen_on(&mut ours, family).await;
        let their_addr = listen_on(&mut theirs, family).await;
        ours.dial(their_addr).unwrap();
        let (at_ours, at_theirs) = drive(&mut ours, &mut theirs).await;
        let remote = at_theirs.remote.unwrap();
        let observed = at_ours.observed.unwrap();
        println!(
            "libp2p-tcp saw our dial from {remote}, identify reported {observed}; we listen on {our_addr}"
        );
        assert_eq!(
            port(&remote),
            port(&our_addr),
            "libp2p-tcp sees our listening port"
        );
        assert_eq!(observed, remote, "identify reports the same address back");
    }
}

#[tokio::test]
async fn libp2p_tcp_dials_us() {
    if !port_sharing_here("libp2p_tcp_dials_us") {
        return;
    }
    for family in FAMILIES {
        let mut ours = reuseport();
        let mut theirs = libp2p_tcp();
        let our_addr = listen_on(&mut ours, family).await;
        let their_addr = listen_on(&mut theirs, family).await;
        theirs.dial(our_addr.clone()).unwrap();
        let (at_ours, at_theirs) = drive(&mut ours, &mut theirs).await;
        let observed_by_us = at_ours.remote.unwrap();
        println!(
            "libp2p-tcp dialed us from {observed_by_us} (it listens on {their_addr}); identify told it {}",
            at_theirs.observed.as_ref().unwrap()
        );
        assert_eq!(
            at_theirs.remote.as_ref(),
            Some(&our_addr),
            "it reached our listener"
        );
        assert_eq!(at_theirs.observed.unwrap(), observed_by_us);
    }
}
