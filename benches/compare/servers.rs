//! The raw tokio servers every implementation dials: one-byte echo servers that end their
//! connections in a chosen way, and the listener they (and the throughput sink) stand on.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// A tokio listener on 127.0.0.1 with the transports' backlog of 1024. (`TcpListener::bind`
/// uses 128, which drops SYNs of 200 concurrent dials: a 1 s retransmit for some of them.)
pub(crate) fn raw_listener() -> tokio::net::TcpListener {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind(([127, 0, 0, 1], 0).into()).expect("bind");
    socket.listen(1024).expect("listen")
}

/// How the echo server ends a connection.
#[derive(Clone, Copy)]
pub(crate) enum Close {
    /// Echo, then close at once.
    ServerFirst,
    /// Echo, wait for the client's FIN, then close.
    ClientFirst,
    /// Echo, wait for the client's FIN, keep the connection this long, then count it as reset if
    /// it was.
    Hold(Duration),
}

/// A raw tokio echo server; returns its address and the count of connections found reset.
pub(crate) async fn echo_server(close: Close) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = raw_listener();
    let addr = listener.local_addr().expect("addr");
    let resets = Arc::new(AtomicUsize::new(0));
    let counter = resets.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut byte = [0];
                if stream.read_exact(&mut byte).await.is_err()
                    || stream.write_all(&byte).await.is_err()
                {
                    return;
                }
                match close {
                    Close::ServerFirst => {}
                    Close::ClientFirst => {
                        let mut rest = [0; 64];
                        while matches!(stream.read(&mut rest).await, Ok(n) if n > 0) {}
                    }
                    Close::Hold(hold) => {
                        let mut rest = [0; 64];
                        while matches!(stream.read(&mut rest).await, Ok(n) if n > 0) {}
                        tokio::time::sleep(hold).await;
                        let reset = matches!(stream.take_error(), Ok(Some(_)))
                            || matches!(stream.try_read(&mut rest), Err(e) if e.kind() != std::io::ErrorKind::WouldBlock);
                        if reset {
                            counter.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            });
        }
    });
    (addr, resets)
}
