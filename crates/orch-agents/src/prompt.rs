//! Prompt templates (minijinja): built-in defaults compiled into the binary, overridable per
//! project by a file of the same name under `<project>/.orch/prompts/`.
//!
//! Templates are rendered with strict undefined variables, so a typo in a project's template is
//! an error naming the template and line rather than an empty string in a prompt. A project
//! template may use any variable its built-in documents in its opening comment; tests use this
//! to script `sim` answers that depend on the attempt or the review round.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::Serialize;

/// The router's prompt.
pub const ROUTE: &str = "route.j2";
/// The wrapper around an agent step's prompt (profile, review feedback, earlier steps).
pub const STEP: &str = "step.j2";
/// The reviewer's prompt.
pub const REVIEW: &str = "review.j2";

/// Where a project keeps its own templates, relative to the project directory.
pub const PROJECT_DIR: &str = ".orch/prompts";

/// Every template orch renders, with its built-in text.
const BUILTIN: &[(&str, &str)] = &[
    (ROUTE, include_str!("../prompts/route.j2")),
    (STEP, include_str!("../prompts/step.j2")),
    (REVIEW, include_str!("../prompts/review.j2")),
];

/// Why a template could not be loaded or rendered.
#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    /// A project template exists but cannot be read.
    #[error("cannot read the prompt template {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A template does not parse or does not render.
    #[error("prompt template {origin}: {message}; fix the template (variables are listed in the built-in's opening comment)")]
    Template {
        /// `built-in route.j2` or the project file's path.
        origin: String,
        /// minijinja's message, with the line.
        message: String,
    },
}

/// The templates of one project, ready to render.
#[derive(Debug)]
pub struct Prompts {
    env: Environment<'static>,
    origins: BTreeMap<&'static str, String>,
}

impl Prompts {
    /// The built-in templates only.
    pub fn builtin() -> Prompts {
        Self::with_overrides(BTreeMap::new()).expect("the built-in templates parse (tested)")
    }

    /// The built-in templates, each replaced by `<project_dir>/.orch/prompts/<name>` when that
    /// file exists. Every template is parsed now, so a broken one is reported before any work.
    pub fn load(project_dir: &Path) -> Result<Prompts, PromptError> {
        let dir = project_dir.join(PROJECT_DIR);
        let mut overrides = BTreeMap::new();
        for (name, _) in BUILTIN {
            let path = dir.join(name);
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    overrides.insert(*name, (path, text));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(PromptError::Read { path, source }),
            }
        }
        Self::with_overrides(overrides)
    }

    fn with_overrides(
        mut overrides: BTreeMap<&'static str, (PathBuf, String)>,
    ) -> Result<Prompts, PromptError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        let mut origins = BTreeMap::new();
        for (name, builtin) in BUILTIN {
            let (origin, text) = match overrides.remove(name) {
                Some((path, text)) => (path.display().to_string(), text),
                None => (format!("built-in {name}"), (*builtin).to_owned()),
            };
            env.add_template_owned(*name, text)
                .map_err(|e| template_error(&origin, &e))?;
            origins.insert(*name, origin);
        }
        Ok(Prompts { env, origins })
    }

    /// Where template `name` comes from: `built-in <name>` or the project file's path.
    pub fn origin(&self, name: &str) -> &str {
        self.origins
            .get(name)
            .map_or("unknown template", String::as_str)
    }

    /// Render template `name` (one of [`ROUTE`], [`STEP`], [`REVIEW`]) with `context`.
    pub fn render(&self, name: &str, context: impl Serialize) -> Result<String, PromptError> {
        let origin = self.origin(name).to_owned();
        let template = self
            .env
            .get_template(name)
            .map_err(|e| template_error(&origin, &e))?;
        template
            .render(context)
            .map_err(|e| template_error(&origin, &e))
    }
}

fn template_error(origin: &str, error: &minijinja::Error) -> PromptError {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        message.push_str(&format!(": {inner}"));
        source = inner.source();
    }
    PromptError::Template {
        origin: origin.to_owned(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;
    use serde_json::json;

    fn step_context(extra: serde_json::Value) -> serde_json::Value {
        let mut context = json!({
            "prompt": "Fix the bug.\n@write x.txt\nx\n@end",
            "agent": "sim", "model": null, "complexity": null, "profile": null,
            "review_feedback": [], "earlier_steps": [],
        });
        for (key, value) in extra.as_object().expect("an object").clone() {
            context[key] = value;
        }
        context
    }

    #[test]
    fn a_plain_step_prompt_is_the_prompt_and_a_newline() {
        let rendered = Prompts::builtin()
            .render(STEP, step_context(json!({})))
            .expect("renders");
        assert_eq!(rendered, "Fix the bug.\n@write x.txt\nx\n@end\n");
    }

    #[test]
    fn a_step_prompt_carries_the_profile_the_review_feedback_and_earlier_steps() {
        let rendered = Prompts::builtin()
            .render(
                STEP,
                step_context(json!({
                    "profile": {"role": "tester", "skills": ["rust", "git"], "tools": ["cargo"], "constraints": ["no new dependencies"]},
                    "review_feedback": [{"round": 1, "reasons": ["the test is missing"]}],
                    "earlier_steps": [{"name": "build", "status": "succeeded", "summary": "1 command(s) succeeded"}],
                })),
            )
            .expect("renders");
        expect![[r#"
            Fix the bug.
            @write x.txt
            x
            @end

            ## Your profile
            Role: tester
            Skills: rust, git
            Tools you may use: cargo
            Constraints:
            - no new dependencies

            ## Review feedback
            A reviewer rejected earlier work on this task. Address every point:
            Review 1:
            - the test is missing

            Earlier steps of this task (details in $ORCH_CONTEXT):
            - build: succeeded (1 command(s) succeeded)
        "#]]
        .assert_eq(&rendered);
    }

    #[test]
    fn the_route_and_review_templates_render_with_their_documented_variables() {
        let prompts = Prompts::builtin();
        let route = prompts
            .render(
                ROUTE,
                json!({
                    "task": {"id": 7, "title": "Add docs", "body": "Write the README.", "labels": ["docs"]},
                    "agents": ["sim", "claude"], "complexities": ["simple", "medium", "complex"],
                    "profiles": {"writer": {"role": "technical writer", "skills": [], "tools": [], "constraints": []}},
                    "attempt": 2, "max_attempts": 3, "previous_error": "not JSON",
                }),
            )
            .expect("renders");
        assert!(
            route.contains("Task 7: Add docs\nLabels: docs\n"),
            "{route}"
        );
        assert!(route.contains("- writer: technical writer"), "{route}");
        assert!(
            route.contains("(attempt 1 of 3) was refused: not JSON"),
            "{route}"
        );
        let review = prompts
            .render(
                REVIEW,
                json!({
                    "task": {"id": 7, "title": "Add docs", "body": "Write the README.", "labels": []},
                    "round": 2, "max_rounds": 3,
                    "steps": [{"name": "agent", "status": "succeeded", "summary": "done"}],
                    "diff": "+hello", "previous_reviews": [{"round": 1, "reasons": ["too short"]}],
                }),
            )
            .expect("renders");
        assert!(review.contains("review round 2 of at most 3"), "{review}");
        assert!(review.contains("- round 1: too short"), "{review}");
        assert!(review.contains("```diff\n+hello\n```"), "{review}");
    }

    #[test]
    fn a_project_template_replaces_the_built_in_and_a_typo_names_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let prompts_dir = dir.path().join(PROJECT_DIR);
        std::fs::create_dir_all(&prompts_dir).expect("mkdir");
        std::fs::write(prompts_dir.join(ROUTE), "attempt {{ attempt }}").expect("write");
        std::fs::write(prompts_dir.join(REVIEW), "round {{ rund }}").expect("write");
        let prompts = Prompts::load(dir.path()).expect("loads");
        assert_eq!(
            prompts
                .render(ROUTE, json!({"attempt": 2}))
                .expect("renders"),
            "attempt 2"
        );
        assert_eq!(prompts.origin(STEP), "built-in step.j2");
        let error = prompts
            .render(REVIEW, json!({"round": 1}))
            .expect_err("undefined variable");
        let message = error.to_string();
        assert!(message.contains("review.j2"), "{message}");
        assert!(message.contains("undefined"), "{message}");
    }

    #[test]
    fn a_template_that_does_not_parse_is_refused_when_loaded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let prompts_dir = dir.path().join(PROJECT_DIR);
        std::fs::create_dir_all(&prompts_dir).expect("mkdir");
        std::fs::write(prompts_dir.join(STEP), "{% if %}").expect("write");
        let error = Prompts::load(dir.path()).expect_err("syntax error");
        assert!(error.to_string().contains("step.j2"), "{error}");
    }
}
