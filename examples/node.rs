//! A node a person can start on two machines:
//!
//! ```text
//! cargo run --example node -- --listen /ip4/0.0.0.0/tcp/4001
//! cargo run --example node -- --listen /ip4/0.0.0.0/tcp/4001 --dial /ip4/<first machine>/tcp/4001
//! ```
//!
//! It prints its listening addresses, each connection and whether the dial left from the
//! listening port, the addresses peers observe for it (identify), and ping round-trip times.
//! `--listen` may be given several times; without it the node listens on
//! `/ip4/0.0.0.0/tcp/4001`.
//!
//! With the `metrics` feature, `--metrics <ip:port>` serves the transport's Prometheus metrics
//! at `http://<ip:port>/metrics`:
//!
//! ```text
//! cargo run --example node --features metrics -- --metrics 127.0.0.1:9464
//! curl http://127.0.0.1:9464/metrics
//! ```

mod common;

use std::{net::SocketAddr, sync::Arc};

use futures::StreamExt;
use libp2p::{Multiaddr, core::ConnectedPoint, identify, ping, swarm::SwarmEvent};
use libp2p_reuseport::PortOrigin;

use common::BehaviourEvent;

struct Args {
    listen: Vec<Multiaddr>,
    dial: Vec<Multiaddr>,
    metrics: Option<SocketAddr>,
}

fn args() -> Result<Args, String> {
    let usage =
        "usage: node [--listen <multiaddr>]... [--dial <multiaddr>]... [--metrics <ip:port>]";
    let mut args = Args {
        listen: Vec::new(),
        dial: Vec::new(),
        metrics: None,
    };
    let mut iter = std::env::args().skip(1);
    while let Some(flag) = iter.next() {
        if let "-h" | "--help" = flag.as_str() {
            return Err(usage.into());
        }
        let value = iter
            .next()
            .ok_or(format!("{flag} needs a value\n{usage}"))?;
        let list = match flag.as_str() {
            "--listen" => &mut args.listen,
            "--dial" => &mut args.dial,
            "--metrics" => {
                let addr = value.parse().map_err(|e| format!("{flag} {value}: {e}"))?;
                args.metrics = Some(addr);
                continue;
            }
            other => return Err(format!("unknown argument {other}\n{usage}")),
        };
        list.push(value.parse().map_err(|e| format!("{flag} {value}: {e}"))?);
    }
    if args.listen.is_empty() {
        args.listen
            .push("/ip4/0.0.0.0/tcp/4001".parse().expect("valid"));
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = match args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    // Metrics come with the crate's `metrics` feature (prometheus-client is optional).
    #[cfg(not(feature = "metrics"))]
    if args.metrics.is_some() {
        eprintln!(
            "--metrics needs the metrics feature: cargo run --example node --features metrics -- ..."
        );
        std::process::exit(2);
    }
    // Where the transport registers its metrics, with the feature.
    #[cfg(feature = "metrics")]
    let mut registry = prometheus_client::registry::Registry::default();
    let mut swarm = common::swarm(
        Arc::new(|stream| {
            let (Ok(local), Ok(remote)) = (stream.local_addr(), stream.peer_addr()) else {
                return;
            };
            match stream.port_origin() {
                PortOrigin::Accepted => println!("tcp: accepted {remote} on {local}"),
                PortOrigin::Reused => {
                    println!("tcp: dialed {remote} from {local}, the listening port")
                }
                other => {
                    println!("tcp: dialed {remote} from {local}, not a listening port: {other:?}")
                }
            }
        }),
        |transport| {
            // The transport's metrics, when the example is built with them.
            #[cfg(feature = "metrics")]
            transport.register_metrics(&mut registry);
            #[cfg(not(feature = "metrics"))]
            let _ = transport;
        },
    )?;
    // Serve them, if asked to.
    #[cfg(feature = "metrics")]
    if let Some(addr) = args.metrics {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        println!("metrics at http://{}/metrics", listener.local_addr()?);
        tokio::spawn(metrics::serve(listener, Arc::new(registry)));
    }
    println!("peer id {}", swarm.local_peer_id());
    for addr in args.listen {
        swarm.listen_on(addr)?;
    }
    for addr in args.dial {
        println!("dialing {addr}");
        swarm.dial(addr)?;
    }
    loop {
        match swarm.select_next_some().await {
            SwarmEvent::NewListenAddr { address, .. } => {
                println!("listening on {address}/p2p/{}", swarm.local_peer_id());
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                println!("no longer listening on {address}");
            }
            SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, ..
            } => match endpoint {
                ConnectedPoint::Dialer { address, .. } => {
                    println!("connected to {peer_id} at {address}");
                }
                ConnectedPoint::Listener { send_back_addr, .. } => {
                    println!("accepted {peer_id} from {send_back_addr}");
                }
            },
            SwarmEvent::ConnectionClosed { peer_id, cause, .. } => {
                println!("connection to {peer_id} closed ({cause:?})");
            }
            SwarmEvent::OutgoingConnectionError { error, .. } => println!("dial failed: {error}"),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => println!("{peer_id} observes us at {}", info.observed_addr),
            SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event { peer, result, .. })) => {
                match result {
                    Ok(rtt) => println!("ping {peer}: {rtt:?}"),
                    Err(e) => println!("ping {peer} failed: {e}"),
                }
            }
            _ => {}
        }
    }
}

/// A minimal HTTP server for `GET /metrics`, enough for Prometheus and curl.
#[cfg(feature = "metrics")]
mod metrics {
    use std::sync::Arc;

    use prometheus_client::{encoding::text::encode, registry::Registry};
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::{TcpListener, TcpStream},
    };

    pub(crate) async fn serve(listener: TcpListener, registry: Arc<Registry>) {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let registry = registry.clone();
            tokio::spawn(async move {
                if let Err(e) = respond(stream, &registry).await {
                    eprintln!("metrics: {e}");
                }
            });
        }
    }

    async fn respond(mut stream: TcpStream, registry: &Registry) -> std::io::Result<()> {
        // Read the request head (bounded), then answer and close.
        let mut head = Vec::new();
        let mut buf = [0; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        let (status, content_type, body) = if head.starts_with(b"GET /metrics ") {
            let mut text = String::new();
            encode(&mut text, registry).map_err(std::io::Error::other)?;
            (
                "200 OK",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                text,
            )
        } else {
            ("404 Not Found", "text/plain", "try /metrics\n".to_string())
        };
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await
    }
}
