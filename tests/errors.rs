//! Errors keep their cause: a failed dial or listen is an `io::Error` of the OS error's kind,
//! whose message names the addresses, whose `source()` is the OS error and whose OS code
//! `libp2p_reuseport::raw_os_error` returns, for the user to match on.

mod util;

use std::{error::Error as _, io, net::SocketAddr};

use libp2p_core::{
    Transport as _,
    transport::{ListenerId, PortUse, TransportError},
};
use util::*;

/// The OS error under `error`'s `source()`, which must be there.
fn os_source(error: &io::Error) -> &io::Error {
    error
        .source()
        .and_then(|source| source.downcast_ref::<io::Error>())
        .unwrap_or_else(|| panic!("no OS error as the source of {error:?}"))
}

/// A port where nothing listens on 127.0.0.1, and the error a plain `connect` to it gets.
fn closed_port() -> (SocketAddr, io::Error) {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let plain = std::net::TcpStream::connect(addr).expect_err("nothing listens");
    (addr, plain)
}

#[tokio::test]
async fn a_refused_dial_keeps_the_os_error() {
    let mut t = transport();
    let (_, local) = listen(&mut t, "/ip4/127.0.0.1/tcp/0").await;
    let (closed, plain) = closed_port();
    let code = plain.raw_os_error().expect("an OS code");
    for port_use in [PortUse::Reuse, PortUse::New] {
        let err = dial(&mut t, closed, port_use).await.expect_err("refused");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
        assert_eq!(libp2p_reuseport::raw_os_error(&err), Some(code), "{err:?}");
        assert_eq!(os_source(&err).raw_os_error(), Some(code));
        let message = err.to_string();
        assert!(message.contains(&closed.to_string()), "{message}");
        if port_use == PortUse::Reuse
            && port_sharing_here("a_refused_dial_keeps_the_os_error, its source address")
        {
            assert!(message.contains(&local.to_string()), "{message}");
        }
    }
}

#[tokio::test]
async fn a_failed_listen_keeps_the_os_error() {
    // A plain socket (no SO_REUSEADDR, no SO_REUSEPORT) holds the address.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap();
    let in_use = std::net::TcpListener::bind(addr).expect_err("held");
    let code = in_use.raw_os_error().expect("an OS code");
    for config in [
        libp2p_reuseport::Config::new(),
        libp2p_reuseport::Config::new().port_reuse(false),
    ] {
        let mut t = libp2p_reuseport::Transport::new(config);
        let err = match t.listen_on(ListenerId::next(), to_multiaddr(addr)) {
            Err(TransportError::Other(err)) => err,
            other => panic!("expected an OS error, got {other:?}"),
        };
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
        assert_eq!(libp2p_reuseport::raw_os_error(&err), Some(code), "{err:?}");
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
        // The OS error is somewhere down the chain of sources (the foreign-port check adds
        // its own explanation in between).
        let mut source = err.source();
        let mut found = false;
        while let Some(inner) = source {
            found |= inner
                .downcast_ref::<io::Error>()
                .is_some_and(|e| e.raw_os_error() == Some(code));
            source = inner.source();
        }
        assert!(found, "{err:?}");
    }
}
