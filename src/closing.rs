//! Connections dropped before their remote closed: kept open, one task per transport, until the
//! remote's FIN arrives or [`CLOSING_LIMIT`] passes, so that their (local, remote) pair is not
//! dialed again too early. Each socket is held with the [`Lease`] of its pair, released when the
//! socket closes.
//!
//! One task and one timer serve every closing connection of a transport: a timer per connection
//! would cost a wake-up of the runtime's driver (a system call) whenever no other timer is armed.

use std::{
    collections::VecDeque,
    fmt, io,
    sync::{Arc, Mutex, OnceLock, PoisonError},
    task::{Context, Poll},
    time::Duration,
};

use futures::{
    FutureExt, StreamExt,
    channel::mpsc,
    future::{AbortHandle, Abortable},
    stream::FuturesUnordered,
};
use tokio::{io::Interest, net::TcpStream, time::Instant};

use crate::port_reuse::Lease;

/// How long a dropped connection waits for the remote to close its side before it is closed
/// anyway and its pair given up to the kernel's own timers.
pub(crate) const CLOSING_LIMIT: Duration = Duration::from_secs(10);

/// A socket whose remote has not closed yet, and the pair it holds.
type Closing = (Arc<TcpStream>, Lease);

/// The handle on a transport's closing task; starts the task on first use. The task ends once
/// every handle is gone and nothing is left to hold.
#[derive(Default)]
pub(crate) struct Reaper {
    sender: Mutex<Option<mpsc::UnboundedSender<Closing>>>,
}

impl Reaper {
    /// Keeps `io` open until its remote closes, then closes it and drops `lease`. Outside a
    /// tokio runtime, or if the runtime is shutting down, `io` closes now.
    pub(crate) fn hold(&self, io: Arc<TcpStream>, lease: Lease) {
        let mut sender = self.sender.lock().unwrap_or_else(PoisonError::into_inner);
        let closing = match sender.as_ref() {
            Some(tx) => match tx.unbounded_send((io, lease)) {
                Ok(()) => return,
                Err(e) => e.into_inner(),
            },
            None => (io, lease),
        };
        // No task yet, or its runtime is gone: start one on the current runtime.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (tx, rx) = mpsc::unbounded();
        if tx.unbounded_send(closing).is_ok() {
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
/// one timer moves at most once a second.
fn deadline() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    let due = (Instant::now() + CLOSING_LIMIT).duration_since(epoch);
    epoch + Duration::from_secs(due.as_secs() + 1)
}

/// The task: drains every socket it is handed, closes each when its remote has closed, and
/// gives up on those still open at their deadline. Ends when every [`Reaper`] handle is gone and
/// nothing is left to drain.
async fn run(mut arrivals: mpsc::UnboundedReceiver<Closing>) {
    let mut draining = FuturesUnordered::new();
    let mut deadlines: VecDeque<(Instant, AbortHandle)> = VecDeque::new();
    let mut timer = Box::pin(tokio::time::sleep(CLOSING_LIMIT));
    let mut handles_gone = false;
    futures::future::poll_fn(|cx: &mut Context<'_>| {
        while !handles_gone {
            match arrivals.poll_next_unpin(cx) {
                Poll::Ready(Some((io, lease))) => {
                    let (abort, registration) = AbortHandle::new_pair();
                    draining.push(Abortable::new(
                        async move {
                            drain(&io).await;
                            // Close the socket, then release the pair.
                            drop(io);
                            drop(lease);
                        },
                        registration,
                    ));
                    let due = deadline();
                    if deadlines.is_empty() {
                        timer.as_mut().reset(due);
                    }
                    deadlines.push_back((due, abort));
                }
                Poll::Ready(None) => handles_gone = true,
                Poll::Pending => break,
            }
        }
        while let Poll::Ready(Some(_)) = draining.poll_next_unpin(cx) {}
        while !deadlines.is_empty() && timer.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            while let Some((_, abort)) = deadlines.front().filter(|(due, _)| *due <= now) {
                abort.abort();
                deadlines.pop_front();
            }
            if let Some((due, _)) = deadlines.front() {
                timer.as_mut().reset(*due);
            }
        }
        // Aborted drains finish on this poll: their sockets close and their pairs are freed.
        while let Poll::Ready(Some(result)) = draining.poll_next_unpin(cx) {
            if result.is_err() {
                tracing::debug!("remote did not close within {CLOSING_LIMIT:?}; closed anyway");
            }
        }
        if handles_gone && draining.is_empty() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
}
