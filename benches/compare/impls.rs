//! The implementations under test, one column each: how each one listens, dials, accepts, and
//! what its connections are. Every other module goes through this one and iterates over
//! [`IMPLS`], so a new column is a new [`Impl`] variant plus the match arms the compiler then
//! asks for here (and, for a large implementation, a module of its own that these arms call).
//!
//! go-libp2p runs in a child process (`go.rs`): it makes a whole turn of dials at a time and
//! answers with their figures, timed there ([`Dialer::remote_sequential`],
//! [`Dialer::remote_concurrent`]). Its connections are not in this process, so the rows that
//! need one here (6, throughput, and 7, accepts) leave its column empty.

use std::{
    future::poll_fn,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    pin::Pin,
};

use futures::{AsyncWriteExt as _, future::LocalBoxFuture};
use libp2p_core::{
    Endpoint, Multiaddr, Transport as _,
    multiaddr::Protocol,
    transport::{DialOpts, ListenerId, PortUse, TransportEvent},
};
use libp2p_reuseport::PortOrigin;

use crate::{
    go::{self, GoDialer},
    samples::Samples,
    servers::{Close, raw_listener},
};

/// The columns, in table order.
pub(crate) const IMPLS: [Impl; 4] = [Impl::Ours, Impl::Tcp, Impl::Raw, Impl::Go];

/// The number of columns.
pub(crate) const N: usize = IMPLS.len();

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Impl {
    /// This crate.
    Ours,
    /// libp2p-tcp 0.45, `PortUse::Reuse`, with its own listener.
    Tcp,
    /// `tokio::net::TcpStream::connect` from ephemeral ports, plus `TCP_NODELAY`.
    Raw,
    /// go-libp2p v0.52's `reuseport.Transport` with its own listener, in the Go program of
    /// `benches/go`.
    Go,
}

impl Impl {
    /// The column's heading in the table.
    pub(crate) fn heading(self) -> &'static str {
        match self {
            Self::Ours => "this crate",
            Self::Tcp => "libp2p-tcp",
            Self::Raw => "raw tokio",
            Self::Go => "go-libp2p",
        }
    }

    /// The name in the ratio headings (`ours/<name>`).
    pub(crate) fn short(self) -> &'static str {
        match self {
            Self::Ours => "ours",
            Self::Tcp => "libp2p-tcp",
            Self::Raw => "raw",
            Self::Go => "go-libp2p",
        }
    }

    /// The key in the JSON figures.
    pub(crate) fn key(self) -> &'static str {
        match self {
            Self::Ours => "ours",
            Self::Tcp => "libp2p_tcp",
            Self::Raw => "raw",
            Self::Go => "go_libp2p",
        }
    }

    /// Whether every dial that did not leave from the listening port fell back after a failed
    /// system call (libp2p-tcp falls back only after `connect` failed). go-libp2p's failed calls
    /// are counted by the Go program as they fail.
    pub(crate) fn fallback_means_failed_syscall(self) -> bool {
        match self {
            Self::Tcp => true,
            Self::Ours | Self::Raw | Self::Go => false,
        }
    }

    /// Why its column is not measured in this run, if it is not: go-libp2p's needs Go to build
    /// and run `benches/go` (started here, the first time it is asked).
    pub(crate) fn not_measured(self) -> Option<&'static str> {
        match self {
            Self::Ours | Self::Tcp | Self::Raw => None,
            Self::Go => go::status(),
        }
    }

    /// Whether its connections are made in this process, where a row can write to them
    /// (throughput). go-libp2p's are made in the Go program.
    pub(crate) fn in_process(self) -> bool {
        match self {
            Self::Ours | Self::Tcp | Self::Raw => true,
            Self::Go => false,
        }
    }
}

/// The order of the implementations in `round`: each goes first in turn.
pub(crate) fn order(round: usize) -> [usize; N] {
    std::array::from_fn(|k| (round + k) % N)
}

pub(crate) fn ma(addr: SocketAddr) -> Multiaddr {
    Multiaddr::empty()
        .with(addr.ip().into())
        .with(Protocol::Tcp(addr.port()))
}

pub(crate) fn reuse() -> DialOpts {
    DialOpts {
        role: Endpoint::Dialer,
        port_use: PortUse::Reuse,
    }
}

pub(crate) fn loopback_any_port() -> Multiaddr {
    ma(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
}

/// Starts a libp2p-tcp listener on 127.0.0.1 and returns its address.
pub(crate) fn tcp_listen(tcp: &mut libp2p_tcp::tokio::Transport) -> SocketAddr {
    tcp_listen_on(tcp, Ipv4Addr::LOCALHOST.into())
}

/// Starts a libp2p-tcp listener on `ip` and returns its address. libp2p-tcp registers a
/// specific address for reuse as it binds and queues the address as its first event.
fn tcp_listen_on(tcp: &mut libp2p_tcp::tokio::Transport, ip: IpAddr) -> SocketAddr {
    tcp.listen_on(ListenerId::next(), ma(SocketAddr::new(ip, 0)))
        .expect("listen");
    match futures::executor::block_on(poll_fn(|cx| Pin::new(&mut *tcp).poll(cx))) {
        TransportEvent::NewAddress { listen_addr, .. } => match listen_addr.iter().nth(1) {
            Some(Protocol::Tcp(port)) => SocketAddr::new(ip, port),
            _ => unreachable!("tcp address"),
        },
        _ => unreachable!("first event is the address"),
    }
}

/// A dialer of one implementation, with its own listener on 127.0.0.1.
pub(crate) struct Dialer {
    pub(crate) which: Impl,
    /// The port of its listener; 0 for raw tokio, which has none (and for go-libp2p without Go).
    pub(crate) listen_port: u16,
    transport: DialerTransport,
}

enum DialerTransport {
    Ours(libp2p_reuseport::Transport),
    Tcp(libp2p_tcp::tokio::Transport),
    Raw,
    /// None when the Go program is not running: its turns are empty.
    Go(Option<GoDialer>),
}

/// The error of a single dial asked of go-libp2p, which dials a whole turn at a time.
fn go_dials_elsewhere() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "go-libp2p dials in the Go program, a turn at a time (Dialer::remote_sequential)",
    )
}

impl Dialer {
    /// A dialer listening on 127.0.0.1.
    pub(crate) fn new(which: Impl) -> Self {
        Self::listening_on(
            which,
            Ipv4Addr::LOCALHOST.into(),
            libp2p_reuseport::Config::new(),
        )
    }

    /// A dialer listening on `ip` (go-libp2p's listens on 127.0.0.1 whatever `ip` is); this
    /// crate's with `config`.
    pub(crate) fn listening_on(which: Impl, ip: IpAddr, config: libp2p_reuseport::Config) -> Self {
        let (transport, listen_port) = match which {
            Impl::Ours => {
                let mut ours = libp2p_reuseport::Transport::new(config);
                ours.listen_on(ListenerId::next(), ma(SocketAddr::new(ip, 0)))
                    .expect("listen");
                let port = ours.reuse_table().listen_addrs()[0].port();
                (DialerTransport::Ours(ours), port)
            }
            Impl::Tcp => {
                let mut tcp = libp2p_tcp::tokio::Transport::new(libp2p_tcp::Config::new());
                let port = tcp_listen_on(&mut tcp, ip).port();
                (DialerTransport::Tcp(tcp), port)
            }
            Impl::Raw => (DialerTransport::Raw, 0),
            Impl::Go => {
                let go = GoDialer::new();
                let port = go.as_ref().map_or(0, |go| go.port);
                (DialerTransport::Go(go), port)
            }
        };
        Self {
            which,
            listen_port,
            transport,
        }
    }

    /// Dials `remote`.
    pub(crate) async fn dial(&mut self, remote: SocketAddr) -> std::io::Result<Conn> {
        match &mut self.transport {
            DialerTransport::Ours(ours) => {
                let stream = ours.dial(ma(remote), reuse()).expect("dialable").await?;
                Ok(Conn::Ours(stream))
            }
            DialerTransport::Tcp(tcp) => {
                let stream = tcp.dial(ma(remote), reuse()).expect("dialable").await?;
                Ok(Conn::Tcp(stream))
            }
            DialerTransport::Raw => {
                let stream = tokio::net::TcpStream::connect(remote).await?;
                stream.set_nodelay(true)?;
                Ok(Conn::Raw(stream))
            }
            DialerTransport::Go(_) => Err(go_dials_elsewhere()),
        }
    }

    /// Starts a dial to `remote` that runs alongside others: the transport's dial is made now,
    /// the returned future connects.
    pub(crate) fn start_dial(
        &mut self,
        remote: SocketAddr,
    ) -> LocalBoxFuture<'static, std::io::Result<Conn>> {
        match &mut self.transport {
            DialerTransport::Ours(ours) => {
                let f = ours.dial(ma(remote), reuse()).expect("dialable");
                Box::pin(async move { f.await.map(Conn::Ours) })
            }
            DialerTransport::Tcp(tcp) => {
                let f = tcp.dial(ma(remote), reuse()).expect("dialable");
                Box::pin(async move { f.await.map(Conn::Tcp) })
            }
            DialerTransport::Raw => Box::pin(async move {
                let s = tokio::net::TcpStream::connect(remote).await?;
                s.set_nodelay(true)?;
                Ok(Conn::Raw(s))
            }),
            DialerTransport::Go(_) => Box::pin(async { Err(go_dials_elsewhere()) }),
        }
    }

    /// For an implementation that dials in another process (go-libp2p): its turn of `n` dials to
    /// `server` one after the other, each echoing one byte and ending as `close` says, made and
    /// timed there; empty samples if it is not running. None for the implementations in this
    /// process, whose dials the workloads make one by one.
    pub(crate) async fn remote_sequential(
        &self,
        server: SocketAddr,
        n: usize,
        close: Close,
    ) -> Option<Samples> {
        match &self.transport {
            DialerTransport::Go(Some(go)) => Some(go.sequential(server, n, close).await),
            DialerTransport::Go(None) => Some(Samples::default()),
            DialerTransport::Ours(_) | DialerTransport::Tcp(_) | DialerTransport::Raw => None,
        }
    }

    /// For an implementation that dials in another process: its turn of `n` dials at once, the
    /// i-th to `servers[i % len]`, and the turn's wall time in ms; NaN if it is not running.
    /// None for the implementations in this process.
    pub(crate) async fn remote_concurrent(
        &self,
        n: usize,
        servers: &[SocketAddr],
    ) -> Option<(Samples, f64)> {
        match &self.transport {
            DialerTransport::Go(Some(go)) => Some(go.concurrent(n, servers).await),
            DialerTransport::Go(None) => Some((Samples::default(), f64::NAN)),
            DialerTransport::Ours(_) | DialerTransport::Tcp(_) | DialerTransport::Raw => None,
        }
    }
}

pub(crate) enum Conn {
    Ours(libp2p_reuseport::TcpStream),
    Tcp(libp2p_tcp::tokio::TcpStream),
    Raw(tokio::net::TcpStream),
}

impl Conn {
    pub(crate) fn local_port(&self) -> u16 {
        let local = match self {
            Self::Ours(s) => s.local_addr(),
            Self::Tcp(s) => s.0.local_addr(),
            Self::Raw(s) => s.local_addr(),
        };
        local.map(|a| a.port()).unwrap_or(0)
    }

    /// Where the local port came from, for the implementations that say.
    pub(crate) fn origin(&self) -> Option<PortOrigin> {
        match self {
            Self::Ours(s) => Some(s.port_origin()),
            _ => None,
        }
    }

    pub(crate) async fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            Self::Ours(s) => s.write_all(data).await,
            Self::Tcp(s) => s.write_all(data).await,
            Self::Raw(s) => tokio::io::AsyncWriteExt::write_all(s, data).await,
        }
    }

    pub(crate) async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Self::Ours(s) => futures::AsyncReadExt::read(s, buf).await,
            Self::Tcp(s) => futures::AsyncReadExt::read(s, buf).await,
            Self::Raw(s) => tokio::io::AsyncReadExt::read(s, buf).await,
        }
    }

    /// Sends one byte and reads the echo.
    pub(crate) async fn echo(&mut self) -> std::io::Result<()> {
        self.write(b"x").await?;
        let mut byte = [0];
        match self.read(&mut byte).await? {
            1 => Ok(()),
            _ => Err(std::io::ErrorKind::UnexpectedEof.into()),
        }
    }

    /// Reads until the remote closes.
    pub(crate) async fn until_eof(&mut self) -> std::io::Result<()> {
        let mut buf = [0; 64];
        while self.read(&mut buf).await? > 0 {}
        Ok(())
    }
}

/// A listener of one implementation on 127.0.0.1, for counting accepts.
pub(crate) enum Acceptor {
    Ours(libp2p_reuseport::Transport),
    Tcp(libp2p_tcp::tokio::Transport),
    Raw(tokio::net::TcpListener),
}

impl Acceptor {
    /// Listens; returns the acceptor and its address. None for go-libp2p, whose listeners are in
    /// the Go program.
    pub(crate) fn new(which: Impl) -> Option<(Self, SocketAddr)> {
        match which {
            Impl::Ours => {
                let mut ours = libp2p_reuseport::Transport::default();
                ours.listen_on(ListenerId::next(), loopback_any_port())
                    .expect("listen");
                let addr = ours.reuse_table().listen_addrs()[0];
                Some((Self::Ours(ours), addr))
            }
            Impl::Tcp => {
                let mut tcp = libp2p_tcp::tokio::Transport::new(libp2p_tcp::Config::new());
                let addr = tcp_listen(&mut tcp);
                Some((Self::Tcp(tcp), addr))
            }
            Impl::Raw => {
                let raw = raw_listener();
                let addr = raw.local_addr().expect("addr");
                Some((Self::Raw(raw), addr))
            }
            Impl::Go => None,
        }
    }

    /// Waits for the next event; whether it was an accepted connection.
    pub(crate) async fn accept(&mut self) -> bool {
        match self {
            Self::Ours(ours) => matches!(
                poll_fn(|cx| Pin::new(&mut *ours).poll(cx)).await,
                TransportEvent::Incoming { .. }
            ),
            Self::Tcp(tcp) => matches!(
                poll_fn(|cx| Pin::new(&mut *tcp).poll(cx)).await,
                TransportEvent::Incoming { .. }
            ),
            Self::Raw(raw) => raw.accept().await.is_ok(),
        }
    }
}
