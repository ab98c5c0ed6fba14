//! Row 12 (Linux): what the kernel costs a prune of the pairs of connections closed before their
//! remote did (`ReuseTable::prune_finishing`): a lookup of one pair against a dump of the
//! finishing connections, which walks the network namespace's whole connection table, TIME_WAIT
//! entries included, so that its cost grows with what the machine holds, not with the pairs
//! asked about.

use std::{
    net::{Ipv4Addr, TcpListener, TcpStream},
    time::Instant,
};

use libp2p_reuseport::__bench::kernel;

use crate::samples::median;

/// The figures of row 12: the TCP entries of the namespace (`/proc/net/sockstat`: in use and in
/// TIME_WAIT), us per lookup (the mean over `lookups`), ms per dump (the median of `dumps`).
pub(crate) fn costs(lookups: usize, dumps: usize) -> (f64, f64, f64) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let (server, _) = listener.accept().expect("accept");
    let (local, remote) = (
        server.local_addr().expect("addr"),
        server.peer_addr().expect("addr"),
    );
    let started = Instant::now();
    for _ in 0..lookups {
        // An open connection: never finished.
        assert!(!kernel::lookup(local, remote));
    }
    let lookup_us = started.elapsed().as_secs_f64() * 1e6 / lookups as f64;
    let mut times: Vec<f64> = (0..dumps)
        .map(|_| {
            let started = Instant::now();
            kernel::dump().expect("dump");
            started.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    drop((client, server));
    (tcp_entries(), lookup_us, median(&mut times))
}

/// The TCP entries of this network namespace: sockets in use and TIME_WAIT entries.
fn tcp_entries() -> f64 {
    let text = std::fs::read_to_string("/proc/net/sockstat").unwrap_or_default();
    let Some(line) = text.lines().find(|l| l.starts_with("TCP:")) else {
        return f64::NAN;
    };
    let fields: Vec<&str> = line.split_whitespace().collect();
    let field = |name: &str| -> f64 {
        fields
            .iter()
            .position(|f| *f == name)
            .and_then(|i| fields.get(i + 1)?.parse().ok())
            .unwrap_or(f64::NAN)
    };
    field("inuse") + field("tw")
}
