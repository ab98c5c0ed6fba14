//! What [`tcp`](crate::tcp) and [`upgrade`](crate::upgrade) accept as the security and the
//! multiplexer, in the forms `SwarmBuilder::with_tcp` accepts: a constructor, or a pair of
//! constructors to offer both.

use std::error::Error;

use libp2p_core::upgrade::SelectUpgrade;
use libp2p_identity::Keypair;

use super::select_security::SelectSecurityUpgrade;

/// A security upgrade (TLS, Noise) that is made from the node's keypair.
///
/// Implemented, as by the arguments of libp2p's `SwarmBuilder::with_tcp`, for
///
/// - a constructor `FnOnce(&Keypair) -> Result<U, E>`, such as `noise::Config::new` or
///   `tls::Config::new`: the upgrade is `U`;
/// - a pair of such constructors, such as `(tls::Config::new, noise::Config::new)`: the upgrade
///   is a [`SelectSecurityUpgrade`] that offers both, the first one preferred, and whose stream
///   is a `futures::future::Either` of their streams. Pairs nest: `((a, b), c)` offers three.
///
/// The trait is sealed: pass a closure `|key| ...` for anything else.
pub trait IntoSecurityUpgrade: sealed::Security {
    /// The upgrade this makes.
    type Upgrade;

    /// Makes the upgrade from `keypair`. The error is the constructor's, boxed: it is what
    /// `SwarmBuilder::with_other_transport` reports.
    fn into_security_upgrade(
        self,
        keypair: &Keypair,
    ) -> Result<Self::Upgrade, Box<dyn Error + Send + Sync>>;
}

impl<F, U, E> IntoSecurityUpgrade for F
where
    F: FnOnce(&Keypair) -> Result<U, E>,
    E: Error + Send + Sync + 'static,
{
    type Upgrade = U;

    fn into_security_upgrade(
        self,
        keypair: &Keypair,
    ) -> Result<Self::Upgrade, Box<dyn Error + Send + Sync>> {
        Ok(self(keypair)?)
    }
}

impl<A, B> IntoSecurityUpgrade for (A, B)
where
    A: IntoSecurityUpgrade,
    B: IntoSecurityUpgrade,
{
    type Upgrade = SelectSecurityUpgrade<A::Upgrade, B::Upgrade>;

    fn into_security_upgrade(
        self,
        keypair: &Keypair,
    ) -> Result<Self::Upgrade, Box<dyn Error + Send + Sync>> {
        let (a, b) = self;
        Ok(SelectSecurityUpgrade::new(
            a.into_security_upgrade(keypair)?,
            b.into_security_upgrade(keypair)?,
        ))
    }
}

/// A stream multiplexer upgrade (yamux).
///
/// Implemented, as by the arguments of libp2p's `SwarmBuilder::with_tcp`, for
///
/// - a constructor `FnOnce() -> U`, such as `yamux::Config::default`: the upgrade is `U`;
/// - a pair of such constructors: the upgrade is libp2p-core's
///   [`SelectUpgrade`], which offers both, the first one preferred, and whose muxer is a
///   `futures::future::Either` of theirs. Pairs nest.
///
/// The trait is sealed: pass a closure `|| ...` for anything else.
pub trait IntoMultiplexerUpgrade: sealed::Multiplexer {
    /// The upgrade this makes.
    type Upgrade;

    /// Makes the upgrade.
    fn into_multiplexer_upgrade(self) -> Self::Upgrade;
}

impl<F, U> IntoMultiplexerUpgrade for F
where
    F: FnOnce() -> U,
{
    type Upgrade = U;

    fn into_multiplexer_upgrade(self) -> Self::Upgrade {
        self()
    }
}

impl<A, B> IntoMultiplexerUpgrade for (A, B)
where
    A: IntoMultiplexerUpgrade,
    B: IntoMultiplexerUpgrade,
{
    type Upgrade = SelectUpgrade<A::Upgrade, B::Upgrade>;

    fn into_multiplexer_upgrade(self) -> Self::Upgrade {
        let (a, b) = self;
        SelectUpgrade::new(a.into_multiplexer_upgrade(), b.into_multiplexer_upgrade())
    }
}

/// Keeps the traits' implementations to the ones above, so that the traits can change without
/// breaking a user's implementation.
mod sealed {
    // Public in a private module: nameable in the public traits' bounds, unreachable for users.
    #![allow(unreachable_pub)]

    use std::error::Error;

    use libp2p_identity::Keypair;

    pub trait Security {}
    impl<F, U, E> Security for F
    where
        F: FnOnce(&Keypair) -> Result<U, E>,
        E: Error + Send + Sync + 'static,
    {
    }
    impl<A: Security, B: Security> Security for (A, B) {}

    pub trait Multiplexer {}
    impl<F, U> Multiplexer for F where F: FnOnce() -> U {}
    impl<A: Multiplexer, B: Multiplexer> Multiplexer for (A, B) {}
}

#[cfg(test)]
mod tests {
    use std::io;

    use libp2p_core::UpgradeInfo;

    use super::*;

    /// Offers one protocol and does nothing else: enough to see which constructors ran, in
    /// which order.
    #[derive(Clone, Debug)]
    struct Offers(&'static str);

    impl UpgradeInfo for Offers {
        type Info = &'static str;
        type InfoIter = [&'static str; 1];

        fn protocol_info(&self) -> Self::InfoIter {
            [self.0]
        }
    }

    fn offers(protocol: &'static str) -> impl FnOnce(&Keypair) -> io::Result<Offers> {
        move |_| Ok(Offers(protocol))
    }

    fn fails(message: &'static str) -> impl FnOnce(&Keypair) -> io::Result<Offers> {
        move |_| Err(io::Error::new(io::ErrorKind::InvalidInput, message))
    }

    fn protocols(upgrade: &impl UpgradeInfo) -> Vec<String> {
        upgrade
            .protocol_info()
            .into_iter()
            .map(|info| info.as_ref().to_owned())
            .collect()
    }

    #[test]
    fn constructors_and_pairs_offer_in_the_order_given() {
        let key = Keypair::generate_ed25519();
        let one = offers("/a").into_security_upgrade(&key).unwrap();
        assert_eq!(protocols(&one), ["/a"]);
        let pair = (offers("/a"), offers("/b"))
            .into_security_upgrade(&key)
            .unwrap();
        assert_eq!(protocols(&pair), ["/a", "/b"]);
        let nested = ((offers("/a"), offers("/b")), offers("/c"))
            .into_security_upgrade(&key)
            .unwrap();
        assert_eq!(protocols(&nested), ["/a", "/b", "/c"]);

        let muxers = (|| Offers("/m1"), || Offers("/m2")).into_multiplexer_upgrade();
        assert_eq!(protocols(&muxers), ["/m1", "/m2"]);
        assert_eq!(
            protocols(&(|| Offers("/m")).into_multiplexer_upgrade()),
            ["/m"]
        );
    }

    /// A constructor's error comes out as it is, boxed: the first failing one in a pair.
    #[test]
    fn a_constructors_error_is_kept() {
        let key = Keypair::generate_ed25519();
        for (result, expected) in [
            (fails("first").into_security_upgrade(&key).err(), "first"),
            (
                (fails("first"), offers("/b"))
                    .into_security_upgrade(&key)
                    .err(),
                "first",
            ),
            (
                (offers("/a"), fails("second"))
                    .into_security_upgrade(&key)
                    .err(),
                "second",
            ),
            (
                (fails("first"), fails("second"))
                    .into_security_upgrade(&key)
                    .err(),
                "first",
            ),
        ] {
            let error = result.expect("an error");
            let io = error.downcast_ref::<io::Error>().expect("the io::Error");
            assert_eq!(io.kind(), io::ErrorKind::InvalidInput);
            assert_eq!(io.to_string(), expected);
        }
    }
}
