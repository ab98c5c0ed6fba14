//! The peers that the scale rows' live connections go to: a child process (this benchmark
//! binary again) with one listener on 0.0.0.0 bound to the loopback device, so that every
//! loopback address 127.x.y.z reaches it (a distinct remote, and so a distinct pair in the
//! port-reuse table, for each connection) and nothing from outside the machine does. It accepts
//! and holds every connection without reading, in its own process so that neither its
//! descriptors nor its memory count against the measured one, until told to close them.
//!
//! Its commands on stdin, one a line: `close N` waits until N connections were accepted since
//! the last close, closes them all and answers `closed N`. It exits when stdin closes.

use std::{
    io::{BufRead, BufReader, Write},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use socket2::{Domain, Socket, Type};

use super::{ROLE, raise_descriptor_limit};

/// The value of [`ROLE`] that makes this binary a sink.
pub(super) const SINK: &str = "sink";

/// The sink process's side: accept and hold, close on command.
pub(super) fn main() {
    raise_descriptor_limit(super::DESCRIPTORS);
    let listener = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    listener
        .bind_device(Some(b"lo"))
        .expect("SO_BINDTODEVICE lo (Linux 5.7+, or CAP_NET_RAW)");
    listener
        .bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)).into())
        .expect("bind");
    listener.listen(4096).expect("listen");
    let listener: std::net::TcpListener = listener.into();
    let port = listener.local_addr().expect("addr").port();
    let held: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    let sink = held.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            match stream {
                Ok(stream) => sink
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(stream),
                Err(e) => eprintln!("sink: accept: {e}"),
            }
        }
    });
    println!("sink {port}");
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let Some(n) = line
            .strip_prefix("close ")
            .and_then(|n| n.parse::<usize>().ok())
        else {
            eprintln!("sink: unknown command {line:?}");
            continue;
        };
        let started = Instant::now();
        let closed = loop {
            let mut held = held.lock().unwrap_or_else(PoisonError::into_inner);
            if held.len() >= n || started.elapsed() > Duration::from_secs(30) {
                break std::mem::take(&mut *held);
            }
            drop(held);
            std::thread::sleep(Duration::from_millis(2));
        };
        let count = closed.len();
        drop(closed);
        println!("closed {count}");
    }
}

/// The benchmark's handle on its sink.
pub(crate) struct Sink {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    /// The sink's port on every loopback address.
    pub(crate) port: u16,
    /// Connections made to the sink since its last close.
    pub(crate) pending: usize,
}

impl Sink {
    pub(crate) fn start() -> Self {
        let mut child = Command::new(std::env::current_exe().expect("this binary"))
            .env(ROLE, SINK)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the sink");
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
        let port = read_line(&mut stdout)
            .strip_prefix("sink ")
            .and_then(|p| p.parse().ok())
            .expect("the sink's port");
        Self {
            child,
            stdin,
            stdout,
            port,
            pending: 0,
        }
    }

    /// Closes every connection made to the sink since the last close; returns how many.
    pub(crate) fn close_all(&mut self) -> usize {
        let stdin = self.stdin.as_mut().expect("open until drop");
        writeln!(stdin, "close {}", self.pending).expect("command the sink");
        let closed: usize = read_line(&mut self.stdout)
            .strip_prefix("closed ")
            .and_then(|n| n.parse().ok())
            .expect("the sink's answer");
        assert_eq!(
            closed, self.pending,
            "the sink accepted every connection made to it"
        );
        self.pending = 0;
        closed
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        // End of its stdin: the sink exits.
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

fn read_line(stdout: &mut BufReader<ChildStdout>) -> String {
    let mut line = String::new();
    stdout.read_line(&mut line).expect("read the sink");
    line.trim().to_string()
}
