//! Row 10: what a shared listener's routing by first bytes costs per accepted connection. The
//! TCP side of a `SharedListeners` set (whose WebSocket side listens on the same socket) against
//! this crate's plain listener and a raw tokio listener, each accepting connections whose
//! client sends multistream-select's first bytes right after connecting.
//!
//! The shared listener peeks at those bytes (`MSG_PEEK`) before it hands the connection over,
//! so each connection costs it one wake-up for the bytes and one `recvfrom` more than a plain
//! accept, and it is handed over only once its bytes are in. A fourth listener, raw tokio that
//! waits for each connection's first bytes the same way (a `peek` per accepted connection, up to
//! 64 at once), is the floor for any listener that routes by them.

use std::{
    future::poll_fn,
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use futures::{StreamExt as _, future::BoxFuture, stream::FuturesUnordered};

use libp2p_core::{
    Transport as _,
    transport::{ListenerId, TransportEvent},
};
use libp2p_reuseport::{Config, SharedListeners, SharedTransport, Transport};
use tokio::io::AsyncWriteExt as _;

use crate::{samples::median, servers::raw_listener};

/// The first bytes every client sends: what a libp2p dialer sends over plain TCP.
const MULTISTREAM: &[u8] = b"\x13/multistream/1.0.0\n";

/// The listeners compared, in the order of the figures returned.
#[derive(Clone, Copy)]
enum Kind {
    Shared,
    Plain,
    Raw,
    RawFirstBytes,
}

const KINDS: [Kind; 4] = [Kind::Shared, Kind::Plain, Kind::Raw, Kind::RawFirstBytes];

/// How many accepted connections the raw listener waiting for first bytes peeks at once: as
/// many as the shared listener's default (`SharedConfig::first_bytes_concurrency`).
const RAW_WAITING: usize = 64;

enum Listener {
    /// The TCP side, with the set and the WebSocket side that share its socket.
    Shared {
        tcp: SharedTransport,
        _ws: SharedTransport,
        set: SharedListeners,
    },
    Plain(Transport),
    Raw(tokio::net::TcpListener),
    /// Raw tokio, yielding a connection once its first bytes are in.
    RawFirstBytes {
        listener: tokio::net::TcpListener,
        waiting: FuturesUnordered<BoxFuture<'static, ()>>,
    },
}

fn loopback() -> libp2p_core::Multiaddr {
    "/ip4/127.0.0.1/tcp/0".parse().expect("valid")
}

impl Listener {
    fn new(kind: Kind) -> (Self, SocketAddr) {
        match kind {
            Kind::Shared => {
                let shared = SharedListeners::new(Config::new());
                let (mut tcp, mut ws) = (shared.tcp(), shared.websocket());
                tcp.listen_on(ListenerId::next(), loopback())
                    .expect("listen");
                ws.listen_on(ListenerId::next(), loopback())
                    .expect("listen");
                let addrs = shared.reuse_table().listen_addrs();
                assert_eq!(addrs.len(), 1, "both sides on one socket");
                let set = shared;
                (Self::Shared { tcp, _ws: ws, set }, addrs[0])
            }
            Kind::Plain => {
                let mut plain = Transport::default();
                plain
                    .listen_on(ListenerId::next(), loopback())
                    .expect("listen");
                let addr = plain.reuse_table().listen_addrs()[0];
                (Self::Plain(plain), addr)
            }
            Kind::Raw => {
                let raw = raw_listener();
                let addr = raw.local_addr().expect("addr");
                (Self::Raw(raw), addr)
            }
            Kind::RawFirstBytes => {
                let listener = raw_listener();
                let addr = listener.local_addr().expect("addr");
                let waiting = FuturesUnordered::new();
                (Self::RawFirstBytes { listener, waiting }, addr)
            }
        }
    }

    /// Waits for the next accepted connection.
    async fn accept(&mut self) {
        loop {
            let incoming = match self {
                Self::Shared { tcp, .. } => matches!(
                    poll_fn(|cx| Pin::new(&mut *tcp).poll(cx)).await,
                    TransportEvent::Incoming { .. }
                ),
                Self::Plain(plain) => matches!(
                    poll_fn(|cx| Pin::new(&mut *plain).poll(cx)).await,
                    TransportEvent::Incoming { .. }
                ),
                Self::Raw(raw) => raw.accept().await.is_ok(),
                Self::RawFirstBytes { listener, waiting } => {
                    poll_fn(|cx| first_bytes_in(listener, waiting, cx)).await;
                    true
                }
            };
            if incoming {
                return;
            }
        }
    }

    /// Connections the shared set closed instead of handing over (must stay 0).
    fn closed(&self) -> u64 {
        match self {
            Self::Shared { set, .. } => set.stats().closed(),
            _ => 0,
        }
    }
}

/// Accepts into `waiting` (up to [`RAW_WAITING`]) and is ready once a connection's first bytes
/// are in, as a listener that routes by them must wait.
fn first_bytes_in(
    listener: &tokio::net::TcpListener,
    waiting: &mut FuturesUnordered<BoxFuture<'static, ()>>,
    cx: &mut Context<'_>,
) -> Poll<()> {
    loop {
        if let Poll::Ready(Some(())) = waiting.poll_next_unpin(cx) {
            return Poll::Ready(());
        }
        if waiting.len() >= RAW_WAITING {
            return Poll::Pending;
        }
        match listener.poll_accept(cx) {
            Poll::Ready(Ok((io, _))) => waiting.push(Box::pin(async move {
                let mut buf = [0; 3];
                let _ = io.peek(&mut buf).await;
            })),
            Poll::Ready(Err(_)) | Poll::Pending => return Poll::Pending,
        }
    }
}

/// Connects to `addr` and sends the first bytes; the connection is returned open.
async fn client(addr: SocketAddr) -> Option<tokio::net::TcpStream> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    stream.write_all(MULTISTREAM).await.ok()?;
    Some(stream)
}

/// Connections per second one listener accepts from 2 dialing tasks.
async fn rate(kind: Kind, connections: usize) -> f64 {
    let (mut listener, addr) = Listener::new(kind);
    let dialers: Vec<_> = (0..2)
        .map(|_| {
            tokio::spawn(async move {
                for _ in 0..connections / 2 {
                    drop(client(addr).await);
                }
            })
        })
        .collect();
    let started = Instant::now();
    for _ in 0..connections {
        listener.accept().await;
    }
    let rate = connections as f64 / started.elapsed().as_secs_f64();
    for dialer in dialers {
        let _ = dialer.await;
    }
    assert_eq!(listener.closed(), 0, "the shared listener closed none");
    rate
}

/// One connection at a time: from the start of `connect` until the listener yields it, in us.
async fn latencies(kind: Kind, connections: usize) -> Vec<f64> {
    let (mut listener, addr) = Listener::new(kind);
    let mut times = Vec::with_capacity(connections);
    let mut open = Vec::new();
    for _ in 0..connections {
        let started = Instant::now();
        let (stream, ()) = tokio::join!(client(addr), listener.accept());
        times.push(started.elapsed().as_secs_f64() * 1e6);
        open.push(stream);
        // Keep a few open, as a node would, but do not run out of descriptors.
        if open.len() > 64 {
            open.clear();
        }
    }
    times
}

/// The figures of row 10 per listener (shared, plain, raw, raw waiting for first bytes): accept
/// rate (median over rounds) and the median time from connect to accepted; and the accept
/// rates of the shared listener against raw tokio, the plain listener against raw tokio, and
/// the shared listener against raw tokio waiting for first bytes, each in % as the median of
/// the rounds' ratios (the listeners of a round ran a moment apart).
pub(crate) async fn costs(rounds: usize, connections: usize) -> ([f64; 4], [f64; 4], [f64; 3]) {
    let mut rates: [Vec<f64>; 4] = Default::default();
    let mut times: [Vec<f64>; 4] = Default::default();
    for round in 0..rounds {
        for k in 0..KINDS.len() {
            let i = (round + k) % KINDS.len();
            rates[i].push(rate(KINDS[i], connections).await);
            times[i].extend(latencies(KINDS[i], connections / 4).await);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let paired = |ours: Kind, other: Kind| {
        let (ours, other) = (&rates[ours as usize], &rates[other as usize]);
        let mut ratios: Vec<f64> = ours.iter().zip(other).map(|(o, x)| o / x).collect();
        100.0 * median(&mut ratios)
    };
    let ratios = [
        paired(Kind::Shared, Kind::Raw),
        paired(Kind::Plain, Kind::Raw),
        paired(Kind::Shared, Kind::RawFirstBytes),
    ];
    (
        rates.each_mut().map(|r| median(r)),
        times.each_mut().map(|t| median(t)),
        ratios,
    )
}
