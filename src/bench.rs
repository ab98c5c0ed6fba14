//! Hooks for `benches/compare`: the port-reuse table's choice of a source, without sockets, and
//! on Linux what asking the kernel about closing pairs costs. Not part of the public API
//! (`__bench`, hidden from the docs), free to change.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::port_reuse::{Registration, ReuseTable};

/// A port-reuse table filled with listeners on distinct IPs.
#[derive(Debug)]
pub struct Selection {
    table: ReuseTable,
    _registrations: Vec<Registration>,
}

impl Selection {
    /// A table with `n` listeners, on `10.x.y.z:4001` for distinct x.y.z, registered in order;
    /// returns it with the IP of the last one registered.
    pub fn with_listeners(n: usize) -> (Self, IpAddr) {
        let table = ReuseTable::new(true);
        let mut last = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        let registrations = (1..=n as u32)
            .map(|i| {
                let [_, x, y, z] = i.to_be_bytes();
                last = IpAddr::V4(Ipv4Addr::new(10, x, y, z));
                table.register(SocketAddr::new(last, 4001))
            })
            .collect();
        let selection = Self {
            table,
            _registrations: registrations,
        };
        (selection, last)
    }

    /// One dial decision for `remote` when the kernel routes from `source`: choose, reserve the
    /// pair, release it.
    pub fn decide(&self, remote: SocketAddr, source: IpAddr) -> Option<SocketAddr> {
        self.table
            .reserve(remote, source)
            .ok()
            .map(|lease| lease.local())
    }
}

/// What a prune of the finishing pairs asks the kernel (`ReuseTable::prune_finishing`), for the
/// benchmark's row 12.
#[cfg(sock_diag)]
pub mod kernel {
    use std::{io, net::SocketAddr};

    /// One lookup of the pair (`local`, `remote`): whether the kernel is done with it.
    pub fn lookup(local: SocketAddr, remote: SocketAddr) -> bool {
        crate::sys::pair_finished(local, remote)
    }

    /// One dump of the IPv4 connections finishing after our side closed; how many it listed.
    pub fn dump() -> io::Result<usize> {
        crate::sys::finishing_pairs([true, false]).map(|pairs| pairs.len())
    }
}
