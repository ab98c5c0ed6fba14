//! One listening port for libp2p over TCP and over WebSocket, with this crate's
//! `SharedListeners` and libp2p-websocket.
//!
//! `cargo run --example tcp_and_ws` starts a node listening on `/ip4/127.0.0.1/tcp/0` and
//! `/ip4/127.0.0.1/tcp/0/ws`, which share one socket and so one port, then dials it from a
//! peer over TCP and a peer over WebSocket; each connects, identifies and pings, and the node
//! prints how its socket routed the connections by their first bytes.
//!
//! `cargo run --example tcp_and_ws -- --listen /ip4/0.0.0.0/tcp/4001` serves on that port over
//! TCP and `/ws` until stopped and prints every connection (try it with js-libp2p's
//! `@libp2p/websockets`, or with go-libp2p).

// Only the swarm builder of the shared module: this example's node is built on other
// transports than the plain one `common::swarm` makes.
#[allow(dead_code)]
mod common;

use std::time::Duration;

use futures::StreamExt;
use libp2p::{
    Multiaddr, PeerId, Swarm, Transport as _, identify, multiaddr::Protocol, ping,
    swarm::SwarmEvent,
};
use libp2p_reuseport::{Config, SharedListeners, Transport};

use common::{Behaviour, BehaviourEvent, with_transport as swarm};

/// The node: the TCP side of `shared` and libp2p-websocket around its WebSocket side.
fn node(shared: &SharedListeners) -> Result<Swarm<Behaviour>, Box<dyn std::error::Error>> {
    swarm(
        shared
            .tcp()
            .or_transport(libp2p_websocket::Config::new(shared.websocket())),
    )
}

/// Listens on `addr` and returns the address the swarm reports.
async fn listen(
    swarm: &mut Swarm<Behaviour>,
    addr: Multiaddr,
) -> Result<Multiaddr, Box<dyn std::error::Error>> {
    swarm.listen_on(addr)?;
    loop {
        match swarm.select_next_some().await {
            SwarmEvent::NewListenAddr { address, .. } => return Ok(address),
            SwarmEvent::ListenerError { error, .. } => return Err(error.into()),
            _ => {}
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => demo().await,
        [flag, addr] if flag == "--listen" => serve(addr.parse()?).await,
        _ => Err("usage: tcp_and_ws [--listen /ip4/<ip>/tcp/<port>]".into()),
    }
}

/// A node and two peers in this process.
async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    let shared = SharedListeners::new(Config::new());
    let mut server = node(&shared)?;
    let tcp_addr = listen(&mut server, "/ip4/127.0.0.1/tcp/0".parse()?).await?;
    let ws_addr = listen(&mut server, "/ip4/127.0.0.1/tcp/0/ws".parse()?).await?;
    println!(
        "node {} listens on {tcp_addr} and {ws_addr}: one socket ({:?})",
        server.local_peer_id(),
        shared.reuse_table().listen_addrs()
    );
    let server_id = *server.local_peer_id();
    let mut tcp_peer = swarm(Transport::new(Config::new()))?;
    let mut ws_peer = swarm(libp2p_websocket::Config::new(Transport::new(Config::new())))?;
    tcp_peer.dial(tcp_addr.with(Protocol::P2p(server_id)))?;
    ws_peer.dial(ws_addr.with(Protocol::P2p(server_id)))?;
    let names = [
        (*tcp_peer.local_peer_id(), "TCP peer"),
        (*ws_peer.local_peer_id(), "WebSocket peer"),
    ];
    let name = |peer: &PeerId| {
        names
            .iter()
            .find(|(p, _)| p == peer)
            .map_or("?", |(_, n)| *n)
    };

    let mut pinged = Vec::new();
    let deadline = tokio::time::sleep(Duration::from_secs(10));
    tokio::pin!(deadline);
    while pinged.len() < names.len() {
        tokio::select! {
            event = server.select_next_some() => match event {
                SwarmEvent::ConnectionEstablished { peer_id, endpoint, .. } => {
                    println!("{} {peer_id} connected from {}", name(&peer_id), endpoint.get_remote_address());
                }
                SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. })) => {
                    println!("{} identified: it sees the node at {}", name(&peer_id), info.observed_addr);
                }
                SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event { peer, result: Ok(rtt), .. }))
                    if !pinged.contains(&peer) =>
                {
                    println!("{}: ping {rtt:?}", name(&peer));
                    pinged.push(peer);
                }
                _ => {}
            },
            _ = tcp_peer.select_next_some() => {}
            _ = ws_peer.select_next_some() => {}
            _ = &mut deadline => return Err("the peers did not connect and ping within 10 s".into()),
        }
    }
    let stats = shared.stats();
    println!(
        "the socket routed {} connection(s) to TCP (multistream-select), {} to WebSocket (HTTP), refused {}",
        stats.multistream,
        stats.http,
        stats.closed()
    );
    Ok(())
}

/// A node on `addr` over TCP and `/ws`, until stopped.
async fn serve(addr: Multiaddr) -> Result<(), Box<dyn std::error::Error>> {
    let shared = SharedListeners::new(Config::new());
    let mut server = node(&shared)?;
    server.listen_on(addr.clone())?;
    server.listen_on(addr.with(Protocol::Ws("/".into())))?;
    println!("node {}", server.local_peer_id());
    loop {
        match server.select_next_some().await {
            SwarmEvent::NewListenAddr { address, .. } => println!("listening on {address}"),
            SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, ..
            } => {
                println!("{peer_id} connected: {}", endpoint.get_remote_address());
            }
            SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event {
                peer,
                result: Ok(rtt),
                ..
            })) => println!("{peer}: ping {rtt:?} ({:?})", shared.stats()),
            SwarmEvent::ListenerError { error, .. } => println!("listener error: {error}"),
            _ => {}
        }
    }
}
