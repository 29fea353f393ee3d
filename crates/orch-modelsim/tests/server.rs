//! The server over real HTTP without any CLI: wire shapes, forced answers, the request log,
//! hangs released by shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use orch_modelsim::{ModelServer, Script, Served, Turn};
use serde_json::{json, Value};
use std::io::{Read, Write};

/// A minimal HTTP/1.1 client: returns (status, lower-cased head, body).
async fn post(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &Value,
) -> (u16, String, String) {
    let body = body.to_string();
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(&body);
    // A blocking socket on the blocking pool: the server runs on the test's runtime.
    let response = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).unwrap();
        response
    })
    .await
    .unwrap();
    let response = String::from_utf8(response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_owned())
}

fn anthropic_request(prompt: &str, stream: bool) -> Value {
    json!({
        "model": "claude-test", "stream": stream, "max_tokens": 100,
        "system": [{"type": "text", "text": "You are Claude.\nPrimary working directory: /tmp/proj\n"}],
        "tools": [{"name": "Write"}, {"name": "Bash"}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": prompt}]},
            {"role": "system", "content": "a mid-conversation system message"},
        ],
    })
}

/// The `event:` names of an SSE body, in order.
fn event_names(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|line| line.strip_prefix("event: "))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn anthropic_stream_sends_start_delta_stop_per_block_and_an_absolute_write_path() {
    let server = ModelServer::start(Script::single(vec![Turn::Write {
        path: "a.txt".into(),
        content: "x".into(),
    }]))
    .await
    .unwrap();
    let (status, head, body) = post(
        server.addr(),
        "/v1/messages?beta=true",
        &[("x-api-key", "secret-value")],
        &anthropic_request("go", true),
    )
    .await;
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/event-stream"));
    assert_eq!(
        event_names(&body),
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert!(body.contains(r#""name":"Write""#), "{body}");
    assert!(
        body.contains(r#"\"file_path\":\"/tmp/proj/a.txt\""#),
        "{body}"
    );
    assert!(body.contains(r#""stop_reason":"tool_use""#), "{body}");
    let log = server.requests();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].query.as_deref(), Some("beta=true"));
    assert_eq!(
        log[0].headers["x-api-key"], "<present>",
        "credentials are never logged"
    );
    assert!(!format!("{log:?}").contains("secret-value"));
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn anthropic_answers_without_streaming_when_not_asked_to_stream() {
    let server = ModelServer::start(Script::single(vec![Turn::Say {
        text: "hi there".into(),
    }]))
    .await
    .unwrap();
    let (status, _, body) = post(
        server.addr(),
        "/v1/messages",
        &[],
        &anthropic_request("go", false),
    )
    .await;
    assert_eq!(status, 200);
    let message: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(message["content"][0]["text"], "hi there");
    assert_eq!(message["stop_reason"], "end_turn");
    assert_eq!(
        message["usage"]["output_tokens"], 7,
        "5 + words of the answer"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_forced_429_comes_first_with_retry_after_then_the_script_resumes() {
    let server = ModelServer::start(Script::single(vec![Turn::Say { text: "ok".into() }]))
        .await
        .unwrap();
    server.force_next(Turn::Error {
        status: 429,
        retry_after_secs: Some(7),
        message: Some("slow down".into()),
    });
    let (status, head, body) = post(
        server.addr(),
        "/v1/messages",
        &[],
        &anthropic_request("go", false),
    )
    .await;
    assert_eq!(status, 429);
    assert!(head.contains("retry-after: 7"), "{head}");
    assert!(
        head.contains("anthropic-ratelimit-requests-remaining: 0"),
        "{head}"
    );
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["error"]["type"], "rate_limit_error");
    assert_eq!(error["error"]["message"], "slow down");
    let (status, _, body) = post(
        server.addr(),
        "/v1/messages",
        &[],
        &anthropic_request("go", false),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let served: Vec<bool> = server
        .requests()
        .iter()
        .map(|r| matches!(r.served, Served::Turn { forced: true, .. }))
        .collect();
    assert_eq!(served, [true, false]);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn set_script_changes_the_answers_of_later_requests() {
    let server = ModelServer::start(Script::single(vec![Turn::Say {
        text: "before".into(),
    }]))
    .await
    .unwrap();
    server.set_script(Script::single(vec![Turn::Say {
        text: "after".into(),
    }]));
    let (_, _, body) = post(
        server.addr(),
        "/v1/messages",
        &[],
        &anthropic_request("go", false),
    )
    .await;
    assert!(body.contains("after"), "{body}");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn chat_completions_title_requests_do_not_use_a_turn() {
    let server = ModelServer::start(Script::single(vec![Turn::Run {
        command: "ls".into(),
    }]))
    .await
    .unwrap();
    let title = json!({"model": "m", "stream": true,
                       "messages": [{"role": "user", "content": "make a title"}]});
    let (_, _, body) = post(server.addr(), "/v1/chat/completions", &[], &title).await;
    assert!(body.contains("Scripted session"), "{body}");
    let turn = json!({"model": "m", "stream": true, "stream_options": {"include_usage": true},
                      "tools": [{"type": "function", "function": {"name": "bash"}}],
                      "messages": [{"role": "system", "content": "Working directory: /w"},
                                   {"role": "user", "content": "list"}]});
    let (_, _, body) = post(server.addr(), "/v1/chat/completions", &[], &turn).await;
    let chunks: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(chunks.last(), Some(&"[DONE]"));
    assert!(body.contains(r#""finish_reason":"tool_calls""#), "{body}");
    assert!(body.contains(r#""name":"bash""#), "{body}");
    assert!(
        body.contains(r#""prompt_tokens""#),
        "a usage chunk when include_usage is set"
    );
    assert_eq!(server.turn_requests().len(), 1);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn responses_without_apply_patch_write_files_through_exec_command() {
    let server = ModelServer::start(Script::single(vec![Turn::Write {
        path: "it's.txt".into(),
        content: "a\nb".into(),
    }]))
    .await
    .unwrap();
    let request = json!({"model": "m", "stream": true,
                         "tools": [{"type": "function", "name": "exec_command"}],
                         "input": [{"type": "message", "role": "user",
                                    "content": [{"type": "input_text", "text": "write it"}]}]});
    let (_, _, body) = post(server.addr(), "/v1/responses", &[], &request).await;
    assert_eq!(
        event_names(&body),
        [
            "response.created",
            "response.output_item.done",
            "response.completed"
        ]
    );
    let item: Value = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .find(|e| e["type"] == "response.output_item.done")
        .unwrap()["item"]
        .clone();
    assert_eq!(item["name"], "exec_command");
    let arguments: Value = serde_json::from_str(item["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(
        arguments["cmd"],
        r"printf '%s' 'a
b' > 'it'\''s.txt'"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_hanging_request_is_released_by_shutdown() {
    let server = ModelServer::start(Script::single(vec![Turn::Hang]))
        .await
        .unwrap();
    let addr = server.addr();
    let request = tokio::spawn(async move {
        post(addr, "/v1/messages", &[], &anthropic_request("go", true)).await
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.requests().is_empty() {
        assert!(Instant::now() < deadline, "the request never arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!request.is_finished());
    tokio::time::timeout(Duration::from_secs(10), server.shutdown())
        .await
        .expect("shutdown does not wait forever on a hanging request")
        .unwrap();
    let (status, _, _) = request.await.unwrap();
    assert_eq!(status, 503);
}

#[tokio::test]
async fn serve_answers_until_its_shutdown_token_is_cancelled() {
    // Find a free port, then hand it to `serve` (the entry an `orch model-server` would use).
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let script = Script::single(vec![Turn::Say {
        text: "served".into(),
    }]);
    let server = tokio::spawn(orch_modelsim::serve(addr, script, shutdown.clone()));
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "the server never listened");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (status, _, body) = post(addr, "/v1/messages", &[], &anthropic_request("go", false)).await;
    assert_eq!(status, 200);
    assert!(body.contains("served"), "{body}");
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("serve returns once cancelled")
        .unwrap()
        .unwrap();
}

#[test]
fn script_files_load_as_json_or_yaml_and_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("script.json");
    std::fs::write(
        &json,
        r#"{"conversations":[{"turns":[{"say":{"text":"hi"}}]}]}"#,
    )
    .unwrap();
    let yaml = dir.path().join("script.yaml");
    std::fs::write(
        &yaml,
        "conversations:\n  - turns:\n      - say: {text: hi}\n",
    )
    .unwrap();
    assert_eq!(Script::load(&json).unwrap(), Script::load(&yaml).unwrap());
    let broken = dir.path().join("broken.yaml");
    std::fs::write(
        &broken,
        "conversations:\n  - turns:\n      - shout: {text: hi}\n",
    )
    .unwrap();
    let error = Script::load(&broken).unwrap_err().to_string();
    assert!(error.contains("broken.yaml"), "{error}");
    assert!(
        error.contains("shout"),
        "the unknown turn is named: {error}"
    );
}
