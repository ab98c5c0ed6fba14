//! The delay line: the "internet" between the NATs of a test network, with latency, jitter and
//! loss, in user space (this kernel has no netem qdisc).
//!
//! It runs as a process of this binary (`NETNS_ROLE=delayline`) in a namespace of its own and is
//! a learning Ethernet switch whose ports are TAP devices. On `tap <name>` (standard input) it
//! creates a TAP device and answers `TAP <name>`; the test network then moves the device into
//! the namespace that owns that port (a router's `wan`, the relay's `eth0`) and the file
//! descriptor keeps working there.
//!
//! Every frame read from a port is sent to the port that last sent from its destination MAC
//! (to every other port while unknown, and for broadcast and multicast), independently per
//! output port:
//! - dropped with probability `loss`;
//! - otherwise written after `delay + u`, `u` uniform in `[-jitter, +jitter]`, but never before
//!   the previous frame queued on that port: frames are never reordered (TCP on the real
//!   internet rarely sees reordering; netem's reordering jitter would measure something else).
//!   When frames follow each other closer than `2 * jitter`, this makes the delay lean towards
//!   its upper end.
//!
//! One thread reads each port (blocking reads); one thread per port writes, sleeping until each
//! frame is due (`thread::sleep`, which on Linux overshoots by tens of microseconds, not the
//! millisecond of a runtime's timer wheel).
//!
//! Arguments: `--delay-ms D --jitter-ms J --loss P --seed S`. On `stats` it answers
//! `STATS frames=<read> delivered=<written> dropped=<lost on purpose>`.

use std::{
    collections::HashMap,
    io::BufRead,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
        mpsc::{Receiver, Sender, channel},
    },
    thread,
    time::{Duration, Instant},
};

use tun_tap::{Iface, Mode};

/// What the delay line does to a frame.
#[derive(Clone, Copy, Debug)]
struct Shape {
    delay: Duration,
    jitter: Duration,
    loss: f64,
}

/// A port: its TAP device and the queue of its writer thread.
struct Port {
    iface: Arc<Iface>,
    queue: Sender<(Instant, Vec<u8>)>,
    /// When the last frame queued on this port is due; a later frame is never due earlier.
    last_due: Mutex<Instant>,
}

#[derive(Default)]
struct Switch {
    ports: Mutex<Vec<Arc<Port>>>,
    /// Source MAC address -> the index of the port it was last seen on.
    macs: Mutex<HashMap<[u8; 6], usize>>,
    frames: AtomicU64,
    delivered: AtomicU64,
    dropped: AtomicU64,
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
    let switch = Arc::new(Switch::default());
    println!("READY {shape:?}");
    for line in std::io::stdin().lock().lines().map_while(Result::ok) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["tap", name] => match add_port(&switch, name, shape, seed) {
                Ok(()) => println!("TAP {name}"),
                Err(e) => println!("ERROR tap {name}: {e}"),
            },
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

/// Creates the TAP device `name` and starts its reader and writer threads.
fn add_port(switch: &Arc<Switch>, name: &str, shape: Shape, seed: u64) -> std::io::Result<()> {
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
        queue,
        last_due: Mutex::new(Instant::now()),
    });
    let index = {
        let mut ports = switch.ports.lock().unwrap_or_else(PoisonError::into_inner);
        ports.push(port);
        ports.len() - 1
    };
    let writer_switch = switch.clone();
    thread::spawn(move || write_frames(&iface, frames, &writer_switch));
    let reader_switch = switch.clone();
    thread::spawn(move || {
        read_frames(
            &reader_switch,
            index,
            shape,
            Rng::new(seed ^ (index as u64 + 1)),
        )
    });
    Ok(())
}

/// Reads frames from port `index` and queues each on its output ports.
fn read_frames(switch: &Switch, index: usize, shape: Shape, mut rng: Rng) {
    let iface = switch.ports.lock().unwrap_or_else(PoisonError::into_inner)[index]
        .iface
        .clone();
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
            if rng.unit() < shape.loss {
                switch.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let spread = shape.jitter.as_secs_f64() * (2.0 * rng.unit() - 1.0);
            let delay = (shape.delay.as_secs_f64() + spread).max(0.0);
            let mut last_due = port.last_due.lock().unwrap_or_else(PoisonError::into_inner);
            let due = (now + Duration::from_secs_f64(delay)).max(*last_due);
            *last_due = due;
            let _ = port.queue.send((due, frame.to_vec()));
        }
    }
}

/// Writes the frames queued on a port when they are due.
fn write_frames(iface: &Iface, frames: Receiver<(Instant, Vec<u8>)>, switch: &Switch) {
    for (due, frame) in frames {
        let wait = due.saturating_duration_since(Instant::now());
        if !wait.is_zero() {
            thread::sleep(wait);
        }
        // A port whose device is down or gone refuses frames; the others go on.
        if iface.send(&frame).is_ok() {
            switch.delivered.fetch_add(1, Ordering::Relaxed);
        }
    }
}
