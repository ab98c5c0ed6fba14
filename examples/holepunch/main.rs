//! TCP hole punching with libp2p's DCUtR over this crate's transport.
//!
//! Three roles, usually on three hosts (`scripts/holepunch-demo.sh` builds them as Linux network
//! namespaces, two of them behind NATs):
//!
//! ```text
//! holepunch relay  --listen /ip4/203.0.113.10/tcp/4001
//! holepunch listen --relay /ip4/203.0.113.10/tcp/4001/p2p/<relay id>
//! holepunch dial   --relay /ip4/203.0.113.10/tcp/4001/p2p/<relay id> --peer <listener id>
//! ```
//!
//! `listen` and `dial` listen on `/ip4/0.0.0.0/tcp/4001` (or `--listen`), connect to the relay,
//! learn their public address from the relay's identify, and reserve a slot on it. `dial` then
//! opens a relayed circuit to `listen`; DCUtR makes both dial each other's public address at
//! the same time, and because both dials leave from port 4001 the NATs let them through. Each
//! step is printed. `dial` ends with a `RESULT` line and exits 0 when a direct connection carried
//! a ping, 1 otherwise.
//!
//! Options: `--seed N` derives the key from N (stable peer ids), `--no-reuse` turns port reuse
//! off (the negative control), `--timeout S` bounds the wait for a direct connection (default
//! 30 s), `--transport libp2p-tcp` runs the same node on rust-libp2p's own TCP transport
//! (`SwarmBuilder::with_tcp`, which reuses ports as it does by default) for comparison,
//! `--rst-retry-ms MS` sets this crate's `Config::rst_retry_window` (0: a refused dial is not
//! retried), `--also-dial MULTIADDR` (`dial` only) dials that address of the peer together with
//! the circuit, as a swarm that knows a direct address of the peer does: the first connection
//! wins and the swarm drops the other dial. The relay takes `--listen` more than once (IPv4 and
//! IPv6, say), and `--max-reservations N` and `--max-circuits N` raise its limits
//! (libp2p-relay's defaults, 128 reservations and 16 circuits at a time, are a small relay's; a
//! public relay serves more).

use std::{
    collections::HashSet,
    error::Error,
    time::{Duration, Instant},
};

use futures::StreamExt;
use libp2p::{
    Multiaddr, PeerId, Swarm, SwarmBuilder, Transport as _,
    core::{multiaddr::Protocol, upgrade::Version},
    dcutr, identify, identity, noise, ping, relay,
    swarm::{
        ConnectionId, NetworkBehaviour, SwarmEvent, behaviour::toggle::Toggle, dial_opts::DialOpts,
    },
    yamux,
};
use libp2p_reuseport::{Config, Identify, Transport};

#[derive(NetworkBehaviour)]
struct Behaviour {
    relay: Toggle<relay::Behaviour>,
    relay_client: Toggle<relay::client::Behaviour>,
    dcutr: Toggle<dcutr::Behaviour>,
    /// identify, with the observed addresses of connections that left from the listening port
    /// also reported unchanged (identify 0.48 replaces an observed port that is not a listening
    /// port, which breaks hole punching behind port-translating NATs).
    identify: Identify,
    ping: ping::Behaviour,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Relay,
    Listen,
    Dial,
}

struct Args {
    mode: Mode,
    listen: Multiaddr,
    /// More addresses to listen on (`--listen` given more than once).
    more_listen: Vec<Multiaddr>,
    relay: Option<Multiaddr>,
    peer: Option<PeerId>,
    seed: Option<u8>,
    reuse: bool,
    /// `Config::rst_retry_window`; the default when `None`.
    rst_retry: Option<Duration>,
    timeout: Duration,
    transport: Tcp,
    /// A direct address of the peer `dial` dials together with the circuit.
    also_dial: Option<Multiaddr>,
    /// The relay's limits: reservations and circuits at a time; libp2p-relay's when `None`.
    max_reservations: Option<usize>,
    max_circuits: Option<usize>,
}

/// Which TCP transport the node runs on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Tcp {
    /// This crate.
    Reuseport,
    /// rust-libp2p's libp2p-tcp.
    Libp2pTcp,
}

const USAGE: &str = "usage: holepunch relay --listen <multiaddr> [--seed N]
       holepunch listen --relay <relay multiaddr/p2p/id> [--listen <multiaddr>] [options]
       holepunch dial --relay <relay multiaddr/p2p/id> --peer <peer id> [--listen <multiaddr>] [options]
options: --seed N, --no-reuse, --timeout SECONDS, --transport reuseport|libp2p-tcp, --rst-retry-ms MS
dial options: --also-dial <multiaddr> (a direct address dialed together with the circuit)
relay options: --listen more than once, --max-reservations N, --max-circuits N";

fn args() -> Result<Args, String> {
    let mut iter = std::env::args().skip(1);
    let mode = match iter.next().as_deref() {
        Some("relay") => Mode::Relay,
        Some("listen") => Mode::Listen,
        Some("dial") => Mode::Dial,
        _ => return Err(USAGE.into()),
    };
    let mut args = Args {
        mode,
        listen: "/ip4/0.0.0.0/tcp/4001".parse().expect("valid"),
        more_listen: Vec::new(),
        relay: None,
        peer: None,
        seed: None,
        reuse: true,
        rst_retry: None,
        timeout: Duration::from_secs(30),
        transport: Tcp::Reuseport,
        also_dial: None,
        max_reservations: None,
        max_circuits: None,
    };
    let mut listens = Vec::new();
    while let Some(flag) = iter.next() {
        if flag == "--no-reuse" {
            args.reuse = false;
            continue;
        }
        let value = iter
            .next()
            .ok_or(format!("{flag} needs a value\n{USAGE}"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--listen" => listens.push(value.parse().map_err(|e| bad(&e))?),
            "--max-reservations" => {
                args.max_reservations = Some(value.parse().map_err(|e| bad(&e))?)
            }
            "--max-circuits" => args.max_circuits = Some(value.parse().map_err(|e| bad(&e))?),
            "--relay" => args.relay = Some(value.parse().map_err(|e| bad(&e))?),
            "--peer" => args.peer = Some(value.parse().map_err(|e| bad(&e))?),
            "--also-dial" => args.also_dial = Some(value.parse().map_err(|e| bad(&e))?),
            "--seed" => args.seed = Some(value.parse().map_err(|e| bad(&e))?),
            "--timeout" => {
                args.timeout = Duration::from_secs(value.parse().map_err(|e| bad(&e))?);
            }
            "--rst-retry-ms" => {
                args.rst_retry = Some(Duration::from_millis(value.parse().map_err(|e| bad(&e))?));
            }
            "--transport" => {
                args.transport = match value.as_str() {
                    "reuseport" => Tcp::Reuseport,
                    "libp2p-tcp" => Tcp::Libp2pTcp,
                    _ => return Err(bad(&"expected reuseport or libp2p-tcp")),
                };
            }
            _ => return Err(format!("unknown argument {flag}\n{USAGE}")),
        }
    }
    let mut listens = listens.into_iter();
    if let Some(first) = listens.next() {
        args.listen = first;
    }
    args.more_listen = listens.collect();
    if mode != Mode::Relay && !args.more_listen.is_empty() {
        return Err(format!("--listen more than once: only the relay\n{USAGE}"));
    }
    if mode != Mode::Relay && (args.max_reservations.is_some() || args.max_circuits.is_some()) {
        return Err(format!(
            "--max-reservations, --max-circuits: only the relay\n{USAGE}"
        ));
    }
    if mode != Mode::Relay && args.relay.is_none() {
        return Err(format!("--relay is required\n{USAGE}"));
    }
    if !args.reuse && args.transport == Tcp::Libp2pTcp {
        return Err("--no-reuse: libp2p-tcp 0.45 cannot turn port reuse off".into());
    }
    if args.rst_retry.is_some() && args.transport == Tcp::Libp2pTcp {
        return Err("--rst-retry-ms: libp2p-tcp does not retry refused dials".into());
    }
    if mode != Mode::Dial && args.also_dial.is_some() {
        return Err(format!("--also-dial: only dial\n{USAGE}"));
    }
    if mode == Mode::Dial && args.peer.is_none() {
        return Err(format!("--peer is required\n{USAGE}"));
    }
    Ok(args)
}

fn keypair(seed: Option<u8>) -> identity::Keypair {
    match seed {
        Some(seed) => identity::Keypair::ed25519_from_bytes([seed; 32]).expect("32 bytes"),
        None => identity::Keypair::generate_ed25519(),
    }
}

fn swarm(args: &Args) -> Result<Swarm<Behaviour>, Box<dyn Error>> {
    let mode = args.mode;
    let mut relay_config = relay::Config::default();
    if let Some(max) = args.max_reservations {
        relay_config.max_reservations = max;
    }
    if let Some(max) = args.max_circuits {
        relay_config.max_circuits = max;
    }
    let behaviour = move |key: &identity::Keypair, relay_client| {
        let id = key.public().to_peer_id();
        let relay = relay::Behaviour::new(id, relay_config);
        Behaviour {
            relay: Some(relay).filter(|_| mode == Mode::Relay).into(),
            relay_client: Some(relay_client).filter(|_| mode != Mode::Relay).into(),
            dcutr: Some(dcutr::Behaviour::new(id))
                .filter(|_| mode != Mode::Relay)
                .into(),
            identify: Identify::new(identify::Behaviour::new(identify::Config::new(
                "/libp2p-reuseport-holepunch/1".into(),
                key.public(),
            ))),
            ping: ping::Behaviour::new(ping::Config::new().with_interval(Duration::from_secs(1))),
        }
    };
    let idle = |c: libp2p::swarm::Config| c.with_idle_connection_timeout(Duration::from_secs(60));
    let builder = SwarmBuilder::with_existing_identity(keypair(args.seed)).with_tokio();
    Ok(match args.transport {
        Tcp::Reuseport => {
            let mut config = Config::new().port_reuse(args.reuse);
            if let Some(window) = args.rst_retry {
                config = config.rst_retry_window(window);
            }
            builder
                .with_other_transport(|key| {
                    Ok(Transport::new(config)
                        .upgrade(Version::V1Lazy)
                        .authenticate(noise::Config::new(key)?)
                        .multiplex(yamux::Config::default()))
                })?
                .with_relay_client(noise::Config::new, yamux::Config::default)?
                .with_behaviour(behaviour)?
                .with_swarm_config(idle)
                .build()
        }
        Tcp::Libp2pTcp => builder
            .with_tcp(
                libp2p::tcp::Config::default(),
                noise::Config::new,
                yamux::Config::default,
            )?
            .with_relay_client(noise::Config::new, yamux::Config::default)?
            .with_behaviour(behaviour)?
            .with_swarm_config(idle)
            .build(),
    })
}

fn is_relayed(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| p == Protocol::P2pCircuit)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let args = match args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    // `RUST_LOG=debug` (or e.g. `libp2p_dcutr=debug,libp2p_reuseport=debug`) shows what the
    // transport and DCUtR do, on standard error; without it, warnings (such as libp2p-reuseport's
    // about a misbuilt swarm) and errors.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::builder()
                .with_default_directive(tracing_subscriber::filter::LevelFilter::WARN.into())
                .from_env_lossy(),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let mut swarm = swarm(&args)?;
    let name = match args.mode {
        Mode::Relay => "relay",
        Mode::Listen => "listen",
        Mode::Dial => "dial",
    };
    let say = |line: String| println!("{name}: {line}");
    say(format!("peer {}", swarm.local_peer_id()));
    swarm.listen_on(args.listen.clone())?;
    for addr in &args.more_listen {
        swarm.listen_on(addr.clone())?;
    }
    if args.mode == Mode::Relay {
        return run_relay(swarm, say).await;
    }
    let relay_addr = args.relay.clone().expect("checked in args");
    let Some(Protocol::P2p(relay_id)) = relay_addr.iter().last() else {
        return Err("--relay must end with /p2p/<relay peer id>".into());
    };
    swarm.dial(relay_addr.clone())?;

    // Connect to the relay, learn our public address from its identify, reserve a slot.
    let mut learned = false;
    let mut reserved = false;
    while !(learned && reserved) {
        match swarm.select_next_some().await {
            SwarmEvent::ConnectionEstablished { peer_id, .. }
                if peer_id == relay_id && !learned =>
            {
                say(format!("connected to the relay at {relay_addr}"));
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) if peer_id == relay_id && !learned => {
                // `Identify` reports it to DCUtR as our address candidate as it is, next to
                // identify's own candidate with the listening port in place of the observed one.
                say(format!("the relay observes us at {}", info.observed_addr));
                learned = true;
                swarm.listen_on(relay_addr.clone().with(Protocol::P2pCircuit))?;
            }
            SwarmEvent::Behaviour(BehaviourEvent::RelayClient(
                relay::client::Event::ReservationReqAccepted { .. },
            )) => {
                say("reservation accepted by the relay".into());
                reserved = true;
            }
            SwarmEvent::NewListenAddr { address, .. } if is_relayed(&address) => {
                say(format!("reachable through the relay at {address}"));
            }
            SwarmEvent::OutgoingConnectionError { error, .. } => {
                return Err(format!("cannot reach the relay: {error}").into());
            }
            _ => {}
        }
    }

    let target = match args.mode {
        Mode::Dial => {
            let peer = args.peer.expect("checked in args");
            let circuit = relay_addr
                .clone()
                .with(Protocol::P2pCircuit)
                .with(Protocol::P2p(peer));
            let mut addresses = vec![circuit];
            if let Some(direct) = &args.also_dial {
                say(format!("dialing {peer} through the relay and at {direct}"));
                addresses.push(direct.clone());
            } else {
                say(format!("dialing {peer} through the relay"));
            }
            swarm.dial(DialOpts::peer_id(peer).addresses(addresses).build())?;
            Some(peer)
        }
        _ => None,
    };
    punch(swarm, target, args.timeout, say).await
}

async fn run_relay(
    mut swarm: Swarm<Behaviour>,
    say: impl Fn(String),
) -> Result<(), Box<dyn Error>> {
    loop {
        match swarm.select_next_some().await {
            SwarmEvent::NewListenAddr { address, .. } => {
                say(format!(
                    "listening on {address}/p2p/{}",
                    swarm.local_peer_id()
                ));
                // A relay serves reservations only with a confirmed external address; the relay
                // runs on a public address, so its listening address is one.
                swarm.add_external_address(address);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Relay(event)) => match event {
                relay::Event::ReservationReqAccepted { src_peer_id, .. } => {
                    say(format!("reservation for {src_peer_id}"));
                }
                relay::Event::CircuitReqAccepted {
                    src_peer_id,
                    dst_peer_id,
                } => {
                    say(format!("circuit {src_peer_id} -> {dst_peer_id}"));
                }
                other => say(format!("{other:?}")),
            },
            _ => {}
        }
    }
}

/// Waits for the circuit, the direct connection and a ping over it. `target` is the peer we
/// dialed through the relay (`dial` mode); in `listen` mode the first peer arriving through a
/// circuit.
async fn punch(
    mut swarm: Swarm<Behaviour>,
    mut target: Option<PeerId>,
    timeout: Duration,
    say: impl Fn(String),
) -> Result<(), Box<dyn Error>> {
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let mut circuit_at = None;
    let mut direct: HashSet<ConnectionId> = HashSet::new();
    let mut direct_ms = None;
    let dialer = target.is_some();
    loop {
        let event = tokio::select! {
            event = swarm.select_next_some() => event,
            _ = &mut deadline => break,
        };
        match event {
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } if target.is_none_or(|t| t == peer_id) => {
                let addr = endpoint.get_remote_address().clone();
                if endpoint.is_relayed() {
                    target = Some(peer_id);
                    circuit_at.get_or_insert_with(Instant::now);
                    say(format!("circuit with {peer_id} open through the relay"));
                } else {
                    let after = circuit_at.map(|t| t.elapsed()).unwrap_or_default();
                    say(format!(
                        "direct connection with {peer_id} at {addr} ({:?}), {} ms after the circuit",
                        endpoint.to_endpoint(),
                        after.as_millis()
                    ));
                    direct.insert(connection_id);
                    direct_ms.get_or_insert(after.as_secs_f64() * 1000.0);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Dcutr(dcutr::Event {
                remote_peer_id,
                result,
            })) => match result {
                Ok(_) => say(format!("hole punch with {remote_peer_id} succeeded")),
                Err(e) => {
                    say(format!("hole punch with {remote_peer_id} failed: {e}"));
                    if dialer {
                        break;
                    }
                }
            },
            SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event {
                peer,
                connection,
                result: Ok(rtt),
            })) if direct.contains(&connection) => {
                say(format!("ping {peer} over the direct connection: {rtt:?}"));
                if dialer {
                    println!("RESULT direct=true ms={:.1}", direct_ms.unwrap_or_default());
                    return Ok(());
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                endpoint,
                cause,
                ..
            } if target == Some(peer_id) => {
                let via = endpoint.get_remote_address();
                say(format!(
                    "connection with {peer_id} via {via} closed: {cause:?}"
                ));
            }
            _ => {}
        }
    }
    if dialer {
        println!("RESULT direct=false");
        std::process::exit(1);
    }
    Ok(())
}
