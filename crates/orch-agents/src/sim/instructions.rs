//! The `@directive` language `sim` reads from its prompt, parsed without touching any file.
//!
//! The whole prompt is parsed before the first action runs, so a malformed prompt changes
//! nothing on disk. The format itself is documented in the parent module.

use std::fmt;

/// One thing the prompt asks `sim` to do, in prompt order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Instruction {
    /// `@write <path>` … `@end`: create or overwrite a file.
    Write { path: String, content: String },
    /// `@append <path>` … `@end`: add lines at the end of a file, creating it if missing.
    Append { path: String, content: String },
    /// `@replace <path> <old> => <new>`: replace the first occurrence of `old`.
    Replace {
        path: String,
        old: String,
        new: String,
    },
    /// `@delete <path>`: remove a file.
    Delete { path: String },
    /// `@run <program> <args...>`: reported as a `bash` tool call, never executed.
    Run { command: String },
    /// `@fail <message>`: stop here and report failure.
    Fail { message: String },
    /// `@sleep <ms>`: wait, as a real agent thinking would.
    Sleep { millis: u64 },
    /// `@say <text>`: one more assistant message.
    Say { text: String },
    /// `@answer <text>`: one line of the session's final answer.
    Answer { text: String },
    /// `@cost <usd>`: add this much to the session's reported cost (in millionths of a dollar)
    /// and report the usage so far at once, as a paid model's stream does.
    Cost { micros: u64 },
    /// `@ask [--secret] [--file] [--hint NAME] KEY...`: ask a human for values (an info
    /// request) unless the environment has them; asking ends the session.
    Ask { ask: orch_core::info_request::Ask },
    /// `@plan`, the plan's JSON lines, `@end`: write the plan to `ORCH_PLAN_FILE` (a planner
    /// step's output); elsewhere it does nothing.
    Plan { content: String },
}

/// Why a prompt could not be read; `line` is 1-based.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParseError {
    pub(crate) line: usize,
    pub(crate) message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "prompt line {}: {}", self.line, self.message)
    }
}

/// The message given when `@fail` has no text of its own.
pub(crate) const DEFAULT_FAIL_MESSAGE: &str = "the prompt asked sim to fail (`@fail`)";

/// Every instruction in `prompt`, in order. Lines that do not start with a known directive are
/// prose and are skipped, so ordinary prompts (and `@someone` mentions) parse to nothing.
pub(crate) fn parse(prompt: &str) -> Result<Vec<Instruction>, ParseError> {
    let mut instructions = Vec::new();
    let mut lines = prompt
        .lines()
        .enumerate()
        .map(|(index, line)| (index + 1, line));
    while let Some((line_number, line)) = lines.next() {
        let Some((name, directive, argument)) = split_directive(line) else {
            continue;
        };
        let error = |message: String| ParseError {
            line: line_number,
            message,
        };
        let instruction = match directive {
            Directive::Write | Directive::Append => {
                let path = single_path(name, argument).map_err(error)?;
                let content = body(&mut lines).ok_or_else(|| {
                    error(format!(
                        "`@{name} {path}` has no closing `@end` line; end the file's content with a line `@end`"
                    ))
                })?;
                if directive == Directive::Write {
                    Instruction::Write { path, content }
                } else {
                    Instruction::Append { path, content }
                }
            }
            Directive::Replace => parse_replace(argument).map_err(error)?,
            Directive::Delete => Instruction::Delete {
                path: single_path(name, argument).map_err(error)?,
            },
            Directive::Run => {
                if argument.is_empty() {
                    return Err(error(
                        "`@run` needs a command, such as `@run cargo test`".to_owned(),
                    ));
                }
                Instruction::Run {
                    command: argument.to_owned(),
                }
            }
            Directive::Fail => Instruction::Fail {
                message: if argument.is_empty() {
                    DEFAULT_FAIL_MESSAGE.to_owned()
                } else {
                    argument.to_owned()
                },
            },
            Directive::Sleep => {
                let millis = argument.parse::<u64>().map_err(|_| {
                    error(format!(
                        "`@sleep` takes a whole number of milliseconds, such as `@sleep 250`; got `{argument}`"
                    ))
                })?;
                Instruction::Sleep { millis }
            }
            Directive::Say => {
                if argument.is_empty() {
                    return Err(error(
                        "`@say` needs text, such as `@say The tests pass.`".to_owned(),
                    ));
                }
                Instruction::Say {
                    text: argument.to_owned(),
                }
            }
            Directive::Answer => {
                if argument.is_empty() {
                    return Err(error(
                        "`@answer` needs text, such as `@answer {\"verdict\": \"approve\"}`"
                            .to_owned(),
                    ));
                }
                Instruction::Answer {
                    text: argument.to_owned(),
                }
            }
            Directive::Cost => {
                let usd = argument
                    .parse::<f64>()
                    .ok()
                    .filter(|usd| usd.is_finite() && *usd >= 0.0)
                    .ok_or_else(|| {
                        error(format!(
                            "`@cost` takes an amount of US dollars, such as `@cost 0.25`; got `{argument}`"
                        ))
                    })?;
                // Whole millionths: the amount is a test's script, never a bill.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let micros = (usd * 1_000_000.0).round() as u64;
                Instruction::Cost { micros }
            }
            Directive::Ask => Instruction::Ask {
                ask: parse_ask(argument).map_err(error)?,
            },
            Directive::Plan => {
                if !argument.is_empty() {
                    return Err(error(
                        "`@plan` takes nothing on its line; put the plan's JSON on the lines after it, then `@end`".to_owned(),
                    ));
                }
                let content = body(&mut lines).ok_or_else(|| {
                    error(
                        "`@plan` has no closing `@end` line; end the plan with a line `@end`"
                            .to_owned(),
                    )
                })?;
                Instruction::Plan { content }
            }
            Directive::End => {
                return Err(error(
                    "`@end` without an open `@write`, `@append` or `@plan`".to_owned(),
                ))
            }
        };
        instructions.push(instruction);
    }
    Ok(instructions)
}

/// `[--secret] [--file] [--hint NAME] [KEY...]`, checked like `orch ask`'s.
fn parse_ask(argument: &str) -> Result<orch_core::info_request::Ask, String> {
    let (mut secret, mut file, mut hint, mut names) = (false, false, None, Vec::new());
    let mut words = argument.split_whitespace();
    while let Some(word) = words.next() {
        match word {
            "--secret" => secret = true,
            "--file" => file = true,
            "--hint" => {
                let name = words
                    .next()
                    .ok_or("`@ask --hint` needs a provider: aws, gcp, azure or kubernetes")?;
                hint = Some(name.parse::<orch_core::info_request::Hint>()?);
            }
            key => names.push(key.to_owned()),
        }
    }
    orch_core::info_request::AskFile {
        keys: names
            .into_iter()
            .map(|name| orch_core::info_request::AskedKey {
                name,
                secret,
                optional: false,
                file,
                description: None,
            })
            .collect(),
        hint,
        reason: None,
    }
    .resolve()
    .map_err(|e| format!("`@ask`: {e}"))
}

/// The directives `sim` knows; any other `@word` at the start of a line is prose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Directive {
    Write,
    Append,
    Replace,
    Delete,
    Run,
    Fail,
    Sleep,
    Say,
    Answer,
    Cost,
    Ask,
    Plan,
    End,
}

const DIRECTIVES: &[(&str, Directive)] = &[
    ("write", Directive::Write),
    ("append", Directive::Append),
    ("replace", Directive::Replace),
    ("delete", Directive::Delete),
    ("run", Directive::Run),
    ("fail", Directive::Fail),
    ("sleep", Directive::Sleep),
    ("say", Directive::Say),
    ("answer", Directive::Answer),
    ("cost", Directive::Cost),
    ("ask", Directive::Ask),
    ("plan", Directive::Plan),
    ("end", Directive::End),
];

/// `Some((name, directive, argument))` when `line` starts with a known `@directive`; the
/// argument is trimmed. Leading whitespace is allowed so that indented prompts still work.
fn split_directive(line: &str) -> Option<(&'static str, Directive, &str)> {
    let rest = line.trim_start().strip_prefix('@')?;
    let (word, argument) = match rest.split_once(char::is_whitespace) {
        Some((word, argument)) => (word, argument.trim()),
        None => (rest.trim_end(), ""),
    };
    let (name, directive) = DIRECTIVES.iter().find(|(name, _)| *name == word)?;
    Some((name, *directive, argument))
}

/// The one path a `@write`, `@append` or `@delete` takes. Paths with spaces are refused because
/// a second word is far more often content typed on the wrong line than a real file name.
fn single_path(directive: &str, argument: &str) -> Result<String, String> {
    let mut words = argument.split_whitespace();
    match (words.next(), words.next()) {
        (Some(path), None) => Ok(path.to_owned()),
        (None, _) => Err(format!(
            "`@{directive}` needs a path relative to the workdir, such as `@{directive} src/lib.rs`"
        )),
        (Some(_), Some(_)) => Err(format!(
            "`@{directive}` takes one path without spaces; got `{argument}` (put file content on the lines after it)"
        )),
    }
}

/// `<path> <old> => <new>`: the path is the first word, `old` runs up to the first `=>`, and
/// both texts are trimmed. An empty `new` deletes `old`.
fn parse_replace(argument: &str) -> Result<Instruction, String> {
    const USAGE: &str = "write it as `@replace <path> <old text> => <new text>`";
    let (path, texts) = argument
        .split_once(char::is_whitespace)
        .ok_or_else(|| format!("`@replace` needs a path and texts; {USAGE}"))?;
    let (old, new) = texts
        .split_once("=>")
        .ok_or_else(|| format!("`@replace` has no `=>`; {USAGE}"))?;
    let old = old.trim();
    if old.is_empty() {
        return Err(format!("`@replace` has no text before `=>`; {USAGE}"));
    }
    Ok(Instruction::Replace {
        path: path.to_owned(),
        old: old.to_owned(),
        new: new.trim().to_owned(),
    })
}

/// The content lines up to the next `@end` line, each ending with a newline; `None` when the
/// prompt ends first.
fn body<'a>(lines: &mut impl Iterator<Item = (usize, &'a str)>) -> Option<String> {
    let mut content = String::new();
    for (_, line) in lines {
        if line.trim() == "@end" {
            return Some(content);
        }
        content.push_str(line);
        content.push('\n');
    }
    None
}

#[cfg(test)]
mod tests {
    use expect_test::{expect, Expect};

    use super::parse;

    fn check(prompt: &str, expected: Expect) {
        let actual = match parse(prompt) {
            Ok(instructions) => instructions
                .iter()
                .map(|instruction| format!("{instruction:?}\n"))
                .collect::<String>(),
            Err(error) => format!("error: {error}\n"),
        };
        expected.assert_eq(&actual);
    }

    #[test]
    fn a_prompt_of_plain_prose_has_no_instructions() {
        check(
            "Write the changelog.\n@alice please review\nsend mail to x@y.z\n",
            expect![""],
        );
    }

    #[test]
    fn write_and_append_keep_their_content_lines_verbatim() {
        check(
            "Intro prose.\n@write src/a.rs\nfn a() {}\n\n    indented\n@end\n  @append NOTES.md\n- done\n  @end  \n",
            expect![[r#"
                Write { path: "src/a.rs", content: "fn a() {}\n\n    indented\n" }
                Append { path: "NOTES.md", content: "- done\n" }
            "#]],
        );
    }

    #[test]
    fn an_empty_body_writes_an_empty_file() {
        check(
            "@write empty.txt\n@end",
            expect![[r#"
                Write { path: "empty.txt", content: "" }
            "#]],
        );
    }

    #[test]
    fn one_line_directives_take_the_rest_of_the_line() {
        check(
            "@replace src/a.rs let x = 1; => let x = 2;\n@replace a.txt drop me =>\n@delete old.txt\n@run cargo test --all\n@fail the build is red\n@fail\n@sleep 250\n@say All done.",
            expect![[r#"
                Replace { path: "src/a.rs", old: "let x = 1;", new: "let x = 2;" }
                Replace { path: "a.txt", old: "drop me", new: "" }
                Delete { path: "old.txt" }
                Run { command: "cargo test --all" }
                Fail { message: "the build is red" }
                Fail { message: "the prompt asked sim to fail (`@fail`)" }
                Sleep { millis: 250 }
                Say { text: "All done." }
            "#]],
        );
    }

    #[test]
    fn answer_lines_are_kept_verbatim_and_an_empty_one_is_refused() {
        check(
            "@answer {\"verdict\": \"approve\", \"reasons\": []}",
            expect![[r#"
                Answer { text: "{\"verdict\": \"approve\", \"reasons\": []}" }
            "#]],
        );
        check(
            "@answer",
            expect![[r#"
                error: prompt line 1: `@answer` needs text, such as `@answer {"verdict": "approve"}`
            "#]],
        );
    }

    #[test]
    fn a_write_without_end_is_refused_with_its_line() {
        check(
            "prose\n@write a.txt\nhello",
            expect![[r#"
                error: prompt line 2: `@write a.txt` has no closing `@end` line; end the file's content with a line `@end`
            "#]],
        );
    }

    #[test]
    fn a_stray_end_is_refused() {
        check(
            "@end",
            expect![[r#"
                error: prompt line 1: `@end` without an open `@write`, `@append` or `@plan`
            "#]],
        );
    }

    #[test]
    fn content_on_the_write_line_is_refused() {
        check(
            "@write a.txt hello world\n@end",
            expect![[r#"
                error: prompt line 1: `@write` takes one path without spaces; got `a.txt hello world` (put file content on the lines after it)
            "#]],
        );
    }

    #[test]
    fn malformed_one_line_directives_say_how_to_write_them() {
        check(
            "@delete",
            expect![[r#"
                error: prompt line 1: `@delete` needs a path relative to the workdir, such as `@delete src/lib.rs`
            "#]],
        );
        check(
            "@replace a.txt old new",
            expect![[r#"
                error: prompt line 1: `@replace` has no `=>`; write it as `@replace <path> <old text> => <new text>`
            "#]],
        );
        check(
            "@replace a.txt => new",
            expect![[r#"
                error: prompt line 1: `@replace` has no text before `=>`; write it as `@replace <path> <old text> => <new text>`
            "#]],
        );
        check(
            "@sleep 1s",
            expect![[r#"
                error: prompt line 1: `@sleep` takes a whole number of milliseconds, such as `@sleep 250`; got `1s`
            "#]],
        );
        check(
            "@run",
            expect![[r#"
                error: prompt line 1: `@run` needs a command, such as `@run cargo test`
            "#]],
        );
        check(
            "@say   ",
            expect![[r#"
                error: prompt line 1: `@say` needs text, such as `@say The tests pass.`
            "#]],
        );
    }
}
