//! The delay line: the "internet" between the NATs of a test network, with latency, jitter and
//! loss, in user space (this kernel has no netem qdisc).
//!
//! It runs as a process of this binary (`NETNS_ROLE=delayline`) in a namespace of its own and is
//! a learning Ethernet switch whose ports are TAP devices. On `tap <name> [<role>]` (standard
//! input) it creates a TAP device and answers `TAP <name>`; the test network then moves the
//! device into the namespace that owns that port (a router's `wan`, the relay's `eth0`) and the
//! file descriptor keeps working there. The role (the namespace's, e.g. `pub`, `r1`) names the
//! port in per-path delays.
//!
//! Every frame read from a port is sent to the port that last sent from its destination MAC
//! (to every other port while unknown, and for broadcast and multicast), independently per
//! output port:
//! - dropped with probability `loss`;
//! - otherwise written after `delay + u`, `u` uniform in `[-jitter, +jitter]`, where `delay` and
//!   `jitter` are those of the path between the two ports' roles if one was given (`--path`),
//!   the line's otherwise; but never before the previous frame queued on the same path: frames
//!   are never reordered (TCP on the real internet rarely sees reordering; netem's reordering
//!   jitter would measure something else). When frames follow each other closer than
//!   `2 * jitter`, this makes the delay lean towards its upper end. Without `--path` "the same
//!   path" is the output port (frames from any port keep their order on it); with paths it is
//!   the pair of ports, so that a frame on a short path is not held behind one on a long path.
//!
//! One thread reads each port (blocking reads); one thread per port writes, sleeping until the
//! earliest queued frame is due (a condition variable's timed wait, which on Linux overshoots by
//! tens of microseconds, not the millisecond of a runtime's timer wheel).
//!
//! Arguments: `--delay-ms D --jitter-ms J --loss P --seed S`, and any number of
//! `--path ROLE:ROLE:D:J` (one-way delay and jitter in ms between the ports of two roles, both
//! ways) and `--path ROLE>ROLE:D:J` (from the first to the second only, before any path both
//! ways). On `stats` it answers `STATS frames=<read> delivered=<written> dropped=<lost on
//! purpose>`.

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap},
    io::BufRead,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
        mpsc::{Receiver, RecvTimeoutError, Sender, channel},
    },
    thread,
    time::{Duration, Instant},
};

use tun_tap::{Iface, Mode};

/// What the delay line does to a frame.
#[derive(Clone, Copy, Debug, Default)]
struct Shape {
    delay: Duration,
    jitter: Duration,
    loss: f64,
}

/// A path's delay between two roles, both ways or from the first to the second only.
#[derive(Clone, Debug)]
struct Path {
    roles: (String, String),
    one_way: bool,
    delay: Duration,
    jitter: Duration,
}

/// A frame queued on a port, due at `.0` (`.1` keeps frames due at the same instant in order).
type Queued = Reverse<(Instant, u64, Vec<u8>)>;

/// A port: its TAP device, its role and the queue of its writer thread.
struct Port {
    iface: Arc<Iface>,
    role: String,
    queue: Sender<(Instant, Vec<u8>)>,
    /// When the last frame queued on this port from a given source port (`usize::MAX`: from any,
    /// when there are no paths) is due; a later frame on that path is never due earlier.
    last_due: Mutex<HashMap<usize, Instant>>,
}

#[derive(Default)]
struct Switch {
    /// What frames get on a path without a `--path`.
    shape: Shape,
    paths: Vec<Path>,
    ports: Mutex<Vec<Arc<Port>>>,
    /// Source MAC address -> the index of the port it was last seen on.
    macs: Mutex<HashMap<[u8; 6], usize>>,
    frames: AtomicU64,
    delivered: AtomicU64,
    dropped: AtomicU64,
}

impl Switch {
    /// The shape of frames from a port of role `from` to one of role `to`: a one-way path's
    /// if there is one, else a path's both ways, else the line's.
    fn shape(&self, from: &str, to: &str) -> Shape {
        let shape = self.shape;
        let forward = |p: &&Path| p.roles.0 == from && p.roles.1 == to;
        let backward = |p: &&Path| !p.one_way && p.roles.0 == to && p.roles.1 == from;
        self.paths
            .iter()
            .find(|p| p.one_way && forward(p))
            .or_else(|| {
                self.paths
                    .iter()
                    .find(|p| (!p.one_way && forward(p)) || backward(p))
            })
            .map_or(shape, |p| Shape {
                delay: p.delay,
                jitter: p.jitter,
                ..shape
            })
    }
}

/// xorshift64*: small, seeded, good enough to draw loss and jitter.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn arg(args: &[String], name: &str, default: f64) -> f64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().unwrap_or_else(|e| panic!("{name} {v}: {e}")))
        .unwrap_or(default)
}

pub fn main() {
    let args: Vec<String> = std::env::args().collect();
    let shape = Shape {
        delay: Duration::from_secs_f64(arg(&args, "--delay-ms", 0.0) / 1000.0),
        jitter: Duration::from_secs_f64(arg(&args, "--jitter-ms", 0.0) / 1000.0),
        loss: arg(&args, "--loss", 0.0),
    };
    let seed = arg(&args, "--seed", 1.0) as u64;
    let paths: Vec<Path> = args
        .iter()
        .zip(args.iter().skip(1))
        .filter(|(flag, _)| *flag == "--path")
        .map(|(_, spec)| path(spec))
        .collect();
    let switch = Arc::new(Switch {
        shape,
        paths,
        ..Switch::default()
    });
    println!("READY {shape:?} paths {:?}", switch.paths);
    for line in std::io::stdin().lock().lines().map_while(Result::ok) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["tap", name] | ["tap", name, _] => {
                let role = words.get(2).copied().unwrap_or_default();
                match add_port(&switch, name, role, seed) {
                    Ok(()) => println!("TAP {name}"),
                    Err(e) => println!("ERROR tap {name}: {e}"),
                }
            }
            ["stats"] => println!(
                "STATS frames={} delivered={} dropped={}",
                switch.frames.load(Ordering::Relaxed),
                switch.delivered.load(Ordering::Relaxed),
                switch.dropped.load(Ordering::Relaxed)
            ),
            _ => println!("ERROR unknown command {line}"),
        }
    }
}

/// `ROLE:ROLE:DELAY_MS:JITTER_MS` (both ways) or `ROLE>ROLE:DELAY_MS:JITTER_MS` (one way).
fn path(spec: &str) -> Path {
    let parts: Vec<&str> = spec.split(':').collect();
    let ms = |v: &str| {
        Duration::from_secs_f64(
            v.parse::<f64>()
                .unwrap_or_else(|e| panic!("--path {spec}: {e}"))
                / 1000.0,
        )
    };
    let (a, b, one_way, delay, jitter) = match parts.as_slice() {
        [a, b, delay, jitter] => (*a, *b, false, *delay, *jitter),
        [ab, delay, jitter] => match ab.split_once('>') {
            Some((a, b)) => (a, b, true, *delay, *jitter),
            None => panic!("--path {spec}: expected ROLE>ROLE:DELAY_MS:JITTER_MS"),
        },
        _ => panic!("--path {spec}: expected ROLE:ROLE:DELAY_MS:JITTER_MS"),
    };
    Path {
        roles: (a.to_string(), b.to_string()),
        one_way,
        delay: ms(delay),
        jitter: ms(jitter),
    }
}

/// Creates the TAP device `name` for a port of `role` and starts its reader and writer threads.
fn add_port(switch: &Arc<Switch>, name: &str, role: &str, seed: u64) -> std::io::Result<()> {
    let iface = Arc::new(Iface::without_packet_info(name, Mode::Tap)?);
    if iface.name() != name {
        return Err(std::io::Error::other(format!(
            "the kernel named the device {}",
            iface.name()
        )));
    }
    let (queue, frames) = channel();
    let port = Arc::new(Port {
        iface: iface.clone(),
        role: role.to_string(),
        queue,
        last_due: Mutex::new(HashMap::new()),
    });
    let index = {
        let mut ports = switch.ports.lock().unwrap_or_else(PoisonError::into_inner);
        ports.push(port);
        ports.len() - 1
    };
    let writer_switch = switch.clone();
    thread::spawn(move || write_frames(&iface, frames, &writer_switch));
    let reader_switch = switch.clone();
    thread::spawn(move || read_frames(&reader_switch, index, Rng::new(seed ^ (index as u64 + 1))));
    Ok(())
}

/// Reads frames from port `index` and queues each on its output ports.
fn read_frames(switch: &Switch, index: usize, mut rng: Rng) {
    let (iface, role) = {
        let ports = switch.ports.lock().unwrap_or_else(PoisonError::into_inner);
        (ports[index].iface.clone(), ports[index].role.clone())
    };
    // Frames keep their order per output port, or per pair of ports when paths differ.
    let order = if switch.paths.is_empty() {
        usize::MAX
    } else {
        index
    };
    let mut buf = vec![0; 65536];
    loop {
        let n = match iface.recv(&mut buf) {
            Ok(n) if n >= 14 => n,
            Ok(_) => continue,
            Err(_) => return,
        };
        let now = Instant::now();
        switch.frames.fetch_add(1, Ordering::Relaxed);
        let frame = &buf[..n];
        let dst: [u8; 6] = frame[0..6].try_into().expect("14 bytes at least");
        let src: [u8; 6] = frame[6..12].try_into().expect("14 bytes at least");
        let known = {
            let mut macs = switch.macs.lock().unwrap_or_else(PoisonError::into_inner);
            macs.insert(src, index);
            // The group bit marks broadcast and multicast destinations.
            (dst[0] & 1 == 0).then(|| macs.get(&dst).copied()).flatten()
        };
        let outputs: Vec<Arc<Port>> = {
            let ports = switch.ports.lock().unwrap_or_else(PoisonError::into_inner);
            match known {
                Some(out) if out != index => vec![ports[out].clone()],
                Some(_) => Vec::new(),
                None => ports
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != index)
                    .map(|(_, p)| p.clone())
                    .collect(),
            }
        };
        for port in outputs {
            let shape = switch.shape(&role, &port.role);
            if rng.unit() < shape.loss {
                switch.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let spread = shape.jitter.as_secs_f64() * (2.0 * rng.unit() - 1.0);
            let delay = (shape.delay.as_secs_f64() + spread).max(0.0);
            let mut last_due = port.last_due.lock().unwrap_or_else(PoisonError::into_inner);
            let last_due = last_due.entry(order).or_insert(now);
            let due = (now + Duration::from_secs_f64(delay)).max(*last_due);
            *last_due = due;
            let _ = port.queue.send((due, frame.to_vec()));
        }
    }
}

/// Writes the frames queued on a port when they are due, earliest first (frames on different
/// paths may be queued out of due order).
fn write_frames(iface: &Iface, frames: Receiver<(Instant, Vec<u8>)>, switch: &Switch) {
    let mut queued: BinaryHeap<Queued> = BinaryHeap::new();
    let mut seq = 0u64;
    loop {
        let next = match queued.peek() {
            None => frames.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(Reverse((due, _, _))) => {
                let wait = due.saturating_duration_since(Instant::now());
                if wait.is_zero() {
                    let Some(Reverse((_, _, frame))) = queued.pop() else {
                        continue;
                    };
                    // A port whose device is down or gone refuses frames; the others go on.
                    if iface.send(&frame).is_ok() {
                        switch.delivered.fetch_add(1, Ordering::Relaxed);
                    }
                    continue;
                }
                frames.recv_timeout(wait)
            }
        };
        match next {
            Ok((due, frame)) => {
                seq += 1;
                queued.push(Reverse((due, seq, frame)));
            }
            Err(RecvTimeoutError::Timeout) => {}
            // The switch is gone: nothing more will be queued; the process is ending.
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}
