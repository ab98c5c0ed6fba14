//! Which of identify's observed addresses [`Identify`](super::Identify) reports as they are:
//! the rule, pure and unit-tested without a swarm.

use std::collections::HashMap;

use libp2p_core::{Multiaddr, multiaddr::Protocol, transport::PortUse};
use libp2p_swarm::ConnectionId;

/// Whether a connection dialed to `addr` with `port_use` asked to leave from a listening port
/// and reached the remote directly over TCP: `PortUse::Reuse`, a `/tcp/` address (also under
/// `/ws`, or by DNS name), not through a relay (`/p2p-circuit`).
pub(super) fn dialed_from_listening_port(addr: &Multiaddr, port_use: PortUse) -> bool {
    port_use == PortUse::Reuse
        && addr.iter().any(|p| matches!(p, Protocol::Tcp(_)))
        && !addr.iter().any(|p| p == Protocol::P2pCircuit)
}

/// The connections whose observations are reported as they are, and what was last reported for
/// each.
#[derive(Debug, Default)]
pub(super) struct Observed {
    /// Connections that passed [`dialed_from_listening_port`], with the observation last
    /// reported for each.
    tracked: HashMap<ConnectionId, Option<Multiaddr>>,
}

impl Observed {
    /// Reports the observations on `connection` from now on.
    pub(super) fn track(&mut self, connection: ConnectionId) {
        self.tracked.insert(connection, None);
    }

    /// Forgets a closed connection.
    pub(super) fn closed(&mut self, connection: ConnectionId) {
        self.tracked.remove(&connection);
    }

    /// The address to report as a candidate, unchanged, for what the remote of `connection`
    /// observes (`observed`), given the swarm's listening addresses: for a tracked connection, a
    /// TCP address whose port is none of the listening ports (libp2p-identify 0.48 replaces that
    /// port with a listening port; an observation with a listening port it reports as it is),
    /// once per change of the observation.
    pub(super) fn received<'a>(
        &mut self,
        connection: ConnectionId,
        observed: &Multiaddr,
        listen_addrs: impl IntoIterator<Item = &'a Multiaddr>,
    ) -> Option<Multiaddr> {
        let last = self.tracked.get_mut(&connection)?;
        if observed.iter().any(|p| p == Protocol::P2pCircuit) {
            return None;
        }
        let port = tcp_port(observed)?;
        if listen_addrs.into_iter().any(|a| tcp_port(a) == Some(port)) {
            return None;
        }
        if last.as_ref() == Some(observed) {
            return None;
        }
        *last = Some(observed.clone());
        Some(observed.clone())
    }
}

fn tcp_port(addr: &Multiaddr) -> Option<u16> {
    addr.iter().find_map(|p| match p {
        Protocol::Tcp(port) => Some(port),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RELAY: &str = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA";
    const PEER: &str = "12D3KooWRBhwfeP2Y4TCx1SM6s9rUoHhR5STiGwxBhgFRcw3UERE";

    fn ma(s: &str) -> Multiaddr {
        s.parse().unwrap()
    }

    #[test]
    fn which_dials_are_tracked() {
        let table: &[(String, PortUse, bool)] = &[
            ("/ip4/192.0.2.1/tcp/4001".into(), PortUse::Reuse, true),
            (
                format!("/ip6/2001:db8::1/tcp/4001/p2p/{PEER}"),
                PortUse::Reuse,
                true,
            ),
            ("/dns4/relay.example/tcp/4001".into(), PortUse::Reuse, true),
            ("/ip4/192.0.2.1/tcp/4001/ws".into(), PortUse::Reuse, true),
            ("/ip4/192.0.2.1/tcp/4001".into(), PortUse::New, false),
            (
                format!("/ip4/192.0.2.1/tcp/4001/p2p/{RELAY}/p2p-circuit/p2p/{PEER}"),
                PortUse::Reuse,
                false,
            ),
            (
                "/ip4/192.0.2.1/udp/4001/quic-v1".into(),
                PortUse::Reuse,
                false,
            ),
        ];
        for (addr, port_use, expected) in table {
            assert_eq!(
                dialed_from_listening_port(&ma(addr), *port_use),
                *expected,
                "{addr} {port_use:?}"
            );
        }
    }

    #[test]
    fn which_observations_are_reported() {
        let listening = [ma("/ip4/0.0.0.0/tcp/4001"), ma("/ip4/192.168.1.2/tcp/4001")];
        let nat = ma("/ip4/203.0.113.7/tcp/5001");
        // (observation, reported)
        let table: &[(&str, bool)] = &[
            // The NAT's mapping of the listening port to another port.
            ("/ip4/203.0.113.7/tcp/5001", true),
            ("/ip6/2001:db8::7/tcp/5001", true),
            // A listening port: identify reports it as it is already.
            ("/ip4/203.0.113.7/tcp/4001", false),
            // Not TCP.
            ("/ip4/203.0.113.7/udp/5001/quic-v1", false),
            (
                "/p2p/12D3KooWRBhwfeP2Y4TCx1SM6s9rUoHhR5STiGwxBhgFRcw3UERE",
                false,
            ),
            ("/ip4/203.0.113.7/tcp/5001/p2p-circuit", false),
        ];
        for (observation, reported) in table {
            let mut observed = Observed::default();
            let connection = ConnectionId::new_unchecked(1);
            observed.track(connection);
            assert_eq!(
                observed.received(connection, &ma(observation), &listening),
                reported.then(|| ma(observation)),
                "{observation}"
            );
        }
        // An untracked connection (inbound, PortUse::New, relayed): nothing.
        let mut observed = Observed::default();
        let connection = ConnectionId::new_unchecked(2);
        assert_eq!(observed.received(connection, &nat, &listening), None);
    }

    #[test]
    fn reported_once_per_change_until_closed() {
        let mut observed = Observed::default();
        let connection = ConnectionId::new_unchecked(1);
        let other = ConnectionId::new_unchecked(2);
        let (first, second) = (
            ma("/ip4/203.0.113.7/tcp/5001"),
            ma("/ip4/203.0.113.7/tcp/5002"),
        );
        observed.track(connection);
        observed.track(other);
        assert_eq!(
            observed.received(connection, &first, []),
            Some(first.clone())
        );
        assert_eq!(observed.received(connection, &first, []), None);
        assert_eq!(observed.received(other, &first, []), Some(first.clone()));
        assert_eq!(
            observed.received(connection, &second, []),
            Some(second.clone())
        );
        assert_eq!(
            observed.received(connection, &first, []),
            Some(first.clone())
        );
        observed.closed(connection);
        assert_eq!(observed.received(connection, &second, []), None);
        assert_eq!(observed.received(other, &second, []), Some(second));
    }
}
