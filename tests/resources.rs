//! Resources over time: thousands of dial/close and listen/remove cycles, cancelled dials,
//! transports dropped with connections in flight, and the table under parallel use. Each test
//! counts the process's open descriptors (/proc/self/fd), so they run one at a time.

#![cfg(target_os = "linux")]

mod util;

use std::{
    future::poll_fn,
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    task::Poll,
    time::{Duration, Instant},
};

use futures::{AsyncReadExt, AsyncWriteExt, FutureExt, future::join_all};
use libp2p_core::{
    Transport as _,
    transport::{ListenerId, PortUse, TransportEvent},
};
use libp2p_reuseport::ReuseTable;
use util::*;

/// The tests of this file count process-wide descriptors: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Waits until nothing is left in `table` but `listeners`, and the descriptor count is `fds`.
async fn settled(table: &ReuseTable, listeners: usize, fds: usize) {
    let started = Instant::now();
    loop {
        let state = (
            table.listen_addrs().len(),
            table.dialed_connections(),
            table.accepted_connections(),
            table.closing_connections(),
            open_fds(),
        );
        if state == (listeners, 0, 0, 0, fds) {
            return;
        }
        assert!(
            started.elapsed() < TIMEOUT,
            "(listeners, live, accepted, closing, fds) = {state:?}, expected ({listeners}, 0, \
             0, 0, {fds})"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[test]
fn ten_thousand_dial_close_cycles_leave_nothing_behind() {
    let _serial = serial();
    current_thread().block_on(async {
        let mut a = transport();
        let mut b = transport();
        let (_, _) = listen(&mut a, "/ip4/127.0.0.1/tcp/0").await;
        let (_, b_addr) = listen(&mut b, "/ip4/127.0.0.1/tcp/0").await;
        let table = a.reuse_table();
        let b_table = b.reuse_table();
        // One clean cycle first, so that everything created once is there before counting.
        let (dialed, accepted, _) = connect(&mut a, &mut b, b_addr, PortUse::Reuse).await;
        close_remote_first(dialed, accepted).await;
        // B dropped its end first: its socket is held until A's FIN arrives.
        within("b's closing pair released", async {
            while b_table.closing_connections() > 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await;
        let fds = settled_fds().await;
        let cycles = 10_000;
        let mut reused = 0;
        for i in 0..cycles {
            let (mut dialed, mut accepted, _) =
                connect(&mut a, &mut b, b_addr, PortUse::Reuse).await;
            send(&mut dialed, &mut accepted, b"x").await;
            reused += usize::from(dialed.is_port_reused());
            // Alternate who closes first; half the time the client drops without waiting.
            if i % 2 == 0 {
                drop(dialed);
                let mut rest = Vec::new();
                within("eof", accepted.read_to_end(&mut rest))
                    .await
                    .unwrap();
            } else {
                close_remote_first(dialed, accepted).await;
            }
        }
        settled(&table, 1, fds).await;
        settled(&b_table, 1, fds).await;
        println!(
            "resources: {cycles} dial/close cycles ({reused} from the listening port): \
             descriptors {fds} before, {} after; both tables: 1 listener, 0 open, 0 accepted, 0 \
             closing",
            open_fds()
        );
    });
}

#[test]
fn a_thousand_listen_remove_cycles_leave_nothing_behind() {
    let _serial = serial();
    current_thread().block_on(async {
        let mut t = transport();
        let table = t.reuse_table();
        let fds = open_fds();
        for i in 0..1_000 {
            // Every tenth is a wildcard listener, with its interface watcher.
            let addr = if i % 10 == 0 {
                "/ip4/0.0.0.0/tcp/0"
            } else {
                "/ip6/::1/tcp/0"
            };
            let (id, _) = listen(&mut t, addr).await;
            assert!(t.remove_listener(id));
            loop {
                if let TransportEvent::ListenerClosed { listener_id, .. } = next_event(&mut t).await
                {
                    assert_eq!(listener_id, id);
                    break;
                }
            }
        }
        settled(&table, 0, fds).await;
        println!(
            "resources: 1000 listen/remove cycles: descriptors {fds} before, {} after; \
             table empty",
            open_fds()
        );
    });
}

#[test]
fn cancelled_dials_release_their_pair_and_socket() {
    let _serial = serial();
    current_thread().block_on(async {
        let mut a = transport();
        let mut b = transport();
        let _ = listen(&mut a, "/ip4/127.0.0.1/tcp/0").await;
        let (_, b_addr) = listen(&mut b, "/ip4/127.0.0.1/tcp/0").await;
        let table = a.reuse_table();
        let fds = open_fds();
        // Drop after 0, 1, 2 and 3 polls: unpolled, after reserving and connecting, and while
        // waiting for the handshake (a loopback handshake completes only when the runtime
        // runs its reactor, which these polls never let it do).
        for polls in 0..4 {
            for port_use in [PortUse::Reuse, PortUse::New] {
                let mut dial = a.dial(to_multiaddr(b_addr), opts(port_use)).unwrap();
                let mut pending = 0;
                for _ in 0..polls {
                    if dial.as_mut().now_or_never().is_none() {
                        pending += 1;
                    }
                }
                assert_eq!(pending, polls, "still connecting when dropped");
                drop(dial);
                assert_eq!(table.dialed_connections(), 0, "after {polls} polls");
            }
        }
        // The connections the kernel completed sit in b's backlog; accepting and dropping them
        // closes b's side. Our side must have no descriptor left.
        settled(&table, 1, fds).await;
        println!(
            "resources: dial futures dropped after 0-3 polls: descriptors {fds} before, {} after",
            open_fds()
        );
    });
}

#[test]
fn dropping_the_transport_with_connections_in_flight_leaves_nothing() {
    let _serial = serial();
    current_thread().block_on(async {
        let mut b = transport();
        // After the first transport: on Linux the process keeps one netlink socket, opened then,
        // to look up the pairs of connections closed at once.
        let fds = open_fds();
        let (_, b_addr) = listen(&mut b, "/ip4/127.0.0.1/tcp/0").await;
        let b_fds = open_fds();
        let mut a = transport();
        let table = a.reuse_table();
        let (_, a_addr) = listen(&mut a, "/ip4/127.0.0.1/tcp/0").await;
        a.listen_on(ListenerId::next(), ma("/ip4/0.0.0.0/tcp/0"))
            .unwrap();
        // Dials from a to b in flight, dials from b to a waiting to be accepted.
        let outbound: Vec<_> = (0..50)
            .map(|_| a.dial(to_multiaddr(b_addr), opts(PortUse::Reuse)).unwrap())
            .collect();
        let inbound: Vec<_> = (0..50)
            .map(|_| b.dial(to_multiaddr(a_addr), opts(PortUse::New)).unwrap())
            .collect();
        let mut outbound = join_all(outbound);
        // Let some dials complete, then drop the transport and its listeners.
        let _ = poll_fn(|cx| match outbound.poll_unpin(cx) {
            Poll::Pending => Poll::Ready(()),
            Poll::Ready(_) => Poll::Ready(()),
        })
        .await;
        drop(a);
        assert!(table.listen_addrs().is_empty(), "listeners unregistered");
        let outbound = within("outbound dials", outbound).await;
        let inbound = within("inbound dials", join_all(inbound)).await;
        let connected = outbound.iter().filter(|r| r.is_ok()).count();
        drop((outbound, inbound));
        // Accept and drop what reached b, so that its side closes too.
        while let Ok(TransportEvent::Incoming { upgrade, .. }) =
            tokio::time::timeout(Duration::from_millis(200), next_event(&mut b)).await
        {
            drop(upgrade.await);
        }
        settled(&table, 0, b_fds).await;
        drop(b);
        let after = settled_fds().await;
        println!(
            "resources: transport dropped with 100 dials in flight ({connected} of ours \
             connected): descriptors {fds} before, {after} after"
        );
        assert_eq!(after, fds);
    });
}

#[test]
fn parallel_dials_and_listener_churn_on_a_multi_thread_runtime() {
    let _serial = serial();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut b = transport();
        let (_, b_addr) = listen(&mut b, "/ip4/127.0.0.1/tcp/0").await;
        tokio::spawn(async move {
            loop {
                let event = poll_fn(|cx| Pin::new(&mut b).poll(cx)).await;
                let TransportEvent::Incoming { upgrade, .. } = event else {
                    continue;
                };
                let Ok(mut stream) = upgrade.await else {
                    continue;
                };
                tokio::spawn(async move {
                    let mut byte = [0];
                    if stream.read_exact(&mut byte).await.is_ok() {
                        let _ = stream.write_all(&byte).await;
                    }
                    let mut rest = Vec::new();
                    let _ = stream.read_to_end(&mut rest).await;
                });
            }
        });

        let a = Arc::new(Mutex::new(transport()));
        let table = a.lock().unwrap().reuse_table();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        // The owner task polls the transport for listener events.
        let poller = {
            let (a, stop) = (a.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = tokio::time::timeout(
                        Duration::from_millis(5),
                        poll_fn(|cx| Pin::new(&mut *a.lock().unwrap()).poll(cx)),
                    )
                    .await;
                }
            })
        };
        // Listeners come and go while the dials run.
        let churn = {
            let a = a.clone();
            tokio::spawn(async move {
                for i in 0..300 {
                    let id = ListenerId::next();
                    let addr = if i % 3 == 0 {
                        "/ip4/0.0.0.0/tcp/0"
                    } else {
                        "/ip4/127.0.0.1/tcp/0"
                    };
                    a.lock().unwrap().listen_on(id, ma(addr)).unwrap();
                    tokio::task::yield_now().await;
                    assert!(a.lock().unwrap().remove_listener(id));
                }
            })
        };
        let dialers: Vec<_> = (0..32)
            .map(|_| {
                let a = a.clone();
                tokio::spawn(async move {
                    let mut ok = 0;
                    for _ in 0..50 {
                        let dial = a
                            .lock()
                            .unwrap()
                            .dial(to_multiaddr(b_addr), opts(PortUse::Reuse))
                            .unwrap();
                        let mut stream = within("dial", dial).await.expect("dial");
                        stream.write_all(b"x").await.unwrap();
                        let mut byte = [0];
                        within("echo", stream.read_exact(&mut byte)).await.unwrap();
                        ok += 1;
                    }
                    ok
                })
            })
            .collect();
        let started = Instant::now();
        let dials: usize = within("parallel dials", join_all(dialers))
            .await
            .into_iter()
            .map(|r| r.unwrap())
            .sum();
        within("listener churn", churn).await.unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        within("poller", poller).await.unwrap();
        assert_eq!(dials, 32 * 50);
        // No stale entry: every listener removed, every connection gone.
        let deadline = Instant::now() + TIMEOUT;
        while (
            table.listen_addrs().len(),
            table.dialed_connections(),
            table.accepted_connections(),
            table.closing_connections(),
        ) != (0, 0, 0, 0)
        {
            assert!(Instant::now() < deadline, "stale entries: {table:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        println!(
            "resources: {dials} dials from 32 tasks and 300 listeners added and removed on 4 \
             workers in {:?}; table empty afterwards",
            started.elapsed()
        );
    });
}
