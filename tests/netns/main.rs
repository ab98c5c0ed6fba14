//! Real-network tests in Linux network namespaces: the delay line's accuracy, observed addresses
//! behind NAT, source selection on a multi-homed host, redials across a real link, interface
//! changes, refused dials from a listening port, and the NAT zoo: DCUtR hole punching through a
//! relay over a WAN with latency, jitter and loss, one cell per NAT behaviour, this crate and
//! libp2p-tcp (and go-libp2p peers) on the same network (`zoo.rs`).
//!
//! Needs root, `ip` (iproute2), `nft` (nftables) and `ping` (iputils-ping); Go for the
//! go-libp2p cells. It runs when `LIBP2P_REUSEPORT_NETNS=1` (`.ci/run` sets it); otherwise it
//! says that it did not run and why. Arguments: scenario names select scenarios; `--runs N`,
//! `--cell NAME` and `--wan WAN,WAN` select the zoo's runs, cells and WANs (by one-way delay in
//! ms, or by the name of a WAN with per-path delays, `asym` for all of those; default: 2 runs
//! of every cell at 0 and 20 ms, the short version CI runs; `scripts/natzoo.sh` runs the full
//! matrix). The population of NAT pairs (`population.rs`, `scripts/population.sh`) runs only
//! when named: `population [--pairs N,N...] [--seed S]` (default: 6 pairs, seed 1).
//!
//! The same binary is the node the scenarios start inside the namespaces (`NETNS_ROLE=node`)
//! and the delay line (`NETNS_ROLE=delayline`).

// A test binary: `pub` inside it is for its own modules.
#![allow(unreachable_pub)]
// Network namespaces, nftables and TAP devices are Linux's: elsewhere the binary only says that
// the suite does not exist there (see `main` at the bottom).
#![cfg_attr(not(target_os = "linux"), allow(dead_code, unused_imports))]

#[cfg(target_os = "linux")]
mod bed;
#[cfg(target_os = "linux")]
mod delayline;
#[cfg(target_os = "linux")]
#[path = "../util/go_peer.rs"]
mod go_peer;
#[cfg(target_os = "linux")]
mod net;
#[cfg(target_os = "linux")]
mod node;
#[cfg(target_os = "linux")]
mod population;
#[cfg(target_os = "linux")]
mod proc;
#[cfg(target_os = "linux")]
mod scenarios;
#[cfg(target_os = "linux")]
mod zoo;

use std::process::{Command, ExitCode};

#[cfg(target_os = "linux")]
fn main() -> ExitCode {
    match std::env::var("NETNS_ROLE").as_deref() {
        Ok("node") => {
            node::main();
            return ExitCode::SUCCESS;
        }
        Ok("delayline") => {
            delayline::main();
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    let options = match options() {
        Ok(options) => options,
        Err(why) => {
            println!("netns: {why}");
            return ExitCode::FAILURE;
        }
    };
    if std::env::var("LIBP2P_REUSEPORT_NETNS").as_deref() != Ok("1") {
        println!(
            "netns tests NOT RUN: they build Linux network namespaces and need root, `ip` and \
             `nft`; run them with LIBP2P_REUSEPORT_NETNS=1 cargo test --test netns (as .ci/run does)"
        );
        return ExitCode::SUCCESS;
    }
    if let Err(why) = preflight() {
        println!("netns tests CANNOT RUN: {why}");
        return ExitCode::FAILURE;
    }
    net::remove_stale();
    scenarios::run(&options)
}

// Network namespaces are Linux's.
#[cfg(not(target_os = "linux"))]
fn main() -> ExitCode {
    println!(
        "netns tests NOT RUN: they build Linux network namespaces, which this platform does not \
         have; run them on Linux as root (LIBP2P_REUSEPORT_NETNS=1 cargo test --test netns)"
    );
    ExitCode::SUCCESS
}

/// `[SCENARIO...] [--runs N] [--cell NAME]... [--wan WAN,WAN...] [--pairs N,N...] [--seed S]`;
/// options cargo's test harness passes (such as `--nocapture`) are ignored.
#[cfg(target_os = "linux")]
fn options() -> Result<scenarios::Options, String> {
    let mut options = scenarios::Options {
        runs: DEFAULT_ZOO_RUNS,
        wans: DEFAULT_ZOO_WANS.iter().map(|w| w.to_string()).collect(),
        pairs: DEFAULT_POPULATION.to_vec(),
        seed: 1,
        ..Default::default()
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--runs" => {
                options.runs = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|n| *n > 0)
                    .ok_or("--runs needs a positive number")?;
            }
            "--pairs" => {
                options.pairs = args
                    .next()
                    .ok_or("--pairs needs sizes, e.g. 6 or 10,50,100")?
                    .split(',')
                    .map(|n| {
                        n.parse()
                            .ok()
                            .filter(|n| (1..=population::MAX_PAIRS).contains(n))
                    })
                    .collect::<Option<Vec<usize>>>()
                    .ok_or(format!(
                        "--pairs needs sizes from 1 to {}",
                        population::MAX_PAIRS
                    ))?;
            }
            "--seed" => {
                options.seed = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .ok_or("--seed needs a number")?;
            }
            "--cell" => options
                .cells
                .push(args.next().ok_or("--cell needs a name")?),
            "--wan" => {
                let wans = args
                    .next()
                    .ok_or("--wan needs delays in ms or names, e.g. 0,20,60 or asym")?;
                options.wans = zoo::wan_keys(&wans)?;
            }
            flag if flag.starts_with('-') => {}
            name => options.scenarios.push(name.to_string()),
        }
    }
    Ok(options)
}

/// Runs per zoo cell and transport when `--runs` is not given, and the WANs (one-way delay in
/// ms) when `--wan` is not: the short version CI runs. `scripts/natzoo.sh` runs the full matrix
/// (20 runs, 0, 20 and 60 ms).
const DEFAULT_ZOO_RUNS: usize = 2;
const DEFAULT_ZOO_WANS: [&str; 2] = ["0", "20"];

/// The population's size when `--pairs` is not given: the short version, cheap enough for CI.
/// `scripts/population.sh` runs 50 pairs, and 10, 50 and 100 at once with `--pairs 10,50,100`.
const DEFAULT_POPULATION: [usize; 1] = [6];

/// Root, `ip` and `nft` present.
#[cfg(target_os = "linux")]
fn preflight() -> Result<(), String> {
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map_err(|e| format!("cannot run `id -u`: {e}"))?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Err("not root (network namespaces need CAP_SYS_ADMIN and CAP_NET_ADMIN)".into());
    }
    for (tool, package) in [
        ("ip", "iproute2"),
        ("nft", "nftables"),
        ("ping", "iputils-ping"),
        ("setpriv", "util-linux"),
    ] {
        let found = Command::new(tool)
            .arg(if tool == "nft" { "--version" } else { "-V" })
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Err(format!("`{tool}` not found (apt-get install {package})"));
        }
    }
    Ok(())
}
