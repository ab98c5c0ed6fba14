//! This crate side by side with libp2p-tcp 0.45, raw tokio and go-libp2p's reuseport transport
//! (`benches/go`, a child process), interleaved round by round so that drift of a shared machine
//! hits all of them alike.
//!
//! ```text
//! cargo bench --bench compare                  # the full run, about three minutes
//! cargo bench --bench compare -- --quick       # fewer rounds, for a smoke test
//! cargo bench --bench compare -- --scale-only  # only the scale rows (module `scale`)
//! cargo bench --bench compare -- --row 6 --row 7  # only those rows (`--row S`: the scale rows)
//! ```
//!
//! Prints a table with the ratios (ours / libp2p-tcp, ours / raw, ours / go-libp2p) and writes
//! the same figures as JSON to `bench-compare.json` in cargo's target directory (or the path in
//! `BENCH_JSON`). Every dialer listens on its own port and reuses it where it can
//! (`PortUse::Reuse`); raw tokio dials from ephemeral ports (`TcpStream::connect`, then `TCP_NODELAY`, as the transports set it).
//! go-libp2p's column needs Go on PATH (the program is built with `go build`); without it the
//! column is empty and the run says why, first and last.
//!
//! The modules: `impls` (the implementations under test, one column each), `go` (the Go program
//! that dials with go-libp2p), `servers` (the raw tokio echo servers they dial), `workloads`
//! (what each row runs), `shared` (row 10: accepting on a shared listener), `samples` (what a
//! row's dials came to), `refused` (row 11: dials to a closed port), `prune` (row 12, Linux:
//! what asking the kernel about closing pairs costs), `report` (the table and the
//! JSON), `scale` (the rows with 10,000
//! connections and 1,000 listeners, which run child processes of this binary). This file runs
//! the rows in order.

mod go;
mod impls;
#[cfg(target_os = "linux")]
mod prune;
mod refused;
mod report;
mod samples;
mod scale;
mod servers;
mod shared;
mod workloads;

use std::time::Duration;

use crate::{
    impls::{IMPLS, Impl, N, order},
    report::{Report, machine, only},
    samples::{Samples, median, p50, paired_percent},
    servers::Close,
};

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// The two rows of this crate's `metric` as a percentage of libp2p-tcp's and of raw tokio's,
/// each the median of the rounds' ratios (`per_round`: each column's figures in the order of
/// the rounds, which ran interleaved). The verdict against libp2p-tcp reads from these: a
/// ratio of medians keeps the drift of a shared machine between the columns' rounds.
fn paired_rows(report: &mut Report, row: &str, metric: &str, per_round: &[Vec<f64>; N]) {
    for (other, name) in [(Impl::Tcp, "libp2p-tcp"), (Impl::Raw, "raw")] {
        report.add(
            row,
            &format!("{metric}, ours as % of {name} (median of the rounds' ratios)"),
            only(&[(Impl::Ours, paired_percent(per_round, other))]),
            false,
        );
    }
}

/// Says of every implementation that cannot be measured in this run why not.
fn not_measured(say: impl Fn(&str)) {
    for which in IMPLS {
        if let Some(why) = which.not_measured() {
            say(&format!("{} column NOT MEASURED: {why}", which.heading()));
        }
    }
}

fn main() {
    if scale::child_main() {
        return;
    }
    let quick = std::env::args().any(|a| a == "--quick");
    let scale = |full: usize, small: usize| if quick { small } else { full };
    let mut report = Report::default();
    if std::env::args().any(|a| a == "--scale-only") {
        scale::rows(&mut report, quick);
        return finish(&report);
    }
    // `--row N` (repeatable) runs only those rows (row 4 is 4a and 4b); the scale rows only
    // without it or with `--row S`.
    let args: Vec<String> = std::env::args().collect();
    let rows: Vec<&str> = args
        .windows(2)
        .filter(|pair| pair[0] == "--row")
        .map(|pair| pair[1].as_str())
        .collect();
    let wanted = |row: &str| rows.is_empty() || rows.contains(&row);
    let rt = current_thread();
    not_measured(|line| eprintln!("{line}"));

    if wanted("1") {
        eprintln!("row 1: sequential dials, server closes first");
        let mut s = rt.block_on(workloads::sequential(
            Close::ServerFirst,
            scale(10, 2),
            scale(300, 50),
        ));
        let row = "1 seq dial+echo, server closes first";
        report.add(row, "p50 us", s.each_mut().map(|s| s.pct(0.5)), true);
        report.add(
            row,
            "cycle p50 us (dial+echo+close)",
            s.each_mut().map(|s| p50(&mut s.cycle_times)),
            true,
        );
        report.add(row, "p99 us", s.each_mut().map(|s| s.pct(0.99)), true);
    }

    if wanted("2") {
        eprintln!("row 2: sequential dials, client closes first");
        let mut s = rt.block_on(workloads::sequential(
            Close::ClientFirst,
            scale(10, 2),
            scale(300, 50),
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
    }

    if wanted("3") {
        eprintln!("row 3: redials while the remote holds the old connection 300 ms");
        let (mut s, resets) = rt.block_on(workloads::redial_while_held(
            scale(100, 20),
            Duration::from_millis(300),
        ));
        let row = "3 redial, remote holds old conn 300 ms";
        report.add(row, "dial p50 us", s.each_mut().map(|s| s.pct(0.5)), true);
        report.add(row, "dial max us", s.each_mut().map(|s| s.max()), true);
        report.add(row, "remote conns reset", resets, false);
        report.outcomes(row, &s);
    }

    if wanted("4") {
        for (listeners, label) in [
            (1, "4a 200 concurrent dials, 1 listener"),
            (200, "4b 200 concurrent dials, 200 listeners"),
        ] {
            eprintln!("row {label}");
            let mut results = rt.block_on(workloads::concurrent(listeners, scale(21, 2)));
            let walls = results.each_ref().map(|(_, w)| w.clone());
            report.add(
                label,
                "wall ms (median)",
                results.each_mut().map(|(_, w)| median(w)),
                true,
            );
            paired_rows(&mut report, label, "wall ms", &walls);
            let samples: [Samples; N] = results.map(|(samples, _)| samples);
            report.add(
                label,
                "reused (all rounds)",
                samples.each_ref().map(|s| s.reused as f64),
                false,
            );
            report.outcomes(label, &samples);
        }
    }

    if wanted("5") {
        eprintln!("row 5: client-first redials on a 2-worker runtime");
        let mt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let (mut s, walls) = mt.block_on(workloads::redials(scale(5000, 500)));
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
    }

    if wanted("6") {
        eprintln!("row 6: throughput");
        let total = scale(256, 64) * 1024 * 1024;
        let mut mibs: [Vec<f64>; N] = Default::default();
        // A first, uncounted round warms the allocator and the page cache up.
        for round in 0..=scale(31, 2) {
            for i in order(round) {
                let rate = rt.block_on(workloads::throughput(IMPLS[i], total));
                if round > 0 {
                    mibs[i].push(rate);
                }
            }
        }
        let row = "6 one connection, 64 KiB writes";
        let (over_tcp, over_raw) = (
            paired_percent(&mibs, Impl::Tcp),
            paired_percent(&mibs, Impl::Raw),
        );
        report.add(
            row,
            "MiB/s (median)",
            mibs.each_mut().map(|m| median(m)),
            true,
        );
        report.add(
            row,
            "ours, % of libp2p-tcp (median of the rounds' ratios)",
            only(&[(Impl::Ours, over_tcp)]),
            false,
        );
        report.add(
            row,
            "ours, % of raw (median of the rounds' ratios)",
            only(&[(Impl::Ours, over_raw)]),
            false,
        );
    }

    if wanted("7") {
        eprintln!("row 7: accept rate");
        let mut rates: [Vec<f64>; N] = Default::default();
        for round in 0..scale(11, 2) {
            for i in order(round) {
                rates[i].push(rt.block_on(workloads::accept_rate(IMPLS[i], scale(2000, 400))));
            }
        }
        let row = "7 accept, 2 dialing tasks";
        let per_round = rates.clone();
        report.add(
            row,
            "conns/s (median)",
            rates.each_mut().map(|r| median(r)),
            true,
        );
        paired_rows(&mut report, row, "conns/s", &per_round);
    }

    if wanted("8") {
        eprintln!("row 8: source selection");
        let decisions = scale(1_000_000, 100_000);
        let mut per_size = Vec::new();
        for n in [1, 100, 10_000] {
            let best = workloads::source_choice(n, decisions);
            per_size.push(best);
            report.add(
                &format!("8 source choice, {n} addresses"),
                "ns/decision",
                only(&[(Impl::Ours, best)]),
                false,
            );
        }
        report.add(
            "8 source choice",
            "10,000 / 1 addresses",
            only(&[(Impl::Ours, per_size[2] / per_size[0])]),
            false,
        );
    }

    if wanted("9") {
        eprintln!("row 9: the system calls a reusing dial adds");
        let (plain, reusing) = workloads::bind_floor(scale(20_000, 2_000));
        report.add(
            "9 socket+close, plain vs +SO_REUSEPORT+bind to a listening port",
            "us per socket",
            only(&[(Impl::Ours, reusing), (Impl::Raw, plain)]),
            true,
        );
    }

    if wanted("10") {
        eprintln!("row 10: accepting on a shared listener (TCP and WebSocket on one socket)");
        let (
            [shared, plain, raw, raw_first],
            [shared_us, plain_us, raw_us, raw_first_us],
            [shared_raw, plain_raw, shared_raw_first],
        ) = rt.block_on(shared::costs(scale(11, 2), scale(2000, 400)));
        let row = "10 accept, client sends first bytes, 2 dialing tasks";
        report.add(
            row,
            "conns/s (median), shared listener",
            only(&[(Impl::Ours, shared), (Impl::Raw, raw)]),
            true,
        );
        report.add(
            row,
            "conns/s (median), plain listener",
            only(&[(Impl::Ours, plain), (Impl::Raw, raw)]),
            true,
        );
        report.add(
            row,
            "conns/s (median), shared vs raw waiting for first bytes",
            only(&[(Impl::Ours, shared), (Impl::Raw, raw_first)]),
            true,
        );
        for (listener, percent) in [
            ("shared listener, % of raw", shared_raw),
            ("plain listener, % of raw", plain_raw),
            (
                "shared listener, % of raw waiting for first bytes",
                shared_raw_first,
            ),
        ] {
            report.add(
                row,
                &format!("conns/s, {listener} (median of the rounds' ratios)"),
                only(&[(Impl::Ours, percent)]),
                false,
            );
        }
        report.add(
            row,
            "us per accept, shared minus plain",
            only(&[(Impl::Ours, 1e6 / shared - 1e6 / plain)]),
            false,
        );
        let row = "10 one at a time, connect until accepted";
        report.add(
            row,
            "p50 us, shared listener",
            only(&[(Impl::Ours, shared_us), (Impl::Raw, raw_us)]),
            true,
        );
        report.add(
            row,
            "p50 us, plain listener",
            only(&[(Impl::Ours, plain_us), (Impl::Raw, raw_us)]),
            true,
        );
        report.add(
            row,
            "p50 us, shared vs raw waiting for first bytes",
            only(&[(Impl::Ours, shared_us), (Impl::Raw, raw_first_us)]),
            true,
        );
    }

    if wanted("11") {
        eprintln!("row 11: dials to a closed port on a local, non-loopback address");
        refused::rows(&rt, &mut report, scale(10, 2), scale(20, 5));
    }

    #[cfg(target_os = "linux")]
    if wanted("12") {
        eprintln!("row 12: what a prune of the finishing pairs asks of the kernel");
        let (entries, lookup_us, dump_ms) = prune::costs(scale(20_000, 2_000), scale(21, 5));
        let row = "12 prune: one pair looked up vs a dump (Linux)";
        report.add(
            row,
            "TCP entries in the namespace",
            only(&[(Impl::Ours, entries)]),
            false,
        );
        report.add(
            row,
            "us per lookup",
            only(&[(Impl::Ours, lookup_us)]),
            false,
        );
        report.add(row, "ms per dump", only(&[(Impl::Ours, dump_ms)]), false);
    }

    if wanted("S") {
        scale::rows(&mut report, quick);
    }
    finish(&report);
}

/// Cargo's target directory, wherever `CARGO_TARGET_DIR` or the configuration put it: this
/// binary runs from its `<profile>/deps` (`<target>/<profile>/deps`, or under the triple's
/// directory when cross-compiled). The manifest's `target` if the binary was moved elsewhere.
fn target_dir() -> std::path::PathBuf {
    let exe = std::env::current_exe().ok();
    let deps = exe.as_deref().and_then(std::path::Path::parent);
    match deps
        .filter(|d| d.ends_with("deps"))
        .and_then(|d| d.parent()?.parent())
    {
        Some(target) => target.to_path_buf(),
        None => std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target"),
    }
}

/// Prints the table and writes the JSON.
fn finish(report: &Report) {
    let table = report.print();
    let machine = machine();
    println!("machine: {machine}\n");
    println!("{table}");
    not_measured(|line| println!("{line}"));
    let path = std::env::var("BENCH_JSON").unwrap_or_else(|_| {
        target_dir()
            .join("bench-compare.json")
            .to_string_lossy()
            .into_owned()
    });
    match std::fs::write(&path, report.json(&machine)) {
        Ok(()) => println!("figures written to {path}"),
        Err(e) => println!("could not write {path}: {e}"),
    }
}
