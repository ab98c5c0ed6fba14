//! The per-connection series: names, help texts, buckets, the `direction` label, and their
//! text encoding.

use std::{fmt, time::Duration};

use prometheus_client::{
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{
        TypedMetric,
        counter::Counter,
        family::{Family, MetricConstructor},
        histogram::{Histogram, exponential_buckets},
    },
    registry::Unit,
};

use super::{Counts, Direction};

type Labels = Vec<(&'static str, &'static str)>;

/// A family labelled by direction, its two series looked up once so that counting is no
/// lookup.
struct ByDirection<M, C = fn() -> M> {
    family: Family<Labels, M, C>,
    each: [M; 2],
}

impl<M: Clone, C: MetricConstructor<M>> ByDirection<M, C> {
    fn new(family: Family<Labels, M, C>) -> Self {
        let each =
            Direction::ALL.map(|d| family.get_or_create_owned(&vec![("direction", d.label())]));
        Self { family, each }
    }

    fn get(&self, direction: Direction) -> &M {
        &self.each[direction as usize]
    }
}

impl<M: Default + Clone> Default for ByDirection<M> {
    fn default() -> Self {
        Self::new(Family::default())
    }
}

/// Smoothed round-trip times: 100 µs (loopback) to 6.5 s, doubling.
fn rtt_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_1, 2.0, 17))
}

/// Connection lifetimes: 100 ms to a week.
fn duration_histogram() -> Histogram {
    Histogram::new([
        0.1, 1.0, 10.0, 60.0, 300.0, 1_800.0, 3_600.0, 21_600.0, 86_400.0, 604_800.0,
    ])
}

/// Every per-connection series, each label set made up front so that both directions show
/// from the first scrape.
pub(super) struct Families {
    duration: ByDirection<Histogram>,
    rtt: ByDirection<Histogram>,
    segments_sent: ByDirection<Counter>,
    segments_received: ByDirection<Counter>,
    retransmitted: ByDirection<Counter>,
    bytes_sent: ByDirection<Counter>,
    bytes_received: ByDirection<Counter>,
}

impl Families {
    pub(super) fn new() -> Self {
        Self {
            duration: ByDirection::new(Family::new_with_constructor(
                duration_histogram as fn() -> _,
            )),
            rtt: ByDirection::new(Family::new_with_constructor(rtt_histogram as fn() -> _)),
            segments_sent: ByDirection::default(),
            segments_received: ByDirection::default(),
            retransmitted: ByDirection::default(),
            bytes_sent: ByDirection::default(),
            bytes_received: ByDirection::default(),
        }
    }

    /// A connection of `direction` lived `lifetime`.
    pub(super) fn lived(&self, direction: Direction, lifetime: Duration) {
        self.duration.get(direction).observe(lifetime.as_secs_f64());
    }

    /// A sample of a connection of `direction`: its smoothed round-trip time, and what its
    /// counters grew since its previous sample.
    pub(super) fn sampled(&self, direction: Direction, rtt: Duration, grown: Counts) {
        self.rtt.get(direction).observe(rtt.as_secs_f64());
        self.segments_sent.get(direction).inc_by(grown.sent.into());
        self.segments_received
            .get(direction)
            .inc_by(grown.received.into());
        self.retransmitted
            .get(direction)
            .inc_by(grown.retransmitted.into());
        self.bytes_sent.get(direction).inc_by(grown.bytes_sent);
        self.bytes_received
            .get(direction)
            .inc_by(grown.bytes_received);
    }

    /// The series as they are; the TCP_INFO ones only with `tcp_info` (where it is sampled).
    pub(super) fn encode(&self, mut encoder: DescriptorEncoder<'_>, tcp_info: bool) -> fmt::Result {
        encode(
            &mut encoder,
            "connection_duration",
            "How long connections lived, from the stream's creation (connected or accepted) to \
             its drop, by direction",
            Some(&Unit::Seconds),
            &self.duration.family,
        )?;
        if !tcp_info {
            return Ok(());
        }
        encode(
            &mut encoder,
            "tcp_rtt",
            "Smoothed round-trip time (TCP_INFO tcpi_rtt) of each open connection at each \
             sample, by direction",
            Some(&Unit::Seconds),
            &self.rtt.family,
        )?;
        encode(
            &mut encoder,
            "tcp_segments_sent",
            "TCP segments sent (tcpi_segs_out, retransmissions included) by the connections, \
             added at each sample",
            None,
            &self.segments_sent.family,
        )?;
        encode(
            &mut encoder,
            "tcp_segments_received",
            "TCP segments received (tcpi_segs_in) by the connections, added at each sample",
            None,
            &self.segments_received.family,
        )?;
        encode(
            &mut encoder,
            "tcp_retransmitted_segments",
            "TCP segments retransmitted (tcpi_total_retrans) by the connections, added at each \
             sample",
            None,
            &self.retransmitted.family,
        )?;
        encode(
            &mut encoder,
            "tcp_bytes_sent",
            "Bytes the connections sent that their remote acknowledged (tcpi_bytes_acked), \
             added at each sample",
            None,
            &self.bytes_sent.family,
        )?;
        encode(
            &mut encoder,
            "tcp_bytes_received",
            "Bytes the connections received (tcpi_bytes_received), added at each sample",
            None,
            &self.bytes_received.family,
        )
    }
}

fn encode<M, C>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    family: &Family<Labels, M, C>,
) -> fmt::Result
where
    M: EncodeMetric + TypedMetric,
    C: MetricConstructor<M>,
{
    let metric = encoder.encode_descriptor(name, help, unit, M::TYPE)?;
    family.encode(metric)
}
