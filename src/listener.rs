//! A listener as a [`Stream`] of [`TransportEvent`]s: the listener's addresses (expanded per
//! interface for a wildcard listener), accepted connections, errors and, last, its closing; and
//! [`Listeners`], the set a transport polls.
//!
//! Where the connections come from is an [`Accept`]: a listening socket of the listener's own
//! ([`OwnSocket`]), or its share of a socket that several transports listen on
//! (`crate::shared`). While port reuse is on, each accepted connection holds its (local, remote)
//! pair in the port-reuse table ([`Pairs`]), so that no dial from the listening address tries
//! it.

use std::{
    collections::VecDeque,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, Waker},
    time::Duration,
};

use futures::{Stream, StreamExt, future, stream::SelectAll};
use if_watch::{IfEvent, tokio::IfWatcher};
use libp2p_core::{
    Multiaddr,
    transport::{ListenerId, TransportEvent},
};

use crate::{
    TcpStream,
    closing::Reaper,
    diagnostics, error,
    metrics::Metrics,
    multiaddr::to_multiaddr,
    origin::PortOrigin,
    port_reuse::{Accepted, Backlog, Lease, Registration, ReuseTable},
    stream::OnDrop,
    transport::Bound,
};

/// What a listener yields.
pub(crate) type Event = TransportEvent<future::Ready<io::Result<TcpStream>>, io::Error>;

/// The first pause after an accept error; it doubles with every further error up to
/// [`MAX_PAUSE`] and starts over after a successful accept.
const FIRST_PAUSE: Duration = Duration::from_millis(20);
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// Where the accepted connections of a listener registered for port reuse hold their pairs: the
/// transport's table, the task that keeps a connection dropped before its remote closed, and
/// whether to keep it (not with `SO_LINGER` set).
#[derive(Clone)]
pub(crate) struct Pairs {
    pub(crate) table: ReuseTable,
    pub(crate) reaper: Arc<Reaper>,
    pub(crate) on_drop: OnDrop,
}

/// Where a listener's connections come from.
pub(crate) trait Accept: Unpin {
    /// The next accepted connection and its remote address, or an error to report as a
    /// `ListenerError` (the source decides whether and how long to pause after it).
    fn poll_accept(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<(tokio::net::TcpStream, SocketAddr)>>;

    /// The next connection a dial took in from the socket's backlog and admitted to the
    /// port-reuse table (see [`Backlog`]), or an error to report as a `ListenerError`. Sources
    /// whose backlog no dial drains have none.
    fn poll_taken(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<Accepted>> {
        Poll::Pending
    }

    /// The backlog that dials drain, for sources that have one: the listener holds its
    /// admission lock ([`Backlog::admitting`]) from its accept until the table has the pair.
    /// Asked once, when the listener is created.
    fn drained_backlog(&self) -> Option<Arc<Backlog>> {
        None
    }
}

/// A listening socket of the listener's own, registered for port reuse (and listed for the
/// diagnostics) while it lives. The dials that leave from its address take in its waiting
/// connections through the shared [`Backlog`].
pub(crate) struct OwnSocket {
    backlog: Arc<Backlog>,
    registration: Option<Registration>,
    _listening: diagnostics::Listening,
    backoff: Backoff,
}

impl OwnSocket {
    /// A bound, listening socket, with its registration and its diagnostics entry.
    pub(crate) fn new(bound: Bound) -> Self {
        let backlog = Arc::new(Backlog::new(bound.socket, bound.addr));
        Self {
            registration: bound
                .registration
                .map(|registration| registration.with_backlog(backlog.clone())),
            backlog,
            _listening: bound.listening,
            backoff: Backoff::default(),
        }
    }
}

impl Accept for OwnSocket {
    fn poll_accept(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<(tokio::net::TcpStream, SocketAddr)>> {
        self.backoff.poll_accept(self.backlog.socket(), cx)
    }

    fn poll_taken(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Accepted>> {
        match self.registration {
            Some(_) => self.backlog.poll_taken(cx),
            None => Poll::Pending,
        }
    }

    fn drained_backlog(&self) -> Option<Arc<Backlog>> {
        self.registration.as_ref().map(|_| self.backlog.clone())
    }
}

/// Accepting with a pause after each error: accept errors (`EMFILE`, `ENOBUFS`) are not fatal,
/// and retrying at once would spin.
pub(crate) struct Backoff {
    /// No accepting until this fires.
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
    next_pause: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            pause: None,
            next_pause: FIRST_PAUSE,
        }
    }
}

impl Backoff {
    /// Accepts from `socket` unless paused; an error starts a pause.
    pub(crate) fn poll_accept(
        &mut self,
        socket: &tokio::net::TcpListener,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<(tokio::net::TcpStream, SocketAddr)>> {
        if let Some(pause) = self.pause.as_mut() {
            if pause.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.pause = None;
        }
        match socket.poll_accept(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(accepted)) => {
                self.next_pause = FIRST_PAUSE;
                Poll::Ready(Ok(accepted))
            }
            Poll::Ready(Err(e)) => {
                let pause = self.next_pause;
                self.next_pause = (pause * 2).min(MAX_PAUSE);
                self.pause = Some(Box::pin(tokio::time::sleep(pause)));
                tracing::debug!(addr = ?socket.local_addr().ok(), error = %e, ?pause, "accept failed, pausing accepts");
                Poll::Ready(Err(e))
            }
        }
    }
}

/// One listener and everything that belongs to it.
pub(crate) struct Listener<A> {
    id: ListenerId,
    /// The bound address: the port is concrete, the IP may be unspecified.
    addr: SocketAddr,
    /// `addr` as a multiaddr: the local address of every connection a listener on a specific IP
    /// accepts, made once.
    listen_addr: Multiaddr,
    /// `None` once closed: the source of connections (with its socket or its share of one) and
    /// the interface watcher are released at once, the stream then yields what is queued and
    /// ends.
    open: Option<Open<A>>,
    /// Events to yield before anything else. Holds at most the first address and the closing.
    queued: VecDeque<Event>,
    /// The task that last polled, woken when the listener is closed from outside.
    waker: Option<Waker>,
}

struct Open<A> {
    source: A,
    /// The source's [`Accept::drained_backlog`], asked once.
    backlog: Option<Arc<Backlog>>,
    /// Reports the interface addresses of a wildcard listener; `None` for a specific address.
    if_watcher: Option<IfWatcher>,
    /// Where accepted connections hold their pairs; `None` while port reuse is off (no dial
    /// leaves from the listening port then).
    pairs: Option<Pairs>,
    /// Where accepted connections are tracked while they live.
    metrics: Metrics,
}

impl<A> Open<A> {
    /// The event for an accepted connection on `local` (`local_addr`, as a multiaddr), its pair
    /// held by `lease` (when port reuse is on).
    fn incoming(
        &self,
        listener_id: ListenerId,
        io: tokio::net::TcpStream,
        (local, local_addr): (SocketAddr, Multiaddr),
        remote: SocketAddr,
        lease: Option<Lease>,
    ) -> Event {
        let tracked = self
            .metrics
            .track(PortOrigin::Accepted, || Some(local), remote);
        let stream = match (&self.pairs, lease) {
            (Some(pairs), Some(lease)) => TcpStream::accepted(
                io,
                Some((lease, pairs.reaper.clone())),
                pairs.on_drop,
                tracked,
            ),
            _ => TcpStream::accepted(io, None, OnDrop::Close, tracked),
        };
        TransportEvent::Incoming {
            listener_id,
            upgrade: future::ready(Ok(stream)),
            local_addr,
            send_back_addr: to_multiaddr(remote),
        }
    }
}

impl<A: Accept> Listener<A> {
    /// A listener with the id `id` on the bound address `addr`, its connections from `source`,
    /// their pairs held in `pairs`, tracked in `metrics`.
    pub(crate) fn new(
        id: ListenerId,
        source: A,
        addr: SocketAddr,
        pairs: Option<Pairs>,
        metrics: Metrics,
    ) -> io::Result<Self> {
        let mut queued = VecDeque::with_capacity(2);
        let listen_addr = to_multiaddr(addr);
        let if_watcher = if addr.ip().is_unspecified() {
            Some(IfWatcher::new().map_err(|e| error::context(e, "watch interfaces"))?)
        } else {
            queued.push_back(TransportEvent::NewAddress {
                listener_id: id,
                listen_addr: listen_addr.clone(),
            });
            None
        };
        Ok(Self {
            id,
            addr,
            listen_addr,
            open: Some(Open {
                backlog: source.drained_backlog(),
                source,
                if_watcher,
                pairs,
                metrics,
            }),
            queued,
            waker: None,
        })
    }

    pub(crate) fn id(&self) -> ListenerId {
        self.id
    }

    /// Closes the socket now and queues `ListenerClosed`. Returns false if already closed.
    pub(crate) fn close(&mut self) -> bool {
        if self.open.take().is_none() {
            return false;
        }
        tracing::debug!(listener = %self.id, addr = %self.addr, "listener closed");
        self.queued.push_back(TransportEvent::ListenerClosed {
            listener_id: self.id,
            reason: Ok(()),
        });
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
        true
    }

    fn poll_interfaces(&mut self, cx: &mut Context<'_>) -> Poll<Event> {
        let Some(open) = self.open.as_mut() else {
            return Poll::Pending;
        };
        let Some(watcher) = open.if_watcher.as_mut() else {
            return Poll::Pending;
        };
        while let Poll::Ready(Some(event)) = watcher.poll_next_unpin(cx) {
            let (up, net) = match event {
                Ok(IfEvent::Up(net)) => (true, net),
                Ok(IfEvent::Down(net)) => (false, net),
                Err(e) => {
                    // A failed watcher keeps failing; stop watching, keep accepting.
                    open.if_watcher = None;
                    let error = error::context(
                        e,
                        format_args!(
                            "interface watcher of listener on {} failed, its addresses are no \
                             longer tracked",
                            self.addr
                        ),
                    );
                    return Poll::Ready(TransportEvent::ListenerError {
                        listener_id: self.id,
                        error,
                    });
                }
            };
            if net.addr().is_ipv4() != self.addr.is_ipv4() {
                continue;
            }
            let listen_addr = to_multiaddr(SocketAddr::new(net.addr(), self.addr.port()));
            tracing::debug!(listener = %self.id, %listen_addr, up, "interface address changed");
            return Poll::Ready(if up {
                TransportEvent::NewAddress {
                    listener_id: self.id,
                    listen_addr,
                }
            } else {
                TransportEvent::AddressExpired {
                    listener_id: self.id,
                    listen_addr,
                }
            });
        }
        Poll::Pending
    }

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<Event> {
        let Some(open) = self.open.as_mut() else {
            return Poll::Pending;
        };
        // What dials took in first: it was waiting before what the socket holds now.
        match open.source.poll_taken(cx) {
            Poll::Ready(Ok(taken)) => {
                let Accepted {
                    io,
                    local,
                    remote,
                    lease,
                } = taken;
                let local = (local, to_multiaddr(local));
                return Poll::Ready(open.incoming(self.id, io, local, remote, Some(lease)));
            }
            Poll::Ready(Err(error)) => {
                return Poll::Ready(TransportEvent::ListenerError {
                    listener_id: self.id,
                    error,
                });
            }
            Poll::Pending => {}
        }
        let _admitting = open.backlog.as_deref().map(Backlog::admitting);
        let (io, remote) = match open.source.poll_accept(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Ok(accepted)) => accepted,
            Poll::Ready(Err(e)) => {
                return Poll::Ready(TransportEvent::ListenerError {
                    listener_id: self.id,
                    error: error::context(e, format_args!("accept on {}", self.addr)),
                });
            }
        };
        // A wildcard listener's connections arrive on different local IPs.
        let (local, local_addr) = if self.addr.ip().is_unspecified() {
            match io.local_addr() {
                Ok(local) => (local, to_multiaddr(local)),
                Err(e) => {
                    return Poll::Ready(TransportEvent::ListenerError {
                        listener_id: self.id,
                        error: error::context(
                            e,
                            format_args!(
                                "local address of connection from {remote} on {}",
                                self.addr
                            ),
                        ),
                    });
                }
            }
        } else {
            (self.addr, self.listen_addr.clone())
        };
        tracing::trace!(listener = %self.id, %local, %remote, "accepted");
        let (io, lease) = match &open.pairs {
            Some(pairs) => match pairs.table.take_in(io, local, remote) {
                Some((io, lease)) => (io, Some(lease)),
                None => {
                    // Handed to the dial that claimed its pair: poll again for the next one.
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
            },
            None => (io, None),
        };
        Poll::Ready(open.incoming(self.id, io, (local, local_addr), remote, lease))
    }
}

impl<A: Accept> Stream for Listener<A> {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        let this = &mut *self;
        if let Some(event) = this.queued.pop_front() {
            return Poll::Ready(Some(event));
        }
        if this.open.is_none() {
            return Poll::Ready(None);
        }
        if let Poll::Ready(event) = this.poll_interfaces(cx) {
            return Poll::Ready(Some(event));
        }
        if let Poll::Ready(event) = this.poll_accept(cx) {
            return Poll::Ready(Some(event));
        }
        match &this.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => this.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

/// The listeners of a transport, polled together. Adding or closing one wakes the task that last
/// polled them.
pub(crate) struct Listeners<A> {
    set: SelectAll<Listener<A>>,
    waker: Option<Waker>,
}

impl<A: Accept> Listeners<A> {
    pub(crate) fn new() -> Self {
        Self {
            set: SelectAll::new(),
            waker: None,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.set.len()
    }

    pub(crate) fn push(&mut self, listener: Listener<A>) {
        self.set.push(listener);
        self.wake();
    }

    /// Closes the listener `id`; whether it was open.
    pub(crate) fn close(&mut self, id: ListenerId) -> bool {
        let closed = self
            .set
            .iter_mut()
            .find(|listener| listener.id() == id)
            .is_some_and(Listener::close);
        if closed {
            self.wake();
        }
        closed
    }

    /// The next event of any listener, counted in `metrics`.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>, metrics: &Metrics) -> Poll<Event> {
        match self.set.poll_next_unpin(cx) {
            Poll::Ready(Some(event)) => {
                match &event {
                    TransportEvent::Incoming { .. } => metrics.accepted(),
                    TransportEvent::ListenerError { .. } => metrics.listener_error(),
                    _ => {}
                }
                Poll::Ready(event)
            }
            Poll::Ready(None) | Poll::Pending => {
                match &self.waker {
                    Some(waker) if waker.will_wake(cx.waker()) => {}
                    _ => self.waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }

    fn wake(&mut self) {
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }
}
