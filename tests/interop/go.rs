//! go-libp2p v0.52 (`go/`, built here with `go build`): TCP with its default port reuse
//! (`p2p/net/reuseport`), noise, yamux, identify, ping.

use std::path::PathBuf;

use tokio::process::Command;

use crate::remote::{Implementation, dials_us, we_dial};

pub(crate) const GO: Implementation = Implementation {
    name: "go-libp2p",
    needs: "Go on PATH to build tests/interop/go",
    command,
    reuses_port: true,
};

/// The go peer, built once per test run (`tests/util/go_peer.rs`).
fn binary() -> &'static PathBuf {
    crate::util::go_peer::binary().unwrap_or_else(|e| panic!("{e}"))
}

pub(crate) fn command() -> Command {
    let mut command = Command::new(binary());
    command.arg("peer");
    command
}

#[tokio::test]
#[ignore = "needs Go to build tests/interop/go; .ci/run runs it"]
async fn we_dial_go_libp2p() {
    we_dial(&GO).await;
}

#[tokio::test]
#[ignore = "needs Go to build tests/interop/go; .ci/run runs it"]
async fn go_libp2p_dials_us() {
    dials_us(&GO).await;
}
