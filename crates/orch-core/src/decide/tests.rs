//! Table-driven tests of the decisions: each case renders its plan (or refusal) as lines and
//! compares them with an `expect-test` snapshot.

use std::fmt::Write as _;

use expect_test::{expect, Expect};

use super::*;
use crate::plan::{DependencyFacts, DependentFacts, Effect, TaskFacts};
use crate::retry::RetryPolicy;

const NOW: Timestamp = Timestamp(1_000_000);

fn task(status: Status, attempts_used: u32, max_attempts: u32) -> TaskFacts {
    TaskFacts {
        id: TaskId(7),
        status,
        attempts_used,
        max_attempts,
        approved: false,
        requires_approval: false,
        retry: RetryPolicy::default(),
        active_run: None,
        children: Vec::new(),
    }
}

fn dep(id: i64, status: Status) -> DependencyFacts {
    DependencyFacts {
        id: TaskId(id),
        name: format!("d{id}"),
        status,
    }
}

fn render(result: Result<Plan, Refusal>) -> String {
    match result {
        Err(refusal) => format!("refused: {refusal}\n"),
        Ok(plan) => {
            let mut out = format!("status {}\n", plan.status);
            out.push_str(&render_effects(&plan.effects));
            out
        }
    }
}

fn render_effects(effects: &[Effect]) -> String {
    let mut out = String::new();
    for effect in effects {
        let line = match effect {
            Effect::Move(m) => format!(
                "move {} {} --{}--> {}{}{}{}",
                m.task,
                m.from,
                m.kind,
                m.to,
                m.reason
                    .as_ref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default(),
                m.not_before
                    .map(|t| format!(" not_before +{}ms", t.0 - NOW.0))
                    .unwrap_or_default(),
                m.run.map(|r| format!(" run {r}")).unwrap_or_default(),
            ),
            other => format!("{other:?}"),
        };
        let _ = writeln!(out, "{line}");
    }
    out
}

fn check(result: Result<Plan, Refusal>, expected: Expect) {
    expected.assert_eq(&render(result));
}

#[test]
fn completion_outcomes_by_attempts_left() {
    let mut out = String::new();
    for outcome in [
        Outcome::Succeeded,
        Outcome::Failed,
        Outcome::FailedPermanently,
        Outcome::NeedsReview,
    ] {
        for (used, max) in [(1, 3), (3, 3)] {
            let plan = complete(
                &task(Status::Running, used, max),
                RunId(9),
                outcome,
                Some("why"),
                NOW,
                0.5,
            );
            let _ = write!(out, "{outcome:?} attempt {used}/{max}: {}", render(plan));
        }
    }
    expect![[r#"
        Succeeded attempt 1/3: status done
        move 7 running --complete--> done (why) run 9
        AnswerReplies { task: TaskId(7), run: RunId(9) }
        SettleDependents { task: TaskId(7) }
        Succeeded attempt 3/3: status done
        move 7 running --complete--> done (why) run 9
        AnswerReplies { task: TaskId(7), run: RunId(9) }
        SettleDependents { task: TaskId(7) }
        Failed attempt 1/3: status retry_wait
        move 7 running --fail--> retry_wait (why) not_before +11000ms run 9
        SettleDependents { task: TaskId(7) }
        Failed attempt 3/3: status failed
        move 7 running --fail--> failed (why) run 9
        SettleDependents { task: TaskId(7) }
        FailedPermanently attempt 1/3: status failed
        move 7 running --fail--> failed (why) run 9
        SettleDependents { task: TaskId(7) }
        FailedPermanently attempt 3/3: status failed
        move 7 running --fail--> failed (why) run 9
        SettleDependents { task: TaskId(7) }
        NeedsReview attempt 1/3: status needs_review
        move 7 running --escalate--> needs_review (why) run 9
        SettleDependents { task: TaskId(7) }
        NeedsReview attempt 3/3: status needs_review
        move 7 running --escalate--> needs_review (why) run 9
        SettleDependents { task: TaskId(7) }
    "#]]
    .assert_eq(&out);
}

#[test]
fn a_completion_of_a_task_that_is_not_running_is_refused_by_the_table() {
    check(
        complete(
            &task(Status::Cancelled, 1, 3),
            RunId(9),
            Outcome::Succeeded,
            None,
            NOW,
            0.0,
        ),
        expect![[r#"
            refused: task 7: a task that is cancelled cannot `complete` to done (`complete` applies only to tasks that are running)
        "#]],
    );
}

#[test]
fn a_lost_run_retries_until_attempts_run_out_then_needs_review() {
    let mut out = String::new();
    for (used, max) in [(1, 3), (3, 3)] {
        let plan = lose(
            &task(Status::Running, used, max),
            RunId(4),
            "its lease expired",
            NOW,
            0.0,
        );
        out.push_str(&render(plan));
    }
    expect![[r#"
        status retry_wait
        move 7 running --lose--> retry_wait (run 4 was lost: its lease expired) not_before +10000ms run 4
        SettleDependents { task: TaskId(7) }
        status needs_review
        move 7 running --lose--> needs_review (run 4 was lost (its lease expired) on attempt 3 of 3; no attempts are left) run 4
        SettleDependents { task: TaskId(7) }
    "#]]
    .assert_eq(&out);
}

#[test]
fn a_requeue_gives_the_attempt_back() {
    check(
        requeue(
            &task(Status::Running, 2, 3),
            RunId(4),
            Duration::from_secs(5),
            Some("rate limited"),
            NOW,
        ),
        expect![[r#"
            status retry_wait
            SetAttempts { task: TaskId(7), attempts_used: 1 }
            move 7 running --requeue--> retry_wait (rate limited) not_before +5000ms run 4
        "#]],
    );
}

#[test]
fn cancel_applies_to_unfinished_tasks_and_ends_the_active_run() {
    let mut out = String::new();
    for status in [
        Status::Running,
        Status::Queued,
        Status::Done,
        Status::Failed,
    ] {
        let mut facts = task(status, 1, 3);
        if status == Status::Running {
            facts.active_run = Some(RunId(3));
        }
        let _ = write!(out, "{status}: {}", render(cancel(&facts, Some("stop"))));
    }
    expect![[r#"
        running: status cancelled
        EndRun { run: RunId(3), state: Cancelled, outcome: "stop" }
        move 7 running --cancel--> cancelled (stop) run 3
        SettleDependents { task: TaskId(7) }
        queued: status cancelled
        move 7 queued --cancel--> cancelled (stop)
        SettleDependents { task: TaskId(7) }
        done: refused: task 7 is done: only tasks that have not finished can be cancelled
        failed: refused: task 7 is failed: only tasks that have not finished can be cancelled
    "#]]
    .assert_eq(&out);
}

#[test]
fn retry_eligibility_and_where_a_retried_task_goes() {
    let mut out = String::new();
    let cases: Vec<(Status, Vec<DependencyFacts>, Option<Duration>, bool)> = vec![
        (Status::Failed, vec![], None, false),
        (Status::Failed, vec![], Some(Duration::from_secs(30)), false),
        (
            Status::Cancelled,
            vec![dep(1, Status::Failed)],
            Some(Duration::from_secs(30)),
            false,
        ),
        (
            Status::NeedsReview,
            vec![dep(1, Status::Running)],
            None,
            false,
        ),
        (Status::Failed, vec![], None, true),
        (Status::Done, vec![], None, false),
        (Status::Blocked, vec![], None, false),
        (Status::RetryWait, vec![], None, false),
        (Status::Running, vec![], None, false),
    ];
    for (status, deps, delay, needs_approval) in cases {
        let mut facts = task(status, 3, 3);
        facts.requires_approval = needs_approval;
        let _ = write!(
            out,
            "{status} deps={} delay={delay:?} approval={needs_approval}: {}",
            deps.len(),
            render(retry(&facts, &deps, delay, NOW))
        );
    }
    expect![[r#"
        failed deps=0 delay=None approval=false: status queued
        SetAttempts { task: TaskId(7), attempts_used: 0 }
        move 7 failed --retry--> queued
        SettleDependents { task: TaskId(7) }
        failed deps=0 delay=Some(30s) approval=false: status retry_wait
        SetAttempts { task: TaskId(7), attempts_used: 0 }
        move 7 failed --retry--> retry_wait not_before +30000ms
        SettleDependents { task: TaskId(7) }
        cancelled deps=1 delay=Some(30s) approval=false: status blocked
        SetAttempts { task: TaskId(7), attempts_used: 0 }
        move 7 cancelled --retry--> blocked (dependency 1 (`d1`) is failed)
        SettleDependents { task: TaskId(7) }
        needs_review deps=1 delay=None approval=false: status waiting
        SetAttempts { task: TaskId(7), attempts_used: 0 }
        move 7 needs_review --retry--> waiting
        SettleDependents { task: TaskId(7) }
        failed deps=0 delay=None approval=true: status awaiting_approval
        SetAttempts { task: TaskId(7), attempts_used: 0 }
        move 7 failed --retry--> queued
        move 7 queued --request_approval--> awaiting_approval (waits for `orch task approve`)
        SettleDependents { task: TaskId(7) }
        done deps=0 delay=None approval=false: refused: task 7 is done: cannot retry: it is done
        blocked deps=0 delay=None approval=false: refused: task 7 is blocked: cannot retry: it is blocked by a dependency; retry that dependency instead
        retry_wait deps=0 delay=None approval=false: refused: task 7 is retry_wait: cannot retry: it already waits for its next attempt
        running deps=0 delay=None approval=false: refused: task 7 is running: cannot retry: it has not finished; only failed, needs_review or cancelled tasks can be retried
    "#]]
    .assert_eq(&out);
}

#[test]
fn unblock_waives_only_the_blocking_dependencies() {
    let mut out = String::new();
    let cases = vec![
        (
            Status::Blocked,
            vec![dep(1, Status::Failed), dep(2, Status::Done)],
        ),
        (
            Status::Blocked,
            vec![
                dep(1, Status::Cancelled),
                dep(2, Status::Running),
                dep(3, Status::Blocked),
            ],
        ),
        (Status::Blocked, vec![]),
        (Status::Waiting, vec![dep(1, Status::Running)]),
    ];
    for (status, deps) in cases {
        let _ = write!(
            out,
            "{status}: {}",
            render(unblock(&task(status, 0, 3), &deps))
        );
    }
    expect![[r#"
        blocked: status queued
        Waive { task: TaskId(7), dependency: TaskId(1) }
        move 7 blocked --unblock--> queued (unblocked by hand; going ahead without dependencies 1)
        SettleDependents { task: TaskId(7) }
        blocked: status waiting
        Waive { task: TaskId(7), dependency: TaskId(1) }
        Waive { task: TaskId(7), dependency: TaskId(3) }
        move 7 blocked --unblock--> waiting (unblocked by hand; going ahead without dependencies 1, 3)
        SettleDependents { task: TaskId(7) }
        blocked: status queued
        move 7 blocked --unblock--> queued
        SettleDependents { task: TaskId(7) }
        waiting: refused: task 7 is waiting: only blocked tasks can be unblocked
    "#]]
    .assert_eq(&out);
}

#[test]
fn approve_now_ahead_of_time_or_not_at_all() {
    let mut out = String::new();
    for (status, requires, approved) in [
        (Status::AwaitingApproval, true, false),
        (Status::Waiting, true, false),
        (Status::Waiting, true, true),
        (Status::Queued, false, false),
        (Status::Running, true, false),
        (Status::Done, true, false),
    ] {
        let mut facts = task(status, 0, 3);
        facts.requires_approval = requires;
        facts.approved = approved;
        let _ = write!(
            out,
            "{status} requires={requires} approved={approved}: {}",
            render(approve(&facts))
        );
    }
    expect![[r#"
        awaiting_approval requires=true approved=false: status queued
        Approve { task: TaskId(7) }
        move 7 awaiting_approval --approve--> queued
        waiting requires=true approved=false: status waiting
        Approve { task: TaskId(7) }
        waiting requires=true approved=true: refused: task 7 is waiting: it is not waiting for approval
        queued requires=false approved=false: refused: task 7 is queued: it is not waiting for approval
        running requires=true approved=false: refused: task 7 is running: it is not waiting for approval
        done requires=true approved=false: refused: task 7 is done: it is not waiting for approval
    "#]]
    .assert_eq(&out);
}

#[test]
fn reply_needs_a_finished_task_and_a_session_and_joins_a_pending_reply() {
    let session = || {
        Some(AgentSession {
            agent: "sim".into(),
            step: "agent".into(),
            session_id: "s-1".into(),
        })
    };
    let mut out = String::new();
    for (status, session, pending) in [
        (Status::Done, session(), None),
        (Status::Failed, session(), Some(5)),
        (Status::Done, None, None),
        (Status::Running, session(), None),
    ] {
        let has_session = session.is_some();
        let _ = write!(
            out,
            "{status} session={has_session} pending={pending:?}: {}",
            render(reply(
                &task(status, 2, 3),
                "and the tests?",
                session,
                pending
            ))
        );
    }
    expect![[r#"
        done session=true pending=None: status queued
        InsertReply { task: TaskId(7), message: "and the tests?", session: AgentSession { agent: "sim", step: "agent", session_id: "s-1" } }
        SetAttempts { task: TaskId(7), attempts_used: 0 }
        move 7 done --reply--> queued (reply: and the tests?)
        failed session=true pending=Some(5): status queued
        AppendReply { reply: 5, message: "and the tests?" }
        SetAttempts { task: TaskId(7), attempts_used: 0 }
        move 7 failed --reply--> queued (reply: and the tests?)
        done session=false pending=None: refused: task 7 is done: cannot reply: no agent session of this task was recorded, so there is nothing to resume; use `orch task retry` to run it again
        running session=true pending=None: refused: task 7 is running: cannot reply: the task has not finished; reply once it is done, failed, needs_review or cancelled
    "#]]
    .assert_eq(&out);
}

#[test]
fn a_new_task_starts_where_its_dependencies_put_it() {
    let mut out = String::new();
    for (deps, requires) in [
        (vec![], false),
        (vec![], true),
        (vec![dep(1, Status::Queued)], true),
        (
            vec![dep(1, Status::Done), dep(2, Status::NeedsReview)],
            false,
        ),
    ] {
        let mut facts = task(Status::Waiting, 0, 3);
        facts.requires_approval = requires;
        let _ = write!(
            out,
            "deps={} approval={requires}: {}",
            deps.len(),
            render(create(&facts, &deps))
        );
    }
    expect![[r#"
        deps=0 approval=false: status queued
        Create { task: TaskId(7), to: Queued, reason: None }
        SettleDependents { task: TaskId(7) }
        deps=0 approval=true: status awaiting_approval
        Create { task: TaskId(7), to: Queued, reason: None }
        move 7 queued --request_approval--> awaiting_approval (waits for `orch task approve`)
        SettleDependents { task: TaskId(7) }
        deps=1 approval=true: status waiting
        Create { task: TaskId(7), to: Waiting, reason: None }
        SettleDependents { task: TaskId(7) }
        deps=2 approval=false: status blocked
        Create { task: TaskId(7), to: Blocked, reason: Some("dependency 2 (`d2`) is needs_review") }
        SettleDependents { task: TaskId(7) }
    "#]]
    .assert_eq(&out);
}

#[test]
fn dependents_move_to_where_their_dependencies_put_them() {
    let mut out = String::new();
    let cases = vec![
        (Status::Waiting, vec![dep(1, Status::Done)], false),
        (Status::Waiting, vec![dep(1, Status::Done)], true),
        (Status::Waiting, vec![dep(1, Status::Failed)], false),
        (Status::Blocked, vec![dep(1, Status::Running)], false),
        (
            Status::Blocked,
            vec![dep(1, Status::Done), dep(2, Status::Cancelled)],
            false,
        ),
        (Status::Waiting, vec![dep(1, Status::Running)], false),
        (Status::Queued, vec![dep(1, Status::Failed)], false),
    ];
    for (status, deps, requires) in cases {
        let mut facts = task(status, 0, 3);
        facts.requires_approval = requires;
        let effects = settle_dependent(&DependentFacts {
            task: facts,
            dependencies: deps.clone(),
        });
        let rendered = match effects {
            Ok(effects) => render_effects(&effects),
            Err(e) => format!("refused: {e}\n"),
        };
        let statuses: Vec<&str> = deps.iter().map(|d| d.status.as_str()).collect();
        let _ = write!(
            out,
            "{status} deps={statuses:?} approval={requires}:\n{rendered}"
        );
    }
    expect![[r#"
        waiting deps=["done"] approval=false:
        move 7 waiting --promote--> queued
        waiting deps=["done"] approval=true:
        move 7 waiting --promote--> queued
        move 7 queued --request_approval--> awaiting_approval (waits for `orch task approve`)
        waiting deps=["failed"] approval=false:
        move 7 waiting --block--> blocked (dependency 1 (`d1`) is failed)
        SettleDependents { task: TaskId(7) }
        blocked deps=["running"] approval=false:
        move 7 blocked --dep_wait--> waiting
        SettleDependents { task: TaskId(7) }
        blocked deps=["done", "cancelled"] approval=false:
        SetReason { task: TaskId(7), reason: Some("dependency 2 (`d2`) is cancelled") }
        waiting deps=["running"] approval=false:
        queued deps=["failed"] approval=false:
    "#]]
    .assert_eq(&out);
}

#[test]
fn project_names_are_the_directory_name_made_unique() {
    let taken: BTreeSet<String> = ["app", "app-2", "lib"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let names: Vec<String> = ["/src/app", "/other/lib", "/x/new", "/", ""]
        .iter()
        .map(|p| project_name(p, &taken))
        .collect();
    expect![[r#"["app-3", "lib-2", "new", "project", "project"]"#]]
        .assert_eq(&format!("{names:?}"));
}

/// A tiny in-memory backend: the statuses and edges of a graph, to check `carry_out`'s walk.
struct Graph {
    statuses: std::collections::BTreeMap<i64, Status>,
    /// (task, dependency)
    edges: Vec<(i64, i64)>,
    log: Vec<String>,
}

impl PlanTarget for Graph {
    type Error = Refusal;
    fn apply(&mut self, effect: &Effect) -> Result<(), Refusal> {
        if let Effect::Move(m) = effect {
            assert_eq!(self.statuses[&m.task.0], m.from, "conditional update");
            self.statuses.insert(m.task.0, m.to);
            self.log.push(format!("{} {}->{}", m.task, m.from, m.to));
        }
        Ok(())
    }
    fn dependents(&mut self, task: TaskId) -> Result<Vec<TaskId>, Refusal> {
        Ok(self
            .edges
            .iter()
            .filter(|(_, d)| *d == task.0)
            .map(|(t, _)| TaskId(*t))
            .collect())
    }
    fn dependent(&mut self, id: TaskId) -> Result<DependentFacts, Refusal> {
        let mut facts = task(self.statuses[&id.0], 0, 3);
        facts.id = id;
        let dependencies = self
            .edges
            .iter()
            .filter(|(t, _)| *t == id.0)
            .map(|(_, d)| dep(*d, self.statuses[d]))
            .collect();
        Ok(DependentFacts {
            task: facts,
            dependencies,
        })
    }
}

#[test]
fn blocking_spreads_down_the_graph_and_a_retry_undoes_it() {
    // 1 <- 2 <- 3, and 4 needs 1 and 2.
    let mut graph = Graph {
        statuses: [
            (1, Status::Running),
            (2, Status::Waiting),
            (3, Status::Waiting),
            (4, Status::Waiting),
        ]
        .into(),
        edges: vec![(2, 1), (3, 2), (4, 1), (4, 2)],
        log: Vec::new(),
    };
    let mut facts = task(Status::Running, 3, 3);
    facts.id = TaskId(1);
    let failed = complete(&facts, RunId(1), Outcome::Failed, None, NOW, 0.0).unwrap();
    carry_out(&failed, &mut graph).unwrap();
    facts.status = Status::Failed;
    let retried = retry(&facts, &[], None, NOW).unwrap();
    carry_out(&retried, &mut graph).unwrap();
    expect![[r#"
        [
            "1 running->failed",
            "2 waiting->blocked",
            "4 waiting->blocked",
            "3 waiting->blocked",
            "1 failed->queued",
            "2 blocked->waiting",
            "4 blocked->waiting",
            "3 blocked->waiting",
        ]
    "#]]
    .assert_debug_eq(&graph.log);
}

fn parent(status: Status, children: &[Status]) -> TaskFacts {
    let mut facts = task(status, 1, 3);
    facts.children = children
        .iter()
        .enumerate()
        .map(|(i, s)| dep(20 + i64::try_from(i).unwrap(), *s))
        .collect();
    facts
}

#[test]
fn a_parent_rests_blocked_until_its_children_are_done_and_a_failed_child_needs_a_human() {
    use Status::*;
    let cases: &[(&str, Status, &[Status])] = &[
        ("queued parent gets a child", Queued, &[Queued]),
        (
            "awaiting approval gets a child",
            AwaitingApproval,
            &[Waiting],
        ),
        ("blocked, one of two done", Blocked, &[Done, Running]),
        ("blocked, all done", Blocked, &[Done, Done]),
        ("blocked, one failed", Blocked, &[Done, Failed]),
        ("waiting, one cancelled", Waiting, &[Cancelled]),
        ("running parent is left alone", Running, &[Queued]),
        ("done parent is left alone", Done, &[Failed]),
    ];
    let mut out = String::new();
    for (name, status, children) in cases {
        let effects = settle_dependent(&DependentFacts {
            task: parent(*status, children),
            dependencies: Vec::new(),
        });
        let _ = writeln!(out, "{name}:");
        match effects {
            Ok(effects) => out.push_str(&render_effects(&effects)),
            Err(e) => {
                let _ = writeln!(out, "refused: {e}");
            }
        }
    }
    expect![[r#"
        queued parent gets a child:
        move 7 queued --block--> blocked (waits for its children: 0 of 1 done)
        SettleDependents { task: TaskId(7) }
        awaiting approval gets a child:
        move 7 awaiting_approval --block--> blocked (waits for its children: 0 of 1 done)
        SettleDependents { task: TaskId(7) }
        blocked, one of two done:
        SetReason { task: TaskId(7), reason: Some("waits for its children: 1 of 2 done") }
        blocked, all done:
        move 7 blocked --promote--> queued
        SettleDependents { task: TaskId(7) }
        blocked, one failed:
        move 7 blocked --child_failed--> needs_review (child 21 (`d21`) is failed)
        SettleDependents { task: TaskId(7) }
        waiting, one cancelled:
        move 7 waiting --child_failed--> needs_review (child 20 (`d20`) is cancelled)
        SettleDependents { task: TaskId(7) }
        running parent is left alone:
        done parent is left alone:
    "#]]
    .assert_eq(&out);
}

#[test]
fn a_parent_run_that_succeeds_before_its_children_blocks_and_gives_the_attempt_back() {
    let mut out = String::new();
    for children in [
        &[Status::Queued][..],
        &[Status::Done, Status::NeedsReview][..],
        &[Status::Done][..],
    ] {
        let plan = complete(
            &parent(Status::Running, children),
            RunId(3),
            Outcome::Succeeded,
            None,
            NOW,
            0.0,
        );
        out.push_str(&render(plan));
    }
    let retried = retry(
        &parent(Status::NeedsReview, &[Status::Failed]),
        &[],
        None,
        NOW,
    );
    out.push_str(&render(retried));
    assert!(adopt(&parent(Status::Done, &[])).is_err());
    assert!(adopt(&parent(Status::Running, &[])).is_ok());
    expect![[r#"
        status blocked
        SetAttempts { task: TaskId(7), attempts_used: 0 }
        move 7 running --await_children--> blocked (waits for its children: 0 of 1 done) run 3
        SettleDependents { task: TaskId(7) }
        status needs_review
        move 7 running --escalate--> needs_review (child 21 (`d21`) is needs_review) run 3
        SettleDependents { task: TaskId(7) }
        status done
        move 7 running --complete--> done run 3
        AnswerReplies { task: TaskId(7), run: RunId(3) }
        SettleDependents { task: TaskId(7) }
        status blocked
        SetAttempts { task: TaskId(7), attempts_used: 0 }
        move 7 needs_review --retry--> blocked (child 20 (`d20`) is failed)
        SettleDependents { task: TaskId(7) }
    "#]]
    .assert_eq(&out);
}
