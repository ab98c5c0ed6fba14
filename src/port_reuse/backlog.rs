//! A listener's [`Backlog`]: the connections the kernel has accepted on its socket and the
//! listener has not yet taken, which a dial takes in just before it connects.
//!
//! The kernel refuses a dial from a listening address to a remote (`EADDRNOTAVAIL`) while a
//! connection from that remote to that address waits in the listener's accept queue: the pair is
//! taken, and the table has not seen it yet, since the listener admits a connection only when
//! its task next polls. Two peers that dial each other from their listening ports meet this
//! whenever one's connection arrives just before the other's dial. A dial therefore accepts what
//! waits on the listener it leaves from (on unix a `poll` first, so that nothing waiting costs
//! one cheap system call: `sys::connections_waiting`), admits it to the table as the listener
//! would, and queues it for the listener, which reports it as its own; if one of them holds the
//! dial's pair, the dial chooses again. It looks with its socket bound and before `connect` when
//! the remote has dialed us from its address before
//! ([`Lease::taken_in_backlog`](super::Lease::taken_in_backlog)), else once the kernel has
//! refused the pair ([`Lease::taken_after_refusal`](super::Lease::taken_after_refusal)), so that
//! dials to other remotes spend no `poll`. The listener holds the backlog's admission lock from
//! its own `accept` until the table has the pair, so that a dial never looks between the two.

use std::{
    collections::VecDeque,
    io,
    net::SocketAddr,
    sync::{Mutex, MutexGuard, PoisonError},
    task::{Context, Poll, Waker},
};

use super::{Lease, ReuseTable};
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
    /// Held from an `accept` on the socket until its connection is admitted to the table, by
    /// the listener and by a dial's drain alike: a dial that drains the socket while the
    /// listener has accepted a connection but not yet admitted it waits for the admission, so
    /// that its choice sees the pair (the kernel already does).
    admitting: Mutex<()>,
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
            admitting: Mutex::default(),
        }
    }

    /// Accepts every connection waiting on the socket, without waiting, admits each to `table`
    /// ([`ReuseTable::take_in`]) and queues it for the listener.
    ///
    /// An accept error (out of descriptors, a connection reset while queued) ends the drain
    /// quietly: the listener's own accept meets it and reports it.
    pub(super) fn drain(&self, table: &ReuseTable) {
        let _admitting = self.admitting();
        if !sys::connections_waiting(&self.socket) {
            return;
        }
        let mut taken = Vec::new();
        while let Ok((socket, from)) = socket2::SockRef::from(&self.socket).accept() {
            let Some(from) = from.as_socket() else {
                continue;
            };
            if let Some(accepted) = self.admit(table, socket, from).transpose() {
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

    /// Held by the listener from its `accept` until it has admitted the connection to the
    /// table (see [`Self::drain`]).
    pub(crate) fn admitting(&self) -> MutexGuard<'_, ()> {
        // The guarded section has no data to leave inconsistent.
        self.admitting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn lock(&self) -> MutexGuard<'_, Inbox> {
        // Nothing panics while holding the lock.
        self.inbox.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::{
        net::Ipv4Addr,
        sync::{Arc, mpsc},
        time::Duration,
    };

    use super::*;
    use crate::origin::Fallback;

    /// The race the admission lock closes: the listener has accepted a connection (the kernel
    /// holds its pair) but not yet admitted it to the table when a dial to that remote drains
    /// the listener's socket and finds nothing waiting. The dial must wait for the admission
    /// and then pass over the pair, not take it and meet the kernel's refusal.
    #[tokio::test]
    async fn a_dial_waits_for_the_admission_of_a_connection_the_listener_accepted() {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let backlog = Arc::new(Backlog::new(
            tokio::net::TcpListener::from_std(listener).unwrap(),
            addr,
        ));
        let table = ReuseTable::new(true);
        let _registration = table.register(addr).with_backlog(backlog.clone());
        let client = std::net::TcpStream::connect(addr).unwrap();
        let remote = client.local_addr().unwrap();

        // The listener's side, up to the admission: accepted, the lock still held.
        let admitting = backlog.admitting();
        let (socket, _) = loop {
            match socket2::SockRef::from(backlog.socket()).accept() {
                Ok(accepted) => break accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                Err(e) => panic!("accept: {e}"),
            }
        };

        let (started_tx, started) = mpsc::channel();
        let (done_tx, done) = mpsc::channel();
        let dialing = table.clone();
        let dial = std::thread::spawn(move || {
            let lease = dialing.reserve(remote, Ipv4Addr::LOCALHOST.into()).unwrap();
            assert_eq!(lease.local(), addr, "the table does not know the pair yet");
            started_tx.send(()).unwrap();
            // As after the kernel's refusal: the remote never connected before, so a look
            // before `connect` would not happen.
            let taken = lease.taken_after_refusal();
            drop(lease);
            let again = dialing.reserve(remote, Ipv4Addr::LOCALHOST.into());
            done_tx
                .send((taken, again.map(|lease| lease.local())))
                .unwrap();
        });
        started.recv().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            done.try_recv().is_err(),
            "the dial's look at the backlog ended while the accepted connection was not yet admitted"
        );

        socket.set_nonblocking(true).unwrap();
        let io = tokio::net::TcpStream::from_std(socket.into()).unwrap();
        let (_io, _lease) = table.take_in(io, addr, remote).expect("admitted");
        drop(admitting);
        assert_eq!(
            done.recv_timeout(Duration::from_secs(5)).unwrap(),
            (true, Err(Fallback::Busy)),
            "the dial sees the pair taken and passes over it"
        );
        dial.join().unwrap();
    }
}
