//! [`SelectSecurityUpgrade`]: two security upgrades offered as one.

use futures::{
    TryFutureExt as _,
    future::{Either, MapOk},
};
use libp2p_core::upgrade::{
    InboundConnectionUpgrade, OutboundConnectionUpgrade, SelectUpgrade, UpgradeInfo,
};
use libp2p_identity::PeerId;

/// Two security upgrades offered as one, as libp2p's `SwarmBuilder::with_tcp` does for a pair
/// of constructors: the protocols of `A` first (preferred), then those of `B`; the remote
/// picks one in multistream-select, and the upgrade that runs is the one whose protocol it
/// picked.
///
/// libp2p-core's [`SelectUpgrade`] negotiates the same way but outputs
/// `Either<(PeerId, A's stream), (PeerId, B's stream)>`; this one outputs
/// `(PeerId, Either<A's stream, B's stream>)`, the form `Transport::upgrade(..).authenticate`
/// requires. [`IntoSecurityUpgrade`](crate::IntoSecurityUpgrade) makes it from a pair of
/// constructors; `new` makes it from two upgrades, for a transport built by hand:
///
/// ```
/// use libp2p::{Transport as _, core::upgrade::Version, identity, noise, tls, yamux};
/// use libp2p_reuseport::{Config, SelectSecurityUpgrade, Transport};
///
/// let key = identity::Keypair::generate_ed25519();
/// let transport = Transport::new(Config::new())
///     .upgrade(Version::V1Lazy)
///     .authenticate(SelectSecurityUpgrade::new(
///         tls::Config::new(&key)?,
///         noise::Config::new(&key)?,
///     ))
///     .multiplex(yamux::Config::default())
///     .boxed();
/// # let _ = transport;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct SelectSecurityUpgrade<A, B>(SelectUpgrade<A, B>);

impl<A, B> SelectSecurityUpgrade<A, B> {
    /// Offers the protocols of `a`, preferred, and then those of `b`.
    pub fn new(a: A, b: B) -> Self {
        Self(SelectUpgrade::new(a, b))
    }
}

impl<A, B> UpgradeInfo for SelectSecurityUpgrade<A, B>
where
    A: UpgradeInfo,
    B: UpgradeInfo,
{
    type Info = <SelectUpgrade<A, B> as UpgradeInfo>::Info;
    type InfoIter = <SelectUpgrade<A, B> as UpgradeInfo>::InfoIter;

    fn protocol_info(&self) -> Self::InfoIter {
        self.0.protocol_info()
    }
}

/// Moves the peer out of the `Either`: `(PeerId, Either<TA, TB>)`.
type FactorPeer<TA, TB> = fn(Either<(PeerId, TA), (PeerId, TB)>) -> (PeerId, Either<TA, TB>);

impl<C, A, B, TA, TB> InboundConnectionUpgrade<C> for SelectSecurityUpgrade<A, B>
where
    A: InboundConnectionUpgrade<C, Output = (PeerId, TA)>,
    B: InboundConnectionUpgrade<C, Output = (PeerId, TB)>,
{
    type Output = (PeerId, Either<TA, TB>);
    type Error = <SelectUpgrade<A, B> as InboundConnectionUpgrade<C>>::Error;
    type Future =
        MapOk<<SelectUpgrade<A, B> as InboundConnectionUpgrade<C>>::Future, FactorPeer<TA, TB>>;

    fn upgrade_inbound(self, socket: C, info: Self::Info) -> Self::Future {
        self.0
            .upgrade_inbound(socket, info)
            .map_ok(Either::factor_first as FactorPeer<TA, TB>)
    }
}

impl<C, A, B, TA, TB> OutboundConnectionUpgrade<C> for SelectSecurityUpgrade<A, B>
where
    A: OutboundConnectionUpgrade<C, Output = (PeerId, TA)>,
    B: OutboundConnectionUpgrade<C, Output = (PeerId, TB)>,
{
    type Output = (PeerId, Either<TA, TB>);
    type Error = <SelectUpgrade<A, B> as OutboundConnectionUpgrade<C>>::Error;
    type Future =
        MapOk<<SelectUpgrade<A, B> as OutboundConnectionUpgrade<C>>::Future, FactorPeer<TA, TB>>;

    fn upgrade_outbound(self, socket: C, info: Self::Info) -> Self::Future {
        self.0
            .upgrade_outbound(socket, info)
            .map_ok(Either::factor_first as FactorPeer<TA, TB>)
    }
}

#[cfg(test)]
mod tests {
    use std::{convert::Infallible, iter};

    use futures::{executor::block_on, future};

    use super::*;

    /// An upgrade that offers `protocols` and outputs (its peer, its name) without touching the
    /// socket.
    #[derive(Clone)]
    struct Named {
        name: &'static str,
        protocols: &'static [&'static str],
        peer: PeerId,
    }

    fn named(name: &'static str, protocols: &'static [&'static str]) -> Named {
        Named {
            name,
            protocols,
            peer: PeerId::random(),
        }
    }

    impl UpgradeInfo for Named {
        type Info = &'static str;
        type InfoIter = iter::Copied<std::slice::Iter<'static, &'static str>>;

        fn protocol_info(&self) -> Self::InfoIter {
            self.protocols.iter().copied()
        }
    }

    impl InboundConnectionUpgrade<()> for Named {
        type Output = (PeerId, &'static str);
        type Error = Infallible;
        type Future = future::Ready<Result<Self::Output, Self::Error>>;

        fn upgrade_inbound(self, (): (), _: Self::Info) -> Self::Future {
            future::ok((self.peer, self.name))
        }
    }

    impl OutboundConnectionUpgrade<()> for Named {
        type Output = (PeerId, &'static str);
        type Error = Infallible;
        type Future = future::Ready<Result<Self::Output, Self::Error>>;

        fn upgrade_outbound(self, (): (), _: Self::Info) -> Self::Future {
            future::ok((self.peer, self.name))
        }
    }

    fn offered(upgrade: &SelectSecurityUpgrade<Named, Named>) -> Vec<String> {
        upgrade
            .protocol_info()
            .map(|info| AsRef::<str>::as_ref(&info).to_owned())
            .collect()
    }

    #[test]
    fn offers_the_first_upgrades_protocols_first() {
        for (a, b, expected) in [
            (
                &["/tls/1.0.0"][..],
                &["/noise"][..],
                &["/tls/1.0.0", "/noise"][..],
            ),
            (&["/noise"], &["/tls/1.0.0"], &["/noise", "/tls/1.0.0"]),
            (&["/a/1", "/a/2"], &["/b"], &["/a/1", "/a/2", "/b"]),
            (&[], &["/b"], &["/b"]),
        ] {
            let upgrade = SelectSecurityUpgrade::new(named("a", a), named("b", b));
            assert_eq!(offered(&upgrade), expected);
        }
    }

    /// Which side an output came from, and its peer.
    fn side(output: (PeerId, Either<&'static str, &'static str>)) -> (PeerId, &'static str) {
        match output {
            (peer, Either::Left(name)) => (peer, name),
            (peer, Either::Right(name)) => (peer, name),
        }
    }

    /// Each offered protocol, negotiated, runs the upgrade that offered it; the peer comes out of
    /// the `Either`, on the side of that upgrade.
    #[test]
    fn runs_the_upgrade_of_the_negotiated_protocol() {
        let (a, b) = (named("a", &["/a/1", "/a/2"]), named("b", &["/b"]));
        let upgrade = SelectSecurityUpgrade::new(a.clone(), b.clone());
        let infos: Vec<_> = upgrade.protocol_info().collect();
        let expected = [
            (a.peer, "a", true),
            (a.peer, "a", true),
            (b.peer, "b", false),
        ];
        assert_eq!(infos.len(), expected.len());
        for (info, (peer, name, left)) in infos.into_iter().zip(expected) {
            let protocol = AsRef::<str>::as_ref(&info).to_owned();
            for output in [
                block_on(upgrade.clone().upgrade_inbound((), info)),
                block_on(upgrade.clone().upgrade_outbound((), info)),
            ] {
                let output = output.unwrap_or_else(|never| match never {});
                assert_eq!(matches!(output.1, Either::Left(_)), left, "{protocol}");
                assert_eq!(side(output), (peer, name), "{protocol}");
            }
        }
    }
}
