//! A node a person can start on two machines:
//!
//! ```text
//! cargo run --example node -- --listen /ip4/0.0.0.0/tcp/4001
//! cargo run --example node -- --listen /ip4/0.0.0.0/tcp/4001 --dial /ip4/<first machine>/tcp/4001
//! ```
//!
//! It prints its listening addresses, each connection and whether the dial left from the
//! listening port, the addresses peers observe for it (identify), and ping round-trip times.
//! `--listen` may be given several times; without it the node listens on
//! `/ip4/0.0.0.0/tcp/4001`.

mod common;

use std::sync::Arc;

use futures::StreamExt;
use libp2p::{Multiaddr, core::ConnectedPoint, identify, ping, swarm::SwarmEvent};
use libp2p_reuseport::PortOrigin;

use common::BehaviourEvent;

struct Args {
    listen: Vec<Multiaddr>,
    dial: Vec<Multiaddr>,
}

fn args() -> Result<Args, String> {
    let usage = "usage: node [--listen <multiaddr>]... [--dial <multiaddr>]...";
    let mut args = Args {
        listen: Vec::new(),
        dial: Vec::new(),
    };
    let mut iter = std::env::args().skip(1);
    while let Some(flag) = iter.next() {
        let list = match flag.as_str() {
            "--listen" => &mut args.listen,
            "--dial" => &mut args.dial,
            "-h" | "--help" => return Err(usage.into()),
            other => return Err(format!("unknown argument {other}\n{usage}")),
        };
        let value = iter
            .next()
            .ok_or(format!("{flag} needs a multiaddr\n{usage}"))?;
        list.push(value.parse().map_err(|e| format!("{flag} {value}: {e}"))?);
    }
    if args.listen.is_empty() {
        args.listen
            .push("/ip4/0.0.0.0/tcp/4001".parse().expect("valid"));
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = match args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    let mut swarm = common::swarm(Arc::new(|stream| {
        let (Ok(local), Ok(remote)) = (stream.local_addr(), stream.peer_addr()) else {
            return;
        };
        match stream.port_origin() {
            PortOrigin::Accepted => println!("tcp: accepted {remote} on {local}"),
            PortOrigin::Reused => println!("tcp: dialed {remote} from {local}, the listening port"),
            other => println!("tcp: dialed {remote} from {local}, not a listening port: {other:?}"),
        }
    }))?;
    println!("peer id {}", swarm.local_peer_id());
    for addr in args.listen {
        swarm.listen_on(addr)?;
    }
    for addr in args.dial {
        println!("dialing {addr}");
        swarm.dial(addr)?;
    }
    loop {
        match swarm.select_next_some().await {
            SwarmEvent::NewListenAddr { address, .. } => {
                println!("listening on {address}/p2p/{}", swarm.local_peer_id());
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                println!("no longer listening on {address}");
            }
            SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, ..
            } => match endpoint {
                ConnectedPoint::Dialer { address, .. } => {
                    println!("connected to {peer_id} at {address}");
                }
                ConnectedPoint::Listener { send_back_addr, .. } => {
                    println!("accepted {peer_id} from {send_back_addr}");
                }
            },
            SwarmEvent::ConnectionClosed { peer_id, cause, .. } => {
                println!("connection to {peer_id} closed ({cause:?})");
            }
            SwarmEvent::OutgoingConnectionError { error, .. } => println!("dial failed: {error}"),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => println!("{peer_id} observes us at {}", info.observed_addr),
            SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event { peer, result, .. })) => {
                match result {
                    Ok(rtt) => println!("ping {peer}: {rtt:?}"),
                    Err(e) => println!("ping {peer} failed: {e}"),
                }
            }
            _ => {}
        }
    }
}
