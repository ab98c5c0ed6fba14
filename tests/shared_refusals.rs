//! A `SharedListeners` socket under bad, slow and many clients: unknown first bytes, kinds
//! nobody listens for and early closes are refused and counted, a silent client is dropped at
//! the deadline, a slow one holds up nobody, at most the configured number wait for their first
//! bytes, and 200 concurrent connections of both kinds all get through.

mod util;

use std::time::{Duration, Instant};

use libp2p_core::{
    Transport as _,
    transport::{ListenerId, PortUse, TransportEvent},
};
use libp2p_reuseport::{Config, SharedConfig, SharedStats};
use tokio::io::AsyncWriteExt as _;
use util::{shared::*, *};

#[tokio::test]
async fn garbage_unknown_kinds_and_early_closes_are_refused_and_counted() {
    // Under Wine a FIN is not reported while unread bytes wait (it learns of one from a
    // zero-byte peek: docs/platforms.md), so the half-closed client below is seen only at the
    // first-bytes deadline, and counted as timed out: a short deadline there.
    let deadline = Duration::from_millis(500);
    let config = if under_wine() {
        SharedConfig::new().first_bytes_timeout(deadline)
    } else {
        SharedConfig::new()
    };
    let (shared, mut tcp, mut ws) = set_with(config);
    let (_, addr) = listen_side(&mut tcp, "/ip4/127.0.0.1/tcp/0").await;
    listen_side(&mut ws, "/ip4/127.0.0.1/tcp/0").await;
    let mut expected = SharedStats::default();
    // First bytes, and the count they add to.
    type Case = (&'static [u8], fn(&mut SharedStats));
    let cases: [Case; 5] = [
        (b"hello\r\n", |s| s.unknown += 1),
        (b"\x00", |s| s.unknown += 1),
        (b"SSH-2.0-x\r\n", |s| s.unknown += 1),
        // TLS with no websocket_tls side on this socket.
        (TLS, |s| s.unclaimed += 1),
        // The start of multistream-select, then the client half-closes: no more is coming.
        (b"\x13", |s| {
            if under_wine() {
                s.timed_out += 1
            } else {
                s.failed += 1
            }
        }),
    ];
    for (first, count) in cases {
        let mut c = client(addr, first).await;
        if first == b"\x13" {
            c.shutdown().await.unwrap();
        }
        let driving_for = if under_wine() && first == b"\x13" {
            deadline * 2
        } else {
            Duration::from_millis(200)
        };
        let driving = tokio::spawn(async move {
            quiet(&mut tcp, driving_for).await;
            tcp
        });
        closed_by_server(&mut c).await;
        tcp = driving.await.unwrap();
        count(&mut expected);
        assert_eq!(shared.stats(), expected, "after {first:?}");
    }
    assert_eq!(expected.closed(), 5);
    quiet(&mut ws, Duration::from_millis(50)).await;
    println!("refused: {:?}", shared.stats());
}

#[tokio::test]
async fn a_silent_client_is_dropped_at_the_deadline() {
    let deadline = Duration::from_millis(400);
    let (shared, mut tcp, mut ws) = set_with(SharedConfig::new().first_bytes_timeout(deadline));
    let (_, addr) = listen_side(&mut tcp, "/ip4/127.0.0.1/tcp/0").await;
    listen_side(&mut ws, "/ip4/127.0.0.1/tcp/0").await;
    let started = Instant::now();
    let mut silent = client(addr, b"").await;
    let driving = tokio::spawn(async move {
        quiet(&mut tcp, deadline * 3).await;
        tcp
    });
    closed_by_server(&mut silent).await;
    let held = started.elapsed();
    driving.await.unwrap();
    assert!(
        held >= deadline,
        "dropped after {held:?}, before the deadline {deadline:?}"
    );
    let mut expected = SharedStats::default();
    expected.timed_out = 1;
    assert_eq!(shared.stats(), expected);
    println!("silent client dropped after {held:?} (deadline {deadline:?})");
}

#[tokio::test]
async fn a_slow_client_does_not_hold_up_the_others() {
    // A deadline far beyond the test's timeouts: only concurrency lets the second one through.
    let (shared, mut tcp, _ws) =
        set_with(SharedConfig::new().first_bytes_timeout(Duration::from_secs(600)));
    let (tcp_id, addr) = listen_side(&mut tcp, "/ip4/127.0.0.1/tcp/0").await;
    let _silent = client(addr, b"").await;
    let _m = client(addr, MULTISTREAM).await;
    let (id, mut stream, _, _) = incoming(&mut tcp).await;
    assert_eq!(id, tcp_id);
    reads(&mut stream, MULTISTREAM).await;
    assert_eq!(
        shared.stats(),
        stats(1, 0, 0),
        "the silent one is still waiting"
    );
}

#[tokio::test]
async fn at_most_the_configured_number_wait_for_first_bytes() {
    let config = SharedConfig::new()
        .first_bytes_timeout(Duration::from_secs(600))
        .first_bytes_concurrency(2);
    let (shared, mut tcp, _ws) = set_with(config);
    let (_, addr) = listen_side(&mut tcp, "/ip4/127.0.0.1/tcp/0").await;
    let mut silent = vec![client(addr, b"").await, client(addr, b"").await];
    // Both silent ones are accepted and wait; the third stays in the kernel's backlog.
    quiet(&mut tcp, Duration::from_millis(200)).await;
    let _m = client(addr, MULTISTREAM).await;
    quiet(&mut tcp, Duration::from_millis(500)).await;
    assert_eq!(
        shared.stats(),
        SharedStats::default(),
        "nothing classified while two wait"
    );
    // One silent client gives up: its place goes to the waiting connection.
    drop(silent.pop());
    let (_, mut stream, _, _) = incoming(&mut tcp).await;
    reads(&mut stream, MULTISTREAM).await;
    let mut expected = stats(1, 0, 0);
    expected.failed = 1;
    assert_eq!(shared.stats(), expected);
}

#[tokio::test]
async fn two_hundred_concurrent_connections_of_both_kinds() {
    use futures::{AsyncReadExt as _, AsyncWriteExt as _, future::join_all};

    let (shared, mut tcp, ws) = set(Config::new());
    let mut ws = libp2p_websocket::Config::new(ws);
    let (_, addr) = listen_side(&mut tcp, "/ip4/127.0.0.1/tcp/0").await;
    ws.listen_on(ListenerId::next(), ma("/ip4/127.0.0.1/tcp/0/ws"))
        .unwrap();
    match next(&mut ws).await {
        TransportEvent::NewAddress { listen_addr, .. } => {
            assert_eq!(
                listen_addr,
                ma(&format!("/ip4/127.0.0.1/tcp/{}/ws", addr.port()))
            )
        }
        other => panic!("expected NewAddress, got {other:?}"),
    }
    const EACH: usize = 100;
    // The server: every connection reads its client's 4-byte number and echoes it.
    let server = tokio::spawn(async move {
        let mut handlers = tokio::task::JoinSet::new();
        let (mut plain, mut websocket) = (0, 0);
        while plain + websocket < 2 * EACH {
            tokio::select! {
                event = next(&mut tcp) => if let TransportEvent::Incoming { upgrade, .. } = event {
                    plain += 1;
                    handlers.spawn(async move {
                        let mut s = upgrade.await.unwrap();
                        let mut buf = [0; 24];
                        s.read_exact(&mut buf).await.unwrap();
                        assert_eq!(&buf[..MULTISTREAM.len()], MULTISTREAM);
                        s.write_all(&buf[MULTISTREAM.len()..]).await.unwrap();
                        s.flush().await.unwrap();
                    });
                },
                event = next(&mut ws) => if let TransportEvent::Incoming { upgrade, .. } = event {
                    websocket += 1;
                    handlers.spawn(async move {
                        let mut s = upgrade.await.unwrap();
                        let mut buf = [0; 4];
                        s.read_exact(&mut buf).await.unwrap();
                        s.write_all(&buf).await.unwrap();
                        s.flush().await.unwrap();
                    });
                },
            }
        }
        while let Some(done) = handlers.join_next().await {
            done.unwrap();
        }
        (plain, websocket)
    });
    let mut plain_client = transport();
    let mut ws_client = libp2p_websocket::Config::new(transport());
    let ws_addr = ma(&format!("/ip4/127.0.0.1/tcp/{}/ws", addr.port()));
    let mut clients: Vec<futures::future::BoxFuture<'static, Vec<u8>>> = Vec::new();
    for n in 0..(2 * EACH) as u32 {
        if n % 2 == 0 {
            let dial = plain_client
                .dial(to_multiaddr(addr), opts(PortUse::New))
                .unwrap();
            clients.push(Box::pin(async move {
                let mut s = dial.await.unwrap();
                let mut first = MULTISTREAM.to_vec();
                first.extend(n.to_be_bytes());
                s.write_all(&first).await.unwrap();
                let mut echo = vec![0; 4];
                s.read_exact(&mut echo).await.unwrap();
                echo
            }));
        } else {
            let dial = ws_client.dial(ws_addr.clone(), opts(PortUse::New)).unwrap();
            clients.push(Box::pin(async move {
                let mut s = dial.await.unwrap();
                s.write_all(&n.to_be_bytes()).await.unwrap();
                s.flush().await.unwrap();
                let mut echo = vec![0; 4];
                s.read_exact(&mut echo).await.unwrap();
                echo
            }));
        }
    }
    let started = Instant::now();
    let echoes = within("200 connections", join_all(clients)).await;
    let (plain, websocket) = within("server", server).await.unwrap();
    for (n, echo) in echoes.iter().enumerate() {
        assert_eq!(
            echo,
            &(n as u32).to_be_bytes(),
            "client {n} got its own number back"
        );
    }
    assert_eq!((plain, websocket), (EACH, EACH));
    assert_eq!(shared.stats(), stats(EACH as u64, EACH as u64, 0));
    println!(
        "{} connections ({EACH} multistream, {EACH} websocket) in {:?}: {:?}",
        2 * EACH,
        started.elapsed(),
        shared.stats()
    );
}

// The metrics exist only with the feature; without it, say so instead of passing silently.
#[cfg(not(feature = "metrics"))]
#[test]
#[ignore = "needs the metrics feature: cargo test --features metrics"]
fn metrics_count_every_outcome() {}

// The Prometheus counters exist only with the `metrics` feature (prometheus-client is an
// optional dependency); `cargo test --features metrics` runs this, `.ci/run` included.
#[cfg(feature = "metrics")]
#[tokio::test]
async fn metrics_count_every_outcome() {
    use prometheus_client::{encoding::text::encode, registry::Registry};

    let (shared, mut tcp, mut ws) = set(Config::new());
    let mut registry = Registry::default();
    shared.register_metrics(&mut registry);
    let (_, addr) = listen_side(&mut tcp, "/ip4/127.0.0.1/tcp/0").await;
    listen_side(&mut ws, "/ip4/127.0.0.1/tcp/0").await;
    let _m = client(addr, MULTISTREAM).await;
    incoming(&mut tcp).await;
    let _h = client(addr, HTTP).await;
    incoming(&mut ws).await;
    let mut garbage = client(addr, b"hello").await;
    let driving = tokio::spawn(async move {
        quiet(&mut tcp, Duration::from_millis(200)).await;
    });
    closed_by_server(&mut garbage).await;
    driving.await.unwrap();

    let mut text = String::new();
    encode(&mut text, &registry).unwrap();
    let expected = [
        ("multistream", 1),
        ("http", 1),
        ("tls", 0),
        ("unknown", 1),
        ("timed_out", 0),
        ("unclaimed", 0),
        ("overflow", 0),
        ("failed", 0),
    ];
    for (outcome, value) in expected {
        let line =
            format!("libp2p_reuseport_shared_connections_total{{outcome=\"{outcome}\"}} {value}\n");
        assert!(text.contains(&line), "{line} in\n{text}");
    }
    assert!(
        text.contains("libp2p_reuseport_accepts_total 2\n"),
        "{text}"
    );
    assert!(
        text.contains("libp2p_reuseport_listen_addresses 1\n"),
        "{text}"
    );
}
