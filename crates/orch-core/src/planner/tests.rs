use super::*;

fn title(text: &str) -> TaskTitle {
    TaskTitle::parse(text).unwrap()
}

#[test]
fn a_plan_file_is_read_with_its_items_in_order() {
    let plan = TaskPlan::parse(
        br#"{"tasks": [{"title": "Parse the config", "body": "Read it."}, {"title": "Docs"}]}"#,
        MaxPlanChildren::default(),
    )
    .unwrap();
    assert_eq!(
        plan.tasks,
        vec![
            PlanItem {
                title: "Parse the config".into(),
                body: "Read it.".into()
            },
            PlanItem {
                title: "Docs".into(),
                body: String::new()
            },
        ]
    );
}

#[test]
fn bad_plans_are_refused_saying_what_is_wrong() {
    let cases: &[(&[u8], &str)] = &[
        (b"", "the plan file is empty"),
        (b"not json", "the plan file is not a plan"),
        (br#"{"tasks": []}"#, "the plan has no tasks"),
        (br#"{"tasks": [{"title": ""}]}"#, "tasks[0].title"),
        (
            br#"{"tasks": [{"title": "a"}, {"title": "two\nlines"}]}"#,
            "tasks[1].title",
        ),
        (
            br#"{"tasks": [{"title": "a", "agent": "x"}]}"#,
            "unknown field `agent`",
        ),
        (br#"{"steps": []}"#, "unknown field `steps`"),
        (b"\xff\xfe", "not UTF-8"),
    ];
    for (bytes, expected) in cases {
        let error = TaskPlan::parse(bytes, MaxPlanChildren::default()).unwrap_err();
        assert!(
            error.contains(expected),
            "{:?}: `{error}` should say `{expected}`",
            String::from_utf8_lossy(bytes)
        );
    }
    let many: Vec<String> = (0..=MAX_PLAN_ITEMS)
        .map(|i| format!(r#"{{"title": "t{i}"}}"#))
        .collect();
    let text = format!(r#"{{"tasks": [{}]}}"#, many.join(","));
    assert!(TaskPlan::parse(text.as_bytes(), MaxPlanChildren::default())
        .unwrap_err()
        .contains("at most 20"));
    let long = format!(
        r#"{{"tasks": [{{"title": "t", "body": "{}"}}]}}"#,
        "x".repeat(MAX_BODY_CHARS + 1)
    );
    assert!(TaskPlan::parse(long.as_bytes(), MaxPlanChildren::default())
        .unwrap_err()
        .contains("tasks[0].body"));
    let huge = vec![b' '; MAX_PLAN_FILE_BYTES + 1];
    assert!(TaskPlan::parse(&huge, MaxPlanChildren::default())
        .unwrap_err()
        .contains("bytes"));
}

#[test]
fn a_planned_spec_has_the_planner_then_the_work_and_takes_the_default_agent() {
    let steps = planned_steps(&title("Ship the widget"), "All of it.");
    assert_eq!(steps.len(), 2);
    assert!(steps[0].plan && !steps[1].plan);
    assert_eq!(steps[0].name, PLAN_STEP);
    let StepAction::Agent { prompt, .. } = &steps[0].action else {
        panic!("the planner is an agent step")
    };
    assert!(prompt.contains(PLAN_FILE_VAR) && prompt.ends_with("Ship the widget\n\nAll of it."));
    let mut spec = TaskSpec::parse(TaskDraft {
        title: "Ship the widget".into(),
        ..TaskDraft::default()
    })
    .unwrap();
    assert!(!spec.apply_default_agent_to_plan("sim"), "not planned");
    spec.steps = steps;
    assert!(spec.is_routed_plan());
    assert!(spec.apply_default_agent_to_plan("sim"));
    assert!(spec
        .steps
        .iter()
        .all(|s| matches!(&s.action, StepAction::Agent { agent, .. } if agent == "sim")));
    assert!(!spec.is_routed_plan(), "routed no more");
}

#[test]
fn children_are_one_task_per_item_with_the_parent_and_the_item_key() {
    let plan = TaskPlan::parse(
        br#"{"tasks": [{"title": "One", "body": "do one"}, {"title": "Two"}]}"#,
        MaxPlanChildren::default(),
    )
    .unwrap();
    let labels = vec!["orch".to_owned(), "plan".to_owned()];
    let kids = children(TaskId(7), &labels, "plan", &plan).unwrap();
    assert_eq!(kids.len(), 2);
    for (index, kid) in kids.iter().enumerate() {
        assert_eq!(kid.parent, Some(TaskId(7)));
        assert_eq!(kid.spec.labels, vec!["orch".to_owned()], "no plan label");
        assert_eq!(item_index(&kid.spec), Some(index));
        assert_eq!(kid.spec.steps.len(), 1, "the implicit agent step");
        assert!(!kid.spec.steps[0].plan);
    }
    assert_eq!(kids[0].spec.title.as_str(), "One");
    assert_eq!(children_delivery(TaskId(7)), ("plan", "task-7".to_owned()));
}

#[test]
fn the_forge_ops_of_a_child_are_keyed_by_the_parent_and_the_item() {
    let op = child_issue_op(TaskId(3), 1, TaskId(9), "Two", "Body", vec!["orch".into()]);
    assert_eq!(op.key, "plan:task-3:item-1");
    let ForgeOp::CreateIssue { task, body, .. } = &op.op else {
        panic!("an issue")
    };
    assert_eq!(*task, TaskId(9));
    assert!(body.ends_with(&marker(TaskId(9))), "{body}");
    let link = sub_issue_op(TaskId(3), 1, 40, 41);
    assert_eq!(link.key, "sub-issue:task-3:item-1");
    assert_eq!(
        link.op,
        ForgeOp::AddSubIssue {
            parent: 40,
            child: 41
        }
    );
}

#[test]
fn only_a_task_with_the_plan_label_and_no_steps_of_its_own_is_planned() {
    let draft = |labels: &[&str]| {
        TaskSpec::parse(TaskDraft {
            title: "Ship".into(),
            body: "it".into(),
            labels: labels.iter().map(|l| (*l).to_owned()).collect(),
            ..TaskDraft::default()
        })
        .unwrap()
    };
    let mut plain = draft(&["orch"]);
    assert!(!plan_if_labelled(&mut plain, "plan"));
    assert_eq!(plain.steps.len(), 1);
    let mut planned = draft(&["orch", "plan"]);
    assert!(plan_if_labelled(&mut planned, "plan"));
    assert!(planned.is_routed_plan());
    assert!(!plan_if_labelled(&mut planned, "plan"), "planned once");
}
