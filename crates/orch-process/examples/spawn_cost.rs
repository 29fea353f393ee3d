//! How long one sandboxed spawn of `true` takes next to an unconfined one (a quick check, not
//! the benchmark): `cargo run --release -p orch-process --example spawn_cost`.

use std::time::Instant;

use orch_process::{Sandbox, SandboxPolicy, Spawn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    std::fs::create_dir_all(dir.path().join("hidden"))?;
    let policy = SandboxPolicy {
        read_write: vec![dir.path().to_owned()],
        hidden: vec![dir.path().join("hidden")],
        network: true,
        ..SandboxPolicy::default()
    };
    let offline = SandboxPolicy {
        network: false,
        ..policy.clone()
    };
    for (name, sandbox) in [
        ("off", Sandbox::Off),
        ("on", Sandbox::Enforced(policy)),
        ("on, no network", Sandbox::Enforced(offline)),
    ] {
        let start = Instant::now();
        for _ in 0..200 {
            let mut running = Spawn::new("/bin/true").sandbox(sandbox.clone()).start()?;
            running.wait().await?;
        }
        println!("{name}: {:?} per spawn", start.elapsed() / 200);
    }
    Ok(())
}
