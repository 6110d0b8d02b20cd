//! The runnable examples are part of the contract: each checks its own outcomes and exits
//! non-zero when one differs from what it expects.

use std::process::Command;

fn run_example(name: &str) {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let binary = dir.join("examples").join(name);
    assert!(
        binary.exists(),
        "{} is missing: `cargo test` builds it; with a filtered run, `cargo build --examples` first",
        binary.display()
    );
    let output = Command::new(&binary).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{name} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("as expected"), "{stdout}");
}

#[test]
fn the_demo_sees_every_outcome_it_expects() {
    run_example("demo");
}

#[test]
fn the_grpc_service_example_sees_every_outcome_it_expects() {
    run_example("grpc_service");
}
