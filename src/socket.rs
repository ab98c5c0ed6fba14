//! socket2 sockets configured from a [`Config`]. Every platform-dependent socket option lives in
//! this file.

use std::{io, net::SocketAddr};

use socket2::{Domain, Protocol, Socket, TcpKeepalive};

use crate::Config;

pub(crate) use reuseport::REUSEPORT_AVAILABLE;

/// A non-blocking TCP socket for `addr`'s family with the configured options. Options set here
/// are inherited by the sockets a listener accepts.
pub(crate) fn tcp(config: &Config, addr: SocketAddr) -> io::Result<Socket> {
    let socket = new_nonblocking(Domain::for_address(addr))?;
    if addr.is_ipv6() {
        // Without IPV6_V6ONLY an IPv6 wildcard listener would also take IPv4 connections and
        // collide with an IPv4 listener on the same port.
        socket.set_only_v6(true)?;
    }
    if let Some(ttl) = config.ttl {
        if addr.is_ipv6() {
            socket.set_unicast_hops_v6(ttl)?;
        } else {
            socket.set_ttl_v4(ttl)?;
        }
    }
    if config.linger.is_some() {
        socket.set_linger(config.linger)?;
    }
    if let Some(idle) = config.keepalive {
        socket.set_tcp_keepalive(&TcpKeepalive::new().with_time(idle))?;
    }
    if config.nodelay {
        socket.set_tcp_nodelay(true)?;
    }
    Ok(socket)
}

/// Lets a listening socket bind an address that closed connections still hold in TIME_WAIT.
pub(crate) fn allow_rebind(socket: &Socket) -> io::Result<()> {
    // On Windows SO_REUSEADDR would let any other socket bind the same port and take its
    // connections (port hijacking); Windows rebinds past TIME_WAIT without it.
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    #[cfg(not(unix))]
    let _ = socket;
    Ok(())
}

/// Fails with `AddrInUse` if a socket other than ours holds `addr`'s port: a probe socket
/// without `SO_REUSEPORT` (but with `SO_REUSEADDR`, so that `TIME_WAIT` leftovers do not count)
/// cannot bind it.
pub(crate) fn ensure_unshared(addr: SocketAddr) -> io::Result<()> {
    let probe = new_nonblocking(Domain::for_address(addr))?;
    if addr.is_ipv6() {
        probe.set_only_v6(true)?;
    }
    allow_rebind(&probe)?;
    match probe.bind(&addr.into()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "the port is held by a socket outside this transport; sharing it through \
             SO_REUSEPORT would split its connections between the two \
             (Config::foreign_port_sharing(true) allows that)",
        )),
        Err(e) => Err(e),
    }
}

/// Sets `SO_REUSEPORT`, so that listeners and outgoing connections of this user can share the
/// port. On Linux the kernel also spreads incoming connections over listeners sharing a port.
/// Does nothing where [`REUSEPORT_AVAILABLE`] is false (the transport then never reuses ports).
pub(crate) fn share_port(socket: &Socket) -> io::Result<()> {
    reuseport::share_port(socket)
}

fn new_nonblocking(domain: Domain) -> io::Result<Socket> {
    let socket = Socket::new(domain, nonblocking::STREAM, Some(Protocol::TCP))?;
    if !nonblocking::STREAM_IS_NONBLOCKING {
        socket.set_nonblocking(true)?;
    }
    Ok(socket)
}

// SO_REUSEPORT with the meaning we rely on (sharing a port between sockets of one user, including
// a listener and connected sockets): the unix kernels except Solaris and illumos (same name,
// other semantics) and the targets socket2 does not expose it on. Windows has no equivalent that
// does not allow hijacking, so the transport never reuses ports there.
#[cfg(all(
    unix,
    not(any(
        target_os = "solaris",
        target_os = "illumos",
        target_os = "cygwin",
        target_os = "nuttx",
        target_os = "wasi"
    ))
))]
mod reuseport {
    use std::io;

    use socket2::Socket;

    /// Whether this platform can share a port between a listener and outgoing connections.
    pub(crate) const REUSEPORT_AVAILABLE: bool = true;

    pub(crate) fn share_port(socket: &Socket) -> io::Result<()> {
        socket.set_reuse_port(true)
    }
}

#[cfg(not(all(
    unix,
    not(any(
        target_os = "solaris",
        target_os = "illumos",
        target_os = "cygwin",
        target_os = "nuttx",
        target_os = "wasi"
    ))
)))]
mod reuseport {
    use std::io;

    use socket2::Socket;

    /// Whether this platform can share a port between a listener and outgoing connections.
    pub(crate) const REUSEPORT_AVAILABLE: bool = false;

    pub(crate) fn share_port(_: &Socket) -> io::Result<()> {
        Ok(())
    }
}

// These kernels take SOCK_NONBLOCK in socket(2), which saves an fcntl per socket; elsewhere the
// socket is made non-blocking after creation.
#[cfg(any(
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly"
))]
mod nonblocking {
    use socket2::Type;

    pub(crate) const STREAM: Type = Type::STREAM.nonblocking();
    pub(crate) const STREAM_IS_NONBLOCKING: bool = true;
}

#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly"
)))]
mod nonblocking {
    use socket2::Type;

    pub(crate) const STREAM: Type = Type::STREAM;
    pub(crate) const STREAM_IS_NONBLOCKING: bool = false;
}
