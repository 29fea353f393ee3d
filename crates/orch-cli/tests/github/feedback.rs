//! The feedback loop of a task's pull request through the real `orch serve` with `sim`, the fake
//! GitHub and no webhook at all (everything is read back by polling): an issue labelled `orch`
//! becomes a task, its branch is pushed and its pull request opened; a failing check starts a
//! follow-up run whose prompt holds the check's name and log; a review requesting changes on a
//! line starts one holding `file:line` and the comment; approved and green, the pull request is
//! merged (squash), the issue closed, the branch deleted and the worktree removed. Also: the
//! round limit and a pull request closed unmerged send the task to `needs_review`.
//!
//! The outbox's writes are sent by a minimal sender in the test ([`Sender`]), built on the forge
//! client, so the test does not depend on the daemon's own writer.

use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;
use orch_core::forge::{marker, ForgeOp, ForgeResult, MergeMethod};
use orch_forge::{Forge, ForgeAuth, ForgeConfig, Label, NewPull, RepoRef, SecretString};
use orch_github_fake::{CheckRunSpec, FakeGitHub};
use orch_store::{SqliteOptions, Store};

use crate::support::{files_under, poll_until, Home, Process, Repo, SERVE_DEADLINE};

pub const REPO: &str = "octo/widgets";
pub const TOKEN_VAR: &str = "ORCH_GITHUB_TEST_TOKEN";

/// The outbox's writes sent to the fake through the forge client, as the daemon's writer would.
pub struct Sender {
    runtime: tokio::runtime::Runtime,
    store: Store,
    forge: Forge,
    repo: RepoRef,
}

impl Sender {
    pub fn new(home: &Home, fake: &FakeGitHub, token: &str) -> Sender {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let store = runtime
            .block_on(Store::open_sqlite(
                &home.database(),
                SqliteOptions::default(),
            ))
            .unwrap();
        let config = ForgeConfig::github(ForgeAuth::Token(SecretString::from(token.to_owned())))
            .with_api_base(&fake.url())
            .unwrap();
        Sender {
            runtime,
            store,
            forge: Forge::github(config).unwrap(),
            repo: RepoRef::parse(REPO).unwrap(),
        }
    }

    /// Send every due op; the names of those sent.
    pub fn drain(&self) -> Vec<String> {
        self.runtime.block_on(async {
            let mut sent = Vec::new();
            loop {
                let entries = self
                    .store
                    .claim_forge_ops(
                        "test-sender",
                        Duration::from_secs(60),
                        50,
                        orch_store::wall_clock(),
                    )
                    .await
                    .unwrap();
                if entries.is_empty() {
                    return sent;
                }
                for entry in entries {
                    let result = self.send(&entry.op).await;
                    sent.push(entry.op.name().to_owned());
                    self.store
                        .finish_forge_op(entry.id, "test-sender", &result, orch_store::wall_clock())
                        .await
                        .unwrap();
                }
            }
        })
    }

    async fn send(&self, op: &ForgeOp) -> ForgeResult {
        let (forge, repo) = (&self.forge, &self.repo);
        match op {
            ForgeOp::EnsureLabels { labels } => {
                for label in labels {
                    let label = Label {
                        name: label.name.clone(),
                        color: label.color.clone(),
                        description: Some(label.description.clone()),
                    };
                    forge.ensure_label(repo, &label).await.unwrap();
                }
                ForgeResult::Nothing
            }
            ForgeOp::SetLabels { issue, add, remove } => {
                if !add.is_empty() {
                    forge.add_labels(repo, *issue, add).await.unwrap();
                }
                for label in remove {
                    forge.remove_label(repo, *issue, label).await.unwrap();
                }
                ForgeResult::Nothing
            }
            ForgeOp::UpsertMarkerComment { issue, task, body } => {
                let comment = forge
                    .upsert_marker_comment(repo, *issue, &marker(*task), body)
                    .await
                    .unwrap();
                ForgeResult::Comment { id: comment.id }
            }
            ForgeOp::CreatePullRequest {
                head,
                base,
                title,
                body,
                draft,
                ..
            } => {
                let pull = forge
                    .create_pull_once(
                        repo,
                        &NewPull {
                            title: title.clone(),
                            head: head.clone(),
                            base: base.clone(),
                            body: Some(body.clone()),
                            draft: *draft,
                        },
                    )
                    .await
                    .unwrap();
                ForgeResult::Pull {
                    number: pull.number,
                    url: pull.html_url.unwrap_or_default(),
                }
            }
            ForgeOp::CloseIssue { issue } => {
                forge.close_issue(repo, *issue).await.unwrap();
                ForgeResult::Nothing
            }
            ForgeOp::MergePull {
                pull,
                method,
                head_sha,
            } => {
                let method = match method {
                    MergeMethod::Merge => orch_forge::MergeMethod::Merge,
                    MergeMethod::Squash => orch_forge::MergeMethod::Squash,
                    MergeMethod::Rebase => orch_forge::MergeMethod::Rebase,
                };
                forge
                    .merge_pull(repo, *pull, method, head_sha.as_deref())
                    .await
                    .unwrap();
                ForgeResult::Nothing
            }
            ForgeOp::DeleteBranch { branch } => {
                forge.delete_branch(repo, branch).await.unwrap();
                ForgeResult::Nothing
            }
            ForgeOp::AddSubIssue { .. } | ForgeOp::CreateIssue { .. } => ForgeResult::Nothing,
        }
    }
}

/// The fake with the repository, a project linked to it whose remote is the fake's bare
/// repository (sharing its history), and a home.
pub struct World {
    pub fake: FakeGitHub,
    pub token: String,
    pub home: Home,
    pub repo: Repo,
}

impl World {
    pub fn new(forge_keys: &str) -> World {
        let fake = FakeGitHub::start_blocking();
        fake.create_repo(REPO);
        let token = fake.add_token("orch-bot");
        let remote = format!("file://{}", fake.bare_path(REPO).display());
        let config = format!(
            "default_agent = \"sim\"\n\n[forge]\ntoken_env = \"{TOKEN_VAR}\"\napi_base = \"{}\"\n\
             remote = \"{remote}\"\npoll_interval = \"1s\"\n{forge_keys}",
            fake.url()
        );
        let repo = Repo::new(&[("README.md", "# widgets\n"), (".orch.toml", &config)]);
        repo.git(&["push", "-q", "--force", &remote, "main:main"]);
        let home = Home::new();
        let project = repo.path().to_str().unwrap().to_owned();
        home.json(&["init", &project, "--repo", REPO, "--json"]);
        World {
            fake,
            token,
            home,
            repo,
        }
    }

    pub fn serve(&self, extra: &[&str]) -> Process {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0", "--workers", "1"];
        args.extend_from_slice(extra);
        self.home
            .spawn_with_env(&args, &[(TOKEN_VAR, self.token.as_str())])
    }

    /// An issue labelled `orch`, `orch serve` and the sender started, and the issue's task
    /// with its pull request open: (issue, serve, sender, task, pull).
    pub fn start(&self) -> (u64, Process, Sender, i64, u64) {
        self.start_with("List what changed.", &[])
    }

    /// [`World::start`] with the issue's body and `orch serve`'s extra arguments.
    pub fn start_with(&self, body: &str, serve_args: &[&str]) -> (u64, Process, Sender, i64, u64) {
        let issue = self
            .fake
            .create_issue(REPO, "Write the release notes", body, &["orch"]);
        let serve = self.serve(serve_args);
        let sender = self.sender();
        let (task, pull) = self.task_with_pull(&sender, issue);
        (issue, serve, sender, task, pull)
    }

    pub fn sender(&self) -> Sender {
        Sender::new(&self.home, &self.fake, &self.token)
    }

    /// The task the issue became (polled), once its pull request is open: (task, pull number).
    pub fn task_with_pull(&self, sender: &Sender, issue: u64) -> (i64, u64) {
        poll_until(
            "the issue's task with its pull request",
            SERVE_DEADLINE,
            || {
                sender.drain();
                self.task_and_pull(issue)
            },
        )
    }

    /// The task the issue became and its pull request's number, once both exist.
    pub fn task_and_pull(&self, issue: u64) -> Option<(i64, u64)> {
        let id = self
            .home
            .query_rows(&format!(
                "SELECT task_id FROM task_forge_links WHERE issue_number = {issue}"
            ))
            .first()?
            .first()?
            .parse::<i64>()
            .ok()?;
        let pull = self.home.task(id)["forge"]["pr_number"].as_u64()?;
        Some((id, pull))
    }

    /// The pull request's head once the task is done, its branch's tip (its last run's commit)
    /// is pushed, and that push is the head. (Between a follow-up's end and its push the task
    /// is done with the old head still on the pull request: not settled.)
    pub fn settled(&self, task: i64, pull: u64) -> Option<String> {
        let detail = self.home.task(task);
        let head = self.fake.pull(REPO, pull)?.head_sha;
        let branch = detail["forge"]["head_branch"].as_str()?;
        let tip = std::process::Command::new("git")
            .args(["rev-parse", "--verify", "-q"])
            .arg(format!("refs/heads/{branch}"))
            .current_dir(self.repo.path())
            .output()
            .ok()?;
        let tip = String::from_utf8_lossy(&tip.stdout).trim().to_owned();
        (detail["task"]["status"] == "done"
            && detail["forge"]["pushed_commit"].as_str() == Some(head.as_str())
            && tip == head)
            .then_some(head)
    }

    /// [`World::settled`], polled (delivering the fake's webhooks meanwhile).
    pub fn settled_head(&self, sender: &Sender, task: i64, pull: u64) -> String {
        poll_until(
            "the task done with its push on the pull request",
            SERVE_DEADLINE,
            || {
                sender.drain();
                self.settled(task, pull)
            },
        )
    }

    /// The text of every file of run `attempt`'s bundle, once it has one holding `needle`.
    pub fn run_holding(&self, sender: &Sender, task: i64, needle: &str) -> (u32, String) {
        poll_until(
            &format!("a run whose bundle holds {needle:?}"),
            SERVE_DEADLINE,
            || {
                sender.drain();
                (2..=8).find_map(|attempt| {
                    let text = bundle_text(&self.home, task, attempt);
                    text.contains(needle).then_some((attempt, text))
                })
            },
        )
    }
}

/// Every file of a run's bundle as text (empty while it has none).
pub fn bundle_text(home: &Home, task: i64, attempt: u32) -> String {
    let dir = home.run_dir(task, attempt);
    if !dir.is_dir() {
        return String::new();
    }
    files_under(&dir)
        .into_iter()
        .map(|f| String::from_utf8_lossy(&std::fs::read(f).unwrap_or_default()).into_owned())
        .collect()
}

/// CI fails `head`: `unit-tests` with a log whose excerpt ends `at src/lib.rs:41`.
pub fn fail_unit_tests(fake: &FakeGitHub, head: &str) {
    fake.add_check_run(
        REPO,
        head,
        CheckRunSpec::completed("unit-tests", "failure").with_output(
            "1 test failed",
            "tests::parses_notes failed",
            "assertion failed: notes.contains(\"Added\") at src/lib.rs:41",
        ),
    );
}

/// CI passes `head`; alice requests changes with a comment on `NOTES.md:1`.
pub fn request_changes_on_a_line(fake: &FakeGitHub, head: &str, pull: u64) {
    fake.add_check_run(REPO, head, CheckRunSpec::completed("unit-tests", "success"));
    fake.add_review_comment(
        REPO,
        pull,
        None,
        "alice",
        ("NOTES.md", 1),
        "Say which version this is.",
    );
    fake.add_review(REPO, pull, "alice", "CHANGES_REQUESTED", "Almost there.");
}

/// CI passes `head` and alice approves.
pub fn approve_green(fake: &FakeGitHub, head: &str, pull: u64) {
    fake.add_check_run(REPO, head, CheckRunSpec::completed("unit-tests", "success"));
    fake.add_review(REPO, pull, "alice", "APPROVED", "");
}

fn runs(home: &Home, task: i64) -> i64 {
    home.query_int(&format!("SELECT COUNT(*) FROM runs WHERE task_id = {task}"))
}

#[test]
fn a_pull_request_is_driven_by_its_checks_and_reviews_until_merged() {
    let world =
        World::new("auto_merge = \"squash\"\nround_limit = 3\ndelete_branch_on_merge = true\n");
    let (fake, home) = (&world.fake, &world.home);
    let (issue, serve, sender, task, pull) = world.start();
    let opened = fake.pull(REPO, pull).unwrap();
    assert!(
        opened
            .body
            .as_deref()
            .unwrap_or_default()
            .contains(&format!("Closes #{issue}")),
        "{opened:?}"
    );
    let branch = opened.head.clone();
    let head = world.settled_head(&sender, task, pull);

    // A failing check: a follow-up run whose prompt holds its name and log excerpt.
    fail_unit_tests(fake, &head);
    let (attempt, text) = world.run_holding(&sender, task, "at src/lib.rs:41");
    assert!(
        text.contains("unit-tests"),
        "the check's name is in the prompt"
    );
    let after_checks = attempt;
    let head = world.settled_head(&sender, task, pull);
    // The same check read again starts nothing more.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(runs(home, task), i64::from(after_checks));

    // Checks pass; a review requests changes on a line.
    request_changes_on_a_line(fake, &head, pull);
    let (attempt, _) = world.run_holding(&sender, task, "NOTES.md:1");
    let text: String = (after_checks + 1..=attempt)
        .map(|n| bundle_text(home, task, n))
        .collect();
    assert!(
        text.contains("Say which version this is."),
        "the comment is in a prompt"
    );
    let head = world.settled_head(&sender, task, pull);

    // Approved and green: merged (squash) on its head, the issue closed, the branch deleted,
    // the worktree removed; the task stays done.
    approve_green(fake, &head, pull);
    poll_until(
        "the pull request merged and its issue closed",
        SERVE_DEADLINE,
        || {
            sender.drain();
            let merged = fake.pull(REPO, pull)?;
            let issue = fake.issue(REPO, issue)?;
            (merged.merged && issue.state == "closed" && fake.branch_tip(REPO, &branch).is_none())
                .then_some(())
        },
    );
    assert_eq!(
        fake.pull(REPO, pull).unwrap().merge_method.as_deref(),
        Some("squash")
    );
    let worktree: PathBuf = crate::support::workspace_of(&home.run_dir(task, 1));
    poll_until("the worktree removed", SERVE_DEADLINE, || {
        (!worktree.exists()).then_some(())
    });
    assert_eq!(home.task_status(task), "done");
    let merges = home.query_int(&format!(
        "SELECT COUNT(*) FROM forge_outbox WHERE task_id = {task} AND op LIKE '%\"merge_pull\"%'"
    ));
    assert_eq!(merges, 1, "one merge op");
    serve.signal(Signal::SIGTERM);
    serve
        .finish(SERVE_DEADLINE)
        .expect_code(0, "serve after SIGTERM");
}

#[test]
fn the_round_limit_and_a_pull_request_closed_unmerged_need_review() {
    let world = World::new("round_limit = 1\n");
    let (fake, home) = (&world.fake, &world.home);
    let (_, serve, sender, task, pull) = world.start();
    let head = world.settled_head(&sender, task, pull);
    fake.add_check_run(
        REPO,
        &head,
        CheckRunSpec::completed("lint", "failure").with_output("lint", "", "line too long"),
    );
    world.run_holding(&sender, task, "line too long");
    let head = world.settled_head(&sender, task, pull);
    fake.add_check_run(
        REPO,
        &head,
        CheckRunSpec::completed("lint", "failure").with_output("lint", "", "still too long"),
    );
    let reason = poll_until("the task in needs_review", SERVE_DEADLINE, || {
        sender.drain();
        let detail = home.task(task);
        (detail["task"]["status"] == "needs_review").then(|| {
            detail["task"]["status_reason"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
    });
    assert!(reason.contains("round limit"), "{reason}");

    // Another issue's pull request closed without a merge: needs_review too.
    let second = fake.create_issue(REPO, "Tidy the README", "Fix the typos.", &["orch"]);
    let (other, other_pull) = world.task_with_pull(&sender, second);
    world.settled_head(&sender, other, other_pull);
    fake.close_pull(REPO, other_pull);
    let reason = poll_until("the other task in needs_review", SERVE_DEADLINE, || {
        let detail = home.task(other);
        (detail["task"]["status"] == "needs_review").then(|| {
            detail["task"]["status_reason"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
    });
    assert!(reason.contains("closed without being merged"), "{reason}");
    serve.signal(Signal::SIGTERM);
    serve
        .finish(SERVE_DEADLINE)
        .expect_code(0, "serve after SIGTERM");
}
