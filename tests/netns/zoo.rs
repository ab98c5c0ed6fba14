//! The NAT zoo: DCUtR hole punching through a relay, one cell per NAT behaviour and WAN, with
//! this crate and with libp2p-tcp on the same network, same trials, interleaved run by run.
//!
//! Every run builds its network afresh (no conntrack state carries over), starts the
//! `holepunch` example as relay (on the WAN), `listen` (with a reservation, behind the NAT
//! under test) and `dial` (opens the circuit to `listen`; DCUtR then makes both dial each
//! other), and reads `dial`'s verdict: a direct connection that carried a ping, to the address
//! the NATs should expose, or none while the circuit was open.

use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    path::PathBuf,
    time::{Duration, Instant},
};

use crate::{
    bed::{Bed, Leg, Rules, TwoNats, Uplink, Wan, WanPath, home},
    go_peer, net,
    proc::Proc,
};

const T: Duration = Duration::from_secs(10);

/// From this many runs per cell on, a cell fails when this crate got fewer direct connections
/// than libp2p-tcp.
const COMPARED_FROM: usize = 10;

/// The transport a run's three nodes use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Impl {
    /// This crate (`with_other_transport`).
    Reuseport,
    /// rust-libp2p's libp2p-tcp (`with_tcp`).
    Libp2pTcp,
    /// This crate with refused dials not retried (`Config::rst_retry_window(Duration::ZERO)`).
    ReuseportNoRetry,
}

impl Impl {
    fn name(self) -> &'static str {
        match self {
            Self::Reuseport => "reuseport",
            Self::Libp2pTcp => "libp2p-tcp",
            Self::ReuseportNoRetry => "reuseport-retries-off",
        }
    }

    /// The `holepunch` example's arguments that pick this transport.
    fn args(self) -> &'static [&'static str] {
        match self {
            Self::Reuseport => &["--transport", "reuseport"],
            Self::Libp2pTcp => &["--transport", "libp2p-tcp"],
            Self::ReuseportNoRetry => &["--transport", "reuseport", "--rst-retry-ms", "0"],
        }
    }
}

/// What the NATs of a cell permit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// A hole punch: a direct connection to this address (as `dial` sees it).
    Punch(&'static str),
    /// A hole punch only if the two SYNs cross within the one-way delay between the NATs: a NAT
    /// that answers a SYN arriving before its own host's with a RST also closes the mapping the
    /// refused side's SYN had opened. Judged against libp2p-tcp only.
    Race(&'static str),
    /// No direct connection, by the NATs' rules or because port reuse is off: a control. The
    /// circuit must open.
    None,
}

/// Where the roles of a run go, on a network built for it.
pub struct Layout {
    pub relay: (String, &'static str),
    pub listen: (String, &'static str),
    pub dial: (String, &'static str),
    /// More `listen` peers, started before `listen` (another host behind the same NAT).
    pub others: Vec<(String, &'static str)>,
    /// What happens to the network once `listen` holds its reservation, before `dial` starts.
    pub before_dial: Option<fn(&Self)>,
}

/// One behaviour of the zoo at one WAN.
#[derive(Clone, Copy)]
pub struct Cell {
    pub name: &'static str,
    pub wan: Wan,
    pub expect: Expect,
    /// Run this crate with port reuse off (a control; libp2p-tcp cannot turn it off).
    pub no_reuse: bool,
    /// Also run this crate with refused dials not retried (a third column, not judged).
    pub retries_off: bool,
    /// Which roles the go-libp2p peer plays; the rust side plays the others.
    pub go: Option<GoRoles>,
    /// A direct address of `listen` that `dial` dials together with the circuit
    /// (`--also-dial`), as a swarm that knows one does: the circuit connects first, and the swarm
    /// drops this dial, its SYN unanswered, before the punch.
    pub also_dial: Option<&'static str>,
    pub build: fn(&mut Bed) -> Layout,
}

/// The roles go-libp2p (`tests/interop/go`) plays in a cell.
#[derive(Clone, Copy, Debug, Default)]
pub struct GoRoles {
    pub relay: bool,
    pub listen: bool,
    pub dial: bool,
}

const RELAY4: &str = "/ip4/192.31.196.10/tcp/4001";
const RELAY6: &str = "/ip6/2001:db8::10/tcp/4001";
const ANY4: &str = "/ip4/0.0.0.0/tcp/4001";
const ANY6: &str = "/ip6/::/tcp/4001";

fn two_nats(bed: &mut Bed, a: &Rules, b: &Rules, v6: bool) -> Layout {
    let net = TwoNats::build(bed, a, b);
    let (relay, any) = if v6 { (RELAY6, ANY6) } else { (RELAY4, ANY4) };
    Layout {
        relay: (net.public, relay),
        listen: (net.a, any),
        dial: (net.b, any),
        others: Vec::new(),
        before_dial: None,
    }
}

fn port_preserving(bed: &mut Bed) -> Layout {
    two_nats(bed, &Rules::home(), &Rules::home(), false)
}

fn reset_listen_side(bed: &mut Bed) -> Layout {
    two_nats(bed, &Rules::home().resetting(), &Rules::home(), false)
}

fn reset_dial_side(bed: &mut Bed) -> Layout {
    two_nats(bed, &Rules::home(), &Rules::home().resetting(), false)
}

fn reset_both(bed: &mut Bed) -> Layout {
    let rules = Rules::home().resetting();
    two_nats(bed, &rules, &rules, false)
}

/// NAT A maps 10.0.1.2:4001 to 192.31.196.1:5001 for every destination.
fn translating(bed: &mut Bed) -> Layout {
    let rules = Rules {
        snat: vec![("10.0.1.2".into(), 4001, "192.31.196.1:5001".into())],
        ..Rules::home()
    };
    two_nats(bed, &rules, &Rules::home(), false)
}

/// Two hosts behind NAT A listen on 4001: 10.0.1.2 keeps public port 4001, the NAT maps
/// 10.0.1.3:4001 to 192.31.196.1:4101 for every destination. `listen` is the remapped host.
fn two_hosts(bed: &mut Bed) -> Layout {
    let rules = Rules {
        snat: vec![("10.0.1.3".into(), 4001, "192.31.196.1:4101".into())],
        ..Rules::home()
    };
    let net = TwoNats::build(bed, &rules, &Rules::home());
    let second = bed.host(
        "h1b",
        Uplink::Lan(&net.ra),
        &["10.0.1.3/24"],
        &["default via 10.0.1.1"],
    );
    Layout {
        relay: (net.public, RELAY4),
        listen: (second, ANY4),
        dial: (net.b, ANY4),
        others: vec![(net.a, ANY4)],
        before_dial: None,
    }
}

/// A behind a home NAT (10.0.1.0/24 -> 100.64.0.2) behind a carrier-grade NAT
/// (100.64.0.0/24 -> 192.31.196.1); B behind one home NAT.
fn double_nat(bed: &mut Bed) -> Layout {
    let public = relay_host(bed);
    let cgnat = bed.router(
        "cg",
        Uplink::Wan,
        &["192.31.196.1/24"],
        &["100.64.0.1/24"],
        &[],
        &Rules::home(),
    );
    let router = bed.router(
        "r1",
        Uplink::Lan(&cgnat),
        &["100.64.0.2/24"],
        &["10.0.1.1/24"],
        &["default via 100.64.0.1"],
        &Rules::home(),
    );
    let a = bed.host(
        "h1",
        Uplink::Lan(&router),
        &["10.0.1.2/24"],
        &["default via 10.0.1.1"],
    );
    let (_, b) = home(bed, 2, &Rules::home());
    Layout {
        relay: (public, RELAY4),
        listen: (a, ANY4),
        dial: (b, ANY4),
        others: Vec::new(),
        before_dial: None,
    }
}

/// `listen` behind NAT A, `dial` on a public address: DCUtR's connection reversal.
fn one_public(bed: &mut Bed) -> Layout {
    let public = relay_host(bed);
    let (_, a) = home(bed, 1, &Rules::home());
    let b = bed.host("pb", Uplink::Wan, &["192.31.196.20/24"], &[]);
    Layout {
        relay: (public, RELAY4),
        listen: (a, ANY4),
        dial: (b, ANY4),
        others: Vec::new(),
        before_dial: None,
    }
}

/// Both peers behind one NAT, `listen` on 10.0.1.2:4001, `dial` on 10.0.1.3:4002.
fn same_nat(bed: &mut Bed, hairpin: bool) -> Layout {
    let public = relay_host(bed);
    let mut rules = Rules::home();
    if hairpin {
        rules.hairpin = vec![
            ("192.31.196.1".into(), 4001, "10.0.1.2:4001".into()),
            ("192.31.196.1".into(), 4002, "10.0.1.3:4002".into()),
        ];
        rules.lan4 = Some("10.0.1.0/24".into());
    }
    let (router, a) = home(bed, 1, &rules);
    let b = bed.host(
        "h1b",
        Uplink::Lan(&router),
        &["10.0.1.3/24"],
        &["default via 10.0.1.1"],
    );
    Layout {
        relay: (public, RELAY4),
        listen: (a, ANY4),
        dial: (b, "/ip4/0.0.0.0/tcp/4002"),
        others: Vec::new(),
        before_dial: None,
    }
}

fn hairpin_on(bed: &mut Bed) -> Layout {
    same_nat(bed, true)
}

fn hairpin_off(bed: &mut Bed) -> Layout {
    same_nat(bed, false)
}

fn firewalls6(bed: &mut Bed) -> Layout {
    two_nats(bed, &Rules::home(), &Rules::home(), true)
}

/// NAT A answers unsolicited SYNs with ICMP "administratively prohibited".
fn prohibit_listen_side(bed: &mut Bed) -> Layout {
    two_nats(bed, &Rules::home().prohibiting(), &Rules::home(), false)
}

/// IPv6 behind two stateful firewalls; A's answers unsolicited SYNs with ICMPv6
/// "administratively prohibited", as RFC 6092 asks of home gateways (after 6 s there; at once
/// here, as some do).
fn prohibit6_listen_side(bed: &mut Bed) -> Layout {
    two_nats(bed, &Rules::home().prohibiting(), &Rules::home(), true)
}

/// IPv6 behind two stateful firewalls, `listen`'s host with temporary addresses
/// (`use_tempaddr=2`; the kernel makes one from its `mngtmpaddr` address 2001:db8:1::2, and
/// prefers it as the source of new connections). After `listen` has its reservation the
/// temporary address rotates (the old one deprecated, a new one made), as it does every day or
/// so: peers learned the address of the connection to the relay, made before.
fn temporary6(bed: &mut Bed) -> Layout {
    let layout = two_nats(bed, &Rules::home(), &Rules::home(), true);
    let ns = &layout.listen.0;
    bed.sysctl(ns, "net.ipv6.conf.eth0.use_tempaddr=2");
    bed.sysctl(ns, "net.ipv6.conf.eth0.accept_dad=0");
    net::manage_temporary(ns, "eth0", "2001:db8:1::2/64");
    Layout {
        before_dial: Some(rotate_temporary),
        ..layout
    }
}

/// Deprecates `listen`'s temporary addresses and has the kernel make the next one.
fn rotate_temporary(layout: &Layout) {
    net::rotate_temporary(&layout.listen.0, "eth0", "2001:db8:1::2/64");
}

fn symmetric4(bed: &mut Bed) -> Layout {
    two_nats(bed, &Rules::symmetric(), &Rules::home(), false)
}

fn symmetric6(bed: &mut Bed) -> Layout {
    two_nats(bed, &Rules::symmetric(), &Rules::home(), true)
}

/// The relay's host on the WAN, 192.31.196.10.
fn relay_host(bed: &mut Bed) -> String {
    bed.host("pub", Uplink::Wan, &["192.31.196.10/24"], &[])
}

pub const W0: Wan = Wan::Bridge;
pub const W20: Wan = Wan::Shaped {
    delay_ms: 20,
    jitter_ms: 5,
    loss: 0.01,
};
pub const W60: Wan = Wan::Shaped {
    delay_ms: 60,
    jitter_ms: 10,
    loss: 0.01,
};

const fn leg(delay_ms: u32, jitter_ms: u32) -> Leg {
    Leg {
        delay_ms,
        jitter_ms,
    }
}

/// The paths of a two-NAT network: relay (`pub`) to NAT A (`r1`), relay to NAT B (`r2`), and
/// NAT A to NAT B (the hole punch's).
const fn relay_paths(to_a: Leg, to_b: Leg, a_b: Leg) -> [WanPath; 3] {
    [
        WanPath {
            a: "pub",
            b: "r1",
            leg: to_a,
            one_way: false,
        },
        WanPath {
            a: "pub",
            b: "r2",
            leg: to_b,
            one_way: false,
        },
        WanPath {
            a: "r1",
            b: "r2",
            leg: a_b,
            one_way: false,
        },
    ]
}

/// Relay paths of 10 ms, but 150 ms from the relay to `nat` (`r1` or `r2`): the relayed path
/// from one peer to the other is not as long as the one back.
const fn slow_to(nat: &'static str) -> [WanPath; 4] {
    let [to_a, to_b, a_b] = relay_paths(leg(10, 2), leg(10, 2), DIRECT);
    [
        WanPath {
            a: "pub",
            b: nat,
            leg: leg(150, 5),
            one_way: true,
        },
        to_a,
        to_b,
        a_b,
    ]
}

const DIRECT: Leg = leg(20, 5);
const FAR_PATHS: [WanPath; 3] = relay_paths(leg(150, 5), leg(150, 5), DIRECT);
const NEAR_A_PATHS: [WanPath; 3] = relay_paths(leg(5, 1), leg(150, 5), DIRECT);
const NEAR_B_PATHS: [WanPath; 3] = relay_paths(leg(150, 5), leg(5, 1), DIRECT);
const JITTER_PATHS: [WanPath; 3] = relay_paths(leg(80, 40), leg(80, 40), DIRECT);
const SLOW_TO_A_PATHS: [WanPath; 4] = slow_to("r1");
const SLOW_TO_B_PATHS: [WanPath; 4] = slow_to("r2");

/// The relay far from both peers, the peers close to each other.
pub const RELAY_FAR: Wan = Wan::Paths {
    name: "relay-far",
    paths: &FAR_PATHS,
    other: DIRECT,
    loss: 0.01,
};
/// The relay next to A (`listen`), far from B (`dial`).
pub const RELAY_NEAR_A: Wan = Wan::Paths {
    name: "relay-near-a",
    paths: &NEAR_A_PATHS,
    other: DIRECT,
    loss: 0.01,
};
/// The relay next to B (`dial`), far from A (`listen`).
pub const RELAY_NEAR_B: Wan = Wan::Paths {
    name: "relay-near-b",
    paths: &NEAR_B_PATHS,
    other: DIRECT,
    loss: 0.01,
};
/// Relay paths with a jitter of half their delay, a steady path between the peers.
pub const RELAY_JITTER: Wan = Wan::Paths {
    name: "relay-jitter",
    paths: &JITTER_PATHS,
    other: DIRECT,
    loss: 0.01,
};

/// Relayed messages to A (`listen`) take 150 ms more than those from A: A's DCUtR estimate
/// (half the relayed round trip) is 70 ms longer than the way of its Sync to B, so B dials
/// first.
pub const RELAY_SLOW_TO_A: Wan = Wan::Paths {
    name: "relay-slow-to-a",
    paths: &SLOW_TO_A_PATHS,
    other: DIRECT,
    loss: 0.01,
};
/// Relayed messages to B (`dial`) take 150 ms more than those from B: A's DCUtR estimate is
/// 70 ms shorter than the way of its Sync to B, so A dials first.
pub const RELAY_SLOW_TO_B: Wan = Wan::Paths {
    name: "relay-slow-to-b",
    paths: &SLOW_TO_B_PATHS,
    other: DIRECT,
    loss: 0.01,
};

/// The WANs with per-path delays, which `--wan asym` selects.
const ASYM: [Wan; 6] = [
    RELAY_FAR,
    RELAY_NEAR_A,
    RELAY_NEAR_B,
    RELAY_JITTER,
    RELAY_SLOW_TO_A,
    RELAY_SLOW_TO_B,
];

/// `--wan`'s value: WAN keys (`0`, `20`, `60`, the names of the asymmetric WANs), `asym` for
/// every asymmetric one; an error for a key no cell has.
pub fn wan_keys(spec: &str) -> Result<Vec<String>, String> {
    let known: Vec<String> = cells().iter().map(|c| c.wan.key()).collect();
    let mut keys = Vec::new();
    for key in spec.split(',') {
        if key == "asym" {
            keys.extend(ASYM.iter().map(Wan::key));
        } else if known.iter().any(|k| k == key) {
            keys.push(key.to_string());
        } else {
            let mut names: Vec<&str> = Vec::new();
            for name in &known {
                if !names.contains(&name.as_str()) {
                    names.push(name);
                }
            }
            return Err(format!(
                "--wan {key}: no such WAN (known: {}, asym)",
                names.join(", ")
            ));
        }
    }
    Ok(keys)
}

const A_4001: Expect = Expect::Punch("192.31.196.1:4001");

fn cell(name: &'static str, wan: Wan, expect: Expect, build: fn(&mut Bed) -> Layout) -> Cell {
    Cell {
        name,
        wan,
        expect,
        no_reuse: false,
        retries_off: false,
        go: None,
        also_dial: None,
        build,
    }
}

/// Every cell, in table order.
pub fn cells() -> Vec<Cell> {
    let mut cells = Vec::new();
    for wan in [W0, W20, W60] {
        let both = match wan {
            Wan::Bridge => Expect::Race("192.31.196.1:4001"),
            Wan::Shaped { .. } | Wan::Paths { .. } => A_4001,
        };
        cells.extend([
            cell("port-preserving", wan, A_4001, port_preserving),
            cell("rst-listen-side", wan, A_4001, reset_listen_side),
            cell("rst-dial-side", wan, A_4001, reset_dial_side),
            cell("rst-both", wan, both, reset_both),
        ]);
    }
    for wan in [W20, W60] {
        cells.extend([
            cell(
                "port-translating",
                wan,
                Expect::Punch("192.31.196.1:5001"),
                translating,
            ),
            cell(
                "two-hosts-one-port",
                wan,
                Expect::Punch("192.31.196.1:4101"),
                two_hosts,
            ),
            cell("double-nat", wan, A_4001, double_nat),
            cell("one-public", wan, A_4001, one_public),
            cell("hairpin-on", wan, A_4001, hairpin_on),
            cell("hairpin-off", wan, Expect::None, hairpin_off),
        ]);
    }
    // Asymmetric paths: DCUtR times the two dials from the relayed round trip, which says
    // nothing about the path between the NATs, where a RST closes the punch.
    for wan in ASYM {
        let race = Expect::Race("192.31.196.1:4001");
        cells.push(cell("port-preserving", wan, A_4001, port_preserving));
        for (name, build) in [
            (
                "rst-listen-side",
                reset_listen_side as fn(&mut Bed) -> Layout,
            ),
            ("rst-dial-side", reset_dial_side),
            ("rst-both", reset_both),
        ] {
            cells.push(Cell {
                retries_off: true,
                ..cell(name, wan, race, build)
            });
        }
        // go-libp2p on the other side: it takes the first RST as final, so only the rust
        // side's dial can try again.
        for (name, roles) in [
            ("go-listens-rst-both", GO_LISTENS),
            ("go-dials-rst-both", GO_DIALS),
        ] {
            cells.push(Cell {
                go: Some(roles),
                ..cell(name, wan, race, reset_both)
            });
        }
    }
    for wan in [W0, W20, W60] {
        cells.push(cell(
            "ipv6-firewalls",
            wan,
            Expect::Punch("[2001:db8:1::2]:4001"),
            firewalls6,
        ));
    }
    // IPv6 as deployed: firewalls that answer with ICMP, temporary addresses that rotate.
    for wan in [W0, W20] {
        // Without a WAN delay the ICMP ends the earlier SYN, and NAT B then drops the other
        // side's connection on that pair as invalid (its sequence numbers are not the ones it
        // tracked): a punch needs the two SYNs to cross.
        let (v4, v6) = match wan {
            Wan::Bridge => (
                Expect::Race("192.31.196.1:4001"),
                Expect::Race("[2001:db8:1::2]:4001"),
            ),
            Wan::Shaped { .. } | Wan::Paths { .. } => {
                (A_4001, Expect::Punch("[2001:db8:1::2]:4001"))
            }
        };
        cells.extend([
            cell("prohibited-listen-side", wan, v4, prohibit_listen_side),
            cell(
                "ipv6-prohibited-listen-side",
                wan,
                v6,
                prohibit6_listen_side,
            ),
            cell(
                "ipv6-temporary",
                wan,
                Expect::Punch("[2001:db8:1::2]:4001"),
                temporary6,
            ),
        ]);
    }
    // A direct dial given up before the punch (the circuit won the race) leaves its firewall
    // entry behind: a punch whose other SYN comes first is answered from a new socket, which the
    // firewall drops as invalid, unless the given-up dial is kept half-open to answer it. On
    // relay-slow-to-b, `listen` dials 70 ms before `dial`, and its SYN arrives 20 ms after.
    for wan in [W20, RELAY_SLOW_TO_B] {
        cells.extend([
            Cell {
                also_dial: Some("/ip4/192.31.196.1/tcp/4001"),
                ..cell("given-up-dial", wan, A_4001, port_preserving)
            },
            Cell {
                also_dial: Some("/ip6/2001:db8:1::2/tcp/4001"),
                ..cell(
                    "ipv6-given-up-dial",
                    wan,
                    Expect::Punch("[2001:db8:1::2]:4001"),
                    firewalls6,
                )
            },
        ]);
    }
    for wan in [W0, W20] {
        for (name, roles) in [
            ("go-listens", GO_LISTENS),
            ("go-dials", GO_DIALS),
            (
                "go-listens-go-relay",
                GoRoles {
                    relay: true,
                    ..GO_LISTENS
                },
            ),
            (
                "go-dials-go-relay",
                GoRoles {
                    relay: true,
                    ..GO_DIALS
                },
            ),
        ] {
            cells.push(Cell {
                go: Some(roles),
                ..cell(name, wan, A_4001, port_preserving)
            });
        }
    }
    cells.push(cell("control-symmetric", W20, Expect::None, symmetric4));
    cells.push(cell("control-symmetric-v6", W20, Expect::None, symmetric6));
    cells.push(Cell {
        no_reuse: true,
        ..cell("control-reuse-off", W20, Expect::None, port_preserving)
    });
    cells.push(Cell {
        go: Some(GO_LISTENS),
        ..cell("control-go-symmetric", W20, Expect::None, symmetric4)
    });
    cells.push(Cell {
        go: Some(GO_LISTENS),
        no_reuse: true,
        ..cell("control-go-reuse-off", W20, Expect::None, port_preserving)
    });
    cells
}

const GO_LISTENS: GoRoles = GoRoles {
    relay: false,
    listen: true,
    dial: false,
};

const GO_DIALS: GoRoles = GoRoles {
    relay: false,
    listen: false,
    dial: true,
};

/// What one run did.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// A direct connection to the expected address carried a ping; ms from circuit to it.
    Direct(f64),
    /// The circuit opened, no direct connection came (or one to an unexpected address).
    NoDirect(String),
    /// The run did not get as far as the circuit.
    Broken(String),
}

/// The `holepunch` example binary next to this test binary, built if missing.
pub fn holepunch_binary() -> PathBuf {
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

/// One run of `cell` with `which`, on a fresh network.
pub fn punch_once(cell: &Cell, which: Impl, timeout: Duration) -> Outcome {
    let mut bed = Bed::new(cell.wan);
    let layout = (cell.build)(&mut bed);
    bed.resolve_neighbours();
    let mut procs: Vec<Proc> = Vec::new();
    let result = catch_unwind(AssertUnwindSafe(|| {
        run_roles(cell, which, timeout, &layout, &mut procs)
    }));
    let outcome = result.unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        Outcome::Broken(why)
    });
    // ZOO_VERBOSE=1: the logs of the runs that did not punch; ZOO_VERBOSE=all: of every run.
    let verbose = std::env::var("ZOO_VERBOSE").ok();
    if verbose.as_deref() == Some("all")
        || (verbose.is_some() && !matches!(outcome, Outcome::Direct(_)))
    {
        eprintln!(
            "=== {} {} {}: {outcome:?}",
            cell.name,
            cell.wan.label(),
            which.name()
        );
        for proc in &mut procs {
            proc.drain();
            eprintln!("--- {} ---\n{}", proc.name(), proc.log.join("\n"));
        }
        // The routers' rules with their counters (packets dropped as invalid, refused).
        for ns in bed.namespaces() {
            let rules = std::process::Command::new("ip")
                .args(["netns", "exec", ns, "nft", "list", "ruleset"])
                .output()
                .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
                .unwrap_or_default();
            if !rules.is_empty() {
                eprintln!("--- nft {ns} ---\n{rules}");
            }
        }
    }
    // The processes go before the network.
    drop(procs);
    drop(bed);
    outcome
}

/// A program to start for one role, and the arguments it takes for `role`.
struct Node {
    program: PathBuf,
    /// The transport's arguments for the rust example; none for the go peer.
    transport: &'static [&'static str],
    /// Port reuse off (a control; only this crate's side).
    no_reuse: bool,
    /// `--rst-retry-ms` for this crate's nodes with retries on, from `ZOO_RST_RETRY_MS` (to try
    /// another refused-dial retry window than the default).
    rst_retry_ms: Option<String>,
}

impl Node {
    fn spawn(&self, ns: &str, name: &str, mut args: Vec<String>) -> Proc {
        args.extend(self.transport.iter().map(|a| a.to_string()));
        if self.no_reuse {
            args.push("--no-reuse".into());
        }
        if let Some(ms) = &self.rst_retry_ms {
            args.extend(["--rst-retry-ms".to_string(), ms.clone()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Proc::spawn(ns, name, &self.program, &args, &[])
    }
}

fn run_roles(
    cell: &Cell,
    which: Impl,
    timeout: Duration,
    layout: &Layout,
    procs: &mut Vec<Proc>,
) -> Outcome {
    let rust = Node {
        program: holepunch_binary(),
        transport: which.args(),
        no_reuse: cell.no_reuse && which != Impl::Libp2pTcp,
        rst_retry_ms: std::env::var("ZOO_RST_RETRY_MS")
            .ok()
            .filter(|_| which == Impl::Reuseport),
    };
    let go = match cell.go {
        Some(_) => match go_peer::binary() {
            Ok(program) => Some(Node {
                program: program.clone(),
                transport: &[],
                no_reuse: false,
                rst_retry_ms: None,
            }),
            Err(why) => return Outcome::Broken(format!("the go peer is NOT AVAILABLE: {why}")),
        },
        None => None,
    };
    let node = |go_plays: bool| match (&go, go_plays) {
        (Some(go), true) => go,
        _ => &rust,
    };
    let go_role = cell.go.unwrap_or_default();
    let strings = |args: &[&str]| args.iter().map(|a| a.to_string()).collect::<Vec<String>>();

    let mut relay = node(go_role.relay).spawn(
        &layout.relay.0,
        "relay",
        strings(&["relay", "--listen", layout.relay.1, "--seed", "1"]),
    );
    let relay_id = last_word(&relay.expect("relay: peer", T));
    relay.expect("relay: listening on", T);
    procs.push(relay);
    let relay_addr = format!("{}/p2p/{relay_id}", layout.relay.1);
    let seconds = timeout.as_secs().to_string();
    let common = |listen: &str| {
        strings(&[
            "--relay",
            &relay_addr,
            "--listen",
            listen,
            "--timeout",
            &seconds,
        ])
    };
    for (k, (ns, listen)) in layout.others.iter().enumerate() {
        let mut args = strings(&["listen", "--seed", &(10 + k).to_string()]);
        args.extend(common(listen));
        let mut other = rust.spawn(ns, "other", args);
        other.expect("listen: reservation accepted", T);
        procs.push(other);
    }
    let mut args = strings(&["listen", "--seed", "2"]);
    args.extend(common(layout.listen.1));
    let mut listen = node(go_role.listen).spawn(&layout.listen.0, "listen", args);
    let listen_id = last_word(&listen.expect("listen: peer", T));
    listen.expect("listen: reservation accepted", T * 2);
    procs.push(listen);
    if let Some(before_dial) = layout.before_dial {
        before_dial(layout);
    }
    let mut args = strings(&["dial", "--seed", "3", "--peer", &listen_id]);
    args.extend(common(layout.dial.1));
    if let Some(direct) = cell.also_dial {
        args.extend(strings(&["--also-dial", direct]));
    }
    let mut dial = node(go_role.dial).spawn(&layout.dial.0, "dial", args);
    let status = dial.finish(timeout + T * 3);
    let result = dial.log.iter().find(|l| l.starts_with("RESULT")).cloned();
    let circuit = dial.log.iter().any(|l| l.contains("circuit with"));
    let direct_to = dial
        .log
        .iter()
        .find(|l| l.starts_with("dial: direct connection"))
        .map(|l| socket_of(l));
    let outcome = match (status.map(|s| s.success()), result, cell.expect) {
        (Some(true), Some(line), expect) if line.contains("direct=true") => {
            let ms: f64 = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("ms="))
                .and_then(|ms| ms.parse().ok())
                .unwrap_or(f64::NAN);
            match (expect, direct_to) {
                (Expect::Punch(want) | Expect::Race(want), Some(to)) if to != want => {
                    Outcome::NoDirect(format!("direct connection to {to}, expected {want}"))
                }
                _ => Outcome::Direct(ms),
            }
        }
        (_, Some(line), _) if line.contains("direct=false") && circuit => {
            Outcome::NoDirect(String::new())
        }
        _ => Outcome::Broken(format!(
            "no verdict (status {status:?}):\n{}",
            dial.log.join("\n")
        )),
    };
    procs.push(dial);
    outcome
}

/// The figures of one cell for one transport.
#[derive(Default)]
struct Tally {
    direct: usize,
    runs: usize,
    broken: usize,
    times: Vec<f64>,
}

impl Tally {
    fn add(&mut self, outcome: &Outcome) {
        self.runs += 1;
        match outcome {
            Outcome::Direct(ms) => {
                self.direct += 1;
                self.times.push(*ms);
            }
            Outcome::NoDirect(_) => {}
            Outcome::Broken(_) => self.broken += 1,
        }
    }

    fn median(&mut self) -> String {
        self.times.sort_by(f64::total_cmp);
        match self.times.get(self.times.len() / 2) {
            Some(ms) => format!("{ms:.0}"),
            None => "-".into(),
        }
    }
}

/// Runs `runs` trials of each selected cell (by name, and by the WAN's key: its one-way delay
/// in ms or its name), the transports interleaved (the order rotates run by run), prints the
/// table row by row, and returns it with the cells that failed their expectation.
pub fn run(runs: usize, names: &[String], wans: &[String]) -> (Vec<String>, Vec<String>) {
    let selected: Vec<Cell> = cells()
        .into_iter()
        .filter(|c| names.is_empty() || names.iter().any(|n| c.name.contains(n.as_str())))
        .filter(|c| wans.contains(&c.wan.key()))
        .collect();
    // The retries-off columns only when a selected cell has them: the other tables keep their
    // shape.
    let retries_off = selected.iter().any(|c| c.retries_off);
    let (extra_head, extra_rule) = if retries_off {
        (
            " this crate, retries off: direct | retries off: median ms |",
            "---:|---:|",
        )
    } else {
        ("", "")
    };
    let mut table = vec![
        format!(
            "| cell | WAN one-way delay, loss | runs | this crate: direct | libp2p-tcp: direct | \
             this crate: median ms circuit→direct | libp2p-tcp: median ms |{extra_head} NATs \
             permit a punch |"
        ),
        format!("|---|---|---:|---:|---:|---:|---:|{extra_rule}---|"),
    ];
    for line in &table {
        println!("{line}");
    }
    let mut failures = Vec::new();
    for cell in &selected {
        let started = Instant::now();
        let mut impls = vec![Impl::Reuseport];
        if !cell.no_reuse {
            impls.push(Impl::Libp2pTcp);
        }
        if cell.retries_off {
            impls.push(Impl::ReuseportNoRetry);
        }
        // A punch that works takes well under a second from the circuit (a SYN lost on the WAN
        // costs one more second): 15 s bound a run that does not punch.
        let timeout = match cell.expect {
            Expect::Punch(_) | Expect::Race(_) => Duration::from_secs(15),
            Expect::None => Duration::from_secs(12),
        };
        let mut tallies: Vec<Tally> = impls.iter().map(|_| Tally::default()).collect();
        for run in 0..runs {
            for k in 0..impls.len() {
                let i = (k + run) % impls.len();
                let outcome = punch_once(cell, impls[i], timeout);
                let why = match &outcome {
                    Outcome::Direct(_) => None,
                    Outcome::NoDirect(why) => Some(format!("no direct connection {why}")),
                    Outcome::Broken(why) => Some(format!("broken run: {why}")),
                };
                if let Some(why) = why {
                    eprintln!(
                        "zoo {} {} {} run {}: {why}",
                        cell.name,
                        cell.wan.label(),
                        impls[i].name(),
                        run + 1,
                    );
                }
                tallies[i].add(&outcome);
            }
        }
        let tally = |which: Impl| impls.iter().position(|i| *i == which);
        let mut column = |which: Impl| match tally(which) {
            Some(i) => (tallies[i].direct.to_string(), tallies[i].median()),
            None => ("n/a".to_string(), "n/a".to_string()),
        };
        let (ours_direct, ours_median) = column(Impl::Reuseport);
        let (tcp_direct, tcp_median) = column(Impl::Libp2pTcp);
        let extra = if retries_off {
            let (direct, median) = column(Impl::ReuseportNoRetry);
            format!(" {direct} | {median} |")
        } else {
            String::new()
        };
        let permits = match cell.expect {
            Expect::Punch(addr) => format!("yes ({addr})"),
            Expect::Race(addr) => format!("if the SYNs cross ({addr})"),
            Expect::None => "no".into(),
        };
        let row = format!(
            "| {} | {} | {runs} | {ours_direct} | {tcp_direct} | {ours_median} | {tcp_median} |\
             {extra} {permits} |",
            cell.name,
            cell.wan.label(),
        );
        println!("{row}   ({:.0} s)", started.elapsed().as_secs_f64());
        table.push(row);
        // Against libp2p-tcp only with enough runs to tell: in 2 runs, one punch in a cell
        // where each side punches half the time is chance, not a difference.
        let compared = tally(Impl::Libp2pTcp).is_some() && runs >= COMPARED_FROM;
        let none = Tally::default();
        let ours = &tallies[0];
        let tcp = tally(Impl::Libp2pTcp).map_or(&none, |i| &tallies[i]);
        if let Some(why) = judge(cell, runs, ours, tcp, compared) {
            failures.push(format!("{} {}: {why}", cell.name, cell.wan.label()));
        }
    }
    (table, failures)
}

/// Whether a cell met its expectation: where the NATs permit a punch, all runs but one at most
/// got a direct connection and (when `compared`) at least as many as libp2p-tcp; elsewhere none
/// did, and every run got as far as the circuit.
fn judge(cell: &Cell, runs: usize, ours: &Tally, tcp: &Tally, compared: bool) -> Option<String> {
    match cell.expect {
        Expect::Race(_) => (compared && ours.direct < tcp.direct).then(|| {
            format!(
                "{} direct connections, libp2p-tcp {}",
                ours.direct, tcp.direct
            )
        }),
        Expect::Punch(_) => {
            if ours.direct + 1 < runs {
                return Some(format!("{} of {runs} direct connections", ours.direct));
            }
            if compared && ours.direct < tcp.direct {
                return Some(format!(
                    "{} direct connections, libp2p-tcp {}",
                    ours.direct, tcp.direct
                ));
            }
            None
        }
        Expect::None => {
            if ours.direct > 0 {
                return Some(format!("{} direct connections in a control", ours.direct));
            }
            if ours.broken > 0 {
                return Some(format!(
                    "{} runs did not open the circuit, so the control proves nothing",
                    ours.broken
                ));
            }
            None
        }
    }
}
