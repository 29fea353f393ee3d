//! An agent session as a transcript: the normalized [`AgentEvent`]s a step wrote to its
//! `steps/<step>/events.jsonl` (one JSON object per line, the same shape for every agent), drawn
//! as messages (Markdown, made safe by [`super::markdown`]), tool calls each with its result in
//! a collapsible block, errors, the final answer, and the session's usage and cost.

use std::collections::HashMap;
use std::fmt::Write as _;

use orch_agents::AgentEvent;

use super::{markdown, push_escaped, shorten};

/// Most events drawn per session.
pub const MAX_EVENTS: usize = 2_000;
/// Most characters of one message, tool input or tool output drawn.
pub const MAX_TEXT_CHARS: usize = 16_000;

/// Token usage and cost of a session (the last cumulative `usage` event).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SessionUsage {
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Cost in US dollars, when the agent reported it.
    pub cost_usd: Option<f64>,
}

/// A session drawn as HTML.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Transcript {
    /// `<ol class="transcript">…</ol>`, empty for a session without events.
    pub html: String,
    /// The session id, when the agent reported one (untrusted text).
    pub session_id: Option<String>,
    /// The model, when the agent reported it (untrusted text).
    pub model: Option<String>,
    /// Usage, when the agent reported it.
    pub usage: Option<SessionUsage>,
    /// Events drawn.
    pub events: usize,
    /// Lines that were not events (cut or foreign), skipped.
    pub unreadable_lines: usize,
    /// Why not everything is drawn, when it is not.
    pub truncated: Option<String>,
}

/// Draw the session in `events_jsonl`.
pub fn render(events_jsonl: &[u8]) -> Transcript {
    let text = String::from_utf8_lossy(events_jsonl);
    let mut transcript = Transcript::default();
    let mut events = Vec::new();
    let mut total = 0usize;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<AgentEvent>(line) {
            Ok(event) => {
                total += 1;
                match &event {
                    AgentEvent::Init { session_id, model } => {
                        transcript.session_id = Some(session_id.clone());
                        transcript.model = model.clone().or(transcript.model.take());
                    }
                    AgentEvent::Usage {
                        input_tokens,
                        output_tokens,
                        cost_usd,
                    } => {
                        transcript.usage = Some(SessionUsage {
                            input_tokens: *input_tokens,
                            output_tokens: *output_tokens,
                            cost_usd: *cost_usd,
                        });
                    }
                    _ => {}
                }
                if events.len() < MAX_EVENTS {
                    events.push(event);
                }
            }
            Err(_) => transcript.unreadable_lines += 1,
        }
    }
    if total > events.len() {
        transcript.truncated = Some(format!(
            "transcript truncated: {} of {total} events shown",
            events.len()
        ));
    }
    transcript.events = events.len();
    if events.is_empty() {
        return transcript;
    }
    // Each result is drawn inside its call; a result without a call is drawn alone.
    let mut results: HashMap<&str, (&str, bool)> = HashMap::new();
    let mut called: std::collections::HashSet<&str> = std::collections::HashSet::new();
    for event in &events {
        match event {
            AgentEvent::ToolCall { id, .. } => {
                called.insert(id.as_str());
            }
            AgentEvent::ToolResult {
                id,
                output,
                is_error,
            } => {
                results.insert(id.as_str(), (output.as_str(), *is_error));
            }
            _ => {}
        }
    }
    let html = &mut transcript.html;
    html.push_str("<ol class=\"transcript\">\n");
    for event in &events {
        match event {
            AgentEvent::Init { session_id, model } => {
                html.push_str("<li class=\"ev init\">session <code>");
                push_escaped(html, session_id);
                html.push_str("</code>");
                if let Some(model) = model {
                    html.push_str(" · model <code>");
                    push_escaped(html, model);
                    html.push_str("</code>");
                }
                html.push_str("</li>\n");
            }
            AgentEvent::Message { role, text } => {
                let role = if role == "user" { "user" } else { "assistant" };
                let _ = writeln!(
                    html,
                    "<li class=\"ev msg {role}\"><div class=\"role\">{role}</div><div class=\"md\">{}</div></li>",
                    markdown::render(&shorten(text, MAX_TEXT_CHARS))
                );
            }
            AgentEvent::ToolCall { id, name, input } => {
                let input_text =
                    serde_json::to_string_pretty(input).unwrap_or_else(|_| input.to_string());
                let result = results.get(id.as_str());
                let status = match result {
                    Some((_, true)) => "error",
                    Some((_, false)) => "ok",
                    None => "pending",
                };
                let _ = write!(
                    html,
                    "<li class=\"ev tool\"><details><summary><span class=\"tool-name\">"
                );
                push_escaped(html, &shorten(name, 80));
                html.push_str("</span> <code class=\"tool-brief\">");
                push_escaped(html, &shorten(&one_line(input), 120));
                let _ = write!(
                    html,
                    "</code> <span class=\"tool-status {status}\">{status}</span></summary>\n\
                     <pre class=\"tool-input\">"
                );
                push_escaped(html, &shorten(&input_text, MAX_TEXT_CHARS));
                html.push_str("</pre>");
                if let Some((output, _)) = result {
                    html.push_str("<pre class=\"tool-output\">");
                    push_escaped(html, &shorten(output, MAX_TEXT_CHARS));
                    html.push_str("</pre>");
                }
                html.push_str("</details></li>\n");
            }
            AgentEvent::ToolResult {
                id,
                output,
                is_error,
            } if !called.contains(id.as_str()) => {
                let status = if *is_error { "error" } else { "ok" };
                let _ = write!(
                    html,
                    "<li class=\"ev tool\"><details><summary>tool result \
                     <span class=\"tool-status {status}\">{status}</span></summary>\
                     <pre class=\"tool-output\">"
                );
                push_escaped(html, &shorten(output, MAX_TEXT_CHARS));
                html.push_str("</pre></details></li>\n");
            }
            AgentEvent::ToolResult { .. } => {}
            AgentEvent::Usage {
                input_tokens,
                output_tokens,
                cost_usd,
            } => {
                let _ = write!(
                    html,
                    "<li class=\"ev usage\">{input_tokens} tokens in, {output_tokens} out"
                );
                if let Some(cost) = cost_usd {
                    let _ = write!(html, ", ${cost:.4}");
                }
                html.push_str("</li>\n");
            }
            AgentEvent::Result { text, is_error } => {
                let class = if *is_error { "result error" } else { "result" };
                let _ = writeln!(
                    html,
                    "<li class=\"ev {class}\"><div class=\"role\">result</div><div class=\"md\">{}</div></li>",
                    markdown::render(&shorten(text, MAX_TEXT_CHARS))
                );
            }
            AgentEvent::Error { message } => {
                html.push_str("<li class=\"ev error\"><div class=\"role\">error</div><pre>");
                push_escaped(html, &shorten(message, MAX_TEXT_CHARS));
                html.push_str("</pre></li>\n");
            }
            AgentEvent::Unknown { raw } => {
                html.push_str(
                    "<li class=\"ev unknown\"><details><summary>other event</summary><pre>",
                );
                push_escaped(html, &shorten(&raw.to_string(), MAX_TEXT_CHARS));
                html.push_str("</pre></details></li>\n");
            }
        }
    }
    html.push_str("</ol>\n");
    transcript
}

/// A tool's input on one line, for the summary: a lone `command`/`path`-like string field as
/// it is, anything else as compact JSON.
fn one_line(input: &serde_json::Value) -> String {
    let text = match input {
        serde_json::Value::Object(map) if map.len() == 1 => match map.values().next() {
            Some(serde_json::Value::String(s)) => s.clone(),
            _ => input.to_string(),
        },
        serde_json::Value::String(s) => s.clone(),
        _ => input.to_string(),
    };
    text.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jsonl(events: &[serde_json::Value]) -> Vec<u8> {
        let mut out = Vec::new();
        for event in events {
            out.extend_from_slice(event.to_string().as_bytes());
            out.push(b'\n');
        }
        out
    }

    #[test]
    fn a_session_renders_messages_tools_with_results_and_usage() {
        use serde_json::json;
        let bytes = jsonl(&[
            json!({"type": "init", "session_id": "s-1", "model": "sim-1"}),
            json!({"type": "message", "role": "assistant", "text": "I will **write** a file."}),
            json!({"type": "tool_call", "id": "t1", "name": "write_file", "input": {"path": "a.txt", "content": "x"}}),
            json!({"type": "tool_result", "id": "t1", "output": "wrote 1 byte", "is_error": false}),
            json!({"type": "tool_call", "id": "t2", "name": "bash", "input": {"command": "false"}}),
            json!({"type": "tool_result", "id": "t2", "output": "exit 1", "is_error": true}),
            json!({"type": "usage", "input_tokens": 10, "output_tokens": 5, "cost_usd": null}),
            json!({"type": "usage", "input_tokens": 120, "output_tokens": 40, "cost_usd": 0.0123}),
            json!({"type": "result", "text": "done", "is_error": false}),
        ]);
        let t = render(&bytes);
        assert_eq!(t.session_id.as_deref(), Some("s-1"));
        assert_eq!(t.model.as_deref(), Some("sim-1"));
        assert_eq!(
            t.usage,
            Some(SessionUsage {
                input_tokens: 120,
                output_tokens: 40,
                cost_usd: Some(0.0123)
            })
        );
        assert_eq!(t.events, 9);
        assert!(t.html.contains("<strong>write</strong>"), "{}", t.html);
        // The result sits inside its call's collapsible block, once.
        let write_call = t.html.find("write_file").expect("call");
        let write_result = t.html.find("wrote 1 byte").expect("result");
        assert!(write_result > write_call);
        assert_eq!(t.html.matches("wrote 1 byte").count(), 1);
        assert!(t
            .html
            .contains("<span class=\"tool-status error\">error</span>"));
        assert!(
            t.html.contains("<code class=\"tool-brief\">false</code>"),
            "{}",
            t.html
        );
        assert!(t.html.contains("$0.0123"));
        assert_eq!(
            t.html.matches("<details>").count(),
            t.html.matches("</details>").count()
        );
    }

    #[test]
    fn hostile_messages_and_tool_output_render_inert() {
        use serde_json::json;
        let bytes = jsonl(&[
            json!({"type": "init", "session_id": "<script>alert(1)</script>", "model": "\"><img src=x onerror=alert(1)>"}),
            json!({"type": "message", "role": "<b>", "text": "<script>alert('x')</script> [y](javascript:alert(1))"}),
            json!({"type": "message", "role": "assistant", "text": "see [y](javascript:alert(1)) and <img src=x onerror=alert(1)>"}),
            json!({"type": "tool_call", "id": "t", "name": "<svg onload=alert(1)>", "input": {"command": "</pre><script>x</script>"}}),
            json!({"type": "tool_result", "id": "t", "output": "</details><script>alert(2)</script>", "is_error": false}),
            json!({"type": "error", "message": "<iframe src=javascript:alert(1)>"}),
            json!({"type": "unknown", "raw": {"x": "<script>"}}),
        ]);
        let t = render(&bytes);
        let lower = t.html.to_lowercase();
        for href in crate::dashboard::render::markdown::tests::hrefs(&t.html) {
            assert!(
                crate::dashboard::render::markdown::is_safe_url(&href),
                "{href}"
            );
        }
        for bad in ["<script", "<img", "<svg", "<iframe", "<b>"] {
            assert!(!lower.contains(bad), "{bad} in {}", t.html);
        }
        assert!(!t.html.contains("href=\"javascript"), "{}", t.html);
        assert_eq!(
            t.html.matches("<details>").count(),
            t.html.matches("</details>").count()
        );
        assert!(t.html.contains("<li class=\"ev msg assistant\">"));
        assert!(t.html.contains("<a href=\"#\">y</a>"), "{}", t.html);
    }

    #[test]
    fn garbage_lines_are_counted_and_long_sessions_capped() {
        let mut bytes = b"not json\n{\"type\":\"nope\"}\n\n".to_vec();
        for i in 0..(MAX_EVENTS + 5) {
            bytes.extend_from_slice(
                format!("{{\"type\":\"message\",\"role\":\"assistant\",\"text\":\"m{i}\"}}\n")
                    .as_bytes(),
            );
        }
        let t = render(&bytes);
        assert_eq!(t.unreadable_lines, 2);
        assert_eq!(t.events, MAX_EVENTS);
        assert!(t.truncated.expect("note").contains("2000 of 2005"));
        assert!(render(b"").html.is_empty());
    }

    #[test]
    fn huge_tool_output_is_cut() {
        let output = "z".repeat(1_000_000);
        let bytes = jsonl(&[
            serde_json::json!({"type": "tool_result", "id": "t", "output": output, "is_error": false}),
        ]);
        let t = render(&bytes);
        assert!(t.html.len() < MAX_TEXT_CHARS * 2, "{}", t.html.len());
    }
}
