//! Port hijacking: with SO_REUSEPORT another socket of the same user could bind our listening
//! port and take half of its connections. `listen_on` refuses a port that a socket outside the
//! transport holds, unless `Config::foreign_port_sharing(true)`; sharing within the transport
//! stays allowed, and TIME_WAIT leftovers or our own outbound connections do not count.
//! Another user cannot join our listening port at all (Linux checks the UID).
//!
//! Windows has no SO_REUSEPORT; its sharing rules, and the listener's refusal of a socket that
//! sets SO_REUSEADDR, are tested in tests/windows.rs.

// SO_REUSEPORT, and with it the sharing this guards against, exists on unix only.
#![cfg(unix)]

mod util;

use std::{io, net::SocketAddr};

use libp2p_core::{
    Transport as _,
    transport::{ListenerId, PortUse, TransportError},
};
use libp2p_reuseport::{Config, Transport};
use socket2::{Domain, Socket, Type};
use util::*;

/// A listener of "another program": SO_REUSEPORT set, as a second daemon using port reuse would.
fn foreign_listener(addr: &str) -> (Socket, SocketAddr) {
    let addr: SocketAddr = addr.parse().unwrap();
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).unwrap();
    if addr.is_ipv6() {
        socket.set_only_v6(true).unwrap();
    }
    socket.set_reuse_port(true).unwrap();
    socket.bind(&addr.into()).unwrap();
    socket.listen(16).unwrap();
    let bound = socket.local_addr().unwrap().as_socket().unwrap();
    (socket, bound)
}

fn listen_error(t: &mut Transport, addr: SocketAddr) -> Option<io::Error> {
    match t.listen_on(ListenerId::next(), to_multiaddr(addr)) {
        Ok(()) => None,
        Err(TransportError::Other(e)) => Some(e),
        Err(other) => panic!("unexpected {other:?}"),
    }
}

/// Whether the kernel refuses a listener with SO_REUSEADDR and SO_REUSEPORT beside a foreign
/// one on an overlapping address of the same port (a wildcard and a specific one): Linux does
/// unless both set SO_REUSEPORT, so the probe catches it; on the BSDs and macOS SO_REUSEADDR
/// lets the two coexist (the specific socket gets the connections to its address, nothing is
/// split), and the probe looks at the exact address only.
const OVERLAPS_REFUSED: bool = cfg!(any(target_os = "linux", target_os = "android"));

#[tokio::test]
async fn a_port_held_by_another_socket_is_refused() {
    for (foreign, ours) in [
        ("127.0.0.1:0", None),
        ("0.0.0.0:0", Some("127.0.0.1")),
        ("127.0.0.1:0", Some("0.0.0.0")),
        ("[::1]:0", None),
        ("[::]:0", Some("::1")),
    ] {
        let (_foreign, held) = foreign_listener(foreign);
        let target = match ours {
            Some(ip) => SocketAddr::new(ip.parse().unwrap(), held.port()),
            None => held,
        };
        let mut t = transport();
        let result = listen_error(&mut t, target);
        if ours.is_some() && !OVERLAPS_REFUSED {
            assert!(result.is_none(), "{foreign} beside {target}: {result:?}");
            continue;
        }
        let err = result.expect("refused");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
        let message = err.to_string();
        assert!(message.contains(&target.to_string()), "{message}");
        assert!(message.contains("foreign_port_sharing"), "{message}");
        assert!(t.reuse_table().listen_addrs().is_empty());
    }
}

#[tokio::test]
async fn sharing_with_another_socket_can_be_allowed() {
    let (_foreign, held) = foreign_listener("127.0.0.1:0");
    let mut t = Transport::new(Config::new().foreign_port_sharing(true));
    assert!(listen_error(&mut t, held).is_none(), "allowed on purpose");
    assert_eq!(t.reuse_table().listen_addrs(), vec![held]);
}

#[tokio::test]
async fn our_own_ports_are_not_foreign() {
    let mut t = transport();
    let (first, addr) = listen(&mut t, "/ip4/127.0.0.1/tcp/0").await;
    let second = ListenerId::next();
    t.listen_on(second, to_multiaddr(addr))
        .expect("a second listener on our own address");
    let wildcard = ListenerId::next();
    let any = SocketAddr::new("0.0.0.0".parse().unwrap(), addr.port());
    t.listen_on(wildcard, to_multiaddr(any))
        .expect("a wildcard listener over our own port");

    // Once the listeners are gone, our outbound connection from the port still makes it ours.
    let mut remote = transport();
    let (_, remote_addr) = listen(&mut remote, "/ip4/127.0.0.1/tcp/0").await;
    let (dialed, accepted, from) = connect(&mut t, &mut remote, remote_addr, PortUse::Reuse).await;
    assert_eq!(from.port(), addr.port());
    for id in [first, second, wildcard] {
        assert!(t.remove_listener(id));
    }
    assert!(t.reuse_table().listen_addrs().is_empty());
    assert_eq!(t.reuse_table().dialed_connections(), 1);
    assert!(
        listen_error(&mut t, addr).is_none(),
        "the port of our own connection is ours"
    );
    drop((dialed, accepted));
}

#[tokio::test]
async fn time_wait_leftovers_do_not_count() {
    use tokio::io::AsyncReadExt as _;
    let mut t = transport();
    let (_, addr) = listen(&mut t, "/ip4/127.0.0.1/tcp/0").await;
    // Connections accepted on the port and closed by us first leave TIME_WAIT on it.
    for _ in 0..3 {
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (accepted, _, _) = accept(&mut t).await;
        drop(accepted);
        let mut rest = Vec::new();
        within("eof", client.read_to_end(&mut rest)).await.unwrap();
    }
    drop(t);
    let mut again = transport();
    assert!(
        listen_error(&mut again, addr).is_none(),
        "a restarted node gets its port back"
    );
}

/// Binds `addr` with SO_REUSEADDR and SO_REUSEPORT (as a daemon that wants to share the port
/// would) from a process running as user `nobody`; what it printed: `bound`, or the errno name.
/// `None` when no process can be started as another user here (not root, or no `setpriv` or
/// `python3`), with the reason printed.
#[cfg(target_os = "linux")] // setpriv(1) and the UID check are Linux's.
fn bind_as_nobody(addr: SocketAddr) -> Option<String> {
    let script = format!(
        "import errno, socket\n\
         s = socket.socket(socket.AF_INET6 if {v6} else socket.AF_INET)\n\
         s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)\n\
         try:\n    s.bind(('{ip}', {port})); s.listen(); print('bound')\n\
         except OSError as e:\n    print(errno.errorcode[e.errno])\n",
        v6 = if addr.is_ipv6() { "True" } else { "False" },
        ip = addr.ip(),
        port = addr.port(),
    );
    let output = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "/usr/bin/python3",
            "-c",
        ])
        .arg(script)
        .output();
    match output {
        Ok(out) if out.status.success() => {
            Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
        }
        Ok(out) => {
            println!(
                "NOT RUN: cannot start a process as user nobody (root, setpriv and /usr/bin/python3 are \
                 needed): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            None
        }
        Err(e) => {
            println!("NOT RUN: cannot start setpriv (util-linux) to run as user nobody: {e}");
            None
        }
    }
}

// Linux refuses SO_REUSEPORT between different effective UIDs: another user's daemon cannot
// join our listening port (specific or wildcard), while one of ours could (the test above).
#[cfg(target_os = "linux")]
#[tokio::test]
async fn another_user_cannot_join_our_listening_port() {
    for ours in [
        "/ip4/127.0.0.1/tcp/0",
        "/ip4/0.0.0.0/tcp/0",
        "/ip6/::1/tcp/0",
    ] {
        let mut t = transport();
        let (_, addr) = listen(&mut t, ours).await;
        let addr = if ours.contains("0.0.0.0") {
            SocketAddr::new("0.0.0.0".parse().unwrap(), addr.port())
        } else {
            addr
        };
        let Some(outcome) = bind_as_nobody(addr) else {
            return;
        };
        println!("security: user nobody binding {addr} with SO_REUSEPORT beside us: {outcome}");
        assert_eq!(outcome, "EADDRINUSE", "user nobody binding {addr}");
        // A process of our own user, with the same options, is let in: the UID decides.
        let (_ours, joined) = foreign_listener(&addr.to_string());
        assert_eq!(joined, addr);
    }
}
