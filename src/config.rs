//! The transport's configuration.

use std::{ffi::OsStr, time::Duration};

/// The environment variable that turns port reuse off, as in go-libp2p: `false`, `f` or `0`
/// (any case) disables it; any other value, or none, leaves [`Config::port_reuse`] in charge.
pub const PORT_REUSE_ENV: &str = "LIBP2P_TCP_REUSEPORT";

/// How the [`Transport`](crate::Transport) configures its sockets.
///
/// Options set on a listening socket are inherited by the sockets it accepts (Linux, the BSDs,
/// macOS and Windows all do this), so accepting costs no extra system call.
///
/// ```
/// use std::time::Duration;
///
/// let config = libp2p_reuseport::Config::new()
///     .nodelay(true)
///     .keepalive(Some(Duration::from_secs(60)))
///     .listen_backlog(4096);
/// let transport = libp2p_reuseport::Transport::new(config);
/// # let _ = transport;
/// ```
#[derive(Clone, Debug)]
pub struct Config {
    pub(crate) nodelay: bool,
    pub(crate) ttl: Option<u32>,
    pub(crate) linger: Option<Duration>,
    pub(crate) keepalive: Option<Duration>,
    pub(crate) backlog: u32,
    pub(crate) port_reuse: bool,
    pub(crate) foreign_port_sharing: bool,
    pub(crate) rst_retry_window: Duration,
    pub(crate) given_up_dial_window: Duration,
    pub(crate) tcp_info_interval: Duration,
    /// `None`: derived from the descriptor limit when the transport is created.
    pub(crate) max_closing_sockets: Option<usize>,
    pub(crate) hold_closing_sockets: bool,
}

impl Config {
    /// The defaults, option by option:
    ///
    /// | setter | socket option or behaviour | default |
    /// |---|---|---|
    /// | [`nodelay`](Self::nodelay) | `TCP_NODELAY` | `true` (Nagle's algorithm off: libp2p's multiplexers write small frames) |
    /// | [`ttl`](Self::ttl) | `IP_TTL` (IPv4), `IPV6_UNICAST_HOPS` (IPv6) | the OS default |
    /// | [`linger`](Self::linger) | `SO_LINGER` | not set (the OS default: `close` returns at once, the kernel sends what is left in the background) |
    /// | [`keepalive`](Self::keepalive) | `SO_KEEPALIVE` and its idle time (`TCP_KEEPIDLE`) | on, 30 s |
    /// | [`listen_backlog`](Self::listen_backlog) | the `listen(2)` backlog | 1024 |
    /// | [`port_reuse`](Self::port_reuse) | `SO_REUSEPORT` on listeners and reusing dials | on, unless the environment variable [`PORT_REUSE_ENV`] says otherwise when the [`Transport`](crate::Transport) is created |
    /// | [`foreign_port_sharing`](Self::foreign_port_sharing) | share a listening port a socket outside this transport holds | refused |
    /// | [`rst_retry_window`](Self::rst_retry_window) | a dial from a listening port that the remote side refuses keeps trying | 500 ms |
    /// | [`given_up_dial_window`](Self::given_up_dial_window) | a dial from a listening port dropped before it connected stays half-open for the next dial on its pair | 10 s |
    /// | [`hold_closing_sockets`](Self::hold_closing_sockets) | a connection dropped before its remote closed is kept open until the remote's FIN, rather than closed at once and looked up in the kernel | `false` (Linux closes at once; other platforms always hold) |
    /// | [`max_closing_sockets`](Self::max_closing_sockets) | closing connections kept open until their remote closes | an eighth of the soft descriptor limit (`RLIMIT_NOFILE`) read when the [`Transport`](crate::Transport) is created, at most 8,192; 128 where there is no such limit (Windows) |
    /// | [`tcp_info_interval`](Self::tcp_info_interval) | `metrics` feature, Linux: how often at most the connections' TCP_INFO is sampled | 10 s |
    ///
    /// # Keepalive on, linger not set
    ///
    /// go-libp2p's TCP transport turns TCP keepalive on for every connection (a 30 s period) and
    /// sets `SO_LINGER` to 0. This transport does the first and not the second:
    ///
    /// - Keepalive, 30 s of idleness before the first probe. A hole-punched connection lives in
    ///   the mappings of two NATs, and many home routers drop an idle TCP mapping after a few
    ///   minutes (well under the two hours RFC 5382 asks for); a probe every 30 s while the
    ///   connection is idle keeps both mappings, for one small packet each way. It also finds
    ///   a peer that vanished (power loss, a dropped mapping) after the probes go unanswered
    ///   (Linux: 9 probes 75 s apart, `tcp_keepalive_probes`, `tcp_keepalive_intvl`) where the
    ///   connection would otherwise wait forever for data that never comes. Connections that
    ///   carry traffic send no probes. Libp2p's own ping, when the swarm runs it, does the same
    ///   above TCP; keepalive also covers connections without it.
    /// - `SO_LINGER` left unset: closing is graceful. The remote reads the end of the stream
    ///   after everything sent before it, rather than a reset that may discard data still in
    ///   flight. A linger of 0 spares go-libp2p the closing states (`FIN_WAIT`, `TIME_WAIT`)
    ///   in which the kernel would refuse a new connection on the same (local, remote) pair;
    ///   this transport instead holds the pairs of closing connections until the remote has
    ///   closed (see [`TcpStream`](crate::TcpStream)), dials the next candidate or an ephemeral
    ///   port meanwhile, and uses the pair again once only a `TIME_WAIT` entry is left, which a
    ///   new connection may take over. With [`linger`](Self::linger) set, sockets close as
    ///   configured and are not held.
    pub fn new() -> Self {
        Self {
            nodelay: true,
            ttl: None,
            linger: None,
            keepalive: Some(Duration::from_secs(30)),
            backlog: 1024,
            port_reuse: true,
            foreign_port_sharing: false,
            rst_retry_window: Duration::from_millis(500),
            given_up_dial_window: Duration::from_secs(10),
            tcp_info_interval: Duration::from_secs(10),
            max_closing_sockets: None,
            hold_closing_sockets: false,
        }
    }

    /// Sets `TCP_NODELAY` on every socket. Default: `true`.
    pub fn nodelay(mut self, value: bool) -> Self {
        self.nodelay = value;
        self
    }

    /// Sets the TTL of outgoing packets: `IP_TTL` on IPv4 sockets, `IPV6_UNICAST_HOPS` on IPv6
    /// sockets. Default: the OS default (64 on Linux).
    pub fn ttl(mut self, value: u32) -> Self {
        self.ttl = Some(value);
        self
    }

    /// Sets `SO_LINGER`. `Some(Duration::ZERO)` makes `close` reset the connection instead of
    /// closing it gracefully. Default: `None` (not set).
    pub fn linger(mut self, value: Option<Duration>) -> Self {
        self.linger = value;
        self
    }

    /// TCP keepalive (`SO_KEEPALIVE`) with the given idle time before the first probe
    /// (`TCP_KEEPIDLE` on Linux, `TCP_KEEPALIVE` on macOS, `SIO_KEEPALIVE_VALS` on Windows, with
    /// Windows' default of 1 s between unanswered probes); `None` turns it off. The time
    /// between unanswered probes and their number are the system's elsewhere. OpenBSD sets
    /// only `SO_KEEPALIVE`: its idle time is system-wide (`net.inet.tcp.keepidle`). Default:
    /// 30 s (see [`Config::new`] for why).
    pub fn keepalive(mut self, value: Option<Duration>) -> Self {
        self.keepalive = value;
        self
    }

    /// The backlog passed to `listen(2)`. Default: 1024. The kernel caps it
    /// (`net.core.somaxconn` on Linux).
    pub fn listen_backlog(mut self, value: u32) -> Self {
        self.backlog = value;
        self
    }

    /// Whether dials with `PortUse::Reuse` leave from a listening port. Default: `true`.
    ///
    /// With `false`, listeners do not set `SO_REUSEPORT` and every dial uses an ephemeral port.
    /// The environment variable [`PORT_REUSE_ENV`] set to `false`, `f` or `0` turns reuse off
    /// even when this says `true`: it is the operator's switch. Platforms without `SO_REUSEPORT`
    /// (Windows, Solaris, illumos) never reuse ports.
    pub fn port_reuse(mut self, value: bool) -> Self {
        self.port_reuse = value;
        self
    }
}

impl Config {
    /// Whether `listen_on` may share a port that a socket outside this transport already holds.
    /// Default: `false`.
    ///
    /// With `SO_REUSEPORT`, Linux lets any socket of the same user bind a port another one
    /// listens on, and then splits incoming connections between them: two daemons could
    /// silently share one port. By default `listen_on` first checks with a probe socket without
    /// `SO_REUSEPORT` and refuses such a port with `AddrInUse`. Ports this transport already
    /// listens on (or dials from) are shared as before. Set this to `true` to share on purpose,
    /// for example with a second process of your own.
    pub fn foreign_port_sharing(mut self, value: bool) -> Self {
        self.foreign_port_sharing = value;
        self
    }

    /// At most how many dropped connections are kept open until their remote closes. Default:
    /// an eighth of the soft descriptor limit (`RLIMIT_NOFILE`, read with `getrlimit` when the
    /// [`Transport`](crate::Transport) is created), at most 8,192; 128 on platforms without
    /// such a limit (Windows).
    ///
    /// Where closing sockets are held (every platform but Linux; on Linux with
    /// [`hold_closing_sockets`](Self::hold_closing_sockets)), a connection that left from a
    /// listening port and is dropped before its remote closed its side is kept open, at most
    /// 10 s, until the remote's FIN arrives: only then may its
    /// (local, remote) pair be dialed again (see [`TcpStream`](crate::TcpStream)). Each one
    /// holds a descriptor. Past this bound a dropped connection is closed at once: the kernel
    /// keeps it as an orphan, which holds no descriptor, and the pair is passed over (no system
    /// call) for as long as the kernel may keep that orphan, `tcp_fin_timeout` (Linux, read
    /// from `/proc/sys/net/ipv4/tcp_fin_timeout`; 60 s elsewhere) and a second, since without
    /// the socket the remote's FIN cannot be seen. So peers that never close can take at most
    /// this many descriptors; the cost past the bound is that their pairs stay unused longer.
    /// `0` keeps none open. [`ReuseTable::closing_sockets`](crate::ReuseTable::closing_sockets)
    /// tells how many are kept now.
    pub fn max_closing_sockets(mut self, value: usize) -> Self {
        self.max_closing_sockets = Some(value);
        self
    }

    /// Keeps a connection dropped before its remote closed open until the remote's FIN (or
    /// 10 s), as on every platform other than Linux, rather than closing it at once. Default:
    /// `false`.
    ///
    /// On Linux, where the kernel answers sock_diag requests, such a connection is closed at
    /// once (our FIN goes out as `close` sends it) and its (local, remote) pair is left to the
    /// kernel, which finishes the connection without a descriptor: a dial that meets the pair
    /// looks it up (one netlink request) and takes it once the kernel holds no more than a
    /// TIME_WAIT entry for it, as it would after the remote's FIN on a held socket. Holding
    /// costs a descriptor per closing connection and a reactor event when the remote's FIN
    /// arrives; closing at once costs nothing until a dial meets the pair. Elsewhere (and where
    /// sock_diag is denied, as on Android) connections are always held: this setting changes
    /// nothing there.
    pub fn hold_closing_sockets(mut self, value: bool) -> Self {
        self.hold_closing_sockets = value;
        self
    }
}

impl Config {
    /// How long a dial that left from a listening port keeps trying again from the same port when
    /// the remote side refuses it: a RST (`ECONNREFUSED`), or an ICMP "destination unreachable"
    /// from a firewall ("administratively prohibited": `EACCES` over IPv6, `EHOSTUNREACH` over
    /// IPv4 on Linux; "host unreachable"). Default: 500 ms. `Duration::ZERO` returns the
    /// refusal at once.
    ///
    /// In a hole punch (DCUtR) both peers dial each other at about the same time, each from its
    /// listening port. A SYN that reaches the other side's NAT before that NAT has seen its own
    /// host's SYN finds no mapping, and many home routers answer it with a RST (IPv6 firewalls
    /// also with an ICMP rejection, which ends the dial as surely). A moment later
    /// the mapping exists and a new SYN from the same port passes: so the dial sends its next
    /// SYN, which also reopens the mapping in our own NAT that the RST closed, for the remote's
    /// SYN; 16 SYNs at most, until the window has passed. A refusal that took 5 ms or more came
    /// from across a WAN, and the next SYN leaves at once: the remote's own SYN often comes
    /// right behind its NAT's RST, and meets our NAT's RST until our next SYN has left. A RST
    /// that came sooner is from a host nearby, and the next SYN leaves 1 to 3 ms later (at
    /// random, about 2 ms on average: tokio's timer counts whole milliseconds). After an ICMP
    /// rejection the next SYN leaves at once, near or far: our NAT's mapping stays open, and a
    /// remote SYN that passes it between two of our SYNs reaches our listener, where a Linux NAT
    /// drops the connection's data (`docs/nat-zoo.md`, `prohibited-listen-side`). The window
    /// spans the next attempt of a go-libp2p peer that leads a hole punch and dialed first: it
    /// takes the first refusal as final and tries again about 400 ms later, when our SYN in
    /// flight lets its new SYN through our NAT (`docs/nat-zoo.md`, asymmetric paths).
    /// Only dials from a listening port to a non-loopback address are retried (on loopback
    /// there is no NAT); a dial still refused then fails with the last refusal's error.
    ///
    /// The dial of the side that leads a hole punch (DCUtR's dial with the role overridden:
    /// `DialOpts::role` is `Endpoint::Listener`) fails then too, so that DCUtR starts its next
    /// attempt, but its SYNs go on in the background for 2 s more (64 at most; DCUtR's next
    /// attempt comes about two and a half relayed round trips later), for the next dial on its
    /// pair to take over. A go-libp2p peer dials as soon as it reads our `Sync`, before our own
    /// next dial leaves: a SYN of ours still in flight lets its SYN through our NAT (a
    /// simultaneous open). The other side's dial in a hole punch is a plain one; with
    /// `Identify` in the swarm (feature `identify`), a plain dial to a peer the swarm holds a
    /// relayed connection with (`/p2p-circuit`) gets the same 2 s, since DCUtR punches only to
    /// such peers: the go-libp2p peer that leads a punch tries again about 400 ms to 650 ms
    /// after its first attempt, past our dial's window. `Duration::ZERO` turns this off as well.
    ///
    /// A second dial to the same remote that finds the pair held by a dial that is refused and
    /// trying again waits for that dial to end (within this window and 50 ms), then chooses
    /// again, rather than leave from an ephemeral port at once: DCUtR's next attempt dials
    /// while the last one's dial may still be trying, and only the listening port's SYNs keep
    /// our NAT's mapping open for the remote's.
    ///
    /// The cost: a dial to a port where nothing listens (a stale address) fails later and sends
    /// more SYNs. With no round trip, 16 SYNs and about 32 ms instead of one SYN and 11 us;
    /// across a WAN, one SYN per round trip, until 16 SYNs or the window. The retry
    /// applies to every dial from a listening port because the hole punch that needs it cannot
    /// be told apart from other dials; the figures and the reasoning are in
    /// `docs/performance.md` ("Refused dials"). A node that never punches holes can set
    /// `Duration::ZERO`.
    pub fn rst_retry_window(mut self, value: Duration) -> Self {
        self.rst_retry_window = value;
        self
    }

    /// How long a dial from a listening port to a non-loopback address that is dropped before
    /// it connected (a swarm drops its other dials to a peer once one connects) keeps its
    /// socket half-open, for the next dial to the same remote from the same address to take
    /// over. Default: 10 s. `Duration::ZERO` closes the socket at once.
    ///
    /// A dial whose SYN the remote's firewall drops leaves an entry for its pair in our own
    /// firewall's connection tracking, which outlives its socket (Linux keeps it 2 minutes). If
    /// a hole punch on that pair follows and the remote's SYN arrives before ours, the entry
    /// lets it in, our listener answers from a new socket whose sequence number is not the one
    /// the entry recorded, and the firewall drops every answer as invalid: the punch fails, and
    /// so does each of DCUtR's attempts while the half-open connection holds the pair. Kept
    /// open, the dropped dial's socket answers the remote's SYN itself (a simultaneous open,
    /// with the sequence number the firewall expects), and the punch's own dial on the pair
    /// returns that connection. `docs/nat-zoo.md` ("IPv6 as deployed") has the measurements.
    ///
    /// Meanwhile the kernel sends the dropped dial's SYN again (after 1, 3 and 7 s) and the
    /// pair stays held; a connection it makes that no dial takes over within 2 s is closed
    /// (also when the window ends first). At most 64 dropped dials are kept at once; past that
    /// they close at once.
    pub fn given_up_dial_window(mut self, value: Duration) -> Self {
        self.given_up_dial_window = value;
        self
    }

    /// With the `metrics` feature on Linux: the shortest time between two samples of the
    /// connections' TCP_INFO (round-trip time, segments, retransmissions, bytes; see
    /// [`Transport::register_metrics`](crate::Transport#method.register_metrics)). A sample is
    /// taken when the registry is encoded (a scrape) and the last one is at least this old, so
    /// a scrape every 15 s samples at every scrape, and several scrapers at once sample no more
    /// often than this. Default: 10 s, as go-libp2p. `Duration::ZERO` samples at every scrape.
    pub fn tcp_info_interval(mut self, value: Duration) -> Self {
        self.tcp_info_interval = value;
        self
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether the value of [`PORT_REUSE_ENV`] turns port reuse off.
pub(crate) fn env_disables_reuse(value: Option<&OsStr>) -> bool {
    value
        .and_then(OsStr::to_str)
        .is_some_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "false" | "f" | "0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let config = Config::default();
        assert!(config.nodelay);
        assert_eq!(config.ttl, None);
        assert_eq!(config.linger, None);
        assert_eq!(config.keepalive, Some(Duration::from_secs(30)));
        assert_eq!(config.backlog, 1024);
        assert!(config.port_reuse);
        assert!(!config.foreign_port_sharing);
        assert_eq!(config.rst_retry_window, Duration::from_millis(500));
        assert_eq!(config.given_up_dial_window, Duration::from_secs(10));
        assert_eq!(config.tcp_info_interval, Duration::from_secs(10));
        assert_eq!(config.max_closing_sockets, None);
        assert!(!config.hold_closing_sockets);
    }

    #[test]
    fn setters() {
        let config = Config::new()
            .nodelay(false)
            .ttl(7)
            .linger(Some(Duration::ZERO))
            .keepalive(Some(Duration::from_secs(9)))
            .tcp_info_interval(Duration::ZERO)
            .listen_backlog(5)
            .port_reuse(false)
            .max_closing_sockets(3)
            .hold_closing_sockets(true)
            .given_up_dial_window(Duration::ZERO);
        assert!(!config.nodelay);
        assert_eq!(config.ttl, Some(7));
        assert_eq!(config.linger, Some(Duration::ZERO));
        assert_eq!(config.keepalive, Some(Duration::from_secs(9)));
        assert_eq!(config.tcp_info_interval, Duration::ZERO);
        assert_eq!(Config::new().keepalive(None).keepalive, None);
        assert_eq!(config.backlog, 5);
        assert!(!config.port_reuse);
        assert_eq!(config.max_closing_sockets, Some(3));
        assert!(config.hold_closing_sockets);
        assert_eq!(config.given_up_dial_window, Duration::ZERO);
    }

    #[test]
    fn environment_values() {
        let table: &[(Option<&str>, bool)] = &[
            (None, false),
            (Some("false"), true),
            (Some("f"), true),
            (Some("0"), true),
            (Some("FALSE"), true),
            (Some(" F "), true),
            (Some("true"), false),
            (Some("1"), false),
            (Some(""), false),
            (Some("no"), false),
        ];
        for (value, disables) in table {
            assert_eq!(
                env_disables_reuse(value.map(OsStr::new)),
                *disables,
                "{value:?}"
            );
        }
    }
}
