//! Branch names for tasks: `orch/<id>-<slug>`, the slug made of lowercase ascii letters, digits
//! and single dashes, at most 40 characters.

use expect_test::{expect, Expect};
use orch_worker::workspace::branch_name;

fn check(task_id: i64, title: &str, expected: Expect) {
    expected.assert_eq(&branch_name(task_id, title));
}

#[test]
fn a_plain_title_is_lowercased_and_dashed() {
    check(7, "Fix the Login Bug", expect!["orch/7-fix-the-login-bug"]);
}

#[test]
fn punctuation_runs_collapse_to_one_dash_and_are_trimmed() {
    check(
        12,
        "  [WIP] feat: add --dry-run (again!!)  ",
        expect!["orch/12-wip-feat-add-dry-run-again"],
    );
}

#[test]
fn existing_dashes_and_underscores_become_single_dashes() {
    check(
        3,
        "snake_case -- kebab-case",
        expect!["orch/3-snake-case-kebab-case"],
    );
}

#[test]
fn accented_letters_are_transliterated() {
    check(4, "Café naïve résumé", expect!["orch/4-cafe-naive-resume"]);
}

#[test]
fn a_title_in_another_script_gives_a_readable_slug() {
    check(5, "Здравствуй, мир", expect!["orch/5-zdravstvui-mir"]);
    check(
        10,
        "日本語のタイトル",
        expect!["orch/10-ri-ben-yu-notaitoru"],
    );
    check(
        11,
        "Straße über Größe",
        expect!["orch/11-strasse-uber-grosse"],
    );
}

#[test]
fn a_title_without_letters_or_digits_gives_the_bare_id() {
    check(5, "!!! ???", expect!["orch/5"]);
    check(12, "🚀", expect!["orch/12-rocket"]);
    check(6, "", expect!["orch/6"]);
}

#[test]
fn a_long_title_is_cut_to_forty_characters() {
    check(
        8,
        "Refactor the scheduler loop so that leases are renewed before they expire",
        expect!["orch/8-refactor-the-scheduler-loop-so-that-leas"],
    );
}

#[test]
fn a_cut_that_lands_on_a_dash_drops_it() {
    // The 40th character of this slug is the dash after `abcdefghi`.
    check(
        9,
        "abcdefghi abcdefghi abcdefghi abcdefghi xyz",
        expect!["orch/9-abcdefghi-abcdefghi-abcdefghi-abcdefghi"],
    );
    check(
        10,
        "abcdefghi abcdefghi abcdefghi abcdefghij xyz",
        expect!["orch/10-abcdefghi-abcdefghi-abcdefghi-abcdefghij"],
    );
}

#[test]
fn digits_are_kept() {
    check(
        11,
        "Upgrade to Rust 1.85 (2024 edition)",
        expect!["orch/11-upgrade-to-rust-1-85-2024-edition"],
    );
}
