//! A TCP transport for [rust-libp2p](https://github.com/libp2p/rust-libp2p) whose outgoing
//! connections leave from the node's own listening ports.
//!
//! That one property is what makes TCP hole punching (libp2p's DCUtR) work behind NATs: a
//! port-preserving NAT maps the listening port to the same public port for every destination, so
//! the address other peers observe (identify's observed address) is one they can dial.
//!
//! A dial with `PortUse::Reuse` picks its source from the transport's port-reuse table,
//! deterministically:
//!
//! | destination | first choice | then | else |
//! |---|---|---|---|
//! | loopback | a listener on a loopback IP of its family | a wildcard listener, bound to the loopback IP | ephemeral port |
//! | anything else | a listener on exactly the IP the kernel routes from | a wildcard listener, bound to that IP | ephemeral port |
//!
//! Within each column the listener registered first wins. A candidate whose (local, remote) pair
//! is already used by a live connection, or that is the destination itself, is skipped without
//! a system call. If the kernel still refuses the listening port (`EADDRINUSE`,
//! `EADDRNOTAVAIL`), the dial is retried once from an ephemeral port. Every
//! [`TcpStream`] says where its port came from ([`TcpStream::port_origin`]).
//!
//! Listeners and reusing dials set `SO_REUSEPORT` (unix except Solaris and illumos); elsewhere
//! the transport works with port reuse off. IPv6 sockets set `IPV6_V6ONLY`.
//!
//! # Example
//!
//! ```
//! use libp2p::{SwarmBuilder, Transport as _, core::upgrade::Version, noise, ping, yamux};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut swarm = SwarmBuilder::with_new_identity()
//!     .with_tokio()
//!     .with_other_transport(|key| {
//!         Ok(libp2p_reuseport::Transport::new(libp2p_reuseport::Config::new())
//!             .upgrade(Version::V1Lazy)
//!             .authenticate(noise::Config::new(key)?)
//!             .multiplex(yamux::Config::default()))
//!     })?
//!     .with_behaviour(|_| ping::Behaviour::default())?
//!     .build();
//! swarm.listen_on("/ip4/127.0.0.1/tcp/0".parse()?)?;
//! # Ok(())
//! # }
//! ```
//!
//! Do not also call `with_tcp` on the builder: libp2p-tcp would be asked first for every TCP
//! address and this transport would never dial.
//!
//! To serve libp2p over plain TCP and over WebSocket (`/ws`, `/tls/ws`) on one listening port,
//! with libp2p-websocket, use the sides of a [`SharedListeners`] set instead: each accepted
//! connection goes to the side its first bytes are for. `SwarmBuilder::with_websocket` builds a
//! libp2p-tcp listener of its own, which on Linux joins this transport's port through
//! `SO_REUSEPORT` and takes part of its connections.
//!
//! # Hole punching behind port-translating NATs (feature `identify`)
//!
//! libp2p-identify 0.48 replaces the port of an observed address with a listening port when the
//! two differ. Behind a NAT that maps the listening port to another public port, or for the
//! second of two hosts listening on one port behind one NAT, that is an address nobody can dial,
//! and DCUtR fails. With the `identify` feature, use `Identify` in place of identify's
//! behaviour: it also reports what the remote observes for connections that left from the
//! listening port, unchanged. And it warns (`tracing`, level `warn`) about the mistakes above:
//! another TCP transport taking the listening addresses, a foreign socket sharing a listening
//! port (Linux), port reuse off, a dial before `listen_on`.

// docs.rs builds with `--cfg docsrs` on nightly: mark items that need a feature (metrics,
// identify).
#![cfg_attr(docsrs, feature(doc_cfg))]

// Modules depend one way: `origin`, then `port_reuse` (bookkeeping, holds no socket), then
// `closing` (holds sockets with their `port_reuse::Lease`), then `stream`, then `dial` and
// `listener`, then `transport`, which wires them and owns the closing task. `limits` (what the
// OS allows: the descriptor limit, the kernel's orphan lifetime) is read by `transport` alone.
// `diagnostics` (the registry of live transports and listening sockets, and the checks for
// misconfigurations) is fed by `transport` and asked by `identify`, the swarm behaviour.

// The benchmark's hooks exist only with the feature benches/compare turns on: the default public
// API stays as documented.
#[cfg(feature = "bench-internals")]
#[doc(hidden)]
pub mod bench_support;
mod closing;
mod config;
mod diagnostics;
mod dial;
// The behaviour needs libp2p-swarm and libp2p-identify, optional dependencies.
#[cfg(feature = "identify")]
mod identify;
mod limits;
mod listener;
mod metrics;
mod multiaddr;
mod origin;
mod port_reuse;
mod route;
mod shared;
mod socket;
mod stream;
mod transport;

// Needs the `identify` feature (see the module).
#[cfg(feature = "identify")]
pub use crate::identify::Identify;
pub use crate::{
    config::{Config, PORT_REUSE_ENV},
    origin::{Fallback, PortOrigin},
    port_reuse::PortReuse,
    shared::{SharedListeners, SharedStats, SharedTransport},
    stream::TcpStream,
    transport::Transport,
};

// Compiles the README's examples as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
