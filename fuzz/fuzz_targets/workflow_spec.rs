//! The workflow and task file parsers (`orch_core::spec`): any text gives a workflow or an error
//! that points inside the text, and a workflow's dependencies only point backwards.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    // YAML breaks lines at LF, CRLF and a lone CR (as editors do), `str::lines` only at the first two.
    let lines = text.replace("\r\n", "\n").matches(['\n', '\r']).count() + 1;
    let result = if selector % 2 == 0 {
        orch_core::spec::parse_workflow("fuzz.yml", &text).map(|workflow| {
            for (index, task) in workflow.tasks.iter().enumerate() {
                for &need in &task.needs_in_batch {
                    assert!(
                        need < index,
                        "task {index} needs task {need}, not an earlier one"
                    );
                }
            }
        })
    } else {
        orch_core::spec::parse_task("fuzz.yml", &text).map(drop)
    };
    if let Err(error) = result {
        assert!(
            error.at.line <= lines,
            "`{error}` points at line {}, past the text's {lines} lines",
            error.at.line
        );
        assert!(!error.message.is_empty(), "an error without a message");
    }
});
