//! What the `metrics` feature reads of a connection's TCP_INFO, and where it can read it.
//!
//! | platform | source |
//! |---|---|
//! | Linux | the sock_diag netlink interface: one dump lists every open TCP connection of the network namespace with its `struct tcp_info` ([`sock_diag`](super::sock_diag)) |
//! | Android | none: its SELinux policy denies apps `NETLINK_SOCK_DIAG` sockets |
//! | macOS, iOS | none: `TCP_CONNECTION_INFO` is read with `getsockopt`, which needs unsafe code here (`unsafe_code = "forbid"`) and no safe crate wraps |
//! | the BSDs, Windows, others | none: `TCP_INFO` (FreeBSD) and `SIO_TCP_INFO` (Windows) likewise need unsafe code |
//!
//! Where there is no source, [`SAMPLED`] is false and the TCP_INFO series are not registered.

use std::{io, net::SocketAddr, time::Duration};

/// Whether this build samples TCP_INFO.
pub(crate) const SAMPLED: bool = cfg!(tcp_info);

/// The address family of the connections a dump lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Family {
    V4,
    V6,
}

/// The figures of a connection's `struct tcp_info` the metrics use. The segment counters are
/// 32 bits and wrap; a figure is `None` where the kernel is too old to report it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct TcpInfo {
    /// `tcpi_rtt`: the smoothed round-trip time.
    pub(crate) rtt: Duration,
    /// `tcpi_segs_out`: segments sent, retransmissions included (Linux 4.2 and later).
    pub(crate) segments_sent: Option<u32>,
    /// `tcpi_segs_in`: segments received (Linux 4.2 and later).
    pub(crate) segments_received: Option<u32>,
    /// `tcpi_total_retrans`: segments retransmitted.
    pub(crate) retransmitted: Option<u32>,
    /// `tcpi_bytes_acked`: bytes sent that the remote acknowledged; a dialed connection's SYN
    /// and a FIN count one each (Linux 4.1 and later).
    pub(crate) bytes_acked: Option<u64>,
    /// `tcpi_bytes_received`: bytes received (Linux 4.1 and later).
    pub(crate) bytes_received: Option<u64>,
}

/// One connection of a dump.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Sample {
    pub(crate) local: SocketAddr,
    pub(crate) remote: SocketAddr,
    pub(crate) info: TcpInfo,
}

/// The open TCP connections of `family` in this network namespace, every process's, with their
/// TCP_INFO.
#[cfg(tcp_info)]
pub(crate) fn dump(family: Family) -> io::Result<Vec<Sample>> {
    super::sock_diag::dump(family)
}

// No safe source of TCP_INFO on this platform (see the table above); never called, since
// SAMPLED is false.
#[cfg(not(tcp_info))]
pub(crate) fn dump(_: Family) -> io::Result<Vec<Sample>> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "TCP_INFO is not sampled on this platform",
    ))
}
