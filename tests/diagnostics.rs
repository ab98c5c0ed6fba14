//! Misconfigurations caught and reported at `warn`, with the fix in the message, on real swarms
//! and listeners: another TCP transport taking the listening addresses (`with_tcp`), a libp2p-tcp
//! listener joining our listening port (`with_websocket`), port reuse off, a dial before
//! `listen_on`; and no warning for swarms built as documented.
//!
//! The checks look at every transport of this crate in the process, so the tests of this file
//! run one at a time ([`serial`]), each on a current-thread runtime of its own, whose events
//! [`Logs`] captures.

mod util;

use std::{
    future::Future,
    sync::{Mutex, PoisonError},
    time::Duration,
};

use futures::StreamExt;
use libp2p::{
    Multiaddr, Swarm, SwarmBuilder, Transport as _, core::upgrade::Version, identify, noise,
    swarm::SwarmEvent, yamux,
};
use libp2p_reuseport::{Config, SharedListeners, Transport};
use libp2p_websocket as websocket;
use util::{
    logs::Logs,
    swarm::{Identified, IdentifiedEvent, build_with, identified, listen_on},
    *,
};

/// Runs `test` alone among this file's tests, on a current-thread runtime, and returns what this
/// crate logged at `warn` meanwhile.
fn serial<F: Future<Output = ()>>(test: impl FnOnce() -> F) -> Logs {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let (logs, _capturing) = Logs::capture();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(test());
    logs
}

fn reuseport(config: Config) -> Swarm<Identified> {
    build_with(|| Transport::new(config), identified)
}

/// Drives `swarms` for `period`.
async fn run_for(swarms: &mut [&mut Swarm<Identified>], period: Duration) {
    let _ = tokio::time::timeout(period, async {
        loop {
            futures::future::select_all(swarms.iter_mut().map(|s| s.select_next_some())).await;
        }
    })
    .await;
}

/// Drives both swarms until `b` has identified `a`.
async fn identify(a: &mut Swarm<Identified>, b: &mut Swarm<Identified>) {
    within("identify", async {
        loop {
            tokio::select! {
                _ = a.select_next_some() => {}
                event = b.select_next_some() => {
                    if let SwarmEvent::Behaviour(IdentifiedEvent::Identify(
                        identify::Event::Received { .. },
                    )) = event
                    {
                        return;
                    }
                }
            }
        }
    })
    .await;
}

#[test]
fn with_tcp_taking_the_listening_address_is_reported() {
    let mut listening = None;
    let logs = serial(|| async {
        let mut swarm = SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_tcp(
                libp2p::tcp::Config::default(),
                noise::Config::new,
                yamux::Config::default,
            )
            .unwrap()
            .with_other_transport(|key| {
                Ok(Transport::new(Config::new())
                    .upgrade(Version::V1Lazy)
                    .authenticate(noise::Config::new(key)?)
                    .multiplex(yamux::Config::default()))
            })
            .unwrap()
            .with_behaviour(identified)
            .unwrap()
            .build();
        listening = Some(listen_on(&mut swarm, "/ip4/127.0.0.1/tcp/0").await);
    });
    let addr = listening.unwrap();
    let warnings = logs.containing(&format!(
        "the swarm listens on {addr} but no libp2p-reuseport transport does: another TCP \
         transport took the address (SwarmBuilder::with_tcp before with_other_transport?)"
    ));
    assert_eq!(warnings.len(), 1, "{:?}", logs.lines());
    assert!(warnings[0].contains("WARN"), "{warnings:?}");
    assert!(warnings[0].ends_with("remove with_tcp"), "{warnings:?}");
}

// The check reads /proc/net/tcp, which only Linux has (see src/diagnostics/proc_net.rs).
#[cfg(target_os = "linux")]
#[test]
fn websocket_listener_joining_our_port_is_reported() {
    let mut port = 0;
    let logs = serial(|| async {
        // What SwarmBuilder::with_websocket builds: libp2p-websocket over its own libp2p-tcp,
        // asked before the transports given earlier.
        let mut swarm = build_with(
            || {
                websocket::Config::new(libp2p::tcp::tokio::Transport::new(
                    libp2p::tcp::Config::default(),
                ))
                .or_transport(Transport::new(Config::new()))
            },
            identified,
        );
        let tcp = listen_on(&mut swarm, "/ip4/127.0.0.1/tcp/0").await;
        port = socket_addr(&tcp).port();
        // libp2p-tcp binds the same port with SO_REUSEPORT, and the kernel lets it.
        let ws = listen_on(&mut swarm, &format!("/ip4/127.0.0.1/tcp/{port}/ws")).await;
        assert_eq!(ws, ma(&format!("/ip4/127.0.0.1/tcp/{port}/ws")));
    });
    let warnings = logs.containing(&format!(
        "1 listening socket(s) outside libp2p-reuseport share its listening port \
         127.0.0.1:{port} through SO_REUSEPORT, and Linux splits the incoming connections \
         between them"
    ));
    assert_eq!(warnings.len(), 1, "{:?}", logs.lines());
    assert!(
        warnings[0].ends_with(
            "serve /ws through SharedListeners::websocket() instead of \
             SwarmBuilder::with_websocket, or listen on another port"
        ),
        "{warnings:?}"
    );
    assert_eq!(logs.lines().len(), 1, "{:?}", logs.lines());
}

// As above: /proc/net/tcp.
#[cfg(target_os = "linux")]
#[test]
fn our_listener_joining_a_shared_port_is_reported() {
    let mut port = 0;
    let logs = serial(|| async {
        use libp2p::core::{Transport as _, transport::ListenerId};
        let mut ours = Transport::new(Config::new());
        ours.listen_on(ListenerId::next(), ma("/ip4/127.0.0.1/tcp/0"))
            .unwrap();
        port = ours.reuse_table().listen_addrs()[0].port();
        let mut theirs = libp2p::tcp::tokio::Transport::new(libp2p::tcp::Config::default());
        theirs
            .listen_on(
                ListenerId::next(),
                ma(&format!("/ip4/127.0.0.1/tcp/{port}")),
            )
            .unwrap();
        // Our second listener on the port (no Identify in sight) finds theirs.
        ours.listen_on(
            ListenerId::next(),
            ma(&format!("/ip4/127.0.0.1/tcp/{port}")),
        )
        .unwrap();
    });
    let warnings = logs.containing(&format!(
        "1 listening socket(s) outside libp2p-reuseport share its listening port 127.0.0.1:{port}"
    ));
    assert_eq!(warnings.len(), 1, "{:?}", logs.lines());
}

#[test]
fn port_reuse_off_is_reported() {
    let mut listening = None;
    let logs = serial(|| async {
        let mut swarm = reuseport(Config::new().port_reuse(false));
        listening = Some(listen_on(&mut swarm, "/ip4/127.0.0.1/tcp/0").await);
    });
    let addr = listening.unwrap();
    let warnings = logs.containing(&format!(
        "libp2p-reuseport listens on {addr} with port reuse off (Config::port_reuse(false), \
         LIBP2P_TCP_REUSEPORT=false, or a platform without SO_REUSEPORT)"
    ));
    assert_eq!(warnings.len(), 1, "{:?}", logs.lines());
    assert!(warnings[0].ends_with("turn port reuse on"), "{warnings:?}");
}

#[test]
fn dial_before_listen_is_reported_once() {
    let mut remote: Option<Multiaddr> = None;
    let logs = serial(|| async {
        // The remote on libp2p-tcp: no listener of this crate in the process.
        let mut b = build_with(
            || libp2p::tcp::tokio::Transport::new(libp2p::tcp::Config::default()),
            identified,
        );
        let b_addr = listen_on(&mut b, "/ip4/127.0.0.1/tcp/0").await;
        let mut a = reuseport(Config::new());
        a.dial(b_addr.clone()).unwrap();
        identify(&mut b, &mut a).await;
        // A second connection: no second warning.
        a.dial(
            libp2p::swarm::dial_opts::DialOpts::unknown_peer_id()
                .address(b_addr.clone())
                .build(),
        )
        .unwrap();
        run_for(&mut [&mut a, &mut b], Duration::from_millis(500)).await;
        remote = Some(b_addr);
    });
    let warnings = logs.containing(&format!(
        "a connection to {} was dialed with port reuse while no libp2p-reuseport transport \
         listened, so it left from an ephemeral port",
        remote.unwrap()
    ));
    assert_eq!(warnings.len(), 1, "{:?}", logs.lines());
    assert!(
        warnings[0]
            .ends_with("call listen_on before dialing (relays, bootstrap peers) for hole punching"),
        "{warnings:?}"
    );
    assert_eq!(logs.lines().len(), 1, "{:?}", logs.lines());
}

#[test]
fn swarms_built_as_documented_log_no_warning() {
    let logs = serial(|| async {
        // This crate's transport alone, both families, a wildcard listener, both dialing.
        let mut a = reuseport(Config::new());
        let mut b = reuseport(Config::new());
        listen_on(&mut a, "/ip4/0.0.0.0/tcp/0").await;
        listen_on(&mut a, "/ip6/::1/tcp/0").await;
        let b_addr = listen_on(&mut b, "/ip4/127.0.0.1/tcp/0").await;
        a.dial(b_addr).unwrap();
        identify(&mut b, &mut a).await;
        run_for(&mut [&mut a, &mut b], Duration::from_millis(300)).await;

        // TCP and WebSocket on one port through SharedListeners.
        let shared = SharedListeners::new(Config::new());
        let mut c = build_with(
            || {
                shared
                    .tcp()
                    .or_transport(websocket::Config::new(shared.websocket()))
            },
            identified,
        );
        let tcp = listen_on(&mut c, "/ip4/127.0.0.1/tcp/0").await;
        let port = socket_addr(&tcp).port();
        listen_on(&mut c, &format!("/ip4/127.0.0.1/tcp/{port}/ws")).await;
        run_for(&mut [&mut c], Duration::from_millis(300)).await;
    });
    assert!(logs.lines().is_empty(), "{:?}", logs.lines());
}
