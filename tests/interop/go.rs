//! go-libp2p v0.52 (`go/`, built here with `go build`): TCP with its default port reuse
//! (`p2p/net/reuseport`), noise, yamux, identify, ping.

use std::{path::PathBuf, sync::OnceLock};

use tokio::process::Command;

use crate::remote::{Implementation, dials_us, we_dial};

pub(crate) const GO: Implementation = Implementation {
    name: "go-libp2p",
    needs: "Go on PATH to build tests/interop/go",
    command,
    reuses_port: true,
};

/// Builds the go peer once per test run into the target directory.
fn binary() -> &'static PathBuf {
    static BINARY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = BINARY.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/go");
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("interop-go-peer");
        let status = std::process::Command::new("go")
            .args(["build", "-buildvcs=false", "-o"])
            .arg(&out)
            .arg(".")
            .current_dir(&dir)
            .status()
            .map_err(|e| {
                format!(
                    "cannot run `go build` in {}: {e}: Go must be on PATH",
                    dir.display()
                )
            })?;
        match status.success() {
            true => Ok(out),
            false => Err(format!("`go build` in {} failed: {status}", dir.display())),
        }
    });
    built.as_ref().unwrap_or_else(|e| panic!("{e}"))
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
