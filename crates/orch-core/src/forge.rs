//! A project's forge (GitHub) in the domain: the `[forge]` settings checked once, the link of a
//! task to its issue and pull request, the writes orch owes the forge ([`ForgeOp`], kept in the
//! store's durable outbox under an idempotency key), and the pure decisions of which writes a
//! task's change calls for: its `status:*`, `agent:*` and `complexity:*` labels and the one
//! marker comment (`<!-- orch:task <id> -->`) edited in place.
//!
//! Architecture invariant: nothing here talks to a forge; the dispatcher that sends the ops is
//! in `orch-server` (`forge_outbox.rs`).

use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::lifecycle::Status;
use crate::model::{TaskId, Timestamp};

pub mod conflict;
pub mod feedback;

/// The label an issue must carry to become a task, unless the config names another.
pub const DEFAULT_TRIGGER_LABEL: &str = "orch";

/// The default API base (github.com); GitHub Enterprise Server is `https://<host>/api/v3`.
pub const DEFAULT_API_BASE: &str = "https://api.github.com";

/// The default number of feedback rounds before a task goes to `needs_review`.
pub const DEFAULT_ROUND_LIMIT: u32 = 3;

/// `owner/repo`, checked as GitHub names them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RepoSlug {
    owner: String,
    name: String,
}

impl RepoSlug {
    /// Parse `owner/repo`: an owner of letters, digits and single hyphens (at most 39, not
    /// starting or ending with `-`), a name of letters, digits, `-`, `_` and `.` (at most 100,
    /// not `.` or `..`).
    pub fn parse(text: &str) -> Result<RepoSlug, String> {
        let hint = "write it as `owner/repo`, e.g. `octo-org/widgets`";
        let trimmed = text.trim().trim_end_matches(".git");
        let Some((owner, name)) = trimmed.split_once('/') else {
            return Err(format!("`{text}` is not `owner/repo`; {hint}"));
        };
        let owner_ok = !owner.is_empty()
            && owner.len() <= 39
            && owner.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !owner.starts_with('-')
            && !owner.ends_with('-')
            && !owner.contains("--");
        if !owner_ok {
            return Err(format!(
                "the owner `{owner}` of `{text}` is not a GitHub user or organisation name \
                 (letters, digits and single hyphens, at most 39); {hint}"
            ));
        }
        let name_ok = !name.is_empty()
            && name.len() <= 100
            && name != "."
            && name != ".."
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !name_ok {
            return Err(format!(
                "the repository name `{name}` of `{text}` is not one GitHub allows (letters, \
                 digits, `-`, `_` and `.`, at most 100, one `/`); {hint}"
            ));
        }
        Ok(RepoSlug {
            owner: owner.to_owned(),
            name: name.to_owned(),
        })
    }

    /// The owner.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The repository's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl std::fmt::Display for RepoSlug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

/// The forges orch speaks to (a closed set; GitLab would be the next variant).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ForgeKind {
    /// GitHub or GitHub Enterprise Server.
    Github,
}

impl ForgeKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ForgeKind::Github => "github",
        }
    }

    /// The kind of this stored name.
    pub fn parse(text: &str) -> Result<ForgeKind, String> {
        match text {
            "github" => Ok(ForgeKind::Github),
            other => Err(format!(
                "`kind = \"{other}\"` is not a forge orch knows; use `github`"
            )),
        }
    }
}

/// How a pull request is merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MergeMethod {
    /// A merge commit.
    Merge,
    /// One squashed commit.
    Squash,
    /// The commits rebased onto the base.
    Rebase,
}

/// `[forge]` of a project's `.orch.toml` (or the home's `config.toml`) as written; every key
/// but `repo` optional. [`ForgeFile::check`] turns it into [`ForgeSettings`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForgeFile {
    /// `github` (the default).
    pub kind: Option<String>,
    /// `owner/repo`.
    pub repo: Option<String>,
    /// The REST API's base URL.
    pub api_base: Option<String>,
    /// The label that makes an issue a task.
    pub trigger_label: Option<String>,
    /// The label that asks orch to plan an issue into sub-issues first (default `plan`).
    pub plan_label: Option<String>,
    /// A file holding the token (read at use, never stored).
    pub token_file: Option<String>,
    /// An environment variable holding the token.
    pub token_env: Option<String>,
    /// A GitHub App's id.
    pub app_id: Option<u64>,
    /// The App's private key (PEM) file.
    pub private_key_file: Option<String>,
    /// The App's installation on the repository.
    pub installation_id: Option<u64>,
    /// Open pull requests as drafts.
    pub draft_prs: Option<bool>,
    /// Merge approved, green pull requests with this method (`merge`, `squash`, `rebase`).
    pub auto_merge: Option<String>,
    /// Feedback rounds (follow-up runs from checks and reviews) before `needs_review`.
    pub round_limit: Option<u32>,
    /// Delete the branch once its pull request is merged.
    pub delete_branch_on_merge: Option<bool>,
    /// The git remote (of the main checkout's config) or URL task branches are pushed to
    /// (default `origin`).
    pub remote: Option<String>,
    /// Failing checks start follow-up runs (default on).
    pub react_to_checks: Option<bool>,
    /// Reviews requesting changes and review comments start follow-up runs (default on).
    pub react_to_reviews: Option<bool>,
    /// A conflict with the base branch starts a rebase run (default on).
    pub rebase_on_conflict: Option<bool>,
    /// Approvals auto-merge waits for (default 1).
    pub required_approvals: Option<u32>,
    /// How often issues and pull requests are read back (`60s`, `5m`; default 60s).
    pub poll_interval: Option<String>,
}

/// How orch authenticates to the forge. Holds where the secret is, never the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForgeAuth {
    /// A token read from this file.
    TokenFile(String),
    /// A token read from this environment variable.
    TokenEnv(String),
    /// A GitHub App: installation tokens made from the private key.
    App {
        /// The App's id.
        app_id: u64,
        /// The PEM file.
        private_key_file: String,
        /// The installation.
        installation_id: u64,
    },
}

/// A project's checked forge settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForgeSettings {
    /// The forge.
    pub kind: ForgeKind,
    /// The repository.
    pub repo: RepoSlug,
    /// The REST API's base URL, without a trailing `/`.
    pub api_base: String,
    /// The label that makes an issue a task.
    pub trigger_label: String,
    /// The label that asks for a plan first (`orch_core::planner`).
    pub plan_label: String,
    /// How to authenticate (`None`: not configured yet; nothing is written to the forge).
    pub auth: Option<ForgeAuth>,
    /// Open pull requests as drafts.
    pub draft_prs: bool,
    /// Merge approved, green pull requests this way (`None`: never merge).
    pub auto_merge: Option<MergeMethod>,
    /// Feedback rounds before `needs_review`.
    pub round_limit: u32,
    /// Delete a merged pull request's branch.
    pub delete_branch_on_merge: bool,
    /// The git remote or URL task branches are pushed to.
    pub remote: String,
    /// The feedback loop's reactions and polling.
    pub feedback: feedback::FeedbackSettings,
}

impl ForgeFile {
    /// Check every key; an error names the key (`forge.<key>`) and the fix. The repository is
    /// `repo`, or else `linked` (the project's link made by `orch init --repo`); when both are
    /// given they must agree.
    pub fn check(&self, linked: Option<&RepoSlug>) -> Result<ForgeSettings, String> {
        let kind = ForgeKind::parse(self.kind.as_deref().unwrap_or("github"))
            .map_err(|e| format!("forge.kind: {e}"))?;
        let repo = match (self.repo.as_deref(), linked) {
            (Some(text), linked) => {
                let repo = RepoSlug::parse(text).map_err(|e| format!("forge.repo: {e}"))?;
                if let Some(linked) = linked.filter(|l| **l != repo) {
                    return Err(format!(
                        "forge.repo is `{repo}` but the project is linked to `{linked}`; make \
                         them agree (`orch init --repo {repo}` relinks the project)"
                    ));
                }
                repo
            }
            (None, Some(linked)) => linked.clone(),
            (None, None) => {
                return Err("forge.repo is missing; name the repository as `repo = \
                            \"owner/repo\"` (or run `orch init --repo owner/repo`)"
                    .to_owned())
            }
        };
        let api_base = check_api_base(self.api_base.as_deref().unwrap_or(DEFAULT_API_BASE))
            .map_err(|e| format!("forge.api_base: {e}"))?;
        let trigger_label = self
            .trigger_label
            .clone()
            .unwrap_or_else(|| DEFAULT_TRIGGER_LABEL.to_owned());
        check_label(&trigger_label).map_err(|e| format!("forge.trigger_label: {e}"))?;
        let plan_label = self
            .plan_label
            .clone()
            .unwrap_or_else(|| crate::planner::DEFAULT_PLAN_LABEL.to_owned());
        check_label(&plan_label).map_err(|e| format!("forge.plan_label: {e}"))?;
        if plan_label == trigger_label {
            return Err(format!(
                "forge.plan_label is `{plan_label}`, the trigger label too; give the plan label \
                 another name (every planned issue carries both)"
            ));
        }
        let auth = self.auth()?;
        let auto_merge = match self.auto_merge.as_deref() {
            None | Some("off") | Some("none") => None,
            Some("merge") => Some(MergeMethod::Merge),
            Some("squash") => Some(MergeMethod::Squash),
            Some("rebase") => Some(MergeMethod::Rebase),
            Some(other) => {
                return Err(format!(
                    "forge.auto_merge: `{other}` is not a merge method; use `merge`, `squash`, \
                     `rebase`, or `off`"
                ))
            }
        };
        let round_limit = self.round_limit.unwrap_or(DEFAULT_ROUND_LIMIT);
        if round_limit == 0 {
            return Err(
                "forge.round_limit: 0 allows no follow-up run at all; set it to 1 or \
                        more (a task reaching the limit goes to `needs_review`)"
                    .to_owned(),
            );
        }
        Ok(ForgeSettings {
            kind,
            repo,
            api_base,
            trigger_label,
            plan_label,
            auth,
            draft_prs: self.draft_prs.unwrap_or(false),
            auto_merge,
            round_limit,
            delete_branch_on_merge: self.delete_branch_on_merge.unwrap_or(false),
            feedback: feedback::FeedbackSettings::check(self)?,
            remote: match self.remote.as_deref().map(str::trim) {
                None => "origin".to_owned(),
                Some(remote) if remote.is_empty() || remote.starts_with('-') => {
                    return Err(format!(
                        "forge.remote: `{remote}` is not a remote's name or URL; use e.g. \
                         `origin`"
                    ))
                }
                Some(remote) if remote.contains('@') && remote.contains("://") => {
                    return Err("forge.remote holds credentials in its URL; give the URL \
                                without them (the token comes from token_file or token_env)"
                        .to_owned())
                }
                Some(remote) => remote.to_owned(),
            },
        })
    }

    /// Check every key but the repository's presence (it may come from the project's link).
    pub fn check_keys(&self) -> Result<(), String> {
        let placeholder = RepoSlug {
            owner: "owner".into(),
            name: "repo".into(),
        };
        let linked = self.repo.is_none().then_some(&placeholder);
        self.check(linked).map(|_| ())
    }

    fn auth(&self) -> Result<Option<ForgeAuth>, String> {
        let app_keys = [
            self.app_id.is_some(),
            self.private_key_file.is_some(),
            self.installation_id.is_some(),
        ];
        let token_keys =
            usize::from(self.token_file.is_some()) + usize::from(self.token_env.is_some());
        let app_given = app_keys.iter().any(|&given| given);
        if token_keys > 1 || (token_keys == 1 && app_given) {
            return Err(
                "forge: give one way to authenticate: `token_file`, `token_env`, or \
                        `app_id` + `private_key_file` + `installation_id`"
                    .to_owned(),
            );
        }
        if let Some(file) = &self.token_file {
            if file.trim().is_empty() {
                return Err("forge.token_file is empty; name the file holding the token".into());
            }
            return Ok(Some(ForgeAuth::TokenFile(file.clone())));
        }
        if let Some(name) = &self.token_env {
            let valid = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            if !valid {
                return Err(format!(
                    "forge.token_env: `{name}` is not an environment variable's name; write \
                     the variable's name (e.g. `GITHUB_TOKEN`), never the token itself"
                ));
            }
            return Ok(Some(ForgeAuth::TokenEnv(name.clone())));
        }
        match (self.app_id, &self.private_key_file, self.installation_id) {
            (None, None, None) => Ok(None),
            (Some(app_id), Some(key), Some(installation_id)) => Ok(Some(ForgeAuth::App {
                app_id,
                private_key_file: key.clone(),
                installation_id,
            })),
            _ => Err(
                "forge: a GitHub App needs all of `app_id`, `private_key_file` and \
                      `installation_id`"
                    .to_owned(),
            ),
        }
    }
}

/// An API base is an `http(s)://host[:port][/path]` URL without credentials, query or fragment.
pub fn check_api_base(text: &str) -> Result<String, String> {
    let trimmed = text.trim().trim_end_matches('/');
    let rest = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"))
        .ok_or_else(|| {
            format!(
                "`{text}` is not an http(s) URL; use e.g. `{DEFAULT_API_BASE}` or \
                 `https://github.example.com/api/v3`"
            )
        })?;
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() {
        return Err(format!("`{text}` has no host"));
    }
    if host.contains('@') {
        return Err(format!(
            "`{text}` holds credentials; put the token in `token_file` or `token_env`, never in \
             the URL"
        ));
    }
    if rest.contains(['?', '#', ' ']) {
        return Err(format!(
            "`{text}` has a query, fragment or space; give the bare base URL"
        ));
    }
    Ok(trimmed.to_owned())
}

/// A label name: not blank, at most 50 characters (GitHub's limit), no comma.
pub fn check_label(label: &str) -> Result<(), String> {
    if label.trim().is_empty() || label.chars().count() > 50 || label.contains(',') {
        return Err(format!(
            "`{label}` is not a label name (1 to 50 characters, no comma)"
        ));
    }
    Ok(())
}

/// Attempts an outbox op gets before it is `failed` for good.
pub const MAX_OP_ATTEMPTS: u32 = 10;

/// How long an op waits after its `failed_attempts`-th failure: 5 s doubling, at most an hour;
/// `None` once [`MAX_OP_ATTEMPTS`] failed (the op is given up on).
pub fn op_retry_delay(failed_attempts: u32) -> Option<Duration> {
    if failed_attempts >= MAX_OP_ATTEMPTS {
        return None;
    }
    let doubled = 5u64.saturating_mul(1 << failed_attempts.saturating_sub(1).min(20));
    Some(Duration::from_secs(doubled.min(3600)))
}

/// What links a task to its forge: where it came from and what orch made of it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForgeLink {
    /// The repository (`owner/repo`).
    pub repo: String,
    /// The issue the task came from (or was published as).
    pub issue: Option<u64>,
    /// The pull request of its branch.
    pub pr_number: Option<u64>,
    /// The pull request's web address.
    pub pr_url: Option<String>,
    /// The branch pushed as the pull request's head.
    pub head_branch: Option<String>,
    /// The commit last pushed to it.
    pub pushed_commit: Option<String>,
    /// The marker comment on the issue.
    pub marker_comment_id: Option<u64>,
}

/// A label orch keeps on issues, as the forge should create it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelSpec {
    /// The name (`status:running`).
    pub name: String,
    /// Six hex digits, without `#`.
    pub color: String,
    /// Shown on the forge.
    pub description: String,
}

/// One write orch owes a forge. Kept in the store's outbox (as JSON) until it is done; the
/// dispatcher must make each one safe to send twice (a crash between the forge's answer and
/// the store's `done` sends it again): it looks for what an earlier attempt made before making
/// it (the marker in a comment, a pull request of the head branch, an issue with the task's
/// marker).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ForgeOp {
    /// Create the labels orch uses where they are missing (names, colours, descriptions).
    EnsureLabels {
        /// The labels.
        labels: Vec<LabelSpec>,
    },
    /// Add and remove labels on an issue (removing an absent one is not an error).
    SetLabels {
        /// The issue.
        issue: u64,
        /// Labels to add.
        add: Vec<String>,
        /// Labels to remove.
        remove: Vec<String>,
    },
    /// Create the task's marker comment on the issue, or edit it in place.
    UpsertMarkerComment {
        /// The issue.
        issue: u64,
        /// The task (its marker is `<!-- orch:task <id> -->`).
        task: TaskId,
        /// The whole comment.
        body: String,
    },
    /// Open a pull request of the task's pushed branch (or find the open one of `head`).
    CreatePullRequest {
        /// The task.
        task: TaskId,
        /// The head branch.
        head: String,
        /// The base branch.
        base: String,
        /// The title.
        title: String,
        /// The body (report, usage, `Closes #N`).
        body: String,
        /// Open it as a draft.
        draft: bool,
    },
    /// Make `child` a sub-issue of `parent`.
    AddSubIssue {
        /// The parent issue.
        parent: u64,
        /// The child issue.
        child: u64,
    },
    /// Close an issue.
    CloseIssue {
        /// The issue.
        issue: u64,
    },
    /// Merge a pull request (only while its head is still `head_sha`, when given).
    MergePull {
        /// The pull request.
        pull: u64,
        /// How.
        method: MergeMethod,
        /// The head commit the approvals and checks were for.
        head_sha: Option<String>,
    },
    /// Delete a branch of the repository.
    DeleteBranch {
        /// The branch.
        branch: String,
    },
    /// Open an issue for a local task (`orch task publish`); the issue's body carries the
    /// task's marker so a repeat finds it instead of opening a second one.
    CreateIssue {
        /// The task.
        task: TaskId,
        /// The title.
        title: String,
        /// The body.
        body: String,
        /// Labels.
        labels: Vec<String>,
    },
}

impl ForgeOp {
    /// The op's name (`set_labels`), as listings show it.
    pub fn name(&self) -> &'static str {
        match self {
            ForgeOp::EnsureLabels { .. } => "ensure_labels",
            ForgeOp::SetLabels { .. } => "set_labels",
            ForgeOp::UpsertMarkerComment { .. } => "upsert_marker_comment",
            ForgeOp::CreatePullRequest { .. } => "create_pull_request",
            ForgeOp::AddSubIssue { .. } => "add_sub_issue",
            ForgeOp::CloseIssue { .. } => "close_issue",
            ForgeOp::MergePull { .. } => "merge_pull",
            ForgeOp::DeleteBranch { .. } => "delete_branch",
            ForgeOp::CreateIssue { .. } => "create_issue",
        }
    }

    /// The task whose link a finished op updates, and how ([`ForgeResult`] says what the forge
    /// made): a created issue becomes the task's issue, a pull request its pull request, a
    /// marker comment its marker.
    pub fn link_update(&self, result: &ForgeResult) -> Option<(TaskId, LinkUpdate)> {
        match (self, result) {
            (ForgeOp::CreateIssue { task, .. }, ForgeResult::Issue { number, .. }) => {
                Some((*task, LinkUpdate::Issue { number: *number }))
            }
            (ForgeOp::CreatePullRequest { task, head, .. }, ForgeResult::Pull { number, url }) => {
                Some((
                    *task,
                    LinkUpdate::Pull {
                        number: *number,
                        url: url.clone(),
                        head: head.clone(),
                    },
                ))
            }
            (ForgeOp::UpsertMarkerComment { task, .. }, ForgeResult::Comment { id }) => {
                Some((*task, LinkUpdate::MarkerComment { id: *id }))
            }
            _ => None,
        }
    }
}

/// What a forge made for an op, stored with it when it is done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "made", rename_all = "snake_case")]
pub enum ForgeResult {
    /// Nothing worth keeping (labels set, issue closed, ...).
    Nothing,
    /// An issue.
    Issue {
        /// Its number.
        number: u64,
        /// Its web address.
        url: Option<String>,
    },
    /// A pull request.
    Pull {
        /// Its number.
        number: u64,
        /// Its web address.
        url: String,
    },
    /// A comment.
    Comment {
        /// Its id.
        id: u64,
    },
}

/// A change to a task's [`ForgeLink`] that a finished op brings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkUpdate {
    /// The task's issue.
    Issue {
        /// Its number.
        number: u64,
    },
    /// The task's pull request.
    Pull {
        /// Its number.
        number: u64,
        /// Its address.
        url: String,
        /// Its head branch.
        head: String,
    },
    /// The marker comment.
    MarkerComment {
        /// Its id.
        id: u64,
    },
}

/// An op with the key that makes enqueueing it idempotent: the same key is stored once,
/// however often (and after however many crashes) it is enqueued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedOp {
    /// Unique in the outbox.
    pub key: String,
    /// The write.
    pub op: ForgeOp,
}

/// The status label of a status (`status:needs_review`).
pub fn status_label(status: Status) -> String {
    format!("status:{}", status.as_str())
}

/// The agent label (`agent:claude`).
pub fn agent_label(agent: &str) -> String {
    format!("agent:{agent}")
}

/// The complexity label (`complexity:medium`).
pub fn complexity_label(complexity: &str) -> String {
    format!("complexity:{complexity}")
}

/// Every label orch creates on a linked repository: the trigger label, one per status, and the
/// plan label (`[forge] plan_label`). Agent and complexity labels are made as they are first
/// used.
pub fn managed_labels(trigger_label: &str, plan_label: &str) -> Vec<LabelSpec> {
    let mut labels = vec![
        LabelSpec {
            name: trigger_label.to_owned(),
            color: "5319e7".into(),
            description: "orch works on this issue".into(),
        },
        LabelSpec {
            name: plan_label.to_owned(),
            color: "c5def5".into(),
            description: "orch splits this issue into sub-issues first".into(),
        },
    ];
    for status in Status::ALL {
        let color = match status {
            Status::Done => "0e8a16",
            Status::Failed | Status::NeedsReview => "d93f0b",
            Status::Running | Status::AwaitingInput => "1d76db",
            Status::Blocked | Status::Cancelled => "6a737d",
            _ => "fbca04",
        };
        labels.push(LabelSpec {
            name: status_label(status),
            color: color.into(),
            description: format!("orch: the task is {}", status.as_str().replace('_', " ")),
        });
    }
    labels
}

/// A task's state as the forge shows it: what the labels and the marker comment are made from.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskFacts {
    /// The task.
    pub task: TaskId,
    /// Its title.
    pub title: String,
    /// Its status now.
    pub status: Status,
    /// Why, when the status has a reason.
    pub status_reason: Option<String>,
    /// The agents of its agent steps (routed ones once routed; `auto` left out).
    pub agents: Vec<String>,
    /// Its complexity, once routed.
    pub complexity: Option<String>,
    /// Its runs, oldest first.
    pub runs: Vec<RunFacts>,
    /// Usage summed over its runs.
    pub cost_usd: f64,
    /// Tokens in, summed.
    pub input_tokens: u64,
    /// Tokens out, summed.
    pub output_tokens: u64,
    /// Its links.
    pub link: ForgeLink,
}

/// One run, as the marker comment lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunFacts {
    /// Its number within the task.
    pub attempt: u32,
    /// When it started.
    pub started_at: Timestamp,
    /// How it ended (`None`: still running).
    pub outcome: Option<String>,
}

/// A change of a task that the forge should show: the event that made it, and the status it
/// came from (the same as `facts.status` for notes).
#[derive(Debug, Clone, PartialEq)]
pub struct TaskChange {
    /// The event's id (what makes the ops' keys unique per change).
    pub event: i64,
    /// The status before.
    pub from: Option<Status>,
    /// The task as it is after the change.
    pub facts: TaskFacts,
}

/// The marker that finds a task's comment (and a published issue) again.
pub fn marker(task: TaskId) -> String {
    format!("<!-- orch:task {} -->", task.0)
}

/// The labels an issue should gain and lose for a change: the new status label in, the old one
/// out; the agent and complexity labels once known (never removed: a task that changes agent
/// keeps both, which is what happened).
pub fn label_change(from: Option<Status>, facts: &TaskFacts) -> (Vec<String>, Vec<String>) {
    let mut add = vec![status_label(facts.status)];
    for agent in &facts.agents {
        let label = agent_label(agent);
        if !add.contains(&label) {
            add.push(label);
        }
    }
    if let Some(complexity) = &facts.complexity {
        add.push(complexity_label(complexity));
    }
    let remove = match from {
        Some(from) if from != facts.status => vec![status_label(from)],
        _ => Vec::new(),
    };
    (add, remove)
}

/// The writes a change of a task linked to an issue calls for: its labels, and its marker
/// comment rendered anew. A task without an issue needs none. Keyed by the task and the event,
/// so a change is enqueued once however often it is looked at.
pub fn ops_for_change(change: &TaskChange) -> Vec<KeyedOp> {
    let facts = &change.facts;
    let Some(issue) = facts.link.issue else {
        return Vec::new();
    };
    let (add, remove) = label_change(change.from, facts);
    vec![
        KeyedOp {
            key: format!("labels:task-{}:event-{}", facts.task.0, change.event),
            op: ForgeOp::SetLabels { issue, add, remove },
        },
        KeyedOp {
            key: format!("marker:task-{}:event-{}", facts.task.0, change.event),
            op: ForgeOp::UpsertMarkerComment {
                issue,
                task: facts.task,
                body: marker_comment(facts),
            },
        },
    ]
}

/// The labels orch needs on a repository, once per repository and pair of labels.
pub fn ensure_labels_op(repo: &RepoSlug, trigger_label: &str, plan_label: &str) -> KeyedOp {
    let key = if plan_label == crate::planner::DEFAULT_PLAN_LABEL {
        // The key before plan labels were configurable, so a daemon upgraded in place does not
        // send the op again.
        format!("ensure-labels:{repo}:{trigger_label}")
    } else {
        format!("ensure-labels:{repo}:{trigger_label}:{plan_label}")
    };
    KeyedOp {
        key,
        op: ForgeOp::EnsureLabels {
            labels: managed_labels(trigger_label, plan_label),
        },
    }
}

/// `orch task publish`: open an issue for a local task, once per task.
pub fn publish_op(task: TaskId, title: &str, body: &str, trigger_label: &str) -> KeyedOp {
    let body = format!("{}\n\n{}", body.trim_end(), marker(task))
        .trim_start()
        .to_owned();
    KeyedOp {
        key: format!("publish:task-{}", task.0),
        op: ForgeOp::CreateIssue {
            task,
            title: title.to_owned(),
            body,
            labels: vec![trigger_label.to_owned()],
        },
    }
}

/// The pull request of a task's pushed branch, once per task (a later push updates the same
/// pull request).
pub fn pull_request_op(
    task: TaskId,
    title: &str,
    head: &str,
    base: &str,
    body: &str,
    draft: bool,
) -> KeyedOp {
    KeyedOp {
        key: format!("pull:task-{}", task.0),
        op: ForgeOp::CreatePullRequest {
            task,
            head: head.to_owned(),
            base: base.to_owned(),
            title: title.to_owned(),
            body: body.to_owned(),
            draft,
        },
    }
}

/// The body of a task's pull request: the report, the usage, and `Closes #N` for its issue.
pub fn pull_request_body(task: TaskId, issue: Option<u64>, report: &str, cost: &str) -> String {
    let mut body = String::new();
    if let Some(issue) = issue {
        body.push_str(&format!("Closes #{issue}\n\n"));
    }
    let report = report.trim();
    if !report.is_empty() {
        body.push_str(report);
        body.push_str("\n\n");
    }
    body.push_str(&format!("Usage: {cost}\n\n{}", marker(task)));
    body
}

/// The marker comment: the marker line, the state, the run history, cost and links. Rendered
/// whole from the facts every time, so editing it in place always shows the latest state.
pub fn marker_comment(facts: &TaskFacts) -> String {
    let mut out = String::new();
    out.push_str(&marker(facts.task));
    out.push('\n');
    out.push_str(&format!(
        "**orch task {}** · status: `{}`",
        facts.task.0,
        facts.status.as_str()
    ));
    if let Some(reason) = facts
        .status_reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
    {
        out.push_str(&format!(" ({})", one_line(reason, 200)));
    }
    out.push('\n');
    if !facts.agents.is_empty() || facts.complexity.is_some() {
        out.push('\n');
        if !facts.agents.is_empty() {
            out.push_str(&format!("Agent: {}", facts.agents.join(", ")));
        }
        if let Some(complexity) = &facts.complexity {
            if !facts.agents.is_empty() {
                out.push_str(" · ");
            }
            out.push_str(&format!("complexity: {complexity}"));
        }
        out.push('\n');
    }
    out.push('\n');
    if facts.runs.is_empty() {
        out.push_str("No run yet.\n");
    } else {
        out.push_str("| run | started (UTC) | outcome |\n|---|---|---|\n");
        for run in &facts.runs {
            out.push_str(&format!(
                "| {} | {} | {} |\n",
                run.attempt,
                utc_minute(run.started_at),
                run.outcome
                    .as_deref()
                    .map_or_else(|| "running".to_owned(), |o| one_line(o, 120))
            ));
        }
    }
    out.push_str(&format!(
        "\nCost: ${:.4} ({} tokens in, {} out)\n",
        facts.cost_usd, facts.input_tokens, facts.output_tokens
    ));
    let link = &facts.link;
    let mut links = Vec::new();
    if let (Some(number), Some(url)) = (link.pr_number, &link.pr_url) {
        links.push(format!("pull request [#{number}]({url})"));
    } else if let Some(number) = link.pr_number {
        links.push(format!("pull request #{number}"));
    }
    if let Some(branch) = &link.head_branch {
        links.push(format!("branch `{branch}`"));
    }
    if let Some(commit) = &link.pushed_commit {
        links.push(format!("pushed `{}`", commit.get(..12).unwrap_or(commit)));
    }
    if !links.is_empty() {
        out.push_str(&format!("Links: {}\n", links.join(" · ")));
    }
    out
}

/// Text on one line, at most `max` characters, without characters that would break a table.
fn one_line(text: &str, max: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| match c {
            '\n' | '\r' | '\t' => ' ',
            '|' => '/',
            c => c,
        })
        .collect();
    if flat.chars().count() > max {
        let cut: String = flat.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    } else {
        flat
    }
}

/// `2026-12-03 07:45` for a timestamp (no clock is read: the instant is given).
fn utc_minute(at: Timestamp) -> String {
    let instant = UNIX_EPOCH + Duration::from_millis(u64::try_from(at.0).unwrap_or(0));
    let text = humantime::format_rfc3339_seconds(instant).to_string();
    // `2026-12-03T07:45:12Z` → `2026-12-03 07:45`.
    text.get(..16).unwrap_or(&text).replacen('T', " ", 1)
}

pub mod mention;

#[cfg(test)]
mod tests;
