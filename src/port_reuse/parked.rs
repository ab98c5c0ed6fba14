//! Dials from a listening port given up before they connected, kept half-open for a while and
//! handed to the next dial on their pair ([`ReuseTable::park`], [`ReuseTable::unpark`]).
//!
//! A dial whose SYN the remote's firewall drops leaves an entry for its pair in our own
//! firewall's connection tracking, also once the dial is given up and its socket closed (Linux
//! keeps a `SYN_SENT` entry 2 minutes). If a hole punch on the same pair follows and the
//! remote's SYN arrives first, that entry lets it in as the answer to ours, our listener
//! answers from a new socket whose sequence number is not the one the entry recorded, and the
//! firewall drops the answer as invalid: the punch fails (docs/nat-zoo.md, the netns `stale`
//! scenario). Kept open, the given-up dial's socket is still in SYN_SENT when the remote's SYN
//! comes: the kernel answers from that socket (a simultaneous open) with the sequence number
//! the firewall expects, and the next dial on the pair takes the connection over.

use std::{
    future::Future,
    io,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use futures::{
    channel::oneshot,
    future::{self, Either},
};
use tokio::time::Instant;

use super::{
    Lease, ReuseTable,
    table::{Pair, PairKey},
};
use crate::sys::Step;

/// A dial's `connect` in progress, boxed so that it can move to the task that keeps it.
pub(crate) type Connecting =
    Pin<Box<dyn Future<Output = Result<tokio::net::TcpStream, (Step, io::Error)>> + Send>>;

/// A given-up dial handed to a new dial on its pair: its `connect` (done or not) and the lease
/// that holds the pair.
pub(crate) struct Parked {
    pub(crate) connecting: Connecting,
    pub(crate) lease: Lease,
}

/// At most this many given-up dials are kept at once; past it a given-up dial is closed.
const MAX_PARKED: usize = 64;

/// How long a kept dial that has connected waits for the dial that takes it over (within its
/// window). In a hole punch that dial follows the remote's SYN within the skew between the two
/// sides' dials, a fraction of the relayed round trip.
pub(crate) const CONNECTED_GRACE: Duration = Duration::from_secs(2);

/// How many given-up dials are kept now, in every table of the process: a dial looks for one
/// ([`ReuseTable::unpark`]) only if there is any, without taking its table's lock otherwise.
static KEPT: AtomicUsize = AtomicUsize::new(0);

impl ReuseTable {
    /// Keeps `connecting`, the `connect` of a dial from `local` to `remote` that was given up
    /// (its future dropped) before it connected, for `window` on a task of the current tokio
    /// runtime, with the pair held, until a dial to `remote` from the same IP asks for it
    /// ([`Self::unpark`]). A connection it makes meanwhile waits for that dial for
    /// [`CONNECTED_GRACE`] at most, within the window; then, or if it fails, the socket is
    /// closed and the pair released. `lease` is the
    /// number of the given-up dial's lease: its pair is taken over only while that lease (or
    /// nothing) holds it. Does nothing (the socket closes) without a runtime, with a zero
    /// window, or when [`MAX_PARKED`] dials are kept already.
    pub(crate) fn park(
        &self,
        lease: u64,
        local: SocketAddr,
        remote: SocketAddr,
        connecting: Connecting,
        window: Duration,
    ) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if window.is_zero() {
            return;
        }
        let key = (local.into(), remote.into());
        let (ask, asked) = oneshot::channel::<oneshot::Sender<Parked>>();
        let mut table = self.lock();
        let free = table
            .pairs
            .get(&key)
            .is_none_or(|pair| matches!(pair, Pair::Open(id) if *id == lease));
        if !free || table.parked.len() >= MAX_PARKED || table.parked.contains_key(&key) {
            return;
        }
        table.parked.insert(key, ask);
        KEPT.fetch_add(1, Ordering::Relaxed);
        let lease = self.lease(table, local, remote, Pair::Open);
        tracing::debug!(%local, %remote, ?window, "dial given up before it connected: keeping it half-open for the next dial on its pair");
        let kept = Kept {
            table: self.clone(),
            key,
            handed: false,
        };
        runtime.spawn(async move {
            // The whole guard moves into the task (a closure would take the field alone).
            let mut kept = kept;
            kept.handed = keep(connecting, lease, asked, window).await;
        });
    }

    /// The given-up dial to `remote` from a listening address on `source`, if one is kept
    /// ([`Self::park`]): it comes through the returned receiver (which fails if its window has
    /// just ended).
    pub(crate) fn unpark(
        &self,
        source: IpAddr,
        remote: SocketAddr,
    ) -> Option<oneshot::Receiver<Parked>> {
        if KEPT.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let mut table = self.lock();
        let remote = remote.into();
        let key = *table
            .parked
            .keys()
            .find(|(local, r)| *r == remote && SocketAddr::from(*local).ip() == source)?;
        let ask = table.parked.remove(&key)?;
        drop(table);
        let (reply, replied) = oneshot::channel();
        ask.send(reply).ok()?;
        Some(replied)
    }
}

/// A kept dial's place in the table and in [`KEPT`], given up when its task ends (also when
/// the runtime drops the task).
struct Kept {
    table: ReuseTable,
    key: PairKey,
    /// Whether a dial took it: then that dial removed the entry, and the pair may be kept
    /// again under the same key since.
    handed: bool,
}

impl Drop for Kept {
    fn drop(&mut self) {
        if !self.handed {
            // Nobody took it: forget the entry (the lease, dropped, released the pair).
            self.table.lock().parked.remove(&self.key);
        }
        KEPT.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Keeps a given-up dial until a new dial asks for it or `window` ends; whether it was handed
/// over.
async fn keep(
    mut connecting: Connecting,
    lease: Lease,
    mut asked: oneshot::Receiver<oneshot::Sender<Parked>>,
    window: Duration,
) -> bool {
    let mut deadline = Box::pin(tokio::time::sleep(window));
    // While it connects.
    let outcome =
        match future::select(&mut asked, future::select(&mut connecting, &mut deadline)).await {
            Either::Left((reply, _)) => Either::Left(reply),
            Either::Right((Either::Left((result, _)), _)) => Either::Right(Some(result)),
            Either::Right((Either::Right(_), _)) => Either::Right(None),
        };
    let connected = match outcome {
        Either::Left(Ok(reply)) => return reply.send(Parked { connecting, lease }).is_ok(),
        Either::Right(Some(Ok(io))) => io,
        // Asked by a dial that is gone, refused, or the window ended.
        Either::Left(Err(oneshot::Canceled)) | Either::Right(_) => return false,
    };
    tracing::debug!(local = %lease.local(), "a given-up dial connected: waiting for the next dial on its pair");
    // Connected: wait for the dial that takes it, for a moment at most (the remote's listener
    // may have accepted it, and would otherwise wait on it for the rest of the window).
    let grace = Instant::now() + CONNECTED_GRACE;
    if grace < deadline.deadline() {
        deadline.as_mut().reset(grace);
    }
    match future::select(&mut asked, deadline).await {
        Either::Left((Ok(reply), _)) => reply
            .send(Parked {
                connecting: Box::pin(future::ready(Ok(connected))),
                lease,
            })
            .is_ok(),
        _ => false,
    }
}
