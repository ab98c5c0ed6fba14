//! A population of NAT pairs: many pairs of peers, each behind NATs drawn from a stated
//! distribution (a fixed seed), all punching through one relay at the same time, once with this
//! crate and once with libp2p-tcp, each on a network built afresh from the same draw.
//!
//! The zoo (`zoo.rs`) proves each NAT behaviour one pair at a time; this asks what share of a
//! mix of pairs gets a direct connection, against the share whose NATs permit one, and what many
//! punches at once cost (descriptors, CPU) and leave behind (namespaces, processes).

use std::{
    collections::BTreeMap,
    fs,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use crate::{
    bed::{Bed, Leg, Mapping, Rules, Uplink},
    go_peer,
    proc::Proc,
    zoo,
};

/// One dimension of the distribution: what is drawn, for what (a pair or each side of it), the
/// values with their shares in percent, and where the shares come from.
pub struct Dimension {
    pub name: &'static str,
    pub per: &'static str,
    pub values: &'static [(&'static str, u32)],
    pub source: &'static str,
}

pub const FAMILY: Dimension = Dimension {
    name: "IP family",
    per: "pair",
    values: &[("IPv4", 80), ("IPv6", 20)],
    source: "ASSUMPTION (IPv6 pairs: both peers reach the relay over IPv6, behind stateful \
             firewalls without NAT66)",
};

pub const MAPPING: Dimension = Dimension {
    name: "NAT mapping",
    per: "IPv4 side",
    values: &[
        ("port-preserving", 75),
        ("port-translating", 10),
        ("symmetric", 15),
    ],
    source: "ASSUMPTION, calibrated: neither side symmetric in 0.85² ≈ 72% of IPv4 pairs, near \
             the 70% ± 7.1% DCUtR hole-punch success measured in IPFS by Trautwein et al. 2025 \
             (arXiv 2510.27500)",
};

pub const FILTERING: Dimension = Dimension {
    name: "unsolicited SYN",
    per: "side",
    values: &[("dropped", 70), ("answered with RST", 30)],
    source: "ASSUMPTION (RFC 5382 REQ-4 asks NATs not to answer an unsolicited SYN for 6 s; \
             many home routers do at once)",
};

pub const CGNAT: Dimension = Dimension {
    name: "carrier-grade NAT in front",
    per: "IPv4 side",
    values: &[("no", 90), ("yes", 10)],
    source: "Mandalari et al. 2018, Tracking the Big NAT across Europe and the U.S. (arXiv \
             1704.01296): CGN in 10% of 60+ fixed-broadband ISPs (a share of ISPs, not of \
             lines); the CGN maps endpoint-independently and keeps ports (RFC 6888 REQ-1 with \
             RFC 5382 REQ-1) and drops unsolicited SYNs",
};

pub const RELAY_DISTANCE: Dimension = Dimension {
    name: "relay distance (one way)",
    per: "side",
    values: &[
        ("near, 10 ms ± 2", 34),
        ("regional, 40 ms ± 5", 33),
        ("far, 120 ms ± 10", 33),
    ],
    source: "ASSUMPTION (Trautwein et al. 2025 find success independent of the relay's \
             characteristics)",
};

pub const PEER_DISTANCE: Dimension = Dimension {
    name: "distance between the NATs (one way)",
    per: "pair",
    values: &[("10 ms ± 2", 34), ("30 ms ± 5", 33), ("80 ms ± 10", 33)],
    source: "ASSUMPTION",
};

/// Every path loses this share of frames (the zoo's shaped WANs do too): an ASSUMPTION.
const LOSS: f64 = 0.01;

const DISTANCES: [Leg; 3] = [leg(10, 2), leg(40, 5), leg(120, 10)];
const PEER_DISTANCES: [Leg; 3] = [leg(10, 2), leg(30, 5), leg(80, 10)];

const fn leg(delay_ms: u32, jitter_ms: u32) -> Leg {
    Leg {
        delay_ms,
        jitter_ms,
    }
}

/// The distribution as the lines of a table.
pub fn distribution() -> Vec<String> {
    let mut lines = vec![
        "| drawn | per | values (share %) | source |".to_string(),
        "|---|---|---|---|".to_string(),
    ];
    for d in [
        &FAMILY,
        &MAPPING,
        &FILTERING,
        &CGNAT,
        &RELAY_DISTANCE,
        &PEER_DISTANCE,
    ] {
        let values: Vec<String> = d
            .values
            .iter()
            .map(|(v, share)| format!("{v} {share}"))
            .collect();
        lines.push(format!(
            "| {} | {} | {} | {} |",
            d.name,
            d.per,
            values.join(", "),
            d.source
        ));
    }
    lines.push(format!(
        "| loss | every path | {}% | ASSUMPTION (as the zoo's shaped WANs) |",
        LOSS * 100.0
    ));
    lines
}

/// splitmix64: small and seeded; pair `i` of seed `s` is the same in every population.
struct Rng(u64);

impl Rng {
    fn new(seed: u64, pair: usize) -> Self {
        Self(seed ^ (pair as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// The index of the value drawn from `dimension`.
    fn draw(&mut self, dimension: &Dimension) -> usize {
        let total: u32 = dimension.values.iter().map(|(_, share)| share).sum();
        let mut x = (self.next() % u64::from(total)) as u32;
        for (k, (_, share)) in dimension.values.iter().enumerate() {
            if x < *share {
                return k;
            }
            x -= share;
        }
        dimension.values.len() - 1
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NatMapping {
    Preserving,
    Translating,
    Symmetric,
}

/// One side of a pair: its NAT (none for IPv6: a firewall), how it answers unsolicited SYNs,
/// whether a CGNAT sits in front, and its distance to the relay.
#[derive(Clone, Copy, Debug)]
struct Side {
    mapping: Option<NatMapping>,
    rst: bool,
    cgnat: bool,
    relay: usize,
}

/// A pair: `a` runs `listen`, `b` runs `dial`.
#[derive(Clone, Copy, Debug)]
struct Pair {
    index: usize,
    v6: bool,
    a: Side,
    b: Side,
    peers: usize,
}

/// What the NATs of a pair permit, by the laws the zoo's cells prove.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Permit {
    /// A hole punch (behind a port-translating NAT, rust-libp2p only with this crate's
    /// `Identify`: see the zoo's `port-translating` cell).
    Punch,
    /// A NAT answers with RST and the relay is not as far from one side as from the other:
    /// DCUtR's timing says nothing about the path between the NATs, so a punch needs the SYNs
    /// to cross (the zoo's `rst-*` cells on asymmetric WANs).
    Race,
    /// A symmetric NAT on either side: the relay's observation is no address for the peer.
    No,
}

impl Pair {
    fn draw(seed: u64, index: usize) -> Self {
        let mut rng = Rng::new(seed, index);
        let v6 = rng.draw(&FAMILY) == 1;
        let side = |rng: &mut Rng| {
            let mapping = [
                NatMapping::Preserving,
                NatMapping::Translating,
                NatMapping::Symmetric,
            ][rng.draw(&MAPPING)];
            let rst = rng.draw(&FILTERING) == 1;
            let cgnat = rng.draw(&CGNAT) == 1;
            let relay = rng.draw(&RELAY_DISTANCE);
            Side {
                mapping: (!v6).then_some(mapping),
                rst,
                cgnat: cgnat && !v6,
                relay,
            }
        };
        let a = side(&mut rng);
        let b = side(&mut rng);
        let peers = rng.draw(&PEER_DISTANCE);
        Self {
            index,
            v6,
            a,
            b,
            peers,
        }
    }

    fn permit(&self) -> Permit {
        let symmetric = |s: &Side| s.mapping == Some(NatMapping::Symmetric);
        if symmetric(&self.a) || symmetric(&self.b) {
            Permit::No
        } else if (self.a.rst || self.b.rst) && self.a.relay != self.b.relay {
            Permit::Race
        } else {
            Permit::Punch
        }
    }

    /// Whether libp2p-tcp cannot punch it: a port-translating NAT on either side.
    fn translating(&self) -> bool {
        [self.a, self.b]
            .iter()
            .any(|s| s.mapping == Some(NatMapping::Translating))
    }

    /// The address `dial` should see the direct connection at: A's public address and port.
    fn expected(&self) -> String {
        let i = self.index;
        if self.v6 {
            format!("[{}]:4001", host6(1, i))
        } else {
            let port = match self.a.mapping {
                Some(NatMapping::Translating) => 5001,
                _ => 4001,
            };
            format!("{}:{port}", wan4(1, i))
        }
    }

    /// `v4 A:pp/drop/cg/near B:sym/rst/far peers 30ms` and the like.
    fn label(&self) -> String {
        let side = |s: &Side| {
            let mapping = match s.mapping {
                None => "fw",
                Some(NatMapping::Preserving) => "pp",
                Some(NatMapping::Translating) => "pt",
                Some(NatMapping::Symmetric) => "sym",
            };
            let filter = if s.rst { "rst" } else { "drop" };
            let cgnat = if s.cgnat { "+cgnat" } else { "" };
            let relay = ["near", "regional", "far"][s.relay];
            format!("{mapping}/{filter}{cgnat}/{relay}")
        };
        format!(
            "{} A:{} B:{} peers {}ms",
            if self.v6 { "v6" } else { "v4" },
            side(&self.a),
            side(&self.b),
            PEER_DISTANCES[self.peers].delay_ms
        )
    }
}

// The address plan, side `k` (1 for A, 2 for B) of pair `i`:
//   WAN 192.31.(196+k).(i+1)/22 and 2001:4:112::k:(i+1)/64 (the relay: 192.31.196.10,
//     2001:4:112::10): AS112's prefixes, routable to go-libp2p, which takes the documentation
//     prefixes (2001:db8::/32 among them) for unroutable and would not punch there;
//   a CGNAT's inside 100.(64+k).i.0/24 (CGNAT .1, the home router .2);
//   the LAN 10.k.i.0/24 and 2001:4:112:k(i in 3 hex digits)::/64 (router .1/::1, host .2/::2).

const RELAY4: &str = "/ip4/192.31.196.10/tcp/4001";
const RELAY6: &str = "/ip6/2001:4:112::10/tcp/4001";

fn wan4(k: usize, i: usize) -> String {
    format!("192.31.{}.{}", 196 + k, i + 1)
}

fn wan6(k: usize, i: usize) -> String {
    format!("2001:4:112::{k}:{:x}", i + 1)
}

fn lan6(k: usize, i: usize) -> String {
    format!("2001:4:112:{k}{i:03x}")
}

fn host6(k: usize, i: usize) -> String {
    format!("{}::2", lan6(k, i))
}

/// The largest population the address plan holds.
pub const MAX_PAIRS: usize = 250;

/// The WAN roles of side `k` of pair `i` (the delay line's port names).
fn role(k: usize, i: usize) -> String {
    format!("{}{i}", if k == 1 { "a" } else { "b" })
}

/// Builds side `k` of `pair`; returns the namespace of its host.
fn build_side(bed: &mut Bed, pair: &Pair, k: usize) -> String {
    let i = pair.index;
    let side = if k == 1 { pair.a } else { pair.b };
    let other = 3 - k;
    let role = role(k, i);
    let lan4 = format!("10.{k}.{i}");
    let mut rules = match side.mapping {
        None => Rules::default(),
        Some(NatMapping::Symmetric) => Rules {
            nat4: Some(Mapping::Random),
            ..Rules::default()
        },
        Some(NatMapping::Preserving | NatMapping::Translating) => Rules::home(),
    };
    rules.reset = side.rst;
    if pair.v6 {
        let router = bed.router(
            &role,
            Uplink::Wan,
            &[&format!("{}/64", wan6(k, i))],
            &[&format!("{}::1/64", lan6(k, i))],
            &[&format!("{}::/64 via {}", lan6(other, i), wan6(other, i))],
            &rules,
        );
        return bed.host(
            &format!("{role}h"),
            Uplink::Lan(&router),
            &[&format!("{}/64", host6(k, i))],
            &[&format!("default via {}::1", lan6(k, i))],
        );
    }
    // The home router's WAN address: the public one, or inside the CGNAT.
    let (uplink_ns, home_wan, home_routes) = if side.cgnat {
        let inside = format!("100.{}.{i}", 64 + k);
        let cgnat = bed.router(
            &role,
            Uplink::Wan,
            &[&format!("{}/22", wan4(k, i))],
            &[&format!("{inside}.1/24")],
            &[],
            &Rules::home(),
        );
        (
            Some(cgnat),
            format!("{inside}.2"),
            vec![format!("default via {inside}.1")],
        )
    } else {
        (None, wan4(k, i), Vec::new())
    };
    if side.mapping == Some(NatMapping::Translating) {
        rules.snat = vec![(format!("{lan4}.2"), 4001, format!("{home_wan}:5001"))];
    }
    let prefix = if side.cgnat { 24 } else { 22 };
    let home_routes: Vec<&str> = home_routes.iter().map(String::as_str).collect();
    let router = bed.router(
        &if side.cgnat {
            format!("{role}r")
        } else {
            role.clone()
        },
        match &uplink_ns {
            Some(cgnat) => Uplink::Lan(cgnat),
            None => Uplink::Wan,
        },
        &[&format!("{home_wan}/{prefix}")],
        &[&format!("{lan4}.1/24")],
        &home_routes,
        &rules,
    );
    bed.host(
        &format!("{role}h"),
        Uplink::Lan(&router),
        &[&format!("{lan4}.2/24")],
        &[&format!("default via {lan4}.1")],
    )
}

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

/// What one population run cost and left behind.
#[derive(Debug, Default)]
struct Cost {
    build_s: f64,
    reserve_s: f64,
    punch_s: f64,
    teardown_s: f64,
    /// Open descriptors of all nodes together, of the relay, of the test process: the peak.
    node_fds: usize,
    relay_fds: usize,
    own_fds: usize,
    /// CPU seconds of the nodes (relay, listen, dial) and of the delay line.
    node_cpu_s: f64,
    line_cpu_s: f64,
    /// The machine's busy share (all cores, all work on it) while the dials ran.
    busy: f64,
    namespaces_left: usize,
    processes_left: usize,
    /// Descriptors of the test process before the network was built and after it was gone.
    own_fds_before: usize,
    own_fds_after: usize,
}

/// CPU ticks (user + system) of a process from `/proc/<pid>/stat`: of itself, and of its
/// children it has waited for.
fn cpu_ticks(pid: &str) -> (u64, u64) {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the command's name in parentheses: state is field 3, utime 14, stime 15, cutime 16,
    // cstime 17.
    let rest = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<u64> = rest
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let get = |n: usize| fields.get(n - 3).copied().unwrap_or(0);
    (get(14) + get(15), get(16) + get(17))
}

/// The kernel's clock ticks per second (`getconf CLK_TCK`), 100 on Linux's usual builds.
fn ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// Busy and total jiffies of all CPUs (`/proc/stat`).
fn machine_jiffies() -> (u64, u64) {
    let stat = fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let total: u64 = fields.iter().sum();
    // idle and iowait
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

fn fds(pid: &str) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Samples the descriptors of the nodes (`pids`, the relay first) every 200 ms until stopped;
/// returns the peaks: all nodes, the relay, this process.
struct Sampler {
    stop: Arc<AtomicBool>,
    handle: thread::JoinHandle<(usize, usize, usize)>,
}

impl Sampler {
    fn start(pids: Arc<Mutex<Vec<u32>>>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = thread::spawn(move || {
            let mut peaks = (0, 0, 0);
            while !flag.load(Ordering::Relaxed) {
                let pids = pids.lock().expect("not poisoned").clone();
                let all: usize = pids.iter().map(|p| fds(&p.to_string())).sum();
                let relay = pids.first().map_or(0, |p| fds(&p.to_string()));
                peaks.0 = peaks.0.max(all);
                peaks.1 = peaks.1.max(relay);
                peaks.2 = peaks.2.max(fds("self"));
                thread::sleep(Duration::from_millis(200));
            }
            peaks
        });
        Self { stop, handle }
    }

    fn finish(self) -> (usize, usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or_default()
    }
}

/// Namespaces of this process, and its children, still there.
fn leftovers() -> (usize, usize) {
    let me = std::process::id();
    let prefix = format!("rpt{me}n");
    let namespaces = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| l.starts_with(&prefix))
                .count()
        })
        .unwrap_or(0);
    let mut children = 0;
    if let Ok(dir) = fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
            else {
                continue;
            };
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let ppid: u32 = stat
                .rsplit(')')
                .next()
                .and_then(|rest| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            if ppid == me {
                children += 1;
            }
        }
    }
    (namespaces, children)
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
    if std::env::var_os("ZOO_VERBOSE").is_some() {
        for (k, outcome) in outcomes.iter().enumerate() {
            if !matches!(outcome, Some(Outcome::Direct(_))) {
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

fn share(n: usize, of: usize) -> String {
    if of == 0 {
        return "-".into();
    }
    format!("{n} of {of} ({:.0}%)", 100.0 * n as f64 / of as f64)
}

/// The mix of a population: how many pairs (or sides) of each kind.
fn mix(pairs: &[Pair]) -> Vec<String> {
    let mut lines = Vec::new();
    let v6 = pairs.iter().filter(|p| p.v6).count();
    lines.push(format!(
        "mix: {} pairs: IPv4 {}, IPv6 {v6}",
        pairs.len(),
        pairs.len() - v6
    ));
    let sides: Vec<&Side> = pairs.iter().flat_map(|p| [&p.a, &p.b]).collect();
    let mut count = |what: &str, key: &dyn Fn(&Side) -> Option<&'static str>| {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for side in &sides {
            if let Some(k) = key(side) {
                *counts.entry(k).or_default() += 1;
            }
        }
        let parts: Vec<String> = counts.iter().map(|(k, n)| format!("{k} {n}")).collect();
        lines.push(format!("mix: {what}: {}", parts.join(", ")));
    };
    count("mapping of the IPv4 sides", &|s| {
        s.mapping.map(|m| match m {
            NatMapping::Preserving => "port-preserving",
            NatMapping::Translating => "port-translating",
            NatMapping::Symmetric => "symmetric",
        })
    });
    count("unsolicited SYN, all sides", &|s| {
        Some(if s.rst { "RST" } else { "dropped" })
    });
    count("CGNAT in front of the IPv4 sides", &|s| {
        s.mapping.map(|_| if s.cgnat { "yes" } else { "no" })
    });
    count("relay distance, all sides", &|s| {
        Some(["near", "regional", "far"][s.relay])
    });
    let mut peers: BTreeMap<u32, usize> = BTreeMap::new();
    for p in pairs {
        *peers.entry(PEER_DISTANCES[p.peers].delay_ms).or_default() += 1;
    }
    let parts: Vec<String> = peers.iter().map(|(d, n)| format!("{d} ms {n}")).collect();
    lines.push(format!(
        "mix: distance between the NATs: {}",
        parts.join(", ")
    ));
    lines
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
