//! The approval policy (`[approval]` in `config.toml` or a project's `.orch.toml`): tasks whose
//! labels or exec commands match a rule wait in `awaiting_approval` until a human approves
//! (`orch task approve ID --comment ..`) or rejects them (`orch task reject`). Patterns are
//! globs where `*` matches any run of characters and `?` one character; a command is matched
//! as its argv joined by single spaces.

use serde::Deserialize;

use crate::model::{StepAction, TaskSpec};

/// `[approval]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApprovalPolicy {
    /// Label patterns, such as `deploy:prod` or `deploy:*`.
    pub labels: Vec<String>,
    /// Command patterns, such as `kubectl apply*` or `terraform apply*`.
    pub commands: Vec<String>,
}

impl ApprovalPolicy {
    /// Both policies' rules: a layer may add rules, never take one away.
    #[must_use]
    pub fn union(mut self, other: ApprovalPolicy) -> ApprovalPolicy {
        for label in other.labels {
            if !self.labels.contains(&label) {
                self.labels.push(label);
            }
        }
        for command in other.commands {
            if !self.commands.contains(&command) {
                self.commands.push(command);
            }
        }
        self
    }

    /// Empty patterns are refused (they would match nothing and look like a rule).
    pub fn validate(&self) -> Result<(), String> {
        if self
            .labels
            .iter()
            .chain(&self.commands)
            .any(|p| p.trim().is_empty())
        {
            return Err(
                "[approval]: a pattern is empty; remove it or write one such as `deploy:*`".into(),
            );
        }
        Ok(())
    }

    /// Why `spec` needs approval under this policy (the first rule it matches), if it does.
    pub fn matches(&self, spec: &TaskSpec) -> Option<String> {
        for pattern in &self.labels {
            if let Some(label) = spec.labels.iter().find(|l| glob(pattern, l)) {
                return Some(format!(
                    "label `{label}` matches the approval rule `{pattern}`"
                ));
            }
        }
        for step in &spec.steps {
            let StepAction::Exec { commands } = &step.action else {
                continue;
            };
            for command in commands {
                let line = command.argv.join(" ");
                if let Some(pattern) = self.commands.iter().find(|p| glob(p, &line)) {
                    let shown: String = line.chars().take(80).collect();
                    return Some(format!(
                        "step `{}` runs `{shown}`, which matches the approval rule `{pattern}`",
                        step.name
                    ));
                }
            }
        }
        None
    }
}

/// Whether `text` matches `pattern` (`*` any run, `?` one character), case-sensitively.
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::{CommandDraft, StepDraft, TaskDraft};

    fn spec(labels: &[&str], argv: &[&str]) -> TaskSpec {
        TaskSpec::parse(TaskDraft {
            title: "t".into(),
            labels: labels.iter().map(|l| (*l).to_owned()).collect(),
            steps: vec![StepDraft {
                name: Some("deploy".into()),
                exec: Some(vec![CommandDraft {
                    argv: argv.iter().map(|a| (*a).to_owned()).collect(),
                    ..CommandDraft::default()
                }]),
                ..StepDraft::default()
            }],
            ..TaskDraft::default()
        })
        .unwrap()
    }

    #[test]
    fn globs_match_whole_texts() {
        assert!(glob("deploy:*", "deploy:prod"));
        assert!(glob("deploy:prod", "deploy:prod"));
        assert!(!glob("deploy:prod", "deploy:production"));
        assert!(glob("kubectl apply*", "kubectl apply -f x.yml"));
        assert!(!glob("kubectl apply*", "kubectl get pods"));
        assert!(glob("*apply*", "terraform apply"));
        assert!(glob("a?c", "abc"));
        assert!(!glob("", "x"));
    }

    #[test]
    fn a_label_or_a_command_rule_requires_approval_and_says_which() {
        let policy = ApprovalPolicy {
            labels: vec!["deploy:prod".into()],
            commands: vec!["kubectl apply*".into()],
        };
        assert_eq!(
            policy
                .matches(&spec(&["deploy:prod"], &["true"]))
                .as_deref(),
            Some("label `deploy:prod` matches the approval rule `deploy:prod`")
        );
        assert_eq!(
            policy.matches(&spec(&[], &["kubectl", "apply", "-f", "a.yml"])).as_deref(),
            Some("step `deploy` runs `kubectl apply -f a.yml`, which matches the approval rule `kubectl apply*`")
        );
        assert_eq!(
            policy.matches(&spec(&["deploy:staging"], &["kubectl", "get"])),
            None
        );
        let more = ApprovalPolicy {
            labels: vec!["x".into()],
            commands: Vec::new(),
        };
        assert_eq!(policy.clone().union(more).labels, vec!["deploy:prod", "x"]);
        assert!(ApprovalPolicy {
            labels: vec![" ".into()],
            commands: vec![]
        }
        .validate()
        .is_err());
    }
}
