//! The task sandbox from the worker's side: the `sandbox` / `[limits]` / `sandbox_read` settings
//! (where a project may only tighten), the claim-time decision (enforce, warn, or refuse), each
//! task's scratch area (`HOME`, `TMPDIR`, XDG dirs, a copy of `context.json`), and the
//! [`SandboxPolicy`] a step's processes run under.
//!
//! Layout of a task's scratch area, `<home>/scratch/<task>/`, kept across attempts (agent CLIs
//! keep their sessions there, which a resume needs) and never inside a run's bundle:
//! `home/` (`HOME`), `tmp/` (`TMPDIR`), `xdg/{config,data,cache,state}`, `agents/<agent>/`
//! (isolated CLI state), `context.json` (what earlier steps did, `ORCH_CONTEXT`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use orch_process::{Limits, SandboxPolicy, Support};
use serde::Deserialize;

/// How strictly tasks are confined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SandboxMode {
    /// No sandbox.
    Off,
    /// Whatever the machine supports, with a warning naming what is missing.
    BestEffort,
    /// The whole sandbox, or the task is refused at claim time.
    Required,
}

impl SandboxMode {
    fn parse(text: &str, place: &str) -> Result<SandboxMode, String> {
        match text {
            "off" => Ok(SandboxMode::Off),
            "best_effort" => Ok(SandboxMode::BestEffort),
            "required" => Ok(SandboxMode::Required),
            other => Err(format!(
                "{place}: `{other}` is not a sandbox mode; use \"required\", \"best_effort\" or \"off\""
            )),
        }
    }
}

/// The sandbox settings a worker runs a project's tasks with.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SandboxSettings {
    /// The mode chosen (`None`: the default, `required` where the machine supports it).
    pub mode: Option<SandboxMode>,
    /// Resource limits per process.
    pub limits: Limits,
    /// Extra paths tasks may read although they lie in a hidden directory (global config only).
    pub read: Vec<PathBuf>,
    /// The daemon user's real `HOME`, hidden from tasks.
    pub user_home: Option<PathBuf>,
    /// Files holding orch's forge credentials (`[forge] token_file`, `private_key_file`),
    /// hidden from tasks wherever they are.
    pub secret_files: Vec<PathBuf>,
    /// `ORCH_SANDBOX_UNSUPPORTED` is set: act as if the machine had no sandbox at all (to test
    /// the refusal path on a machine that has one).
    pub force_unsupported: bool,
}

/// What the claim-time check decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SandboxDecision {
    /// Run unconfined (`sandbox = "off"`).
    Off,
    /// Run confined; `warning` names what is missing under `best_effort`.
    Enforce {
        /// What the machine lacks, for the run's log.
        warning: Option<String>,
    },
}

/// The raw `[limits]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    cpu_seconds: Option<u64>,
    memory_bytes: Option<u64>,
    processes: Option<u64>,
    file_size_bytes: Option<u64>,
}

impl SandboxSettings {
    /// Take the sandbox keys out of the global and project tables (so the generic merge never
    /// sees them) and combine them: the global file and `ORCH_SANDBOX` (the operator) choose;
    /// the project's `.orch.toml`, written by whoever can commit to the repository, may only
    /// make the mode stricter and the limits lower, and may not name extra readable paths.
    pub(crate) fn from_layers(
        global: &mut toml::Table,
        project: &mut toml::Table,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<SandboxSettings, String> {
        let mut settings = SandboxSettings {
            user_home: env("HOME").map(PathBuf::from),
            force_unsupported: env("ORCH_SANDBOX_UNSUPPORTED").is_some_and(|v| !v.is_empty()),
            ..SandboxSettings::default()
        };
        if let Some(value) = global.remove("sandbox") {
            let text = value.as_str().unwrap_or_default().to_owned();
            settings.mode = Some(SandboxMode::parse(&text, "sandbox")?);
        }
        if let Some(text) = env("ORCH_SANDBOX").filter(|v| !v.is_empty()) {
            settings.mode = Some(SandboxMode::parse(&text, "ORCH_SANDBOX")?);
        }
        if let Some(value) = global.remove("limits") {
            let raw: RawLimits = value
                .try_into()
                .map_err(|e: toml::de::Error| format!("[limits]: {e}"))?;
            let limits = &mut settings.limits;
            limits.cpu_seconds = raw.cpu_seconds.or(limits.cpu_seconds);
            limits.memory_bytes = raw.memory_bytes.or(limits.memory_bytes);
            limits.processes = raw.processes.or(limits.processes);
            limits.file_size_bytes = raw.file_size_bytes.or(limits.file_size_bytes);
        }
        if let Some(value) = global.remove("sandbox_read") {
            let paths: Vec<PathBuf> = value
                .try_into()
                .map_err(|e: toml::de::Error| format!("sandbox_read: {e}"))?;
            settings.read = paths;
        }
        if project.remove("sandbox_read").is_some() {
            return Err(
                "sandbox_read may only be set in the global config.toml: a project \
                        cannot widen what its tasks may read"
                    .into(),
            );
        }
        if let Some(value) = project.remove("sandbox") {
            let text = value.as_str().unwrap_or_default().to_owned();
            let asked = SandboxMode::parse(&text, "sandbox")?;
            // Stricter only: `off` or `best_effort` in a project never loosens the operator's
            // choice. An operator who left the default keeps it unless the project tightens.
            settings.mode = match settings.mode {
                Some(mode) => Some(mode.max(asked)),
                None if asked == SandboxMode::Required => Some(asked),
                None => None,
            };
        }
        if let Some(value) = project.remove("limits") {
            let raw: RawLimits = value
                .try_into()
                .map_err(|e: toml::de::Error| format!("[limits]: {e}"))?;
            let limits = &mut settings.limits;
            let lower = |mine: Option<u64>, asked: Option<u64>| match (mine, asked) {
                (Some(mine), Some(asked)) => Some(mine.min(asked)),
                (None, asked) => asked,
                (mine, None) => mine,
            };
            limits.cpu_seconds = lower(limits.cpu_seconds, raw.cpu_seconds);
            limits.memory_bytes = lower(limits.memory_bytes, raw.memory_bytes);
            limits.processes = lower(limits.processes, raw.processes);
            limits.file_size_bytes = lower(limits.file_size_bytes, raw.file_size_bytes);
        }
        Ok(settings)
    }

    /// What this machine can enforce (probed once per process).
    pub fn support(&self) -> Support {
        if self.force_unsupported {
            Support::nothing("ORCH_SANDBOX_UNSUPPORTED is set")
        } else {
            orch_process::support().clone()
        }
    }

    /// Enforce, warn, or refuse (with the reason) for this machine.
    pub fn decide(&self) -> Result<SandboxDecision, String> {
        let support = self.support();
        let missing = support.missing();
        let mode = self.mode.unwrap_or(if missing.is_empty() {
            SandboxMode::Required
        } else {
            SandboxMode::BestEffort
        });
        match mode {
            SandboxMode::Off => Ok(SandboxDecision::Off),
            _ if missing.is_empty() => Ok(SandboxDecision::Enforce { warning: None }),
            SandboxMode::BestEffort => Ok(SandboxDecision::Enforce {
                warning: Some(format!(
                    "sandbox = \"best_effort\": this machine lacks {}; running with {}",
                    missing.join(", "),
                    support.describe()
                )),
            }),
            SandboxMode::Required => Err(format!(
                "the sandbox is required but this machine cannot give it: it lacks {}; run on a \
                 machine that has it, or set sandbox = \"best_effort\" in the global config.toml",
                missing.join(", ")
            )),
        }
    }
}

/// A task's scratch area (see the module docs).
#[derive(Debug, Clone)]
pub struct Scratch {
    /// `<home>/scratch/<task>`.
    pub root: PathBuf,
}

impl Scratch {
    /// The scratch area of `task` under `home` (not created).
    pub fn of(home: &Path, task: i64) -> Scratch {
        Scratch {
            root: home.join("scratch").join(task.to_string()),
        }
    }

    /// Per-agent CLI state (`AgentRequest::state_dir`).
    pub fn agents(&self) -> PathBuf {
        self.root.join("agents")
    }

    /// The copy of `context.json` steps read.
    pub fn context(&self) -> PathBuf {
        self.root.join("context.json")
    }

    /// Create the directories and return the variables pointing at them.
    pub fn prepare(&self) -> std::io::Result<BTreeMap<String, String>> {
        let mut env = BTreeMap::new();
        for (name, sub) in [
            ("HOME", "home"),
            ("TMPDIR", "tmp"),
            ("XDG_CONFIG_HOME", "xdg/config"),
            ("XDG_DATA_HOME", "xdg/data"),
            ("XDG_CACHE_HOME", "xdg/cache"),
            ("XDG_STATE_HOME", "xdg/state"),
        ] {
            let dir = self.root.join(sub);
            std::fs::create_dir_all(&dir)?;
            env.insert(name.to_owned(), dir.display().to_string());
        }
        env.insert(
            orch_process::SCRATCH_VAR.to_owned(),
            self.root.display().to_string(),
        );
        env.insert(
            "ORCH_CONTEXT".to_owned(),
            self.context().display().to_string(),
        );
        Ok(env)
    }
}

/// What a step's processes may touch: its worktree, the worktree's git admin dir and the
/// repository's objects (so a `git commit` inside works), its scratch area; read the main
/// checkout and the install dirs of `binaries`; nothing else under the home or the real `HOME`.
#[allow(clippy::too_many_arguments)] // each is a distinct input of the policy; a struct would
                                     // only rename them at the one call site.
pub fn step_policy(
    home: &Path,
    settings: &SandboxSettings,
    scratch: &Scratch,
    workspace: &Path,
    project_dir: &Path,
    binaries: &[String],
    path_var: Option<&str>,
    network: bool,
) -> SandboxPolicy {
    let mut read_write = vec![workspace.to_owned(), scratch.root.clone()];
    if let Some((admin, objects)) = git_dirs(project_dir, workspace) {
        read_write.push(admin);
        read_write.push(objects);
    }
    let mut read_only = vec![project_dir.to_owned()];
    read_only.extend(settings.read.iter().cloned());
    for binary in binaries {
        read_only.extend(orch_process::sandbox::install_dirs(binary, path_var));
    }
    // Tool prefixes that shims run from (pyenv, rbenv) when they sit on the PATH.
    if let Some(path) = path_var {
        read_only.extend(
            std::env::split_paths(path)
                .filter(|dir| dir.file_name().is_some_and(|n| n == "shims"))
                .filter_map(|dir| dir.parent().map(Path::to_path_buf)),
        );
    }
    let mut hidden = vec![home.to_owned()];
    hidden.extend(settings.user_home.iter().cloned());
    hidden.extend(settings.secret_files.iter().cloned());
    SandboxPolicy {
        read_write,
        read_only,
        hidden,
        masked: vec![home.join("tmux")],
        network,
        limits: settings.limits,
    }
}

/// What the router's and the reviewer's agents may touch before `answer::ask` adds their
/// workdir (readable) and state directory (writable): the rest as for a step, but no worktree,
/// scratch area or repository to write.
pub fn answer_policy(home: &Path, settings: &SandboxSettings) -> SandboxPolicy {
    let mut hidden = vec![home.to_owned()];
    hidden.extend(settings.user_home.iter().cloned());
    hidden.extend(settings.secret_files.iter().cloned());
    SandboxPolicy {
        read_write: Vec::new(),
        read_only: settings.read.clone(),
        hidden,
        masked: vec![home.join("tmux")],
        network: true,
        limits: settings.limits,
    }
}

/// The worktree's own git admin dir (`<common>/worktrees/<name>`) and the objects dir, found
/// from the main checkout (which a task cannot write), never from the worktree's `.git` file
/// (which it can): the admin entry whose `gitdir` names this worktree.
fn git_dirs(project_dir: &Path, workspace: &Path) -> Option<(PathBuf, PathBuf)> {
    let common = std::fs::canonicalize(project_dir.join(".git")).ok()?;
    if !common.is_dir() {
        return None;
    }
    let workspace = std::fs::canonicalize(workspace).ok()?;
    let wanted = workspace.join(".git");
    let names_this_worktree = |admin: &Path| {
        std::fs::read_to_string(admin.join("gitdir"))
            .is_ok_and(|text| Path::new(text.trim()) == wanted)
    };
    // git names the admin dir after the worktree's directory (a suffix on a clash): look there
    // first, so a home with many worktrees is not scanned for every step.
    let worktrees = common.join("worktrees");
    let by_name = workspace
        .file_name()
        .map(|name| worktrees.join(name))
        .filter(|admin| names_this_worktree(admin));
    let admin = match by_name {
        Some(admin) => admin,
        None => std::fs::read_dir(&worktrees)
            .ok()?
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .find(|admin| names_this_worktree(admin))?,
    };
    Some((admin, common.join("objects")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(
        global: &str,
        project: &str,
        env: &[(&str, &str)],
    ) -> Result<SandboxSettings, String> {
        let mut global: toml::Table = global.parse().unwrap();
        let mut project: toml::Table = project.parse().unwrap();
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        SandboxSettings::from_layers(&mut global, &mut project, &|name| env.get(name).cloned())
    }

    #[test]
    fn a_project_can_tighten_the_sandbox_but_never_loosen_it() {
        let cases = [
            (
                "sandbox = \"required\"",
                "sandbox = \"off\"",
                Some(SandboxMode::Required),
            ),
            (
                "sandbox = \"best_effort\"",
                "sandbox = \"off\"",
                Some(SandboxMode::BestEffort),
            ),
            (
                "sandbox = \"off\"",
                "sandbox = \"required\"",
                Some(SandboxMode::Required),
            ),
            ("", "sandbox = \"off\"", None),
            ("", "sandbox = \"required\"", Some(SandboxMode::Required)),
        ];
        for (global, project, expected) in cases {
            let got = settings(global, project, &[]).unwrap();
            assert_eq!(got.mode, expected, "{global} / {project}");
        }
        let limits = settings(
            "[limits]\ncpu_seconds = 100\nprocesses = 10",
            "[limits]\ncpu_seconds = 1000\nprocesses = 5",
            &[],
        )
        .unwrap()
        .limits;
        assert_eq!((limits.cpu_seconds, limits.processes), (Some(100), Some(5)));
        let refused = settings("", "sandbox_read = [\"/root/.ssh\"]", &[]).unwrap_err();
        assert!(refused.contains("global"), "{refused}");
    }

    #[test]
    fn the_environment_chooses_for_the_operator_and_forcing_unsupported_refuses_required() {
        let forced = settings(
            "sandbox = \"off\"",
            "",
            &[
                ("ORCH_SANDBOX", "required"),
                ("ORCH_SANDBOX_UNSUPPORTED", "1"),
            ],
        )
        .unwrap();
        assert_eq!(forced.mode, Some(SandboxMode::Required));
        let refusal = forced.decide().unwrap_err();
        assert!(refusal.contains("Landlock"), "{refusal}");
        let best = SandboxSettings {
            mode: Some(SandboxMode::BestEffort),
            ..forced
        };
        assert!(matches!(
            best.decide(),
            Ok(SandboxDecision::Enforce { warning: Some(_) })
        ));
        assert!(settings("sandbox = \"loose\"", "", &[]).is_err());
    }
}
