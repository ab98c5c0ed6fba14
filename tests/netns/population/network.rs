//! A population's network: the address plan and each side of a pair built from its draw.

use crate::bed::{Bed, Mapping, Rules, Uplink};

use super::draw::{NatMapping, Pair};

// The address plan, side `k` (1 for A, 2 for B) of pair `i`:
//   WAN 192.31.(196+k).(i+1)/22 and 2001:4:112::k:(i+1)/64 (the relay: 192.31.196.10,
//     2001:4:112::10): AS112's prefixes, routable to go-libp2p, which takes the documentation
//     prefixes (2001:db8::/32 among them) for unroutable and would not punch there;
//   a CGNAT's inside 100.(64+k).i.0/24 (CGNAT .1, the home router .2);
//   the LAN 10.k.i.0/24 and 2001:4:112:k(i in 3 hex digits)::/64 (router .1/::1, host .2/::2).

pub const RELAY4: &str = "/ip4/192.31.196.10/tcp/4001";
pub const RELAY6: &str = "/ip6/2001:4:112::10/tcp/4001";

pub fn wan4(k: usize, i: usize) -> String {
    format!("192.31.{}.{}", 196 + k, i + 1)
}

pub fn wan6(k: usize, i: usize) -> String {
    format!("2001:4:112::{k}:{:x}", i + 1)
}

pub fn lan6(k: usize, i: usize) -> String {
    format!("2001:4:112:{k}{i:03x}")
}

pub fn host6(k: usize, i: usize) -> String {
    format!("{}::2", lan6(k, i))
}

/// The largest population the address plan holds.
pub const MAX_PAIRS: usize = 250;

/// The WAN roles of side `k` of pair `i` (the delay line's port names).
pub fn role(k: usize, i: usize) -> String {
    format!("{}{i}", if k == 1 { "a" } else { "b" })
}

/// Builds side `k` of `pair`; returns the namespace of its host.
pub fn build_side(bed: &mut Bed, pair: &Pair, k: usize) -> String {
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

impl Pair {
    /// The address `dial` should see the direct connection at: A's public address and port.
    pub fn expected(&self) -> String {
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
}
