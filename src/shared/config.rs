//! [`SharedConfig`]: how a shared listener set waits for its connections' first bytes.

use std::time::Duration;

/// How a [`SharedListeners`](crate::SharedListeners) set waits for each accepted connection's
/// first bytes, which tell the side it is for. The sockets and dials themselves are configured
/// by the set's [`Config`](crate::Config).
///
/// ```
/// use std::time::Duration;
///
/// use libp2p_reuseport::{Config, SharedConfig, SharedListeners};
///
/// let shared = SharedListeners::with_config(
///     Config::new(),
///     SharedConfig::new().first_bytes_timeout(Duration::from_secs(2)),
/// );
/// # let _ = shared;
/// ```
#[derive(Clone, Debug)]
pub struct SharedConfig {
    pub(crate) first_bytes_timeout: Duration,
    pub(crate) first_bytes_concurrency: usize,
}

impl SharedConfig {
    /// The defaults, as go-libp2p's shared TCP listener: 5 s for an accepted connection's first
    /// bytes, at most 64 connections per socket waiting for them at once.
    pub fn new() -> Self {
        Self {
            first_bytes_timeout: Duration::from_secs(5),
            first_bytes_concurrency: 64,
        }
    }

    /// How long an accepted connection may take to send the bytes that tell which side it is
    /// for; it is closed (and counted in
    /// [`SharedStats::timed_out`](crate::SharedStats::timed_out)) when they have not arrived by
    /// then. Default: 5 s.
    pub fn first_bytes_timeout(mut self, value: Duration) -> Self {
        self.first_bytes_timeout = value;
        self
    }

    /// How many accepted connections of one socket may wait for their first bytes at once.
    /// While that many wait, the socket accepts no more (new connections wait in the kernel's
    /// listen backlog), so silent clients can delay others by at most
    /// [`first_bytes_timeout`](Self::first_bytes_timeout) but never hold more than this many
    /// descriptors. Default: 64. A value of 0 counts as 1.
    pub fn first_bytes_concurrency(mut self, value: usize) -> Self {
        self.first_bytes_concurrency = value.max(1);
        self
    }
}

impl Default for SharedConfig {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_setters() {
        let config = SharedConfig::default();
        assert_eq!(config.first_bytes_timeout, Duration::from_secs(5));
        assert_eq!(config.first_bytes_concurrency, 64);
        let config = SharedConfig::new()
            .first_bytes_timeout(Duration::from_millis(300))
            .first_bytes_concurrency(3);
        assert_eq!(config.first_bytes_timeout, Duration::from_millis(300));
        assert_eq!(config.first_bytes_concurrency, 3);
        assert_eq!(
            SharedConfig::new()
                .first_bytes_concurrency(0)
                .first_bytes_concurrency,
            1
        );
    }
}
