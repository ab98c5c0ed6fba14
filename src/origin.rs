//! What a connection says about its local port: accepted, reused from a listener, or ephemeral
//! and why.

use std::{fmt, io};

/// Where the local port of a [`TcpStream`](crate::TcpStream) came from.
///
/// The swarm records what a dial asked for (`PortUse`), not what happened; this says what
/// happened.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortOrigin {
    /// An inbound connection: the local port is the listener's.
    Accepted,
    /// An outbound connection that left from a listening port (`SO_REUSEPORT`).
    Reused,
    /// An outbound connection from an ephemeral port chosen by the kernel, and why.
    Ephemeral(Fallback),
}

/// Why an outbound connection left from an ephemeral port instead of a listening port.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fallback {
    /// The dial asked for a new port (`PortUse::New`).
    NotRequested,
    /// Port reuse is off: [`Config::port_reuse`](crate::Config::port_reuse), the environment
    /// variable [`PORT_REUSE_ENV`](crate::PORT_REUSE_ENV), or a platform without
    /// `SO_REUSEPORT`.
    Disabled,
    /// No listener can serve as the source: none of the destination's family, or none on the IP
    /// the kernel routes from and no wildcard listener.
    NoListener,
    /// The kernel's route lookup for the destination failed.
    NoRoute,
    /// Every candidate listening address was taken: a connection between it and this
    /// destination (dialed from it, or accepted by its listener from the destination) is open,
    /// or was dropped but the remote has not closed its side yet (see
    /// [`TcpStream`](crate::TcpStream)), or the destination is the address itself (a TCP
    /// self-connection). No system call was spent on a taken pair.
    Busy,
    /// The kernel refused the listening address: `bind` or `connect` failed with this kind
    /// (`AddrInUse` or `AddrNotAvailable`), and the dial was retried once from an ephemeral port.
    KernelRefused(io::ErrorKind),
}

impl fmt::Display for PortOrigin {
    /// `accepted`, `reused the listening port`, or `ephemeral port: <why>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Accepted => f.write_str("accepted"),
            Self::Reused => f.write_str("reused the listening port"),
            Self::Ephemeral(why) => write!(f, "ephemeral port: {why}"),
        }
    }
}

impl fmt::Display for Fallback {
    /// Why a dial left from an ephemeral port, in a few words.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotRequested => f.write_str("a new port was asked for (PortUse::New)"),
            Self::Disabled => f.write_str("port reuse is off"),
            Self::NoListener => f.write_str("no listener can serve as the source"),
            Self::NoRoute => f.write_str("the route lookup failed"),
            Self::Busy => f.write_str("every listening address is taken for this destination"),
            Self::KernelRefused(kind) => {
                write!(f, "the kernel refused the listening port ({kind})")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display() {
        let table = [
            (PortOrigin::Accepted, "accepted"),
            (PortOrigin::Reused, "reused the listening port"),
            (
                PortOrigin::Ephemeral(Fallback::Busy),
                "ephemeral port: every listening address is taken for this destination",
            ),
            (
                PortOrigin::Ephemeral(Fallback::KernelRefused(io::ErrorKind::AddrNotAvailable)),
                "ephemeral port: the kernel refused the listening port (address not available)",
            ),
        ];
        for (origin, text) in table {
            assert_eq!(origin.to_string(), text);
        }
    }
}
