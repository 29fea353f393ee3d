//! JSON Schema generation for workflow and task files.

use super::{TaskFile, WorkflowFile};

/// The JSON Schema of workflow files, pretty-printed.
pub fn workflow_schema() -> String {
    pretty(schemars::schema_for!(WorkflowFile))
}

/// The JSON Schema of single-task files, pretty-printed.
pub fn task_schema() -> String {
    pretty(schemars::schema_for!(TaskFile))
}

fn pretty(schema: schemars::Schema) -> String {
    let mut value = schema.to_value();
    forbid_null(&mut value);
    // Back to a `Schema`, whose serializer puts `$schema`, `title` and `type` first.
    let schema = schemars::Schema::try_from(value).expect("a schema stays an object");
    let mut text = serde_json::to_string_pretty(&schema).expect("a schema is plain JSON");
    text.push('\n');
    text
}

/// Take `null` out of the schema. Optional keys are `Option`s in Rust, which schemars describes
/// as "this type or null", but `marked_yaml` has no null: `timeout: ~` reaches the parser as the
/// text `~`. An editor that trusts the schema should leave such a key out instead.
fn forbid_null(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Object(object) => {
            if object.get("default").is_some_and(Value::is_null) {
                object.remove("default");
            }
            if let Some(Value::Array(types)) = object.get_mut("type") {
                types.retain(|t| t != "null");
                if let [only] = types.as_slice() {
                    let only = only.clone();
                    object.insert("type".to_owned(), only);
                }
            }
            if let Some(Value::Array(any_of)) = object.get_mut("anyOf") {
                any_of.retain(|branch| branch.get("type").is_none_or(|t| t != "null"));
                if let [only] = any_of.as_slice() {
                    let only = only.clone();
                    object.remove("anyOf");
                    if let Value::Object(only) = only {
                        object.extend(only);
                    }
                }
            }
            object.values_mut().for_each(forbid_null);
        }
        Value::Array(items) => items.iter_mut().for_each(forbid_null),
        _ => {}
    }
}
