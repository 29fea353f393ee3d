//! The JSON Schemas in `schemas/` at the repository root are generated from the spec types; this
//! test keeps them in step. Refresh them with
//! `UPDATE_SCHEMAS=1 cargo test -p orch-core --test schemas`.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use orch_core::spec::{task_schema, workflow_schema};

fn schemas_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas")
}

/// Compare `generated` with the checked-in file, or rewrite the file when `UPDATE_SCHEMAS=1`.
fn check_schema(file_name: &str, generated: &str) {
    let path = schemas_dir().join(file_name);
    if std::env::var("UPDATE_SCHEMAS").is_ok_and(|v| v == "1") {
        std::fs::create_dir_all(schemas_dir()).expect("create the schemas directory");
        std::fs::write(&path, generated).expect("write the schema file");
        return;
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == generated,
        "{} is out of date with the spec types in orch-core; \
         run `UPDATE_SCHEMAS=1 cargo test -p orch-core --test schemas` and commit the result",
        path.display()
    );
}

#[test]
fn the_workflow_schema_file_matches_the_spec_types() {
    check_schema("workflow.schema.json", &workflow_schema());
}

#[test]
fn the_task_schema_file_matches_the_spec_types() {
    check_schema("task.schema.json", &task_schema());
}

#[test]
fn the_schemas_are_json_objects_with_a_title() {
    for (name, schema) in [("workflow", workflow_schema()), ("task", task_schema())] {
        let value: serde_json::Value =
            serde_json::from_str(&schema).expect("a generated schema is valid JSON");
        let title = value.get("title").and_then(|t| t.as_str());
        assert_eq!(title, Some(format!("orch {name} file").as_str()));
    }
}

#[test]
fn no_schema_allows_null_because_the_parser_reads_null_as_text() {
    for schema in [workflow_schema(), task_schema()] {
        assert!(!schema.contains("\"null\""), "{schema}");
    }
}
