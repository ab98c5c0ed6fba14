//! A population of NAT pairs: many pairs of peers, each behind NATs drawn from a stated
//! distribution (a fixed seed), all punching through one relay at the same time, with this
//! crate, with libp2p-tcp and with go-libp2p peers, each on a network built afresh from the same
//! draw. The draw and its sources are in `draw.rs`, the network in `network.rs`, the measures of
//! cost and leftovers in `cost.rs`.
//!
//! The zoo (`zoo.rs`) proves each NAT behaviour one pair at a time; this asks what share of a
//! mix of pairs gets a direct connection, against the share whose NATs permit one, and what many
//! punches at once cost (descriptors, CPU) and leave behind (namespaces, processes).

mod cost;
mod draw;
mod network;

use std::{
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use crate::{
    bed::{Bed, Uplink},
    go_peer,
    proc::Proc,
    zoo,
};

use cost::{Cost, Sampler, cpu_ticks, fds, leftovers, machine_jiffies, ticks_per_second};
use draw::{DISTANCES, LOSS, PEER_DISTANCES, Pair, Permit, distribution, leg, mix, share};
use network::{RELAY4, RELAY6, build_side, lan6, role, wan6};

pub use network::MAX_PAIRS;

/// The peers a population runs with; the relay is the `holepunch` example on this crate's
/// transport for go-libp2p's peers, on the peers' transport otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    Reuseport,
    Libp2pTcp,
    /// go-libp2p (`tests/interop/go`) as `listen` and `dial`.
    Go,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Self::Reuseport => "this crate",
            Self::Libp2pTcp => "libp2p-tcp",
            Self::Go => "go-libp2p",
        }
    }

    /// The `holepunch` example's `--transport`: the peers', or the relay's for go's peers.
    fn arg(self) -> &'static str {
        match self {
            Self::Reuseport | Self::Go => "reuseport",
            Self::Libp2pTcp => "libp2p-tcp",
        }
    }
}

/// What one pair did.
#[derive(Clone, Debug)]
enum Outcome {
    /// A direct connection to the expected address carried a ping; ms from circuit to it.
    Direct(f64),
    /// A direct connection, but to another address.
    Elsewhere(String),
    /// The circuit opened, no direct connection came.
    Relayed,
    /// No circuit: the pair did not get that far (the reason).
    Broken(String),
}

/// The last word of a line: a peer id.
fn last_word(line: &str) -> String {
    line.rsplit(' ').next().unwrap_or_default().to_string()
}

/// `ip:port` of the first multiaddr in `line` after " at ".
fn socket_of(line: &str) -> String {
    let addr = line
        .split(" at ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_default();
    let parts: Vec<&str> = addr.split('/').collect();
    match parts.as_slice() {
        ["", "ip4", ip, "tcp", port, ..] => format!("{ip}:{port}"),
        ["", "ip6", ip, "tcp", port, ..] => format!("[{ip}]:{port}"),
        _ => addr.to_string(),
    }
}

/// Seconds a dial waits for a direct connection once the circuit is open (a punch on the
/// longest paths takes about 20 one-way delays, 2.4 s at 120 ms; a lost SYN adds 1 s).
const PUNCH_TIMEOUT: u64 = 30;
const T: Duration = Duration::from_secs(10);

/// One population on a fresh network with `transport`: the outcome of every pair and the cost.
fn run_once(pairs: &[Pair], transport: Transport) -> (Vec<Outcome>, Cost) {
    let mut cost = Cost {
        own_fds_before: fds("self"),
        ..Cost::default()
    };
    let started = Instant::now();
    let mut paths = Vec::new();
    for p in pairs {
        let (a, b) = (role(1, p.index), role(2, p.index));
        paths.push(("pub".to_string(), a.clone(), DISTANCES[p.a.relay]));
        paths.push(("pub".to_string(), b.clone(), DISTANCES[p.b.relay]));
        paths.push((a, b, PEER_DISTANCES[p.peers]));
    }
    let mut bed = Bed::with_paths(leg(20, 5), LOSS, &paths);
    let mut relay_routes = Vec::new();
    for p in pairs.iter().filter(|p| p.v6) {
        for k in [1, 2] {
            relay_routes.push(format!(
                "{}::/64 via {}",
                lan6(k, p.index),
                wan6(k, p.index)
            ));
        }
    }
    let relay_routes: Vec<&str> = relay_routes.iter().map(String::as_str).collect();
    let relay_ns = bed.host(
        "pub",
        Uplink::Wan,
        &["192.31.196.10/22", "2001:4:112::10/64"],
        &relay_routes,
    );
    let hosts: Vec<(String, String)> = pairs
        .iter()
        .map(|p| (build_side(&mut bed, p, 1), build_side(&mut bed, p, 2)))
        .collect();
    bed.resolve_neighbours();
    cost.build_s = started.elapsed().as_secs_f64();
    println!(
        "population: {} network of {} pairs built in {:.1} s",
        transport.name(),
        pairs.len(),
        cost.build_s
    );

    let ticks = ticks_per_second();
    let (_, children_before) = cpu_ticks("self");
    let pids = Arc::new(Mutex::new(Vec::new()));
    let sampler = Sampler::start(pids.clone());
    let program = zoo::holepunch_binary();
    let go = match transport {
        Transport::Go => Some(go_peer::binary().expect("checked by run").clone()),
        _ => None,
    };
    let spawn = |ns: &str, name: &str, args: &[String]| {
        let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
        let program = match &go {
            Some(go) if !name.starts_with("relay") => go,
            _ => {
                args.extend(["--transport", transport.arg()]);
                &program
            }
        };
        let proc = Proc::spawn(ns, name, program, &args, &[]);
        pids.lock().expect("not poisoned").push(proc.pid());
        proc
    };
    let strings = |args: &[&str]| args.iter().map(|a| a.to_string()).collect::<Vec<String>>();
    let limit = (4 * pairs.len()).max(128).to_string();
    let mut relay = spawn(
        &relay_ns,
        "relay",
        &strings(&[
            "relay",
            "--listen",
            RELAY4,
            "--listen",
            RELAY6,
            "--seed",
            "1",
            "--max-reservations",
            &limit,
            "--max-circuits",
            &limit,
        ]),
    );
    let relay_id = last_word(&relay.expect("relay: peer", T));
    relay.expect("relay: listening on", T);
    relay.expect("relay: listening on", T);
    let relay_addr = |p: &Pair| format!("{}/p2p/{relay_id}", if p.v6 { RELAY6 } else { RELAY4 });
    let any = |p: &Pair| {
        if p.v6 {
            "/ip6/::/tcp/4001"
        } else {
            "/ip4/0.0.0.0/tcp/4001"
        }
    };

    // Every `listen` at once, then every reservation.
    let reserving = Instant::now();
    let listen_timeout = (PUNCH_TIMEOUT + 120 + pairs.len() as u64).to_string();
    let mut listens: Vec<Proc> = pairs
        .iter()
        .zip(&hosts)
        .map(|(p, (a, _))| {
            spawn(
                a,
                &format!("listen {}", p.index),
                &strings(&[
                    "listen",
                    "--relay",
                    &relay_addr(p),
                    "--listen",
                    any(p),
                    "--timeout",
                    &listen_timeout,
                ]),
            )
        })
        .collect();
    let deadline =
        Instant::now() + Duration::from_secs(60) + Duration::from_millis(500) * pairs.len() as u32;
    let mut outcomes: Vec<Option<Outcome>> = vec![None; pairs.len()];
    let mut listen_ids = vec![String::new(); pairs.len()];
    for (k, listen) in listens.iter_mut().enumerate() {
        let left = || deadline.saturating_duration_since(Instant::now());
        match listen.wait_for("listen: peer", left()) {
            Some(line) => listen_ids[k] = last_word(&line),
            None => {
                outcomes[k] = Some(Outcome::Broken("listen did not start".into()));
                continue;
            }
        }
        if listen
            .wait_for("listen: reservation accepted", left())
            .is_none()
        {
            outcomes[k] = Some(Outcome::Broken(format!(
                "no reservation: {}",
                listen.log.last().cloned().unwrap_or_default()
            )));
        }
    }
    cost.reserve_s = reserving.elapsed().as_secs_f64();

    // Every `dial` at once.
    let punching = Instant::now();
    let (busy_before, total_before) = machine_jiffies();
    let seconds = PUNCH_TIMEOUT.to_string();
    let mut dials: Vec<Option<Proc>> = pairs
        .iter()
        .zip(&hosts)
        .enumerate()
        .map(|(k, (p, (_, b)))| {
            outcomes[k].is_none().then(|| {
                spawn(
                    b,
                    &format!("dial {}", p.index),
                    &strings(&[
                        "dial",
                        "--relay",
                        &relay_addr(p),
                        "--peer",
                        &listen_ids[k],
                        "--listen",
                        any(p),
                        "--timeout",
                        &seconds,
                    ]),
                )
            })
        })
        .collect();
    // Reservation, circuit and punch: all bounded by the dial's own timeout, and this.
    let bound = Instant::now() + Duration::from_secs(PUNCH_TIMEOUT) + T * 6;
    for (k, dial) in dials.iter_mut().enumerate() {
        let Some(dial) = dial else { continue };
        let status = dial.finish(bound.saturating_duration_since(Instant::now()));
        let result = dial.log.iter().find(|l| l.starts_with("RESULT")).cloned();
        let circuit = dial.log.iter().any(|l| l.contains("circuit with"));
        let direct_to = dial
            .log
            .iter()
            .find(|l| l.starts_with("dial: direct connection"))
            .map(|l| socket_of(l));
        outcomes[k] = Some(match (status.map(|s| s.success()), result) {
            (Some(true), Some(line)) if line.contains("direct=true") => {
                let ms: f64 = line
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("ms="))
                    .and_then(|ms| ms.parse().ok())
                    .unwrap_or(f64::NAN);
                match direct_to {
                    Some(to) if to != pairs[k].expected() => Outcome::Elsewhere(to),
                    _ => Outcome::Direct(ms),
                }
            }
            (_, Some(line)) if line.contains("direct=false") && circuit => Outcome::Relayed,
            _ => Outcome::Broken(format!(
                "no verdict (status {status:?}): {}",
                dial.log.last().cloned().unwrap_or_default()
            )),
        });
    }
    cost.punch_s = punching.elapsed().as_secs_f64();
    let (busy_after, total_after) = machine_jiffies();
    cost.busy = (busy_after - busy_before) as f64 / (total_after - total_before).max(1) as f64;
    (cost.node_fds, cost.relay_fds, cost.own_fds) = sampler.finish();
    if let Some(verbose) = std::env::var_os("ZOO_VERBOSE") {
        // `all`: every pair's logs, as the zoo's cells print every run's.
        let every = verbose == "all";
        for (k, outcome) in outcomes.iter().enumerate() {
            if every || !matches!(outcome, Some(Outcome::Direct(_))) {
                listens[k].drain();
                eprintln!(
                    "--- pair {k} {} {outcome:?} ---\nlisten:\n{}\ndial:\n{}",
                    pairs[k].label(),
                    listens[k].log.join("\n"),
                    dials[k]
                        .as_ref()
                        .map(|d| d.log.join("\n"))
                        .unwrap_or_default()
                );
            }
        }
    }

    // The processes go before the network; the line's CPU before the line.
    let tearing = Instant::now();
    let line_ticks = bed
        .delay_line_pid()
        .map_or(0, |pid| cpu_ticks(&pid.to_string()).0);
    drop(dials);
    drop(listens);
    drop(relay);
    let (_, children_after) = cpu_ticks("self");
    cost.node_cpu_s = (children_after - children_before) as f64 / ticks;
    cost.line_cpu_s = line_ticks as f64 / ticks;
    drop(bed);
    cost.teardown_s = tearing.elapsed().as_secs_f64();
    (cost.namespaces_left, cost.processes_left) = leftovers();
    // The threads reading the nodes' output close their pipes once they have read the end.
    let settle = Instant::now() + Duration::from_secs(2);
    while fds("self") > cost.own_fds_before && Instant::now() < settle {
        thread::sleep(Duration::from_millis(100));
    }
    cost.own_fds_after = fds("self");
    let outcomes = outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(|| Outcome::Broken("not run".into())))
        .collect();
    (outcomes, cost)
}

/// Runs a population of each size in `sizes` (every pair of a population at once), with this
/// crate and with libp2p-tcp; returns the report. Panics (the scenario fails) when anything
/// leaked, or a pair punched that its NATs do not permit.
pub fn run(sizes: &[usize], seed: u64) -> Vec<String> {
    let mut report = vec![format!(
        "seed {seed}; the distribution (shares marked ASSUMPTION are not measured):"
    )];
    report.extend(distribution());
    let mut scaling = vec![
        "| pairs at once | transport | direct | of pairs whose NATs permit | broken | median ms \
         circuit→direct | peak fds, all nodes | peak fds, relay | peak fds, test process \
         | CPU s, nodes | CPU s, delay line | machine busy while punching | build s | \
         reservations s | punch s | teardown s | left: namespaces, processes | fds of the test \
         process before → after |"
            .to_string(),
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"
            .to_string(),
    ];
    let mut failures = Vec::new();
    let mut transports = vec![Transport::Reuseport, Transport::Libp2pTcp];
    match go_peer::binary() {
        Ok(_) => transports.push(Transport::Go),
        Err(why) => report.push(format!("go-libp2p peers NOT RUN: {why}")),
    }
    for &size in sizes {
        let pairs: Vec<Pair> = (0..size).map(|i| Pair::draw(seed, i)).collect();
        println!("=== population of {size} pairs ===");
        let mut lines = mix(&pairs);
        let permitted: Vec<&Pair> = pairs.iter().filter(|p| p.permit() != Permit::No).collect();
        let races = pairs.iter().filter(|p| p.permit() == Permit::Race).count();
        let translating = permitted.iter().filter(|p| p.translating()).count();
        lines.push(format!(
            "ceiling: the NATs permit a punch in {} ({races} of them only if the SYNs cross: \
             RST and relay paths of unequal length; {translating} behind a port-translating \
             NAT, which rust-libp2p punches only with this crate's Identify, as the zoo's \
             port-translating cell shows); symmetric on a side: {}",
            share(permitted.len(), size),
            size - permitted.len()
        ));
        for line in &lines {
            println!("{line}");
        }
        let mut results = Vec::new();
        for &transport in &transports {
            let (outcomes, cost) = run_once(&pairs, transport);
            let direct: Vec<usize> = (0..size)
                .filter(|&k| matches!(outcomes[k], Outcome::Direct(_)))
                .collect();
            let direct_permitted = direct
                .iter()
                .filter(|&&k| pairs[k].permit() != Permit::No)
                .count();
            let broken = outcomes
                .iter()
                .filter(|o| matches!(o, Outcome::Broken(_)))
                .count();
            let mut times: Vec<f64> = outcomes
                .iter()
                .filter_map(|o| match o {
                    Outcome::Direct(ms) => Some(*ms),
                    _ => None,
                })
                .collect();
            times.sort_by(f64::total_cmp);
            let median = times
                .get(times.len() / 2)
                .map_or("-".into(), |ms| format!("{ms:.0}"));
            let row = format!(
                "| {size} | {} | {} | {} | {broken} | {median} | {} | {} | {} | {:.1} | {:.1} | \
                 {:.0}% | {:.1} | {:.1} | {:.1} | {:.1} | {}, {} | {} → {} |",
                transport.name(),
                share(direct.len(), size),
                share(direct_permitted, permitted.len()),
                cost.node_fds,
                cost.relay_fds,
                cost.own_fds,
                cost.node_cpu_s,
                cost.line_cpu_s,
                cost.busy * 100.0,
                cost.build_s,
                cost.reserve_s,
                cost.punch_s,
                cost.teardown_s,
                cost.namespaces_left,
                cost.processes_left,
                cost.own_fds_before,
                cost.own_fds_after,
            );
            println!("{row}");
            scaling.push(row);
            if cost.namespaces_left > 0
                || cost.processes_left > 0
                || cost.own_fds_after > cost.own_fds_before
            {
                failures.push(format!(
                    "{size} pairs, {}: {} namespaces and {} processes left, the test process's \
                     descriptors {} → {}",
                    transport.name(),
                    cost.namespaces_left,
                    cost.processes_left,
                    cost.own_fds_before,
                    cost.own_fds_after,
                ));
            }
            for (k, o) in outcomes.iter().enumerate() {
                if matches!(o, Outcome::Direct(_)) && pairs[k].permit() == Permit::No {
                    failures.push(format!(
                        "pair {k} ({}) punched with {}, which its NATs do not permit",
                        pairs[k].label(),
                        transport.name()
                    ));
                }
                if let Outcome::Broken(why) = o {
                    eprintln!(
                        "population {size} {} pair {k} ({}): broken: {why}",
                        transport.name(),
                        pairs[k].label()
                    );
                }
            }
            results.push(outcomes);
        }
        let names: Vec<&str> = transports.iter().map(|t| t.name()).collect();
        lines.push(format!(
            "| pair | kind | NATs permit | {} |",
            names.join(" | ")
        ));
        lines.push(format!("|---:|---|---|{}", "---|".repeat(names.len())));
        for (k, p) in pairs.iter().enumerate() {
            let permit = match p.permit() {
                Permit::Punch => "yes",
                Permit::Race => "if the SYNs cross",
                Permit::No => "no",
            };
            let cell = |o: &Outcome| match o {
                Outcome::Direct(ms) => format!("direct {ms:.0} ms"),
                Outcome::Elsewhere(to) => format!("direct to {to}"),
                Outcome::Relayed => "relayed".into(),
                Outcome::Broken(_) => "broken".into(),
            };
            let cells: Vec<String> = results.iter().map(|r| cell(&r[k])).collect();
            lines.push(format!(
                "| {k} | {} | {permit} | {} |",
                p.label(),
                cells.join(" | ")
            ));
        }
        report.push(format!("population of {size} pairs:"));
        report.extend(lines);
    }
    report.push("every population, its cost and what it left:".into());
    report.extend(scaling);
    assert!(failures.is_empty(), "population failed: {failures:#?}");
    report
}
