//! The platform layer: everything that differs between operating systems lives here, so that
//! adding a platform means entering this one module.
//!
//! - this file: the kernels the crate tells apart ([`Platform`]) and what it decides for each:
//!   which socket options a listener, a dial from a listening port and the foreign-port probe
//!   set ([`Platform::options`]), which errors mean "this (local, remote) pair or port is taken"
//!   ([`Platform::is_taken`]). Pure, so the decisions for every platform are unit-tested on any
//!   host;
//! - `unix.rs` and `windows.rs`: one backend each, with the same functions: apply the
//!   [`Options`], create a socket, read the descriptor limit and the kernel's orphan lifetime,
//!   and expose a stream's descriptor.
//!
//! - `tcp_info.rs`, with the `metrics` feature: the TCP_INFO figures the metrics sample and
//!   where they come from; `sock_diag/info.rs` reads them on Linux.
//! - `sock_diag.rs`, Linux: the kernel's state for one (local, remote) pair and the pairs of the
//!   connections it is finishing, for connections closed at once ([`watches_closing`]);
//!   `no_sock_diag.rs` elsewhere, with the same functions.
//! - `temporary.rs`, Linux: the stable address a dial from a listening port uses in place of an
//!   IPv6 temporary address ([`dial_source`]).
//!
//! The conditions are named once in `build.rs` (`linux_like`, `reuseport`, `sock_nonblock`,
//! `sock_diag`, `tcp_info`).
//!
//! # Port reuse per platform
//!
//! | platform | listener | dial from a listening port | who else can bind the port |
//! |---|---|---|---|
//! | Linux, Android | `SO_REUSEADDR`, `SO_REUSEPORT` | `SO_REUSEPORT` | sockets of the same effective UID that set `SO_REUSEPORT` (the kernel checks the UID) |
//! | macOS, iOS, the BSDs | `SO_REUSEADDR`, `SO_REUSEPORT` | `SO_REUSEPORT` | sockets that set `SO_REUSEPORT` on exactly the address; FreeBSD and XNU refuse another UID |
//! | Windows | no option | `SO_REUSEADDR`, bound to the specific address beside a wildcard listener and to the wildcard address beside a specific one | the same account, beside a wildcard listener (see [`Platform::Windows`]) |
//! | Solaris, illumos, others | `SO_REUSEADDR` | (port reuse off) | nobody |

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub(crate) use self::unix::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub(crate) use self::windows::*;

// Only the metrics feature reads TCP_INFO.
#[cfg(feature = "metrics")]
pub(crate) mod tcp_info;
// Linux's socket table: the state of a closing connection's pair, and the source of TCP_INFO
// (see tcp_info.rs for the other platforms).
#[cfg(sock_diag)]
pub(crate) mod sock_diag;
#[cfg(sock_diag)]
pub(crate) use self::sock_diag::{finishing_pairs, pair_finished, watches_closing};
// Elsewhere the same three functions say that the kernel cannot be asked.
#[cfg(not(sock_diag))]
mod no_sock_diag;
#[cfg(not(sock_diag))]
pub(crate) use self::no_sock_diag::{finishing_pairs, pair_finished, watches_closing};
// IPv6 temporary addresses, read from /proc (see `dial_source`).
#[cfg(target_os = "linux")]
mod temporary;

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
};

/// The kernels whose socket semantics the crate tells apart.
// Every variant exists on every host so that the decisions for all of them are unit-tested
// anywhere; a build uses one ([`PLATFORM`]).
#[cfg_attr(not(test), allow(dead_code))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Platform {
    /// Linux and Android. `SO_REUSEPORT` lets sockets of one effective UID share a port, and
    /// spreads incoming connections over the listeners sharing it. Without it, any overlap on
    /// a port (the same address, or a specific and a wildcard one) is refused. A second
    /// connection on a (local, remote) pair fails `connect` with `EADDRNOTAVAIL`.
    Linux,
    /// macOS, iOS, the BSDs and the other unix kernels with BSD's `SO_REUSEPORT`. It lets
    /// sockets share exactly one address; `SO_REUSEADDR` alone lets a specific address be
    /// bound beside a wildcard one on the same port (the specific socket then gets the
    /// connections to its address: nothing is split). A second connection on a pair fails
    /// `connect` with `EADDRINUSE` (error 48 on macOS). FreeBSD's `SO_REUSEPORT_LB` (listeners
    /// that share the load) is not what the crate needs: it shares a port between a listener
    /// and connected sockets, and plain `SO_REUSEPORT` does that.
    Bsd,
    /// Windows: no `SO_REUSEPORT`; `SO_REUSEADDR` lets a socket bind a port another socket
    /// holds, under the rules Microsoft documents for Windows Server 2003 and later ("enhanced
    /// socket security", in "Using SO_REUSEADDR and SO_EXCLUSIVEADDRUSE" and the table of
    /// "Sharing Transport Addresses"): a port is shareable only if its first socket set
    /// `SO_REUSEADDR`, except that a specific address may be bound beside a wildcard one by
    /// the same user account; a second socket on exactly the same address is refused even for
    /// the same account unless both set `SO_REUSEADDR`.
    ///
    /// The policy: a listener sets no sharing option (as a plain Windows listener: nobody can
    /// join its address with `SO_REUSEADDR`; the option that libp2p-tcp and go-libp2p set on
    /// their listeners lets any account bind the port). A dial from the listening port sets
    /// `SO_REUSEADDR` and binds the other kind of address than its listener: beside a wildcard
    /// listener the specific address the kernel routes from (allowed for the same account
    /// only, as `SO_REUSEPORT` is for the same UID on Linux), beside a specific listener the
    /// wildcard address with its port (allowed as for any wildcard socket beside a specific
    /// one; the connection still leaves from the specific address, the one the kernel routes
    /// from). `SO_EXCLUSIVEADDRUSE` on the listener would shut our own dials out. A refused
    /// `bind` fails with `WSAEACCES` (`PermissionDenied`) or `WSAEADDRINUSE`, and the dial
    /// falls back to an ephemeral port. These rules are Microsoft's documentation: Wine does
    /// not emulate them once a socket listens (it refuses every such bind), and this crate has
    /// not been run on a real Windows machine.
    Windows,
    /// Solaris, illumos and the rest: no port sharing the crate can rely on; port reuse is
    /// off.
    NoReuse,
}

/// The platform this crate is built for.
#[cfg(linux_like)]
pub(crate) const PLATFORM: Platform = Platform::Linux;
#[cfg(all(reuseport, not(linux_like)))]
pub(crate) const PLATFORM: Platform = Platform::Bsd;
#[cfg(windows)]
pub(crate) const PLATFORM: Platform = Platform::Windows;
#[cfg(not(any(reuseport, windows)))]
pub(crate) const PLATFORM: Platform = Platform::NoReuse;

/// The sharing options a socket sets before `bind`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Options {
    /// `SO_REUSEADDR`.
    pub(crate) reuse_address: bool,
    /// `SO_REUSEPORT` (never on Windows).
    pub(crate) reuse_port: bool,
}

/// What a socket is bound for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// A listening socket; `reuse`: port reuse is on.
    Listener { reuse: bool },
    /// A dial from a listening address.
    Dial,
    /// A dial from a port the kernel picks: shares nothing.
    Ephemeral,
    /// The socket that checks, before a listener binds with port reuse, whether a socket
    /// outside the transport holds the address (see [`Platform::probes`]).
    Probe,
}

/// Where a dial's system call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    Bind,
    Connect,
}

impl Platform {
    /// Whether dials can leave from listening ports here.
    pub(crate) const fn reuses_ports(self) -> bool {
        !matches!(self, Self::NoReuse)
    }

    /// The options a socket bound for `role` sets.
    pub(crate) const fn options(self, role: Role) -> Options {
        let (reuse_address, reuse_port) = match (self, role) {
            // SO_REUSEADDR lets a listener bind past connections in TIME_WAIT on its port.
            (Self::Linux | Self::Bsd, Role::Listener { reuse, .. }) => (true, reuse),
            (Self::Linux | Self::Bsd, Role::Dial) => (false, true),
            // Without SO_REUSEPORT the probe cannot share a port; with SO_REUSEADDR leftovers
            // in TIME_WAIT do not count as holders.
            (Self::Linux | Self::Bsd, Role::Probe) => (true, false),
            // A listener sets nothing, so that no other socket can join its address (Windows
            // binds past TIME_WAIT without SO_REUSEADDR).
            (Self::Windows, Role::Listener { .. }) => (false, false),
            (Self::Windows, Role::Dial) => (true, false),
            (Self::Windows, Role::Probe) => (false, false),
            (Self::NoReuse, Role::Listener { .. }) => (true, false),
            (Self::NoReuse, Role::Dial | Role::Probe) => (false, false),
            (_, Role::Ephemeral) => (false, false),
        };
        Options {
            reuse_address,
            reuse_port,
        }
    }

    /// The address a dial from the listening address `local` binds. `local` itself, except on
    /// Windows beside a listener bound to exactly `local` (`specific_listener` says whether
    /// one is; it is asked only there): the sharing rules refuse a second socket on that
    /// address, so the dial binds the unspecified address with `local`'s port, and leaves from
    /// `local` all the same, the address the kernel routes from (see [`Platform::Windows`]).
    pub(crate) fn dial_bind_addr(
        self,
        local: SocketAddr,
        specific_listener: impl FnOnce() -> bool,
    ) -> SocketAddr {
        match self {
            Self::Windows if specific_listener() => {
                let unspecified: IpAddr = match local {
                    SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
                    SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
                };
                SocketAddr::new(unspecified, local.port())
            }
            _ => local,
        }
    }

    /// Whether `listen_on` must first probe for a socket outside the transport on the address:
    /// where the listener's own options would let it join such a socket (`SO_REUSEPORT`). On
    /// Linux the probe, bound to the listener's address without `SO_REUSEPORT`, fails on any
    /// overlapping socket (the same address, or a wildcard and a specific one). On the BSDs it
    /// fails only on a socket bound to exactly that address: the only overlap where the two
    /// would share connections. On Windows the first listener's `bind` sets no sharing option
    /// and is refused by itself.
    pub(crate) const fn probes(self) -> bool {
        matches!(self, Self::Linux | Self::Bsd)
    }

    /// Whether a dial's error at `step` means the listening address or its pair with the
    /// remote is taken (so the dial tries again from an ephemeral port) rather than a failure
    /// to report.
    pub(crate) fn is_taken(self, step: Step, error: &io::Error) -> bool {
        use io::ErrorKind::{AddrInUse, AddrNotAvailable, PermissionDenied};
        match (self, step, error.kind()) {
            // Linux: EADDRNOTAVAIL from connect (the pair is in use), EADDRINUSE from bind (a
            // socket without SO_REUSEPORT holds the address). The BSDs: EADDRINUSE from
            // connect. Windows: WSAEADDRINUSE from bind or connect. Both kinds everywhere, to be
            // safe: neither means anything else here.
            (_, _, AddrInUse | AddrNotAvailable) => true,
            // Windows: WSAEACCES from bind when the sharing rules refuse the port (another
            // account's socket, SO_EXCLUSIVEADDRUSE).
            (Self::Windows, Step::Bind, PermissionDenied) => true,
            _ => false,
        }
    }
}

/// The IP a dial from a listening port leaves from, given the one the kernel's routing picked
/// for the remote. On Linux an IPv6 temporary ("privacy") address, which the kernel prefers for
/// new connections and replaces every day or so, gives way to the stable address of its
/// interface and prefix: the address peers learn of a listening port must stay the one its
/// dials leave from (see `temporary.rs`). Elsewhere, and for every other address, the kernel's
/// pick: macOS, iOS, Windows and Android prefer temporary addresses as well, and this crate
/// cannot read their flags there (Android denies apps `/proc/net`; the others need unsafe
/// calls or a crate that wraps them).
pub(crate) fn dial_source(routed: IpAddr) -> IpAddr {
    #[cfg(target_os = "linux")]
    if let IpAddr::V6(ip) = routed
        && let Some(stable) = temporary::stable_counterpart(ip)
    {
        tracing::trace!(temporary = %ip, %stable, "dialing from the stable address");
        return stable.into();
    }
    routed
}

/// The local addresses of the listening sockets of one family in this network namespace, or
/// `None` where they cannot be read.
pub(crate) fn listening_sockets(v6: bool) -> Option<Vec<SocketAddr>> {
    // Only Linux has these files for sure. Android has them too, but has denied apps reading
    // /proc/net since Android 10 (SELinux, which also logs every denied read); other systems
    // have no such files. Where the check cannot read them it does nothing.
    if !cfg!(target_os = "linux") {
        return None;
    }
    let path = if v6 {
        "/proc/net/tcp6"
    } else {
        "/proc/net/tcp"
    };
    match std::fs::read_to_string(path) {
        Ok(text) => Some(crate::diagnostics::parse_listening(&text, v6)),
        Err(error) => {
            tracing::debug!(path, %error, "cannot read the listening sockets");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Platform; 4] = [
        Platform::Linux,
        Platform::Bsd,
        Platform::Windows,
        Platform::NoReuse,
    ];

    fn options(reuse_address: bool, reuse_port: bool) -> Options {
        Options {
            reuse_address,
            reuse_port,
        }
    }

    #[test]
    fn options_per_platform_and_role() {
        let listener = |reuse| Role::Listener { reuse };
        #[rustfmt::skip]
        let table = [
            (Platform::Linux, listener(true), options(true, true)),
            (Platform::Linux, listener(false), options(true, false)),
            (Platform::Linux, Role::Dial, options(false, true)),
            (Platform::Linux, Role::Probe, options(true, false)),
            (Platform::Bsd, listener(true), options(true, true)),
            (Platform::Bsd, listener(false), options(true, false)),
            (Platform::Bsd, Role::Dial, options(false, true)),
            (Platform::Bsd, Role::Probe, options(true, false)),
            // Windows: a listener shares nothing, a dial sets SO_REUSEADDR.
            (Platform::Windows, listener(true), options(false, false)),
            (Platform::Windows, listener(false), options(false, false)),
            (Platform::Windows, Role::Dial, options(true, false)),
            (Platform::Windows, Role::Probe, options(false, false)),
            (Platform::NoReuse, listener(false), options(true, false)),
        ];
        let mut table = table.to_vec();
        for platform in ALL {
            table.push((platform, Role::Ephemeral, Options::default()));
        }
        for (platform, role, expected) in table {
            assert_eq!(platform.options(role), expected, "{platform:?} {role:?}");
        }
    }

    #[test]
    fn no_reuseport_on_windows() {
        for role in [Role::Listener { reuse: true }, Role::Dial, Role::Probe] {
            assert!(!Platform::Windows.options(role).reuse_port, "{role:?}");
        }
    }

    #[test]
    fn where_a_dial_binds() {
        let v4: SocketAddr = "192.0.2.7:4001".parse().unwrap();
        let v6: SocketAddr = "[2001:db8::7]:4001".parse().unwrap();
        // (platform, listening address, bound by a specific listener, bind)
        #[rustfmt::skip]
        let table = [
            (Platform::Linux, v4, true, v4),
            (Platform::Linux, v4, false, v4),
            (Platform::Bsd, v6, true, v6),
            (Platform::Windows, v4, false, v4),
            (Platform::Windows, v4, true, "0.0.0.0:4001".parse().unwrap()),
            (Platform::Windows, v6, true, "[::]:4001".parse().unwrap()),
            (Platform::Windows, v6, false, v6),
        ];
        for (platform, local, specific, bind) in table {
            assert_eq!(
                platform.dial_bind_addr(local, || specific),
                bind,
                "{platform:?} {local} {specific}"
            );
        }
        // The table is asked only on Windows.
        Platform::Linux.dial_bind_addr(v4, || panic!("asked on Linux"));
    }

    #[test]
    fn who_reuses_and_probes() {
        let reuses: Vec<bool> = ALL.iter().map(|p| p.reuses_ports()).collect();
        assert_eq!(reuses, [true, true, true, false]);
        let probes: Vec<bool> = ALL.iter().map(|p| p.probes()).collect();
        assert_eq!(probes, [true, true, false, false]);
    }

    #[test]
    fn what_means_taken() {
        use io::ErrorKind::*;
        // (platform, step, kind, taken)
        #[rustfmt::skip]
        let table = [
            // Linux: a pair clash at connect is EADDRNOTAVAIL.
            (Platform::Linux, Step::Connect, AddrNotAvailable, true),
            (Platform::Linux, Step::Bind, AddrInUse, true),
            (Platform::Linux, Step::Bind, PermissionDenied, false),
            (Platform::Linux, Step::Connect, ConnectionRefused, false),
            // macOS and the BSDs: EADDRINUSE (48 on macOS) at connect.
            (Platform::Bsd, Step::Connect, AddrInUse, true),
            (Platform::Bsd, Step::Connect, AddrNotAvailable, true),
            (Platform::Bsd, Step::Connect, TimedOut, false),
            // Windows: WSAEACCES from bind is the sharing rules' refusal; from connect it is
            // something else (a firewall) and is reported.
            (Platform::Windows, Step::Bind, PermissionDenied, true),
            (Platform::Windows, Step::Connect, PermissionDenied, false),
            (Platform::Windows, Step::Bind, AddrInUse, true),
            (Platform::Windows, Step::Connect, AddrInUse, true),
            (Platform::Windows, Step::Connect, ConnectionRefused, false),
        ];
        for (platform, step, kind, taken) in table {
            assert_eq!(
                platform.is_taken(step, &io::Error::from(kind)),
                taken,
                "{platform:?} {step:?} {kind:?}"
            );
        }
    }

    // The raw codes each kernel returns map to the kinds above (std's mapping), so the
    // decision holds for the real errors: checked for the platform the tests run on.
    #[cfg(target_os = "linux")]
    #[test]
    fn linux_codes() {
        let clash = io::Error::from_raw_os_error(99); // EADDRNOTAVAIL
        assert!(PLATFORM.is_taken(Step::Connect, &clash));
        let in_use = io::Error::from_raw_os_error(98); // EADDRINUSE
        assert!(PLATFORM.is_taken(Step::Bind, &in_use));
        let refused = io::Error::from_raw_os_error(111); // ECONNREFUSED
        assert!(!PLATFORM.is_taken(Step::Connect, &refused));
    }

    #[cfg(target_os = "macos")]
    #[test]
    fn macos_codes() {
        let clash = io::Error::from_raw_os_error(48); // EADDRINUSE
        assert!(PLATFORM.is_taken(Step::Connect, &clash));
    }

    #[cfg(windows)]
    #[test]
    fn windows_codes() {
        let denied = io::Error::from_raw_os_error(10013); // WSAEACCES
        assert!(PLATFORM.is_taken(Step::Bind, &denied));
        assert!(!PLATFORM.is_taken(Step::Connect, &denied));
        let in_use = io::Error::from_raw_os_error(10048); // WSAEADDRINUSE
        assert!(PLATFORM.is_taken(Step::Connect, &in_use));
    }
}
