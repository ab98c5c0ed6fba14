//! Helpers shared by the integration tests. Every await goes through [`within`].

#![allow(dead_code, unreachable_pub)]

pub mod go_peer;
pub mod logs;
pub mod shared;
pub mod swarm;

use std::{
    future::{Future, poll_fn},
    net::SocketAddr,
    pin::Pin,
    time::Duration,
};

use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p_core::{
    Endpoint, Multiaddr, Transport as _,
    multiaddr::Protocol,
    transport::{DialOpts, ListenerId, PortUse, TransportError, TransportEvent},
};
use libp2p_reuseport::{Config, TcpStream, Transport};

/// Runs the ignored test `name` of this test binary in a child process whose descriptor limit
/// is `limit` (`ulimit -n`), with the variable `marker` set to 1; asserts that it passed and
/// returns what it printed.
pub fn run_child_with_descriptor_limit(limit: u32, name: &str, marker: &str) -> String {
    let exe = std::env::current_exe().expect("the test binary");
    let output = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            r#"ulimit -n {limit} && exec "$0" --exact {name} --ignored --nocapture"#
        ))
        .arg(exe)
        .env(marker, "1")
        .output()
        .expect("run sh");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "child failed:\n{stdout}\n{stderr}");
    stdout
}

/// Starts the ignored test `name` of this test binary in a child process whose descriptor limit
/// is `limit` (`ulimit -n`), with the variable `marker` set to 1 and `envs` set, its stdin and
/// stdout piped: for tests that talk to their child line by line.
pub fn spawn_child_with_descriptor_limit(
    limit: u32,
    name: &str,
    marker: &str,
    envs: &[(&str, String)],
) -> std::process::Child {
    let exe = std::env::current_exe().expect("the test binary");
    std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            r#"ulimit -n {limit} && exec "$0" --exact {name} --ignored --nocapture"#
        ))
        .arg(exe)
        .env(marker, "1")
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run sh")
}

/// Raises this process's soft descriptor limit (`RLIMIT_NOFILE`) to `want`, or to the hard
/// limit if that is lower; returns the soft limit now in force.
#[cfg(unix)] // getrlimit/setrlimit are unix calls.
pub fn raise_descriptor_limit(want: u64) -> u64 {
    use nix::sys::resource::{Resource, getrlimit, rlim_t, setrlimit};
    // `rlim_t` is unsigned on Linux and macOS and signed on FreeBSD.
    let want = from_u64(want).unwrap_or(rlim_t::MAX);
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    let target = want.min(hard);
    if soft < target {
        setrlimit(Resource::RLIMIT_NOFILE, target, hard).expect("setrlimit below the hard limit");
    }
    let soft = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit").0;
    to_u64(soft).expect("a descriptor limit is not negative")
}

/// A limit as u64 and back, whatever the signedness of `rlim_t`.
#[cfg(unix)]
fn to_u64<T: TryInto<u64>>(value: T) -> Option<u64> {
    value.try_into().ok()
}

#[cfg(unix)]
fn from_u64<T: TryFrom<u64>>(value: u64) -> Option<T> {
    T::try_from(value).ok()
}

/// The number of descriptors this process has open (`/proc/self/fd`, Linux).
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

/// The number of descriptors this process has open once no transient one is: on Linux a
/// transport that closed a connection at once lists the kernel's finishing connections (a
/// netlink socket for the length of one dump, on a blocking thread). The least of readings 10 ms
/// apart over 100 ms, async so that the runtime's tasks go on meanwhile.
pub async fn settled_fds() -> usize {
    let mut least = open_fds();
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        least = least.min(open_fds());
    }
    least
}

/// The kind of error with which the kernel refuses a second connection on one (local, remote)
/// pair at `connect`: `EADDRNOTAVAIL` on Linux and Android, `EADDRINUSE` on macOS and the BSDs
/// (48 on macOS), `WSAEADDRINUSE` on Windows.
pub const PAIR_TAKEN: std::io::ErrorKind = if cfg!(any(target_os = "linux", target_os = "android"))
{
    std::io::ErrorKind::AddrNotAvailable
} else {
    std::io::ErrorKind::AddrInUse
};

/// Whether the tests run under Wine: scripts/platforms.sh runs the Windows build of the tests
/// there, with `WINEPREFIX` set. Wine's sockets differ from Windows' own where these tests look
/// (docs/platforms.md): no socket may bind a port beside a listening socket (Wine sets Linux's
/// SO_REUSEADDR on every TCP socket and never SO_REUSEPORT), so no dial leaves from a listening
/// port; and a remote's FIN is not reported while unread bytes wait (Wine learns of it from a
/// zero-byte peek).
pub fn under_wine() -> bool {
    cfg!(windows) && std::env::var_os("WINEPREFIX").is_some()
}

/// For a test that needs dials to leave from a listening port: `false` under Wine, after saying
/// loudly that `test` did not run and why.
pub fn port_sharing_here(test: &str) -> bool {
    if under_wine() {
        println!(
            "NOT RUN under Wine: {test}: needs a dial to leave from a listening port, and Wine \
             refuses every bind beside a listening socket (docs/platforms.md)"
        );
        return false;
    }
    true
}

/// How long any single step of a test may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);

pub type Event = TransportEvent<futures::future::Ready<std::io::Result<TcpStream>>, std::io::Error>;

/// Awaits `future`, failing the test if it takes longer than [`TIMEOUT`].
pub async fn within<F: Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(TIMEOUT, future).await {
        Ok(output) => output,
        Err(_) => panic!("timed out after {TIMEOUT:?}: {what}"),
    }
}

pub fn transport() -> Transport {
    Transport::new(Config::new())
}

pub fn ma(s: &str) -> Multiaddr {
    s.parse().expect("valid multiaddr")
}

pub fn socket_addr(addr: &Multiaddr) -> SocketAddr {
    let mut iter = addr.iter();
    let ip = match iter.next() {
        Some(Protocol::Ip4(ip)) => ip.into(),
        Some(Protocol::Ip6(ip)) => ip.into(),
        other => panic!("not an IP address: {other:?} in {addr}"),
    };
    match iter.next() {
        Some(Protocol::Tcp(port)) => SocketAddr::new(ip, port),
        other => panic!("not a TCP port: {other:?} in {addr}"),
    }
}

pub fn to_multiaddr(addr: SocketAddr) -> Multiaddr {
    Multiaddr::empty()
        .with(addr.ip().into())
        .with(Protocol::Tcp(addr.port()))
}

/// The next event of `transport`.
pub async fn next_event(transport: &mut Transport) -> Event {
    within(
        "transport event",
        poll_fn(|cx| Pin::new(&mut *transport).poll(cx)),
    )
    .await
}

/// Starts a listener on `addr` and returns its id and first address.
pub async fn listen(transport: &mut Transport, addr: &str) -> (ListenerId, SocketAddr) {
    let id = ListenerId::next();
    let requested = socket_addr(&ma(addr));
    transport.listen_on(id, ma(addr)).expect("listen_on");
    loop {
        match next_event(transport).await {
            TransportEvent::NewAddress {
                listener_id,
                listen_addr,
            } if listener_id == id => {
                let addr = socket_addr(&listen_addr);
                // A wildcard listener reports every interface: keep the loopback one.
                if !requested.ip().is_unspecified() || addr.ip().is_loopback() {
                    return (id, addr);
                }
            }
            TransportEvent::ListenerError { error, .. } => panic!("listener error: {error}"),
            _ => {}
        }
    }
}

/// Accepts the next incoming connection: (stream, local address, send-back address).
pub async fn accept(transport: &mut Transport) -> (TcpStream, SocketAddr, SocketAddr) {
    loop {
        if let TransportEvent::Incoming {
            upgrade,
            local_addr,
            send_back_addr,
            ..
        } = next_event(transport).await
        {
            let stream = upgrade.await.expect("accepted stream");
            return (
                stream,
                socket_addr(&local_addr),
                socket_addr(&send_back_addr),
            );
        }
    }
}

pub fn opts(port_use: PortUse) -> DialOpts {
    DialOpts {
        role: Endpoint::Dialer,
        port_use,
    }
}

/// Dials `remote` from `transport`, awaiting the connection.
pub async fn dial(
    transport: &mut Transport,
    remote: SocketAddr,
    port_use: PortUse,
) -> std::io::Result<TcpStream> {
    let future = transport
        .dial(to_multiaddr(remote), opts(port_use))
        .expect("dialable address");
    within("dial", future).await
}

/// Dials `remote` from `dialer` while `listener` accepts: (dialed stream, accepted stream,
/// send-back address the listener saw).
pub async fn connect(
    dialer: &mut Transport,
    listener: &mut Transport,
    remote: SocketAddr,
    port_use: PortUse,
) -> (TcpStream, TcpStream, SocketAddr) {
    let future = dialer
        .dial(to_multiaddr(remote), opts(port_use))
        .expect("dialable address");
    let (dialed, (accepted, _, send_back)) = tokio::join!(within("dial", future), accept(listener));
    (dialed.expect("dial"), accepted, send_back)
}

/// Closes a connection remote side first: `accepted` closes, `dialed` reads the end of stream,
/// then both are gone and the pair is free at once for the next dial.
pub async fn close_remote_first(dialed: TcpStream, accepted: TcpStream) {
    let mut dialed = dialed;
    drop(accepted);
    let mut rest = Vec::new();
    within("end of stream", dialed.read_to_end(&mut rest))
        .await
        .expect("read to end");
}

/// Writes `data` on `from` and reads it back on `to`.
pub async fn send(from: &mut TcpStream, to: &mut TcpStream, data: &[u8]) {
    within("write", from.write_all(data)).await.expect("write");
    within("flush", from.flush()).await.expect("flush");
    let mut buf = vec![0; data.len()];
    within("read", to.read_exact(&mut buf)).await.expect("read");
    assert_eq!(buf, data);
}

/// Whether `listen_on` refuses `addr` as unsupported.
pub fn listen_unsupported(transport: &mut Transport, addr: &Multiaddr) -> bool {
    matches!(
        transport.listen_on(ListenerId::next(), addr.clone()),
        Err(TransportError::MultiaddrNotSupported(a)) if &a == addr
    )
}

/// Whether `dial` refuses `addr` as unsupported.
pub fn dial_unsupported(transport: &mut Transport, addr: &Multiaddr) -> bool {
    matches!(
        transport.dial(addr.clone(), opts(PortUse::Reuse)),
        Err(TransportError::MultiaddrNotSupported(a)) if &a == addr
    )
}
