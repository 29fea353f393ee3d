//! The `sim` agent on real temporary directories, driven through the public `Agent` interface.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use expect_test::{expect, Expect};
use orch_agents::{known_agents, Agent, AgentError, AgentEvent, AgentOutcome, AgentRequest};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// What one session produced.
struct Session {
    result: Result<AgentOutcome, AgentError>,
    events: Vec<AgentEvent>,
}

impl Session {
    fn outcome(&self) -> &AgentOutcome {
        match &self.result {
            Ok(outcome) => outcome,
            Err(error) => panic!("sim failed: {error}\nevents:\n{}", render(&self.events)),
        }
    }

    fn error(&self) -> &AgentError {
        match &self.result {
            Ok(outcome) => panic!("sim succeeded: {outcome:?}"),
            Err(error) => error,
        }
    }

    fn session_id(&self) -> &str {
        match self.events.first() {
            Some(AgentEvent::Init { session_id, .. }) => session_id,
            other => panic!("the first event is not init: {other:?}"),
        }
    }
}

fn request(workdir: &Path, prompt: &str) -> AgentRequest {
    AgentRequest {
        prompt: prompt.to_owned(),
        model: None,
        workdir: workdir.to_path_buf(),
        resume_session: None,
        env: BTreeMap::new(),
        ..AgentRequest::default()
    }
}

async fn run(request: AgentRequest) -> Session {
    let (sender, mut receiver) = mpsc::unbounded_channel();
    let agent = Agent::by_name("sim").expect("sim is always known");
    let result = agent.run(&request, sender, CancellationToken::new()).await;
    let mut events = Vec::new();
    while let Ok(event) = receiver.try_recv() {
        events.push(event);
    }
    Session { result, events }
}

async fn run_sim(workdir: &Path, prompt: &str) -> Session {
    run(request(workdir, prompt)).await
}

/// One JSON line per event, with the session id (which depends on the temp dir's path)
/// replaced by `<session>`.
fn render(events: &[AgentEvent]) -> String {
    let session_id = match events.first() {
        Some(AgentEvent::Init { session_id, .. }) => session_id.clone(),
        _ => String::from("\u{0}no session"),
    };
    events
        .iter()
        .map(|event| {
            let line = serde_json::to_string(event).expect("events serialize");
            format!("{}\n", line.replace(&session_id, "<session>"))
        })
        .collect()
}

fn check_events(session: &Session, expected: Expect) {
    expected.assert_eq(&render(&session.events));
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|error| panic!("read {}: {error}", path.display()))
}

/// Every file under `root` with its content, one per line, so a snapshot shows exactly what
/// is on disk.
fn tree(root: &Path) -> String {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .expect("read a test directory")
            .map(|entry| entry.expect("read a directory entry").path())
            .collect();
        entries.sort();
        for path in entries {
            let shown = path
                .strip_prefix(root)
                .expect("inside root")
                .display()
                .to_string();
            let metadata = fs::symlink_metadata(&path).expect("stat a test file");
            if metadata.file_type().is_symlink() {
                let target = fs::read_link(&path).expect("read a test symlink");
                out.push(format!("{shown} -> {}", target.display()));
            } else if metadata.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(format!("{shown}: {:?}", read(&path)));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.iter().map(|line| format!("{line}\n")).collect()
}

#[tokio::test]
async fn a_prompt_without_directives_appends_a_note_to_notes_md() {
    let dir = tempfile::tempdir().expect("temp dir");
    let session = run_sim(dir.path(), "Write the changelog\nfor release 1.2, briefly.").await;

    assert_eq!(session.outcome().changed_files, ["NOTES.md"]);
    expect![[r###"
        NOTES.md: "## Write the changelog\n\nsim read this prompt of 7 words; it has no sim directives, so this note is the whole change.\n"
    "###]]
    .assert_eq(&tree(dir.path()));
    check_events(
        &session,
        expect![[r###"
            {"type":"init","session_id":"<session>","model":"sim"}
            {"type":"message","role":"assistant","text":"The prompt has no sim directives, so I will append a note to `NOTES.md`."}
            {"type":"tool_call","id":"call-1","name":"append_file","input":{"content":"## Write the changelog\n\nsim read this prompt of 7 words; it has no sim directives, so this note is the whole change.\n","path":"NOTES.md"}}
            {"type":"tool_result","id":"call-1","output":"appended 117 bytes to `NOTES.md`","is_error":false}
            {"type":"usage","input_tokens":7,"output_tokens":46,"cost_usd":0.0}
            {"type":"result","text":"sim finished 1 step and changed 1 file: NOTES.md.","is_error":false}
        "###]],
    );
}

#[tokio::test]
async fn the_note_goes_on_a_new_line_after_existing_notes() {
    let dir = tempfile::tempdir().expect("temp dir");
    fs::write(dir.path().join("NOTES.md"), "# Notes\nno trailing newline").expect("seed");

    run_sim(dir.path(), "  \n  First task  \n").await.outcome();
    run_sim(dir.path(), "Second task").await.outcome();

    expect![[r###"
        NOTES.md: "# Notes\nno trailing newline\n## First task\n\nsim read this prompt of 2 words; it has no sim directives, so this note is the whole change.\n## Second task\n\nsim read this prompt of 2 words; it has no sim directives, so this note is the whole change.\n"
    "###]]
    .assert_eq(&tree(dir.path()));
}

#[tokio::test]
async fn an_empty_prompt_still_leaves_a_note() {
    let dir = tempfile::tempdir().expect("temp dir");
    run_sim(dir.path(), "").await.outcome();
    expect![[r###"
        NOTES.md: "## (empty prompt)\n\nsim read this prompt of 0 words; it has no sim directives, so this note is the whole change.\n"
    "###]]
    .assert_eq(&tree(dir.path()));
}

#[tokio::test]
async fn write_creates_the_file_and_its_parent_directories() {
    let dir = tempfile::tempdir().expect("temp dir");
    let session = run_sim(
        dir.path(),
        "Add a module.\n@write src/deep/greeting.rs\npub fn greet() -> &'static str {\n    \"hello\"\n}\n@end\n",
    )
    .await;

    assert_eq!(session.outcome().changed_files, ["src/deep/greeting.rs"]);
    expect![[r###"
        src/deep/greeting.rs: "pub fn greet() -> &'static str {\n    \"hello\"\n}\n"
    "###]]
    .assert_eq(&tree(dir.path()));
}

#[tokio::test]
async fn write_overwrites_an_existing_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    fs::write(dir.path().join("a.txt"), "old\n").expect("seed");

    let session = run_sim(dir.path(), "@write ./a.txt\nnew\n@end").await;

    assert_eq!(session.outcome().changed_files, ["a.txt"]);
    assert_eq!(read(&dir.path().join("a.txt")), "new\n");
}

#[tokio::test]
async fn append_adds_lines_to_an_existing_file_and_creates_a_missing_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    fs::write(dir.path().join("log.txt"), "one\n").expect("seed");

    let session = run_sim(
        dir.path(),
        "@append log.txt\ntwo\nthree\n@end\n@append new/list.txt\nfirst\n@end",
    )
    .await;

    assert_eq!(session.outcome().changed_files, ["log.txt", "new/list.txt"]);
    expect![[r###"
        log.txt: "one\ntwo\nthree\n"
        new/list.txt: "first\n"
    "###]]
    .assert_eq(&tree(dir.path()));
}

#[tokio::test]
async fn replace_changes_only_the_first_occurrence() {
    let dir = tempfile::tempdir().expect("temp dir");
    fs::write(dir.path().join("config.toml"), "level = 1\nlevel = 1\n").expect("seed");

    let session = run_sim(dir.path(), "@replace config.toml level = 1 => level = 2").await;

    assert_eq!(session.outcome().changed_files, ["config.toml"]);
    assert_eq!(
        read(&dir.path().join("config.toml")),
        "level = 2\nlevel = 1\n"
    );
}

#[tokio::test]
async fn replace_of_missing_text_fails_the_session_and_leaves_the_file_alone() {
    let dir = tempfile::tempdir().expect("temp dir");
    fs::write(dir.path().join("a.txt"), "alpha\n").expect("seed");

    let session = run_sim(dir.path(), "@replace a.txt beta => gamma").await;

    expect!["the agent failed: edit_file failed: `beta` does not occur in `a.txt`; nothing was replaced"]
        .assert_eq(&session.error().to_string());
    assert_eq!(read(&dir.path().join("a.txt")), "alpha\n");
    check_events(
        &session,
        expect![[r#"
            {"type":"init","session_id":"<session>","model":"sim"}
            {"type":"message","role":"assistant","text":"Plan (1 step): replace `beta` in `a.txt`."}
            {"type":"tool_call","id":"call-1","name":"edit_file","input":{"new":"gamma","old":"beta","path":"a.txt"}}
            {"type":"tool_result","id":"call-1","output":"`beta` does not occur in `a.txt`; nothing was replaced","is_error":true}
            {"type":"error","message":"edit_file failed: `beta` does not occur in `a.txt`; nothing was replaced"}
            {"type":"usage","input_tokens":5,"output_tokens":19,"cost_usd":0.0}
            {"type":"result","text":"edit_file failed: `beta` does not occur in `a.txt`; nothing was replaced","is_error":true}
        "#]],
    );
}

#[tokio::test]
async fn replace_in_a_missing_file_says_to_write_it_first() {
    let dir = tempfile::tempdir().expect("temp dir");
    let session = run_sim(dir.path(), "@replace nope.txt a => b").await;
    expect!["the agent failed: edit_file failed: `nope.txt` does not exist; create it first with `@write`"]
        .assert_eq(&session.error().to_string());
    assert_eq!(tree(dir.path()), "");
}

#[tokio::test]
async fn delete_removes_the_file_and_lists_it_as_changed() {
    let dir = tempfile::tempdir().expect("temp dir");
    fs::write(dir.path().join("keep.txt"), "keep\n").expect("seed");
    fs::create_dir(dir.path().join("old")).expect("seed");
    fs::write(dir.path().join("old/gone.txt"), "gone\n").expect("seed");

    let session = run_sim(dir.path(), "@delete old/gone.txt").await;

    assert_eq!(session.outcome().changed_files, ["old/gone.txt"]);
    expect![[r###"
        keep.txt: "keep\n"
    "###]]
    .assert_eq(&tree(dir.path()));
}

#[tokio::test]
async fn delete_refuses_missing_files_and_directories() {
    let dir = tempfile::tempdir().expect("temp dir");
    fs::create_dir(dir.path().join("folder")).expect("seed");

    let missing = run_sim(dir.path(), "@delete nope.txt").await;
    let folder = run_sim(dir.path(), "@delete folder").await;

    expect!["the agent failed: delete_file failed: `nope.txt` does not exist"]
        .assert_eq(&missing.error().to_string());
    expect![
        "the agent failed: delete_file failed: `folder` is a directory; sim deletes files only"
    ]
    .assert_eq(&folder.error().to_string());
    assert!(dir.path().join("folder").is_dir());
}

#[tokio::test]
async fn run_is_reported_as_a_bash_call_but_never_executed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let session = run_sim(dir.path(), "@run touch ran.txt").await;

    assert!(
        !dir.path().join("ran.txt").exists(),
        "sim must not run commands"
    );
    let outcome = session.outcome();
    assert!(outcome.changed_files.is_empty());
    check_events(
        &session,
        expect![[r#"
            {"type":"init","session_id":"<session>","model":"sim"}
            {"type":"message","role":"assistant","text":"Plan (1 step): report `touch ran.txt` without running it."}
            {"type":"tool_call","id":"call-1","name":"bash","input":{"command":"touch ran.txt"}}
            {"type":"tool_result","id":"call-1","output":"sim does not run commands; `touch ran.txt` was not run","is_error":false}
            {"type":"usage","input_tokens":3,"output_tokens":29,"cost_usd":0.0}
            {"type":"result","text":"sim finished 1 step and changed no files. It did not run 1 command because sim does not run commands.","is_error":false}
        "#]],
    );
}

#[tokio::test]
async fn say_adds_an_assistant_message_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let session = run_sim(dir.path(), "@say The tests pass.").await;

    assert!(session.outcome().changed_files.is_empty());
    assert_eq!(tree(dir.path()), "");
    assert!(session.events.contains(&AgentEvent::Message {
        role: "assistant".to_owned(),
        text: "The tests pass.".to_owned(),
    }));
}

#[tokio::test]
async fn the_event_stream_is_init_plan_tool_pairs_usage_result() {
    let dir = tempfile::tempdir().expect("temp dir");
    fs::write(
        dir.path().join("README.md"),
        "# Project\n<!-- modules -->\n",
    )
    .expect("seed");
    fs::write(dir.path().join("obsolete.txt"), "x\n").expect("seed");
    let prompt = "\
Add a greeting module and document it.
@write src/greeting.rs
pub fn greet() -> &'static str {
    \"hello\"
}
@end
@append CHANGELOG.md
- Added a greeting.
@end
@replace README.md <!-- modules --> => - `greeting`
@delete obsolete.txt
@sleep 1
@run cargo test --quiet
@say The greeting is in place.
";
    let session = run_sim(dir.path(), prompt).await;

    let outcome = session.outcome();
    assert_eq!(
        outcome.changed_files,
        [
            "CHANGELOG.md",
            "README.md",
            "obsolete.txt",
            "src/greeting.rs"
        ]
    );
    assert_eq!(outcome.cost_usd, 0.0);
    assert_eq!(outcome.session_id.as_deref(), Some(session.session_id()));
    check_events(
        &session,
        expect![[r#"
            {"type":"init","session_id":"<session>","model":"sim"}
            {"type":"message","role":"assistant","text":"Plan (7 steps): write `src/greeting.rs`; append to `CHANGELOG.md`; replace `<!-- modules -->` in `README.md`; delete `obsolete.txt`; wait 1 ms; report `cargo test --quiet` without running it; say \"The greeting is in place.\"."}
            {"type":"tool_call","id":"call-1","name":"write_file","input":{"content":"pub fn greet() -> &'static str {\n    \"hello\"\n}\n","path":"src/greeting.rs"}}
            {"type":"tool_result","id":"call-1","output":"created `src/greeting.rs` (47 bytes)","is_error":false}
            {"type":"tool_call","id":"call-2","name":"append_file","input":{"content":"- Added a greeting.\n","path":"CHANGELOG.md"}}
            {"type":"tool_result","id":"call-2","output":"appended 20 bytes to `CHANGELOG.md`","is_error":false}
            {"type":"tool_call","id":"call-3","name":"edit_file","input":{"new":"- `greeting`","old":"<!-- modules -->","path":"README.md"}}
            {"type":"tool_result","id":"call-3","output":"replaced the first `<!-- modules -->` in `README.md`","is_error":false}
            {"type":"tool_call","id":"call-4","name":"delete_file","input":{"path":"obsolete.txt"}}
            {"type":"tool_result","id":"call-4","output":"deleted `obsolete.txt`","is_error":false}
            {"type":"tool_call","id":"call-5","name":"bash","input":{"command":"cargo test --quiet"}}
            {"type":"tool_result","id":"call-5","output":"sim does not run commands; `cargo test --quiet` was not run","is_error":false}
            {"type":"message","role":"assistant","text":"The greeting is in place."}
            {"type":"usage","input_tokens":48,"output_tokens":76,"cost_usd":0.0}
            {"type":"result","text":"sim finished 7 steps and changed 4 files: CHANGELOG.md, README.md, obsolete.txt, src/greeting.rs. It did not run 1 command because sim does not run commands.","is_error":false}
        "#]],
    );
    let usage = session.events.iter().rev().find_map(|event| match event {
        AgentEvent::Usage {
            input_tokens,
            output_tokens,
            ..
        } => Some((*input_tokens, *output_tokens)),
        _ => None,
    });
    assert_eq!(usage, Some((outcome.input_tokens, outcome.output_tokens)));
    expect![[r###"
        CHANGELOG.md: "- Added a greeting.\n"
        README.md: "# Project\n- `greeting`\n"
        src/greeting.rs: "pub fn greet() -> &'static str {\n    \"hello\"\n}\n"
    "###]]
    .assert_eq(&tree(dir.path()));
}

#[tokio::test]
async fn fail_after_a_write_returns_failed_and_keeps_the_written_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let session = run_sim(
        dir.path(),
        "@write done.txt\nfirst\n@end\n@fail the build is red\n@write never.txt\nsecond\n@end",
    )
    .await;

    match session.error() {
        AgentError::Failed(message) => assert_eq!(message, "the build is red"),
        other => panic!("expected Failed, got {other:?}"),
    }
    expect![[r###"
        done.txt: "first\n"
    "###]]
    .assert_eq(&tree(dir.path()));
    check_events(
        &session,
        expect![[r#"
            {"type":"init","session_id":"<session>","model":"sim"}
            {"type":"message","role":"assistant","text":"Plan (3 steps): write `done.txt`; fail with \"the build is red\"; write `never.txt`."}
            {"type":"tool_call","id":"call-1","name":"write_file","input":{"content":"first\n","path":"done.txt"}}
            {"type":"tool_result","id":"call-1","output":"created `done.txt` (6 bytes)","is_error":false}
            {"type":"error","message":"the build is red"}
            {"type":"usage","input_tokens":13,"output_tokens":18,"cost_usd":0.0}
            {"type":"result","text":"the build is red","is_error":true}
        "#]],
    );
}

#[tokio::test]
async fn a_malformed_prompt_fails_before_touching_any_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let session = run_sim(
        dir.path(),
        "@write first.txt\nok\n@end\n@write second.txt\nno end",
    )
    .await;

    expect!["the agent failed: sim cannot follow this prompt: prompt line 4: `@write second.txt` has no closing `@end` line; end the file's content with a line `@end`"]
        .assert_eq(&session.error().to_string());
    assert_eq!(tree(dir.path()), "");
    check_events(
        &session,
        expect![[r#"
            {"type":"init","session_id":"<session>","model":"sim"}
            {"type":"message","role":"assistant","text":"sim cannot follow this prompt: prompt line 4: `@write second.txt` has no closing `@end` line; end the file's content with a line `@end`"}
            {"type":"error","message":"sim cannot follow this prompt: prompt line 4: `@write second.txt` has no closing `@end` line; end the file's content with a line `@end`"}
            {"type":"usage","input_tokens":8,"output_tokens":46,"cost_usd":0.0}
            {"type":"result","text":"sim cannot follow this prompt: prompt line 4: `@write second.txt` has no closing `@end` line; end the file's content with a line `@end`","is_error":true}
        "#]],
    );
}

/// A workdir and a sibling directory it must never touch, with symlinks pointing out of the
/// workdir in every way a path can.
#[cfg(unix)]
struct EscapeLayout {
    _base: tempfile::TempDir,
    workdir: PathBuf,
    outside: PathBuf,
}

#[cfg(unix)]
fn escape_layout() -> EscapeLayout {
    use std::os::unix::fs::symlink;

    let base = tempfile::tempdir().expect("temp dir");
    let workdir = base.path().join("work");
    let outside = base.path().join("outside");
    fs::create_dir(&workdir).expect("create workdir");
    fs::create_dir(&outside).expect("create outside");
    fs::write(outside.join("secret.txt"), "secret\n").expect("seed");
    symlink(&outside, workdir.join("escape")).expect("dir symlink");
    symlink(outside.join("secret.txt"), workdir.join("link.txt")).expect("file symlink");
    symlink(outside.join("missing.txt"), workdir.join("dangling")).expect("dangling symlink");
    symlink("../outside/missing-dir", workdir.join("dangling-dir")).expect("dangling dir symlink");
    EscapeLayout {
        _base: base,
        workdir,
        outside,
    }
}

#[cfg(unix)]
#[tokio::test]
async fn paths_that_leave_the_workdir_are_refused_and_nothing_is_written_outside() {
    let cases = [
        "@write {outside}/new.txt\nx\n@end",
        "@write ../outside/new.txt\nx\n@end",
        "@write src/../../outside/new.txt\nx\n@end",
        "@append escape/new.txt\nx\n@end",
        "@write escape/deeper/new.txt\nx\n@end",
        "@write link.txt\nstolen\n@end",
        "@append link.txt\nstolen\n@end",
        "@replace link.txt secret => stolen",
        "@write dangling\nx\n@end",
        "@write dangling-dir/new.txt\nx\n@end",
        "@delete escape/secret.txt",
        "@delete ../outside/secret.txt",
        "@write .\nx\n@end",
    ];
    let mut report = String::new();
    for case in cases {
        let layout = escape_layout();
        let outside = layout.outside.display().to_string();
        let prompt = case.replace("{outside}", &outside);
        let before = tree(&layout.outside);
        let workdir_before = tree(&layout.workdir);

        let session = run_sim(&layout.workdir, &prompt).await;

        assert!(
            matches!(session.error(), AgentError::Failed(_)),
            "{case}: {:?}",
            session.result
        );
        assert_eq!(tree(&layout.outside), before, "{case} wrote outside");
        let refused = session
            .events
            .iter()
            .any(|event| matches!(event, AgentEvent::ToolResult { is_error: true, .. }));
        assert!(refused, "{case}: no failed tool result");
        let first_line = case.lines().next().unwrap_or_default();
        let message = session.error().to_string().replace(&outside, "{outside}");
        report.push_str(&format!("{first_line}\n  {message}\n"));
        assert_eq!(tree(&layout.workdir), workdir_before, "{case} wrote inside");
    }
    expect![[r###"
        @write {outside}/new.txt
          the agent failed: write_file failed: `{outside}/new.txt` is an absolute path; give a path relative to the workdir
        @write ../outside/new.txt
          the agent failed: write_file failed: `../outside/new.txt` leaves the workdir through `..`; nothing was written
        @write src/../../outside/new.txt
          the agent failed: write_file failed: `src/../../outside/new.txt` leaves the workdir through `..`; nothing was written
        @append escape/new.txt
          the agent failed: append_file failed: `escape/new.txt` leaves the workdir: `escape` resolves outside it through a symlink; nothing was written
        @write escape/deeper/new.txt
          the agent failed: write_file failed: `escape/deeper/new.txt` leaves the workdir: `escape` resolves outside it through a symlink; nothing was written
        @write link.txt
          the agent failed: write_file failed: `link.txt` is a symlink that points outside the workdir; nothing was written
        @append link.txt
          the agent failed: append_file failed: `link.txt` is a symlink that points outside the workdir; nothing was written
        @replace link.txt secret => stolen
          the agent failed: edit_file failed: `link.txt` is a symlink that points outside the workdir; nothing was written
        @write dangling
          the agent failed: write_file failed: `dangling` is a symlink to a missing file; sim does not write through it
        @write dangling-dir/new.txt
          the agent failed: write_file failed: `dangling-dir/new.txt` goes through `dangling-dir`, a symlink to nothing; nothing was written
        @delete escape/secret.txt
          the agent failed: delete_file failed: `escape/secret.txt` leaves the workdir: `escape` resolves outside it through a symlink; nothing was written
        @delete ../outside/secret.txt
          the agent failed: delete_file failed: `../outside/secret.txt` leaves the workdir through `..`; nothing was written
        @write .
          the agent failed: write_file failed: `.` names the workdir itself; give a file path
    "###]]
    .assert_eq(&report);
}

#[cfg(unix)]
#[tokio::test]
async fn symlinks_that_stay_inside_the_workdir_are_followed_and_the_real_file_is_reported() {
    use std::os::unix::fs::symlink;

    let dir = tempfile::tempdir().expect("temp dir");
    fs::create_dir(dir.path().join("real")).expect("seed");
    fs::write(dir.path().join("real/file.txt"), "old\n").expect("seed");
    symlink("real", dir.path().join("alias")).expect("dir symlink");
    symlink("real/file.txt", dir.path().join("shortcut.txt")).expect("file symlink");

    let session = run_sim(
        dir.path(),
        "@write alias/new.txt\nnew\n@end\n@replace shortcut.txt old => changed",
    )
    .await;

    assert_eq!(
        session.outcome().changed_files,
        ["alias/new.txt", "real/file.txt"]
    );
    expect![[r###"
        alias -> real
        real/file.txt: "changed\n"
        real/new.txt: "new\n"
        shortcut.txt -> real/file.txt
    "###]]
    .assert_eq(&tree(dir.path()));
}

#[tokio::test]
async fn the_same_prompt_in_a_fresh_directory_at_the_same_path_gives_identical_events() {
    let base = tempfile::tempdir().expect("temp dir");
    let workdir = base.path().join("repo");
    let prompt = "Refactor.\n@write src/a.rs\nfn a() {}\n@end\n@append NOTES.md\n- a\n@end\n@run cargo build\n@say Done.";

    fs::create_dir(&workdir).expect("create workdir");
    let first = run_sim(&workdir, prompt).await;
    let first_tree = tree(&workdir);
    fs::remove_dir_all(&workdir).expect("remove workdir");
    fs::create_dir(&workdir).expect("recreate workdir");
    let second = run_sim(&workdir, prompt).await;

    assert_eq!(first.events, second.events);
    assert_eq!(first.outcome(), second.outcome());
    assert_eq!(first_tree, tree(&workdir));
}

#[tokio::test]
async fn two_workdirs_differ_only_in_the_session_id() {
    let one = tempfile::tempdir().expect("temp dir");
    let two = tempfile::tempdir().expect("temp dir");
    let prompt = "Document.\n@write docs/a.md\n# A\n@end";

    let first = run_sim(one.path(), prompt).await;
    let second = run_sim(two.path(), prompt).await;

    assert_ne!(first.session_id(), second.session_id());
    for session in [&first, &second] {
        let id = session.session_id();
        assert!(id.starts_with("sim-") && id.len() == 20, "{id}");
        assert!(id[4..].chars().all(|c| c.is_ascii_hexdigit()), "{id}");
    }
    assert_eq!(render(&first.events), render(&second.events));
    assert_eq!(tree(one.path()), tree(two.path()));
}

#[tokio::test]
async fn resume_keeps_the_given_session_id_and_says_so() {
    let dir = tempfile::tempdir().expect("temp dir");
    let first = run_sim(dir.path(), "Start the work").await;
    let previous = first.session_id().to_owned();

    let mut resumed = request(dir.path(), "Continue the work");
    resumed.resume_session = Some(previous.clone());
    let second = run(resumed).await;

    assert_eq!(second.session_id(), previous);
    assert_eq!(
        second.outcome().session_id.as_deref(),
        Some(previous.as_str())
    );
    match &second.events[1] {
        AgentEvent::Message { role, text } => {
            assert_eq!(role, "assistant");
            assert!(
                text.starts_with(&format!("Resuming session {previous}. ")),
                "{text}"
            );
        }
        other => panic!("the second event is not the plan: {other:?}"),
    }
}

#[tokio::test]
async fn sleep_is_cancelled_promptly_and_later_steps_never_run() {
    let dir = tempfile::tempdir().expect("temp dir");
    let request = request(
        dir.path(),
        "@write before.txt\nbefore\n@end\n@sleep 600000\n@write after.txt\nafter\n@end",
    );
    let (sender, mut receiver) = mpsc::unbounded_channel();
    let cancel = CancellationToken::new();
    let agent = Agent::by_name("sim").expect("sim is always known");
    let session = tokio::spawn({
        let cancel = cancel.clone();
        async move { agent.run(&request, sender, cancel).await }
    });

    // Wait for the first write to be reported, so the cancel lands on the long sleep.
    let deadline = Duration::from_secs(10);
    loop {
        let event = tokio::time::timeout(deadline, receiver.recv())
            .await
            .expect("sim reports the first write within the deadline")
            .expect("the stream stays open while sim runs");
        if matches!(event, AgentEvent::ToolResult { .. }) {
            break;
        }
    }
    cancel.cancel();
    let result = tokio::time::timeout(Duration::from_secs(5), session)
        .await
        .expect("sim stops within 5 s of the cancel, not after its 10-minute sleep")
        .expect("sim does not panic");

    match result {
        Err(AgentError::Cancelled(message)) => assert!(message.contains("sim was cancelled")),
        other => panic!("expected Cancelled, got {other:?}"),
    }
    assert!(dir.path().join("before.txt").exists());
    assert!(!dir.path().join("after.txt").exists());
    assert_eq!(
        receiver.recv().await,
        None,
        "a cancelled sim emits nothing more"
    );
}

#[tokio::test]
async fn a_session_cancelled_before_it_starts_does_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (sender, mut receiver) = mpsc::unbounded_channel();
    let cancel = CancellationToken::new();
    cancel.cancel();
    let agent = Agent::by_name("sim").expect("sim is always known");

    let result = agent
        .run(&request(dir.path(), "Write notes"), sender, cancel)
        .await;

    assert!(
        matches!(result, Err(AgentError::Cancelled(_))),
        "{result:?}"
    );
    assert_eq!(receiver.recv().await, None);
    assert_eq!(tree(dir.path()), "");
}

#[tokio::test]
async fn a_missing_workdir_is_an_io_error_naming_it_and_emits_nothing() {
    let base = tempfile::tempdir().expect("temp dir");
    let missing = base.path().join("missing");

    let session = run_sim(&missing, "Write notes").await;

    match session.error() {
        AgentError::Io { context, .. } => {
            assert_eq!(context, &format!("open the workdir {}", missing.display()));
        }
        other => panic!("expected Io, got {other:?}"),
    }
    assert!(session.events.is_empty());
    assert!(!missing.exists());
}

#[test]
fn every_known_agent_can_be_created_by_name_and_unknown_names_list_them() {
    let enabled = orch_agents::AgentsConfig {
        enable_real_cli: true,
        ..orch_agents::AgentsConfig::default()
    };
    for name in known_agents() {
        let agent = Agent::resolve(name, &enabled).expect("a known agent is created by name");
        assert_eq!(agent.name(), *name);
    }
    // Without `enable_real_cli`, only sim is created.
    let error = Agent::by_name("claude").expect_err("real CLIs are off by default");
    assert_eq!(error.class(), orch_agents::FailureClass::NotInstalled);
    let error = Agent::by_name("gpt-pilot").expect_err("not an agent");
    expect!["unknown agent `gpt-pilot`; known agents: sim, claude, codex, opencode, gemini"]
        .assert_eq(&error.to_string());
}

#[tokio::test]
async fn ask_writes_an_info_request_and_ends_the_session_unless_the_values_are_there() {
    let dir = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let ask_file = scratch.path().join("ask.json");
    let prompt = "@ask --hint aws\n@write after.txt\nran\n@end\n";
    let mut asking = request(dir.path(), prompt);
    asking
        .env
        .insert("ORCH_ASK_FILE".into(), ask_file.display().to_string());
    let session = run(asking.clone()).await;
    session.outcome();
    let written: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&ask_file).unwrap()).unwrap();
    assert_eq!(written["hint"], "aws");
    let keys: Vec<&str> = written["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert!(keys.contains(&"AWS_SECRET_ACCESS_KEY"), "{keys:?}");
    assert!(
        !dir.path().join("after.txt").exists(),
        "asking ends the session"
    );

    // With the values in its environment, sim goes on.
    fs::remove_file(&ask_file).unwrap();
    asking.env.insert("AWS_ACCESS_KEY_ID".into(), "id".into());
    asking
        .env
        .insert("AWS_SECRET_ACCESS_KEY".into(), "secret".into());
    run(asking).await.outcome();
    assert!(!ask_file.exists());
    assert_eq!(read(&dir.path().join("after.txt")), "ran\n");

    // A key orch owns cannot be asked for: the prompt is refused before anything runs.
    let refused = run_sim(dir.path(), "@ask LD_PRELOAD").await;
    assert!(
        refused.error().to_string().contains("cannot be asked for"),
        "{}",
        refused.error()
    );
}
