//! What a listener and a connection hold in the table: a [`Registration`] keeps a listening
//! address registered, a [`Lease`] keeps the (local, remote) pair of a dial or an accepted
//! connection. Both let go when dropped.

use std::{
    fmt,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use futures::channel::oneshot;

use super::{
    Backlog, Connecting, ReuseTable,
    table::{Endpoint, Pair, PairKey, RemoteClosed},
};

/// Keeps a listening address registered, with the listener's backlog if it has one;
/// unregisters it when dropped.
pub(crate) struct Registration {
    pub(super) table: ReuseTable,
    pub(super) addr: SocketAddr,
    pub(super) backlog: Option<Arc<Backlog>>,
}

impl Registration {
    /// Lets the dials that leave from this address take in the connections waiting in
    /// `backlog` (see [`Backlog`]), for as long as the registration lives.
    pub(crate) fn with_backlog(mut self, backlog: Arc<Backlog>) -> Self {
        if let Some(registered) = self.table.lock().listeners.get_mut(&self.addr) {
            registered.backlogs.push(backlog.clone());
        }
        self.backlog = Some(backlog);
        self
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut table = self.table.lock();
        if let Some(backlog) = &self.backlog
            && let Some(registered) = table.listeners.get_mut(&self.addr)
        {
            registered.backlogs.retain(|b| !Arc::ptr_eq(b, backlog));
        }
        table.unregister(self.addr);
        tracing::trace!(addr = %self.addr, "unregistered from port reuse");
    }
}

impl fmt::Debug for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Registration").field(&self.addr).finish()
    }
}

/// Holds a (local, remote) pair; releases it when dropped, unless [`Lease::orphan`] handed it
/// to the table.
pub(crate) struct Lease {
    pub(super) table: ReuseTable,
    pub(super) id: u64,
    pub(super) local: Endpoint,
    pub(super) remote: Endpoint,
    /// Whether this lease counts as a held closing socket (see [`Lease::closing`]).
    pub(super) held: bool,
    /// Whether [`Lease::orphan`] handed the pair to the table: dropping then leaves it there.
    pub(super) orphaned: bool,
    /// Whether the dial on this lease has claimed its pair ([`Lease::claim`]): only then can
    /// dials wait for it ([`ReuseTable::after_refused_dial`] finds them through the claim).
    pub(super) claimed: AtomicBool,
    /// The table's [`closes_at_once`](super::table::Table::closes_at_once), fixed when the
    /// transport is created.
    pub(super) closes_at_once: bool,
}

impl Lease {
    /// Asks the listener on this pair's local address to hand over, rather than report, a
    /// connection it accepts from the remote on this very pair, for as long as the returned
    /// claim lives. A dial whose remote refused it makes this claim: in a hole punch whose
    /// remote NAT or firewall answered our first SYN, the remote's own SYN may then reach our
    /// listener on the same pair, the kernel refuses our next SYN on it (the pair is taken),
    /// and that accepted connection is the one both sides were dialing.
    pub(crate) fn claim(&self) -> Claim {
        let (sender, receiver) = oneshot::channel();
        let key = (self.local, self.remote);
        self.claimed.store(true, Ordering::Relaxed);
        self.table.lock().claims.insert(key, sender);
        Claim {
            table: self.table.clone(),
            key,
            receiver,
        }
    }

    /// Whether a connection from the remote, accepted by a listener on this pair's local port,
    /// now holds the pair: the remote's own dial to us arrived first. Looks only if such a
    /// listener has accepted a connection from the remote's address before (the remote reuses
    /// its listening port, as a peer that may dial us while we dial it does; see
    /// [`super::sources`]), so that a dial to any other remote spends no system call here. A
    /// dial asks this with its socket bound, just before `connect`: the later the look, the
    /// fewer crossing dials meet the kernel's refusal.
    pub(crate) fn taken_in_backlog(&self) -> bool {
        if !self.table.lock().sources.contains(self.remote) {
            return false;
        }
        self.taken_after_refusal()
    }

    /// Whether a connection from the remote holds the pair, as [`Self::taken_in_backlog`] but
    /// looking whoever the remote: asked once the kernel has refused the pair. Takes in what
    /// waits on the sockets of the listeners on this pair's local port first
    /// ([`super::Backlog::drain`]); an admitted connection replaces this lease's entry in the
    /// table, so that a new choice passes over the pair.
    pub(crate) fn taken_after_refusal(&self) -> bool {
        self.table.drain_backlogs(self.local());
        let key = (self.local, self.remote);
        let taken = self
            .table
            .lock()
            .pairs
            .get(&key)
            .is_none_or(|pair| pair.lease() != self.id);
        if taken {
            tracing::debug!(local = %self.local(), remote = %SocketAddr::from(self.remote), "a connection from the remote holds the pair, passing over it");
        }
        taken
    }

    /// Wakes the dials that wait for this lease's dial to end
    /// ([`ReuseTable::after_refused_dial`]): it connected, and the pair is its connection's.
    /// (A lease dropped, or a dial kept by [`Lease::park`], wakes them too.) A dial that never
    /// claimed its pair has none, and takes no lock here.
    pub(crate) fn connected(&self) {
        if self.claimed.load(Ordering::Relaxed) {
            self.table.lock().wake_waiting(&(self.local, self.remote));
        }
    }

    /// Keeps `connecting`, this lease's dial given up before it connected, half-open for
    /// `window` ([`ReuseTable::park`]): the pair stays held under a new lease, which the next
    /// dial on it takes over.
    pub(crate) fn park(&self, connecting: Connecting, remote: SocketAddr, window: Duration) {
        self.table
            .park(self.id, self.local(), remote, connecting, window);
    }

    /// The listening address the connection leaves from.
    pub(crate) fn local(&self) -> SocketAddr {
        self.local.into()
    }

    /// Whether a listener bound to exactly [`Lease::local`] is registered (rather than a
    /// wildcard listener on its port alone).
    pub(crate) fn on_specific_listener(&self) -> bool {
        self.table.lock().listeners.contains_key(&self.local())
    }

    /// Marks the pair as closing with its socket kept open: its connection is gone from the
    /// user, the remote has not yet closed its side; `remote_closed` tells when it has. Returns
    /// false, and changes nothing, if the table's bound on held closing sockets is reached: the
    /// caller then closes the socket and calls [`Lease::orphan`].
    ///
    /// The lease counts as a held socket until it is dropped or orphaned: drop or orphan it only
    /// after closing the socket, so that the count never falls below the open sockets.
    pub(crate) fn closing(&mut self, remote_closed: RemoteClosed) -> bool {
        let mut table = self.table.lock();
        if self.held || table.held >= table.max_held {
            return self.held;
        }
        table.held += 1;
        self.held = true;
        if let Some(pair) = table.pairs.get_mut(&(self.local, self.remote))
            && pair.lease() == self.id
        {
            *pair = Pair::Closing(self.id, remote_closed);
        }
        true
    }

    /// Hands the pair over to the table as orphaned: its socket was closed before the remote
    /// closed its side, and the pair is passed over for the table's orphan hold, then removed.
    pub(crate) fn orphan(mut self) {
        let mut table = self.table.lock();
        if self.held {
            table.held -= 1;
            self.held = false;
        }
        table.orphan((self.local, self.remote), self.id, false, Instant::now());
        self.orphaned = true;
    }

    /// Whether the table closes connections dropped before their remote closed at once (see
    /// [`ReuseTable::closing_at_once`](super::ReuseTable::closing_at_once)): then the caller
    /// closes the socket and calls [`Lease::finishing`]; otherwise it holds the socket.
    pub(crate) fn closes_at_once(&self) -> bool {
        self.closes_at_once
    }

    /// Hands the pair over to the table as finishing in the kernel: its socket was closed at
    /// once before the remote closed its side, and a dial that meets the pair asks the kernel
    /// whether the connection is done. Call it only once the socket is closed: a prune of the
    /// finishing pairs that runs in between would find the connection still open, not
    /// finishing, and free the pair. Returns the table if its finishing pairs are due for a
    /// [`ReuseTable::prune_finishing`](super::ReuseTable::prune_finishing).
    pub(crate) fn finishing(mut self) -> Option<ReuseTable> {
        let mut table = self.table.lock();
        let now = Instant::now();
        table.orphan((self.local, self.remote), self.id, true, now);
        // The first pair left to the kernel starts the clock: it is still finishing now.
        let pruned = *table.pruned.get_or_insert(now);
        let due = now.saturating_duration_since(pruned) >= table.prune_every;
        if due {
            // The prune starts now: the next is due a whole interval later.
            table.pruned = Some(now);
        }
        drop(table);
        self.orphaned = true;
        due.then(|| self.table.clone())
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.orphaned && !self.held {
            // The table has the pair already, and no held socket to count.
            return;
        }
        let mut table = self.table.lock();
        if self.held {
            table.held -= 1;
        }
        // A dial that ends without a connection: the pair is free, or kept (`park`) for the
        // dials that wait for it.
        table.wake_waiting(&(self.local, self.remote));
        // A dial may already have taken over the pair of a closing lease.
        if !self.orphaned
            && table
                .pairs
                .get(&(self.local, self.remote))
                .is_some_and(|pair| pair.lease() == self.id)
        {
            table.pairs.remove(&(self.local, self.remote));
        }
    }
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("local", &self.local)
            .field("remote", &self.remote)
            .finish()
    }
}

/// A dial's claim on the connection its listener may accept on the dial's pair (see
/// [`Lease::claim`]); withdrawn when dropped. As a future it yields that connection, or never.
pub(crate) struct Claim {
    table: ReuseTable,
    key: PairKey,
    receiver: oneshot::Receiver<tokio::net::TcpStream>,
}

impl Future for Claim {
    type Output = tokio::net::TcpStream;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match Pin::new(&mut self.receiver).poll(cx) {
            Poll::Ready(Ok(io)) => Poll::Ready(io),
            // The sender lives in the table until this claim withdraws it.
            Poll::Ready(Err(oneshot::Canceled)) | Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.table.lock().claims.remove(&self.key);
    }
}

impl fmt::Debug for Claim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Claim").field(&self.key).finish()
    }
}
