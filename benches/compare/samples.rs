//! What one implementation's dials in one row came to, and the statistics taken from it.

use std::time::Duration;

use libp2p_reuseport::{Fallback, PortOrigin};

use crate::impls::{Conn, Dialer, IMPLS, Impl, N};

/// Samples of one implementation in one row.
#[derive(Default)]
pub(crate) struct Samples {
    /// Successful dials.
    pub(crate) dials: usize,
    pub(crate) times: Vec<Duration>,
    /// Dial times of the dials that left from the listening port, and of the others.
    pub(crate) reused_times: Vec<Duration>,
    pub(crate) other_times: Vec<Duration>,
    /// Whole cycles: dial, echo, close (rows 1 and 2).
    pub(crate) cycle_times: Vec<Duration>,
    pub(crate) reused: usize,
    pub(crate) failed: usize,
    /// Dials that fell back after a failed system call (ours: `Fallback::Refused`; libp2p-tcp:
    /// every fallback, since it falls back only after `connect` failed; go-libp2p: counted in
    /// Go as each `connect` or `bind` fails).
    pub(crate) failed_syscalls: usize,
    pub(crate) busy: usize,
}

impl Samples {
    /// Adds the samples of another turn.
    pub(crate) fn absorb(&mut self, other: Self) {
        self.dials += other.dials;
        self.times.extend(other.times);
        self.reused_times.extend(other.reused_times);
        self.other_times.extend(other.other_times);
        self.cycle_times.extend(other.cycle_times);
        self.reused += other.reused;
        self.failed += other.failed;
        self.failed_syscalls += other.failed_syscalls;
        self.busy += other.busy;
    }

    fn sorted(&mut self) -> &[Duration] {
        self.times.sort();
        &self.times
    }

    pub(crate) fn pct(&mut self, p: f64) -> f64 {
        percentile(&mut self.times, p)
    }

    pub(crate) fn max(&mut self) -> f64 {
        self.sorted()
            .last()
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1e6)
    }

    /// Records a successful dial and, if timed, how long it took.
    pub(crate) fn note(&mut self, dialer: &Dialer, conn: &Conn, took: Option<Duration>) {
        let reused = conn.local_port() == dialer.listen_port;
        self.dials += 1;
        self.reused += usize::from(reused);
        if let Some(took) = took {
            self.times.push(took);
            match reused {
                true => self.reused_times.push(took),
                false => self.other_times.push(took),
            }
        }
        match conn.origin() {
            Some(PortOrigin::Ephemeral(Fallback::KernelRefused(_))) => self.failed_syscalls += 1,
            Some(PortOrigin::Ephemeral(Fallback::Busy)) => self.busy += 1,
            _ if !reused && dialer.which.fallback_means_failed_syscall() => {
                self.failed_syscalls += 1
            }
            _ => {}
        }
    }
}

/// The `p` quantile of `times` (0 to 1) in microseconds; NaN if empty.
pub(crate) fn percentile(times: &mut [Duration], p: f64) -> f64 {
    times.sort();
    if times.is_empty() {
        return f64::NAN;
    }
    let i = ((times.len() - 1) as f64 * p).round() as usize;
    times[i].as_secs_f64() * 1e6
}

/// The median of `times` in microseconds; NaN if empty.
pub(crate) fn p50(times: &mut [Duration]) -> f64 {
    times.sort();
    times
        .get(times.len() / 2)
        .map_or(f64::NAN, |d| d.as_secs_f64() * 1e6)
}

/// The median of `values`; NaN if empty.
pub(crate) fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// This crate's figure as a percentage of `other`'s: the median of the rounds' ratios, where
/// `per_round` holds each column's figures in the order of the rounds. The two figures of a
/// round ran a moment apart, so their ratio cancels the drift of a shared machine that the
/// ratio of the medians keeps. NaN if either column has no figures.
pub(crate) fn paired_percent(per_round: &[Vec<f64>; N], other: Impl) -> f64 {
    let column =
        |which: Impl| &per_round[IMPLS.iter().position(|i| *i == which).expect("a column")];
    let mut ratios: Vec<f64> = column(Impl::Ours)
        .iter()
        .zip(column(other))
        .map(|(ours, theirs)| ours / theirs)
        .collect();
    100.0 * median(&mut ratios)
}
