//! A TCP transport for [rust-libp2p](https://github.com/libp2p/rust-libp2p) whose outgoing
//! connections leave from the node's own listening ports.
//!
//! That one property is what makes TCP hole punching (libp2p's DCUtR) work behind NATs: a
//! port-preserving NAT maps the listening port to the same public port for every destination, so
//! the address other peers observe (identify's observed address) is one they can dial.
//!
//! # Example
//!
//! ```
//! use libp2p::{SwarmBuilder, noise, ping, tls, yamux};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut swarm = SwarmBuilder::with_new_identity()
//!     .with_tokio()
//!     .with_other_transport(libp2p_reuseport::tcp(
//!         libp2p_reuseport::Config::new(),
//!         (tls::Config::new, noise::Config::new),
//!         yamux::Config::default,
//!     ))?
//!     .with_behaviour(|_| ping::Behaviour::default())?
//!     .build();
//! swarm.listen_on("/ip4/127.0.0.1/tcp/0".parse()?)?;
//! # Ok(())
//! # }
//! ```
//!
//! [`tcp`] takes the arguments of libp2p's `SwarmBuilder::with_tcp`, with this crate's
//! [`Config`], so moving from libp2p-tcp changes one line; [`upgrade`] does the same for a
//! transport you made yourself. Do not also call `with_tcp` on the builder: libp2p-tcp would be
//! asked first for every TCP address and this transport would never dial.
//!
//! # How the source of a dial is chosen
//!
//! Every listener registers its bound address in the transport's port-reuse table the moment it
//! binds (a wildcard listener as `0.0.0.0:port` / `[::]:port`), reference-counted, IPv4 and IPv6
//! apart. A dial with `PortUse::Reuse` then picks its source:
//!
//! | destination | first choice | then | else |
//! |---|---|---|---|
//! | loopback (`127.0.0.0/8`, `::1`) | a listener on a loopback IP of the same family | a wildcard listener, bound to `127.0.0.1` / `::1` | ephemeral port |
//! | any other IP | a listener on exactly the IP the kernel routes from | a wildcard listener, bound to that IP | ephemeral port |
//!
//! - "The IP the kernel routes from" is the local address of a UDP socket connected to the
//!   destination: a route lookup, no packet is sent. A listener on another local IP is never
//!   used (its packets would leave through the wrong interface or be dropped by reverse-path
//!   filters).
//! - On Linux, where the kernel routes from an IPv6 temporary ("privacy") address, a dial from
//!   a listening port leaves from the stable address of the same interface and prefix instead:
//!   the kernel replaces temporary addresses every day or so, and the address peers learned (a
//!   relay's observation of a connection made before the change) must stay the one the port's
//!   dials leave from, or a stateful firewall drops the other side of a hole punch. Dials from
//!   ephemeral ports keep the kernel's choice. Listen on the wildcard address or on the stable
//!   one: a listener bound to a temporary address itself is not chosen while a stable address
//!   exists.
//! - Within a column, the listener registered first wins, every time: the choice is stable, so
//!   the address peers observe is stable.
//! - A candidate whose (local, remote) pair is held by one of our connections (dialed, or
//!   accepted by its listener), or that is the destination itself (a TCP self-connection), is
//!   skipped without a system call ([`Fallback::Busy`] when none is left).
//! - If the kernel still refuses the port (`EADDRINUSE` or `EADDRNOTAVAIL` from `bind` or
//!   `connect`), the dial is retried once from an ephemeral port ([`Fallback::KernelRefused`]).
//!   Timeouts and unreachable networks are returned as they are, never retried.
//! - A dial from a listening port that the remote side refuses with a RST or an ICMP rejection,
//!   as a NAT or firewall that has not opened yet does in a hole punch, sends its next SYN from
//!   the same port, at once across a WAN and about 2 ms later from a host nearby:
//!   see [`Config::rst_retry_window`] (500 ms, at most 16 SYNs). The `metrics`
//!   feature counts these SYNs (`rst_retries_total`). Meanwhile the dial claims its pair: a
//!   connection from that remote that its listener accepts on the same pair (the other side's
//!   SYN of the hole punch, which an ICMP rejection, unlike a RST, lets through) is returned as
//!   the dial's connection rather than reported by the listener, so that each side runs the
//!   role its dial asked for. The dial that leads a hole punch (DCUtR's, with the role
//!   overridden) still refused when the window ends fails, and its SYNs go on for one more
//!   window, for the next dial on the pair to take over.
//! - A dial from a listening port to a non-loopback address that is dropped before it
//!   connected stays half-open for [`Config::given_up_dial_window`] (10 s), and the next dial
//!   to the same remote from the same address takes it over: closed, it would leave its
//!   firewall's entry for the pair behind, and a hole punch on that pair would fail whenever
//!   the other side's SYN came first.
//! - `PortUse::New`: an ephemeral port, no `SO_REUSEPORT`.
//!
//! Every fallback is logged at `debug` with its reason, and every connection says what happened:
//! [`TcpStream::port_origin`] is [`Accepted`](PortOrigin::Accepted),
//! [`Reused`](PortOrigin::Reused), or [`Ephemeral(reason)`](PortOrigin::Ephemeral). The swarm
//! only records what a dial asked for, so use `Transport::map` to see it:
//!
//! ```
//! use libp2p::Transport as _;
//! let transport = libp2p_reuseport::Transport::default().map(|stream, _endpoint| {
//!     tracing::info!(local = ?stream.local_addr(), origin = ?stream.port_origin(), "tcp connection");
//!     stream
//! });
//! # let _ = transport;
//! ```
//!
//! [`Transport::reuse_table`] gives a handle on the table: its listening addresses, the open and
//! closing connections on them, and [`ReuseTable::source_for`], the source a dial would use now.
//!
//! # Closing without collisions
//!
//! A connection's (local, remote) pair can only be used again once the old connection is gone on
//! both sides. When a stream on a listening port (dialed from it, or accepted while port reuse is
//! on) is dropped before the remote closed its side, the pair is "closing" until the remote's
//! FIN arrives, and no dial tries it: the kernel would refuse it (`EADDRNOTAVAIL`) or, worse,
//! take it over and reset the remote's old connection. A redial in that window uses the next
//! candidate or an ephemeral port at once ([`Fallback::Busy`]), without a failed system call and
//! without waiting. How the crate learns that the remote's FIN has come depends on the platform:
//!
//! - Linux: dropping closes the socket at once, as any TCP stream's drop does, and the kernel
//!   finishes the connection without a descriptor. A dial that meets the pair asks the kernel
//!   about that one 4-tuple (sock_diag, one netlink request): the pair is free once the kernel
//!   holds no more than a TIME_WAIT entry for it. The table forgets the pairs the kernel has
//!   finished with about once a second while connections are dropped (a lookup each, or one dump
//!   of the kernel's finishing connections when there are many).
//! - Elsewhere (and on Linux with [`Config::hold_closing_sockets`], or where sock_diag is
//!   denied, as on Android): dropping sends the FIN and the transport keeps the socket, in one
//!   queue with one task, until the remote's FIN arrives, at most 10 s. The pair is free as
//!   soon as the reactor has seen the remote's FIN (no system call to find out), even before the
//!   old socket is closed.
//!
//! With [`Config::linger`] set, sockets close exactly as configured and are not held.
//!
//! ## A bound on held sockets
//!
//! Where sockets are held, each held socket is a descriptor, and peers that never close (slow or hostile ones) could
//! otherwise take them all: a burst of drops would push the process into `EMFILE`, and accepts
//! and dials would fail for everyone. So at most [`Config::max_closing_sockets`] are held (by
//! default an eighth of `RLIMIT_NOFILE`: 128 with the common limit of 1,024, 2,500 with 20,000).
//!
//! Past the bound a dropped connection is closed at once, and its pair is still passed over.
//! The kernel keeps the closed connection as an orphan in `FIN_WAIT_2`, holding no descriptor,
//! until the remote's FIN arrives or `tcp_fin_timeout` passes (60 s by default); meanwhile a new
//! connection on the pair is refused (`EADDRNOTAVAIL`) or takes the orphan over and resets the
//! remote's old connection (what loopback shows). Without the socket the remote's FIN cannot be
//! seen, so the pair is passed over for that whole lifetime, without a system call. A held
//! socket whose remote does not close within 10 s is closed and its pair orphaned the same way.
//! The cost past the bound is reuse, not descriptors and not failed system calls: those pairs
//! stay unused up to a minute longer, each as a table entry of about 100 bytes that the table
//! drops once it expires.
//!
//! [`ReuseTable::closing_sockets`] says how many sockets are held;
//! [`ReuseTable::closing_connections`] counts every pair passed over, held, orphaned or left to
//! the kernel.
//!
//! # One port for TCP and WebSocket
//!
//! Browsers reach libp2p nodes over WebSocket, so nodes listen on `/tcp/4001/ws` next to
//! `/tcp/4001`, and operators would rather forward one port. To serve libp2p over plain TCP and
//! over WebSocket (`/ws`, `/tls/ws`) on one listening port, with libp2p-websocket, use the sides
//! of a [`SharedListeners`] set instead of a [`Transport`]: each accepted connection goes to the
//! side its first bytes are for, and dials from every side leave from the shared port.
//!
//! # Metrics
//!
//! With the `metrics` feature, [`Transport::register_metrics`](Transport#method.register_metrics)
//! registers the transport's counters, gauges and histograms (every series is listed there) in
//! a prometheus-client `Registry`, the one `libp2p::metrics` uses: dials by the origin of their
//! port, accepts, the port-reuse table, connection lifetimes and, on Linux, the round-trip
//! times, segments and bytes of the open connections from their TCP_INFO, sampled at scrapes.
//! Without the feature the transport has no counting code at all. Register them while building
//! the transport:
//!
//! ```
//! # #[cfg(feature = "metrics")]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use libp2p::{SwarmBuilder, Transport as _, core::upgrade::Version, noise, ping, yamux};
//! use prometheus_client::{encoding::text::encode, registry::Registry};
//!
//! let mut registry = Registry::default(); // or libp2p::metrics::Registry
//! let swarm = SwarmBuilder::with_new_identity()
//!     .with_tokio()
//!     .with_other_transport(|key| {
//!         let transport = libp2p_reuseport::Transport::new(libp2p_reuseport::Config::new());
//!         transport.register_metrics(&mut registry);
//!         Ok(transport
//!             .upgrade(Version::V1Lazy)
//!             .authenticate(noise::Config::new(key)?)
//!             .multiplex(yamux::Config::default()))
//!     })?
//!     .with_behaviour(|_| ping::Behaviour::default())?
//!     .build();
//!
//! // What to serve at /metrics:
//! let mut text = String::new();
//! encode(&mut text, &registry)?;
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "metrics"))]
//! # fn main() {}
//! ```
//!
//! # Configuration and platforms
//!
//! [`Config::new`] lists every option, its socket option and its default. Listeners and reusing
//! dials set `SO_REUSEPORT` on Linux, Android, macOS, iOS and the BSDs; on Windows a dial sets
//! `SO_REUSEADDR` beside a listener that shares nothing, as Microsoft's rules for the same
//! account allow; Solaris and illumos work with port reuse off. IPv6 sockets set
//! `IPV6_V6ONLY`. The policy per platform and who else can take the port: `docs/platforms.md`
//! in the repository.
//!
//! # Hole punching behind port-translating NATs (feature `identify`)
//!
//! libp2p-identify 0.48 replaces the port of an observed address with a listening port when the
//! two differ. Behind a NAT that maps the listening port to another public port, or for the
//! second of two hosts listening on one port behind one NAT, that is an address nobody can dial,
//! and DCUtR fails. With the `identify` feature, use `Identify` in place of identify's
//! behaviour: it also reports what the remote observes for connections that left from the
//! listening port, unchanged. And it warns (`tracing`, level `warn`, with the fix) about the
//! mistakes that silently break hole punching: another TCP transport taking the listening
//! addresses (`SwarmBuilder::with_tcp`), a foreign socket sharing a listening port
//! (`SwarmBuilder::with_websocket`'s libp2p-tcp listener; Linux), port reuse off, a dial before
//! `listen_on`.

// docs.rs builds with `--cfg docsrs` on nightly: mark items that need a feature (metrics,
// identify).
#![cfg_attr(docsrs, feature(doc_cfg))]

// Modules depend one way: `origin`, then `port_reuse` (bookkeeping, holds no socket), then
// `closing` (holds sockets with their `port_reuse::Lease`), then `stream`, then `dial` and
// `listener`, then `transport`, which wires them and owns the closing task. `limits` (what the
// OS allows: the descriptor limit, the kernel's orphan lifetime) is read by `transport` alone.
// `diagnostics` (the registry of live transports and listening sockets, and the checks for
// misconfigurations) is fed by `transport` and asked by `identify`, the swarm behaviour.

// The benchmark's hooks (benches/compare): hidden from the docs, no feature of their own, not
// part of the API, free to change.
#[doc(hidden)]
#[path = "bench.rs"]
pub mod __bench;
mod builder;
mod closing;
mod config;
mod diagnostics;
mod dial;
mod error;
// The behaviour needs libp2p-swarm and libp2p-identify, optional dependencies.
#[cfg(feature = "identify")]
mod identify;
mod limits;
mod listener;
mod metrics;
mod multiaddr;
mod origin;
mod port_reuse;
mod relayed;
mod route;
mod shared;
mod socket;
mod stream;
mod sys;
mod transport;

// Needs the `identify` feature (see the module).
#[cfg(feature = "identify")]
pub use crate::identify::Identify;
pub use crate::{
    builder::{IntoMultiplexerUpgrade, IntoSecurityUpgrade, SelectSecurityUpgrade, tcp, upgrade},
    config::{Config, PORT_REUSE_ENV},
    error::raw_os_error,
    origin::{Fallback, PortOrigin},
    port_reuse::ReuseTable,
    shared::{SharedConfig, SharedListeners, SharedStats, SharedTransport},
    stream::TcpStream,
    transport::Transport,
};

// Compiles the README's examples as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
