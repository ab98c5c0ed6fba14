//! Swarms on a shared listener set: peers over plain TCP, `/ws` and `/tls/ws` reach one port,
//! and connect, identify and ping; the set's dials over WebSocket leave from that port.

mod util;

use std::collections::HashMap;

use futures::StreamExt;
use libp2p::{
    Multiaddr, PeerId, Swarm, core::ConnectedPoint, identify, multiaddr::Protocol, ping,
    swarm::SwarmEvent,
};
use libp2p_reuseport::{Config, SharedListeners};
use util::{
    shared::stats,
    swarm::{Behaviour, BehaviourEvent, listen_on, reuseport, shared, tls_pair, websocket},
    *,
};

const FAMILIES: [&str; 2] = ["/ip4/127.0.0.1/tcp/0", "/ip6/::1/tcp/0"];

/// What one swarm saw of one peer.
#[derive(Debug, Default, Clone)]
struct Seen {
    /// The remote address of the connection, as this side's endpoint says.
    remote: Option<Multiaddr>,
    /// Identify's observed address, as the peer reported it.
    observed: Option<Multiaddr>,
    pinged: bool,
}

impl Seen {
    fn done(&self) -> bool {
        self.remote.is_some() && self.observed.is_some() && self.pinged
    }
}

/// Applies a swarm event to what it saw of each peer.
fn record(seen: &mut HashMap<PeerId, Seen>, event: SwarmEvent<BehaviourEvent>) {
    match event {
        SwarmEvent::ConnectionEstablished {
            peer_id, endpoint, ..
        } => {
            seen.entry(peer_id).or_default().remote = Some(match endpoint {
                ConnectedPoint::Dialer { address, .. } => address,
                ConnectedPoint::Listener { send_back_addr, .. } => send_back_addr,
            });
        }
        SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
            peer_id,
            info,
            ..
        })) => seen.entry(peer_id).or_default().observed = Some(info.observed_addr),
        SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event {
            peer,
            result: Ok(_),
            ..
        })) => seen.entry(peer).or_default().pinged = true,
        SwarmEvent::OutgoingConnectionError { error, .. } => panic!("dial failed: {error}"),
        SwarmEvent::IncomingConnectionError { error, .. } => panic!("accept failed: {error}"),
        _ => {}
    }
}

/// Runs `server` and `clients` until the server and every client have seen each other connect,
/// identify and ping: what the server saw of each peer, and what each client saw of the server.
async fn drive(
    server: &mut Swarm<Behaviour>,
    clients: &mut [Swarm<Behaviour>],
) -> (HashMap<PeerId, Seen>, Vec<Seen>) {
    let server_id = *server.local_peer_id();
    let ids: Vec<PeerId> = clients.iter().map(|c| *c.local_peer_id()).collect();
    let mut at_server = HashMap::new();
    let mut at_clients = vec![HashMap::new(); clients.len()];
    within("connect, identify and ping with every client", async {
        loop {
            let server_done = ids
                .iter()
                .all(|id| at_server.get(id).is_some_and(Seen::done));
            let clients_done = at_clients
                .iter()
                .all(|seen: &HashMap<PeerId, Seen>| seen.get(&server_id).is_some_and(Seen::done));
            if server_done && clients_done {
                return;
            }
            let next_client = futures::future::select_all(
                clients.iter_mut().map(|c| Box::pin(c.select_next_some())),
            );
            tokio::select! {
                event = server.select_next_some() => record(&mut at_server, event),
                (event, i, _) = next_client => record(&mut at_clients[i], event),
            }
        }
    })
    .await;
    let at_clients = at_clients
        .into_iter()
        .map(|mut seen| seen.remove(&server_id).expect("seen"))
        .collect();
    (at_server, at_clients)
}

fn with_peer(addr: &Multiaddr, peer: PeerId) -> Multiaddr {
    addr.clone().with(Protocol::P2p(peer))
}

/// The protocols after `/tcp/<port>`: empty, `/ws` or `/tls/ws`.
fn after_tcp(addr: &Multiaddr) -> Multiaddr {
    addr.iter()
        .skip(2)
        .filter(|p| !matches!(p, Protocol::P2p(_)))
        .collect()
}

#[tokio::test]
async fn tcp_ws_and_wss_peers_reach_one_port() {
    for family in FAMILIES {
        let set = SharedListeners::new(Config::new());
        let (server_tls, client_tls) = tls_pair();
        let mut server = shared(&set, Some(server_tls));
        let tcp_addr = listen_on(&mut server, family).await;
        let ws_addr = listen_on(&mut server, &format!("{family}/ws")).await;
        let wss_addr = listen_on(&mut server, &format!("{family}/tls/ws")).await;
        assert_eq!(ws_addr, tcp_addr.clone().with(Protocol::Ws("/".into())));
        assert_eq!(
            wss_addr,
            tcp_addr
                .clone()
                .with(Protocol::Tls)
                .with(Protocol::Ws("/".into()))
        );
        assert_eq!(
            set.reuse_table().listen_addrs(),
            vec![socket_addr(&tcp_addr)],
            "one socket"
        );
        let server_id = *server.local_peer_id();

        let mut clients = vec![reuseport(), websocket(None), websocket(Some(client_tls))];
        for (client, addr) in clients.iter_mut().zip([&tcp_addr, &ws_addr, &wss_addr]) {
            client.dial(with_peer(addr, server_id)).unwrap();
        }
        let (at_server, at_clients) = drive(&mut server, &mut clients).await;
        for ((client, seen), target) in clients
            .iter()
            .zip(&at_clients)
            .zip([&tcp_addr, &ws_addr, &wss_addr])
        {
            let at_server = &at_server[client.local_peer_id()];
            let remote = at_server.remote.clone().unwrap();
            println!(
                "{target}: the server accepted {} from {remote} and identify told it {}; pinged both ways",
                client.local_peer_id(),
                seen.observed.as_ref().unwrap()
            );
            assert_eq!(seen.remote.as_ref().map(after_tcp), Some(after_tcp(target)));
            assert_eq!(
                after_tcp(&remote),
                after_tcp(target),
                "the server saw the protocol dialed"
            );
            assert_eq!(
                seen.observed.as_ref(),
                Some(&remote),
                "identify reports what the server saw"
            );
            assert_eq!(
                socket_addr(at_server.observed.as_ref().unwrap()),
                socket_addr(&tcp_addr)
            );
        }
        assert_eq!(set.stats(), stats(1, 1, 1), "{family}");
    }
}

#[tokio::test]
async fn websocket_dials_leave_from_the_shared_port() {
    if !port_sharing_here("websocket_dials_leave_from_the_shared_port") {
        return;
    }
    for family in FAMILIES {
        let (a_set, b_set) = (
            SharedListeners::new(Config::new()),
            SharedListeners::new(Config::new()),
        );
        let mut a = shared(&a_set, None);
        let mut b = shared(&b_set, None);
        let a_tcp = listen_on(&mut a, family).await;
        listen_on(&mut a, &format!("{family}/ws")).await;
        listen_on(&mut b, family).await;
        let b_ws = listen_on(&mut b, &format!("{family}/ws")).await;
        a.dial(with_peer(&b_ws, *b.local_peer_id())).unwrap();
        let a_id = *a.local_peer_id();
        let (at_b, at_a) = drive(&mut b, std::slice::from_mut(&mut a)).await;
        let seen_from = at_b[&a_id].remote.clone().unwrap();
        println!("{family}: B accepted A's /ws dial from {seen_from}; A listens on {a_tcp}");
        assert_eq!(
            socket_addr(&seen_from),
            socket_addr(&a_tcp),
            "A's dial left from its shared port"
        );
        assert_eq!(after_tcp(&seen_from), after_tcp(&b_ws));
        assert_eq!(
            at_a[0].observed.as_ref(),
            Some(&seen_from),
            "and identify tells A so"
        );
        assert_eq!(a_set.reuse_table().dialed_connections(), 1);
        assert_eq!(b_set.stats().http, 1);
    }
}
