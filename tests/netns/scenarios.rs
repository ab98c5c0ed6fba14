//! The scenarios, each with its negative control, and the report they print.

use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    process::ExitCode,
    time::{Duration, Instant},
};

use crate::{
    bed::{Bed, Leg, Rules, TwoNats, Uplink, Wan, WanPath},
    net::{self, Net},
    population,
    proc::{Proc, field},
    zoo,
};

const T: Duration = Duration::from_secs(10);

/// A scenario: what it reports; it panics if its expectations fail.
type Scenario = Box<dyn Fn() -> Vec<String>>;

/// Options of a run: which scenarios, and for the zoo how many runs of which cells.
#[derive(Debug, Default)]
pub struct Options {
    pub scenarios: Vec<String>,
    pub runs: usize,
    pub cells: Vec<String>,
    /// The zoo's WANs by key: the one-way delay in ms, or the name of a WAN with per-path delays.
    pub wans: Vec<String>,
    /// The population's sizes, one population each, and the seed of its draw.
    pub pairs: Vec<usize>,
    pub seed: u64,
}

pub fn run(options: &Options) -> ExitCode {
    let runs = options.runs;
    let cells = options.cells.clone();
    let wans = options.wans.clone();
    let zoo_scenario = move || zoo_table(runs, &cells, &wans);
    let (pairs, seed) = (options.pairs.clone(), options.seed);
    let population_scenario = move || population::run(&pairs, seed);
    let all: [(&str, Scenario); 12] = [
        ("delayline", Box::new(delay_line_accuracy)),
        ("observed", Box::new(observed_address)),
        ("multihomed", Box::new(multihomed)),
        ("redial", Box::new(redial)),
        ("ifchange", Box::new(interface_changes)),
        ("refused", Box::new(rst_retries)),
        ("prohibited", Box::new(icmp_rejections)),
        ("claimed", Box::new(claimed_crossing)),
        ("stale", Box::new(stale_entry)),
        ("temporary", Box::new(temporary_addresses)),
        ("zoo", Box::new(zoo_scenario)),
        ("population", Box::new(population_scenario)),
    ];
    // The population runs only when named: it is long, and CI runs the others.
    let on_request = ["population"];
    let wanted = &options.scenarios;
    let mut failed = Vec::new();
    for (name, scenario) in all {
        if !wanted.is_empty() && !wanted.iter().any(|w| name.contains(w.as_str())) {
            continue;
        }
        if on_request.contains(&name) && !wanted.iter().any(|w| w == name) {
            continue;
        }
        println!("=== netns {name} ===");
        let started = Instant::now();
        match catch_unwind(AssertUnwindSafe(&*scenario)) {
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
    node_with(ns, name, &[])
}

fn node_with(ns: &str, name: &str, env: &[(&str, &str)]) -> Proc {
    let exe = std::env::current_exe().expect("test binary");
    let mut env = env.to_vec();
    env.push(("NETNS_ROLE", "node"));
    Proc::spawn(ns, name, &exe, &[], &env)
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
    for (symmetric, rules) in [(false, Rules::home()), (true, Rules::symmetric())] {
        let mut bed = Bed::new(Wan::Bridge);
        let topo = TwoNats::build(&mut bed, &rules, &Rules::home());
        let mut public = node(&topo.public, "public");
        ask(&mut public, "listen /ip4/192.31.196.10/tcp/5001", "LISTEN");
        ask(&mut public, "listen /ip4/192.31.196.11/tcp/5002", "LISTEN");
        let mut a = node(&topo.a, "a");
        ask(&mut a, "listen /ip4/0.0.0.0/tcp/4001", "LISTEN");
        let mut seen = Vec::new();
        for remote in ["192.31.196.10:5001", "192.31.196.11:5002"] {
            let dialed = ask(&mut a, &format!("dial {remote} reuse"), "DIAL");
            assert_eq!(field(&dialed, "origin"), "Reused", "{dialed}");
            assert_eq!(field(&dialed, "local"), "10.0.1.2:4001", "{dialed}");
            let incoming = public.expect("INCOMING", T);
            assert_eq!(field(&incoming, "local"), remote);
            seen.push(field(&incoming, "from").to_string());
        }
        let dialed = ask(&mut a, "dial 192.31.196.10:5001 new", "DIAL");
        assert_eq!(
            field(&dialed, "origin"),
            "Ephemeral(NotRequested)",
            "{dialed}"
        );
        let fresh = field(&public.expect("INCOMING", T), "from").to_string();
        if symmetric {
            assert!(seen.iter().all(|s| port(s) != 4001), "{seen:?}");
            assert_ne!(seen[0], seen[1], "a new public port per destination");
            report.push(format!(
                "control, symmetric NAT: Reuse dials seen from {} and {}: not dialable",
                seen[0], seen[1]
            ));
        } else {
            assert_eq!(seen, ["192.31.196.1:4001", "192.31.196.1:4001"]);
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
    }
    report
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

/// The source address the kernel picks for a connection from `ns` to `remote`.
fn kernel_source(ns: &str, remote: &str) -> String {
    let route = net::ip_output(ns, &["-6", "route", "get", remote]);
    let mut words = route.split_whitespace();
    words.find(|w| *w == "src");
    words.next().expect("a source address").to_string()
}

/// IPv6 temporary ("privacy") addresses: the kernel prefers a temporary address as the source
/// of new connections and replaces it every day or so; a dial from a wildcard listener leaves
/// from the interface's stable address, before and after the rotation, so that the address
/// peers learned stays the one it dials from. The control: a dial from an ephemeral port leaves
/// from the kernel's pick, the newest temporary address.
fn temporary_addresses() -> Vec<String> {
    let mut net = Net::new();
    let x = net.ns("x");
    let y = net.ns("y");
    net.link(&x, "eth0", &y, "eth0");
    net.sysctl(&x, "net.ipv6.conf.eth0.use_tempaddr=2");
    net.sysctl(&x, "net.ipv6.conf.eth0.accept_dad=0");
    const STABLE: &str = "2001:db8:7::1";
    // With `mngtmpaddr` and use_tempaddr=2 the kernel makes a temporary address in the prefix,
    // as it does for an address from a router advertisement.
    net::run(
        "ip",
        &[
            "-n",
            &x,
            "addr",
            "add",
            "2001:db8:7::1/64",
            "dev",
            "eth0",
            "mngtmpaddr",
            "nodad",
        ],
    );
    net.addr(&y, "eth0", "2001:db8:7::2/64");
    let first = net::new_temporary(&x, "eth0", &[]);
    let mut peer = node(&y, "y");
    ask(&mut peer, "listen /ip6/2001:db8:7::2/tcp/5000", "LISTEN");
    ask(&mut peer, "listen /ip6/2001:db8:7::2/tcp/5001", "LISTEN");
    let mut host = node(&x, "x");
    ask(&mut host, "listen /ip6/::/tcp/4001", "LISTEN");

    let mut report = Vec::new();
    // A port of the peer per round: the first round's connections stay open.
    for (round, remote) in [
        ("first temporary address", "[2001:db8:7::2]:5000"),
        ("after a rotation", "[2001:db8:7::2]:5001"),
    ] {
        let preferred = kernel_source(&x, "2001:db8:7::2");
        assert!(
            net::temporary_addrs(&x, "eth0").contains(&preferred),
            "the kernel prefers a temporary address: {preferred}"
        );
        let dialed = ask(&mut host, &format!("dial {remote} reuse"), "DIAL");
        assert_eq!(field(&dialed, "origin"), "Reused", "{dialed}");
        let from = field(&peer.expect("INCOMING", T), "from").to_string();
        assert_eq!(from, format!("[{STABLE}]:4001"), "{round}");
        let dialed = ask(&mut host, &format!("dial {remote} new"), "DIAL");
        let fresh = field(&peer.expect("INCOMING", T), "from").to_string();
        assert!(
            fresh.starts_with(&format!("[{preferred}]:")),
            "{round}: an ephemeral dial from {fresh}, the kernel prefers {preferred}: {dialed}"
        );
        report.push(format!(
            "{round}: the kernel prefers {preferred}; the dial from the listening port came \
             from {from}, the ephemeral one from {fresh}"
        ));
        // Rotate: the temporary address is deprecated and the kernel makes the next one.
        net::rotate_temporary(&x, "eth0", "2001:db8:7::1/64");
    }
    assert_ne!(kernel_source(&x, "2001:db8:7::2"), first, "rotated");
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

/// The delay line's accuracy: ping RTT between two hosts on the WAN, through the bridge (no
/// delay) and through each shaped WAN of the zoo. The RTT crosses the line twice.
fn delay_line_accuracy() -> Vec<String> {
    let mut report = Vec::new();
    for wan in [Wan::Bridge, zoo::W20, zoo::W60] {
        let mut bed = Bed::new(wan);
        let x = bed.host("x", Uplink::Wan, &["192.31.196.30/24"], &[]);
        bed.host("y", Uplink::Wan, &["192.31.196.31/24"], &[]);
        // A first ping resolves the neighbour (ARP), which would add a round trip to it.
        let _ = std::process::Command::new("ip")
            .args([
                "netns", "exec", &x, "ping", "-q", "-n", "-c", "3", "-i", "0.2",
            ])
            .arg("192.31.196.31")
            .output();
        let count = 200;
        let output = std::process::Command::new("ip")
            .args(["netns", "exec", &x, "ping", "-q", "-n", "-i", "0.02", "-c"])
            .arg(count.to_string())
            .arg("192.31.196.31")
            .output()
            .expect("run ping");
        let text = String::from_utf8_lossy(&output.stdout);
        // "200 packets transmitted, 196 received, 2% packet loss, time 4024ms"
        // "rtt min/avg/max/mdev = 30.101/40.201/50.873/5.602 ms, pipe 3"
        let received: usize = text
            .split(", ")
            .find_map(|part| part.strip_suffix(" received"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no count in ping output:\n{text}"));
        let rtt: Vec<f64> = text
            .lines()
            .find_map(|l| l.strip_prefix("rtt min/avg/max/mdev = "))
            .and_then(|l| l.split(" ms").next())
            .map(|l| l.split('/').filter_map(|v| v.parse().ok()).collect())
            .unwrap_or_else(|| panic!("no rtt in ping output:\n{text}"));
        let [min, avg, max, mdev] = rtt[..] else {
            panic!("rtt line: {rtt:?}");
        };
        let lost = count - received;
        let (expected, delay, jitter, loss) = match wan {
            Wan::Bridge => ("0".to_string(), 0.0, 0.0, 0.0),
            Wan::Shaped {
                delay_ms,
                jitter_ms,
                loss,
            } => (
                format!("{} ± {}", 2 * delay_ms, 2 * jitter_ms),
                f64::from(delay_ms),
                f64::from(jitter_ms),
                loss,
            ),
            Wan::Paths { .. } => unreachable!("uniform WANs only; paths are measured below"),
        };
        report.push(format!(
            "WAN {}: ping RTT min/avg/max/mdev {min:.2}/{avg:.2}/{max:.2}/{mdev:.2} ms (configured \
             {expected} ms), {lost} of {count} lost (configured {:.1}% each way)",
            wan.label(),
            loss * 100.0,
        ));
        // No frame leaves before its delay minus the jitter. Late ones are the machine's load
        // (a thread's wake-up), not the line's, so the maximum is reported, not asserted; the
        // average must sit within the jitter of the configured delay.
        let slack = 1.0;
        assert!(
            min >= 2.0 * (delay - jitter) - slack,
            "{}: RTT below the configured range: {text}",
            wan.label()
        );
        assert!(
            (avg - 2.0 * delay).abs() <= jitter + slack,
            "{}: average RTT {avg} ms, configured {} ms",
            wan.label(),
            2.0 * delay
        );
        // Binomial: the round trip loses about 2 * loss of the pings; allow a wide margin.
        let expected_lost = 2.0 * loss * count as f64;
        assert!(
            (lost as f64) <= expected_lost * 3.0 + 3.0,
            "{}: {lost} of {count} pings lost",
            wan.label()
        );
    }
    report.extend(delay_line_paths());
    report
}

/// Per-path delays: three hosts on a delay line whose x-y path is 30 ms one way (both ways),
/// z to x 15 ms (that way only) and every other 5 ms; ping from x to y and to z, and from y to
/// z, shows each path's round trip.
fn delay_line_paths() -> Vec<String> {
    const PATHS: &[WanPath] = &[
        WanPath {
            a: "x",
            b: "y",
            leg: Leg {
                delay_ms: 30,
                jitter_ms: 0,
            },
            one_way: false,
        },
        WanPath {
            a: "z",
            b: "x",
            leg: Leg {
                delay_ms: 15,
                jitter_ms: 0,
            },
            one_way: true,
        },
    ];
    let wan = Wan::Paths {
        name: "paths",
        paths: PATHS,
        other: Leg {
            delay_ms: 5,
            jitter_ms: 0,
        },
        loss: 0.0,
    };
    let mut bed = Bed::new(wan);
    let x = bed.host("x", Uplink::Wan, &["192.31.196.30/24"], &[]);
    let y = bed.host("y", Uplink::Wan, &["192.31.196.31/24"], &[]);
    bed.host("z", Uplink::Wan, &["192.31.196.32/24"], &[]);
    let mut report = Vec::new();
    for (from, name, to, want) in [
        (&x, "x", "192.31.196.31", 60.0),
        (&x, "x", "192.31.196.32", 20.0),
        (&y, "y", "192.31.196.32", 10.0),
    ] {
        let ping = |count: &str, interval: &str| {
            let output = std::process::Command::new("ip")
                .args(["netns", "exec", from, "ping", "-q", "-n", "-i", interval])
                .args(["-c", count, to])
                .output()
                .expect("run ping");
            String::from_utf8_lossy(&output.stdout).into_owned()
        };
        // The first pings resolve the neighbour (ARP).
        ping("3", "0.2");
        let text = ping("50", "0.02");
        let rtt: Vec<f64> = text
            .lines()
            .find_map(|l| l.strip_prefix("rtt min/avg/max/mdev = "))
            .and_then(|l| l.split(" ms").next())
            .map(|l| l.split('/').filter_map(|v| v.parse().ok()).collect())
            .unwrap_or_else(|| panic!("no rtt in ping output:\n{text}"));
        let [min, avg, max, _] = rtt[..] else {
            panic!("rtt line: {rtt:?}");
        };
        report.push(format!(
            "path {name} -> {to}: ping RTT min/avg/max {min:.2}/{avg:.2}/{max:.2} ms (configured \
             {want} ms)"
        ));
        assert!(
            min >= want - 1.0 && (avg - want).abs() <= 2.0,
            "path {name} -> {to}: RTT {min}/{avg} ms, configured {want} ms:\n{text}"
        );
    }
    report
}

/// The NAT zoo (see `zoo.rs`): prints the table, fails if a cell missed its expectation.
fn zoo_table(runs: usize, cells: &[String], wans: &[String]) -> Vec<String> {
    let (table, failures) = zoo::run(runs, cells, wans);
    assert!(failures.is_empty(), "zoo cells failed: {failures:#?}");
    let mut report = vec![format!("{runs} runs per cell and transport:")];
    report.extend(table);
    report
}

/// A dial from a listening port that the remote refuses (a RST) sends its next SYN at once, 16
/// in all within the window; a refusal that stops, as a NAT's does once its own host's SYN has
/// opened the mapping, lets the dial through; with the window at zero the first refusal is
/// final. The peer counts the SYNs that reach it (nftables counters); the first SYNs to port
/// 5001 are answered with a RST by a rule (`quota`: the first 240 bytes, four 60-byte SYNs),
/// after which the listener there answers. A hole punch's dial (the role overridden, as
/// DCUtR's) refused throughout its 16 SYNs fails, and its SYNs go on in the background, up to
/// 64 more: to port 5002, which refuses 40 SYNs (16 and 24 more), the 41st connects, and the
/// next such dial takes that connection over. A plain dial to a peer with which a relayed
/// connection is open (as `Identify` sees it: DCUtR's dial on the side that does not lead) does
/// the same, to port 5004 (40 SYNs refused); once that connection closed, a plain dial to the
/// peer fails after its 16 SYNs again (port 5005, nothing listening). A second dial to the same
/// remote while the first is refused and trying again (as DCUtR's next attempt's may) waits for
/// it, then leaves from the listening port too, not from an ephemeral one: to port 5003, which
/// refuses 24 SYNs.
fn rst_retries() -> Vec<String> {
    let (net, x, y) = pair();
    net.nft(
        &y,
        "table inet syns {
  chain input {
    type filter hook input priority filter; policy accept;
    tcp dport 5000 tcp flags & (syn | ack) == syn counter
    tcp dport 5001 tcp flags & (syn | ack) == syn counter
    tcp dport 5001 tcp flags & (syn | ack) == syn quota until 240 bytes reject with tcp reset
    tcp dport 5002 tcp flags & (syn | ack) == syn counter
    tcp dport 5002 tcp flags & (syn | ack) == syn quota until 2400 bytes reject with tcp reset
    tcp dport 5003 tcp flags & (syn | ack) == syn counter
    tcp dport 5003 tcp flags & (syn | ack) == syn quota until 1440 bytes reject with tcp reset
    tcp dport 5004 tcp flags & (syn | ack) == syn counter
    tcp dport 5004 tcp flags & (syn | ack) == syn quota until 2400 bytes reject with tcp reset
    tcp dport 5005 tcp flags & (syn | ack) == syn counter
  }
}
",
    );
    let syns = |port: u16| counted(&y, "syns", &format!("dport {port}"));
    let mut peer = node(&y, "y");
    ask(&mut peer, "listen /ip4/10.0.7.2/tcp/5001", "LISTEN");
    ask(&mut peer, "listen /ip4/10.0.7.2/tcp/5002", "LISTEN");
    ask(&mut peer, "listen /ip4/10.0.7.2/tcp/5003", "LISTEN");
    ask(&mut peer, "listen /ip4/10.0.7.2/tcp/5004", "LISTEN");
    let mut report = Vec::new();

    let mut host = node(&x, "x");
    ask(&mut host, "listen /ip4/0.0.0.0/tcp/4001", "LISTEN");
    let refused = ask(&mut host, "dial 10.0.7.2:5000 reuse", "DIAL");
    assert!(
        refused.starts_with("DIALFAIL") && refused.contains("refused"),
        "{refused}"
    );
    let sent = syns(5000);
    assert_eq!(sent, 16, "SYNs of a dial refused every time");
    report.push(format!(
        "nothing listening: {sent} SYNs from 10.0.7.1:4001, then {refused}"
    ));

    let dialed = ask(&mut host, "dial 10.0.7.2:5001 reuse", "DIAL");
    assert!(dialed.starts_with("DIALED"), "{dialed}");
    assert_eq!(field(&dialed, "origin"), "Reused", "{dialed}");
    assert_eq!(field(&dialed, "local"), "10.0.7.1:4001", "{dialed}");
    let from = field(&peer.expect("INCOMING", T), "from").to_string();
    assert_eq!(from, "10.0.7.1:4001");
    let sent = syns(5001);
    assert_eq!(sent, 5, "four refused SYNs, then the one the listener took");
    report.push(format!(
        "refused four times, then listening: {sent} SYNs, {dialed}; the peer saw it from {from}"
    ));

    let punch = tail_taken_over(&mut host, &mut peer, &y, 5002, "punch");
    report.push(format!("a hole punch's dial refused throughout: {punch}"));

    ask(&mut host, "relayed on", "RELAYED");
    let relayed = tail_taken_over(&mut host, &mut peer, &y, 5004, "peer");
    ask(&mut host, "relayed off", "RELAYED");
    let plain = ask(&mut host, "dial 10.0.7.2:5005 peer", "DIAL");
    assert!(
        plain.starts_with("DIALFAIL") && plain.contains("refused"),
        "{plain}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        syns(5005),
        16,
        "no SYN after the failure: the relayed connection closed"
    );
    report.push(format!(
        "a plain dial to a peer with a relayed connection, refused throughout: {relayed}; once \
         the relayed connection closed, {} SYNs",
        syns(5005)
    ));

    // Its 16 SYNs take about 30 ms here: the second dial starts while the first is refused.
    host.send("dialbg 10.0.7.2:5003");
    std::thread::sleep(Duration::from_millis(5));
    host.send("dialbg 10.0.7.2:5003");
    let first = host.expect("DIAL", T);
    assert!(
        first.starts_with("DIALFAIL") && first.contains("refused"),
        "{first}"
    );
    let second = host.expect("DIAL", T);
    assert!(second.starts_with("DIALED"), "{second}");
    assert_eq!(
        field(&second, "local"),
        "10.0.7.1:4001",
        "{second}: from the listening port once the first dial was done"
    );
    let from = field(&peer.expect("INCOMING", T), "from").to_string();
    assert_eq!(from, "10.0.7.1:4001");
    let sent = syns(5003);
    assert_eq!(
        sent, 25,
        "16 refused SYNs of the first dial, 8 of the second, then one"
    );
    report.push(format!(
        "two dials at once, the first refused throughout: {first}; the second waited for it: \
         {second}; {sent} SYNs in all"
    ));
    drop(host);

    let mut impatient = node_with(&x, "x0", &[("NODE_REFUSED_RETRY_MS", "0")]);
    ask(&mut impatient, "listen /ip4/0.0.0.0/tcp/4002", "LISTEN");
    let refused = ask(&mut impatient, "dial 10.0.7.2:5000 reuse", "DIAL");
    assert!(refused.starts_with("DIALFAIL"), "{refused}");
    let total = syns(5000);
    assert_eq!(total, 17, "one more SYN with the window at zero");
    report.push(format!("window zero: 1 SYN, then {refused}"));
    report
}

/// In [`rst_retries`]: a dial from host x's listening port 4001 (`how`, a node's dial command)
/// to y's `port`, whose firewall refuses its first 40 SYNs, fails after its window, and its SYNs
/// go on: the 41st connects, and the next such dial takes that connection over without a SYN
/// of its own. Returns what the two dials reported.
fn tail_taken_over(host: &mut Proc, peer: &mut Proc, y: &str, port: u16, how: &str) -> String {
    let refused = ask(host, &format!("dial 10.0.7.2:{port} {how}"), "DIAL");
    assert!(
        refused.starts_with("DIALFAIL") && refused.contains("refused"),
        "{refused}"
    );
    let from = field(&peer.expect("INCOMING", T), "from").to_string();
    assert_eq!(
        from, "10.0.7.1:4001",
        "the SYNs after the failure are the dial's"
    );
    let syns = || counted(y, "syns", &format!("dport {port}"));
    let sent = syns();
    assert_eq!(sent, 41, "40 refused SYNs, then the one the listener took");
    let taken = ask(host, &format!("dial 10.0.7.2:{port} {how}"), "DIAL");
    assert!(taken.starts_with("DIALED"), "{taken}");
    assert_eq!(field(&taken, "local"), "10.0.7.1:4001", "{taken}");
    assert_eq!(syns(), 41, "taken over: no new SYN");
    assert!(
        peer.wait_for("INCOMING", Duration::from_millis(500))
            .is_none(),
        "one connection"
    );
    format!("{refused}; {sent} SYNs in all, the last accepted from {from}; the next dial: {taken}")
}

/// Hosts x and y (with `x_addrs` and `y_addrs`) on the delay line, 1 ms each way, and
/// `y_rules` (an nftables ruleset: y's firewall) loaded into y.
fn firewalled_pair(x_addrs: &[&str], y_addrs: &[&str], y_rules: &str) -> (Bed, String, String) {
    let mut bed = Bed::new(Wan::Shaped {
        delay_ms: 1,
        jitter_ms: 0,
        loss: 0.0,
    });
    let x = bed.host("x", Uplink::Wan, x_addrs, &[]);
    let y = bed.host("y", Uplink::Wan, y_addrs, &[]);
    bed.nft(&y, y_rules);
    (bed, x, y)
}

/// The packets counted by the first `counter` rule of nftables table `inet <table>` in `ns`
/// whose line contains `rule` (`""`: the first counter).
fn counted(ns: &str, table: &str, rule: &str) -> u64 {
    let output = std::process::Command::new("ip")
        .args(["netns", "exec", ns, "nft", "list", "table", "inet", table])
        .output()
        .expect("nft list");
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .find(|l| l.contains(rule) && l.contains("counter"))
        .and_then(|l| l.split("packets ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no counter for `{rule}` in table inet {table}:\n{text}"))
}

/// The states (`ss`'s names) of the TCP sockets in `ns` between `local` and `remote`.
fn tcp_states(ns: &str, local: &str, remote: &str) -> Vec<String> {
    let output = std::process::Command::new("ip")
        .args(["netns", "exec", ns, "ss", "-Htan"])
        .output()
        .expect("ss");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.get(3) == Some(&local) && fields.get(4) == Some(&remote))
                .then(|| fields[0].to_string())
        })
        .collect()
}

/// A firewall that answers SYNs with ICMP "administratively prohibited" (`reject with icmpx`,
/// as RFC 6092 asks of IPv6 home gateways) ends a dial as a RST does, with `EHOSTUNREACH` over
/// IPv4 and `EACCES` over IPv6: a dial from a listening port refused four times that way gets
/// through on its fifth SYN. Across the delay line (1 ms each way): with no delay the ICMP
/// error arrives while `connect` still holds the socket, and Linux then keeps it as a soft
/// error until the SYN's retransmission a second later. The control: with the window at zero,
/// one SYN and the ICMP's error.
fn icmp_rejections() -> Vec<String> {
    // Four SYNs of each family prohibited (IPv4 SYNs are 60 bytes, IPv6 ones 80), then the
    // listener's; port 5002 prohibits them all.
    let (bed, x, y) = firewalled_pair(
        &["192.31.196.20/24", "2001:db8::20/64"],
        &["192.31.196.21/24", "2001:db8::21/64"],
        "table inet fw {
  chain input {
    type filter hook input priority filter; policy accept;
    tcp flags & (syn | ack) == syn tcp dport { 5000, 5001, 5002 } counter
    meta nfproto ipv4 tcp dport 5000 tcp flags & (syn | ack) == syn quota until 240 bytes reject with icmpx type admin-prohibited
    meta nfproto ipv6 tcp dport 5001 tcp flags & (syn | ack) == syn quota until 320 bytes reject with icmpx type admin-prohibited
    tcp dport 5002 reject with icmpx type admin-prohibited
  }
}
",
    );
    let syns = || counted(&y, "fw", "");
    // Linux answers a /64 neighbour with an ICMPv6 error at most every 250 ms
    // (`icmp.ratelimit`, scaled by the route's prefix): unlimited here.
    bed.sysctl(&y, "net.ipv6.icmp.ratelimit=0");
    let mut peer = node(&y, "y");
    ask(&mut peer, "listen /ip4/192.31.196.21/tcp/5000", "LISTEN");
    ask(&mut peer, "listen /ip6/2001:db8::21/tcp/5001", "LISTEN");
    let mut host = node(&x, "x");
    ask(&mut host, "listen /ip4/0.0.0.0/tcp/4001", "LISTEN");
    ask(&mut host, "listen /ip6/::/tcp/4001", "LISTEN");
    let mut report = Vec::new();
    for (remote, local) in [
        ("192.31.196.21:5000", "192.31.196.20:4001"),
        ("[2001:db8::21]:5001", "[2001:db8::20]:4001"),
    ] {
        let before = syns();
        let dialed = ask(&mut host, &format!("dial {remote} reuse"), "DIAL");
        let sent = syns() - before;
        assert!(dialed.starts_with("DIALED"), "{dialed}: {sent} SYNs");
        assert_eq!(field(&dialed, "local"), local, "{dialed}");
        assert_eq!(field(&peer.expect("INCOMING", T), "from"), local);
        assert_eq!(
            sent, 5,
            "{remote}: four SYNs prohibited, then the listener's"
        );
        report.push(format!(
            "prohibited four times, then listening: {sent} SYNs, {dialed}"
        ));
    }
    drop(host);

    let mut impatient = node_with(&x, "x0", &[("NODE_REFUSED_RETRY_MS", "0")]);
    ask(&mut impatient, "listen /ip4/0.0.0.0/tcp/4002", "LISTEN");
    ask(&mut impatient, "listen /ip6/::/tcp/4002", "LISTEN");
    for (remote, error) in [
        ("192.31.196.21:5002", "No route to host"),
        ("[2001:db8::21]:5002", "Permission denied"),
    ] {
        let before = syns();
        let refused = ask(&mut impatient, &format!("dial {remote} reuse"), "DIAL");
        let sent = syns() - before;
        assert!(
            refused.starts_with("DIALFAIL") && refused.contains(error),
            "{refused}"
        );
        assert_eq!(sent, 1, "{remote}: window zero, one SYN");
        report.push(format!("window zero: {sent} SYN, then {refused}"));
    }
    report
}

/// A hole punch's crossing: x dials y from its listening port, y's firewall answers every SYN
/// of x (with ICMP "administratively prohibited" on ports 5000-5099 until y's own SYN has
/// opened it; with a RST on 5100-5199 throughout), and y dials x from its listening port
/// meanwhile, on the same pair. No NAT is on the way.
///
/// - y's SYN meets x's socket in SYN_SENT: the kernel makes one connection of the two (a
///   simultaneous open).
/// - y's SYN finds x between two SYNs: x's listener accepts y's connection and the kernel
///   refuses x's next SYN (the pair is taken); x's dial, which claimed the pair at the first
///   refusal, returns that connection. Both sides have it as their dial (DCUtR has one of them
///   act as the listener), and x's listener reports nothing.
///
/// After a RST from nearby (1 ms each way across the delay line) x pauses 1 to 3 ms before its
/// next SYN, and y's firewall answers every SYN of x with a RST, even after y's own SYN has
/// left, so the claim connects some of the 80 crossings (checked; 6 to 12 of 80 in local runs,
/// where y's SYN came after the RST for x's SYN, in x's pause). After an ICMP rejection x sends
/// its next SYN at once, so that its socket is in SYN_SENT nearly all the time: behind a Linux
/// NAT only a simultaneous open gets through (`docs/nat-zoo.md`, `prohibited-listen-side`). At
/// most 1 in 20 of those crossings goes through the claim (checked; 0 of 80 in three local
/// runs, and 8 and 11 of 80 in a trial build that paused after ICMP too).
///
/// Rarely (about 1 crossing in 500), y's SYN leaves just after x's SYN met y's firewall and
/// reaches x before the ICMP for x's SYN does: x's socket answers it as a simultaneous open,
/// then the ICMP arrives and Linux aborts the socket (a hard error in SYN_SENT and SYN_RECV).
/// y's dial reports a connection x no longer has, and x's dial fails with the firewall's
/// refusal, its later SYNs rejected as before. Nothing reaches x's listener, so there is
/// nothing to claim; the scenario checks that and counts the crossing as undone (at most 2 of
/// 80). A RST for x's SYN that comes after y's is outside the window of x's socket and changes
/// nothing. The control, for each answer: with the window at zero x's dial fails at once and
/// its listener reports y's connection as accepted.
fn claimed_crossing() -> Vec<String> {
    let (bed, x, y) = firewalled_pair(
        &["192.31.196.20/24"],
        &["192.31.196.21/24"],
        "table inet fw {
  chain input {
    type filter hook input priority filter; policy accept;
    ip saddr 192.31.196.20 tcp dport 5100-5199 tcp flags & (syn | ack) == syn reject with tcp reset
    ct state established,related accept
    ip saddr 192.31.196.20 tcp dport 5000-5099 tcp flags & (syn | ack) == syn reject with icmpx type admin-prohibited
  }
}
",
    );
    // Every prohibited SYN answered: no ICMP rate limit (1 s per destination by default).
    bed.sysctl(&y, "net.ipv4.icmp_ratelimit=0");
    let mut report = Vec::new();
    let crossings = 80;
    let icmp = crossed(&x, &y, (4001, 5000), crossings, &mut report);
    let rst = crossed(&x, &y, (4101, 5100), crossings, &mut report);
    assert!(
        rst.claimed > 0,
        "refused by RSTs: no crossing went through the claim in {crossings} (all simultaneous opens?)"
    );
    assert!(
        icmp.claimed * 20 <= icmp.crossings,
        "rejected by ICMP: {} of {crossings} crossings through the claim, {} simultaneous opens \
         (x paused between its SYNs?)",
        icmp.claimed,
        icmp.simultaneous()
    );
    for (answer, outcome) in [("ICMP", &icmp), ("a RST", &rst)] {
        report.insert(
            0,
            format!(
                "refused by {answer}, {crossings} crossings: both dials connected in {}, {} \
                 through the claim and {} without it (x's SYN met y's: a simultaneous open); {} \
                 simultaneous open undone by the ICMP for x's own SYN",
                outcome.crossings - outcome.undone,
                outcome.claimed,
                outcome.simultaneous(),
                outcome.undone
            ),
        );
    }
    report
}

/// How the crossings of [`claimed_crossing`] on one firewall answer connected.
struct Crossed {
    crossings: usize,
    claimed: usize,
    undone: usize,
}

impl Crossed {
    fn simultaneous(&self) -> usize {
        self.crossings - self.claimed - self.undone
    }
}

/// `crossings` crossings of x's dial (from port `ours`, counted up) and y's (from `theirs`),
/// then the control with x's window at zero; see [`claimed_crossing`].
fn crossed(
    x: &str,
    y: &str,
    (ours, theirs): (u16, u16),
    crossings: u16,
    report: &mut Vec<String>,
) -> Crossed {
    const CLAIMED: &str = "accepted by our listener, is this dial's";
    let mut outcome = Crossed {
        crossings: usize::from(crossings),
        claimed: 0,
        undone: 0,
    };
    // Ports of their own per crossing: the connections of the ones before are still closing.
    for k in 0..=crossings {
        let control = k == crossings;
        let (ours, theirs) = (ours + k, theirs + k);
        let mut env = vec![("NODE_LOG", "libp2p_reuseport=debug")];
        if control {
            env.push(("NODE_REFUSED_RETRY_MS", "0"));
        }
        let mut host = node_with(x, "x", &env);
        ask(
            &mut host,
            &format!("listen /ip4/0.0.0.0/tcp/{ours}"),
            "LISTEN",
        );
        let mut peer = node(y, "y");
        ask(
            &mut peer,
            &format!("listen /ip4/192.31.196.21/tcp/{theirs}"),
            "LISTEN",
        );
        host.send(&format!("dialbg 192.31.196.21:{theirs}"));
        // x sends SYNs every 2 to 5 ms within its window (16 at most): y's dial lands among
        // them.
        std::thread::sleep(Duration::from_millis(5));
        let from_y = ask(
            &mut peer,
            &format!("dial 192.31.196.20:{ours} reuse"),
            "DIAL",
        );
        assert!(from_y.starts_with("DIALED"), "{from_y}");
        assert_eq!(field(&from_y, "local"), format!("192.31.196.21:{theirs}"));
        let dialed = host.expect("DIAL", T);
        if control {
            assert!(dialed.starts_with("DIALFAIL"), "{dialed}");
            let incoming = host.expect("INCOMING", T);
            assert_eq!(field(&incoming, "from"), format!("192.31.196.21:{theirs}"));
            report.push(format!(
                "window zero: {dialed}; y's connection reported as accepted: {incoming}"
            ));
            break;
        }
        if dialed.starts_with("DIALFAIL") {
            // The one outcome no transport can steer (see the doc comment): x's dial ends with
            // the firewall's ICMP, and x's kernel holds nothing on the pair that x's listener
            // could have taken, nor reported.
            std::thread::sleep(Duration::from_millis(100));
            host.drain();
            let x_pair = tcp_states(
                x,
                &format!("192.31.196.20:{ours}"),
                &format!("192.31.196.21:{theirs}"),
            );
            assert!(
                dialed.contains("os error 113")
                    && x_pair.is_empty()
                    && !host.log.iter().any(|l| l.starts_with("INCOMING")),
                "{dialed}; x holds on the pair: {x_pair:?}\n{}",
                host.log.join("\n")
            );
            outcome.undone += 1;
            continue;
        }
        assert!(
            dialed.starts_with("DIALED"),
            "{dialed}\n{}",
            host.log.join("\n")
        );
        assert_eq!(field(&dialed, "local"), format!("192.31.196.20:{ours}"));
        assert_eq!(field(&dialed, "origin"), "Reused", "{dialed}");
        host.send("source 192.31.196.21:9");
        host.expect("SOURCE", T);
        assert!(
            !host.log.iter().any(|l| l.starts_with("INCOMING")),
            "the connection is x's dial's, not reported as accepted: {:?}",
            host.log
        );
        outcome.claimed += usize::from(host.log.iter().any(|l| l.contains(CLAIMED)));
    }
    // About 1 crossing in 500 in local runs (4 in 199 runs of 10, when x paused after ICMP too).
    assert!(
        outcome.undone <= 2,
        "{} of {crossings} simultaneous opens undone by the ICMP for x's own SYN",
        outcome.undone
    );
    outcome
}

/// A dial given up before it connected leaves its firewall's entry for the pair behind (Linux
/// keeps a SYN_SENT entry 2 minutes), and a punch on that pair then fails if the other side's
/// SYN comes first and meets our listener: the entry lets that SYN in, the listener answers
/// from a new socket whose sequence numbers are not the ones the entry recorded, and the
/// firewall drops the answer as invalid. Meanwhile the half-open connection holds the pair, so
/// our own dial from the listening port is refused by the kernel and leaves from another port,
/// which the other firewall drops. (Found in the population: go-libp2p dials a peer directly
/// before it punches, nat-zoo.md.) This crate keeps such a dial half-open
/// ([`Config::given_up_dial_window`](libp2p_reuseport::Config::given_up_dial_window)) for the
/// next dial on its pair. x and y each behind a home router (a stateful firewall for IPv6, a
/// port-preserving NAT for IPv4), 5 ms apart, the second SYN 300 ms after the first:
/// - after x's dial given up (1 s, unanswered) and kept, y first: y's SYN meets the kept
///   socket (a simultaneous open), x's dial takes it over, and both dials connect from their
///   listening ports;
/// - the negative control, the given-up dial closed at once (a zero window), y first: x's
///   router drops its listener's answers as invalid, x holds the pair in SYN-RECV, and neither
///   dial connects;
/// - after x's dial given up and kept, x first: x's dial takes the kept one over, still
///   unanswered (SYN_SENT), and y's SYN meets it; both connect;
/// - y first without the earlier dial: x's router drops y's SYN (nothing to match) and both
///   dials connect (a simultaneous open).
fn stale_entry() -> Vec<String> {
    let mut bed = Bed::new(Wan::Shaped {
        delay_ms: 5,
        jitter_ms: 0,
        loss: 0.0,
    });
    let net = TwoNats::build(&mut bed, &Rules::home(), &Rules::home());
    // (family, x's listening address, x's address as y dials it, y's address as x dials it,
    // the wildcard, each host's router)
    let families = [
        (
            "IPv6",
            "[2001:db8:1::2]",
            "[2001:db8:1::2]",
            "[2001:db8:2::2]",
            "/ip6/::",
            ["2001:db8:1::1", "2001:db8:2::1"],
        ),
        (
            "IPv4",
            "10.0.1.2",
            "192.31.196.1",
            "192.31.196.2",
            "/ip4/0.0.0.0",
            ["10.0.1.1", "10.0.2.1"],
        ),
    ];
    let mut report = Vec::new();
    let mut port = 4000;
    for (family, x_local, x_public, y_public, wildcard, routers) in families {
        // Every hop's neighbour resolved first: a packet that waits for it (a second when the
        // first solicitation goes unanswered) would reach the other side late, after the SYNs
        // that follow it.
        let unbracketed = |addr: &str| addr.trim_matches(['[', ']']).to_string();
        for (ns, targets) in [
            (&net.a, [routers[0].to_string(), unbracketed(y_public)]),
            (&net.b, [routers[1].to_string(), unbracketed(x_public)]),
        ] {
            for target in targets {
                // The far router drops the echo; what counts is the path to it.
                let _ = std::process::Command::new("ip")
                    .args([
                        "netns", "exec", ns, "ping", "-q", "-n", "-c", "1", "-W", "1",
                    ])
                    .arg(target)
                    .output();
            }
        }
        // (an earlier dial given up, kept half-open, y's SYN first)
        for (stale, kept, y_first) in [
            (true, true, true),
            (true, false, true),
            (true, true, false),
            (false, true, true),
        ] {
            port += 1;
            let (x_local, x_public, y_public) = (
                format!("{x_local}:{port}"),
                format!("{x_public}:{port}"),
                format!("{y_public}:{port}"),
            );
            let window = if kept { "10000" } else { "0" };
            // x's log says what its second dial did with the kept one.
            let mut x = node_with(
                &net.a,
                "x",
                &[
                    ("NODE_GIVEN_UP_MS", window),
                    ("NODE_LOG", "libp2p_reuseport=debug"),
                ],
            );
            let mut y = node(&net.b, "y");
            ask(&mut x, &format!("listen {wildcard}/tcp/{port}"), "LISTEN");
            ask(&mut y, &format!("listen {wildcard}/tcp/{port}"), "LISTEN");
            if stale {
                // y's router drops x's SYN; x gives up, as a swarm does with a dial it no
                // longer needs (another address connected first).
                let gave_up = ask(&mut x, &format!("dial {y_public} reuse 1000"), "DIAL");
                assert!(gave_up.starts_with("DIALFAIL"), "{gave_up}");
            }
            let invalid_before = counted(&net.ra, "fw", "ct state invalid");
            let (x_pair, from_x, from_y) = if y_first {
                y.send(&format!("dialbg {x_public} 3000"));
                std::thread::sleep(Duration::from_millis(300));
                let x_pair = tcp_states(&net.a, &x_local, &y_public);
                let from_x = ask(&mut x, &format!("dial {y_public} reuse 2000"), "DIAL");
                (x_pair, from_x, y.expect("DIAL", T))
            } else {
                x.send(&format!("dialbg {y_public} 3000"));
                std::thread::sleep(Duration::from_millis(300));
                let x_pair = tcp_states(&net.a, &x_local, &y_public);
                let from_y = ask(&mut y, &format!("dial {x_public} reuse 2000"), "DIAL");
                (x_pair, x.expect("DIAL", T), from_y)
            };
            let invalid = counted(&net.ra, "fw", "ct state invalid") - invalid_before;
            x.drain();
            let logged = |what: &str| x.log.iter().any(|line| line.contains(what));
            let took_over = logged("taking over the dial on this pair");
            let logs = format!("x: {}\ny: {}", x.log.join("\n"), y.log.join("\n"));
            let case = match (stale, kept, y_first) {
                (true, true, true) => "after a dial given up and kept half-open, y's SYN first",
                (true, false, true) => "after a dial given up and closed, y's SYN first",
                (true, _, false) => "after a dial given up, x's SYN first",
                _ => "no earlier dial, y's SYN first",
            };
            if stale && !kept && y_first {
                assert_eq!(x_pair, ["SYN-RECV"], "{logs}");
                assert!(invalid > 0, "x's router dropped nothing as invalid\n{logs}");
                assert!(from_y.starts_with("DIALFAIL"), "{from_y}\n{logs}");
                assert!(
                    from_x.starts_with("DIALFAIL") || field(&from_x, "local") != x_local,
                    "{from_x}\n{logs}"
                );
                report.push(format!(
                    "{family}, {case}: x holds the pair in {x_pair:?}, its router dropped \
                     {invalid} answers as invalid; y: {from_y}; x: {from_x}"
                ));
            } else {
                if stale && y_first {
                    // y's SYN met x's given-up dial, still in SYN_SENT: a simultaneous open.
                    // x's dial takes that connection over: it leaves from x's listening
                    // port, which the table holds for it (below).
                    assert_eq!(x_pair, ["ESTAB"], "{logs}");
                }
                // x's second dial takes the kept one over, answered or not (then y's SYN
                // meets it).
                assert_eq!(took_over, stale, "x took its kept dial over\n{logs}");
                assert_eq!(invalid, 0, "{logs}");
                assert!(from_x.starts_with("DIALED"), "{from_x}\n{logs}");
                assert_eq!(field(&from_x, "local"), x_local, "{logs}");
                assert!(from_y.starts_with("DIALED"), "{from_y}\n{logs}");
                let kept_dial = if took_over {
                    "x took its kept dial over"
                } else {
                    "no kept dial"
                };
                report.push(format!(
                    "{family}, {case}: {kept_dial}; x: {from_x}; y: {from_y}"
                ));
            }
        }
    }
    report
}
