//! `Identify` (feature `identify`): what the remote observes for a connection dialed with port
//! reuse is reported as an external address candidate unchanged, and for no other connection;
//! identify's events pass through unchanged.
//!
//! The swarms run on 127.0.0.1 and ::1, where nothing changes a port. So one side's transport
//! plays a port-translating NAT ([`Nat`]): every TCP port it sees is one higher than the real
//! one, as if each host's NAT mapped its port P to P + 1. Relayed connections (`/p2p-circuit`)
//! are covered by the unit tests of `src/identify/observed.rs`: a relay's circuit never reports
//! a TCP observation, so a swarm test could not tell the rule from its absence.

mod util;

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use futures::StreamExt;
use libp2p::{
    Multiaddr, Swarm,
    core::{
        multiaddr::Protocol,
        transport::{DialOpts, ListenerId, TransportError, TransportEvent},
    },
    identify,
    swarm::{SwarmEvent, dial_opts},
};
use libp2p_reuseport::{Config, Transport};
use util::{
    swarm::{Identified, IdentifiedEvent, build_with, identified, listen_on},
    *,
};

/// A transport whose TCP ports are one higher than the real ones: the remote addresses of
/// incoming connections have their port + 1, and a dial to port P + 1 goes to port P.
struct Nat<T>(T);

/// `addr` with its TCP port moved by `by`.
fn shift(addr: &Multiaddr, by: i32) -> Multiaddr {
    addr.iter()
        .map(|p| match p {
            Protocol::Tcp(port) => Protocol::Tcp(u16::try_from(i32::from(port) + by).unwrap()),
            p => p,
        })
        .collect()
}

impl<T: libp2p::Transport + Unpin> libp2p::Transport for Nat<T> {
    type Output = T::Output;
    type Error = T::Error;
    type ListenerUpgrade = T::ListenerUpgrade;
    type Dial = T::Dial;

    fn listen_on(
        &mut self,
        id: ListenerId,
        addr: Multiaddr,
    ) -> Result<(), TransportError<Self::Error>> {
        self.0.listen_on(id, addr)
    }

    fn remove_listener(&mut self, id: ListenerId) -> bool {
        self.0.remove_listener(id)
    }

    fn dial(
        &mut self,
        addr: Multiaddr,
        opts: DialOpts,
    ) -> Result<Self::Dial, TransportError<Self::Error>> {
        self.0.dial(shift(&addr, -1), opts)
    }

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<TransportEvent<Self::ListenerUpgrade, Self::Error>> {
        Pin::new(&mut self.0).poll(cx).map(|event| match event {
            TransportEvent::Incoming {
                listener_id,
                upgrade,
                local_addr,
                send_back_addr,
            } => TransportEvent::Incoming {
                listener_id,
                upgrade,
                local_addr,
                send_back_addr: shift(&send_back_addr, 1),
            },
            other => other,
        })
    }
}

fn swarm() -> Swarm<Identified> {
    build_with(|| Transport::new(Config::new()), identified)
}

fn behind_nat() -> Swarm<Identified> {
    build_with(|| Nat(Transport::new(Config::new())), identified)
}

/// What one swarm reported.
#[derive(Default, Debug)]
struct Seen {
    /// The observed address of the last `identify::Event::Received`.
    observed: Option<Multiaddr>,
    /// How many `identify::Event::Received` came.
    received: usize,
    /// `SwarmEvent::NewExternalAddrCandidate`s, in order.
    candidates: Vec<Multiaddr>,
    /// Whether an `identify::Event::Pushed` came.
    pushed: bool,
}

/// Drives both swarms until `done` says what `me` reported is enough.
async fn watch(
    me: &mut Swarm<Identified>,
    other: &mut Swarm<Identified>,
    seen: &mut Seen,
    done: impl Fn(&Seen) -> bool,
) {
    within("the events waited for", async {
        while !done(seen) {
            tokio::select! {
                event = me.select_next_some() => match event {
                    SwarmEvent::Behaviour(IdentifiedEvent::Identify(identify::Event::Received {
                        info, ..
                    })) => {
                        seen.observed = Some(info.observed_addr);
                        seen.received += 1;
                    }
                    SwarmEvent::Behaviour(IdentifiedEvent::Identify(identify::Event::Pushed {
                        ..
                    })) => seen.pushed = true,
                    SwarmEvent::NewExternalAddrCandidate { address } => {
                        seen.candidates.push(address);
                    }
                    _ => {}
                },
                _ = other.select_next_some() => {}
            }
        }
    })
    .await;
}

const LISTEN: [&str; 2] = ["/ip4/127.0.0.1/tcp/0", "/ip6/::1/tcp/0"];

#[tokio::test]
async fn reuse_dial_reports_the_observation_unchanged() {
    if !port_sharing_here("reuse_dial_reports_the_observation_unchanged") {
        return;
    }
    for listen in LISTEN {
        let (mut a, mut b) = (swarm(), behind_nat());
        let a_addr = listen_on(&mut a, listen).await;
        let b_addr = listen_on(&mut b, listen).await;
        // PortUse::Reuse, the swarm's default.
        a.dial(b_addr).unwrap();

        // b sees a's listening port + 1: a port-translating NAT's mapping of it.
        let nat_mapping = shift(&a_addr, 1);
        let mut seen = Seen::default();
        watch(&mut a, &mut b, &mut seen, |seen| {
            seen.candidates.contains(&nat_mapping) && seen.candidates.contains(&a_addr)
        })
        .await;
        // The event passed through unchanged, with the raw observation.
        assert_eq!(seen.observed.as_ref(), Some(&nat_mapping), "{listen}");
        // Reported once, before identify's own candidate (its port replaced with the listening
        // port).
        assert_eq!(
            seen.candidates,
            [nat_mapping.clone(), a_addr.clone()],
            "{listen}"
        );

        // identify's own methods through Deref, its other events through the behaviour.
        let (a_peer, b_peer) = (*a.local_peer_id(), *b.local_peer_id());
        a.behaviour_mut().identify.push([b_peer]);
        watch(&mut a, &mut b, &mut seen, |seen| seen.pushed).await;
        // b's push observes the same address again: not reported again.
        b.behaviour_mut().identify.push([a_peer]);
        watch(&mut a, &mut b, &mut seen, |seen| seen.received == 2).await;
        assert_eq!(seen.observed.as_ref(), Some(&nat_mapping), "{listen}");
        assert_eq!(
            seen.candidates
                .iter()
                .filter(|c| **c == nat_mapping)
                .count(),
            1,
            "{listen}: {seen:?}"
        );
    }
}

#[tokio::test]
async fn inbound_connection_observation_is_not_reported() {
    for listen in LISTEN {
        let (mut a, mut b) = (behind_nat(), swarm());
        let _ = listen_on(&mut a, listen).await;
        let b_addr = listen_on(&mut b, listen).await;
        // a reaches b's port through b's "public" port + 1, and tells b so.
        let nat_mapping = shift(&b_addr, 1);
        a.dial(nat_mapping.clone()).unwrap();

        let mut seen = Seen::default();
        // identify's translation of the observation to b's listening port comes after
        // `Identify`'s own candidate would have.
        watch(&mut b, &mut a, &mut seen, |seen| {
            seen.observed.is_some() && seen.candidates.contains(&b_addr)
        })
        .await;
        assert_eq!(seen.observed.as_ref(), Some(&nat_mapping), "{listen}");
        assert!(
            !seen.candidates.contains(&nat_mapping),
            "{listen}: reported for an inbound connection: {seen:?}"
        );
    }
}

#[tokio::test]
async fn port_use_new_observation_is_not_reported() {
    for listen in LISTEN {
        let (mut a, mut b) = (swarm(), behind_nat());
        let a_addr = listen_on(&mut a, listen).await;
        let b_addr = listen_on(&mut b, listen).await;
        a.dial(
            dial_opts::DialOpts::unknown_peer_id()
                .address(b_addr)
                .allocate_new_port()
                .build(),
        )
        .unwrap();

        let mut seen = Seen::default();
        watch(&mut a, &mut b, &mut seen, |seen| {
            seen.observed.is_some() && seen.candidates.contains(&a_addr)
        })
        .await;
        let observed = seen.observed.clone().unwrap();
        // An ephemeral port (+ 1), not the listening port's mapping.
        assert_ne!(observed, shift(&a_addr, 1), "{listen}");
        assert!(
            !seen.candidates.contains(&observed),
            "{listen}: reported for a PortUse::New dial: {seen:?}"
        );
    }
}
