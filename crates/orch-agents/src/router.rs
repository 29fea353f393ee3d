//! The router: which agent runs a task, at which complexity (hence which model), with which
//! profile, and why.
//!
//! Precedence, field by field (the first source that gives a field wins):
//! 1. labels: `agent:<name>`, `complexity:<level>`, `profile:<name>`;
//! 2. the first `[[router.rules]]` entry whose conditions all hold;
//! 3. LLM routing, only when no label or rule named the agent: `router.agent` is asked with the
//!    `route.j2` prompt and must answer JSON `{agent, complexity, profile, reason}`, validated;
//!    a bad answer is asked again, with the error, up to `max_route_attempts` times;
//! 4. round robin over `router.agents`: the task with id N gets `agents[N % len]`. Derived from
//!    the task id rather than a stored counter, so it needs no state, every run of a task and
//!    `orch task route` agree, and consecutive tasks still spread over the agents.
//!
//! The complexity defaults to `router.default_complexity`; the model is
//! `model_map.<complexity>.<agent>` (none: the agent's default); the profile is the named one,
//! else the router's, else `[profiles.default]` if the project defines it.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::answer::{self, Exchange};
use crate::profile::Profile;
use crate::prompt::{self, PromptError, Prompts};

/// How hard a task is; picks the model through `model_map`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Complexity {
    /// Small, mechanical.
    Simple,
    /// The usual.
    Medium,
    /// Needs the strongest model.
    Complex,
}

impl Complexity {
    /// Every level, easiest first.
    pub const ALL: [Complexity; 3] = [Complexity::Simple, Complexity::Medium, Complexity::Complex];

    /// The name used in labels, config and answers.
    pub fn as_str(self) -> &'static str {
        match self {
            Complexity::Simple => "simple",
            Complexity::Medium => "medium",
            Complexity::Complex => "complex",
        }
    }
}

impl fmt::Display for Complexity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Complexity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Complexity::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("unknown complexity `{s}`; expected simple, medium or complex"))
    }
}

/// How tasks are routed when no label or rule decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouterMode {
    /// Ask `router.agent`, then fall back to round robin.
    #[default]
    Llm,
    /// Round robin only.
    RoundRobin,
}

/// `[router]` in `.orch.toml`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouterConfig {
    /// `llm` (default) or `round_robin`.
    pub mode: RouterMode,
    /// The agent that classifies tasks; without one, LLM routing is skipped.
    pub agent: Option<String>,
    /// Its model (a small, fast one is enough).
    pub model: Option<String>,
    /// Answers asked for before falling back to round robin.
    pub max_route_attempts: u32,
    /// Longest wait for one answer.
    pub timeout_seconds: u64,
    /// The enabled agents: what the router may choose and what round robin cycles through.
    pub agents: Vec<String>,
    /// Complexity when nothing else gives one.
    pub default_complexity: Complexity,
    /// Rules, first match wins.
    pub rules: Vec<RouteRule>,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            mode: RouterMode::Llm,
            agent: None,
            model: None,
            max_route_attempts: 3,
            timeout_seconds: 120,
            agents: vec!["sim".to_owned()],
            default_complexity: Complexity::Medium,
            rules: Vec::new(),
        }
    }
}

/// One `[[router.rules]]` entry: conditions (all must hold; at least one) and what it sets.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouteRule {
    /// A name shown in the decision [default: `rules[<index>]`].
    pub name: Option<String>,
    /// The task has this label.
    pub label: Option<String>,
    /// The title contains this text (case-insensitive).
    pub title_contains: Option<String>,
    /// The body contains this text (case-insensitive).
    pub body_contains: Option<String>,
    /// The agent to use.
    pub agent: Option<String>,
    /// The complexity.
    pub complexity: Option<Complexity>,
    /// A profile name from `[profiles]`.
    pub profile: Option<String>,
}

impl RouteRule {
    fn display_name(&self, index: usize) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("rules[{index}]"))
    }

    fn matches(&self, task: &RouteTask<'_>) -> bool {
        let contains =
            |haystack: &str, needle: &str| haystack.to_lowercase().contains(&needle.to_lowercase());
        self.label
            .as_ref()
            .is_none_or(|label| task.labels.iter().any(|l| l == label))
            && self
                .title_contains
                .as_ref()
                .is_none_or(|text| contains(task.title, text))
            && self
                .body_contains
                .as_ref()
                .is_none_or(|text| contains(task.body, text))
    }
}

/// `[model_map]`: the model per complexity and agent, plus the reviewer's model per agent.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelMap {
    /// `simple.<agent> = "<model>"`.
    pub simple: BTreeMap<String, String>,
    /// `medium.<agent> = "<model>"`.
    pub medium: BTreeMap<String, String>,
    /// `complex.<agent> = "<model>"`.
    pub complex: BTreeMap<String, String>,
    /// `review.<agent> = "<model>"`: the reviewer's model when `[review] model` is not set.
    pub review: BTreeMap<String, String>,
}

impl ModelMap {
    /// The model for `agent` at `complexity`, if the map names one.
    pub fn model(&self, complexity: Complexity, agent: &str) -> Option<&str> {
        let row = match complexity {
            Complexity::Simple => &self.simple,
            Complexity::Medium => &self.medium,
            Complexity::Complex => &self.complex,
        };
        row.get(agent).map(String::as_str)
    }
}

/// Everything routing reads from the project's config.
#[derive(Debug, Clone, Copy)]
pub struct RoutingConfig<'a> {
    /// `[router]`.
    pub router: &'a RouterConfig,
    /// `[model_map]`.
    pub model_map: &'a ModelMap,
    /// `[profiles]`.
    pub profiles: &'a BTreeMap<String, Profile>,
    /// `[agents]`: which agents may run (the router agent too) and how.
    pub agents: &'a crate::AgentsConfig,
}

/// Check the routing sections together (names that must exist, rules that can match).
pub fn validate(config: RoutingConfig<'_>) -> Result<(), String> {
    let router = config.router;
    if router.max_route_attempts == 0 {
        return Err("router.max_route_attempts is 0; it must be at least 1".to_owned());
    }
    if router.agents.is_empty() {
        return Err("router.agents is empty; list at least one agent, e.g. [\"sim\"]".to_owned());
    }
    for (index, rule) in router.rules.iter().enumerate() {
        let name = rule.display_name(index);
        if rule.label.is_none() && rule.title_contains.is_none() && rule.body_contains.is_none() {
            return Err(format!(
                "router rule `{name}` has no condition; give `label`, `title_contains` or `body_contains`"
            ));
        }
        if rule.agent.is_none() && rule.complexity.is_none() && rule.profile.is_none() {
            return Err(format!(
                "router rule `{name}` sets nothing; give `agent`, `complexity` or `profile`"
            ));
        }
        if let Some(profile) = &rule.profile {
            if !config.profiles.contains_key(profile) {
                return Err(format!(
                    "router rule `{name}` names profile `{profile}`, which [profiles] does not define"
                ));
            }
        }
    }
    for (name, profile) in config.profiles {
        profile
            .validate()
            .map_err(|e| format!("profiles.{name}: {e}"))?;
    }
    Ok(())
}

/// The task as the router sees it.
#[derive(Debug, Clone, Copy)]
pub struct RouteTask<'a> {
    /// Its id (round robin uses it).
    pub id: i64,
    /// Its title.
    pub title: &'a str,
    /// Its body.
    pub body: &'a str,
    /// Its labels.
    pub labels: &'a [String],
    /// How the router's agent is confined (it reads the task's text: see `answer::ask`).
    pub sandbox: &'a orch_process::Sandbox,
}

/// What decided the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteSource {
    /// The step names its agent (no routing).
    Explicit,
    /// An `agent:<name>` label.
    Label,
    /// A `[[router.rules]]` entry.
    Rule,
    /// The router agent's answer.
    Llm,
    /// Round robin over `router.agents`.
    RoundRobin,
}

/// The router's decision, written to the bundle as `route.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteDecision {
    /// The agent to run.
    pub agent: String,
    /// Its model (none: the agent's default).
    pub model: Option<String>,
    /// The complexity.
    pub complexity: Complexity,
    /// The profile's name, when a named one was used.
    pub profile_name: Option<String>,
    /// The profile (empty when none).
    pub profile: Profile,
    /// What decided the agent.
    pub source: RouteSource,
    /// The rule that matched, if any.
    pub rule: Option<String>,
    /// Why, one line per decided field.
    pub why: Vec<String>,
    /// The questions put to the router agent, in order.
    pub llm_attempts: Vec<Exchange>,
}

/// Why a task cannot be routed at all (another attempt would not help).
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// A label names something unknown.
    #[error("label `{label}`: {reason}")]
    Label {
        /// The label.
        label: String,
        /// What is wrong and what to do.
        reason: String,
    },
    /// The router's prompt template is broken.
    #[error(transparent)]
    Prompt(#[from] PromptError),
    /// The router could not make a scratch directory for its agent.
    #[error("create a scratch directory for the router: {0}")]
    Scratch(std::io::Error),
    /// Nothing to route to (config loading refuses this; a caller that skipped it gets this).
    #[error("router.agents is empty; list at least one agent, e.g. [\"sim\"]")]
    NoAgents,
}

/// The fields decided before any agent is asked.
#[derive(Debug, Clone, Default, PartialEq)]
struct Partial {
    agent: Option<(String, RouteSource)>,
    complexity: Option<Complexity>,
    profile_name: Option<String>,
    rule: Option<String>,
    why: Vec<String>,
}

/// Labels and rules: no I/O, no agent.
fn decide_static(task: &RouteTask<'_>, config: RoutingConfig<'_>) -> Result<Partial, RouteError> {
    let mut partial = Partial::default();
    for label in task.labels {
        if let Some(agent) = label.strip_prefix("agent:") {
            if partial.agent.is_none() {
                partial.agent = Some((agent.to_owned(), RouteSource::Label));
                partial
                    .why
                    .push(format!("agent `{agent}` from label `{label}`"));
            }
        } else if let Some(level) = label.strip_prefix("complexity:") {
            let complexity = level
                .parse::<Complexity>()
                .map_err(|reason| RouteError::Label {
                    label: label.clone(),
                    reason,
                })?;
            if partial.complexity.is_none() {
                partial.complexity = Some(complexity);
                partial
                    .why
                    .push(format!("complexity `{complexity}` from label `{label}`"));
            }
        } else if let Some(name) = label.strip_prefix("profile:") {
            if !config.profiles.contains_key(name) {
                return Err(RouteError::Label {
                    label: label.clone(),
                    reason: format!(
                        "the project defines no profile `{name}`; add [profiles.{name}] to .orch.toml or remove the label"
                    ),
                });
            }
            if partial.profile_name.is_none() {
                partial.profile_name = Some(name.to_owned());
                partial
                    .why
                    .push(format!("profile `{name}` from label `{label}`"));
            }
        }
    }
    let matched = config
        .router
        .rules
        .iter()
        .enumerate()
        .find(|(_, rule)| rule.matches(task));
    if let Some((index, rule)) = matched {
        let name = rule.display_name(index);
        let mut used = false;
        if let (None, Some(agent)) = (&partial.agent, &rule.agent) {
            partial.agent = Some((agent.clone(), RouteSource::Rule));
            partial
                .why
                .push(format!("agent `{agent}` from rule `{name}`"));
            used = true;
        }
        if let (None, Some(complexity)) = (partial.complexity, rule.complexity) {
            partial.complexity = Some(complexity);
            partial
                .why
                .push(format!("complexity `{complexity}` from rule `{name}`"));
            used = true;
        }
        if let (None, Some(profile)) = (&partial.profile_name, &rule.profile) {
            partial.profile_name = Some(profile.clone());
            partial
                .why
                .push(format!("profile `{profile}` from rule `{name}`"));
            used = true;
        }
        if used {
            partial.rule = Some(name);
        }
    }
    Ok(partial)
}

/// The round-robin choice for task `id`: `agents[id % len]`.
pub fn round_robin(id: i64, agents: &[String]) -> Option<&str> {
    let len = i64::try_from(agents.len()).ok().filter(|&n| n > 0)?;
    let index = usize::try_from(id.rem_euclid(len)).ok()?;
    agents.get(index).map(String::as_str)
}

/// A valid router answer.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteAnswer {
    /// One of `router.agents`.
    pub agent: String,
    /// The complexity.
    pub complexity: Complexity,
    /// The profile it wrote (may be empty).
    pub profile: Profile,
    /// Its reason, if given.
    pub reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAnswer {
    agent: String,
    complexity: String,
    #[serde(default)]
    profile: Profile,
    #[serde(default)]
    reason: Option<String>,
}

/// Read and validate the router agent's answer.
pub fn parse_answer(answer: &str, agents: &[String]) -> Result<RouteAnswer, String> {
    let value = answer::json_object(answer)?;
    let raw: RawAnswer = serde_json::from_value(value).map_err(|e| {
        format!("the answer does not have the expected fields {{agent, complexity, profile, reason}}: {e}")
    })?;
    if !agents.contains(&raw.agent) {
        return Err(format!(
            "the answer chose agent `{}`, which is not one of {}",
            raw.agent,
            agents.join(", ")
        ));
    }
    let complexity = raw.complexity.parse::<Complexity>()?;
    raw.profile.validate()?;
    Ok(RouteAnswer {
        agent: raw.agent,
        complexity,
        profile: raw.profile,
        reason: raw.reason,
    })
}

/// Decide the route of `task`, asking the router agent when labels and rules leave the agent
/// open. Never fails because of the router agent: bad answers end in round robin.
pub async fn route(
    task: &RouteTask<'_>,
    config: RoutingConfig<'_>,
    prompts: &Prompts,
    cancel: &CancellationToken,
) -> Result<RouteDecision, RouteError> {
    let partial = decide_static(task, config)?;
    let router = config.router;
    let mut why = partial.why;
    let mut llm_attempts = Vec::new();
    let mut llm_profile = None;
    let mut complexity = partial.complexity;
    let (agent, source) = match partial.agent {
        Some(decided) => decided,
        None => {
            let answered = match (&router.mode, &router.agent) {
                (RouterMode::RoundRobin, _) => {
                    why.push("router.mode is round_robin".to_owned());
                    None
                }
                (RouterMode::Llm, None) => {
                    why.push("no router.agent is configured for LLM routing".to_owned());
                    None
                }
                (RouterMode::Llm, Some(router_agent)) => {
                    let answered = ask_router(
                        task,
                        config,
                        prompts,
                        router_agent,
                        cancel,
                        &mut llm_attempts,
                    )
                    .await?;
                    if answered.is_none() {
                        why.push(format!(
                            "router agent `{router_agent}` gave no valid answer in {} attempt(s)",
                            llm_attempts.len()
                        ));
                    }
                    answered
                }
            };
            match answered {
                Some(answer) => {
                    let router_agent = router.agent.as_deref().unwrap_or_default();
                    why.push(format!(
                        "agent `{}` from router agent `{router_agent}` (attempt {}){}",
                        answer.agent,
                        llm_attempts.len(),
                        answer
                            .reason
                            .as_ref()
                            .map(|r| format!(": {r}"))
                            .unwrap_or_default()
                    ));
                    if complexity.is_none() {
                        complexity = Some(answer.complexity);
                        why.push(format!(
                            "complexity `{}` from router agent `{router_agent}`",
                            answer.complexity
                        ));
                    }
                    llm_profile = Some(answer.profile);
                    (answer.agent, RouteSource::Llm)
                }
                None => {
                    let agent = round_robin(task.id, &router.agents)
                        .ok_or(RouteError::NoAgents)?
                        .to_owned();
                    why.push(format!(
                        "agent `{agent}` by round robin: task id {} mod {} agent(s) [{}]",
                        task.id,
                        router.agents.len(),
                        router.agents.join(", ")
                    ));
                    (agent, RouteSource::RoundRobin)
                }
            }
        }
    };
    let complexity = complexity.unwrap_or_else(|| {
        why.push(format!(
            "complexity `{}` is router.default_complexity",
            router.default_complexity
        ));
        router.default_complexity
    });
    let model = config
        .model_map
        .model(complexity, &agent)
        .map(str::to_owned);
    match &model {
        Some(model) => why.push(format!(
            "model `{model}` from model_map.{complexity}.{agent}"
        )),
        None => why.push(format!(
            "no model_map.{complexity}.{agent}: the agent's default model"
        )),
    }
    let mut profile_name = partial.profile_name;
    let profile = if let Some(name) = &profile_name {
        config.profiles.get(name).cloned().unwrap_or_default()
    } else if let Some(profile) = llm_profile.filter(|p| !p.is_empty()) {
        why.push("profile written by the router agent".to_owned());
        profile
    } else if let Some(profile) = config.profiles.get("default") {
        profile_name = Some("default".to_owned());
        why.push("profile `default` from [profiles.default]".to_owned());
        profile.clone()
    } else {
        Profile::default()
    };
    Ok(RouteDecision {
        agent,
        model,
        complexity,
        profile_name,
        profile,
        source,
        rule: partial.rule,
        why,
        llm_attempts,
    })
}

/// Ask the router agent up to `max_route_attempts` times; `None` when every answer was bad.
async fn ask_router(
    task: &RouteTask<'_>,
    config: RoutingConfig<'_>,
    prompts: &Prompts,
    router_agent: &str,
    cancel: &CancellationToken,
    exchanges: &mut Vec<Exchange>,
) -> Result<Option<RouteAnswer>, RouteError> {
    let router = config.router;
    // The router only classifies: it runs in an empty scratch directory, never in the
    // project, so an agent that edits files anyway changes nothing that matters.
    let scratch = tempfile::Builder::new()
        .prefix("orch-route-")
        .tempdir()
        .map_err(RouteError::Scratch)?;
    // Confined, the agent may write that scratch directory and nothing else of its own.
    let sandbox = match task.sandbox {
        orch_process::Sandbox::Enforced(policy) => {
            let mut policy = policy.clone();
            policy.read_write.push(scratch.path().to_owned());
            orch_process::Sandbox::Enforced(policy)
        }
        orch_process::Sandbox::Off => orch_process::Sandbox::Off,
    };
    let mut previous_error: Option<String> = None;
    for attempt in 1..=router.max_route_attempts {
        if cancel.is_cancelled() {
            break;
        }
        let context = json!({
            "task": { "id": task.id, "title": task.title, "body": task.body, "labels": task.labels },
            "agents": router.agents,
            "complexities": Complexity::ALL.map(Complexity::as_str),
            "profiles": config.profiles,
            "attempt": attempt,
            "max_attempts": router.max_route_attempts,
            "previous_error": previous_error,
        });
        let prompt = prompts.render(prompt::ROUTE, context)?;
        let (outcome, events) = answer::ask(
            router_agent,
            config.agents,
            router.model.as_deref(),
            &prompt,
            scratch.path(),
            &sandbox,
            Duration::from_secs(router.timeout_seconds),
            cancel,
        )
        .await;
        let (answer_text, result) = match outcome {
            Ok(text) => {
                let parsed = parse_answer(&text, &router.agents);
                (Some(text), parsed)
            }
            Err(e) => (None, Err(format!("the router agent failed: {e}"))),
        };
        let error = result.as_ref().err().cloned();
        exchanges.push(Exchange {
            attempt,
            prompt,
            answer: answer_text,
            error: error.clone(),
            events,
        });
        match result {
            Ok(answer) => return Ok(Some(answer)),
            Err(e) => {
                tracing::info!(task = task.id, attempt, "router answer refused: {e}");
                previous_error = Some(e);
            }
        }
    }
    Ok(None)
}

/// The decision for a step that names its own agent: no routing, but the same record.
pub fn explicit(agent: &str, model: Option<&str>, step: &str) -> RouteDecision {
    RouteDecision {
        agent: agent.to_owned(),
        model: model.map(str::to_owned),
        complexity: Complexity::Medium,
        profile_name: None,
        profile: Profile::default(),
        source: RouteSource::Explicit,
        rule: None,
        why: vec![format!(
            "step `{step}` names agent `{agent}`; it is not routed"
        )],
        llm_attempts: Vec::new(),
    }
}

/// The `agent:` value of a step that asks to be routed.
pub const AUTO: &str = "auto";

/// Whether a step's agent asks to be routed.
pub fn is_auto(agent: &str) -> bool {
    agent == AUTO
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    fn config_from(toml_text: &str) -> (RouterConfig, ModelMap, BTreeMap<String, Profile>) {
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct File {
            router: RouterConfig,
            model_map: ModelMap,
            profiles: BTreeMap<String, Profile>,
        }
        let file: File = toml::from_str(toml_text).expect("valid TOML");
        (file.router, file.model_map, file.profiles)
    }

    async fn decide(toml_text: &str, id: i64, title: &str, task_labels: &[&str]) -> RouteDecision {
        let (router, model_map, profiles) = config_from(toml_text);
        let config = RoutingConfig {
            agents: &crate::AgentsConfig::default(),
            router: &router,
            model_map: &model_map,
            profiles: &profiles,
        };
        validate(config).expect("valid config");
        let task_labels = labels(task_labels);
        let task = RouteTask {
            id,
            title,
            body: "",
            labels: &task_labels,
            sandbox: &orch_process::Sandbox::Off,
        };
        route(
            &task,
            config,
            &Prompts::builtin(),
            &CancellationToken::new(),
        )
        .await
        .expect("routed")
    }

    const CONFIG: &str = r#"
        [router]
        agents = ["sim", "claude", "codex"]
        [[router.rules]]
        name = "docs"
        label = "docs"
        agent = "codex"
        complexity = "simple"
        profile = "writer"
        [[router.rules]]
        title_contains = "REFACTOR"
        complexity = "complex"
        [model_map.simple]
        codex = "codex-mini"
        claude = "haiku"
        [model_map.complex]
        claude = "opus"
        [profiles.writer]
        role = "technical writer"
        constraints = ["plain English"]
    "#;

    #[tokio::test]
    async fn labels_win_over_rules() {
        let decision = decide(CONFIG, 1, "t", &["docs", "agent:claude"]).await;
        assert_eq!(decision.agent, "claude");
        assert_eq!(decision.source, RouteSource::Label);
        // The rule still gives what the labels left open.
        assert_eq!(decision.complexity, Complexity::Simple);
        assert_eq!(decision.model.as_deref(), Some("haiku"));
        assert_eq!(decision.profile_name.as_deref(), Some("writer"));
        assert_eq!(decision.rule.as_deref(), Some("docs"));
        let decision = decide(CONFIG, 1, "t", &["docs", "complexity:complex"]).await;
        assert_eq!(
            (decision.agent.as_str(), decision.complexity),
            ("codex", Complexity::Complex)
        );
    }

    #[tokio::test]
    async fn the_first_matching_rule_decides_and_its_name_is_recorded() {
        let decision = decide(CONFIG, 1, "t", &["docs"]).await;
        assert_eq!(decision.agent, "codex");
        assert_eq!(decision.source, RouteSource::Rule);
        assert_eq!(decision.model.as_deref(), Some("codex-mini"));
        assert_eq!(decision.profile.role, "technical writer");
        expect_test::expect![[r#"
            [
                "agent `codex` from rule `docs`",
                "complexity `simple` from rule `docs`",
                "profile `writer` from rule `docs`",
                "model `codex-mini` from model_map.simple.codex",
            ]
        "#]]
        .assert_debug_eq(&decision.why);
    }

    #[tokio::test]
    async fn a_rule_without_an_agent_leaves_the_agent_to_round_robin() {
        let decision = decide(CONFIG, 4, "Refactor the store", &[]).await;
        assert_eq!(decision.complexity, Complexity::Complex);
        assert_eq!(decision.rule.as_deref(), Some("rules[1]"));
        assert_eq!(decision.source, RouteSource::RoundRobin);
        // 4 % 3 = 1.
        assert_eq!(decision.agent, "claude");
        assert_eq!(decision.model.as_deref(), Some("opus"));
    }

    #[test]
    fn round_robin_cycles_through_the_agents_by_task_id() {
        let agents = labels(&["a", "b", "c"]);
        let picks: Vec<_> = (1..=6).map(|id| round_robin(id, &agents)).collect();
        assert_eq!(
            picks,
            vec![
                Some("b"),
                Some("c"),
                Some("a"),
                Some("b"),
                Some("c"),
                Some("a")
            ]
        );
        assert_eq!(round_robin(1, &[]), None);
    }

    #[tokio::test]
    async fn a_bad_complexity_or_profile_label_is_refused_with_the_label() {
        let (router, model_map, profiles) = config_from(CONFIG);
        let config = RoutingConfig {
            agents: &crate::AgentsConfig::default(),
            router: &router,
            model_map: &model_map,
            profiles: &profiles,
        };
        for (label, expected) in [
            ("complexity:huge", "unknown complexity `huge`"),
            ("profile:poet", "no profile `poet`"),
        ] {
            let task_labels = labels(&[label]);
            let task = RouteTask {
                id: 1,
                title: "t",
                body: "",
                labels: &task_labels,
                sandbox: &orch_process::Sandbox::Off,
            };
            let error = route(
                &task,
                config,
                &Prompts::builtin(),
                &CancellationToken::new(),
            )
            .await
            .expect_err("refused");
            assert!(error.to_string().contains(expected), "{error}");
            assert!(error.to_string().contains(label), "{error}");
        }
    }

    #[test]
    fn answers_are_validated_field_by_field() {
        let agents = labels(&["sim", "claude"]);
        let ok = parse_answer(
            "```json\n{\"agent\": \"claude\", \"complexity\": \"complex\", \"profile\": {\"role\": \"dba\", \"skills\": [\"sql\"]}, \"reason\": \"schema work\"}\n```",
            &agents,
        )
        .expect("valid");
        assert_eq!(ok.agent, "claude");
        assert_eq!(ok.complexity, Complexity::Complex);
        assert_eq!(ok.profile.role, "dba");
        for (answer, expected) in [
            ("sim please", "no JSON object"),
            ("{\"agent\": \"gpt\", \"complexity\": \"simple\"}", "not one of sim, claude"),
            ("{\"agent\": \"sim\", \"complexity\": \"hard\"}", "unknown complexity `hard`"),
            ("{\"agent\": \"sim\"}", "missing field `complexity`"),
            ("{\"agent\": \"sim\", \"complexity\": \"simple\", \"mood\": 1}", "unknown field `mood`"),
            ("{\"agent\": \"sim\", \"complexity\": \"simple\", \"profile\": {\"skills\": [\"\"]}}", "empty entry"),
        ] {
            let error = parse_answer(answer, &agents).expect_err(answer);
            assert!(error.contains(expected), "{answer}: {error}");
        }
    }

    #[tokio::test]
    async fn a_valid_llm_answer_decides_agent_complexity_and_profile() {
        let toml_text = r#"
            [router]
            agent = "sim"
            agents = ["sim", "claude"]
            [model_map.simple]
            sim = "sim-small"
        "#;
        let (router, model_map, profiles) = config_from(toml_text);
        let config = RoutingConfig {
            agents: &crate::AgentsConfig::default(),
            router: &router,
            model_map: &model_map,
            profiles: &profiles,
        };
        let task_labels = Vec::new();
        let task = RouteTask {
            id: 1,
            title: "Rename a variable",
            body: "@answer {\"agent\": \"sim\", \"complexity\": \"simple\", \"profile\": {\"role\": \"janitor\"}, \"reason\": \"trivial\"}",
            labels: &task_labels,
            sandbox: &orch_process::Sandbox::Off,
        };
        let decision = route(
            &task,
            config,
            &Prompts::builtin(),
            &CancellationToken::new(),
        )
        .await
        .expect("routed");
        assert_eq!(decision.source, RouteSource::Llm);
        assert_eq!(decision.agent, "sim");
        assert_eq!(decision.complexity, Complexity::Simple);
        assert_eq!(decision.model.as_deref(), Some("sim-small"));
        assert_eq!(decision.profile.role, "janitor");
        assert_eq!(decision.llm_attempts.len(), 1);
        assert!(
            decision.why[0].ends_with("(attempt 1): trivial"),
            "{:?}",
            decision.why
        );
    }

    #[tokio::test]
    async fn bad_answers_are_asked_again_with_the_error_then_round_robin_decides() {
        let (router, model_map, profiles) = config_from(
            "[router]\nagent = \"sim\"\nagents = [\"sim\", \"claude\"]\nmax_route_attempts = 3\n",
        );
        let config = RoutingConfig {
            agents: &crate::AgentsConfig::default(),
            router: &router,
            model_map: &model_map,
            profiles: &profiles,
        };
        let task_labels = Vec::new();
        let task = RouteTask {
            id: 3,
            title: "Anything",
            body: "@answer {\"agent\": \"nobody\", \"complexity\": \"simple\"}",
            labels: &task_labels,
            sandbox: &orch_process::Sandbox::Off,
        };
        let decision = route(
            &task,
            config,
            &Prompts::builtin(),
            &CancellationToken::new(),
        )
        .await
        .expect("routed");
        assert_eq!(decision.llm_attempts.len(), 3);
        assert_eq!(decision.source, RouteSource::RoundRobin);
        assert_eq!(decision.agent, "claude");
        assert!(decision.llm_attempts[1]
            .prompt
            .contains("(attempt 1 of 3) was refused: the answer chose agent `nobody`"));
        assert!(decision.llm_attempts[2].error.is_some());
    }

    #[test]
    fn rules_that_cannot_match_or_set_nothing_are_refused() {
        for (text, expected) in [
            ("[[router.rules]]\nagent = \"sim\"\n", "has no condition"),
            ("[[router.rules]]\nlabel = \"x\"\n", "sets nothing"),
            (
                "[[router.rules]]\nlabel = \"x\"\nprofile = \"ghost\"\n",
                "profile `ghost`",
            ),
            ("[router]\nagents = []\n", "router.agents is empty"),
        ] {
            let (router, model_map, profiles) = config_from(text);
            let error = validate(RoutingConfig {
                agents: &crate::AgentsConfig::default(),
                router: &router,
                model_map: &model_map,
                profiles: &profiles,
            })
            .expect_err(text);
            assert!(error.contains(expected), "{text}: {error}");
        }
    }
}
