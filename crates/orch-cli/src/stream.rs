//! `orch stream <task>`: print a task's transitions as the daemon commits them, through its
//! `/v1/events` stream, until the task is finished.

use anyhow::Context;
use futures_util::StreamExt;
use orch_core::Status;
use serde_json::Value;

use crate::cli::StreamArgs;
use crate::config::Settings;
use crate::UserError;

/// Follow one task's events through the running daemon of the home.
pub async fn stream(settings: &Settings, args: StreamArgs) -> anyhow::Result<()> {
    let addr_file = settings.home.join("serve.addr");
    let addr = std::fs::read_to_string(&addr_file).map_err(|_| {
        UserError::new(format!(
            "no daemon with an HTTP API is running for {} ({} is missing); start `orch serve` \
             first",
            settings.home.display(),
            addr_file.display()
        ))
    })?;
    let token_file = settings.home.join("token");
    let token = std::fs::read_to_string(&token_file)
        .with_context(|| format!("read the admin token from {}", token_file.display()))?;
    let base = format!("http://{}", addr.trim());
    let client = reqwest::Client::new();
    // Subscribe first, then read the task: a transition between the two is in the stream.
    let events = client
        .get(format!("{base}/v1/events?task={}", args.id))
        .bearer_auth(token.trim())
        .send()
        .await
        .with_context(|| format!("connect to the daemon at {base} (is `orch serve` running?)"))?;
    if !events.status().is_success() {
        anyhow::bail!("the daemon refused the event stream: {}", events.status());
    }
    let task = client
        .get(format!("{base}/v1/tasks/{}", args.id))
        .bearer_auth(token.trim())
        .send()
        .await
        .context("read the task")?;
    if task.status() == reqwest::StatusCode::NOT_FOUND {
        return Err(UserError::new(format!("there is no task {}", args.id)).into());
    }
    let task: Value = task.json().await.context("read the task")?;
    let status = task["task"]["status"].as_str().unwrap_or("?").to_owned();
    println!(
        "task {} {:?} is {status}",
        args.id,
        task["task"]["title"].as_str().unwrap_or("")
    );
    if finished(&status) {
        return Ok(());
    }
    let mut body = events.bytes_stream();
    let mut buffer = String::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.context("read the event stream")?;
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let Some((kind, data)) = parse_block(&block) else {
                continue;
            };
            match kind.as_str() {
                "transition" => {
                    println!("{}", describe(&data));
                    if data["to"].as_str().is_some_and(finished) {
                        return Ok(());
                    }
                }
                "lagged" => println!("(some events were missed: this client fell behind)"),
                _ => {}
            }
        }
    }
    anyhow::bail!(
        "the daemon closed the event stream before task {} finished",
        args.id
    )
}

fn finished(status: &str) -> bool {
    status.parse::<Status>().is_ok_and(Status::is_finished)
}

/// The event name and JSON data of one server-sent event; `None` for keep-alive comments.
fn parse_block(block: &str) -> Option<(String, Value)> {
    let mut kind = None;
    let mut data = String::new();
    for line in block.lines() {
        if let Some(value) = line.strip_prefix("event:") {
            kind = Some(value.trim().to_owned());
        } else if let Some(value) = line.strip_prefix("data:") {
            data.push_str(value.trim_start());
        }
    }
    Some((kind?, serde_json::from_str(&data).ok()?))
}

/// One readable line: time, kind, the status change, who, and why.
fn describe(event: &Value) -> String {
    let text = |key: &str| event[key].as_str().unwrap_or("").to_owned();
    let from = event["from"].as_str().unwrap_or("-");
    let mut line = format!(
        "{}  {:<10} {from} -> {}  by {}",
        text("at"),
        text("kind"),
        text("to"),
        text("actor")
    );
    if let Some(reason) = event["reason"].as_str() {
        line.push_str(&format!(": {reason}"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transition_block_becomes_one_readable_line() {
        let block = "event: transition\nid: 7\ndata: {\"at\":\"2026-01-01T00:00:00.000Z\",\
                     \"kind\":\"fail\",\"from\":\"running\",\"to\":\"retry_wait\",\
                     \"actor\":\"embedded-1\",\"reason\":\"step `build` failed\"}\n\n";
        let (kind, data) = parse_block(block).expect("an event");
        assert_eq!(kind, "transition");
        assert_eq!(
            describe(&data),
            "2026-01-01T00:00:00.000Z  fail       running -> retry_wait  by embedded-1: \
             step `build` failed"
        );
        assert!(parse_block(":keep-alive\n\n").is_none());
        assert!(finished("done") && !finished("retry_wait"));
    }
}
