//! Every workflow under `examples/` at the repository root parses; the README is built on them.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use orch_core::spec::parse_workflow;

#[test]
fn every_example_workflow_parses() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("read the examples directory") {
        let path = entry.expect("read an examples entry").path();
        if path.extension().is_some_and(|e| e == "yml" || e == "yaml") {
            let name = path
                .file_name()
                .expect("a directory entry has a name")
                .to_string_lossy()
                .into_owned();
            let text = std::fs::read_to_string(&path).expect("read an example");
            if let Err(err) = parse_workflow(&format!("examples/{name}"), &text) {
                panic!("{err}");
            }
            names.push(name);
        }
    }
    names.sort();
    // The README walks through these two; losing one should fail here, not in the docs.
    for expected in ["demo.yml", "diamond.yml"] {
        assert!(
            names.iter().any(|n| n == expected),
            "examples/{expected} is missing"
        );
    }
}
