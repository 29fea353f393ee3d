//! The CLI side of issue 14's unique keys, parents, tool recipes and approvals: `task add
//! --key/--parent/--tool`, `task list --tree`, `task approve|reject --comment`.

use orch_app::ApprovalComment;
use orch_core::tools::ToolRecipe;
use orch_core::{TaskDraft, TaskId, TaskSpec};
use serde_json::{json, Value};

use crate::cli::TaskAddArgs;
use crate::UserError;

/// The actor of events a person causes from this CLI: `cli:<user>`, or `cli`.
pub fn cli_actor() -> String {
    match crate::config::user_name() {
        Some(user) => format!("cli:{user}"),
        None => "cli".to_owned(),
    }
}

/// The body of an approve or reject request: the comment and who decides.
pub fn approval_body(comment: Option<&ApprovalComment>) -> orch_api::ApprovalRequest {
    orch_api::ApprovalRequest {
        comment: comment.map(|c| c.as_str().to_owned()),
        actor: crate::config::user_name(),
    }
}

/// `--comment`, checked.
pub fn comment(raw: Option<&str>) -> anyhow::Result<Option<ApprovalComment>> {
    raw.map(|c| {
        ApprovalComment::parse(c, "--comment").map_err(|e| UserError::new(e.to_string()).into())
    })
    .transpose()
}

/// One `--tool`: `NAME` or `NAME<requirement>` (`git>=2.30`, `jq=1.7`, `node^18`).
pub fn parse_tool(raw: &str) -> anyhow::Result<ToolRecipe> {
    let raw = raw.trim();
    let split = raw
        .find(|c: char| "<>=^~ ".contains(c))
        .unwrap_or(raw.len());
    let (name, requirement) = raw.split_at(split);
    let requirement = requirement.trim();
    let recipe = ToolRecipe {
        name: name.to_owned(),
        version: (!requirement.is_empty()).then(|| requirement.to_owned()),
        sha256: None,
        env: std::collections::BTreeMap::new(),
        network: None,
    };
    recipe
        .validate()
        .map_err(|e| UserError::new(format!("--tool {raw}: {e}")))?;
    Ok(recipe)
}

fn tools(args: &TaskAddArgs) -> anyhow::Result<Vec<ToolRecipe>> {
    args.tools.iter().map(|t| parse_tool(t)).collect()
}

/// The flags' key and tools on a draft built from flags.
pub fn draft_with_flags(mut draft: TaskDraft, args: &TaskAddArgs) -> anyhow::Result<TaskDraft> {
    draft.unique_key = args.unique_key.clone();
    draft.tools = tools(args)?;
    draft.budget = budget(None, args)?;
    Ok(draft)
}

/// The budget of `--budget-tokens`/`--budget-usd` over `base` (a task file's), checked.
fn budget(
    base: Option<orch_core::TaskBudget>,
    args: &TaskAddArgs,
) -> anyhow::Result<Option<orch_core::TaskBudget>> {
    if args.budget_tokens.is_none() && args.budget_usd.is_none() {
        return Ok(base);
    }
    let mut budget = base.unwrap_or_default();
    if let Some(tokens) = args.budget_tokens {
        budget.tokens = Some(tokens);
    }
    if let Some(usd) = args.budget_usd {
        budget.cost_usd = Some(usd);
    }
    budget.check().map_err(|e| {
        UserError::new(format!(
            "--budget-usd: {e} (e.g. --budget-usd 2.5 for two and a half dollars)"
        ))
    })?;
    Ok(Some(budget))
}

/// The flags' key and tools over a task file's spec (flags win; tools add up).
pub fn apply_flags(spec: &mut TaskSpec, args: &TaskAddArgs) -> anyhow::Result<()> {
    if let Some(key) = &args.unique_key {
        orch_core::input::check_unique_key(key)
            .map_err(|e| UserError::new(format!("--key: {e}")))?;
        spec.unique_key = Some(key.clone());
    }
    for tool in tools(args)? {
        spec.tools.retain(|t| t.name != tool.name);
        spec.tools.push(tool);
    }
    orch_core::input::check_tools(&spec.tools)
        .map_err(|e| UserError::new(format!("--tool: {}", e.reason)))?;
    spec.budget = budget(spec.budget, args)?;
    Ok(())
}

/// Tasks (`TaskView` JSON) ordered as a tree, each title indented by its depth under its
/// parent.
pub fn as_tree(tasks: Vec<Value>) -> Vec<Value> {
    let rows: Vec<(TaskId, Option<TaskId>)> = tasks
        .iter()
        .map(|t| {
            (
                TaskId(t["id"].as_i64().unwrap_or_default()),
                t["parent"].as_i64().map(TaskId),
            )
        })
        .collect();
    orch_core::tree::tree_order(&rows)
        .into_iter()
        .map(|row| {
            let mut task = tasks[row.index].clone();
            if row.depth > 0 {
                let title = task["title"].as_str().unwrap_or_default().to_owned();
                task["title"] = json!(format!("{}└ {title}", "  ".repeat(row.depth - 1)));
            }
            task
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_flags_split_the_name_from_the_requirement() {
        let git = parse_tool("git>=2.30").unwrap();
        assert_eq!(
            (git.name.as_str(), git.version.as_deref()),
            ("git", Some(">=2.30"))
        );
        let jq = parse_tool("jq").unwrap();
        assert_eq!((jq.name.as_str(), jq.version), ("jq", None));
        assert!(parse_tool("/bin/sh").is_err());
        assert!(parse_tool("git>>2").is_err());
    }

    #[test]
    fn a_tree_indents_children_under_their_parent() {
        let tasks = vec![
            json!({"id": 3, "parent": 1, "title": "c2"}),
            json!({"id": 2, "parent": 1, "title": "c1"}),
            json!({"id": 1, "parent": null, "title": "p"}),
        ];
        let titles: Vec<String> = as_tree(tasks)
            .iter()
            .map(|t| t["title"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(titles, vec!["p", "└ c1", "└ c2"]);
    }
}
