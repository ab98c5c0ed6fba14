//! The go-libp2p peer of `tests/interop/go`, built once per test binary with `go build` into the
//! target directory. Shared by the interop tests and the network-namespace suite.

use std::{path::PathBuf, sync::OnceLock};

/// The binary, or why it could not be built (no Go on PATH, a failed build).
pub fn binary() -> Result<&'static PathBuf, &'static str> {
    static BINARY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BINARY
        .get_or_init(|| {
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
        })
        .as_ref()
        .map_err(String::as_str)
}
