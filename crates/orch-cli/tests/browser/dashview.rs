//! The task page (logs, transcript, diff; comments on diff lines sent to the agent), the
//! workflow graph updating live, and hostile file names and agent messages on the task page.

use super::*;

/// A change by `sim` (a file rewritten, a file added, a message), then a check that runs after
/// it; and a task whose file name, agent message and log lines carry markup and script.
const CHANGE: &str = r#"name: review
tasks:
  - id: change
    title: Count greetings
    steps:
      - name: edit
        agent: sim
        prompt: |
          Count the greetings.
          @write src/greet.rs
          pub fn greet(name: &str) -> String {
              let x = name.len();
              format!("hello {name} ({x})")
          }
          @end
          @write src/count.py
          def count(items):
              return len(items)
          @end
          @say Both files are in place; `greet` now counts.
  - id: check
    title: Check the build
    needs: [change]
    steps:
      - name: check
        exec:
          - argv: [cat, src/greet.rs]
  - id: hostile
    title: Hostile names
    steps:
      - name: evil
        agent: sim
        prompt: |
          Make trouble.
          @write <script>window.orchPwned=1<script>.txt
          <img src=x onerror="window.orchPwned=2">
          @end
          @say <img src=x onerror="window.orchPwned=3"> <script>window.orchPwned=4</script> [click me](javascript:window.orchPwned=5)
"#;

/// Nothing the page holds ran or can run: no `window.orchPwned`, no image, no inline script, no
/// `javascript:` link, no event-handler attribute.
async fn assert_inert(b: &Browser, page: &str) {
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        b.js("return typeof window.orchPwned;").await,
        json!("undefined"),
        "{page} ran injected script"
    );
    let hostile = b
        .js(
            "return Array.from(document.querySelectorAll('*')).filter(e => \
             e.tagName === 'IMG' || e.tagName === 'IFRAME' || \
             (e.tagName === 'SCRIPT' && !e.hasAttribute('src')) || \
             Array.from(e.attributes).some(a => /^on/i.test(a.name)) || \
             /^\\s*javascript:/i.test(e.getAttribute('href') || '')).length;",
        )
        .await;
    assert_eq!(hostile, json!(0), "{page} holds live markup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_page_shows_logs_transcript_and_diff_and_a_line_comment_reaches_the_agent() {
    if !chromium_available("task page") {
        return;
    }
    let home = Home::new();
    let repo = Repo::new(&[(
        "src/greet.rs",
        "pub fn greet(name: &str) -> String {\n    format!(\"hello {name}\")\n}\n",
    )]);
    let ids = home.submit("review", CHANGE, repo.path());
    let (change, hostile) = (ids["change"], ids["hostile"]);
    let dash = Dashboard::start_on(home, 1, 1280, 1000).await;
    poll_until(
        "the change and the hostile task to finish",
        UI_DEADLINE,
        || {
            (dash.home.task_status(change) == "done" && dash.home.task_status(hostile) == "done")
                .then_some(())
        },
    );
    dash.sign_in().await;
    let b = &dash.browser;

    b.goto(&dash.url(&format!("/tasks/{change}"))).await;
    b.wait_for("#diff-body tr[data-line]").await;
    // Logs, transcript, report, result and the diff's file list.
    let logs = b.text("#logs-1").await;
    assert!(logs.contains("==> logs.txt <=="), "{logs}");
    assert!(logs.contains("step `edit` succeeded"), "{logs}");
    let transcript = b.text("#run-1 .transcript").await;
    assert!(
        transcript.contains("Both files are in place; greet now counts."),
        "{transcript}"
    );
    assert!(transcript.contains("write_file"), "{transcript}");
    assert!(b.text("#run-1 .report").await.contains("Task"));
    let files = b.text("#diff-files").await;
    assert!(
        files.contains("src/greet.rs") && files.contains("src/count.py"),
        "{files}"
    );
    // Highlighted: the Rust keyword `let` sits in a highlight class.
    let highlighted = b
        .js("return document.querySelectorAll('#diff-body .code span[class^=hl-]').length;")
        .await;
    assert!(highlighted.as_u64().unwrap_or(0) > 3, "{highlighted}");

    // Comment on the new line 2 of src/greet.rs (`let x = name.len();`).
    let section = "#diff-body section[data-path=\"src/greet.rs\"]";
    let row = format!("{section} tr[data-side=new][data-line=\"2\"]");
    assert!(b.text(&row).await.contains("let x = name.len();"));
    b.click(&format!("{row} td.ln")).await;
    b.wait_for(&format!("{section} tr.comment-row textarea"))
        .await;
    b.type_into(
        &format!("{section} tr.comment-row textarea"),
        "Name it `length`, not `x`.",
    )
    .await;
    // The page with the diff and the comment being written, for the README.
    b.js("document.getElementById('diff').scrollIntoView(); return null;")
        .await;
    b.screenshot("task-diff").await;
    b.click("#send-comments").await;
    b.wait_for("#flash").await;
    let flash = b.text("#flash").await;
    assert!(flash.contains("Sent 1 comment(s) to the agent"), "{flash}");
    // The follow-up run resumes the agent with the comment: sim got it as its prompt.
    poll_until("the follow-up run to finish", UI_DEADLINE, || {
        let task = dash.home.task(change);
        (task["runs"].as_array().map_or(0, Vec::len) == 2
            && dash.home.task_status(change) == "done")
            .then_some(())
    });
    // The follow-up run's one step is `reply-<n>`, resuming the session of `edit`.
    let steps = dash.home.run_dir(change, 2).join("steps");
    let reply_step = std::fs::read_dir(&steps)
        .unwrap()
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().starts_with("reply-"))
        .unwrap_or_else(|| panic!("no reply step in {}", steps.display()));
    let prompt = std::fs::read_to_string(reply_step.path().join("prompt.md")).unwrap();
    assert!(
        prompt.contains("src/greet.rs:2\nName it `length`, not `x`."),
        "{prompt}"
    );
    let task = dash.home.task(change);
    let reply = task_events(&task, "reply");
    assert_eq!(reply.len(), 1);
    assert_eq!(reply[0]["actor"], local_user().as_str());

    // A file name, agent message and log lines full of markup render as text.
    let page = format!("/tasks/{hostile}");
    b.goto(&dash.url(&page)).await;
    b.wait_for("#diff-files").await;
    assert_inert(b, &page).await;
    let files = b.text("#diff-files").await;
    assert!(
        files.contains("<script>window.orchPwned=1<script>.txt"),
        "{files}"
    );
    let transcript = b.text("#run-1 .transcript").await;
    assert!(
        transcript.contains("<img src=x onerror=\"window.orchPwned=3\">"),
        "{transcript}"
    );
    let logs = b.text("#logs-1").await;
    assert!(
        logs.contains("<script>window.orchPwned=4</script>"),
        "{logs}"
    );
    let diff = b.text("#diff-body").await;
    assert!(
        diff.contains("<img src=x onerror=\"window.orchPwned=2\">"),
        "{diff}"
    );
    // Opening every collapsed block (tool calls) runs nothing either.
    b.js("document.querySelectorAll('details').forEach(d => d.open = true); return null;")
        .await;
    assert_inert(b, &page).await;
    dash.stop().await;
}

const PIPELINE: &str = r#"name: release
tasks:
  - id: fetch
    title: Fetch sources
    requires_approval: true
    steps:
      - name: fetch
        exec:
          - argv: [sleep, "1"]
  - id: lint
    title: Lint
    needs: [fetch]
    steps:
      - name: lint
        exec:
          - argv: ["true"]
  - id: unit
    title: Unit tests
    needs: [fetch]
    steps:
      - name: unit
        exec:
          - argv: [sleep, "1"]
  - id: docs
    title: Build the docs
    needs: [fetch]
    steps:
      - name: docs
        exec:
          - argv: ["true"]
  - id: package
    title: Package
    needs: [lint, unit]
    steps:
      - name: package
        exec:
          - argv: ["true"]
  - id: publish
    title: Publish the release
    needs: [package, docs]
    steps:
      - name: publish
        exec:
          - argv: ["true"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workflow_view_draws_the_graph_and_recolours_nodes_live() {
    if !chromium_available("workflow view") {
        return;
    }
    let home = Home::new();
    let repo = Repo::new(&[("README.md", "hi\n")]);
    let ids = home.submit("release", PIPELINE, repo.path());
    let workflow = home.task(ids["fetch"])["task"]["workflow"]
        .as_i64()
        .expect("workflow tasks have a workflow");
    // The first task waits for an approval: the page first shows every task waiting.
    let dash = Dashboard::start_on(home, 2, 1280, 560).await;
    dash.sign_in().await;
    let b = &dash.browser;
    b.goto(&dash.url(&format!("/workflows/{workflow}"))).await;
    b.wait_for("#workflow-graph svg.dag").await;
    let nodes = b
        .js("return document.querySelectorAll('#workflow-graph a.dag-node').length;")
        .await;
    assert_eq!(nodes, json!(6));
    let edges = b
        .js("return document.querySelectorAll('#workflow-graph path.dag-edge').length;")
        .await;
    assert_eq!(edges, json!(7));
    let waiting = b
        .js(&format!(
            "return document.querySelector('#workflow-graph [data-task=\"{}\"]').getAttribute('class');",
            ids["fetch"]
        ))
        .await;
    assert_eq!(waiting, json!("dag-node status-awaiting_approval"));
    // Longest-path layers: publish is three columns right of fetch.
    let x_of = |id: i64| {
        format!(
            "return Number(document.querySelector('#workflow-graph [data-task=\"{id}\"] rect').getAttribute('x'));"
        )
    };
    let fetch_x = b.js(&x_of(ids["fetch"])).await.as_f64().unwrap();
    let publish_x = b.js(&x_of(ids["publish"])).await.as_f64().unwrap();
    assert!(publish_x - fetch_x >= 3.0 * 190.0, "{fetch_x} {publish_x}");
    // A node links to its task.
    let href = b
        .js(&format!(
            "return document.querySelector('#workflow-graph [data-task=\"{}\"]').getAttribute('href');",
            ids["unit"]
        ))
        .await;
    assert_eq!(href, json!(format!("/tasks/{}", ids["unit"])));
    // Approved, the tasks run to done; the page is not reloaded meanwhile.
    b.js("window.orchTestMarker = 7; return null;").await;
    let fetch = ids["fetch"].to_string();
    dash.home
        .run(&["task", "approve", &fetch])
        .expect_code(0, "orch task approve");
    wait_until("every node to turn done without a reload", || async {
        b.js("return Array.from(document.querySelectorAll('#workflow-graph a.dag-node')).every(n => n.getAttribute('class') === 'dag-node status-done');")
            .await
            == json!(true)
    })
    .await;
    assert_eq!(b.js("return window.orchTestMarker;").await, json!(7));
    assert_eq!(b.text("#workflow-counts").await.trim(), "done 6");
    b.screenshot("workflow").await;
    dash.stop().await;
}
