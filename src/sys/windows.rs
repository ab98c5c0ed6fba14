//! The Windows backend: socket options through socket2 (`SO_REUSEADDR` only: Windows has no
//! `SO_REUSEPORT`; keepalive), no descriptor limit, and the socket of a stream.

use std::{io, time::Duration};

use socket2::{Domain, Protocol, Socket, TcpKeepalive, Type};

use super::Options;
use crate::TcpStream;

/// Sets `options` on `socket`, before `bind`.
pub(crate) fn apply(socket: &Socket, options: Options) -> io::Result<()> {
    if options.reuse_port {
        // The platform layer never asks for it here.
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "Windows has no SO_REUSEPORT",
        ));
    }
    if options.reuse_address {
        socket.set_reuse_address(true)?;
    }
    Ok(())
}

/// Windows' own time between unanswered keepalive probes (`KeepAliveInterval`).
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);

/// Whether a connection may be waiting in `listener`'s accept queue: always yes, the accept
/// itself answers (a readiness check without unsafe code needs a dependency Windows lacks here).
pub(crate) fn connections_waiting(_listener: &tokio::net::TcpListener) -> bool {
    true
}

/// Keepalive after `idle` without traffic. `SIO_KEEPALIVE_VALS` sets the idle time and the time
/// between unanswered probes together: socket2 would pass 0 for the latter if it were not
/// given, so it is Windows' default, 1 s (10 probes).
pub(crate) fn keepalive(idle: Duration) -> TcpKeepalive {
    TcpKeepalive::new()
        .with_time(idle)
        .with_interval(KEEPALIVE_INTERVAL)
}

/// A new non-blocking TCP socket of `domain`.
pub(crate) fn tcp_socket(domain: Domain) -> io::Result<Socket> {
    let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// Windows does not count sockets against a per-process limit the crate could read.
pub(crate) fn descriptor_limit() -> Option<u64> {
    None
}

/// Windows does not say how long it keeps an orphaned connection in FIN_WAIT_2.
pub(crate) fn orphan_lifetime() -> Option<Duration> {
    None
}

// The socket's handle, for reading or setting options this crate does not wrap.
impl std::os::windows::io::AsSocket for TcpStream {
    fn as_socket(&self) -> std::os::windows::io::BorrowedSocket<'_> {
        self.io().as_socket()
    }
}

impl std::os::windows::io::AsRawSocket for TcpStream {
    fn as_raw_socket(&self) -> std::os::windows::io::RawSocket {
        self.io().as_raw_socket()
    }
}
