//! What a session said, and how it ended: the one place a CLI session is judged.

use crate::{AgentError, AgentEvent, AgentOutcome};

/// Why the process stopped, as the runner saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// It exited by itself.
    Exited {
        /// Exit code, if it exited normally.
        code: Option<i32>,
        /// The signal that ended it, if any.
        signal: Option<i32>,
    },
    /// It printed its result and did not exit within the grace; orch ended it.
    EndedAfterResult,
    /// It printed nothing for the stall period; orch killed it.
    Stalled(std::time::Duration),
    /// The step was cancelled (timeout, lease lost, shutdown).
    Cancelled,
}

/// The facts gathered from a session's events.
#[derive(Debug, Default)]
pub struct Transcript {
    /// From the init event.
    pub session_id: Option<String>,
    /// From the init event.
    pub model: Option<String>,
    /// The last assistant message.
    pub last_message: Option<String>,
    /// The final result, if one came.
    pub result: Option<(String, bool)>,
    /// The last cumulative usage.
    pub usage: Option<(u64, u64, Option<f64>)>,
    /// Error events, in order.
    pub errors: Vec<String>,
    /// Files the agent wrote or edited, as its tool calls named them.
    pub changed_files: Vec<String>,
}

impl Transcript {
    /// Take one event into account.
    pub fn observe(&mut self, event: &AgentEvent) {
        match event {
            AgentEvent::Init { session_id, model } => {
                if !session_id.is_empty() {
                    self.session_id = Some(session_id.clone());
                }
                if model.is_some() {
                    self.model = model.clone();
                }
            }
            AgentEvent::Message { role, text } if role == "assistant" => {
                self.last_message = Some(text.clone());
            }
            AgentEvent::ToolCall { input, .. } => {
                for key in ["file_path", "filePath", "path"] {
                    if let Some(path) = input.get(key).and_then(|v| v.as_str()) {
                        if !self.changed_files.iter().any(|f| f == path) {
                            self.changed_files.push(path.to_owned());
                        }
                    }
                }
            }
            AgentEvent::Usage {
                input_tokens,
                output_tokens,
                cost_usd,
            } => self.usage = Some((*input_tokens, *output_tokens, *cost_usd)),
            AgentEvent::Result { text, is_error } => self.result = Some((text.clone(), *is_error)),
            AgentEvent::Error { message } => self.errors.push(message.clone()),
            _ => {}
        }
    }

    /// Judge the session.
    pub fn finish(
        self,
        agent: &str,
        argv: Vec<String>,
        ending: Ending,
        stderr_tail: &str,
    ) -> Result<AgentOutcome, AgentError> {
        match &ending {
            Ending::Cancelled => {
                return Err(AgentError::Cancelled(format!(
                    "`{agent}` was stopped before it finished"
                )))
            }
            Ending::Stalled(after) => {
                return Err(AgentError::Stalled {
                    agent: agent.to_owned(),
                    after: *after,
                })
            }
            _ => {}
        }
        let (input_tokens, output_tokens, cost) = self.usage.unwrap_or((0, 0, None));
        let outcome = AgentOutcome {
            session_id: self.session_id.clone(),
            result_text: String::new(),
            input_tokens,
            output_tokens,
            cost_usd: cost.unwrap_or(0.0),
            changed_files: self.changed_files.clone(),
            model: self.model.clone(),
            argv,
        };
        if let Some((text, false)) = &self.result {
            // A CLI may report a rate limit as a normal answer (Claude Code's "usage limit
            // reached|<reset>") or finish with nothing at all: neither is a success.
            if let Some(error) = classify(agent, text, None) {
                if matches!(error, AgentError::RateLimited { .. }) {
                    return Err(error);
                }
            }
            if text.trim().is_empty() {
                return Err(AgentError::Failed(format!(
                    "`{agent}` finished with an empty result; nothing says the work was done"
                )));
            }
            return Ok(AgentOutcome {
                result_text: text.clone(),
                ..outcome
            });
        }
        let mut evidence: Vec<String> = Vec::new();
        if let Some((text, true)) = &self.result {
            evidence.push(text.clone());
        }
        evidence.extend(self.errors.iter().cloned());
        let said = evidence.join("; ");
        let all = format!("{said}\n{stderr_tail}");
        if let Some(error) = classify(agent, &all, None) {
            return Err(error);
        }
        if let Some((text, true)) = &self.result {
            return Err(AgentError::Failed(format!(
                "`{agent}` reported an error: {}",
                first_line(text)
            )));
        }
        if !self.errors.is_empty() {
            return Err(AgentError::Failed(format!(
                "`{agent}` reported an error: {}",
                first_line(&said)
            )));
        }
        let status = match ending {
            Ending::Exited {
                code: Some(code), ..
            } => format!("exit code {code}"),
            Ending::Exited {
                signal: Some(signal),
                ..
            } => format!("killed by signal {signal}"),
            _ => "no exit status".to_owned(),
        };
        Err(AgentError::Crashed {
            agent: agent.to_owned(),
            status,
            stderr_tail: last_lines(stderr_tail, 5),
        })
    }
}

/// Sort an error text into auth / rate limit / provider error, when it says which.
pub fn classify(agent: &str, text: &str, status: Option<u16>) -> Option<AgentError> {
    let lower = text.to_ascii_lowercase();
    let detail = first_line(text.trim());
    let has = |needles: &[&str]| needles.iter().any(|n| contains_needle(&lower, n));
    let status_in =
        |range: std::ops::RangeInclusive<u16>| status.is_some_and(|s| range.contains(&s));
    if status == Some(401)
        || status == Some(403)
        || has(&[
            "401",
            "unauthorized",
            "invalid api key",
            "invalid x-api-key",
            "authentication_error",
            "authentication failed",
            "403 forbidden",
        ])
    {
        return Some(AgentError::AuthRefused {
            agent: agent.to_owned(),
            detail,
        });
    }
    if status == Some(429)
        || has(&[
            "429",
            "rate limit",
            "rate_limit",
            "usage limit",
            "too many requests",
            "quota exceeded",
            "resource_exhausted",
        ])
    {
        return Some(AgentError::RateLimited {
            agent: agent.to_owned(),
            detail,
            reset_at: reset_time(text),
        });
    }
    if status_in(500..=599)
        || has(&[
            "500",
            "502",
            "503",
            "529",
            "internal server error",
            "overloaded",
            "server error",
            "bad gateway",
            "service unavailable",
            "api error",
            "high demand",
            "temporary errors",
            "try again later",
        ])
    {
        return Some(AgentError::ModelError {
            agent: agent.to_owned(),
            detail,
        });
    }
    None
}

/// Whether `text` contains `needle`; a status code (`"500"`) only as a number of its own, so
/// that the digits inside a session id or a hash that a CLI echoes (`0c0a5009-...`) do not
/// make a failure look like a provider error.
fn contains_needle(text: &str, needle: &str) -> bool {
    if !needle.bytes().all(|b| b.is_ascii_digit()) {
        return text.contains(needle);
    }
    // A status code stands alone: not part of a word, a file name (`note-429.txt`), a path or
    // a version; a sentence may end right after it (`... 429.`).
    let bytes = text.as_bytes();
    let joins = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'/');
    text.match_indices(needle).any(|(at, _)| {
        let end = at + needle.len();
        let before = at.checked_sub(1).map(|i| bytes[i]);
        let after = bytes.get(end).copied();
        let dotted_word = after == Some(b'.')
            && bytes
                .get(end + 1)
                .is_some_and(|b| b.is_ascii_alphanumeric());
        !before.is_some_and(|b| joins(b) || b == b'.') && !after.is_some_and(joins) && !dotted_word
    })
}

/// A reset time a CLI gave with its rate limit: Claude Code's `...limit reached|1700000000`.
fn reset_time(text: &str) -> Option<i64> {
    let (_, after) = text.split_once('|')?;
    let digits: String = after
        .trim()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let at: i64 = digits.parse().ok()?;
    // Seconds since 1970 in a plausible range (2020 .. 2100), or milliseconds.
    match at {
        1_577_836_800..=4_102_444_800 => Some(at),
        1_577_836_800_000..=4_102_444_800_000 => Some(at / 1000),
        _ => None,
    }
}

fn first_line(text: &str) -> String {
    let line = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    let mut out: String = line.chars().take(300).collect();
    if line.chars().count() > 300 {
        out.push('…');
    }
    out
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    strip_ansi(&lines[lines.len().saturating_sub(n)..].join("\n"))
}

/// Terminal colour codes out of a CLI's stderr, so messages read cleanly.
fn strip_ansi(text: &str) -> String {
    strip_ansi_escapes::strip_str(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judged(
        events: &[AgentEvent],
        ending: Ending,
        stderr: &str,
    ) -> Result<AgentOutcome, AgentError> {
        let mut t = Transcript::default();
        for e in events {
            t.observe(e);
        }
        t.finish("claude", Vec::new(), ending, stderr)
    }

    fn result(text: &str, is_error: bool) -> AgentEvent {
        AgentEvent::Result {
            text: text.into(),
            is_error,
        }
    }

    const EXIT0: Ending = Ending::Exited {
        code: Some(0),
        signal: None,
    };
    const EXIT1: Ending = Ending::Exited {
        code: Some(1),
        signal: None,
    };

    #[test]
    fn a_rate_limit_with_exit_code_zero_is_not_success() {
        let error = judged(
            &[result("Claude AI usage limit reached|1767225600", false)],
            EXIT0,
            "",
        )
        .unwrap_err();
        assert!(
            matches!(
                error,
                AgentError::RateLimited {
                    reset_at: Some(1_767_225_600),
                    ..
                }
            ),
            "{error:?}"
        );
    }

    #[test]
    fn an_empty_result_is_not_success() {
        let error = judged(&[result("  ", false)], EXIT0, "").unwrap_err();
        assert!(error.to_string().contains("empty result"), "{error}");
    }

    #[test]
    fn a_result_then_a_hang_still_succeeds() {
        let outcome = judged(&[result("done", false)], Ending::EndedAfterResult, "").unwrap();
        assert_eq!(outcome.result_text, "done");
    }

    #[test]
    fn errors_are_classified() {
        let auth = judged(
            &[result("API Error: 401 {\"type\":\"error\"}", true)],
            EXIT1,
            "",
        )
        .unwrap_err();
        assert!(matches!(auth, AgentError::AuthRefused { .. }), "{auth:?}");
        assert!(!auth.class().retryable());
        let server = judged(
            &[AgentEvent::Error {
                message: "unexpected status 500 Internal Server Error".into(),
            }],
            EXIT1,
            "",
        )
        .unwrap_err();
        assert!(
            matches!(server, AgentError::ModelError { .. }),
            "{server:?}"
        );
        assert!(server.class().retryable());
        let crash = judged(
            &[],
            Ending::Exited {
                code: None,
                signal: Some(9),
            },
            "boom\n",
        )
        .unwrap_err();
        assert!(
            crash.to_string().contains("(killed by signal 9): boom"),
            "{crash}"
        );
        let stalled =
            judged(&[], Ending::Stalled(std::time::Duration::from_secs(3)), "").unwrap_err();
        assert_eq!(stalled.class(), crate::FailureClass::Stalled);
    }

    #[test]
    fn status_digits_inside_a_session_id_on_stderr_are_not_a_provider_error() {
        // Gemini CLI echoes the refused request, session id included, on stderr.
        let error = judged(
            &[AgentEvent::Error {
                message: "the ACP agent refused session/load: Internal error (-32603)".into(),
            }],
            EXIT0,
            "Error handling request { sessionId: '0c0a5009-a401-b429-cccc-123456789012' }\n",
        )
        .unwrap_err();
        assert!(matches!(error, AgentError::Failed(_)), "{error:?}");
        assert!(
            classify("x", "API Error: 500 boom", None).is_some()
                && classify("x", "status=429,", None).is_some()
        );
    }

    #[test]
    fn colour_codes_are_taken_out_of_stderr() {
        let error = judged(&[], EXIT1, "\u{1b}[31mnot trusted\u{1b}[0m\n").unwrap_err();
        assert!(
            error.to_string().ends_with("(exit code 1): not trusted"),
            "{error}"
        );
    }
}

#[cfg(test)]
mod status_code_tests {
    use super::classify;

    #[test]
    fn a_status_code_inside_a_file_name_or_path_is_not_a_rate_limit() {
        for text in [
            "sim finished 1 step and changed 1 file: note-429.txt.",
            "wrote src/429/notes.md",
            "version 1.429.0",
            "task_429 done",
        ] {
            assert!(classify("sim", text, None).is_none(), "{text}");
        }
        for text in ["API Error: 429 Too Many Requests", "status 429.", "(429)"] {
            assert!(
                matches!(
                    classify("claude", text, None),
                    Some(crate::AgentError::RateLimited { .. })
                ),
                "{text}"
            );
        }
    }
}
