//! Helpers for the sides of a shared listener set, and raw clients that send chosen first
//! bytes.

use std::{future::poll_fn, net::SocketAddr, pin::Pin, time::Duration};

use libp2p_core::{
    Transport,
    transport::{ListenerId, TransportEvent},
};
use libp2p_reuseport::{
    Config, SharedConfig, SharedListeners, SharedStats, SharedTransport, TcpStream,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Event, ma, socket_addr, within};

/// The first bytes a libp2p dialer sends over plain TCP.
pub const MULTISTREAM: &[u8] = b"\x13/multistream/1.0.0\n";
/// The first bytes of a WebSocket handshake.
pub const HTTP: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
/// The first bytes of a TLS ClientHello record (TLS 1.2 record version).
pub const TLS: &[u8] = b"\x16\x03\x01\x00\x05hello";

/// Counts of connections handed to the three sides, nothing refused.
pub fn stats(multistream: u64, http: u64, tls: u64) -> SharedStats {
    let mut s = SharedStats::default();
    s.multistream = multistream;
    s.http = http;
    s.tls = tls;
    s
}

/// A set with its TCP and WebSocket sides.
pub fn set(config: Config) -> (SharedListeners, SharedTransport, SharedTransport) {
    let shared = SharedListeners::new(config);
    let (tcp, ws) = (shared.tcp(), shared.websocket());
    (shared, tcp, ws)
}

/// As [`set`], with the default `Config` and first-bytes settings `shared`.
pub fn set_with(shared: SharedConfig) -> (SharedListeners, SharedTransport, SharedTransport) {
    let set = SharedListeners::with_config(Config::new(), shared);
    let (tcp, ws) = (set.tcp(), set.websocket());
    (set, tcp, ws)
}

/// The next event of any transport.
pub async fn next<T: Transport + Unpin>(t: &mut T) -> TransportEvent<T::ListenerUpgrade, T::Error> {
    within("transport event", poll_fn(|cx| Pin::new(&mut *t).poll(cx))).await
}

/// Asserts that `side` has no event for `wait`, driving it meanwhile.
pub async fn quiet(side: &mut SharedTransport, wait: Duration) {
    let polled = tokio::time::timeout(wait, poll_fn(|cx| Pin::new(&mut *side).poll(cx))).await;
    if let Ok(event) = polled {
        panic!("expected no event, got {event:?}");
    }
}

/// Starts a listener on `addr` and returns its id and first (loopback, for a wildcard) address.
pub async fn listen_side(side: &mut SharedTransport, addr: &str) -> (ListenerId, SocketAddr) {
    let id = ListenerId::next();
    side.listen_on(id, ma(addr)).expect("listen_on");
    loop {
        match next(side).await {
            TransportEvent::NewAddress {
                listener_id,
                listen_addr,
            } => {
                assert_eq!(listener_id, id, "the address is the new listener's");
                let addr = socket_addr(&listen_addr);
                if !addr.ip().is_unspecified() && addr.ip().is_loopback() {
                    return (id, addr);
                }
            }
            other => panic!("expected NewAddress, got {other:?}"),
        }
    }
}

/// The next event of `side`, which must be an incoming connection: (listener, stream, local
/// address, send-back address).
pub async fn incoming(
    side: &mut SharedTransport,
) -> (ListenerId, TcpStream, SocketAddr, SocketAddr) {
    match next(side).await {
        Event::Incoming {
            listener_id,
            upgrade,
            local_addr,
            send_back_addr,
        } => (
            listener_id,
            upgrade.await.expect("accepted stream"),
            socket_addr(&local_addr),
            socket_addr(&send_back_addr),
        ),
        other => panic!("expected Incoming, got {other:?}"),
    }
}

/// The next event of `side`, which must be the closing of a listener: its id.
pub async fn closed(side: &mut SharedTransport) -> ListenerId {
    match next(side).await {
        TransportEvent::ListenerClosed {
            listener_id,
            reason: Ok(()),
        } => listener_id,
        other => panic!("expected ListenerClosed, got {other:?}"),
    }
}

/// Connects to `addr` and sends `first`.
pub async fn client(addr: SocketAddr, first: &[u8]) -> tokio::net::TcpStream {
    let mut stream = within("connect", tokio::net::TcpStream::connect(addr))
        .await
        .expect("connect");
    within("write", stream.write_all(first))
        .await
        .expect("write");
    stream
}

/// Asserts that the server closed `stream` without sending anything: end of stream, or a reset
/// (unread bytes make the kernel reset on close).
pub async fn closed_by_server(stream: &mut tokio::net::TcpStream) {
    let mut buf = [0; 16];
    match within("server closes", stream.read(&mut buf)).await {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("expected the server to close the connection, got {other:?}"),
    }
}

/// Reads exactly `expected.len()` bytes from an accepted stream and compares: the first bytes
/// were peeked, not consumed.
pub async fn reads(stream: &mut TcpStream, expected: &[u8]) {
    let mut buf = vec![0; expected.len()];
    within("read", futures::AsyncReadExt::read_exact(stream, &mut buf))
        .await
        .expect("read");
    assert_eq!(
        buf, expected,
        "the side reads the connection from its first byte"
    );
}
