//! Routing and review end to end: `agent: auto` steps routed by labels, config rules, a router
//! agent's JSON answer (a scripted `sim`) and the round-robin fallback after bad answers; a
//! reviewer that rejects and then approves, with its reasons in the next run's prompt.
//!
//! The scripted models are `sim` with `@answer` lines; the sequences (a bad answer per attempt, a
//! verdict per round) come from the project's own templates under `.orch/prompts/`, which see
//! the attempt and the round.

use serde_json::Value;

use crate::support::{int, read_json, read_text, task_events, Home, Repo};

fn route_of(home: &Home, id: i64) -> Value {
    home.json(&["task", "route", &id.to_string(), "--json"])
}

#[test]
fn labels_win_then_rules_then_round_robin_and_the_run_records_the_decision() {
    let home = Home::new();
    let repo = Repo::new(&[(
        ".orch.toml",
        r#"
[router]
agents = ["sim", "claude"]

[[router.rules]]
name = "docs"
label = "docs"
agent = "sim"
complexity = "simple"
profile = "writer"

[model_map.simple]
sim = "sim-small"

[model_map.complex]
sim = "sim-large"

[profiles.writer]
role = "technical writer"
skills = ["markdown"]
constraints = ["plain English"]
"#,
    )]);
    let ids = home.submit(
        "routing",
        r#"
tasks:
  - id: rule
    title: Document the greeting
    labels: [docs]
    steps:
      - name: write
        agent: auto
        prompt: |
          Write the docs.
          @write docs.md
          hello
          @end
  - id: label
    title: Rewrite the parser
    labels: [docs, "agent:sim", "complexity:complex"]
    steps:
      - name: write
        agent: auto
        prompt: |
          Rewrite it.
          @write parser.txt
          new parser
          @end
  - id: nothing
    title: Something else
    requires_approval: true
    steps:
      - name: write
        agent: auto
"#,
        repo.path(),
    );

    // `orch task route` decides without running anything.
    let rule = route_of(&home, ids["rule"]);
    assert_eq!(rule["decision"]["source"], "rule", "{rule}");
    assert_eq!(rule["decision"]["rule"], "docs");
    assert_eq!(rule["decision"]["agent"], "sim");
    assert_eq!(rule["decision"]["model"], "sim-small");
    assert_eq!(rule["decision"]["profile_name"], "writer");
    assert_eq!(rule["routed_steps"], serde_json::json!(["write"]));

    let label = route_of(&home, ids["label"]);
    assert_eq!(label["decision"]["source"], "label", "{label}");
    assert_eq!(label["decision"]["complexity"], "complex");
    assert_eq!(label["decision"]["model"], "sim-large");
    // The labels decided agent and complexity; the rule still gave the profile.
    assert_eq!(label["decision"]["profile_name"], "writer");

    let nothing = ids["nothing"];
    let fallback = route_of(&home, nothing);
    assert_eq!(fallback["decision"]["source"], "round_robin", "{fallback}");
    let expected = ["sim", "claude"][usize::try_from(nothing % 2).unwrap()];
    assert_eq!(fallback["decision"]["agent"], expected);
    let text = home.run(&["task", "route", &nothing.to_string()]);
    text.expect_code(0, "orch task route");
    assert!(
        text.stdout.contains("decided by: round robin"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout
            .contains("no router.agent is configured for LLM routing"),
        "{}",
        text.stdout
    );

    home.serve_until_idle(2);
    for key in ["rule", "label"] {
        let id = ids[key];
        assert_eq!(home.task_status(id), "done", "task {key}");
        let run = home.run_dir(id, 1);
        let route = read_json(&run.join("route.json"));
        let detail = home.task(id);
        assert_eq!(detail["route"], route, "orch task get shows route.json");
        let prompt = read_text(&run.join("steps/write/prompt.md"));
        assert!(prompt.contains("Role: technical writer"), "{prompt}");
        assert!(prompt.contains("- plain English"), "{prompt}");
    }
    assert_eq!(
        read_json(&home.run_dir(ids["label"], 1).join("route.json"))["model"],
        "sim-large"
    );
    let shown = home.run(&["task", "get", &ids["rule"].to_string()]);
    assert!(
        shown
            .stdout
            .contains("route:    agent sim (model sim-small, complexity simple) by rule"),
        "{}",
        shown.stdout
    );
    home.assert_consistent("after routed runs");
}

#[test]
fn a_router_agent_answer_routes_the_task_and_three_bad_answers_fall_back_to_round_robin() {
    let home = Home::new();
    let answering = Repo::new(&[(
        ".orch.toml",
        "[router]\nagent = \"sim\"\nagents = [\"sim\"]\n\n[model_map.simple]\nsim = \"sim-small\"\n",
    )]);
    // This project's router prompt makes sim answer badly, differently at each attempt.
    let failing = Repo::new(&[
        (
            ".orch.toml",
            "[router]\nagent = \"sim\"\nagents = [\"sim\"]\nmax_route_attempts = 3\n",
        ),
        (
            ".orch/prompts/route.j2",
            r#"Route task {{ task.id }} (attempt {{ attempt }} of {{ max_attempts }}).
{% if attempt == 1 %}
@answer I think sim should do it.
{% elif attempt == 2 %}
@answer {"agent": "gpt-9", "complexity": "simple"}
{% else %}
@answer {"agent": "sim", "complexity": "galactic"}
{% endif %}
"#,
        ),
    ]);
    let answered = home.submit(
        "answering",
        r#"
tasks:
  - id: rename
    title: Rename a variable
    body: |
      Rename x to y.
      @answer {"agent": "sim", "complexity": "simple", "profile": {"role": "janitor", "skills": ["sed"]}, "reason": "a rename is simple"}
      @write renamed.txt
      y
      @end
    steps:
      - name: edit
        agent: auto
"#,
        answering.path(),
    )["rename"];
    let fell_back = home.submit(
        "failing",
        r#"
tasks:
  - id: any
    title: Anything at all
    steps:
      - name: edit
        agent: auto
        prompt: |
          Do it.
          @write done.txt
          done
          @end
"#,
        failing.path(),
    )["any"];

    home.serve_until_idle(2);

    assert_eq!(home.task_status(answered), "done");
    let run = home.run_dir(answered, 1);
    let route = read_json(&run.join("route.json"));
    assert_eq!(route["source"], "llm", "{route}");
    assert_eq!(route["complexity"], "simple");
    assert_eq!(route["model"], "sim-small");
    assert_eq!(route["profile"]["role"], "janitor");
    assert_eq!(route["llm_attempts"].as_array().unwrap().len(), 1);
    assert!(route["why"][0]
        .as_str()
        .unwrap()
        .contains("from router agent `sim` (attempt 1): a rename is simple"));
    let prompt = read_text(&run.join("steps/edit/prompt.md"));
    assert!(prompt.contains("Role: janitor"), "{prompt}");
    // The router's session is in the bundle and the manifest.
    assert!(read_text(&run.join("route/events.jsonl")).contains("\"type\":\"result\""));
    let manifest = read_json(&run.join("manifest.json"));
    assert!(
        manifest["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["step"] == "route" && e["events_path"] == "route/events.jsonl"),
        "{manifest}"
    );

    assert_eq!(home.task_status(fell_back), "done");
    let route = read_json(&home.run_dir(fell_back, 1).join("route.json"));
    assert_eq!(route["source"], "round_robin", "{route}");
    assert_eq!(route["agent"], "sim");
    let attempts = route["llm_attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 3);
    let errors: Vec<&str> = attempts
        .iter()
        .map(|a| a["error"].as_str().unwrap())
        .collect();
    assert!(errors[0].contains("no JSON object"), "{errors:?}");
    assert!(
        errors[1].contains("agent `gpt-9`, which is not one of sim"),
        "{errors:?}"
    );
    assert!(
        errors[2].contains("unknown complexity `galactic`"),
        "{errors:?}"
    );
    assert!(attempts[2]["prompt"]
        .as_str()
        .unwrap()
        .contains("(attempt 3 of 3)"));

    let shown = home.run(&["task", "route", &fell_back.to_string()]);
    shown.expect_code(0, "orch task route");
    for expected in [
        "decided by: round robin",
        "router agent `sim` gave no valid answer in 3 attempt(s)",
        "router attempt 2: refused: the answer chose agent `gpt-9`",
    ] {
        assert!(
            shown.stdout.contains(expected),
            "{expected}\n{}",
            shown.stdout
        );
    }
    home.assert_consistent("after LLM routing");
}

const GREETING_WORKFLOW: &str = r#"
tasks:
  - id: greet
    title: Write the greeting
    steps:
      - name: write
        agent: sim
        prompt: |
          Write the greeting.
          @write greeting.txt
          hello
          @end
"#;

#[test]
fn a_rejecting_review_requeues_the_task_with_its_reasons_and_the_next_round_is_approved() {
    let home = Home::new();
    let repo = Repo::new(&[
        (
            ".orch.toml",
            "[review]\nagent = \"sim\"\nmax_review_rounds = 3\n",
        ),
        (
            ".orch/prompts/review.j2",
            r#"Review round {{ round }} of task {{ task.id }}.
The change:
{{ diff }}
{% if round == 1 %}
@answer {"verdict": "reject", "reasons": ["the greeting must end with an exclamation mark"]}
{% else %}
@answer {"verdict": "approve", "reasons": ["the earlier point is addressed"]}
{% endif %}
"#,
        ),
    ]);
    let id = home.submit("review", GREETING_WORKFLOW, repo.path())["greet"];
    home.serve_until_idle(1);

    assert_eq!(home.task_status(id), "done");
    let detail = home.task(id);
    assert_eq!(detail["runs"].as_array().unwrap().len(), 2, "{detail}");
    let requeues = task_events(&detail, "requeue");
    assert_eq!(requeues.len(), 1, "{detail}");
    assert!(requeues[0]["reason"]
        .as_str()
        .unwrap()
        .contains("the review rejected the work (round 1 of 3): the greeting must end with an exclamation mark"));
    // The requeue gives the attempt back: the task used one attempt in all.
    assert_eq!(int(&detail["task"], "attempts_used"), 1);

    let first = read_json(&home.run_dir(id, 1).join("review.json"));
    assert_eq!(first["verdict"], "reject", "{first}");
    assert_eq!(first["round"], 1);
    // The reviewer saw the change.
    assert!(first["attempts"][0]["prompt"]
        .as_str()
        .unwrap()
        .contains("+hello"));
    let first_result = read_json(&home.run_dir(id, 1).join("result.json"));
    assert_eq!(first_result["review"]["verdict"], "reject");

    let second_prompt = read_text(&home.run_dir(id, 2).join("steps/write/prompt.md"));
    assert!(
        second_prompt.contains("## Review feedback")
            && second_prompt.contains("- the greeting must end with an exclamation mark"),
        "{second_prompt}"
    );
    let second = read_json(&home.run_dir(id, 2).join("review.json"));
    assert_eq!(second["verdict"], "approve", "{second}");
    assert_eq!(second["round"], 2);
    assert!(second["attempts"][0]["prompt"]
        .as_str()
        .unwrap()
        .contains("Review round 2 of task"));
    assert_eq!(detail["review"], second);
    assert_eq!(detail["result"]["review"]["verdict"], "approve");
    home.assert_consistent("after a rejected and an approved review");
}

#[test]
fn a_review_that_keeps_rejecting_ends_in_needs_review_after_max_review_rounds() {
    let home = Home::new();
    let repo = Repo::new(&[
        (
            ".orch.toml",
            "[review]\nagent = \"sim\"\nmax_review_rounds = 2\n",
        ),
        (
            ".orch/prompts/review.j2",
            "@answer {\"verdict\": \"reject\", \"reasons\": [\"round {{ round }}: not good enough\"]}\n",
        ),
    ]);
    let id = home.submit("review", GREETING_WORKFLOW, repo.path())["greet"];
    home.serve_until_idle(1);

    assert_eq!(home.task_status(id), "needs_review");
    let detail = home.task(id);
    assert_eq!(detail["runs"].as_array().unwrap().len(), 2, "{detail}");
    let reason = detail["task"]["status_reason"].as_str().unwrap();
    assert!(
        reason.contains(
            "the review rejected the work in its last round 2 of 2: round 2: not good enough"
        ),
        "{reason}"
    );
    let last = read_json(&home.run_dir(id, 2).join("review.json"));
    assert_eq!(last["escalated"], true);
    home.assert_consistent("after a review escalation");
}
