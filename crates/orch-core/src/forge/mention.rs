//! `@orch` mentions (issue 12): a comment mentioning orch's handle on an issue or pull request
//! linked to a task starts a follow-up run of that task with the comment as its prompt, once
//! per comment.
//!
//! **Who may direct orch.** GitHub says in each comment's `author_association` how its author
//! relates to the repository. Only `OWNER`, `MEMBER` and `COLLABORATOR` (people with write
//! access, or members of the owning organisation) may start work; a comment from anyone else
//! (`CONTRIBUTOR`, `FIRST_TIME_CONTRIBUTOR`, `FIRST_TIMER`, `MANNEQUIN`, `NONE`, or a value
//! GitHub adds later) is refused. A payload without the field (an older GitHub Enterprise
//! Server, or a hand-made delivery) is judged by the webhook's signature alone: whoever holds
//! the secret may direct orch.
//!
//! The comment is only text in a prompt: it reaches the agent of the task's run, confined like
//! every step, never an orch command.

/// The associations allowed to direct orch.
pub const ALLOWED_ASSOCIATIONS: [&str; 3] = ["OWNER", "MEMBER", "COLLABORATOR"];

/// Whether a comment with this `author_association` may start work; the error says why not.
pub fn may_direct(association: Option<&str>) -> Result<(), String> {
    match association {
        None => Ok(()),
        Some(value) if ALLOWED_ASSOCIATIONS.contains(&value) => Ok(()),
        Some(value) => Err(format!(
            "the comment's author is `{value}` of the repository; only {} may direct orch",
            ALLOWED_ASSOCIATIONS.join(", ")
        )),
    }
}

/// The prompt of the follow-up run a comment starts: who said it, where, and the comment.
pub fn follow_up_message(author: &str, place: &str, comment: &str, url: Option<&str>) -> String {
    let mut message = format!("{author} commented on {place}:\n\n{}", comment.trim_end());
    if let Some(url) = url {
        message.push_str(&format!("\n\n(from {url})"));
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_people_with_write_access_direct_orch() {
        for allowed in [Some("OWNER"), Some("MEMBER"), Some("COLLABORATOR"), None] {
            assert!(may_direct(allowed).is_ok(), "{allowed:?}");
        }
        for refused in ["CONTRIBUTOR", "FIRST_TIME_CONTRIBUTOR", "NONE", "owner", ""] {
            let error = may_direct(Some(refused)).unwrap_err();
            assert!(
                error.contains(refused) && error.contains("COLLABORATOR"),
                "{error}"
            );
        }
    }

    #[test]
    fn the_follow_up_names_the_author_and_the_place() {
        assert_eq!(
            follow_up_message("alice", "o/r#4", "@orch fix it\n", Some("https://x/4")),
            "alice commented on o/r#4:\n\n@orch fix it\n\n(from https://x/4)"
        );
    }
}
