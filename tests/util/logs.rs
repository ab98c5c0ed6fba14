//! This crate's `tracing` output in a test: [`Logs::capture`] collects it, at `warn` and above,
//! for the current thread.

use std::{
    io,
    sync::{Arc, Mutex, PoisonError},
};

use tracing_subscriber::{EnvFilter, fmt::MakeWriter, util::SubscriberInitExt};

/// What this crate logged at `warn` or above on the current thread while the guard
/// [`Logs::capture`] returned lives.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    /// Starts capturing; stops when the guard is dropped. The events of tasks polled on other
    /// threads are not captured: use a current-thread runtime.
    pub fn capture() -> (Self, tracing::dispatcher::DefaultGuard) {
        let logs = Self::default();
        let guard = tracing_subscriber::fmt()
            .with_env_filter(EnvFilter::new("libp2p_reuseport=warn"))
            .with_writer(logs.clone())
            .with_ansi(false)
            .without_time()
            .set_default();
        (logs, guard)
    }

    /// The lines logged so far.
    pub fn lines(&self) -> Vec<String> {
        let bytes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The lines logged so far that contain `text`.
    pub fn containing(&self, text: &str) -> Vec<String> {
        self.lines()
            .into_iter()
            .filter(|line| line.contains(text))
            .collect()
    }
}

impl io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl MakeWriter<'_> for Logs {
    type Writer = Self;

    fn make_writer(&self) -> Self {
        self.clone()
    }
}
