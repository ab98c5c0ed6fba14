//! What the OS allows, read once when a [`Transport`](crate::Transport) is created: the
//! descriptor limit that the default bound on held closing sockets derives from, and how long the
//! kernel keeps a connection we closed before its remote did.

use std::time::Duration;

use crate::sys;

/// The default bound is this share of the soft descriptor limit (`RLIMIT_NOFILE`): an eighth.
const SHARE_OF_DESCRIPTORS: u64 = 8;

/// The default bound never exceeds this (an eighth of 65,536): past it a burst of drops would
/// hold more kernel memory than the early reuse of their pairs is worth.
const MAX_DEFAULT_CLOSING_SOCKETS: usize = 8_192;

/// The default bound where the descriptor limit cannot be read (Windows, where sockets are not
/// counted against such a limit, or a failed `getrlimit`): an eighth of 1,024.
const FALLBACK_CLOSING_SOCKETS: usize = 128;

/// How long a kernel keeps an orphaned connection in FIN_WAIT_2 when it cannot be asked:
/// Linux's default `tcp_fin_timeout`, and the BSDs' and macOS's FIN_WAIT_2 timeout.
const DEFAULT_ORPHAN_LIFETIME: Duration = Duration::from_secs(60);

/// Added to the kernel's orphan lifetime: its timers fire late, never early.
const ORPHAN_MARGIN: Duration = Duration::from_secs(1);

/// The default of [`Config::max_closing_sockets`](crate::Config::max_closing_sockets): an eighth
/// of the process's soft `RLIMIT_NOFILE`, at most 8,192; 128 where there is no such limit.
pub(crate) fn default_max_closing_sockets() -> usize {
    closing_sockets_for(sys::descriptor_limit())
}

/// The default bound for a soft descriptor limit of `limit` (`None`: unknown).
fn closing_sockets_for(limit: Option<u64>) -> usize {
    match limit {
        Some(limit) => usize::try_from(limit / SHARE_OF_DESCRIPTORS)
            .unwrap_or(usize::MAX)
            .min(MAX_DEFAULT_CLOSING_SOCKETS),
        None => FALLBACK_CLOSING_SOCKETS,
    }
}

/// How long a pair whose connection we closed before the remote closed its side is passed over:
/// the kernel's FIN_WAIT_2 lifetime for orphans and a second.
pub(crate) fn orphan_hold() -> Duration {
    sys::orphan_lifetime().unwrap_or(DEFAULT_ORPHAN_LIFETIME) + ORPHAN_MARGIN
}

/// Parses `/proc/sys/net/ipv4/tcp_fin_timeout`: whole seconds.
#[cfg_attr(not(linux_like), allow(dead_code))] // Only Linux and Android have the file.
pub(crate) fn parse_seconds(text: &str) -> Option<Duration> {
    text.trim().parse().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_bound_from_the_descriptor_limit() {
        let table: &[(Option<u64>, usize)] = &[
            (None, 128),
            (Some(0), 0),
            (Some(7), 0),
            (Some(64), 8),
            (Some(256), 32),
            (Some(1_024), 128),
            (Some(20_000), 2_500),
            (Some(65_536), 8_192),
            (Some(1_048_576), 8_192),
            (Some(u64::MAX), 8_192),
        ];
        for (limit, bound) in table {
            assert_eq!(closing_sockets_for(*limit), *bound, "{limit:?}");
        }
    }

    #[test]
    fn fin_timeout_parses() {
        assert_eq!(parse_seconds("60\n"), Some(Duration::from_secs(60)));
        assert_eq!(parse_seconds(" 5"), Some(Duration::from_secs(5)));
        assert_eq!(parse_seconds("x"), None);
        assert_eq!(parse_seconds(""), None);
    }

    // The process's own limit, read the way the transport reads it (unix only: Windows has
    // none).
    #[cfg(unix)]
    #[test]
    fn reads_this_process_limit() {
        let limit = sys::descriptor_limit().expect("getrlimit works");
        assert!(limit >= 3, "{limit}");
        assert_eq!(
            default_max_closing_sockets(),
            closing_sockets_for(Some(limit))
        );
    }
}
