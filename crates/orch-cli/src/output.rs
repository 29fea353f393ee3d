//! What commands print: JSON views (stable field names) and human tables.

use comfy_table::{presets, Table};
use orch_core::Task;
use serde::Serialize;

pub use orch_server::api::views::{time, EventView, RunView, TaskView};

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

/// Tasks as a table.
pub fn task_table(tasks: &[Task]) -> Table {
    let mut t = table(&["id", "status", "pri", "tries", "needs", "title"]);
    for task in tasks {
        let needs: Vec<String> = task.needs.iter().map(|n| n.to_string()).collect();
        let mut title = task.spec.title.to_string();
        if let Some(reason) = &task.status_reason {
            title.push_str(&format!("  ({reason})"));
        }
        t.add_row(vec![
            task.id.to_string(),
            task.status.to_string(),
            task.spec.priority.to_string(),
            format!("{}/{}", task.attempts_used, task.spec.retry.max_attempts),
            needs.join(","),
            title,
        ]);
    }
    t
}
