//! Info requests: a running step asks a human for named values (credentials, a region, a
//! kubeconfig) and its task waits in `awaiting_input` without holding a worker slot.
//!
//! The protocol (the worker and `orch ask` speak it, `sim`'s `@ask` too):
//!
//! - The worker gives every step the variable `ORCH_ASK_FILE`, a path in the task's scratch
//!   area that does not exist when the step starts.
//! - A step that needs values it does not find in its environment writes an [`AskFile`] there
//!   (JSON: the keys, which are secret, an optional hint and reason) and ends (`orch ask` exits
//!   with [`ASK_EXIT_CODE`]).
//! - When the step has ended, the worker reads the file whatever the step's exit code: the run
//!   is **parked** ([`park`]): it ends (`requeued`, the attempt given back), the request is
//!   stored and the task goes `running --request_input--> awaiting_input`. Only the keys are
//!   read from the file; nothing in it can answer, name another task or reach orch otherwise.
//! - `orch task answer` (or `POST /v1/tasks/{id}/answers`) stores the values (secret ones
//!   encrypted) and queues the task ([`answer`]). The next run starts from the branch's tip
//!   (finished steps are checkpointed and skipped) and runs the asking step again with the
//!   values in its environment; `orch ask` then finds them and returns at once.
//! - An unanswered request past its deadline sends the task to `needs_review` ([`expire`]).
//!
//! Everything here is pure: key names, hints, the ask file's format and the plans.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::lifecycle::{EventKind, Status};
use crate::model::{RunId, Timestamp};
use crate::plan::{Effect, Move, Plan, Refusal, TaskFacts};

/// The exit code of `orch ask` when it asked (values were missing): `EX_TEMPFAIL`.
pub const ASK_EXIT_CODE: i32 = 75;

/// The variable naming the ask file in a step's environment.
pub const ASK_FILE_VAR: &str = "ORCH_ASK_FILE";

/// The largest ask file the worker reads.
pub const MAX_ASK_FILE_BYTES: usize = 16 * 1024;

/// The most keys one request may ask for.
pub const MAX_KEYS: usize = 32;

/// The largest value an answer may give (a kubeconfig or a service-account JSON fits).
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

/// One value a step asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AskedKey {
    /// The environment variable the value is handed over in.
    pub name: String,
    /// Encrypted at rest, never shown again, redacted everywhere.
    #[serde(default)]
    pub secret: bool,
    /// The answer may leave it out.
    #[serde(default)]
    pub optional: bool,
    /// The value is a file's content (a kubeconfig, a service-account JSON): the step gets the
    /// path of a private file holding it in the variable, not the content.
    #[serde(default)]
    pub file: bool,
    /// What the value is, for the person answering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A known provider whose credentials a hint asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Hint {
    /// Amazon Web Services.
    Aws,
    /// Google Cloud.
    Gcp,
    /// Microsoft Azure.
    Azure,
    /// Kubernetes.
    Kubernetes,
}

impl Hint {
    /// Every hint.
    pub const ALL: [Hint; 4] = [Hint::Aws, Hint::Gcp, Hint::Azure, Hint::Kubernetes];

    /// The stable name (`aws`, `gcp`, `azure`, `kubernetes`).
    pub fn as_str(self) -> &'static str {
        match self {
            Hint::Aws => "aws",
            Hint::Gcp => "gcp",
            Hint::Azure => "azure",
            Hint::Kubernetes => "kubernetes",
        }
    }

    /// The keys this provider's tools read, the secret ones marked.
    pub fn keys(self) -> Vec<AskedKey> {
        let key = |name: &str, secret: bool, optional: bool, file: bool, what: &str| AskedKey {
            name: name.to_owned(),
            secret,
            optional,
            file,
            description: Some(what.to_owned()),
        };
        match self {
            Hint::Aws => vec![
                key(
                    "AWS_ACCESS_KEY_ID",
                    false,
                    false,
                    false,
                    "AWS access key id",
                ),
                key(
                    "AWS_SECRET_ACCESS_KEY",
                    true,
                    false,
                    false,
                    "AWS secret access key",
                ),
                key(
                    "AWS_SESSION_TOKEN",
                    true,
                    true,
                    false,
                    "AWS session token (temporary credentials only)",
                ),
                key("AWS_DEFAULT_REGION", false, true, false, "AWS region"),
            ],
            Hint::Gcp => vec![
                key(
                    "GOOGLE_APPLICATION_CREDENTIALS",
                    true,
                    false,
                    true,
                    "service-account key JSON (its content; the step gets a file)",
                ),
                key("GOOGLE_CLOUD_PROJECT", false, true, false, "GCP project id"),
            ],
            Hint::Azure => vec![
                key("AZURE_CLIENT_ID", false, false, false, "Azure client id"),
                key(
                    "AZURE_CLIENT_SECRET",
                    true,
                    false,
                    false,
                    "Azure client secret",
                ),
                key("AZURE_TENANT_ID", false, false, false, "Azure tenant id"),
                key(
                    "AZURE_SUBSCRIPTION_ID",
                    false,
                    true,
                    false,
                    "Azure subscription id",
                ),
            ],
            Hint::Kubernetes => vec![key(
                "KUBECONFIG",
                true,
                false,
                true,
                "kubeconfig (its content; the step gets a file)",
            )],
        }
    }
}

impl std::str::FromStr for Hint {
    type Err = String;
    fn from_str(text: &str) -> Result<Hint, String> {
        match text.to_ascii_lowercase().as_str() {
            "aws" => Ok(Hint::Aws),
            "gcp" | "google" => Ok(Hint::Gcp),
            "azure" => Ok(Hint::Azure),
            "kubernetes" | "k8s" => Ok(Hint::Kubernetes),
            other => Err(format!(
                "unknown hint `{other}`; expected one of: aws, gcp, azure, kubernetes"
            )),
        }
    }
}

/// What a step writes to its ask file.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AskFile {
    /// The keys asked for (a hint's keys are added by [`AskFile::resolve`]).
    #[serde(default)]
    pub keys: Vec<AskedKey>,
    /// A provider whose credentials are asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<Hint>,
    /// Why, for the person answering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A checked request: what is stored and shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ask {
    /// The keys, in the order asked, each once.
    pub keys: Vec<AskedKey>,
    /// The hint, if one was given.
    pub hint: Option<Hint>,
    /// Why (at most 500 characters).
    pub reason: Option<String>,
}

impl AskFile {
    /// Parse an ask file's bytes and [`resolve`](AskFile::resolve) it.
    pub fn parse(bytes: &[u8]) -> Result<Ask, String> {
        if bytes.len() > MAX_ASK_FILE_BYTES {
            return Err(format!(
                "the ask file has {} bytes; at most {MAX_ASK_FILE_BYTES} are read",
                bytes.len()
            ));
        }
        let file: AskFile = serde_json::from_slice(bytes)
            .map_err(|e| format!("the ask file is not a valid request: {e}"))?;
        file.resolve()
    }

    /// The hint's keys, then the named ones (a key named twice is asked once: secret,
    /// required or a file if any mention says so); every name checked.
    pub fn resolve(self) -> Result<Ask, String> {
        let mut keys: Vec<AskedKey> = Vec::new();
        let hinted = self.hint.map(Hint::keys).unwrap_or_default();
        for key in hinted.into_iter().chain(self.keys) {
            check_key_name(&key.name)?;
            if let Some(description) = &key.description {
                if description.chars().count() > 200 {
                    return Err(format!(
                        "the description of `{}` is longer than 200 characters",
                        key.name
                    ));
                }
            }
            match keys.iter_mut().find(|k| k.name == key.name) {
                Some(known) => {
                    known.secret |= key.secret;
                    known.optional &= key.optional;
                    known.file |= key.file;
                    if known.description.is_none() {
                        known.description = key.description;
                    }
                }
                None => keys.push(key),
            }
        }
        if keys.is_empty() {
            return Err("the request asks for no key: name at least one, or a hint".into());
        }
        if keys.len() > MAX_KEYS {
            return Err(format!(
                "the request asks for {} keys; at most {MAX_KEYS} at once",
                keys.len()
            ));
        }
        let reason = self.reason.map(|r| r.chars().take(500).collect::<String>());
        Ok(Ask {
            keys,
            hint: self.hint,
            reason,
        })
    }
}

/// Variables a request may not set: they would change how orch's own processes or the step's
/// tools behave for everything, not hand over a value.
const RESERVED: &[&str] = &[
    "PATH",
    "HOME",
    "SHELL",
    "USER",
    "LOGNAME",
    "TMPDIR",
    "PWD",
    "IFS",
    "ENV",
    "BASH_ENV",
    "PROMPT_COMMAND",
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "NODE_OPTIONS",
    "PYTHONPATH",
    "PERL5LIB",
    "RUBYOPT",
];

/// A key is an environment variable name: `[A-Z_][A-Z0-9_]*`, at most 128 characters, not one
/// orch or the dynamic loader owns (`ORCH_*`, `LD_*`, `DYLD_*`, `XDG_*`, `PATH`, ...).
pub fn check_key_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit();
    if !valid {
        return Err(format!(
            "`{name}` is not a key: keys are environment variable names of capital letters, digits and `_` (at most 128, not starting with a digit)"
        ));
    }
    let reserved = RESERVED.contains(&name)
        || ["ORCH_", "LD_", "DYLD_", "XDG_", "GIT_CONFIG"]
            .iter()
            .any(|prefix| name.starts_with(prefix));
    if reserved {
        return Err(format!(
            "`{name}` cannot be asked for: orch, the loader or the shell own it"
        ));
    }
    Ok(())
}

/// Where an info request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    /// Waiting for an answer.
    Open,
    /// Answered: its values are stored.
    Answered,
    /// Not answered in time: the task went to `needs_review`.
    Expired,
    /// Its task was cancelled, retried or asked again before it was answered.
    Closed,
}

impl RequestState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Open => "open",
            RequestState::Answered => "answered",
            RequestState::Expired => "expired",
            RequestState::Closed => "closed",
        }
    }
}

impl std::str::FromStr for RequestState {
    type Err = String;
    fn from_str(text: &str) -> Result<RequestState, String> {
        match text {
            "open" => Ok(RequestState::Open),
            "answered" => Ok(RequestState::Answered),
            "expired" => Ok(RequestState::Expired),
            "closed" => Ok(RequestState::Closed),
            other => Err(format!("unknown info request state `{other}`")),
        }
    }
}

/// The names of `keys`, joined for a reason.
pub fn key_list(keys: &[AskedKey]) -> String {
    keys.iter()
        .map(|k| k.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A step of `run` asked for values (the run already ended `requeued`): the attempt is given
/// back and the task waits for the answer without a run.
pub fn park(task: &TaskFacts, run: RunId, step: &str, ask: &Ask) -> Result<Plan, Refusal> {
    let reason = format!(
        "step `{step}` asks for {}: answer with `orch task answer {} KEY=...`",
        key_list(&ask.keys),
        task.id
    );
    let step = Move::checked(
        task.id,
        task.status,
        EventKind::RequestInput,
        Status::AwaitingInput,
    )?
    .because(Some(reason))
    .of_run(Some(run));
    Ok(Plan {
        status: Status::AwaitingInput,
        effects: vec![
            Effect::SetAttempts {
                task: task.id,
                attempts_used: task.attempts_used.saturating_sub(1),
            },
            Effect::Move(step),
        ],
    })
}

/// A human answered: the task is queued again (its next run re-runs the asking step).
pub fn answer(task: &TaskFacts, keys: &[String]) -> Result<Plan, Refusal> {
    if task.status != Status::AwaitingInput {
        return Err(Refusal::Conflict {
            task: task.id,
            status: task.status,
            message: "only a task that is awaiting_input can be answered".into(),
        });
    }
    let step = Move::checked(task.id, task.status, EventKind::Answer, Status::Queued)?
        .because(Some(format!("answered: {}", keys.join(", "))));
    Ok(Plan {
        status: Status::Queued,
        effects: vec![Effect::Move(step)],
    })
}

/// An open request was not answered by its deadline: a human must look.
pub fn expire(task: &TaskFacts, keys: &str, waited: Duration) -> Result<Plan, Refusal> {
    let step = Move::checked(
        task.id,
        task.status,
        EventKind::Escalate,
        Status::NeedsReview,
    )?
    .because(Some(format!(
        "the info request for {keys} was not answered within {}; `orch task retry` runs the step again (it asks again)",
        format_duration(waited)
    )));
    Ok(Plan {
        status: Status::NeedsReview,
        effects: vec![
            Effect::Move(step),
            Effect::SettleDependents { task: task.id },
        ],
    })
}

/// `90s`, `15m`, `24h`, `2d`: the largest whole unit.
pub fn format_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    if secs >= 86_400 && secs.is_multiple_of(86_400) {
        format!("{}d", secs / 86_400)
    } else if secs >= 3600 && secs.is_multiple_of(3600) {
        format!("{}h", secs / 3600)
    } else if secs >= 60 && secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else if secs > 0 {
        format!("{secs}s")
    } else {
        format!("{}ms", duration.as_millis())
    }
}

/// When a request asked at `now` expires, if a timeout is set.
pub fn deadline(now: Timestamp, timeout: Option<Duration>) -> Option<Timestamp> {
    timeout.map(|t| now.after(t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TaskId;
    use crate::retry::RetryPolicy;

    fn facts(status: Status) -> TaskFacts {
        TaskFacts {
            id: TaskId(7),
            status,
            attempts_used: 1,
            max_attempts: 1,
            approved: false,
            requires_approval: false,
            retry: RetryPolicy::default(),
            active_run: None,
            children: Vec::new(),
        }
    }

    #[test]
    fn the_aws_hint_asks_for_the_key_pair_and_marks_the_secret() {
        let ask = AskFile::parse(br#"{"hint": "aws", "keys": [{"name": "EXTRA"}]}"#).unwrap();
        let names: Vec<(&str, bool, bool)> = ask
            .keys
            .iter()
            .map(|k| (k.name.as_str(), k.secret, k.optional))
            .collect();
        assert_eq!(
            names,
            vec![
                ("AWS_ACCESS_KEY_ID", false, false),
                ("AWS_SECRET_ACCESS_KEY", true, false),
                ("AWS_SESSION_TOKEN", true, true),
                ("AWS_DEFAULT_REGION", false, true),
                ("EXTRA", false, false),
            ]
        );
    }

    #[test]
    fn every_hint_marks_a_secret_and_its_keys_are_valid() {
        for hint in Hint::ALL {
            let keys = hint.keys();
            assert!(keys.iter().any(|k| k.secret), "{hint:?}");
            for key in keys {
                check_key_name(&key.name).unwrap();
            }
            assert_eq!(hint.as_str().parse::<Hint>(), Ok(hint));
        }
    }

    #[test]
    fn a_key_named_twice_is_asked_once_with_the_strictest_marks() {
        let ask = AskFile::parse(
            br#"{"keys": [{"name": "A", "optional": true}, {"name": "A", "secret": true}]}"#,
        )
        .unwrap();
        assert_eq!(ask.keys.len(), 1);
        assert!(ask.keys[0].secret && !ask.keys[0].optional);
    }

    #[test]
    fn hostile_ask_files_are_refused_with_the_reason() {
        for (bytes, expected) in [
            (
                &br#"{"keys": [{"name": "LD_PRELOAD"}]}"#[..],
                "cannot be asked",
            ),
            (br#"{"keys": [{"name": "ORCH_TOKEN"}]}"#, "cannot be asked"),
            (br#"{"keys": [{"name": "PATH"}]}"#, "cannot be asked"),
            (br#"{"keys": [{"name": "a b"}]}"#, "is not a key"),
            (br#"{"keys": []}"#, "no key"),
            (
                br#"{"keys": [{"name": "A"}], "task": 3, "values": {"A": "x"}}"#,
                "unknown field",
            ),
            (b"not json", "not a valid request"),
        ] {
            let err = AskFile::parse(bytes).unwrap_err();
            assert!(err.contains(expected), "{err}");
        }
        let huge = vec![b' '; MAX_ASK_FILE_BYTES + 1];
        assert!(AskFile::parse(&huge).unwrap_err().contains("at most"));
    }

    #[test]
    fn park_gives_the_attempt_back_and_answer_queues_the_task() {
        let ask = AskFile::parse(br#"{"hint": "aws"}"#).unwrap();
        let plan = park(&facts(Status::Running), RunId(3), "deploy", &ask).unwrap();
        assert_eq!(plan.status, Status::AwaitingInput);
        assert!(plan.effects.contains(&Effect::SetAttempts {
            task: TaskId(7),
            attempts_used: 0
        }));
        let plan = answer(&facts(Status::AwaitingInput), &["A".into()]).unwrap();
        assert_eq!(plan.status, Status::Queued);
        assert!(answer(&facts(Status::Running), &[]).is_err());
        let plan = expire(
            &facts(Status::AwaitingInput),
            "A",
            Duration::from_secs(86_400),
        )
        .unwrap();
        assert_eq!(plan.status, Status::NeedsReview);
        assert!(park(&facts(Status::Queued), RunId(3), "s", &ask).is_err());
    }
}
