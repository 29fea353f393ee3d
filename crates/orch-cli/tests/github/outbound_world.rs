//! What the outbound tests share: a fake GitHub with `octo/widgets`, a project whose history is
//! the forge's (so pull requests compare real branches), linked with `orch init --repo`, whose
//! `[forge]` points at the fake (API base, git remote over HTTP, credentials), and `orch serve`
//! receiving the fake's webhooks.

use orch_github_fake::FakeGitHub;

use crate::support::{poll_until, Home, Process, Repo, SERVE_DEADLINE};

pub const REPO: &str = "octo/widgets";
/// The login orch acts as at the fake.
pub const BOT: &str = "orch-bot";
const WEBHOOK_SECRET: &str = "outbound-webhook-secret";

/// How orch authenticates at the fake.
pub enum Auth {
    /// A token in a file.
    Token,
    /// A GitHub App (id, installation), its key in a file.
    App { app_id: u64, installation: u64 },
}

pub struct World {
    pub home: Home,
    pub repo: Repo,
    pub fake: FakeGitHub,
    _secrets: tempfile::TempDir,
}

impl World {
    /// A world whose `[forge]` gets `extra` lines (e.g. `draft_prs = true`).
    pub fn new(extra: &str) -> World {
        World::with(Auth::Token, extra, FakeGitHub::start_blocking())
    }

    /// A world on a fake prepared by the caller (an App registered); the repository is made
    /// here.
    pub fn with(auth: Auth, extra: &str, fake: FakeGitHub) -> World {
        fake.create_repo(REPO);
        let secrets = tempfile::tempdir().unwrap();
        let token_file = secrets.path().join("github-token");
        let credentials = match auth {
            Auth::Token => {
                let token = fake.add_token(BOT);
                std::fs::write(&token_file, format!("{token}\n")).unwrap();
                format!("token_file = \"{}\"", token_file.display())
            }
            Auth::App {
                app_id,
                installation,
            } => {
                let key = secrets.path().join("app-key.pem");
                std::fs::write(&key, orch_github_fake::TEST_APP_PRIVATE_KEY).unwrap();
                format!(
                    "app_id = {app_id}\nprivate_key_file = \"{}\"\ninstallation_id = {installation}",
                    key.display()
                )
            }
        };
        let config = format!(
            "default_agent = \"sim\"\n\n[forge]\napi_base = \"{}\"\nremote = \"{}\"\n{credentials}\n{extra}\n",
            fake.url(),
            fake.clone_url(REPO),
        );
        let repo = Repo::new(&[("README.md", "# widgets\n"), (".orch.toml", &config)]);
        // The forge's main is the project's main: pull requests compare real branches.
        let bare = format!("file://{}", fake.bare_path(REPO).display());
        repo.git(&["push", "-q", "--force", &bare, "main:main"]);
        let home = Home::new();
        home.json(&[
            "init",
            repo.path().to_str().unwrap(),
            "--repo",
            REPO,
            "--json",
        ]);
        World {
            home,
            repo,
            fake,
            _secrets: secrets,
        }
    }

    /// `orch serve` with one worker, receiving the fake's webhooks.
    pub fn serve(&self) -> Process {
        let secret_file = self
            .home
            .write("github-webhook-secret", &format!("{WEBHOOK_SECRET}\n"));
        let serve = self.home.serve(&[
            "--workers",
            "1",
            "--github-webhook-secret-file",
            secret_file.to_str().unwrap(),
            "--github-project",
            self.repo.path().to_str().unwrap(),
        ]);
        let url = format!("http://{}/v1/webhooks/github", self.home.serve_addr());
        self.fake.send_webhooks_to(&url, WEBHOOK_SECRET);
        serve
    }

    /// The task made of `issue`, once the webhook made it.
    pub fn task_of(&self, issue: u64) -> i64 {
        poll_until(
            &format!("a task for issue #{issue}"),
            SERVE_DEADLINE,
            || {
                let rows = self.home.query_rows(&format!(
                    "SELECT task_id FROM task_forge_links WHERE issue_number = {issue}"
                ));
                rows.first().map(|row| row[0].parse::<i64>().unwrap())
            },
        )
    }

    /// orch's comments on `issue`.
    pub fn bot_comments(&self, issue: u64) -> Vec<orch_github_fake::CommentView> {
        self.fake
            .comments(REPO, issue)
            .into_iter()
            .filter(|c| c.author == BOT || c.author.ends_with("[bot]"))
            .collect()
    }

    /// Outbox rows not done yet (key, state, last error).
    pub fn unfinished_ops(&self) -> Vec<Vec<String>> {
        self.home.query_rows(
            "SELECT idempotency_key, state, COALESCE(last_error, '') FROM forge_outbox \
             WHERE state <> 'done' ORDER BY id",
        )
    }

    /// Wait until the outbox has nothing left to send (and nothing failed).
    pub fn wait_outbox_drained(&self) {
        poll_until("the outbox sent", SERVE_DEADLINE, || {
            let left = self.unfinished_ops();
            assert!(
                left.iter().all(|row| row[1] != "failed"),
                "a forge write failed: {left:?}"
            );
            left.is_empty().then_some(())
        });
    }

    /// Wait until `task` is `done`.
    pub fn wait_done(&self, task: i64) {
        poll_until("the task done", SERVE_DEADLINE, || {
            (self.home.task_status(task) == "done").then_some(())
        });
    }
}

/// Stop the daemon with SIGTERM; it must exit cleanly.
pub fn stop(serve: Process) {
    serve.signal(nix::sys::signal::Signal::SIGTERM);
    serve
        .finish(SERVE_DEADLINE)
        .expect_code(0, "serve after SIGTERM");
}
