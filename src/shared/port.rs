//! One listening socket shared by the sides of a [`SharedListeners`](super::SharedListeners)
//! set. Each side that listens on it holds a [`Share`]; polling a share drives the socket: it
//! accepts, waits for each connection's first bytes (at most `first_bytes_concurrency` at once,
//! each within `first_bytes_timeout`, none holding up the others), and queues the connection
//! for the share of its kind. Every other connection is closed and counted. The socket closes
//! when the last share is dropped.

use std::{
    collections::VecDeque,
    fmt, io,
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    task::{Context, Poll, Wake, Waker},
    time::Duration,
};

use futures::{StreamExt, future::BoxFuture, stream::FuturesUnordered};
use libp2p_core::transport::ListenerId;

use super::{
    SharedConfig,
    classify::Kind,
    first_bytes::{self, Outcome, Waited},
    stats::{Counters, Refusal},
};
use crate::{
    diagnostics, error,
    listener::{Accept, Backoff},
    port_reuse::Registration,
    transport::Bound,
};

/// How many classified connections a share may have waiting to be taken; beyond that they are
/// closed and counted as overflow (the side is not being polled).
pub(crate) const QUEUE_LIMIT: usize = 256;

/// How many connections one drive accepts before it yields (and wakes itself): a flood of
/// connections must not keep a swarm's task from its other work.
const ACCEPT_BUDGET: usize = 64;

/// What a share yields: a connection of its kind, or an accept error of the socket.
type Item = io::Result<(tokio::net::TcpStream, SocketAddr)>;

pub(crate) struct Port {
    /// The bound address: the port is concrete, the IP may be unspecified.
    addr: SocketAddr,
    state: Mutex<State>,
    /// The tasks polling the shares, one per kind; the socket and the waiting connections wake
    /// them all, and whichever polls first drives the socket for every share.
    wakers: Arc<Wakers>,
    timeout: Duration,
    concurrency: usize,
    counters: Arc<Counters>,
    /// The runtime the socket was bound on: timers for the first bytes are made on it, whatever
    /// thread polls.
    runtime: tokio::runtime::Handle,
}

struct State {
    socket: tokio::net::TcpListener,
    _registration: Option<Registration>,
    _listening: diagnostics::Listening,
    backoff: Backoff,
    /// Accepted connections waiting for their first bytes.
    waiting: FuturesUnordered<BoxFuture<'static, Waited>>,
    /// Per [`Kind::index`]: the listener holding the share of that kind, and its queue.
    slots: [Option<Slot>; 3],
}

struct Slot {
    listener: ListenerId,
    queue: VecDeque<Item>,
}

impl Port {
    /// A shared socket on `bound`, with the first-bytes settings of `config`.
    pub(crate) fn new(
        bound: Bound,
        config: &SharedConfig,
        counters: Arc<Counters>,
    ) -> io::Result<Arc<Self>> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| io::Error::other("libp2p-reuseport needs a tokio runtime"))?;
        tracing::debug!(addr = %bound.addr, "shared socket listening");
        Ok(Arc::new(Self {
            addr: bound.addr,
            state: Mutex::new(State {
                socket: bound.socket,
                _registration: bound.registration,
                _listening: bound.listening,
                backoff: Backoff::default(),
                waiting: FuturesUnordered::new(),
                slots: [None, None, None],
            }),
            wakers: Arc::default(),
            timeout: config.first_bytes_timeout,
            concurrency: config.first_bytes_concurrency,
            counters,
            runtime,
        }))
    }

    /// The bound address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Takes the share of `kind` for `listener`, unless another listener (returned) holds it.
    pub(crate) fn join(
        self: &Arc<Self>,
        kind: Kind,
        listener: ListenerId,
    ) -> Result<Share, ListenerId> {
        let mut state = self.lock();
        let slot = &mut state.slots[kind.index()];
        if let Some(holder) = slot {
            return Err(holder.listener);
        }
        *slot = Some(Slot {
            listener,
            queue: VecDeque::new(),
        });
        tracing::debug!(addr = %self.addr, kind = kind.name(), %listener, "side joined shared socket");
        Ok(Share {
            port: self.clone(),
            kind,
        })
    }

    fn leave(&self, kind: Kind) {
        // Connections queued for this share close with it.
        self.lock().slots[kind.index()] = None;
        self.wakers.set(kind, None);
        tracing::debug!(addr = %self.addr, kind = kind.name(), "side left shared socket");
    }

    /// The next connection for the share of `kind`; drives the socket first if none is queued.
    fn poll_share(&self, kind: Kind, cx: &mut Context<'_>) -> Poll<Item> {
        let mut state = self.lock();
        self.wakers.set(kind, Some(cx.waker()));
        if let Some(item) = state.pop(kind) {
            return Poll::Ready(item);
        }
        let waker = Waker::from(self.wakers.clone());
        self.drive(&mut state, &mut Context::from_waker(&waker));
        match state.pop(kind) {
            Some(item) => Poll::Ready(item),
            None => Poll::Pending,
        }
    }

    /// Routes the connections whose first bytes are in and accepts new ones while fewer than
    /// `concurrency` wait, until nothing moves or the accept budget is spent.
    fn drive(&self, state: &mut State, cx: &mut Context<'_>) {
        let _runtime = self.runtime.enter();
        let mut budget = ACCEPT_BUDGET;
        loop {
            let mut moved = false;
            while let Poll::Ready(Some(waited)) = state.waiting.poll_next_unpin(cx) {
                self.route(&mut state.slots, waited);
                moved = true;
            }
            while state.waiting.len() < self.concurrency && budget > 0 {
                match state.backoff.poll_accept(&state.socket, cx) {
                    Poll::Ready(Ok((io, remote))) => {
                        budget -= 1;
                        moved = true;
                        tracing::trace!(addr = %self.addr, %remote, "accepted, waiting for first bytes");
                        state
                            .waiting
                            .push(Box::pin(first_bytes::wait(io, remote, self.timeout)));
                    }
                    Poll::Ready(Err(e)) => {
                        self.report(&mut state.slots, &e);
                        break;
                    }
                    Poll::Pending => break,
                }
            }
            if budget == 0 {
                // More may be waiting in the backlog: come back after the others had a turn.
                cx.waker().wake_by_ref();
                return;
            }
            if !moved {
                return;
            }
        }
    }

    /// Queues a connection for the share of its kind, or closes and counts it.
    fn route(&self, slots: &mut [Option<Slot>; 3], waited: Waited) {
        let Waited {
            io,
            remote,
            outcome,
        } = waited;
        let refusal = match outcome {
            Outcome::Known(kind) => match &mut slots[kind.index()] {
                Some(slot) if slot.queue.len() < QUEUE_LIMIT => {
                    slot.queue.push_back(Ok((io, remote)));
                    self.counters.handed(kind);
                    self.wakers.wake_kind(kind);
                    tracing::trace!(addr = %self.addr, %remote, kind = kind.name(), "classified");
                    return;
                }
                Some(_) => Refusal::Overflow,
                None => Refusal::Unclaimed,
            },
            Outcome::Unknown => Refusal::Unknown,
            Outcome::TimedOut => Refusal::TimedOut,
            Outcome::Failed => Refusal::Failed,
        };
        self.counters.refused(refusal);
        tracing::debug!(addr = %self.addr, %remote, reason = refusal.name(), ?outcome, "closed an accepted connection");
    }

    /// Hands an accept error to every share, as a `ListenerError` of its listener.
    fn report(&self, slots: &mut [Option<Slot>; 3], error: &io::Error) {
        for (slot, kind) in slots.iter_mut().zip(Kind::ALL) {
            if let Some(slot) = slot
                && slot.queue.len() < QUEUE_LIMIT
            {
                slot.queue.push_back(Err(error::duplicate(error)));
                self.wakers.wake_kind(kind);
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock, and every update leaves the state consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    fn pop(&mut self, kind: Kind) -> Option<Item> {
        self.slots[kind.index()].as_mut()?.queue.pop_front()
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        tracing::debug!(addr = %self.addr, "shared socket closed");
    }
}

impl fmt::Debug for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Port")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// A side's share of a [`Port`]: yields the connections of its kind; dropping it leaves the
/// socket, and the last share dropped closes it.
pub(crate) struct Share {
    port: Arc<Port>,
    kind: Kind,
}

impl Accept for Share {
    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<Item> {
        self.port.poll_share(self.kind, cx)
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        self.port.leave(self.kind);
    }
}

/// The wakers of the tasks polling a port's shares, one per kind. Woken as one (the socket or a
/// waiting connection is ready): every share's task is woken; or per kind (a connection was
/// queued for it).
#[derive(Default)]
struct Wakers {
    wakers: Mutex<[Option<Waker>; 3]>,
}

impl Wakers {
    fn set(&self, kind: Kind, waker: Option<&Waker>) {
        let mut wakers = self.wakers.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = &mut wakers[kind.index()];
        match (slot.as_ref(), waker) {
            (Some(old), Some(new)) if old.will_wake(new) => {}
            _ => *slot = waker.cloned(),
        }
    }

    fn wake_kind(&self, kind: Kind) {
        let waker =
            self.wakers.lock().unwrap_or_else(PoisonError::into_inner)[kind.index()].clone();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl Wake for Wakers {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let wakers = self
            .wakers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for waker in wakers.into_iter().flatten() {
            waker.wake();
        }
    }
}
