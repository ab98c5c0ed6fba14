//! [`Transport`]: the [`libp2p_core::Transport`] implementation wiring listeners, dials and the
//! port-reuse table together.

use std::{
    fmt, io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use futures::future::BoxFuture;
use libp2p_core::{
    Endpoint, Multiaddr,
    transport::{DialOpts, ListenerId, PortUse, TransportError},
};

use crate::{
    Config, TcpStream,
    closing::Reaper,
    config::{PORT_REUSE_ENV, env_disables_reuse},
    diagnostics,
    dial::{self, Reuse},
    error, limits,
    listener::{Event, Listener, Listeners, OwnSocket, Pairs},
    metrics::Metrics,
    multiaddr,
    port_reuse::{Registration, ReuseTable},
    relayed, socket,
    stream::OnDrop,
    sys::{PLATFORM, Role},
};

/// A bound, listening socket, its address (the port is concrete, the IP may be unspecified), its
/// registration in the port-reuse table and its entry in the diagnostics' registry.
pub(crate) struct Bound {
    pub(crate) socket: tokio::net::TcpListener,
    pub(crate) addr: SocketAddr,
    pub(crate) registration: Option<Registration>,
    pub(crate) listening: diagnostics::Listening,
}

/// What [`Transport::dial`](libp2p_core::Transport::dial) returns.
pub(crate) type Dial = BoxFuture<'static, io::Result<TcpStream>>;

/// A TCP transport whose dials with `PortUse::Reuse` leave from the node's listening ports.
///
/// Needs a tokio runtime: `listen_on` and the dial futures return an error outside one.
pub struct Transport {
    config: Config,
    port_reuse: ReuseTable,
    /// Holds the sockets of closing pairs until their remote closes.
    reaper: Arc<Reaper>,
    metrics: Metrics,
    listeners: Listeners<OwnSocket>,
    /// Counts this transport among the live ones for the diagnostics.
    _diagnostics: diagnostics::TransportEntry,
}

impl Transport {
    /// A transport with `config`. Port reuse is on if the config asks for it, the environment
    /// variable [`PORT_REUSE_ENV`] does not turn it off (read here, once) and the platform has
    /// `SO_REUSEPORT`.
    pub fn new(config: Config) -> Self {
        let env_off = env_disables_reuse(std::env::var_os(PORT_REUSE_ENV).as_deref());
        let enabled = config.port_reuse && !env_off && PLATFORM.reuses_ports();
        if config.port_reuse && !enabled {
            tracing::debug!(env_off, platform = ?PLATFORM, "port reuse is off");
        }
        let max_closing =
            (config.max_closing_sockets).unwrap_or_else(limits::default_max_closing_sockets);
        let metrics = Metrics::new(config.tcp_info_interval);
        let at_once = !config.hold_closing_sockets;
        Self {
            config,
            port_reuse: ReuseTable::new(enabled)
                .with_closing_bound(max_closing, limits::orphan_hold())
                .closing_at_once(at_once),
            reaper: Arc::default(),
            metrics,
            listeners: Listeners::new(),
            _diagnostics: diagnostics::TransportEntry::new(),
        }
    }

    /// A handle on the port-reuse table: the registered listening addresses, the live outbound
    /// connections from them, and the source a dial would use.
    pub fn reuse_table(&self) -> ReuseTable {
        self.port_reuse.clone()
    }

    /// Registers this transport's metrics in `registry` (the `Registry` of prometheus-client
    /// 0.25, which libp2p-metrics 0.18 and `libp2p::metrics` use), under the prefix
    /// `libp2p_reuseport`:
    ///
    /// | metric | type | what |
    /// |---|---|---|
    /// | `libp2p_reuseport_dials_total{origin="reused"}` | counter | outbound connections that left from a listening port |
    /// | `libp2p_reuseport_dials_total{origin="ephemeral",reason=...}` | counter | outbound connections from an ephemeral port, by [`Fallback`](crate::Fallback): `not_requested`, `disabled`, `no_listener`, `no_route`, `busy`, `kernel_refused` |
    /// | `libp2p_reuseport_accepts_total` | counter | inbound connections accepted |
    /// | `libp2p_reuseport_listener_errors_total` | counter | `ListenerError` events (failed accepts, a failed interface watcher) |
    /// | `libp2p_reuseport_rst_retries_total` | counter | SYNs sent again from a listening port right after the remote side refused one ([`Config::rst_retry_window`]) |
    /// | `libp2p_reuseport_listen_addresses` | gauge | listening addresses registered for port reuse ([`ReuseTable::listen_addrs`]) |
    /// | `libp2p_reuseport_dialed_connections` | gauge | open outbound connections from a listening port ([`ReuseTable::dialed_connections`]) |
    /// | `libp2p_reuseport_accepted_connections` | gauge | open inbound connections accepted by listeners registered for port reuse: a dial back to their remote from that listening address passes over the pair ([`ReuseTable::accepted_connections`]) |
    /// | `libp2p_reuseport_closing_connections` | gauge | dropped connections on a listening port, outbound or accepted, whose remote has not closed yet ([`ReuseTable::closing_connections`]) |
    /// | `libp2p_reuseport_closing_sockets` | gauge | those of them whose socket is kept open until the remote closes ([`ReuseTable::closing_sockets`]) |
    /// | `libp2p_reuseport_connection_duration_seconds{direction=...}` | histogram | how long connections lived, from the stream's creation (connected or accepted) to its drop; `direction` is `dialed` or `accepted`; buckets 0.1 s to a week |
    /// | `libp2p_reuseport_tcp_rtt_seconds{direction=...}` | histogram | Linux: the smoothed round-trip time (TCP_INFO `tcpi_rtt`) of each open connection at each sample; buckets 100 µs to 6.5 s, doubling |
    /// | `libp2p_reuseport_tcp_segments_sent_total{direction=...}` | counter | Linux: segments the connections sent (`tcpi_segs_out`, retransmissions included), added at each sample |
    /// | `libp2p_reuseport_tcp_segments_received_total{direction=...}` | counter | Linux: segments the connections received (`tcpi_segs_in`), added at each sample |
    /// | `libp2p_reuseport_tcp_retransmitted_segments_total{direction=...}` | counter | Linux: segments the connections retransmitted (`tcpi_total_retrans`), added at each sample |
    /// | `libp2p_reuseport_tcp_bytes_sent_total{direction=...}` | counter | Linux: bytes the connections sent that the remote acknowledged (`tcpi_bytes_acked`; a dialed connection's SYN counts one), added at each sample |
    /// | `libp2p_reuseport_tcp_bytes_received_total{direction=...}` | counter | Linux: bytes the connections received (`tcpi_bytes_received`), added at each sample |
    ///
    /// The share of hole-punchable dials is
    /// `rate(libp2p_reuseport_dials_total{origin="reused"}[5m])` over
    /// `sum(rate(libp2p_reuseport_dials_total[5m]))`; the `reason` label says why the others were
    /// not.
    ///
    /// The counters count from the transport's creation, registered or not; counting is one
    /// atomic increment. The gauges are read from the port-reuse table when the registry is
    /// encoded. Register each transport once per registry (two transports in one registry would
    /// repeat the names: give each a sub-registry with its own label).
    ///
    /// ```
    /// use prometheus_client::{encoding::text::encode, registry::Registry};
    ///
    /// let mut registry = Registry::default();
    /// let transport = libp2p_reuseport::Transport::default();
    /// transport.register_metrics(&mut registry);
    /// let mut text = String::new();
    /// encode(&mut text, &registry)?;
    /// assert!(text.contains("libp2p_reuseport_dials_total{origin=\"reused\"} 0"));
    /// let lifetimes = "libp2p_reuseport_connection_duration_seconds_count{direction=\"dialed\"} 0";
    /// assert!(text.contains(lifetimes));
    /// # Ok::<(), std::fmt::Error>(())
    /// ```
    ///
    /// # TCP_INFO
    ///
    /// The `tcp_` series come from the kernel's TCP_INFO of the transport's open connections
    /// and exist on Linux only: there the sock_diag netlink interface reads it without unsafe
    /// code. Android (whose SELinux policy denies apps sock_diag), macOS and iOS
    /// (`TCP_CONNECTION_INFO`, read with `getsockopt` only), the BSDs and Windows register no
    /// `tcp_` series; the connection durations are measured everywhere.
    ///
    /// Nothing is read per packet: TCP_INFO is sampled when the registry is encoded (a scrape)
    /// and the last sample is at least [`Config::tcp_info_interval`] old (10 s by default), so
    /// never without scrapes and at most once per interval with them. A sample is one
    /// sock_diag dump per address family with open connections: the kernel lists the open TCP
    /// connections of the network namespace, every process's, and the transport keeps its own
    /// by their (local, remote) pair; its cost grows with the namespace's TCP connections, not
    /// with traffic. A stream enters that list of pairs when it is made and leaves it when it
    /// drops: one short lock each. The RTT histogram gets one observation per open connection
    /// per sample. The segment counters grow by what each connection's kernel counters grew
    /// since its previous sample, or since its start at its first: so they only grow, and
    /// `rate()` is segments per second, but what a connection does after its last sample, and
    /// connections that live between two samples, are not counted.
    // prometheus-client, whose Registry this takes, is an optional dependency.
    #[cfg(feature = "metrics")]
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.metrics.register(registry, self.port_reuse.clone());
    }

    /// The counters this transport, and the sides of a shared listener set built on it, count
    /// with.
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Binds `addr` and listens: the socket options of the config, `SO_REUSEPORT` when port
    /// reuse is on (after checking that no socket outside the transport holds the port, unless
    /// foreign sharing is allowed), and the bound address registered for port reuse.
    pub(crate) fn bind(&self, addr: SocketAddr) -> io::Result<Bound> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(io::Error::other("libp2p-reuseport needs a tokio runtime"));
        }
        let reuse = self.port_reuse.is_enabled();
        // With SO_REUSEPORT the kernel would let us share a port another socket of this user
        // already listens on, and split its connections between the two. Unless the port is
        // ours already or sharing is wanted, find out first whether anyone else holds it.
        // A port that is ours already may have been joined by another socket since: checked
        // once this one listens too.
        let joins_ours = reuse
            && addr.port() != 0
            && !self.config.foreign_port_sharing
            && self.port_reuse.holds_port(addr);
        if reuse && addr.port() != 0 && !self.config.foreign_port_sharing && !joins_ours {
            socket::ensure_unshared(addr)?;
        }
        let socket = socket::tcp(&self.config, addr, Role::Listener { reuse })?;
        socket.bind(&addr.into())?;
        socket.listen(i32::try_from(self.config.backlog).unwrap_or(i32::MAX))?;
        let bound = socket
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("bound listener has no IP address"))?;
        let socket = tokio::net::TcpListener::from_std(socket.into())?;
        let registration = reuse.then(|| self.port_reuse.register(bound));
        let listening = diagnostics::Listening::new(bound, reuse, self.config.foreign_port_sharing);
        if joins_ours {
            diagnostics::check_port_sharing(bound);
        }
        Ok(Bound {
            socket,
            addr: bound,
            registration,
            listening,
        })
    }

    /// Where the connections a listener accepts hold their pairs: this transport's table and
    /// closing task. `None` while port reuse is off: no dial leaves from a listening port then.
    pub(crate) fn pairs(&self) -> Option<Pairs> {
        self.port_reuse.is_enabled().then(|| Pairs {
            table: self.port_reuse.clone(),
            reaper: self.reaper.clone(),
            on_drop: OnDrop::for_linger(self.config.linger),
        })
    }

    fn listen(&self, id: ListenerId, addr: SocketAddr) -> io::Result<Listener<OwnSocket>> {
        let bound = self.bind(addr)?;
        tracing::debug!(listener = %id, addr = %bound.addr, reuse = bound.registration.is_some(), "listening");
        let addr = bound.addr;
        Listener::new(
            id,
            OwnSocket::new(bound),
            addr,
            self.pairs(),
            self.metrics.clone(),
        )
    }
}

impl Default for Transport {
    fn default() -> Self {
        Self::new(Config::default())
    }
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("config", &self.config)
            .field("port_reuse", &self.port_reuse)
            .field("listeners", &self.listeners.len())
            .finish()
    }
}

impl libp2p_core::Transport for Transport {
    type Output = TcpStream;
    type Error = io::Error;
    type ListenerUpgrade = futures::future::Ready<io::Result<TcpStream>>;
    type Dial = Dial;

    fn listen_on(
        &mut self,
        id: ListenerId,
        addr: Multiaddr,
    ) -> Result<(), TransportError<io::Error>> {
        let Some(socket_addr) = multiaddr::listen_addr(&addr) else {
            return Err(TransportError::MultiaddrNotSupported(addr));
        };
        let listener = self.listen(id, socket_addr).map_err(|e| {
            TransportError::Other(error::context(e, format_args!("listen on {socket_addr}")))
        })?;
        self.listeners.push(listener);
        Ok(())
    }

    fn remove_listener(&mut self, id: ListenerId) -> bool {
        self.listeners.close(id)
    }

    fn dial(
        &mut self,
        addr: Multiaddr,
        opts: DialOpts,
    ) -> Result<Self::Dial, TransportError<io::Error>> {
        let Some(remote) = multiaddr::dial_addr(&addr) else {
            return Err(TransportError::MultiaddrNotSupported(addr));
        };
        let reuse = (opts.port_use == PortUse::Reuse).then(|| Reuse {
            table: self.port_reuse.clone(),
            reaper: self.reaper.clone(),
            punch: opts.role == Endpoint::Listener || relayed::to_relayed_peer(&addr),
        });
        Ok(Box::pin(dial::dial(
            self.config.clone(),
            remote,
            reuse,
            self.metrics.clone(),
        )))
    }

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Event> {
        let this = &mut *self;
        this.listeners.poll(cx, &this.metrics)
    }
}
