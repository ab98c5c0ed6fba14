//! The shared port-reuse table: which listening addresses a dial may leave from, which outbound
//! connections already hold a (local, remote) pair, and the deterministic choice between them.
//!
//! Pure bookkeeping: no sockets. The one system call a choice may need (the route lookup) is
//! passed in by the caller and made without holding the lock.

use std::{
    collections::{BTreeMap, HashMap},
    fmt, io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use crate::{closing::Reaper, route, stream::Fallback};

/// A handle on the transport's port-reuse table, for observing what dials will do.
///
/// Cloning is cheap; every clone sees the same table. Obtained with
/// [`Transport::port_reuse`](crate::Transport::port_reuse).
#[derive(Clone)]
pub struct PortReuse {
    enabled: bool,
    table: Arc<Mutex<Table>>,
    /// Holds the sockets of closing pairs until their remote closes.
    reaper: Arc<Reaper>,
}

#[derive(Default)]
struct Table {
    /// Registered listening addresses with their reference count and registration number.
    listeners: HashMap<SocketAddr, Registered>,
    /// Ports per bound IP in registration order. The unspecified IPs (`0.0.0.0`, `::`) hold the
    /// wildcard listeners.
    by_ip: HashMap<IpAddr, BTreeMap<u64, u16>>,
    /// Listeners bound to a loopback IP, per family (0: IPv4, 1: IPv6), in registration order.
    loopback: [BTreeMap<u64, SocketAddr>; 2],
    /// How many distinct addresses of each family are registered.
    per_family: [usize; 2],
    /// (local, remote) of the outbound connections that left from a listening port and still
    /// hold the pair.
    pairs: HashMap<(SocketAddr, SocketAddr), Pair>,
    /// The registration number of the next new address.
    next_seq: u64,
    /// The number of the next lease.
    next_lease: u64,
}

#[derive(Clone, Copy)]
struct Registered {
    refs: usize,
    seq: u64,
}

/// The state of a (local, remote) pair held by an outbound connection, with the number of the
/// lease that holds it.
enum Pair {
    /// The connection is open.
    Open(u64),
    /// The connection was dropped before the remote closed its side: our FIN is sent, the
    /// remote's is awaited. Until it comes the kernel refuses the pair (`EADDRNOTAVAIL`), or worse
    /// takes it over and resets the remote's old connection, so dials pass over it. Once the
    /// probe says the remote's FIN has arrived, the pair is free even if its socket is not closed
    /// yet: the kernel then holds only a TIME_WAIT entry, which a new connection may take over.
    Closing(u64, RemoteClosed),
}

/// Tells, without a system call, whether the remote of a closing connection has closed its side.
pub(crate) type RemoteClosed = Arc<dyn Fn() -> bool + Send + Sync>;

impl Pair {
    fn lease(&self) -> u64 {
        match self {
            Self::Open(lease) | Self::Closing(lease, _) => *lease,
        }
    }

    /// Whether a dial may take this pair now.
    fn is_free(&self) -> bool {
        match self {
            Self::Open(_) => false,
            Self::Closing(_, remote_closed) => remote_closed(),
        }
    }
}

impl PortReuse {
    pub(crate) fn new(enabled: bool) -> Self {
        Self {
            enabled,
            table: Arc::default(),
            reaper: Arc::default(),
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
    pub fn live_connections(&self) -> usize {
        self.lock()
            .pairs
            .values()
            .filter(|p| matches!(p, Pair::Open(_)))
            .count()
    }

    /// How many dropped outbound connections from a listening port still wait for the remote to
    /// close its side before their (local, remote) pair can be used again.
    pub fn closing_connections(&self) -> usize {
        self.lock()
            .pairs
            .values()
            .filter(|p| matches!(p, Pair::Closing(..)))
            .count()
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
            || table.pairs.keys().any(|(local, _)| overlaps(*local))
    }

    /// Registers a bound listening address; the address stays registered while the returned
    /// guard lives. Registering an address twice counts references.
    pub(crate) fn register(&self, addr: SocketAddr) -> Registration {
        self.lock().register(addr);
        tracing::trace!(%addr, "registered for port reuse");
        Registration {
            table: self.clone(),
            addr,
        }
    }

    /// Picks the source address for a dial to `remote` from `source` (see [`Self::source_ip`])
    /// and marks the pair open until the returned lease is dropped.
    pub(crate) fn reserve(&self, remote: SocketAddr, source: IpAddr) -> Result<Lease, Fallback> {
        let mut table = self.lock();
        let local = table.select(remote, source)?;
        let id = table.next_lease;
        table.next_lease += 1;
        table.pairs.insert((local, remote), Pair::Open(id));
        drop(table);
        Ok(Lease {
            table: self.clone(),
            id,
            local,
            remote,
        })
    }

    /// The IP a dial to `remote` leaves from when a wildcard listener serves it: the loopback IP
    /// for a loopback `remote`, else the IP `route` says the kernel would use. `route` runs only
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
            _ => route(remote).map_err(|error| {
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

impl fmt::Debug for PortReuse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PortReuse")
            .field("enabled", &self.enabled)
            .field("listen_addrs", &self.listen_addrs())
            .field("live_connections", &self.live_connections())
            .finish()
    }
}

impl Table {
    fn register(&mut self, addr: SocketAddr) {
        if let Some(registered) = self.listeners.get_mut(&addr) {
            registered.refs += 1;
            return;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.listeners.insert(addr, Registered { refs: 1, seq });
        self.per_family[family(addr.ip())] += 1;
        self.by_ip
            .entry(addr.ip())
            .or_default()
            .insert(seq, addr.port());
        if addr.ip().is_loopback() {
            self.loopback[family(addr.ip())].insert(seq, addr);
        }
    }

    fn unregister(&mut self, addr: SocketAddr) {
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

    /// Whether any listener of `ip`'s family is registered.
    fn has_family(&self, ip: IpAddr) -> bool {
        self.per_family[family(ip)] > 0
    }

    /// The first free candidate for a dial to `remote`, `source` being the IP the kernel would
    /// send from. Candidates, each tier in registration order:
    /// - loopback `remote`: listeners on a loopback IP of the family, then wildcard listeners;
    /// - otherwise: listeners bound to exactly `source`, then wildcard listeners.
    ///
    /// A candidate is skipped, without a system call, when one of our connections holds its
    /// pair with `remote` (open, or closing and the remote has not closed yet: see
    /// [`Pair::Closing`]) or when it is `remote` itself (a TCP self-connection).
    fn select(&self, remote: SocketAddr, source: IpAddr) -> Result<SocketAddr, Fallback> {
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
        for local in candidates {
            any = true;
            if local != remote && self.pairs.get(&(local, remote)).is_none_or(Pair::is_free) {
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

/// Keeps a listening address registered; unregisters it when dropped.
pub(crate) struct Registration {
    table: PortReuse,
    addr: SocketAddr,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.table.lock().unregister(self.addr);
        tracing::trace!(addr = %self.addr, "unregistered from port reuse");
    }
}

impl fmt::Debug for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Registration").field(&self.addr).finish()
    }
}

/// Holds a (local, remote) pair; releases it when dropped.
pub(crate) struct Lease {
    table: PortReuse,
    id: u64,
    local: SocketAddr,
    remote: SocketAddr,
}

impl Lease {
    /// The listening address to bind.
    pub(crate) fn local(&self) -> SocketAddr {
        self.local
    }

    /// The task that holds closing connections of this table.
    pub(crate) fn reaper(&self) -> Arc<Reaper> {
        self.table.reaper.clone()
    }

    /// Marks the pair as closing: its connection is gone from the user, the remote has not yet
    /// closed its side; `remote_closed` tells when it has.
    pub(crate) fn closing(&self, remote_closed: RemoteClosed) {
        let mut table = self.table.lock();
        if let Some(pair) = table.pairs.get_mut(&(self.local, self.remote))
            && pair.lease() == self.id
        {
            *pair = Pair::Closing(self.id, remote_closed);
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut table = self.table.lock();
        // A dial may already have taken over the pair of a closing lease.
        if table
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// A route lookup that must not happen.
    fn no_route_lookup(remote: SocketAddr) -> io::Result<IpAddr> {
        panic!("unexpected route lookup for {remote}")
    }

    fn route_to(ip: &'static str) -> impl Fn(SocketAddr) -> io::Result<IpAddr> {
        move |_| Ok(ip.parse().unwrap())
    }

    /// Reserves a pair the way a dial does.
    fn take(
        table: &PortReuse,
        remote: SocketAddr,
        route: impl FnOnce(SocketAddr) -> io::Result<IpAddr>,
    ) -> Result<Lease, Fallback> {
        let source = table.source_ip(remote, route)?;
        table.reserve(remote, source)
    }

    fn choose(
        table: &PortReuse,
        remote: &str,
        route: &'static str,
    ) -> Result<SocketAddr, Fallback> {
        take(table, sa(remote), route_to(route)).map(|lease| lease.local())
    }

    #[test]
    fn loopback_destination_prefers_loopback_listener_then_wildcard() {
        let table = PortReuse::new(true);
        let _wildcard = table.register(sa("0.0.0.0:2000"));
        let _specific = table.register(sa("10.0.0.5:3000"));
        let lo = table.register(sa("127.0.0.2:1000"));
        let lease = take(&table, sa("127.0.0.1:9000"), no_route_lookup).unwrap();
        assert_eq!(lease.local(), sa("127.0.0.2:1000"));
        drop((lo, lease));
        let lease = take(&table, sa("127.0.0.1:9000"), no_route_lookup).unwrap();
        assert_eq!(
            lease.local(),
            sa("127.0.0.1:2000"),
            "wildcard binds the loopback IP"
        );
    }

    #[test]
    fn routed_destination_prefers_exact_ip_then_wildcard() {
        let table = PortReuse::new(true);
        let wildcard = table.register(sa("0.0.0.0:2000"));
        let _other_ip = table.register(sa("10.0.1.5:4000"));
        let _lo = table.register(sa("127.0.0.1:1000"));
        let exact = table.register(sa("10.0.0.5:3000"));
        assert_eq!(
            choose(&table, "10.0.0.9:80", "10.0.0.5"),
            Ok(sa("10.0.0.5:3000"))
        );
        drop(exact);
        assert_eq!(
            choose(&table, "10.0.0.9:80", "10.0.0.5"),
            Ok(sa("10.0.0.5:2000"))
        );
        drop(wildcard);
        assert_eq!(
            choose(&table, "10.0.0.9:80", "10.0.0.5"),
            Err(Fallback::NoListener),
            "a listener on another IP or on loopback is never offered"
        );
        assert_eq!(
            choose(&table, "10.0.1.9:80", "10.0.1.5"),
            Ok(sa("10.0.1.5:4000"))
        );
    }

    #[test]
    fn earliest_registration_wins_and_is_stable() {
        let table = PortReuse::new(true);
        let first = table.register(sa("127.0.0.1:5000"));
        let _second = table.register(sa("127.0.0.1:4000"));
        for _ in 0..10 {
            assert_eq!(
                choose(&table, "127.0.0.1:80", "127.0.0.1"),
                Ok(sa("127.0.0.1:5000"))
            );
        }
        drop(first);
        assert_eq!(
            choose(&table, "127.0.0.1:80", "127.0.0.1"),
            Ok(sa("127.0.0.1:4000"))
        );
        let _again = table.register(sa("127.0.0.1:5000"));
        assert_eq!(
            choose(&table, "127.0.0.1:80", "127.0.0.1"),
            Ok(sa("127.0.0.1:4000")),
            "a re-registered address goes to the back"
        );
    }

    #[test]
    fn references_are_counted() {
        let table = PortReuse::new(true);
        let a = table.register(sa("127.0.0.1:5000"));
        let b = table.register(sa("127.0.0.1:5000"));
        assert_eq!(table.listen_addrs(), vec![sa("127.0.0.1:5000")]);
        drop(a);
        assert_eq!(
            choose(&table, "127.0.0.1:80", "127.0.0.1"),
            Ok(sa("127.0.0.1:5000"))
        );
        drop(b);
        assert_eq!(table.listen_addrs(), vec![]);
        assert_eq!(
            choose(&table, "127.0.0.1:80", "127.0.0.1"),
            Err(Fallback::NoListener)
        );
    }

    #[test]
    fn families_are_separate() {
        let table = PortReuse::new(true);
        let _v6 = table.register(sa("[::]:5000"));
        let _v6lo = table.register(sa("[::1]:5001"));
        assert_eq!(
            take(&table, sa("127.0.0.1:80"), no_route_lookup).map(|l| l.local()),
            Err(Fallback::NoListener)
        );
        assert_eq!(
            take(&table, sa("10.0.0.1:80"), no_route_lookup).map(|l| l.local()),
            Err(Fallback::NoListener),
            "no route lookup without a listener of the family"
        );
        assert_eq!(choose(&table, "[::1]:80", "::1"), Ok(sa("[::1]:5001")));
        assert_eq!(
            choose(&table, "[2001:db8::9]:80", "2001:db8::5"),
            Ok(sa("[2001:db8::5]:5000"))
        );
        let _v4 = table.register(sa("0.0.0.0:6000"));
        assert_eq!(
            choose(&table, "127.0.0.1:80", "127.0.0.1"),
            Ok(sa("127.0.0.1:6000"))
        );
    }

    #[test]
    fn live_pairs_move_to_the_next_candidate() {
        let table = PortReuse::new(true);
        let _a = table.register(sa("127.0.0.1:5000"));
        let _b = table.register(sa("0.0.0.0:6000"));
        let remote = sa("127.0.0.1:80");
        let first = take(&table, remote, no_route_lookup).unwrap();
        let second = take(&table, remote, no_route_lookup).unwrap();
        assert_eq!(
            (first.local(), second.local()),
            (sa("127.0.0.1:5000"), sa("127.0.0.1:6000"))
        );
        assert_eq!(table.live_connections(), 2);
        assert_eq!(
            take(&table, remote, no_route_lookup).map(|l| l.local()),
            Err(Fallback::Busy)
        );
        let other = take(&table, sa("127.0.0.1:81"), no_route_lookup).unwrap();
        assert_eq!(
            other.local(),
            sa("127.0.0.1:5000"),
            "another remote is another pair"
        );
        drop(first);
        assert_eq!(
            take(&table, remote, no_route_lookup).unwrap().local(),
            sa("127.0.0.1:5000")
        );
        drop((second, other));
        assert_eq!(table.live_connections(), 0);
    }

    #[test]
    fn self_connection_is_skipped() {
        let table = PortReuse::new(true);
        let _a = table.register(sa("0.0.0.0:5000"));
        assert_eq!(
            take(&table, sa("127.0.0.1:5000"), no_route_lookup).map(|l| l.local()),
            Err(Fallback::Busy)
        );
        assert_eq!(
            choose(&table, "10.0.0.5:5000", "10.0.0.5"),
            Err(Fallback::Busy)
        );
        let _b = table.register(sa("0.0.0.0:6000"));
        assert_eq!(
            choose(&table, "10.0.0.5:5000", "10.0.0.5"),
            Ok(sa("10.0.0.5:6000"))
        );
        assert_eq!(
            choose(&table, "10.0.0.6:5000", "10.0.0.5"),
            Ok(sa("10.0.0.5:5000"))
        );
    }

    #[test]
    fn disabled_and_unroutable() {
        let table = PortReuse::new(false);
        let _a = table.register(sa("0.0.0.0:5000"));
        assert_eq!(
            take(&table, sa("127.0.0.1:80"), no_route_lookup).map(|l| l.local()),
            Err(Fallback::Disabled)
        );
        let table = PortReuse::new(true);
        let _a = table.register(sa("0.0.0.0:5000"));
        let unreachable = |_| Err(io::Error::from(io::ErrorKind::NetworkUnreachable));
        assert_eq!(
            take(&table, sa("10.9.9.9:80"), unreachable).map(|l| l.local()),
            Err(Fallback::NoRoute)
        );
    }

    #[test]
    fn listen_addrs_in_registration_order() {
        let table = PortReuse::new(true);
        let _a = table.register(sa("[::]:3"));
        let _b = table.register(sa("127.0.0.1:1"));
        let _c = table.register(sa("0.0.0.0:2"));
        let _d = table.register(sa("[::]:3"));
        assert_eq!(
            table.listen_addrs(),
            vec![sa("[::]:3"), sa("127.0.0.1:1"), sa("0.0.0.0:2")]
        );
    }

    #[test]
    fn closing_pairs_are_passed_over_until_released() {
        let table = PortReuse::new(true);
        let _a = table.register(sa("127.0.0.1:5000"));
        let remote = sa("127.0.0.1:80");
        let lease = take(&table, remote, no_route_lookup).unwrap();
        lease.closing(Arc::new(|| false));
        assert_eq!(
            (table.live_connections(), table.closing_connections()),
            (0, 1)
        );
        assert_eq!(table.source_for(remote), Err(Fallback::Busy));
        assert_eq!(
            take(&table, remote, no_route_lookup).map(|l| l.local()),
            Err(Fallback::Busy)
        );
        let second = table.register(sa("0.0.0.0:6000"));
        assert_eq!(
            choose(&table, "127.0.0.1:80", "127.0.0.1"),
            Ok(sa("127.0.0.1:6000"))
        );
        drop(second);
        drop(lease);
        assert_eq!(table.closing_connections(), 0);
        assert_eq!(
            choose(&table, "127.0.0.1:80", "127.0.0.1"),
            Ok(sa("127.0.0.1:5000"))
        );
    }

    #[test]
    fn a_closing_pair_is_free_once_the_remote_closed() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let table = PortReuse::new(true);
        let _a = table.register(sa("127.0.0.1:5000"));
        let remote = sa("127.0.0.1:80");
        let old = take(&table, remote, no_route_lookup).unwrap();
        let remote_closed = Arc::new(AtomicBool::new(false));
        let probe = remote_closed.clone();
        old.closing(Arc::new(move || probe.load(Ordering::Relaxed)));
        assert_eq!(table.source_for(remote), Err(Fallback::Busy));
        remote_closed.store(true, Ordering::Relaxed);
        // Taken over before the old lease is gone; the old lease's release leaves it alone.
        let new = take(&table, remote, no_route_lookup).unwrap();
        assert_eq!(new.local(), sa("127.0.0.1:5000"));
        drop(old);
        assert_eq!(
            (table.live_connections(), table.closing_connections()),
            (1, 0)
        );
        assert_eq!(table.source_for(remote), Err(Fallback::Busy));
        drop(new);
        assert_eq!(table.live_connections(), 0);
    }
}
