//! Port hijacking: with SO_REUSEPORT another socket of the same user could bind our listening
//! port and take half of its connections. `listen_on` refuses a port that a socket outside the
//! transport holds, unless `Config::foreign_port_sharing(true)`; sharing within the transport
//! stays allowed, and TIME_WAIT leftovers or our own outbound connections do not count.

// SO_REUSEPORT, and with it the sharing this guards against, exists on unix only.
#![cfg(unix)]

mod util;

use std::{io, net::SocketAddr};

use libp2p_core::{
    Transport as _,
    transport::{ListenerId, PortUse, TransportError},
};
use libp2p_reuseport::{Config, Transport};
use socket2::{Domain, Socket, Type};
use util::*;

/// A listener of "another program": SO_REUSEPORT set, as a second daemon using port reuse would.
fn foreign_listener(addr: &str) -> (Socket, SocketAddr) {
    let addr: SocketAddr = addr.parse().unwrap();
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).unwrap();
    if addr.is_ipv6() {
        socket.set_only_v6(true).unwrap();
    }
    socket.set_reuse_port(true).unwrap();
    socket.bind(&addr.into()).unwrap();
    socket.listen(16).unwrap();
    let bound = socket.local_addr().unwrap().as_socket().unwrap();
    (socket, bound)
}

fn listen_error(t: &mut Transport, addr: SocketAddr) -> Option<io::Error> {
    match t.listen_on(ListenerId::next(), to_multiaddr(addr)) {
        Ok(()) => None,
        Err(TransportError::Other(e)) => Some(e),
        Err(other) => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn a_port_held_by_another_socket_is_refused() {
    for (foreign, ours) in [
        ("127.0.0.1:0", None),
        ("0.0.0.0:0", Some("127.0.0.1")),
        ("127.0.0.1:0", Some("0.0.0.0")),
        ("[::1]:0", None),
        ("[::]:0", Some("::1")),
    ] {
        let (_foreign, held) = foreign_listener(foreign);
        let target = match ours {
            Some(ip) => SocketAddr::new(ip.parse().unwrap(), held.port()),
            None => held,
        };
        let mut t = transport();
        let err = listen_error(&mut t, target).expect("refused");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
        let message = err.to_string();
        assert!(message.contains(&target.to_string()), "{message}");
        assert!(message.contains("foreign_port_sharing"), "{message}");
        assert!(t.port_reuse().listen_addrs().is_empty());
    }
}

#[tokio::test]
async fn sharing_with_another_socket_can_be_allowed() {
    let (_foreign, held) = foreign_listener("127.0.0.1:0");
    let mut t = Transport::new(Config::new().foreign_port_sharing(true));
    assert!(listen_error(&mut t, held).is_none(), "allowed on purpose");
    assert_eq!(t.port_reuse().listen_addrs(), vec![held]);
}

#[tokio::test]
async fn our_own_ports_are_not_foreign() {
    let mut t = transport();
    let (first, addr) = listen(&mut t, "/ip4/127.0.0.1/tcp/0").await;
    let second = ListenerId::next();
    t.listen_on(second, to_multiaddr(addr))
        .expect("a second listener on our own address");
    let wildcard = ListenerId::next();
    let any = SocketAddr::new("0.0.0.0".parse().unwrap(), addr.port());
    t.listen_on(wildcard, to_multiaddr(any))
        .expect("a wildcard listener over our own port");

    // Once the listeners are gone, our outbound connection from the port still makes it ours.
    let mut remote = transport();
    let (_, remote_addr) = listen(&mut remote, "/ip4/127.0.0.1/tcp/0").await;
    let (dialed, accepted, from) = connect(&mut t, &mut remote, remote_addr, PortUse::Reuse).await;
    assert_eq!(from.port(), addr.port());
    for id in [first, second, wildcard] {
        assert!(t.remove_listener(id));
    }
    assert!(t.port_reuse().listen_addrs().is_empty());
    assert_eq!(t.port_reuse().live_connections(), 1);
    assert!(
        listen_error(&mut t, addr).is_none(),
        "the port of our own connection is ours"
    );
    drop((dialed, accepted));
}

#[tokio::test]
async fn time_wait_leftovers_do_not_count() {
    use tokio::io::AsyncReadExt as _;
    let mut t = transport();
    let (_, addr) = listen(&mut t, "/ip4/127.0.0.1/tcp/0").await;
    // Connections accepted on the port and closed by us first leave TIME_WAIT on it.
    for _ in 0..3 {
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (accepted, _, _) = accept(&mut t).await;
        drop(accepted);
        let mut rest = Vec::new();
        within("eof", client.read_to_end(&mut rest)).await.unwrap();
    }
    drop(t);
    let mut again = transport();
    assert!(
        listen_error(&mut again, addr).is_none(),
        "a restarted node gets its port back"
    );
}
