//! Two libp2p swarms over this transport: identify's observed address for the dialer carries the
//! dialer's listening port, and ping works both ways.

mod util;

use std::net::SocketAddr;

use futures::StreamExt;
use libp2p::{Multiaddr, core::ConnectedPoint, identify, ping, swarm::SwarmEvent};
use util::{
    swarm::{BehaviourEvent, listen_on, reuseport},
    *,
};

#[derive(Default, Debug)]
struct Seen {
    observed: Option<Multiaddr>,
    send_back: Option<Multiaddr>,
    pinged: bool,
}

#[tokio::test]
async fn identify_observes_the_dialers_listening_port() {
    if !port_sharing_here("identify_observes_the_dialers_listening_port") {
        return;
    }
    for listen in ["/ip4/127.0.0.1/tcp/0", "/ip6/::1/tcp/0"] {
        let mut a = reuseport();
        let mut b = reuseport();
        let a_addr = listen_on(&mut a, listen).await;
        let b_addr = listen_on(&mut b, listen).await;
        let a_port = socket_addr(&a_addr).port();
        a.dial(b_addr.clone()).unwrap();

        let (mut at_a, mut at_b) = (Seen::default(), Seen::default());
        within("identify and ping both ways", async {
            while at_a.observed.is_none() || at_b.send_back.is_none() || !at_a.pinged || !at_b.pinged {
                tokio::select! {
                    event = a.select_next_some() => match event {
                        SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received { info, .. })) => {
                            at_a.observed = Some(info.observed_addr);
                        }
                        SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event { result: Ok(_), .. })) => at_a.pinged = true,
                        SwarmEvent::OutgoingConnectionError { error, .. } => panic!("dial failed: {error}"),
                        _ => {}
                    },
                    event = b.select_next_some() => match event {
                        SwarmEvent::ConnectionEstablished { endpoint: ConnectedPoint::Listener { send_back_addr, .. }, .. } => {
                            at_b.send_back = Some(send_back_addr);
                        }
                        SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event { result: Ok(_), .. })) => at_b.pinged = true,
                        _ => {}
                    },
                }
            }
        })
        .await;
        let observed: SocketAddr = socket_addr(at_a.observed.as_ref().unwrap());
        let send_back: SocketAddr = socket_addr(at_b.send_back.as_ref().unwrap());
        assert_eq!(
            observed.port(),
            a_port,
            "{listen}: identify observed {observed}, listening on {a_addr}"
        );
        assert_eq!(
            send_back.port(),
            a_port,
            "{listen}: the listener saw {send_back}"
        );
        assert_eq!(observed, send_back);
    }
}
