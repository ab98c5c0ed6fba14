//! The connection the transport yields, and what it tells about its local port.

use std::{
    fmt, io,
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll},
};

use futures::{AsyncRead, AsyncWrite};

use crate::port_reuse::Lease;

/// A TCP connection made or accepted by the [`Transport`](crate::Transport).
///
/// Implements [`futures::AsyncRead`] and [`futures::AsyncWrite`]; `poll_close` shuts the write
/// half down (`shutdown(SHUT_WR)`), dropping closes the socket. An outbound connection that left
/// from a listening port keeps its (local, remote) pair reserved in the port-reuse table until it
/// is dropped, so no other dial tries the same pair.
pub struct TcpStream {
    io: tokio::net::TcpStream,
    origin: PortOrigin,
    _lease: Option<Lease>,
}

/// Where the local port of a [`TcpStream`] came from.
///
/// The swarm records what a dial asked for (`PortUse`), not what happened; this says what
/// happened.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortOrigin {
    /// An inbound connection: the local port is the listener's.
    Accepted,
    /// An outbound connection that left from a listening port (`SO_REUSEPORT`).
    Reused,
    /// An outbound connection from an ephemeral port chosen by the kernel, and why.
    Ephemeral(Fallback),
}

/// Why an outbound connection left from an ephemeral port instead of a listening port.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fallback {
    /// The dial asked for a new port (`PortUse::New`).
    NotRequested,
    /// Port reuse is off: [`Config::port_reuse`](crate::Config::port_reuse), the environment
    /// variable [`PORT_REUSE_ENV`](crate::PORT_REUSE_ENV), or a platform without
    /// `SO_REUSEPORT`.
    Disabled,
    /// No listener can serve as the source: none of the destination's family, or none on the IP
    /// the kernel routes from and no wildcard listener.
    NoListener,
    /// The kernel's route lookup for the destination failed.
    NoRoute,
    /// Every candidate listening address was taken: a live connection from it to this
    /// destination exists, or the destination is the address itself (a TCP self-connection).
    Busy,
    /// The kernel refused the listening address: `bind` or `connect` failed with this kind
    /// (`AddrInUse` or `AddrNotAvailable`), and the dial was retried once from an ephemeral port.
    Refused(io::ErrorKind),
}

impl TcpStream {
    pub(crate) fn new(io: tokio::net::TcpStream, origin: PortOrigin, lease: Option<Lease>) -> Self {
        Self {
            io,
            origin,
            _lease: lease,
        }
    }

    /// The local address of the connection (`getsockname`).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }

    /// The remote address of the connection (`getpeername`).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.io.peer_addr()
    }

    /// Where the local port came from: accepted, reused from a listener, or ephemeral and why.
    pub fn port_origin(&self) -> PortOrigin {
        self.origin
    }

    /// Whether this outbound connection left from a listening port.
    pub fn is_port_reused(&self) -> bool {
        self.origin == PortOrigin::Reused
    }
}

// The socket's descriptor, for reading or setting options this crate does not wrap. Unix and
// Windows name descriptors differently.
#[cfg(unix)]
impl std::os::fd::AsFd for TcpStream {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.io.as_fd()
    }
}

#[cfg(unix)]
impl std::os::fd::AsRawFd for TcpStream {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.io.as_raw_fd()
    }
}

#[cfg(windows)]
impl std::os::windows::io::AsSocket for TcpStream {
    fn as_socket(&self) -> std::os::windows::io::BorrowedSocket<'_> {
        self.io.as_socket()
    }
}

#[cfg(windows)]
impl std::os::windows::io::AsRawSocket for TcpStream {
    fn as_raw_socket(&self) -> std::os::windows::io::RawSocket {
        self.io.as_raw_socket()
    }
}

impl fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpStream")
            .field("local", &self.io.local_addr().ok())
            .field("peer", &self.io.peer_addr().ok())
            .field("origin", &self.origin)
            .finish()
    }
}

impl AsyncRead for TcpStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut read_buf = tokio::io::ReadBuf::new(buf);
        match tokio::io::AsyncRead::poll_read(Pin::new(&mut self.io), cx, &mut read_buf) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(read_buf.filled().len())),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncWrite for TcpStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        tokio::io::AsyncWrite::poll_write(Pin::new(&mut self.io), cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        tokio::io::AsyncWrite::poll_write_vectored(Pin::new(&mut self.io), cx, bufs)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        tokio::io::AsyncWrite::poll_flush(Pin::new(&mut self.io), cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        tokio::io::AsyncWrite::poll_shutdown(Pin::new(&mut self.io), cx)
    }
}
