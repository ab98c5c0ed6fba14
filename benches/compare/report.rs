//! The table: rows of figures, one column per implementation, printed as Markdown with the
//! ratios of this crate to each other implementation, and written as JSON.

use std::fmt::Write as _;

use crate::{
    impls::{IMPLS, Impl, N},
    samples::Samples,
};

/// One figure of the table.
struct Row {
    name: String,
    metric: String,
    /// One value per implementation, in [`IMPLS`] order; NaN where not measured.
    values: [f64; N],
    /// Whether the ratios mean anything for this metric.
    ratios: bool,
}

#[derive(Default)]
pub(crate) struct Report {
    rows: Vec<Row>,
}

/// Values for some implementations only; NaN (printed as `-`) for the others.
pub(crate) fn only(values: &[(Impl, f64)]) -> [f64; N] {
    IMPLS.map(|which| {
        values
            .iter()
            .find(|(w, _)| *w == which)
            .map_or(f64::NAN, |(_, v)| *v)
    })
}

impl Report {
    /// Adds a row; the values of an implementation not measured in this run are left out (NaN).
    pub(crate) fn add(&mut self, name: &str, metric: &str, mut values: [f64; N], ratios: bool) {
        for (value, which) in values.iter_mut().zip(IMPLS) {
            if which.not_measured().is_some() {
                *value = f64::NAN;
            }
        }
        self.rows.push(Row {
            name: name.into(),
            metric: metric.into(),
            values,
            ratios,
        });
    }

    /// The outcome rows every dialing row has: reused share, failures, failed system calls, and
    /// (this crate only) pairs passed over because they were taken or closing.
    pub(crate) fn outcomes(&mut self, name: &str, samples: &[Samples; N]) {
        let reused = samples
            .each_ref()
            .map(|s| 100.0 * s.reused as f64 / s.dials.max(1) as f64);
        self.add(name, "reused %", reused, false);
        self.add(
            name,
            "failures",
            samples.each_ref().map(|s| s.failed as f64),
            false,
        );
        let syscalls = samples.each_ref().map(|s| s.failed_syscalls as f64);
        self.add(name, "failed connect syscalls", syscalls, false);
        let busy = samples.each_ref().map(|s| s.busy as f64);
        self.add(name, "pairs passed over (no syscall)", busy, false);
    }

    /// The table in Markdown.
    pub(crate) fn print(&self) -> String {
        let ours = IMPLS
            .iter()
            .position(|w| *w == Impl::Ours)
            .expect("this crate has a column");
        let others: Vec<usize> = (0..N).filter(|i| *i != ours).collect();
        let mut out = String::from("| row | metric |");
        for which in IMPLS {
            let _ = write!(out, " {} |", which.heading());
        }
        for i in &others {
            let _ = write!(out, " ours/{} |", IMPLS[*i].short());
        }
        out.push_str("\n|---|---|");
        out.push_str(&"---:|".repeat(N + others.len()));
        out.push('\n');
        for row in &self.rows {
            let v = |x: f64| {
                if x.is_nan() {
                    "-".to_string()
                } else {
                    format!("{x:.1}")
                }
            };
            let ratio = |a: f64, b: f64| {
                if row.ratios && b > 0.0 && !a.is_nan() && !b.is_nan() {
                    format!("{:.2}", a / b)
                } else {
                    "-".into()
                }
            };
            let _ = write!(out, "| {} | {} |", row.name, row.metric);
            for value in row.values {
                let _ = write!(out, " {} |", v(value));
            }
            for i in &others {
                let _ = write!(out, " {} |", ratio(row.values[ours], row.values[*i]));
            }
            out.push('\n');
        }
        out
    }

    /// The figures as JSON: the machine and one object per row, keyed by implementation.
    pub(crate) fn json(&self, machine: &str) -> String {
        let num = |x: f64| {
            if x.is_finite() {
                format!("{x:.3}")
            } else {
                "null".into()
            }
        };
        let rows: Vec<String> = self
            .rows
            .iter()
            .map(|r| {
                let mut row = format!("    {{\"row\": {:?}, \"metric\": {:?}", r.name, r.metric);
                for (which, value) in IMPLS.iter().zip(r.values) {
                    let _ = write!(row, ", \"{}\": {}", which.key(), num(value));
                }
                row.push('}');
                row
            })
            .collect();
        format!(
            "{{\n  \"machine\": {machine:?},\n  \"rows\": [\n{}\n  ]\n}}\n",
            rows.join(",\n")
        )
    }
}

/// The CPU, core count and kernel, for the report's heading.
pub(crate) fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cpu}, {cores} cores, Linux {kernel}")
}
