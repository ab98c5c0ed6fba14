//! Which local IP the kernel would send from to reach a destination.

use std::{
    io,
    net::{IpAddr, SocketAddr},
};

use socket2::{Domain, Protocol, Socket, Type};

/// The local IP the kernel's routing picks for packets to `remote`: the local address of a UDP
/// socket connected to `remote`. Connecting a UDP socket only looks up the route; no packet is
/// sent.
pub(crate) fn source_ip(remote: SocketAddr) -> io::Result<IpAddr> {
    let socket = Socket::new(
        Domain::for_address(remote),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    socket.connect(&remote.into())?;
    let local = socket.local_addr()?;
    local
        .as_socket()
        .map(|addr| addr.ip())
        .ok_or_else(|| io::Error::other(format!("route to {remote}: no IP source address")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_routes_from_loopback() {
        assert_eq!(
            source_ip("127.0.0.1:9".parse().unwrap()).unwrap(),
            "127.0.0.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            source_ip("127.0.0.7:9".parse().unwrap()).unwrap(),
            "127.0.0.1".parse::<IpAddr>().unwrap()
        );
    }
}
