//! Resident memory per open connection, one implementation per child process (this benchmark
//! binary again), so that no implementation inherits another's freed heap: the growth of
//! `VmRSS` (`/proc/self/status`) while a node with one listener opens connections to the sink,
//! divided by their number. Kernel memory (socket buffers) is not in `VmRSS` and is the same for
//! every implementation anyway.

use std::process::{Command, Stdio};

use super::{
    ROLE,
    node::{Kind, Node},
    raise_descriptor_limit,
    sink::Sink,
};

/// The value of [`ROLE`] that makes this binary a memory child.
pub(super) const MEMORY: &str = "memory";

/// What a memory child is told: the implementation, the sink's port, the first remote, how many
/// connections.
const KIND: &str = "BENCH_SCALE_KIND";
const SINK_PORT: &str = "BENCH_SCALE_SINK_PORT";
const FIRST: &str = "BENCH_SCALE_FIRST_REMOTE";
const CONNS: &str = "BENCH_SCALE_CONNS";

/// The connections opened before measuring, so that what every process allocates once (the
/// runtime's first pages, the table's first buckets) is not counted.
const WARM_UP: usize = 1_000;

/// One implementation's figures.
pub(crate) struct Memory {
    /// `VmRSS` growth per connection, in bytes.
    pub(crate) bytes_per_conn: f64,
    /// How many of the connections left from the listening port.
    pub(crate) reused: usize,
    /// How many the port-reuse table held (this crate only).
    pub(crate) in_table: Option<usize>,
}

/// Measures `kind` with `conns` connections (to the remotes from `first` on) in a child.
pub(crate) fn measure(kind: Kind, sink: &mut Sink, first: u32, conns: usize) -> Memory {
    let output = Command::new(std::env::current_exe().expect("this binary"))
        .env(ROLE, MEMORY)
        .env(KIND, kind.name())
        .env(SINK_PORT, sink.port.to_string())
        .env(FIRST, first.to_string())
        .env(CONNS, conns.to_string())
        .stderr(Stdio::inherit())
        .output()
        .expect("run the memory child");
    assert!(output.status.success(), "memory child for {kind:?} failed");
    sink.pending += conns;
    sink.close_all();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let fields: Vec<&str> = stdout
        .lines()
        .find_map(|l| l.strip_prefix("memory "))
        .expect("the child's figures")
        .split(' ')
        .collect();
    Memory {
        bytes_per_conn: fields[0].parse().expect("bytes"),
        reused: fields[1].parse().expect("count"),
        in_table: fields[2].parse().ok(),
    }
}

/// The child's side: open the connections, print `memory <bytes per connection> <reused>
/// <in table or ->`, exit (closing them).
pub(super) fn main() {
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is set"));
    let kind = Kind::from_name(&var(KIND)).expect("a known implementation");
    let port: u16 = var(SINK_PORT).parse().expect("port");
    let first: u32 = var(FIRST).parse().expect("first remote");
    let conns: usize = var(CONNS).parse().expect("count");
    raise_descriptor_limit(conns as u64 + 1_000);
    let rt = crate::current_thread();
    rt.block_on(async {
        let mut node = Node::new(kind, 1);
        node.reserve(conns);
        let mut reused = node.fill(WARM_UP, first, port).await;
        let before = vm_rss();
        reused += node
            .fill(conns - WARM_UP, first + WARM_UP as u32, port)
            .await;
        let after = vm_rss();
        let per_conn = (after - before) as f64 / (conns - WARM_UP) as f64;
        let in_table = node
            .pairs_in_table()
            .map_or_else(|| "-".to_string(), |n| n.to_string());
        println!("memory {per_conn:.1} {reused} {in_table}");
    });
}

/// This process's resident memory in bytes.
fn vm_rss() -> i64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: i64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .expect("VmRSS in kB");
    kib * 1024
}
