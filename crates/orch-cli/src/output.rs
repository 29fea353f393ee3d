//! What commands print: JSON views (stable field names) and human tables.

use comfy_table::{presets, Table};
use serde::Serialize;
use serde_json::Value;

pub use orch_server::api::views::{EventView, RunView, TaskView};

/// A table with orch's look.
pub fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table.load_preset(presets::NOTHING);
    table.set_header(header.iter().map(|h| h.to_uppercase()));
    table
}

/// Print a value as pretty JSON.
pub fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Task views (`TaskView` as JSON) as a table.
pub fn task_table(tasks: &[Value]) -> Table {
    let mut t = table(&["id", "status", "pri", "tries", "needs", "title"]);
    for task in tasks {
        let text = |key: &str| task[key].as_str().unwrap_or("").to_owned();
        let mut title = text("title");
        if let Some(reason) = task["status_reason"].as_str() {
            title.push_str(&format!("  ({reason})"));
        }
        t.add_row(vec![
            task["id"].to_string(),
            text("status"),
            task["priority"].to_string(),
            format!("{}/{}", task["attempts_used"], task["max_attempts"]),
            ids(&task["needs"]),
            title,
        ]);
    }
    t
}

/// A JSON list of ids as `1,2,3`.
pub fn ids(list: &Value) -> String {
    let ids: Vec<String> = list
        .as_array()
        .into_iter()
        .flatten()
        .map(Value::to_string)
        .collect();
    ids.join(",")
}
