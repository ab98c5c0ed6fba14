//! What a listener and a dial hold in the table: a [`Registration`] keeps a listening address
//! registered, a [`Lease`] keeps a (local, remote) pair. Both let go when dropped.

use std::{fmt, net::SocketAddr};

use super::{
    PortReuse,
    table::{Pair, RemoteClosed},
};

/// Keeps a listening address registered; unregisters it when dropped.
pub(crate) struct Registration {
    pub(super) table: PortReuse,
    pub(super) addr: SocketAddr,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.table.lock().unregister(self.addr);
        tracing::trace!(addr = %self.addr, "unregistered from port reuse");
    }
}

impl fmt::Debug for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Registration").field(&self.addr).finish()
    }
}

/// Holds a (local, remote) pair; releases it when dropped.
pub(crate) struct Lease {
    pub(super) table: PortReuse,
    pub(super) id: u64,
    pub(super) local: SocketAddr,
    pub(super) remote: SocketAddr,
}

impl Lease {
    /// The listening address to bind.
    pub(crate) fn local(&self) -> SocketAddr {
        self.local
    }

    /// Marks the pair as closing: its connection is gone from the user, the remote has not yet
    /// closed its side; `remote_closed` tells when it has.
    pub(crate) fn closing(&self, remote_closed: RemoteClosed) {
        let mut table = self.table.lock();
        if let Some(pair) = table.pairs.get_mut(&(self.local, self.remote))
            && pair.lease() == self.id
        {
            *pair = Pair::Closing(self.id, remote_closed);
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut table = self.table.lock();
        // A dial may already have taken over the pair of a closing lease.
        if table
            .pairs
            .get(&(self.local, self.remote))
            .is_some_and(|pair| pair.lease() == self.id)
        {
            table.pairs.remove(&(self.local, self.remote));
        }
    }
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("local", &self.local)
            .field("remote", &self.remote)
            .finish()
    }
}
