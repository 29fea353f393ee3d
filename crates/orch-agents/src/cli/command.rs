//! User-defined command agents: plain text, or orch's own normalized JSONL.

use serde_json::json;

use super::parse_json;
use crate::AgentEvent;

/// Plain text: every line is an assistant message; all of stdout is the result.
#[derive(Debug, Default)]
pub struct CommandParser {
    text: String,
}

impl CommandParser {
    /// The events of one line.
    pub fn line(&mut self, line: &str) -> Vec<AgentEvent> {
        if !self.text.is_empty() {
            self.text.push('\n');
        }
        self.text.push_str(line);
        vec![AgentEvent::Message {
            role: "assistant".into(),
            text: line.to_owned(),
        }]
    }

    /// The result: everything it printed.
    pub fn finish(&mut self) -> Vec<AgentEvent> {
        vec![AgentEvent::Result {
            text: std::mem::take(&mut self.text).trim().to_owned(),
            is_error: false,
        }]
    }
}

/// orch's normalized events, one JSON object per line (the format of `events.jsonl`).
#[derive(Debug, Default)]
pub struct JsonlParser {}

impl JsonlParser {
    /// The events of one line.
    pub fn line(&mut self, line: &str) -> Vec<AgentEvent> {
        if line.trim().is_empty() {
            return Vec::new();
        }
        match parse_json(line) {
            Some(value) => match serde_json::from_value::<AgentEvent>(value.clone()) {
                Ok(event) => vec![event],
                Err(_) => vec![AgentEvent::Unknown { raw: value }],
            },
            None => vec![AgentEvent::Unknown {
                raw: json!({ "unparsed": line }),
            }],
        }
    }
}
