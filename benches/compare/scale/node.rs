//! One implementation as a scale row sees it: a node with L listeners on 127.0.0.1 and N live
//! connections from them to distinct remotes, that dials and accepts while those stay open.

use std::{
    future::poll_fn,
    net::{Ipv4Addr, SocketAddr},
    pin::Pin,
    time::{Duration, Instant},
};

use libp2p_core::{
    Transport as _,
    transport::{ListenerId, TransportEvent},
};
use libp2p_reuseport::{Fallback, PortOrigin};

use crate::{
    impls::{Conn, Impl, loopback_any_port, ma, reuse, tcp_listen},
    servers::raw_listener,
};

/// The implementations the scale rows compare, each reported in its [`Impl`] column.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kind {
    Ours,
    Tcp,
    Raw,
}

impl Kind {
    pub(crate) const ALL: [Self; 3] = [Self::Ours, Self::Tcp, Self::Raw];

    pub(crate) fn column(self) -> Impl {
        match self {
            Self::Ours => Impl::Ours,
            Self::Tcp => Impl::Tcp,
            Self::Raw => Impl::Raw,
        }
    }

    /// The name a memory child is told.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Ours => "ours",
            Self::Tcp => "libp2p-tcp",
            Self::Raw => "raw",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.name() == name)
    }
}

enum Transport {
    Ours(libp2p_reuseport::Transport),
    Tcp(libp2p_tcp::tokio::Transport),
    /// Raw tokio dials from ephemeral ports; it has only its listeners.
    Raw(Vec<tokio::net::TcpListener>),
}

/// What a node's measured dials came to.
#[derive(Default)]
pub(crate) struct Dials {
    pub(crate) times: Vec<Duration>,
    pub(crate) failed: usize,
    /// Dials that fell back after a failed system call (ours: `Fallback::Refused`; libp2p-tcp:
    /// every dial not from a listening port, since it falls back only after `connect` failed).
    pub(crate) failed_syscalls: usize,
}

pub(crate) struct Node {
    which: Kind,
    transport: Transport,
    /// The listening addresses, in the order they were made.
    listen_addrs: Vec<SocketAddr>,
    /// The live connections, kept open and idle.
    live: Live,
}

/// Live connections, each stored as its implementation's own stream type, so that the memory a
/// connection takes counts that type's size and not the size of [`Conn`] (its largest variant).
enum Live {
    Ours(Vec<libp2p_reuseport::TcpStream>),
    Tcp(Vec<libp2p_tcp::tokio::TcpStream>),
    Raw(Vec<tokio::net::TcpStream>),
}

impl Live {
    fn push(&mut self, conn: Conn) {
        match (self, conn) {
            (Self::Ours(live), Conn::Ours(stream)) => live.push(stream),
            (Self::Tcp(live), Conn::Tcp(stream)) => live.push(stream),
            (Self::Raw(live), Conn::Raw(stream)) => live.push(stream),
            _ => unreachable!("a node's connections are of its implementation"),
        }
    }

    fn reserve(&mut self, n: usize) {
        match self {
            Self::Ours(live) => live.reserve(n),
            Self::Tcp(live) => live.reserve(n),
            Self::Raw(live) => live.reserve(n),
        }
    }
}

/// The `k`-th remote address of the run: distinct loopback IPs from 127.16.0.1 on, at `port`.
pub(crate) fn remote(k: u32, port: u16) -> SocketAddr {
    let [_, a, b, c] = (k + 1).to_be_bytes();
    SocketAddr::from((Ipv4Addr::new(127, 16 + a, b, c), port))
}

impl Node {
    /// A node of `which` with `listeners` listeners on 127.0.0.1.
    pub(crate) fn new(which: Kind, listeners: usize) -> Self {
        let (transport, listen_addrs) = match which {
            Kind::Ours => {
                let mut ours = libp2p_reuseport::Transport::default();
                for _ in 0..listeners {
                    ours.listen_on(ListenerId::next(), loopback_any_port())
                        .expect("listen");
                }
                let addrs = ours.reuse_table().listen_addrs();
                (Transport::Ours(ours), addrs)
            }
            Kind::Tcp => {
                let mut tcp = libp2p_tcp::tokio::Transport::new(libp2p_tcp::Config::new());
                let addrs = (0..listeners).map(|_| tcp_listen(&mut tcp)).collect();
                (Transport::Tcp(tcp), addrs)
            }
            Kind::Raw => {
                let raw: Vec<_> = (0..listeners).map(|_| raw_listener()).collect();
                let addrs = raw.iter().map(|l| l.local_addr().expect("addr")).collect();
                (Transport::Raw(raw), addrs)
            }
        };
        assert_eq!(listen_addrs.len(), listeners);
        let live = match which {
            Kind::Ours => Live::Ours(Vec::new()),
            Kind::Tcp => Live::Tcp(Vec::new()),
            Kind::Raw => Live::Raw(Vec::new()),
        };
        Self {
            which,
            transport,
            listen_addrs,
            live,
        }
    }

    async fn dial(&mut self, remote: SocketAddr) -> std::io::Result<Conn> {
        match &mut self.transport {
            Transport::Ours(ours) => {
                let dial = ours.dial(ma(remote), reuse()).expect("dialable");
                dial.await.map(Conn::Ours)
            }
            Transport::Tcp(tcp) => {
                let dial = tcp.dial(ma(remote), reuse()).expect("dialable");
                dial.await.map(Conn::Tcp)
            }
            Transport::Raw(_) => {
                let stream = tokio::net::TcpStream::connect(remote).await?;
                stream.set_nodelay(true)?;
                Ok(Conn::Raw(stream))
            }
        }
    }

    /// Opens `n` more live connections, to the remotes `first..first + n` of the sink at
    /// `port`, and keeps them. Returns how many left from a listening port.
    pub(crate) async fn fill(&mut self, n: usize, first: u32, port: u16) -> usize {
        self.live.reserve(n);
        let mut reused = 0;
        for k in first..first + n as u32 {
            let conn = self.dial(remote(k, port)).await.expect("live connection");
            reused += usize::from(self.left_from_a_listening_port(&conn));
            self.live.push(conn);
        }
        reused
    }

    /// Makes room for `n` more live connections without moving those already open.
    pub(crate) fn reserve(&mut self, n: usize) {
        self.live.reserve(n);
    }

    /// How many live connections this crate's port-reuse table holds (`None` for the others).
    pub(crate) fn pairs_in_table(&self) -> Option<usize> {
        match &self.transport {
            Transport::Ours(ours) => Some(ours.reuse_table().dialed_connections()),
            _ => None,
        }
    }

    fn left_from_a_listening_port(&self, conn: &Conn) -> bool {
        self.listen_addrs
            .iter()
            .any(|addr| addr.port() == conn.local_port())
    }

    /// `n` sequential dials to the echo server at `echo`, each followed by a one-byte echo and
    /// the server's close; records the dials.
    pub(crate) async fn dial_echo(&mut self, echo: SocketAddr, n: usize, dials: &mut Dials) {
        for _ in 0..n {
            let started = Instant::now();
            let conn = self.dial(echo).await;
            let took = started.elapsed();
            let Ok(mut conn) = conn else {
                dials.failed += 1;
                continue;
            };
            dials.times.push(took);
            let failed_syscall = match conn.origin() {
                Some(PortOrigin::Ephemeral(Fallback::KernelRefused(_))) => true,
                Some(_) => false,
                None => self.which == Kind::Tcp && !self.left_from_a_listening_port(&conn),
            };
            dials.failed_syscalls += usize::from(failed_syscall);
            if conn.echo().await.is_err() || conn.until_eof().await.is_err() {
                dials.failed += 1;
            }
        }
    }

    /// Accepts `n` connections on the last listener, made by 2 tasks of raw tokio clients;
    /// microseconds per accepted connection.
    pub(crate) async fn accept(&mut self, n: usize) -> f64 {
        let addr = *self.listen_addrs.last().expect("a listener");
        let clients: Vec<_> = (0..2)
            .map(|_| {
                tokio::spawn(async move {
                    for _ in 0..n / 2 {
                        if let Ok(s) = tokio::net::TcpStream::connect(addr).await {
                            drop(s);
                        }
                    }
                })
            })
            .collect();
        let started = Instant::now();
        let mut accepted = 0;
        while accepted < n / 2 * 2 {
            accepted += usize::from(self.next_accept().await);
        }
        let per_conn = started.elapsed().as_secs_f64() * 1e6 / accepted as f64;
        for client in clients {
            let _ = client.await;
        }
        per_conn
    }

    /// Waits for the next event of the transport (or accept of raw tokio's last listener);
    /// whether it was an accepted connection.
    async fn next_accept(&mut self) -> bool {
        match &mut self.transport {
            Transport::Ours(ours) => matches!(
                poll_fn(|cx| Pin::new(&mut *ours).poll(cx)).await,
                TransportEvent::Incoming { .. }
            ),
            Transport::Tcp(tcp) => matches!(
                poll_fn(|cx| Pin::new(&mut *tcp).poll(cx)).await,
                TransportEvent::Incoming { .. }
            ),
            Transport::Raw(raw) => raw.last().expect("a listener").accept().await.is_ok(),
        }
    }
}
