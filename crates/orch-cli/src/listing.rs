//! `orch task list` for people: one line per task, newest first, the status coloured on a
//! terminal, the reason in its own column, title and reason cut to the terminal's width.

use std::io::IsTerminal;
use std::sync::OnceLock;

use console::Style;
use serde_json::Value;

use crate::cli::ColorChoice;

static COLOR: OnceLock<ColorChoice> = OnceLock::new();

/// Record `--color` (once, at start).
pub fn set_color(choice: ColorChoice) {
    let _ = COLOR.set(choice);
}

/// Whether output to a stream that is (or is not) a terminal gets colour: `--color always` or
/// `never` decide; `auto` colours a terminal unless `NO_COLOR` is set (to anything non-empty).
pub fn color_for(is_terminal: bool) -> bool {
    match COLOR.get().copied().unwrap_or(ColorChoice::Auto) {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        }
    }
}

/// Whether stderr (logs, progress) gets colour.
pub fn stderr_color() -> bool {
    color_for(std::io::stderr().is_terminal())
}

fn status_style(status: &str) -> Style {
    match status {
        "done" => Style::new().green(),
        "failed" => Style::new().red().bold(),
        "needs_review" | "blocked" => Style::new().yellow(),
        "running" => Style::new().cyan(),
        "cancelled" => Style::new().dim(),
        "awaiting_approval" | "awaiting_input" => Style::new().magenta(),
        _ => Style::new(),
    }
}

/// One text on one line: newlines and tabs become spaces.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The lines of the task list (header first), each at most `width` columns when given.
pub fn task_lines(tasks: &[Value], width: Option<usize>, color: bool) -> Vec<String> {
    let header = ["ID", "STATUS", "PRI", "TRIES", "NEEDS", "TITLE", "REASON"];
    let rows: Vec<[String; 7]> = tasks
        .iter()
        .map(|task| {
            let text = |key: &str| task[key].as_str().map(one_line).unwrap_or_default();
            [
                task["id"].to_string(),
                text("status"),
                task["priority"].to_string(),
                format!("{}/{}", task["attempts_used"], task["max_attempts"]),
                crate::output::ids(&task["needs"]),
                text("title"),
                text("status_reason"),
            ]
        })
        .collect();
    let measure = console::measure_text_width;
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(measure(cell));
        }
    }
    // The fixed columns take what they need; title and reason share the rest.
    if let Some(width) = width {
        let fixed: usize = widths[..5].iter().map(|w| w + 2).sum();
        let left = width.saturating_sub(fixed + 2).max(20);
        let (title, reason) = (widths[5], widths[6]);
        if title + reason > left {
            let reason_share = if reason == header[6].len() {
                reason
            } else {
                (left / 3).max(header[6].len()).min(reason)
            };
            widths[5] = left
                .saturating_sub(reason_share)
                .max(header[5].len())
                .min(title);
            widths[6] = left.saturating_sub(widths[5]).max(header[6].len());
        }
    }
    let line = |cells: &[String], styled: Option<&Style>| -> String {
        let mut out = String::new();
        for (index, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            let cut = console::truncate_str(cell, *w, "…");
            let pad = w.saturating_sub(measure(&cut));
            let shown = match (index, styled) {
                (1, Some(style)) => style.apply_to(cut.as_ref()).force_styling(true).to_string(),
                _ => cut.into_owned(),
            };
            out.push_str(&shown);
            if index + 1 < cells.len() {
                out.push_str(&" ".repeat(pad + 2));
            }
        }
        out.trim_end().to_owned()
    };
    let mut lines = Vec::with_capacity(rows.len() + 1);
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    let head = line(&header, None);
    lines.push(if color {
        Style::new()
            .bold()
            .apply_to(head)
            .force_styling(true)
            .to_string()
    } else {
        head
    });
    for row in &rows {
        let style = color.then(|| status_style(&row[1]));
        lines.push(line(row, style.as_ref()));
    }
    lines
}

/// The terminal's width if stdout is one.
pub fn stdout_width() -> Option<usize> {
    if !std::io::stdout().is_terminal() {
        return None;
    }
    console::Term::stdout()
        .size_checked()
        .map(|(_, cols)| usize::from(cols))
        .or_else(|| std::env::var("COLUMNS").ok()?.parse().ok())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn task(id: i64, status: &str, title: &str, reason: Option<&str>) -> Value {
        json!({"id": id, "status": status, "priority": 0, "attempts_used": 1, "max_attempts": 3,
               "needs": [], "title": title, "status_reason": reason})
    }

    #[test]
    fn lines_fit_the_width_and_keep_one_line_per_task() {
        let tasks = vec![
            task(
                2,
                "failed",
                &"a long title ".repeat(10),
                Some("exit 1\nsecond line of it"),
            ),
            task(1, "done", "short", None),
        ];
        let lines = task_lines(&tasks, Some(80), false);
        assert_eq!(lines.len(), 3);
        for line in &lines {
            assert!(console::measure_text_width(line) <= 80, "{line}");
        }
        assert!(
            lines[1].contains('…') && lines[1].contains("exit 1"),
            "{}",
            lines[1]
        );
        assert!(lines[1].starts_with("2   failed"), "{}", lines[1]);
        let plain = task_lines(&tasks, None, false);
        assert!(
            plain[1].contains("exit 1 second line of it"),
            "{}",
            plain[1]
        );
        assert!(!plain.iter().any(|l| l.contains('\x1b')));
        let coloured = task_lines(&tasks, None, true);
        assert!(coloured[1].contains('\x1b'));
    }
}
