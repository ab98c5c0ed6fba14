//! What a population costs and leaves behind: descriptors, CPU time, namespaces and processes,
//! read from `/proc` and `ip netns`.

use std::{
    fs,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

/// What one population run cost and left behind.
#[derive(Debug, Default)]
pub struct Cost {
    pub build_s: f64,
    pub reserve_s: f64,
    pub punch_s: f64,
    pub teardown_s: f64,
    /// Open descriptors of all nodes together, of the relay, of the test process: the peak.
    pub node_fds: usize,
    pub relay_fds: usize,
    pub own_fds: usize,
    /// CPU seconds of the nodes (relay, listen, dial) and of the delay line.
    pub node_cpu_s: f64,
    pub line_cpu_s: f64,
    /// The machine's busy share (all cores, all work on it) while the dials ran.
    pub busy: f64,
    pub namespaces_left: usize,
    pub processes_left: usize,
    /// Descriptors of the test process before the network was built and after it was gone.
    pub own_fds_before: usize,
    pub own_fds_after: usize,
}

/// CPU ticks (user + system) of a process from `/proc/<pid>/stat`: of itself, and of its
/// children it has waited for.
pub fn cpu_ticks(pid: &str) -> (u64, u64) {
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
pub fn ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// Busy and total jiffies of all CPUs (`/proc/stat`).
pub fn machine_jiffies() -> (u64, u64) {
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

pub fn fds(pid: &str) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Samples the descriptors of the nodes (`pids`, the relay first) every 200 ms until stopped;
/// returns the peaks: all nodes, the relay, this process.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    handle: thread::JoinHandle<(usize, usize, usize)>,
}

impl Sampler {
    pub fn start(pids: Arc<Mutex<Vec<u32>>>) -> Self {
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

    pub fn finish(self) -> (usize, usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or_default()
    }
}

/// Namespaces of this process, and its children, still there.
pub fn leftovers() -> (usize, usize) {
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
