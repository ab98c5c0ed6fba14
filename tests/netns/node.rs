//! The node the scenarios run in a namespace: this crate's transport driven by commands on
//! standard input, reporting on standard output one `WORD key=value...` line per fact.
//!
//! Commands: `listen <multiaddr>`, `dial <ip:port> reuse|new|punch|peer [ms]` (`punch`: from a
//! listening port with the role overridden, as DCUtR's dial; `peer`: from a listening port, to
//! the address with `/p2p/<the peer>` appended, as the swarm dials), `relayed on|off` (an
//! [`Identify`] sees a relayed connection with the peer of `peer` dials open, or close),
//! `dialbg <ip:port> [ms]` (a
//! dial from a listening port that runs in the background), `source <ip:port>`,
//! `cycles <ip:port> <n>` (client-first dial/echo/close cycles), `quit`. A dial gives up after
//! `ms` milliseconds (10 s when not given), dropping its future as a swarm does with a dial it
//! no longer needs.
//! Reports: `LISTEN`, `NEWADDR`, `EXPIRED`, `INCOMING`, `DIALED`, `DIALFAIL`, `SOURCE`, `CYCLES`,
//! `ERROR`. Accepted connections echo what they read and close at end of stream.
//! `NODE_REFUSED_RETRY_MS` sets [`Config::rst_retry_window`], `NODE_GIVEN_UP_MS`
//! [`Config::given_up_dial_window`]; `NODE_LOG` (a tracing filter) writes the crate's log to
//! standard error.

use std::{
    future::poll_fn,
    net::SocketAddr,
    pin::Pin,
    time::{Duration, Instant},
};

use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::{
    PeerId, identify,
    identity::Keypair,
    swarm::{
        ConnectionId, NetworkBehaviour as _,
        behaviour::{ConnectionClosed, ConnectionEstablished, FromSwarm},
    },
};
use libp2p_core::ConnectedPoint;
use libp2p_core::{
    Endpoint, Multiaddr, Transport as _,
    multiaddr::Protocol,
    transport::{DialOpts, ListenerId, PortUse, TransportEvent},
};
use libp2p_reuseport::{Config, Identify, TcpStream, Transport};
use tokio::io::AsyncBufReadExt;

fn socket_addr(addr: &Multiaddr) -> String {
    let mut out = String::new();
    for protocol in addr.iter() {
        match protocol {
            Protocol::Ip4(ip) => out = ip.to_string(),
            Protocol::Ip6(ip) => out = format!("[{ip}]"),
            Protocol::Tcp(port) => out = format!("{out}:{port}"),
            _ => {}
        }
    }
    out
}

fn to_multiaddr(addr: SocketAddr) -> Multiaddr {
    Multiaddr::empty()
        .with(addr.ip().into())
        .with(Protocol::Tcp(addr.port()))
}

async fn dial(
    transport: &mut Transport,
    addr: Multiaddr,
    (role, port_use): (Endpoint, PortUse),
    limit: Duration,
) -> std::io::Result<TcpStream> {
    let opts = DialOpts { role, port_use };
    let future = transport
        .dial(addr, opts)
        .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
    tokio::time::timeout(limit, future)
        .await
        .unwrap_or_else(|_| Err(std::io::Error::other("dial timed out")))
}

/// A dial's time limit: `ms` milliseconds when given, else 10 s.
fn limit(ms: Option<&&str>) -> Duration {
    ms.map_or(Duration::from_secs(10), |ms| {
        Duration::from_millis(ms.parse().expect("milliseconds"))
    })
}

/// One client-first cycle: dial, send a byte, read the echo, drop. Returns (reused, dial time).
async fn cycle(transport: &mut Transport, remote: SocketAddr) -> std::io::Result<(bool, Duration)> {
    let started = Instant::now();
    let opts = (Endpoint::Dialer, PortUse::Reuse);
    let mut stream = dial(transport, to_multiaddr(remote), opts, limit(None)).await?;
    let took = started.elapsed();
    stream.write_all(b"x").await?;
    let mut byte = [0];
    tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut byte))
        .await
        .map_err(|_| std::io::Error::other("echo timed out"))??;
    Ok((stream.is_port_reused(), took))
}

fn report_dialed(remote: SocketAddr, stream: &TcpStream) {
    println!(
        "DIALED remote={remote} local={} origin={:?}",
        stream
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default(),
        stream.port_origin()
    );
}

async fn echo(mut stream: TcpStream) {
    let mut buf = [0; 1024];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 || stream.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
}

pub fn main() {
    // `NODE_LOG` (a tracing filter such as `libp2p_reuseport=debug`): the crate's log on
    // standard error, which the scenario reads as `stderr: ` lines.
    if let Ok(filter) = std::env::var("NODE_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .init();
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    let mut config = Config::new();
    // How long a refused dial from a listening port keeps trying (the default otherwise).
    if let Some(ms) = std::env::var("NODE_REFUSED_RETRY_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
    {
        config = config.rst_retry_window(Duration::from_millis(ms));
    }
    // How long a dial given up before it connected stays half-open (the default otherwise).
    if let Some(ms) = std::env::var("NODE_GIVEN_UP_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
    {
        config = config.given_up_dial_window(Duration::from_millis(ms));
    }
    let mut transport = Transport::new(config);
    // The peer of `peer` dials, and what a swarm's `Identify` would see of a relayed connection
    // with it (no relay runs: only the connection's events).
    let peer = PeerId::random();
    let key = Keypair::generate_ed25519();
    let mut identify = Identify::new(identify::Behaviour::new(identify::Config::new(
        "/node/1".into(),
        key.public(),
    )));
    let relay = PeerId::random();
    let circuit = ConnectedPoint::Dialer {
        address: format!("/ip4/192.0.2.1/tcp/4001/p2p/{relay}/p2p-circuit/p2p/{peer}")
            .parse()
            .expect("multiaddr"),
        role_override: Endpoint::Dialer,
        port_use: PortUse::Reuse,
    };
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut held = Vec::new();
    loop {
        let event = poll_fn(|cx| Pin::new(&mut transport).poll(cx));
        let line = tokio::select! {
            event = event => {
                match event {
                    TransportEvent::NewAddress { listen_addr, .. } => {
                        println!("NEWADDR addr={}", socket_addr(&listen_addr));
                    }
                    TransportEvent::AddressExpired { listen_addr, .. } => {
                        println!("EXPIRED addr={}", socket_addr(&listen_addr));
                    }
                    TransportEvent::Incoming { upgrade, local_addr, send_back_addr, .. } => {
                        println!(
                            "INCOMING local={} from={}",
                            socket_addr(&local_addr),
                            socket_addr(&send_back_addr)
                        );
                        if let Ok(stream) = upgrade.await {
                            tokio::spawn(echo(stream));
                        }
                    }
                    TransportEvent::ListenerError { error, .. } => println!("ERROR listener {error}"),
                    TransportEvent::ListenerClosed { .. } => println!("CLOSED"),
                }
                continue;
            }
            line = stdin.next_line() => match line {
                Ok(Some(line)) => line,
                _ => return,
            },
        };
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["listen", addr] => {
                let id = ListenerId::next();
                match transport.listen_on(id, addr.parse().expect("multiaddr")) {
                    Ok(()) => {
                        let bound = transport.reuse_table().listen_addrs();
                        let bound = bound.last().map(ToString::to_string).unwrap_or_default();
                        println!("LISTEN bound={bound}");
                    }
                    Err(e) => println!("ERROR listen {e:?}"),
                }
            }
            ["dial", remote, how, ms @ ..] => {
                let remote: SocketAddr = remote.parse().expect("ip:port");
                let opts = match *how {
                    "new" => (Endpoint::Dialer, PortUse::New),
                    // As DCUtR's dial on the side that leads a hole punch.
                    "punch" => (Endpoint::Listener, PortUse::Reuse),
                    _ => (Endpoint::Dialer, PortUse::Reuse),
                };
                let mut addr = to_multiaddr(remote);
                if *how == "peer" {
                    addr.push(Protocol::P2p(peer));
                }
                match dial(&mut transport, addr, opts, limit(ms.first())).await {
                    Ok(stream) => {
                        report_dialed(remote, &stream);
                        held.push(stream);
                    }
                    Err(e) => println!("DIALFAIL remote={remote} error={e}"),
                }
            }
            // A dial from a listening port that runs while the node goes on reading commands
            // and polling its listeners, as a swarm's dials do.
            ["dialbg", remote, ms @ ..] => {
                let remote: SocketAddr = remote.parse().expect("ip:port");
                let limit = limit(ms.first());
                let opts = DialOpts {
                    role: Endpoint::Dialer,
                    port_use: PortUse::Reuse,
                };
                match transport.dial(to_multiaddr(remote), opts) {
                    Ok(future) => {
                        tokio::spawn(async move {
                            match tokio::time::timeout(limit, future).await {
                                Ok(Ok(stream)) => {
                                    report_dialed(remote, &stream);
                                    // Keep the connection open while the node lives.
                                    std::future::pending::<()>().await;
                                    drop(stream);
                                }
                                Ok(Err(e)) => println!("DIALFAIL remote={remote} error={e}"),
                                Err(_) => println!("DIALFAIL remote={remote} error=timed out"),
                            }
                        });
                    }
                    Err(e) => println!("DIALFAIL remote={remote} error={e:?}"),
                }
            }
            ["source", remote] => {
                let remote: SocketAddr = remote.parse().expect("ip:port");
                match transport.reuse_table().source_for(remote) {
                    Ok(local) => println!("SOURCE remote={remote} local={local}"),
                    Err(fallback) => {
                        println!("SOURCE remote={remote} local=none reason={fallback:?}")
                    }
                }
            }
            ["cycles", remote, n] => {
                let remote: SocketAddr = remote.parse().expect("ip:port");
                let n: usize = n.parse().expect("count");
                let (mut reused, mut failed, mut times) = (0, 0, Vec::with_capacity(n));
                for _ in 0..n {
                    match cycle(&mut transport, remote).await {
                        Ok((was_reused, took)) => {
                            reused += usize::from(was_reused);
                            times.push(took);
                        }
                        Err(e) => {
                            failed += 1;
                            println!("ERROR cycle {e}");
                        }
                    }
                }
                times.sort();
                let p50 = times.get(times.len() / 2).copied().unwrap_or_default();
                let max = times.last().copied().unwrap_or_default();
                println!(
                    "CYCLES n={n} reused={reused} failed={failed} p50_us={} max_us={}",
                    p50.as_micros(),
                    max.as_micros()
                );
            }
            ["relayed", "on"] => {
                identify.on_swarm_event(FromSwarm::ConnectionEstablished(ConnectionEstablished {
                    peer_id: peer,
                    connection_id: ConnectionId::new_unchecked(1),
                    endpoint: &circuit,
                    failed_addresses: &[],
                    other_established: 0,
                }));
                println!("RELAYED open");
            }
            ["relayed", "off"] => {
                identify.on_swarm_event(FromSwarm::ConnectionClosed(ConnectionClosed {
                    peer_id: peer,
                    connection_id: ConnectionId::new_unchecked(1),
                    endpoint: &circuit,
                    cause: None,
                    remaining_established: 0,
                }));
                println!("RELAYED closed");
            }
            ["quit"] => return,
            _ => println!("ERROR unknown command {line}"),
        }
    }
}
