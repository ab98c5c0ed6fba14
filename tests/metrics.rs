//! The `metrics` feature: after known dials, accepts and listener errors, the text encoding of
//! the registry shows exactly those numbers, and the gauges follow the port-reuse table. The
//! per-connection series: lifetimes on every platform; on Linux the TCP_INFO of real
//! connections with traffic, sampled at scrapes.
//!
//! `cargo test --features metrics`; without the feature the one test here is listed as ignored,
//! with the reason.

// The metrics exist only with the feature; without it, say so instead of passing silently.
#[cfg(not(feature = "metrics"))]
#[test]
#[ignore = "needs the metrics feature: cargo test --features metrics"]
fn metrics_need_the_metrics_feature() {}

// Everything below uses prometheus-client, an optional dependency behind the feature.
#[cfg(feature = "metrics")]
mod util;

#[cfg(feature = "metrics")]
mod with_feature {
    use std::{collections::BTreeMap, time::Duration};

    use libp2p_core::transport::PortUse;
    use libp2p_reuseport::{Config, Fallback, PortOrigin, Transport};
    use prometheus_client::{encoding::text::encode, registry::Registry};

    use crate::util::*;

    const PREFIX: &str = "libp2p_reuseport_";

    /// Every series the transport registers, by name without the prefix, all at zero.
    const SERIES: [&str; 15] = [
        r#"accepted_connections"#,
        r#"accepts_total"#,
        r#"closing_connections"#,
        r#"closing_sockets"#,
        r#"dials_total{origin="ephemeral",reason="busy"}"#,
        r#"dials_total{origin="ephemeral",reason="disabled"}"#,
        r#"dials_total{origin="ephemeral",reason="no_listener"}"#,
        r#"dials_total{origin="ephemeral",reason="no_route"}"#,
        r#"dials_total{origin="ephemeral",reason="not_requested"}"#,
        r#"dials_total{origin="ephemeral",reason="kernel_refused"}"#,
        r#"dials_total{origin="reused"}"#,
        r#"listen_addresses"#,
        r#"listener_errors_total"#,
        r#"dialed_connections"#,
        r#"rst_retries_total"#,
    ];

    /// The rustdoc table of `Transport::register_metrics` is the one list of the series: every
    /// family this platform registers is in it.
    #[test]
    fn every_series_is_in_the_documented_table() {
        let table = include_str!("../src/transport.rs");
        let mut registry = Registry::default();
        Transport::default().register_metrics(&mut registry);
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        let families: Vec<&str> = text
            .lines()
            .filter_map(|line| line.strip_prefix("# TYPE "))
            .filter_map(|line| line.split(' ').next())
            .collect();
        assert!(families.len() >= SERIES.len() / 2, "{text}");
        for family in families {
            assert!(
                table.contains(&format!("`{family}")),
                "{family} is registered but not in the table of Transport::register_metrics"
            );
        }
    }

    /// The per-connection series (histograms, and counters fed by TCP_INFO samples), which
    /// [`read`] leaves out: the lifetimes everywhere, the rest where TCP_INFO is sampled.
    const CONNECTION_SERIES: [&str; 7] = [
        "connection_duration_seconds",
        "tcp_rtt_seconds",
        "tcp_segments_sent_total",
        "tcp_segments_received_total",
        "tcp_retransmitted_segments_total",
        "tcp_bytes_sent_total",
        "tcp_bytes_received_total",
    ];

    /// The per-connection series `series` (with its labels, histograms with their `_bucket`,
    /// `_sum` and `_count`) belongs to, if any.
    fn connection_series(series: &str) -> Option<&'static str> {
        let name = series.split('{').next().expect("a name");
        CONNECTION_SERIES.into_iter().find(|base| {
            name.strip_prefix(base)
                .is_some_and(|rest| ["", "_bucket", "_sum", "_count"].contains(&rest))
        })
    }

    /// The registry's text encoding as series -> value, the prefix taken off every name.
    fn read_all(registry: &Registry) -> BTreeMap<String, f64> {
        let mut text = String::new();
        encode(&mut text, registry).expect("encode");
        let mut series = BTreeMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = line.rsplit_once(' ').expect("series and value");
            let name = name
                .strip_prefix(PREFIX)
                .unwrap_or_else(|| panic!("{name} has the prefix {PREFIX}"));
            let value = value
                .parse()
                .unwrap_or_else(|e| panic!("{line}: value: {e}"));
            assert!(
                series.insert(name.to_string(), value).is_none(),
                "{name} twice in\n{text}"
            );
        }
        series
    }

    /// The counters and gauges of the registry's text encoding as series -> value, the prefix
    /// taken off every name; without the per-connection series.
    pub(crate) fn read(registry: &Registry) -> BTreeMap<String, u64> {
        read_all(registry)
            .into_iter()
            .filter(|(name, _)| connection_series(name).is_none())
            .map(|(name, value)| {
                assert!(value.fract() == 0.0 && value >= 0.0, "{name} {value}");
                (name, value as u64)
            })
            .collect()
    }

    /// The per-connection series of the registry's text encoding.
    fn read_connections(registry: &Registry) -> BTreeMap<String, f64> {
        read_all(registry)
            .into_iter()
            .filter(|(name, _)| connection_series(name).is_some())
            .collect()
    }

    /// The value of `series` in `read`, which must have it.
    fn value(read: &BTreeMap<String, f64>, series: &str) -> f64 {
        *read
            .get(series)
            .unwrap_or_else(|| panic!("{series} in {read:#?}"))
    }

    /// Every series at zero except those given.
    pub(crate) fn expect(nonzero: &[(&str, u64)]) -> BTreeMap<String, u64> {
        let mut series: BTreeMap<String, u64> =
            SERIES.iter().map(|name| (name.to_string(), 0)).collect();
        for (name, value) in nonzero {
            assert!(series.contains_key(*name), "unknown series {name}");
            series.insert(name.to_string(), *value);
        }
        series
    }

    async fn wait_until(what: &str, condition: impl Fn() -> bool) {
        within(what, async {
            while !condition() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await;
    }

    #[tokio::test]
    async fn dials_accepts_and_pairs_are_counted() {
        if !port_sharing_here("dials_accepts_and_pairs_are_counted") {
            return;
        }
        let mut registry = Registry::default();
        let mut a = transport();
        a.register_metrics(&mut registry);
        assert_eq!(read(&registry), expect(&[]));
        let (_, a_addr) = listen(&mut a, "/ip4/127.0.0.1/tcp/0").await;
        let mut b = transport();
        let (_, b_addr) = listen(&mut b, "/ip4/127.0.0.1/tcp/0").await;
        let (_, b6_addr) = listen(&mut b, "/ip6/::1/tcp/0").await;
        assert_eq!(read(&registry), expect(&[("listen_addresses", 1)]));

        // From the listening port; then the same pair is held: busy.
        let (first, first_accepted, _) = connect(&mut a, &mut b, b_addr, PortUse::Reuse).await;
        let (second, _second_accepted, _) = connect(&mut a, &mut b, b_addr, PortUse::Reuse).await;
        // PortUse::New; and an IPv6 destination with only an IPv4 listener.
        let (third, _third_accepted, _) = connect(&mut a, &mut b, b_addr, PortUse::New).await;
        let (fourth, _fourth_accepted, _) = connect(&mut a, &mut b, b6_addr, PortUse::Reuse).await;
        assert_eq!(
            [
                first.port_origin(),
                second.port_origin(),
                third.port_origin(),
                fourth.port_origin()
            ],
            [
                PortOrigin::Reused,
                PortOrigin::Ephemeral(Fallback::Busy),
                PortOrigin::Ephemeral(Fallback::NotRequested),
                PortOrigin::Ephemeral(Fallback::NoListener),
            ]
        );
        let dials = [
            (r#"dials_total{origin="reused"}"#, 1),
            (r#"dials_total{origin="ephemeral",reason="busy"}"#, 1),
            (
                r#"dials_total{origin="ephemeral",reason="not_requested"}"#,
                1,
            ),
            (r#"dials_total{origin="ephemeral",reason="no_listener"}"#, 1),
        ];
        let now = |more: &[(&'static str, u64)]| expect(&[&dials[..], more].concat());
        assert_eq!(
            read(&registry),
            now(&[("listen_addresses", 1), ("dialed_connections", 1)])
        );

        // Two connections to a's listener, closed by b first: a's accepted ends read the end of
        // stream, so their pairs are not held after them.
        for k in 0..2 {
            let (dialed, accepted, _) = connect(&mut b, &mut a, a_addr, PortUse::New).await;
            assert_eq!(
                read(&registry),
                now(&[
                    ("listen_addresses", 1),
                    ("dialed_connections", 1),
                    ("accepted_connections", 1),
                    ("accepts_total", k + 1)
                ])
            );
            close_remote_first(accepted, dialed).await;
        }
        assert_eq!(
            read(&registry),
            now(&[
                ("listen_addresses", 1),
                ("dialed_connections", 1),
                ("accepts_total", 2)
            ])
        );

        // Dropped while the remote keeps its side open: closing until the remote closes. On
        // Linux the socket is closed at once and the kernel asked about the pair; elsewhere the
        // socket is held.
        drop(first);
        let held = u64::from(!cfg!(target_os = "linux"));
        assert_eq!(
            read(&registry),
            now(&[
                ("listen_addresses", 1),
                ("closing_connections", 1),
                ("closing_sockets", held),
                ("accepts_total", 2)
            ])
        );
        drop(first_accepted);
        let table = a.reuse_table();
        wait_until("the closing pair is released", || {
            table.closing_connections() == 0
        })
        .await;
        assert_eq!(
            read(&registry),
            now(&[("listen_addresses", 1), ("accepts_total", 2)])
        );
    }

    #[tokio::test]
    async fn refused_and_disabled_dials_are_counted() {
        let mut b = transport();
        let (_, b_addr) = listen(&mut b, "/ip4/127.0.0.1/tcp/0").await;

        // Two transports share one listening port, each with its own table: the kernel refuses
        // the second one's pair, which the first holds. Windows shares no listening address
        // (tests/windows.rs has its own refused dial).
        if !cfg!(windows) {
            let mut registry = Registry::default();
            let mut first = transport();
            let (_, shared) = listen(&mut first, "/ip4/127.0.0.1/tcp/0").await;
            let mut second = Transport::new(Config::new().foreign_port_sharing(true));
            second.register_metrics(&mut registry);
            listen(&mut second, &to_multiaddr(shared).to_string()).await;
            let (one, _one_accepted, _) = connect(&mut first, &mut b, b_addr, PortUse::Reuse).await;
            assert_eq!(one.port_origin(), PortOrigin::Reused);
            let (two, _two_accepted, _) =
                connect(&mut second, &mut b, b_addr, PortUse::Reuse).await;
            assert!(matches!(
                two.port_origin(),
                PortOrigin::Ephemeral(Fallback::KernelRefused(_))
            ));
            assert_eq!(
                read(&registry),
                expect(&[
                    (
                        r#"dials_total{origin="ephemeral",reason="kernel_refused"}"#,
                        1
                    ),
                    ("listen_addresses", 1),
                ])
            );
        }

        // Port reuse off: listening registers nothing, every dial is ephemeral (disabled).
        let mut registry = Registry::default();
        let mut off = Transport::new(Config::new().port_reuse(false));
        off.register_metrics(&mut registry);
        listen(&mut off, "/ip4/127.0.0.1/tcp/0").await;
        for _ in 0..3 {
            let (dialed, _accepted, _) = connect(&mut off, &mut b, b_addr, PortUse::Reuse).await;
            assert_eq!(
                dialed.port_origin(),
                PortOrigin::Ephemeral(Fallback::Disabled)
            );
        }
        assert_eq!(
            read(&registry),
            expect(&[(r#"dials_total{origin="ephemeral",reason="disabled"}"#, 3)])
        );
    }

    /// Listener errors need accept to fail: a child process with few descriptors takes them
    /// all, as in tests/exhaustion.rs.
    #[cfg(target_os = "linux")]
    #[test]
    fn listener_errors_are_counted() {
        let stdout = run_child_with_descriptor_limit(
            64,
            "with_feature::child_counts_listener_errors",
            CHILD,
        );
        assert!(
            stdout.contains("metrics: listener errors counted"),
            "{stdout}"
        );
    }

    // The marker of the child process of the Linux-only test above.
    #[cfg(target_os = "linux")]
    const CHILD: &str = "LIBP2P_REUSEPORT_METRICS_CHILD";

    #[cfg(target_os = "linux")]
    #[tokio::test(flavor = "current_thread")]
    #[ignore = "run in a child process with a low descriptor limit by listener_errors_are_counted"]
    async fn child_counts_listener_errors() {
        use std::fs::File;

        use libp2p_core::transport::TransportEvent;

        assert_eq!(
            std::env::var(CHILD).as_deref(),
            Ok("1"),
            "only run as a child"
        );
        let mut registry = Registry::default();
        let mut t = transport();
        t.register_metrics(&mut registry);
        let (_, addr) = listen(&mut t, "/ip4/127.0.0.1/tcp/0").await;
        let mut hog = Vec::new();
        while let Ok(file) = File::open("/dev/null") {
            hog.push(file);
        }
        hog.truncate(hog.len() - 1);
        let _client = std::net::TcpStream::connect(addr).expect("client connects");
        // Every failed accept is one ListenerError event.
        let mut errors = 0;
        while errors < 3 {
            match next_event(&mut t).await {
                TransportEvent::ListenerError { .. } => errors += 1,
                other => panic!("expected ListenerError, got {other:?}"),
            }
        }
        drop(hog);
        // Kept open (an accepted pair): dropped before its client, it would be a closing pair.
        let _accepted = accept(&mut t).await;
        assert_eq!(
            read(&registry),
            expect(&[
                ("listener_errors_total", errors),
                ("accepts_total", 1),
                ("accepted_connections", 1),
                ("listen_addresses", 1),
            ])
        );
        println!("metrics: listener errors counted: {errors}");
    }
    /// Which per-connection series a transport registers: the lifetimes everywhere, the
    /// TCP_INFO series only where TCP_INFO is sampled (Linux); every label set from the start.
    #[test]
    fn connection_series_per_platform() {
        let mut registry = Registry::default();
        Transport::default().register_metrics(&mut registry);
        let read = read_connections(&registry);
        let names: std::collections::BTreeSet<_> =
            read.keys().filter_map(|s| connection_series(s)).collect();
        let expected: std::collections::BTreeSet<_> = if cfg!(target_os = "linux") {
            CONNECTION_SERIES.into_iter().collect()
        } else {
            ["connection_duration_seconds"].into_iter().collect()
        };
        assert_eq!(names, expected);
        for name in expected {
            for direction in ["dialed", "accepted"] {
                let series = if name.ends_with("_total") {
                    format!(r#"{name}{{direction="{direction}"}}"#)
                } else {
                    format!(r#"{name}_count{{direction="{direction}"}}"#)
                };
                assert_eq!(value(&read, &series), 0.0, "{series}");
            }
        }
    }

    /// Every platform: a dropped stream's lifetime, by direction.
    #[tokio::test]
    async fn connection_lifetimes_are_observed_at_drop() {
        let mut registry = Registry::default();
        let mut a = transport();
        a.register_metrics(&mut registry);
        let (_, a_addr) = listen(&mut a, "/ip4/127.0.0.1/tcp/0").await;
        let mut b = transport();
        let (_, b_addr) = listen(&mut b, "/ip4/127.0.0.1/tcp/0").await;
        let (dialed, dialed_remote, _) = connect(&mut a, &mut b, b_addr, PortUse::Reuse).await;
        let (accepted_remote, accepted, _) = connect(&mut b, &mut a, a_addr, PortUse::New).await;
        let count = |direction: &str| {
            value(
                &read_connections(&registry),
                &format!(r#"connection_duration_seconds_count{{direction="{direction}"}}"#),
            )
        };
        assert_eq!((count("dialed"), count("accepted")), (0.0, 0.0));
        tokio::time::sleep(Duration::from_millis(150)).await;
        close_remote_first(dialed, dialed_remote).await;
        assert_eq!((count("dialed"), count("accepted")), (1.0, 0.0));
        close_remote_first(accepted_remote, accepted).await;
        let read = read_connections(&registry);
        assert_eq!((count("dialed"), count("accepted")), (1.0, 1.0));
        // The dialed one lived 150 ms or more: past the first bucket, 100 ms, well under 10 s.
        let lived = value(
            &read,
            r#"connection_duration_seconds_sum{direction="dialed"}"#,
        );
        assert!((0.15..10.0).contains(&lived), "{lived}");
        assert_eq!(
            value(
                &read,
                r#"connection_duration_seconds_bucket{le="0.1",direction="dialed"}"#
            ),
            0.0
        );
    }

    // TCP_INFO is sampled on Linux only (through sock_diag); elsewhere its series are absent,
    // which `connection_series_per_platform` checks.
    #[cfg(target_os = "linux")]
    mod tcp_info {
        use std::{collections::BTreeMap, time::Duration};

        use libp2p_core::transport::PortUse;
        use libp2p_reuseport::{Config, TcpStream, Transport};
        use prometheus_client::registry::Registry;

        use super::{read_connections, value};
        use crate::util::*;

        /// `rounds` round trips of 1 KiB each way between `x` and `y`.
        async fn exchange(x: &mut TcpStream, y: &mut TcpStream, rounds: usize) {
            for _ in 0..rounds {
                send(x, y, &[7; 1024]).await;
                send(y, x, &[9; 1024]).await;
            }
        }

        /// Linux: the TCP_INFO of the transport's connections, and of no others, is sampled at
        /// each scrape (`tcp_info_interval` zero): one round-trip time per connection and sample,
        /// plausible on loopback, and segment and byte counts that grow with the traffic sent
        /// between samples, in its direction (the kernel lists both ends of a loopback connection:
        /// the other end's figures are the mirror image). A dropped connection is no longer
        /// sampled.
        #[tokio::test]
        async fn tcp_info_of_the_transports_connections_is_sampled() {
            let mut registry = Registry::default();
            let mut a = Transport::new(Config::new().tcp_info_interval(Duration::ZERO));
            a.register_metrics(&mut registry);
            let (_, a_addr) = listen(&mut a, "/ip4/127.0.0.1/tcp/0").await;
            let mut b = transport();
            let (_, b_addr) = listen(&mut b, "/ip4/127.0.0.1/tcp/0").await;
            let (mut dialed, mut dialed_remote, _) =
                connect(&mut a, &mut b, b_addr, PortUse::Reuse).await;
            let (mut accepted_remote, mut accepted, _) =
                connect(&mut b, &mut a, a_addr, PortUse::New).await;
            // Connections of the same process outside the transport (b's ends are b's; these are
            // nobody's) are listed by the kernel too, and passed over.
            let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let _other_client = std::net::TcpStream::connect(other.local_addr().unwrap()).unwrap();
            let _other_server = other.accept().unwrap();
            exchange(&mut dialed, &mut dialed_remote, 10).await;
            exchange(&mut accepted_remote, &mut accepted, 10).await;

            let first = read_connections(&registry);
            let v = |read: &BTreeMap<String, f64>, name: &str, direction: &str| {
                value(read, &format!(r#"{name}{{direction="{direction}"}}"#))
            };
            for direction in ["dialed", "accepted"] {
                // One connection, one sample.
                assert_eq!(
                    v(&first, "tcp_rtt_seconds_count", direction),
                    1.0,
                    "{first:#?}"
                );
                let rtt = v(&first, "tcp_rtt_seconds_sum", direction);
                assert!(
                    rtt > 0.0 && rtt < 0.5,
                    "{direction}: RTT {rtt} s on loopback"
                );
                // 10 KiB each way in 1 KiB writes, each read before the next is written.
                let sent = v(&first, "tcp_segments_sent_total", direction);
                let received = v(&first, "tcp_segments_received_total", direction);
                assert!(sent >= 10.0, "{direction}: {sent} sent");
                assert!(received >= 10.0, "{direction}: {received} received");
                assert!(
                    sent < 200.0 && received < 200.0,
                    "{direction}: {sent} {received}"
                );
                assert_eq!(v(&first, "tcp_bytes_received_total", direction), 10_240.0);
                // Acknowledged: all but the last write perhaps (a delayed ACK), and the SYN.
                let acked = v(&first, "tcp_bytes_sent_total", direction);
                assert!(
                    (9_216.0..=10_242.0).contains(&acked),
                    "{direction}: {acked} acked"
                );
            }

            // One way: 64 KiB from the dialed end in 1 KiB writes, each read before the next.
            for _ in 0..64 {
                send(&mut dialed, &mut dialed_remote, &[7; 1024]).await;
            }
            let second = read_connections(&registry);
            assert_eq!(v(&second, "tcp_rtt_seconds_count", "dialed"), 2.0);
            assert_eq!(v(&second, "tcp_rtt_seconds_count", "accepted"), 2.0);
            let grown = |name: &str, direction: &str| {
                v(&second, name, direction) - v(&first, name, direction)
            };
            assert!(
                grown("tcp_segments_sent_total", "dialed") >= 64.0,
                "{second:#?}"
            );
            assert!(
                grown("tcp_bytes_sent_total", "dialed") >= 60.0 * 1024.0,
                "{second:#?}"
            );
            assert_eq!(
                grown("tcp_bytes_received_total", "dialed"),
                0.0,
                "{second:#?}"
            );
            // The accepted connection was idle (a delayed ACK at most).
            assert!(
                grown("tcp_segments_sent_total", "accepted") < 5.0,
                "{second:#?}"
            );
            assert!(
                grown("tcp_segments_received_total", "accepted") < 5.0,
                "{second:#?}"
            );
            assert_eq!(grown("tcp_bytes_received_total", "accepted"), 0.0);

            close_remote_first(dialed, dialed_remote).await;
            let third = read_connections(&registry);
            assert_eq!(
                v(&third, "tcp_rtt_seconds_count", "dialed"),
                2.0,
                "not sampled after drop"
            );
            assert_eq!(v(&third, "tcp_rtt_seconds_count", "accepted"), 3.0);
            assert_eq!(
                v(&third, "connection_duration_seconds_count", "dialed"),
                1.0
            );
        }

        /// Linux: with the default interval (10 s), scrapes in a row sample once: the second shows
        /// what the first did although more traffic went by.
        #[tokio::test]
        async fn scrapes_within_the_interval_sample_once() {
            let mut registry = Registry::default();
            let mut a = transport();
            a.register_metrics(&mut registry);
            let mut b = transport();
            let (_, b_addr) = listen(&mut b, "/ip4/127.0.0.1/tcp/0").await;
            let (mut dialed, mut accepted, _) = connect(&mut a, &mut b, b_addr, PortUse::New).await;
            exchange(&mut dialed, &mut accepted, 5).await;
            let first = read_connections(&registry);
            assert_eq!(
                value(&first, r#"tcp_rtt_seconds_count{direction="dialed"}"#),
                1.0
            );
            exchange(&mut dialed, &mut accepted, 20).await;
            assert_eq!(read_connections(&registry), first);
        }
    }
}
