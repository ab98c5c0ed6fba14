//! [`SharedTransport`]: one side of a shared listener set, as a [`libp2p_core::Transport`].

use std::{
    fmt, io,
    pin::Pin,
    task::{Context, Poll},
};

use libp2p_core::{
    Multiaddr,
    transport::{DialOpts, ListenerId, TransportError},
};

use super::{SharedListeners, classify::Kind, port::Share};
use crate::{
    TcpStream, error,
    listener::{Event, Listener, Listeners, Pairs},
    metrics::Metrics,
    multiaddr,
};

/// One side of a [`SharedListeners`] set: a TCP transport for `/ip4|ip6/<ip>/tcp/<port>` whose
/// listeners share the set's sockets and receive only the connections whose first bytes are of
/// this side's kind (multistream-select for [`SharedListeners::tcp`], HTTP for
/// [`SharedListeners::websocket`], TLS for [`SharedListeners::websocket_tls`]).
///
/// Each `listen_on` gets its own [`ListenerId`] events (`NewAddress`, `AddressExpired`,
/// `ListenerClosed`) whichever sides share the socket (a wildcard socket's interfaces are watched
/// per side); `remove_listener` leaves the socket to the other sides, and the socket closes, and
/// the port is free, when no side listens on it. Dials leave from the
/// set's listening ports as [`Transport`](crate::Transport)'s do, from the one port-reuse table
/// of the set.
///
/// `listen_on` joins a socket of the set already bound to exactly that address if this side
/// does not listen on it yet; for port 0, the oldest socket of the set on that IP that this side
/// does not listen on yet. Otherwise it binds a new socket. It fails with `AddrInUse` if this
/// side already listens on that address, or if the address overlaps a shared socket without
/// being it (`0.0.0.0:4001` and `127.0.0.1:4001`): listen on the same address on every side.
pub struct SharedTransport {
    kind: Kind,
    shared: SharedListeners,
    metrics: Metrics,
    /// Where the connections this side's listeners accept hold their pairs: the set's table.
    pairs: Option<Pairs>,
    listeners: Listeners<Share>,
}

impl SharedTransport {
    pub(crate) fn new(
        kind: Kind,
        shared: SharedListeners,
        metrics: Metrics,
        pairs: Option<Pairs>,
    ) -> Self {
        Self {
            kind,
            shared,
            metrics,
            pairs,
            listeners: Listeners::new(),
        }
    }
}

impl fmt::Debug for SharedTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedTransport")
            .field("kind", &self.kind.name())
            .field("listeners", &self.listeners.len())
            .finish()
    }
}

impl libp2p_core::Transport for SharedTransport {
    type Output = TcpStream;
    type Error = io::Error;
    type ListenerUpgrade = futures::future::Ready<io::Result<TcpStream>>;
    type Dial = crate::transport::Dial;

    fn listen_on(
        &mut self,
        id: ListenerId,
        addr: Multiaddr,
    ) -> Result<(), TransportError<io::Error>> {
        let Some(socket_addr) = multiaddr::listen_addr(&addr) else {
            return Err(TransportError::MultiaddrNotSupported(addr));
        };
        let listener = self
            .shared
            .join(self.kind, id, socket_addr)
            .and_then(|(share, bound)| {
                tracing::debug!(listener = %id, addr = %bound, kind = self.kind.name(), "listening on a shared socket");
                Listener::new(id, share, bound, self.pairs.clone(), self.metrics.clone())
            })
            .map_err(|e| {
                TransportError::Other(error::context(
                    e,
                    format_args!("listen on {socket_addr} ({})", self.kind.name()),
                ))
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
        self.shared.dial(addr, opts)
    }

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Event> {
        let this = &mut *self;
        this.listeners.poll(cx, &this.metrics)
    }
}
