//! Info requests from the command line: `orch ask` (inside a step: ask a human for values)
//! and `orch task answer` (give them), plus the requests `orch task get` shows.
//!
//! `orch task answer` never needs a secret on the command line: `KEY=-` reads the value from
//! stdin, a bare `KEY` prompts for it (without echo when it is secret), and a secret value
//! written as `KEY=VALUE` is refused, like `--token`.

use std::io::{BufRead, IsTerminal, Read, Write};

use anyhow::Context;
use orch_core::info_request::{key_list, AskFile, AskedKey, Hint, ASK_EXIT_CODE, ASK_FILE_VAR};
use orch_core::TaskId;
use serde_json::{json, Value};

use crate::cli::{AskArgs, TaskAnswerArgs};
use crate::client::{Backend, Remote};
use crate::config::{step_variable, Settings};
use crate::output::print_json;
use crate::UserError;

/// `orch ask`: every value present in the environment → exit 0 at once; else write the ask
/// file and exit [`ASK_EXIT_CODE`] (the run parks; the step runs again with the values).
pub fn ask(args: AskArgs) -> anyhow::Result<bool> {
    let hint = match &args.hint {
        Some(hint) => Some(hint.parse::<Hint>().map_err(UserError::new)?),
        None => None,
    };
    let keys = args
        .keys
        .iter()
        .map(|name| AskedKey {
            name: name.clone(),
            secret: args.secret,
            optional: false,
            file: args.file,
            description: None,
        })
        .collect();
    let ask = AskFile {
        keys,
        hint,
        reason: args.reason.clone(),
    }
    .resolve()
    .map_err(|e| UserError::new(format!("orch ask: {e}")))?;
    let missing: Vec<AskedKey> = ask
        .keys
        .iter()
        .filter(|k| step_variable(&k.name).is_none())
        .cloned()
        .collect();
    if missing.iter().all(|k| k.optional) {
        eprintln!(
            "orch ask: {} present",
            if ask.keys.len() == 1 {
                "the value is".to_owned()
            } else {
                format!("all {} values are", ask.keys.len())
            }
        );
        return Ok(true);
    }
    let Some(file) = step_variable(ASK_FILE_VAR) else {
        return Err(UserError::new(format!(
            "orch ask: {ASK_FILE_VAR} is not set: `orch ask` works inside a step that orch runs; \
             missing here: {}",
            key_list(&missing)
        ))
        .into());
    };
    let request = AskFile {
        keys: missing.clone(),
        hint: None,
        reason: ask.reason.clone(),
    };
    let text = serde_json::to_vec_pretty(&json!({
        "keys": request.keys,
        "hint": ask.hint,
        "reason": request.reason,
    }))?;
    let path = std::path::PathBuf::from(&file);
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .with_context(|| format!("orch ask: write the request to {file}"))?;
    let task = step_variable("ORCH_TASK_ID").unwrap_or_else(|| "<task>".to_owned());
    eprintln!(
        "orch ask: asked for {}; this step ends here and runs again with them once someone \
         answers (`orch task answer {task} KEY=...`)",
        key_list(&missing)
    );
    std::process::exit(ASK_EXIT_CODE);
}

/// One `KEY...` argument of `orch task answer`.
enum Given {
    Inline(String),
    Stdin,
    File(std::path::PathBuf),
    Prompt,
}

fn parse_pair(arg: &str) -> anyhow::Result<(String, Given)> {
    let (key, given) = match arg.split_once('=') {
        None => (arg, Given::Prompt),
        Some((key, "-")) => (key, Given::Stdin),
        Some((key, value)) => match value.strip_prefix('@') {
            Some(path) => (key, Given::File(path.into())),
            None => (key, Given::Inline(value.to_owned())),
        },
    };
    orch_core::info_request::check_key_name(key).map_err(UserError::new)?;
    Ok((key.to_owned(), given))
}

/// `orch task answer ID KEY=VALUE|KEY=-|KEY=@FILE|KEY...`.
pub async fn answer(
    settings: &Settings,
    remote: &Remote,
    args: TaskAnswerArgs,
) -> anyhow::Result<()> {
    let backend = Backend::open(settings, remote, None).await?;
    let requests = info_requests(&backend, args.id).await?;
    let open = requests
        .as_array()
        .into_iter()
        .flatten()
        .rev()
        .find(|r| r["state"] == "open")
        .cloned();
    let Some(open) = open else {
        return Err(UserError::new(format!(
            "task {} has no open info request; `orch task get {}` shows what it asked",
            args.id, args.id
        ))
        .into());
    };
    let asked: Vec<AskedKey> =
        serde_json::from_value(open["keys"].clone()).context("read the request's keys")?;
    let secret_key =
        |key: &str| args.secret || asked.iter().any(|k| k.name == key && (k.secret || k.file));
    let mut pairs = Vec::new();
    for arg in &args.values {
        pairs.push(parse_pair(arg)?);
    }
    if pairs.is_empty() {
        // Nothing given: prompt for every key asked.
        pairs = asked
            .iter()
            .map(|k| (k.name.clone(), Given::Prompt))
            .collect();
    }
    let stdin_keys = pairs
        .iter()
        .filter(|(_, g)| matches!(g, Given::Stdin))
        .count();
    let mut stdin_lines: Option<std::io::Lines<std::io::StdinLock<'static>>> = None;
    let mut values = Vec::new();
    for (key, given) in pairs {
        let secret = secret_key(&key);
        let value = match given {
            Given::Inline(value) => {
                if secret {
                    return Err(UserError::new(format!(
                        "`{key}` is secret: a value on the command line is visible to every \
                         local user (`ps`, shell history); give `{key}=-` to read it from \
                         stdin, `{key}=@FILE` to read a file, or just `{key}` to be prompted"
                    ))
                    .into());
                }
                value
            }
            Given::Stdin if stdin_keys == 1 => {
                let mut text = String::new();
                std::io::stdin()
                    .read_to_string(&mut text)
                    .context("read the value from stdin")?;
                trim_newline(text)
            }
            Given::Stdin => {
                let lines = stdin_lines.get_or_insert_with(|| std::io::stdin().lock().lines());
                match lines.next() {
                    Some(line) => line.context("read a value from stdin")?,
                    None => {
                        return Err(UserError::new(format!(
                            "stdin ended before the value of `{key}`: with several `KEY=-`, \
                             give one value per line, in order"
                        ))
                        .into())
                    }
                }
            }
            Given::File(path) => trim_newline(std::fs::read_to_string(&path).map_err(|e| {
                UserError::new(format!("`{key}`: cannot read {}: {e}", path.display()))
            })?),
            Given::Prompt => prompt(&key, secret, &asked)?,
        };
        values.push((key, value, secret));
    }
    let changed = submit_answer(&backend, settings, args.id, values, args.secret).await?;
    if args.json {
        print_json(&changed)
    } else {
        println!(
            "task {} answered; it is now {} (the step that asked runs again with the values)",
            changed["id"],
            changed["status"].as_str().unwrap_or("?")
        );
        Ok(())
    }
}

fn trim_newline(mut text: String) -> String {
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    text
}

/// Ask on the terminal (stderr), without echo for a secret.
fn prompt(key: &str, secret: bool, asked: &[AskedKey]) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(UserError::new(format!(
            "no value for `{key}` and stdin is not a terminal to ask on; give `{key}=-` to \
             read it from stdin"
        ))
        .into());
    }
    let what = asked
        .iter()
        .find(|k| k.name == key)
        .and_then(|k| k.description.clone())
        .map(|d| format!(" ({d})"))
        .unwrap_or_default();
    eprint!("{key}{what}{}: ", if secret { " [hidden]" } else { "" });
    std::io::stderr().flush().ok();
    let echo_off = if secret { EchoOff::new() } else { None };
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    drop(echo_off);
    if secret {
        eprintln!();
    }
    read.context("read the value")?;
    Ok(trim_newline(line))
}

/// Terminal echo off until dropped.
struct EchoOff {
    saved: nix::sys::termios::Termios,
}

impl EchoOff {
    fn new() -> Option<EchoOff> {
        use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
        let stdin = std::io::stdin();
        let saved = tcgetattr(&stdin).ok()?;
        let mut quiet = saved.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        quiet.local_flags.insert(LocalFlags::ECHONL);
        tcsetattr(&stdin, SetArg::TCSANOW, &quiet).ok()?;
        Some(EchoOff { saved })
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        let _ = nix::sys::termios::tcsetattr(
            std::io::stdin(),
            nix::sys::termios::SetArg::TCSANOW,
            &self.saved,
        );
    }
}

/// A task's info requests as JSON (`GET /v1/tasks/{id}/info-requests`'s `requests`).
pub async fn info_requests(backend: &Backend, id: i64) -> anyhow::Result<Value> {
    match backend {
        Backend::Store(app) => {
            app.store().task(TaskId(id)).await?;
            Ok(serde_json::to_value(
                orch_server::api::convert::info_requests(
                    app.store().info_requests(TaskId(id)).await?,
                ),
            )?)
        }
        Backend::Api(api) => {
            let list: orch_api::InfoRequestList = api
                .get_as(&format!("/v1/tasks/{id}/info-requests"), &())
                .await?;
            Ok(serde_json::to_value(list.requests)?)
        }
    }
}

async fn submit_answer(
    backend: &Backend,
    settings: &Settings,
    id: i64,
    values: Vec<(String, String, bool)>,
    all_secret: bool,
) -> anyhow::Result<Value> {
    match backend {
        Backend::Store(app) => {
            let app = app.clone().with_secret_box(Some(settings.secret_box()?));
            let inputs = values
                .into_iter()
                .map(|(key, value, secret)| orch_app::AnswerInput {
                    key,
                    value,
                    secret: secret || all_secret,
                })
                .collect();
            let status = app.answer_input(TaskId(id), inputs, "cli").await?;
            Ok(json!({ "id": id, "status": status.as_str() }))
        }
        Backend::Api(api) => {
            let body = orch_api::AnswerRequest {
                secret: values
                    .iter()
                    .filter(|(_, _, s)| *s)
                    .map(|(k, _, _)| k.clone())
                    .collect(),
                values: values.into_iter().map(|(k, v, _)| (k, v)).collect(),
            };
            api.post(
                &format!("/v1/tasks/{id}/answers"),
                &serde_json::to_value(body)?,
            )
            .await
        }
    }
}

/// The lines `orch task get` prints for a task's info requests.
pub fn describe(requests: &Value) -> Vec<String> {
    let mut lines = Vec::new();
    for request in requests.as_array().into_iter().flatten() {
        let keys: Vec<String> = request["keys"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|k| {
                let mut marks = Vec::new();
                if k["secret"] == true {
                    marks.push("secret");
                }
                if k["optional"] == true {
                    marks.push("optional");
                }
                if k["file"] == true {
                    marks.push("file");
                }
                let name = k["name"].as_str().unwrap_or("?");
                if marks.is_empty() {
                    name.to_owned()
                } else {
                    format!("{name} ({})", marks.join(", "))
                }
            })
            .collect();
        lines.push(format!(
            "asks:     #{} {} by step `{}`: {}{}",
            request["id"],
            request["state"].as_str().unwrap_or("?"),
            request["step"].as_str().unwrap_or("?"),
            keys.join(", "),
            request["reason"]
                .as_str()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ));
        for answer in request["answers"].as_array().into_iter().flatten() {
            let value = match answer["value"].as_str() {
                Some(value) => value.to_owned(),
                None => "[secret: never shown]".to_owned(),
            };
            lines.push(format!(
                "          {} = {value}",
                answer["key"].as_str().unwrap_or("?")
            ));
        }
    }
    lines
}
