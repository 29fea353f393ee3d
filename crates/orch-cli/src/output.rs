//! What commands print: JSON views (stable field names) and human tables.

use comfy_table::{presets, Table};
use serde::Serialize;
use serde_json::Value;

pub use orch_api::{EventView, RunView, TaskView};

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
