//! The unix backend: socket options through socket2 (sharing, keepalive), the descriptor limit
//! and a listening socket's readiness through nix, the kernel's orphan lifetime from /proc
//! (Linux and Android), and the descriptor of a stream.

use std::{io, time::Duration};

use socket2::{Domain, Protocol, Socket, TcpKeepalive, Type};

use super::Options;
use crate::TcpStream;

/// Sets `options` on `socket`, before `bind`.
pub(crate) fn apply(socket: &Socket, options: Options) -> io::Result<()> {
    if options.reuse_address {
        socket.set_reuse_address(true)?;
    }
    if options.reuse_port {
        reuse_port(socket)?;
    }
    Ok(())
}

#[cfg(reuseport)]
fn reuse_port(socket: &Socket) -> io::Result<()> {
    socket.set_reuse_port(true)
}

// The platform layer never asks for SO_REUSEPORT where it has no meaning we rely on.
#[cfg(not(reuseport))]
fn reuse_port(_: &Socket) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "SO_REUSEPORT is not supported on this platform",
    ))
}

/// Keepalive after `idle` without traffic (`TCP_KEEPIDLE`; `TCP_KEEPALIVE` on macOS; nothing
/// on OpenBSD, whose idle time is system-wide); the time between unanswered probes and their
/// number stay the system's.
pub(crate) fn keepalive(idle: Duration) -> TcpKeepalive {
    TcpKeepalive::new().with_time(idle)
}

/// A new non-blocking TCP socket of `domain`: in one system call where `socket(2)` takes
/// `SOCK_NONBLOCK`.
pub(crate) fn tcp_socket(domain: Domain) -> io::Result<Socket> {
    #[cfg(sock_nonblock)]
    let socket = Socket::new(domain, Type::STREAM.nonblocking(), Some(Protocol::TCP))?;
    #[cfg(not(sock_nonblock))]
    let socket = {
        let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
        socket.set_nonblocking(true)?;
        socket
    };
    Ok(socket)
}

/// Whether a connection may be waiting in `listener`'s accept queue: `poll` with no timeout.
/// An `accept` that finds nothing costs several times more (Linux allocates the new socket
/// first: 1.5 us against 0.2 us on the 2-core VM of docs/performance.md); a failed poll says
/// yes and lets the accept answer.
pub(crate) fn connections_waiting(listener: &tokio::net::TcpListener) -> bool {
    use std::os::fd::AsFd;

    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
    !matches!(poll(&mut fds, PollTimeout::ZERO), Ok(0))
}

/// The soft `RLIMIT_NOFILE`; `None` if it cannot be read.
pub(crate) fn descriptor_limit() -> Option<u64> {
    use nix::sys::resource::{Resource, getrlimit};
    let (soft, _hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    to_u64(soft)
}

/// `rlim_t` is unsigned on Linux and macOS and signed on FreeBSD.
fn to_u64<T: TryInto<u64>>(value: T) -> Option<u64> {
    value.try_into().ok()
}

/// How long the kernel keeps a connection we closed before the remote did in FIN_WAIT_2:
/// Linux and Android say so in `/proc/sys/net/ipv4/tcp_fin_timeout` (per network namespace;
/// Android may forbid reading it); `None` elsewhere or when it cannot be read.
pub(crate) fn orphan_lifetime() -> Option<Duration> {
    #[cfg(linux_like)]
    {
        std::fs::read_to_string("/proc/sys/net/ipv4/tcp_fin_timeout")
            .ok()
            .and_then(|text| crate::limits::parse_seconds(&text))
    }
    #[cfg(not(linux_like))]
    {
        None
    }
}

// The socket's descriptor, for reading or setting options this crate does not wrap.
impl std::os::fd::AsFd for TcpStream {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.io().as_fd()
    }
}

impl std::os::fd::AsRawFd for TcpStream {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.io().as_raw_fd()
    }
}
