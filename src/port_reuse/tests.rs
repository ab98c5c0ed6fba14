//! The table's unit tests: the choice of a source, reference counts, held and closing pairs,
//! through the handle's crate API and without sockets.

use std::time::Duration;

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
    table: &ReuseTable,
    remote: SocketAddr,
    route: impl FnOnce(SocketAddr) -> io::Result<IpAddr>,
) -> Result<Lease, Fallback> {
    let source = table.source_ip(remote, route)?;
    table.reserve(remote, source)
}

fn choose(table: &ReuseTable, remote: &str, route: &'static str) -> Result<SocketAddr, Fallback> {
    take(table, sa(remote), route_to(route)).map(|lease| lease.local())
}

#[test]
fn loopback_destination_prefers_loopback_listener_then_wildcard() {
    let table = ReuseTable::new(true);
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
    let table = ReuseTable::new(true);
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
    let table = ReuseTable::new(true);
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
    let table = ReuseTable::new(true);
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
    let table = ReuseTable::new(true);
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
    let table = ReuseTable::new(true);
    let _a = table.register(sa("127.0.0.1:5000"));
    let _b = table.register(sa("0.0.0.0:6000"));
    let remote = sa("127.0.0.1:80");
    let first = take(&table, remote, no_route_lookup).unwrap();
    let second = take(&table, remote, no_route_lookup).unwrap();
    assert_eq!(
        (first.local(), second.local()),
        (sa("127.0.0.1:5000"), sa("127.0.0.1:6000"))
    );
    assert_eq!(table.dialed_connections(), 2);
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
    assert_eq!(table.dialed_connections(), 0);
}

#[test]
fn self_connection_is_skipped() {
    let table = ReuseTable::new(true);
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
    let table = ReuseTable::new(false);
    let _a = table.register(sa("0.0.0.0:5000"));
    assert_eq!(
        take(&table, sa("127.0.0.1:80"), no_route_lookup).map(|l| l.local()),
        Err(Fallback::Disabled)
    );
    let table = ReuseTable::new(true);
    let _a = table.register(sa("0.0.0.0:5000"));
    let unreachable = |_| Err(io::Error::from(io::ErrorKind::NetworkUnreachable));
    assert_eq!(
        take(&table, sa("10.9.9.9:80"), unreachable).map(|l| l.local()),
        Err(Fallback::NoRoute)
    );
}

#[test]
fn listen_addrs_in_registration_order() {
    let table = ReuseTable::new(true);
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
    let table = ReuseTable::new(true);
    let _a = table.register(sa("127.0.0.1:5000"));
    let remote = sa("127.0.0.1:80");
    let mut lease = take(&table, remote, no_route_lookup).unwrap();
    assert!(lease.closing(Arc::new(|| false)));
    assert_eq!(
        (table.dialed_connections(), table.closing_connections()),
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
    let table = ReuseTable::new(true);
    let _a = table.register(sa("127.0.0.1:5000"));
    let remote = sa("127.0.0.1:80");
    let mut old = take(&table, remote, no_route_lookup).unwrap();
    let remote_closed = Arc::new(AtomicBool::new(false));
    let probe = remote_closed.clone();
    assert!(old.closing(Arc::new(move || probe.load(Ordering::Relaxed))));
    assert_eq!(table.source_for(remote), Err(Fallback::Busy));
    remote_closed.store(true, Ordering::Relaxed);
    // Taken over before the old lease is gone; the old lease's release leaves it alone.
    let new = take(&table, remote, no_route_lookup).unwrap();
    assert_eq!(new.local(), sa("127.0.0.1:5000"));
    drop(old);
    assert_eq!(
        (table.dialed_connections(), table.closing_connections()),
        (1, 0)
    );
    assert_eq!(table.source_for(remote), Err(Fallback::Busy));
    drop(new);
    assert_eq!(table.dialed_connections(), 0);
}

#[test]
fn held_closing_sockets_stop_at_the_bound() {
    let table = ReuseTable::new(true).with_closing_bound(2, Duration::from_secs(60));
    let _a = table.register(sa("127.0.0.1:5000"));
    let mut leases: Vec<Lease> = (0..4)
        .map(|i| {
            take(
                &table,
                sa(&format!("127.0.0.{}:80", i + 2)),
                no_route_lookup,
            )
            .unwrap()
        })
        .collect();
    let held: Vec<bool> = leases
        .iter_mut()
        .map(|lease| lease.closing(Arc::new(|| false)))
        .collect();
    assert_eq!(held, [true, true, false, false]);
    assert_eq!(table.closing_sockets(), 2);
    assert_eq!(
        (table.dialed_connections(), table.closing_connections()),
        (2, 2),
        "refused leases stay open until their caller orphans them"
    );
    // Asking again changes nothing.
    assert!(leases[0].closing(Arc::new(|| false)));
    assert!(!leases[3].closing(Arc::new(|| false)));
    assert_eq!(table.closing_sockets(), 2);
    let refused = leases.split_off(2);
    for lease in refused {
        lease.orphan();
    }
    assert_eq!(
        (table.dialed_connections(), table.closing_connections()),
        (0, 4)
    );
    assert_eq!(table.closing_sockets(), 2);
    // Every orphaned pair is passed over; a new remote is not.
    for i in 2..6 {
        assert_eq!(
            choose(&table, &format!("127.0.0.{i}:80"), "127.0.0.1"),
            Err(Fallback::Busy),
            "127.0.0.{i}"
        );
    }
    assert_eq!(
        choose(&table, "127.0.0.9:80", "127.0.0.1"),
        Ok(sa("127.0.0.1:5000"))
    );
    // A held socket released (its remote closed) makes room for the next.
    drop(leases.remove(0));
    assert_eq!(table.closing_sockets(), 1);
    let mut next = take(&table, sa("127.0.0.9:80"), no_route_lookup).unwrap();
    assert!(next.closing(Arc::new(|| false)));
    assert_eq!(table.closing_sockets(), 2);
    // A held socket given up on (the remote did not close in time) is orphaned: room again, and
    // the pair still passed over.
    next.orphan();
    assert_eq!(table.closing_sockets(), 1);
    assert_eq!(
        choose(&table, "127.0.0.9:80", "127.0.0.1"),
        Err(Fallback::Busy)
    );
}

#[test]
fn a_bound_of_zero_holds_nothing() {
    let table = ReuseTable::new(true).with_closing_bound(0, Duration::from_secs(60));
    let _a = table.register(sa("127.0.0.1:5000"));
    let mut lease = take(&table, sa("127.0.0.2:80"), no_route_lookup).unwrap();
    assert!(!lease.closing(Arc::new(|| false)));
    lease.orphan();
    assert_eq!(table.closing_sockets(), 0);
    assert_eq!(table.closing_connections(), 1);
}

#[test]
fn orphaned_pairs_expire_and_leave_the_table() {
    let hold = Duration::from_millis(50);
    let table = ReuseTable::new(true).with_closing_bound(0, hold);
    let _a = table.register(sa("127.0.0.1:5000"));
    let remote = sa("127.0.0.2:80");
    let lease = take(&table, remote, no_route_lookup).unwrap();
    lease.orphan();
    let later = take(&table, sa("127.0.0.3:80"), no_route_lookup).unwrap();
    later.orphan();
    assert_eq!(table.closing_connections(), 2);
    assert_eq!(table.source_for(remote), Err(Fallback::Busy));
    std::thread::sleep(hold + Duration::from_millis(20));
    // Free once due, and gone from the table without a dial touching it.
    assert_eq!(table.source_for(remote), Ok(sa("127.0.0.1:5000")));
    assert_eq!(table.closing_connections(), 0);
    assert_eq!(table.lock().pairs.len(), 0);
    // A pair taken over after it expired is not removed by the old orphan's expiry.
    let old = take(&table, remote, no_route_lookup).unwrap();
    old.orphan();
    std::thread::sleep(hold + Duration::from_millis(20));
    let new = take(&table, remote, no_route_lookup).unwrap();
    assert_eq!(table.dialed_connections(), 1);
    assert_eq!(table.closing_connections(), 0);
    drop(new);
    assert_eq!(table.lock().pairs.len(), 0);
}

#[test]
fn orphaning_a_pair_taken_over_leaves_the_new_holder_alone() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let table = ReuseTable::new(true).with_closing_bound(1, Duration::from_secs(60));
    let _a = table.register(sa("127.0.0.1:5000"));
    let remote = sa("127.0.0.2:80");
    let mut old = take(&table, remote, no_route_lookup).unwrap();
    let remote_closed = Arc::new(AtomicBool::new(false));
    let probe = remote_closed.clone();
    assert!(old.closing(Arc::new(move || probe.load(Ordering::Relaxed))));
    remote_closed.store(true, Ordering::Relaxed);
    let new = take(&table, remote, no_route_lookup).unwrap();
    // The old socket is given up on only now: the new connection keeps its pair.
    old.orphan();
    assert_eq!(
        (
            table.dialed_connections(),
            table.closing_connections(),
            table.closing_sockets()
        ),
        (1, 0, 0)
    );
    drop(new);
    assert_eq!(table.lock().pairs.len(), 0);
}
