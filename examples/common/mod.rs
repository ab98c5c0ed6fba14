//! The node both `demo` and `node` run: this crate's transport with noise and yamux, identify
//! and ping, and a hook that sees every TCP connection with where its local port came from.

use std::{sync::Arc, time::Duration};

use libp2p::{
    Swarm, SwarmBuilder, Transport as _, core::upgrade::Version, identify, identity, noise, ping,
    swarm::NetworkBehaviour, yamux,
};
use libp2p_reuseport::{Config, TcpStream, Transport};

#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    pub(crate) identify: identify::Behaviour,
    pub(crate) ping: ping::Behaviour,
}

/// Called with every TCP connection the transport makes or accepts, before the upgrade.
pub(crate) type OnConnection = Arc<dyn Fn(&TcpStream) + Send + Sync>;

/// A swarm on this crate's transport; `setup` sees the transport before the swarm takes it (to
/// register its metrics, say).
pub(crate) fn swarm(
    on_connection: OnConnection,
    setup: impl FnOnce(&Transport),
) -> Result<Swarm<Behaviour>, Box<dyn std::error::Error>> {
    Ok(SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_other_transport(move |key| {
            let transport = Transport::new(Config::new());
            setup(&transport);
            Ok(transport
                .map(move |stream, _| {
                    on_connection(&stream);
                    stream
                })
                .upgrade(Version::V1Lazy)
                .authenticate(noise::Config::new(key)?)
                .multiplex(yamux::Config::default()))
        })?
        .with_behaviour(|key: &identity::Keypair| Behaviour {
            identify: identify::Behaviour::new(identify::Config::new(
                "/libp2p-reuseport-example/1".into(),
                key.public(),
            )),
            ping: ping::Behaviour::new(ping::Config::new().with_interval(Duration::from_secs(1))),
        })?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build())
}
