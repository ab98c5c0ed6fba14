//! Descriptor pressure from peers that never close. In a child process with `ulimit -n 256`,
//! 1,000 dials leave from the listening port to peers that accept and then neither read nor
//! close, and each connection is dropped at once. The transport keeps at most its bound of them
//! open (the default: 256 / 8 = 32), closes the rest at once and still passes their pairs over;
//! dials and accepts keep working; when the peers finally close, or reset, every descriptor comes
//! back. A control without the bound runs out of descriptors and breaks dials and accepts.
//!
//! The peers live in the parent process: one listener on 0.0.0.0 bound to the loopback device
//! (`SO_BINDTODEVICE`), so that 1,000 distinct loopback addresses (127.1.x.y) reach it and every
//! dial has its own (local, remote) pair, and nothing outside the machine does.

// ulimit, /proc/self/fd, /proc/net/tcp and SO_BINDTODEVICE are Linux's.
#![cfg(target_os = "linux")]

#[path = "../util/mod.rs"]
mod util;

mod peers;

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Write},
    net::{Ipv4Addr, SocketAddr},
    time::{Duration, Instant},
};

use libp2p_core::transport::{PortUse, TransportEvent};
use libp2p_reuseport::{Config, Fallback, PortOrigin, Transport};
use util::*;

use crate::peers::{End, FIN_WAIT1, FIN_WAIT2, Peers, TIME_WAIT, kernel_states};

const CHILD: &str = "LIBP2P_REUSEPORT_PRESSURE_CHILD";
/// The peers' port, for the child.
const PEER_PORT: &str = "PRESSURE_PEER_PORT";
/// How the peers end their connections, for the child: `close` or `reset`.
const PEER_END: &str = "PRESSURE_PEER_END";

/// The child's descriptor limit.
const LIMIT: u32 = 256;
/// The default bound for that limit: an eighth.
const BOUND: usize = LIMIT as usize / 8;
/// Dials to peers that never close.
const DIALS: usize = 1_000;
/// While at the bound: redials to peers whose pair is closing (held or not), dials to new peers,
/// accepts.
const REDIALED: [usize; 5] = [0, BOUND - 1, BOUND, DIALS / 2, DIALS - 1];
const REDIALS: usize = REDIALED.len();
const NEW_PEERS: usize = 10;
const ACCEPTS: usize = 5;
/// How long a closing socket is kept at most (the transport's limit), which the bounded child
/// must stay well within to see its held sockets released by the peers rather than given up.
const CLOSING_LIMIT: Duration = Duration::from_secs(10);

/// The address of peer `i`: its own loopback IP, the peers' one port.
fn peer(i: usize, port: u16) -> SocketAddr {
    let i = u16::try_from(i).expect("few peers");
    let [hi, lo] = i.to_be_bytes();
    SocketAddr::from((Ipv4Addr::new(127, 1, hi, lo), port))
}

/// Runs `child` (an ignored test below) with `ulimit -n 256` against fresh peers. When it prints
/// `pressure: ready, peers hold N`, waits until the peers hold N connections, ends them as `end`
/// says and tells the child. Returns the child's `pressure:` lines.
fn run_child(child: &str, end: End) -> Vec<String> {
    raise_descriptor_limit(4_096);
    let peers = Peers::start();
    let end_name = match end {
        End::Close => "close",
        End::Reset => "reset",
    };
    let mut process = spawn_child_with_descriptor_limit(
        LIMIT,
        child,
        CHILD,
        &[
            (PEER_PORT, peers.port.to_string()),
            (PEER_END, end_name.to_string()),
        ],
    );
    let mut stdin = process.stdin.take().expect("piped stdin");
    let stdout = BufReader::new(process.stdout.take().expect("piped stdout"));
    let mut lines = Vec::new();
    for line in stdout.lines() {
        let line = line.expect("child output");
        if let Some(n) = line.strip_prefix("pressure: ready, peers hold ") {
            let n: usize = n.parse().expect("a count");
            let started = Instant::now();
            while peers.count() < n {
                assert!(
                    started.elapsed() < TIMEOUT,
                    "peers hold {} of {n}",
                    peers.count()
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            assert_eq!(
                peers.count(),
                n,
                "the peers hold exactly the child's connections"
            );
            peers.end(end);
            writeln!(stdin, "ended").expect("tell the child");
        }
        lines.push(line);
    }
    let status = process.wait().expect("child exits");
    assert!(status.success(), "child failed:\n{}", lines.join("\n"));
    lines.retain(|l| l.starts_with("pressure:"));
    for line in &lines {
        println!("{line}");
    }
    lines
}

/// Runs `child` against peers that end their connections as `end` says, and checks that one of
/// its lines says `outcome`.
fn child_reports(child: &str, end: End, outcome: &str) {
    let lines = run_child(child, end);
    assert!(lines.iter().any(|l| l.contains(outcome)), "{lines:?}");
}

#[test]
fn peers_that_never_close_then_close() {
    child_reports(
        "child_dials_peers_that_never_close",
        End::Close,
        "every descriptor back",
    );
}

#[test]
fn peers_that_never_close_then_reset() {
    child_reports(
        "child_dials_peers_that_never_close",
        End::Reset,
        "every descriptor back",
    );
}

#[test]
fn without_the_bound_the_same_dials_run_out_of_descriptors() {
    child_reports("child_without_a_bound", End::Close, "out of descriptors");
}

#[test]
fn closed_at_once_peers_that_never_close_then_close() {
    child_reports("child_closes_at_once", End::Close, "every pair free");
}

#[test]
fn closed_at_once_peers_that_never_close_then_reset() {
    child_reports("child_closes_at_once", End::Reset, "every pair free");
}

/// How many connections from `port` to the peers the kernel has in FIN_WAIT, once that is all
/// [`DIALS`] of them (asserted). Read until the kernel's table shows them all: a read of
/// /proc/net/tcp can miss entries while other tests open and close sockets.
async fn all_in_fin_wait(port: u16, peer_port: u16) -> usize {
    let counted = Instant::now();
    let (kernel, fin_wait) = loop {
        let kernel = kernel_states(port, peer_port);
        let fin_wait = kernel.get(&FIN_WAIT1).unwrap_or(&0) + kernel.get(&FIN_WAIT2).unwrap_or(&0);
        if fin_wait == DIALS || counted.elapsed() > Duration::from_secs(2) {
            break (kernel, fin_wait);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(fin_wait, DIALS, "kernel states {kernel:x?}");
    fin_wait
}

/// Dials the [`REDIALED`] peers again and checks where each dial left from: `origin`, and for
/// `PortOrigin::Reused` the listening address.
async fn redial(t: &mut Transport, peer_port: u16, origin: PortOrigin) {
    let listening = t.reuse_table().listen_addrs();
    for i in REDIALED {
        let stream = dial(t, peer(i, peer_port), PortUse::Reuse)
            .await
            .unwrap_or_else(|e| panic!("redial {i}: {e}"));
        assert_eq!(stream.port_origin(), origin, "redial {i}");
        if origin == PortOrigin::Reused {
            assert_eq!([stream.local_addr().unwrap()], *listening, "redial {i}");
        }
    }
}

/// The child's side: its arguments from the parent.
fn child_setup() -> (u16, End) {
    assert_eq!(
        std::env::var(CHILD).as_deref(),
        Ok("1"),
        "only run as a child"
    );
    let port = std::env::var(PEER_PORT)
        .expect("peer port")
        .parse()
        .expect("a port");
    let end = match std::env::var(PEER_END).as_deref() {
        Ok("close") => End::Close,
        Ok("reset") => End::Reset,
        other => panic!("{PEER_END}: {other:?}"),
    };
    (port, end)
}

/// Waits for the parent's word that the peers have ended their connections.
async fn peers_ended() {
    let line = within(
        "the parent ends the peers' connections",
        tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).map(|_| line)
        }),
    )
    .await
    .expect("stdin reader")
    .expect("stdin");
    assert_eq!(line.trim(), "ended");
}

#[tokio::test(flavor = "current_thread")]
#[ignore = "run in a child process with ulimit -n 256 by peers_that_never_close_then_*"]
async fn child_dials_peers_that_never_close() {
    let (peer_port, end) = child_setup();
    // The default bound: derived from this process's limit. Held sockets, as on every platform
    // but Linux (the closing-at-once child below is Linux's default).
    let mut t = Transport::new(Config::new().hold_closing_sockets(true));
    let table = t.reuse_table();
    let (_, addr) = listen(&mut t, "/ip4/127.0.0.1/tcp/0").await;
    let fds = open_fds();
    let started = Instant::now();

    for i in 0..DIALS {
        let stream = dial(&mut t, peer(i, peer_port), PortUse::Reuse)
            .await
            .unwrap_or_else(|e| panic!("dial {i}: {e}"));
        assert_eq!(stream.port_origin(), PortOrigin::Reused, "dial {i}");
        assert_eq!(stream.local_addr().unwrap(), addr, "dial {i}");
        drop(stream);
        let held = (i + 1).min(BOUND);
        assert_eq!(
            (table.closing_sockets(), open_fds() - fds),
            (held, held),
            "(held, extra descriptors) after {} drops",
            i + 1
        );
    }
    assert_eq!(
        (
            table.dialed_connections(),
            table.closing_connections(),
            table.closing_sockets()
        ),
        (0, DIALS, BOUND),
        "(open, closing, held)"
    );
    let fin_wait = all_in_fin_wait(addr.port(), peer_port).await;
    println!(
        "pressure: {DIALS} dials from {addr} to peers that never close nor read, each dropped \
         at once, ulimit -n {LIMIT}: {BOUND} sockets held open (the default bound, {LIMIT} / 8), \
         {} closed at once; descriptors {fds} + {BOUND}; the kernel has {fin_wait} connections \
         in FIN_WAIT; the table passes {DIALS} closing pairs over",
        DIALS - BOUND,
        fds = fds - 1,
    );

    // At the bound, dials work: redials to closing pairs (held or not) are passed over to an
    // ephemeral port without a failed system call, new peers get the listening port.
    redial(&mut t, peer_port, PortOrigin::Ephemeral(Fallback::Busy)).await;
    for i in DIALS..DIALS + NEW_PEERS {
        let stream = dial(&mut t, peer(i, peer_port), PortUse::Reuse)
            .await
            .unwrap_or_else(|e| panic!("dial {i}: {e}"));
        assert_eq!(stream.port_origin(), PortOrigin::Reused, "dial {i}");
    }
    // And accepts work. Each accepted connection, dropped before its client, is past the bound
    // too: closed at once, its pair orphaned.
    for _ in 0..ACCEPTS {
        let client = std::net::TcpStream::connect(addr).expect("connect to our listener");
        let (stream, local, send_back) = accept(&mut t).await;
        assert_eq!((local, send_back), (addr, client.local_addr().unwrap()));
        drop((stream, client));
    }
    assert_eq!(
        (table.closing_sockets(), open_fds() - fds),
        (BOUND, BOUND),
        "(held, extra descriptors) after the dials and accepts at the bound"
    );
    assert_eq!(table.closing_connections(), DIALS + NEW_PEERS + ACCEPTS);
    println!(
        "pressure: at the bound: {REDIALS} redials to closing pairs passed over to an ephemeral \
         port (Fallback::Busy, no failed system call), {NEW_PEERS} dials to new peers from the \
         listening port, {ACCEPTS} connections accepted and dropped (past the bound too: their \
         pairs orphaned); still {BOUND} held"
    );
    let elapsed = started.elapsed();
    assert!(
        elapsed < CLOSING_LIMIT - Duration::from_secs(2),
        "the held sockets must still be waiting for their peers, not given up at {CLOSING_LIMIT:?}: \
         {elapsed:?} so far"
    );

    println!(
        "pressure: ready, peers hold {}",
        DIALS + REDIALS + NEW_PEERS
    );
    peers_ended().await;
    let ended = Instant::now();
    // The held sockets see the FIN or the reset and close; nothing else holds a descriptor.
    while (table.closing_sockets(), open_fds()) != (0, fds) {
        assert!(
            ended.elapsed() < TIMEOUT,
            "(held, descriptors) = {:?}, expected (0, {fds})",
            (table.closing_sockets(), open_fds())
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let released_in = ended.elapsed();
    // Closed without the remote's FIN, the orphans' pairs stay passed over (no descriptor).
    let orphans = DIALS + NEW_PEERS + ACCEPTS - BOUND;
    assert_eq!(
        (
            table.dialed_connections(),
            table.closing_connections(),
            table.closing_sockets()
        ),
        (0, orphans, 0),
        "(open, closing, held) after the peers ended"
    );
    // The kernel: after a FIN every connection from our port is in TIME_WAIT; after a reset
    // none is left.
    let mut kernel = BTreeMap::new();
    while ended.elapsed() < TIMEOUT {
        kernel = kernel_states(addr.port(), peer_port);
        let done = match end {
            End::Close => kernel.get(&TIME_WAIT) == Some(&(DIALS + NEW_PEERS)) && kernel.len() == 1,
            End::Reset => kernel.is_empty(),
        };
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let kernel_view = match end {
        End::Close => {
            assert_eq!(
                kernel,
                BTreeMap::from([(TIME_WAIT, DIALS + NEW_PEERS)]),
                "kernel states"
            );
            format!("all {} in TIME_WAIT", DIALS + NEW_PEERS)
        }
        End::Reset => {
            assert_eq!(kernel, BTreeMap::new(), "kernel states");
            "none left".to_string()
        }
    };
    println!(
        "pressure: peers {}: every descriptor back ({fds} open, 0 held) {released_in:?} after; \
         kernel: {kernel_view}; the table still passes {orphans} orphaned pairs over, without \
         descriptors, until their hold ends",
        match end {
            End::Close => "closed",
            End::Reset => "reset",
        },
        fds = fds - 1,
    );
}

/// Linux's default: a connection dropped before its remote closed is closed at once and its pair
/// left to the kernel. No descriptor is held whatever the peers do; the pairs are passed over
/// while the kernel finishes their connections, and free once it has.
#[tokio::test(flavor = "current_thread")]
#[ignore = "run in a child process with ulimit -n 256 by closed_at_once_peers_that_never_close_then_*"]
async fn child_closes_at_once() {
    let (peer_port, end) = child_setup();
    let mut t = transport();
    let table = t.reuse_table();
    let (_, addr) = listen(&mut t, "/ip4/127.0.0.1/tcp/0").await;
    let fds = open_fds();

    for i in 0..DIALS {
        let stream = dial(&mut t, peer(i, peer_port), PortUse::Reuse)
            .await
            .unwrap_or_else(|e| panic!("dial {i}: {e}"));
        assert_eq!(stream.port_origin(), PortOrigin::Reused, "dial {i}");
        assert_eq!(stream.local_addr().unwrap(), addr, "dial {i}");
        drop(stream);
        // At most one more: the netlink socket of a prune of the finishing pairs, while its
        // dump runs on a blocking thread.
        let extra = open_fds() - fds;
        assert!(
            table.closing_sockets() == 0 && extra <= 1,
            "(held, extra descriptors) = {:?} after {} drops",
            (table.closing_sockets(), extra),
            i + 1
        );
    }
    assert_eq!(
        (
            table.dialed_connections(),
            table.closing_connections(),
            table.closing_sockets()
        ),
        (0, DIALS, 0),
        "(open, closing, held): the kernel still finishes every one"
    );
    let fin_wait = all_in_fin_wait(addr.port(), peer_port).await;
    // The kernel says those pairs are taken: dials back pass over them without a failed
    // system call.
    redial(&mut t, peer_port, PortOrigin::Ephemeral(Fallback::Busy)).await;
    println!(
        "pressure: closing at once, {DIALS} dials from {addr} to peers that never close nor \
         read, each dropped at once, ulimit -n {LIMIT}: 0 sockets held, descriptors {fds} + 0; \
         the kernel has {fin_wait} connections in FIN_WAIT; {REDIALS} redials passed over to an \
         ephemeral port (Fallback::Busy)",
        fds = fds - 1,
    );

    println!("pressure: ready, peers hold {}", DIALS + REDIALS);
    peers_ended().await;
    let ended = Instant::now();
    // The kernel finishes the connections (TIME_WAIT after a FIN, nothing after a reset): the
    // table lets go of the pairs, and a dial back leaves from the listening port again.
    while table.closing_connections() > 0 {
        assert!(
            ended.elapsed() < TIMEOUT,
            "{} pairs still closing; kernel states {:x?}",
            table.closing_connections(),
            kernel_states(addr.port(), peer_port)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let freed_in = ended.elapsed();
    redial(&mut t, peer_port, PortOrigin::Reused).await;
    while open_fds() != fds {
        assert!(
            ended.elapsed() < TIMEOUT,
            "{} descriptors more than before the dials",
            open_fds() - fds
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!(
        "pressure: closing at once, peers {}: every pair free {freed_in:?} after; {REDIALS} \
         redials left from {addr}",
        match end {
            End::Close => "closed",
            End::Reset => "reset",
        },
    );
}

#[tokio::test(flavor = "current_thread")]
#[ignore = "run in a child process with ulimit -n 256 by without_the_bound_the_same_dials_run_out_of_descriptors"]
async fn child_without_a_bound() {
    let (peer_port, _) = child_setup();
    let mut t = Transport::new(
        Config::new()
            .max_closing_sockets(usize::MAX)
            .hold_closing_sockets(true),
    );
    listen(&mut t, "/ip4/127.0.0.1/tcp/0").await;
    // Queued before the descriptors run out, accepted after: on a second listener, which the
    // dials (all from the first, each to a new peer) do not leave from, so that none takes the
    // connection in (a dial accepts what waits on the listener it leaves from).
    let (id, queued_on) = listen(&mut t, "/ip4/127.0.0.1/tcp/0").await;
    let _client = std::net::TcpStream::connect(queued_on).expect("connect to our listener");
    // `open_fds` counts the directory it reads too.
    let fds = open_fds() - 1;
    let mut held = 0;
    let error = loop {
        match dial(&mut t, peer(held, peer_port), PortUse::Reuse).await {
            Ok(stream) => {
                drop(stream);
                held += 1;
                assert!(held < DIALS, "{DIALS} dials held without running out");
            }
            Err(e) => break e,
        }
    };
    assert!(error.to_string().contains("os error 24"), "{error}");
    assert_eq!(
        held,
        LIMIT as usize - fds,
        "every free descriptor went to a closing socket"
    );
    assert_eq!(t.reuse_table().closing_sockets(), held);
    let accept_error = match next_event(&mut t).await {
        TransportEvent::ListenerError { listener_id, error } => {
            assert_eq!(listener_id, id);
            error
        }
        other => panic!("expected an accept error, got {other:?}"),
    };
    assert!(
        accept_error.to_string().contains("os error 24"),
        "{accept_error}"
    );
    println!(
        "pressure: control without a bound, ulimit -n {LIMIT}: out of descriptors after {held} \
         dropped dials held open; the next dial: {error}; accept: {accept_error}"
    );
}
