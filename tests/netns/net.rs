//! Test networks built from Linux network namespaces, veth pairs, a bridge and nftables.
//!
//! Every namespace of a network carries the network's prefix, `rpt<pid>n<k>-`, so that runs
//! never collide and leftovers of a killed run are recognised (its pid is gone) and removed.
//! Dropping a [`Net`] deletes its namespaces; the processes started in them must be gone first.

use std::{
    process::{Command, Stdio},
    sync::atomic::{AtomicUsize, Ordering},
};

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Runs `program args`, failing with its output if it fails.
pub fn run(program: &str, args: &[&str]) {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{program} {}: {e}", args.join(" ")));
    assert!(
        output.status.success(),
        "{program} {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs `program args` with `input` on standard input, failing with its output if it fails.
pub fn run_with_input(program: &str, args: &[&str], input: &str) {
    use std::io::Write;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(input.as_bytes())
        .expect("write stdin");
    let output = child.wait_with_output().expect("wait");
    assert!(
        output.status.success(),
        "{program} {} failed: {}\ninput:\n{input}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Deletes namespaces left by runs whose process no longer exists.
pub fn remove_stale() {
    let Ok(output) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(rest) = name.strip_prefix("rpt") else {
            continue;
        };
        let pid: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if !pid.is_empty() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

/// A set of namespaces, deleted when dropped.
pub struct Net {
    prefix: String,
    namespaces: Vec<String>,
}

impl Net {
    pub fn new() -> Self {
        let prefix = format!(
            "rpt{}n{}-",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        Self {
            prefix,
            namespaces: Vec::new(),
        }
    }

    /// Adds a namespace with its loopback up; returns its full name.
    pub fn ns(&mut self, role: &str) -> String {
        let name = format!("{}{role}", self.prefix);
        run("ip", &["netns", "add", &name]);
        self.namespaces.push(name.clone());
        run("ip", &["-n", &name, "link", "set", "lo", "up"]);
        name
    }

    /// A veth pair: `a_if` in `a`, `b_if` in `b`, both up.
    pub fn link(&self, a: &str, a_if: &str, b: &str, b_if: &str) {
        run(
            "ip",
            &[
                "link", "add", a_if, "netns", a, "type", "veth", "peer", "name", b_if, "netns", b,
            ],
        );
        run("ip", &["-n", a, "link", "set", a_if, "up"]);
        run("ip", &["-n", b, "link", "set", b_if, "up"]);
    }

    /// Adds `cidr` to `dev` in `ns` (IPv6 without duplicate address detection).
    pub fn addr(&self, ns: &str, dev: &str, cidr: &str) {
        if cidr.contains(':') {
            run("ip", &["-n", ns, "addr", "add", cidr, "dev", dev, "nodad"]);
        } else {
            run("ip", &["-n", ns, "addr", "add", cidr, "dev", dev]);
        }
    }

    pub fn del_addr(&self, ns: &str, dev: &str, cidr: &str) {
        run("ip", &["-n", ns, "addr", "del", cidr, "dev", dev]);
    }

    /// `ip route add <spec>` in `ns`, IPv6 if the spec has a colon.
    pub fn route(&self, ns: &str, spec: &str) {
        let mut args = vec!["-n", ns];
        if spec.contains(':') {
            args.push("-6");
        }
        args.extend(["route", "add"]);
        args.extend(spec.split_whitespace());
        run("ip", &args);
    }

    pub fn sysctl(&self, ns: &str, setting: &str) {
        run("ip", &["netns", "exec", ns, "sysctl", "-qw", setting]);
    }

    /// Loads an nftables ruleset into `ns`.
    pub fn nft(&self, ns: &str, ruleset: &str) {
        run_with_input("ip", &["netns", "exec", ns, "nft", "-f", "-"], ruleset);
    }

    /// A bridge `br0` in `ns`.
    pub fn bridge(&self, ns: &str) {
        run("ip", &["-n", ns, "link", "add", "br0", "type", "bridge"]);
        run("ip", &["-n", ns, "link", "set", "br0", "up"]);
    }

    /// Connects `dev` of `ns` to the bridge in `switch` (the switch side is named `port`).
    pub fn plug(&self, switch: &str, port: &str, ns: &str, dev: &str) {
        self.link(ns, dev, switch, port);
        run("ip", &["-n", switch, "link", "set", port, "master", "br0"]);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for name in self.namespaces.iter().rev() {
            let _ = Command::new("ip")
                .args(["netns", "del", name])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// How a router treats traffic between its LAN and the public segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Router {
    /// IPv4: masquerade, which keeps a free source port (endpoint-independent mapping in
    /// practice). IPv6: no NAT, a stateful firewall.
    PortPreserving,
    /// IPv4 and IPv6: masquerade with a random public port per connection (a symmetric NAT).
    Symmetric,
}

/// The ruleset of a router: unsolicited inbound packets are dropped silently (no reset), as on
/// real NATs and firewalls; conntrack-invalid packets are dropped in forward (otherwise some
/// would leave without translation).
fn router_rules(kind: Router) -> String {
    let random = match kind {
        Router::PortPreserving => "",
        Router::Symmetric => " fully-random",
    };
    let nat6 = match kind {
        Router::PortPreserving => String::new(),
        Router::Symmetric => format!(
            "table ip6 nat {{\n  chain postrouting {{\n    type nat hook postrouting priority \
             srcnat; policy accept;\n    oifname \"wan\" masquerade{random}\n  }}\n}}\n"
        ),
    };
    format!(
        r#"table inet fw {{
  chain input {{
    type filter hook input priority filter; policy accept;
    iifname "wan" ct state established,related accept
    iifname "wan" icmpv6 type {{ nd-neighbor-solicit, nd-neighbor-advert }} accept
    iifname "wan" drop
  }}
  chain forward {{
    type filter hook forward priority filter; policy drop;
    ct state invalid drop
    ct state established,related accept
    iifname "lan" oifname "wan" accept
  }}
}}
table ip nat {{
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    oifname "wan" masquerade{random}
  }}
}}
{nat6}"#
    )
}

/// Two hosts behind two routers on a public segment with a public host:
///
/// ```text
///   a 10.0.1.2 2001:db8:1::2          b 10.0.2.2 2001:db8:2::2
///        |                                  |
///   ra lan 10.0.1.1                    rb lan 10.0.2.1
///   ra wan 203.0.113.1 2001:db8::1     rb wan 203.0.113.2 2001:db8::2
///        \______________ br0 _____________/
///                         |
///        public 203.0.113.10, .11, 2001:db8::10, ::11
/// ```
pub struct Nat {
    /// Owns the namespaces: they go when the topology drops.
    _net: Net,
    pub a: String,
    pub b: String,
    pub public: String,
}

impl Nat {
    pub fn new(router_a: Router, router_b: Router) -> Self {
        let mut net = Net::new();
        let sw = net.ns("sw");
        let public = net.ns("pub");
        let ra = net.ns("ra");
        let rb = net.ns("rb");
        let a = net.ns("a");
        let b = net.ns("b");
        net.bridge(&sw);
        net.plug(&sw, "p-pub", &public, "eth0");
        net.plug(&sw, "p-ra", &ra, "wan");
        net.plug(&sw, "p-rb", &rb, "wan");
        for cidr in [
            "203.0.113.10/24",
            "203.0.113.11/24",
            "2001:db8::10/64",
            "2001:db8::11/64",
        ] {
            net.addr(&public, "eth0", cidr);
        }
        net.route(&public, "2001:db8:1::/64 via 2001:db8::1");
        net.route(&public, "2001:db8:2::/64 via 2001:db8::2");
        for (router, host, n, kind, other) in [(&ra, &a, 1, router_a, 2), (&rb, &b, 2, router_b, 1)]
        {
            net.link(router, "lan", host, "eth0");
            net.addr(router, "wan", &format!("203.0.113.{n}/24"));
            net.addr(router, "wan", &format!("2001:db8::{n}/64"));
            net.addr(router, "lan", &format!("10.0.{n}.1/24"));
            net.addr(router, "lan", &format!("2001:db8:{n}::1/64"));
            net.route(
                router,
                &format!("2001:db8:{other}::/64 via 2001:db8::{other}"),
            );
            net.sysctl(router, "net.ipv4.ip_forward=1");
            net.sysctl(router, "net.ipv6.conf.all.forwarding=1");
            net.nft(router, &router_rules(kind));
            net.addr(host, "eth0", &format!("10.0.{n}.2/24"));
            net.addr(host, "eth0", &format!("2001:db8:{n}::2/64"));
            net.route(host, &format!("default via 10.0.{n}.1"));
            net.route(host, &format!("default via 2001:db8:{n}::1"));
        }
        Self {
            _net: net,
            a,
            b,
            public,
        }
    }
}
