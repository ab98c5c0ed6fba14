//! TCP_INFO of many connections in one request, without `getsockopt`: a `SOCK_DIAG_BY_FAMILY`
//! dump with the `INET_DIAG_INFO` extension lists the TCP connections of the network namespace,
//! each with its `struct tcp_info`, as `ss -ti` shows them. The metrics feature only.

use std::{io, time::Duration};

use super::{
    AF_INET, AF_INET6, INET_DIAG_MSG_LEN, INET_DIAG_REQ_V2_LEN, IPPROTO_TCP, Malformed, NLM_F_DUMP,
    NLM_F_REQUEST, NLMSG_HDRLEN, SEQ, align, dump_with, header, socket_id, u32_at,
};
// Only the tests parse one datagram at a time (`parse`).
#[cfg(test)]
use super::{Part, parse_with};
use crate::sys::tcp_info::{Family, Sample, TcpInfo};

/// The attribute that carries `struct tcp_info`; asked for with bit `INET_DIAG_INFO - 1`.
const INET_DIAG_INFO: u16 = 2;

/// The states of a connection a stream can still own (`linux/tcp_states.h`): ESTABLISHED (1),
/// FIN_WAIT1 (4), FIN_WAIT2 (5), CLOSE_WAIT (8), LAST_ACK (9), CLOSING (11). Not SYN_SENT,
/// SYN_RECV, TIME_WAIT, CLOSE nor LISTEN: leftovers of closed connections and listeners are not
/// listed.
const OPEN_STATES: u32 = 1 << 1 | 1 << 4 | 1 << 5 | 1 << 8 | 1 << 9 | 1 << 11;

// Offsets in struct tcp_info (linux/tcp.h).
const TCPI_RTT: usize = 68;
const TCPI_TOTAL_RETRANS: usize = 100;
const TCPI_BYTES_ACKED: usize = 120;
const TCPI_BYTES_RECEIVED: usize = 128;
const TCPI_SEGS_OUT: usize = 136;
const TCPI_SEGS_IN: usize = 140;

/// Asks the kernel for the open TCP connections of `family` with their TCP_INFO: one request,
/// one datagram back per 32 KiB of answer (about 100 connections).
pub(crate) fn dump(family: Family) -> io::Result<Vec<Sample>> {
    let mut samples = Vec::new();
    dump_with(&request(family, SEQ), |msg| {
        samples.extend(connection(msg)?);
        Ok(())
    })?;
    Ok(samples)
}

/// A `SOCK_DIAG_BY_FAMILY` dump request for the TCP connections of `family` in [`OPEN_STATES`],
/// with `INET_DIAG_INFO`.
fn request(family: Family, seq: u32) -> [u8; NLMSG_HDRLEN + INET_DIAG_REQ_V2_LEN] {
    let mut buf = [0; NLMSG_HDRLEN + INET_DIAG_REQ_V2_LEN];
    header(&mut buf, NLM_F_REQUEST | NLM_F_DUMP, seq);
    let req = &mut buf[NLMSG_HDRLEN..];
    req[0] = match family {
        Family::V4 => AF_INET,
        Family::V6 => AF_INET6,
    };
    req[1] = IPPROTO_TCP;
    req[2] = 1 << (INET_DIAG_INFO - 1);
    req[4..8].copy_from_slice(&OPEN_STATES.to_ne_bytes());
    // The socket id stays zero: every socket, no filter.
    buf
}

/// Adds the connections of one datagram of the answer to request `seq` to `out`. Messages of
/// another sequence are skipped; so are connections without TCP_INFO. An `NLMSG_ERROR` is
/// returned as the OS error it carries; a message cut short as `InvalidData`.
// The answer's datagrams as the tests build them; `dump` parses through `dump_with`.
#[cfg(test)]
fn parse(datagram: &[u8], seq: u32, out: &mut Vec<Sample>) -> io::Result<Part> {
    parse_with(datagram, seq, |msg| {
        out.extend(connection(msg)?);
        Ok(())
    })
}

/// One `struct inet_diag_msg` and its attributes: the connection with its TCP_INFO, or `None`
/// without it (no `INET_DIAG_INFO`, or one too short to hold the round-trip time).
fn connection(msg: &[u8]) -> io::Result<Option<Sample>> {
    let (_, local, remote) = socket_id(msg)?;
    let mut attrs = &msg[INET_DIAG_MSG_LEN..];
    // struct rtattr: length (with the 4-byte header), type; padded to 4 bytes.
    while attrs.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([attrs[0], attrs[1]]));
        let kind = u16::from_ne_bytes([attrs[2], attrs[3]]);
        if len < 4 || len > attrs.len() {
            return Err(Malformed("attribute length").into());
        }
        if kind == INET_DIAG_INFO {
            return Ok(tcp_info(&attrs[4..len]).map(|info| Sample {
                local,
                remote,
                info,
            }));
        }
        attrs = attrs.get(align(len)..).unwrap_or_default();
    }
    Ok(None)
}

/// The figures of a `struct tcp_info` as long as the kernel sent; `None` if it is too short
/// to hold the round-trip time.
fn tcp_info(info: &[u8]) -> Option<TcpInfo> {
    let field = |at: usize| (info.len() >= at + 4).then(|| u32_at(info, at));
    let field64 = |at: usize| {
        let bytes = info.get(at..at + 8)?;
        Some(u64::from_ne_bytes(bytes.try_into().expect("8 bytes")))
    };
    Some(TcpInfo {
        rtt: Duration::from_micros(field(TCPI_RTT)?.into()),
        segments_sent: field(TCPI_SEGS_OUT),
        segments_received: field(TCPI_SEGS_IN),
        retransmitted: field(TCPI_TOTAL_RETRANS),
        bytes_acked: field64(TCPI_BYTES_ACKED),
        bytes_received: field64(TCPI_BYTES_RECEIVED),
    })
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, SocketAddr};

    use super::*;

    /// A netlink message of `kind` for request `seq` around `payload`, padded.
    fn message(kind: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let len = u32::try_from(NLMSG_HDRLEN + payload.len()).unwrap();
        let mut buf = Vec::new();
        buf.extend(len.to_ne_bytes());
        buf.extend(kind.to_ne_bytes());
        buf.extend(0x2u16.to_ne_bytes()); // NLM_F_MULTI
        buf.extend(seq.to_ne_bytes());
        buf.extend(4242u32.to_ne_bytes());
        buf.extend(payload);
        buf.resize(align(buf.len()), 0);
        buf
    }

    /// A `struct tcp_info` of `len` bytes with the given figures; the bytes acked and received
    /// are `out` and `in` times 1000 and 2^32 more.
    fn tcp_info_bytes(len: usize, rtt_us: u32, out: u32, r#in: u32, retrans: u32) -> Vec<u8> {
        let mut info = vec![0; len];
        for (at, value) in [
            (TCPI_RTT, rtt_us),
            (TCPI_SEGS_OUT, out),
            (TCPI_SEGS_IN, r#in),
            (TCPI_TOTAL_RETRANS, retrans),
        ] {
            if at + 4 <= len {
                info[at..at + 4].copy_from_slice(&value.to_ne_bytes());
            }
        }
        for (at, segments) in [(TCPI_BYTES_ACKED, out), (TCPI_BYTES_RECEIVED, r#in)] {
            if at + 8 <= len {
                let bytes = u64::from(segments) * 1000 + (1 << 32);
                info[at..at + 8].copy_from_slice(&bytes.to_ne_bytes());
            }
        }
        info
    }

    /// A `struct inet_diag_msg` for `local` to `remote`, with `info` as INET_DIAG_INFO and an
    /// attribute of another kind before it.
    fn diag_msg(local: SocketAddr, remote: SocketAddr, info: Option<&[u8]>) -> Vec<u8> {
        let mut msg = vec![0; INET_DIAG_MSG_LEN];
        msg[0] = if local.is_ipv4() { AF_INET } else { AF_INET6 };
        msg[1] = 1; // ESTABLISHED
        msg[4..6].copy_from_slice(&local.port().to_be_bytes());
        msg[6..8].copy_from_slice(&remote.port().to_be_bytes());
        for (at, ip) in [(8, local.ip()), (24, remote.ip())] {
            match ip {
                IpAddr::V4(ip) => msg[at..at + 4].copy_from_slice(&ip.octets()),
                IpAddr::V6(ip) => msg[at..at + 16].copy_from_slice(&ip.octets()),
            }
        }
        let attr = |kind: u16, payload: &[u8]| {
            let mut attr = Vec::new();
            attr.extend(u16::try_from(4 + payload.len()).unwrap().to_ne_bytes());
            attr.extend(kind.to_ne_bytes());
            attr.extend(payload);
            attr.resize(align(attr.len()), 0);
            attr
        };
        msg.extend(attr(1, &[7; 5])); // INET_DIAG_MEMINFO-like, odd length: padded
        if let Some(info) = info {
            msg.extend(attr(INET_DIAG_INFO, info));
        }
        msg
    }

    #[test]
    fn the_request_asks_for_tcp_info_of_open_tcp_connections() {
        let buf = request(Family::V6, 9);
        assert_eq!(buf.len(), 72);
        assert_eq!(u32_at(&buf, 0), 72);
        assert_eq!(u16::from_ne_bytes([buf[4], buf[5]]), 20);
        assert_eq!(u16::from_ne_bytes([buf[6], buf[7]]), 0x301);
        assert_eq!(u32_at(&buf, 8), 9);
        assert_eq!(&buf[16..20], &[10, 6, 0b10, 0]);
        assert_eq!(u32_at(&buf, 20), 0b1011_0011_0010);
        assert!(buf[24..].iter().all(|&b| b == 0), "no socket filter");
        assert_eq!(request(Family::V4, 9)[16], 2);
    }

    #[test]
    fn connections_of_a_datagram() {
        let v4 = (
            "10.0.0.1:4001".parse().unwrap(),
            "10.0.0.2:5".parse().unwrap(),
        );
        let v6 = (
            "[2001:db8::1]:4001".parse().unwrap(),
            "[::1]:65535".parse().unwrap(),
        );
        // Linux 6.x sends 232 bytes or more (a kernel newer than these tests sends more, which
        // is ignored); before 3.15, 104 (no byte nor segment counts); 4.1, 136 (bytes, no
        // segments).
        let full = tcp_info_bytes(248, 57, 10, 11, 2);
        let old = tcp_info_bytes(104, 1_500_000, 10, 11, 3);
        let bytes_only = tcp_info_bytes(136, 100, 10, 11, 0);
        let mut datagram = message(20, 1, &diag_msg(v4.0, v4.1, Some(&full)));
        datagram.extend(message(20, 1, &diag_msg(v6.0, v6.1, Some(&old))));
        datagram.extend(message(20, 1, &diag_msg(v6.1, v6.0, Some(&bytes_only))));
        // No INET_DIAG_INFO, a TCP_INFO too short for the RTT, another request's answer.
        datagram.extend(message(20, 1, &diag_msg(v4.1, v4.0, None)));
        datagram.extend(message(20, 1, &diag_msg(v4.1, v4.0, Some(&[0; 40]))));
        datagram.extend(message(20, 2, &diag_msg(v4.1, v4.0, Some(&full))));
        let mut out = Vec::new();
        assert_eq!(parse(&datagram, 1, &mut out).unwrap(), Part::More);
        assert_eq!(
            out,
            [
                Sample {
                    local: v4.0,
                    remote: v4.1,
                    info: TcpInfo {
                        rtt: Duration::from_micros(57),
                        segments_sent: Some(10),
                        segments_received: Some(11),
                        retransmitted: Some(2),
                        bytes_acked: Some(10_000 + (1 << 32)),
                        bytes_received: Some(11_000 + (1 << 32)),
                    },
                },
                Sample {
                    local: v6.0,
                    remote: v6.1,
                    info: TcpInfo {
                        rtt: Duration::from_millis(1500),
                        segments_sent: None,
                        segments_received: None,
                        retransmitted: Some(3),
                        bytes_acked: None,
                        bytes_received: None,
                    },
                },
                Sample {
                    local: v6.1,
                    remote: v6.0,
                    info: TcpInfo {
                        rtt: Duration::from_micros(100),
                        segments_sent: None,
                        segments_received: None,
                        retransmitted: Some(0),
                        bytes_acked: Some(10_000 + (1 << 32)),
                        bytes_received: Some(11_000 + (1 << 32)),
                    },
                },
            ]
        );
        let done = message(3, 1, &0i32.to_ne_bytes());
        assert_eq!(parse(&done, 1, &mut out).unwrap(), Part::Done);
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn kernel_errors_keep_their_code() {
        let denied = message(2, 1, &(-1i32).to_ne_bytes()); // -EPERM
        let e = parse(&denied, 1, &mut Vec::new()).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(1));
        let ack = message(2, 1, &0i32.to_ne_bytes());
        assert_eq!(parse(&ack, 1, &mut Vec::new()).unwrap(), Part::More);
    }

    #[test]
    fn truncated_answers_are_invalid_data() {
        let one = message(
            20,
            1,
            &diag_msg(
                "1.2.3.4:1".parse().unwrap(),
                "5.6.7.8:2".parse().unwrap(),
                None,
            ),
        );
        for cut in [3, NLMSG_HDRLEN + 10, one.len() - 4] {
            let e = parse(&one[..cut], 1, &mut Vec::new()).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "cut at {cut}: {e}");
        }
        let mut bad_attr = diag_msg(
            "1.2.3.4:1".parse().unwrap(),
            "5.6.7.8:2".parse().unwrap(),
            None,
        );
        bad_attr.extend([200, 0, 2, 0]);
        let e = parse(&message(20, 1, &bad_attr), 1, &mut Vec::new()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        let mut family = diag_msg(
            "1.2.3.4:1".parse().unwrap(),
            "5.6.7.8:2".parse().unwrap(),
            None,
        );
        family[0] = 1; // AF_UNIX
        assert!(parse(&message(20, 1, &family), 1, &mut Vec::new()).is_err());
    }

    /// The offsets above against the running kernel: a loopback connection that exchanged data
    /// is listed with a round-trip time and its segments.
    #[test]
    fn a_real_connection_is_listed() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let mut buf = [0; 4];
        for _ in 0..5 {
            client.write_all(b"ping").unwrap();
            server.read_exact(&mut buf).unwrap();
            server.write_all(b"pong").unwrap();
            client.read_exact(&mut buf).unwrap();
        }
        let (local, remote) = (client.local_addr().unwrap(), client.peer_addr().unwrap());
        let samples = dump(Family::V4).expect("sock_diag dump");
        let sample = samples
            .iter()
            .find(|s| s.local == local && s.remote == remote)
            .unwrap_or_else(|| panic!("{local} -> {remote} not in {samples:?}"));
        let info = sample.info;
        assert!(
            info.rtt > Duration::ZERO && info.rtt < Duration::from_secs(1),
            "{info:?}"
        );
        // The handshake's ACK, 5 pings and the ACKs of 5 pongs (some may be delayed).
        assert!(info.segments_sent.unwrap() >= 6, "{info:?}");
        assert!(info.segments_received.unwrap() >= 6, "{info:?}");
        assert_eq!(info.retransmitted, Some(0));
        // 20 bytes each way; the kernel counts our SYN as an acknowledged byte.
        assert_eq!(
            (info.bytes_acked, info.bytes_received),
            (Some(21), Some(20))
        );
        // The listener is not an open connection.
        assert!(
            !samples
                .iter()
                .any(|s| s.local == listener.local_addr().unwrap() && s.remote.port() == 0)
        );
    }
}
