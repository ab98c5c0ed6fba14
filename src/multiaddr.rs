//! Conversions between [`Multiaddr`] and [`SocketAddr`]; pure, no sockets.

use std::net::{IpAddr, SocketAddr};

use libp2p_core::multiaddr::{Multiaddr, Protocol};

/// The socket address a listener binds for `addr`: exactly `/ip4|ip6/<ip>/tcp/<port>`,
/// optionally followed by `/p2p/<peer id>` (as libp2p-tcp accepts it; the listener's addresses
/// are reported without it), any port (0 asks the OS for one), any IP (the unspecified IP
/// listens on every interface).
pub(crate) fn listen_addr(addr: &Multiaddr) -> Option<SocketAddr> {
    let mut iter = addr.iter();
    let ip = ip(iter.next()?)?;
    let Protocol::Tcp(port) = iter.next()? else {
        return None;
    };
    match (iter.next(), iter.next()) {
        (None, _) | (Some(Protocol::P2p(_)), None) => Some(SocketAddr::new(ip, port)),
        _ => None,
    }
}

/// The socket address a dial connects to: exactly `/ip4|ip6/<ip>/tcp/<port>`, optionally followed
/// by `/p2p/<peer id>`. Port 0 and the unspecified IP are not dialable.
pub(crate) fn dial_addr(addr: &Multiaddr) -> Option<SocketAddr> {
    let mut iter = addr.iter();
    let ip = ip(iter.next()?)?;
    let Protocol::Tcp(port) = iter.next()? else {
        return None;
    };
    match (iter.next(), iter.next()) {
        (None, _) | (Some(Protocol::P2p(_)), None) => {}
        _ => return None,
    }
    if port == 0 || ip.is_unspecified() {
        return None;
    }
    Some(SocketAddr::new(ip, port))
}

/// The `/ip4|ip6/<ip>/tcp/<port>` an address starts with, whatever follows (`/ws`, `/tls/ws`,
/// `/p2p/<id>`, `/p2p-circuit`), and whether nothing but an optional `/p2p/<id>` follows.
// Only `Identify` looks at addresses other transports listen on.
#[cfg(feature = "identify")]
pub(crate) fn tcp_prefix(addr: &Multiaddr) -> Option<(SocketAddr, bool)> {
    let mut iter = addr.iter();
    let ip = ip(iter.next()?)?;
    let Protocol::Tcp(port) = iter.next()? else {
        return None;
    };
    let bare = matches!(
        (iter.next(), iter.next()),
        (None, _) | (Some(Protocol::P2p(_)), None)
    );
    Some((SocketAddr::new(ip, port), bare))
}

/// The most bytes `/ip4|ip6/<ip>/tcp/<port>` takes: the protocol codes (one byte each), an IPv6
/// address and a port.
const SOCKET_ADDR_LEN: usize = 1 + 16 + 1 + 2;

/// `/ip4|ip6/<ip>/tcp/<port>` for a socket address, in one allocation (each accepted connection
/// makes one).
pub(crate) fn to_multiaddr(addr: SocketAddr) -> Multiaddr {
    Multiaddr::with_capacity(SOCKET_ADDR_LEN)
        .with(addr.ip().into())
        .with(Protocol::Tcp(addr.port()))
}

fn ip(protocol: Protocol<'_>) -> Option<IpAddr> {
    match protocol {
        Protocol::Ip4(ip) => Some(ip.into()),
        Protocol::Ip6(ip) => Some(ip.into()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEER: &str = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA";

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn listen_addresses() {
        let table: &[(&str, Option<SocketAddr>)] = &[
            ("/ip4/127.0.0.1/tcp/4001", Some(sa("127.0.0.1:4001"))),
            ("/ip4/0.0.0.0/tcp/0", Some(sa("0.0.0.0:0"))),
            ("/ip6/::1/tcp/0", Some(sa("[::1]:0"))),
            ("/ip6/::/tcp/4001", Some(sa("[::]:4001"))),
            (
                "/ip4/255.255.255.255/tcp/8080",
                Some(sa("255.255.255.255:8080")),
            ),
            ("/ip4/127.0.0.1", None),
            ("/ip4/127.0.0.1/udp/4001", None),
            ("/ip4/127.0.0.1/udp/4001/quic-v1", None),
            ("/ip4/127.0.0.1/tcp/4001/ws", None),
            ("/ip4/127.0.0.1/tcp/4001/tcp/4002", None),
            ("/tcp/4001", None),
            ("/dns4/localhost/tcp/4001", None),
            ("/dns/example.com/tcp/4001", None),
            ("/unix/tmp%2Fsock", None),
            ("/memory/1234", None),
            ("/ip4/127.0.0.1/tcp/4001/p2p-circuit", None),
            ("", None),
        ];
        for (input, expected) in table {
            let addr: Multiaddr = input.parse().unwrap();
            assert_eq!(listen_addr(&addr), *expected, "listen {input}");
        }
        // A trailing peer id is accepted, as libp2p-tcp does; anything after it is not.
        let with_peer: Multiaddr = format!("/ip4/127.0.0.1/tcp/4001/p2p/{PEER}")
            .parse()
            .unwrap();
        assert_eq!(listen_addr(&with_peer), Some(sa("127.0.0.1:4001")));
        let after_peer: Multiaddr = format!("/ip4/127.0.0.1/tcp/4001/p2p/{PEER}/ws")
            .parse()
            .unwrap();
        assert_eq!(listen_addr(&after_peer), None);
    }

    #[test]
    fn dial_addresses() {
        let table: &[(String, Option<SocketAddr>)] = &[
            ("/ip4/127.0.0.1/tcp/4001".into(), Some(sa("127.0.0.1:4001"))),
            ("/ip6/::1/tcp/4001".into(), Some(sa("[::1]:4001"))),
            (
                format!("/ip4/1.2.3.4/tcp/4001/p2p/{PEER}"),
                Some(sa("1.2.3.4:4001")),
            ),
            (
                format!("/ip6/2001:db8::1/tcp/1/p2p/{PEER}"),
                Some(sa("[2001:db8::1]:1")),
            ),
            ("/ip4/127.0.0.1/tcp/0".into(), None),
            ("/ip4/0.0.0.0/tcp/4001".into(), None),
            ("/ip6/::/tcp/4001".into(), None),
            ("/ip4/127.0.0.1/udp/4001".into(), None),
            ("/ip4/127.0.0.1/tcp/4001/ws".into(), None),
            ("/ip4/127.0.0.1/tcp/4001/tls/ws".into(), None),
            ("/dns4/localhost/tcp/4001".into(), None),
            ("/unix/tmp%2Fsock".into(), None),
            ("/memory/5".into(), None),
            ("/ip4/127.0.0.1".into(), None),
            (format!("/p2p/{PEER}"), None),
            (
                format!("/ip4/127.0.0.1/tcp/4001/p2p/{PEER}/p2p-circuit"),
                None,
            ),
            (
                format!("/ip4/127.0.0.1/tcp/4001/p2p/{PEER}/p2p/{PEER}"),
                None,
            ),
            (format!("/ip4/127.0.0.1/p2p/{PEER}/tcp/4001"), None),
        ];
        for (input, expected) in table {
            let addr: Multiaddr = input.parse().unwrap();
            assert_eq!(dial_addr(&addr), *expected, "dial {input}");
        }
    }

    // tcp_prefix exists with the feature that uses it.
    #[cfg(feature = "identify")]
    #[test]
    fn tcp_prefixes() {
        let table: &[(String, Option<(SocketAddr, bool)>)] = &[
            (
                "/ip4/127.0.0.1/tcp/4001".into(),
                Some((sa("127.0.0.1:4001"), true)),
            ),
            ("/ip6/::/tcp/0".into(), Some((sa("[::]:0"), true))),
            (
                format!("/ip4/1.2.3.4/tcp/4001/p2p/{PEER}"),
                Some((sa("1.2.3.4:4001"), true)),
            ),
            (
                "/ip4/1.2.3.4/tcp/4001/ws".into(),
                Some((sa("1.2.3.4:4001"), false)),
            ),
            (
                "/ip6/::1/tcp/4001/tls/ws".into(),
                Some((sa("[::1]:4001"), false)),
            ),
            (
                format!("/ip4/1.2.3.4/tcp/4001/p2p/{PEER}/p2p-circuit"),
                Some((sa("1.2.3.4:4001"), false)),
            ),
            ("/ip4/1.2.3.4/udp/4001/quic-v1".into(), None),
            ("/dns4/localhost/tcp/4001".into(), None),
            (format!("/p2p/{PEER}"), None),
            ("/ip4/1.2.3.4".into(), None),
        ];
        for (input, expected) in table {
            let addr: Multiaddr = input.parse().unwrap();
            assert_eq!(tcp_prefix(&addr), *expected, "{input}");
        }
    }

    #[test]
    fn round_trip() {
        for s in [
            "127.0.0.1:1",
            "[::1]:65535",
            "10.0.0.1:4001",
            "[2001:db8::7]:80",
        ] {
            let addr: SocketAddr = s.parse().unwrap();
            let ma = to_multiaddr(addr);
            assert_eq!(listen_addr(&ma), Some(addr));
            assert_eq!(dial_addr(&ma), Some(addr));
        }
    }
}
