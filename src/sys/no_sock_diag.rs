//! Where the kernel cannot be asked about a connection's pair (every kernel but Linux; Android
//! denies apps sock_diag): the functions of `sock_diag.rs`, answering so. A connection dropped
//! before its remote closed is then held open until the remote's FIN (`closing.rs`), and no
//! pair is left to the kernel, so the last two are never asked.

use std::{collections::HashSet, io, net::SocketAddr};

/// Whether the kernel can be asked about one connection's pair: no.
pub(crate) fn watches_closing() -> bool {
    false
}

/// Whether the kernel is done with the connection of a pair we closed: not known here.
pub(crate) fn pair_finished(_local: SocketAddr, _remote: SocketAddr) -> bool {
    false
}

/// The pairs of the connections the kernel is still finishing: not known here.
pub(crate) fn finishing_pairs(
    _families: [bool; 2],
) -> io::Result<HashSet<(SocketAddr, SocketAddr)>> {
    Err(io::ErrorKind::Unsupported.into())
}
