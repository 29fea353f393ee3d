//! Pure renderers of the dashboard: a task's diff, report, agent transcript, a workflow's graph
//! and the usage charts, each from data to an HTML or SVG fragment.
//!
//! Architecture invariant: no I/O, no clock; every byte of input is untrusted (a task writes its
//! diff, report and transcript) and reaches the output only escaped, so what a task wrote can
//! never become markup, script or a link to a `javascript:` URL. The fragments are inserted into
//! pages unescaped (`|safe`), which is why every renderer here has tests with hostile input.

pub mod charts;
pub mod dag;
pub mod diff;
pub mod markdown;
pub mod transcript;

use std::fmt::Write as _;

/// `text` escaped for HTML text and double- or single-quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    push_escaped(&mut out, text);
    out
}

/// Append `text` escaped for HTML text and quoted attribute values.
pub fn push_escaped(out: &mut String, text: &str) {
    // pulldown-cmark-escape's `escape_html` covers `& < > "`; the single quote is escaped too
    // so a fragment is safe in either quoting.
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // NUL and the other C0 controls but tab and newline have no place in a page.
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
}

/// At most `max_chars` characters of `text`, with `…` when cut.
pub fn shorten(text: &str, max_chars: usize) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(max_chars) {
        None => std::borrow::Cow::Borrowed(text),
        Some((at, _)) => std::borrow::Cow::Owned(format!("{}…", &text[..at])),
    }
}

/// A byte count for people: `512 B`, `12.5 KB`, `3.1 MB`.
pub fn human_bytes(bytes: u64) -> String {
    let mut out = String::new();
    if bytes < 1024 {
        let _ = write!(out, "{bytes} B");
    } else if bytes < 1024 * 1024 {
        let _ = write!(out, "{:.1} KB", bytes as f64 / 1024.0);
    } else {
        let _ = write!(out, "{:.1} MB", bytes as f64 / (1024.0 * 1024.0));
    }
    out
}

/// A class name made of `[a-z0-9_-]` only (statuses, agent names used as CSS classes).
pub fn class_token(text: &str) -> String {
    text.chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(40)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_makes_markup_and_quotes_inert() {
        assert_eq!(
            escape(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
        assert_eq!(escape("a\u{0}b\u{1b}[31m"), "a\u{fffd}b\u{fffd}[31m");
    }

    #[test]
    fn shorten_cuts_on_characters() {
        assert_eq!(shorten("héllo", 2), "hé…");
        assert_eq!(shorten("hé", 2), "hé");
    }

    #[test]
    fn class_token_keeps_only_safe_characters() {
        assert_eq!(class_token("Needs_Review"), "needs_review");
        assert_eq!(class_token("x\" onclick=\"y"), "x--onclick--y");
    }
}
