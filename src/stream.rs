//! The connection the transport yields, and what it tells about its local port.

use std::{
    fmt, io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use futures::{AsyncRead, AsyncWrite};

use crate::{
    closing::{Reaper, remote_closed},
    metrics::Tracked,
    origin::PortOrigin,
    port_reuse::Lease,
};

/// A TCP connection made or accepted by the [`Transport`](crate::Transport).
///
/// Implements [`futures::AsyncRead`] and [`futures::AsyncWrite`]; `poll_close` shuts the write
/// half down (`shutdown(SHUT_WR)`), dropping closes the socket. Its descriptor is available
/// through `AsFd`/`AsRawFd` on unix and `AsSocket`/`AsRawSocket` on Windows, for options this
/// crate does not wrap.
///
/// An outbound connection that left from a listening port, and a connection accepted by a
/// listener while port reuse is on, holds its (local, remote) pair in the port-reuse table, so
/// no dial tries the same pair: the kernel would refuse it, whichever side opened the
/// connection. If it is dropped before the remote closed its side, only the remote's FIN lets
/// the kernel use the pair again without refusing it or resetting the remote's old connection;
/// until then dials to that remote use the next candidate or an ephemeral port, at once. On
/// Linux dropping closes the socket at once and a dial that meets the pair asks the kernel
/// whether that FIN has come (see
/// [`Config::hold_closing_sockets`](crate::Config::hold_closing_sockets)); elsewhere dropping
/// sends the FIN and the transport keeps the socket until the remote's FIN arrives (at most
/// 10 s).
///
/// At most [`Config::max_closing_sockets`](crate::Config::max_closing_sockets) sockets are kept
/// that way. Past that bound, and for a remote that does not close within 10 s, the socket is
/// closed without waiting and the pair is passed over for as long as the kernel may keep the
/// connection (`tcp_fin_timeout`, 60 s by default, and a second), holding no descriptor.
pub struct TcpStream {
    /// `None` only after `drop` handed the socket over to close it, or `into_inner` handed it to
    /// the user.
    io: Option<tokio::net::TcpStream>,
    origin: PortOrigin,
    /// For a connection on a listening port (outbound from it, or accepted while port reuse is
    /// on): the pair it holds, and the task that keeps the socket if the stream is dropped
    /// before the remote closed.
    lease: Option<(Lease, Arc<Reaper>)>,
    /// Whether a read returned end of stream: the remote has closed its side.
    eof: bool,
    /// The connection in the transport's metrics, until the stream drops (nothing without the
    /// `metrics` feature).
    _tracked: Tracked,
}

/// What to do with the socket when the stream drops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OnDrop {
    /// Close it; the kernel finishes the connection.
    Close,
    /// If it holds a reused pair and the remote has not closed, keep it until the remote's FIN.
    AwaitRemoteClose,
}

impl OnDrop {
    /// A configured `SO_LINGER` decides how a socket closes: then it is not held after drop.
    pub(crate) fn for_linger(linger: Option<std::time::Duration>) -> Self {
        match linger {
            None => Self::AwaitRemoteClose,
            Some(_) => Self::Close,
        }
    }
}

impl TcpStream {
    /// An accepted connection; with `lease`, it holds its pair as a dialed one does.
    pub(crate) fn accepted(
        io: tokio::net::TcpStream,
        lease: Option<(Lease, Arc<Reaper>)>,
        on_drop: OnDrop,
        tracked: Tracked,
    ) -> Self {
        Self::dialed(io, PortOrigin::Accepted, lease, on_drop, tracked)
    }

    pub(crate) fn dialed(
        io: tokio::net::TcpStream,
        origin: PortOrigin,
        lease: Option<(Lease, Arc<Reaper>)>,
        on_drop: OnDrop,
        tracked: Tracked,
    ) -> Self {
        Self {
            io: Some(io),
            origin,
            lease,
            // A stream that must simply close behaves as if the remote had closed already.
            eof: on_drop == OnDrop::Close,
            _tracked: tracked,
        }
    }

    /// The socket; its descriptor is exposed by the platform layer (`AsFd`, `AsSocket`).
    pub(crate) fn io(&self) -> &tokio::net::TcpStream {
        self.io.as_ref().expect("the socket is present until drop")
    }

    fn io_mut(&mut self) -> Pin<&mut tokio::net::TcpStream> {
        Pin::new(self.io.as_mut().expect("the socket is present until drop"))
    }

    /// The local address of the connection (`getsockname`).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io().local_addr()
    }

    /// The remote address of the connection (`getpeername`).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.io().peer_addr()
    }

    /// Where the local port came from: accepted, reused from a listener, or ephemeral and why.
    pub fn port_origin(&self) -> PortOrigin {
        self.origin
    }

    /// Whether this outbound connection left from a listening port.
    pub fn is_port_reused(&self) -> bool {
        self.origin == PortOrigin::Reused
    }

    /// The tokio stream inside, for code that wants tokio's own type (libp2p-tcp's stream gives
    /// its inner one too; `From` does the same).
    ///
    /// The connection then leaves the transport's care: dropping it closes it at once, and the
    /// port-reuse table no longer knows when. So a connection on a listening port whose remote
    /// has not closed yet is treated from here on as one closed before its remote: its (local,
    /// remote) pair is passed over for as long as the kernel may keep such a connection
    /// (`tcp_fin_timeout`, 60 s by default, and a second), then freed; a dial that meets it
    /// still open after that falls back to an ephemeral port (`Fallback::KernelRefused`). With
    /// the `metrics` feature its lifetime ends here.
    pub fn into_inner(mut self) -> tokio::net::TcpStream {
        let io = self
            .io
            .take()
            .expect("the socket is present until drop or into_inner");
        if let Some((lease, _reaper)) = self.lease.take()
            && !(self.eof || remote_closed(&io))
        {
            lease.orphan();
        }
        io
    }
}

impl From<TcpStream> for tokio::net::TcpStream {
    fn from(stream: TcpStream) -> Self {
        stream.into_inner()
    }
}

impl fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpStream")
            .field("local", &self.local_addr().ok())
            .field("peer", &self.peer_addr().ok())
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
        match tokio::io::AsyncRead::poll_read(self.io_mut(), cx, &mut read_buf) {
            Poll::Ready(Ok(())) => {
                let n = read_buf.filled().len();
                if n == 0 && !buf.is_empty() {
                    self.eof = true;
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => {
                // The connection is broken: nothing to wait for when it drops.
                self.eof = true;
                Poll::Ready(Err(e))
            }
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
        tokio::io::AsyncWrite::poll_write(self.io_mut(), cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        tokio::io::AsyncWrite::poll_write_vectored(self.io_mut(), cx, bufs)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        tokio::io::AsyncWrite::poll_flush(self.io_mut(), cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        tokio::io::AsyncWrite::poll_shutdown(self.io_mut(), cx)
    }
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        let (Some(io), Some((lease, reaper))) = (self.io.take(), self.lease.take()) else {
            return;
        };
        if self.eof || remote_closed(&io) {
            // The socket first: the pair is free only once its socket is closed, else a dial
            // from another thread may meet it still open in between.
            drop(io);
            drop(lease);
            return;
        }
        reaper.hold(io, lease);
    }
}
