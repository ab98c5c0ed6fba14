//! The environment variable LIBP2P_TCP_REUSEPORT turns port reuse off. The variable is read when
//! a Transport is created, so each case runs in a child process with its own environment.

mod util;

use std::process::Command;

use libp2p_core::transport::PortUse;
use libp2p_reuseport::PORT_REUSE_ENV;
use util::*;

/// Marks the child process.
const CHILD: &str = "LIBP2P_REUSEPORT_ENV_TEST_CHILD";

#[test]
fn environment_variable_turns_port_reuse_off() {
    if !port_sharing_here("environment_variable_turns_port_reuse_off") {
        return;
    }
    let cases: &[(Option<&str>, &str)] = &[
        (None, "Reused"),
        (Some("true"), "Reused"),
        (Some("1"), "Reused"),
        (Some("false"), "Ephemeral(Disabled)"),
        (Some("f"), "Ephemeral(Disabled)"),
        (Some("0"), "Ephemeral(Disabled)"),
        (Some("FALSE"), "Ephemeral(Disabled)"),
    ];
    for (value, expected) in cases {
        let mut child = Command::new(std::env::current_exe().unwrap());
        child
            .args([
                "--exact",
                "child_dials_with_config_default",
                "--ignored",
                "--nocapture",
            ])
            .env(CHILD, "1");
        match value {
            Some(value) => child.env(PORT_REUSE_ENV, value),
            None => child.env_remove(PORT_REUSE_ENV),
        };
        let output = child.output().expect("run the child");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "child failed for {value:?}: {stdout}"
        );
        let origin = stdout
            .lines()
            .find_map(|line| line.strip_prefix("origin="))
            .unwrap_or_else(|| panic!("child printed no origin for {value:?}: {stdout}"));
        assert_eq!(origin, *expected, "{PORT_REUSE_ENV}={value:?}");
    }
}

#[tokio::test]
#[ignore = "run as a child process by environment_variable_turns_port_reuse_off"]
async fn child_dials_with_config_default() {
    assert_eq!(
        std::env::var(CHILD).as_deref(),
        Ok("1"),
        "only run as a child"
    );
    let mut a = transport();
    let (_, a_addr) = listen(&mut a, "/ip4/127.0.0.1/tcp/0").await;
    let mut b = transport();
    let (_, b_addr) = listen(&mut b, "/ip4/127.0.0.1/tcp/0").await;
    let (dialed, _accepted, send_back) = connect(&mut a, &mut b, b_addr, PortUse::Reuse).await;
    assert_eq!(send_back.port() == a_addr.port(), dialed.is_port_reused());
    println!("origin={:?}", dialed.port_origin());
}
