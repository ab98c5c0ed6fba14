//! The table behind [`ReuseTable`](super::ReuseTable): registered listening addresses indexed by IP
//! and by registration order, the (local, remote) pairs our connections on listening ports hold
//! (outbound and accepted), and the deterministic choice of a source between them. Plain data;
//! the handle locks it.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    hash::{Hash, Hasher},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
    time::{Duration, Instant},
};

use futures::channel::oneshot;

use super::{Backlog, sources::Sources};
use crate::{origin::Fallback, sys};

/// An address as the table keys pairs by: the IP and the port. IPv6's flow label and scope id,
/// which a dial's choice never compares, are left out, so that a key takes 20 bytes where a
/// `SocketAddr` takes 32 (the table keeps one pair per connection on a listening port).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Endpoint {
    ip: IpAddr,
    port: u16,
}

impl Hash for Endpoint {
    /// One write for an IPv4 endpoint and two for an IPv6 one, where the derived hash makes
    /// three (the variant, the IP, the port): each accepted connection hashes its pair when the
    /// table records it and again when it lets the pair go.
    fn hash<H: Hasher>(&self, state: &mut H) {
        match self.ip {
            IpAddr::V4(ip) => {
                let ip = u32::from_ne_bytes(ip.octets());
                state.write_u64(u64::from(ip) << 16 | u64::from(self.port));
            }
            IpAddr::V6(ip) => {
                state.write_u128(u128::from_ne_bytes(ip.octets()));
                state.write_u16(self.port);
            }
        }
    }
}

impl From<SocketAddr> for Endpoint {
    fn from(addr: SocketAddr) -> Self {
        Self {
            ip: addr.ip(),
            port: addr.port(),
        }
    }
}

impl From<Endpoint> for SocketAddr {
    fn from(endpoint: Endpoint) -> Self {
        Self::new(endpoint.ip, endpoint.port)
    }
}

/// How many entries of [`Table::orphans`] must be stale, at the least, before a pass drops them
/// ([`Table::drop_stale_orphans`]).
pub(super) const ORPHANS_COMPACT_MIN: usize = 1024;

/// A connection's (local, remote) pair.
pub(super) type PairKey = (Endpoint, Endpoint);

/// The pairs a prune asks the kernel about ([`Table::finishing`]).
pub(super) enum Finishing {
    None,
    /// Few enough to look up one by one.
    Few(Vec<PairKey>),
    /// More: a dump of the families marked (IPv4, IPv6).
    Many([bool; 2]),
}

pub(super) struct Table {
    /// Registered listening addresses with their reference count and registration number.
    pub(super) listeners: HashMap<SocketAddr, Registered>,
    /// Ports per bound IP in registration order. The unspecified IPs (`0.0.0.0`, `::`) hold the
    /// wildcard listeners.
    by_ip: HashMap<IpAddr, BTreeMap<u64, u16>>,
    /// Listeners bound to a loopback IP, per family (0: IPv4, 1: IPv6), in registration order.
    loopback: [BTreeMap<u64, SocketAddr>; 2],
    /// How many distinct addresses of each family are registered.
    per_family: [usize; 2],
    /// (local, remote) of the connections that hold a pair on a listening address: outbound ones
    /// that left from it, and ones its listener accepted.
    pub(super) pairs: HashMap<PairKey, Pair>,
    /// Dials refused by their remote that wait, while they try again, for a connection from
    /// that remote accepted on their own pair (see [`ReuseTable::claim`](super::ReuseTable)):
    /// the listener hands it over through the sender instead of reporting it.
    pub(super) claims: HashMap<PairKey, oneshot::Sender<tokio::net::TcpStream>>,
    /// Dials that wait for a claiming dial on the pair to end (see
    /// [`ReuseTable::after_refused_dial`](super::ReuseTable::after_refused_dial)): dropping
    /// the senders ([`Self::wake_waiting`]) wakes them.
    pub(super) waiting: HashMap<PairKey, Vec<oneshot::Sender<()>>>,
    /// Dials from a listening port given up before they connected, kept half-open until a new
    /// dial on their pair asks for them (see [`ReuseTable::park`](super::ReuseTable::park)):
    /// the sender takes the asking dial's reply channel.
    pub(super) parked: HashMap<PairKey, oneshot::Sender<oneshot::Sender<super::Parked>>>,
    /// The remote addresses our listeners accepted connections from, remembered so that a dial
    /// to one of them looks at its listener's accept queue first (see [`Sources`]).
    pub(super) sources: Sources,
    /// The orphaned pairs in the order they were orphaned, with when they expire and the lease
    /// that orphaned them: [`Self::expire`] removes them from `pairs` once due. An entry whose
    /// pair a dial has taken over since (a finishing pair the kernel was done with) is stale;
    /// [`Self::orphan`] drops the stale ones once they are many ([`Self::taken_over`]).
    orphans: VecDeque<(Instant, PairKey, u64)>,
    /// How many orphaned pairs dials have taken over since the last pass over
    /// [`Self::orphans`]: at most that many stale entries in it.
    stale: usize,
    /// How many closing connections keep their socket open now (leases that called `closing`
    /// and are neither dropped nor orphaned).
    pub(super) held: usize,
    /// At most this many closing connections keep their socket open.
    pub(super) max_held: usize,
    /// How long an orphaned pair is passed over.
    pub(super) orphan_hold: Duration,
    /// Whether a connection dropped before its remote closed is closed at once and its pair
    /// left to the kernel ([`Pair::Finishing`]) rather than held ([`Pair::Closing`]).
    pub(super) closes_at_once: bool,
    /// When the finishing pairs were last pruned, or are being pruned; before the first prune,
    /// when the first pair was left to the kernel (`None` until then).
    pub(super) pruned: Option<Instant>,
    /// How long after [`Self::pruned`] the next prune is due: the shortest interval, or longer
    /// after a dump of the kernel's connections that took long (`ReuseTable::prune_finishing`).
    pub(super) prune_every: Duration,
    /// The registration number of the next new address.
    next_seq: u64,
    /// The number of the next lease.
    pub(super) next_lease: u64,
}

impl Default for Table {
    /// An empty table with no bound on held sockets and orphans passed over for 61 s (Linux's
    /// default `tcp_fin_timeout` and a second of margin).
    fn default() -> Self {
        Self {
            listeners: HashMap::new(),
            by_ip: HashMap::new(),
            loopback: Default::default(),
            per_family: [0; 2],
            pairs: HashMap::new(),
            claims: HashMap::new(),
            waiting: HashMap::new(),
            parked: HashMap::new(),
            sources: Sources::default(),
            orphans: VecDeque::new(),
            stale: 0,
            held: 0,
            max_held: usize::MAX,
            orphan_hold: Duration::from_secs(61),
            closes_at_once: false,
            pruned: None,
            prune_every: super::PRUNE_INTERVAL,
            next_seq: 0,
            next_lease: 0,
        }
    }
}

pub(super) struct Registered {
    refs: usize,
    pub(super) seq: u64,
    /// The listening sockets registered at this address whose waiting connections a dial takes
    /// in before it leaves from the address (see [`Backlog`]).
    pub(super) backlogs: Vec<Arc<Backlog>>,
}

/// The state of a (local, remote) pair held by a connection on a listening address, with the
/// number of the lease that holds it.
pub(super) enum Pair {
    /// The outbound connection is open.
    Open(u64),
    /// The connection, accepted by the listener on `local` from `remote`, is open. The kernel
    /// refuses a dial from `local` to `remote` as for an outbound one: the 4-tuple is the same.
    /// Once dropped, the pair closes as an outbound one does.
    Accepted(u64),
    /// The connection was dropped before the remote closed its side: our FIN is sent, the
    /// remote's is awaited. Until it comes the kernel refuses the pair (`EADDRNOTAVAIL`), or worse
    /// takes it over and resets the remote's old connection, so dials pass over it. Once the
    /// probe says the remote's FIN has arrived, the pair is free even if its socket is not closed
    /// yet: the kernel then holds only a TIME_WAIT entry, which a new connection may take over.
    Closing(u64, RemoteClosed),
    /// The connection was closed before the remote closed its side, without waiting for it (the
    /// bound on held sockets was reached, or the remote did not close in time). The kernel keeps
    /// it as an orphan in FIN_WAIT until the remote's FIN comes or `tcp_fin_timeout` passes, and
    /// meanwhile refuses the pair or takes it over and resets the remote's connection. Without
    /// the socket the remote's FIN cannot be seen, so the pair is passed over until the instant
    /// given, when the kernel has let go of the orphan in any case.
    Orphaned(u64, Instant),
    /// The connection was closed at once before the remote closed its side, where the kernel
    /// can be asked about a pair (Linux: `sys::pair_finished`). The kernel finishes it as for
    /// [`Pair::Orphaned`]; a dial that meets the pair asks it whether it has, and the pair is
    /// free once it has or at the instant given. [`Table::prune`] removes the finished ones in
    /// bulk; the flag says that the last dump of the kernel's finishing connections did not
    /// list the pair (one more such dump and it goes).
    Finishing(u64, Instant, bool),
}

/// Tells, without a system call, whether the remote of a closing connection has closed its side.
pub(super) type RemoteClosed = Arc<dyn Fn() -> bool + Send + Sync>;

impl Pair {
    pub(super) fn lease(&self) -> u64 {
        match self {
            Self::Open(lease)
            | Self::Accepted(lease)
            | Self::Closing(lease, _)
            | Self::Orphaned(lease, _)
            | Self::Finishing(lease, ..) => *lease,
        }
    }

    /// Whether a dial may take this pair, `key`, now.
    fn is_free(&self, key: &PairKey) -> bool {
        match self {
            Self::Open(_) | Self::Accepted(_) => false,
            Self::Closing(_, remote_closed) => remote_closed(),
            Self::Orphaned(_, until) => Instant::now() >= *until,
            Self::Finishing(_, until, _) => {
                Instant::now() >= *until || sys::pair_finished(key.0.into(), key.1.into())
            }
        }
    }
}

impl Table {
    pub(super) fn register(&mut self, addr: SocketAddr) {
        if let Some(registered) = self.listeners.get_mut(&addr) {
            registered.refs += 1;
            return;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.listeners.insert(
            addr,
            Registered {
                refs: 1,
                seq,
                backlogs: Vec::new(),
            },
        );
        self.per_family[family(addr.ip())] += 1;
        self.by_ip
            .entry(addr.ip())
            .or_default()
            .insert(seq, addr.port());
        if addr.ip().is_loopback() {
            self.loopback[family(addr.ip())].insert(seq, addr);
        }
    }

    pub(super) fn unregister(&mut self, addr: SocketAddr) {
        let Some(registered) = self.listeners.get_mut(&addr) else {
            return;
        };
        registered.refs -= 1;
        if registered.refs > 0 {
            return;
        }
        let seq = registered.seq;
        self.listeners.remove(&addr);
        self.per_family[family(addr.ip())] -= 1;
        if let Some(ports) = self.by_ip.get_mut(&addr.ip()) {
            ports.remove(&seq);
            if ports.is_empty() {
                self.by_ip.remove(&addr.ip());
            }
        }
        self.loopback[family(addr.ip())].remove(&seq);
    }

    /// Marks the pair of lease `id` orphaned for [`Self::orphan_hold`] from `now`, unless a dial
    /// took the pair over already: [`Pair::Orphaned`], or [`Pair::Finishing`] if `in_kernel`.
    pub(super) fn orphan(&mut self, key: PairKey, id: u64, in_kernel: bool, now: Instant) {
        self.expire_at(now);
        if let Some(pair) = self.pairs.get_mut(&key)
            && pair.lease() == id
        {
            let until = now + self.orphan_hold;
            *pair = if in_kernel {
                Pair::Finishing(id, until, false)
            } else {
                Pair::Orphaned(id, until)
            };
            if self.stale >= ORPHANS_COMPACT_MIN && 2 * self.stale >= self.orphans.len() {
                self.drop_stale_orphans();
            }
            self.orphans.push_back((until, key, id));
        }
    }

    /// Records that a dial took over `replaced`, the pair it now holds: an orphaned pair's
    /// entry in [`Self::orphans`] becomes stale.
    pub(super) fn taken_over(&mut self, replaced: Option<Pair>) {
        if matches!(replaced, Some(Pair::Orphaned(..) | Pair::Finishing(..))) {
            self.stale += 1;
        }
    }

    /// Drops the entries of [`Self::orphans`] whose pair no longer has the lease that orphaned
    /// it. A dial that takes over a finishing pair leaves its entry behind, and a node that
    /// drops and redials the same remote keeps doing so: without this pass the queue would hold
    /// every pair orphaned in the last [`Self::orphan_hold`] (61 s at thousands a second), and
    /// every prune would walk it. Run once at least half the queue and
    /// [`ORPHANS_COMPACT_MIN`] entries may be stale, so amortized constant time per takeover,
    /// and never where no dial takes a pair over (accepted connections whose remotes do not
    /// dial again).
    fn drop_stale_orphans(&mut self) {
        let pairs = &self.pairs;
        self.orphans
            .retain(|(_, key, id)| pairs.get(key).is_some_and(|pair| pair.lease() == *id));
        self.stale = 0;
    }

    /// How many entries [`Self::orphans`] holds, stale ones included (for `tests_finishing`,
    /// which needs sock_diag).
    #[cfg(all(test, sock_diag))]
    pub(super) fn orphan_entries(&self) -> usize {
        self.orphans.len()
    }

    /// Removes the [`Pair::Finishing`] pairs closed before `before` that the kernel, asked at
    /// `before`, had `finished`: at once if it was asked about each pair (`exact`); after a dump,
    /// only those the previous dump did not list either. A dump can miss a connection: the
    /// kernel walks its table in batches, resuming each at a position in a hash bucket, and an
    /// entry removed from that bucket in between (a TIME_WAIT entry expiring) moves the next one
    /// back past it.
    pub(super) fn prune(
        &mut self,
        before: Instant,
        finished: impl Fn(&PairKey) -> bool,
        exact: bool,
    ) {
        let pairs = &mut self.pairs;
        let hold = self.orphan_hold;
        self.orphans.retain(|&(until, key, id)| {
            let Some(Pair::Finishing(lease, _, unlisted)) = pairs.get_mut(&key) else {
                return true;
            };
            if *lease != id || until >= before + hold {
                return true;
            }
            if !finished(&key) {
                *unlisted = false;
                return true;
            }
            if !exact && !*unlisted {
                *unlisted = true;
                return true;
            }
            pairs.remove(&key);
            false
        });
    }

    /// The [`Pair::Finishing`] pairs, if there are at most `few`; otherwise the families they
    /// are of (IPv4, IPv6; an IPv4-mapped IPv6 pair counts as IPv6, the family of its socket).
    pub(super) fn finishing(&self, few: usize) -> Finishing {
        let mut keys = Vec::new();
        let mut families = [false; 2];
        for (_, key, id) in &self.orphans {
            if matches!(self.pairs.get(key), Some(Pair::Finishing(lease, ..)) if lease == id) {
                families[family(key.0.ip)] = true;
                if keys.len() <= few {
                    keys.push(*key);
                } else if families == [true, true] {
                    break;
                }
            }
        }
        match (keys.len(), families) {
            (0, _) => Finishing::None,
            (n, _) if n <= few => Finishing::Few(keys),
            (_, families) => Finishing::Many(families),
        }
    }

    /// Wakes the dials waiting for the dial on `key` to end ([`Self::waiting`]).
    pub(super) fn wake_waiting(&mut self, key: &PairKey) {
        if !self.waiting.is_empty() {
            self.waiting.remove(key);
        }
    }

    /// Removes the orphaned pairs that are due, so that the table does not grow with pairs
    /// nobody dials again. Each orphan is removed once: amortized constant time, and no clock
    /// read while there is none.
    pub(super) fn expire(&mut self) {
        if !self.orphans.is_empty() {
            self.expire_at(Instant::now());
        }
    }

    /// [`Self::expire`] at `now`.
    fn expire_at(&mut self, now: Instant) {
        while let Some(&(until, key, id)) = self.orphans.front() {
            if until > now {
                return;
            }
            self.orphans.pop_front();
            if matches!(self.pairs.get(&key), Some(Pair::Orphaned(lease, _) | Pair::Finishing(lease, ..)) if *lease == id)
            {
                self.pairs.remove(&key);
            }
        }
    }

    /// The backlogs of the listeners a dial leaving from `local` shares its port with: the
    /// listener bound to `local` and the wildcard listener on its port.
    pub(super) fn backlogs(&self, local: SocketAddr) -> Vec<Arc<Backlog>> {
        let wildcard = SocketAddr::new(unspecified(local.ip()), local.port());
        [local, wildcard]
            .iter()
            .filter_map(|addr| self.listeners.get(addr))
            .flat_map(|registered| registered.backlogs.iter().cloned())
            .collect()
    }

    /// Whether any listener of `ip`'s family is registered.
    pub(super) fn has_family(&self, ip: IpAddr) -> bool {
        self.per_family[family(ip)] > 0
    }

    /// The first free candidate for a dial to `remote`, `source` being the IP the kernel would
    /// send from. Candidates, each tier in registration order:
    /// - loopback `remote`: listeners on a loopback IP of the family, then wildcard listeners;
    /// - otherwise: listeners bound to exactly `source`, then wildcard listeners.
    ///
    /// A candidate is skipped, without a system call, when one of our connections holds its
    /// pair with `remote` (open, outbound or accepted, or closing and the remote has not closed
    /// yet: see [`Pair::Closing`] and [`Pair::Orphaned`]) or when it is `remote` itself (a TCP
    /// self-connection).
    pub(super) fn select(
        &self,
        remote: SocketAddr,
        source: IpAddr,
    ) -> Result<SocketAddr, Fallback> {
        let loopback = remote.ip().is_loopback();
        let on_loopback = loopback.then(|| self.loopback[family(source)].values().copied());
        let on_source = (!loopback).then(|| self.ports_on(source));
        let on_wildcard = self.ports_on(unspecified(source));
        let candidates = on_loopback.into_iter().flatten().chain(
            on_source
                .into_iter()
                .flatten()
                .chain(on_wildcard)
                .map(|port| SocketAddr::new(source, port)),
        );
        let mut any = false;
        let remote_key = Endpoint::from(remote);
        for local in candidates {
            any = true;
            let key = (Endpoint::from(local), remote_key);
            if key.0 != key.1 && self.pairs.get(&key).is_none_or(|pair| pair.is_free(&key)) {
                return Ok(local);
            }
        }
        Err(if any {
            Fallback::Busy
        } else {
            Fallback::NoListener
        })
    }

    fn ports_on(&self, ip: IpAddr) -> impl Iterator<Item = u16> + '_ {
        self.by_ip
            .get(&ip)
            .into_iter()
            .flat_map(|ports| ports.values().copied())
    }
}

fn family(ip: IpAddr) -> usize {
    match ip {
        IpAddr::V4(_) => 0,
        IpAddr::V6(_) => 1,
    }
}

fn unspecified(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        IpAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    }
}
