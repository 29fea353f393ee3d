//! Workflow and task files, end to end: each test is a YAML text and a snapshot of either a
//! summary of what was parsed or the error, with a caret under the line and column it names.
//!
//! Snapshots are `expect-test`; refresh them with `UPDATE_EXPECT=1 cargo test -p orch-core`.

#![allow(clippy::unwrap_used)]

use std::fmt::Write;
use std::time::Duration;

use expect_test::{expect, Expect};
use orch_core::spec::{parse_task, parse_workflow, SpecError};
use orch_core::{RetryPolicy, StepAction, TaskSpec};

/// Parse `yaml` as a workflow file and compare the summary or the error with `expected`.
fn check(yaml: &str, expected: Expect) {
    let text = dedent(yaml);
    let actual = match parse_workflow("workflow.yml", &text) {
        Ok(workflow) => {
            let keys: Vec<&str> = workflow
                .tasks
                .iter()
                .map(|task| task.spec.key.as_deref().unwrap_or("?"))
                .collect();
            let mut out = String::new();
            if let Some(name) = &workflow.name {
                writeln!(out, "workflow {name}").expect("writing to a String");
            }
            for task in &workflow.tasks {
                let needs: Vec<&str> = task.needs_in_batch.iter().map(|&i| keys[i]).collect();
                let key = task.spec.key.as_deref().unwrap_or("?");
                writeln!(
                    out,
                    "{key} needs=[{}] {}",
                    needs.join(","),
                    summary(&task.spec)
                )
                .expect("writing to a String");
            }
            out
        }
        Err(err) => render_error(&text, &err),
    };
    expected.assert_eq(&actual);
}

/// Parse `yaml` as a single-task file and compare the summary or the error with `expected`.
fn check_task(yaml: &str, expected: Expect) {
    let text = dedent(yaml);
    let actual = match parse_task("task.yml", &text) {
        Ok(spec) => {
            let key = spec.key.as_deref().unwrap_or("-");
            format!("{key} {}\n", summary(&spec))
        }
        Err(err) => render_error(&text, &err),
    };
    expected.assert_eq(&actual);
}

/// One line per task: what a reader of the file would want to check, and nothing that is at its
/// default, so that the snapshots stay short.
fn summary(spec: &TaskSpec) -> String {
    let steps: Vec<String> = spec
        .steps
        .iter()
        .map(|step| {
            let kind = match &step.action {
                StepAction::Exec { commands } => {
                    let argvs: Vec<String> = commands.iter().map(|c| c.argv.join(" ")).collect();
                    format!("exec({})", argvs.join("; "))
                }
                StepAction::Agent { agent, prompt, .. } => format!("agent:{agent}({prompt:?})"),
            };
            match step.timeout {
                Some(timeout) => format!("{}={kind}/{}", step.name, duration(timeout)),
                None => format!("{}={kind}", step.name),
            }
        })
        .collect();
    let mut out = format!("title={:?} priority={}", spec.title.as_str(), spec.priority);
    if !spec.labels.is_empty() {
        write!(out, " labels=[{}]", spec.labels.join(",")).expect("writing to a String");
    }
    if spec.retry != RetryPolicy::default() {
        let r = spec.retry;
        write!(
            out,
            " retry={}x/{}..{}+{}",
            r.max_attempts,
            duration(r.backoff_base),
            duration(r.backoff_max),
            duration(r.jitter)
        )
        .expect("writing to a String");
    }
    if let Some(timeout) = spec.timeout {
        write!(out, " timeout={}", duration(timeout)).expect("writing to a String");
    }
    if spec.requires_approval {
        out.push_str(" approval");
    }
    if let Some(merge) = &spec.merge {
        let into = merge.into.as_deref().unwrap_or("HEAD");
        write!(out, " merge={}->{into}", merge.mode.as_str()).expect("writing to a String");
    }
    write!(out, " steps=[{}]", steps.join(", ")).expect("writing to a String");
    out
}

/// `90s` -> `1m30s`; enough for the values in these tests.
fn duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        write!(out, "{h}h").expect("writing to a String");
    }
    if m > 0 {
        write!(out, "{m}m").expect("writing to a String");
    }
    if s > 0 || out.is_empty() {
        write!(out, "{s}s").expect("writing to a String");
    }
    out
}

/// The error's Display, then the line it names with a caret under the column, so a snapshot
/// shows at a glance whether the position is right.
fn render_error(text: &str, err: &SpecError) -> String {
    let mut out = format!("{err}\n");
    let line = err.at.line.checked_sub(1).and_then(|i| text.lines().nth(i));
    match line {
        Some(line) if err.at.column > 0 => {
            let visible = line.replace('\t', "→");
            writeln!(out, "  | {visible}").expect("writing to a String");
            // Columns count characters, and a tab is shown as one character, so one space per
            // column lines the caret up.
            let pad = " ".repeat(err.at.column - 1);
            writeln!(out, "  | {pad}^").expect("writing to a String");
        }
        _ => out.push_str("  (no line)\n"),
    }
    out
}

/// Strip the first line break and the common indentation, so the YAML in a test can be indented
/// like the code around it.
fn dedent(text: &str) -> String {
    if text.is_empty() {
        return String::new();
    }
    let text = text.strip_prefix('\n').unwrap_or(text);
    let indent = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| line.len() - line.trim_start_matches(' ').len())
        .min()
        .unwrap_or(0);
    text.lines()
        .map(|line| line.get(indent..).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

// Valid workflows.

#[test]
fn a_diamond_listed_out_of_order_is_submitted_dependencies_first() {
    check(
        r#"
        name: diamond
        tasks:
          - id: d
            title: Join the halves
            needs: [b, c]
            steps: [{exec: [{argv: [echo, d]}]}]
          - id: c
            title: Right half
            needs: [a]
            steps: [{agent: sim, prompt: Write the right half}]
          - id: b
            title: Left half
            needs: [a]
            steps: [{exec: [{argv: [echo, b]}]}]
          - id: a
            title: Start
            steps: [{exec: [{argv: [echo, a]}, {argv: ["true"]}]}]
        "#,
        expect![[r#"
            workflow diamond
            a needs=[] title="Start" priority=0 steps=[step-1=exec(echo a; true)]
            b needs=[a] title="Left half" priority=0 steps=[step-1=exec(echo b)]
            c needs=[a] title="Right half" priority=0 steps=[step-1=agent:sim("Write the right half")]
            d needs=[b,c] title="Join the halves" priority=0 steps=[step-1=exec(echo d)]
        "#]],
    );
}

#[test]
fn the_diamond_example_runs_a_then_b_and_c_then_d() {
    check(
        include_str!("../../../examples/diamond.yml"),
        expect![[r#"
        workflow diamond
        a needs=[] title="Prepare the workspace" priority=0 steps=[step-1=exec(echo preparing)]
        b needs=[a] title="Build the left half" priority=0 steps=[step-1=exec(echo building left)]
        c needs=[a] title="Build the right half" priority=0 steps=[step-1=exec(echo building right)]
        d needs=[b,c] title="Join both halves" priority=0 steps=[step-1=exec(echo joining)]
    "#]],
    );
}

#[test]
fn the_demo_example_plans_then_builds_and_tests_then_reviews_then_releases() {
    check(
        include_str!("../../../examples/demo.yml"),
        expect![[r#"
        workflow demo-release
        plan needs=[] title="Plan the release" priority=0 labels=[demo] retry=2x/5s..10m+2s timeout=10m steps=[draft-plan=agent:sim("Read the changelog and write a short release plan with the risks to check.")]
        build needs=[plan] title="Build the release artifacts" priority=0 labels=[demo] retry=2x/5s..10m+2s timeout=10m steps=[compile=exec(echo compiling release build; echo packaging artifacts)/5m]
        test needs=[plan] title="Run the test suite" priority=0 labels=[demo] retry=3x/5s..10m+2s timeout=10m steps=[unit-tests=exec(echo running unit tests), integration-tests=exec(echo running integration tests; true)]
        review needs=[build,test] title="Review the build and the test results" priority=0 labels=[demo] retry=2x/5s..10m+2s timeout=10m approval steps=[review=agent:sim("Look at the build log and the test results. Say whether the release is ready to ship, and list anything that must be fixed first.\n")]
        release needs=[review] title="Publish the release" priority=10 labels=[demo] retry=2x/5s..10m+2s timeout=10m steps=[tag=exec(echo tagging v1.0.0), announce=agent:sim("Write a two-sentence release announcement.")]
    "#]],
    );
}

#[test]
fn defaults_apply_to_every_task_and_a_task_can_override_them() {
    check(
        r#"
        defaults:
          retry: {max_attempts: 5, backoff: 30s, max_backoff: 5m, jitter: 1s}
          timeout: 30m
          labels: [team:core]
          priority: 2
        tasks:
          - id: plain
            title: Takes every default
            steps: [{agent: sim}]
          - id: custom
            title: Overrides everything
            body: Do the custom thing.
            labels: [urgent, team:core]
            priority: -1
            retry: {max_attempts: 1}
            timeout: 1h 30m
            requires_approval: true
            steps:
              - name: think
                agent: sim
                timeout: 90s
              - exec:
                  - argv: [echo, done]
                    cwd: sub/dir
                    env: {A: "1"}
                    timeout: 10s
        "#,
        expect![[r#"
            plain needs=[] title="Takes every default" priority=2 labels=[team:core] retry=5x/30s..5m+1s timeout=30m steps=[step-1=agent:sim("Takes every default")]
            custom needs=[] title="Overrides everything" priority=-1 labels=[team:core,urgent] retry=1x/30s..5m+1s timeout=1h30m approval steps=[think=agent:sim("Do the custom thing.")/1m30s, step-2=exec(echo done)]
        "#]],
    );
}

#[test]
fn an_agent_step_without_a_prompt_gets_the_body_or_else_the_title() {
    check(
        r#"
        tasks:
          - {id: titled, title: Only a title, steps: [{agent: sim}]}
          - {id: bodied, title: A title, body: "The body wins.", steps: [{agent: sim}]}
        "#,
        expect![[r#"
            titled needs=[] title="Only a title" priority=0 steps=[step-1=agent:sim("Only a title")]
            bodied needs=[] title="A title" priority=0 steps=[step-1=agent:sim("The body wins.")]
        "#]],
    );
}

// Keys serde refuses.

#[test]
fn an_unknown_top_level_key_is_named_with_the_keys_allowed() {
    check(
        r#"
        name: x
        taks: []
        "#,
        expect![[r#"
            workflow.yml:2:1: unknown key `taks`; did you mean `tasks`? The keys allowed here are: `name`, `project`, `defaults`, `tasks`, `merge`
              | taks: []
              | ^
        "#]],
    );
}

#[test]
fn an_unknown_key_in_a_task_points_at_the_key() {
    check(
        r#"
        tasks:
          - id: a
            title: A
          - id: b
            title: B
            dependson: [a]
        "#,
        expect![[r#"
            workflow.yml:6:5: tasks[1]: unknown key `dependson`; the keys allowed here are: `id`, `title`, `body`, `labels`, `priority`, `needs`, `steps`, `retry`, `timeout`, `requires_approval`, `merge`, `from`, `unique_key`, `tools`, `parent`, `budget`
              |     dependson: [a]
              |     ^
        "#]],
    );
}

#[test]
fn an_unknown_key_in_a_step_points_at_the_key() {
    check(
        r#"
        tasks:
          - id: a
            title: A
            steps:
              - agent: sim
                promt: Hello
        "#,
        expect![[r#"
            workflow.yml:6:9: tasks[0].steps[0]: unknown key `promt`; did you mean `prompt`? The keys allowed here are: `name`, `exec`, `agent`, `prompt`, `model`, `profile`, `timeout`, `network`, `tools`
              |         promt: Hello
              |         ^
        "#]],
    );
}

#[test]
fn an_unknown_key_in_a_command_points_at_the_key() {
    check(
        r#"
        tasks:
          - id: a
            title: A
            steps:
              - exec:
                  - argv: [echo, hi]
                    workdir: sub
        "#,
        expect![[r#"
            workflow.yml:7:13: tasks[0].steps[0].exec[0]: unknown key `workdir`; the keys allowed here are: `argv`, `env`, `cwd`, `timeout`
              |             workdir: sub
              |             ^
        "#]],
    );
}

#[test]
fn an_unknown_key_in_defaults_points_at_the_key() {
    check(
        r#"
        defaults:
          retries: 3
        tasks:
          - {id: a, title: A}
        "#,
        expect![[r#"
            workflow.yml:2:3: defaults: unknown key `retries`; the keys allowed here are: `retry`, `timeout`, `priority`, `labels`
              |   retries: 3
              |   ^
        "#]],
    );
}

#[test]
fn an_unknown_key_in_a_task_file_points_at_the_key() {
    check_task(
        r#"
        title: A
        need: [b]
        "#,
        expect![[r#"
            task.yml:2:1: unknown key `need`; did you mean `needs`? The keys allowed here are: `id`, `title`, `body`, `labels`, `priority`, `needs`, `steps`, `retry`, `timeout`, `requires_approval`, `merge`, `from`, `unique_key`, `tools`, `parent`, `budget`
              | need: [b]
              | ^
        "#]],
    );
}

// Wrong types.

#[test]
fn a_priority_that_is_not_a_number_points_at_the_value() {
    check(
        r#"
        tasks:
          - id: a
            title: A
          - id: b
            title: B
            priority: high
        "#,
        expect![[r#"
            workflow.yml:6:15: tasks[1].priority: expected a whole number, not `high`
              |     priority: high
              |               ^
        "#]],
    );
}

#[test]
fn needs_written_as_a_string_asks_for_a_list() {
    check(
        r#"
        tasks:
          - id: a
            title: A
          - id: b
            title: B
            needs: a
        "#,
        expect![[r#"
            workflow.yml:6:12: tasks[1].needs: expected a list such as `[a, b]`, found `a`; write it as `[a]`
              |     needs: a
              |            ^
        "#]],
    );
}

#[test]
fn requires_approval_that_is_not_a_boolean_points_at_the_value() {
    check(
        r#"
        tasks:
          - id: a
            title: A
            requires_approval: maybe
        "#,
        expect![[r#"
            workflow.yml:4:24: tasks[0].requires_approval: expected `true` or `false`, not `maybe`
              |     requires_approval: maybe
              |                        ^
        "#]],
    );
}

#[test]
fn a_title_that_is_a_list_asks_for_a_string() {
    check(
        r#"
        tasks:
          - id: a
            title: [A, B]
        "#,
        expect![[r#"
            workflow.yml:3:12: tasks[0].title: expected a single value (text), found a list
              |     title: [A, B]
              |            ^
        "#]],
    );
}

#[test]
fn tasks_that_is_not_a_list_asks_for_a_list() {
    check(
        r#"
        tasks:
          id: a
          title: A
        "#,
        expect![[r#"
            workflow.yml:2:3: tasks: expected a list such as `[a, b]`, found a mapping
              |   id: a
              |   ^
        "#]],
    );
}

#[test]
fn a_retry_count_that_is_negative_points_at_the_value() {
    check(
        r#"
        tasks:
          - id: a
            title: A
            retry:
              max_attempts: -2
        "#,
        expect![[r#"
            workflow.yml:5:21: tasks[0].retry.max_attempts: `-2` is negative; give 0 or more
              |       max_attempts: -2
              |                     ^
        "#]],
    );
}

#[test]
fn a_retry_written_as_a_number_asks_for_a_mapping() {
    check(
        r#"
        tasks:
          - id: a
            title: A
            retry: 3
        "#,
        expect![[r#"
            workflow.yml:4:12: tasks[0].retry: expected a mapping (`key: value` lines), found `3`
              |     retry: 3
              |            ^
        "#]],
    );
}

#[test]
fn steps_written_as_a_mapping_ask_for_a_list() {
    check(
        r#"
        tasks:
          - id: a
            title: A
            steps:
              agent: sim
        "#,
        expect![[r#"
            workflow.yml:5:7: tasks[0].steps: expected a list such as `[a, b]`, found a mapping
              |       agent: sim
              |       ^
        "#]],
    );
}

#[test]
fn a_priority_too_large_for_the_field_is_refused() {
    check_task(
        r#"
        title: A
        priority: 99999999999
        "#,
        expect![[r#"
            task.yml:2:11: priority: `99999999999` is too large for this field
              | priority: 99999999999
              |           ^
        "#]],
    );
}

#[test]
fn an_unknown_key_with_a_near_miss_suggests_the_right_one() {
    check(
        r#"
        tasks:
          - id: a
            title: A
            need: [b]
        "#,
        expect![[r#"
            workflow.yml:4:5: tasks[0]: unknown key `need`; did you mean `needs`? The keys allowed here are: `id`, `title`, `body`, `labels`, `priority`, `needs`, `steps`, `retry`, `timeout`, `requires_approval`, `merge`, `from`, `unique_key`, `tools`, `parent`, `budget`
              |     need: [b]
              |     ^
        "#]],
    );
}

#[test]
fn an_env_value_that_is_a_list_names_the_variable() {
    check(
        r#"
        tasks:
          - id: a
            title: A
            steps:
              - exec:
                  - argv: [env]
                    env:
                      PATH: [a, b]
        "#,
        expect![[r#"
            workflow.yml:8:21: tasks[0].steps[0].exec[0].env.PATH: expected a single value (text), found a list
              |               PATH: [a, b]
              |                     ^
        "#]],
    );
}

// Ids and dependencies.

#[test]
fn a_need_that_names_no_task_lists_the_ids_there_are() {
    check(
        r#"
        tasks:
          - id: build
            title: Build
          - id: test
            title: Test
            needs: [build, lint]
        "#,
        expect![[r#"
            workflow.yml:6:20: `needs` names `lint`, but no task in this file has that id; the ids are: build, test
              |     needs: [build, lint]
              |                    ^
        "#]],
    );
}

#[test]
fn a_duplicate_task_id_points_at_the_second_one_and_names_the_first() {
    check(
        r#"
        tasks:
          - id: a
            title: First
          - id: a
            title: Second
        "#,
        expect![[r#"
            workflow.yml:4:9: task id `a` is used twice (first at line 2); give each task a unique id
              |   - id: a
              |         ^
        "#]],
    );
}

#[test]
fn a_two_task_cycle_names_both_tasks() {
    check(
        r#"
        tasks:
          - id: a
            title: A
            needs: [b]
          - id: b
            title: B
            needs: [a]
        "#,
        expect![[r#"
            workflow.yml:2:9: the tasks form a dependency cycle: `a` -> `b` -> `a` (each is needed by the next); remove one of these `needs`
              |   - id: a
              |         ^
        "#]],
    );
}

#[test]
fn a_three_task_cycle_names_all_three_tasks() {
    check(
        r#"
        tasks:
          - id: start
            title: Outside the cycle
          - id: x
            title: X
            needs: [start, z]
          - id: y
            title: Y
            needs: [x]
          - id: z
            title: Z
            needs: [y]
        "#,
        expect![[r#"
            workflow.yml:4:9: the tasks form a dependency cycle: `x` -> `y` -> `z` -> `x` (each is needed by the next); remove one of these `needs`
              |   - id: x
              |         ^
        "#]],
    );
}

#[test]
fn a_task_that_needs_itself_is_a_cycle() {
    check(
        r#"
        tasks:
          - id: a
            title: A
            needs: [a]
        "#,
        expect![[r#"
            workflow.yml:2:9: the tasks form a dependency cycle: `a` -> `a` (each is needed by the next); remove one of these `needs`
              |   - id: a
              |         ^
        "#]],
    );
}

#[test]
fn a_task_without_an_id_in_a_workflow_is_refused() {
    check(
        r#"
        tasks:
          - id: a
            title: A
          - title: Anonymous
        "#,
        expect![[r#"
            workflow.yml:4:5: task 2 (`Anonymous`) has no `id`; every task in a workflow needs one so that others can name it in `needs`
              |   - title: Anonymous
              |     ^
        "#]],
    );
}

#[test]
fn an_id_with_spaces_is_refused() {
    check(
        r#"
        tasks:
          - id: my task
            title: A
        "#,
        expect![[r#"
            workflow.yml:2:9: task id `my task` must start with a letter or digit and use only letters, digits, `_`, `.` and `-`
              |   - id: my task
              |         ^
        "#]],
    );
}

#[test]
fn an_empty_task_list_is_refused() {
    check(
        r#"
        name: nothing
        tasks: []
        "#,
        expect![[r#"
            workflow.yml:2:8: `tasks` is empty; a workflow needs at least one task
              | tasks: []
              |        ^
        "#]],
    );
}

#[test]
fn a_workflow_without_tasks_is_refused() {
    check(
        r#"
        name: nothing
        "#,
        expect![[r#"
            workflow.yml:1:1: the required key `tasks` is missing; add it
              | name: nothing
              | ^
        "#]],
    );
}

// Steps and commands.

#[test]
fn a_step_with_both_exec_and_agent_is_refused() {
    check(
        r#"
        tasks:
          - id: a
            title: A
            steps:
              - name: both
                exec: [{argv: [echo, hi]}]
                agent: sim
        "#,
        expect![[r#"
            workflow.yml:5:9: step `both` has both `exec` and `agent`; a step does one of them, so split it into two steps
              |       - name: both
              |         ^
        "#]],
    );
}

#[test]
fn a_step_with_neither_exec_nor_agent_is_refused() {
    check(
        r#"
        tasks:
          - id: a
            title: A
            steps:
              - exec: [{argv: [echo, hi]}]
              - name: idle
                timeout: 5m
        "#,
        expect![[r#"
            workflow.yml:6:9: step `idle` has neither `exec` nor `agent`; add `exec: [{argv: [...]}]` or `agent: sim`
              |       - name: idle
              |         ^
        "#]],
    );
}

#[test]
fn an_exec_step_with_a_prompt_is_refused() {
    check(
        r#"
        tasks:
          - id: a
            title: A
            steps:
              - exec: [{argv: [echo, hi]}]
                prompt: Say hi
        "#,
        expect![[r#"
            workflow.yml:6:17: step `step-1` is an `exec` step, and `prompt` belongs to `agent` steps; remove it or make this an `agent` step
              |         prompt: Say hi
              |                 ^
        "#]],
    );
}

#[test]
fn two_steps_with_one_name_are_refused() {
    check(
        r#"
        tasks:
          - id: a
            title: A
            steps:
              - {name: go, agent: sim}
              - {name: go, agent: sim}
        "#,
        expect![[r#"
            workflow.yml:6:9: step name `go` is used twice in this task (first at line 5); give each step a unique `name`
              |       - {name: go, agent: sim}
              |         ^
        "#]],
    );
}

#[test]
fn an_empty_argv_is_refused() {
    check(
        r#"
        tasks:
          - id: a
            title: A
            steps:
              - exec:
                  - argv: []
        "#,
        expect![[r#"
            workflow.yml:6:19: `argv` is empty; give the program and its arguments, such as `[cargo, test]`
              |           - argv: []
              |                   ^
        "#]],
    );
}

#[test]
fn an_argv_written_as_one_string_with_spaces_is_refused_with_the_list_to_write() {
    check(
        r#"
        tasks:
          - id: a
            title: A
            steps:
              - exec:
                  - argv: ["cargo test --quiet"]
        "#,
        expect![[r#"
            workflow.yml:6:19: `argv` is one string with spaces (`cargo test --quiet`); orch runs no shell, so split it into a list: `[cargo, test, --quiet]`
              |           - argv: ["cargo test --quiet"]
              |                   ^
        "#]],
    );
}

#[test]
fn an_argv_written_as_a_plain_string_asks_for_a_list() {
    check(
        r#"
        tasks:
          - id: a
            title: A
            steps:
              - exec:
                  - argv: cargo test
        "#,
        expect![[r#"
            workflow.yml:6:19: tasks[0].steps[0].exec[0].argv: expected a list such as `[a, b]`, found `cargo test`; write it as `[cargo, test]`
              |           - argv: cargo test
              |                   ^
        "#]],
    );
}

#[test]
fn a_cwd_that_climbs_out_of_the_workspace_is_refused() {
    check(
        r#"
        tasks:
          - id: a
            title: A
            steps:
              - exec:
                  - argv: [ls]
                    cwd: sub/../../etc
        "#,
        expect![[r#"
            workflow.yml:7:18: `cwd: sub/../../etc` leaves the workspace; give a path relative to the workspace without `..`
              |             cwd: sub/../../etc
              |                  ^
        "#]],
    );
}

#[test]
fn an_absolute_cwd_is_refused() {
    check(
        r#"
        tasks:
          - id: a
            title: A
            steps:
              - exec:
                  - argv: [ls]
                    cwd: /etc
        "#,
        expect![[r#"
            workflow.yml:7:18: `cwd: /etc` leaves the workspace; give a path relative to the workspace without `..`
              |             cwd: /etc
              |                  ^
        "#]],
    );
}

// Durations and retry.

#[test]
fn a_timeout_that_is_not_a_duration_points_at_the_value() {
    check(
        r#"
        tasks:
          - id: a
            title: A
            timeout: soon
        "#,
        expect![[r#"
            workflow.yml:4:14: `timeout: soon` is not a duration (expected number at 0); write it like `30s`, `5m` or `1h 30m`
              |     timeout: soon
              |              ^
        "#]],
    );
}

#[test]
fn a_bad_duration_in_defaults_points_at_the_value() {
    check(
        r#"
        defaults:
          retry:
            backoff: 10 parsecs
        tasks:
          - {id: a, title: A}
        "#,
        expect![[r#"
            workflow.yml:3:14: `backoff: 10 parsecs` is not a duration (unknown time unit "parsecs", supported units: ns, us/µs, ms, sec, min, hours, days, weeks, months, years (and few variations)); write it like `30s`, `5m` or `1h 30m`
              |     backoff: 10 parsecs
              |              ^
        "#]],
    );
}

#[test]
fn max_attempts_of_zero_points_at_the_value() {
    check(
        r#"
        tasks:
          - id: a
            title: A
            retry:
              backoff: 1s
              max_attempts: 0
        "#,
        expect![[r#"
            workflow.yml:6:21: `max_attempts: 0` leaves no attempt to run the task; set it to 1 or more
              |       max_attempts: 0
              |                     ^
        "#]],
    );
}

#[test]
fn max_attempts_of_zero_in_defaults_points_at_the_value() {
    check(
        r#"
        defaults:
          retry: {max_attempts: 0}
        tasks:
          - {id: a, title: A}
        "#,
        expect![[r#"
            workflow.yml:2:25: `max_attempts: 0` leaves no attempt to run the task; set it to 1 or more
              |   retry: {max_attempts: 0}
              |                         ^
        "#]],
    );
}

#[test]
fn a_null_timeout_is_read_as_text_and_refused() {
    // FIXME: `marked_yaml` has no null, so `~` is the text "~" rather than "no timeout"; the
    // schemas leave null out so that editors do not suggest it.
    check(
        r#"
        tasks:
          - id: a
            title: A
            timeout: ~
        "#,
        expect![[r#"
            workflow.yml:4:14: `timeout: ~` is not a duration (expected number at 0); write it like `30s`, `5m` or `1h 30m`
              |     timeout: ~
              |              ^
        "#]],
    );
}

// YAML itself.

#[test]
fn a_duplicate_key_points_at_the_second_and_names_the_first_line() {
    check(
        r#"
        tasks:
          - id: a
            title: A
            priority: 1
            priority: 2
        "#,
        expect![[r#"
            workflow.yml:5:5: the key `priority` appears twice in this mapping (first at line 4); keep one
              |     priority: 2
              |     ^
        "#]],
    );
}

#[test]
fn a_tab_in_the_indentation_is_invalid_yaml() {
    check(
        "
        tasks:
          - id: a
        \ttitle: A
        ",
        expect![[r#"
            workflow.yml:3:1: this is not valid YAML: a tab is used for indentation; indent with spaces
              | →title: A
              | ^
        "#]],
    );
}

#[test]
fn an_unclosed_bracket_is_invalid_yaml() {
    check(
        r#"
        tasks:
          - id: a
            title: A
            needs: [b, c
          - id: b
            title: B
        "#,
        expect![[r#"
            workflow.yml:4:12: this is not valid YAML: this `[` is never closed; add a `]` (the parser stopped at line 5, column 7: illegal placement of ':' indicator)
              |     needs: [b, c
              |            ^
        "#]],
    );
}

#[test]
fn an_unclosed_bracket_at_the_end_of_the_file_is_invalid_yaml() {
    check(
        r#"
        tasks:
          - id: a
            title: A
            needs: [b, c
        "#,
        expect![[r#"
            workflow.yml:4:12: this is not valid YAML: this `[` is never closed; add a `]` (the parser stopped at line 6, column 1: while parsing a flow sequence, expected ',' or ']')
              |     needs: [b, c
              |            ^
        "#]],
    );
}

#[test]
fn a_tab_before_a_top_level_key_is_invalid_yaml() {
    check(
        "name: x\n\ttasks: []\n",
        expect![[r#"
        workflow.yml:2:1: this is not valid YAML: a tab is used for indentation; indent with spaces
          | →tasks: []
          | ^
    "#]],
    );
}

#[test]
fn a_tab_in_a_nested_mapping_is_invalid_yaml() {
    check(
        "
        tasks:
          - id: a
            title: A
            steps:
              - agent: sim
        \t        prompt: hi
        ",
        expect![[r#"
            workflow.yml:6:1: this is not valid YAML: a tab is used for indentation; indent with spaces
              | →        prompt: hi
              | ^
        "#]],
    );
}

#[test]
fn an_anchor_is_refused() {
    check(
        r#"
        tasks:
          - id: a
            title: &t A
          - id: b
            title: *t
        "#,
        expect![[r#"
            workflow.yml:3:15: YAML anchors and aliases are not supported; write the value out
              |     title: &t A
              |               ^
        "#]],
    );
}

#[test]
fn an_exec_step_with_a_model_points_at_the_model() {
    check(
        r#"
        tasks:
          - id: a
            title: A
            steps:
              - exec: [{argv: [echo, hi]}]
                model: big
        "#,
        expect![[r#"
            workflow.yml:6:16: step `step-1` is an `exec` step, and `model` belongs to `agent` steps; remove it or make this an `agent` step
              |         model: big
              |                ^
        "#]],
    );
}

#[test]
fn brackets_in_quotes_and_block_text_are_not_blamed_for_a_later_syntax_error() {
    check(
        r#"
        tasks:
          - id: a
            title: "Fix [draft"
            body: |
              Notes with an open [ bracket
              and { another.
          - id: b
            title: B: C
        "#,
        expect![[r#"
            workflow.yml:8:13: this is not valid YAML: mapping values are not allowed in this context; if a value contains `: `, put the value in quotes
              |     title: B: C
              |             ^
        "#]],
    );
}

#[test]
fn a_file_that_is_a_list_is_refused() {
    check(
        r#"
        - id: a
          title: A
        "#,
        expect![[r#"
            workflow.yml:1:1: the file must be a YAML mapping (`key: value` lines)
              | - id: a
              | ^
        "#]],
    );
}

#[test]
fn an_empty_file_is_refused() {
    check(
        "",
        expect![[r#"
            workflow.yml:1:1: the required key `tasks` is missing; add it
              (no line)
        "#]],
    );
}

// Titles.

#[test]
fn an_empty_title_points_at_the_value() {
    check(
        r#"
        tasks:
          - id: a
            title: ""
        "#,
        expect![[r#"
            workflow.yml:3:12: the title is empty; give the task a short one-line title
              |     title: ""
              |            ^
        "#]],
    );
}

#[test]
fn a_missing_title_is_refused() {
    check(
        r#"
        tasks:
          - id: a
            title: A
          - id: b
            priority: 1
        "#,
        expect![[r#"
            workflow.yml:4:5: tasks[1]: the required key `title` is missing; add it
              |   - id: b
              |     ^
        "#]],
    );
}

#[test]
fn a_multi_line_title_is_refused() {
    check(
        r#"
        tasks:
          - id: a
            title: |
              First line
              Second line
        "#,
        expect![[r#"
            workflow.yml:4:7: the title spans several lines; keep it to one line and put details in the body
              |       First line
              |       ^
        "#]],
    );
}

// Single-task files.

#[test]
fn a_task_file_needs_only_a_title() {
    check_task(
        r#"
        title: Fix the flaky test
        "#,
        expect![[r#"
            - title="Fix the flaky test" priority=0 steps=[agent=agent:auto("Fix the flaky test")]
        "#]],
    );
}

#[test]
fn a_task_file_takes_every_task_key() {
    check_task(
        r#"
        id: fix-flaky
        title: Fix the flaky test
        body: It fails one run in ten.
        labels: [bug]
        priority: 3
        retry: {max_attempts: 2}
        timeout: 45m
        requires_approval: true
        steps:
          - name: fix
            agent: sim
          - name: check
            exec:
              - argv: [echo, checking]
        "#,
        expect![[r#"
            fix-flaky title="Fix the flaky test" priority=3 labels=[bug] retry=2x/10s..10m+2s timeout=45m approval steps=[fix=agent:sim("It fails one run in ten."), check=exec(echo checking)]
        "#]],
    );
}

#[test]
fn a_task_file_with_a_wrong_type_names_the_key() {
    check_task(
        r#"
        title: A
        priority: high
        "#,
        expect![[r#"
            task.yml:2:11: priority: expected a whole number, not `high`
              | priority: high
              |           ^
        "#]],
    );
}

#[test]
fn a_task_file_with_max_attempts_of_zero_points_at_the_value() {
    check_task(
        r#"
        title: A
        retry:
          max_attempts: 0
        "#,
        expect![[r#"
            task.yml:3:17: `max_attempts: 0` leaves no attempt to run the task; set it to 1 or more
              |   max_attempts: 0
              |                 ^
        "#]],
    );
}

#[test]
fn a_task_file_with_a_bad_step_points_at_the_step() {
    check_task(
        r#"
        title: A
        steps:
          - name: both
            agent: sim
            exec: [{argv: [echo]}]
        "#,
        expect![[r#"
            task.yml:3:5: step `both` has both `exec` and `agent`; a step does one of them, so split it into two steps
              |   - name: both
              |     ^
        "#]],
    );
}

/// Found by the `workflow_spec` fuzz target: a tag on the last line, without a line break after
/// it, was reported at a line past the end of the file.
#[test]
fn an_error_at_the_end_of_a_file_without_a_final_line_break_points_at_its_last_line() {
    let text = "# comment\n  !09releds";
    let error = orch_core::spec::parse_workflow("workflow.yml", text).unwrap_err();
    assert_eq!(
        error.to_string(),
        "workflow.yml:2:12: YAML tags (`!name`) are not supported; remove the tag"
    );
}

/// Found by the `workflow_spec` fuzz target: a missing key in a file whose only line has no line
/// break after it was reported at line 2.
#[test]
fn a_missing_key_in_a_one_line_file_points_at_that_line() {
    let error = orch_core::spec::parse_workflow("workflow.yml", "# only a comment").unwrap_err();
    assert_eq!(error.at.line, 1, "{error}");
}

/// Found by the `workflow_spec` fuzz target: an empty title on the only line of a task file
/// without a line break after it was reported at line 2.
#[test]
fn an_empty_title_on_the_last_line_points_at_that_line() {
    let error = orch_core::spec::parse_task("task.yml", "title: \0").unwrap_err();
    assert_eq!(error.at.line, 1, "{error}");
}

#[test]
fn a_workflow_merge_lands_the_final_task_and_a_tasks_own_merge_wins() {
    check(
        r#"
        merge: {into: main, mode: squash}
        tasks:
          - id: last
            title: Last
            needs: [first]
            steps: [{exec: [{argv: [true]}]}]
          - id: first
            title: First
            steps: [{exec: [{argv: [true]}]}]
        "#,
        expect![[r#"
            first needs=[] title="First" priority=0 steps=[step-1=exec(true)]
            last needs=[first] title="Last" priority=0 merge=squash->main steps=[step-1=exec(true)]
        "#]],
    );
    check(
        r#"
        merge: {mode: squash}
        tasks:
          - id: first
            title: First
            merge: {mode: rebase}
            steps: [{exec: [{argv: [true]}]}]
        "#,
        expect![[r#"
            first needs=[] title="First" priority=0 merge=rebase->HEAD steps=[step-1=exec(true)]
        "#]],
    );
}

#[test]
fn a_merge_into_something_that_is_not_a_branch_name_is_refused() {
    check(
        r#"
        tasks:
          - id: first
            title: First
            merge: {into: "--upload-pack=evil"}
            steps: [{exec: [{argv: [true]}]}]
        "#,
        expect![[r#"
            workflow.yml:4:12: `merge.into: --upload-pack=evil` is not a branch name; write one such as `main` or `release/1.2`
              |     merge: {into: "--upload-pack=evil"}
              |            ^
        "#]],
    );
    check(
        r#"
        tasks:
          - id: first
            title: First
            merge: {mode: octopus}
            steps: [{exec: [{argv: [true]}]}]
        "#,
        expect![[r#"
            workflow.yml:4:19: tasks[0].merge.mode: unknown variant `octopus`, expected one of `merge`, `squash`, `rebase`
              |     merge: {mode: octopus}
              |                   ^
        "#]],
    );
}

#[test]
fn from_base_opts_a_task_out_of_starting_from_its_dependencies() {
    let text = dedent(
        r#"
        tasks:
          - id: a
            title: A
          - id: b
            title: B
            needs: [a]
          - id: c
            title: C
            needs: [a]
            from: base
        "#,
    );
    let workflow = parse_workflow("workflow.yml", &text).unwrap();
    let froms: Vec<orch_core::StartFrom> =
        workflow.tasks.iter().map(|t| t.spec.start_from).collect();
    assert_eq!(
        froms,
        [
            orch_core::StartFrom::Dependencies,
            orch_core::StartFrom::Dependencies,
            orch_core::StartFrom::Base
        ]
    );
    // Stored specs (job.json) name it only when it is not the default.
    let stored = serde_json::to_value(&workflow.tasks[2].spec).unwrap();
    assert_eq!(stored["from"], "base");
    assert!(serde_json::to_value(&workflow.tasks[1].spec)
        .unwrap()
        .get("from")
        .is_none());
}

#[test]
fn an_unknown_from_names_the_choices() {
    check(
        r#"
        tasks:
          - id: a
            title: A
            from: main
        "#,
        expect![[r#"
            workflow.yml:4:11: tasks[0].from: unknown variant `main`, expected `dependencies` or `base`
              |     from: main
              |           ^
        "#]],
    );
}

#[test]
fn a_zero_timeout_is_refused_at_the_value() {
    check(
        r#"
        tasks:
          - id: a
            title: A
            timeout: 0s
            steps:
              - agent: sim
        "#,
        expect![[r#"
            workflow.yml:4:14: `timeout: 0s` would stop the run the moment it starts; give a positive duration such as `30m`, or remove `timeout` for no timeout
              |     timeout: 0s
              |              ^
        "#]],
    );
}

#[test]
fn a_zero_step_timeout_is_refused_at_the_value() {
    check(
        r#"
        tasks:
          - id: a
            title: A
            steps:
              - exec: [{argv: [true], timeout: 0ms}]
        "#,
        expect![[r#"
            workflow.yml:5:40: `timeout: 0s` would stop the run the moment it starts; give a positive duration such as `30m`, or remove `timeout` for no timeout
              |       - exec: [{argv: [true], timeout: 0ms}]
              |                                        ^
        "#]],
    );
}
