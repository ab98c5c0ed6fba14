//! The scale rows: what a dial and an accept cost while 0, 1,000 or 10,000 connections are open
//! (for this crate: held as pairs in its port-reuse table) and 1, 100 or 1,000 listeners exist,
//! and how much resident memory an open connection takes, for this crate, libp2p-tcp and raw
//! tokio in one run.
//!
//! The open connections go to a sink in a child process (`sink`); each implementation is a
//! `node` with its listeners and live connections, one implementation's open at a time and
//! rebuilt every round; memory is measured in one child per implementation (`memory`). The
//! benchmark and its children raise their soft descriptor limit (`RLIMIT_NOFILE`, with nix's
//! safe `setrlimit`) as far as the hard limit allows; a row that does not fit is skipped and
//! says so.
//!
//! ```text
//! cargo bench --bench compare -- --scale-only    # only these rows
//! ```

mod memory;
mod node;
mod sink;

use std::time::Duration;

use crate::{
    impls::Impl,
    report::{Report, only},
    samples::{median, p50},
    servers::{Close, echo_server},
};

use self::{
    node::{Dials, Kind, Node},
    sink::Sink,
};

/// The environment variable that makes this binary a child of the scale rows, and which.
const ROLE: &str = "BENCH_COMPARE_ROLE";

/// The descriptors the benchmark and its sink ask for: 10,000 live connections and 1,000
/// listeners, and room for the rest.
const DESCRIPTORS: u64 = 16_000;

const LIVE: [usize; 3] = [0, 1_000, 10_000];
const LISTENERS: [usize; 3] = [1, 100, 1_000];

/// Connections per implementation in the memory rows.
const MEMORY_CONNS: usize = 10_000;

/// If this process is a child of the scale rows (the sink, a memory child), does its work and
/// returns true.
pub(crate) fn child_main() -> bool {
    match std::env::var(ROLE).as_deref() {
        Ok(sink::SINK) => sink::main(),
        Ok(memory::MEMORY) => memory::main(),
        _ => return false,
    }
    true
}

/// Raises the soft descriptor limit to `want`: within the hard limit, or above it where the
/// process may raise that too (root). Returns the soft limit now in force.
fn raise_descriptor_limit(want: u64) -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 0;
    };
    if soft < want
        && setrlimit(Resource::RLIMIT_NOFILE, want, hard.max(want)).is_err()
        && soft < hard
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
    getrlimit(Resource::RLIMIT_NOFILE).map_or(soft, |(soft, _)| soft)
}

/// The rotating order of the three implementations in `round`.
fn order(round: usize) -> [usize; 3] {
    std::array::from_fn(|k| (round + k) % 3)
}

/// Values of the three implementations, in their columns.
fn columns(values: [f64; 3]) -> [f64; crate::impls::N] {
    let pairs: Vec<(Impl, f64)> = Kind::ALL
        .into_iter()
        .map(Kind::column)
        .zip(values)
        .collect();
    only(&pairs)
}

/// Runs the scale rows and adds them to `report`.
pub(crate) fn rows(report: &mut Report, quick: bool) {
    let (rounds, dials_per_round, accepts_per_round) =
        if quick { (2, 50, 200) } else { (5, 200, 1_000) };
    let limit = raise_descriptor_limit(DESCRIPTORS);
    let mut sink = Sink::start();
    let rt = crate::current_thread();
    // Listeners are made outside `block_on`: they need the runtime entered.
    let _runtime = rt.enter();
    let echo = rt.block_on(echo_server(Close::ServerFirst)).0;
    let mut next_remote = 0u32;
    // A round of each implementation first, not counted: the first figures of a run carry its
    // start (the sink's first accepts, the first pages of every heap).
    for kind in Kind::ALL {
        let mut node = Node::new(kind, 1);
        rt.block_on(node.dial_echo(echo, dials_per_round, &mut Dials::default()));
        rt.block_on(node.accept(accepts_per_round));
    }
    // Dial p50 per (live, listeners), for the flatness rows.
    let mut dial_p50 = Vec::new();

    for listeners in LISTENERS {
        for live in LIVE {
            let plural = if listeners == 1 { "" } else { "s" };
            let row = format!("S {live} live conns, {listeners} listener{plural}");
            let needs = (live + listeners) as u64 + 2_000;
            if needs > limit {
                eprintln!(
                    "row {row}: SKIPPED, it needs {needs} descriptors and the limit is {limit} \
                     (raise the hard limit: ulimit -Hn)"
                );
                continue;
            }
            eprintln!("row {row}");
            let mut dials: [Dials; 3] = Default::default();
            let mut accepts: [Vec<f64>; 3] = Default::default();
            let mut reused = [0.0; 3];
            // One implementation's connections open at a time (10,000 of each would not fit
            // in a common descriptor limit), rebuilt every round so that the rounds still
            // interleave the implementations.
            for round in 0..rounds {
                for i in order(round) {
                    let mut node = Node::new(Kind::ALL[i], listeners);
                    reused[i] += rt.block_on(node.fill(live, next_remote, sink.port)) as f64;
                    next_remote += live as u32;
                    sink.pending += live;
                    if let Some(in_table) = node.pairs_in_table() {
                        assert_eq!(in_table, live, "every live connection is in the table");
                    }
                    rt.block_on(node.dial_echo(echo, dials_per_round, &mut dials[i]));
                    accepts[i].push(rt.block_on(node.accept(accepts_per_round)));
                    // The sink closes first, so that the node's connections close cleanly.
                    sink.close_all();
                    rt.block_on(tokio::time::sleep(Duration::from_millis(100)));
                    drop(node);
                }
            }
            let p50s = dials.each_mut().map(|d| p50(&mut d.times));
            dial_p50.push(((live, listeners), p50s));
            report.add(&row, "dial p50 us", columns(p50s), true);
            report.add(
                &row,
                "accept us/conn (median)",
                columns(accepts.each_mut().map(|a| median(a))),
                true,
            );
            report.add(
                &row,
                "failed connect syscalls",
                columns(dials.each_ref().map(|d| d.failed_syscalls as f64)),
                false,
            );
            report.add(
                &row,
                "failures",
                columns(dials.each_ref().map(|d| d.failed as f64)),
                false,
            );
            report.add(
                &row,
                "live conns from a listening port",
                columns(reused.map(|r| r / rounds as f64)),
                false,
            );
        }
    }

    let ratio = |a: (usize, usize), b: (usize, usize)| {
        let find = |key| dial_p50.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
        match (find(a), find(b)) {
            (Some(a), Some(b)) => std::array::from_fn(|i| 100.0 * a[i] / b[i]),
            _ => [f64::NAN; 3],
        }
    };
    // Flatness: each implementation's dial p50 against its own with 0 live conns and 1
    // listener.
    for (key, row) in [
        ((10_000, 1), "S dial p50 with 10,000 live conns, 1 listener"),
        ((0, 1_000), "S dial p50 with 0 live conns, 1,000 listeners"),
        (
            (10_000, 1_000),
            "S dial p50 with 10,000 live conns, 1,000 listeners",
        ),
    ] {
        report.add(
            row,
            "% of 0 live, 1 listener",
            columns(ratio(key, (0, 1))),
            false,
        );
    }

    eprintln!("row S memory per open connection");
    let memory = Kind::ALL.map(|kind| {
        let figures = memory::measure(kind, &mut sink, next_remote, MEMORY_CONNS);
        next_remote += MEMORY_CONNS as u32;
        figures
    });
    let row = format!("S memory, {MEMORY_CONNS} open conns, 1 listener");
    report.add(
        &row,
        "VmRSS bytes per conn",
        columns(memory.each_ref().map(|m| m.bytes_per_conn)),
        true,
    );
    report.add(
        &row,
        "conns from the listening port",
        columns(memory.each_ref().map(|m| m.reused as f64)),
        false,
    );
    report.add(
        &row,
        "pairs in the port-reuse table",
        only(&[(
            Impl::Ours,
            memory[0].in_table.map_or(f64::NAN, |n| n as f64),
        )]),
        false,
    );
}
