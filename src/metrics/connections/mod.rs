//! Per-connection series, with the `metrics` feature: how long the transport's connections live
//! (every platform) and, where TCP_INFO is sampled ([`tcp_info::SAMPLED`]: Linux), their
//! smoothed round-trip time, segments, retransmissions and bytes.
//!
//! - this file: the live connections, their samples, and the [`Tracked`] guard of a stream;
//! - `series`: the Prometheus families and their encoding;
//! - `tests`: unit tests, without sockets.
//!
//! # Sampling
//!
//! Nothing is read per packet or per write. Each connection is entered in [`Connections`] by
//! its (local, remote) pair when its stream is made and removed when the stream drops: one
//! short lock each, never on the data path. When the registry is encoded (a scrape) and the
//! last sample is at least `Config::tcp_info_interval` old (10 s by default), one sock_diag dump
//! per address family with live connections lists every open TCP connection of the network
//! namespace with its TCP_INFO, and the transport's own are picked out by their pair. So
//! sampling costs nothing without scrapes, at most one dump per interval with them, and each
//! dump is proportional to the open TCP connections of the namespace (about 300 bytes each from
//! the kernel), not to traffic. Concurrent encodes wait for a running sample rather than dump
//! again.
//!
//! Each sample adds one round-trip time per sampled connection to its histogram, and to the
//! segment and byte counters what each connection's kernel counters grew since its previous
//! sample (since its start at its first sample): counters, so that `rate()` gives segments per
//! second and a connection that closes takes nothing back. What a connection sends after its last
//! sample is not counted, nor is a connection that lived between two samples.

use std::{
    collections::HashMap,
    fmt, io,
    net::{IpAddr, SocketAddr},
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use prometheus_client::{collector::Collector, encoding::DescriptorEncoder};

use self::series::Families;
use crate::{
    error,
    origin::PortOrigin,
    sys::tcp_info::{self, Sample, TcpInfo},
};

mod series;
#[cfg(test)]
mod tests;

/// Which side opened a connection: the `direction` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    Dialed,
    Accepted,
}

impl Direction {
    const ALL: [Self; 2] = [Self::Dialed, Self::Accepted];

    fn of(origin: PortOrigin) -> Self {
        match origin {
            PortOrigin::Accepted => Self::Accepted,
            PortOrigin::Reused | PortOrigin::Ephemeral(_) => Self::Dialed,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Dialed => "dialed",
            Self::Accepted => "accepted",
        }
    }
}

/// A connection's (local, remote) pair, without IPv6 flow and scope, which a dump does not give
/// back as the stream saw them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Pair {
    local: (IpAddr, u16),
    remote: (IpAddr, u16),
}

impl Pair {
    fn new(local: SocketAddr, remote: SocketAddr) -> Self {
        Self {
            local: (local.ip(), local.port()),
            remote: (remote.ip(), remote.port()),
        }
    }
}

/// The kernel's counters of a connection at its previous sample (zero before the first).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    sent: u32,
    received: u32,
    retransmitted: u32,
    bytes_sent: u64,
    bytes_received: u64,
}

/// A live connection whose TCP_INFO is sampled.
#[derive(Debug)]
struct Live {
    /// Tells this connection from an earlier one of the same pair.
    id: u64,
    direction: Direction,
    last: Counts,
}

impl Live {
    /// What the kernel's counters grew since the previous sample, remembering `info` for the
    /// next one. The segment counters are 32 bits and wrap: the difference wraps with them. A
    /// counter the kernel does not report grows by nothing.
    fn advance(&mut self, info: &TcpInfo) -> Counts {
        fn delta(last: &mut u32, now: Option<u32>) -> u32 {
            let Some(now) = now else { return 0 };
            let grown = now.wrapping_sub(*last);
            *last = now;
            grown
        }
        fn delta64(last: &mut u64, now: Option<u64>) -> u64 {
            let Some(now) = now else { return 0 };
            let grown = now.wrapping_sub(*last);
            *last = now;
            grown
        }
        Counts {
            sent: delta(&mut self.last.sent, info.segments_sent),
            received: delta(&mut self.last.received, info.segments_received),
            retransmitted: delta(&mut self.last.retransmitted, info.retransmitted),
            bytes_sent: delta64(&mut self.last.bytes_sent, info.bytes_acked),
            bytes_received: delta64(&mut self.last.bytes_received, info.bytes_received),
        }
    }
}

/// Whether a sample is due: none yet, or the last one `interval` ago or longer.
fn due(last: Option<Instant>, now: Instant, interval: Duration) -> bool {
    last.is_none_or(|last| now.saturating_duration_since(last) >= interval)
}

/// The transport's live connections and their series.
pub(crate) struct Connections {
    interval: Duration,
    /// The live connections whose TCP_INFO is sampled; always empty where it is not.
    live: Mutex<HashMap<Pair, Live>>,
    next_id: AtomicU64,
    /// When the last sample was taken; held while sampling.
    last_sample: Mutex<Option<Instant>>,
    /// Whether a failed sample was logged at `warn` already (later ones are logged at `debug`).
    warned: AtomicBool,
    families: Families,
}

impl Connections {
    /// No connections yet; a sample at most every `interval`.
    pub(crate) fn new(interval: Duration) -> Self {
        Self {
            interval,
            live: Mutex::default(),
            next_id: AtomicU64::new(0),
            last_sample: Mutex::new(None),
            warned: AtomicBool::new(false),
            families: Families::new(),
        }
    }

    fn lock_live(&self) -> MutexGuard<'_, HashMap<Pair, Live>> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A stream was made: `origin` tells its direction, `local` gives its local address (asked
    /// only where TCP_INFO is sampled).
    pub(crate) fn track(
        self: &Arc<Self>,
        origin: PortOrigin,
        local: impl FnOnce() -> Option<SocketAddr>,
        remote: SocketAddr,
    ) -> Tracked {
        let direction = Direction::of(origin);
        let sampled = if tcp_info::SAMPLED {
            local().map(|local| {
                let pair = Pair::new(local, remote);
                let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                let live = Live {
                    id,
                    direction,
                    last: Counts::default(),
                };
                self.lock_live().insert(pair, live);
                (pair, id)
            })
        } else {
            None
        };
        Tracked {
            connections: self.clone(),
            direction,
            started: Instant::now(),
            sampled,
        }
    }

    /// `tracked`'s stream dropped: its lifetime is observed, its pair no longer sampled.
    fn closed(&self, tracked: &Tracked) {
        self.families
            .lived(tracked.direction, tracked.started.elapsed());
        if let Some((pair, id)) = tracked.sampled {
            let mut live = self.lock_live();
            if live.get(&pair).is_some_and(|l| l.id == id) {
                live.remove(&pair);
            }
        }
    }

    /// Samples TCP_INFO if a sample is due (see the module docs).
    fn sample_if_due(&self) {
        if !tcp_info::SAMPLED {
            return;
        }
        let mut last = self
            .last_sample
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if !due(*last, now, self.interval) {
            return;
        }
        *last = Some(now);
        let families: Vec<tcp_info::Family> = {
            let live = self.lock_live();
            let family = |ipv6: bool| live.keys().any(|p| p.local.0.is_ipv6() == ipv6);
            [
                (tcp_info::Family::V4, family(false)),
                (tcp_info::Family::V6, family(true)),
            ]
            .into_iter()
            .filter_map(|(f, any)| any.then_some(f))
            .collect()
        };
        for family in families {
            match tcp_info::dump(family) {
                Ok(samples) => self.account(&samples),
                Err(e) => self.failed(error::context(
                    e,
                    format_args!("TCP_INFO sample of the {family:?} TCP connections"),
                )),
            }
        }
    }

    /// Feeds the samples of the transport's live connections into the series; the others
    /// (connections of other transports and processes) are passed over.
    fn account(&self, samples: &[Sample]) {
        let mut live = self.lock_live();
        for sample in samples {
            let Some(conn) = live.get_mut(&Pair::new(sample.local, sample.remote)) else {
                continue;
            };
            let grown = conn.advance(&sample.info);
            self.families
                .sampled(conn.direction, sample.info.rtt, grown);
        }
    }

    fn failed(&self, e: io::Error) {
        if self.warned.swap(true, Ordering::Relaxed) {
            tracing::debug!(error = %e, "TCP_INFO sample failed");
        } else {
            tracing::warn!(error = %e, "TCP_INFO sample failed; the tcp_ series keep their values");
        }
    }
}

impl fmt::Debug for Connections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connections")
            .field("interval", &self.interval)
            .field("live", &self.lock_live().len())
            .finish_non_exhaustive()
    }
}

/// What a stream holds while it lives: dropped, it observes the connection's lifetime and stops
/// its sampling.
pub(crate) struct Tracked {
    connections: Arc<Connections>,
    direction: Direction,
    started: Instant,
    /// The pair under which the connection's TCP_INFO is sampled, if it is.
    sampled: Option<(Pair, u64)>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.connections.closed(self);
    }
}

impl fmt::Debug for Tracked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracked")
            .field("direction", &self.direction)
            .field("sampled", &self.sampled.is_some())
            .finish_non_exhaustive()
    }
}

/// The series in a registry: sampled, if due, when the registry is encoded.
#[derive(Debug)]
pub(crate) struct Series(pub(crate) Arc<Connections>);

impl Collector for Series {
    fn encode(&self, encoder: DescriptorEncoder<'_>) -> fmt::Result {
        self.0.sample_if_due();
        self.0.families.encode(encoder, tcp_info::SAMPLED)
    }
}
