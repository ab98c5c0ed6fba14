//! go-libp2p's port-reusing TCP transport (`p2p/net/reuseport`), measured by the Go program in
//! `benches/go` (built here with `go build`) in a child process. When its turn in a round comes,
//! it dials this benchmark's echo servers and answers with its samples; the times are taken in
//! Go around each call, so the pipe between the processes is not in them.

use std::{
    io::{BufRead, BufReader, Write},
    net::SocketAddr,
    path::PathBuf,
    process::{Child, ChildStdin, Command, Stdio},
    thread,
    time::Duration,
};

use serde_json::Value;
use tokio::sync::mpsc;

use crate::Samples;

/// The Go program, driven one command line at a time (see `benches/go/main.go`).
pub(crate) struct GoBench {
    child: Child,
    stdin: ChildStdin,
    replies: mpsc::Receiver<String>,
}

/// A reuseport.Transport with a listener on 127.0.0.1, inside the Go program.
pub(crate) struct GoDialer {
    id: u64,
}

impl GoBench {
    /// Builds and starts the Go program, or says why it cannot.
    pub(crate) fn start() -> Result<Self, String> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/go");
        let binary = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("go-bench");
        let status = Command::new("go")
            .args(["build", "-buildvcs=false", "-o"])
            .arg(&binary)
            .arg(".")
            .current_dir(dir)
            .status()
            .map_err(|e| format!("cannot run `go build` ({e}): Go is needed on PATH"))?;
        if !status.success() {
            return Err(format!("`go build` in {dir} failed: {status}"));
        }
        let mut child = Command::new(&binary)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        // A thread and a channel rather than tokio's pipes: the rows run on two runtimes.
        let (sender, replies) = mpsc::channel(4);
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.blocking_send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Self {
            child,
            stdin,
            replies,
        })
    }

    async fn ask(&mut self, command: &str) -> Value {
        writeln!(self.stdin, "{command}").expect("write to the Go program");
        let line = self.replies.recv().await.expect("the Go program exited");
        let reply: Value = serde_json::from_str(&line).expect("a JSON line");
        if let Some(error) = reply.get("error") {
            panic!("the Go program: {command}: {error}");
        }
        reply
    }

    /// A new dialer with its own listener.
    pub(crate) async fn dialer(&mut self) -> GoDialer {
        let reply = self.ask("dialer").await;
        GoDialer {
            id: reply["id"].as_u64().expect("id"),
        }
    }

    pub(crate) async fn close(&mut self, dialer: GoDialer) {
        self.ask(&format!("close {}", dialer.id)).await;
    }

    /// `n` dials one after the other, each echoing one byte; the server closes first (and the
    /// client reads its end of stream) or the client does.
    pub(crate) async fn sequential(
        &mut self,
        dialer: &GoDialer,
        server: SocketAddr,
        n: usize,
        server_first: bool,
    ) -> Samples {
        let mode = if server_first {
            "server-first"
        } else {
            "client-first"
        };
        let reply = self
            .ask(&format!("seq {} {server} {n} {mode}", dialer.id))
            .await;
        samples(&reply)
    }

    /// `n` dials at once from a new dialer, the i-th to `servers[i % len]`; the samples and the
    /// wall time in ms.
    pub(crate) async fn concurrent(&mut self, n: usize, servers: &[SocketAddr]) -> (Samples, f64) {
        let list: Vec<String> = servers.iter().map(ToString::to_string).collect();
        let reply = self
            .ask(&format!("concurrent {n} {}", list.join(",")))
            .await;
        let wall = reply["wall_ns"].as_f64().unwrap_or(f64::NAN) / 1e6;
        (samples(&reply), wall)
    }
}

impl Drop for GoBench {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn count(reply: &Value, key: &str) -> usize {
    reply[key].as_u64().unwrap_or(0) as usize
}

fn durations(reply: &Value, key: &str) -> Vec<Duration> {
    reply[key]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_u64)
                .map(Duration::from_nanos)
                .collect()
        })
        .unwrap_or_default()
}

/// The Go program's answer as the samples of the other implementations. Its failed system calls
/// are counted in Go as they fail (failed `connect`, failed `bind`, other).
fn samples(reply: &Value) -> Samples {
    Samples {
        dials: count(reply, "dials"),
        times: durations(reply, "times_ns"),
        reused_times: durations(reply, "reused_times_ns"),
        other_times: durations(reply, "other_times_ns"),
        cycle_times: durations(reply, "cycles_ns"),
        reused: count(reply, "reused"),
        failed: count(reply, "failed"),
        failed_syscalls: count(reply, "failed_connect")
            + count(reply, "failed_bind")
            + count(reply, "failed_other"),
        busy: 0,
    }
}
