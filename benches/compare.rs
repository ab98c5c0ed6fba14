//! This crate side by side with libp2p-tcp 0.45, raw tokio and go-libp2p's reuseport transport
//! (`benches/go`, a child process), interleaved round by round so that drift of a shared machine
//! hits all of them alike.
//!
//! ```text
//! cargo bench --bench compare                  # the full run, about two minutes
//! cargo bench --bench compare -- --quick       # fewer rounds, for a smoke test
//! ```
//!
//! Prints a table with the ratios (ours / libp2p-tcp, ours / raw, ours / go-libp2p) and writes the same figures as
//! JSON to `target/bench-compare.json` (or the path in `BENCH_JSON`). Every dialer listens on its
//! own port and reuses it where it can (`PortUse::Reuse`); raw tokio dials from ephemeral ports
//! (`TcpStream::connect`, then `TCP_NODELAY`, as the transports set it). go-libp2p's column
//! needs Go on PATH (the program is built with `go build`); without it the column is empty and
//! the run says why.

use std::{
    fmt::Write as _,
    future::poll_fn,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use futures::{AsyncWriteExt as _, future::join_all};
use libp2p_core::{
    Endpoint, Multiaddr, Transport as _,
    multiaddr::Protocol,
    transport::{DialOpts, ListenerId, PortUse, TransportEvent},
};
use libp2p_reuseport::{Fallback, PortOrigin, bench_support::Selection};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::go::GoBench;

#[path = "compare/go.rs"]
mod go;

const IMPLS: [Impl; 4] = [Impl::Ours, Impl::Tcp, Impl::Raw, Impl::Go];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Impl {
    Ours,
    Tcp,
    Raw,
    /// go-libp2p's reuseport.Transport, dialing in the Go program.
    Go,
}

/// The order of the implementations in `round`: each goes first in turn.
fn order(round: usize) -> [usize; 4] {
    std::array::from_fn(|k| (round + k) % IMPLS.len())
}

fn ma(addr: SocketAddr) -> Multiaddr {
    Multiaddr::empty()
        .with(addr.ip().into())
        .with(Protocol::Tcp(addr.port()))
}

fn reuse() -> DialOpts {
    DialOpts {
        role: Endpoint::Dialer,
        port_use: PortUse::Reuse,
    }
}

/// Starts a libp2p-tcp listener on 127.0.0.1 and returns its address. libp2p-tcp registers a
/// specific address for reuse as it binds and queues the address as its first event.
fn tcp_listen(tcp: &mut libp2p_tcp::tokio::Transport) -> SocketAddr {
    let listen: Multiaddr = "/ip4/127.0.0.1/tcp/0".parse().expect("valid");
    tcp.listen_on(ListenerId::next(), listen).expect("listen");
    match futures::executor::block_on(poll_fn(|cx| Pin::new(&mut *tcp).poll(cx))) {
        TransportEvent::NewAddress { listen_addr, .. } => match listen_addr.iter().nth(1) {
            Some(Protocol::Tcp(port)) => SocketAddr::from(([127, 0, 0, 1], port)),
            _ => unreachable!("tcp address"),
        },
        _ => unreachable!("first event is the address"),
    }
}

/// A dialer of one implementation, with its own listener on 127.0.0.1.
struct Dialer {
    which: Impl,
    ours: libp2p_reuseport::Transport,
    tcp: libp2p_tcp::tokio::Transport,
    listen_port: u16,
}

impl Dialer {
    fn new(which: Impl) -> Self {
        let mut ours = libp2p_reuseport::Transport::default();
        let mut tcp = libp2p_tcp::tokio::Transport::new(libp2p_tcp::Config::new());
        let listen: Multiaddr = "/ip4/127.0.0.1/tcp/0".parse().expect("valid");
        let listen_port = match which {
            Impl::Ours => {
                ours.listen_on(ListenerId::next(), listen).expect("listen");
                ours.port_reuse().listen_addrs()[0].port()
            }
            Impl::Tcp => tcp_listen(&mut tcp).port(),
            Impl::Raw | Impl::Go => 0,
        };
        Self {
            which,
            ours,
            tcp,
            listen_port,
        }
    }

    /// Dials `remote`: the stream and whether it left from the listening port.
    async fn dial(&mut self, remote: SocketAddr) -> std::io::Result<Conn> {
        match self.which {
            Impl::Ours => {
                let stream = self
                    .ours
                    .dial(ma(remote), reuse())
                    .expect("dialable")
                    .await?;
                Ok(Conn::Ours(stream))
            }
            Impl::Tcp => {
                let stream = self
                    .tcp
                    .dial(ma(remote), reuse())
                    .expect("dialable")
                    .await?;
                Ok(Conn::Tcp(stream))
            }
            Impl::Raw => {
                let stream = tokio::net::TcpStream::connect(remote).await?;
                stream.set_nodelay(true)?;
                Ok(Conn::Raw(stream))
            }
            Impl::Go => Err(std::io::Error::other("go-libp2p dials in the Go program")),
        }
    }
}

enum Conn {
    Ours(libp2p_reuseport::TcpStream),
    Tcp(libp2p_tcp::tokio::TcpStream),
    Raw(tokio::net::TcpStream),
}

impl Conn {
    fn local_port(&self) -> u16 {
        let local = match self {
            Self::Ours(s) => s.local_addr(),
            Self::Tcp(s) => s.0.local_addr(),
            Self::Raw(s) => s.local_addr(),
        };
        local.map(|a| a.port()).unwrap_or(0)
    }

    fn origin(&self) -> Option<PortOrigin> {
        match self {
            Self::Ours(s) => Some(s.port_origin()),
            _ => None,
        }
    }

    async fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            Self::Ours(s) => s.write_all(data).await,
            Self::Tcp(s) => s.write_all(data).await,
            Self::Raw(s) => tokio::io::AsyncWriteExt::write_all(s, data).await,
        }
    }

    async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Self::Ours(s) => futures::AsyncReadExt::read(s, buf).await,
            Self::Tcp(s) => futures::AsyncReadExt::read(s, buf).await,
            Self::Raw(s) => tokio::io::AsyncReadExt::read(s, buf).await,
        }
    }

    /// Sends one byte and reads the echo.
    async fn echo(&mut self) -> std::io::Result<()> {
        self.write(b"x").await?;
        let mut byte = [0];
        match self.read(&mut byte).await? {
            1 => Ok(()),
            _ => Err(std::io::ErrorKind::UnexpectedEof.into()),
        }
    }

    /// Reads until the remote closes.
    async fn until_eof(&mut self) -> std::io::Result<()> {
        let mut buf = [0; 64];
        while self.read(&mut buf).await? > 0 {}
        Ok(())
    }
}

/// A tokio listener on 127.0.0.1 with the transports' backlog of 1024. (`TcpListener::bind`
/// uses 128, which drops SYNs of 200 concurrent dials: a 1 s retransmit for some of them.)
fn raw_listener() -> tokio::net::TcpListener {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind(([127, 0, 0, 1], 0).into()).expect("bind");
    socket.listen(1024).expect("listen")
}

/// How the echo server ends a connection.
#[derive(Clone, Copy)]
enum Close {
    /// Echo, then close at once.
    ServerFirst,
    /// Echo, wait for the client's FIN, then close.
    ClientFirst,
    /// Echo, wait for the client's FIN, keep the connection this long, then count it as reset if
    /// it was.
    Hold(Duration),
}

/// A raw tokio echo server; returns its address and the count of connections found reset.
async fn echo_server(close: Close) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = raw_listener();
    let addr = listener.local_addr().expect("addr");
    let resets = Arc::new(AtomicUsize::new(0));
    let counter = resets.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut byte = [0];
                if stream.read_exact(&mut byte).await.is_err()
                    || stream.write_all(&byte).await.is_err()
                {
                    return;
                }
                match close {
                    Close::ServerFirst => {}
                    Close::ClientFirst => {
                        let mut rest = [0; 64];
                        while matches!(stream.read(&mut rest).await, Ok(n) if n > 0) {}
                    }
                    Close::Hold(hold) => {
                        let mut rest = [0; 64];
                        while matches!(stream.read(&mut rest).await, Ok(n) if n > 0) {}
                        tokio::time::sleep(hold).await;
                        let reset = matches!(stream.take_error(), Ok(Some(_)))
                            || matches!(stream.try_read(&mut rest), Err(e) if e.kind() != std::io::ErrorKind::WouldBlock);
                        if reset {
                            counter.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            });
        }
    });
    (addr, resets)
}

/// Samples of one implementation in one row.
#[derive(Default)]
struct Samples {
    /// Successful dials.
    dials: usize,
    times: Vec<Duration>,
    /// Dial times of the dials that left from the listening port, and of the others.
    reused_times: Vec<Duration>,
    other_times: Vec<Duration>,
    /// Whole cycles: dial, echo, close (rows 1 and 2).
    cycle_times: Vec<Duration>,
    reused: usize,
    failed: usize,
    /// Dials that fell back after a failed system call (ours: `Fallback::Refused`; libp2p-tcp:
    /// every fallback, since it falls back only after `connect` failed; go-libp2p: counted in
    /// Go as each `connect` or `bind` fails).
    failed_syscalls: usize,
    busy: usize,
}

impl Samples {
    /// Adds the samples of another round.
    fn absorb(&mut self, other: Self) {
        self.dials += other.dials;
        self.times.extend(other.times);
        self.reused_times.extend(other.reused_times);
        self.other_times.extend(other.other_times);
        self.cycle_times.extend(other.cycle_times);
        self.reused += other.reused;
        self.failed += other.failed;
        self.failed_syscalls += other.failed_syscalls;
        self.busy += other.busy;
    }

    fn sorted(&mut self) -> &[Duration] {
        self.times.sort();
        &self.times
    }
    fn pct(&mut self, p: f64) -> f64 {
        let times = self.sorted();
        if times.is_empty() {
            return f64::NAN;
        }
        let i = ((times.len() - 1) as f64 * p).round() as usize;
        times[i].as_secs_f64() * 1e6
    }
    fn max(&mut self) -> f64 {
        self.sorted()
            .last()
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1e6)
    }
    /// Records a successful dial and, if timed, how long it took.
    fn note(&mut self, dialer: &Dialer, conn: &Conn, took: Option<Duration>) {
        let reused = conn.local_port() == dialer.listen_port;
        self.dials += 1;
        self.reused += usize::from(reused);
        if let Some(took) = took {
            self.times.push(took);
            match reused {
                true => self.reused_times.push(took),
                false => self.other_times.push(took),
            }
        }
        match (dialer.which, conn.origin()) {
            (_, Some(PortOrigin::Ephemeral(Fallback::Refused(_)))) => self.failed_syscalls += 1,
            (_, Some(PortOrigin::Ephemeral(Fallback::Busy))) => self.busy += 1,
            (Impl::Tcp, _) if !reused => self.failed_syscalls += 1,
            _ => {}
        }
    }
}

/// One figure of the table.
struct Row {
    name: String,
    metric: String,
    values: [f64; 4],
    /// Whether the ratios mean anything for this metric.
    ratios: bool,
}

struct Report {
    rows: Vec<Row>,
    /// The Go program did not run: its column stays empty.
    go_missing: bool,
}

impl Report {
    fn add(&mut self, name: &str, metric: &str, mut values: [f64; 4], ratios: bool) {
        if self.go_missing {
            values[3] = f64::NAN;
        }
        self.rows.push(Row {
            name: name.into(),
            metric: metric.into(),
            values,
            ratios,
        });
    }

    /// The outcome rows every dialing row has: reused share, failures, failed system calls, and
    /// (this crate only) pairs passed over because they were taken or closing.
    fn outcomes(&mut self, name: &str, samples: &[Samples; 4]) {
        let reused = samples
            .each_ref()
            .map(|s| 100.0 * s.reused as f64 / s.dials.max(1) as f64);
        self.add(name, "reused %", reused, false);
        self.add(
            name,
            "failures",
            samples.each_ref().map(|s| s.failed as f64),
            false,
        );
        let syscalls = samples.each_ref().map(|s| s.failed_syscalls as f64);
        self.add(name, "failed connect syscalls", syscalls, false);
        let busy = samples.each_ref().map(|s| s.busy as f64);
        self.add(name, "pairs passed over (no syscall)", busy, false);
    }

    fn print(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "| row | metric | this crate | libp2p-tcp | raw tokio | go-libp2p | ours/libp2p-tcp | ours/raw | ours/go-libp2p |"
        );
        let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|---:|");
        for row in &self.rows {
            let v = |x: f64| {
                if x.is_nan() {
                    "-".to_string()
                } else {
                    format!("{x:.1}")
                }
            };
            let ratio = |a: f64, b: f64| {
                if row.ratios && b > 0.0 && !a.is_nan() && !b.is_nan() {
                    format!("{:.2}", a / b)
                } else {
                    "-".into()
                }
            };
            let [ours, tcp, raw, go] = row.values;
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                row.name,
                row.metric,
                v(ours),
                v(tcp),
                v(raw),
                v(go),
                ratio(ours, tcp),
                ratio(ours, raw),
                ratio(ours, go)
            );
        }
        out
    }

    fn json(&self, machine: &str) -> String {
        let num = |x: f64| {
            if x.is_finite() {
                format!("{x:.3}")
            } else {
                "null".into()
            }
        };
        let rows: Vec<String> = self
            .rows
            .iter()
            .map(|r| {
                format!(
                    "    {{\"row\": {:?}, \"metric\": {:?}, \"ours\": {}, \"libp2p_tcp\": {}, \"raw\": {}, \"go_libp2p\": {}}}",
                    r.name,
                    r.metric,
                    num(r.values[0]),
                    num(r.values[1]),
                    num(r.values[2]),
                    num(r.values[3])
                )
            })
            .collect();
        format!(
            "{{\n  \"machine\": {machine:?},\n  \"rows\": [\n{}\n  ]\n}}\n",
            rows.join(",\n")
        )
    }
}

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
async fn sequential(
    close: Close,
    rounds: usize,
    per_round: usize,
    go: &mut Option<GoBench>,
) -> [Samples; 4] {
    let (server, _) = echo_server(close).await;
    let mut dialers = IMPLS.map(Dialer::new);
    let mut go_dialer = match go {
        Some(go) => Some(go.dialer().await),
        None => None,
    };
    let mut samples: [Samples; 4] = Default::default();
    for round in 0..rounds {
        for i in order(round) {
            let (dialer, samples) = (&mut dialers[i], &mut samples[i]);
            if dialer.which == Impl::Go {
                if let (Some(go), Some(d)) = (go.as_mut(), go_dialer.as_ref()) {
                    let server_first = matches!(close, Close::ServerFirst);
                    samples.absorb(go.sequential(d, server, per_round, server_first).await);
                }
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
    if let (Some(go), Some(d)) = (go.as_mut(), go_dialer.take()) {
        go.close(d).await;
    }
    samples
}

/// 200 concurrent dials: to one listener, or each to its own listener. (failures, reused, busy,
/// failed syscalls, wall time in ms) per implementation, summed over rounds (wall: median).
async fn concurrent(
    listeners: usize,
    rounds: usize,
    go: &mut Option<GoBench>,
) -> [(Samples, Vec<f64>); 4] {
    let mut servers = Vec::new();
    for _ in 0..listeners {
        servers.push(echo_server(Close::ClientFirst).await.0);
    }
    let mut results: [(Samples, Vec<f64>); 4] = Default::default();
    for round in 0..rounds {
        for i in order(round) {
            let which = IMPLS[i];
            if which == Impl::Go {
                if let Some(go) = go.as_mut() {
                    let (samples, wall) = go.concurrent(200, &servers).await;
                    results[i].0.absorb(samples);
                    results[i].1.push(wall);
                }
                continue;
            }
            let mut dialer = Dialer::new(which);
            let started = Instant::now();
            let mut futures = Vec::new();
            for n in 0..200 {
                let remote = servers[n % servers.len()];
                futures.push(match which {
                    Impl::Ours => {
                        let f = dialer.ours.dial(ma(remote), reuse()).expect("dialable");
                        Box::pin(async move { f.await.map(Conn::Ours) })
                            as Pin<Box<dyn Future<Output = std::io::Result<Conn>>>>
                    }
                    Impl::Tcp => {
                        let f = dialer.tcp.dial(ma(remote), reuse()).expect("dialable");
                        Box::pin(async move { f.await.map(Conn::Tcp) })
                    }
                    Impl::Raw => Box::pin(async move {
                        let s = tokio::net::TcpStream::connect(remote).await?;
                        s.set_nodelay(true)?;
                        Ok(Conn::Raw(s))
                    }),
                    Impl::Go => unreachable!("go-libp2p dials in the Go program"),
                });
            }
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

fn p50(times: &mut [Duration]) -> f64 {
    times.sort();
    times
        .get(times.len() / 2)
        .map_or(f64::NAN, |d| d.as_secs_f64() * 1e6)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// One connection, `total` bytes in 64 KiB writes; MiB/s.
async fn throughput(which: Impl, total: usize) -> f64 {
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

/// Connections per second one listener accepts from 2 dialing tasks (raw tokio connects).
async fn accept_rate(which: Impl, connections: usize) -> f64 {
    let listen: Multiaddr = "/ip4/127.0.0.1/tcp/0".parse().expect("valid");
    let mut ours = libp2p_reuseport::Transport::default();
    let mut tcp = libp2p_tcp::tokio::Transport::new(libp2p_tcp::Config::new());
    let raw = raw_listener();
    let addr = match which {
        Impl::Ours => {
            ours.listen_on(ListenerId::next(), listen).expect("listen");
            ours.port_reuse().listen_addrs()[0]
        }
        Impl::Tcp => tcp_listen(&mut tcp),
        Impl::Raw => raw.local_addr().expect("addr"),
        Impl::Go => unreachable!("go-libp2p is not measured here"),
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
        let got = match which {
            Impl::Ours => matches!(
                poll_fn(|cx| Pin::new(&mut ours).poll(cx)).await,
                TransportEvent::Incoming { .. }
            ),
            Impl::Tcp => matches!(
                poll_fn(|cx| Pin::new(&mut tcp).poll(cx)).await,
                TransportEvent::Incoming { .. }
            ),
            Impl::Raw => raw.accept().await.is_ok(),
            Impl::Go => unreachable!("go-libp2p is not measured here"),
        };
        accepted += usize::from(got);
    }
    let rate = accepted as f64 / started.elapsed().as_secs_f64();
    for dialer in dialers {
        let _ = dialer.await;
    }
    rate
}

/// What leaving from a listening port costs in system calls alone: a socket created and closed,
/// versus one that also sets SO_REUSEPORT and binds a listener's address. (plain, reusing) in us.
fn bind_floor(n: usize) -> (f64, f64) {
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

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cpu}, {cores} cores, Linux {kernel}")
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let scale = |full: usize, small: usize| if quick { small } else { full };
    let rt = current_thread();
    let mut go = match GoBench::start() {
        Ok(go) => Some(go),
        Err(reason) => {
            eprintln!("go-libp2p column NOT MEASURED: {reason}");
            None
        }
    };
    let mut report = Report {
        rows: Vec::new(),
        go_missing: go.is_none(),
    };

    eprintln!("row 1: sequential dials, server closes first");
    let mut s = rt.block_on(sequential(
        Close::ServerFirst,
        scale(10, 2),
        scale(300, 50),
        &mut go,
    ));
    report.add(
        "1 seq dial+echo, server closes first",
        "p50 us",
        s.each_mut().map(|s| s.pct(0.5)),
        true,
    );
    report.add(
        "1 seq dial+echo, server closes first",
        "cycle p50 us (dial+echo+close)",
        s.each_mut().map(|s| p50(&mut s.cycle_times)),
        true,
    );
    report.add(
        "1 seq dial+echo, server closes first",
        "p99 us",
        s.each_mut().map(|s| s.pct(0.99)),
        true,
    );

    eprintln!("row 2: sequential dials, client closes first");
    let mut s = rt.block_on(sequential(
        Close::ClientFirst,
        scale(10, 2),
        scale(300, 50),
        &mut go,
    ));
    let row = "2 seq dial+echo, client closes first";
    report.add(row, "p50 us", s.each_mut().map(|s| s.pct(0.5)), true);
    report.add(row, "p99 us", s.each_mut().map(|s| s.pct(0.99)), true);
    report.add(row, "max us", s.each_mut().map(|s| s.max()), true);
    report.add(
        row,
        "cycle p50 us (dial+echo+close)",
        s.each_mut().map(|s| p50(&mut s.cycle_times)),
        true,
    );
    report.add(
        row,
        "p50 us, reused dials",
        s.each_mut().map(|s| p50(&mut s.reused_times)),
        false,
    );
    report.add(
        row,
        "p50 us, other dials",
        s.each_mut().map(|s| p50(&mut s.other_times)),
        false,
    );
    report.outcomes(row, &s);

    eprintln!("row 3: redials while the remote holds the old connection 300 ms");
    let (mut s, resets) = rt.block_on(async {
        let mut samples: [Samples; 4] = Default::default();
        let mut resets = [f64::NAN; 4];
        for (i, which) in IMPLS.into_iter().enumerate() {
            let (server, reset_count) = echo_server(Close::Hold(Duration::from_millis(300))).await;
            if which == Impl::Go {
                let Some(go) = go.as_mut() else { continue };
                let dialer = go.dialer().await;
                samples[i] = go.sequential(&dialer, server, scale(100, 20), false).await;
                go.close(dialer).await;
            } else {
                let mut dialer = Dialer::new(which);
                for _ in 0..scale(100, 20) {
                    dial_echo_drop(&mut dialer, server, &mut samples[i]).await;
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            resets[i] = reset_count.load(Ordering::Relaxed) as f64;
        }
        (samples, resets)
    });
    let row = "3 redial, remote holds old conn 300 ms";
    report.add(row, "dial p50 us", s.each_mut().map(|s| s.pct(0.5)), true);
    report.add(row, "dial max us", s.each_mut().map(|s| s.max()), true);
    report.add(row, "remote conns reset", resets, false);
    report.outcomes(row, &s);

    for (listeners, label) in [
        (1, "4a 200 concurrent dials, 1 listener"),
        (200, "4b 200 concurrent dials, 200 listeners"),
    ] {
        eprintln!("row {label}");
        let mut results = rt.block_on(concurrent(listeners, scale(5, 2), &mut go));
        report.add(
            label,
            "wall ms (median)",
            results.each_mut().map(|(_, w)| median(w)),
            true,
        );
        let samples = results.map(|(samples, _)| samples);
        report.add(
            label,
            "reused (all rounds)",
            samples.each_ref().map(|s| s.reused as f64),
            false,
        );
        report.outcomes(label, &samples);
    }

    eprintln!("row 5: client-first redials on a 2-worker runtime");
    let mt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (mut s, walls) = mt.block_on(async {
        let (server, _) = echo_server(Close::ClientFirst).await;
        let mut samples: [Samples; 4] = Default::default();
        let mut walls = [Duration::ZERO; 4];
        let mut dialers = IMPLS.map(Dialer::new);
        let go_dialer = match go.as_mut() {
            Some(go) => Some(go.dialer().await),
            None => None,
        };
        let total = scale(5000, 500);
        for round in 0..10 {
            for i in order(round) {
                let dialer = &mut dialers[i];
                let started = Instant::now();
                if dialer.which == Impl::Go {
                    let (Some(go), Some(d)) = (go.as_mut(), go_dialer.as_ref()) else {
                        continue;
                    };
                    samples[i].absorb(go.sequential(d, server, total / 10, false).await);
                } else {
                    for _ in 0..total / 10 {
                        dial_echo_drop(dialer, server, &mut samples[i]).await;
                    }
                }
                walls[i] += started.elapsed();
            }
        }
        (samples, walls)
    });
    let row = "5 client-first redials, 2 workers";
    report.add(
        row,
        "dials > 100 ms",
        s.each_ref().map(|s| {
            s.times
                .iter()
                .filter(|t| **t > Duration::from_millis(100))
                .count() as f64
        }),
        false,
    );
    report.add(row, "p50 us", s.each_mut().map(|s| s.pct(0.5)), true);
    report.add(row, "max us", s.each_mut().map(|s| s.max()), true);
    report.add(
        row,
        "total wall ms",
        walls.map(|w| w.as_secs_f64() * 1e3),
        true,
    );
    report.outcomes(row, &s);

    eprintln!("row 6: throughput");
    let total = scale(256, 64) * 1024 * 1024;
    let mut mibs: [Vec<f64>; 4] = Default::default();
    for round in 0..scale(15, 2) {
        for i in order(round).into_iter().filter(|&i| IMPLS[i] != Impl::Go) {
            mibs[i].push(rt.block_on(throughput(IMPLS[i], total)));
        }
    }
    report.add(
        "6 one connection, 64 KiB writes",
        "MiB/s (median)",
        mibs.each_mut().map(|m| median(m)),
        true,
    );

    eprintln!("row 7: accept rate");
    let mut rates: [Vec<f64>; 4] = Default::default();
    for round in 0..scale(7, 2) {
        for i in order(round).into_iter().filter(|&i| IMPLS[i] != Impl::Go) {
            rates[i].push(rt.block_on(accept_rate(IMPLS[i], scale(2000, 400))));
        }
    }
    report.add(
        "7 accept, 2 dialing tasks",
        "conns/s (median)",
        rates.each_mut().map(|r| median(r)),
        true,
    );

    eprintln!("row 8: source selection");
    let remote: SocketAddr = "203.0.113.9:4001".parse().expect("valid");
    let decisions = scale(1_000_000, 100_000);
    let mut per_size = Vec::new();
    for n in [1, 100, 10_000] {
        let (selection, source) = Selection::with_listeners(n);
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
        per_size.push(best);
        report.add(
            &format!("8 source choice, {n} addresses"),
            "ns/decision",
            [best, f64::NAN, f64::NAN, f64::NAN],
            false,
        );
    }
    report.add(
        "8 source choice",
        "10,000 / 1 addresses",
        [per_size[2] / per_size[0], f64::NAN, f64::NAN, f64::NAN],
        false,
    );

    eprintln!("row 9: the system calls a reusing dial adds");
    let (plain, reusing) = bind_floor(scale(20_000, 2_000));
    report.add(
        "9 socket+close, plain vs +SO_REUSEPORT+bind to a listening port",
        "us per socket",
        [reusing, f64::NAN, plain, f64::NAN],
        true,
    );

    let table = report.print();
    let machine = machine();
    println!("machine: {machine}\n");
    println!("{table}");
    if report.go_missing {
        println!("go-libp2p column NOT MEASURED: Go was not found or the Go program did not build");
    }
    let path = std::env::var("BENCH_JSON").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/target/bench-compare.json").to_string()
    });
    match std::fs::write(&path, report.json(&machine)) {
        Ok(()) => println!("figures written to {path}"),
        Err(e) => println!("could not write {path}: {e}"),
    }
}
