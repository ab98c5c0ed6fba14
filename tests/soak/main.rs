//! Soak: two swarms on this crate's transport, with identify and ping, under churn. Several tasks
//! connect (a new connection each time, in both directions, to base listeners and to listeners
//! added meanwhile), wait until the connection is identified and pinged, and close it, while
//! another task adds and removes listeners on both swarms. At the end every connection is
//! closed, every added listener removed, and the process's descriptors and both port-reuse
//! tables must be back where they were; any failure, and any dial that spent a failed system
//! call, fails the test. It prints one summary line.
//!
//! By default A dials B over IPv4 and B dials A over IPv6: the dials of one direction never meet
//! the other's connections. With `SOAK_CROSSING=1` every dial picks IPv4 or IPv6 at random, so
//! that the two swarms dial each other between the same listening ports all the time, and
//! often at the same instant. A dial then takes in the connections waiting on its listener
//! before it chooses its pair (the table's backlog drain), but two dials whose SYNs cross
//! cannot both be seen in time: the kernel either refuses the later one (it falls back to an
//! ephemeral port and succeeds) or joins the two into one connection (a TCP simultaneous open,
//! on which both swarms run the dialer's handshake and both fail; libp2p has no tie-break for
//! it outside DCUtR). That mode counts both, and fails on any other failure and on crossed
//! failures that are not matched one for one in the two directions (see docs/robustness.md,
//! Soak).
//!
//! ```text
//! cargo test --test soak -- --nocapture                           # 10 s
//! SOAK_SECONDS=300 cargo test --release --test soak -- --nocapture  # 5 minutes
//! SOAK_CROSSING=1 SOAK_SECONDS=60 cargo test --release --test soak -- --nocapture
//! ```
//! `SOAK_TASKS` sets the number of connecting tasks (default 4). `SOAK_HOLD=1` holds the sockets
//! of connections dropped before their remote closed (`Config::hold_closing_sockets`), as every
//! platform but Linux does, rather than closing them at once.

// Descriptors are counted in /proc/self/fd.
#![cfg(target_os = "linux")]

#[path = "../util/mod.rs"]
mod util;

mod driver;

use std::{
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use futures::future::join_all;
use libp2p::{Multiaddr, core::transport::ListenerId};
use libp2p_reuseport::{Config, Fallback, PortOrigin, ReuseTable};

use crate::{
    driver::{Driven, drive},
    util::{open_fds, swarm::reuseport_observed, within},
};

/// How connections got their local port, counted as the transports make them.
#[derive(Default)]
struct Origins {
    accepted: AtomicUsize,
    reused: AtomicUsize,
    busy: AtomicUsize,
    refused: AtomicUsize,
    other: AtomicUsize,
}

impl Origins {
    fn note(&self, origin: PortOrigin) {
        let counter = match origin {
            PortOrigin::Accepted => &self.accepted,
            PortOrigin::Reused => &self.reused,
            PortOrigin::Ephemeral(Fallback::Busy) => &self.busy,
            PortOrigin::Ephemeral(Fallback::KernelRefused(_)) => &self.refused,
            _ => &self.other,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn get(counter: &AtomicUsize) -> usize {
        counter.load(Ordering::Relaxed)
    }
}

/// A listener added during the churn: dials may target it while `users` > 0 keeps it.
struct Extra {
    side: usize,
    id: ListenerId,
    addr: Multiaddr,
    users: usize,
}

fn family_of(addr: &Multiaddr) -> usize {
    match addr.iter().next() {
        Some(libp2p::multiaddr::Protocol::Ip6(_)) => 1,
        _ => 0,
    }
}

/// What the connecting tasks did.
#[derive(Default)]
struct Churn {
    /// Connections made, by direction: A to B, B to A.
    connected: [usize; 2],
    /// Of those, to a listener added meanwhile.
    to_extra: usize,
    /// With `SOAK_CROSSING`, dials by direction whose handshake failed on a connection the
    /// other side's dial joined (a TCP simultaneous open: both ran the dialer's handshake).
    crossed: [usize; 2],
    failures: Vec<String>,
}

/// A small deterministic generator; the tests need variety, not quality.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The table's (listeners, open, accepted, closing, held sockets).
fn state(table: &ReuseTable) -> (usize, usize, usize, usize, usize) {
    (
        table.listen_addrs().len(),
        table.dialed_connections(),
        table.accepted_connections(),
        table.closing_connections(),
        table.closing_sockets(),
    )
}

/// Waits until both swarms have no connection, both tables hold only their two base listeners
/// and nothing else, and `fds` descriptors are open (if given).
async fn settled(nodes: &[Driven; 2], tables: &[ReuseTable; 2], fds: Option<usize>) {
    let started = Instant::now();
    loop {
        let connections = [nodes[0].connections().await, nodes[1].connections().await];
        let states = [state(&tables[0]), state(&tables[1])];
        let open = open_fds();
        if connections == [0, 0]
            && states == [(2, 0, 0, 0, 0); 2]
            && fds.is_none_or(|fds| fds == open)
        {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "not settled: connections {connections:?}, tables (listeners, open, accepted, closing, \
             held) {states:?}, descriptors {open} (expected {fds:?})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One connection from `from` to `to` at `addr`, identified and pinged, then closed.
async fn cycle(from: &Driven, to: &Driven, addr: Multiaddr) -> Result<(), String> {
    let connection = within("connect, identify, ping", from.connect(to.peer, addr)).await?;
    within("close", from.close(connection)).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_swarms_under_churn() {
    let seconds = env_or("SOAK_SECONDS", 10);
    let tasks = env_or("SOAK_TASKS", 4) as usize;
    let crossing = env_or("SOAK_CROSSING", 0) != 0;
    let hold = env_or("SOAK_HOLD", 0) != 0;
    let origins = Arc::new(Origins::default());
    let start = || {
        let seen = origins.clone();
        let config = Config::new().hold_closing_sockets(hold);
        let (swarm, table) = reuseport_observed(config, move |s| seen.note(s.port_origin()));
        let (node, driver) = drive(swarm);
        (node, table, driver)
    };
    let (a, a_table, a_driver) = start();
    let (b, b_table, b_driver) = start();
    let (nodes, tables, drivers) = ([a, b], [a_table, b_table], [a_driver, b_driver]);
    // Each swarm's base listeners, IPv4 and IPv6 on loopback.
    let mut base: [[Multiaddr; 2]; 2] =
        std::array::from_fn(|_| [Multiaddr::empty(), Multiaddr::empty()]);
    for (node, base) in nodes.iter().zip(&mut base) {
        base[0] = node.listen("/ip4/127.0.0.1/tcp/0").await.1;
        base[1] = node.listen("/ip6/::1/tcp/0").await.1;
    }

    // Once each way in each family, and a wildcard listener added and removed on each, so that
    // whatever is created once exists before descriptors are counted.
    for (from, to) in [(0, 1), (1, 0)] {
        for addr in &base[to] {
            cycle(&nodes[from], &nodes[to], addr.clone())
                .await
                .expect("warm-up connection");
        }
        let (id, _) = nodes[from].listen("/ip4/0.0.0.0/tcp/0").await;
        nodes[from].unlisten(id).await;
    }
    settled(&nodes, &tables, None).await;
    let fds = open_fds();

    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let extras: Arc<Mutex<Vec<Extra>>> = Arc::default();
    let churn = Arc::new(Mutex::new(Churn::default()));
    let connecting = (0..tasks).map(|task| {
        let (nodes, base, extras, churn) =
            (nodes.clone(), base.clone(), extras.clone(), churn.clone());
        tokio::spawn(async move {
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (task as u64 + 1));
            while Instant::now() < deadline {
                let from = rng.below(2);
                let to = 1 - from;
                let family = if crossing { rng.below(2) } else { from };
                // One in four to a listener added meanwhile (kept while in use), else to the
                // base listener, in the dial's family.
                let extra = (rng.below(4) == 0)
                    .then(|| {
                        let mut extras = extras.lock().unwrap_or_else(PoisonError::into_inner);
                        let mine: Vec<usize> = (0..extras.len())
                            .filter(|i| {
                                extras[*i].side == to && family_of(&extras[*i].addr) == family
                            })
                            .collect();
                        let pick = *mine.get(rng.below(mine.len().max(1)))?;
                        extras[pick].users += 1;
                        Some((extras[pick].id, extras[pick].addr.clone()))
                    })
                    .flatten();
                let addr = extra
                    .as_ref()
                    .map_or_else(|| base[to][family].clone(), |(_, a)| a.clone());
                let result = cycle(&nodes[from], &nodes[to], addr.clone()).await;
                if let Some((id, _)) = extra {
                    let mut extras = extras.lock().unwrap_or_else(PoisonError::into_inner);
                    if let Some(e) = extras.iter_mut().find(|e| e.id == id) {
                        e.users -= 1;
                    }
                }
                let mut churn = churn.lock().unwrap_or_else(PoisonError::into_inner);
                match result {
                    Ok(()) => {
                        churn.connected[from] += 1;
                        churn.to_extra += usize::from(extra.is_some());
                    }
                    // Noise on both ends as the initiator: "Handshake failed: input error".
                    Err(e) if crossing && e.contains("Handshake failed: input error") => {
                        churn.crossed[from] += 1;
                    }
                    Err(e) => churn
                        .failures
                        .push(format!("{from} -> {to} at {addr}: {e}")),
                }
            }
        })
    });
    let connecting: Vec<_> = connecting.collect();

    // Listeners come and go on both swarms: loopback IPv4 and IPv6 and wildcard IPv4, at most
    // three added ones per swarm, the oldest unused one removed. Those of the family a swarm
    // dials in serve as its sources when the base pair is taken.
    let listening = {
        let (nodes, extras) = (nodes.clone(), extras.clone());
        tokio::spawn(async move {
            let kinds = [
                "/ip4/127.0.0.1/tcp/0",
                "/ip6/::1/tcp/0",
                "/ip4/0.0.0.0/tcp/0",
            ];
            let (mut added, mut removed) = (0, 0);
            while Instant::now() < deadline {
                let side = added % 2;
                let (id, addr) = within(
                    "listen",
                    nodes[side].listen(kinds[(added / 2) % kinds.len()]),
                )
                .await;
                added += 1;
                let remove = {
                    let mut extras = extras.lock().unwrap_or_else(PoisonError::into_inner);
                    extras.push(Extra {
                        side,
                        id,
                        addr,
                        users: 0,
                    });
                    let mine = extras.iter().filter(|e| e.side == side).count();
                    let oldest_unused = extras.iter().position(|e| e.side == side && e.users == 0);
                    match oldest_unused {
                        Some(i) if mine > 3 => Some(extras.remove(i).id),
                        _ => None,
                    }
                };
                if let Some(id) = remove {
                    within("unlisten", nodes[side].unlisten(id)).await;
                    removed += 1;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (added, removed)
        })
    };

    for task in join_all(connecting).await {
        task.expect("connecting task");
    }
    let (added, mut removed) = listening.await.expect("listener task");
    // The rest of the added listeners go.
    let rest: Vec<(usize, ListenerId)> = extras
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .drain(..)
        .map(|e| (e.side, e.id))
        .collect();
    for (side, id) in rest {
        within("unlisten", nodes[side].unlisten(id)).await;
        removed += 1;
    }
    let churned = started.elapsed();
    settled(&nodes, &tables, Some(fds)).await;
    let end = [state(&tables[0]), state(&tables[1])];

    let after = open_fds();
    let churn = std::mem::take(&mut *churn.lock().unwrap_or_else(PoisonError::into_inner));
    drop(nodes);
    let mut seen = Vec::new();
    for driver in drivers {
        seen.push(driver.await.expect("driver"));
    }
    let connections = churn.connected[0] + churn.connected[1];
    let dialed = Origins::get(&origins.reused)
        + Origins::get(&origins.busy)
        + Origins::get(&origins.refused)
        + Origins::get(&origins.other);
    println!(
        "soak: {:.0} s, {tasks} tasks: {connections} connections ({} A->B, {} B->A; {} to \
         listeners added meanwhile), each identified and pinged, then closed; {added} listeners \
         added and {removed} removed; {dialed} dials: {} from a listening port, {} passed over \
         to an ephemeral port (pair taken), {} refused by the kernel, {} other; {} accepted; \
         crossed (simultaneous open, both handshakes failed): {} A->B, {} B->A; failures: {}; \
         at the end: descriptors {fds} -> {after}, tables (listeners, open, accepted, closing, \
         held) A {:?}, B {:?}",
        churned.as_secs_f64(),
        churn.connected[0],
        churn.connected[1],
        churn.to_extra,
        Origins::get(&origins.reused),
        Origins::get(&origins.busy),
        Origins::get(&origins.refused),
        Origins::get(&origins.other),
        Origins::get(&origins.accepted),
        churn.crossed[0],
        churn.crossed[1],
        churn.failures.len() + seen[0].errors.len() + seen[1].errors.len(),
        end[0],
        end[1],
    );
    // Each side closes the connections it dialed (no cause) and sees the others closed by the
    // remote: yamux reports the remote's close as an I/O error "Closed", or, when the remote's
    // socket closed with data it had not read (a ping or identify message in flight), the
    // kernel's reset as a broken pipe or a reset connection. Nothing else.
    for (name, seen) in ["A", "B"].iter().zip(&seen) {
        let on_purpose = seen.closed.get("None").copied().unwrap_or(0);
        let (mut graceful, mut reset) = (0, 0);
        for (cause, n) in seen.closed.iter().filter(|(c, _)| c.as_str() != "None") {
            if cause.contains("Error(Closed)") {
                graceful += n;
            } else if cause.contains("BrokenPipe") || cause.contains("ConnectionReset") {
                reset += n;
            } else {
                panic!("{name}: {n} connections closed by {cause}");
            }
        }
        println!(
            "soak: {name}: {} outbound and {} inbound connections; closed {on_purpose} of its own, \
             saw {graceful} closed by the remote and {reset} reset by it",
            seen.outbound, seen.inbound
        );
        assert_eq!(
            (on_purpose, graceful + reset),
            (seen.outbound, seen.inbound)
        );
    }
    assert!(churn.failures.is_empty(), "failures: {:#?}", churn.failures);
    for seen in &seen {
        assert!(seen.errors.is_empty(), "errors: {:#?}", seen.errors);
    }
    assert!(connections > 0, "no connection in {seconds} s");
    // Every connection made during the churn (plus the four warm-up ones) was dialed once by
    // one side and accepted once by the other; a crossed connection was dialed by both and
    // accepted by neither, so crossings come in pairs.
    let crossed = churn.crossed[0] + churn.crossed[1];
    assert_eq!(churn.crossed[0], churn.crossed[1], "crossed dials pair up");
    assert_eq!(dialed, connections + 4 + crossed);
    assert_eq!(Origins::get(&origins.accepted), connections + 4);
    if !crossing {
        assert_eq!(
            Origins::get(&origins.refused),
            0,
            "no dial spent a failed system call"
        );
    }
    assert_eq!(Origins::get(&origins.other), 0);
    assert_eq!(removed, added);
    assert_eq!(after, fds, "descriptors");
}
