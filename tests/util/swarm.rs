//! libp2p swarms for the tests: identify and ping over this crate's transport or over
//! libp2p-tcp, and a loop that collects what a test waits for.

use std::time::Duration;

use futures::StreamExt;
use libp2p::{
    Multiaddr, Swarm, SwarmBuilder, Transport as _,
    core::upgrade::Version,
    identify, identity, noise, ping,
    swarm::{NetworkBehaviour, SwarmEvent},
    yamux,
};
use libp2p_reuseport::{Config, PortReuse, TcpStream, Transport};

use super::{ma, within};

#[derive(NetworkBehaviour)]
pub struct Behaviour {
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
}

fn behaviour(key: &identity::Keypair) -> Behaviour {
    Behaviour {
        identify: identify::Behaviour::new(identify::Config::new(
            "/ipfs/id/1.0.0".into(),
            key.public(),
        )),
        ping: ping::Behaviour::new(ping::Config::new().with_interval(Duration::from_millis(500))),
    }
}

/// A swarm on this crate's transport.
pub fn reuseport() -> Swarm<Behaviour> {
    SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_other_transport(|key| {
            Ok(Transport::new(Config::new())
                .upgrade(Version::V1Lazy)
                .authenticate(noise::Config::new(key)?)
                .multiplex(yamux::Config::default()))
        })
        .expect("transport")
        .with_behaviour(behaviour)
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(30)))
        .build()
}

/// A swarm on this crate's transport with `config`, that shows every connection to
/// `on_connection` before upgrading it; with the transport's port-reuse table.
pub fn reuseport_observed(
    config: Config,
    on_connection: impl Fn(&TcpStream) + Send + Sync + 'static,
) -> (Swarm<Behaviour>, PortReuse) {
    let mut table = None;
    let on_connection = std::sync::Arc::new(on_connection);
    let swarm = SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_other_transport(|key| {
            let transport = Transport::new(config);
            table = Some(transport.port_reuse());
            Ok(transport
                .map(move |stream, _| {
                    on_connection(&stream);
                    stream
                })
                .upgrade(Version::V1Lazy)
                .authenticate(noise::Config::new(key)?)
                .multiplex(yamux::Config::default()))
        })
        .expect("transport")
        .with_behaviour(behaviour)
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(30)))
        .build();
    (swarm, table.expect("the transport was built"))
}

/// A swarm on rust-libp2p's own TCP transport (libp2p-tcp).
pub fn libp2p_tcp() -> Swarm<Behaviour> {
    SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .expect("transport")
        .with_behaviour(behaviour)
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(30)))
        .build()
}

/// Listens on `addr` and returns the first listening address.
pub async fn listen_on(swarm: &mut Swarm<Behaviour>, addr: &str) -> Multiaddr {
    swarm.listen_on(ma(addr)).expect("listen_on");
    within("listen address", async {
        loop {
            if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
                return address;
            }
        }
    })
    .await
}
