//! Two nodes in one process on 127.0.0.1, identify and ping over this crate's transport.
//!
//! `cargo run --example demo` prints each node's listening address, the address the other side
//! observed, whether the dial left from the listening port, and a ping each way.

mod common;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::StreamExt;
use libp2p::{Multiaddr, Swarm, core::ConnectedPoint, identify, ping, swarm::SwarmEvent};
use libp2p_reuseport::PortOrigin;

use common::{Behaviour, BehaviourEvent};

async fn listen(swarm: &mut Swarm<Behaviour>) -> Result<Multiaddr, Box<dyn std::error::Error>> {
    swarm.listen_on("/ip4/127.0.0.1/tcp/0".parse()?)?;
    loop {
        if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            return Ok(address);
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Where A's outbound connection left from, as the transport saw it.
    let a_dialed = Arc::new(Mutex::new(None));
    let record = a_dialed.clone();
    let mut a = common::swarm(
        Arc::new(move |stream| {
            if stream.port_origin() != PortOrigin::Accepted {
                *record.lock().expect("not poisoned") =
                    Some((stream.local_addr(), stream.port_origin()));
            }
        }),
        |_| {},
    )?;
    let mut b = common::swarm(Arc::new(|_| {}), |_| {})?;
    let a_addr = listen(&mut a).await?;
    let b_addr = listen(&mut b).await?;
    println!("node A listens on {a_addr} (peer {})", a.local_peer_id());
    println!("node B listens on {b_addr} (peer {})", b.local_peer_id());
    println!("A dials B");
    a.dial(b_addr.clone())?;

    let mut observed_by_b = None;
    let mut observed_by_a = None;
    let mut seen_by_b = None;
    let (mut ping_a, mut ping_b) = (None, None);
    let deadline = tokio::time::sleep(Duration::from_secs(10));
    tokio::pin!(deadline);
    while observed_by_a.is_none()
        || observed_by_b.is_none()
        || seen_by_b.is_none()
        || ping_a.is_none()
        || ping_b.is_none()
    {
        tokio::select! {
            event = a.select_next_some() => match event {
                SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received { info, .. })) => {
                    observed_by_b = Some(info.observed_addr);
                }
                SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event { result: Ok(rtt), .. })) => {
                    ping_a = Some(rtt);
                }
                SwarmEvent::OutgoingConnectionError { error, .. } => return Err(error.into()),
                _ => {}
            },
            event = b.select_next_some() => match event {
                SwarmEvent::ConnectionEstablished { endpoint: ConnectedPoint::Listener { send_back_addr, .. }, .. } => {
                    seen_by_b = Some(send_back_addr);
                }
                SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received { info, .. })) => {
                    observed_by_a = Some(info.observed_addr);
                }
                SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event { result: Ok(rtt), .. })) => {
                    ping_b = Some(rtt);
                }
                _ => {}
            },
            _ = &mut deadline => return Err("no identify and ping within 10 s".into()),
        }
    }

    let (local, origin) = a_dialed
        .lock()
        .expect("not poisoned")
        .take()
        .ok_or("no dial recorded")?;
    let local = local?;
    let how = match origin {
        PortOrigin::Reused => "reused A's listening port".to_string(),
        other => format!("NOT reused, an ephemeral port ({other:?})"),
    };
    let observed_by_b = observed_by_b.expect("set above");
    let verdict = if observed_by_b == a_addr {
        "A's listening address: B can dial it back"
    } else {
        "not A's listening address"
    };
    println!("A's connection left from {local}: {how}");
    println!("B accepted it from {}", seen_by_b.expect("set above"));
    println!("B observed A at {observed_by_b}: {verdict}");
    println!("A observed B at {}", observed_by_a.expect("set above"));
    println!(
        "ping A -> B {:?}, B -> A {:?}",
        ping_a.expect("set above"),
        ping_b.expect("set above")
    );
    Ok(())
}
