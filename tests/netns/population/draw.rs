//! The draw: the distribution of NAT pairs with its sources, a pair drawn from a seed, what its
//! NATs permit, and the mix of a population.

use std::collections::BTreeMap;

use crate::bed::Leg;

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
pub const LOSS: f64 = 0.01;

pub const DISTANCES: [Leg; 3] = [leg(10, 2), leg(40, 5), leg(120, 10)];
pub const PEER_DISTANCES: [Leg; 3] = [leg(10, 2), leg(30, 5), leg(80, 10)];

pub const fn leg(delay_ms: u32, jitter_ms: u32) -> Leg {
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
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64, pair: usize) -> Self {
        Self(seed ^ (pair as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// The index of the value drawn from `dimension`.
    pub fn draw(&mut self, dimension: &Dimension) -> usize {
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
pub enum NatMapping {
    Preserving,
    Translating,
    Symmetric,
}

/// One side of a pair: its NAT (none for IPv6: a firewall), how it answers unsolicited SYNs,
/// whether a CGNAT sits in front, and its distance to the relay.
#[derive(Clone, Copy, Debug)]
pub struct Side {
    pub mapping: Option<NatMapping>,
    pub rst: bool,
    pub cgnat: bool,
    pub relay: usize,
}

/// A pair: `a` runs `listen`, `b` runs `dial`.
#[derive(Clone, Copy, Debug)]
pub struct Pair {
    pub index: usize,
    pub v6: bool,
    pub a: Side,
    pub b: Side,
    pub peers: usize,
}

/// What the NATs of a pair permit, by the laws the zoo's cells prove.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permit {
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
    pub fn draw(seed: u64, index: usize) -> Self {
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

    pub fn permit(&self) -> Permit {
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
    pub fn translating(&self) -> bool {
        [self.a, self.b]
            .iter()
            .any(|s| s.mapping == Some(NatMapping::Translating))
    }

    /// `v4 A:pp/drop/cg/near B:sym/rst/far peers 30ms` and the like.
    pub fn label(&self) -> String {
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

pub fn share(n: usize, of: usize) -> String {
    if of == 0 {
        return "-".into();
    }
    format!("{n} of {of} ({:.0}%)", 100.0 * n as f64 / of as f64)
}

/// The mix of a population: how many pairs (or sides) of each kind.
pub fn mix(pairs: &[Pair]) -> Vec<String> {
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
