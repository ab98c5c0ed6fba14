//! The listening TCP sockets the kernel lists in `/proc/net/tcp` and `/proc/net/tcp6` (Linux):
//! the parsing, pure and portable; the platform layer reads the files
//! ([`crate::sys::listening_sockets`]).

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    num::ParseIntError,
};

/// The `st` column of a socket in the LISTEN state (`TCP_LISTEN` = 10).
const LISTEN: &str = "0A";

/// The local addresses of the sockets in state LISTEN in the text of `/proc/net/tcp`
/// (`v6 == false`) or `/proc/net/tcp6`. Lines that do not parse are skipped.
///
/// Each line reads `sl local_address rem_address st ...`; an address is `IP:PORT` in hex, the
/// port as a number, the IP as the kernel's 32-bit words (one for IPv4, four for IPv6) printed
/// as native-endian integers, so their native-endian bytes are the address's bytes in network
/// order.
pub(crate) fn parse_listening(text: &str, v6: bool) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let local = fields.nth(1)?;
            let state = fields.nth(1)?;
            if state != LISTEN {
                return None;
            }
            parse_addr(local, v6).ok()
        })
        .collect()
}

fn parse_addr(text: &str, v6: bool) -> Result<SocketAddr, Malformed> {
    let (ip, port) = text.split_once(':').ok_or(Malformed)?;
    let port = u16::from_str_radix(port, 16)?;
    let ip: IpAddr = match (v6, ip.len()) {
        (false, 8) => Ipv4Addr::from(word(ip)?.to_ne_bytes()).into(),
        (true, 32) => {
            let mut bytes = [0; 16];
            for (i, chunk) in bytes.chunks_exact_mut(4).enumerate() {
                chunk.copy_from_slice(&word(&ip[i * 8..i * 8 + 8])?.to_ne_bytes());
            }
            Ipv6Addr::from(bytes).into()
        }
        _ => return Err(Malformed),
    };
    Ok(SocketAddr::new(ip, port))
}

fn word(hex: &str) -> Result<u32, Malformed> {
    Ok(u32::from_str_radix(hex, 16)?)
}

/// A line of the file that is not what the kernel writes.
#[derive(Debug)]
struct Malformed;

impl From<ParseIntError> for Malformed {
    fn from(_: ParseIntError) -> Self {
        Self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode";

    /// An address as the kernel prints it, on this machine's byte order.
    fn kernel(addr: SocketAddr) -> String {
        let words: Vec<String> = match addr.ip() {
            IpAddr::V4(ip) => vec![format!("{:08X}", u32::from_ne_bytes(ip.octets()))],
            IpAddr::V6(ip) => ip
                .octets()
                .chunks_exact(4)
                .map(|c| format!("{:08X}", u32::from_ne_bytes([c[0], c[1], c[2], c[3]])))
                .collect(),
        };
        format!("{}:{:04X}", words.concat(), addr.port())
    }

    fn line(n: usize, local: SocketAddr, state: &str) -> String {
        format!(
            "  {n}: {} {} {state} 00000000:00000000 00:00000000 00000000     0        0 {} 1 0000000000000000 100 0 0 10 0",
            kernel(local),
            if local.is_ipv4() {
                "00000000:0000"
            } else {
                "00000000000000000000000000000000:0000"
            },
            1000 + n
        )
    }

    #[test]
    fn listening_sockets_of_either_family() {
        let table: &[(&str, &str, bool)] = &[
            ("127.0.0.1:4001", "0A", true),
            ("0.0.0.0:4001", "0A", true),
            ("192.0.2.7:65535", "0A", true),
            ("127.0.0.1:4001", "01", false), // ESTABLISHED
            ("127.0.0.1:4001", "06", false), // TIME_WAIT
            ("[::1]:4001", "0A", true),
            ("[::]:4001", "0A", true),
            ("[2001:db8::1]:80", "0A", true),
            ("[2001:db8::1]:80", "08", false), // CLOSE_WAIT
        ];
        for v6 in [false, true] {
            let mut text = format!("{HEADER}\n");
            let mut expected = Vec::new();
            for (n, (addr, state, listening)) in table.iter().enumerate() {
                let addr: SocketAddr = addr.parse().unwrap();
                if addr.is_ipv6() != v6 {
                    continue;
                }
                text += &line(n, addr, state);
                text.push('\n');
                if *listening {
                    expected.push(addr);
                }
            }
            assert_eq!(parse_listening(&text, v6), expected, "v6: {v6}\n{text}");
        }
    }

    // Lines copied from a little-endian machine (x86_64): on a big-endian one the kernel prints
    // the same addresses with the bytes of each word the other way round.
    #[cfg(target_endian = "little")]
    #[test]
    fn lines_as_linux_prints_them_on_little_endian() {
        let v4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:0FA1 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 27365 1 0000000000000000 100 0 0 10 0
   1: 00000000:0FA1 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 27366 1 0000000000000000 100 0 0 10 0
   2: 0100007F:0FA1 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 27367 1 0000000000000000 20 4 30 10 -1";
        assert_eq!(
            parse_listening(v4, false),
            [
                "127.0.0.1:4001".parse().unwrap(),
                "0.0.0.0:4001".parse().unwrap()
            ] as [SocketAddr; 2]
        );
        let v6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:0FA1 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 27368 1 0000000000000000 100 0 0 10 0
   1: B80D0120000000000000000001000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 27369 1 0000000000000000 100 0 0 10 0";
        assert_eq!(
            parse_listening(v6, true),
            [
                "[::1]:4001".parse().unwrap(),
                "[2001:db8::1]:80".parse().unwrap()
            ] as [SocketAddr; 2]
        );
    }

    #[test]
    fn malformed_lines_are_skipped() {
        let good = line(0, "127.0.0.1:4001".parse().unwrap(), "0A");
        for bad in [
            "",
            "garbage",
            "   0: 0100007F 00000000:0000 0A",
            "   0: 0100007G:0FA1 00000000:0000 0A",
            "   0: 0100007F:FFFFF 00000000:0000 0A",
            "   0: 00000000000000000000000001000000:0FA1 00000000:0000 0A",
            "   0: 0100007F:0FA1",
        ] {
            let text = format!("{HEADER}\n{bad}\n{good}\n");
            assert_eq!(
                parse_listening(&text, false),
                ["127.0.0.1:4001".parse::<SocketAddr>().unwrap()],
                "{bad:?}"
            );
        }
    }
}
