//! The transport's Prometheus metrics, with the `metrics` feature: dials by where their local
//! port came from, accepts and listener errors as counters, and the port-reuse table's
//! registered listening addresses, open and closing pairs and held closing sockets as gauges read
//! at each scrape.
//!
//! Per connection (`connections`): a lifetime histogram, and where the platform has TCP_INFO
//! (Linux) the smoothed round-trip time, segments, retransmissions and bytes, sampled at scrapes.
//!
//! [`Metrics`] is the handle the transport and its dials count with; every stream holds a
//! [`Tracked`] from it. Without the feature both are empty and their methods do nothing, so the
//! transport's code reads the same either way and, compiled without the feature, counts nothing
//! and costs nothing.

// The per-connection series, with prometheus-client.
#[cfg(feature = "metrics")]
mod connections;

pub(crate) use imp::{Metrics, Tracked};

// The real counters, only when the user asked for them: prometheus-client is an optional
// dependency.
#[cfg(feature = "metrics")]
mod imp {
    use std::{fmt, net::SocketAddr, sync::Arc, time::Duration};

    use prometheus_client::{
        collector::Collector,
        encoding::{DescriptorEncoder, EncodeMetric},
        metrics::{counter::Counter, family::Family, gauge::ConstGauge},
        registry::Registry,
    };

    pub(crate) use super::connections::Tracked;
    use super::connections::{Connections, Series};
    use crate::{
        origin::{Fallback, PortOrigin},
        port_reuse::ReuseTable,
    };

    /// The prefix of every metric name.
    const PREFIX: &str = "libp2p_reuseport";

    /// The `reason` label of ephemeral dials, in the order of [`Counters::ephemeral`].
    const REASONS: [&str; 6] = [
        "not_requested",
        "disabled",
        "no_listener",
        "no_route",
        "busy",
        "kernel_refused",
    ];

    /// The index of `fallback`'s counter in [`Counters::ephemeral`] and its label in
    /// [`REASONS`].
    fn reason(fallback: Fallback) -> usize {
        match fallback {
            Fallback::NotRequested => 0,
            Fallback::Disabled => 1,
            Fallback::NoListener => 2,
            Fallback::NoRoute => 3,
            Fallback::Busy => 4,
            Fallback::KernelRefused(_) => 5,
        }
    }

    type Labels = Vec<(&'static str, &'static str)>;

    /// Counts with atomics shared with the registry. Cloning shares them.
    #[derive(Clone)]
    pub(crate) struct Metrics {
        counters: Arc<Counters>,
        connections: Arc<Connections>,
    }

    struct Counters {
        /// Registered as `dials`; holds the counters below.
        dials: Family<Labels, Counter>,
        /// `dials{origin="reused"}`, looked up once so that counting is one atomic increment.
        reused: Counter,
        /// `dials{origin="ephemeral",reason=...}` in the order of [`REASONS`].
        ephemeral: [Counter; REASONS.len()],
        accepts: Counter,
        listener_errors: Counter,
        rst_retries: Counter,
    }

    impl Default for Counters {
        fn default() -> Self {
            let dials = Family::<Labels, Counter>::default();
            let reused = dials.get_or_create_owned(&vec![("origin", "reused")]);
            let ephemeral = REASONS.map(|reason| {
                dials.get_or_create_owned(&vec![("origin", "ephemeral"), ("reason", reason)])
            });
            Self {
                dials,
                reused,
                ephemeral,
                accepts: Counter::default(),
                listener_errors: Counter::default(),
                rst_retries: Counter::default(),
            }
        }
    }

    impl Metrics {
        /// New counters, all at zero; TCP_INFO sampled at most every `tcp_info_interval`.
        pub(crate) fn new(tcp_info_interval: Duration) -> Self {
            Self {
                counters: Arc::default(),
                connections: Arc::new(Connections::new(tcp_info_interval)),
            }
        }

        /// A stream was made (`origin` tells its direction) to `remote`; `local` gives its
        /// local address, asked only where TCP_INFO is sampled. The stream holds what this
        /// returns until it drops.
        pub(crate) fn track(
            &self,
            origin: PortOrigin,
            local: impl FnOnce() -> Option<SocketAddr>,
            remote: SocketAddr,
        ) -> Tracked {
            self.connections.track(origin, local, remote)
        }

        /// Counts an outbound connection by where its local port came from.
        pub(crate) fn dialed(&self, origin: PortOrigin) {
            let counter = match origin {
                PortOrigin::Reused => &self.counters.reused,
                PortOrigin::Ephemeral(fallback) => &self.counters.ephemeral[reason(fallback)],
                PortOrigin::Accepted => return,
            };
            counter.inc();
        }

        /// Counts an accepted inbound connection.
        pub(crate) fn accepted(&self) {
            self.counters.accepts.inc();
        }

        /// Counts a SYN sent again from a listening port after the remote side refused one.
        pub(crate) fn rst_retry(&self) {
            self.counters.rst_retries.inc();
        }

        /// Counts a `ListenerError` event.
        pub(crate) fn listener_error(&self) {
            self.counters.listener_errors.inc();
        }

        /// Registers the counters, gauges that read `port_reuse` at each scrape and the
        /// per-connection series, in a sub-registry of `registry` with the prefix
        /// `libp2p_reuseport`.
        pub(crate) fn register(&self, registry: &mut Registry, port_reuse: ReuseTable) {
            let registry = registry.sub_registry_with_prefix(PREFIX);
            registry.register(
                "dials",
                "Outbound connections made, by where their local port came from: origin=reused \
                 (a listening port) or origin=ephemeral with the reason",
                self.counters.dials.clone(),
            );
            registry.register(
                "accepts",
                "Inbound connections accepted",
                self.counters.accepts.clone(),
            );
            registry.register(
                "listener_errors",
                "Listener errors: failed accepts (each followed by a pause), a failed interface \
                 watcher",
                self.counters.listener_errors.clone(),
            );
            registry.register(
                "rst_retries",
                "SYNs sent again from a listening port right after the remote side refused the \
                 previous one (a RST), as in a hole punch where the remote's NAT has not opened \
                 its mapping yet",
                self.counters.rst_retries.clone(),
            );
            registry.register_collector(Box::new(Gauges(port_reuse)));
            registry.register_collector(Box::new(Series(self.connections.clone())));
        }
    }

    impl fmt::Debug for Metrics {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("Metrics")
                .field("reused", &self.counters.reused.get())
                .field("accepts", &self.counters.accepts.get())
                .field("listener_errors", &self.counters.listener_errors.get())
                .finish_non_exhaustive()
        }
    }

    /// The gauges, read from the port-reuse table when the registry is encoded.
    #[derive(Debug)]
    struct Gauges(ReuseTable);

    impl Collector for Gauges {
        fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
            let table = &self.0;
            let gauges = [
                (
                    "listen_addresses",
                    "Listening addresses registered for port reuse (none while port reuse is off).",
                    table.listen_addrs().len(),
                ),
                (
                    "dialed_connections",
                    "Open outbound connections that left from a listening port.",
                    table.dialed_connections(),
                ),
                (
                    "accepted_connections",
                    "Open connections that listeners registered for port reuse accepted: a dial \
                     from that listening address to their remote passes over their pair.",
                    table.accepted_connections(),
                ),
                (
                    "closing_connections",
                    "Dropped connections on a listening port (outbound from it or accepted by \
                     its listener) whose remote has not closed yet: their (local, remote) pair is \
                     passed over.",
                    table.closing_connections(),
                ),
                (
                    "closing_sockets",
                    "Closing pairs whose socket is kept open until the remote closes, each \
                     holding a descriptor (at most Config::max_closing_sockets).",
                    table.closing_sockets(),
                ),
            ];
            for (name, help, value) in gauges {
                let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
                let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
                gauge.encode(metric)?;
            }
            Ok(())
        }
    }

    #[cfg(test)]
    mod tests {
        use std::io::ErrorKind;

        use super::*;

        #[test]
        fn every_fallback_has_its_reason_label() {
            let table = [
                (Fallback::NotRequested, "not_requested"),
                (Fallback::Disabled, "disabled"),
                (Fallback::NoListener, "no_listener"),
                (Fallback::NoRoute, "no_route"),
                (Fallback::Busy, "busy"),
                (
                    Fallback::KernelRefused(ErrorKind::AddrInUse),
                    "kernel_refused",
                ),
                (
                    Fallback::KernelRefused(ErrorKind::AddrNotAvailable),
                    "kernel_refused",
                ),
            ];
            for (fallback, label) in table {
                assert_eq!(REASONS[reason(fallback)], label, "{fallback:?}");
            }
        }
    }
}

// Without the feature: an empty handle whose methods compile to nothing.
#[cfg(not(feature = "metrics"))]
mod imp {
    use std::{net::SocketAddr, time::Duration};

    use crate::origin::PortOrigin;

    /// Counts nothing: the crate was built without the `metrics` feature.
    #[derive(Clone, Debug)]
    pub(crate) struct Metrics;

    /// Tracks nothing.
    #[derive(Debug)]
    pub(crate) struct Tracked;

    impl Metrics {
        pub(crate) fn new(_: Duration) -> Self {
            Self
        }

        #[inline(always)]
        pub(crate) fn track(
            &self,
            _: PortOrigin,
            _: impl FnOnce() -> Option<SocketAddr>,
            _: SocketAddr,
        ) -> Tracked {
            Tracked
        }

        #[inline(always)]
        pub(crate) fn dialed(&self, _: PortOrigin) {}

        #[inline(always)]
        pub(crate) fn accepted(&self) {}

        #[inline(always)]
        pub(crate) fn rst_retry(&self) {}

        #[inline(always)]
        pub(crate) fn listener_error(&self) {}
    }
}
