//! Port reuse on Windows (docs/platforms.md): a listener sets no sharing option, so no other
//! socket can join its address, even with SO_REUSEADDR (what libp2p-tcp and go-libp2p set on
//! their listeners, which lets any account join); `Config::foreign_port_sharing` cannot share
//! a listening address there; a dial from a listening port sets SO_REUSEADDR and binds the
//! other kind of address than its listener, and falls back to an ephemeral port when the
//! kernel refuses it.
//!
//! Run under Wine by scripts/platforms.sh: Wine refuses every bind beside a listening socket, so
//! the dial from a listening port itself only runs on Windows' own stack.

// Windows' sharing rules (SO_REUSEADDR, SO_EXCLUSIVEADDRUSE) are Windows'.
#![cfg(windows)]

mod util;

use std::{io, net::SocketAddr};

use libp2p_core::{
    Transport as _,
    transport::{ListenerId, PortUse, TransportError},
};
use libp2p_reuseport::{Config, Fallback, PortOrigin, Transport};
use socket2::{Domain, Socket, Type};
use util::*;

/// Binds `addr` with a socket that sets SO_REUSEADDR if `reuse_address`.
fn bind(addr: SocketAddr, reuse_address: bool) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(reuse_address)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}

#[tokio::test]
async fn no_socket_joins_our_listening_address() {
    for (ours, joiner) in [
        ("/ip4/127.0.0.1/tcp/0", None),
        ("/ip4/0.0.0.0/tcp/0", Some("0.0.0.0")),
        ("/ip6/::1/tcp/0", None),
    ] {
        let mut t = transport();
        let (_, listening) = listen(&mut t, ours).await;
        let target = match joiner {
            Some(ip) => SocketAddr::new(ip.parse().unwrap(), listening.port()),
            None => listening,
        };
        for reuse_address in [false, true] {
            let err = bind(target, reuse_address).expect_err("our listening address is ours");
            println!(
                "windows: a socket {} SO_REUSEADDR binding {target} beside our listener: {err}",
                if reuse_address { "with" } else { "without" }
            );
            assert!(
                matches!(
                    err.kind(),
                    io::ErrorKind::PermissionDenied | io::ErrorKind::AddrInUse
                ),
                "{err:?}"
            );
        }
    }
}

#[tokio::test]
async fn foreign_port_sharing_cannot_share_a_listening_address() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap();
    let mut t = Transport::new(Config::new().foreign_port_sharing(true));
    match t.listen_on(ListenerId::next(), to_multiaddr(addr)) {
        Err(TransportError::Other(err)) => {
            assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
        }
        other => panic!("expected AddrInUse, got {other:?}"),
    }
    assert!(t.reuse_table().listen_addrs().is_empty());
}

#[tokio::test]
async fn a_dial_the_kernel_refuses_falls_back_to_an_ephemeral_port() {
    let mut a = transport();
    let (_, a_addr) = listen(&mut a, "/ip4/127.0.0.1/tcp/0").await;
    // A dial from a specific listener binds the wildcard address of its port: a socket there
    // without SO_REUSEADDR makes Windows refuse it. (Wine refuses the dial's bind in any case,
    // and this socket's too: it is beside a listening one.)
    let wildcard = SocketAddr::new("0.0.0.0".parse().unwrap(), a_addr.port());
    let _foreign = bind(wildcard, false);
    let mut b = transport();
    let (_, b_addr) = listen(&mut b, "/ip4/127.0.0.1/tcp/0").await;
    let (dialed, _accepted, from) = connect(&mut a, &mut b, b_addr, PortUse::Reuse).await;
    match dialed.port_origin() {
        PortOrigin::Ephemeral(Fallback::KernelRefused(kind)) => assert!(
            matches!(
                kind,
                io::ErrorKind::PermissionDenied | io::ErrorKind::AddrInUse
            ),
            "{kind:?}"
        ),
        other => panic!("expected a refused listening port, got {other:?}"),
    }
    assert_ne!(from.port(), a_addr.port());
    assert_eq!(a.reuse_table().dialed_connections(), 0);
}

#[tokio::test]
async fn dials_leave_from_specific_and_wildcard_listeners() {
    if !port_sharing_here("dials_leave_from_specific_and_wildcard_listeners") {
        return;
    }
    for ours in [
        "/ip4/127.0.0.1/tcp/0",
        "/ip4/0.0.0.0/tcp/0",
        "/ip6/::1/tcp/0",
    ] {
        let mut a = transport();
        let (_, a_addr) = listen(&mut a, ours).await;
        let mut b = transport();
        let remote = if a_addr.is_ipv4() {
            "/ip4/127.0.0.1/tcp/0"
        } else {
            "/ip6/::1/tcp/0"
        };
        let (_, b_addr) = listen(&mut b, remote).await;
        // Two at once: several dials share the listening port.
        let (one, _a1, from_one) = connect(&mut a, &mut b, b_addr, PortUse::Reuse).await;
        let mut c = transport();
        let (_, c_addr) = listen(&mut c, remote).await;
        let (two, _a2, from_two) = connect(&mut a, &mut c, c_addr, PortUse::Reuse).await;
        for (stream, from) in [(&one, from_one), (&two, from_two)] {
            assert_eq!(stream.port_origin(), PortOrigin::Reused, "{ours}");
            assert_eq!(from, a_addr, "{ours}");
        }
    }
}
