//! Waiting for an accepted connection's first bytes without consuming them (`MSG_PEEK`), with a
//! deadline: the side that gets the connection reads them again from the start.

use std::{net::SocketAddr, time::Duration};

use tokio::net::TcpStream;

use super::classify::{Kind, PREFIX_LEN, Verdict, classify};
use crate::closing::remote_closed;

/// How long to wait before looking again when fewer than [`PREFIX_LEN`] bytes have arrived and
/// they could still start a known kind. The socket stays readable while unread bytes wait in it,
/// so readiness cannot say when more arrive; a client sends its first bytes in one segment in
/// practice, and this path is only for one that does not.
const RECHECK: Duration = Duration::from_millis(5);

/// What came of waiting for a connection's first bytes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Known(Kind),
    /// The first bytes start none of the known kinds.
    Unknown,
    /// Not enough bytes to decide within the deadline.
    TimedOut,
    /// The remote closed or reset the connection, or peeking failed, before its kind was known.
    Failed,
}

/// An accepted connection whose first bytes have been looked at.
pub(crate) struct Waited {
    pub(crate) io: TcpStream,
    pub(crate) remote: SocketAddr,
    pub(crate) outcome: Outcome,
}

/// Waits up to `timeout` for `io`'s first bytes and classifies them; leaves them unread.
/// Dropping the future closes the connection.
pub(crate) async fn wait(io: TcpStream, remote: SocketAddr, timeout: Duration) -> Waited {
    let outcome = tokio::time::timeout(timeout, peek_kind(&io))
        .await
        .unwrap_or(Outcome::TimedOut);
    Waited {
        io,
        remote,
        outcome,
    }
}

async fn peek_kind(io: &TcpStream) -> Outcome {
    let mut buf = [0; PREFIX_LEN];
    loop {
        let n = match io.peek(&mut buf).await {
            Ok(0) | Err(_) => return Outcome::Failed,
            Ok(n) => n,
        };
        match classify(&buf[..n]) {
            Verdict::Known(kind) => return Outcome::Known(kind),
            Verdict::Unknown => return Outcome::Unknown,
            // A remote that sent part of a prefix and closed will send no more.
            Verdict::NeedMore if remote_closed(io) => return Outcome::Failed,
            Verdict::NeedMore => tokio::time::sleep(RECHECK).await,
        }
    }
}
