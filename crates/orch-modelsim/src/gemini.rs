//! The Gemini API (`POST /v1beta/models/{model}:streamGenerateContent?alt=sse`,
//! `:generateContent`, `:countTokens`), as Gemini CLI uses it.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::Response;
use serde_json::{json, Value};

use crate::script::{absolute_path, Entry, ToolCall, Transcript, Turn};
use crate::server::{
    content_text, default_error_message, error_response, hang, json_body, json_words, read_request,
    sse_body, sse_data, stall, Dialect, Served, Shared,
};

/// The heading in Gemini CLI's `<session_context>` followed by `  - <cwd>` lines.
const WORKSPACE_HEADING: &str = "Workspace Directories:";
/// Answer to side requests without tools that ask for no JSON.
const SIDE_TEXT: &str = "Scripted session";

pub(crate) async fn models(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let incoming = read_request(Dialect::Gemini, request).await;
    let body = incoming.body.clone();
    let path = incoming.path.clone();
    let model = path
        .rsplit('/')
        .next()
        .and_then(|last| last.split(':').next())
        .unwrap_or("gemini-modelsim")
        .to_owned();
    if path.ends_with(":countTokens") {
        let words = json_words(&body).max(1);
        shared.record(incoming, Served::Probe);
        return json_body(&json!({ "totalTokens": words }));
    }
    let transcript = transcript(&body);
    let has_tools = body
        .get("tools")
        .and_then(Value::as_array)
        .is_some_and(|tools| !tools.is_empty());
    let turn = if has_tools {
        shared.decide(incoming, &transcript)
    } else {
        // Side requests (the model router's complexity classifier, next-speaker checks) ask for
        // JSON following a schema; answer the smallest value that fits it.
        let text = match body
            .pointer("/generationConfig/responseJsonSchema")
            .or_else(|| body.pointer("/generationConfig/responseSchema"))
        {
            Some(schema) => example_for_schema(schema).to_string(),
            None => SIDE_TEXT.to_owned(),
        };
        shared.record(incoming, Served::Auxiliary { text: text.clone() });
        Turn::Say { text }
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
            let parts = parts(&turn, &transcript);
            let answer = json!({
                "candidates": [{"content": {"role": "model", "parts": parts},
                                "finishReason": "STOP", "index": 0}],
                "usageMetadata": {
                    "promptTokenCount": transcript.input_tokens(),
                    "candidatesTokenCount": turn.output_tokens(),
                    "totalTokenCount": transcript.input_tokens() + turn.output_tokens(),
                },
                "modelVersion": model,
            });
            if path.ends_with(":streamGenerateContent") {
                let mut out = String::new();
                sse_data(&mut out, &answer.to_string());
                sse_body(out)
            } else {
                json_body(&answer)
            }
        }
    }
}

fn transcript(body: &Value) -> Transcript {
    let mut cwd = None;
    let mut entries = Vec::new();
    let contents = body.get("contents").unwrap_or(&Value::Null);
    for content in contents.as_array().into_iter().flatten() {
        let parts = content.get("parts").unwrap_or(&Value::Null);
        match content.get("role").and_then(Value::as_str) {
            Some("model") => entries.push(Entry::Assistant),
            _ => {
                let is_tool_result = parts
                    .as_array()
                    .is_some_and(|parts| parts.iter().any(|p| p.get("functionResponse").is_some()));
                if is_tool_result {
                    entries.push(Entry::ToolResult);
                } else {
                    let text = content_text(parts);
                    if let Some(found) = first_workspace_directory(&text) {
                        cwd = Some(found);
                    }
                    entries.push(Entry::UserText(text));
                }
            }
        }
    }
    Transcript {
        entries,
        cwd,
        words: json_words(contents),
    }
}

fn first_workspace_directory(text: &str) -> Option<String> {
    let after = &text[text.find(WORKSPACE_HEADING)? + WORKSPACE_HEADING.len()..];
    // Skip the rest of the heading line (`:**`), then take the first listed directory.
    let line = after
        .lines()
        .skip(1)
        .map(str::trim)
        .find(|line| !line.is_empty())?;
    let dir = line.strip_prefix("- ")?.trim();
    dir.starts_with('/').then(|| dir.to_owned())
}

/// The smallest JSON value following a (Gemini-flavoured, upper-case types) JSON schema.
fn example_for_schema(schema: &Value) -> Value {
    if let Some(options) = schema.get("enum").and_then(Value::as_array) {
        let user = options.iter().find(|o| o.as_str() == Some("user"));
        return user.or(options.first()).cloned().unwrap_or(Value::Null);
    }
    let kind = schema
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("object")
        .to_ascii_lowercase();
    match kind.as_str() {
        "object" => {
            let mut object = serde_json::Map::new();
            for (name, property) in schema
                .get("properties")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                object.insert(name.clone(), example_for_schema(property));
            }
            Value::Object(object)
        }
        "array" => json!([]),
        "integer" | "number" => schema.get("minimum").cloned().unwrap_or(json!(1)),
        "boolean" => json!(false),
        _ => json!("scripted"),
    }
}

fn parts(turn: &Turn, transcript: &Transcript) -> Vec<Value> {
    if let Turn::Say { text } = turn {
        return vec![json!({ "text": text })];
    }
    let n = transcript.entries.len();
    turn.tool_calls()
        .iter()
        .enumerate()
        .map(|(i, call)| {
            let (name, args) = match call {
                ToolCall::Write { path, content } => (
                    "write_file",
                    json!({"file_path": absolute_path(transcript.cwd.as_deref(), path),
                           "content": content}),
                ),
                ToolCall::Run { command } => ("run_shell_command", json!({"command": command})),
            };
            json!({"functionCall": {"id": format!("call_modelsim_{n:04}_{i}"),
                                    "name": name, "args": args}})
        })
        .collect()
}

fn error(status: u16, retry_after_secs: Option<u64>, message: Option<&str>) -> Response {
    let kind = match status {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        _ => "INTERNAL",
    };
    let message = message.unwrap_or(default_error_message(status));
    error_response(
        status,
        retry_after_secs,
        &json!({"error": {"code": status, "message": message, "status": kind}}),
        &[],
    )
}
