//! socket2 sockets configured from a [`Config`]: the options every socket gets, and the sharing
//! options for its role, which the platform layer ([`crate::sys`]) decides.

use std::{io, net::SocketAddr};

use socket2::{Domain, Socket};

use crate::{
    Config, error,
    sys::{self, PLATFORM, Role},
};

/// A non-blocking TCP socket for `addr`'s family with the configured options and the sharing
/// options of `role`, not bound yet. Options set here are inherited by the sockets a listener
/// accepts.
pub(crate) fn tcp(config: &Config, addr: SocketAddr, role: Role) -> io::Result<Socket> {
    let socket = for_family(addr)?;
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
        socket.set_tcp_keepalive(&sys::keepalive(idle))?;
    }
    if config.nodelay {
        socket.set_tcp_nodelay(true)?;
    }
    sys::apply(&socket, PLATFORM.options(role))?;
    Ok(socket)
}

/// Fails with `AddrInUse` if a socket other than ours holds `addr`'s port in a way a listener
/// with port reuse would join: a probe socket with the platform's probe options (no port
/// sharing) cannot bind it. Does nothing where the listener's own `bind` is refused in that
/// case ([`Platform::probes`](sys::Platform::probes)).
pub(crate) fn ensure_unshared(addr: SocketAddr) -> io::Result<()> {
    if !PLATFORM.probes() {
        return Ok(());
    }
    let probe = for_family(addr)?;
    sys::apply(&probe, PLATFORM.options(Role::Probe))?;
    match probe.bind(&addr.into()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Err(error::context(
            e,
            "the port is held by a socket outside this transport; sharing it through \
             SO_REUSEPORT would split its connections between the two \
             (Config::foreign_port_sharing(true) allows that)",
        )),
        Err(e) => Err(e),
    }
}

/// A non-blocking TCP socket of `addr`'s family; IPv6 ones set `IPV6_V6ONLY`: without it an IPv6
/// wildcard listener would also take IPv4 connections and collide with an IPv4 listener on the
/// same port.
fn for_family(addr: SocketAddr) -> io::Result<Socket> {
    let socket = sys::tcp_socket(Domain::for_address(addr))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    Ok(socket)
}
