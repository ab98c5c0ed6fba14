//! Unit tests of the per-connection series: no sockets.

use std::collections::BTreeMap;

use prometheus_client::registry::Registry;

use super::*;
use crate::origin::Fallback;

/// The series of `connections` as the text encoding shows them, without sampling: series
/// (with its labels) -> value.
fn read(connections: &Arc<Connections>) -> BTreeMap<String, f64> {
    #[derive(Debug)]
    struct Unsampled(Arc<Connections>);
    impl Collector for Unsampled {
        fn encode(&self, encoder: DescriptorEncoder<'_>) -> fmt::Result {
            self.0.families.encode(encoder, tcp_info::SAMPLED)
        }
    }
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Unsampled(connections.clone())));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').unwrap();
            (series.to_string(), value.parse().unwrap())
        })
        .collect()
}

/// A TCP_INFO with these segment counts, and `bytes` (acked, received).
fn info(rtt_us: u64, segments: [u32; 3], bytes: [u64; 2]) -> TcpInfo {
    TcpInfo {
        rtt: Duration::from_micros(rtt_us),
        segments_sent: Some(segments[0]),
        segments_received: Some(segments[1]),
        retransmitted: Some(segments[2]),
        bytes_acked: Some(bytes[0]),
        bytes_received: Some(bytes[1]),
    }
}

fn counts(segments: [u32; 3], bytes: [u64; 2]) -> Counts {
    Counts {
        sent: segments[0],
        received: segments[1],
        retransmitted: segments[2],
        bytes_sent: bytes[0],
        bytes_received: bytes[1],
    }
}

#[test]
fn counters_grow_by_the_difference_between_samples() {
    let mut live = Live {
        id: 0,
        direction: Direction::Dialed,
        last: Counts::default(),
    };
    let max = u32::MAX;
    let tb = 1 << 40;
    // (the kernel's counters at the sample, what is added)
    #[rustfmt::skip]
    let table = [
        // The first sample counts from the connection's start.
        (info(50, [10, 12, 0], [1000, 2000]), counts([10, 12, 0], [1000, 2000])),
        (info(50, [15, 12, 1], [1500, 2000]), counts([5, 0, 1], [500, 0])),
        // The 32-bit segment counters wrapped; the byte counters are 64 bits.
        (info(50, [max, 13, 1], [tb, 2100]), counts([max - 15, 1, 0], [tb - 1500, 100])),
        (info(50, [3, 13, 1], [tb + 10, 2100]), counts([4, 0, 0], [10, 0])),
    ];
    for (info, grown) in table {
        assert_eq!(live.advance(&info), grown, "{info:?}");
    }
    // A kernel without segment nor byte counts: nothing added, the last values kept.
    let old = TcpInfo {
        rtt: Duration::from_micros(50),
        retransmitted: Some(2),
        ..TcpInfo::default()
    };
    assert_eq!(live.advance(&old), counts([0, 0, 1], [0, 0]));
    assert_eq!(live.last, counts([3, 13, 2], [tb + 10, 2100]));
}

#[test]
fn a_sample_is_due_once_per_interval() {
    let t0 = Instant::now();
    let s = Duration::from_secs(1);
    let ten = 10 * s;
    // (last sample, now, interval, due)
    let table = [
        (None, t0, ten, true),
        (Some(t0), t0, ten, false),
        (Some(t0), t0 + 9 * s, ten, false),
        (Some(t0), t0 + ten, ten, true),
        (Some(t0), t0 + 11 * s, ten, true),
        (Some(t0), t0, Duration::ZERO, true),
        // A clock read before the last sample (another thread's): not due.
        (Some(t0 + s), t0, ten, false),
    ];
    for (last, now, interval, expected) in table {
        assert_eq!(
            due(last, now, interval),
            expected,
            "{last:?} {now:?} {interval:?}"
        );
    }
}

/// What `account` does with a dump, without sockets (the pairs are entered by hand).
// The tcp_ series are registered only where TCP_INFO is sampled.
#[cfg(tcp_info)]
#[test]
fn only_live_connections_of_the_transport_are_counted() {
    let connections = Arc::new(Connections::new(Duration::ZERO));
    let a: SocketAddr = "10.0.0.1:4001".parse().unwrap();
    let b: SocketAddr = "10.0.0.2:4001".parse().unwrap();
    let c: SocketAddr = "[2001:db8::3]:5000".parse().unwrap();
    let c_scoped: SocketAddr = "[2001:db8::3%7]:5000".parse().unwrap();
    let d: SocketAddr = "[2001:db8::4]:4001".parse().unwrap();
    for (id, (local, remote, direction)) in [
        (a, b, Direction::Dialed),
        (d, c_scoped, Direction::Accepted),
    ]
    .into_iter()
    .enumerate()
    {
        let live = Live {
            id: id as u64,
            direction,
            last: Counts::default(),
        };
        connections
            .lock_live()
            .insert(Pair::new(local, remote), live);
    }
    let sample = |local, remote, info| Sample {
        local,
        remote,
        info,
    };
    let dump = [
        sample(a, b, info(80, [10, 8, 1], [5000, 300])),
        // The reverse direction: another process's end of the connection.
        sample(b, a, info(80, [8, 10, 0], [300, 5000])),
        // Found by its pair whatever the scope id.
        sample(d, c, info(1_000, [4, 5, 0], [40, 50])),
    ];
    connections.account(&dump);
    connections.account(&[sample(a, b, info(120, [30, 9, 1], [9000, 310]))]);
    let series = read(&connections);
    let value = |name: &str| {
        *series
            .get(name)
            .unwrap_or_else(|| panic!("{name} in {series:#?}"))
    };
    assert_eq!(value(r#"tcp_rtt_seconds_count{direction="dialed"}"#), 2.0);
    assert!((value(r#"tcp_rtt_seconds_sum{direction="dialed"}"#) - 0.000_2).abs() < 1e-9);
    // 80 µs and 120 µs: both in the first two buckets.
    assert_eq!(
        value(r#"tcp_rtt_seconds_bucket{le="0.0001",direction="dialed"}"#),
        1.0
    );
    assert_eq!(value(r#"tcp_rtt_seconds_count{direction="accepted"}"#), 1.0);
    assert_eq!(
        value(r#"tcp_segments_sent_total{direction="dialed"}"#),
        30.0
    );
    assert_eq!(
        value(r#"tcp_segments_received_total{direction="dialed"}"#),
        9.0
    );
    assert_eq!(
        value(r#"tcp_retransmitted_segments_total{direction="dialed"}"#),
        1.0
    );
    assert_eq!(value(r#"tcp_bytes_sent_total{direction="dialed"}"#), 9000.0);
    assert_eq!(
        value(r#"tcp_bytes_received_total{direction="dialed"}"#),
        310.0
    );
    assert_eq!(
        value(r#"tcp_bytes_received_total{direction="accepted"}"#),
        50.0
    );
    assert_eq!(
        value(r#"tcp_segments_sent_total{direction="accepted"}"#),
        4.0
    );
    assert_eq!(
        value(r#"tcp_segments_received_total{direction="accepted"}"#),
        5.0
    );
    assert_eq!(
        value(r#"tcp_retransmitted_segments_total{direction="accepted"}"#),
        0.0
    );
}

#[test]
fn a_dropped_stream_observes_its_lifetime_and_leaves_the_table() {
    let connections = Arc::new(Connections::new(Duration::ZERO));
    let a: SocketAddr = "127.0.0.1:4001".parse().unwrap();
    let b: SocketAddr = "127.0.0.1:4002".parse().unwrap();
    let first = connections.track(PortOrigin::Reused, || Some(a), b);
    let second = connections.track(PortOrigin::Ephemeral(Fallback::Busy), || Some(b), a);
    let accepted = connections.track(PortOrigin::Accepted, || Some(b), a);
    assert_eq!(
        connections.lock_live().len(),
        if tcp_info::SAMPLED { 2 } else { 0 },
        "one entry per pair: the later stream of a pair replaces the earlier"
    );
    drop(second);
    // The accepted stream holds the pair now: the dialed one's drop left it.
    assert_eq!(
        connections.lock_live().len(),
        if tcp_info::SAMPLED { 2 } else { 0 }
    );
    drop((first, accepted));
    assert!(connections.lock_live().is_empty());
    let series = read(&connections);
    let value = |name: &str| series[name];
    assert_eq!(
        value(r#"connection_duration_seconds_count{direction="dialed"}"#),
        2.0
    );
    assert_eq!(
        value(r#"connection_duration_seconds_count{direction="accepted"}"#),
        1.0
    );
    // Lived well under the first bucket, 100 ms.
    assert_eq!(
        value(r#"connection_duration_seconds_bucket{le="0.1",direction="dialed"}"#),
        2.0
    );
}
