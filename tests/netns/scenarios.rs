//! The scenarios, each with its negative control, and the report they print.

use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    path::PathBuf,
    process::ExitCode,
    time::{Duration, Instant},
};

use crate::{
    net::{Nat, Net, Router},
    proc::{Proc, field},
};

const T: Duration = Duration::from_secs(10);

type Scenario = fn() -> Vec<String>;

pub fn run(wanted: &[String]) -> ExitCode {
    let all: [(&str, Scenario); 6] = [
        ("observed", observed_address),
        ("holepunch4", holepunch_ipv4),
        ("holepunch6", holepunch_ipv6),
        ("multihomed", multihomed),
        ("redial", redial),
        ("ifchange", interface_changes),
    ];
    let mut failed = Vec::new();
    for (name, scenario) in all {
        if !wanted.is_empty() && !wanted.iter().any(|w| name.contains(w.as_str())) {
            continue;
        }
        println!("=== netns {name} ===");
        let started = Instant::now();
        match catch_unwind(AssertUnwindSafe(scenario)) {
            Ok(report) => {
                for line in report {
                    println!("netns {name}: {line}");
                }
                println!(
                    "netns {name}: ok ({:.1} s)",
                    started.elapsed().as_secs_f64()
                );
            }
            Err(_) => {
                println!("netns {name}: FAILED");
                failed.push(name);
            }
        }
    }
    if failed.is_empty() {
        println!("netns: all scenarios passed");
        ExitCode::SUCCESS
    } else {
        println!("netns: FAILED: {}", failed.join(", "));
        ExitCode::FAILURE
    }
}

/// The node of `node.rs`, started in `ns`.
fn node(ns: &str, name: &str) -> Proc {
    let exe = std::env::current_exe().expect("test binary");
    Proc::spawn(ns, name, &exe, &[], &[("NETNS_ROLE", "node")])
}

/// Sends `command` and returns the reply starting with `reply`.
fn ask(proc: &mut Proc, command: &str, reply: &str) -> String {
    proc.send(command);
    proc.expect(reply, T)
}

fn port(addr: &str) -> u16 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0)
}

/// Observed address behind NAT A: two destinations see the node's listening port at the NAT's
/// public IP with PortUse::Reuse; PortUse::New does not; a symmetric NAT (the control) shows a
/// different port to each destination even with reuse.
fn observed_address() -> Vec<String> {
    let mut report = Vec::new();
    for router in [Router::PortPreserving, Router::Symmetric] {
        let topo = Nat::new(router, Router::PortPreserving);
        let mut public = node(&topo.public, "public");
        ask(&mut public, "listen /ip4/203.0.113.10/tcp/5001", "LISTEN");
        ask(&mut public, "listen /ip4/203.0.113.11/tcp/5002", "LISTEN");
        let mut a = node(&topo.a, "a");
        ask(&mut a, "listen /ip4/0.0.0.0/tcp/4001", "LISTEN");
        let mut seen = Vec::new();
        for remote in ["203.0.113.10:5001", "203.0.113.11:5002"] {
            let dialed = ask(&mut a, &format!("dial {remote} reuse"), "DIAL");
            assert_eq!(field(&dialed, "origin"), "Reused", "{dialed}");
            assert_eq!(field(&dialed, "local"), "10.0.1.2:4001", "{dialed}");
            let incoming = public.expect("INCOMING", T);
            assert_eq!(field(&incoming, "local"), remote);
            seen.push(field(&incoming, "from").to_string());
        }
        let dialed = ask(&mut a, "dial 203.0.113.10:5001 new", "DIAL");
        assert_eq!(
            field(&dialed, "origin"),
            "Ephemeral(NotRequested)",
            "{dialed}"
        );
        let fresh = field(&public.expect("INCOMING", T), "from").to_string();
        match router {
            Router::PortPreserving => {
                assert_eq!(seen, ["203.0.113.1:4001", "203.0.113.1:4001"]);
                assert_ne!(
                    port(&fresh),
                    4001,
                    "PortUse::New is not seen at the listening port"
                );
                report.push(format!(
                    "port-preserving NAT: Reuse dials to 2 destinations seen from {} and {}; \
                     PortUse::New seen from {fresh}",
                    seen[0], seen[1]
                ));
            }
            Router::Symmetric => {
                assert!(seen.iter().all(|s| port(s) != 4001), "{seen:?}");
                assert_ne!(seen[0], seen[1], "a new public port per destination");
                report.push(format!(
                    "control, symmetric NAT: Reuse dials seen from {} and {}: not dialable",
                    seen[0], seen[1]
                ));
            }
        }
    }
    report
}

/// The `holepunch` example binary next to this test binary, built if missing.
fn holepunch_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    let binary = profile_dir.join("examples/holepunch");
    if !binary.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = std::process::Command::new(cargo);
        build
            .args(["build", "--example", "holepunch", "--manifest-path"])
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"));
        if profile_dir.ends_with("release") {
            build.arg("--release");
        }
        let status = build.status().expect("run cargo build");
        assert!(status.success(), "cargo build --example holepunch failed");
    }
    binary
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

/// What one hole-punch run did.
enum Punch {
    /// A direct connection carried a ping; milliseconds from circuit to direct connection.
    Direct(f64),
    /// The circuit was open but no direct connection came.
    NoDirect,
}

/// One DCUtR run on a fresh network: a relay on the public host, `listen` behind router A and
/// `dial` behind router B, both on port 4001.
fn punch_once(router_a: Router, family: Family, reuse: bool, timeout: Duration) -> Punch {
    let topo = Nat::new(router_a, Router::PortPreserving);
    let binary = holepunch_binary();
    let (relay_listen, listen) = match family {
        Family::V4 => ("/ip4/203.0.113.10/tcp/4001", "/ip4/0.0.0.0/tcp/4001"),
        Family::V6 => ("/ip6/2001:db8::10/tcp/4001", "/ip6/::/tcp/4001"),
    };
    let seconds = timeout.as_secs().to_string();
    let mut relay = Proc::spawn(
        &topo.public,
        "relay",
        &binary,
        &["relay", "--listen", relay_listen, "--seed", "1"],
        &[],
    );
    let relay_id = relay
        .expect("relay: peer", T)
        .rsplit(' ')
        .next()
        .unwrap_or_default()
        .to_string();
    relay.expect("relay: listening on", T);
    let relay_addr = format!("{relay_listen}/p2p/{relay_id}");
    let mut common = vec![
        "--relay",
        relay_addr.as_str(),
        "--listen",
        listen,
        "--timeout",
        &seconds,
    ];
    if !reuse {
        common.push("--no-reuse");
    }
    let mut args = vec!["listen", "--seed", "2"];
    args.extend(&common);
    let mut a = Proc::spawn(&topo.a, "listen", &binary, &args, &[]);
    let a_id = a
        .expect("listen: peer", T)
        .rsplit(' ')
        .next()
        .unwrap_or_default()
        .to_string();
    a.expect("listen: reservation accepted", T);
    let mut args = vec!["dial", "--seed", "3", "--peer", a_id.as_str()];
    args.extend(&common);
    let mut b = Proc::spawn(&topo.b, "dial", &binary, &args, &[]);
    let status = b.finish(timeout + T);
    let result = b.log.iter().find(|l| l.starts_with("RESULT")).cloned();
    let circuit = b.log.iter().any(|l| l.contains("circuit with"));
    match (status.map(|s| s.success()), result) {
        (Some(true), Some(line)) if line.contains("direct=true") => {
            // The direct connection goes to A's public address: NAT A's IP (IPv4) or A's own
            // address (IPv6 behind a firewall), at A's listening port.
            let expected = match (family, router_a) {
                (Family::V4, _) => "/ip4/203.0.113.1/tcp/4001/",
                (Family::V6, Router::PortPreserving) => "/ip6/2001:db8:1::2/tcp/4001/",
                (Family::V6, Router::Symmetric) => "/ip6/2001:db8::1/tcp/4001/",
            };
            let direct = b
                .log
                .iter()
                .find(|l| l.starts_with("dial: direct connection"))
                .expect("the direct connection is reported");
            assert!(direct.contains(expected), "{direct}, expected {expected}");
            Punch::Direct(field(&line, "ms").parse().expect("milliseconds"))
        }
        (_, Some(line)) if line.contains("direct=false") && circuit => Punch::NoDirect,
        _ => panic!(
            "hole-punch run did not get as far as the circuit:\ndial:\n{}\nlisten:\n{}\nrelay:\n{}",
            b.log.join("\n"),
            a.log.join("\n"),
            relay.log.join("\n")
        ),
    }
}

fn runs() -> usize {
    std::env::var("NETNS_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

/// `runs` hole punches that must succeed (all but one at most), then the controls that must not.
fn holepunch(family: Family) -> Vec<String> {
    let runs = runs();
    let mut times = Vec::new();
    for run in 1..=runs {
        match punch_once(
            Router::PortPreserving,
            family,
            true,
            Duration::from_secs(30),
        ) {
            Punch::Direct(ms) => times.push(ms),
            Punch::NoDirect => println!("run {run}: no direct connection"),
        }
    }
    times.sort_by(f64::total_cmp);
    let median = times.get(times.len() / 2).copied().unwrap_or(f64::NAN);
    let (router_label, control_label) = match family {
        Family::V4 => ("port-preserving NATs", "symmetric NAT"),
        Family::V6 => ("stateful IPv6 firewalls", "randomising NAT66"),
    };
    let mut report = vec![format!(
        "{} of {runs} runs through {router_label} got a direct connection with a ping; median \
         {median:.1} ms from circuit to direct connection (min {:.1}, max {:.1})",
        times.len(),
        times.first().copied().unwrap_or(f64::NAN),
        times.last().copied().unwrap_or(f64::NAN),
    )];
    assert!(
        times.len() + 1 >= runs,
        "{} of {runs} hole punches succeeded",
        times.len()
    );
    let controls = [
        ("port reuse off", Router::PortPreserving, false),
        (control_label, Router::Symmetric, true),
    ];
    for (label, router, reuse) in controls {
        let mut direct = 0;
        let attempts = 2;
        for _ in 0..attempts {
            if let Punch::Direct(_) = punch_once(router, family, reuse, Duration::from_secs(12)) {
                direct += 1;
            }
        }
        report.push(format!(
            "control, {label}: {direct} of {attempts} runs got a direct connection (circuit open each time)"
        ));
        assert_eq!(direct, 0, "control {label} must not punch through");
    }
    report
}

fn holepunch_ipv4() -> Vec<String> {
    holepunch(Family::V4)
}

fn holepunch_ipv6() -> Vec<String> {
    holepunch(Family::V6)
}

/// A host in two subnets with a listener on each IP: a dial into each subnet leaves from the
/// listener of that subnet, whatever the registration order; a wildcard listener binds the
/// routed IP.
fn multihomed() -> Vec<String> {
    let mut net = Net::new();
    let m = net.ns("m");
    let p1 = net.ns("p1");
    let p2 = net.ns("p2");
    net.link(&m, "eth0", &p1, "eth0");
    net.link(&m, "eth1", &p2, "eth0");
    net.addr(&m, "eth0", "10.0.5.2/24");
    net.addr(&m, "eth1", "10.0.6.2/24");
    net.addr(&p1, "eth0", "10.0.5.3/24");
    net.addr(&p2, "eth0", "10.0.6.3/24");
    let mut peer1 = node(&p1, "p1");
    let mut peer2 = node(&p2, "p2");
    ask(&mut peer1, "listen /ip4/10.0.5.3/tcp/5000", "LISTEN");
    ask(&mut peer2, "listen /ip4/10.0.6.3/tcp/5000", "LISTEN");

    let mut report = Vec::new();
    let mut host = node(&m, "m");
    // The second subnet's listener registers first: a route-unaware choice would take it.
    ask(&mut host, "listen /ip4/10.0.6.2/tcp/4002", "LISTEN");
    ask(&mut host, "listen /ip4/10.0.5.2/tcp/4001", "LISTEN");
    for (remote, peer, expected) in [
        ("10.0.5.3:5000", &mut peer1, "10.0.5.2:4001"),
        ("10.0.6.3:5000", &mut peer2, "10.0.6.2:4002"),
    ] {
        let source = ask(&mut host, &format!("source {remote}"), "SOURCE");
        assert_eq!(field(&source, "local"), expected, "{source}");
        let dialed = ask(&mut host, &format!("dial {remote} reuse"), "DIAL");
        assert_eq!(field(&dialed, "origin"), "Reused", "{dialed}");
        let from = field(&peer.expect("INCOMING", T), "from").to_string();
        assert_eq!(from, expected);
        report.push(format!(
            "specific listeners: dial to {remote} left from {from}"
        ));
    }
    drop(host);
    let mut host = node(&m, "m-wildcard");
    ask(&mut host, "listen /ip4/0.0.0.0/tcp/4003", "LISTEN");
    for (remote, peer, expected) in [
        ("10.0.5.3:5000", &mut peer1, "10.0.5.2:4003"),
        ("10.0.6.3:5000", &mut peer2, "10.0.6.2:4003"),
    ] {
        let dialed = ask(&mut host, &format!("dial {remote} reuse"), "DIAL");
        assert_eq!(field(&dialed, "local"), expected, "{dialed}");
        let from = field(&peer.expect("INCOMING", T), "from").to_string();
        assert_eq!(from, expected);
        report.push(format!(
            "wildcard listener: dial to {remote} left from {from}"
        ));
    }
    report
}

/// Two hosts on one link.
fn pair() -> (Net, String, String) {
    let mut net = Net::new();
    let x = net.ns("x");
    let y = net.ns("y");
    net.link(&x, "eth0", &y, "eth0");
    net.addr(&x, "eth0", "10.0.7.1/24");
    net.addr(&y, "eth0", "10.0.7.2/24");
    (net, x, y)
}

/// 200 client-first dial/echo/close cycles to one remote across a veth link.
fn redial() -> Vec<String> {
    let (_net, x, y) = pair();
    let mut server = node(&y, "y");
    ask(&mut server, "listen /ip4/10.0.7.2/tcp/5000", "LISTEN");
    let mut client = node(&x, "x");
    ask(&mut client, "listen /ip4/0.0.0.0/tcp/4001", "LISTEN");
    client.send("cycles 10.0.7.2:5000 200");
    let cycles = client.expect("CYCLES", Duration::from_secs(120));
    assert_eq!(
        field(&cycles, "failed"),
        "0",
        "{cycles}\n{}",
        client.log.join("\n")
    );
    let reused: usize = field(&cycles, "reused").parse().expect("count");
    assert!(reused > 0, "{cycles}");
    vec![format!(
        "200 client-first redials from port 4001: 0 failed, {reused} reused the listening port, \
         dial p50 {} us, max {} us",
        field(&cycles, "p50_us"),
        field(&cycles, "max_us")
    )]
}

/// A wildcard listener follows `ip addr add` and `ip addr del`.
fn interface_changes() -> Vec<String> {
    let (net, x, y) = pair();
    let mut host = node(&x, "x");
    ask(&mut host, "listen /ip4/0.0.0.0/tcp/4001", "LISTEN");
    host.expect("NEWADDR addr=10.0.7.1:4001", T);
    net.addr(&y, "eth0", "10.0.8.2/24");
    let mut peer = node(&y, "y");
    ask(&mut peer, "listen /ip4/10.0.8.2/tcp/5001", "LISTEN");

    let source = ask(&mut host, "source 10.0.8.2:5001", "SOURCE");
    assert_eq!(field(&source, "local"), "none", "no route yet: {source}");
    net.addr(&x, "eth0", "10.0.8.1/24");
    let added = host.expect("NEWADDR addr=10.0.8.1:4001", T);
    let source = ask(&mut host, "source 10.0.8.2:5001", "SOURCE");
    assert_eq!(field(&source, "local"), "10.0.8.1:4001", "{source}");
    ask(&mut host, "dial 10.0.8.2:5001 reuse", "DIALED");
    let from = field(&peer.expect("INCOMING", T), "from").to_string();
    assert_eq!(from, "10.0.8.1:4001");

    net.del_addr(&x, "eth0", "10.0.8.1/24");
    let expired = host.expect("EXPIRED addr=10.0.8.1:4001", T);
    let after = ask(&mut host, "source 10.0.8.2:5001", "SOURCE");
    assert_ne!(field(&after, "local"), "10.0.8.1:4001", "{after}");
    vec![
        format!("ip addr add: {added}; {source}; the peer saw the dial from {from}"),
        format!("ip addr del: {expired}; {after}"),
    ]
}
