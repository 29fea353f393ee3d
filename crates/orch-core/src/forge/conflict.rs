//! The prompt of a conflict follow-up (issue 12): orch has merged the pull request's base into
//! the task's branch before the run (`orch_worker::workspace::base_merge`), so the agent is
//! told what was merged and, when the merge conflicted, which files hold conflict markers and
//! their text, to resolve them keeping both sides' intent.

use super::feedback::PullFacts;

/// What merging the base into the task's branch did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseMergeFacts {
    /// The base commit merged.
    pub base_commit: String,
    /// Whether a merge commit was made (false: the base was merged already).
    pub merged: bool,
    /// The files left with conflict markers, each with its text (clipped; empty when binary or
    /// not shown).
    pub conflicted: Vec<(String, String)>,
}

/// The follow-up's prompt once the base is merged into the branch.
pub fn merged_base_prompt(pull: &PullFacts, merge: &BaseMergeFacts) -> String {
    let short = merge.base_commit.get(..12).unwrap_or(&merge.base_commit);
    let mut prompt = format!(
        "Pull request #{} of your branch `{}` conflicted with its base branch `{}`. orch has \
         merged `{}` (commit {short}) into your branch.\n",
        pull.number, pull.head_branch, pull.base_branch, pull.base_branch
    );
    if merge.conflicted.is_empty() {
        prompt.push_str(
            "The merge was clean. Check that your change still fits the base's new code, fix \
             what does not, then finish as before.\n",
        );
        return prompt;
    }
    prompt.push_str(
        "These files have conflict markers (<<<<<<<, =======, >>>>>>>) to resolve. Edit each \
         so it keeps both sides' intent and no marker is left, then finish as before:\n",
    );
    for (path, _) in &merge.conflicted {
        prompt.push_str(&format!("- {path}\n"));
    }
    for (path, text) in &merge.conflicted {
        if text.is_empty() {
            continue;
        }
        prompt.push_str(&format!("\n{path} now reads:\n{}\n", text.trim_end()));
    }
    prompt
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forge::feedback::{Mergeability, PullState};

    fn pull() -> PullFacts {
        PullFacts {
            number: 7,
            state: PullState::Open,
            mergeable: Mergeability::Conflicting,
            head_sha: "b".repeat(40),
            head_branch: "orch/3-notes".into(),
            base_branch: "main".into(),
            checks: Vec::new(),
            reviews: Vec::new(),
            review_comments: Vec::new(),
        }
    }

    #[test]
    fn a_conflicted_merge_lists_each_file_and_its_markers() {
        let merge = BaseMergeFacts {
            base_commit: "a".repeat(40),
            merged: true,
            conflicted: vec![
                (
                    "NOTES.md".into(),
                    "<<<<<<< ours\nmine\n=======\ntheirs\n>>>>>>> theirs\n".into(),
                ),
                ("logo.png".into(), String::new()),
            ],
        };
        let prompt = merged_base_prompt(&pull(), &merge);
        assert!(
            prompt.contains("#7") && prompt.contains("`main`"),
            "{prompt}"
        );
        assert!(prompt.contains("- NOTES.md\n- logo.png\n"), "{prompt}");
        assert!(
            prompt.contains("NOTES.md now reads:\n<<<<<<< ours\nmine\n"),
            "{prompt}"
        );
        assert!(!prompt.contains("logo.png now reads"), "{prompt}");
    }

    #[test]
    fn a_clean_merge_asks_only_for_a_check() {
        let merge = BaseMergeFacts {
            base_commit: "a".repeat(40),
            merged: true,
            conflicted: Vec::new(),
        };
        let prompt = merged_base_prompt(&pull(), &merge);
        assert!(prompt.contains("The merge was clean"), "{prompt}");
        assert!(!prompt.contains("markers"), "{prompt}");
    }
}
