//! The node `demo`, `node` and `tcp_and_ws` run: noise and yamux over this crate's transport (or
//! any other), identify and ping, and a hook that sees every TCP connection with where its
//! local port came from.

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
    let transport = Transport::new(Config::new());
    setup(&transport);
    with_transport(transport.map(move |stream, _| {
        on_connection(&stream);
        stream
    }))
}

/// A swarm with identify and ping over `transport`, secured with noise and multiplexed with
/// yamux.
pub(crate) fn with_transport<T>(
    transport: T,
) -> Result<Swarm<Behaviour>, Box<dyn std::error::Error>>
where
    T: libp2p::Transport + Send + Unpin + 'static,
    T::Output: futures::AsyncRead + futures::AsyncWrite + Unpin + Send + 'static,
    T::Error: Send + Sync + 'static,
    T::Dial: Send,
    T::ListenerUpgrade: Send,
{
    Ok(SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_other_transport(|key| {
            Ok(transport
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
