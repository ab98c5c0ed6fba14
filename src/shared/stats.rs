//! What became of the connections a shared listener set accepted: handed to a side by kind, or
//! closed and why. Counted with atomics; read with [`SharedListeners::stats`](super::SharedListeners::stats)
//! and, with the `metrics` feature, scraped from a Prometheus registry.

use std::sync::atomic::{AtomicU64, Ordering};

use super::classify::Kind;

/// Counts of what became of the connections a [`SharedListeners`](crate::SharedListeners) set
/// accepted, since it was created. Every accepted connection is counted once, when its first
/// bytes have been looked at; connections still waiting for theirs are not counted yet.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SharedStats {
    /// Handed to a [`tcp`](crate::SharedListeners::tcp) side: the first bytes began
    /// multistream-select (`\x13/m`).
    pub multistream: u64,
    /// Handed to a [`websocket`](crate::SharedListeners::websocket) side: the first bytes began an
    /// HTTP request (`GET`, ...).
    pub http: u64,
    /// Handed to a [`websocket_tls`](crate::SharedListeners::websocket_tls) side: the first
    /// bytes began a TLS handshake (`\x16\x03\x01`..`\x16\x03\x03`).
    pub tls: u64,
    /// Closed: the first bytes began none of the three.
    pub unknown: u64,
    /// Closed: not enough first bytes within [`SharedConfig::first_bytes_timeout`](crate::SharedConfig::first_bytes_timeout).
    pub timed_out: u64,
    /// Closed: of a kind no side listens for on that socket (for example TLS without a
    /// `websocket_tls` side).
    pub unclaimed: u64,
    /// Closed: the side listening for its kind had 256 connections queued that it had not taken
    /// yet (it was not being polled).
    pub overflow: u64,
    /// Gone: the remote closed or reset the connection, or reading failed, before its kind was
    /// known.
    pub failed: u64,
}

impl SharedStats {
    /// Every connection the shared listener set closed rather than handed to a side (all but
    /// `multistream`, `http` and `tls`).
    pub fn closed(&self) -> u64 {
        self.unknown + self.timed_out + self.unclaimed + self.overflow + self.failed
    }
}

/// The live counters behind [`SharedStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Per [`Kind::index`].
    handed: [AtomicU64; 3],
    unknown: AtomicU64,
    timed_out: AtomicU64,
    unclaimed: AtomicU64,
    overflow: AtomicU64,
    failed: AtomicU64,
}

/// Why a connection was closed instead of handed to a side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    Unknown,
    TimedOut,
    Unclaimed,
    Overflow,
    Failed,
}

impl Refusal {
    /// The name in logs and metric labels.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::TimedOut => "timed_out",
            Self::Unclaimed => "unclaimed",
            Self::Overflow => "overflow",
            Self::Failed => "failed",
        }
    }
}

impl Counters {
    pub(crate) fn handed(&self, kind: Kind) {
        self.handed[kind.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn refused(&self, why: Refusal) {
        let counter = match why {
            Refusal::Unknown => &self.unknown,
            Refusal::TimedOut => &self.timed_out,
            Refusal::Unclaimed => &self.unclaimed,
            Refusal::Overflow => &self.overflow,
            Refusal::Failed => &self.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> SharedStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SharedStats {
            multistream: get(&self.handed[Kind::Multistream.index()]),
            http: get(&self.handed[Kind::Http.index()]),
            tls: get(&self.handed[Kind::Tls.index()]),
            unknown: get(&self.unknown),
            timed_out: get(&self.timed_out),
            unclaimed: get(&self.unclaimed),
            overflow: get(&self.overflow),
            failed: get(&self.failed),
        }
    }
}

// prometheus-client is an optional dependency (the `metrics` feature).
#[cfg(feature = "metrics")]
pub(crate) use self::prometheus::Collector;

// prometheus-client is an optional dependency (the `metrics` feature).
#[cfg(feature = "metrics")]
mod prometheus {
    use std::{fmt, sync::Arc};

    use prometheus_client::{
        collector,
        encoding::{DescriptorEncoder, EncodeMetric},
        metrics::{MetricType, counter::ConstCounter},
    };

    use super::Counters;

    /// Encodes the counters at each scrape as `shared_connections_total{outcome=...}`.
    #[derive(Debug)]
    pub(crate) struct Collector(pub(crate) Arc<Counters>);

    impl collector::Collector for Collector {
        fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
            let s = self.0.snapshot();
            let outcomes = [
                ("multistream", s.multistream),
                ("http", s.http),
                ("tls", s.tls),
                ("unknown", s.unknown),
                ("timed_out", s.timed_out),
                ("unclaimed", s.unclaimed),
                ("overflow", s.overflow),
                ("failed", s.failed),
            ];
            let mut family = encoder.encode_descriptor(
                "shared_connections",
                "Connections accepted on shared listening sockets, by outcome: handed to the side \
                 of their kind (multistream, http, tls) or closed (unknown first bytes, timed_out, \
                 unclaimed kind, overflow of the side's queue, failed before the first bytes)",
                None,
                MetricType::Counter,
            )?;
            for (outcome, value) in outcomes {
                let labels = [("outcome", outcome)];
                ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
            }
            Ok(())
        }
    }
}
