//! The shared port-reuse table: which listening addresses a dial may leave from, which
//! connections on them (outbound, or accepted by their listeners) already hold a (local, remote)
//! pair, and the deterministic choice between them.
//!
//! Bookkeeping: no system calls. The one a choice may need (the route lookup) is passed in by
//! the caller and made without holding the lock. The table also counts the closing connections
//! whose socket is held, up to its bound, keeps orphaned pairs (closed before their remote
//! closed) until they expire, and passes an accepted connection to the dial that claimed its
//! pair ([`Lease::claim`]).
//!
//! - this file: [`ReuseTable`], the handle shared by the transport, its listeners and dials;
//! - `table`: the data and the choice of a source;
//! - `guards`: the [`Registration`] of a listener, the [`Lease`] of a pair and a dial's
//!   [`Claim`] on a connection its listener accepts, released on drop;
//! - `backlog`: a listener's [`Backlog`], the connections waiting on its socket, which a dial
//!   takes in before it connects (or once the kernel refused its pair);
//! - `parked`: dials from a listening port given up before they connected, kept half-open
//!   for the next dial on their pair;
//! - `sources`: the remote addresses the listeners accepted connections from, which decide
//!   whether a dial looks at that backlog before it connects;
//! - `tests`, `tests_accepted`, `tests_finishing`, `tests_parked`: unit tests, the second for
//!   the pairs of accepted connections, the third for the pairs left to the kernel and their
//!   prune (Linux), the fourth for dials given up before they connected.

mod backlog;
mod guards;
mod parked;
mod sources;
mod table;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_accepted;
#[cfg(test)]
mod tests_parked;
// The kernel is asked about pairs through sock_diag.
#[cfg(all(test, sock_diag))]
mod tests_finishing;

use std::{
    collections::HashSet,
    fmt, io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::{Arc, Mutex, MutexGuard, PoisonError, atomic::AtomicBool},
    time::Duration,
};

use futures::channel::oneshot;

use crate::{origin::Fallback, route, sys};

use self::table::{Endpoint, Finishing, Pair, PairKey, Table};
pub(crate) use self::{
    backlog::{Accepted, Backlog},
    guards::{Claim, Lease, Registration},
    parked::{CONNECTED_GRACE, Connecting, Parked},
};

/// What becomes of an accepted connection ([`ReuseTable::admit`]).
enum Admission {
    /// The listener reports it; the lease holds its pair.
    Accepted(Lease),
    /// A dial on the same pair claimed it: send it there (it comes back if that dial is gone).
    Claimed(oneshot::Sender<tokio::net::TcpStream>),
}

/// How often at most dropping connections prunes the finishing pairs
/// ([`ReuseTable::prune_finishing`]): so the table keeps at most about this long's worth of
/// pairs the kernel has finished with. The first prune comes this long after the first pair
/// was left to the kernel: a pair just closed is still finishing.
const PRUNE_INTERVAL: Duration = Duration::from_secs(1);

/// Up to this many finishing pairs, a prune asks the kernel about each (1.3 us apiece on the
/// process's lookup socket); beyond, it dumps the kernel's finishing connections. A dump walks
/// the network namespace's whole connection table, TIME_WAIT entries included, whatever the
/// number of finishing pairs: 1.9 ms with 416 entries, 4.9 ms with 84,000 on the VM of
/// docs/performance.md (its row 12), where 256 lookups take 0.3 ms.
const PRUNE_LOOKUPS: usize = 256;

/// A dump keeps the next prune at least this many times its own duration away, so that dumps
/// take at most about 1% of a core however large the kernel's table: one of 20 ms puts the next
/// 2 s later.
const PRUNE_DUMP_SHARE: u32 = 100;

/// The longest a dump that took long puts off the next prune: pairs the kernel has finished with
/// wait in the table at most about this long (or their orphan hold, if shorter).
const PRUNE_INTERVAL_MAX: Duration = Duration::from_secs(10);

/// How long after a prune whose dump took `dump` the next one is due.
fn prune_spacing(dump: Duration) -> Duration {
    (dump * PRUNE_DUMP_SHARE).clamp(PRUNE_INTERVAL, PRUNE_INTERVAL_MAX)
}

/// A handle on the transport's port-reuse table, for observing what dials will do.
///
/// Cloning is cheap; every clone sees the same table. Obtained with
/// [`Transport::reuse_table`](crate::Transport::reuse_table).
#[derive(Clone)]
pub struct ReuseTable {
    enabled: bool,
    table: Arc<Mutex<Table>>,
}

impl ReuseTable {
    /// An empty table; no bound on held closing sockets until [`Self::with_closing_bound`].
    pub(crate) fn new(enabled: bool) -> Self {
        Self {
            enabled,
            table: Arc::default(),
        }
    }

    /// Lets at most `max_held` closing connections keep their socket open (see
    /// [`Lease::closing`]), and passes an orphaned pair over for `orphan_hold`.
    pub(crate) fn with_closing_bound(self, max_held: usize, orphan_hold: Duration) -> Self {
        {
            let mut table = self.lock();
            table.max_held = max_held;
            table.orphan_hold = orphan_hold;
        }
        self
    }

    /// Closes connections dropped before their remote closed at once, leaving their pairs to
    /// the kernel ([`Lease::finishing`]), if `at_once` and the kernel can be asked about a pair
    /// here (`sys::watches_closing`: Linux with sock_diag); otherwise they are held.
    pub(crate) fn closing_at_once(self, at_once: bool) -> Self {
        self.lock().closes_at_once = at_once && sys::watches_closing();
        self
    }

    /// Asks the kernel which of the table's finishing pairs ([`Lease::finishing`]) are still
    /// finishing and removes the others: up to [`PRUNE_LOOKUPS`] pairs one lookup each, more
    /// with one dump per family, which also puts off the next prune in proportion to how long
    /// it took ([`PRUNE_DUMP_SHARE`]). A dump can miss a connection, so a pair goes once two
    /// dumps in a row have not listed it ([`Table::prune`]). Nothing to do, and no system call,
    /// without finishing pairs. A failed dump changes nothing: those pairs then wait for the
    /// orphan hold.
    pub(crate) fn prune_finishing(&self) {
        self.prune_with(PRUNE_LOOKUPS);
    }

    /// [`Self::prune_finishing`], looking up at most `lookups` pairs one by one.
    fn prune_with(&self, lookups: usize) {
        let finishing = {
            let table = self.lock();
            if !table.closes_at_once {
                return;
            }
            table.finishing(lookups)
        };
        let before = std::time::Instant::now();
        match finishing {
            Finishing::None => {}
            Finishing::Few(keys) => {
                let finished: HashSet<PairKey> = keys
                    .into_iter()
                    .filter(|key| sys::pair_finished(key.0.into(), key.1.into()))
                    .collect();
                self.lock()
                    .prune(before, |key| finished.contains(key), true);
            }
            Finishing::Many(families) => match sys::finishing_pairs(families) {
                Ok(finishing) => {
                    let took = before.elapsed();
                    let mut table = self.lock();
                    table.prune(
                        before,
                        |key| !finishing.contains(&(key.0.into(), key.1.into())),
                        false,
                    );
                    table.prune_every = prune_spacing(took);
                }
                Err(error) => tracing::debug!(%error, "could not list finishing connections"),
            },
        }
    }

    /// Whether dials may reuse listening ports at all (configuration, environment, platform).
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// The registered listening addresses, in registration order, each once. A wildcard listener
    /// appears with its unspecified IP (`0.0.0.0:port`, `[::]:port`).
    pub fn listen_addrs(&self) -> Vec<SocketAddr> {
        let table = self.lock();
        let mut addrs: Vec<_> = table.listeners.iter().map(|(a, r)| (r.seq, *a)).collect();
        addrs.sort_unstable();
        addrs.into_iter().map(|(_, addr)| addr).collect()
    }

    /// How many open outbound connections left from a listening port.
    pub fn dialed_connections(&self) -> usize {
        self.lock()
            .pairs
            .values()
            .filter(|p| matches!(p, Pair::Open(_)))
            .count()
    }

    /// How many open connections the listeners registered for port reuse accepted. Each holds
    /// its (local, remote) pair as an outbound connection does: a dial from that listening
    /// address to that remote, which the kernel would refuse, passes over it.
    pub fn accepted_connections(&self) -> usize {
        self.lock()
            .pairs
            .values()
            .filter(|p| matches!(p, Pair::Accepted(_)))
            .count()
    }

    /// How many dropped connections on a listening port, outbound from it or accepted by its
    /// listener, still wait for the remote to close its side before their (local, remote) pair
    /// can be used again: those whose socket is kept open ([`Self::closing_sockets`]), those
    /// closed at once because the bound
    /// ([`Config::max_closing_sockets`](crate::Config::max_closing_sockets)) was reached or the
    /// remote did not close within 10 s (passed over for as long as the kernel may keep them,
    /// `tcp_fin_timeout`, 60 s by default, and a second), and on Linux those closed at once
    /// that the kernel is still finishing (asked here: one sock_diag dump per address family
    /// while there are any; see
    /// [`Config::hold_closing_sockets`](crate::Config::hold_closing_sockets)).
    pub fn closing_connections(&self) -> usize {
        self.prune_finishing();
        let mut table = self.lock();
        table.expire();
        table
            .pairs
            .values()
            .filter(|p| {
                matches!(
                    p,
                    Pair::Closing(..) | Pair::Orphaned(..) | Pair::Finishing(..)
                )
            })
            .count()
    }

    /// How many dropped connections are kept open until their remote closes, each holding a
    /// descriptor: never more than
    /// [`Config::max_closing_sockets`](crate::Config::max_closing_sockets). Always 0 on Linux
    /// unless [`Config::hold_closing_sockets`](crate::Config::hold_closing_sockets) is set.
    pub fn closing_sockets(&self) -> usize {
        self.lock().held
    }

    /// The local address a dial to `remote` with `PortUse::Reuse` would bind now, or why it would
    /// use an ephemeral port. For a non-loopback `remote` this asks the kernel for the route (no
    /// packet is sent).
    pub fn source_for(&self, remote: SocketAddr) -> Result<SocketAddr, Fallback> {
        let source = self.source_ip(remote, route::source_ip)?;
        self.lock().select(remote, source)
    }

    /// Whether one of our listeners or outbound connections holds `addr`'s port on an IP that
    /// overlaps `addr`'s (the same IP, or either of the two unspecified) in its family.
    pub(crate) fn holds_port(&self, addr: SocketAddr) -> bool {
        let overlaps = |ours: SocketAddr| {
            ours.port() == addr.port()
                && ours.is_ipv4() == addr.is_ipv4()
                && (ours.ip() == addr.ip()
                    || ours.ip().is_unspecified()
                    || addr.ip().is_unspecified())
        };
        let table = self.lock();
        table.listeners.keys().copied().any(overlaps)
            || table
                .pairs
                .keys()
                .any(|(local, _)| overlaps((*local).into()))
    }

    /// Registers a bound listening address; the address stays registered while the returned
    /// guard lives. Registering an address twice counts references.
    pub(crate) fn register(&self, addr: SocketAddr) -> Registration {
        self.lock().register(addr);
        tracing::trace!(%addr, "registered for port reuse");
        Registration {
            table: self.clone(),
            addr,
            backlog: None,
        }
    }

    /// Picks the source address for a dial to `remote` from `source` (see [`Self::source_ip`])
    /// and marks the pair open until the returned lease is dropped.
    ///
    /// A connection waiting on the listener's socket may hold the very pair, which the kernel
    /// would refuse: the dial asks [`Lease::taken_in_backlog`] once its socket is bound, just
    /// before it connects, or [`Lease::taken_after_refusal`] once the kernel refused the pair,
    /// and chooses again if so.
    pub(crate) fn reserve(&self, remote: SocketAddr, source: IpAddr) -> Result<Lease, Fallback> {
        let mut table = self.lock();
        table.expire();
        let local = table.select(remote, source)?;
        Ok(self.lease(table, local, remote, Pair::Open))
    }

    /// When every listening address on `source` is taken for `remote` ([`Self::reserve`] said
    /// [`Fallback::Busy`]) and one of them by a dial that the remote refused and that is trying
    /// again ([`Lease::claim`]): a receiver that completes when that dial ends (it connected,
    /// failed, or was kept by [`Self::park`]), for the caller to choose again then. `None` if
    /// no such dial runs.
    ///
    /// In a hole punch, DCUtR's next attempt may dial while the last one's dial is still
    /// refused and trying again. Dialing from an ephemeral port then is of no use for the punch
    /// (the remote's SYN comes to our listening port), while the same pair once the first dial
    /// is done goes on sending SYNs from the listening port, which keeps our NAT's mapping open
    /// for the remote's next SYN.
    pub(crate) fn after_refused_dial(
        &self,
        remote: SocketAddr,
        source: IpAddr,
    ) -> Option<oneshot::Receiver<()>> {
        let mut table = self.lock();
        if table.claims.is_empty() {
            return None;
        }
        let remote = remote.into();
        let key = *table
            .claims
            .keys()
            .find(|(local, r)| *r == remote && SocketAddr::from(*local).ip() == source)?;
        let (wake, woken) = oneshot::channel();
        table.waiting.entry(key).or_default().push(wake);
        Some(woken)
    }

    /// Takes in the connections waiting on the sockets of the listeners `local` shares its port
    /// with ([`Backlog::drain`]).
    fn drain_backlogs(&self, local: SocketAddr) {
        let backlogs = self.lock().backlogs(local);
        for backlog in backlogs {
            backlog.drain(self);
        }
    }

    /// Marks the pair of a connection the listener on `local` accepted from `remote` open until
    /// the returned lease is dropped, so that no dial from `local` tries it. `local` is the
    /// accepted socket's own address (a concrete IP, also for a wildcard listener). An entry
    /// left for the pair (an orphan the kernel has let go of, since it accepted the pair again)
    /// is replaced.
    pub(crate) fn accepted(&self, local: SocketAddr, remote: SocketAddr) -> Lease {
        // Dials look pairs up by IP and port alone (`Endpoint`): an IPv6 scope or flow label
        // does not hide the pair from them.
        let mut table = self.lock();
        table.sources.insert(remote.into());
        self.lease(table, local, remote, Pair::Accepted)
    }

    /// What to do with a connection the listener on `local` accepted from `remote`: hand it to
    /// the dial that claimed the pair ([`Lease::claim`]), or hold its pair as
    /// [`Self::accepted`] does.
    fn admit(&self, local: SocketAddr, remote: SocketAddr) -> Admission {
        let mut table = self.lock();
        table.sources.insert(remote.into());
        if !table.claims.is_empty()
            && let Some(dial) = table.claims.remove(&(local.into(), remote.into()))
        {
            return Admission::Claimed(dial);
        }
        Admission::Accepted(self.lease(table, local, remote, Pair::Accepted))
    }

    /// Admits a connection the listener on `local` accepted from `remote` ([`Self::admit`]):
    /// hands it to the dial that claimed its pair and returns `None`, or returns it with the
    /// lease that holds its pair (also when the claiming dial is gone).
    pub(crate) fn take_in(
        &self,
        io: tokio::net::TcpStream,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Option<(tokio::net::TcpStream, Lease)> {
        match self.admit(local, remote) {
            Admission::Accepted(lease) => Some((io, lease)),
            Admission::Claimed(dial) => match dial.send(io) {
                Ok(()) => {
                    tracing::debug!(%local, %remote, "accepted connection handed to the dial that claimed its pair");
                    None
                }
                Err(io) => Some((io, self.accepted(local, remote))),
            },
        }
    }

    /// Records (local, remote) as `pair` under a new lease number and hands out its lease.
    fn lease(
        &self,
        mut table: MutexGuard<'_, Table>,
        local: SocketAddr,
        remote: SocketAddr,
        pair: fn(u64) -> Pair,
    ) -> Lease {
        let (local, remote) = (Endpoint::from(local), Endpoint::from(remote));
        let id = table.next_lease;
        table.next_lease += 1;
        let replaced = table.pairs.insert((local, remote), pair(id));
        table.taken_over(replaced);
        let closes_at_once = table.closes_at_once;
        drop(table);
        Lease {
            table: self.clone(),
            id,
            local,
            remote,
            held: false,
            orphaned: false,
            claimed: AtomicBool::new(false),
            closes_at_once,
        }
    }

    /// The IP a dial to `remote` leaves from when a wildcard listener serves it: the loopback IP
    /// for a loopback `remote`, else the IP `route` says the kernel would use, or on Linux the
    /// stable address an IPv6 temporary one stands for (`sys::dial_source`). `route` runs only
    /// when a listener of the family exists, and without the table's lock held.
    pub(crate) fn source_ip(
        &self,
        remote: SocketAddr,
        route: impl FnOnce(SocketAddr) -> io::Result<IpAddr>,
    ) -> Result<IpAddr, Fallback> {
        if !self.enabled {
            return Err(Fallback::Disabled);
        }
        if !self.lock().has_family(remote.ip()) {
            return Err(Fallback::NoListener);
        }
        match remote.ip() {
            IpAddr::V4(ip) if ip.is_loopback() => Ok(Ipv4Addr::LOCALHOST.into()),
            IpAddr::V6(ip) if ip.is_loopback() => Ok(Ipv6Addr::LOCALHOST.into()),
            _ => route(remote).map(sys::dial_source).map_err(|error| {
                tracing::debug!(%remote, %error, "route lookup failed");
                Fallback::NoRoute
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // Nothing panics while holding the lock, and every update leaves the table consistent,
        // so a poisoned lock still guards a valid table.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for ReuseTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReuseTable")
            .field("enabled", &self.enabled)
            .field("listen_addrs", &self.listen_addrs())
            .field("dialed_connections", &self.dialed_connections())
            .field("accepted_connections", &self.accepted_connections())
            .finish()
    }
}
