//! Accepted connections in the port-reuse table: when B dialed A between their listening ports,
//! A's dial back to B from that port would be the same 4-tuple, which the kernel refuses. A's
//! table knows the pair from the accepted connection, so the dial passes over it without a
//! system call (`Fallback::Busy`, or the next listening address), never `Fallback::Refused`;
//! dropped before B closed, the pair is passed over until B's FIN, then free again. For plain
//! listeners (specific and wildcard, IPv4 and IPv6) and for both sides of a shared listener set.

mod util;

use std::{net::SocketAddr, time::Duration};

use libp2p_core::{Transport as _, transport::PortUse};
use libp2p_reuseport::{Config, Fallback, PortOrigin, ReuseTable, Transport};
use util::{shared::*, *};

const BUSY: PortOrigin = PortOrigin::Ephemeral(Fallback::Busy);

/// Where A and B listen: specific IPv4 and IPv6 addresses, and a wildcard listener for A, whose
/// accepted connections hold their pairs on the IP they arrived at.
const LISTENERS: [(&str, &str); 3] = [
    ("/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/tcp/0"),
    ("/ip6/::1/tcp/0", "/ip6/::1/tcp/0"),
    ("/ip4/0.0.0.0/tcp/0", "/ip4/127.0.0.1/tcp/0"),
];

/// Waits until `table` holds no closing pair.
async fn no_closing_pairs(table: &ReuseTable) {
    within("closing pairs released", async {
        while table.closing_connections() > 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
}

/// Asserts that A's listener reports, as accepted on `local` from `remote`, the connection a
/// dial of A's took in.
async fn reports_the_connection_taken_in(
    a: &mut Transport,
    local: SocketAddr,
    remote: SocketAddr,
    listen: &str,
) {
    let (accepted, reported_local, send_back) = accept(a).await;
    assert_eq!(
        (reported_local, send_back),
        (local, remote),
        "{listen}: the listener reports the connection the dial took in"
    );
    assert_eq!(accepted.port_origin(), PortOrigin::Accepted, "{listen}");
}

#[tokio::test]
async fn a_dial_back_passes_over_the_pair_of_an_accepted_connection() {
    if !port_sharing_here("a_dial_back_passes_over_the_pair_of_an_accepted_connection") {
        return;
    }
    for (a_listen, b_listen) in LISTENERS {
        let (mut a, mut b) = (transport(), transport());
        let table = a.reuse_table();
        let (_, a_addr) = listen(&mut a, a_listen).await;
        let (_, b_addr) = listen(&mut b, b_listen).await;

        // B dials A from its listening port.
        let (b_dialed, a_accepted, send_back) =
            connect(&mut b, &mut a, a_addr, PortUse::Reuse).await;
        assert_eq!(b_dialed.port_origin(), PortOrigin::Reused, "{a_listen}");
        assert_eq!(send_back, b_addr, "{a_listen}");

        // A dials B back: its listening port's pair with B is the accepted connection's.
        let (a_dialed, _b_accepted, _) = connect(&mut a, &mut b, b_addr, PortUse::Reuse).await;
        assert_eq!(a_dialed.port_origin(), BUSY, "{a_listen}: open");
        drop(a_dialed);
        assert_eq!(
            (table.accepted_connections(), table.dialed_connections()),
            (1, 0),
            "{a_listen}"
        );

        // A drops its end first: the pair is passed over until B closes.
        drop(a_accepted);
        assert_eq!(
            (table.accepted_connections(), table.closing_connections()),
            (0, 1),
            "{a_listen}"
        );
        let (a_dialed, _b_accepted, _) = connect(&mut a, &mut b, b_addr, PortUse::Reuse).await;
        assert_eq!(a_dialed.port_origin(), BUSY, "{a_listen}: closing");
        drop(a_dialed);

        // B closes: the pair is free, and A's dial leaves from its listening port.
        drop(b_dialed);
        no_closing_pairs(&table).await;
        let (a_dialed, _b_accepted, _) = connect(&mut a, &mut b, b_addr, PortUse::Reuse).await;
        assert_eq!(
            a_dialed.port_origin(),
            PortOrigin::Reused,
            "{a_listen}: free"
        );
        assert_eq!(a_dialed.local_addr().unwrap().port(), a_addr.port());
        println!(
            "{a_listen}: dials back from {a_addr} to {b_addr} passed over while B's connection \
             was open and closing (Busy), reused once B closed"
        );
    }
}

/// B's connection to A waits in the kernel's accept queue of A's second listener (A's
/// transport is not polled): A's dial to B from that listening port would be the same 4-tuple.
/// B dialed A from the same address before (its connection to A's first listener, still open),
/// so A's dial takes the waiting connection in before it connects, passes over its pair
/// (`Busy`, no refused system call), and A's listener then reports the connection as accepted.
#[tokio::test]
async fn a_dial_to_a_known_remote_passes_over_the_pair_of_a_connection_not_yet_accepted() {
    if !port_sharing_here(
        "a_dial_to_a_known_remote_passes_over_the_pair_of_a_connection_not_yet_accepted",
    ) {
        return;
    }
    for (a_listen, b_listen) in LISTENERS {
        let (mut a, mut b) = (transport(), transport());
        let table = a.reuse_table();
        let (_, a_first) = listen(&mut a, a_listen).await;
        let (_, a_second) = listen(&mut a, a_listen).await;
        let (_, b_addr) = listen(&mut b, b_listen).await;
        let (_b_first, _a_first, send_back) =
            connect(&mut b, &mut a, a_first, PortUse::Reuse).await;
        assert_eq!(
            send_back, b_addr,
            "{a_listen}: B dials from its listening address"
        );
        // B's second dial completes in the kernel; A has not accepted it.
        let b_second = dial(&mut b, a_second, PortUse::Reuse)
            .await
            .expect("B's dial");
        assert_eq!(b_second.local_addr().unwrap(), b_addr, "{a_listen}");
        assert_eq!(
            table.accepted_connections(),
            1,
            "{a_listen}: not yet accepted"
        );

        let a_dialed = dial(&mut a, b_addr, PortUse::Reuse)
            .await
            .expect("A's dial");
        assert_eq!(a_dialed.port_origin(), BUSY, "{a_listen}");
        assert_eq!(table.accepted_connections(), 2, "{a_listen}: taken in");
        reports_the_connection_taken_in(&mut a, a_second, b_addr, a_listen).await;
        println!(
            "{a_listen}: with B's second connection from {b_addr} waiting on {a_second}, A's dial \
             to B passed over both pairs (Busy) and A's listener reported the connection"
        );
    }
}

/// As above, but B never dialed A before: A's dial does not look at the accept queue (a dial to
/// an unknown remote spends no `poll` there), the kernel refuses its pair (`EADDRNOTAVAIL`, no
/// packet sent), and the dial then takes the waiting connection in, passes over its pair and
/// falls back to an ephemeral port for the refusal; A's listener reports the connection.
#[tokio::test]
async fn a_dial_refused_by_a_connection_not_yet_accepted_takes_it_in() {
    if !port_sharing_here("a_dial_refused_by_a_connection_not_yet_accepted_takes_it_in") {
        return;
    }
    for (a_listen, b_listen) in LISTENERS {
        let (mut a, mut b) = (transport(), transport());
        let table = a.reuse_table();
        let (_, a_addr) = listen(&mut a, a_listen).await;
        let (_, b_addr) = listen(&mut b, b_listen).await;
        // B's dial completes in the kernel; A has not accepted it.
        let b_dialed = dial(&mut b, a_addr, PortUse::Reuse)
            .await
            .expect("B's dial");
        assert_eq!(b_dialed.port_origin(), PortOrigin::Reused, "{a_listen}");
        assert_eq!(
            table.accepted_connections(),
            0,
            "{a_listen}: not yet accepted"
        );

        let a_dialed = dial(&mut a, b_addr, PortUse::Reuse)
            .await
            .expect("A's dial");
        assert!(
            matches!(
                a_dialed.port_origin(),
                PortOrigin::Ephemeral(Fallback::KernelRefused(_))
            ),
            "{a_listen}: {:?}",
            a_dialed.port_origin()
        );
        assert_eq!(table.accepted_connections(), 1, "{a_listen}: taken in");
        reports_the_connection_taken_in(&mut a, a_addr, b_addr, a_listen).await;
        println!(
            "{a_listen}: with B's connection from {b_addr} waiting on {a_addr}, A's dial to B was \
             refused ({}), took the connection in, and A's listener reported it",
            a_dialed.port_origin()
        );
    }
}

#[tokio::test]
async fn a_dial_back_takes_the_next_listening_address() {
    if !port_sharing_here("a_dial_back_takes_the_next_listening_address") {
        return;
    }
    let (mut a, mut b) = (transport(), transport());
    let (_, first) = listen(&mut a, "/ip4/127.0.0.1/tcp/0").await;
    let (_, second) = listen(&mut a, "/ip4/127.0.0.1/tcp/0").await;
    let (_, b_addr) = listen(&mut b, "/ip4/127.0.0.1/tcp/0").await;
    let (_b_dialed, _a_accepted, _) = connect(&mut b, &mut a, first, PortUse::Reuse).await;
    let (a_dialed, _b_accepted, send_back) = connect(&mut a, &mut b, b_addr, PortUse::Reuse).await;
    assert_eq!(a_dialed.port_origin(), PortOrigin::Reused);
    assert_eq!(
        send_back, second,
        "the first listening address's pair with B is taken"
    );
}

#[tokio::test]
async fn closed_by_the_remote_first_an_accepted_pair_is_free_at_once() {
    if !port_sharing_here("closed_by_the_remote_first_an_accepted_pair_is_free_at_once") {
        return;
    }
    let (mut a, mut b) = (transport(), transport());
    let table = a.reuse_table();
    let (_, a_addr) = listen(&mut a, "/ip4/127.0.0.1/tcp/0").await;
    let (_, b_addr) = listen(&mut b, "/ip4/127.0.0.1/tcp/0").await;
    let (b_dialed, a_accepted, _) = connect(&mut b, &mut a, a_addr, PortUse::Reuse).await;
    // B closes, A reads the end of stream and drops: nothing to hold.
    close_remote_first(a_accepted, b_dialed).await;
    assert_eq!(
        (
            table.accepted_connections(),
            table.closing_connections(),
            table.closing_sockets()
        ),
        (0, 0, 0)
    );
    let (a_dialed, _b_accepted, _) = connect(&mut a, &mut b, b_addr, PortUse::Reuse).await;
    assert_eq!(a_dialed.port_origin(), PortOrigin::Reused);
}

#[tokio::test]
async fn without_port_reuse_accepted_pairs_are_not_kept() {
    let mut a = Transport::new(Config::new().port_reuse(false));
    let mut b = transport();
    let (_, a_addr) = listen(&mut a, "/ip4/127.0.0.1/tcp/0").await;
    let (_, _b_accepted, _) = connect(&mut b, &mut a, a_addr, PortUse::Reuse).await;
    assert_eq!(a.reuse_table().accepted_connections(), 0);
}

#[tokio::test]
async fn both_sides_of_a_shared_set_pass_over_an_accepted_pair() {
    if !port_sharing_here("both_sides_of_a_shared_set_pass_over_an_accepted_pair") {
        return;
    }
    let (shared, mut tcp, mut ws) = set(Config::new());
    let table = shared.reuse_table();
    let (_, a_addr) = listen_side(&mut tcp, "/ip4/127.0.0.1/tcp/0").await;
    listen_side(&mut ws, "/ip4/127.0.0.1/tcp/0").await;
    let mut b = transport();
    let (_, b_addr) = listen(&mut b, "/ip4/127.0.0.1/tcp/0").await;

    // B dials the shared port from its listening port and speaks multistream-select first: the
    // TCP side gets the connection.
    let mut b_dialed = dial(&mut b, a_addr, PortUse::Reuse).await.unwrap();
    assert_eq!(b_dialed.port_origin(), PortOrigin::Reused);
    futures::AsyncWriteExt::write_all(&mut b_dialed, MULTISTREAM)
        .await
        .unwrap();
    let (_, mut a_accepted, local, send_back) = incoming(&mut tcp).await;
    assert_eq!((local, send_back), (a_addr, b_addr));
    // Read, so that dropping it later sends a FIN rather than a reset (a reset frees the pair).
    let mut first_bytes = [0; MULTISTREAM.len()];
    futures::AsyncReadExt::read_exact(&mut a_accepted, &mut first_bytes)
        .await
        .unwrap();

    // Either side dialing B back passes over the pair.
    for side in [&mut ws, &mut tcp] {
        let dial = side
            .dial(to_multiaddr(b_addr), opts(PortUse::Reuse))
            .unwrap();
        let (dialed, _) = tokio::join!(within("dial back", dial), accept(&mut b));
        assert_eq!(dialed.unwrap().port_origin(), BUSY);
    }
    assert_eq!(table.accepted_connections(), 1);

    // Dropped before B closed: passed over until B closes, then free.
    drop(a_accepted);
    assert_eq!(table.closing_connections(), 1);
    drop(b_dialed);
    no_closing_pairs(&table).await;
    let dial = ws.dial(to_multiaddr(b_addr), opts(PortUse::Reuse)).unwrap();
    let (dialed, (_, _, send_back)) = tokio::join!(within("dial back", dial), accept(&mut b));
    assert_eq!(dialed.unwrap().port_origin(), PortOrigin::Reused);
    assert_eq!(send_back, a_addr);
}
