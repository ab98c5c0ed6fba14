//! One socket for TCP and WebSocket: the sides of a `SharedListeners` set, their own listener
//! events, the routing by first bytes, joining and conflicts, dials from the shared port (and
//! the bound on their held closing sockets), and freeing the port. Refusals, the deadline, the bound and load are in `shared_refusals.rs`.

mod util;

use std::time::Duration;

use libp2p_core::{
    Transport as _,
    transport::{ListenerId, PortUse, TransportError},
};
use libp2p_reuseport::{Config, PortOrigin, SharedStats};
use util::{shared::*, *};

const FAMILIES: [&str; 2] = ["/ip4/127.0.0.1/tcp/0", "/ip6/::1/tcp/0"];

#[tokio::test]
async fn one_socket_routes_each_kind_to_its_side() {
    for family in FAMILIES {
        let (shared, mut tcp, mut ws) = set(Config::new());
        let (tcp_id, addr) = listen_side(&mut tcp, family).await;
        let (ws_id, ws_addr) = listen_side(&mut ws, family).await;
        assert_ne!(tcp_id, ws_id);
        assert_eq!(
            ws_addr, addr,
            "{family}: port 0 on the second side joins the first's socket"
        );
        assert_eq!(
            shared.reuse_table().listen_addrs(),
            vec![addr],
            "one socket"
        );

        let _m = client(addr, MULTISTREAM).await;
        let (id, mut stream, local, _) = incoming(&mut tcp).await;
        assert_eq!((id, local), (tcp_id, addr));
        reads(&mut stream, MULTISTREAM).await;

        let _h = client(addr, HTTP).await;
        let (id, mut stream, local, _) = incoming(&mut ws).await;
        assert_eq!((id, local), (ws_id, addr));
        reads(&mut stream, HTTP).await;

        quiet(&mut tcp, Duration::from_millis(50)).await;
        assert_eq!(shared.stats(), stats(1, 1, 0), "{family}");
        println!("{family}: {addr} routed multistream to {tcp_id}, http to {ws_id}");
    }
}

#[tokio::test]
async fn explicit_ports_join_and_conflicts_are_refused() {
    let (shared, mut tcp, mut ws) = set(Config::new());
    let (_, addr) = listen_side(&mut tcp, "/ip4/127.0.0.1/tcp/0").await;
    let explicit = format!("/ip4/127.0.0.1/tcp/{}", addr.port());
    let (_, joined) = listen_side(&mut ws, &explicit).await;
    assert_eq!(joined, addr);

    // The same side twice on one socket.
    match tcp.listen_on(ListenerId::next(), ma(&explicit)) {
        Err(TransportError::Other(e)) => {
            assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse);
            let text = e.to_string();
            assert!(
                text.contains(&addr.to_string()) && text.contains("multistream"),
                "{text}"
            );
        }
        other => panic!("expected AddrInUse, got {other:?}"),
    }
    // A wildcard socket and a specific address on its port would split its connections.
    let (_, wild) = listen_side(&mut tcp, "/ip4/0.0.0.0/tcp/0").await;
    match ws.listen_on(
        ListenerId::next(),
        ma(&format!("/ip4/127.0.0.1/tcp/{}", wild.port())),
    ) {
        Err(TransportError::Other(e)) => {
            assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse);
            assert!(
                e.to_string()
                    .contains("overlaps the shared socket on 0.0.0.0"),
                "{e}"
            );
        }
        other => panic!("expected AddrInUse, got {other:?}"),
    }
    // A side takes only plain TCP addresses; /ws is for the websocket crate to strip.
    for bad in [
        "/ip4/127.0.0.1/tcp/0/ws",
        "/ip4/127.0.0.1/udp/0",
        "/dns4/localhost/tcp/1",
    ] {
        assert!(
            matches!(ws.listen_on(ListenerId::next(), ma(bad)), Err(TransportError::MultiaddrNotSupported(a)) if a == ma(bad)),
            "{bad}"
        );
    }
    assert_eq!(
        shared.reuse_table().listen_addrs().len(),
        2,
        "no socket left by a refusal"
    );
}

#[tokio::test]
async fn wildcard_sockets_report_addresses_to_each_side() {
    for (family, loopback) in [
        ("/ip4/0.0.0.0/tcp/0", "127.0.0.1"),
        ("/ip6/::/tcp/0", "::1"),
    ] {
        let (shared, mut tcp, mut ws) = set(Config::new());
        let (tcp_id, tcp_addr) = listen_side(&mut tcp, family).await;
        let (ws_id, ws_addr) = listen_side(&mut ws, family).await;
        assert_ne!(tcp_id, ws_id);
        assert_eq!(tcp_addr.ip().to_string(), loopback);
        assert_eq!(
            tcp_addr, ws_addr,
            "each side reports the socket's loopback address"
        );
        assert_eq!(shared.reuse_table().listen_addrs().len(), 1);
        assert!(shared.reuse_table().listen_addrs()[0].ip().is_unspecified());
    }
}

#[tokio::test]
async fn removing_one_side_keeps_the_other_and_the_last_frees_the_port() {
    let (shared, mut tcp, mut ws) = set(Config::new());
    let (tcp_id, addr) = listen_side(&mut tcp, "/ip4/127.0.0.1/tcp/0").await;
    let (ws_id, _) = listen_side(&mut ws, "/ip4/127.0.0.1/tcp/0").await;

    assert!(tcp.remove_listener(tcp_id));
    assert!(!tcp.remove_listener(tcp_id), "already removed");
    assert_eq!(closed(&mut tcp).await, tcp_id);
    // The WebSocket side still gets its connections; multistream has no taker now.
    let _h = client(addr, HTTP).await;
    let (id, mut stream, _, _) = incoming(&mut ws).await;
    assert_eq!(id, ws_id);
    reads(&mut stream, HTTP).await;
    let mut m = client(addr, MULTISTREAM).await;
    let driving = tokio::spawn(async move {
        quiet(&mut ws, Duration::from_millis(300)).await;
        ws
    });
    closed_by_server(&mut m).await;
    let mut ws = driving.await.unwrap();
    let mut expected = stats(0, 1, 0);
    expected.unclaimed = 1;
    assert_eq!(shared.stats(), expected);
    assert_eq!(
        shared.reuse_table().listen_addrs(),
        vec![addr],
        "still listening"
    );

    assert!(ws.remove_listener(ws_id));
    assert_eq!(closed(&mut ws).await, ws_id);
    assert!(shared.reuse_table().listen_addrs().is_empty());
    // Free for a socket without SO_REUSEPORT: nothing of ours holds the port.
    let plain = std::net::TcpListener::bind(addr);
    assert!(plain.is_ok(), "port {addr} still held: {plain:?}");
    println!("both sides removed: {addr} bound again by a plain socket");
}

#[tokio::test]
async fn both_sides_dial_from_the_shared_port() {
    if !port_sharing_here("both_sides_dial_from_the_shared_port") {
        return;
    }
    let (shared, mut tcp, mut ws) = set(Config::new());
    let (_, addr) = listen_side(&mut tcp, "/ip4/127.0.0.1/tcp/0").await;
    listen_side(&mut ws, "/ip4/127.0.0.1/tcp/0").await;
    let mut remotes = Vec::new();
    for _ in 0..2 {
        let mut remote = transport();
        let (_, remote_addr) = listen(&mut remote, "/ip4/127.0.0.1/tcp/0").await;
        remotes.push((remote, remote_addr));
    }
    let mut open = Vec::new();
    for (side, (remote, remote_addr)) in [&mut tcp, &mut ws].into_iter().zip(&mut remotes) {
        let dial = side
            .dial(to_multiaddr(*remote_addr), opts(PortUse::Reuse))
            .unwrap();
        let (dialed, (_, _, send_back)) = tokio::join!(within("dial", dial), accept(remote));
        let dialed = dialed.unwrap();
        assert_eq!(dialed.port_origin(), PortOrigin::Reused);
        assert_eq!(
            send_back, addr,
            "the remote sees the shared listening address"
        );
        open.push(dialed);
    }
    assert_eq!(shared.reuse_table().dialed_connections(), 2);
}

#[tokio::test]
async fn the_sides_share_the_bound_on_held_closing_sockets() {
    if !port_sharing_here("the_sides_share_the_bound_on_held_closing_sockets") {
        return;
    }
    let (shared, mut tcp, mut ws) = set(Config::new()
        .max_closing_sockets(1)
        .hold_closing_sockets(true));
    #[cfg(feature = "metrics")] // The gauges exist only with the feature.
    let mut registry = prometheus_client::registry::Registry::default();
    #[cfg(feature = "metrics")] // As above.
    shared.register_metrics(&mut registry);
    listen_side(&mut tcp, "/ip4/127.0.0.1/tcp/0").await;
    listen_side(&mut ws, "/ip4/127.0.0.1/tcp/0").await;
    let mut remotes = Vec::new();
    for _ in 0..2 {
        let mut remote = transport();
        let (_, remote_addr) = listen(&mut remote, "/ip4/127.0.0.1/tcp/0").await;
        remotes.push((remote, remote_addr));
    }
    // One dial from each side; the remotes keep their ends open.
    let mut kept = Vec::new();
    for (side, (remote, remote_addr)) in [&mut tcp, &mut ws].into_iter().zip(&mut remotes) {
        let dial = side
            .dial(to_multiaddr(*remote_addr), opts(PortUse::Reuse))
            .unwrap();
        let (dialed, (accepted, _, _)) = tokio::join!(within("dial", dial), accept(remote));
        let dialed = dialed.unwrap();
        assert_eq!(dialed.port_origin(), PortOrigin::Reused);
        drop(dialed);
        kept.push(accepted);
    }
    let table = shared.reuse_table();
    assert_eq!(
        (table.closing_sockets(), table.closing_connections()),
        (1, 2),
        "the second side's dropped dial is past the one-socket bound: closed, its pair orphaned"
    );
    #[cfg(feature = "metrics")] // As above.
    {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "libp2p_reuseport_closing_sockets 1\n",
            "libp2p_reuseport_closing_connections 2\n",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }
    // Both pairs are passed over, the held one and the orphaned one, from either side.
    for (side, (_, remote_addr)) in [&mut ws, &mut tcp].into_iter().zip(&remotes) {
        let dial = side
            .dial(to_multiaddr(*remote_addr), opts(PortUse::Reuse))
            .unwrap();
        assert_eq!(
            within("redial", dial).await.unwrap().port_origin(),
            PortOrigin::Ephemeral(libp2p_reuseport::Fallback::Busy)
        );
    }
}

#[tokio::test]
async fn without_port_reuse_the_sides_still_share_one_socket() {
    let (shared, mut tcp, mut ws) = set(Config::new().port_reuse(false));
    assert!(!shared.reuse_table().is_enabled());
    let (tcp_id, addr) = listen_side(&mut tcp, "/ip4/127.0.0.1/tcp/0").await;
    let (ws_id, ws_addr) = listen_side(&mut ws, "/ip4/127.0.0.1/tcp/0").await;
    assert_eq!(ws_addr, addr);
    assert!(
        shared.reuse_table().listen_addrs().is_empty(),
        "nothing registered for reuse"
    );
    let _m = client(addr, MULTISTREAM).await;
    assert_eq!(incoming(&mut tcp).await.0, tcp_id);
    let _h = client(addr, HTTP).await;
    assert_eq!(incoming(&mut ws).await.0, ws_id);
    let mut remote = transport();
    let (_, remote_addr) = listen(&mut remote, "/ip4/127.0.0.1/tcp/0").await;
    let dial = ws
        .dial(to_multiaddr(remote_addr), opts(PortUse::Reuse))
        .unwrap();
    let (dialed, _) = tokio::join!(within("dial", dial), accept(&mut remote));
    assert_eq!(
        dialed.unwrap().port_origin(),
        PortOrigin::Ephemeral(libp2p_reuseport::Fallback::Disabled)
    );
}

#[test]
fn public_types_can_move_between_tasks() {
    fn owned<T: Send + Unpin + 'static>() {}
    fn shared<T: Send + Sync + 'static>() {}
    owned::<libp2p_reuseport::SharedTransport>();
    owned::<<libp2p_reuseport::SharedTransport as libp2p_core::Transport>::Dial>();
    shared::<libp2p_reuseport::SharedListeners>();
    shared::<SharedStats>();
}
