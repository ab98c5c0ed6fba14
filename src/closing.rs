//! Connections dropped before their remote closed. On Linux, where the kernel can be asked about
//! one pair (sock_diag), each is closed at once and its pair left to the kernel
//! ([`Lease::finishing`]): a dial that meets the pair asks the kernel whether the connection is
//! done. Elsewhere, and with `Config::hold_closing_sockets`, each is kept open, in one queue per
//! transport, until the remote's FIN arrives or [`CLOSING_LIMIT`] passes, so that its (local,
//! remote) pair is not dialed again too early. Each socket is held with the [`Lease`] of its
//! pair, released when the socket closes after the remote's FIN, orphaned (passed over for the
//! kernel's orphan lifetime) when it closes without it. At most the table's bound of sockets is
//! held: past it a dropped connection is closed at once and its pair orphaned, so that peers
//! that never close cannot take the process's descriptors.
//!
//! Nothing waits on a held socket. The reactor records the remote's FIN in the socket's
//! readiness as for any registered socket, and that is all a dial needs to see the pair free
//! (see `Pair::Closing`). The sockets are closed in batches: each new hold closes the oldest
//! ones whose remote has closed, and one task per transport, awake every [`SWEEP`] while the
//! queue is not empty, closes the others whose remote has closed and gives up on those past
//! their deadline. A future per socket, woken by the FIN, cost two task wake-ups and two
//! allocations per dropped connection (row 7 of the benchmark, sockets held: 0.90-0.92 of
//! libp2p-tcp's accept rate with it, 0.92-0.94 with the queue).

use std::{
    collections::VecDeque,
    fmt, mem,
    net::Shutdown,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    task::{Poll, Waker},
    time::Duration,
};

use futures::FutureExt;
use tokio::{io::Interest, net::TcpStream, time::Instant};

use crate::port_reuse::Lease;

/// How long a dropped connection waits for the remote to close its side before it is closed
/// anyway and its pair orphaned.
pub(crate) const CLOSING_LIMIT: Duration = Duration::from_secs(10);

/// How often the closing task looks through the held sockets while there are any: how long at
/// most a socket whose remote has closed keeps its descriptor when no other connection is
/// dropped meanwhile.
const SWEEP: Duration = Duration::from_millis(100);

/// How many of the oldest held sockets whose remote has closed each new hold closes: more than
/// one, so that the queue shrinks while connections are dropped faster than the task sweeps.
const CLOSED_PER_HOLD: usize = 2;

/// A socket whose remote has not closed yet, and the pair it holds. Dropped without
/// [`Held::release`] (given up at its deadline, or its task or runtime gone), it closes the
/// socket and orphans the pair.
struct Held {
    io: Option<Arc<TcpStream>>,
    lease: Option<Lease>,
}

impl Held {
    fn remote_closed(&self) -> bool {
        self.io.as_deref().is_none_or(remote_closed)
    }

    /// The remote closed: close the socket, then free the pair.
    fn release(mut self) {
        drop(self.io.take());
        drop(self.lease.take());
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        // Close the socket first: the lease counts it as held until it is orphaned.
        drop(self.io.take());
        if let Some(lease) = self.lease.take() {
            lease.orphan();
        }
    }
}

/// The held sockets of a transport, oldest first, each with its deadline, and the state of the
/// task that sweeps them.
#[derive(Default)]
struct Queue {
    held: VecDeque<(Instant, Held)>,
    /// Whether a closing task exists (spawned, not yet ended or dropped with its runtime).
    task: bool,
    /// The task's waker while it waits for a socket to hold.
    idle: Option<Waker>,
    /// Whether the [`Reaper`] is gone: the task ends once the queue is empty.
    reaper_gone: bool,
}

type SharedQueue = Arc<Mutex<Queue>>;

fn lock(queue: &SharedQueue) -> MutexGuard<'_, Queue> {
    queue.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The handle on a transport's closing queue; starts its task on first use.
#[derive(Default)]
pub(crate) struct Reaper {
    queue: SharedQueue,
}

impl Reaper {
    /// `io` was dropped by its user before its remote closed its side. Sends our FIN (as
    /// closing would) and keeps `io` open until the remote's FIN, then closes it and drops
    /// `lease`. If the table's bound on held sockets is reached, closes `io` now and orphans the
    /// pair instead; so does a socket that cannot be kept (outside a tokio runtime, or while the
    /// runtime shuts down).
    pub(crate) fn hold(&self, io: TcpStream, mut lease: Lease) {
        if lease.closes_at_once() {
            // Sends our FIN, or a reset if data is left unread (the pair is then free).
            drop(io);
            if let Some(table) = lease.finishing() {
                // A dump of the kernel's finishing connections, off the runtime's threads.
                match tokio::runtime::Handle::try_current() {
                    Ok(runtime) => drop(runtime.spawn_blocking(move || table.prune_finishing())),
                    Err(_) => table.prune_finishing(),
                }
            }
            return;
        }
        if socket2::SockRef::from(&io)
            .shutdown(Shutdown::Write)
            .is_err()
        {
            // The connection is broken (reset): nothing to wait for, the pair is free.
            return;
        }
        let io = Arc::new(io);
        let probe = Arc::downgrade(&io);
        // Once the socket is gone the pair is either released or orphaned, and until that is
        // recorded it stays taken.
        if !lease.closing(Arc::new(move || {
            probe.upgrade().is_some_and(|io| remote_closed(&io))
        })) {
            tracing::trace!(
                ?lease,
                "bound on held closing sockets reached: closed at once"
            );
            drop(io);
            lease.orphan();
            return;
        }
        let held = Held {
            io: Some(io),
            lease: Some(lease),
        };
        let mut queue = lock(&self.queue);
        let start = !queue.task;
        if start {
            // Without a runtime, `held` drops here: closed, and the pair orphaned.
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                return;
            };
            queue.task = true;
            drop(queue);
            runtime.spawn(sweep(Task(Arc::clone(&self.queue))));
            queue = lock(&self.queue);
        }
        queue.held.push_back((Instant::now() + CLOSING_LIMIT, held));
        if let Some(waker) = queue.idle.take() {
            waker.wake();
        }
        let mut closed: [Option<Held>; CLOSED_PER_HOLD] = Default::default();
        for slot in &mut closed {
            if !queue
                .held
                .front()
                .is_some_and(|(_, held)| held.remote_closed())
            {
                break;
            }
            *slot = queue.held.pop_front().map(|(_, held)| held);
        }
        drop(queue);
        closed.into_iter().flatten().for_each(Held::release);
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        let mut queue = lock(&self.queue);
        queue.reaper_gone = true;
        if let Some(waker) = queue.idle.take() {
            waker.wake();
        }
    }
}

impl fmt::Debug for Reaper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reaper").finish_non_exhaustive()
    }
}

/// Whether the socket's readiness already says the remote closed its side or the connection
/// failed (`EPOLLRDHUP`/`EPOLLHUP`/`EPOLLERR` as the reactor last saw them), without a system
/// call.
pub(crate) fn remote_closed(io: &TcpStream) -> bool {
    match io.ready(Interest::READABLE).now_or_never() {
        Some(Ok(ready)) => ready.is_read_closed() || ready.is_error(),
        Some(Err(_)) => true,
        None => false,
    }
}

/// The closing task's hold on its queue. Dropped when the task ends, or unpolled with its
/// runtime: then the queue's sockets are closed and their pairs orphaned, and the next hold
/// starts a task again.
struct Task(SharedQueue);

impl Drop for Task {
    fn drop(&mut self) {
        let mut queue = lock(&self.0);
        queue.task = false;
        queue.idle = None;
        let left = mem::take(&mut queue.held);
        drop(queue);
        drop(left);
    }
}

/// The closing task: while sockets are held, every [`SWEEP`] closes those whose remote has
/// closed and gives up on those past their deadline (closing them and orphaning their pairs).
/// Ends when the [`Reaper`] is gone and nothing is left to hold.
async fn sweep(task: Task) {
    loop {
        let holding = futures::future::poll_fn(|cx| {
            let mut queue = lock(&task.0);
            if !queue.held.is_empty() {
                Poll::Ready(true)
            } else if queue.reaper_gone {
                Poll::Ready(false)
            } else {
                queue.idle = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
        if !holding {
            return;
        }
        tokio::time::sleep(SWEEP).await;
        let now = Instant::now();
        let (mut closed, mut given_up) = (Vec::new(), Vec::new());
        {
            let mut queue = lock(&task.0);
            let held = mem::take(&mut queue.held);
            for (due, socket) in held {
                if socket.remote_closed() {
                    closed.push(socket);
                } else if due <= now {
                    given_up.push(socket);
                } else {
                    queue.held.push_back((due, socket));
                }
            }
        }
        closed.into_iter().for_each(Held::release);
        if !given_up.is_empty() {
            tracing::debug!(
                sockets = given_up.len(),
                "remote did not close within {CLOSING_LIMIT:?}; closed anyway"
            );
        }
        // Dropping them closes the sockets and orphans their pairs.
        drop(given_up);
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::{self, Read, Write},
        net::{Ipv4Addr, SocketAddr},
    };

    use super::*;
    use crate::port_reuse::ReuseTable;

    /// A loopback connection: the client's std socket, and the server's side as a tokio stream
    /// with the address pair it holds.
    fn connection() -> (std::net::TcpStream, TcpStream, SocketAddr, SocketAddr) {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, remote) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        let local = server.local_addr().unwrap();
        (client, TcpStream::from_std(server).unwrap(), local, remote)
    }

    /// A remote that never closes: at the limit the socket is closed and its pair orphaned,
    /// and sockets held later wait for their own deadline. Time is paused and advances by
    /// itself while the runtime is idle.
    #[tokio::test(start_paused = true)]
    async fn a_socket_whose_remote_does_not_close_is_closed_at_the_limit() {
        let table = ReuseTable::new(true).with_closing_bound(8, Duration::from_secs(61));
        let reaper = Reaper::default();
        let (mut first_client, io, local, remote) = connection();
        reaper.hold(io, table.accepted(local, remote));
        tokio::time::sleep(Duration::from_secs(5)).await;
        let (_second_client, io, local, remote) = connection();
        reaper.hold(io, table.accepted(local, remote));
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(
            (table.closing_sockets(), table.closing_connections()),
            (2, 2)
        );

        // Past the first deadline (10 s, rounded up to the second), before the second.
        tokio::time::sleep(CLOSING_LIMIT - Duration::from_secs(3)).await;
        assert_eq!(
            (table.closing_sockets(), table.closing_connections()),
            (1, 2),
            "the first socket closed, its pair orphaned; the second still held"
        );
        // The first socket is gone: data sent to it is answered with a reset, which the next
        // write reports (`EPIPE`: the reset came after our FIN).
        let mut buf = [0; 16];
        first_client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        assert_eq!(first_client.read(&mut buf).unwrap(), 0, "our FIN");
        first_client.write_all(b"anyone?").unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let reset = first_client.write_all(b"anyone?").unwrap_err();
        assert!(
            matches!(
                reset.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ),
            "{reset}"
        );

        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(
            (table.closing_sockets(), table.closing_connections()),
            (0, 2),
            "both closed, both pairs orphaned"
        );
    }
}
