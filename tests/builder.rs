//! `tcp` and `upgrade`, the constructors for `SwarmBuilder::with_other_transport`: a swarm built
//! with them connects to swarms built with libp2p's own `with_tcp` both ways, negotiates the
//! security the two offers have in common (the dialer's preference first), and its dials leave
//! from its listening port; with QUIC built first, and over a shared TCP and WebSocket port.

// libp2p's TLS and QUIC are dev-dependencies on Linux only: they build aws-lc's C code, which
// the cross-platform check cannot build for the other targets (see Cargo.toml).
#![cfg(target_os = "linux")]

mod util;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use futures::StreamExt;
use libp2p::{
    Multiaddr, PeerId, Swarm, SwarmBuilder, Transport as _,
    core::{
        ConnectedPoint, UpgradeInfo,
        upgrade::{InboundConnectionUpgrade, OutboundConnectionUpgrade},
    },
    identity::Keypair,
    multiaddr::Protocol,
    noise, ping,
    swarm::SwarmEvent,
    tls, yamux,
};
use libp2p_reuseport::{Config, SharedListeners, Transport};
use util::{ma, socket_addr, within};

const FAMILIES: [&str; 2] = ["/ip4/127.0.0.1/tcp/0", "/ip6/::1/tcp/0"];

fn ping() -> ping::Behaviour {
    ping::Behaviour::new(ping::Config::new().with_interval(Duration::from_millis(200)))
}

fn idle(config: libp2p::swarm::Config) -> libp2p::swarm::Config {
    config.with_idle_connection_timeout(Duration::from_secs(30))
}

/// A swarm built with libp2p's own `with_tcp` (libp2p-tcp) and `security`.
macro_rules! with_tcp {
    ($security:expr) => {
        SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_tcp(
                libp2p::tcp::Config::default(),
                $security,
                yamux::Config::default,
            )
            .expect("with_tcp")
            .with_behaviour(|_| ping())
            .expect("behaviour")
            .with_swarm_config(idle)
            .build()
    };
}

/// A swarm built with this crate's `tcp` in place of `with_tcp`, the migration's one line.
macro_rules! reuseport_tcp {
    ($security:expr) => {
        SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_other_transport(libp2p_reuseport::tcp(
                Config::new(),
                $security,
                yamux::Config::default,
            ))
            .expect("tcp")
            .with_behaviour(|_| ping())
            .expect("behaviour")
            .with_swarm_config(idle)
            .build()
    };
}

/// Listens on `addr` and returns the first listening address.
async fn listen(swarm: &mut Swarm<ping::Behaviour>, addr: &str) -> Multiaddr {
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

/// What one side saw of its first connection: its endpoint, and whether a ping over it
/// succeeded (the muxer's substreams work).
#[derive(Debug, Default)]
struct Seen {
    endpoint: Option<ConnectedPoint>,
    pinged: bool,
}

impl Seen {
    fn done(&self) -> bool {
        self.endpoint.is_some() && self.pinged
    }

    /// Records `event` if it is about `peer`; a failed connection fails the test.
    fn record(&mut self, who: &str, peer: PeerId, event: SwarmEvent<ping::Event>) {
        match event {
            SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, ..
            } if peer_id == peer => {
                self.endpoint.get_or_insert(endpoint);
            }
            SwarmEvent::Behaviour(ping::Event {
                peer: p,
                result: Ok(_),
                ..
            }) if p == peer => self.pinged = true,
            SwarmEvent::OutgoingConnectionError { error, .. } => {
                panic!("{who}: dial failed: {error}")
            }
            SwarmEvent::IncomingConnectionError { error, .. } => {
                panic!("{who}: accept failed: {error}")
            }
            _ => {}
        }
    }
}

/// Dials `to`'s `addr` from `from` and runs both until each has the connection and a ping over
/// it: (what `from` saw, what `to` saw).
async fn connect(
    from: &mut Swarm<ping::Behaviour>,
    to: &mut Swarm<ping::Behaviour>,
    addr: Multiaddr,
) -> (ConnectedPoint, ConnectedPoint) {
    from.dial(addr.clone()).expect("dial");
    let (from_id, to_id) = (*from.local_peer_id(), *to.local_peer_id());
    let (mut at_from, mut at_to) = (Seen::default(), Seen::default());
    within(&format!("connect to {addr} and ping both ways"), async {
        while !at_from.done() || !at_to.done() {
            tokio::select! {
                event = from.select_next_some() => at_from.record("dialer", to_id, event),
                event = to.select_next_some() => at_to.record("listener", from_id, event),
            }
        }
    })
    .await;
    (at_from.endpoint.unwrap(), at_to.endpoint.unwrap())
}

/// The remote address a listener saw: where the dialer's connection left from.
fn send_back(endpoint: &ConnectedPoint) -> Multiaddr {
    match endpoint {
        ConnectedPoint::Listener { send_back_addr, .. } => send_back_addr.clone(),
        other => panic!("not the listener's side: {other:?}"),
    }
}

#[tokio::test]
async fn tcp_and_with_tcp_connect_both_ways_from_the_listening_port() {
    for family in FAMILIES {
        let mut ours = reuseport_tcp!((tls::Config::new, noise::Config::new));
        let mut theirs = with_tcp!((tls::Config::new, noise::Config::new));
        let our_addr = listen(&mut ours, family).await;
        let their_addr = listen(&mut theirs, family).await;

        let (at_ours, at_theirs) = connect(&mut ours, &mut theirs, their_addr.clone()).await;
        assert_eq!(
            at_ours,
            ConnectedPoint::Dialer {
                address: their_addr.clone(),
                role_override: libp2p::core::Endpoint::Dialer,
                port_use: libp2p::core::transport::PortUse::Reuse,
            }
        );
        assert_eq!(
            send_back(&at_theirs),
            our_addr,
            "{family}: our dial left from our listening address"
        );

        // The other way, to a fresh swarm of ours: libp2p-tcp dials, this crate accepts.
        drop(ours);
        let mut ours = reuseport_tcp!((tls::Config::new, noise::Config::new));
        let our_addr = listen(&mut ours, family).await;
        let (at_theirs, at_ours) = connect(&mut theirs, &mut ours, our_addr.clone()).await;
        assert!(
            matches!(&at_theirs, ConnectedPoint::Dialer { address, .. } if *address == our_addr),
            "{at_theirs:?}"
        );
        match at_ours {
            ConnectedPoint::Listener { local_addr, .. } => assert_eq!(local_addr, our_addr),
            other => panic!("{family}: accepted as {other:?}"),
        }
    }
}

/// A security upgrade that counts the connections it secured: `upgrade_inbound` and
/// `upgrade_outbound` run only for the protocol multistream-select picked.
#[derive(Clone)]
struct Counted<U> {
    inner: U,
    runs: Arc<AtomicUsize>,
}

/// `constructor`, its upgrades counted in `runs`.
fn counted<U, E>(
    constructor: fn(&Keypair) -> Result<U, E>,
    runs: &Arc<AtomicUsize>,
) -> impl FnOnce(&Keypair) -> Result<Counted<U>, E> {
    let runs = runs.clone();
    move |key| {
        Ok(Counted {
            inner: constructor(key)?,
            runs,
        })
    }
}

impl<U: UpgradeInfo> UpgradeInfo for Counted<U> {
    type Info = U::Info;
    type InfoIter = U::InfoIter;

    fn protocol_info(&self) -> Self::InfoIter {
        self.inner.protocol_info()
    }
}

impl<C, U: InboundConnectionUpgrade<C>> InboundConnectionUpgrade<C> for Counted<U> {
    type Output = U::Output;
    type Error = U::Error;
    type Future = U::Future;

    fn upgrade_inbound(self, socket: C, info: Self::Info) -> Self::Future {
        self.runs.fetch_add(1, Ordering::SeqCst);
        self.inner.upgrade_inbound(socket, info)
    }
}

impl<C, U: OutboundConnectionUpgrade<C>> OutboundConnectionUpgrade<C> for Counted<U> {
    type Output = U::Output;
    type Error = U::Error;
    type Future = U::Future;

    fn upgrade_outbound(self, socket: C, info: Self::Info) -> Self::Future {
        self.runs.fetch_add(1, Ordering::SeqCst);
        self.inner.upgrade_outbound(socket, info)
    }
}

fn peer_tls_noise() -> Swarm<ping::Behaviour> {
    with_tcp!((tls::Config::new, noise::Config::new))
}

fn peer_noise() -> Swarm<ping::Behaviour> {
    with_tcp!(noise::Config::new)
}

fn peer_tls() -> Swarm<ping::Behaviour> {
    with_tcp!(tls::Config::new)
}

fn peer_noise_tls() -> Swarm<ping::Behaviour> {
    with_tcp!((noise::Config::new, tls::Config::new))
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Secured {
    Tls,
    Noise,
}

/// Our swarm offers (TLS, Noise); which one secures the connection with each `with_tcp` peer,
/// whichever side dials. multistream-select takes the dialer's first protocol the listener
/// has: our preference when we dial, the peer's when it dials.
#[tokio::test]
async fn the_pair_negotiates_tls_when_both_prefer_it_noise_when_a_peer_has_only_noise() {
    type Peer = fn() -> Swarm<ping::Behaviour>;
    let table: [(&str, Peer, bool, Secured); 8] = [
        ("(tls, noise)", peer_tls_noise, true, Secured::Tls),
        ("(tls, noise)", peer_tls_noise, false, Secured::Tls),
        ("noise", peer_noise, true, Secured::Noise),
        ("noise", peer_noise, false, Secured::Noise),
        ("tls", peer_tls, true, Secured::Tls),
        ("tls", peer_tls, false, Secured::Tls),
        ("(noise, tls)", peer_noise_tls, true, Secured::Tls),
        ("(noise, tls)", peer_noise_tls, false, Secured::Noise),
    ];
    for (peer_offers, peer, we_dial, expected) in table {
        let case = format!("peer offers {peer_offers}, we dial: {we_dial}");
        let (tls_runs, noise_runs) = (Arc::default(), Arc::default());
        let mut ours = reuseport_tcp!((
            counted(tls::Config::new, &tls_runs),
            counted(noise::Config::new, &noise_runs)
        ));
        let mut theirs = peer();
        let our_addr = listen(&mut ours, "/ip4/127.0.0.1/tcp/0").await;
        let their_addr = listen(&mut theirs, "/ip4/127.0.0.1/tcp/0").await;
        if we_dial {
            let (_, at_theirs) = connect(&mut ours, &mut theirs, their_addr).await;
            assert_eq!(send_back(&at_theirs), our_addr, "{case}");
        } else {
            connect(&mut theirs, &mut ours, our_addr).await;
        }
        let runs = (
            tls_runs.load(Ordering::SeqCst),
            noise_runs.load(Ordering::SeqCst),
        );
        let expected_runs = match expected {
            Secured::Tls => (1, 0),
            Secured::Noise => (0, 1),
        };
        assert_eq!(runs, expected_runs, "{case}: (TLS, Noise) upgrades run");
    }
}

/// `with_quic` before `with_other_transport`: the swarm listens on QUIC and on TCP, and its TCP
/// dial to a `with_tcp` peer leaves from its TCP listening port.
#[tokio::test]
async fn quic_built_first_keeps_tcp_dials_on_the_listening_port() {
    let mut ours = SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_quic()
        .with_other_transport(libp2p_reuseport::tcp(
            Config::new(),
            (tls::Config::new, noise::Config::new),
            yamux::Config::default,
        ))
        .expect("tcp")
        .with_behaviour(|_| ping())
        .expect("behaviour")
        .with_swarm_config(idle)
        .build();
    let quic_addr = listen(&mut ours, "/ip4/127.0.0.1/udp/0/quic-v1").await;
    assert!(
        quic_addr.iter().any(|p| p == Protocol::QuicV1),
        "{quic_addr}"
    );
    let our_addr = listen(&mut ours, "/ip4/127.0.0.1/tcp/0").await;
    let mut theirs = peer_tls_noise();
    let their_addr = listen(&mut theirs, "/ip4/127.0.0.1/tcp/0").await;
    let (_, at_theirs) = connect(&mut ours, &mut theirs, their_addr).await;
    assert_eq!(send_back(&at_theirs), our_addr);
}

/// `upgrade` over the sides of a shared set: one port for `/tcp` and `/ws`; a `with_tcp` peer
/// and a WebSocket peer both connect to it, and its dial to the `with_tcp` peer leaves from it.
#[tokio::test]
async fn upgrade_serves_a_shared_tcp_and_websocket_port() {
    let shared = SharedListeners::new(Config::new());
    let mut ours = SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_other_transport(libp2p_reuseport::upgrade(
            shared
                .tcp()
                .or_transport(libp2p_websocket::Config::new(shared.websocket())),
            (tls::Config::new, noise::Config::new),
            yamux::Config::default,
        ))
        .expect("upgrade")
        .with_behaviour(|_| ping())
        .expect("behaviour")
        .with_swarm_config(idle)
        .build();
    let tcp_addr = listen(&mut ours, "/ip4/127.0.0.1/tcp/0").await;
    let port = socket_addr(&tcp_addr).port();
    let ws_addr = listen(&mut ours, &format!("/ip4/127.0.0.1/tcp/{port}/ws")).await;
    assert_eq!(ws_addr, tcp_addr.clone().with(Protocol::Ws("/".into())));

    let mut tcp_peer = peer_tls_noise();
    let (_, at_ours) = connect(&mut tcp_peer, &mut ours, tcp_addr.clone()).await;
    assert!(
        matches!(&at_ours, ConnectedPoint::Listener { local_addr, .. } if *local_addr == tcp_addr),
        "{at_ours:?}"
    );

    let mut ws_peer = SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_other_transport(libp2p_reuseport::upgrade(
            libp2p_websocket::Config::new(Transport::new(Config::new())),
            noise::Config::new,
            yamux::Config::default,
        ))
        .expect("upgrade")
        .with_behaviour(|_| ping())
        .expect("behaviour")
        .with_swarm_config(idle)
        .build();
    let (_, at_ours) = connect(&mut ws_peer, &mut ours, ws_addr.clone()).await;
    assert!(
        matches!(&at_ours, ConnectedPoint::Listener { local_addr, .. } if *local_addr == ws_addr),
        "{at_ours:?}"
    );

    let mut theirs = peer_tls_noise();
    let their_addr = listen(&mut theirs, "/ip4/127.0.0.1/tcp/0").await;
    let (_, at_theirs) = connect(&mut ours, &mut theirs, their_addr).await;
    assert_eq!(send_back(&at_theirs), tcp_addr);
}
