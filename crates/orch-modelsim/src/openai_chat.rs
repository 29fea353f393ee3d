//! The OpenAI Chat Completions API (`POST /v1/chat/completions`), as OpenCode uses it through
//! `@ai-sdk/openai-compatible`, plus the OpenAI error format shared with the Responses API.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::Response;
use serde_json::{json, Value};

use crate::script::{absolute_path, line_value, Entry, ToolCall, Transcript, Turn};
use crate::server::{
    content_text, default_error_message, error_response, hang, json_body, json_words, read_request,
    sse_body, sse_data, stall, Dialect, Served, Shared,
};

/// The line of OpenCode's system prompt that names the working directory.
const CWD_PREFIX: &str = "Working directory: ";
/// Answer to requests without tools (OpenCode's title generation).
const TITLE: &str = "Scripted session";

pub(crate) async fn completions(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let incoming = read_request(Dialect::OpenaiChat, request).await;
    let body = incoming.body.clone();
    let transcript = transcript(&body);
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
                text: TITLE.to_owned(),
            },
        );
        Turn::Say {
            text: TITLE.to_owned(),
        }
    };
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("modelsim")
        .to_owned();
    match &turn {
        Turn::Hang => hang(&shared).await,
        Turn::Stall => stall(&shared),
        Turn::Error {
            status,
            retry_after_secs,
            message,
        } => error(*status, *retry_after_secs, message.as_deref()),
        _ => {
            let n = transcript.entries.len();
            let id = format!("chatcmpl-modelsim-{n:04}");
            let (text, calls) = match &turn {
                Turn::Say { text } => (Some(text.clone()), Vec::new()),
                other => (None, tool_calls(other, &transcript)),
            };
            let finish = if calls.is_empty() {
                "stop"
            } else {
                "tool_calls"
            };
            let usage = json!({
                "prompt_tokens": transcript.input_tokens(),
                "completion_tokens": turn.output_tokens(),
                "total_tokens": transcript.input_tokens() + turn.output_tokens(),
            });
            if body.get("stream").and_then(Value::as_bool) == Some(true) {
                let chunk = |choices: Value, usage: Value| {
                    json!({"id": id, "object": "chat.completion.chunk", "created": 0,
                           "model": model, "choices": choices, "usage": usage})
                    .to_string()
                };
                let mut out = String::new();
                let role = json!([{"index": 0, "delta": {"role": "assistant", "content": ""},
                                   "finish_reason": null}]);
                sse_data(&mut out, &chunk(role, Value::Null));
                if let Some(text) = &text {
                    let delta = json!([{"index": 0, "delta": {"content": text},
                                        "finish_reason": null}]);
                    sse_data(&mut out, &chunk(delta, Value::Null));
                }
                for (index, call) in calls.iter().enumerate() {
                    let mut call = call.clone();
                    call["index"] = json!(index);
                    let delta = json!([{"index": 0, "delta": {"tool_calls": [call]},
                                        "finish_reason": null}]);
                    sse_data(&mut out, &chunk(delta, Value::Null));
                }
                let done = json!([{"index": 0, "delta": {}, "finish_reason": finish}]);
                sse_data(&mut out, &chunk(done, Value::Null));
                let wants_usage = body
                    .pointer("/stream_options/include_usage")
                    .and_then(Value::as_bool)
                    == Some(true);
                if wants_usage {
                    sse_data(&mut out, &chunk(json!([]), usage));
                }
                sse_data(&mut out, "[DONE]");
                sse_body(out)
            } else {
                let mut message = json!({"role": "assistant", "content": text});
                if !calls.is_empty() {
                    message["tool_calls"] = json!(calls);
                }
                json_body(&json!({"id": id, "object": "chat.completion", "created": 0,
                                  "model": model, "usage": usage, "choices": [
                                      {"index": 0, "message": message, "finish_reason": finish}]}))
            }
        }
    }
}

fn transcript(body: &Value) -> Transcript {
    let mut entries = Vec::new();
    let mut cwd = None;
    let messages = body.get("messages").unwrap_or(&Value::Null);
    for message in messages.as_array().into_iter().flatten() {
        let content = message.get("content").unwrap_or(&Value::Null);
        match message.get("role").and_then(Value::as_str) {
            Some("system") if cwd.is_none() => {
                cwd = line_value(&content_text(content), CWD_PREFIX);
            }
            Some("user") => entries.push(Entry::UserText(content_text(content))),
            Some("assistant") => entries.push(Entry::Assistant),
            Some("tool") => entries.push(Entry::ToolResult),
            _ => {}
        }
    }
    Transcript {
        entries,
        cwd,
        words: json_words(messages),
    }
}

fn tool_calls(turn: &Turn, transcript: &Transcript) -> Vec<Value> {
    let n = transcript.entries.len();
    turn.tool_calls()
        .iter()
        .enumerate()
        .map(|(i, call)| {
            let (name, arguments) = match call {
                ToolCall::Write { path, content } => (
                    "write",
                    json!({"filePath": absolute_path(transcript.cwd.as_deref(), path),
                           "content": content}),
                ),
                ToolCall::Run { command } => (
                    "bash",
                    json!({"command": command, "description": "Run a scripted command"}),
                ),
            };
            json!({"id": format!("call_modelsim_{n:04}_{i}"), "type": "function",
                   "function": {"name": name, "arguments": arguments.to_string()}})
        })
        .collect()
}

/// An error in the OpenAI format; 429 also carries `retry-after` and `x-ratelimit-*` headers.
pub(crate) fn error(status: u16, retry_after_secs: Option<u64>, message: Option<&str>) -> Response {
    let (kind, code) = match status {
        400 => ("invalid_request_error", Value::Null),
        401 => ("invalid_request_error", json!("invalid_api_key")),
        403 => (
            "invalid_request_error",
            json!("unsupported_country_region_territory"),
        ),
        404 => ("invalid_request_error", json!("model_not_found")),
        429 => ("requests", json!("rate_limit_exceeded")),
        _ => ("server_error", Value::Null),
    };
    let message = message.unwrap_or(default_error_message(status));
    let mut headers = vec![("x-request-id", "req_modelsim".to_owned())];
    if status == 429 {
        let reset = format!("{}s", retry_after_secs.unwrap_or(1));
        headers.extend([
            ("x-ratelimit-limit-requests", "60".to_owned()),
            ("x-ratelimit-remaining-requests", "0".to_owned()),
            ("x-ratelimit-reset-requests", reset.clone()),
            ("x-ratelimit-limit-tokens", "100000".to_owned()),
            ("x-ratelimit-remaining-tokens", "0".to_owned()),
            ("x-ratelimit-reset-tokens", reset),
        ]);
    }
    error_response(
        status,
        retry_after_secs,
        &json!({"error": {"message": message, "type": kind, "param": null, "code": code}}),
        &headers,
    )
}
