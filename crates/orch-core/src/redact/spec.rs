//! Secrets in what a submitter wrote: the known token formats are redacted from a task spec
//! before it is stored, and each field where one was found is named, so the submitter learns
//! that secrets belong in `secret_env`, not in the task.

use std::collections::BTreeMap;

use super::Redactor;
use crate::model::{StepAction, TaskSpec, TaskTitle};

/// One field of a spec that held a secret, now redacted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redaction {
    /// Where: `title`, `body`, `labels[0]`, `steps.build.commands[0].argv[2]`,
    /// `steps.build.commands[0].env.TOKEN`, `steps.fix.prompt`, `workflow source`.
    pub field: String,
    /// What it looked like (`github_token`, `aws_access_key`, ...), in order.
    pub kinds: Vec<String>,
}

impl Redaction {
    /// The warning shown to the submitter.
    pub fn warning(&self) -> String {
        format!(
            "{} looked like a secret ({}) and was redacted before the task was stored; pass \
             secrets to tasks through `secret_env` in .orch.toml instead",
            self.field,
            self.kinds.join(", ")
        )
    }
}

/// The redactor for specs: the known token formats only (no literal values: the submitter's
/// environment is not ours to know).
pub fn spec_redactor() -> Redactor {
    Redactor::new(&[])
}

/// Redact every known token format from the free text of `spec` (title, body, labels, each
/// step's argv, env values, cwd, prompt, model and profile), in place. Returns the fields that
/// held one; empty when nothing was found (and then nothing was changed).
pub fn redact_spec(spec: &mut TaskSpec, redactor: &Redactor) -> Vec<Redaction> {
    let mut found = Vec::new();
    let mut title = spec.title.as_str().to_owned();
    if redact_field(redactor, "title", &mut title, &mut found) {
        // A marker keeps the title on one line; only its length could now be refused.
        spec.title = TaskTitle::parse(title).unwrap_or_else(|_| {
            TaskTitle::parse("[REDACTED] (the title held a secret)")
                .expect("a constant title is valid")
        });
    }
    redact_field(redactor, "body", &mut spec.body, &mut found);
    for (index, label) in spec.labels.iter_mut().enumerate() {
        redact_field(redactor, &format!("labels[{index}]"), label, &mut found);
    }
    for step in &mut spec.steps {
        let at = format!("steps.{}", step.name);
        match &mut step.action {
            StepAction::Exec { commands } => {
                for (number, command) in commands.iter_mut().enumerate() {
                    let at = format!("{at}.commands[{number}]");
                    for (index, arg) in command.argv.iter_mut().enumerate() {
                        redact_field(redactor, &format!("{at}.argv[{index}]"), arg, &mut found);
                    }
                    for (name, value) in &mut command.env {
                        redact_field(redactor, &format!("{at}.env.{name}"), value, &mut found);
                    }
                    if let Some(cwd) = &mut command.cwd {
                        redact_field(redactor, &format!("{at}.cwd"), cwd, &mut found);
                    }
                }
            }
            StepAction::Agent {
                prompt,
                model,
                profile,
                ..
            } => {
                redact_field(redactor, &format!("{at}.prompt"), prompt, &mut found);
                for (name, value) in [("model", model), ("profile", profile)] {
                    if let Some(value) = value {
                        redact_field(redactor, &format!("{at}.{name}"), value, &mut found);
                    }
                }
            }
        }
    }
    found
}

/// Redact `text` in place; records and returns whether anything was found.
pub fn redact_field(
    redactor: &Redactor,
    field: &str,
    text: &mut String,
    found: &mut Vec<Redaction>,
) -> bool {
    let (redacted, counts): (String, BTreeMap<String, u64>) = redactor.redact_text(text);
    if counts.is_empty() {
        return false;
    }
    *text = redacted;
    found.push(Redaction {
        field: field.to_owned(),
        kinds: counts.into_keys().collect(),
    });
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Command, Step};
    use crate::RetryPolicy;

    fn github_token() -> String {
        format!("ghp_{}", "a1B2".repeat(9))
    }

    fn spec_with(argv: Vec<String>, body: String) -> TaskSpec {
        TaskSpec {
            key: None,
            title: TaskTitle::parse("deploy").unwrap(),
            body,
            labels: vec!["ok".to_owned()],
            priority: 0,
            steps: vec![Step {
                name: "build".to_owned(),
                action: StepAction::Exec {
                    commands: vec![Command {
                        argv,
                        env: BTreeMap::from([(
                            "KEY".to_owned(),
                            format!("AKIA{}", "Q".repeat(16)),
                        )]),
                        cwd: None,
                        timeout: None,
                    }],
                },
                timeout: None,
                network: true,
                plan: false,
            }],
            retry: RetryPolicy::default(),
            timeout: None,
            requires_approval: false,
            merge: None,
            start_from: crate::model::StartFrom::default(),
            unique_key: None,
            tools: Vec::new(),
            budget: None,
        }
    }

    #[test]
    fn a_token_in_argv_env_and_body_is_redacted_and_each_field_is_named() {
        let token = github_token();
        let mut spec = spec_with(
            vec!["curl".to_owned(), format!("--token={token}")],
            format!("use {token}"),
        );
        let found = redact_spec(&mut spec, &spec_redactor());
        let fields: Vec<&str> = found.iter().map(|r| r.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "body",
                "steps.build.commands[0].argv[1]",
                "steps.build.commands[0].env.KEY"
            ]
        );
        let stored = format!("{spec:?}");
        assert!(!stored.contains(&token), "{stored}");
        assert!(
            stored.contains("--token=[REDACTED:github_token]"),
            "{stored}"
        );
        assert!(found[0].warning().contains("secret_env"));
    }

    #[test]
    fn a_spec_without_secrets_is_left_unchanged() {
        let mut spec = spec_with(vec!["cargo".to_owned(), "test".to_owned()], "fix it".into());
        if let StepAction::Exec { commands } = &mut spec.steps[0].action {
            commands[0].env.clear();
        }
        let before = spec.clone();
        assert!(redact_spec(&mut spec, &spec_redactor()).is_empty());
        assert_eq!(spec, before);
    }
}
