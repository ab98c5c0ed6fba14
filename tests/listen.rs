//! Listening: addresses, wildcard expansion, closing, freeing the port, bad addresses.

mod util;

use std::{net::SocketAddr, time::Duration};

use libp2p_core::{
    Transport as _,
    transport::{ListenerId, PortUse, TransportError, TransportEvent},
};
use libp2p_reuseport::{Config, Transport};
use socket2::{Domain, Socket, Type};
use util::*;

/// Binds and listens on `addr` with a socket that sets neither SO_REUSEADDR nor SO_REUSEPORT.
fn plain_listen(addr: SocketAddr) -> std::io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(8)?;
    Ok(socket)
}

#[tokio::test]
async fn specific_address_is_reported_once_with_its_port() {
    for addr in ["/ip4/127.0.0.1/tcp/0", "/ip6/::1/tcp/0"] {
        let mut t = transport();
        let (id, bound) = listen(&mut t, addr).await;
        assert_ne!(bound.port(), 0, "port 0 resolved");
        assert_eq!(bound.ip(), socket_addr(&ma(addr)).ip());
        assert_eq!(t.reuse_table().listen_addrs(), vec![bound]);
        // No second NewAddress: the next event is the connection we make.
        let _client = std::net::TcpStream::connect(bound).unwrap();
        match next_event(&mut t).await {
            TransportEvent::Incoming {
                listener_id,
                local_addr,
                ..
            } => {
                assert_eq!(listener_id, id);
                assert_eq!(socket_addr(&local_addr), bound);
            }
            other => panic!("expected Incoming, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn wildcard_is_expanded_per_interface_address() {
    for (addr, loopback) in [
        ("/ip4/0.0.0.0/tcp/0", "127.0.0.1"),
        ("/ip6/::/tcp/0", "::1"),
    ] {
        let mut t = transport();
        let id = ListenerId::next();
        t.listen_on(id, ma(addr)).unwrap();
        let registered = t.reuse_table().listen_addrs();
        assert_eq!(registered.len(), 1, "registered when bound: {registered:?}");
        assert!(registered[0].ip().is_unspecified());
        let port = registered[0].port();
        let mut seen = Vec::new();
        while !seen
            .iter()
            .any(|a: &SocketAddr| a.ip().to_string() == loopback)
        {
            match next_event(&mut t).await {
                TransportEvent::NewAddress {
                    listener_id,
                    listen_addr,
                } => {
                    assert_eq!(listener_id, id);
                    let a = socket_addr(&listen_addr);
                    assert_eq!(a.port(), port, "every address carries the bound port");
                    assert_eq!(
                        a.is_ipv4(),
                        registered[0].is_ipv4(),
                        "family of the listener"
                    );
                    assert!(!seen.contains(&a), "{a} reported twice");
                    seen.push(a);
                }
                other => panic!("expected NewAddress, got {other:?}"),
            }
        }
    }
}

#[tokio::test]
async fn remove_listener_closes_once_and_ends_the_stream() {
    let mut t = transport();
    let (id, bound) = listen(&mut t, "/ip4/127.0.0.1/tcp/0").await;
    let (other, _) = listen(&mut t, "/ip4/127.0.0.1/tcp/0").await;
    assert!(t.remove_listener(id));
    assert!(!t.remove_listener(id), "second remove");
    match next_event(&mut t).await {
        TransportEvent::ListenerClosed {
            listener_id,
            reason,
        } => {
            assert_eq!(listener_id, id);
            assert!(reason.is_ok());
        }
        other => panic!("expected ListenerClosed, got {other:?}"),
    }
    assert!(!t.remove_listener(id), "remove after the stream ended");
    assert!(
        std::net::TcpStream::connect(bound).is_err(),
        "the closed listener accepts nothing"
    );
    // The other listener lives on and nothing more comes from the removed one.
    assert!(t.remove_listener(other));
    match next_event(&mut t).await {
        TransportEvent::ListenerClosed { listener_id, .. } => assert_eq!(listener_id, other),
        event => panic!("expected the other listener's closing, got {event:?}"),
    }
    let quiet = tokio::time::timeout(Duration::from_millis(200), next_event(&mut t)).await;
    assert!(quiet.is_err(), "no event after both closed: {quiet:?}");
}

#[tokio::test]
async fn remove_and_drop_free_the_port() {
    for addr in [
        "/ip4/127.0.0.1/tcp/0",
        "/ip4/0.0.0.0/tcp/0",
        "/ip6/::1/tcp/0",
        "/ip6/::/tcp/0",
    ] {
        let mut t = transport();
        let id = ListenerId::next();
        t.listen_on(id, ma(addr)).unwrap();
        let bound = t.reuse_table().listen_addrs()[0];
        let err = plain_listen(bound).expect_err("port taken while listening");
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
        assert!(t.remove_listener(id));
        assert!(
            t.reuse_table().listen_addrs().is_empty(),
            "unregistered at once"
        );
        plain_listen(bound).expect("port free after remove_listener");

        let mut t = transport();
        t.listen_on(ListenerId::next(), to_multiaddr(bound))
            .unwrap();
        assert!(plain_listen(bound).is_err());
        let table = t.reuse_table();
        drop(t);
        assert!(table.listen_addrs().is_empty(), "unregistered on drop");
        plain_listen(bound).expect("port free after dropping the transport");
    }
}

#[tokio::test]
async fn listening_on_a_taken_port_fails_with_the_address() {
    let taken = plain_listen("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = taken.local_addr().unwrap().as_socket().unwrap();
    let mut t = transport();
    match t.listen_on(ListenerId::next(), to_multiaddr(addr)) {
        Err(TransportError::Other(e)) => {
            assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse);
            assert!(e.to_string().contains(&addr.to_string()), "{e}");
        }
        other => panic!("expected AddrInUse, got {other:?}"),
    }
    assert!(t.reuse_table().listen_addrs().is_empty());
}

#[tokio::test]
async fn unsupported_addresses_are_refused_without_side_effects() {
    let peer = libp2p_identity::PeerId::random();
    let mut t = transport();
    let listen_bad = [
        "/ip4/127.0.0.1/udp/0".to_string(),
        "/ip4/127.0.0.1/udp/0/quic-v1".into(),
        "/ip4/127.0.0.1/tcp/0/ws".into(),
        "/ip4/127.0.0.1".into(),
        "/tcp/0".into(),
        "/dns4/localhost/tcp/0".into(),
        "/dns/localhost/tcp/0".into(),
        "/unix/tmp%2Fx.sock".into(),
        "/memory/0".into(),
        format!("/ip4/127.0.0.1/tcp/0/p2p/{peer}/ws"),
        "/ip4/127.0.0.1/tcp/0/p2p-circuit".into(),
    ];
    for addr in &listen_bad {
        assert!(listen_unsupported(&mut t, &ma(addr)), "listen_on {addr}");
    }
    let dial_bad = [
        "/ip4/127.0.0.1/tcp/0".to_string(),
        "/ip4/0.0.0.0/tcp/4001".into(),
        "/ip6/::/tcp/4001".into(),
        "/ip4/127.0.0.1/udp/4001".into(),
        "/ip4/127.0.0.1/tcp/4001/ws".into(),
        "/ip4/127.0.0.1".into(),
        "/dns4/localhost/tcp/4001".into(),
        "/unix/tmp%2Fx.sock".into(),
        "/memory/7".into(),
        format!("/p2p/{peer}"),
        format!("/ip4/127.0.0.1/tcp/4001/p2p/{peer}/p2p-circuit"),
    ];
    for addr in &dial_bad {
        assert!(dial_unsupported(&mut t, &ma(addr)), "dial {addr}");
    }
    assert!(t.reuse_table().listen_addrs().is_empty());
    // The transport still works afterwards, and a /p2p suffix is fine on dial, and on listen
    // (as libp2p-tcp takes it; the listener reports its address without it).
    let (_, bound) = listen(&mut t, &format!("/ip4/127.0.0.1/tcp/0/p2p/{peer}")).await;
    let with_peer = to_multiaddr(bound).with(libp2p_core::multiaddr::Protocol::P2p(peer));
    let dial = t
        .dial(with_peer, opts(PortUse::New))
        .expect("dial with /p2p");
    let (dialed, (_, _, _)) = tokio::join!(within("dial", dial), accept(&mut t));
    assert_eq!(dialed.unwrap().peer_addr().unwrap(), bound);
}

#[test]
fn outside_a_tokio_runtime_listen_and_dial_fail_cleanly() {
    let mut t = transport();
    match t.listen_on(ListenerId::next(), ma("/ip4/127.0.0.1/tcp/0")) {
        Err(TransportError::Other(e)) => assert!(e.to_string().contains("tokio"), "{e}"),
        other => panic!("expected an error, got {other:?}"),
    }
    let dial = t
        .dial(ma("/ip4/127.0.0.1/tcp/9"), opts(PortUse::Reuse))
        .unwrap();
    let err = futures::executor::block_on(dial).expect_err("no runtime");
    assert!(err.to_string().contains("tokio"), "{err}");
}

#[tokio::test]
async fn ipv4_and_ipv6_wildcards_share_a_port_number() {
    // IPV6_V6ONLY keeps [::]:port from also taking 0.0.0.0:port. The kernel picks the IPv6
    // port without looking at IPv4, so another process may hold 0.0.0.0:port already: such a
    // port (still taken once our IPv6 listener is gone) is tried again with a new one.
    for _ in 0..20 {
        let mut t = transport();
        t.listen_on(ListenerId::next(), ma("/ip6/::/tcp/0"))
            .unwrap();
        let port = t.reuse_table().listen_addrs()[0].port();
        let mut other = Transport::new(Config::new().port_reuse(false));
        let v4 = ma(&format!("/ip4/0.0.0.0/tcp/{port}"));
        match other.listen_on(ListenerId::next(), v4) {
            Ok(()) => return,
            Err(e) => {
                drop(t);
                let free = std::net::TcpListener::bind(("0.0.0.0", port)).is_ok();
                assert!(!free, "the IPv6 wildcard on {port} kept IPv4 from it: {e}");
            }
        }
    }
    panic!("20 ports in a row were taken on IPv4 by other processes");
}
