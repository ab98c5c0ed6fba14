//! Fuzzing `listen_on` and `dial` with arbitrary multiaddrs: decoded from random bytes and built
//! from random protocol stacks, after replaying `corpus.txt`. Nothing may panic; an address that
//! is not exactly IP + TCP port (optionally `/p2p/<id>`; no port 0 or unspecified IP on dial) must be refused with `MultiaddrNotSupported` carrying it unchanged, and a supported one
//! must never be. Dial futures to loopback are polled; the others are dropped unpolled (they do
//! nothing until polled, so no packet leaves the machine).
//!
//! The time budget is `FUZZ_SECONDS` (default 5; `.ci/run` gives 60). Written with proptest:
//! `cargo fuzz` needs a nightly compiler. A failure prints the seed and the input.

#[path = "../util/mod.rs"]
mod util;

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    time::{Duration, Instant, SystemTime},
};

use libp2p_core::{
    Multiaddr, Transport as _,
    multiaddr::Protocol,
    transport::{ListenerId, PortUse, TransportError},
};
use libp2p_identity::PeerId;
use libp2p_reuseport::Transport;
use proptest::{
    collection::vec,
    prelude::*,
    test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner},
};
use util::opts;

/// What the address rules say about `addr`: (listen supported, dial supported).
fn rules(addr: &Multiaddr) -> (bool, bool) {
    let protocols: Vec<_> = addr.iter().collect();
    let ip = |p: &Protocol<'_>| match p {
        Protocol::Ip4(ip) => Some(std::net::IpAddr::from(*ip)),
        Protocol::Ip6(ip) => Some(std::net::IpAddr::from(*ip)),
        _ => None,
    };
    let listen = matches!(
        protocols.as_slice(),
        [a, Protocol::Tcp(_)] | [a, Protocol::Tcp(_), Protocol::P2p(_)] if ip(a).is_some()
    );
    let dial = match protocols.as_slice() {
        [a, Protocol::Tcp(port)] | [a, Protocol::Tcp(port), Protocol::P2p(_)] => {
            ip(a).is_some_and(|ip| !ip.is_unspecified()) && *port != 0
        }
        _ => false,
    };
    (listen, dial)
}

fn protocol() -> impl Strategy<Value = Protocol<'static>> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|b| Protocol::Ip4(b.into())),
        prop_oneof![Just(Ipv4Addr::LOCALHOST), Just(Ipv4Addr::UNSPECIFIED)].prop_map(Protocol::Ip4),
        any::<[u8; 16]>().prop_map(|b| Protocol::Ip6(b.into())),
        prop_oneof![Just(Ipv6Addr::LOCALHOST), Just(Ipv6Addr::UNSPECIFIED)].prop_map(Protocol::Ip6),
        any::<u16>().prop_map(Protocol::Tcp),
        prop_oneof![Just(0u16), Just(1), Just(65535)].prop_map(Protocol::Tcp),
        any::<u16>().prop_map(Protocol::Udp),
        Just(Protocol::QuicV1),
        Just(Protocol::Dns("localhost".into())),
        Just(Protocol::Dns4("localhost".into())),
        Just(Protocol::Ws("/".into())),
        Just(Protocol::Wss("/".into())),
        Just(Protocol::Tls),
        Just(Protocol::P2pCircuit),
        any::<u64>().prop_map(Protocol::Memory),
        Just(Protocol::Unix("tmp/x".into())),
        Just(()).prop_map(|()| Protocol::P2p(PeerId::random())),
    ]
}

fn multiaddr() -> impl Strategy<Value = Multiaddr> {
    prop_oneof![
        3 => vec(protocol(), 0..5).prop_map(|ps| ps.into_iter().collect::<Multiaddr>()),
        1 => vec(any::<u8>(), 0..48).prop_filter_map("not a multiaddr", |b| Multiaddr::try_from(b).ok()),
    ]
}

/// Feeds `addr` to `listen_on` and `dial` and checks the answers against [`rules`].
fn check(
    runtime: &tokio::runtime::Runtime,
    transport: &mut Transport,
    addr: &Multiaddr,
    poll_dial: bool,
) -> Result<(), TestCaseError> {
    let _context = runtime.enter();
    let (listen_ok, dial_ok) = rules(addr);

    let id = ListenerId::next();
    match transport.listen_on(id, addr.clone()) {
        Err(TransportError::MultiaddrNotSupported(back)) => {
            prop_assert!(!listen_ok, "supported listen address refused: {addr}");
            prop_assert_eq!(&back, addr, "the refused address comes back unchanged");
        }
        Err(TransportError::Other(_)) => prop_assert!(listen_ok, "{addr}"),
        Ok(()) => {
            prop_assert!(listen_ok, "unsupported listen address accepted: {addr}");
            prop_assert!(transport.remove_listener(id));
        }
    }

    let port_use = if poll_dial {
        PortUse::Reuse
    } else {
        PortUse::New
    };
    match transport.dial(addr.clone(), opts(port_use)) {
        Err(TransportError::MultiaddrNotSupported(back)) => {
            prop_assert!(!dial_ok, "supported dial address refused: {addr}");
            prop_assert_eq!(&back, addr);
        }
        Err(TransportError::Other(e)) => {
            return Err(TestCaseError::fail(format!(
                "dial {addr} failed before polling: {e}"
            )));
        }
        Ok(dial) => {
            prop_assert!(dial_ok, "unsupported dial address accepted: {addr}");
            let loopback = addr.iter().next().is_some_and(|p| match p {
                Protocol::Ip4(ip) => ip.is_loopback(),
                Protocol::Ip6(ip) => ip.is_loopback(),
                _ => false,
            });
            if poll_dial && loopback {
                // Refused, connected to something of ours, or slow: all fine, no panic.
                let _ = runtime.block_on(tokio::time::timeout(Duration::from_millis(200), dial));
            } else {
                drop(dial);
            }
        }
    }
    Ok(())
}

#[test]
fn listen_and_dial_take_any_multiaddr() {
    let budget = Duration::from_secs(
        std::env::var("FUZZ_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(5),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut transport = {
        let _context = runtime.enter();
        let mut t = Transport::default();
        t.listen_on(ListenerId::next(), "/ip4/127.0.0.1/tcp/0".parse().unwrap())
            .unwrap();
        t
    };

    let corpus: Vec<Multiaddr> = include_str!("corpus.txt")
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.parse().unwrap_or_else(|e| panic!("corpus line {l}: {e}")))
        .collect();
    for addr in &corpus {
        for poll in [false, true] {
            if let Err(e) = check(&runtime, &mut transport, addr, poll) {
                panic!("corpus input {addr}: {e}");
            }
        }
    }

    let started = Instant::now();
    let mut executions = corpus.len() * 2;
    let mut batches = 0;
    while started.elapsed() < budget {
        let seed = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
            .to_le_bytes();
        let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[seed, seed].concat());
        let config = Config {
            cases: 500,
            failure_persistence: None,
            ..Config::default()
        };
        let mut runner = TestRunner::new_with_rng(config, rng);
        let shared = std::cell::RefCell::new(&mut transport);
        let result = runner.run(&(multiaddr(), any::<bool>()), |(addr, poll)| {
            check(&runtime, &mut shared.borrow_mut(), &addr, poll)
        });
        if let Err(e) = result {
            panic!("fuzz failure with seed {seed:?}: {e}");
        }
        executions += 500;
        batches += 1;
    }
    let table = transport.reuse_table();
    assert_eq!(
        table.listen_addrs().len(),
        1,
        "only the first listener is left"
    );
    assert_eq!(table.dialed_connections(), 0, "no dial left a pair behind");
    println!(
        "fuzz: {executions} executions ({} from the corpus, {batches} batches of 500) in {:.1} s, \
         no panic, every unsupported address refused as MultiaddrNotSupported",
        corpus.len() * 2,
        started.elapsed().as_secs_f64()
    );
}
