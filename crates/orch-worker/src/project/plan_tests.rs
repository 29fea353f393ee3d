//! `max_plan_children`: set in the global `config.toml` only (a project whose files a task may
//! change must not raise its own cap), bounded, and handed to the plan check with the plan label
//! and the default agent.

use super::*;

fn load(global: &str, project: &str) -> Result<ProjectConfig, ProjectConfigError> {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(home.path().join("config.toml"), global).unwrap();
    std::fs::write(dir.path().join(".orch.toml"), project).unwrap();
    ProjectConfig::load_layers(Some(&home.path().join("config.toml")), dir.path(), &|_| {
        None
    })
}

#[test]
fn max_plan_children_comes_from_the_global_file_only_and_is_bounded() {
    let config = load(
        "max_plan_children = 5\n",
        "default_agent = \"sim\"\n[forge]\nplan_label = \"split\"\n",
    )
    .unwrap();
    let label = config.plan_label();
    let rules = config.plan_rules(&label);
    assert_eq!(rules.max_children.get(), 5);
    assert_eq!(rules.plan_label, "split");
    assert_eq!(rules.default_agent, Some("sim"));
    let defaults = load("", "").unwrap();
    assert_eq!(
        defaults.max_plan_children.get(),
        orch_core::planner::MAX_PLAN_ITEMS
    );
    assert_eq!(defaults.plan_label(), "plan");

    let error = load("", "max_plan_children = 200\n").unwrap_err();
    assert!(
        error
            .message
            .contains("`max_plan_children` may only be set in the global config.toml"),
        "{error}"
    );
    for bad in ["0", "201", "-3", "\"many\""] {
        let error = load(&format!("max_plan_children = {bad}\n"), "").unwrap_err();
        assert!(
            error.message.contains("max_plan_children"),
            "{bad}: {error}"
        );
    }
}
