//! The Anthropic Messages API (`POST /v1/messages`), as Claude Code uses it.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::Response;
use serde_json::{json, Value};

use crate::script::{absolute_path, line_value, Entry, ToolCall, Transcript, Turn};
use crate::server::{
    content_text, default_error_message, error_response, hang, json_body, json_words, read_request,
    sse_body, sse_event, stall, Dialect, Served, Shared,
};

/// The line of Claude Code's system prompt that names the working directory.
const CWD_PREFIX: &str = "Primary working directory: ";
/// Answer to side requests without tools (titles, summaries).
const SIDE_ANSWER: &str = "Scripted session";

pub(crate) async fn messages(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let incoming = read_request(Dialect::Anthropic, request).await;
    let body = incoming.body.clone();
    let transcript = transcript(&body);
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("claude-modelsim")
        .to_owned();
    let streaming = body.get("stream").and_then(Value::as_bool) == Some(true);
    let has_tools = body
        .get("tools")
        .and_then(Value::as_array)
        .is_some_and(|tools| !tools.is_empty());
    let turn = if has_tools {
        shared.decide(incoming, &transcript)
    } else {
        shared.record(
            incoming,
            Served::Auxiliary {
                text: SIDE_ANSWER.to_owned(),
            },
        );
        Turn::Say {
            text: SIDE_ANSWER.to_owned(),
        }
    };
    match &turn {
        Turn::Hang => hang(&shared).await,
        Turn::Stall => stall(&shared),
        Turn::Error {
            status,
            retry_after_secs,
            message,
        } => error(*status, *retry_after_secs, message.as_deref()),
        _ => {
            let blocks = blocks(&turn, &transcript);
            let stop_reason = if blocks.iter().any(|b| b["type"] == "tool_use") {
                "tool_use"
            } else {
                "end_turn"
            };
            let usage = (transcript.input_tokens(), turn.output_tokens());
            let id = format!("msg_modelsim_{:04}", transcript.entries.len());
            if streaming {
                stream(&id, &model, &blocks, stop_reason, usage)
            } else {
                json_body(&json!({
                    "id": id,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": blocks,
                    "stop_reason": stop_reason,
                    "stop_sequence": null,
                    "usage": {"input_tokens": usage.0, "output_tokens": usage.1},
                }))
            }
        }
    }
}

pub(crate) async fn count_tokens(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let incoming = read_request(Dialect::Anthropic, request).await;
    let words = json_words(&incoming.body).max(1);
    shared.record(incoming, Served::Probe);
    json_body(&json!({ "input_tokens": words }))
}

fn transcript(body: &Value) -> Transcript {
    let system = content_text(body.get("system").unwrap_or(&Value::Null));
    let mut cwd = line_value(&system, CWD_PREFIX);
    let mut entries = Vec::new();
    let empty = Vec::new();
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    for message in messages {
        let content = message.get("content").unwrap_or(&Value::Null);
        match message.get("role").and_then(Value::as_str) {
            Some("assistant") => entries.push(Entry::Assistant),
            Some("user") => {
                let is_tool_result = content
                    .as_array()
                    .is_some_and(|blocks| blocks.iter().any(|b| b["type"] == "tool_result"));
                if is_tool_result {
                    entries.push(Entry::ToolResult);
                } else {
                    let text = content_text(content);
                    if cwd.is_none() {
                        cwd = line_value(&text, CWD_PREFIX);
                    }
                    entries.push(Entry::UserText(text));
                }
            }
            // Mid-conversation `system` messages and unknown roles carry no turn.
            _ => {}
        }
    }
    Transcript {
        entries,
        cwd,
        words: json_words(body.get("messages").unwrap_or(&Value::Null)),
    }
}

fn blocks(turn: &Turn, transcript: &Transcript) -> Vec<Value> {
    if let Turn::Say { text } = turn {
        return vec![json!({"type": "text", "text": text})];
    }
    let cwd = transcript.cwd.as_deref();
    turn.tool_calls()
        .iter()
        .enumerate()
        .map(|(i, call)| {
            let id = format!("toolu_modelsim_{:04}_{i}", transcript.entries.len());
            let (name, input) = match call {
                ToolCall::Write { path, content } => (
                    "Write",
                    json!({"file_path": absolute_path(cwd, path), "content": content}),
                ),
                ToolCall::Run { command } => (
                    "Bash",
                    json!({"command": command, "description": "Run a scripted command"}),
                ),
            };
            json!({"type": "tool_use", "id": id, "name": name, "input": input})
        })
        .collect()
}

fn stream(
    id: &str,
    model: &str,
    blocks: &[Value],
    stop_reason: &str,
    (input_tokens, output_tokens): (u64, u64),
) -> Response {
    let mut out = String::new();
    sse_event(
        &mut out,
        "message_start",
        &json!({"type": "message_start", "message": {
            "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": input_tokens, "output_tokens": 1,
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
        }}),
    );
    for (index, block) in blocks.iter().enumerate() {
        let (start, delta) = if block["type"] == "tool_use" {
            (
                json!({"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}),
                json!({"type": "input_json_delta", "partial_json": block["input"].to_string()}),
            )
        } else {
            (
                json!({"type": "text", "text": ""}),
                json!({"type": "text_delta", "text": block["text"]}),
            )
        };
        sse_event(
            &mut out,
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": start}),
        );
        sse_event(
            &mut out,
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": index, "delta": delta}),
        );
        sse_event(
            &mut out,
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": index}),
        );
    }
    sse_event(
        &mut out,
        "message_delta",
        &json!({"type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": null},
                "usage": {"output_tokens": output_tokens}}),
    );
    sse_event(&mut out, "message_stop", &json!({"type": "message_stop"}));
    sse_body(out)
}

fn error(status: u16, retry_after_secs: Option<u64>, message: Option<&str>) -> Response {
    let kind = match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ => "api_error",
    };
    let message = message.unwrap_or(default_error_message(status));
    let mut headers = vec![("request-id", "req_modelsim".to_owned())];
    if status == 429 {
        headers.extend([
            ("anthropic-ratelimit-requests-limit", "50".to_owned()),
            ("anthropic-ratelimit-requests-remaining", "0".to_owned()),
            ("anthropic-ratelimit-tokens-limit", "100000".to_owned()),
            ("anthropic-ratelimit-tokens-remaining", "0".to_owned()),
        ]);
    }
    error_response(
        status,
        retry_after_secs,
        &json!({"type": "error", "error": {"type": kind, "message": message}}),
        &headers,
    )
}
