//! Real-network tests in Linux network namespaces: observed addresses behind NAT, DCUtR hole
//! punching over IPv4 NATs and IPv6 firewalls (with negative controls), source selection on a
//! multi-homed host, redials across a real link, and interface changes.
//!
//! Needs root, `ip` (iproute2) and `nft` (nftables). It runs when `LIBP2P_REUSEPORT_NETNS=1`
//! (`.ci/run` sets it); otherwise it says that it did not run and why. Scenario names given as
//! arguments select scenarios; `NETNS_RUNS` sets the number of hole-punch runs (default 20).
//!
//! The same binary is the node the scenarios start inside the namespaces (`NETNS_ROLE=node`).

// A test binary: `pub` inside it is for its own modules.
#![allow(unreachable_pub)]

mod net;
mod node;
mod proc;
mod scenarios;

use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    if std::env::var("NETNS_ROLE").as_deref() == Ok("node") {
        node::main();
        return ExitCode::SUCCESS;
    }
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
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
    scenarios::run(&wanted)
}

/// Root, `ip` and `nft` present.
fn preflight() -> Result<(), String> {
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map_err(|e| format!("cannot run `id -u`: {e}"))?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Err("not root (network namespaces need CAP_SYS_ADMIN and CAP_NET_ADMIN)".into());
    }
    for (tool, package) in [("ip", "iproute2"), ("nft", "nftables")] {
        let found = Command::new(tool)
            .arg(if tool == "ip" { "-V" } else { "--version" })
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Err(format!("`{tool}` not found (apt-get install {package})"));
        }
    }
    Ok(())
}
