//! Info requests on the worker's side (the protocol is `orch_core::info_request`'s): every step
//! gets `ORCH_ASK_FILE` (a path in the task's scratch area) and the answered values its step
//! asked for earlier; after the step the worker reads the ask file, and a valid request parks
//! the run instead of finishing it.
//!
//! The channel gives a step no power over orch: the worker reads only the keys (and a hint
//! and reason) from the file, never follows a link there, and the step never holds the run's
//! token; answers come only through `orch task answer` or the API, with a user's token.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;

use orch_core::info_request::{AskFile, ASK_FILE_VAR, MAX_ASK_FILE_BYTES};
use orch_store::{InputValue, NewInfoRequest};
use serde::Deserialize;

use super::*;

/// How long an unanswered info request waits before its task goes to `needs_review`
/// (`input_timeout = "24h"` in `.orch.toml` or `config.toml`; `"never"` waits forever).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputTimeout(pub Option<Duration>);

impl Default for InputTimeout {
    fn default() -> Self {
        InputTimeout(Some(Duration::from_secs(24 * 3600)))
    }
}

impl<'de> Deserialize<'de> for InputTimeout {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        if matches!(text.trim(), "never" | "none" | "0") {
            return Ok(InputTimeout(None));
        }
        humantime::parse_duration(text.trim())
            .map(|d| InputTimeout(Some(d)))
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "input_timeout `{text}`: {e}; write a duration like \"30m\" or \"24h\", or \"never\""
                ))
            })
    }
}

impl serde::Serialize for InputTimeout {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Some(d) => serializer.serialize_str(&humantime::format_duration(d).to_string()),
            None => serializer.serialize_str("never"),
        }
    }
}

/// The ask file of a task's scratch area.
pub(super) fn ask_file(scratch: &Scratch) -> PathBuf {
    scratch.root.join("ask.json")
}

/// Where the file values of the current step are written (removed after the step).
fn inputs_dir(scratch: &Scratch) -> PathBuf {
    scratch.root.join("inputs")
}

impl Runner<'_> {
    /// The variables a step gets for its info requests: `ORCH_ASK_FILE`, and the values its
    /// task was given for this step (a file value as the path of a private file).
    pub(super) fn ask_env(&self, step: &Step) -> BTreeMap<String, String> {
        let scratch = self.scratch();
        let mut env = BTreeMap::new();
        env.insert(
            ASK_FILE_VAR.to_owned(),
            ask_file(&scratch).display().to_string(),
        );
        for value in self.inputs.iter().filter(|v| v.step == step.name) {
            if value.file {
                match write_input_file(&scratch, &value.key, &value.value) {
                    Ok(path) => {
                        env.insert(value.key.clone(), path.display().to_string());
                    }
                    Err(e) => tracing::warn!(
                        task = %self.task.id,
                        "could not write the file for `{}`: {e}",
                        value.key
                    ),
                }
            } else {
                env.insert(value.key.clone(), value.value.clone());
            }
        }
        env
    }

    /// Before a step: no ask file and no file values of another step are left over.
    pub(super) fn clear_ask(&self) {
        let scratch = self.scratch();
        let _ = std::fs::remove_file(ask_file(&scratch));
        let _ = std::fs::remove_dir_all(inputs_dir(&scratch));
    }

    /// After a step: the file values are removed and the ask file, if the step wrote one, is
    /// read. `Some(Ok)`: the step asked (the run parks); `Some(Err)`: it wrote a request that
    /// is not valid (the step fails with the reason).
    pub(super) fn take_ask(&mut self, step: &Step) -> Option<Result<NewInfoRequest, String>> {
        let scratch = self.scratch();
        let _ = std::fs::remove_dir_all(inputs_dir(&scratch));
        let path = ask_file(&scratch);
        let bytes = match read_ask_file(&path) {
            Ok(None) => return None,
            Ok(Some(bytes)) => bytes,
            Err(e) => return Some(Err(e)),
        };
        let _ = std::fs::remove_file(&path);
        let ask = match AskFile::parse(&bytes) {
            Ok(ask) => ask,
            Err(e) => return Some(Err(format!("step `{}`'s info request: {e}", step.name))),
        };
        let timeout = self.config.input_timeout.0;
        Some(Ok(NewInfoRequest {
            step: step.name.clone(),
            ask,
            expires_at: timeout.map(|t| orch_core::Timestamp(now_ms()).after(t)),
        }))
    }
}

/// The ask file's bytes, if there is one: a regular file, never through a link, at most
/// [`MAX_ASK_FILE_BYTES`].
fn read_ask_file(path: &Path) -> Result<Option<Vec<u8>>, String> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path);
    let file = match file {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            let _ = std::fs::remove_file(path);
            return Err(format!(
                "the ask file {} cannot be read ({e}): it must be a regular file, not a link",
                path.display()
            ));
        }
    };
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        let _ = std::fs::remove_file(path);
        return Err(format!(
            "the ask file {} is not a regular file",
            path.display()
        ));
    }
    let mut bytes = Vec::new();
    file.take(MAX_ASK_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    Ok(Some(bytes))
}

/// Write a file value into a fresh `inputs/` directory of the scratch area, readable by the
/// owner only; never through a link the task left there.
fn write_input_file(scratch: &Scratch, key: &str, value: &str) -> std::io::Result<PathBuf> {
    use std::io::Write;
    let dir = inputs_dir(scratch);
    match std::fs::symlink_metadata(&dir) {
        Ok(meta) if meta.is_dir() && !meta.file_type().is_symlink() => {}
        Ok(_) => {
            std::fs::remove_file(&dir)?;
            std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        }
        Err(_) => {
            std::fs::create_dir_all(&scratch.root)?;
            std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        }
    }
    let path = dir.join(key);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&path)?;
    file.write_all(value.as_bytes())?;
    Ok(path)
}

use std::os::unix::fs::DirBuilderExt;

/// The values the run's task was given (opened), for its steps and its redactor.
pub(super) async fn fetch_inputs(
    coordinator: &Coordinator,
    settings: &WorkerSettings,
    claim: &Claim,
) -> Result<Vec<InputValue>, String> {
    coordinator
        .input_values(&settings.name, claim.run.id, claim.token, settings)
        .await
        .map_err(|e| format!("could not read the task's answered values: {e}"))
}

impl Runner<'_> {
    /// Whether the step that just ended left an ask file (then it is not checkpointed: the
    /// next run runs it again with the values).
    pub(super) fn asked(&self) -> bool {
        std::fs::symlink_metadata(ask_file(&self.scratch())).is_ok()
    }

    /// After a step: if it asked for values, record the request to park with, mark the step
    /// and the run, and answer `true` (no later step runs). An invalid request fails the step.
    pub(super) fn ask_after_step(
        &mut self,
        step: &Step,
        report: &mut StepReport,
        verdict: &mut Verdict,
    ) -> bool {
        match self.take_ask(step) {
            None => false,
            Some(Err(reason)) => {
                self.log(Some(&step.name), &reason);
                report.status = ResultStatus::Failed;
                report.error = Some(reason);
                false
            }
            Some(Ok(request)) => {
                let keys = orch_core::info_request::key_list(&request.ask.keys);
                let reason = format!(
                    "step `{}` asks for {keys}; the run parks until `orch task answer {}` gives them",
                    step.name, self.task.id
                );
                self.log(Some(&step.name), &reason);
                report.status = ResultStatus::Cancelled;
                report.summary = format!("asked for {keys}");
                report.error = None;
                *verdict = Verdict {
                    outcome: Outcome::Failed,
                    reason,
                    interrupted: false,
                    requeue_after: None,
                };
                self.park = Some(request);
                true
            }
        }
    }
}
