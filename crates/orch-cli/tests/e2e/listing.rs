//! `orch task list` for people (issue 11, item 7): newest first, a default limit, `--label`,
//! one line per task with the reason in its own column, colour only on a terminal and never
//! with NO_COLOR.

use crate::support::{int, Home, ORCH};

fn ids(listed: &serde_json::Value) -> Vec<i64> {
    listed
        .as_array()
        .expect("a list")
        .iter()
        .map(|t| int(t, "id"))
        .collect()
}

#[test]
fn the_list_is_newest_first_limited_and_filtered_by_label() {
    let home = Home::new();
    let file = home.write(
        "many.yml",
        &format!(
            "tasks:\n{}",
            (0..60)
                .map(|i| {
                    let label = if i % 10 == 0 {
                        "labels: [docs]"
                    } else {
                        "labels: []"
                    };
                    format!("  - {{id: t{i}, title: T{i}, {label}}}\n")
                })
                .collect::<String>()
        ),
    );
    home.json(&["run", file.to_str().unwrap(), "--json"]);
    let all = ids(&home.json(&["task", "list", "--all", "--json"]));
    assert_eq!(all.len(), 60);
    assert!(all.windows(2).all(|w| w[0] > w[1]), "newest first: {all:?}");
    let default = ids(&home.json(&["task", "list", "--json"]));
    assert_eq!(default, all[..50].to_vec(), "the latest 50 by default");
    let three = ids(&home.json(&["task", "list", "--limit", "3", "--json"]));
    assert_eq!(three, all[..3].to_vec());
    let docs = home.json(&["task", "list", "--label", "docs", "--json"]);
    assert_eq!(ids(&docs).len(), 6, "{docs}");
    assert!(docs
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["labels"] == serde_json::json!(["docs"])));
    let zero = home.run(&["task", "list", "--limit", "0"]);
    zero.expect_code(2, "--limit 0");

    let table = home.run(&["task", "list", "--limit", "2"]);
    table.expect_code(0, "task list");
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert_eq!(
        lines.len(),
        3,
        "a header and one line per task: {}",
        table.stdout
    );
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("REASON"),
        "{}",
        lines[0]
    );
    assert!(!table.stdout.contains('\x1b'), "no colour into a pipe");
    assert!(table.stderr.contains("--all"), "{}", table.stderr);
    let forced = home.run(&["task", "list", "--limit", "2", "--color", "always"]);
    assert!(forced.stdout.contains('\x1b'), "{}", forced.stdout);
}

/// Run `orch` on a pseudo-terminal (`script`), so `--color auto` sees a terminal.
fn on_a_terminal(home: &Home, args: &str, no_color: bool) -> String {
    let line = format!("{ORCH} --home {} {args}", home.path().display());
    let mut command = std::process::Command::new("script");
    command
        .args(["-qec", &line, "/dev/null"])
        .current_dir(home.path())
        .env("COLUMNS", "80")
        .env_remove("NO_COLOR");
    if no_color {
        command.env("NO_COLOR", "1");
    }
    let out = command.output().expect("run script(1)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn colour_on_a_terminal_respects_no_color_and_cuts_to_the_width() {
    let home = Home::new();
    home.json(&["task", "add", &"a very long title ".repeat(8), "--json"]);
    let coloured = on_a_terminal(&home, "task list", false);
    assert!(coloured.contains('\x1b'), "{coloured:?}");
    let plain = on_a_terminal(&home, "task list", true);
    assert!(!plain.contains('\x1b'), "{plain:?}");
    for line in plain.lines() {
        assert!(line.trim_end().chars().count() <= 80, "{line:?}");
    }
    assert!(plain.contains('…'), "{plain:?}");
}
