//! Unit tests for the pairs of accepted connections: passed over by dials while open, closing
//! and orphaned as a dial's pair, keyed by IP and port alone. Through the handle's crate API,
//! without sockets.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use super::*;

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// The source a dial to `remote` would take, the kernel routing from `route`.
fn choose(table: &ReuseTable, remote: &str, route: &'static str) -> Result<SocketAddr, Fallback> {
    let source = table.source_ip(sa(remote), |_| Ok(route.parse().unwrap()))?;
    table.reserve(sa(remote), source).map(|lease| lease.local())
}

#[test]
fn an_accepted_pair_is_passed_over_while_open() {
    let table = ReuseTable::new(true);
    let _a = table.register(sa("127.0.0.1:5000"));
    let _b = table.register(sa("0.0.0.0:6000"));
    let remote = "127.0.0.1:7000";
    let first = table.accepted(sa("127.0.0.1:5000"), sa(remote));
    assert_eq!(
        (table.accepted_connections(), table.dialed_connections()),
        (1, 0)
    );
    assert_eq!(
        choose(&table, remote, "127.0.0.1"),
        Ok(sa("127.0.0.1:6000")),
        "the next candidate"
    );
    let second = table.accepted(sa("127.0.0.1:6000"), sa(remote));
    assert_eq!(choose(&table, remote, "127.0.0.1"), Err(Fallback::Busy));
    assert_eq!(
        choose(&table, "127.0.0.1:7001", "127.0.0.1"),
        Ok(sa("127.0.0.1:5000")),
        "another remote is another pair"
    );
    drop(first);
    assert_eq!(
        choose(&table, remote, "127.0.0.1"),
        Ok(sa("127.0.0.1:5000"))
    );
    drop(second);
    assert_eq!(table.accepted_connections(), 0);
    assert_eq!(table.lock().pairs.len(), 0);
}

#[test]
fn a_wildcard_listener_holds_the_pair_on_the_accepting_ip() {
    let table = ReuseTable::new(true);
    let _w = table.register(sa("0.0.0.0:6000"));
    let _lease = table.accepted(sa("10.0.0.5:6000"), sa("10.0.0.9:4001"));
    assert_eq!(
        choose(&table, "10.0.0.9:4001", "10.0.0.5"),
        Err(Fallback::Busy)
    );
    assert_eq!(
        choose(&table, "10.0.0.9:4001", "10.0.1.5"),
        Ok(sa("10.0.1.5:6000")),
        "routed from another IP, the pair is another one"
    );
}

#[test]
fn scope_and_flow_label_do_not_hide_the_pair() {
    let table = ReuseTable::new(true);
    let _w = table.register(sa("[::]:5000"));
    let local = SocketAddr::V6(std::net::SocketAddrV6::new(
        "fe80::1".parse().unwrap(),
        5000,
        7,
        2,
    ));
    let remote = SocketAddr::V6(std::net::SocketAddrV6::new(
        "fe80::9".parse().unwrap(),
        4001,
        0,
        2,
    ));
    let _lease = table.accepted(local, remote);
    assert_eq!(
        choose(&table, "[fe80::9]:4001", "fe80::1"),
        Err(Fallback::Busy)
    );
}

#[test]
fn a_dropped_accepted_connection_closes_as_a_dial_does() {
    let hold = Duration::from_millis(50);
    let table = ReuseTable::new(true).with_closing_bound(1, hold);
    let _a = table.register(sa("127.0.0.1:5000"));
    let remote = "127.0.0.2:4001";
    // Held until the remote closes.
    let mut held = table.accepted(sa("127.0.0.1:5000"), sa(remote));
    let remote_closed = Arc::new(AtomicBool::new(false));
    let probe = remote_closed.clone();
    assert!(held.closing(Arc::new(move || probe.load(Ordering::Relaxed))));
    assert_eq!(
        (
            table.accepted_connections(),
            table.closing_connections(),
            table.closing_sockets()
        ),
        (0, 1, 1)
    );
    assert_eq!(choose(&table, remote, "127.0.0.1"), Err(Fallback::Busy));
    // Past the bound: orphaned, passed over until the hold ends.
    let other = "127.0.0.3:4001";
    let mut orphan = table.accepted(sa("127.0.0.1:5000"), sa(other));
    assert!(!orphan.closing(Arc::new(|| false)), "the bound is 1");
    orphan.orphan();
    assert_eq!(choose(&table, other, "127.0.0.1"), Err(Fallback::Busy));
    // The remote closes: the held pair is free at once.
    remote_closed.store(true, Ordering::Relaxed);
    assert_eq!(
        choose(&table, remote, "127.0.0.1"),
        Ok(sa("127.0.0.1:5000"))
    );
    drop(held);
    std::thread::sleep(hold + Duration::from_millis(20));
    assert_eq!(choose(&table, other, "127.0.0.1"), Ok(sa("127.0.0.1:5000")));
    assert_eq!(table.closing_sockets(), 0);
}

#[test]
fn an_accept_replaces_an_orphan_of_the_same_pair() {
    let hold = Duration::from_millis(50);
    let table = ReuseTable::new(true).with_closing_bound(0, hold);
    let _a = table.register(sa("127.0.0.1:5000"));
    let remote = sa("127.0.0.2:4001");
    let source = table.source_ip(remote, |_| unreachable!()).unwrap();
    table.reserve(remote, source).unwrap().orphan();
    // The kernel accepted the pair again: its orphan is gone.
    let accepted = table.accepted(sa("127.0.0.1:5000"), remote);
    assert_eq!(
        (table.accepted_connections(), table.closing_connections()),
        (1, 0)
    );
    // The old orphan's expiry leaves the accepted connection's pair alone.
    std::thread::sleep(hold + Duration::from_millis(20));
    assert_eq!(table.closing_connections(), 0);
    assert_eq!(
        table.source_for(remote),
        Err(Fallback::Busy),
        "still held by the accepted connection"
    );
    drop(accepted);
    assert_eq!(table.lock().pairs.len(), 0);
}

#[test]
fn a_claimed_pair_is_handed_to_its_dial_and_a_withdrawn_claim_is_not() {
    let table = ReuseTable::new(true);
    let _listener = table.register(sa("0.0.0.0:4001"));
    let remote = sa("10.0.0.9:5000");
    let dial = table
        .reserve(remote, "10.0.0.5".parse().unwrap())
        .expect("free");
    assert_eq!(dial.local(), sa("10.0.0.5:4001"));

    // Another remote, or another local port: not the claimed pair.
    let claim = dial.claim();
    assert!(matches!(
        table.admit(sa("10.0.0.5:4001"), sa("10.0.0.9:5001")),
        Admission::Accepted(_)
    ));
    assert!(matches!(
        table.admit(sa("10.0.0.5:6000"), remote),
        Admission::Accepted(_)
    ));
    // The claimed pair: handed over, once, and the pair stays the dial's.
    assert!(matches!(
        table.admit(sa("10.0.0.5:4001"), remote),
        Admission::Claimed(_)
    ));
    assert_eq!(table.dialed_connections(), 1);
    assert!(matches!(
        table.admit(sa("10.0.0.5:4001"), remote),
        Admission::Accepted(_)
    ));
    drop(claim);

    // Withdrawn: the listener keeps what it accepts.
    let claim = dial.claim();
    drop(claim);
    assert!(matches!(
        table.admit(sa("10.0.0.5:4001"), remote),
        Admission::Accepted(_)
    ));
}

#[test]
fn a_dial_waits_for_the_refused_dial_on_its_pair_until_that_dial_ends() {
    let table = ReuseTable::new(true);
    let _listener = table.register(sa("0.0.0.0:4001"));
    let remote = sa("10.0.0.9:5000");
    let source: IpAddr = "10.0.0.5".parse().unwrap();
    let dial = table.reserve(remote, source).expect("free");
    assert_eq!(table.reserve(remote, source).err(), Some(Fallback::Busy));
    assert!(
        table.after_refused_dial(remote, source).is_none(),
        "a dial not refused: nothing to wait for"
    );

    let claim = dial.claim();
    assert!(
        table
            .after_refused_dial(sa("10.0.0.9:5001"), source)
            .is_none()
    );
    assert!(
        table
            .after_refused_dial(remote, "10.0.0.6".parse().unwrap())
            .is_none()
    );
    let mut done = table.after_refused_dial(remote, source).expect("refused");
    assert_eq!(done.try_recv(), Ok(None), "the dial is trying again");
    // A failed dial withdraws its claim before its lease goes: the pair is not free yet.
    drop(claim);
    assert_eq!(done.try_recv(), Ok(None), "its lease still holds the pair");
    drop(dial);
    assert_eq!(done.try_recv(), Err(oneshot::Canceled), "failed: woken");
    let dial = table
        .reserve(remote, source)
        .expect("the pair is free again");

    // One that connects wakes the waiting dials too, and keeps the pair.
    let claim = dial.claim();
    let mut done = table.after_refused_dial(remote, source).expect("refused");
    dial.connected();
    assert_eq!(done.try_recv(), Err(oneshot::Canceled), "connected: woken");
    drop(claim);
    assert_eq!(table.reserve(remote, source).err(), Some(Fallback::Busy));
    assert!(table.after_refused_dial(remote, source).is_none());
    assert!(table.lock().waiting.is_empty(), "nothing left behind");
}

#[test]
fn the_table_remembers_the_remotes_its_listeners_accepted_from() {
    let table = ReuseTable::new(true);
    let _a = table.register(sa("127.0.0.1:5000"));
    let known = sa("127.0.0.1:7000");
    assert!(
        !table.lock().sources.contains(known.into()),
        "nothing accepted yet"
    );
    drop(table.accepted(sa("127.0.0.1:5000"), known));
    let table = table.lock();
    assert!(
        table.sources.contains(known.into()),
        "remembered after the connection is gone"
    );
    assert!(!table.sources.contains(sa("127.0.0.1:7001").into()));
}
