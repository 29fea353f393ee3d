//! A command that writes 100 MB: the runner keeps reading past the cap without holding the output
//! in memory, stores the cap and a note, and counts every byte. In a test binary of its own so
//! that no other test moves the process's peak memory.

mod support_exec;

use orch_worker::exec::ExecPolicy;
use support_exec::{command, policy, run, TestWorkspace};

const MIB: u64 = 1024 * 1024;

/// Peak resident memory of this process so far, in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let line = status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .expect("a VmHWM line");
    let kib: u64 = line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .expect("a number");
    kib * 1024
}

#[tokio::test]
async fn one_hundred_megabytes_of_output_keep_the_cap_and_little_memory() {
    let workspace = TestWorkspace::new();
    let policy = ExecPolicy {
        output_cap_bytes: MIB,
        ..policy()
    };
    let before = peak_rss();
    let record = run(
        &workspace,
        "flood",
        &command(&["head", "-c", "100000000", "/dev/zero"]),
        &policy,
    )
    .await;
    let growth = peak_rss().saturating_sub(before);

    assert!(record.exit.success(), "{:?}", record.exit);
    assert_eq!(record.stdout.bytes_seen, 100_000_000);
    assert_eq!(record.stdout.bytes_kept, MIB);
    assert!(record.stdout.truncated);
    let note = format!(
        "\n[orch: output truncated after {MIB} bytes; {} bytes dropped]\n",
        100_000_000 - MIB
    );
    let stored = std::fs::read(&record.stdout.path).expect("read stdout");
    assert_eq!(stored.len() as u64, MIB + note.len() as u64);
    assert!(stored[..MIB as usize].iter().all(|byte| *byte == 0));
    assert_eq!(&stored[MIB as usize..], note.as_bytes());
    assert!(
        growth < 16 * MIB,
        "peak memory grew by {} MiB",
        growth / MIB
    );
}
