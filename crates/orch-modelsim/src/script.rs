//! The script format and the stateless rule that picks the turn to serve for a request.
//!
//! Every dialect turns its request into a [`Transcript`] (user texts, tool results, assistant
//! messages in order); [`Script::select`] then decides from that transcript alone, so a retried or
//! resumed request gets the same answer as the first one did.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::Error;

/// A scripted model: conversations, each picked by a substring of the latest user text.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Script {
    /// Tried in order; the first whose `match` is a substring of the latest user text wins.
    #[serde(default)]
    pub conversations: Vec<Conversation>,
}

/// One scripted conversation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conversation {
    /// Substring of the latest user text that selects this conversation; `None` matches any.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub matches: Option<String>,
    /// The answers, in order: turn `n` answers the request that has `n` assistant turns after
    /// the latest user text.
    #[serde(default)]
    pub turns: Vec<Turn>,
}

/// One abstract answer of the model, translated into each dialect's wire format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Turn {
    /// A tool call writing `content` to `path` (relative to the agent's working directory).
    Write { path: String, content: String },
    /// A shell command tool call.
    Run { command: String },
    /// Several tool calls in one assistant turn.
    Tools(Vec<ToolCall>),
    /// The final answer; ends the agent's turn.
    Say { text: String },
    /// An HTTP error in the dialect's error format.
    Error {
        status: u16,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_secs: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// Accept the request and never answer, not even the status line (until shutdown).
    Hang,
    /// Answer `200` with streaming headers, then send nothing more (until shutdown): tests a
    /// CLI's idle-stream timeout rather than its request timeout.
    Stall,
}

/// A tool call inside a [`Turn::Tools`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ToolCall {
    /// Write `content` to `path` (relative to the agent's working directory).
    Write { path: String, content: String },
    /// Run a shell command.
    Run { command: String },
}

/// The text answered once a conversation has no turns left.
pub const DONE_TEXT: &str = "done";

impl Turn {
    /// The tool calls of this turn, empty for non-tool turns.
    pub fn tool_calls(&self) -> Vec<ToolCall> {
        match self {
            Turn::Write { path, content } => vec![ToolCall::Write {
                path: path.clone(),
                content: content.clone(),
            }],
            Turn::Run { command } => vec![ToolCall::Run {
                command: command.clone(),
            }],
            Turn::Tools(calls) => calls.clone(),
            Turn::Say { .. } | Turn::Error { .. } | Turn::Hang | Turn::Stall => Vec::new(),
        }
    }

    /// Deterministic output token count reported for this turn.
    pub fn output_tokens(&self) -> u64 {
        match self {
            Turn::Say { text } => 5 + word_count(text),
            other => 10 * other.tool_calls().len().max(1) as u64,
        }
    }
}

impl Script {
    /// Parses a script from JSON text.
    pub fn from_json(text: &str) -> Result<Script, Error> {
        serde_json::from_str(text).map_err(|e| Error::Script(format!("invalid JSON script: {e}")))
    }

    /// Parses a script from YAML text.
    pub fn from_yaml(text: &str) -> Result<Script, Error> {
        let node = marked_yaml::parse_yaml(0, text)
            .map_err(|e| Error::Script(format!("invalid YAML script: {e}")))?;
        marked_yaml::from_node(&node)
            .map_err(|e| Error::Script(format!("invalid YAML script: {e}")))
    }

    /// Loads a script file: `.json` as JSON, anything else as YAML (a superset of JSON).
    pub fn load(path: &Path) -> Result<Script, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::Script(format!("cannot read script file {}: {e}", path.display()))
        })?;
        let parsed = if path.extension().is_some_and(|ext| ext == "json") {
            Script::from_json(&text)
        } else {
            Script::from_yaml(&text)
        };
        parsed.map_err(|e| Error::Script(format!("{}: {e}", path.display())))
    }

    /// A script with one catch-all conversation.
    pub fn single(turns: Vec<Turn>) -> Script {
        Script {
            conversations: vec![Conversation {
                matches: None,
                turns,
            }],
        }
    }

    /// Picks the answer for a transcript.
    pub fn select(&self, transcript: &Transcript) -> Selection {
        let user_text = transcript.latest_user_text().unwrap_or("");
        let turn_index = transcript.assistant_turns_after_latest_user_text();
        let found = self.conversations.iter().enumerate().find(|(_, c)| {
            c.matches
                .as_deref()
                .is_none_or(|needle| user_text.contains(needle))
        });
        match found {
            Some((index, conversation)) => Selection {
                conversation: Some(index),
                turn_index,
                turn: conversation
                    .turns
                    .get(turn_index)
                    .cloned()
                    .unwrap_or(Turn::Say {
                        text: DONE_TEXT.to_owned(),
                    }),
            },
            None => Selection {
                conversation: None,
                turn_index,
                turn: Turn::Say {
                    text: DONE_TEXT.to_owned(),
                },
            },
        }
    }
}

/// The answer chosen for one request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Selection {
    /// Index of the selected conversation; `None` when nothing matched.
    pub conversation: Option<usize>,
    /// Number of assistant turns after the latest user text.
    pub turn_index: usize,
    /// The turn served (a `say` of [`DONE_TEXT`] once the turns ran out).
    pub turn: Turn,
}

/// One entry of a request's conversation history, dialect-independent.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// A user message carrying text (not a tool result).
    UserText(String),
    /// A user/tool message carrying tool results.
    ToolResult,
    /// An assistant message or item (text, tool call, reasoning).
    Assistant,
}

/// The history of one request plus facts the dialects need to render an answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Transcript {
    /// History in order.
    pub entries: Vec<Entry>,
    /// The agent's working directory if the request reveals it (system prompt, environment).
    pub cwd: Option<String>,
    /// Words of all text in the request; the reported input token count.
    pub words: u64,
}

impl Transcript {
    /// The text of the latest user message that is not a tool result.
    pub fn latest_user_text(&self) -> Option<&str> {
        self.entries.iter().rev().find_map(|e| match e {
            Entry::UserText(text) => Some(text.as_str()),
            _ => None,
        })
    }

    /// Assistant turns after the latest user text; consecutive assistant entries count once.
    pub fn assistant_turns_after_latest_user_text(&self) -> usize {
        let start = self
            .entries
            .iter()
            .rposition(|e| matches!(e, Entry::UserText(_)))
            .map_or(0, |i| i + 1);
        let mut turns = 0;
        let mut previous_was_assistant = false;
        for entry in &self.entries[start..] {
            let is_assistant = matches!(entry, Entry::Assistant);
            if is_assistant && !previous_was_assistant {
                turns += 1;
            }
            previous_was_assistant = is_assistant;
        }
        turns
    }

    /// Input tokens to report: words of the request's text, at least 1.
    pub fn input_tokens(&self) -> u64 {
        self.words.max(1)
    }
}

/// Whitespace-separated words of a text.
pub fn word_count(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// Finds `<prefix><value>` on a line of `text` and returns the trimmed value.
pub(crate) fn line_value(text: &str, prefix: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let at = line.find(prefix)?;
        let value = line[at + prefix.len()..].trim();
        (!value.is_empty()).then(|| value.to_owned())
    })
}

/// Joins a relative `path` to `cwd` when both are known; absolute paths stay as they are.
pub(crate) fn absolute_path(cwd: Option<&str>, path: &str) -> String {
    match cwd {
        Some(cwd) if !Path::new(path).is_absolute() => {
            Path::new(cwd).join(path).to_string_lossy().into_owned()
        }
        _ => path.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transcript(entries: Vec<Entry>) -> Transcript {
        Transcript {
            entries,
            ..Transcript::default()
        }
    }

    #[test]
    fn turn_index_counts_assistant_turns_after_the_latest_user_text() {
        let script = Script {
            conversations: vec![
                Conversation {
                    matches: Some("second".into()),
                    turns: vec![Turn::Say { text: "two".into() }],
                },
                Conversation {
                    matches: None,
                    turns: vec![
                        Turn::Run {
                            command: "true".into(),
                        },
                        Turn::Say { text: "one".into() },
                    ],
                },
            ],
        };
        let first = transcript(vec![Entry::UserText("first task".into())]);
        assert_eq!(script.select(&first).conversation, Some(1));
        assert_eq!(script.select(&first).turn_index, 0);
        let after_tool = transcript(vec![
            Entry::UserText("first task".into()),
            Entry::Assistant,
            Entry::Assistant,
            Entry::ToolResult,
        ]);
        assert_eq!(
            script.select(&after_tool).turn,
            Turn::Say { text: "one".into() }
        );
        let resumed = transcript(vec![
            Entry::UserText("first task".into()),
            Entry::Assistant,
            Entry::ToolResult,
            Entry::Assistant,
            Entry::UserText("now the second".into()),
        ]);
        let selection = script.select(&resumed);
        assert_eq!((selection.conversation, selection.turn_index), (Some(0), 0));
        let exhausted = transcript(vec![
            Entry::UserText("now the second".into()),
            Entry::Assistant,
        ]);
        assert_eq!(
            script.select(&exhausted).turn,
            Turn::Say {
                text: DONE_TEXT.into()
            }
        );
    }

    #[test]
    fn yaml_and_json_scripts_parse_to_the_same_value() {
        let yaml = r#"
conversations:
  - match: hello
    turns:
      - write: {path: a.txt, content: "hi\n"}
      - run: {command: touch ran.txt}
      - tools: [{write: {path: b.txt, content: x}}, {run: {command: "true"}}]
      - error: {status: 429, retry_after_secs: 1}
      - hang
      - say: {text: finished}
"#;
        let json = r#"{"conversations":[{"match":"hello","turns":[
            {"write":{"path":"a.txt","content":"hi\n"}},
            {"run":{"command":"touch ran.txt"}},
            {"tools":[{"write":{"path":"b.txt","content":"x"}},{"run":{"command":"true"}}]},
            {"error":{"status":429,"retry_after_secs":1}},
            "hang",
            {"say":{"text":"finished"}}]}]}"#;
        let from_yaml = Script::from_yaml(yaml).unwrap();
        assert_eq!(from_yaml, Script::from_json(json).unwrap());
        assert_eq!(from_yaml.conversations[0].turns.len(), 6);
    }
}
