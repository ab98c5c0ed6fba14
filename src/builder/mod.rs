//! The transport constructors for libp2p's `SwarmBuilder::with_other_transport`, taking the
//! arguments `SwarmBuilder::with_tcp` takes, so that moving from libp2p-tcp is a one-line change.
//!
//! libp2p's builder keeps its phases and its argument traits private: nothing outside libp2p
//! can add a `with_*` method. What it does accept from anyone is a constructor
//! `FnOnce(&Keypair) -> Result<transport, Box<dyn Error + Send + Sync>>`, and [`tcp`] and
//! [`upgrade`] make one.
//!
//! - `into_upgrade`: [`IntoSecurityUpgrade`] and [`IntoMultiplexerUpgrade`], the forms the
//!   security and the multiplexer come in;
//! - `select_security`: [`SelectSecurityUpgrade`], two security upgrades offered as one.

mod into_upgrade;
mod select_security;

use std::error::Error;

use futures::{AsyncRead, AsyncWrite};
use libp2p_core::{
    Negotiated, StreamMuxer,
    muxing::StreamMuxerBox,
    transport::Boxed,
    upgrade::{InboundConnectionUpgrade, OutboundConnectionUpgrade, UpgradeInfo, Version},
};
use libp2p_identity::{Keypair, PeerId};

pub use self::{
    into_upgrade::{IntoMultiplexerUpgrade, IntoSecurityUpgrade},
    select_security::SelectSecurityUpgrade,
};
use crate::{Config, TcpStream, Transport};

/// This crate's [`Transport`] with `config`, secured with `security` and multiplexed with
/// `muxer`, as the constructor that libp2p's `SwarmBuilder::with_other_transport` takes.
///
/// The arguments are those of `SwarmBuilder::with_tcp`, with this crate's [`Config`] in place
/// of libp2p-tcp's: `security` is a constructor from the keypair (`noise::Config::new`) or a
/// pair of them (`(tls::Config::new, noise::Config::new)`: both are offered, the first one
/// preferred), `muxer` a constructor (`yamux::Config::default`) or a pair of them (see
/// [`IntoSecurityUpgrade`] and [`IntoMultiplexerUpgrade`]). The connections are upgraded as
/// `with_tcp` upgrades them: multistream-select `Version::V1Lazy`, then the security, then the
/// muxer, which is boxed ([`StreamMuxerBox`]). The transport is made when the builder calls the
/// constructor, which fails only if a security constructor does (a TLS certificate that could
/// not be made, say): `with_other_transport` returns that error, wrapped in its
/// `TransportError`.
///
/// Moving from libp2p-tcp:
///
/// ```diff
/// -    .with_tcp(tcp::Config::default(), (tls::Config::new, noise::Config::new), yamux::Config::default)?
/// +    .with_other_transport(libp2p_reuseport::tcp(libp2p_reuseport::Config::new(), (tls::Config::new, noise::Config::new), yamux::Config::default))?
/// ```
///
/// ```
/// use libp2p::{SwarmBuilder, noise, ping, tls, yamux};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut swarm = SwarmBuilder::with_new_identity()
///     .with_tokio()
///     .with_other_transport(libp2p_reuseport::tcp(
///         libp2p_reuseport::Config::new(),
///         (tls::Config::new, noise::Config::new),
///         yamux::Config::default,
///     ))?
///     .with_behaviour(|_| ping::Behaviour::default())?
///     .build();
/// swarm.listen_on("/ip4/127.0.0.1/tcp/0".parse()?)?;
/// # Ok(())
/// # }
/// ```
///
/// With QUIC, call `with_quic` first: `with_other_transport` ends the builder's QUIC phase, so
/// `with_quic` is no longer offered after it. The order costs nothing: QUIC and TCP take
/// different addresses (`/udp/<port>/quic-v1`, `/tcp/<port>`), so each dial still goes to the
/// one transport that takes its address.
///
/// ```
/// use libp2p::{SwarmBuilder, noise, ping, tls, yamux};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut swarm = SwarmBuilder::with_new_identity()
///     .with_tokio()
///     .with_quic()
///     .with_other_transport(libp2p_reuseport::tcp(
///         libp2p_reuseport::Config::new(),
///         (tls::Config::new, noise::Config::new),
///         yamux::Config::default,
///     ))?
///     .with_behaviour(|_| ping::Behaviour::default())?
///     .build();
/// swarm.listen_on("/ip4/127.0.0.1/udp/0/quic-v1".parse()?)?;
/// swarm.listen_on("/ip4/127.0.0.1/tcp/0".parse()?)?;
/// # Ok(())
/// # }
/// ```
///
/// Do not also call `with_tcp`: libp2p-tcp would be asked first for every TCP address and this
/// transport would never dial. To keep a handle on the transport (its
/// [`reuse_table`](Transport::reuse_table) table, its metrics), or to upgrade the sides of a
/// [`SharedListeners`](crate::SharedListeners) set, make the transport yourself and use
/// [`upgrade`].
// The return type spells out what `with_other_transport` receives, rather than hide it in
// an alias that readers of the docs would have to look up.
#[allow(clippy::type_complexity)]
pub fn tcp<S, M, SecStream, SecError, MuxStream, MuxError>(
    config: Config,
    security: S,
    muxer: M,
) -> impl FnOnce(&Keypair) -> Result<Boxed<(PeerId, StreamMuxerBox)>, Box<dyn Error + Send + Sync>>
where
    S: IntoSecurityUpgrade,
    S::Upgrade: InboundConnectionUpgrade<
            Negotiated<TcpStream>,
            Output = (PeerId, SecStream),
            Error = SecError,
        > + OutboundConnectionUpgrade<
            Negotiated<TcpStream>,
            Output = (PeerId, SecStream),
            Error = SecError,
        > + Clone
        + Send
        + 'static,
    <S::Upgrade as InboundConnectionUpgrade<Negotiated<TcpStream>>>::Future: Send,
    <S::Upgrade as OutboundConnectionUpgrade<Negotiated<TcpStream>>>::Future: Send,
    <S::Upgrade as UpgradeInfo>::Info: Send,
    <<S::Upgrade as UpgradeInfo>::InfoIter as IntoIterator>::IntoIter: Send,
    SecStream: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    SecError: Error + Send + Sync + 'static,
    M: IntoMultiplexerUpgrade,
    M::Upgrade: InboundConnectionUpgrade<Negotiated<SecStream>, Output = MuxStream, Error = MuxError>
        + OutboundConnectionUpgrade<Negotiated<SecStream>, Output = MuxStream, Error = MuxError>
        + Clone
        + Send
        + 'static,
    <M::Upgrade as InboundConnectionUpgrade<Negotiated<SecStream>>>::Future: Send,
    <M::Upgrade as OutboundConnectionUpgrade<Negotiated<SecStream>>>::Future: Send,
    <M::Upgrade as UpgradeInfo>::Info: Send,
    <<M::Upgrade as UpgradeInfo>::InfoIter as IntoIterator>::IntoIter: Send,
    MuxStream: StreamMuxer + Send + 'static,
    MuxStream::Substream: Send + 'static,
    MuxStream::Error: Send + Sync + 'static,
    MuxError: Error + Send + Sync + 'static,
{
    move |keypair| upgrade(Transport::new(config), security, muxer)(keypair)
}

/// `transport` secured with `security` and multiplexed with `muxer`, as the constructor that
/// libp2p's `SwarmBuilder::with_other_transport` takes: [`tcp`] for a transport you made
/// yourself.
///
/// `transport` is any [`libp2p_core::Transport`] whose connections are byte streams: this
/// crate's [`Transport`] when you want to keep its [`reuse_table`](Transport::reuse_table)
/// handle, the sides of a [`SharedListeners`](crate::SharedListeners) set, or either of them
/// wrapped (libp2p-websocket, `or_transport`, `map`). `security` and `muxer` are what [`tcp`]
/// and `SwarmBuilder::with_tcp` take, and the connections are upgraded the same way.
///
/// libp2p over TCP and over WebSocket on one listening port, secured with TLS or Noise:
///
/// ```
/// use libp2p::{SwarmBuilder, Transport as _, noise, ping, tls, yamux};
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
///         (tls::Config::new, noise::Config::new),
///         yamux::Config::default,
///     ))?
///     .with_behaviour(|_| ping::Behaviour::default())?
///     .build();
/// swarm.listen_on("/ip4/127.0.0.1/tcp/0".parse()?)?;
/// swarm.listen_on("/ip4/127.0.0.1/tcp/0/ws".parse()?)?;
/// # Ok(())
/// # }
/// ```
// The return type spells out what `with_other_transport` receives, rather than hide it in
// an alias that readers of the docs would have to look up.
#[allow(clippy::type_complexity)]
pub fn upgrade<T, S, M, SecStream, SecError, MuxStream, MuxError>(
    transport: T,
    security: S,
    muxer: M,
) -> impl FnOnce(&Keypair) -> Result<Boxed<(PeerId, StreamMuxerBox)>, Box<dyn Error + Send + Sync>>
where
    T: libp2p_core::Transport + Send + Unpin + 'static,
    T::Output: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    T::Error: Send + Sync + 'static,
    T::Dial: Send + 'static,
    T::ListenerUpgrade: Send + 'static,
    S: IntoSecurityUpgrade,
    S::Upgrade: InboundConnectionUpgrade<
            Negotiated<T::Output>,
            Output = (PeerId, SecStream),
            Error = SecError,
        > + OutboundConnectionUpgrade<
            Negotiated<T::Output>,
            Output = (PeerId, SecStream),
            Error = SecError,
        > + Clone
        + Send
        + 'static,
    <S::Upgrade as InboundConnectionUpgrade<Negotiated<T::Output>>>::Future: Send,
    <S::Upgrade as OutboundConnectionUpgrade<Negotiated<T::Output>>>::Future: Send,
    <S::Upgrade as UpgradeInfo>::Info: Send,
    <<S::Upgrade as UpgradeInfo>::InfoIter as IntoIterator>::IntoIter: Send,
    SecStream: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    SecError: Error + Send + Sync + 'static,
    M: IntoMultiplexerUpgrade,
    M::Upgrade: InboundConnectionUpgrade<Negotiated<SecStream>, Output = MuxStream, Error = MuxError>
        + OutboundConnectionUpgrade<Negotiated<SecStream>, Output = MuxStream, Error = MuxError>
        + Clone
        + Send
        + 'static,
    <M::Upgrade as InboundConnectionUpgrade<Negotiated<SecStream>>>::Future: Send,
    <M::Upgrade as OutboundConnectionUpgrade<Negotiated<SecStream>>>::Future: Send,
    <M::Upgrade as UpgradeInfo>::Info: Send,
    <<M::Upgrade as UpgradeInfo>::InfoIter as IntoIterator>::IntoIter: Send,
    MuxStream: StreamMuxer + Send + 'static,
    MuxStream::Substream: Send + 'static,
    MuxStream::Error: Send + Sync + 'static,
    MuxError: Error + Send + Sync + 'static,
{
    move |keypair| {
        Ok(transport
            .upgrade(Version::V1Lazy)
            .authenticate(security.into_security_upgrade(keypair)?)
            .multiplex(muxer.into_multiplexer_upgrade())
            .boxed())
    }
}
