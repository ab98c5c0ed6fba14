//! Test networks built from Linux network namespaces, veth pairs, a bridge and nftables.
//!
//! Every namespace of a network carries the network's prefix, `rpt<pid>n<k>-`, so that runs
//! never collide and leftovers of a killed run are recognised (its pid is gone) and removed.
//! Dropping a [`Net`] deletes its namespaces; the processes started in them must be gone first.

use std::{
    process::{Command, Stdio},
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
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

/// The output of `ip -n <ns> <args>`, which must succeed.
pub fn ip_output(ns: &str, args: &[&str]) -> String {
    let output = Command::new("ip")
        .args(["-n", ns])
        .args(args)
        .output()
        .expect("ip runs");
    assert!(output.status.success(), "ip -n {ns} {args:?}: {output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The IPv6 temporary ("privacy") addresses of `dev` in `ns`, newest first.
pub fn temporary_addrs(ns: &str, dev: &str) -> Vec<String> {
    ip_output(ns, &["-6", "-o", "addr", "show", "dev", dev, "temporary"])
        .lines()
        .filter_map(|line| line.split_whitespace().nth(3))
        .filter_map(|cidr| cidr.split('/').next())
        .map(str::to_string)
        .collect()
}

/// Waits (at most 5 s) until `dev` in `ns` has a temporary address not in `before`; returns it.
pub fn new_temporary(ns: &str, dev: &str, before: &[String]) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(new) = temporary_addrs(ns, dev)
            .into_iter()
            .find(|t| !before.contains(t))
        {
            return new;
        }
        assert!(
            Instant::now() < deadline,
            "no new temporary address in {ns}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Marks `stable` (`ip/len`, an address of `dev` in `ns`) `mngtmpaddr`, so that the kernel
/// (with `use_tempaddr=2`) makes a temporary address in its prefix, and waits for the new one.
pub fn manage_temporary(ns: &str, dev: &str, stable: &str) -> String {
    let before = temporary_addrs(ns, dev);
    ip_output(ns, &["addr", "change", stable, "dev", dev, "mngtmpaddr"]);
    new_temporary(ns, dev, &before)
}

/// Rotates the temporary addresses of `dev` in `ns`, as the kernel does every day or so: the
/// current ones deprecated, the next one made from `stable` (as in [`manage_temporary`]); waits
/// for it and returns it.
pub fn rotate_temporary(ns: &str, dev: &str, stable: &str) -> String {
    // Taken first: deprecating the last preferred one may already make the next.
    let before = temporary_addrs(ns, dev);
    for addr in &before {
        let cidr = format!("{addr}/64");
        ip_output(
            ns,
            &[
                "addr",
                "change",
                &cidr,
                "dev",
                dev,
                "preferred_lft",
                "0",
                "valid_lft",
                "600",
            ],
        );
    }
    ip_output(ns, &["addr", "change", stable, "dev", dev, "mngtmpaddr"]);
    new_temporary(ns, dev, &before)
}

/// Deletes namespaces left by runs whose process no longer exists, and the processes still
/// running in them.
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
            if let Ok(pids) = Command::new("ip").args(["netns", "pids", name]).output() {
                for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-KILL", pid]).status();
                }
            }
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

    /// The full names of its namespaces, in the order they were added.
    pub fn namespaces(&self) -> &[String] {
        &self.namespaces
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

    /// A bridge `name` in `ns`, up.
    pub fn bridge(&self, ns: &str, name: &str) {
        run("ip", &["-n", ns, "link", "add", name, "type", "bridge"]);
        run("ip", &["-n", ns, "link", "set", name, "up"]);
    }

    /// Connects `dev` of `ns` to the bridge `bridge` in `switch` (the switch side is named
    /// `port`).
    pub fn plug(&self, switch: &str, bridge: &str, port: &str, ns: &str, dev: &str) {
        self.link(ns, dev, switch, port);
        run("ip", &["-n", switch, "link", "set", port, "master", bridge]);
    }

    /// Moves device `dev` of `from` into `to`, renamed `name`, and brings it up.
    pub fn move_dev(&self, from: &str, dev: &str, to: &str, name: &str) {
        run("ip", &["-n", from, "link", "set", dev, "netns", to]);
        run("ip", &["-n", to, "link", "set", dev, "name", name]);
        run("ip", &["-n", to, "link", "set", name, "up"]);
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
