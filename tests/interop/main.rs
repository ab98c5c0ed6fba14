//! Interoperability with libp2p implementations this crate did not write: rust-libp2p's own TCP
//! transport (libp2p-tcp) and js-libp2p (Node, `js/peer.mjs`). In each direction, over 127.0.0.1
//! and ::1: the connection is secured and multiplexed, identify and ping work both ways, and when
//! we dial, the remote sees our listening port and identify's observed address reports it back.
//!
//! The js-libp2p tests need Node 20+ and `npm ci` in `tests/interop/js`; they are ignored by a
//! plain `cargo test` (and say so) and run by `.ci/run`.

#[path = "../util/mod.rs"]
mod util;

use std::{net::SocketAddr, path::PathBuf, process::Stdio};

use futures::StreamExt;
use libp2p::{Multiaddr, PeerId, Swarm, core::ConnectedPoint, identify, ping, swarm::SwarmEvent};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
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

/// A js-libp2p peer in a child process, read line by line.
struct JsPeer {
    child: tokio::process::Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    peer_id: PeerId,
    addr: Multiaddr,
}

fn js_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/js")
}

impl JsPeer {
    async fn start(listen: &str, dial: Option<&Multiaddr>) -> Self {
        let dir = js_dir();
        assert!(
            dir.join("node_modules/libp2p").exists(),
            "js-libp2p is not installed: run `npm ci` in {}",
            dir.display()
        );
        let mut command = tokio::process::Command::new("node");
        command
            .arg(dir.join("peer.mjs"))
            .args(["--listen", listen])
            .current_dir(&dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if let Some(dial) = dial {
            command.args(["--dial", &dial.to_string()]);
        }
        let mut child = command.spawn().expect("node: Node 20+ must be on PATH");
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let listening = within("js peer listening", next_json(&mut lines)).await;
        assert_eq!(listening["event"], "listening", "{listening}");
        let peer_id = listening["peerId"].as_str().unwrap().parse().unwrap();
        let addr = listening["addrs"][0].as_str().unwrap().parse().unwrap();
        Self {
            child,
            lines,
            peer_id,
            addr,
        }
    }
}

async fn next_json(lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>) -> Value {
    let line = lines
        .next_line()
        .await
        .expect("read js output")
        .expect("js peer exited");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

/// Applies a line of the js peer to what it saw of `peer`.
fn record_js(seen: &mut Seen, peer: PeerId, json: Value) {
    let about = |key: &str| json[key].as_str() == Some(peer.to_string().as_str());
    match json["event"].as_str() {
        Some("connection") if about("remotePeer") => {
            seen.remote = json["remoteAddr"].as_str().map(|a| a.parse().unwrap());
        }
        Some("identify") if about("peer") => {
            seen.observed = json["observedAddr"].as_str().map(|a| a.parse().unwrap());
        }
        Some("ping") if about("peer") => seen.pinged = true,
        Some("error") => println!("js peer: {json}"),
        _ => {}
    }
}

/// Runs our swarm and the js peer until each has seen the other connect, identify and ping.
async fn drive_js(ours: &mut Swarm<Behaviour>, js: &mut JsPeer) -> (Seen, Seen) {
    let our_id = *ours.local_peer_id();
    let (mut at_ours, mut at_js) = (Seen::default(), Seen::default());
    within(
        "connect, identify and ping both ways with js-libp2p",
        async {
            while !at_ours.done() || !at_js.done() {
                tokio::select! {
                    event = ours.select_next_some() => record(&mut at_ours, js.peer_id, event),
                    json = next_json(&mut js.lines) => record_js(&mut at_js, our_id, json),
                }
            }
        },
    )
    .await;
    (at_ours, at_js)
}

#[tokio::test]
#[ignore = "needs Node 20+ and `npm ci` in tests/interop/js; .ci/run runs it"]
async fn we_dial_js_libp2p() {
    for family in FAMILIES {
        let mut ours = reuseport();
        let our_addr = listen_on(&mut ours, family).await;
        let mut js = JsPeer::start(family, None).await;
        ours.dial(js.addr.clone()).unwrap();
        let (at_ours, at_js) = drive_js(&mut ours, &mut js).await;
        let remote: SocketAddr = socket_addr(at_js.remote.as_ref().unwrap());
        let observed = at_ours.observed.unwrap();
        println!(
            "js-libp2p saw our dial from {remote}, its identify told us {observed}; we listen on {our_addr}"
        );
        assert_eq!(
            remote.port(),
            port(&our_addr),
            "js-libp2p sees our listening port"
        );
        assert_eq!(
            socket_addr(&observed),
            remote,
            "js identify reports it back"
        );
        js.child.kill().await.unwrap();
    }
}

#[tokio::test]
#[ignore = "needs Node 20+ and `npm ci` in tests/interop/js; .ci/run runs it"]
async fn js_libp2p_dials_us() {
    for family in FAMILIES {
        let mut ours = reuseport();
        let our_addr = listen_on(&mut ours, family).await;
        let target = our_addr
            .clone()
            .with(libp2p::multiaddr::Protocol::P2p(*ours.local_peer_id()));
        let mut js = JsPeer::start(family, Some(&target)).await;
        let (at_ours, at_js) = drive_js(&mut ours, &mut js).await;
        println!(
            "js-libp2p dialed us from {}, we told it {}",
            at_ours.remote.as_ref().unwrap(),
            at_js.observed.as_ref().unwrap()
        );
        assert_eq!(
            socket_addr(at_js.remote.as_ref().unwrap()),
            socket_addr(&our_addr)
        );
        assert_eq!(at_js.observed.as_ref(), at_ours.remote.as_ref());
        js.child.kill().await.unwrap();
    }
}
