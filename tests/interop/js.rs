//! js-libp2p 3.x (`js/peer.mjs`): TCP from ephemeral ports, noise, yamux, identify, ping.

use std::path::PathBuf;

use tokio::process::Command;

use crate::remote::{Implementation, dials_us, we_dial};

pub(crate) const JS: Implementation = Implementation {
    name: "js-libp2p",
    needs: "Node 20+ on PATH",
    command,
    reuses_port: false,
};

pub(crate) fn command() -> Command {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/js");
    assert!(
        dir.join("node_modules/libp2p").exists(),
        "js-libp2p is not installed: run `npm ci` in {}",
        dir.display()
    );
    let mut command = Command::new("node");
    command.arg(dir.join("peer.mjs")).current_dir(&dir);
    command
}

#[tokio::test]
#[ignore = "needs Node 20+ and `npm ci` in tests/interop/js; .ci/run runs it"]
async fn we_dial_js_libp2p() {
    we_dial(&JS).await;
}

#[tokio::test]
#[ignore = "needs Node 20+ and `npm ci` in tests/interop/js; .ci/run runs it"]
async fn js_libp2p_dials_us() {
    dials_us(&JS).await;
}
