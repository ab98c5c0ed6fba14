//! The kernel's sock_diag netlink interface (`NETLINK_SOCK_DIAG`, `SOCK_DIAG_BY_FAMILY`): the
//! TCP sockets of the network namespace as `ss` lists them, without a descriptor of them.
//! netlink-sys opens and reads the socket through a safe API; the messages are written and
//! parsed here from the kernel's ABI (`linux/netlink.h`, `linux/inet_diag.h`), whose structures
//! only ever grow at the end.
//!
//! - [`pair_state`]: the state the kernel keeps for one (local, remote) pair, looked up by its
//!   4-tuple. A connection dropped before its remote closed is closed at once on Linux, and a
//!   dial that meets its pair asks the kernel whether the connection is still finishing
//!   (`closing.rs`, [`pair_finished`]); [`finishing_pairs`] lists the pairs of all such
//!   connections at once. `no_sock_diag.rs` has the same functions for the other platforms.
//! - `info.rs`, with the `metrics` feature: TCP_INFO of every open connection in one dump.
//!
//! Linux only: Android denies apps `NETLINK_SOCK_DIAG` sockets (Android 10 and later), and other
//! kernels have no sock_diag.

use std::{
    collections::HashSet,
    error::Error,
    fmt, io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::{Mutex, OnceLock, PoisonError},
    time::Duration,
};

use netlink_sys::{Socket, protocols::NETLINK_SOCK_DIAG};

// TCP_INFO is read for the metrics feature only.
#[cfg(tcp_info)]
mod info;
#[cfg(tcp_info)]
pub(crate) use self::info::dump;

// linux/netlink.h
/// `struct nlmsghdr`: length, type, flags, sequence number, port id.
const NLMSG_HDRLEN: usize = 16;
const NLM_F_REQUEST: u16 = 0x1;
/// `NLM_F_ROOT | NLM_F_MATCH`: every socket that matches.
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;

// linux/sock_diag.h, linux/inet_diag.h
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `struct inet_diag_req_v2`: family, protocol, extensions, padding, states, socket id.
const INET_DIAG_REQ_V2_LEN: usize = 56;
/// `struct inet_diag_msg`: family, state, timer, retransmits, socket id (at 4), expiry, queues,
/// uid, inode.
const INET_DIAG_MSG_LEN: usize = 72;

// sys/socket.h, netinet/in.h
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const IPPROTO_TCP: u8 = 6;

// linux/tcp_states.h
const TCP_TIME_WAIT: u8 = 6;
const TCP_CLOSE: u8 = 7;
const TCP_LISTEN: u8 = 10;
/// The states of a connection we closed before its remote's FIN, while it is finishing:
/// FIN_WAIT1 (4), FIN_WAIT2 (5, also the substate of the TIME_WAIT entry the kernel keeps for
/// such a connection once it has no socket), CLOSING (11), LAST_ACK (9).
const FINISHING_STATES: u32 = 1 << 4 | 1 << 5 | 1 << 9 | 1 << 11;
/// `INET_DIAG_NOCOOKIE`: look the socket up by its addresses alone.
const NO_COOKIE: [u8; 8] = [0xff; 8];
/// `ENOENT`: no socket has the 4-tuple.
const ENOENT: i32 = 2;

/// The kernel answers at once; this bounds how long a scrape can wait on it.
const RECV_TIMEOUT: Duration = Duration::from_secs(1);
/// The kernel sizes a dump's datagrams to the largest read it has seen, at most 32 KiB.
const RECV_BUFFER: usize = 32 * 1024;
/// The only request of its socket.
const SEQ: u32 = 1;

/// What the kernel keeps for the TCP pair (`local`, `remote`) of this network namespace: the
/// state of the socket with that 4-tuple (`linux/tcp_states.h`; for a TIME_WAIT entry its
/// substate), that of the listener on `local` if there is no such socket, or `None` if neither
/// exists. One request on the process's lookup socket, answered at once: two system calls.
pub(crate) fn pair_state(local: SocketAddr, remote: SocketAddr) -> io::Result<Option<u8>> {
    static LOOKUP: Mutex<Option<Lookup>> = Mutex::new(None);
    let mut lookup = LOOKUP.lock().unwrap_or_else(PoisonError::into_inner);
    if lookup.is_none() {
        *lookup = Some(Lookup::new()?);
    }
    let Some(open) = lookup.as_mut() else {
        unreachable!("opened above");
    };
    let state = open.ask(local, remote);
    if state.is_err() {
        // A new socket for the next request: nothing of this one's is left to read.
        *lookup = None;
    }
    state
}

/// The socket [`pair_state`] asks on, kept open: a socket per request would cost two more
/// system calls and a netlink port id each time, on the dial's path. It answers for the network
/// namespace of the thread that opened it, as every socket does: a process whose threads dial
/// in different namespaces would get another namespace's answers (a missing entry reads as
/// free, and the dial meets the kernel's refusal, or takes a finishing connection over).
struct Lookup {
    socket: Socket,
    /// The sequence number of the last request; answers to earlier ones (after a timeout) are
    /// skipped.
    seq: u32,
    buf: Vec<u8>,
}

impl Lookup {
    fn new() -> io::Result<Self> {
        let socket = Socket::new(NETLINK_SOCK_DIAG)?;
        socket2::SockRef::from(&socket).set_read_timeout(Some(RECV_TIMEOUT))?;
        Ok(Self {
            socket,
            seq: 0,
            buf: Vec::with_capacity(1024),
        })
    }

    fn ask(&mut self, local: SocketAddr, remote: SocketAddr) -> io::Result<Option<u8>> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        self.socket.send(&lookup_request(local, remote, seq), 0)?;
        loop {
            self.buf.clear();
            match self.socket.recv(&mut self.buf, 0) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let mut state = None;
            match parse_with(&self.buf, seq, |msg| {
                state = Some(socket_id(msg)?.0);
                Ok(())
            }) {
                Ok(_) if state.is_some() => return Ok(state),
                // Only answers to earlier requests: read on.
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(ENOENT) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }
}

/// Whether the kernel's state for a pair leaves it free for a new connection: nothing, a
/// listener, a closed socket, or a TIME_WAIT entry (which a connection from a bound port takes
/// over). Any other state is a connection that holds the 4-tuple.
pub(crate) fn is_free(state: Option<u8>) -> bool {
    matches!(state, None | Some(TCP_TIME_WAIT | TCP_CLOSE | TCP_LISTEN))
}

/// Whether the kernel can be asked about one connection's pair: whether sock_diag answers here
/// (a netlink socket of that protocol may be denied, or the kernel built without it), asked
/// once per process. Then a connection dropped before its remote closed is closed at once, and
/// a dial that meets its pair asks [`pair_finished`]; otherwise such a socket is held open until
/// the remote's FIN (`closing.rs`).
pub(crate) fn watches_closing() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        let nowhere = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        match pair_state(nowhere, nowhere) {
            Ok(_) => true,
            Err(error) => {
                tracing::debug!(%error, "sock_diag does not answer: closing sockets are held");
                false
            }
        }
    })
}

/// Whether the kernel is done with the connection of the pair (`local`, `remote`) that we
/// closed before its remote's FIN, so that a new connection may take the pair ([`is_free`]).
/// `false` if the lookup fails, and for an IPv6 link-local pair, which the kernel matches by
/// its interface as well (the table does not keep it): such a pair waits for the orphan hold.
pub(crate) fn pair_finished(local: SocketAddr, remote: SocketAddr) -> bool {
    let link_local = |addr: SocketAddr| match addr.ip() {
        IpAddr::V6(ip) => ip.is_unicast_link_local(),
        IpAddr::V4(_) => false,
    };
    if link_local(local) || link_local(remote) {
        return false;
    }
    pair_state(local, remote).is_ok_and(is_free)
}

/// The pairs of every TCP connection of the namespace that is finishing after our side closed
/// ([`FINISHING_STATES`]), of the families asked (IPv4, IPv6): one dump each, one datagram back
/// per 32 KiB (about 450 connections). The kernel walks its whole connection table for each,
/// TIME_WAIT entries included (1.9 ms with 416 entries and 4.9 ms with 84,000 here, with a table
/// sized for 24 GiB: the benchmark's row 12). An IPv4 pair on an IPv6 socket is listed in both
/// forms.
pub(crate) fn finishing_pairs(
    families: [bool; 2],
) -> io::Result<HashSet<(SocketAddr, SocketAddr)>> {
    let mut pairs = HashSet::new();
    for (family, _) in [AF_INET, AF_INET6]
        .into_iter()
        .zip(families)
        .filter(|(_, asked)| *asked)
    {
        let mut request = [0; NLMSG_HDRLEN + INET_DIAG_REQ_V2_LEN];
        header(&mut request, NLM_F_REQUEST | NLM_F_DUMP, SEQ);
        request[NLMSG_HDRLEN] = family;
        request[NLMSG_HDRLEN + 1] = IPPROTO_TCP;
        request[NLMSG_HDRLEN + 4..NLMSG_HDRLEN + 8]
            .copy_from_slice(&FINISHING_STATES.to_ne_bytes());
        dump_with(&request, |msg| {
            let (_, local, remote) = socket_id(msg)?;
            let canonical = (
                SocketAddr::new(local.ip().to_canonical(), local.port()),
                SocketAddr::new(remote.ip().to_canonical(), remote.port()),
            );
            pairs.insert((local, remote));
            pairs.insert(canonical);
            Ok(())
        })?;
    }
    Ok(pairs)
}

/// Sends the dump `request` (sequence [`SEQ`]) on a new socket and hands each message of the
/// answer to `each`, until the kernel ends the dump.
fn dump_with(request: &[u8], mut each: impl FnMut(&[u8]) -> io::Result<()>) -> io::Result<()> {
    let socket = Socket::new(NETLINK_SOCK_DIAG)?;
    socket2::SockRef::from(&socket).set_read_timeout(Some(RECV_TIMEOUT))?;
    // Unbound and unconnected: the kernel (port id 0) is the destination, and the socket is
    // given a port id on this first send.
    socket.send(request, 0)?;
    let mut buf = Vec::with_capacity(RECV_BUFFER);
    loop {
        buf.clear();
        match socket.recv(&mut buf, 0) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        if parse_with(&buf, SEQ, &mut each)? == Part::Done {
            return Ok(());
        }
    }
}

/// Writes the netlink header of a `SOCK_DIAG_BY_FAMILY` request of `buf`'s length.
fn header(buf: &mut [u8], flags: u16, seq: u32) {
    let len = u32::try_from(buf.len()).expect("a request is a few dozen bytes");
    buf[0..4].copy_from_slice(&len.to_ne_bytes());
    buf[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    buf[6..8].copy_from_slice(&flags.to_ne_bytes());
    buf[8..12].copy_from_slice(&seq.to_ne_bytes());
    // Port id 0: the kernel fills in ours.
}

/// A request for the one TCP socket with the 4-tuple (`local`, `remote`), IPv4-mapped IPv6
/// addresses asked as IPv4 (the kernel hashes such connections by their IPv4 addresses).
fn lookup_request(
    local: SocketAddr,
    remote: SocketAddr,
    seq: u32,
) -> [u8; NLMSG_HDRLEN + INET_DIAG_REQ_V2_LEN] {
    let mut buf = [0; NLMSG_HDRLEN + INET_DIAG_REQ_V2_LEN];
    header(&mut buf, NLM_F_REQUEST, seq);
    let (local_ip, remote_ip) = (local.ip().to_canonical(), remote.ip().to_canonical());
    let req = &mut buf[NLMSG_HDRLEN..];
    req[0] = match (local_ip, remote_ip) {
        (IpAddr::V4(_), IpAddr::V4(_)) => AF_INET,
        _ => AF_INET6,
    };
    req[1] = IPPROTO_TCP;
    // struct inet_diag_sockid at 8: ports (network order), source (ours) and destination
    // addresses, 16 bytes each, interface, cookie.
    req[8..10].copy_from_slice(&local.port().to_be_bytes());
    req[10..12].copy_from_slice(&remote.port().to_be_bytes());
    for (at, ip) in [(12, local_ip), (28, remote_ip)] {
        match (req[0], ip) {
            (AF_INET, IpAddr::V4(ip)) => req[at..at + 4].copy_from_slice(&ip.octets()),
            (_, IpAddr::V4(ip)) => req[at..at + 16].copy_from_slice(&ip.to_ipv6_mapped().octets()),
            (_, IpAddr::V6(ip)) => req[at..at + 16].copy_from_slice(&ip.octets()),
        }
    }
    req[48..56].copy_from_slice(&NO_COOKIE);
    buf
}

/// Whether a datagram ended the dump.
#[derive(Debug, PartialEq, Eq)]
enum Part {
    More,
    Done,
}

/// Hands each `struct inet_diag_msg` of one datagram of the answer to request `seq` to `each`.
/// Messages of another sequence are skipped. An `NLMSG_ERROR` is returned as the OS error it
/// carries; a message cut short as `InvalidData`.
fn parse_with(
    datagram: &[u8],
    seq: u32,
    mut each: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<Part> {
    let mut rest = datagram;
    while !rest.is_empty() {
        let header = rest
            .get(..NLMSG_HDRLEN)
            .ok_or(Malformed("netlink header"))?;
        let len = usize::try_from(u32_at(header, 0)).map_err(|_| Malformed("netlink length"))?;
        if len < NLMSG_HDRLEN || len > rest.len() {
            return Err(Malformed("netlink length").into());
        }
        let kind = u16::from_ne_bytes([header[4], header[5]]);
        let payload = &rest[NLMSG_HDRLEN..len];
        rest = rest.get(align(len)..).unwrap_or_default();
        if u32_at(header, 8) != seq {
            continue;
        }
        match kind {
            NLMSG_DONE => return Ok(Part::Done),
            NLMSG_ERROR => {
                let code = payload.get(..4).ok_or(Malformed("netlink error"))?;
                let code = i32::from_ne_bytes([code[0], code[1], code[2], code[3]]);
                // 0 acknowledges a request; a dump does not ask for that.
                if code != 0 {
                    return Err(io::Error::from_raw_os_error(code.saturating_neg()));
                }
            }
            SOCK_DIAG_BY_FAMILY => each(payload)?,
            _ => {}
        }
    }
    Ok(Part::More)
}

/// The state (`linux/tcp_states.h`; a TIME_WAIT entry's substate: FIN_WAIT2 for a connection
/// closed before the remote's FIN) and the (local, remote) addresses of one `struct
/// inet_diag_msg`.
fn socket_id(msg: &[u8]) -> io::Result<(u8, SocketAddr, SocketAddr)> {
    if msg.len() < INET_DIAG_MSG_LEN {
        return Err(Malformed("inet_diag_msg").into());
    }
    // struct inet_diag_sockid at 4: ports (network order), then source and destination
    // addresses, 16 bytes each (an IPv4 address in the first 4).
    let port = |at: usize| u16::from_be_bytes([msg[at], msg[at + 1]]);
    let addr = |at: usize| -> io::Result<IpAddr> {
        let bytes = &msg[at..at + 16];
        Ok(match msg[0] {
            AF_INET => Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]).into(),
            AF_INET6 => Ipv6Addr::from(<[u8; 16]>::try_from(bytes).expect("16 bytes")).into(),
            _ => return Err(Malformed("address family").into()),
        })
    };
    Ok((
        msg[1],
        SocketAddr::new(addr(8)?, port(4)),
        SocketAddr::new(addr(24)?, port(6)),
    ))
}

/// The native-endian `u32` at `at`; the caller checked the length.
fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Netlink messages and attributes start on 4-byte boundaries (`NLMSG_ALIGN`, `RTA_ALIGN`).
const fn align(len: usize) -> usize {
    (len + 3) & !3
}

/// A message of the answer is cut short or does not fit its kind: what did not fit.
#[derive(Debug)]
struct Malformed(&'static str);

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed sock_diag answer: {}", self.0)
    }
}

impl Error for Malformed {}

impl From<Malformed> for io::Error {
    fn from(e: Malformed) -> Self {
        Self::new(io::ErrorKind::InvalidData, e)
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::Read,
        net::{Shutdown, TcpListener, TcpStream},
        thread,
        time::Instant,
    };

    use super::*;

    const ESTABLISHED: u8 = 1;
    const FIN_WAIT2: u8 = 5;

    #[test]
    fn the_lookup_request_names_one_4_tuple() {
        let local: SocketAddr = "10.0.0.1:4001".parse().unwrap();
        let remote: SocketAddr = "10.0.0.2:5".parse().unwrap();
        let buf = lookup_request(local, remote, 9);
        assert_eq!(u32_at(&buf, 0), 72);
        assert_eq!(
            u16::from_ne_bytes([buf[6], buf[7]]),
            NLM_F_REQUEST,
            "not a dump"
        );
        let req = &buf[NLMSG_HDRLEN..];
        assert_eq!(&req[..4], &[AF_INET, IPPROTO_TCP, 0, 0]);
        assert_eq!(&req[8..12], &[0x0f, 0xa1, 0, 5], "ports in network order");
        assert_eq!(&req[12..16], &[10, 0, 0, 1]);
        assert_eq!(&req[28..32], &[10, 0, 0, 2]);
        assert_eq!(&req[48..56], &[0xff; 8], "no cookie");
        // An IPv4-mapped pair is asked as IPv4; an IPv6 one as IPv6.
        let mapped = lookup_request(
            "[::ffff:10.0.0.1]:4001".parse().unwrap(),
            "[::ffff:10.0.0.2]:5".parse().unwrap(),
            9,
        );
        assert_eq!(mapped, buf);
        let v6 = lookup_request(
            "[2001:db8::1]:4001".parse().unwrap(),
            "[2001:db8::2]:5".parse().unwrap(),
            9,
        );
        assert_eq!(v6[NLMSG_HDRLEN], AF_INET6);
        assert_eq!(v6[NLMSG_HDRLEN + 12], 0x20);
        assert_eq!(v6[NLMSG_HDRLEN + 43], 2);
    }

    /// Waits (at most 5 s) until the kernel's state for the pair satisfies `done`.
    fn state_becomes(
        local: SocketAddr,
        remote: SocketAddr,
        done: impl Fn(Option<u8>) -> bool,
    ) -> Option<u8> {
        let started = Instant::now();
        loop {
            let state = pair_state(local, remote).expect("sock_diag lookup");
            if done(state) || started.elapsed().as_secs() >= 5 {
                return state;
            }
            thread::sleep(Duration::from_millis(1));
        }
    }

    /// The lookup against the running kernel, through a connection's life as a closing-at-once
    /// drop sees it: open, closed by us before the remote (FIN_WAIT2, also in the finishing
    /// dump), then the remote's FIN (TIME_WAIT: free). A pair nobody holds is `None`; the
    /// listener's own address answers LISTEN.
    #[test]
    fn the_kernel_answers_through_a_connection_s_life() {
        assert!(watches_closing(), "sock_diag answers on this Linux host");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, remote) = listener.accept().unwrap();
        let local = server.local_addr().unwrap();
        assert_eq!(pair_state(local, remote).unwrap(), Some(ESTABLISHED));
        assert!(!is_free(Some(ESTABLISHED)));

        drop(server);
        let state = state_becomes(local, remote, |s| s == Some(FIN_WAIT2));
        assert_eq!(
            state,
            Some(FIN_WAIT2),
            "closed by us, the remote still open"
        );
        assert!(!is_free(state));
        assert!(
            finishing_pairs([true, false])
                .unwrap()
                .contains(&(local, remote)),
            "listed as finishing"
        );

        let mut eof = [0; 1];
        assert_eq!(client.read(&mut eof).unwrap(), 0, "our FIN");
        client.shutdown(Shutdown::Write).unwrap();
        let state = state_becomes(local, remote, |s| s == Some(TCP_TIME_WAIT));
        assert_eq!(state, Some(TCP_TIME_WAIT), "the remote's FIN");
        assert!(is_free(state));
        assert!(
            !finishing_pairs([true, true])
                .unwrap()
                .contains(&(local, remote))
        );

        let nobody: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert_eq!(pair_state(nobody, remote).unwrap(), None);
        assert_eq!(pair_state(local, nobody).unwrap(), Some(TCP_LISTEN));
        assert!(is_free(None) && is_free(Some(TCP_LISTEN)));
    }

    /// A pair nobody holds is free when the kernel is asked; an IPv6 link-local one is not
    /// asked (the kernel would match it by interface too) and waits for the orphan hold.
    #[test]
    fn link_local_pairs_are_not_looked_up() {
        let pair = |a: &str, b: &str| pair_finished(a.parse().unwrap(), b.parse().unwrap());
        assert!(pair("[::1]:9", "[::1]:10"));
        assert!(pair("127.0.0.1:9", "127.0.0.1:10"));
        assert!(!pair("[fe80::1]:9", "[fe80::2]:10"));
        assert!(!pair("[2001:db8::1]:9", "[fe80::2]:10"));
    }
}
