//! Hostile plans (a planner is an agent; its plan file is untrusted input, whichever worker
//! reads it): each refused by [`plan_children`] with a reason that says what is wrong.

use super::*;

fn rules(max: u64) -> PlanRules<'static> {
    PlanRules {
        plan_label: "plan",
        default_agent: Some("sim"),
        max_children: MaxPlanChildren::new(max).unwrap(),
    }
}

fn refused(bytes: &[u8], max: u64) -> String {
    match plan_children(TaskId(3), &["plan".to_owned()], rules(max), bytes) {
        Ok((plan, _)) => panic!("a hostile plan was accepted: {plan:?}"),
        Err(why) => why,
    }
}

fn items(count: usize) -> String {
    let items: Vec<String> = (0..count)
        .map(|i| format!(r#"{{"title": "part {i}"}}"#))
        .collect();
    format!(r#"{{"tasks": [{}]}}"#, items.join(","))
}

#[test]
fn thousands_of_children_are_refused_at_the_configured_cap() {
    let why = refused(items(5000).as_bytes(), 20);
    assert!(
        why.contains("5000 tasks") && why.contains("at most 20 (max_plan_children)"),
        "{why}"
    );
    // A lower configured cap holds too; at the cap the plan is fine.
    let why = refused(items(4).as_bytes(), 3);
    assert!(why.contains("at most 3"), "{why}");
    let (_, kids) =
        plan_children(TaskId(3), &[], rules(3), items(3).as_bytes()).expect("three is allowed");
    assert_eq!(kids.len(), 3);
}

#[test]
fn the_cap_itself_is_bounded() {
    assert!(MaxPlanChildren::new(0).unwrap_err().contains("give 1 to"));
    let too_many = (MAX_PLAN_ITEMS_CEILING + 1) as u64;
    assert!(MaxPlanChildren::new(too_many).is_err());
    assert!(MaxPlanChildren::new(u64::MAX).is_err());
    assert_eq!(
        MaxPlanChildren::new(MAX_PLAN_ITEMS_CEILING as u64)
            .unwrap()
            .get(),
        MAX_PLAN_ITEMS_CEILING
    );
    assert_eq!(MaxPlanChildren::default().get(), MAX_PLAN_ITEMS);
    let parsed: MaxPlanChildren = serde_json::from_str("7").unwrap();
    assert_eq!(parsed.get(), 7);
    assert!(serde_json::from_str::<MaxPlanChildren>("100000").is_err());
    assert!(serde_json::from_str::<MaxPlanChildren>("-1").is_err());
}

#[test]
fn a_huge_plan_file_is_refused_before_it_is_parsed() {
    // Many megabytes of otherwise valid JSON: refused by size, not parsed.
    let mut huge = br#"{"tasks": [{"title": "t", "body": ""#.to_vec();
    huge.extend(std::iter::repeat_n(b'x', 8 * 1024 * 1024));
    huge.extend(br#""}]}"#);
    let why = refused(&huge, 20);
    assert!(why.contains("bytes; keep it under"), "{why}");
}

#[test]
fn bad_json_is_refused_saying_how_to_write_a_plan() {
    let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    for bytes in [
        b"{\"tasks\": [".as_slice(),
        b"{\"tasks\": {\"title\": \"x\"}}",
        b"[]",
        b"null",
        nested.as_bytes(),
        b"{\"tasks\": [{\"title\": \"a\"}], \"tasks\": []}",
    ] {
        let why = refused(bytes, 20);
        assert!(
            why.contains("write JSON like"),
            "{:?}: {why}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(40)])
        );
    }
}

#[test]
fn children_claiming_another_project_parent_agent_or_steps_are_refused() {
    for (key, value) in [
        ("project", "2"),
        ("project_dir", "\"/etc\""),
        ("parent", "1"),
        ("parent_in_batch", "0"),
        ("needs", "[1]"),
        ("key", "\"plan-item-0\""),
        ("agent", "\"claude\""),
        ("steps", "[]"),
        ("labels", "[\"deploy\"]"),
    ] {
        let item = format!(r#"{{"tasks": [{{"title": "t", "{key}": {value}}}]}}"#);
        let why = refused(item.as_bytes(), 20);
        assert!(
            why.contains(&format!("unknown field `{key}`")),
            "{key}: {why}"
        );
        let top = format!(r#"{{"tasks": [{{"title": "t"}}], "{key}": {value}}}"#);
        let why = refused(top.as_bytes(), 20);
        assert!(
            why.contains(&format!("unknown field `{key}`")),
            "{key}: {why}"
        );
    }
}

#[test]
fn an_accepted_plan_makes_children_of_the_planning_task_only() {
    let labels = vec!["orch".to_owned(), "plan".to_owned()];
    let (plan, kids) = plan_children(
        TaskId(9),
        &labels,
        rules(20),
        br#"{"tasks": [{"title": "One"}, {"title": "Two", "body": "b"}]}"#,
    )
    .unwrap();
    assert_eq!(plan.tasks.len(), 2);
    for (index, kid) in kids.iter().enumerate() {
        assert_eq!(kid.parent, Some(TaskId(9)));
        assert_eq!(kid.parent_in_batch, None);
        assert!(kid.needs_existing.is_empty() && kid.needs_in_batch.is_empty());
        assert_eq!(kid.spec.key.as_deref(), Some(item_key(index).as_str()));
        assert_eq!(kid.spec.labels, vec!["orch".to_owned()]);
        let StepAction::Agent { agent, .. } = &kid.spec.steps[0].action else {
            panic!("an agent step")
        };
        assert_eq!(agent, "sim", "the project's default agent");
    }
    // `auto` (or no default) leaves the children routed.
    let routed = PlanRules {
        default_agent: Some(AUTO_AGENT),
        ..rules(20)
    };
    let (_, kids) =
        plan_children(TaskId(9), &[], routed, br#"{"tasks": [{"title": "One"}]}"#).unwrap();
    let StepAction::Agent { agent, .. } = &kids[0].spec.steps[0].action else {
        panic!("an agent step")
    };
    assert_eq!(agent, AUTO_AGENT);
}
