//! Governance in the browser: an info request answered from the inbox (the secret typed into a
//! password field, never shown again, a form without the CSRF token refused) reaches the step
//! that asked; the jobs page shows the next firing and disables, enables and runs a job.

use sha2::Digest;

use super::{chromium_available, wait_until, Dashboard};
use crate::support::{int, poll_until, read_text, Repo, ORCH};

const SECRET: &str = "Pq7-browser-s3cr3t-Vv93Lk";
const KEY_ID: &str = "AKIDBROWSERKEY";

const DEPLOY_SH: &str = r#"set -e
"$1" ask --hint aws --reason "the deploy needs AWS credentials" || exit $?
echo "key id: $AWS_ACCESS_KEY_ID"
printf '%s' "$AWS_SECRET_ACCESS_KEY" | sha256sum | cut -c1-64 | sed 's/^/secret sha256: /'
"#;

fn wait_for_status(dash: &Dashboard, id: i64, status: &str) {
    poll_until(&format!("task {id} {status}"), super::UI_DEADLINE, || {
        (dash.home.task_status(id) == status).then_some(())
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_info_request_is_answered_from_the_inbox_and_the_secret_never_shown_again() {
    if !chromium_available("answer") {
        return;
    }
    let dash = Dashboard::start(1, 1200, 1000).await;
    dash.sign_in().await;
    let b = &dash.browser;
    let repo = Repo::new(&[("deploy.sh", DEPLOY_SH)]);
    let file = dash.home.write(
        "deploy.yml",
        &format!(
            "title: Deploy\nsteps:\n  - name: deploy\n    exec:\n      - argv: [\"bash\", \"deploy.sh\", \"{ORCH}\"]\n"
        ),
    );
    let added = dash.home.json(&[
        "task",
        "add",
        "--file",
        file.to_str().unwrap(),
        "--project",
        repo.path().to_str().unwrap(),
        "--json",
    ]);
    let id = int(&added, "id");
    wait_for_status(&dash, id, "awaiting_input");

    b.goto(&dash.url("/inbox")).await;
    let card = format!("article[data-task=\"{id}\"]");
    b.wait_for(&format!("{card} form.answer")).await;
    let field = |key: &str| format!("{card} [name=\"value.{key}\"]");
    let kind = |key: &str| format!("return document.querySelector('{}').type;", field(key));
    assert_eq!(b.js(&kind("AWS_SECRET_ACCESS_KEY")).await, "password");
    assert_eq!(b.js(&kind("AWS_ACCESS_KEY_ID")).await, "text");

    // A form without the session's CSRF token is refused and changes nothing.
    let status = b
        .c()
        .execute_async(
            &format!(
                "var done = arguments[0]; fetch('/tasks/{id}/answer', {{method: 'POST', \
                 headers: {{'Content-Type': 'application/x-www-form-urlencoded'}}, \
                 body: 'value.AWS_ACCESS_KEY_ID=x&value.AWS_SECRET_ACCESS_KEY=y'}})\
                 .then(function (r) {{ done(r.status); }});"
            ),
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(status, 403);
    assert_eq!(dash.home.task_status(id), "awaiting_input");

    b.type_into(&field("AWS_ACCESS_KEY_ID"), KEY_ID).await;
    b.type_into(&field("AWS_SECRET_ACCESS_KEY"), SECRET).await;
    b.screenshot("inbox-answer").await;
    b.click(&format!("{card} .act-answer")).await;
    b.wait_for("#flash").await;
    let flash = b.text("#flash").await;
    assert!(flash.contains(&format!("Task {id} answered")), "{flash}");
    let source = b.c().source().await.unwrap();
    assert!(!source.contains(SECRET), "the secret is shown again");

    wait_for_status(&dash, id, "done");
    let detail = dash.home.task(id);
    let answers = &detail["info_requests"][0]["answers"];
    let secret = answers
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["key"] == "AWS_SECRET_ACCESS_KEY")
        .unwrap();
    assert_eq!(secret["secret"], true, "{detail:#}");
    assert!(
        secret.get("value").is_none_or(|v| v.is_null()),
        "{detail:#}"
    );
    let run = dash.home.run_dir(id, 2);
    let stdout = read_text(&run.join("steps/deploy/stdout.log"));
    let digest = hex::encode(sha2::Sha256::digest(SECRET.as_bytes()));
    assert!(stdout.contains(&format!("key id: {KEY_ID}")), "{stdout}");
    assert!(
        stdout.contains(&format!("secret sha256: {digest}")),
        "{stdout}"
    );
    // The answer is recorded under the signed-in user.
    let answered = crate::support::task_events(&detail, "answer");
    assert_eq!(answered[0]["actor"], super::local_user(), "{detail:#}");
    dash.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jobs_page_shows_the_next_firing_and_disables_enables_and_runs_a_job() {
    if !chromium_available("jobs") {
        return;
    }
    let dash = Dashboard::start(1, 1200, 800).await;
    dash.sign_in().await;
    let b = &dash.browser;
    let repo = Repo::new(&[("README.md", "# jobs\n")]);
    dash.home.json(&[
        "job",
        "add",
        "nightly",
        "--schedule",
        "0 3 * * *",
        "--tz",
        "Europe/Berlin",
        "Nightly check",
        "--exec",
        "true",
        "--project",
        repo.path().to_str().unwrap(),
        "--json",
    ]);
    b.goto(&dash.url("/jobs")).await;
    let row = "tr[data-job=\"nightly\"]";
    b.wait_for(row).await;
    let next = b.text(&format!("{row} .job-next")).await;
    assert!(next.contains("03:00"), "{next}");
    assert_eq!(b.text(&format!("{row} .job-enabled")).await, "yes");
    b.screenshot("jobs").await;

    b.click(&format!("{row} .act-disable")).await;
    b.wait_for("#flash").await;
    assert!(b.text("#flash").await.contains("Job nightly disabled"));
    assert_eq!(b.text(&format!("{row} .job-enabled")).await, "no");
    assert_eq!(b.text(&format!("{row} .job-next")).await, "-");
    let listed = dash.home.json(&["job", "list", "--json"]);
    assert_eq!(listed[0]["enabled"], false, "{listed:#}");

    b.click(&format!("{row} .act-enable")).await;
    wait_until("the job is enabled again", || async {
        b.text(&format!("{row} .job-enabled")).await == "yes"
    })
    .await;

    b.click(&format!("{row} .act-run")).await;
    b.wait_for("#flash").await;
    let flash = b.text("#flash").await;
    let task: i64 = flash
        .split("task ")
        .nth(1)
        .and_then(|t| t.trim_end_matches('.').parse().ok())
        .unwrap_or_else(|| panic!("no task in `{flash}`"));
    wait_for_status(&dash, task, "done");
    assert!(b
        .text(&format!("{row} .job-last"))
        .await
        .contains(&format!("task {task}")));
    dash.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_usage_page_shows_todays_spend_against_the_limits() {
    if !chromium_available("usage limits") {
        return;
    }
    let home = crate::support::Home::new();
    home.write(
        "config.toml",
        "[concurrency]\nlabels = { deploy = 1 }\n[budgets]\ntime_zone = \"UTC\"\n[budgets.agents.sim]\ncost_usd = 1.5\n",
    );
    let dash = Dashboard::start_on(home, 0, 1200, 900).await;
    dash.sign_in().await;
    let b = &dash.browser;
    b.goto(&dash.url("/usage")).await;
    b.wait_for("#usage-limits").await;
    let label = b.text("tr[data-gauge=\"label:deploy\"]").await;
    assert!(label.contains("0 / 1"), "{label}");
    let agent = b.text("tr[data-gauge=\"agent:sim\"]").await;
    assert!(agent.contains("$0.00 / $1.50"), "{agent}");
    dash.stop().await;
}
