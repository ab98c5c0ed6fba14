//! Two libp2p swarms over this transport: identify's observed address for the dialer carries the
//! dialer's listening port, and ping works both ways.

mod util;

use std::{net::SocketAddr, time::Duration};

use futures::StreamExt;
use libp2p::{
    Multiaddr, Swarm, SwarmBuilder, Transport as _,
    core::{ConnectedPoint, upgrade::Version},
    identify, identity, noise, ping,
    swarm::{NetworkBehaviour, SwarmEvent},
    yamux,
};
use libp2p_reuseport::{Config, Transport};
use util::*;

#[derive(NetworkBehaviour)]
struct Behaviour {
    identify: identify::Behaviour,
    ping: ping::Behaviour,
}

fn swarm() -> Swarm<Behaviour> {
    SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_other_transport(|key| {
            Ok(Transport::new(Config::new())
                .upgrade(Version::V1Lazy)
                .authenticate(noise::Config::new(key)?)
                .multiplex(yamux::Config::default()))
        })
        .unwrap()
        .with_behaviour(|key: &identity::Keypair| Behaviour {
            identify: identify::Behaviour::new(identify::Config::new(
                "/reuseport-test/1".into(),
                key.public(),
            )),
            ping: ping::Behaviour::new(
                ping::Config::new().with_interval(Duration::from_millis(200)),
            ),
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(30)))
        .build()
}

async fn listen_on(swarm: &mut Swarm<Behaviour>, addr: &str) -> Multiaddr {
    swarm.listen_on(ma(addr)).unwrap();
    within("listen address", async {
        loop {
            if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
                return address;
            }
        }
    })
    .await
}

#[derive(Default, Debug)]
struct Seen {
    observed: Option<Multiaddr>,
    send_back: Option<Multiaddr>,
    pinged: bool,
}

#[tokio::test]
async fn identify_observes_the_dialers_listening_port() {
    for listen in ["/ip4/127.0.0.1/tcp/0", "/ip6/::1/tcp/0"] {
        let mut a = swarm();
        let mut b = swarm();
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
