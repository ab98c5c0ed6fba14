//! The dial future: choose the source, bind, connect (again after a refusal, within the
//! configured window), fall back to an ephemeral port once.

use std::{
    collections::hash_map::RandomState,
    future::Future,
    hash::{BuildHasher, Hasher},
    io,
    net::SocketAddr,
    pin::{Pin, pin},
    sync::Arc,
    task::{Context, Poll, ready},
    time::{Duration, Instant},
};

use futures::future::{self, Either};

use crate::{
    Config, TcpStream,
    closing::Reaper,
    error,
    metrics::Metrics,
    origin::{Fallback, PortOrigin},
    port_reuse::{CONNECTED_GRACE, Claim, Connecting, Lease, Parked, ReuseTable},
    route, socket,
    stream::OnDrop,
    sys::{PLATFORM, Role, Step},
};

/// What a dial with `PortUse::Reuse` needs: the table to choose its source from, and the task
/// that holds the connection if it is dropped before its remote closed.
pub(crate) struct Reuse {
    pub(crate) table: ReuseTable,
    pub(crate) reaper: Arc<Reaper>,
    /// Whether this looks like the dial of a hole punch, whose refusal outlives its window
    /// ([`refused_tail`]): it overrides the role (`DialOpts::role` is `Endpoint::Listener`:
    /// DCUtR's dial on the side that leads the punch), or it goes to a peer this process holds a
    /// relayed connection with ([`crate::relayed`]: DCUtR's dial on the other side).
    pub(crate) punch: bool,
}

/// Connects to `remote`. With `reuse`, leaves from a listening port chosen by the port-reuse
/// table when one is free, else from an ephemeral port. Counts the connection in `metrics` by
/// where its port came from.
///
/// Nothing happens before the first poll. Dropping the future closes the socket and releases
/// the reserved pair, with one exception: a dial from a listening port to a non-loopback
/// address dropped while it connects is kept half-open for [`Config::given_up_dial_window`],
/// and the next dial to that remote from the same address takes it over.
pub(crate) async fn dial(
    config: Config,
    remote: SocketAddr,
    reuse: Option<Reuse>,
    metrics: Metrics,
) -> io::Result<TcpStream> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(io::Error::other(format!(
            "dial {remote}: libp2p-reuseport needs a tokio runtime"
        )));
    }
    // A configured SO_LINGER decides how the socket closes; do not hold it open after drop.
    let on_drop = OnDrop::for_linger(config.linger);
    let fallback = match reuse {
        None => Fallback::NotRequested,
        Some(Reuse {
            table,
            reaper,
            punch,
        }) => 'reuse: {
            let source = match table.source_ip(remote, route::source_ip) {
                Ok(source) => source,
                Err(fallback) => break 'reuse fallback,
            };
            // Once, if the pair is taken by a dial the remote refused that is trying again:
            // choose again when it is done.
            let mut waited = false;
            'choose: loop {
                if let Some(handed) = table.unpark(source, remote)
                    && let Ok(Parked { connecting, lease }) = handed.await
                {
                    let local = lease.local();
                    tracing::debug!(%local, %remote, "taking over the dial on this pair given up before it connected");
                    let window = keep_window(&config, remote).unwrap_or_default();
                    let kept = Keepable::new(connecting, &lease, remote, window);
                    // Failed: the lease goes, the pair is free for a new choice below.
                    if let Ok(io) = kept.await {
                        return Ok(reused(io, lease, reaper, on_drop, &metrics, remote));
                    }
                }
                // Each pass that finds the pair taken by a waiting connection leaves that pair
                // in the table as accepted, so the next choice passes over it: the loop ends.
                let mut refused = None;
                loop {
                    let lease = match table.reserve(remote, source) {
                        Ok(lease) => lease,
                        Err(Fallback::Busy) if !waited && refused.is_none() => {
                            waited = true;
                            let Some(done) = table.after_refused_dial(remote, source) else {
                                break 'reuse Fallback::Busy;
                            };
                            tracing::debug!(%remote, "the pair's dial, refused by the remote, is trying again: choosing when it is done");
                            let most = config.rst_retry_window + CLAIM_GRACE;
                            let _ = tokio::time::timeout(most, done).await;
                            continue 'choose;
                        }
                        // A choice made again after the kernel refused a pair falls back for
                        // that.
                        Err(fallback) => {
                            break 'reuse refused.map_or(fallback, Fallback::KernelRefused);
                        }
                    };
                    let local = lease.local();
                    let bind = PLATFORM.dial_bind_addr(local, || lease.on_specific_listener());
                    let connecting =
                        connect_from_listening_port(&config, remote, &lease, bind, punch, &metrics);
                    match connecting.await {
                        Ok(io) => {
                            lease.connected();
                            return Ok(reused(io, lease, reaper, on_drop, &metrics, remote));
                        }
                        Err(NotConnected::Waiting) => {}
                        Err(NotConnected::Failed(step, e)) if PLATFORM.is_taken(step, &e) => {
                            if lease.taken_after_refusal() {
                                tracing::debug!(%local, %remote, "listening port refused by the kernel: a connection from the remote waiting on the listener holds the pair, choosing again");
                                refused = Some(e.kind());
                                continue;
                            }
                            tracing::debug!(%local, %remote, error = %e, "listening port refused by the kernel, dialing from an ephemeral port");
                            break 'reuse Fallback::KernelRefused(e.kind());
                        }
                        Err(NotConnected::Failed(_, e)) => {
                            return Err(with_addrs(e, Some(local), remote));
                        }
                    }
                }
            }
        }
    };
    if !matches!(
        fallback,
        Fallback::NotRequested | Fallback::Disabled | Fallback::KernelRefused(_)
    ) {
        tracing::debug!(%remote, reason = ?fallback, "no listening port to reuse, dialing from an ephemeral port");
    }
    let io = connect(&config, remote, None)
        .await
        .map_err(|(_, e)| with_addrs(e, None, remote))?;
    let origin = PortOrigin::Ephemeral(fallback);
    metrics.dialed(origin);
    let tracked = metrics.track(origin, || io.local_addr().ok(), remote);
    Ok(TcpStream::dialed(io, origin, None, OnDrop::Close, tracked))
}

/// The stream of a connection that left from the listening address of `lease`.
fn reused(
    io: tokio::net::TcpStream,
    lease: Lease,
    reaper: Arc<Reaper>,
    on_drop: OnDrop,
    metrics: &Metrics,
    remote: SocketAddr,
) -> TcpStream {
    let local = lease.local();
    metrics.dialed(PortOrigin::Reused);
    let tracked = metrics.track(PortOrigin::Reused, || Some(local), remote);
    TcpStream::dialed(
        io,
        PortOrigin::Reused,
        Some((lease, reaper)),
        on_drop,
        tracked,
    )
}

/// A `connect` from the listening address of `lease` that, dropped before it is done, is kept
/// half-open for the next dial on its pair ([`ReuseTable::park`]) for `window`.
struct Keepable<'a> {
    connecting: Option<Connecting>,
    lease: &'a Lease,
    remote: SocketAddr,
    window: Duration,
}

impl<'a> Keepable<'a> {
    fn new(connecting: Connecting, lease: &'a Lease, remote: SocketAddr, window: Duration) -> Self {
        Self {
            connecting: Some(connecting),
            lease,
            remote,
            window,
        }
    }
}

/// How long a dial to `remote` given up before it connected is kept ([`Keepable`]): `None`
/// for a loopback remote or a zero window, whose `connect` need not be boxed.
fn keep_window(config: &Config, remote: SocketAddr) -> Option<Duration> {
    let window = config.given_up_dial_window;
    (!remote.ip().is_loopback() && !window.is_zero()).then_some(window)
}

impl Future for Keepable<'_> {
    type Output = Result<tokio::net::TcpStream, (Step, io::Error)>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(connecting) = self.connecting.as_mut() else {
            return Poll::Pending;
        };
        let result = ready!(connecting.as_mut().poll(cx));
        self.connecting = None;
        Poll::Ready(result)
    }
}

impl Drop for Keepable<'_> {
    fn drop(&mut self) {
        if let Some(connecting) = self.connecting.take() {
            self.lease.park(connecting, self.remote, self.window);
        }
    }
}

/// The most SYNs a refused dial from a listening port sends, the first included.
const REFUSED_ATTEMPTS: u32 = 16;

/// How long the SYNs of a hole punch's dial go on after the dial failed ([`refused_tail`]):
/// until DCUtR's next attempt, which starts about two and a half relayed round trips after the
/// failure (libp2p-dcutr opens a new stream over the relay for it), for relayed round trips up
/// to about 800 ms.
const PUNCH_TAIL: Duration = Duration::from_secs(2);

/// The most SYNs of a hole punch's dial after it failed ([`refused_tail`]). Each waits for the
/// remote's refusal, so over a WAN they are one per round trip between the NATs and
/// [`PUNCH_TAIL`] ends them first (past about 30 ms); near the remote, this does.
const PUNCH_TAIL_ATTEMPTS: u32 = 64;

/// Why a dial from a listening port did not connect.
enum NotConnected {
    /// A connection waiting on the listener's socket holds the pair, seen with the socket bound
    /// and before `connect` ([`Lease::taken_in_backlog`], for a remote that dialed us from its
    /// address before): the table now has it, choose again.
    Waiting,
    /// A system call failed, at this step.
    Failed(Step, io::Error),
}

/// Connects from the listening address of `lease`, binding `bind` (that address, or where the
/// platform asks for it the unspecified address with its port). With the socket bound, and
/// just before the first `connect`, it takes in the connections waiting on the listener if the
/// remote has dialed us from its address before: the remote's own dial to us may hold the pair
/// already ([`NotConnected::Waiting`]), and the later the look, the fewer dials that cross the
/// remote's meet the kernel's refusal. For other remotes the kernel's refusal of the pair tells
/// the caller to look ([`Lease::taken_after_refusal`]).
///
/// A refusal from a non-loopback remote (a RST or an ICMP rejection: [`refused_for_now`]) is
/// answered with a new SYN from the same address, at once across a WAN or after an ICMP
/// rejection, about 2 ms later after a RST from a host nearby (see [`resend`]), at most
/// [`REFUSED_ATTEMPTS`] in all and until the configured window has passed: in a hole punch the
/// remote's NAT refuses SYNs that arrive before its own host's SYN has opened the mapping, and
/// our next SYN both tries again and reopens our own NAT's mapping, which the refusal closed,
/// for the remote's SYN (see [`Config::rst_retry_window`]).
///
/// From the first refusal on, the dial also claims the pair ([`Lease::claim`]): where the
/// refusal left our NAT's mapping open (an ICMP rejection does), the remote's own SYN reaches
/// our listener on this very pair, the kernel refuses our next SYN there (the pair is taken),
/// and the connection our listener accepts is the one both sides were dialing. It is returned
/// as this dial's, so that each side runs the role its dial asked for (DCUtR has one of the two
/// dials act as the listener) instead of both treating it as accepted.
///
/// A hole punch's dial (`punch`) still refused when the window ends fails then, and its SYNs
/// go on in the background for [`PUNCH_TAIL`] ([`refused_tail`]).
async fn connect_from_listening_port(
    config: &Config,
    remote: SocketAddr,
    lease: &Lease,
    bind: SocketAddr,
    punch: bool,
    metrics: &Metrics,
) -> Result<tokio::net::TcpStream, NotConnected> {
    let local = lease.local();
    let started = Instant::now();
    let socket =
        bound(config, remote, Some(bind)).map_err(|(step, e)| NotConnected::Failed(step, e))?;
    if lease.taken_in_backlog() {
        return Err(NotConnected::Waiting);
    }
    let connecting = start(socket, remote);
    let mut result = match keep_window(config, remote) {
        Some(window) => Keepable::new(Box::pin(connecting), lease, remote, window).await,
        None => connecting.await,
    };
    let mut attempts = 1;
    let mut last_syn = started;
    let mut claim: Option<Claim> = None;
    loop {
        match result {
            Err((Step::Connect, e))
                if try_again(
                    &e,
                    remote,
                    (attempts, REFUSED_ATTEMPTS),
                    started,
                    config.rst_retry_window,
                ) =>
            {
                let refused = attempts;
                attempts += 1;
                let claim = claim.get_or_insert_with(|| lease.claim());
                let attempt = pin!(resend(
                    config,
                    remote,
                    bind,
                    (&mut last_syn, e.kind()),
                    metrics,
                    || tracing::debug!(%local, %remote, attempts = refused, "refused; the next SYN left from the same port"),
                ));
                result = match future::select(claim, attempt).await {
                    Either::Left((io, _)) => return Ok(claimed(io, local, remote)),
                    Either::Right((result, _)) => result,
                };
            }
            Err((Step::Connect, e))
                if punch
                    && refused_for_now(&e)
                    && !remote.ip().is_loopback()
                    && !config.rst_retry_window.is_zero() =>
            {
                tracing::debug!(%local, %remote, attempts, "a hole punch's dial still refused when its window ended: failing it, its SYNs go on for the next dial on the pair");
                let retrying = refused_tail(
                    config.clone(),
                    remote,
                    bind,
                    (last_syn, e.kind()),
                    metrics.clone(),
                );
                // A connection the last SYN makes waits for that dial as a given-up dial's does.
                lease.park(Box::pin(retrying), remote, PUNCH_TAIL + CONNECTED_GRACE);
                return Err(NotConnected::Failed(Step::Connect, e));
            }
            // Taken after a refusal: the remote's own connection on this pair is being
            // accepted; wait for it as long as the window lasts, and a moment more.
            Err((step, e)) if PLATFORM.is_taken(step, &e) => {
                let Some(claim) = claim.take() else {
                    return Err(NotConnected::Failed(step, e));
                };
                let wait = config
                    .rst_retry_window
                    .saturating_sub(started.elapsed())
                    .max(CLAIM_GRACE);
                return match tokio::time::timeout(wait, claim).await {
                    Ok(io) => Ok(claimed(io, local, remote)),
                    Err(_) => Err(NotConnected::Failed(step, e)),
                };
            }
            result => return result.map_err(|(step, e)| NotConnected::Failed(step, e)),
        }
    }
}

/// The SYNs of a hole punch's dial from `bind` to `remote` that the remote still refused when
/// the window ended, going on for [`PUNCH_TAIL`] more (at most [`PUNCH_TAIL_ATTEMPTS`] more),
/// kept for the next dial on the pair ([`ReuseTable::park`]).
///
/// The dial has failed by then, so that DCUtR starts its next attempt; the peer's SYN of that
/// attempt may reach our NAT before our own next dial leaves (a go-libp2p peer dials as soon as
/// it reads our `Sync`, while rust-libp2p's DCUtR, leading the punch, dials half a relayed
/// round trip later). A SYN of ours still in flight then has our NAT's mapping open: the peer's
/// SYN passes, meets our socket in SYN_SENT (a simultaneous open), and our next dial takes the
/// connection over. Without it our NAT answers that SYN with a RST, and the punch can succeed
/// only if the two SYNs happen to cross (`docs/nat-zoo.md`, asymmetric paths).
async fn refused_tail(
    config: Config,
    remote: SocketAddr,
    bind: SocketAddr,
    (mut last_syn, mut refusal): (Instant, io::ErrorKind),
    metrics: Metrics,
) -> Result<tokio::net::TcpStream, (Step, io::Error)> {
    let started = Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        match resend(
            &config,
            remote,
            bind,
            (&mut last_syn, refusal),
            &metrics,
            || {},
        )
        .await
        {
            Err((Step::Connect, e))
                if try_again(
                    &e,
                    remote,
                    (attempts, PUNCH_TAIL_ATTEMPTS),
                    started,
                    PUNCH_TAIL,
                ) =>
            {
                refusal = e.kind();
            }
            result => return result,
        }
    }
}

/// Whether a dial from a listening port whose `sent`-th SYN failed with `e` sends another
/// ([`resend`]): the remote, not on loopback, refused for now ([`refused_for_now`]), fewer than
/// `most` SYNs have left, and the dial started less than `window` ago.
fn try_again(
    e: &io::Error,
    remote: SocketAddr,
    (sent, most): (u32, u32),
    started: Instant,
    window: Duration,
) -> bool {
    refused_for_now(e) && !remote.ip().is_loopback() && sent < most && started.elapsed() < window
}

/// The next SYN from `bind` to `remote` after `refusal` of the one sent at `last_syn` (which it
/// updates), counted as a retry: at once if the refusal came from across a WAN
/// ([`FAR_REFUSAL`]) or was an ICMP rejection, else after [`refused_pause`] ([`pause_after`]).
/// Runs `sent` once the SYN has left (or the attempt ended at once): a log line there stays out
/// of the time between the refusal and the next SYN, which in a hole punch is time our listening
/// port has no socket in SYN_SENT (see [`pause_after`]).
async fn resend(
    config: &Config,
    remote: SocketAddr,
    bind: SocketAddr,
    (last_syn, refusal): (&mut Instant, io::ErrorKind),
    metrics: &Metrics,
    sent: impl FnOnce(),
) -> Result<tokio::net::TcpStream, (Step, io::Error)> {
    metrics.rst_retry();
    if let Some(pause) = pause_after(last_syn.elapsed(), refusal) {
        tokio::time::sleep(pause).await;
    }
    *last_syn = Instant::now();
    sent_then(connect(config, remote, Some(bind)), sent).await
}

/// Polls `connecting` once, which sends its SYN, then runs `then`, then waits for the rest.
async fn sent_then<F: Future>(connecting: F, then: impl FnOnce()) -> F::Output {
    let mut connecting = pin!(connecting);
    let first = futures::poll!(connecting.as_mut());
    then();
    match first {
        Poll::Ready(output) => output,
        Poll::Pending => connecting.await,
    }
}

/// The pause before the next SYN after `refusal`, which came `round_trip` after its SYN: none
/// from across a WAN ([`FAR_REFUSAL`]), none after an ICMP rejection, [`refused_pause`] after a
/// RST from a host nearby.
///
/// An ICMP rejection leaves our NAT's mapping open, so the remote's own SYN may pass it at any
/// moment, and only a socket of ours in SYN_SENT answers it in a way our NAT lets through: a
/// simultaneous open, whose SYN-ACK carries the sequence number of the SYN our NAT saw last.
/// Between two SYNs the SYN reaches our listener instead. The claim hands that connection to
/// the dial ([`connect_from_listening_port`]), and behind a firewall it works, but a Linux NAT
/// has tracked our first SYN's sequence number and never lets the listener's SYN-ACK and data
/// through: its entry stays in SYN_SENT2 (`docs/nat-zoo.md`, `prohibited-listen-side`). Where
/// the ICMP comes back within a few milliseconds, a pause of 1 to 3 ms would leave the pair
/// without a socket in SYN_SENT for most of the time.
fn pause_after(round_trip: Duration, refusal: io::ErrorKind) -> Option<Duration> {
    let rst = refusal == io::ErrorKind::ConnectionRefused;
    (rst && round_trip < FAR_REFUSAL).then(refused_pause)
}

/// A refusal that comes this long or longer after its SYN comes from across a WAN, and the next
/// SYN leaves at once ([`resend`]). The refusal that passes our NAT closes its mapping, and until
/// our next SYN reopens it, the NAT answers the remote's own SYN with a RST: in a hole punch,
/// the remote's SYN often comes right behind the RST its NAT sent a moment before (a path that
/// keeps its packets in order holds the later one behind the earlier), so every millisecond
/// between the two closes the punch. A refusal that comes sooner is from a host nearby, where
/// nothing is to be gained and [`refused_pause`] spreads the SYNs.
const FAR_REFUSAL: Duration = Duration::from_millis(5);

/// How long a dial whose pair was taken after a refusal waits at least for the connection its
/// listener is accepting on that pair (see [`connect_from_listening_port`]): the remote's SYN
/// is in, so one more round trip at most, and the swarm's poll of the listener.
const CLAIM_GRACE: Duration = Duration::from_millis(50);

fn claimed(
    io: tokio::net::TcpStream,
    local: SocketAddr,
    remote: SocketAddr,
) -> tokio::net::TcpStream {
    tracing::debug!(%local, %remote, "the remote's connection on our pair, accepted by our listener, is this dial's");
    io
}

/// Whether a failed `connect` is what a NAT or firewall that has not yet seen its own host's SYN
/// answers: a RST (`ECONNREFUSED`), or an ICMP "destination unreachable" that kills a
/// connection in SYN_SENT (Linux: "administratively prohibited" is `EACCES` over IPv6 and
/// `EHOSTUNREACH` over IPv4, "host unreachable" `EHOSTUNREACH`; RFC 6092 asks IPv6 home
/// gateways to answer an unsolicited SYN with "administratively prohibited", after 6 s, which
/// some send at once). The same answers come from a host with the port closed or a firewall
/// that stays closed: the retry window bounds what that costs.
fn refused_for_now(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::PermissionDenied
            | io::ErrorKind::HostUnreachable
    )
}

/// The pause between a refusal from a host nearby ([`FAR_REFUSAL`]) and the next SYN, asked of
/// tokio's timer: 0.5 to 1.5 ms, drawn
/// at random. The timer counts whole milliseconds and rounds a deadline up to its next tick, so
/// the next SYN leaves 1 to 3 ms after the refusal, about 2 ms on average (the benchmark's row
/// 11 measures it: `docs/performance.md`). Long enough that 16 SYNs cover the skew between the
/// two dials of a hole punch (their synchronisation is only as good as half a relayed round
/// trip), short enough that a real WAN's round trip dominates; random, so that two peers whose
/// NATs both refuse do not send in step and keep meeting each other's closed mapping.
fn refused_pause() -> Duration {
    // A new RandomState has fresh keys (random per process, then counted up): a hash of
    // nothing under them is a random number without a dependency.
    let random = RandomState::new().build_hasher().finish();
    Duration::from_micros(500 + random % 1000)
}

/// Opens a socket, binds `local` (sharing the port with its listener) if given, and connects.
/// An error says at which step it happened: the platform layer tells a taken port or pair by
/// both.
async fn connect(
    config: &Config,
    remote: SocketAddr,
    local: Option<SocketAddr>,
) -> Result<tokio::net::TcpStream, (Step, io::Error)> {
    start(bound(config, remote, local)?, remote).await
}

/// A socket for a dial to `remote`, bound to `local` (sharing the port with its listener) if
/// given.
fn bound(
    config: &Config,
    remote: SocketAddr,
    local: Option<SocketAddr>,
) -> Result<socket2::Socket, (Step, io::Error)> {
    let role = match local {
        Some(_) => Role::Dial,
        None => Role::Ephemeral,
    };
    let socket = socket::tcp(config, remote, role).map_err(|e| (Step::Bind, e))?;
    if let Some(local) = local {
        socket.bind(&local.into()).map_err(|e| (Step::Bind, e))?;
    }
    Ok(socket)
}

/// Connects `socket` to `remote`.
async fn start(
    socket: socket2::Socket,
    remote: SocketAddr,
) -> Result<tokio::net::TcpStream, (Step, io::Error)> {
    tokio::net::TcpSocket::from_std_stream(socket.into())
        .connect(remote)
        .await
        .map_err(|e| (Step::Connect, e))
}

/// Puts the addresses of the dial into the error's message, keeping its kind and the error
/// itself as the source.
fn with_addrs(e: io::Error, local: Option<SocketAddr>, remote: SocketAddr) -> io::Error {
    match local {
        Some(local) => error::context(e, format_args!("dial {remote} from {local}")),
        None => error::context(e, format_args!("dial {remote}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_syn_after_a_far_refusal_leaves_at_once_after_a_near_one_a_moment_later() {
        let rst = io::ErrorKind::ConnectionRefused;
        for far in [
            FAR_REFUSAL,
            Duration::from_millis(40),
            Duration::from_secs(1),
        ] {
            assert_eq!(pause_after(far, rst), None, "{far:?}");
        }
        for near in [
            Duration::ZERO,
            Duration::from_micros(300),
            Duration::from_millis(4),
        ] {
            for _ in 0..100 {
                let pause = pause_after(near, rst).expect("a pause after a near RST");
                assert!(
                    (Duration::from_micros(500)..Duration::from_micros(1500)).contains(&pause),
                    "{near:?}: {pause:?}"
                );
            }
        }
    }

    #[test]
    fn the_next_syn_after_an_icmp_rejection_leaves_at_once_near_or_far() {
        for refusal in [
            io::ErrorKind::HostUnreachable,
            io::ErrorKind::PermissionDenied,
        ] {
            for round_trip in [Duration::ZERO, Duration::from_millis(4), FAR_REFUSAL] {
                assert_eq!(
                    pause_after(round_trip, refusal),
                    None,
                    "{refusal:?} after {round_trip:?}"
                );
            }
        }
    }

    #[tokio::test]
    async fn what_comes_after_the_syn_runs_after_the_first_poll_and_before_the_connection() {
        let steps = std::cell::RefCell::new(Vec::new());
        let connecting = async {
            steps.borrow_mut().push("SYN sent");
            tokio::task::yield_now().await;
            steps.borrow_mut().push("connected");
        };
        sent_then(connecting, || steps.borrow_mut().push("then")).await;
        assert_eq!(*steps.borrow(), ["SYN sent", "then", "connected"]);
    }
}
