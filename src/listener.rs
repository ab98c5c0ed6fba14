//! A listening socket as a [`Stream`] of [`TransportEvent`]s: the listener's addresses (expanded
//! per interface for a wildcard listener), accepted connections, errors and, last, its closing.

use std::{
    collections::VecDeque,
    io,
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll, Waker},
    time::Duration,
};

use futures::{Stream, StreamExt, future};
use if_watch::{IfEvent, tokio::IfWatcher};
use libp2p_core::transport::{ListenerId, TransportEvent};

use crate::{TcpStream, multiaddr::to_multiaddr, port_reuse::Registration};

/// What a listener yields.
pub(crate) type Event = TransportEvent<future::Ready<io::Result<TcpStream>>, io::Error>;

/// The first pause after an accept error; it doubles with every further error up to
/// [`MAX_PAUSE`] and starts over after a successful accept.
const FIRST_PAUSE: Duration = Duration::from_millis(20);
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// One listening socket and everything that belongs to it.
pub(crate) struct Listener {
    id: ListenerId,
    /// The bound address: the port is concrete, the IP may be unspecified.
    addr: SocketAddr,
    /// `None` once closed: the socket, the interface watcher and the port-reuse registration are
    /// released at once, the stream then yields what is queued and ends.
    open: Option<Open>,
    /// Events to yield before anything else. Holds at most the first address and the closing.
    queued: VecDeque<Event>,
    /// The task that last polled, woken when the listener is closed from outside.
    waker: Option<Waker>,
}

struct Open {
    socket: tokio::net::TcpListener,
    /// Reports the interface addresses of a wildcard listener; `None` for a specific address.
    if_watcher: Option<IfWatcher>,
    _registration: Option<Registration>,
    /// After an accept error, no accepting until this fires.
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
    next_pause: Duration,
}

impl Listener {
    /// Wraps a bound, listening socket. `registration` keeps its address in the port-reuse table.
    pub(crate) fn new(
        id: ListenerId,
        socket: tokio::net::TcpListener,
        addr: SocketAddr,
        registration: Option<Registration>,
    ) -> io::Result<Self> {
        let mut queued = VecDeque::with_capacity(2);
        let if_watcher = if addr.ip().is_unspecified() {
            Some(
                IfWatcher::new()
                    .map_err(|e| io::Error::new(e.kind(), format!("watch interfaces: {e}")))?,
            )
        } else {
            queued.push_back(TransportEvent::NewAddress {
                listener_id: id,
                listen_addr: to_multiaddr(addr),
            });
            None
        };
        Ok(Self {
            id,
            addr,
            open: Some(Open {
                socket,
                if_watcher,
                _registration: registration,
                pause: None,
                next_pause: FIRST_PAUSE,
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
                    let error = io::Error::new(
                        e.kind(),
                        format!(
                            "interface watcher of listener on {} failed, its addresses are no \
                             longer tracked: {e}",
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
        if let Some(pause) = open.pause.as_mut() {
            if pause.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            open.pause = None;
        }
        let (io, remote) = match open.socket.poll_accept(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Ok(accepted)) => accepted,
            Poll::Ready(Err(e)) => {
                let pause = open.next_pause;
                open.next_pause = (pause * 2).min(MAX_PAUSE);
                open.pause = Some(Box::pin(tokio::time::sleep(pause)));
                tracing::debug!(listener = %self.id, addr = %self.addr, error = %e, ?pause, "accept failed");
                return Poll::Ready(TransportEvent::ListenerError {
                    listener_id: self.id,
                    error: io::Error::new(e.kind(), format!("accept on {}: {e}", self.addr)),
                });
            }
        };
        open.next_pause = FIRST_PAUSE;
        // A wildcard listener's connections arrive on different local IPs.
        let local = if self.addr.ip().is_unspecified() {
            match io.local_addr() {
                Ok(local) => local,
                Err(e) => {
                    return Poll::Ready(TransportEvent::ListenerError {
                        listener_id: self.id,
                        error: io::Error::new(
                            e.kind(),
                            format!(
                                "local address of connection from {remote} on {}: {e}",
                                self.addr
                            ),
                        ),
                    });
                }
            }
        } else {
            self.addr
        };
        tracing::trace!(listener = %self.id, %local, %remote, "accepted");
        Poll::Ready(TransportEvent::Incoming {
            listener_id: self.id,
            upgrade: future::ready(Ok(TcpStream::accepted(io))),
            local_addr: to_multiaddr(local),
            send_back_addr: to_multiaddr(remote),
        })
    }
}

impl Stream for Listener {
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
