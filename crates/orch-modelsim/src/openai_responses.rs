//! The OpenAI Responses API (`POST /v1/responses`), as Codex CLI uses it.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::Response;
use serde_json::{json, Value};

use crate::script::{Entry, ToolCall, Transcript, Turn};
use crate::server::{
    content_text, hang, json_body, json_words, read_request, sse_body, sse_event, stall, Dialect,
    Shared,
};

/// User messages Codex adds itself; they are context, not the user's request.
const CONTEXT_PREFIXES: &[&str] = &[
    "<environment_context>",
    "<user_instructions>",
    "# AGENTS.md",
    "<permissions",
    "<INSTRUCTIONS>",
];

pub(crate) async fn responses(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let incoming = read_request(Dialect::OpenaiResponses, request).await;
    let body = incoming.body.clone();
    let transcript = transcript(&body);
    let turn = shared.decide(incoming, &transcript);
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("gpt-modelsim")
        .to_owned();
    match &turn {
        Turn::Hang => hang(&shared).await,
        Turn::Stall => stall(&shared),
        Turn::Error {
            status,
            retry_after_secs,
            message,
        } => crate::openai_chat::error(*status, *retry_after_secs, message.as_deref()),
        _ => {
            let items = items(&turn, &transcript, offers_apply_patch(&body));
            let id = format!("resp_modelsim_{:04}", transcript.entries.len());
            let usage = json!({
                "input_tokens": transcript.input_tokens(),
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": turn.output_tokens(),
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": transcript.input_tokens() + turn.output_tokens(),
            });
            if body.get("stream").and_then(Value::as_bool) == Some(true) {
                let mut out = String::new();
                let created = json!({"id": id, "object": "response", "model": model,
                                     "status": "in_progress", "output": []});
                sse_event(
                    &mut out,
                    "response.created",
                    &json!({"type": "response.created", "response": created}),
                );
                for (index, item) in items.iter().enumerate() {
                    sse_event(
                        &mut out,
                        "response.output_item.done",
                        &json!({"type": "response.output_item.done", "output_index": index,
                                "item": item}),
                    );
                }
                let completed = json!({"id": id, "object": "response", "model": model,
                                       "status": "completed", "output": items, "usage": usage});
                sse_event(
                    &mut out,
                    "response.completed",
                    &json!({"type": "response.completed", "response": completed}),
                );
                sse_body(out)
            } else {
                json_body(&json!({"id": id, "object": "response", "model": model,
                                  "status": "completed", "output": items, "usage": usage}))
            }
        }
    }
}

fn offers_apply_patch(body: &Value) -> bool {
    body.get("tools")
        .and_then(Value::as_array)
        .is_some_and(|tools| tools.iter().any(|t| t["name"] == "apply_patch"))
}

fn transcript(body: &Value) -> Transcript {
    let mut entries = Vec::new();
    let mut cwd = None;
    let input = body.get("input").unwrap_or(&Value::Null);
    if let Some(text) = input.as_str() {
        entries.push(Entry::UserText(text.to_owned()));
    }
    for item in input.as_array().into_iter().flatten() {
        let kind = item
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("message");
        let role = item.get("role").and_then(Value::as_str);
        match (kind, role) {
            ("message", Some("user")) => {
                let text = content_text(item.get("content").unwrap_or(&Value::Null));
                if let Some(found) = between(&text, "<cwd>", "</cwd>") {
                    cwd = Some(found);
                }
                let trimmed = text.trim_start();
                if !CONTEXT_PREFIXES.iter().any(|p| trimmed.starts_with(p)) {
                    entries.push(Entry::UserText(text));
                }
            }
            ("message", Some("assistant"))
            | ("function_call" | "custom_tool_call" | "local_shell_call" | "reasoning", _) => {
                entries.push(Entry::Assistant);
            }
            ("function_call_output" | "custom_tool_call_output" | "local_shell_call_output", _) => {
                entries.push(Entry::ToolResult);
            }
            // developer/system messages and unknown items carry no turn.
            _ => {}
        }
    }
    Transcript {
        entries,
        cwd,
        words: json_words(input),
    }
}

fn between(text: &str, open: &str, close: &str) -> Option<String> {
    let start = text.find(open)? + open.len();
    let end = text[start..].find(close)? + start;
    Some(text[start..end].trim().to_owned())
}

fn items(turn: &Turn, transcript: &Transcript, apply_patch: bool) -> Vec<Value> {
    let n = transcript.entries.len();
    if let Turn::Say { text } = turn {
        return vec![json!({
            "type": "message", "id": format!("msg_modelsim_{n:04}"), "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
        })];
    }
    turn.tool_calls()
        .iter()
        .enumerate()
        .map(|(i, call)| {
            let call_id = format!("call_modelsim_{n:04}_{i}");
            let id = format!("fc_modelsim_{n:04}_{i}");
            match call {
                ToolCall::Write { path, content } if apply_patch => json!({
                    "type": "custom_tool_call", "id": id, "call_id": call_id,
                    "status": "completed", "name": "apply_patch",
                    "input": add_file_patch(path, content),
                }),
                ToolCall::Write { path, content } => {
                    exec_command(&id, &call_id, &write_command(path, content), transcript)
                }
                ToolCall::Run { command } => exec_command(&id, &call_id, command, transcript),
            }
        })
        .collect()
}

fn exec_command(id: &str, call_id: &str, command: &str, transcript: &Transcript) -> Value {
    let mut arguments = json!({ "cmd": command });
    if let Some(cwd) = &transcript.cwd {
        arguments["workdir"] = json!(cwd);
    }
    json!({
        "type": "function_call", "id": id, "call_id": call_id, "status": "completed",
        "name": "exec_command", "arguments": arguments.to_string(),
    })
}

/// An `apply_patch` patch adding `path`; Codex ends every added line with a newline.
pub(crate) fn add_file_patch(path: &str, content: &str) -> String {
    let mut patch = format!("*** Begin Patch\n*** Add File: {path}\n");
    for line in content.lines() {
        patch.push('+');
        patch.push_str(line);
        patch.push('\n');
    }
    patch.push_str("*** End Patch");
    patch
}

/// A shell command writing `content` to `path` exactly, for when `apply_patch` is not offered.
fn write_command(path: &str, content: &str) -> String {
    format!(
        "printf '%s' {} > {}",
        shell_quote(content),
        shell_quote(path)
    )
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}
