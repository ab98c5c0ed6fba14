//! Unit tests of dials given up before they connected ([`ReuseTable::park`]): which dial they
//! are handed to, the pair they hold, and what is left when their window ends. The `stale`
//! scenario of the network-namespace suite shows what they are for.

use std::time::Duration;

use futures::future;

use super::{parked::CONNECTED_GRACE, *};

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A `connect` that never finishes (a SYN nobody answers).
fn unanswered() -> Connecting {
    Box::pin(future::pending())
}

/// A table with one listener, on 10.0.0.5:4001.
fn one_listener() -> (ReuseTable, Registration) {
    let table = ReuseTable::new(true);
    let registration = table.register(sa("10.0.0.5:4001"));
    (table, registration)
}

#[tokio::test]
async fn a_given_up_dial_is_handed_with_its_pair_to_the_next_dial_on_that_pair() {
    let (table, _listener) = one_listener();
    let (source, remote) = (ip("10.0.0.5"), sa("198.51.100.7:4001"));
    let lease = table.reserve(remote, source).expect("free");
    lease.park(unanswered(), remote, Duration::from_secs(5));
    drop(lease);
    // The pair is still held: a new choice passes over the only listener.
    assert!(table.reserve(remote, source).is_err());
    assert!(
        table.unpark(ip("10.0.0.6"), remote).is_none(),
        "another source"
    );
    assert!(
        table.unpark(source, sa("198.51.100.7:4002")).is_none(),
        "another remote"
    );
    let parked = table
        .unpark(source, remote)
        .expect("kept")
        .await
        .expect("handed over");
    assert_eq!(parked.lease.local(), sa("10.0.0.5:4001"));
    assert!(table.unpark(source, remote).is_none(), "handed over once");
    assert!(
        table.reserve(remote, source).is_err(),
        "the handed lease holds the pair"
    );
    drop(parked);
    let again = table
        .reserve(remote, source)
        .expect("released with the lease");
    assert_eq!(again.local(), sa("10.0.0.5:4001"));
}

#[tokio::test(start_paused = true)]
async fn a_given_up_dial_nobody_takes_is_closed_when_its_window_ends() {
    let (table, _listener) = one_listener();
    let (source, remote) = (ip("10.0.0.5"), sa("198.51.100.7:4001"));
    let lease = table.reserve(remote, source).expect("free");
    lease.park(unanswered(), remote, Duration::from_secs(1));
    drop(lease);
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(
        table.reserve(remote, source).is_err(),
        "kept within the window"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(table.unpark(source, remote).is_none());
    assert!(table.lock().parked.is_empty());
    table.reserve(remote, source).expect("released");
}

#[tokio::test]
async fn a_given_up_dial_is_closed_at_once_with_a_zero_window_or_a_pair_taken_since() {
    let (table, _listener) = one_listener();
    let (source, remote) = (ip("10.0.0.5"), sa("198.51.100.7:4001"));
    let lease = table.reserve(remote, source).expect("free");
    lease.park(unanswered(), remote, Duration::ZERO);
    drop(lease);
    assert!(table.unpark(source, remote).is_none());
    // A dial that took the pair since: its lease is not the given-up one.
    let given_up = table.reserve(remote, source).expect("released");
    let id = given_up.id;
    drop(given_up);
    let taken = table.reserve(remote, source).expect("free again");
    table.park(
        id,
        sa("10.0.0.5:4001"),
        remote,
        unanswered(),
        Duration::from_secs(5),
    );
    assert!(table.unpark(source, remote).is_none());
    drop(taken);
    table
        .reserve(remote, source)
        .expect("released by its own lease");
}

#[tokio::test]
async fn at_most_64_given_up_dials_are_kept() {
    let (table, _listener) = one_listener();
    let source = ip("10.0.0.5");
    let remote = |n: u16| sa(&format!("198.51.100.7:{}", 5000 + n));
    for n in 0..65 {
        let lease = table.reserve(remote(n), source).expect("free");
        lease.park(unanswered(), remote(n), Duration::from_secs(5));
    }
    assert_eq!(table.lock().parked.len(), 64);
    assert!(table.unpark(source, remote(64)).is_none(), "the 65th");
    table
        .reserve(remote(64), source)
        .expect("the 65th released");
    assert!(table.unpark(source, remote(63)).is_some());
}

/// Reserves the pair (10.0.0.5:4001, 198.51.100.7:4001) in `table` and gives up its dial, kept
/// for `window`, after it connected: to a loopback listener, which is returned (the connection
/// stays open while it lives).
async fn give_up_connected(table: &ReuseTable, window: Duration) -> tokio::net::TcpListener {
    let remote = sa("198.51.100.7:4001");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let io = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let lease = table.reserve(remote, ip("10.0.0.5")).expect("free");
    lease.park(Box::pin(future::ready(Ok(io))), remote, window);
    listener
}

/// Asserts that the dial [`give_up_connected`] gave up still holds its pair 100 ms before `end`
/// from now, and 100 ms after it is closed: not handed to a dial, its pair free.
async fn assert_closed_at(table: &ReuseTable, end: Duration) {
    let (source, remote) = (ip("10.0.0.5"), sa("198.51.100.7:4001"));
    let margin = Duration::from_millis(100);
    tokio::time::sleep(end - margin).await;
    assert!(table.reserve(remote, source).is_err(), "kept until {end:?}");
    tokio::time::sleep(2 * margin).await;
    assert!(table.unpark(source, remote).is_none(), "closed at {end:?}");
    assert!(table.reserve(remote, source).is_ok(), "free after {end:?}");
}

#[tokio::test]
async fn a_given_up_dial_that_connects_meanwhile_is_handed_over_connected() {
    let (table, _listener) = one_listener();
    let (source, remote) = (ip("10.0.0.5"), sa("198.51.100.7:4001"));
    let listener = give_up_connected(&table, Duration::from_secs(5)).await;
    // Let the keeping task see the connection before the next dial asks.
    tokio::task::yield_now().await;
    let parked = table
        .unpark(source, remote)
        .expect("kept")
        .await
        .expect("handed over");
    let io = parked.connecting.await.expect("connected");
    assert_eq!(io.peer_addr().unwrap(), listener.local_addr().unwrap());
}

#[tokio::test(start_paused = true)]
async fn a_given_up_dial_that_connected_waits_a_moment_for_the_next_dial_not_its_whole_window() {
    let (table, _listener) = one_listener();
    let _remote = give_up_connected(&table, Duration::from_secs(10)).await;
    // Closed after the grace, well within the window.
    assert_closed_at(&table, CONNECTED_GRACE).await;
}

#[tokio::test(start_paused = true)]
async fn a_given_up_dial_that_connected_near_the_end_of_its_window_closes_with_the_window() {
    let (table, _listener) = one_listener();
    let window = CONNECTED_GRACE / 4;
    let _remote = give_up_connected(&table, window).await;
    // Closed when the window ends, before the grace.
    assert_closed_at(&table, window).await;
}
