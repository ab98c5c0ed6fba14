//! Unit tests for the pairs left to the kernel ([`Lease::finishing`]) and their prune, against
//! the running kernel: Linux only, where sock_diag answers for a pair.

use std::{
    net::{Ipv4Addr, TcpListener, TcpStream},
    time::{Duration, Instant},
};

use super::*;

/// A loopback connection accepted on a listener registered in `table`, whose accepted side
/// (ours) was closed first and its pair left to the kernel: it is finishing (FIN_WAIT2) until
/// the returned client closes. Returns the client and whether a prune was due.
fn finishing_connection(table: &ReuseTable, listener: &TcpListener) -> (TcpStream, bool) {
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, remote) = listener.accept().unwrap();
    let lease = table.accepted(server.local_addr().unwrap(), remote);
    // As the closing task does: the socket first, then the pair.
    drop(server);
    let due = lease.finishing().is_some();
    (client, due)
}

fn finishing_pairs(table: &ReuseTable) -> usize {
    match table.lock().finishing(usize::MAX) {
        Finishing::None => 0,
        Finishing::Few(keys) => keys.len(),
        Finishing::Many(_) => unreachable!("no limit"),
    }
}

/// Closes `clients` and waits until the kernel has finished our side of their connections.
fn close_clients(clients: Vec<TcpStream>) {
    let pairs: Vec<_> = clients
        .iter()
        .map(|c| (c.peer_addr().unwrap(), c.local_addr().unwrap()))
        .collect();
    drop(clients);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !pairs
        .iter()
        .all(|&(local, remote)| sys::pair_finished(local, remote))
    {
        assert!(
            Instant::now() < deadline,
            "the kernel did not finish the pairs"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Prunes with lookups (`few` at least the number of finishing pairs) or dumps (`few` 0): either
/// way the pairs whose remote closed leave the table (after one prune by lookups, two by
/// dumps), and those still finishing stay.
fn prune_removes_the_finished_pairs_only(few: usize) {
    let table = ReuseTable::new(true).closing_at_once(true);
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let _registration = table.register(listener.local_addr().unwrap());
    let mut clients: Vec<_> = (0..6)
        .map(|_| finishing_connection(&table, &listener).0)
        .collect();
    assert_eq!(finishing_pairs(&table), 6);
    let finished = clients.split_off(2);
    close_clients(finished);

    match table.lock().finishing(few) {
        Finishing::Few(keys) => assert!(few >= 6, "{} pairs", keys.len()),
        Finishing::Many(families) => {
            assert!(few < 6);
            assert_eq!(families, [true, false], "IPv4 only");
        }
        Finishing::None => panic!("pairs are finishing"),
    }
    table.prune_with(few);
    if few == 0 {
        // A dump can miss a connection: a pair goes once a second dump has not listed it either.
        assert_eq!(finishing_pairs(&table), 6, "one dump removes nothing");
        table.prune_with(few);
    }
    let left = finishing_pairs(&table);
    assert_eq!(
        left,
        2,
        "the two whose client is open; open: {:?}; the kernel's finishing pairs now: {:?}",
        clients
            .iter()
            .map(|c| (c.peer_addr().unwrap(), c.local_addr().unwrap()))
            .collect::<Vec<_>>(),
        sys::finishing_pairs([true, false])
    );
    assert_eq!(table.lock().pairs.len(), 2);
    drop(clients);
}

#[test]
fn a_prune_by_lookups_removes_the_finished_pairs_only() {
    prune_removes_the_finished_pairs_only(PRUNE_LOOKUPS);
}

#[test]
fn a_prune_by_dump_removes_the_finished_pairs_only() {
    prune_removes_the_finished_pairs_only(0);
}

/// The first pair left to the kernel starts the clock; a prune is due once an interval has
/// passed since, and the next an interval after that one.
#[test]
fn a_prune_is_due_an_interval_after_the_first_finishing_pair() {
    let table = ReuseTable::new(true).closing_at_once(true);
    let interval = Duration::from_millis(100);
    table.lock().prune_every = interval;
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let _registration = table.register(listener.local_addr().unwrap());
    let mut clients = Vec::new();
    let (client, due) = finishing_connection(&table, &listener);
    clients.push(client);
    assert!(!due, "the first pair is still finishing");
    let (client, due) = finishing_connection(&table, &listener);
    clients.push(client);
    assert!(!due, "within the interval");
    std::thread::sleep(interval);
    let (client, due) = finishing_connection(&table, &listener);
    clients.push(client);
    assert!(due, "an interval after the first");
    let (client, due) = finishing_connection(&table, &listener);
    clients.push(client);
    assert!(!due, "the prune just started");
}

/// A dump puts the next prune off by a hundred times its own duration, within bounds.
#[test]
fn a_dump_spaces_the_prunes_by_its_cost() {
    assert_eq!(prune_spacing(Duration::from_micros(500)), PRUNE_INTERVAL);
    assert_eq!(
        prune_spacing(Duration::from_millis(20)),
        Duration::from_secs(2)
    );
    assert_eq!(
        prune_spacing(Duration::from_millis(500)),
        PRUNE_INTERVAL_MAX
    );
}

/// A node that drops its connection to a remote before the remote closes and dials it again
/// (row 2 of the benchmark, at thousands a second) takes over the finishing pair each time the
/// kernel is done with it: the orphan queue drops the entries those takeovers leave behind, so
/// it stays near the number of orphaned pairs (one here) instead of holding every pair
/// orphaned in the last 61 s.
#[test]
fn redialing_a_finishing_pair_leaves_no_growing_orphan_queue() {
    let table = ReuseTable::new(true).closing_at_once(true);
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let local = listener.local_addr().unwrap();
    let _registration = table.register(local);
    // Nothing listens there: the kernel holds nothing for the pair, so it is free at once.
    let remote = "127.0.0.2:9".parse().unwrap();
    let dials = 5 * table::ORPHANS_COMPACT_MIN;
    for _ in 0..dials {
        let lease = table
            .reserve(remote, Ipv4Addr::LOCALHOST.into())
            .expect("the kernel is done with the pair: it is taken over");
        assert_eq!(lease.local(), local);
        drop(lease.finishing());
    }
    assert_eq!(finishing_pairs(&table), 1, "the last connection's pair");
    let entries = table.lock().orphan_entries();
    assert!(
        entries <= 2 * table::ORPHANS_COMPACT_MIN,
        "{entries} orphan entries after {dials} dials on one pair"
    );
}
