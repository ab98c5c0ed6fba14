//! Processes started inside a namespace, read line by line.

use std::{
    io::{BufRead, BufReader, Write},
    path::Path,
    process::{Child, ChildStdin, Command, ExitStatus, Stdio},
    sync::mpsc::{Receiver, RecvTimeoutError, channel},
    thread,
    time::{Duration, Instant},
};

/// A child process in a namespace; killed when dropped.
pub struct Proc {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    /// Every line read so far, for failure messages and reports.
    pub log: Vec<String>,
}

impl Proc {
    /// Starts `program args` in namespace `ns` with `env`. The process is killed when this
    /// (the test) process dies, even without running its destructors: `setpriv --pdeathsig`
    /// (util-linux), so that an interrupted run leaves no node running.
    pub fn spawn(
        ns: &str,
        name: &str,
        program: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", ns, "setpriv", "--pdeathsig", "KILL", "--"])
            .arg(program)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("start {name} in {ns}: {e}"));
        let (sender, lines) = channel();
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let err_sender = sender.clone();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if err_sender.send(format!("stderr: {line}")).is_err() {
                    break;
                }
            }
        });
        Self {
            name: name.to_string(),
            stdin: child.stdin.take(),
            child,
            lines,
            log: Vec::new(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id (the program's own: `ip netns exec` and `setpriv` exec it in place).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends one command line.
    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").unwrap_or_else(|e| panic!("{}: send {line}: {e}", self.name));
    }

    /// The next line starting with `prefix`, within `timeout`; other lines go to the log.
    pub fn expect(&mut self, prefix: &str, timeout: Duration) -> String {
        match self.wait_for(prefix, timeout) {
            Some(line) => line,
            None => panic!(
                "{}: no line starting with {prefix:?} within {timeout:?}; output:\n{}",
                self.name,
                self.log.join("\n")
            ),
        }
    }

    /// Like [`Self::expect`], but `None` on timeout or exit.
    pub fn wait_for(&mut self, prefix: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.log.push(line.clone());
                    if line.starts_with(prefix) {
                        return Some(line);
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// Moves the lines printed so far into the log.
    pub fn drain(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.log.push(line);
        }
    }

    /// Waits for the process to exit, reading its output; kills it after `timeout`.
    pub fn finish(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(100)) {
                    self.log.push(line);
                }
                return Some(status);
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return None;
            }
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(20)) {
                self.log.push(line);
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of `key=` in a line of `key=value` words.
pub fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}
