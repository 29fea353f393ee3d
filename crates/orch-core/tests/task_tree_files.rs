//! Workflow and task files with issue 14's fields: `parent`, `unique_key`, `tools`.

#![allow(clippy::unwrap_used)]

use orch_core::spec::{parse_task, parse_workflow};

#[test]
fn children_come_after_their_parent_with_its_batch_index() {
    let workflow = parse_workflow(
        "w.yml",
        "tasks:\n  - id: one\n    title: One\n    parent: top\n  - id: top\n    title: Top\n    unique_key: release-7\n  - id: two\n    title: Two\n    parent: top\n    needs: [one]\n",
    )
    .unwrap();
    let keys: Vec<&str> = workflow
        .tasks
        .iter()
        .map(|t| t.spec.key.as_deref().unwrap())
        .collect();
    let top = keys.iter().position(|k| *k == "top").unwrap();
    assert_eq!(top, 0, "the parent is submitted first: {keys:?}");
    for task in &workflow.tasks[1..] {
        assert_eq!(task.parent_in_batch, Some(top));
    }
    assert_eq!(
        workflow.tasks[top].spec.unique_key.as_deref(),
        Some("release-7")
    );
}

#[test]
fn a_child_that_needs_its_parent_or_an_unknown_parent_is_refused() {
    let err = parse_workflow(
        "w.yml",
        "tasks:\n  - id: top\n    title: Top\n  - id: one\n    title: One\n    parent: top\n    needs: [top]\n",
    )
    .unwrap_err();
    assert!(err.to_string().contains("would never run"), "{err}");
    assert_eq!(err.at.line, 6, "{err}");
    let err = parse_workflow(
        "w.yml",
        "tasks:\n  - id: one\n    title: One\n    parent: nobody\n",
    )
    .unwrap_err();
    assert!(err.to_string().contains("no task in this file"), "{err}");
}

#[test]
fn tools_of_the_task_and_its_steps_join_and_bad_ones_point_at_their_line() {
    let spec = parse_task(
        "t.yml",
        "title: T\ntools:\n  - name: git\n    version: \">=2\"\nsteps:\n  - exec: [{argv: [jq, .]}]\n    tools:\n      - {name: jq, sha256: \"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}\n",
    )
    .unwrap();
    let names: Vec<&str> = spec.tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["git", "jq"]);
    let err = parse_task(
        "t.yml",
        "title: T\ntools:\n  - name: git\n    version: \">>2\"\n",
    )
    .unwrap_err();
    assert!(err.to_string().contains("does not parse"), "{err}");
    assert_eq!(err.at.line, 3, "{err}");
    let err = parse_task("t.yml", "title: T\nparent: top\n").unwrap_err();
    assert!(err.to_string().contains("--parent"), "{err}");
    let err = parse_task("t.yml", "title: T\nunique_key: \"\"\n").unwrap_err();
    assert!(err.to_string().contains("unique key is empty"), "{err}");
}
