//! A peer of another libp2p implementation in a child process that prints JSON lines
//! (`js/peer.mjs`, `go/`), and the two tests every such implementation gets: we dial it, and it
//! dials us.
//!
//! The lines: `{"event":"listening","peerId","addrs"}` first, then
//! `{"event":"connection","direction","remotePeer","remoteAddr"}` for every connection,
//! `{"event":"identify","peer","observedAddr"}` and `{"event":"ping","peer"}`.

use std::{net::SocketAddr, process::Stdio};

use futures::StreamExt;
use libp2p::{Multiaddr, PeerId, Swarm, multiaddr::Protocol};
use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, BufReader, Lines},
    process::{Child, ChildStdout, Command},
};

use crate::{
    FAMILIES, Seen, record,
    util::{
        socket_addr,
        swarm::{Behaviour, listen_on, reuseport},
        within,
    },
};

/// One implementation's peer.
pub(crate) struct Implementation {
    pub(crate) name: &'static str,
    /// What it needs, for the message when it cannot start.
    pub(crate) needs: &'static str,
    /// A command that runs the peer; `--listen <addr>` and `--dial <addr>` are appended.
    pub(crate) command: fn() -> Command,
    /// Whether its dials leave from its listening port.
    pub(crate) reuses_port: bool,
}

/// A running peer, read line by line; killed when dropped.
pub(crate) struct Remote {
    pub(crate) child: Child,
    pub(crate) lines: Lines<BufReader<ChildStdout>>,
    pub(crate) peer_id: PeerId,
    /// Its first listening address.
    pub(crate) addr: Multiaddr,
    /// All its listening addresses.
    pub(crate) addrs: Vec<Multiaddr>,
}

impl Remote {
    pub(crate) async fn start(
        imp: &Implementation,
        listen: &str,
        dial: Option<&Multiaddr>,
    ) -> Self {
        let mut command = (imp.command)();
        command
            .args(["--listen", listen])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if let Some(dial) = dial {
            command.args(["--dial", &dial.to_string()]);
        }
        let mut child = command.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start the {} peer ({e}): needs {}",
                imp.name, imp.needs
            )
        });
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let listening = within("remote peer listening", next_json(&mut lines)).await;
        assert_eq!(listening["event"], "listening", "{listening}");
        let peer_id = listening["peerId"].as_str().unwrap().parse().unwrap();
        let addrs: Vec<Multiaddr> = listening["addrs"]
            .as_array()
            .expect("addrs")
            .iter()
            .map(|a| a.as_str().unwrap().parse().unwrap())
            .collect();
        Self {
            child,
            lines,
            peer_id,
            addr: addrs[0].clone(),
            addrs,
        }
    }
}

pub(crate) async fn next_json(lines: &mut Lines<BufReader<ChildStdout>>) -> Value {
    let line = lines
        .next_line()
        .await
        .expect("read the remote peer's output")
        .expect("the remote peer exited");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

/// Applies a line of the remote peer to what it saw of `peer`.
pub(crate) fn record_remote(seen: &mut Seen, peer: PeerId, json: Value) {
    let about = |key: &str| json[key].as_str() == Some(peer.to_string().as_str());
    match json["event"].as_str() {
        Some("connection") if about("remotePeer") => {
            seen.remote = json["remoteAddr"].as_str().map(|a| a.parse().unwrap());
            seen.dialed = Some(json["direction"] == "outbound");
        }
        Some("identify") if about("peer") => {
            seen.observed = json["observedAddr"].as_str().map(|a| a.parse().unwrap());
        }
        Some("ping") if about("peer") => seen.pinged = true,
        Some("error") => println!("remote peer: {json}"),
        _ => {}
    }
}

/// Runs our swarm and the remote peer until each has seen the other connect, identify and ping.
async fn drive(ours: &mut Swarm<Behaviour>, remote: &mut Remote) -> (Seen, Seen) {
    let our_id = *ours.local_peer_id();
    let (mut at_ours, mut at_remote) = (Seen::default(), Seen::default());
    within("connect, identify and ping both ways", async {
        while !at_ours.done() || !at_remote.done() {
            tokio::select! {
                event = ours.select_next_some() => record(&mut at_ours, remote.peer_id, event),
                json = next_json(&mut remote.lines) => record_remote(&mut at_remote, our_id, json),
            }
        }
    })
    .await;
    (at_ours, at_remote)
}

fn addr_of(seen: &Option<Multiaddr>) -> SocketAddr {
    socket_addr(seen.as_ref().expect("seen"))
}

/// We dial the remote peer: it sees our listening port, and its identify tells us so.
pub(crate) async fn we_dial(imp: &Implementation) {
    for family in FAMILIES {
        let mut ours = reuseport();
        let our_addr = socket_addr(&listen_on(&mut ours, family).await);
        let mut remote = Remote::start(imp, family, None).await;
        ours.dial(remote.addr.clone()).unwrap();
        let (at_ours, at_remote) = drive(&mut ours, &mut remote).await;
        let seen_from = addr_of(&at_remote.remote);
        let observed = addr_of(&at_ours.observed);
        println!(
            "{} saw our dial from {seen_from}, its identify told us {observed}; we listen on {our_addr}",
            imp.name
        );
        assert_eq!(at_ours.dialed, Some(true));
        assert_eq!(at_remote.dialed, Some(false), "{} accepted it", imp.name);
        assert_eq!(
            seen_from, our_addr,
            "{} sees our listening address",
            imp.name
        );
        assert_eq!(observed, seen_from, "{} identify reports it back", imp.name);
        assert_eq!(
            addr_of(&at_remote.observed),
            socket_addr(&remote.addr),
            "we tell {} its listening address",
            imp.name
        );
        remote.child.kill().await.unwrap();
    }
}

/// The remote peer dials us: we tell it the address we see, which is its listening address if
/// it reuses its port.
pub(crate) async fn dials_us(imp: &Implementation) {
    for family in FAMILIES {
        let mut ours = reuseport();
        let our_addr = listen_on(&mut ours, family).await;
        let target = our_addr.clone().with(Protocol::P2p(*ours.local_peer_id()));
        let mut remote = Remote::start(imp, family, Some(&target)).await;
        let (at_ours, at_remote) = drive(&mut ours, &mut remote).await;
        let seen_from = addr_of(&at_ours.remote);
        let told = addr_of(&at_remote.observed);
        println!(
            "{} dialed us from {seen_from} (it listens on {}), we told it {told}",
            imp.name, remote.addr
        );
        assert_eq!(at_ours.dialed, Some(false));
        assert_eq!(at_remote.dialed, Some(true), "{} dialed", imp.name);
        assert_eq!(addr_of(&at_remote.remote), socket_addr(&our_addr));
        assert_eq!(
            told, seen_from,
            "our identify tells {} what we see",
            imp.name
        );
        if imp.reuses_port {
            assert_eq!(
                seen_from,
                socket_addr(&remote.addr),
                "{}'s dial leaves from its listening address",
                imp.name
            );
        }
        remote.child.kill().await.unwrap();
    }
}
