//! What each row runs: the dialing, transfer and accept workloads, per implementation, and the
//! two measurements of this crate alone (source choice, system-call floor). An implementation
//! that dials in another process (go-libp2p) takes each of its turns there as a whole.

use std::{
    net::SocketAddr,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use futures::future::join_all;
use libp2p_reuseport::__bench::Selection;
use tokio::io::AsyncReadExt as _;

use crate::{
    impls::{Acceptor, Dialer, IMPLS, Impl, N, order},
    samples::Samples,
    servers::{Close, echo_server, raw_listener},
};

/// Dials `server`, records the dial, echoes one byte and drops the connection (the client
/// closes first).
async fn dial_echo_drop(dialer: &mut Dialer, server: SocketAddr, samples: &mut Samples) {
    let started = Instant::now();
    match dialer.dial(server).await {
        Ok(mut conn) => {
            samples.note(dialer, &conn, Some(started.elapsed()));
            if conn.echo().await.is_err() {
                samples.failed += 1;
            }
        }
        Err(_) => samples.failed += 1,
    }
}

/// Sequential dial + one-byte echo, `per_round` dials per implementation per round.
pub(crate) async fn sequential(close: Close, rounds: usize, per_round: usize) -> [Samples; N] {
    let (server, _) = echo_server(close).await;
    let mut dialers = IMPLS.map(Dialer::new);
    let mut samples: [Samples; N] = Default::default();
    for round in 0..rounds {
        for i in order(round) {
            let (dialer, samples) = (&mut dialers[i], &mut samples[i]);
            if let Some(turn) = dialer.remote_sequential(server, per_round, close).await {
                samples.absorb(turn);
                continue;
            }
            for _ in 0..per_round {
                let started = Instant::now();
                let conn = dialer.dial(server).await;
                let took = started.elapsed();
                let Ok(mut conn) = conn else {
                    samples.failed += 1;
                    continue;
                };
                samples.note(dialer, &conn, Some(took));
                let done = async {
                    conn.echo().await?;
                    if let Close::ServerFirst = close {
                        conn.until_eof().await?;
                    }
                    Ok::<_, std::io::Error>(())
                };
                if done.await.is_err() {
                    samples.failed += 1;
                }
                drop(conn);
                samples.cycle_times.push(started.elapsed());
            }
        }
    }
    samples
}

/// `dials` redials per implementation, one implementation after the other, each against its
/// own echo server that keeps the old connection `hold` after the client closed. The samples
/// and, per implementation, how many of the server's connections were reset.
pub(crate) async fn redial_while_held(dials: usize, hold: Duration) -> ([Samples; N], [f64; N]) {
    let mut samples: [Samples; N] = Default::default();
    let mut resets = [0.0; N];
    for (i, which) in IMPLS.into_iter().enumerate() {
        let (server, reset_count) = echo_server(Close::Hold(hold)).await;
        let mut dialer = Dialer::new(which);
        match dialer
            .remote_sequential(server, dials, Close::ClientFirst)
            .await
        {
            Some(turn) => samples[i] = turn,
            None => {
                for _ in 0..dials {
                    dial_echo_drop(&mut dialer, server, &mut samples[i]).await;
                }
            }
        }
        tokio::time::sleep(hold + Duration::from_millis(200)).await;
        resets[i] = reset_count.load(Ordering::Relaxed) as f64;
    }
    (samples, resets)
}

/// 200 concurrent dials: to one listener, or each to its own listener. Per implementation the
/// samples summed over rounds and the wall time of each round in ms.
pub(crate) async fn concurrent(listeners: usize, rounds: usize) -> [(Samples, Vec<f64>); N] {
    let mut servers = Vec::new();
    for _ in 0..listeners {
        servers.push(echo_server(Close::ClientFirst).await.0);
    }
    let mut results: [(Samples, Vec<f64>); N] = Default::default();
    for round in 0..rounds {
        for i in order(round) {
            let mut dialer = Dialer::new(IMPLS[i]);
            if let Some((turn, wall)) = dialer.remote_concurrent(200, &servers).await {
                results[i].0.absorb(turn);
                results[i].1.push(wall);
                continue;
            }
            let started = Instant::now();
            let futures: Vec<_> = (0..200)
                .map(|n| dialer.start_dial(servers[n % servers.len()]))
                .collect();
            let conns = join_all(futures).await;
            let wall = started.elapsed().as_secs_f64() * 1e3;
            let (samples, walls) = &mut results[i];
            walls.push(wall);
            for conn in conns {
                match conn {
                    Ok(conn) => samples.note(&dialer, &conn, None),
                    Err(_) => samples.failed += 1,
                }
            }
        }
    }
    results
}

/// `total` client-first dial/echo/close cycles per implementation in 10 rounds, with the order
/// rotating. The samples and the summed wall time per implementation.
pub(crate) async fn redials(total: usize) -> ([Samples; N], [Duration; N]) {
    let (server, _) = echo_server(Close::ClientFirst).await;
    let mut samples: [Samples; N] = Default::default();
    let mut walls = [Duration::ZERO; N];
    let mut dialers = IMPLS.map(Dialer::new);
    for round in 0..10 {
        for i in order(round) {
            let dialer = &mut dialers[i];
            let started = Instant::now();
            match dialer
                .remote_sequential(server, total / 10, Close::ClientFirst)
                .await
            {
                Some(turn) => samples[i].absorb(turn),
                None => {
                    for _ in 0..total / 10 {
                        dial_echo_drop(dialer, server, &mut samples[i]).await;
                    }
                }
            }
            walls[i] += started.elapsed();
        }
    }
    (samples, walls)
}

/// One connection, `total` bytes in 64 KiB writes; MiB/s. NaN for an implementation whose
/// connections are not in this process.
pub(crate) async fn throughput(which: Impl, total: usize) -> f64 {
    if !which.in_process() {
        return f64::NAN;
    }
    let listener = raw_listener();
    let addr = listener.local_addr().expect("addr");
    let sink = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accept");
        let mut buf = vec![0; 256 * 1024];
        let mut got = 0;
        while got < total {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
        got
    });
    let mut dialer = Dialer::new(which);
    let mut conn = dialer.dial(addr).await.expect("dial");
    let chunk = vec![7u8; 64 * 1024];
    let started = Instant::now();
    let mut sent = 0;
    while sent < total {
        conn.write(&chunk).await.expect("write");
        sent += chunk.len();
    }
    let got = sink.await.expect("sink");
    assert_eq!(got, total);
    total as f64 / (1024.0 * 1024.0) / started.elapsed().as_secs_f64()
}

/// Connections per second one listener accepts from 2 dialing tasks (raw tokio connects). NaN
/// for an implementation without a listener in this process.
pub(crate) async fn accept_rate(which: Impl, connections: usize) -> f64 {
    let Some((mut acceptor, addr)) = Acceptor::new(which) else {
        return f64::NAN;
    };
    let dialers: Vec<_> = (0..2)
        .map(|_| {
            tokio::spawn(async move {
                for _ in 0..connections / 2 {
                    if let Ok(s) = tokio::net::TcpStream::connect(addr).await {
                        drop(s);
                    }
                }
            })
        })
        .collect();
    let started = Instant::now();
    let mut accepted = 0;
    while accepted < connections {
        accepted += usize::from(acceptor.accept().await);
    }
    let rate = accepted as f64 / started.elapsed().as_secs_f64();
    for dialer in dialers {
        let _ = dialer.await;
    }
    rate
}

/// This crate's choice of a source for a dial to a routed destination, in a table of
/// `addresses` listeners on distinct IPs of which the kernel routes from the last registered:
/// the best of 5 runs of `decisions` choices (each choosing, reserving and releasing the pair),
/// in ns per decision. No sockets.
pub(crate) fn source_choice(addresses: usize, decisions: usize) -> f64 {
    let remote: SocketAddr = "203.0.113.9:4001".parse().expect("valid");
    let (selection, source) = Selection::with_listeners(addresses);
    assert!(selection.decide(remote, source).is_some());
    for _ in 0..decisions / 10 {
        std::hint::black_box(selection.decide(remote, source));
    }
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let started = Instant::now();
        for _ in 0..decisions {
            std::hint::black_box(selection.decide(std::hint::black_box(remote), source));
        }
        best = best.min(started.elapsed().as_secs_f64() * 1e9 / decisions as f64);
    }
    best
}

/// What leaving from a listening port costs in system calls alone: a socket created and closed,
/// versus one that also sets SO_REUSEPORT and binds a listener's address. (plain, reusing) in us.
pub(crate) fn bind_floor(n: usize) -> (f64, f64) {
    use socket2::{Domain, Protocol as SockProtocol, Socket, Type};
    let listener =
        Socket::new(Domain::IPV4, Type::STREAM, Some(SockProtocol::TCP)).expect("socket");
    listener.set_reuse_port(true).expect("SO_REUSEPORT");
    listener
        .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .expect("bind");
    listener.listen(128).expect("listen");
    let addr = listener.local_addr().expect("addr");
    let (mut plain, mut reusing) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..5 {
        let started = Instant::now();
        for _ in 0..n {
            let socket =
                Socket::new(Domain::IPV4, Type::STREAM, Some(SockProtocol::TCP)).expect("socket");
            drop(socket);
        }
        plain = plain.min(started.elapsed().as_secs_f64() * 1e6 / n as f64);
        let started = Instant::now();
        for _ in 0..n {
            let socket =
                Socket::new(Domain::IPV4, Type::STREAM, Some(SockProtocol::TCP)).expect("socket");
            socket.set_reuse_port(true).expect("SO_REUSEPORT");
            socket.bind(&addr).expect("bind");
            drop(socket);
        }
        reusing = reusing.min(started.elapsed().as_secs_f64() * 1e6 / n as f64);
    }
    (plain, reusing)
}
