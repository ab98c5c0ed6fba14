//! File-descriptor exhaustion: a listener whose accept fails with EMFILE reports ListenerError,
//! backs off instead of spinning, and accepts again once descriptors are free; a dial fails with
//! a clear error. Runs in a child process whose RLIMIT_NOFILE is lowered with `ulimit -n`.

#![cfg(target_os = "linux")]

mod util;

use std::{
    fs::File,
    io::{Read, Seek, SeekFrom},
    time::{Duration, Instant},
};

use libp2p_core::transport::{PortUse, TransportEvent};
use util::*;

const CHILD: &str = "LIBP2P_REUSEPORT_EXHAUSTION_CHILD";

#[test]
fn listener_survives_descriptor_exhaustion() {
    let stdout = run_child_with_descriptor_limit(64, "child_exhausts_descriptors", CHILD);
    for line in stdout.lines().filter(|l| l.starts_with("exhaustion:")) {
        println!("{line}");
    }
    assert!(stdout.contains("exhaustion: accepted again"), "{stdout}");
}

/// CPU time (user + system) this process has used, read from `stat`, an open
/// /proc/self/stat (opened beforehand: no descriptor is free while exhausted).
fn cpu_time(stat: &mut File) -> Duration {
    let mut text = String::new();
    stat.seek(SeekFrom::Start(0)).unwrap();
    stat.read_to_string(&mut text).unwrap();
    let stat = text;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // The kernel reports USER_HZ ticks, 100 per second on Linux.
    Duration::from_millis(ticks * 10)
}

#[tokio::test(flavor = "current_thread")]
#[ignore = "run in a child process with a low descriptor limit by listener_survives_descriptor_exhaustion"]
async fn child_exhausts_descriptors() {
    assert_eq!(
        std::env::var(CHILD).as_deref(),
        Ok("1"),
        "only run as a child"
    );
    let mut t = transport();
    let (id, addr) = listen(&mut t, "/ip4/127.0.0.1/tcp/0").await;

    let mut stat = File::open("/proc/self/stat").unwrap();
    // Take every free descriptor, then give one back for a client to connect with.
    let mut hog = Vec::new();
    while let Ok(file) = File::open("/dev/null") {
        hog.push(file);
    }
    assert!(hog.len() > 4);
    // A flood of clients: the kernel queues their connections; none can be accepted.
    let clients = 4;
    hog.truncate(hog.len() - clients);
    let _clients: Vec<_> = (0..clients)
        .map(|_| std::net::TcpStream::connect(addr).expect("client connects"))
        .collect();

    // A dial cannot open a socket: a clear error naming the address, nothing left behind.
    let err = dial(&mut t, "127.0.0.1:9".parse().unwrap(), PortUse::Reuse)
        .await
        .expect_err("no descriptor for the dial");
    assert!(err.to_string().contains("127.0.0.1:9"), "{err}");
    assert_eq!(t.reuse_table().dialed_connections(), 0);
    println!("exhaustion: dial error: {err}");

    // The listener cannot accept: errors, with pauses in between.
    let cpu_before = cpu_time(&mut stat);
    let started = Instant::now();
    let mut errors = 0;
    while started.elapsed() < Duration::from_secs(2) {
        match tokio::time::timeout(Duration::from_millis(100), next_event(&mut t)).await {
            Ok(TransportEvent::ListenerError { listener_id, error }) => {
                assert_eq!(listener_id, id);
                assert!(error.to_string().contains(&addr.to_string()), "{error}");
                if errors == 0 {
                    println!("exhaustion: listener error: {error}");
                }
                errors += 1;
            }
            Ok(other) => panic!("expected ListenerError, got {other:?}"),
            Err(_) => {}
        }
    }
    let cpu = cpu_time(&mut stat) - cpu_before;
    println!("exhaustion: {errors} listener errors and {cpu:?} of CPU in 2 s while exhausted");
    assert!(
        (2..=12).contains(&errors),
        "backoff between errors: {errors} in 2 s"
    );
    assert!(
        cpu < Duration::from_millis(300),
        "no spinning: {cpu:?} of CPU"
    );

    // Free the descriptors: the waiting connection is accepted after the pause.
    drop(hog);
    let started = Instant::now();
    let mut accepted = Vec::new();
    for _ in 0..clients {
        let (stream, _, _) = accept(&mut t).await;
        assert_eq!(stream.local_addr().unwrap(), addr);
        accepted.push(stream);
    }
    println!(
        "exhaustion: accepted again, all {clients} waiting connections within {:?} after \
         descriptors were freed",
        started.elapsed()
    );
}
