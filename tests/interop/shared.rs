//! One port for TCP and WebSocket with peers of other implementations: js-libp2p over
//! `@libp2p/websockets` next to rust peers over TCP and `/ws`, all on one shared port in one
//! run; go-libp2p with its own shared TCP listener (`libp2p.ShareTCPListener`, the go peer's
//! `--share`) both ways over TCP and `/ws`.

use std::collections::HashMap;

use futures::{StreamExt, future::select_all};
use libp2p::{Multiaddr, PeerId, Swarm, identify, multiaddr::Protocol, ping, swarm::SwarmEvent};
use libp2p_reuseport::{Config, SharedListeners};
use tokio::process::Command;

use crate::{
    FAMILIES, Seen, go, js, record,
    remote::{Implementation, Remote, next_json, record_remote},
    util::{
        shared::stats,
        socket_addr,
        swarm::{Behaviour, BehaviourEvent, listen_on, reuseport, shared, websocket},
        within,
    },
};

/// go-libp2p's peer with TCP and WebSocket on one listening socket.
const GO_SHARED: Implementation = Implementation {
    name: "go-libp2p (shared TCP listener)",
    needs: "Go on PATH to build tests/interop/go",
    command: go_shared,
    reuses_port: true,
};

fn go_shared() -> Command {
    let mut command = go::command();
    command.arg("--share");
    command
}

/// A peer of the shared node: a rust swarm or another implementation's process.
enum Peer {
    Rust(Box<Swarm<Behaviour>>),
    Remote(Box<Remote>),
}

impl Peer {
    fn id(&self) -> PeerId {
        match self {
            Self::Rust(swarm) => *swarm.local_peer_id(),
            Self::Remote(remote) => remote.peer_id,
        }
    }

    /// Waits for the peer's next event and records what it says of `node`. Cancel-safe.
    async fn step(&mut self, seen: &mut Seen, node: PeerId) {
        match self {
            Self::Rust(swarm) => record(seen, node, swarm.select_next_some().await),
            Self::Remote(remote) => record_remote(seen, node, next_json(&mut remote.lines).await),
        }
    }
}

/// Stops the peers of other implementations.
async fn stop(peers: &mut [Peer]) {
    for peer in peers {
        if let Peer::Remote(remote) = peer {
            remote.child.kill().await.expect("kill the remote peer");
        }
    }
}

/// The peer a swarm event is about.
fn peer_of(event: &SwarmEvent<BehaviourEvent>) -> Option<PeerId> {
    match event {
        SwarmEvent::ConnectionEstablished { peer_id, .. }
        | SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
            peer_id,
            ..
        })) => Some(*peer_id),
        SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event { peer, .. })) => Some(*peer),
        SwarmEvent::OutgoingConnectionError { error, .. } => panic!("dial failed: {error}"),
        SwarmEvent::IncomingConnectionError { error, .. } => panic!("accept failed: {error}"),
        _ => None,
    }
}

/// Runs `node` and `peers` until the node and every peer have seen each other connect, identify
/// and ping: what the node saw of each peer, and what each peer saw of the node.
async fn drive(
    node: &mut Swarm<Behaviour>,
    peers: &mut [Peer],
) -> (HashMap<PeerId, Seen>, Vec<Seen>) {
    let node_id = *node.local_peer_id();
    let ids: Vec<PeerId> = peers.iter().map(Peer::id).collect();
    let mut at_node: HashMap<PeerId, Seen> = HashMap::new();
    let mut at_peers: Vec<Seen> = peers.iter().map(|_| Seen::default()).collect();
    within("connect, identify and ping with every peer", async {
        while !ids.iter().all(|id| at_node.get(id).is_some_and(Seen::done))
            || !at_peers.iter().all(Seen::done)
        {
            let steps = select_all(
                peers
                    .iter_mut()
                    .zip(at_peers.iter_mut())
                    .map(|(peer, seen)| Box::pin(peer.step(seen, node_id))),
            );
            tokio::select! {
                event = node.select_next_some() => if let Some(peer) = peer_of(&event) {
                    record(at_node.entry(peer).or_default(), peer, event);
                },
                _ = steps => {}
            }
        }
    })
    .await;
    (at_node, at_peers)
}

/// The protocols after `/tcp/<port>`, without `/p2p`: empty, or `/ws`.
fn after_tcp(addr: &Multiaddr) -> Multiaddr {
    addr.iter()
        .skip(2)
        .filter(|p| !matches!(p, Protocol::P2p(_)))
        .collect()
}

/// Asserts that a peer (`name`) dialed the node's `target` and reached it: the peer's view of the
/// connection is `target` (port and protocol), the node saw the connection as inbound over that
/// protocol, and the node's identify told the peer what the node saw.
fn assert_dialed_node(name: &str, at_peer: &Seen, at_node: &Seen, target: &Multiaddr) {
    let peer_saw = at_peer.remote.as_ref().expect("the peer's view");
    let node_saw = at_node.remote.as_ref().expect("the node's view");
    assert_eq!(at_peer.dialed, Some(true), "{name} dialed");
    assert_eq!(
        at_node.dialed,
        Some(false),
        "the node accepted {name}'s dial"
    );
    assert_eq!(
        socket_addr(peer_saw),
        socket_addr(target),
        "{name}: the shared port"
    );
    assert_eq!(
        after_tcp(peer_saw),
        after_tcp(target),
        "{name}: the protocol dialed"
    );
    assert_eq!(
        after_tcp(node_saw),
        after_tcp(target),
        "{name}: the node's side for that protocol took it"
    );
    assert_eq!(
        at_peer.observed.as_ref().map(socket_addr),
        Some(socket_addr(node_saw)),
        "{name}: identify tells what the node saw"
    );
}

fn ws() -> Multiaddr {
    Multiaddr::empty().with(Protocol::Ws("/".into()))
}

/// A node on a shared set listening on `family` and `family/ws`: the set, the swarm and its two
/// addresses.
async fn shared_node(family: &str) -> (SharedListeners, Swarm<Behaviour>, Multiaddr, Multiaddr) {
    let set = SharedListeners::new(Config::new());
    let mut node = shared(&set, None);
    let tcp_addr = listen_on(&mut node, family).await;
    let ws_addr = listen_on(&mut node, &format!("{family}/ws")).await;
    assert_eq!(
        ws_addr,
        tcp_addr.clone().with(Protocol::Ws("/".into())),
        "one port"
    );
    (set, node, tcp_addr, ws_addr)
}

#[tokio::test]
#[ignore = "needs Node 20+ and `npm ci` in tests/interop/js; .ci/run runs it"]
async fn js_websockets_rust_tcp_and_rust_ws_on_one_port() {
    for family in FAMILIES {
        let (set, mut node, tcp_addr, ws_addr) = shared_node(family).await;
        let node_id = *node.local_peer_id();
        let mut rust_tcp = reuseport();
        rust_tcp
            .dial(tcp_addr.clone().with(Protocol::P2p(node_id)))
            .unwrap();
        let mut rust_ws = websocket(None);
        rust_ws
            .dial(ws_addr.clone().with(Protocol::P2p(node_id)))
            .unwrap();
        let target = ws_addr.clone().with(Protocol::P2p(node_id));
        let js = Remote::start(&js::JS, family, Some(&target)).await;
        let mut peers = [
            Peer::Rust(Box::new(rust_tcp)),
            Peer::Rust(Box::new(rust_ws)),
            Peer::Remote(Box::new(js)),
        ];
        let (at_node, at_peers) = drive(&mut node, &mut peers).await;
        for ((peer, name), (seen, dialed)) in peers
            .iter()
            .zip([
                "rust over TCP",
                "rust over /ws",
                "js-libp2p over @libp2p/websockets",
            ])
            .zip(at_peers.iter().zip([&tcp_addr, &ws_addr, &ws_addr]))
        {
            let at_node = &at_node[&peer.id()];
            let from = at_node.remote.clone().unwrap();
            println!(
                "{family}: {name} reached {} and pinged; the node saw it from {from}, it was told {}",
                seen.remote.as_ref().unwrap(),
                seen.observed.as_ref().unwrap()
            );
            assert_dialed_node(name, seen, at_node, dialed);
            assert_eq!(
                socket_addr(at_node.observed.as_ref().unwrap()),
                socket_addr(&tcp_addr),
                "{name} saw the node's port"
            );
        }
        assert_eq!(
            set.stats(),
            stats(1, 2, 0),
            "{family}: one multistream, two WebSocket handshakes"
        );
        stop(&mut peers).await;
    }
}

#[tokio::test]
#[ignore = "needs Go to build tests/interop/go; .ci/run runs it"]
async fn go_shared_listener_we_dial_over_tcp_and_ws() {
    for family in FAMILIES {
        let go = Remote::start(&GO_SHARED, family, None).await;
        // Its addresses come in no fixed order.
        let go_tcp = go
            .addrs
            .iter()
            .find(|a| after_tcp(a).is_empty())
            .expect("a TCP address")
            .clone();
        let go_ws = go_tcp.clone().with(Protocol::Ws("/".into()));
        assert_eq!(go.addrs.len(), 2, "{:?}", go.addrs);
        assert!(
            go.addrs.contains(&go_ws),
            "go listens on {go_ws} too, the same port: {:?}",
            go.addrs
        );
        // One of our nodes dials go over TCP, another over /ws, each from its shared port.
        let mut nodes = Vec::new();
        for target in [&go_tcp, &go_ws] {
            let (set, mut node, tcp_addr, _) = shared_node(family).await;
            node.dial(target.clone().with(Protocol::P2p(go.peer_id)))
                .unwrap();
            nodes.push((set, node, tcp_addr, target.clone()));
        }
        let mut peers = [Peer::Remote(Box::new(go))];
        for (set, node, tcp_addr, target) in &mut nodes {
            let (at_node, at_go) = drive(node, &mut peers).await;
            let seen = &at_node[&peers[0].id()];
            let go_saw = at_go[0].remote.clone().unwrap();
            println!(
                "{family}: we dialed {target} from {tcp_addr}; go-libp2p saw {go_saw}, its identify told us {}",
                seen.observed.as_ref().unwrap()
            );
            assert_eq!(seen.dialed, Some(true));
            assert_eq!(after_tcp(seen.remote.as_ref().unwrap()), after_tcp(target));
            assert_eq!(
                socket_addr(&go_saw),
                socket_addr(tcp_addr),
                "go sees our shared listening port"
            );
            assert_eq!(
                after_tcp(&go_saw),
                after_tcp(target),
                "go routed it to its {} transport",
                if after_tcp(target) == ws() {
                    "WebSocket"
                } else {
                    "TCP"
                }
            );
            assert_eq!(
                seen.observed.as_ref(),
                Some(&go_saw),
                "go's identify reports it back"
            );
            assert_eq!(set.reuse_table().dialed_connections(), 1);
        }
        stop(&mut peers).await;
    }
}

#[tokio::test]
#[ignore = "needs Go to build tests/interop/go; .ci/run runs it"]
async fn go_shared_listener_dials_us_over_tcp_and_ws() {
    for family in FAMILIES {
        let (set, mut node, tcp_addr, ws_addr) = shared_node(family).await;
        let node_id = *node.local_peer_id();
        let mut peers = Vec::new();
        for target in [&tcp_addr, &ws_addr] {
            let target = target.clone().with(Protocol::P2p(node_id));
            let go = Remote::start(&GO_SHARED, family, Some(&target)).await;
            peers.push(Peer::Remote(Box::new(go)));
        }
        let (at_node, at_go) = drive(&mut node, &mut peers).await;
        for ((peer, seen), target) in peers.iter().zip(&at_go).zip([&tcp_addr, &ws_addr]) {
            let Peer::Remote(go) = peer else {
                unreachable!()
            };
            let from = at_node[&go.peer_id].remote.clone().unwrap();
            println!(
                "{family}: go-libp2p (listening on {}) dialed {target}; we saw it from {from}, and told it {}",
                go.addr,
                seen.observed.as_ref().unwrap()
            );
            assert_dialed_node("go-libp2p", seen, &at_node[&go.peer_id], target);
            if after_tcp(target).is_empty() {
                assert_eq!(
                    socket_addr(&from),
                    socket_addr(&go.addr),
                    "go's TCP dial leaves from its shared listening port"
                );
            }
        }
        assert_eq!(set.stats(), stats(1, 1, 0), "{family}");
        stop(&mut peers).await;
    }
}
