//! IPv6 temporary ("privacy") addresses (RFC 8981, formerly RFC 4941) on Linux: which
//! stable address a temporary one stands in for.
//!
//! Where temporary addresses are on (`use_tempaddr = 2`, the default of most desktop
//! distributions, and of Android, macOS, iOS and Windows), the kernel prefers a temporary
//! address as the source of every new connection (RFC 6724, rule 7), and replaces it with a new
//! one every day or so (`temp_prefered_lft`). For a dial from a listening port that is wrong
//! twice over: the port is advertised, so the address hides nothing, and the address peers learn
//! (the relay's observation of our connection to it, made hours ago from yesterday's temporary
//! address) is not the one today's hole punch leaves from, so the stateful firewall in front of
//! us drops the other peer's SYN to the address it learned. A dial from a listening port
//! therefore leaves from the interface's stable address instead, which does not change.
//!
//! `/proc/net/if_inet6` lists every IPv6 address with its interface, prefix length, scope and
//! flags (`IFA_F_TEMPORARY` and the others of `linux/if_addr.h`); a reading is used for a
//! second, or until it is asked about an address it does not list (a new temporary address).
//! Where it cannot be read, nothing changes (Android is left out: it denies apps `/proc/net`
//! since Android 10 and logs every denied read).

use std::{
    net::Ipv6Addr,
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

// linux/if_addr.h: the low byte of ifa_flags, as /proc/net/if_inet6 prints it.
const IFA_F_TEMPORARY: u32 = 0x01;
const IFA_F_DADFAILED: u32 = 0x08;
const IFA_F_DEPRECATED: u32 = 0x20;
const IFA_F_TENTATIVE: u32 = 0x40;
/// `RT_SCOPE_UNIVERSE`, as `/proc/net/if_inet6` prints the scope of a global address.
const SCOPE_GLOBAL: u32 = 0;

/// How long a reading of `/proc/net/if_inet6` is used.
const FRESH_FOR: Duration = Duration::from_secs(1);

/// One line of `/proc/net/if_inet6`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    addr: Ipv6Addr,
    interface: u32,
    prefix_len: u8,
    scope: u32,
    flags: u32,
}

/// The stable address that a dial from a listening port uses in place of `addr`, if `addr` is a
/// temporary address: a global address on the same interface and in the same prefix that is
/// neither temporary nor deprecated nor still being checked for duplicates. `None` when `addr`
/// is not temporary, when it has no such counterpart, or when the addresses cannot be read.
pub(crate) fn stable_counterpart(addr: Ipv6Addr) -> Option<Ipv6Addr> {
    static READING: Mutex<Option<(Instant, Vec<Entry>)>> = Mutex::new(None);
    let mut reading = READING.lock().unwrap_or_else(PoisonError::into_inner);
    // A reading is used for a second, unless it does not know `addr`: the kernel made it since.
    let fresh = reading.as_ref().is_some_and(|(read, entries)| {
        read.elapsed() < FRESH_FOR && entries.iter().any(|e| e.addr == addr)
    });
    if !fresh {
        let text = std::fs::read_to_string("/proc/net/if_inet6").ok()?;
        *reading = Some((Instant::now(), parse(&text)));
    }
    let (_, entries) = reading.as_ref()?;
    counterpart(entries, addr)
}

/// The entries of `/proc/net/if_inet6`'s text; lines that do not parse are skipped.
fn parse(text: &str) -> Vec<Entry> {
    text.lines().filter_map(entry).collect()
}

/// `20010db8000000000000000000000002 03 40 00 80 eth0`: the address in hex, then the interface
/// index, prefix length, scope and flags, each in hex, then the interface's name.
fn entry(line: &str) -> Option<Entry> {
    let mut fields = line.split_whitespace();
    let addr = u128::from_str_radix(fields.next()?, 16).ok()?;
    let mut hex = || u32::from_str_radix(fields.next()?, 16).ok();
    Some(Entry {
        addr: Ipv6Addr::from(addr),
        interface: hex()?,
        prefix_len: u8::try_from(hex()?).ok().filter(|len| *len <= 128)?,
        scope: hex()?,
        flags: hex()?,
    })
}

fn counterpart(entries: &[Entry], addr: Ipv6Addr) -> Option<Ipv6Addr> {
    let temporary = entries
        .iter()
        .find(|e| e.addr == addr && e.flags & IFA_F_TEMPORARY != 0)?;
    let unusable = IFA_F_TEMPORARY | IFA_F_DEPRECATED | IFA_F_TENTATIVE | IFA_F_DADFAILED;
    entries
        .iter()
        .find(|e| {
            e.interface == temporary.interface
                && e.scope == SCOPE_GLOBAL
                && e.flags & unusable == 0
                && same_prefix(e.addr, addr, temporary.prefix_len)
        })
        .map(|e| e.addr)
}

fn same_prefix(a: Ipv6Addr, b: Ipv6Addr, len: u8) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    u128::from(a) & mask == u128::from(b) & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Read in a network namespace with `use_tempaddr = 2` after `ip -6 addr add
    /// 2001:db8:1::2/64 dev v0 mngtmpaddr` (the kernel made the temporary address) and a second
    /// interface with a stable address in another prefix; the deprecated temporary address of a
    /// rotation, and the link-local addresses.
    const IF_INET6: &str = "\
20010db80001000042a1ddf2533689b4 03 40 00 01       v0
20010db8000100003ec47215cfb5741d 03 40 00 21       v0
20010db8000100000000000000000002 03 40 00 80       v0
fe800000000000005cf43bfffe872bd9 03 40 20 c0       v0
20010db8000200000000000000000007 04 40 00 80       v1
20010db800020000aaaaaaaaaaaaaaaa 04 40 00 01       v1
20010db8000300000000000000000009 05 40 00 c0       v2
20010db800030000bbbbbbbbbbbbbbbb 05 40 00 01       v2
00000000000000000000000000000001 01 80 10 80       lo
";

    fn ip(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn a_temporary_address_stands_for_the_stable_one_of_its_interface_and_prefix() {
        let entries = parse(IF_INET6);
        assert_eq!(entries.len(), 9);
        assert_eq!(
            counterpart(&entries, ip("2001:db8:1:0:42a1:ddf2:5336:89b4")),
            Some(ip("2001:db8:1::2"))
        );
        // Deprecated by a rotation, still temporary: the same stable address.
        assert_eq!(
            counterpart(&entries, ip("2001:db8:1:0:3ec4:7215:cfb5:741d")),
            Some(ip("2001:db8:1::2"))
        );
        assert_eq!(
            counterpart(&entries, ip("2001:db8:2::aaaa:aaaa:aaaa:aaaa")),
            Some(ip("2001:db8:2::7"))
        );
    }

    #[test]
    fn stable_unknown_and_lone_temporary_addresses_stay() {
        let entries = parse(IF_INET6);
        for addr in ["2001:db8:1::2", "2001:db8:9::1", "::1"] {
            assert_eq!(counterpart(&entries, ip(addr)), None, "{addr}");
        }
        // v2's stable address is still tentative (flags c0 = tentative, permanent).
        assert_eq!(
            counterpart(&entries, ip("2001:db8:3::bbbb:bbbb:bbbb:bbbb")),
            None
        );
    }

    #[test]
    fn lines_that_do_not_parse_are_skipped() {
        let text = "zz 03 40 00 01 v0\n20010db8000100000000000000000002 03 ff 00 80 v0\n\n";
        assert_eq!(parse(text), []);
    }

    #[test]
    fn prefixes_compare_by_their_length() {
        assert!(same_prefix(ip("2001:db8:1::1"), ip("2001:db8:1::2"), 64));
        assert!(!same_prefix(ip("2001:db8:1::1"), ip("2001:db8:2::1"), 64));
        assert!(same_prefix(ip("2001:db8:1::1"), ip("2001:db8:2::1"), 0));
        assert!(!same_prefix(ip("2001:db8:1::1"), ip("2001:db8:1::2"), 128));
    }
}
