//! Which side of a shared socket a connection is for, told by its first bytes. Pure: no sockets.
//!
//! Three bytes decide, as in go-libp2p's `tcpreuse`, so that both implementations route the same
//! connections the same way:
//!
//! | first bytes | kind |
//! |---|---|
//! | `\x13/m` (multistream-select's `\x13/multistream/1.0.0\n`) | [`Kind::Multistream`] |
//! | `GET`, `HEA`(D), `POS`(T), `PUT`, `DEL`(ETE), `CON`(NECT), `OPT`(IONS), `TRA`(CE), `PAT`(CH) | [`Kind::Http`] |
//! | `\x16\x03\x01` to `\x16\x03\x03` (a TLS handshake record: a ClientHello) | [`Kind::Tls`] |
//!
//! Anything else is unknown, and known as soon as a byte rules out every row: a client need not
//! send three bytes to be refused.

/// How many first bytes decide.
pub(crate) const PREFIX_LEN: usize = 3;

/// What a connection's first bytes say it speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// multistream-select: libp2p over plain TCP.
    Multistream,
    /// An HTTP/1.x request: a WebSocket handshake.
    Http,
    /// A TLS ClientHello: a secure WebSocket handshake.
    Tls,
}

impl Kind {
    /// Every kind, in the order of [`Kind::index`].
    pub(crate) const ALL: [Self; 3] = [Self::Multistream, Self::Http, Self::Tls];

    /// A dense index, for per-kind arrays.
    pub(crate) fn index(self) -> usize {
        match self {
            Self::Multistream => 0,
            Self::Http => 1,
            Self::Tls => 2,
        }
    }

    /// The name in logs, errors and metric labels.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Multistream => "multistream",
            Self::Http => "http",
            Self::Tls => "tls",
        }
    }
}

/// The verdict on the bytes received so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Known(Kind),
    /// No kind starts with these bytes.
    Unknown,
    /// Fewer than [`PREFIX_LEN`] bytes, and some kind starts with them.
    NeedMore,
}

/// The prefixes, each with its kind.
const PREFIXES: [(&[u8; PREFIX_LEN], Kind); 13] = [
    (b"\x13/m", Kind::Multistream),
    (b"GET", Kind::Http),
    (b"HEA", Kind::Http),
    (b"POS", Kind::Http),
    (b"PUT", Kind::Http),
    (b"DEL", Kind::Http),
    (b"CON", Kind::Http),
    (b"OPT", Kind::Http),
    (b"TRA", Kind::Http),
    (b"PAT", Kind::Http),
    (b"\x16\x03\x01", Kind::Tls),
    (b"\x16\x03\x02", Kind::Tls),
    (b"\x16\x03\x03", Kind::Tls),
];

/// Classifies a connection by its first bytes (only the first [`PREFIX_LEN`] are looked at).
pub(crate) fn classify(bytes: &[u8]) -> Verdict {
    let seen = &bytes[..bytes.len().min(PREFIX_LEN)];
    let mut matching = PREFIXES
        .iter()
        .filter(|(prefix, _)| prefix.starts_with(seen));
    match matching.next() {
        None => Verdict::Unknown,
        Some((_, kind)) if seen.len() == PREFIX_LEN => Verdict::Known(*kind),
        Some(_) => Verdict::NeedMore,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_bytes() {
        let table: &[(&[u8], Verdict)] = &[
            (
                b"\x13/multistream/1.0.0\n",
                Verdict::Known(Kind::Multistream),
            ),
            (b"\x13/m", Verdict::Known(Kind::Multistream)),
            (b"GET / HTTP/1.1\r\n", Verdict::Known(Kind::Http)),
            (b"HEAD / HTTP/1.1\r\n", Verdict::Known(Kind::Http)),
            (b"POST /x HTTP/1.1\r\n", Verdict::Known(Kind::Http)),
            (b"PUT /x HTTP/1.1\r\n", Verdict::Known(Kind::Http)),
            (b"DELETE /x HTTP/1.1\r\n", Verdict::Known(Kind::Http)),
            (b"CONNECT a:1 HTTP/1.1\r\n", Verdict::Known(Kind::Http)),
            (b"OPTIONS * HTTP/1.1\r\n", Verdict::Known(Kind::Http)),
            (b"TRACE / HTTP/1.1\r\n", Verdict::Known(Kind::Http)),
            (b"PATCH /x HTTP/1.1\r\n", Verdict::Known(Kind::Http)),
            (b"\x16\x03\x01\x02\x00\x01", Verdict::Known(Kind::Tls)),
            (b"\x16\x03\x03", Verdict::Known(Kind::Tls)),
            (b"\x16\x03\x02", Verdict::Known(Kind::Tls)),
            // Partial prefixes wait for more.
            (b"", Verdict::NeedMore),
            (b"\x13", Verdict::NeedMore),
            (b"\x13/", Verdict::NeedMore),
            (b"G", Verdict::NeedMore),
            (b"PA", Verdict::NeedMore),
            (b"\x16\x03", Verdict::NeedMore),
            // Anything else is unknown, as soon as a byte rules every kind out.
            (b"x", Verdict::Unknown),
            (b"\x00\x00\x00", Verdict::Unknown),
            (b"\x13/x", Verdict::Unknown),
            (b"\x12/m", Verdict::Unknown),
            (b"get / HTTP/1.1", Verdict::Unknown),
            (b"GEX", Verdict::Unknown),
            (b"PRI * HTTP/2.0\r\n", Verdict::Unknown),
            (b"SSH-2.0-OpenSSH", Verdict::Unknown),
            (b"\x16\x03\x00", Verdict::Unknown),
            (b"\x16\x03\x04", Verdict::Unknown),
            (b"\x16\x02", Verdict::Unknown),
            (b"\x15\x03\x03", Verdict::Unknown),
            (b"hello\r\n", Verdict::Unknown),
        ];
        for (bytes, verdict) in table {
            assert_eq!(classify(bytes), *verdict, "{bytes:?}");
        }
    }

    #[test]
    fn every_prefix_has_one_kind_and_kinds_index_densely() {
        for (i, (a, _)) in PREFIXES.iter().enumerate() {
            for (b, _) in &PREFIXES[i + 1..] {
                assert_ne!(a, b);
            }
        }
        for (i, kind) in Kind::ALL.iter().enumerate() {
            assert_eq!(kind.index(), i);
        }
    }
}
