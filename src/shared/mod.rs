//! One listening port for libp2p over plain TCP and over WebSocket: [`SharedListeners`] hands
//! out transports ("sides") that listen on the same sockets, and routes each accepted
//! connection to the side its first bytes are for.
//!
//! - `classify`: which kind the first bytes say (pure);
//! - `config`: [`SharedConfig`], how long and how many connections wait for their first bytes;
//! - `first_bytes`: waiting for them without consuming them, with a deadline;
//! - `port`: one shared socket, its sides' shares and the routing;
//! - `side`: [`SharedTransport`], a side as a `libp2p_core::Transport`;
//! - `stats`: [`SharedStats`], what became of the accepted connections.

mod classify;
mod config;
mod first_bytes;
mod port;
mod side;
mod stats;

use std::{
    fmt, io,
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard, PoisonError, Weak},
};

use libp2p_core::{
    Multiaddr, Transport as _,
    transport::{DialOpts, ListenerId, TransportError},
};

use self::{
    classify::Kind,
    port::{Port, Share},
    stats::Counters,
};
pub use self::{config::SharedConfig, side::SharedTransport, stats::SharedStats};
use crate::{Config, ReuseTable, Transport, transport::Dial};

/// A set of listening sockets shared by a TCP transport and the inner transports of
/// libp2p-websocket, so that one swarm listens on `/ip4/<ip>/tcp/<port>` and
/// `/ip4/<ip>/tcp/<port>/ws` (and `/tls/ws`) with one socket, and dials from both leave from
/// that port.
///
/// Each side is a [`SharedTransport`]: [`tcp`](Self::tcp) for libp2p over plain TCP,
/// [`websocket`](Self::websocket) as the inner transport of libp2p-websocket's `Config` for
/// `/ws`, and [`websocket_tls`](Self::websocket_tls) as the inner transport of a `Config` with a
/// TLS server configuration for `/tls/ws` (`/wss`). A socket of the set accepts, peeks at each
/// connection's first three bytes without consuming them (`MSG_PEEK`) and hands the connection
/// to the side listening on that socket for its kind, as go-libp2p's `tcpreuse` does:
///
/// | first bytes | side |
/// |---|---|
/// | multistream-select, `\x13/m` | [`tcp`](Self::tcp) |
/// | an HTTP/1.x request: `GET`, `HEA`, `POS`, `PUT`, `DEL`, `CON`, `OPT`, `TRA`, `PAT` | [`websocket`](Self::websocket) |
/// | a TLS ClientHello, `\x16\x03\x01`..`\x16\x03\x03` | [`websocket_tls`](Self::websocket_tls) |
///
/// Anything else (decided as soon as a byte rules out every kind), a kind no side listens for on
/// that socket, and a client that has not sent enough bytes within
/// [`SharedConfig::first_bytes_timeout`] (5 s) are closed and counted in [`stats`](Self::stats) (and,
/// with the `metrics` feature, in `libp2p_reuseport_shared_connections_total`). At most
/// [`SharedConfig::first_bytes_concurrency`] (64) connections per socket wait for their first bytes at
/// once, each in its own future: a slow one never holds up the others, and while the limit is
/// reached the socket leaves new connections in the kernel's backlog. Every connection is waited
/// for, even when one side listens on its socket alone.
///
/// All sides dial with one [`Transport`] built from the config, so they share its port-reuse
/// table ([`reuse_table`](Self::reuse_table)), its task for closing connections and its metrics.
/// Cloning the handle is cheap; clones hand out sides of the same set.
///
/// ```
/// use libp2p::{SwarmBuilder, Transport as _, noise, ping, yamux};
/// use libp2p_reuseport::{Config, SharedListeners};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let shared = SharedListeners::new(Config::new());
/// let mut swarm = SwarmBuilder::with_new_identity()
///     .with_tokio()
///     .with_other_transport(libp2p_reuseport::upgrade(
///         shared
///             .tcp()
///             .or_transport(libp2p_websocket::Config::new(shared.websocket())),
///         noise::Config::new,
///         yamux::Config::default,
///     ))?
///     .with_behaviour(|_| ping::Behaviour::default())?
///     .build();
/// // Port 0 on a second side joins the first side's socket: one port for both.
/// swarm.listen_on("/ip4/127.0.0.1/tcp/0".parse()?)?;
/// swarm.listen_on("/ip4/127.0.0.1/tcp/0/ws".parse()?)?;
/// # Ok(())
/// # }
/// ```
///
/// libp2p-websocket is the crate libp2p 0.57's `websocket` feature uses (0.46); this crate does
/// not depend on it. Do not use the swarm builder's `with_websocket` next to a set: it builds on
/// libp2p-tcp, whose socket would hold the port apart from this one.
///
/// Secure WebSocket (`/tls/ws`, `/wss`) works through libp2p-websocket's TLS: wrap
/// [`websocket_tls`](Self::websocket_tls) in a `Config` given a server certificate with
/// `set_tls_config`, and put it after the plain one in `or_transport` (a `Config` with a server
/// certificate would take `/ws` addresses too):
///
/// ```
/// use libp2p::Transport as _;
/// use libp2p_reuseport::SharedListeners;
/// use libp2p_websocket::{Config, tls};
///
/// fn sides(
///     shared: &SharedListeners,
///     key: tls::PrivateKey,
///     certs: Vec<tls::Certificate>,
/// ) -> Result<impl libp2p::Transport, tls::Error> {
///     let mut wss = Config::new(shared.websocket_tls());
///     wss.set_tls_config(tls::Config::new(key, certs)?);
///     Ok(shared
///         .tcp()
///         .or_transport(Config::new(shared.websocket()))
///         .or_transport(wss))
/// }
/// ```
///
/// Not supported: a choice of certificates by SNI (libp2p-websocket takes one per `Config`); HTTP/2 cleartext (`PRI * HTTP/2.0`, which go-libp2p routes to its
/// WebSocket side), refused as unknown since libp2p-websocket speaks HTTP/1.1 only; listening on
/// `/dns` addresses (dialing `/dns.../ws` needs libp2p-dns around the side, as with any TCP
/// transport).
#[derive(Clone)]
pub struct SharedListeners {
    inner: Arc<Inner>,
}

struct Inner {
    /// Binds the sockets and makes the dials.
    transport: Mutex<Transport>,
    /// The sockets, oldest first; a socket lives while a side listens on it.
    ports: Mutex<Vec<Weak<Port>>>,
    config: SharedConfig,
    counters: Arc<Counters>,
}

impl SharedListeners {
    /// An empty set whose sockets and dials are configured by `config`, waiting for first bytes
    /// as [`SharedConfig::new`] says; the environment variable
    /// [`PORT_REUSE_ENV`](crate::PORT_REUSE_ENV) is read here, as by [`Transport::new`].
    pub fn new(config: Config) -> Self {
        Self::with_config(config, SharedConfig::new())
    }

    /// An empty set whose sockets and dials are configured by `config` and that waits for its
    /// connections' first bytes as `shared` says.
    pub fn with_config(config: Config, shared: SharedConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                transport: Mutex::new(Transport::new(config)),
                ports: Mutex::default(),
                config: shared,
                counters: Arc::default(),
            }),
        }
    }

    /// A side for libp2p over plain TCP: it receives the connections that begin with
    /// multistream-select. Use it as a transport of its own (`/ip4|ip6/<ip>/tcp/<port>`).
    pub fn tcp(&self) -> SharedTransport {
        self.side(Kind::Multistream)
    }

    /// A side for WebSocket (`/ws`): it receives the connections that begin with an HTTP
    /// request. Wrap it in libp2p-websocket's `Config::new`, which asks it to listen on
    /// `/tcp/<port>` when the swarm listens on `/tcp/<port>/ws` and dials `/ws` addresses
    /// through it.
    pub fn websocket(&self) -> SharedTransport {
        self.side(Kind::Http)
    }

    /// A side for secure WebSocket (`/tls/ws`, `/wss`): it receives the connections that begin
    /// with a TLS ClientHello. Wrap it in a libp2p-websocket `Config` given a server
    /// certificate with `set_tls_config`; that `Config` then terminates TLS and serves the
    /// WebSocket handshake inside it.
    pub fn websocket_tls(&self) -> SharedTransport {
        self.side(Kind::Tls)
    }

    /// A handle on the port-reuse table every side registers its sockets in and dials from.
    pub fn reuse_table(&self) -> ReuseTable {
        self.lock_transport().reuse_table()
    }

    /// What became of the connections the set's sockets accepted so far.
    pub fn stats(&self) -> SharedStats {
        self.inner.counters.snapshot()
    }

    /// Registers the metrics of [`Transport::register_metrics`] for the set's sockets and dials,
    /// and `libp2p_reuseport_shared_connections_total{outcome=...}`, the counters of
    /// [`stats`](Self::stats) (`outcome` is `multistream`, `http`, `tls`, `unknown`,
    /// `timed_out`, `unclaimed`, `overflow` or `failed`).
    // prometheus-client, whose Registry this takes, is an optional dependency.
    #[cfg(feature = "metrics")]
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.lock_transport().register_metrics(registry);
        registry
            .sub_registry_with_prefix("libp2p_reuseport")
            .register_collector(Box::new(stats::Collector(self.inner.counters.clone())));
    }

    fn side(&self, kind: Kind) -> SharedTransport {
        let transport = self.lock_transport();
        let (metrics, pairs) = (transport.metrics().clone(), transport.pairs());
        drop(transport);
        SharedTransport::new(kind, self.clone(), metrics, pairs)
    }

    /// The share of `kind` for listener `id` in the socket for `addr`, joined or newly bound,
    /// and the socket's bound address.
    fn join(
        &self,
        kind: Kind,
        id: ListenerId,
        addr: SocketAddr,
    ) -> io::Result<(Share, SocketAddr)> {
        let mut ports = self
            .inner
            .ports
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        ports.retain(|port| port.strong_count() > 0);
        for port in ports.iter().filter_map(Weak::upgrade) {
            let bound = port.addr();
            if addr.port() == 0 {
                if bound.ip() == addr.ip()
                    && let Ok(share) = port.join(kind, id)
                {
                    return Ok((share, bound));
                }
                continue;
            }
            if bound == addr {
                return match port.join(kind, id) {
                    Ok(share) => Ok((share, bound)),
                    Err(holder) => Err(io::Error::new(
                        io::ErrorKind::AddrInUse,
                        format!(
                            "listener {holder} already takes the {} connections of this shared socket",
                            kind.name()
                        ),
                    )),
                };
            }
            if overlaps(bound, addr) {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!(
                        "overlaps the shared socket on {bound}, whose connections it would \
                         split: listen on {bound} on every side"
                    ),
                ));
            }
        }
        let bound = self.lock_transport().bind(addr)?;
        let port = Port::new(bound, &self.inner.config, self.inner.counters.clone())?;
        let share = port.join(kind, id).map_err(|holder| {
            io::Error::other(format!("a new shared socket is held by listener {holder}"))
        })?;
        ports.push(Arc::downgrade(&port));
        Ok((share, port.addr()))
    }

    fn dial(&self, addr: Multiaddr, opts: DialOpts) -> Result<Dial, TransportError<io::Error>> {
        self.lock_transport().dial(addr, opts)
    }

    fn lock_transport(&self) -> MutexGuard<'_, Transport> {
        // Nothing panics while holding the lock.
        self.inner
            .transport
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Whether two different addresses of one port would split its connections: the same family,
/// one of the IPs unspecified.
fn overlaps(a: SocketAddr, b: SocketAddr) -> bool {
    a != b
        && a.port() == b.port()
        && a.is_ipv4() == b.is_ipv4()
        && (a.ip().is_unspecified() || b.ip().is_unspecified())
}

impl fmt::Debug for SharedListeners {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ports: Vec<SocketAddr> = self
            .inner
            .ports
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter_map(Weak::upgrade)
            .map(|port| port.addr())
            .collect();
        f.debug_struct("SharedListeners")
            .field("sockets", &ports)
            .field("stats", &self.stats())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_addresses() {
        let table = [
            ("0.0.0.0:4001", "127.0.0.1:4001", true),
            ("127.0.0.1:4001", "0.0.0.0:4001", true),
            ("[::]:4001", "[::1]:4001", true),
            ("0.0.0.0:4001", "0.0.0.0:4001", false),
            ("127.0.0.1:4001", "127.0.0.2:4001", false),
            ("0.0.0.0:4001", "127.0.0.1:4002", false),
            ("0.0.0.0:4001", "[::1]:4001", false),
        ];
        for (a, b, expected) in table {
            assert_eq!(
                overlaps(a.parse().unwrap(), b.parse().unwrap()),
                expected,
                "{a} {b}"
            );
        }
    }
}
