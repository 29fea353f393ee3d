//! The CLI parsers on real output: the fixtures under `tests/fixtures/<cli>/` were printed by
//! the real CLIs (see the README there). Each case is judged as the runner judges a session:
//! every line through the CLI's dialect, then the transcript with the exit status it had.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;

use orch_agents::cli::transcript::{Ending, Transcript};
use orch_agents::cli::{CliKind, Dialect};
use orch_agents::{AgentError, AgentEvent, AgentOutcome, FailureClass};

struct Judged {
    result: Result<AgentOutcome, AgentError>,
    events: Vec<AgentEvent>,
}

fn kind(cli: &str) -> CliKind {
    match cli {
        "claude" => CliKind::Claude,
        "codex" => CliKind::Codex,
        "opencode" => CliKind::OpenCode,
        "gemini" => CliKind::Gemini,
        other => panic!("no fixtures for {other}"),
    }
}

fn judge_text(cli: &str, text: &str, code: i32) -> Judged {
    let mut dialect = Dialect::for_kind(&kind(cli), None, &BTreeMap::new(), &Default::default());
    let mut transcript = Transcript::default();
    let mut events = Vec::new();
    for line in text.lines() {
        for event in dialect.line(line) {
            transcript.observe(&event);
            events.push(event);
        }
    }
    for event in dialect.finish() {
        transcript.observe(&event);
        events.push(event);
    }
    let ending = Ending::Exited {
        code: Some(code),
        signal: None,
    };
    Judged {
        result: transcript.finish(cli, Vec::new(), ending, ""),
        events,
    }
}

fn fixture(cli: &str, case: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(cli)
        .join(format!("{case}.jsonl"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The exit code each CLI gave for a failed session (Gemini exits with the HTTP status).
fn error_code(cli: &str, status: i32) -> i32 {
    if cli == "gemini" {
        status % 256
    } else {
        1
    }
}

const CLIS: [&str; 4] = ["claude", "codex", "opencode", "gemini"];

#[test]
fn a_whole_session_parses_into_tool_calls_usage_a_session_and_the_answer() {
    for cli in CLIS {
        let judged = judge_text(cli, &fixture(cli, "success"), 0);
        let outcome = judged
            .result
            .unwrap_or_else(|e| panic!("{cli}: {e}\n{:#?}", judged.events));
        assert_eq!(outcome.result_text, "All done: hello.txt created", "{cli}");
        assert!(
            outcome.session_id.as_deref().is_some_and(|s| !s.is_empty()),
            "{cli}"
        );
        assert!(
            outcome.input_tokens > 0 && outcome.output_tokens > 0,
            "{cli}: {outcome:?}"
        );
        let calls = judged
            .events
            .iter()
            .filter(|e| matches!(e, AgentEvent::ToolCall { .. }))
            .count();
        assert!(calls >= 2, "{cli}: {calls} tool calls");
        let results = judged
            .events
            .iter()
            .filter(|e| matches!(e, AgentEvent::ToolResult { .. }))
            .count();
        assert!(results >= 2, "{cli}: {results} tool results");
        assert!(
            outcome
                .changed_files
                .iter()
                .any(|f| f.ends_with("hello.txt")),
            "{cli}: {:?}",
            outcome.changed_files
        );
        assert!(
            matches!(judged.events.first(), Some(AgentEvent::Init { .. })),
            "{cli}: the session starts with init"
        );
    }
}

#[test]
fn a_resumed_session_keeps_its_id_and_answers() {
    for cli in CLIS {
        let first = judge_text(cli, &fixture(cli, "success"), 0).result.unwrap();
        let resumed = judge_text(cli, &fixture(cli, "resume"), 0)
            .result
            .unwrap_or_else(|e| panic!("{cli}: {e}"));
        assert_eq!(resumed.result_text, "Resumed and remembered", "{cli}");
        assert!(resumed.session_id.is_some(), "{cli}");
        // The fixtures were recorded in separate sessions, so only the shape is comparable.
        assert_eq!(
            resumed.session_id.as_ref().map(String::len),
            first.session_id.as_ref().map(String::len),
            "{cli}"
        );
    }
}

#[test]
fn provider_errors_are_classified() {
    for cli in CLIS {
        for (case, status, class) in [
            ("error_401", 401, FailureClass::AuthRefused),
            ("error_429", 429, FailureClass::RateLimited),
            ("error_500", 500, FailureClass::ModelError),
        ] {
            let judged = judge_text(cli, &fixture(cli, case), error_code(cli, status));
            let error = judged
                .result
                .expect_err(&format!("{cli} {case} must not succeed"));
            assert_eq!(error.class(), class, "{cli} {case}: {error}");
            assert_eq!(error.class().retryable(), status != 401, "{cli} {case}");
        }
    }
}

#[test]
fn a_retried_rate_limit_that_recovered_is_a_success() {
    for cli in CLIS {
        let judged = judge_text(cli, &fixture(cli, "retry_429"), 0);
        let outcome = judged
            .result
            .unwrap_or_else(|e| panic!("{cli}: {e}\n{:#?}", judged.events));
        assert_eq!(outcome.result_text, "Recovered after a retry", "{cli}");
    }
}

#[test]
fn a_cli_that_timed_out_its_own_request_is_not_a_success() {
    for (cli, case) in [
        ("claude", "hang_timeout"),
        ("opencode", "hang_timeout"),
        ("codex", "stall_timeout"),
    ] {
        let judged = judge_text(cli, &fixture(cli, case), 1);
        let error = judged.result.expect_err(cli);
        assert!(error.class().retryable(), "{cli}: {error}");
    }
}

#[test]
fn unknown_event_types_and_truncated_lines_are_kept_and_not_fatal() {
    for cli in CLIS {
        let text = fixture(cli, "success");
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        // A line cut in half (a CLI killed mid-write), and an event type from a future version.
        let cut = lines[1].len() / 2;
        let truncated = lines[1][..cut].to_owned();
        lines.insert(2, truncated);
        lines.insert(
            3,
            r#"{"type":"brand_new_event","payload":{"x":1}}"#.to_owned(),
        );
        let judged = judge_text(cli, &lines.join("\n"), 0);
        let unknown: Vec<&AgentEvent> = judged
            .events
            .iter()
            .filter(|e| matches!(e, AgentEvent::Unknown { .. }))
            .collect();
        assert!(unknown.len() >= 2, "{cli}: {unknown:?}");
        assert!(
            unknown.iter().any(
                |e| matches!(e, AgentEvent::Unknown { raw } if raw["type"] == "brand_new_event")
            ),
            "{cli}"
        );
        let outcome = judged.result.unwrap_or_else(|e| panic!("{cli}: {e}"));
        assert_eq!(outcome.result_text, "All done: hello.txt created", "{cli}");
    }
}

/// Found while writing the `agent_streams` fuzz target: token counts near `u64::MAX` overflowed the sums of
/// the Claude, Codex and OpenCode parsers (a panic in debug builds, a wrapped count in release).
#[test]
fn token_counts_that_would_overflow_saturate_instead_of_panicking() {
    let max = u64::MAX;
    let cases = [
        (
            "claude",
            format!(
                r#"{{"type":"result","subtype":"success","result":"ok","usage":{{"input_tokens":{max},"cache_creation_input_tokens":{max},"cache_read_input_tokens":1,"output_tokens":{max}}}}}"#
            ),
        ),
        (
            "codex",
            [
                format!(r#"{{"type":"turn.completed","usage":{{"input_tokens":{max},"output_tokens":{max}}}}}"#),
                format!(r#"{{"type":"turn.completed","usage":{{"input_tokens":{max},"output_tokens":{max}}}}}"#),
            ]
            .join("\n"),
        ),
        (
            "opencode",
            [
                format!(r#"{{"type":"step_finish","part":{{"tokens":{{"input":{max},"cache":{{"read":{max}}},"output":{max},"reasoning":{max}}}}}}}"#),
                format!(r#"{{"type":"step_finish","part":{{"tokens":{{"input":{max},"output":{max}}}}}}}"#),
            ]
            .join("\n"),
        ),
    ];
    for (cli, text) in cases {
        let judged = judge_text(cli, &text, 0);
        let usage = judged
            .events
            .iter()
            .rev()
            .find_map(|e| match e {
                AgentEvent::Usage {
                    input_tokens,
                    output_tokens,
                    ..
                } => Some((*input_tokens, *output_tokens)),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{cli}: no usage in {:?}", judged.events));
        assert_eq!(usage, (max, max), "{cli}");
    }
}
