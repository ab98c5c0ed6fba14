//! A listener's [`Backlog`]: the connections the kernel has accepted on its socket and the
//! listener has not yet taken, which a dial takes in before it chooses its pair.
//!
//! The kernel refuses a dial from a listening address to a remote (`EADDRNOTAVAIL`) while a
//! connection from that remote to that address waits in the listener's accept queue: the pair is
//! taken, and the table has not seen it yet, since the listener admits a connection only when
//! its task next polls. Two peers that dial each other from their listening ports meet this
//! whenever one's connection arrives just before the other's dial. A dial therefore accepts what
//! waits on the listener it is about to leave from (on unix a `poll` first, so that nothing
//! waiting costs one cheap system call: `sys::connections_waiting`), admits it to the table as
//! the listener would, and queues it for the listener, which reports it as its own.

use std::{
    collections::VecDeque,
    io,
    net::SocketAddr,
    sync::{Mutex, MutexGuard, PoisonError},
    task::{Context, Poll, Waker},
};

use super::{Lease, ReuseTable, table::Endpoint};
use crate::{error, sys};

/// A connection a dial took in for the listener, admitted to the table.
pub(crate) struct Accepted {
    pub(crate) io: tokio::net::TcpStream,
    /// The connection's own local address (a concrete IP, also on a wildcard listener).
    pub(crate) local: SocketAddr,
    pub(crate) remote: SocketAddr,
    pub(crate) lease: Lease,
}

/// A listening socket registered for port reuse, shared by its listener and the dials that
/// leave from its address.
pub(crate) struct Backlog {
    socket: tokio::net::TcpListener,
    /// The bound address: the IP may be unspecified.
    addr: SocketAddr,
    inbox: Mutex<Inbox>,
}

#[derive(Default)]
struct Inbox {
    /// Taken in by dials, for the listener to report; an error is reported as the listener's.
    taken: VecDeque<io::Result<Accepted>>,
    /// The listener's task, woken when a dial queues a connection.
    waker: Option<Waker>,
}

impl Backlog {
    pub(crate) fn new(socket: tokio::net::TcpListener, addr: SocketAddr) -> Self {
        Self {
            socket,
            addr,
            inbox: Mutex::default(),
        }
    }

    /// Accepts every connection waiting on the socket, without waiting, admits each to `table`
    /// ([`ReuseTable::take_in`]) and queues it for the listener. Returns whether one of them
    /// holds the pair (`local`, `remote`).
    ///
    /// An accept error (out of descriptors, a connection reset while queued) ends the drain
    /// quietly: the listener's own accept meets it and reports it.
    pub(super) fn drain(&self, table: &ReuseTable, local: Endpoint, remote: Endpoint) -> bool {
        if !sys::connections_waiting(&self.socket) {
            return false;
        }
        let mut holds = false;
        let mut taken = Vec::new();
        while let Ok((socket, from)) = socket2::SockRef::from(&self.socket).accept() {
            let Some(from) = from.as_socket() else {
                continue;
            };
            let accepted = self.admit(table, socket, from);
            if let Ok(Some(accepted)) = &accepted {
                holds |= Endpoint::from(accepted.local) == local && Endpoint::from(from) == remote;
            }
            if let Some(accepted) = accepted.transpose() {
                taken.push(accepted);
            }
        }
        if !taken.is_empty() {
            tracing::trace!(addr = %self.addr, taken = taken.len(), "connections taken in before a dial");
            let mut inbox = self.lock();
            inbox.taken.extend(taken);
            if let Some(waker) = inbox.waker.take() {
                waker.wake();
            }
        }
        holds
    }

    /// Registers the accepted `socket` with tokio and admits it; `None` if a dial that claimed
    /// its pair took it.
    fn admit(
        &self,
        table: &ReuseTable,
        socket: socket2::Socket,
        remote: SocketAddr,
    ) -> io::Result<Option<Accepted>> {
        let context =
            |e| error::context(e, format_args!("connection from {remote} on {}", self.addr));
        socket.set_nonblocking(true).map_err(context)?;
        let io = tokio::net::TcpStream::from_std(socket.into()).map_err(context)?;
        let local = if self.addr.ip().is_unspecified() {
            io.local_addr().map_err(context)?
        } else {
            self.addr
        };
        Ok(table
            .take_in(io, local, remote)
            .map(|(io, lease)| Accepted {
                io,
                local,
                remote,
                lease,
            }))
    }

    /// The next connection a dial took in; else registers the task to wake when one is.
    pub(crate) fn poll_taken(&self, cx: &mut Context<'_>) -> Poll<io::Result<Accepted>> {
        let mut inbox = self.lock();
        if let Some(taken) = inbox.taken.pop_front() {
            return Poll::Ready(taken);
        }
        match &inbox.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => inbox.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// The listening socket, for the listener's own accepts.
    pub(crate) fn socket(&self) -> &tokio::net::TcpListener {
        &self.socket
    }

    fn lock(&self) -> MutexGuard<'_, Inbox> {
        // Nothing panics while holding the lock.
        self.inbox.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
