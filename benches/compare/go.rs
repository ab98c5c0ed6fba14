//! go-libp2p's port-reusing TCP transport (`p2p/net/reuseport`), measured by the Go program in
//! `benches/go` (built here with `go build`) in a child process. When its turn in a round comes,
//! it dials this benchmark's echo servers and answers with its samples; the times are taken in
//! Go around each call, so the pipe between the processes is not in them.
//!
//! The program is built and started once, by the first question about it ([`status`]), and
//! driven by one thread that writes its commands and reads its answers, so that any runtime
//! (the rows use two) can wait for an answer while its echo servers go on serving. It ends with
//! this process: its input closes and it exits.

use std::{
    io::{BufRead, BufReader, Write},
    net::SocketAddr,
    path::PathBuf,
    process::{Command, Stdio},
    sync::{OnceLock, mpsc},
    thread,
    time::Duration,
};

use serde_json::Value;
use tokio::sync::oneshot;

use crate::{samples::Samples, servers::Close};

/// A command line for the Go program and where its answer goes (nowhere: nobody waits).
struct Request {
    line: String,
    reply: Option<oneshot::Sender<Result<Value, String>>>,
}

/// The thread that talks to the running Go program, or why there is none.
static GO: OnceLock<Result<mpsc::Sender<Request>, String>> = OnceLock::new();

/// Why go-libp2p cannot be measured in this run, if it cannot; builds and starts the Go program
/// the first time.
pub(crate) fn status() -> Option<&'static str> {
    GO.get_or_init(start).as_ref().err().map(String::as_str)
}

/// Builds and starts the Go program and the thread that talks to it, or says why it cannot.
fn start() -> Result<mpsc::Sender<Request>, String> {
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
    let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(format!("{} started without its pipes", binary.display()));
    };
    let (requests, received) = mpsc::channel::<Request>();
    thread::spawn(move || {
        let mut answers = BufReader::new(stdout).lines();
        for Request { line, reply } in received {
            let answer = writeln!(stdin, "{line}")
                .map_err(|e| format!("write to the Go program: {e}"))
                .and_then(|()| match answers.next() {
                    Some(Ok(answer)) => Ok(answer),
                    Some(Err(e)) => Err(format!("read from the Go program: {e}")),
                    None => Err(format!("the Go program exited: {:?}", child.try_wait())),
                })
                .and_then(|answer| {
                    serde_json::from_str::<Value>(&answer)
                        .map_err(|e| format!("not a JSON line ({e}): {answer}"))
                })
                .and_then(|answer| match answer.get("error") {
                    Some(error) => Err(format!("{error}")),
                    None => Ok(answer),
                })
                .map_err(|e| format!("the Go program, `{line}`: {e}"));
            match (reply, answer) {
                (Some(reply), answer) => {
                    let _ = reply.send(answer);
                }
                (None, Err(e)) => eprintln!("{e}"),
                (None, Ok(_)) => {}
            }
        }
    });
    Ok(requests)
}

/// Sends `line` to the Go program; the receiver gets its answer. None if it is not running.
fn send(line: String) -> Option<oneshot::Receiver<Result<Value, String>>> {
    let requests = GO.get()?.as_ref().ok()?;
    let (reply, answer) = oneshot::channel();
    requests
        .send(Request {
            line,
            reply: Some(reply),
        })
        .ok()?;
    Some(answer)
}

/// The answer to `line`. A failure of the Go program ends the benchmark: its column would be
/// wrong otherwise.
async fn ask(line: String) -> Value {
    let Some(answer) = send(line.clone()) else {
        panic!("the Go program is not running, asked `{line}`");
    };
    match answer.await {
        Ok(Ok(value)) => value,
        Ok(Err(e)) => panic!("{e}"),
        Err(_) => panic!("the Go program's thread ended, asked `{line}`"),
    }
}

/// A reuseport.Transport with a listener on 127.0.0.1, inside the Go program; closed when
/// dropped.
#[derive(Debug)]
pub(crate) struct GoDialer {
    id: u64,
    /// The port of its listener.
    pub(crate) port: u16,
}

impl GoDialer {
    /// A new dialer with its own listener; None if the Go program is not running. Blocks until
    /// the Go program answers, which needs nothing of this process's runtimes.
    pub(crate) fn new() -> Option<Self> {
        let answer = send("dialer".into())?;
        let reply = match futures::executor::block_on(answer) {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => panic!("{e}"),
            Err(_) => panic!("the Go program's thread ended, asked for a dialer"),
        };
        let number = |key: &str| {
            reply[key]
                .as_u64()
                .unwrap_or_else(|| panic!("the Go program's dialer without {key}: {reply}"))
        };
        Some(Self {
            id: number("id"),
            port: u16::try_from(number("port")).expect("a TCP port fits in u16"),
        })
    }

    /// `n` dials to `server` one after the other, each echoing one byte and ending as `close`
    /// says: the client reads until the server closes, or closes at once.
    pub(crate) async fn sequential(&self, server: SocketAddr, n: usize, close: Close) -> Samples {
        let mode = match close {
            Close::ServerFirst => "server-first",
            Close::ClientFirst | Close::Hold(_) => "client-first",
        };
        samples(&ask(format!("seq {} {server} {n} {mode}", self.id)).await)
    }

    /// `n` dials at once, the i-th to `servers[i % len]`; the samples and the wall time in ms.
    pub(crate) async fn concurrent(&self, n: usize, servers: &[SocketAddr]) -> (Samples, f64) {
        let list: Vec<String> = servers.iter().map(ToString::to_string).collect();
        let reply = ask(format!("concurrent {} {n} {}", self.id, list.join(","))).await;
        let wall = reply["wall_ns"].as_f64().unwrap_or(f64::NAN) / 1e6;
        (samples(&reply), wall)
    }
}

impl Drop for GoDialer {
    fn drop(&mut self) {
        // Nobody waits for the answer; the thread reports a failure.
        if let Some(Ok(requests)) = GO.get() {
            let _ = requests.send(Request {
                line: format!("close {}", self.id),
                reply: None,
            });
        }
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
/// are counted in Go as they fail (failed `connect`, failed `bind`, other); it passes over no
/// pair without a system call.
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
