//! The dial future: choose the source, bind, connect, fall back to an ephemeral port once.

use std::{
    io,
    net::SocketAddr,
    time::{Duration, Instant},
};

use crate::{
    Config, TcpStream,
    port_reuse::{PortReuse, Reservation},
    route, socket,
    stream::{Fallback, OnDrop, PortOrigin},
};

/// Connects to `remote`. With `reuse`, leaves from a listening port chosen by the port-reuse
/// table when one is free, else from an ephemeral port.
///
/// Nothing happens before the first poll. Dropping the future at any point closes the socket and
/// releases the reserved pair.
pub(crate) async fn dial(
    config: Config,
    remote: SocketAddr,
    reuse: Option<PortReuse>,
) -> io::Result<TcpStream> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(io::Error::other(format!(
            "dial {remote}: libp2p-reuseport needs a tokio runtime"
        )));
    }
    // A configured SO_LINGER decides how the socket closes; do not hold it open after drop.
    let on_drop = match config.linger {
        None => OnDrop::AwaitRemoteClose,
        Some(_) => OnDrop::Close,
    };
    let fallback = match reuse {
        None => Fallback::NotRequested,
        Some(table) => match reserve(&table, remote).await {
            Ok(lease) => {
                let local = lease.local();
                let start = Instant::now();
                match connect(&config, remote, Some(local)).await {
                    Ok(io) => {
                        let handshake = start.elapsed();
                        let origin = PortOrigin::Reused;
                        return Ok(TcpStream::dialed(
                            io,
                            origin,
                            Some(lease),
                            handshake,
                            on_drop,
                        ));
                    }
                    Err(e) if is_addr_conflict(&e) => {
                        tracing::debug!(%local, %remote, error = %e, "listening port refused by the kernel, dialing from an ephemeral port");
                        Fallback::Refused(e.kind())
                    }
                    Err(e) => return Err(with_addrs(e, Some(local), remote)),
                }
            }
            Err(fallback @ Fallback::Disabled) => fallback,
            Err(fallback) => {
                tracing::debug!(%remote, reason = ?fallback, "no listening port to reuse, dialing from an ephemeral port");
                fallback
            }
        },
    };
    let io = connect(&config, remote, None)
        .await
        .map_err(|e| with_addrs(e, None, remote))?;
    let origin = PortOrigin::Ephemeral(fallback);
    Ok(TcpStream::dialed(
        io,
        origin,
        None,
        Duration::ZERO,
        OnDrop::Close,
    ))
}

/// Reserves a source for a dial to `remote`, waiting once, briefly, for a pair whose previous
/// connection is still closing when no other candidate is free.
async fn reserve(
    table: &PortReuse,
    remote: SocketAddr,
) -> Result<crate::port_reuse::Lease, Fallback> {
    let source = table.source_ip(remote, route::source_ip)?;
    match table.reserve(remote, source, true)? {
        Reservation::Ready(lease) => return Ok(lease),
        Reservation::Wait { closed, wait } => {
            if tokio::time::timeout(wait, closed).await.is_err() {
                tracing::debug!(%remote, ?wait, "previous connection from the listening port still closing");
            }
        }
    }
    match table.reserve(remote, source, false)? {
        Reservation::Ready(lease) => Ok(lease),
        Reservation::Wait { .. } => Err(Fallback::Busy),
    }
}

fn is_addr_conflict(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::AddrInUse | io::ErrorKind::AddrNotAvailable
    )
}

/// Opens a socket, binds `local` (sharing the port with its listener) if given, and connects.
async fn connect(
    config: &Config,
    remote: SocketAddr,
    local: Option<SocketAddr>,
) -> io::Result<tokio::net::TcpStream> {
    let socket = socket::tcp(config, remote)?;
    if let Some(local) = local {
        socket::share_port(&socket)?;
        socket.bind(&local.into())?;
    }
    tokio::net::TcpSocket::from_std_stream(socket.into())
        .connect(remote)
        .await
}

/// Puts the addresses of the dial into the error's message, keeping its kind.
fn with_addrs(e: io::Error, local: Option<SocketAddr>, remote: SocketAddr) -> io::Error {
    let message = match local {
        Some(local) => format!("dial {remote} from {local}: {e}"),
        None => format!("dial {remote}: {e}"),
    };
    io::Error::new(e.kind(), message)
}
