//! Connections dropped before their remote closed: kept open, one task per transport, until the
//! remote's FIN arrives or [`CLOSING_LIMIT`] passes, so that their (local, remote) pair is not
//! dialed again too early. Each socket is held with the [`Lease`] of its pair, released when the
//! socket closes after the remote's FIN, orphaned (passed over for the kernel's orphan lifetime)
//! when it closes without it. At most the table's bound of sockets is held: past it a dropped
//! connection is closed at once and its pair orphaned, so that peers that never close cannot
//! take the process's descriptors.
//!
//! One task and one timer serve every closing connection of a transport: a timer per connection
//! would cost a wake-up of the runtime's driver (a system call) whenever no other timer is armed.

use std::{
    collections::VecDeque,
    fmt, io,
    net::Shutdown,
    sync::{Arc, Mutex, OnceLock, PoisonError},
    task::{Context, Poll},
    time::Duration,
};

use futures::{FutureExt, StreamExt, channel::mpsc, stream::FuturesUnordered};
use tokio::{io::Interest, net::TcpStream, time::Instant};

use crate::port_reuse::Lease;

/// How long a dropped connection waits for the remote to close its side before it is closed
/// anyway and its pair orphaned.
pub(crate) const CLOSING_LIMIT: Duration = Duration::from_secs(10);

/// A socket whose remote has not closed yet, and the pair it holds. Dropped without
/// [`Held::release`] (given up at its deadline, or its task or runtime gone), it closes the
/// socket and orphans the pair.
struct Held {
    io: Option<Arc<TcpStream>>,
    lease: Option<Lease>,
}

impl Held {
    fn io(&self) -> &TcpStream {
        self.io
            .as_deref()
            .expect("the socket is present until release or drop")
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

/// The handle on a transport's closing task; starts the task on first use. The task ends once
/// every handle is gone and nothing is left to hold.
#[derive(Default)]
pub(crate) struct Reaper {
    sender: Mutex<Option<mpsc::UnboundedSender<Held>>>,
}

impl Reaper {
    /// `io` was dropped by its user before its remote closed its side. Sends our FIN (as
    /// closing would) and keeps `io` open until the remote's FIN, then closes it and drops
    /// `lease`. If the table's bound on held sockets is reached, closes `io` now and orphans the
    /// pair instead; so does a socket that cannot be kept (outside a tokio runtime, or while the
    /// runtime shuts down).
    pub(crate) fn hold(&self, io: TcpStream, mut lease: Lease) {
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
        let mut sender = self.sender.lock().unwrap_or_else(PoisonError::into_inner);
        let held = match sender.as_ref() {
            Some(tx) => match tx.unbounded_send(held) {
                Ok(()) => return,
                Err(e) => e.into_inner(),
            },
            None => held,
        };
        // No task yet, or its runtime is gone: start one on the current runtime. Without one,
        // `held` drops here: closed, and the pair orphaned.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (tx, rx) = mpsc::unbounded();
        if tx.unbounded_send(held).is_ok() {
            runtime.spawn(run(rx));
            *sender = Some(tx);
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

/// Reads until the remote closes its side (the reactor reports the read side closed, or a read
/// returns end of stream or an error), discarding what arrives.
async fn drain(io: &TcpStream) {
    // Forget read readiness left over from the user's reads (keeping "read closed", which is
    // final), so that the first wait ends on news from the remote rather than on a read that
    // would block.
    let _ = io.try_io(Interest::READABLE, || {
        Err::<(), _>(io::ErrorKind::WouldBlock.into())
    });
    let mut buf = [0; 1024];
    loop {
        match io.ready(Interest::READABLE).await {
            Ok(ready) if ready.is_read_closed() || ready.is_error() => return,
            Ok(_) => {}
            Err(_) => return,
        }
        match io.try_read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}

/// [`CLOSING_LIMIT`] from now, rounded up to a whole second since the first call, so that the
/// one timer moves at most once a second and the sockets held within one second share it.
fn deadline() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    let due = (Instant::now() + CLOSING_LIMIT).duration_since(epoch);
    epoch + Duration::from_secs(due.as_secs() + 1)
}

/// Keeps `held` until its remote closes, then closes it and frees its pair.
async fn release_when_closed(held: Held) {
    drain(held.io()).await;
    held.release();
}

/// The task: drains every socket it is handed, closes each when its remote has closed, and
/// gives up on those still open at their deadline (closing them and orphaning their pairs).
/// Ends when every [`Reaper`] handle is gone and nothing is left to drain.
///
/// The sockets are kept in one set per deadline (a whole second): at its deadline the set is
/// dropped with what it still holds, so nothing per socket outlives its socket.
async fn run(mut arrivals: mpsc::UnboundedReceiver<Held>) {
    let mut by_deadline = VecDeque::new();
    let mut timer = Box::pin(tokio::time::sleep(CLOSING_LIMIT));
    let mut handles_gone = false;
    futures::future::poll_fn(|cx: &mut Context<'_>| {
        while !handles_gone {
            match arrivals.poll_next_unpin(cx) {
                Poll::Ready(Some(held)) => {
                    let due = deadline();
                    if by_deadline.back().is_none_or(|(last, _)| *last != due) {
                        if by_deadline.is_empty() {
                            timer.as_mut().reset(due);
                        }
                        by_deadline.push_back((due, FuturesUnordered::new()));
                    }
                    if let Some((_, draining)) = by_deadline.back_mut() {
                        draining.push(release_when_closed(held));
                    }
                }
                Poll::Ready(None) => handles_gone = true,
                Poll::Pending => break,
            }
        }
        for (_, draining) in by_deadline.iter_mut() {
            while let Poll::Ready(Some(())) = draining.poll_next_unpin(cx) {}
        }
        while !by_deadline.is_empty() && timer.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            while let Some((_, draining)) = by_deadline.front().filter(|(due, _)| *due <= now) {
                if !draining.is_empty() {
                    tracing::debug!(
                        sockets = draining.len(),
                        "remote did not close within {CLOSING_LIMIT:?}; closed anyway"
                    );
                }
                // Dropping the set closes its sockets and orphans their pairs.
                by_deadline.pop_front();
            }
            if let Some((due, _)) = by_deadline.front() {
                timer.as_mut().reset(*due);
            }
        }
        // Sets emptied before their deadline go at once.
        while by_deadline
            .front()
            .is_some_and(|(_, draining)| draining.is_empty())
            && by_deadline.len() > 1
        {
            by_deadline.pop_front();
        }
        if handles_gone && by_deadline.iter().all(|(_, draining)| draining.is_empty()) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use std::{
        io::{Read, Write},
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
