//! Names the platform conditions of `src/sys` once, so that no `cfg` is written twice (once
//! negated) across the crate.

fn main() {
    cfg_aliases::cfg_aliases! {
        // Linux and Android share a kernel: SO_REUSEPORT with the same effective UID, the
        // pair clash at connect is EADDRNOTAVAIL, /proc has the TCP settings.
        linux_like: { any(target_os = "linux", target_os = "android") },
        // SO_REUSEPORT with the meaning the crate relies on (a listener and connected sockets
        // of one user share a port). Solaris and illumos use the name for something else;
        // socket2 does not expose it on the others listed.
        reuseport: {
            all(
                unix,
                not(any(
                    target_os = "solaris",
                    target_os = "illumos",
                    target_os = "cygwin",
                    target_os = "nuttx",
                    target_os = "wasi"
                ))
            )
        },
        // The kernel's socket table through the sock_diag netlink interface (netlink-sys, a
        // safe API): the state of one pair, for connections closed at once, and TCP_INFO. Not
        // on Android, whose SELinux policy denies apps NETLINK_SOCK_DIAG sockets; other kernels
        // have no sock_diag.
        sock_diag: { target_os = "linux" },
        // TCP_INFO is sampled for the metrics feature: through sock_diag (the crate forbids the
        // unsafe getsockopt); not on macOS, whose TCP_CONNECTION_INFO only getsockopt reads.
        tcp_info: { all(sock_diag, feature = "metrics") },
        // socket(2) takes SOCK_NONBLOCK, which saves an fcntl per socket.
        sock_nonblock: {
            any(
                linux_like,
                target_os = "freebsd",
                target_os = "netbsd",
                target_os = "openbsd",
                target_os = "dragonfly"
            )
        },
    }
}
