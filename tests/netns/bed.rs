//! Test networks: a WAN segment (a kernel bridge, or the delay line with latency, jitter and
//! loss), routers with nftables rules (NAT, firewall, hairpinning) and hosts behind them.
//!
//! Interfaces: a host's is `eth0`; a router's uplink is `wan` and its LAN side is a bridge `lan`
//! (so a router can serve several hosts, or another router behind it).

use std::{fmt::Write as _, time::Duration};

use crate::{
    net::{self, Net},
    proc::Proc,
};

/// The segment between the routers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Wan {
    /// A kernel bridge: no added delay.
    Bridge,
    /// The delay line: `delay_ms` one way, `jitter_ms` either side of it, `loss` per frame.
    Shaped {
        delay_ms: u32,
        jitter_ms: u32,
        loss: f64,
    },
    /// The delay line with a delay per path: `paths` between the WAN ports of two roles (the
    /// namespaces' names given to [`Bed::host`] and [`Bed::router`]: the relay's host `pub`,
    /// NAT A `r1`, NAT B `r2`), `other` between any other two ports.
    Paths {
        /// What `--wan` selects it by.
        name: &'static str,
        paths: &'static [WanPath],
        other: Leg,
        loss: f64,
    },
}

/// One way across a path of the delay line: `delay_ms`, `jitter_ms` either side of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leg {
    pub delay_ms: u32,
    pub jitter_ms: u32,
}

/// The path between the WAN ports of roles `a` and `b`, the same both ways, or from `a` to `b`
/// only when `one_way` (which then wins over a path both ways between them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WanPath {
    pub a: &'static str,
    pub b: &'static str,
    pub leg: Leg,
    pub one_way: bool,
}

impl Wan {
    /// What `--wan` selects it by: the one-way delay in ms for a uniform WAN (`0` for the
    /// bridge), the name for one with per-path delays.
    pub fn key(&self) -> String {
        match *self {
            Self::Bridge => "0".into(),
            Self::Shaped { delay_ms, .. } => delay_ms.to_string(),
            Self::Paths { name, .. } => name.into(),
        }
    }

    /// `20ms±5 1%` and the like; `0ms` for the bridge.
    pub fn label(&self) -> String {
        match *self {
            Self::Bridge => "0ms".into(),
            Self::Shaped {
                delay_ms,
                jitter_ms,
                loss,
            } => {
                let mut label = format!("{delay_ms}ms");
                if jitter_ms > 0 {
                    label.push_str(&format!("±{jitter_ms}"));
                }
                if loss > 0.0 {
                    label.push_str(&format!(" {}%", loss * 100.0));
                }
                label
            }
            Self::Paths {
                name, paths, loss, ..
            } => {
                // The zoo's roles by what they are.
                let role = |r: &str| {
                    match r {
                        "pub" => "relay",
                        "r1" => "A",
                        "r2" => "B",
                        other => other,
                    }
                    .to_string()
                };
                let legs: Vec<String> = paths
                    .iter()
                    .map(|p| {
                        let arrow = if p.one_way { "→" } else { "↔" };
                        format!("{}{arrow}{} {}", role(p.a), role(p.b), p.leg.label())
                    })
                    .collect();
                let mut label = format!("{name}: {}", legs.join(", "));
                if loss > 0.0 {
                    label.push_str(&format!(", {}%", loss * 100.0));
                }
                label
            }
        }
    }
}

impl Leg {
    /// `20ms±5` and the like.
    pub fn label(&self) -> String {
        if self.jitter_ms > 0 {
            format!("{}ms±{}", self.delay_ms, self.jitter_ms)
        } else {
            format!("{}ms", self.delay_ms)
        }
    }
}

/// Where a namespace's uplink is attached.
#[derive(Clone, Copy, Debug)]
pub enum Uplink<'a> {
    /// The WAN segment.
    Wan,
    /// The LAN bridge of this router namespace.
    Lan(&'a str),
}

/// How a router maps source addresses of the traffic it sends to its WAN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mapping {
    /// `masquerade`: keeps the source port when the resulting connection is unique (a
    /// port-preserving NAT; in practice endpoint-independent for one host per port).
    PortPreserving,
    /// `masquerade fully-random`: a random public port per connection (a symmetric NAT).
    Random,
}

/// A router's nftables rules. Unsolicited inbound traffic from the WAN is dropped silently unless
/// `reset` is set.
#[derive(Clone, Debug, Default)]
pub struct Rules {
    /// Answer unsolicited inbound TCP from the WAN with a RST (as many home routers do).
    pub reset: bool,
    /// Answer unsolicited inbound TCP from the WAN with ICMP "administratively prohibited"
    /// (`reject with icmpx`), as IPv6 home gateways are asked to (RFC 6092).
    pub prohibit: bool,
    /// IPv4 source NAT to the WAN address; `None` routes without NAT.
    pub nat4: Option<Mapping>,
    /// IPv6 source NAT (NAT66); `None` is a plain stateful firewall.
    pub nat6: Option<Mapping>,
    /// Static source NAT before the mapping: `(inside IP, source port, public "ip:port")`.
    pub snat: Vec<(String, u16, String)>,
    /// Hairpinning: traffic from the LAN to `(public IP, port)` goes to `inside "ip:port"`, its
    /// source translated to the public IP, as if it had come back in from the WAN.
    pub hairpin: Vec<(String, u16, String)>,
    /// The LAN prefix, for the hairpin's source translation.
    pub lan4: Option<String>,
}

impl Rules {
    /// A home router: port-preserving NAT for IPv4, a stateful firewall for IPv6.
    pub fn home() -> Self {
        Self {
            nat4: Some(Mapping::PortPreserving),
            ..Self::default()
        }
    }

    /// A symmetric NAT for IPv4 and IPv6 (a random public port per connection).
    pub fn symmetric() -> Self {
        Self {
            nat4: Some(Mapping::Random),
            nat6: Some(Mapping::Random),
            ..Self::default()
        }
    }

    /// This router with unsolicited inbound TCP answered by a RST.
    pub fn resetting(self) -> Self {
        Self {
            reset: true,
            ..self
        }
    }

    /// This router with unsolicited inbound TCP answered by ICMP "administratively prohibited".
    pub fn prohibiting(self) -> Self {
        Self {
            prohibit: true,
            ..self
        }
    }

    /// The nftables ruleset.
    fn ruleset(&self) -> String {
        let reset = if self.reset {
            "    iifname \"wan\" meta l4proto tcp reject with tcp reset\n"
        } else if self.prohibit {
            "    iifname \"wan\" meta l4proto tcp reject with icmpx type admin-prohibited\n"
        } else {
            ""
        };
        let hairpin_forward = if self.hairpin.is_empty() {
            ""
        } else {
            "    iifname \"lan\" oifname \"lan\" accept\n"
        };
        let mut rules = format!(
            "table inet fw {{
  chain input {{
    type filter hook input priority filter; policy accept;
    iifname \"wan\" ct state established,related accept
    iifname \"wan\" icmpv6 type {{ nd-neighbor-solicit, nd-neighbor-advert }} accept
{reset}    iifname \"wan\" drop
  }}
  chain forward {{
    type filter hook forward priority filter; policy drop;
    ct state invalid counter drop
    ct state established,related accept
    iifname \"lan\" oifname \"wan\" accept
{hairpin_forward}{reset}  }}
}}
"
        );
        let mut pre = String::new();
        let mut post = String::new();
        for (public, port, inside) in &self.hairpin {
            pre.push_str(&format!(
                "    iifname \"lan\" ip daddr {public} tcp dport {port} dnat to {inside}\n"
            ));
        }
        if let (Some((public, _, _)), Some(lan)) = (self.hairpin.first(), &self.lan4) {
            post.push_str(&format!(
                "    oifname \"lan\" ip saddr {lan} ct status dnat snat to {public}\n"
            ));
        }
        for (inside, port, public) in &self.snat {
            post.push_str(&format!(
                "    oifname \"wan\" ip saddr {inside} tcp sport {port} snat to {public}\n"
            ));
        }
        if let Some(mapping) = self.nat4 {
            post.push_str(&format!("    oifname \"wan\" {}\n", masquerade(mapping)));
        }
        if !pre.is_empty() || !post.is_empty() {
            rules.push_str(&format!(
                "table ip nat {{
  chain prerouting {{
    type nat hook prerouting priority dstnat; policy accept;
{pre}  }}
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
{post}  }}
}}
"
            ));
        }
        if let Some(mapping) = self.nat6 {
            rules.push_str(&format!(
                "table ip6 nat {{
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    oifname \"wan\" {}
  }}
}}
",
                masquerade(mapping)
            ));
        }
        rules
    }
}

/// The delay line's `--path` argument for the path between the WAN ports of roles `a` and `b`:
/// `a:b:delay:jitter` both ways, `a>b:delay:jitter` from `a` to `b` only.
fn path_arg(a: &str, b: &str, one_way: bool, leg: Leg) -> String {
    let between = if one_way { ">" } else { ":" };
    format!("{a}{between}{b}:{}:{}", leg.delay_ms, leg.jitter_ms)
}

fn masquerade(mapping: Mapping) -> &'static str {
    match mapping {
        Mapping::PortPreserving => "masquerade",
        Mapping::Random => "masquerade fully-random",
    }
}

/// A test network. Dropping it stops the delay line and deletes every namespace; processes
/// started in its namespaces must be gone first.
pub struct Bed {
    /// Declared first: dropped (killed) before the namespaces go.
    delay_line: Option<Proc>,
    net: Net,
    wan_ns: String,
    next_port: usize,
    /// The interfaces on the WAN segment, for [`Bed::resolve_neighbours`].
    wan_ports: Vec<WanPort>,
}

/// An interface on the WAN segment: its namespace, its name and its addresses.
struct WanPort {
    ns: String,
    dev: &'static str,
    addrs: Vec<String>,
}

impl Bed {
    pub fn new(wan: Wan) -> Self {
        match wan {
            Wan::Bridge => {
                let mut net = Net::new();
                let wan_ns = net.ns("wan");
                net.bridge(&wan_ns, "br0");
                Self {
                    delay_line: None,
                    net,
                    wan_ns,
                    next_port: 0,
                    wan_ports: Vec::new(),
                }
            }
            Wan::Shaped {
                delay_ms,
                jitter_ms,
                loss,
            } => Self::with_delay_line(
                Leg {
                    delay_ms,
                    jitter_ms,
                },
                loss,
                &[],
            ),
            Wan::Paths {
                paths, other, loss, ..
            } => {
                let paths: Vec<String> = paths
                    .iter()
                    .map(|p| path_arg(p.a, p.b, p.one_way, p.leg))
                    .collect();
                Self::with_delay_line(other, loss, &paths)
            }
        }
    }

    /// A WAN through the delay line with a path of its own between each of `paths`' two roles
    /// (both ways), `other` between any other two ports and `loss` everywhere: for networks
    /// whose roles are made up at run time (the population), where [`Wan::Paths`] wants them
    /// fixed.
    pub fn with_paths(other: Leg, loss: f64, paths: &[(String, String, Leg)]) -> Self {
        let paths: Vec<String> = paths
            .iter()
            .map(|(a, b, leg)| path_arg(a, b, false, *leg))
            .collect();
        Self::with_delay_line(other, loss, &paths)
    }

    /// A WAN through the delay line, started in the WAN namespace: `other` between any two
    /// ports, `loss` everywhere, and `paths` (its `--path` arguments, see [`path_arg`]).
    fn with_delay_line(other: Leg, loss: f64, paths: &[String]) -> Self {
        let mut args = vec![
            "--delay-ms".to_string(),
            other.delay_ms.to_string(),
            "--jitter-ms".to_string(),
            other.jitter_ms.to_string(),
            "--loss".to_string(),
            loss.to_string(),
        ];
        for path in paths {
            args.push("--path".into());
            args.push(path.clone());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut net = Net::new();
        let wan_ns = net.ns("wan");
        let exe = std::env::current_exe().expect("test binary");
        let mut proc = Proc::spawn(
            &wan_ns,
            "delay line",
            &exe,
            &args,
            &[("NETNS_ROLE", "delayline")],
        );
        proc.expect("READY", Duration::from_secs(10));
        Self {
            delay_line: Some(proc),
            net,
            wan_ns,
            next_port: 0,
            wan_ports: Vec::new(),
        }
    }

    /// The delay line's process id, if the WAN is one.
    pub fn delay_line_pid(&self) -> Option<u32> {
        self.delay_line.as_ref().map(Proc::pid)
    }

    /// Attaches `dev` of `ns` (of `role`) to `uplink`.
    fn attach(&mut self, uplink: Uplink<'_>, role: &str, ns: &str, dev: &str) {
        let k = self.next_port;
        self.next_port += 1;
        match (uplink, self.delay_line.as_mut()) {
            (Uplink::Wan, None) => {
                self.net
                    .plug(&self.wan_ns, "br0", &format!("p{k}"), ns, dev);
            }
            (Uplink::Wan, Some(delay_line)) => {
                let tap = format!("dl{k}");
                delay_line.send(&format!("tap {tap} {role}"));
                delay_line.expect(&format!("TAP {tap}"), Duration::from_secs(10));
                self.net.move_dev(&self.wan_ns, &tap, ns, dev);
            }
            (Uplink::Lan(router), _) => {
                self.net.plug(router, "lan", &format!("l{k}"), ns, dev);
            }
        }
    }

    /// A host with `eth0` on `uplink`, its addresses (`ip/len`) and routes (`ip route add`
    /// specs, e.g. `default via 10.0.1.1`).
    pub fn host(
        &mut self,
        role: &str,
        uplink: Uplink<'_>,
        addrs: &[&str],
        routes: &[&str],
    ) -> String {
        let ns = self.net.ns(role);
        self.attach(uplink, role, &ns, "eth0");
        self.configure(&ns, "eth0", addrs, routes);
        self.on_wan(uplink, &ns, "eth0", addrs);
        ns
    }

    /// A router with `wan` on `uplink` and a LAN bridge `lan`, forwarding, and `rules`.
    pub fn router(
        &mut self,
        role: &str,
        uplink: Uplink<'_>,
        wan_addrs: &[&str],
        lan_addrs: &[&str],
        routes: &[&str],
        rules: &Rules,
    ) -> String {
        let ns = self.net.ns(role);
        self.attach(uplink, role, &ns, "wan");
        self.net.bridge(&ns, "lan");
        self.configure(&ns, "wan", wan_addrs, routes);
        self.on_wan(uplink, &ns, "wan", wan_addrs);
        self.configure(&ns, "lan", lan_addrs, &[]);
        self.net.sysctl(&ns, "net.ipv4.ip_forward=1");
        self.net.sysctl(&ns, "net.ipv6.conf.all.forwarding=1");
        self.net.nft(&ns, &rules.ruleset());
        ns
    }

    /// Remembers `dev` of `ns`, with its addresses (`ip/len`), if it is on the WAN.
    fn on_wan(&mut self, uplink: Uplink<'_>, ns: &str, dev: &'static str, addrs: &[&str]) {
        if let Uplink::Wan = uplink {
            self.wan_ports.push(WanPort {
                ns: ns.to_string(),
                dev,
                addrs: addrs
                    .iter()
                    .map(|a| a.split('/').next().unwrap_or(a).to_string())
                    .collect(),
            });
        }
    }

    /// Gives every interface on the WAN a permanent neighbour entry (ARP, IPv6 neighbour
    /// discovery) for the addresses of every other one, of the families it has addresses of.
    /// A home router's next hop, its ISP's gateway, is always resolved; on the WAN segment
    /// without it the first packet from one router to another (a hole punch's first SYN) waits
    /// in the router for the other's answer, a round trip between the two, and a second if the
    /// request is lost (`docs/nat-zoo.md`). Call it once every WAN interface is added.
    pub fn resolve_neighbours(&self) {
        let macs: Vec<String> = self
            .wan_ports
            .iter()
            .map(|port| mac(&port.ns, port.dev))
            .collect();
        for port in &self.wan_ports {
            let mut batch = String::new();
            for (other, mac) in self.wan_ports.iter().zip(&macs) {
                if other.ns == port.ns {
                    continue;
                }
                for addr in &other.addrs {
                    let v6 = addr.contains(':');
                    if port.addrs.iter().any(|own| own.contains(':') == v6) {
                        let dev = port.dev;
                        writeln!(
                            batch,
                            "neigh replace {addr} lladdr {mac} dev {dev} nud permanent"
                        )
                        .expect("a String takes any write");
                    }
                }
            }
            if !batch.is_empty() {
                net::run_with_input("ip", &["-n", &port.ns, "-batch", "-"], &batch);
            }
        }
    }

    /// The full names of its namespaces.
    pub fn namespaces(&self) -> &[String] {
        self.net.namespaces()
    }

    /// Loads an nftables ruleset into `ns`.
    pub fn nft(&self, ns: &str, ruleset: &str) {
        self.net.nft(ns, ruleset);
    }

    pub fn sysctl(&self, ns: &str, setting: &str) {
        self.net.sysctl(ns, setting);
    }

    fn configure(&self, ns: &str, dev: &str, addrs: &[&str], routes: &[&str]) {
        for addr in addrs {
            self.net.addr(ns, dev, addr);
        }
        for route in routes {
            self.net.route(ns, route);
        }
    }
}

/// The usual network: a public host on the WAN, and two hosts each behind its own router.
///
/// ```text
///   a 10.0.1.2 2001:db8:1::2          b 10.0.2.2 2001:db8:2::2
///        |                                  |
///   ra lan 10.0.1.1                    rb lan 10.0.2.1
///   ra wan 192.31.196.1 2001:db8::1     rb wan 192.31.196.2 2001:db8::2
///        \______________ WAN _______________/
///                         |
///        public 192.31.196.10, .11, 2001:db8::10, ::11
/// ```
pub struct TwoNats {
    pub public: String,
    pub ra: String,
    pub a: String,
    pub b: String,
}

impl TwoNats {
    pub fn build(bed: &mut Bed, rules_a: &Rules, rules_b: &Rules) -> Self {
        let public = bed.host(
            "pub",
            Uplink::Wan,
            &[
                "192.31.196.10/24",
                "192.31.196.11/24",
                "2001:db8::10/64",
                "2001:db8::11/64",
            ],
            &[
                "2001:db8:1::/64 via 2001:db8::1",
                "2001:db8:2::/64 via 2001:db8::2",
            ],
        );
        let (ra, a) = home(bed, 1, rules_a);
        let (_, b) = home(bed, 2, rules_b);
        Self { public, ra, a, b }
    }
}

/// Router `r<n>` on the WAN at 192.31.196.`n` and 2001:db8::`n`, its LAN 10.0.`n`.0/24 and
/// 2001:db8:`n`::/64, and host `h<n>` at .2 behind it. Returns (router, host).
pub fn home(bed: &mut Bed, n: u8, rules: &Rules) -> (String, String) {
    let other = 3 - n;
    let router = bed.router(
        &format!("r{n}"),
        Uplink::Wan,
        &[&format!("192.31.196.{n}/24"), &format!("2001:db8::{n}/64")],
        &[&format!("10.0.{n}.1/24"), &format!("2001:db8:{n}::1/64")],
        &[&format!("2001:db8:{other}::/64 via 2001:db8::{other}")],
        rules,
    );
    let host = bed.host(
        &format!("h{n}"),
        Uplink::Lan(&router),
        &[&format!("10.0.{n}.2/24"), &format!("2001:db8:{n}::2/64")],
        &[
            &format!("default via 10.0.{n}.1"),
            &format!("default via 2001:db8:{n}::1"),
        ],
    );
    (router, host)
}

/// The link-layer address of `dev` in `ns`.
fn mac(ns: &str, dev: &str) -> String {
    let line = net::ip_output(ns, &["-o", "link", "show", "dev", dev]);
    line.split_whitespace()
        .skip_while(|word| *word != "link/ether")
        .nth(1)
        .unwrap_or_else(|| panic!("no link/ether address in {line}"))
        .to_string()
}
