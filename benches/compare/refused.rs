//! Row 11: what a dial to a closed port costs. A node that dials stale addresses (a Kademlia
//! node does, all day) meets closed ports; this crate answers a refusal of a dial from a
//! listening port with more SYNs (`Config::rst_retry_window`, for hole punches through NATs that
//! refuse early SYNs), where libp2p-tcp and raw tokio fail at the first RST.
//!
//! The closed port is on a local, non-loopback address of this machine (the one it routes
//! towards the internet from): the crate does not retry towards loopback, and a local address
//! answers at once, so the row shows the pauses between the SYNs with no round trip in them. The
//! kernel counts the SYNs: `ActiveOpens` in `/proc/net/snmp` goes up by one per `connect`.

use std::{
    net::{IpAddr, SocketAddr, UdpSocket},
    time::{Duration, Instant},
};

use libp2p_reuseport::Config;

use crate::{
    impls::{Dialer, IMPLS, Impl, N, order},
    report::{Report, only},
    samples::percentile,
};

/// What one implementation's dials to the closed port came to.
#[derive(Default)]
pub(crate) struct Refusals {
    /// From the dial's start to its error, for the dials refused.
    pub(crate) times: Vec<Duration>,
    /// SYNs sent, over all the dials (the kernel's count).
    pub(crate) syns: u64,
    pub(crate) dials: usize,
    /// Dials that ended otherwise than refused (none expected).
    pub(crate) not_refused: usize,
}

impl Refusals {
    pub(crate) fn syns_per_dial(&mut self) -> f64 {
        self.syns as f64 / self.dials.max(1) as f64
    }

    /// The `p` quantile of the time to the error, in microseconds.
    pub(crate) fn us(&mut self, p: f64) -> f64 {
        percentile(&mut self.times, p)
    }
}

/// The address this machine sends from towards the internet: that of its default route, found
/// by connecting a UDP socket (which sends nothing) to a documentation address. An error says
/// why the row cannot run here.
pub(crate) fn local_address() -> Result<IpAddr, String> {
    let probe = UdpSocket::bind("0.0.0.0:0").map_err(|e| format!("UDP socket: {e}"))?;
    probe
        .connect("198.51.100.1:9")
        .map_err(|e| format!("no route towards the internet (a default route): {e}"))?;
    let ip = probe
        .local_addr()
        .map_err(|e| format!("UDP socket's address: {e}"))?
        .ip();
    match ip.is_loopback() || ip.is_unspecified() {
        true => Err(format!(
            "the routed source address is {ip}, not a local non-loopback one"
        )),
        false => Ok(ip),
    }
}

/// A port on `ip` where nothing listens and nothing else can bind while the socket lives: the
/// kernel answers every SYN to it with a RST.
pub(crate) fn closed_port(ip: IpAddr) -> std::io::Result<(socket2::Socket, SocketAddr)> {
    let domain = socket2::Domain::for_address(SocketAddr::new(ip, 0));
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, None)?;
    socket.bind(&SocketAddr::new(ip, 0).into())?;
    let addr = socket
        .local_addr()?
        .as_socket()
        .expect("an IP socket has an IP address");
    Ok((socket, addr))
}

/// The kernel's count of `connect`s that sent a SYN (`Tcp: ActiveOpens`), in this network
/// namespace; None where `/proc/net/snmp` is not (outside Linux).
fn active_opens() -> Option<u64> {
    let snmp = std::fs::read_to_string("/proc/net/snmp").ok()?;
    let mut tcp = snmp.lines().filter(|line| line.starts_with("Tcp:"));
    let (names, values) = (tcp.next()?, tcp.next()?);
    let column = names.split_whitespace().position(|n| n == "ActiveOpens")?;
    values.split_whitespace().nth(column)?.parse().ok()
}

/// `n` dials to `closed`, one after the other, each timed to its error.
pub(crate) async fn dial_closed(
    dialer: &mut Dialer,
    closed: SocketAddr,
    n: usize,
    into: &mut Refusals,
) {
    for _ in 0..n {
        let before = active_opens();
        let started = Instant::now();
        let result = dialer.dial(closed).await;
        let took = started.elapsed();
        into.syns += active_opens()
            .zip(before)
            .map_or(0, |(after, before)| after - before);
        into.dials += 1;
        match result {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => into.times.push(took),
            Err(_) | Ok(_) => into.not_refused += 1,
        }
    }
}

/// Row 11: `per_round` dials per implementation in each of `rounds` interleaved rounds, from a
/// dialer listening on the local address; this crate once more with the retries off.
pub(crate) fn rows(
    rt: &tokio::runtime::Runtime,
    report: &mut Report,
    rounds: usize,
    per_round: usize,
) {
    let row = "11 dial a closed port, local non-loopback address";
    let target = local_address()
        .and_then(|ip| closed_port(ip).map_err(|e| format!("a closed port on {ip}: {e}")));
    let (_closed, target) = match target {
        Ok(closed) => closed,
        Err(why) => {
            eprintln!("row 11 NOT MEASURED: {why}");
            return report.add(
                &format!("{row}: NOT MEASURED, {why}"),
                "-",
                [f64::NAN; N],
                false,
            );
        }
    };
    let ip = target.ip();
    let _guard = rt.enter();
    let mut dialers = IMPLS.map(|which| {
        which
            .in_process()
            .then(|| Dialer::listening_on(which, ip, Config::new()))
    });
    let mut retries_off = Dialer::listening_on(
        Impl::Ours,
        ip,
        Config::new().rst_retry_window(Duration::ZERO),
    );
    let mut refusals: [Refusals; N] = Default::default();
    let mut off = Refusals::default();
    for round in 0..rounds {
        for i in order(round) {
            if let Some(dialer) = &mut dialers[i] {
                rt.block_on(dial_closed(dialer, target, per_round, &mut refusals[i]));
            }
        }
        rt.block_on(dial_closed(&mut retries_off, target, per_round, &mut off));
    }
    // The columns of the implementations dialing elsewhere (go-libp2p) stay empty.
    let mut measured = |figure: fn(&mut Refusals) -> f64| {
        let mut values = [f64::NAN; N];
        for ((value, refusals), dialer) in values.iter_mut().zip(&mut refusals).zip(&dialers) {
            if dialer.is_some() {
                *value = figure(refusals);
            }
        }
        values
    };
    report.add(row, "us to the error, p50", measured(|r| r.us(0.5)), true);
    report.add(row, "us to the error, max", measured(|r| r.us(1.0)), true);
    report.add(row, "SYNs per dial", measured(|r| r.syns_per_dial()), true);
    report.add(
        row,
        "dials not refused",
        measured(|r| r.not_refused as f64),
        false,
    );
    // With no round trip in them, the time of a refused dial is its pauses between SYNs.
    let ours = IMPLS
        .iter()
        .position(|w| *w == Impl::Ours)
        .expect("a column");
    let ours = &mut refusals[ours];
    let gap = ours.us(0.5) / (ours.syns_per_dial() - 1.0);
    report.add(
        row,
        "us between SYNs, mean",
        only(&[(Impl::Ours, gap)]),
        false,
    );
    let row = "11 the same, this crate with rst_retry_window(0)";
    report.add(
        row,
        "us to the error, p50",
        only(&[(Impl::Ours, off.us(0.5))]),
        false,
    );
    report.add(
        row,
        "SYNs per dial",
        only(&[(Impl::Ours, off.syns_per_dial())]),
        false,
    );
    report.add(
        row,
        "dials not refused",
        only(&[(Impl::Ours, off.not_refused as f64)]),
        false,
    );
}
