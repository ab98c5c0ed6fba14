//! libp2p swarms for the tests: identify and ping over this crate's transport, its shared
//! listener set (TCP and WebSocket on one port), WebSocket over it, or libp2p-tcp; this crate's
//! `Identify` over any transport; and a loop that collects what a test waits for.

use std::time::Duration;

use futures::StreamExt;
use libp2p::{
    Multiaddr, Swarm, SwarmBuilder, Transport as _,
    core::upgrade::Version,
    identify, identity, noise, ping,
    swarm::{NetworkBehaviour, SwarmEvent},
    yamux,
};
use libp2p_reuseport::{Config, Identify, ReuseTable, SharedListeners, TcpStream, Transport};
use libp2p_websocket as websocket;

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

/// This crate's `Identify` (feature `identify`) alone.
#[derive(NetworkBehaviour)]
pub struct Identified {
    pub identify: Identify,
}

/// An [`Identified`] behaviour for the swarm with `key`.
pub fn identified(key: &identity::Keypair) -> Identified {
    Identified {
        identify: Identify::new(identify::Behaviour::new(identify::Config::new(
            "/ipfs/id/1.0.0".into(),
            key.public(),
        ))),
    }
}

/// A swarm with identify and ping over `transport` (made from the swarm's key), secured with
/// noise and multiplexed with yamux.
fn build<T>(transport: impl FnOnce() -> T) -> Swarm<Behaviour>
where
    T: libp2p::Transport + Send + Unpin + 'static,
    T::Output: futures::AsyncRead + futures::AsyncWrite + Unpin + Send + 'static,
    T::Error: Send + Sync + 'static,
    T::Dial: Send,
    T::ListenerUpgrade: Send,
{
    build_with(transport, behaviour)
}

/// A swarm with `behaviour` over `transport`, secured with noise and multiplexed with yamux.
pub fn build_with<T, B>(
    transport: impl FnOnce() -> T,
    behaviour: impl FnOnce(&identity::Keypair) -> B,
) -> Swarm<B>
where
    T: libp2p::Transport + Send + Unpin + 'static,
    T::Output: futures::AsyncRead + futures::AsyncWrite + Unpin + Send + 'static,
    T::Error: Send + Sync + 'static,
    T::Dial: Send,
    T::ListenerUpgrade: Send,
    B: NetworkBehaviour,
{
    SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_other_transport(|key| {
            Ok(transport()
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

/// A swarm on this crate's transport.
pub fn reuseport() -> Swarm<Behaviour> {
    build(|| Transport::new(Config::new()))
}

/// A swarm on the sides of `shared`: libp2p over TCP, over `/ws`, and over `/tls/ws` when given
/// a TLS server configuration. The WebSocket `Config` without a server certificate comes first:
/// a `Config` with one would also take `/ws` addresses.
pub fn shared(shared: &SharedListeners, tls: Option<websocket::tls::Config>) -> Swarm<Behaviour> {
    build(|| {
        let mut wss = websocket::Config::new(shared.websocket_tls());
        if let Some(tls) = tls {
            wss.set_tls_config(tls);
        }
        shared
            .tcp()
            .or_transport(websocket::Config::new(shared.websocket()))
            .or_transport(wss)
    })
}

/// A swarm that speaks libp2p over WebSocket only, over this crate's transport, trusting the
/// certificates of `tls` for `/tls/ws` if given.
pub fn websocket(tls: Option<websocket::tls::Config>) -> Swarm<Behaviour> {
    build(|| {
        let mut ws = websocket::Config::new(Transport::new(Config::new()));
        if let Some(tls) = tls {
            ws.set_tls_config(tls);
        }
        ws
    })
}

/// A self-signed certificate for 127.0.0.1 and ::1: the server's TLS configuration, and a
/// client's that trusts it.
pub fn tls_pair() -> (websocket::tls::Config, websocket::tls::Config) {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "::1".into()])
        .expect("certificate");
    let cert = websocket::tls::Certificate::new(certified.cert.der().to_vec());
    let key = websocket::tls::PrivateKey::new(certified.key_pair.serialize_der());
    let server = websocket::tls::Config::new(key, vec![cert.clone()]).expect("server config");
    let mut client = websocket::tls::Config::builder();
    client.add_trust(&cert).expect("trust");
    (server, client.finish())
}

/// A swarm on this crate's transport with `config`, that shows every connection to
/// `on_connection` before upgrading it; with the transport's port-reuse table.
pub fn reuseport_observed(
    config: Config,
    on_connection: impl Fn(&TcpStream) + Send + Sync + 'static,
) -> (Swarm<Behaviour>, ReuseTable) {
    let transport = Transport::new(config);
    let table = transport.reuse_table();
    let on_connection = std::sync::Arc::new(on_connection);
    let swarm = build(|| {
        transport.map(move |stream, _| {
            on_connection(&stream);
            stream
        })
    });
    (swarm, table)
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
pub async fn listen_on<B: NetworkBehaviour>(swarm: &mut Swarm<B>, addr: &str) -> Multiaddr {
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
