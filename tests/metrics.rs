//! The `metrics` feature: after known dials, accepts and listener errors, the text encoding of
//! the registry shows exactly those numbers, and the gauges follow the port-reuse table.
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
        r#"accepted_pairs"#,
        r#"accepts_total"#,
        r#"closing_pairs"#,
        r#"closing_sockets"#,
        r#"dials_total{origin="ephemeral",reason="busy"}"#,
        r#"dials_total{origin="ephemeral",reason="disabled"}"#,
        r#"dials_total{origin="ephemeral",reason="no_listener"}"#,
        r#"dials_total{origin="ephemeral",reason="no_route"}"#,
        r#"dials_total{origin="ephemeral",reason="not_requested"}"#,
        r#"dials_total{origin="ephemeral",reason="refused"}"#,
        r#"dials_total{origin="reused"}"#,
        r#"listen_addresses"#,
        r#"listener_errors_total"#,
        r#"open_pairs"#,
        r#"refused_retries_total"#,
    ];

    /// The registry's text encoding as series -> value, the prefix taken off every name.
    pub(crate) fn read(registry: &Registry) -> BTreeMap<String, u64> {
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
            now(&[("listen_addresses", 1), ("open_pairs", 1)])
        );

        // Two connections to a's listener, closed by b first: a's accepted ends read the end of
        // stream, so their pairs are not held after them.
        for k in 0..2 {
            let (dialed, accepted, _) = connect(&mut b, &mut a, a_addr, PortUse::New).await;
            assert_eq!(
                read(&registry),
                now(&[
                    ("listen_addresses", 1),
                    ("open_pairs", 1),
                    ("accepted_pairs", 1),
                    ("accepts_total", k + 1)
                ])
            );
            close_remote_first(accepted, dialed).await;
        }
        assert_eq!(
            read(&registry),
            now(&[
                ("listen_addresses", 1),
                ("open_pairs", 1),
                ("accepts_total", 2)
            ])
        );

        // Dropped while the remote keeps its side open: closing until the remote closes.
        drop(first);
        assert_eq!(
            read(&registry),
            now(&[
                ("listen_addresses", 1),
                ("closing_pairs", 1),
                ("closing_sockets", 1),
                ("accepts_total", 2)
            ])
        );
        drop(first_accepted);
        let table = a.port_reuse();
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
                PortOrigin::Ephemeral(Fallback::Refused(_))
            ));
            assert_eq!(
                read(&registry),
                expect(&[
                    (r#"dials_total{origin="ephemeral",reason="refused"}"#, 1),
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
                ("accepted_pairs", 1),
                ("listen_addresses", 1),
            ])
        );
        println!("metrics: listener errors counted: {errors}");
    }
}
