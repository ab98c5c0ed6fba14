//! The pressure tests' peers, in the parent process: one listener on 0.0.0.0 bound to the
//! loopback device, accepting and holding every connection unread until told to end them; and
//! what the kernel says about our side of those connections (`/proc/net/tcp`).

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddr},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use socket2::{Domain, Socket, Type};

/// `/proc/net/tcp` states.
pub(crate) const FIN_WAIT1: u8 = 0x04;
pub(crate) const FIN_WAIT2: u8 = 0x05;
pub(crate) const TIME_WAIT: u8 = 0x06;

/// How the peers end their connections: a FIN, or a reset.
#[derive(Clone, Copy, Debug)]
pub(crate) enum End {
    Close,
    Reset,
}

/// Peers that accept every connection and hold it, unread, until [`Peers::end`].
pub(crate) struct Peers {
    pub(crate) port: u16,
    held: Arc<Mutex<Vec<std::net::TcpStream>>>,
    stop: Arc<AtomicBool>,
}

impl Peers {
    pub(crate) fn start() -> Self {
        let listener = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        listener
            .bind_device(Some(b"lo"))
            .expect("SO_BINDTODEVICE lo (Linux 5.7+, or CAP_NET_RAW): the peers need it");
        listener
            .bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)).into())
            .expect("bind");
        listener.listen(4096).expect("listen");
        let listener: std::net::TcpListener = listener.into();
        let port = listener.local_addr().expect("addr").port();
        let held = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (sink, stopped) = (held.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::Relaxed) {
                    return;
                }
                if let Ok(stream) = stream {
                    sink.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(stream);
                }
            }
        });
        Self { port, held, stop }
    }

    pub(crate) fn count(&self) -> usize {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Ends every held connection: a FIN, or a reset (`SO_LINGER` 0).
    pub(crate) fn end(&self, how: End) {
        let streams =
            std::mem::take(&mut *self.held.lock().unwrap_or_else(PoisonError::into_inner));
        for stream in streams {
            if let End::Reset = how {
                socket2::SockRef::from(&stream)
                    .set_linger(Some(Duration::ZERO))
                    .expect("SO_LINGER");
            }
        }
    }
}

impl Drop for Peers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accepting thread so that it sees the flag.
        let _ = std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, self.port));
    }
}

/// Connections between our listening port `local` and the peers' port, by `/proc/net/tcp`
/// state, as the kernel sees them on our side (held sockets and orphans alike).
pub(crate) fn kernel_states(local: u16, peer_port: u16) -> BTreeMap<u8, usize> {
    // The kernel hands the table out a page per read and resumes its walk by position, which
    // repeats or skips entries while other processes open and close sockets: entries are keyed
    // by their addresses, and callers read again until the count they expect shows.
    let text = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let port = |field: &str| {
        let hex = field.rsplit_once(':').expect("addr:port").1;
        u16::from_str_radix(hex, 16).expect("hex port")
    };
    let mut connections = BTreeMap::new();
    for line in text.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if port(fields[1]) == local && port(fields[2]) == peer_port {
            let state = u8::from_str_radix(fields[3], 16).expect("hex state");
            connections.insert((fields[1], fields[2]), state);
        }
    }
    let mut states = BTreeMap::new();
    for state in connections.into_values() {
        *states.entry(state).or_default() += 1;
    }
    states
}
