//! Comments on lines of a task's diff, sent to its agent as one follow-up (`reply`): the
//! dashboard's review of a change. Each comment names `file:line` (the new file's line, or the
//! old file's for a removed line) and the comment; together they become the reply's message,
//! which the next run gives the agent when it resumes its session.

use orch_core::{FieldError, ReplyMessage, Status, TaskId};

use crate::{App, Result};

/// Most comments in one follow-up.
pub const MAX_COMMENTS: usize = 200;
/// Most characters of one comment.
pub const MAX_COMMENT_CHARS: usize = 8_000;
/// Most characters of a commented file's path.
pub const MAX_PATH_CHARS: usize = 1_024;

/// Which side of the diff a commented line is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// A line of the changed file (added or unchanged): its number in the new file.
    New,
    /// A removed line: its number in the old file.
    Old,
}

impl Side {
    /// `new` or `old` (as the dashboard's rows say).
    pub fn parse(raw: &str) -> Result<Side, FieldError> {
        match raw {
            "new" | "" => Ok(Side::New),
            "old" => Ok(Side::Old),
            other => Err(FieldError::new(
                "side",
                format!("`{other}` is not a side of the diff; use `new` or `old`"),
            )),
        }
    }
}

/// One checked comment on a line of the diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffComment {
    path: String,
    line: u32,
    side: Side,
    text: String,
}

impl DiffComment {
    /// Check a comment: a path without control characters, a line from 1, a comment that is
    /// not blank, each within its limit.
    pub fn parse(path: &str, line: u32, side: Side, text: &str) -> Result<DiffComment, FieldError> {
        let path = path.trim();
        if path.is_empty() {
            return Err(FieldError::new("path", "the commented file is missing"));
        }
        if path.chars().count() > MAX_PATH_CHARS {
            return Err(FieldError::new(
                "path",
                format!("the file's path is longer than {MAX_PATH_CHARS} characters"),
            ));
        }
        if path.chars().any(char::is_control) {
            // A newline in a path would let a comment forge further `file:line` headings.
            return Err(FieldError::new(
                "path",
                "the file's path has a control character (a newline or a tab); comment on the file from its diff",
            ));
        }
        if line == 0 {
            return Err(FieldError::new("line", "lines are numbered from 1"));
        }
        let text = text.trim();
        if text.is_empty() {
            return Err(FieldError::new(
                "comment",
                format!("the comment on {path}:{line} is empty; say what should change"),
            ));
        }
        if text.chars().count() > MAX_COMMENT_CHARS {
            return Err(FieldError::new(
                "comment",
                format!(
                    "the comment on {path}:{line} is longer than {MAX_COMMENT_CHARS} characters"
                ),
            ));
        }
        Ok(DiffComment {
            path: path.to_owned(),
            line,
            side,
            text: text.to_owned(),
        })
    }

    /// The file.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The line.
    pub fn line(&self) -> u32 {
        self.line
    }

    /// The side.
    pub fn side(&self) -> Side {
        self.side
    }

    /// The comment.
    pub fn text(&self) -> &str {
        &self.text
    }
}

/// The follow-up message for `comments`, in file and line order:
///
/// ```text
/// Review comments on your change. Address each one, then finish as before.
///
/// src/main.rs:12
/// Rename `x` to `count`.
///
/// src/lib.rs:4 (a removed line; line 4 of the old file)
/// Keep this check.
/// ```
///
/// `extra` (a general remark typed with them) comes first when given.
pub fn compose(comments: &[DiffComment], extra: Option<&str>) -> Result<ReplyMessage, FieldError> {
    if comments.is_empty() {
        return Err(FieldError::new(
            "comments",
            "no comment to send; click a line of the diff and write one",
        ));
    }
    if comments.len() > MAX_COMMENTS {
        return Err(FieldError::new(
            "comments",
            format!(
                "{} comments; send at most {MAX_COMMENTS} at once",
                comments.len()
            ),
        ));
    }
    let mut sorted: Vec<&DiffComment> = comments.iter().collect();
    sorted.sort_by(|a, b| {
        (a.path.as_str(), a.line, a.side == Side::Old).cmp(&(
            b.path.as_str(),
            b.line,
            b.side == Side::Old,
        ))
    });
    let mut message =
        String::from("Review comments on your change. Address each one, then finish as before.\n");
    if let Some(extra) = extra.map(str::trim).filter(|e| !e.is_empty()) {
        message.push('\n');
        message.push_str(extra);
        message.push('\n');
    }
    for comment in sorted {
        message.push('\n');
        message.push_str(&comment.path);
        message.push(':');
        message.push_str(&comment.line.to_string());
        if comment.side == Side::Old {
            message.push_str(&format!(
                " (a removed line; line {} of the old file)",
                comment.line
            ));
        }
        message.push('\n');
        message.push_str(&comment.text);
        message.push('\n');
    }
    ReplyMessage::parse(message)
}

impl App {
    /// Send `comments` on the task's diff to its agent as one follow-up run (see
    /// [`App::reply`]); the task must be finished and have had an agent session.
    pub async fn comment_on_diff(
        &self,
        task: TaskId,
        comments: &[DiffComment],
        extra: Option<&str>,
        actor: &str,
    ) -> Result<Status> {
        let message = compose(comments, extra)?;
        self.reply(task, &message, actor).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_are_checked() {
        assert!(DiffComment::parse("a.rs", 1, Side::New, "fix").is_ok());
        assert_eq!(
            DiffComment::parse(" ", 1, Side::New, "x")
                .unwrap_err()
                .field,
            "path"
        );
        assert_eq!(
            DiffComment::parse("a.rs", 0, Side::New, "x")
                .unwrap_err()
                .field,
            "line"
        );
        assert_eq!(
            DiffComment::parse("a.rs", 3, Side::New, "  ")
                .unwrap_err()
                .field,
            "comment"
        );
        let forged = DiffComment::parse("a.rs\nb.rs:1", 1, Side::New, "x").unwrap_err();
        assert!(forged.reason.contains("control character"), "{forged}");
        let long = "x".repeat(MAX_COMMENT_CHARS + 1);
        assert!(DiffComment::parse("a.rs", 1, Side::New, &long).is_err());
        assert_eq!(Side::parse("old").unwrap(), Side::Old);
        assert!(Side::parse("left").is_err());
    }

    #[test]
    fn the_message_lists_comments_by_file_and_line() {
        let comments = [
            DiffComment::parse("src/main.rs", 12, Side::New, "Rename `x`.").unwrap(),
            DiffComment::parse("src/lib.rs", 4, Side::Old, "Keep this check.").unwrap(),
            DiffComment::parse("src/lib.rs", 2, Side::New, "<script>alert(1)</script>").unwrap(),
        ];
        let message = compose(&comments, Some("Looks close.")).unwrap();
        assert_eq!(
            message.as_str(),
            "Review comments on your change. Address each one, then finish as before.\n\
             \nLooks close.\n\
             \nsrc/lib.rs:2\n<script>alert(1)</script>\n\
             \nsrc/lib.rs:4 (a removed line; line 4 of the old file)\nKeep this check.\n\
             \nsrc/main.rs:12\nRename `x`.\n"
        );
        assert!(compose(&[], None).is_err());
    }
}
