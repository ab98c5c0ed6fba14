//! Errors that say what failed, with the addresses involved, and keep their cause.
//!
//! Every error the transport returns or reports is an [`io::Error`] of the kind of the error
//! that caused it. Where the transport adds what it was doing ("dial 10.0.0.2:4001 from
//! 10.0.0.1:4001"), the original error stays inside: [`Error::source`] of the returned error
//! is the OS error, whose [`io::Error::raw_os_error`] is the OS code; [`raw_os_error`] finds
//! it in one call.

use std::{error::Error, fmt, io};

/// What the transport was doing when `source` happened.
#[derive(Debug)]
struct Context {
    what: String,
    source: io::Error,
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.what, self.source)
    }
}

impl Error for Context {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.source)
    }
}

/// `source` with what the transport was doing (`what`, with the addresses involved) in its
/// message; the same kind, and `source` reachable through [`Error::source`].
pub(crate) fn context(source: io::Error, what: impl fmt::Display) -> io::Error {
    io::Error::new(
        source.kind(),
        Context {
            what: what.to_string(),
            source,
        },
    )
}

/// A copy of `error` for a second receiver (an accept error of a shared socket goes to each
/// of its listeners): the same kind and message, and the same OS error where it has one.
pub(crate) fn duplicate(error: &io::Error) -> io::Error {
    match error.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(error.kind(), error.to_string()),
    }
}

/// The OS error code behind `error`, an error this crate returned or reported: its own
/// [`io::Error::raw_os_error`], or that of the first error in its chain of sources that has
/// one. For a dial refused by the remote on Linux, `Some(111)` (`ECONNREFUSED`).
///
/// ```
/// # use std::io;
/// let os = io::Error::from_raw_os_error(98);
/// assert_eq!(libp2p_reuseport::raw_os_error(&os), Some(98));
/// assert_eq!(libp2p_reuseport::raw_os_error(&io::Error::other("no code")), None);
/// ```
pub fn raw_os_error(error: &io::Error) -> Option<i32> {
    if let Some(code) = error.raw_os_error() {
        return Some(code);
    }
    let mut next = error.source();
    while let Some(inner) = next {
        if let Some(code) = inner
            .downcast_ref::<io::Error>()
            .and_then(io::Error::raw_os_error)
        {
            return Some(code);
        }
        next = inner.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_keeps_kind_code_and_source() {
        let os = io::Error::from_raw_os_error(111);
        let kind = os.kind();
        let wrapped = context(os, "dial 10.0.0.2:4001 from 10.0.0.1:4001");
        assert_eq!(wrapped.kind(), kind);
        assert!(
            wrapped
                .to_string()
                .starts_with("dial 10.0.0.2:4001 from 10.0.0.1:4001: "),
            "{wrapped}"
        );
        let source = wrapped
            .source()
            .and_then(|e| e.downcast_ref::<io::Error>())
            .expect("the OS error is the source");
        assert_eq!(source.raw_os_error(), Some(111));
        assert_eq!(raw_os_error(&wrapped), Some(111));
    }

    #[test]
    fn context_of_context() {
        let inner = context(io::Error::from_raw_os_error(98), "bind 127.0.0.1:4001");
        let outer = context(inner, "listen on 127.0.0.1:4001");
        assert_eq!(outer.kind(), io::Error::from_raw_os_error(98).kind());
        assert_eq!(raw_os_error(&outer), Some(98));
        assert!(
            outer
                .to_string()
                .starts_with("listen on 127.0.0.1:4001: bind 127.0.0.1:4001: "),
            "{outer}"
        );
    }

    #[test]
    fn duplicates_keep_the_code() {
        let os = io::Error::from_raw_os_error(24);
        assert_eq!(duplicate(&os).raw_os_error(), Some(24));
        let plain = io::Error::other("gone");
        let copy = duplicate(&plain);
        assert_eq!(
            (copy.kind(), copy.to_string()),
            (plain.kind(), plain.to_string())
        );
        assert_eq!(raw_os_error(&copy), None);
    }
}
