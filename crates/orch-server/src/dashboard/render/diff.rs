//! A unified diff (what `orch task diff` prints: `git diff --binary` or a copy workspace's
//! patch) as HTML: a list of files with their line counts, then one table per file with a row
//! per line, syntax highlighted with syntect's class-based output (the colours are one shared
//! stylesheet, [`stylesheet`], so the page stays small).
//!
//! Every row of a text line has an id and carries its side and line number (`data-side="new"`
//! and the new file's line number, or `data-side="old"` for a removed line), and every file's
//! section carries its path, so a comment can name `file:line`. Past [`DiffLimits`] the rest is
//! counted but not drawn, and [`RenderedDiff::truncated`] says so.

use std::fmt::Write as _;
use std::sync::OnceLock;

use syntect::highlighting::ThemeSet;
use syntect::html::{css_for_theme_with_class_style, line_tokens_to_classed_spans, ClassStyle};
use syntect::parsing::{ParseState, ScopeStack, SyntaxReference, SyntaxSet};

use super::{escape, push_escaped, shorten};

/// The class prefix of highlighted tokens, so a grammar's scope names cannot collide with the
/// page's own classes.
const CLASS_STYLE: ClassStyle = ClassStyle::SpacedPrefixed { prefix: "hl-" };

/// How much of a diff is drawn.
#[derive(Debug, Clone, Copy)]
pub struct DiffLimits {
    /// Most lines (context, added, removed) drawn over all files.
    pub max_lines: usize,
    /// Longer lines are cut to this many characters (and not highlighted).
    pub max_line_chars: usize,
}

impl Default for DiffLimits {
    fn default() -> Self {
        DiffLimits {
            max_lines: 2_000,
            max_line_chars: 400,
        }
    }
}

/// How a file changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileChange {
    /// It is new.
    Added,
    /// It was deleted.
    Deleted,
    /// It was renamed (perhaps changed too).
    Renamed,
    /// Its content or mode changed.
    Modified,
}

impl FileChange {
    /// The word shown in the file list, also its CSS class.
    pub fn as_str(self) -> &'static str {
        match self {
            FileChange::Added => "added",
            FileChange::Deleted => "deleted",
            FileChange::Renamed => "renamed",
            FileChange::Modified => "modified",
        }
    }
}

/// One file of the diff, for the file list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffFile {
    /// The path (the new one; the old one for a deleted file), as text: untrusted, escape it.
    pub path: String,
    /// The id of its section in [`RenderedDiff::html`] (`file-N`).
    pub anchor: String,
    /// How it changed.
    pub change: FileChange,
    /// Lines added.
    pub added: u64,
    /// Lines removed.
    pub removed: u64,
    /// A binary file (no lines shown).
    pub binary: bool,
}

/// A diff drawn as HTML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedDiff {
    /// Every file of the diff, drawn or not.
    pub files: Vec<DiffFile>,
    /// One `<section class="diff-file">` per drawn file.
    pub html: String,
    /// Why not everything is drawn, when it is not (plain text).
    pub truncated: Option<String>,
}

/// The stylesheet of the highlighted tokens (a light theme shipped with syntect).
pub fn stylesheet() -> &'static str {
    static CSS: OnceLock<String> = OnceLock::new();
    CSS.get_or_init(|| {
        let themes = ThemeSet::load_defaults();
        themes
            .themes
            .get("InspiredGitHub")
            .and_then(|theme| css_for_theme_with_class_style(theme, CLASS_STYLE).ok())
            .unwrap_or_default()
    })
}

fn syntaxes() -> &'static SyntaxSet {
    static SET: OnceLock<SyntaxSet> = OnceLock::new();
    SET.get_or_init(SyntaxSet::load_defaults_newlines)
}

/// The grammar for `path`, by extension or by whole file name (`Makefile`); none for plain text.
fn syntax_for(path: &str) -> Option<&'static SyntaxReference> {
    let set = syntaxes();
    let name = path.rsplit('/').next().unwrap_or(path);
    let by_extension = name
        .rsplit_once('.')
        .and_then(|(_, extension)| set.find_syntax_by_extension(extension));
    by_extension
        .or_else(|| set.find_syntax_by_extension(name))
        .filter(|syntax| syntax.name != "Plain Text")
}

/// Draw `patch` (bytes as `git diff` printed them; invalid UTF-8 is replaced).
pub fn render(patch: &[u8], limits: DiffLimits) -> RenderedDiff {
    let mut drawer = Drawer {
        limits,
        files: Vec::new(),
        html: String::new(),
        current: None,
        lines_total: 0,
        lines_drawn: 0,
        cut_lines: 0,
    };
    let text = String::from_utf8_lossy(patch);
    let mut lines = text.split('\n').peekable();
    // Lines still expected in the current hunk (old side, new side).
    let mut hunk: Option<(u64, u64)> = None;
    let mut saw_git_header = false;
    while let Some(raw) = lines.next() {
        if raw.is_empty() && lines.peek().is_none() {
            break;
        }
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if let Some((old_left, new_left)) = hunk.as_mut() {
            let (kind, content) = line.split_at(line.len().min(1));
            let in_hunk = match kind {
                " " | "" => {
                    *old_left = old_left.saturating_sub(1);
                    *new_left = new_left.saturating_sub(1);
                    drawer.line(LineKind::Context, content);
                    true
                }
                "-" => {
                    *old_left = old_left.saturating_sub(1);
                    drawer.line(LineKind::Removed, content);
                    true
                }
                "+" => {
                    *new_left = new_left.saturating_sub(1);
                    drawer.line(LineKind::Added, content);
                    true
                }
                "\\" => {
                    drawer.note_row(line);
                    true
                }
                // Not a hunk line: the hunk was shorter than announced; read it as a header.
                _ => false,
            };
            if !in_hunk || hunk == Some((0, 0)) {
                hunk = None;
            }
            if in_hunk {
                continue;
            }
        }
        if line.starts_with("\\ ") {
            // `\ No newline at end of file` after a hunk's last line.
            drawer.note_row(line);
            continue;
        }
        if let Some(rest) = line.strip_prefix("diff --git ") {
            saw_git_header = true;
            drawer.start_file(git_header_path(rest));
        } else if let Some(range) = line.strip_prefix("@@ ") {
            if drawer.current.is_none() {
                drawer.start_file(String::from("(unnamed)"));
            }
            hunk = parse_hunk_header(range).map(|(old_start, old_len, new_start, new_len)| {
                drawer.hunk(line, old_start, new_start);
                (old_len, new_len)
            });
        } else if let Some(name) = line.strip_prefix("--- ") {
            if !saw_git_header || drawer.current.is_none() {
                drawer.start_file(String::new());
            }
            if let Some(path) = header_path(name, "a/") {
                drawer.set_old_path(path);
            } else {
                drawer.set_change(FileChange::Added);
            }
        } else if let Some(name) = line.strip_prefix("+++ ") {
            match header_path(name, "b/") {
                Some(path) => drawer.set_new_path(path),
                None => drawer.set_change(FileChange::Deleted),
            }
        } else if line.starts_with("new file mode") {
            drawer.set_change(FileChange::Added);
        } else if line.starts_with("deleted file mode") {
            drawer.set_change(FileChange::Deleted);
        } else if let Some(name) = line.strip_prefix("rename to ") {
            drawer.set_change(FileChange::Renamed);
            drawer.set_new_path(unquote(name));
        } else if line.starts_with("GIT binary patch")
            || (line.starts_with("Binary files ") && line.ends_with(" differ"))
        {
            drawer.set_binary();
        }
        // `index`, modes, similarity and the base85 lines of a binary patch are not drawn.
    }
    drawer.finish()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineKind {
    Context,
    Added,
    Removed,
}

struct OpenFile {
    index: usize,
    highlighter: Option<Highlighter>,
    /// The section's rows, written into the page when the file ends (its path may come late).
    rows: String,
    old_line: u64,
    new_line: u64,
}

struct Highlighter {
    state: ParseState,
    stack: ScopeStack,
}

struct Drawer {
    limits: DiffLimits,
    files: Vec<DiffFile>,
    html: String,
    current: Option<OpenFile>,
    lines_total: usize,
    lines_drawn: usize,
    cut_lines: usize,
}

impl Drawer {
    fn start_file(&mut self, path: String) {
        self.end_file();
        let index = self.files.len();
        self.files.push(DiffFile {
            path,
            anchor: format!("file-{index}"),
            change: FileChange::Modified,
            added: 0,
            removed: 0,
            binary: false,
        });
        self.current = Some(OpenFile {
            index,
            highlighter: None,
            rows: String::new(),
            old_line: 0,
            new_line: 0,
        });
    }

    fn file(&mut self) -> Option<&mut DiffFile> {
        let index = self.current.as_ref()?.index;
        self.files.get_mut(index)
    }

    fn set_old_path(&mut self, path: String) {
        if let Some(file) = self.file() {
            if file.path.is_empty() {
                file.path = path;
            }
        }
    }

    fn set_new_path(&mut self, path: String) {
        if let Some(file) = self.file() {
            file.path = path;
        }
    }

    fn set_change(&mut self, change: FileChange) {
        if let Some(file) = self.file() {
            file.change = change;
        }
    }

    fn set_binary(&mut self) {
        if let Some(file) = self.file() {
            file.binary = true;
        }
    }

    fn hunk(&mut self, header: &str, old_start: u64, new_start: u64) {
        let Some(path) = self.file().map(|f| f.path.clone()) else {
            return;
        };
        let drawing = self.lines_drawn < self.limits.max_lines;
        let Some(open) = self.current.as_mut() else {
            return;
        };
        open.old_line = old_start;
        open.new_line = new_start;
        // Each hunk starts the grammar afresh: what came before it is not in the diff.
        open.highlighter = syntax_for(&path).map(|syntax| Highlighter {
            state: ParseState::new(syntax),
            stack: ScopeStack::new(),
        });
        if drawing {
            open.rows.push_str("<tr class=\"hunk\"><td colspan=\"3\">");
            push_escaped(&mut open.rows, &shorten(header, self.limits.max_line_chars));
            open.rows.push_str("</td></tr>\n");
        }
    }

    fn note_row(&mut self, text: &str) {
        if self.lines_drawn >= self.limits.max_lines {
            return;
        }
        if let Some(open) = self.current.as_mut() {
            open.rows
                .push_str("<tr class=\"note\"><td></td><td></td><td class=\"code\">");
            push_escaped(&mut open.rows, &shorten(text, self.limits.max_line_chars));
            open.rows.push_str("</td></tr>\n");
        }
    }

    fn line(&mut self, kind: LineKind, content: &str) {
        self.lines_total += 1;
        if let Some(file) = self.file() {
            match kind {
                LineKind::Added => file.added += 1,
                LineKind::Removed => file.removed += 1,
                LineKind::Context => {}
            }
        }
        let drawing = self.lines_drawn < self.limits.max_lines;
        let max_chars = self.limits.max_line_chars;
        let Some(open) = self.current.as_mut() else {
            return;
        };
        let (old, new) = (open.old_line, open.new_line);
        match kind {
            LineKind::Context => {
                open.old_line += 1;
                open.new_line += 1;
            }
            LineKind::Added => open.new_line += 1,
            LineKind::Removed => open.old_line += 1,
        }
        let too_long = content.chars().nth(max_chars).is_some();
        // Removed lines are not fed to the grammar of the new side's state: the two sides
        // interleave, and the new file is what a comment is about.
        let code = match (&mut open.highlighter, too_long, kind) {
            (Some(highlighter), false, LineKind::Context | LineKind::Added) if drawing => {
                match highlighter.line(content) {
                    Some(html) => html,
                    None => {
                        open.highlighter = None;
                        escape(content)
                    }
                }
            }
            _ => escape(&shorten(content, max_chars)),
        };
        if too_long {
            self.cut_lines += 1;
        }
        if !drawing {
            return;
        }
        self.lines_drawn += 1;
        let index = open.index;
        let rows = &mut open.rows;
        let (class, side, number, sign) = match kind {
            LineKind::Context => ("ctx", "new", new, ' '),
            LineKind::Added => ("add", "new", new, '+'),
            LineKind::Removed => ("del", "old", old, '-'),
        };
        let short_side = &side[..1];
        let _ = write!(
            rows,
            "<tr class=\"{class}\" id=\"d{index}-{short_side}{number}\" data-side=\"{side}\" \
             data-line=\"{number}\"><td class=\"ln\">"
        );
        if kind != LineKind::Added {
            let _ = write!(rows, "{old}");
        }
        rows.push_str("</td><td class=\"ln\">");
        if kind != LineKind::Removed {
            let _ = write!(rows, "{new}");
        }
        let _ = writeln!(
            rows,
            "</td><td class=\"code\" data-sign=\"{sign}\">{code}</td></tr>"
        );
    }

    fn end_file(&mut self) {
        let Some(open) = self.current.take() else {
            return;
        };
        let Some(file) = self.files.get(open.index) else {
            return;
        };
        if open.rows.is_empty() && !file.binary && self.lines_drawn >= self.limits.max_lines {
            return;
        }
        let html = &mut self.html;
        let _ = write!(
            html,
            "<section class=\"diff-file {}\" id=\"{}\" data-path=\"{}\">\n<h3 class=\"diff-path\">\
             <span class=\"diff-stat\"><span class=\"added\">+{}</span> \
             <span class=\"removed\">−{}</span></span> <code>{}</code></h3>\n",
            file.change.as_str(),
            file.anchor,
            escape(&file.path),
            file.added,
            file.removed,
            escape(&file.path),
        );
        if file.binary {
            html.push_str("<p class=\"diff-binary\">Binary file, not shown.</p>\n");
        } else if !open.rows.is_empty() {
            html.push_str("<table class=\"diff\"><tbody>\n");
            html.push_str(&open.rows);
            html.push_str("</tbody></table>\n");
        }
        html.push_str("</section>\n");
    }

    fn finish(mut self) -> RenderedDiff {
        self.end_file();
        let mut notes = Vec::new();
        if self.lines_drawn < self.lines_total {
            notes.push(format!(
                "diff truncated: {} of {} lines shown",
                self.lines_drawn, self.lines_total
            ));
        }
        if self.cut_lines > 0 {
            notes.push(format!(
                "{} line(s) longer than {} characters cut",
                self.cut_lines, self.limits.max_line_chars
            ));
        }
        let truncated = (!notes.is_empty()).then(|| {
            format!(
                "{}; `orch task diff` prints the whole change.",
                notes.join("; ")
            )
        });
        RenderedDiff {
            files: self.files,
            html: self.html,
            truncated,
        }
    }
}

impl Highlighter {
    /// One line as HTML whose spans are all closed; `None` when the grammar fails on it.
    fn line(&mut self, content: &str) -> Option<String> {
        let mut html = String::new();
        // Reopen the scopes still open from earlier lines, so every row stands alone.
        let reopened = self.stack.as_slice().len();
        for scope in self.stack.as_slice() {
            html.push_str("<span class=\"");
            for (i, atom) in scope.build_string().split('.').enumerate() {
                if i > 0 {
                    html.push(' ');
                }
                html.push_str("hl-");
                push_escaped(&mut html, atom);
            }
            html.push_str("\">");
        }
        let with_newline = format!("{content}\n");
        let ops = self.state.parse_line(&with_newline, syntaxes()).ok()?;
        let (spans, delta) =
            line_tokens_to_classed_spans(&with_newline, &ops, CLASS_STYLE, &mut self.stack).ok()?;
        html.push_str(&spans);
        let open = reopened as isize + delta;
        for _ in 0..open.max(0) {
            html.push_str("</span>");
        }
        Some(prune_spans(&html.replace('\n', "")))
    }
}

/// Scopes that only say where a token is (`source.rust`, `meta.function`) and that the theme
/// does not colour: their spans are dropped to keep the page small.
fn is_structural(classes: &str) -> bool {
    classes.starts_with("hl-source ") || classes.starts_with("hl-meta ") || classes == "hl-source"
}

/// `html` (only `<span class="...">`, `</span>` and escaped text, as the highlighter writes it)
/// without the spans of structural scopes.
fn prune_spans(html: &str) -> String {
    const OPEN: &str = "<span class=\"";
    const CLOSE: &str = "</span>";
    let mut out = String::with_capacity(html.len());
    let mut kept: Vec<bool> = Vec::new();
    let mut rest = html;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix(OPEN) {
            let Some(end) = after.find("\">") else {
                out.push_str(rest);
                break;
            };
            let keep = !is_structural(&after[..end]);
            if keep {
                out.push_str(&rest[..OPEN.len() + end + 2]);
            }
            kept.push(keep);
            rest = &after[end + 2..];
        } else if let Some(after) = rest.strip_prefix(CLOSE) {
            if kept.pop().unwrap_or(true) {
                out.push_str(CLOSE);
            }
            rest = after;
        } else {
            let next = rest[1..].find('<').map_or(rest.len(), |i| i + 1);
            out.push_str(&rest[..next]);
            rest = &rest[next..];
        }
    }
    out
}

/// `@@ -a,b +c,d @@ ...` → (a, b, c, d); a missing length is 1.
fn parse_hunk_header(range: &str) -> Option<(u64, u64, u64, u64)> {
    let mut parts = range.split_whitespace();
    let old = parts.next()?.strip_prefix('-')?;
    let new = parts.next()?.strip_prefix('+')?;
    let split = |part: &str| -> Option<(u64, u64)> {
        match part.split_once(',') {
            Some((start, len)) => Some((start.parse().ok()?, len.parse().ok()?)),
            None => Some((part.parse().ok()?, 1)),
        }
    };
    let (old_start, old_len) = split(old)?;
    let (new_start, new_len) = split(new)?;
    Some((old_start, old_len, new_start, new_len))
}

/// The path of `diff --git a/P b/P` (quoted or not).
fn git_header_path(rest: &str) -> String {
    if rest.starts_with('"') {
        // `"a/..." "b/..."`: take the second quoted name.
        if let Some(end) = closing_quote(rest) {
            let second = rest[end + 1..].trim_start();
            let name = unquote(second);
            return name.strip_prefix("b/").map(str::to_owned).unwrap_or(name);
        }
    }
    let Some(rest) = rest.strip_prefix("a/") else {
        return rest.to_owned();
    };
    // `a/P b/P` with the same P on both sides (a rename is fixed by `rename to`/`+++`).
    let half = rest.len().saturating_sub(3) / 2;
    if rest.len() >= 3
        && rest.is_char_boundary(half)
        && rest[half..].starts_with(" b/")
        && rest[..half] == rest[half + 3..]
    {
        return rest[..half].to_owned();
    }
    match rest.split_once(" b/") {
        Some((path, _)) => path.to_owned(),
        None => rest.to_owned(),
    }
}

/// The byte index of the quote closing the C-quoted string at the start of `text`.
fn closing_quote(text: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in text.char_indices().skip(1) {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return Some(i),
            _ => {}
        }
    }
    None
}

/// The path of a `--- a/P` or `+++ b/P` line; `None` for `/dev/null`.
fn header_path(name: &str, prefix: &str) -> Option<String> {
    let name = name.strip_suffix('\t').unwrap_or(name);
    if name == "/dev/null" {
        return None;
    }
    let name = unquote(name);
    Some(name.strip_prefix(prefix).map(str::to_owned).unwrap_or(name))
}

/// Undo git's C-style quoting of a path (`"a\tb\303\251"`); an unquoted name is returned as is.
fn unquote(name: &str) -> String {
    let Some(inner) = name.strip_prefix('"').and_then(|n| n.strip_suffix('"')) else {
        return name.to_owned();
    };
    let mut bytes = Vec::with_capacity(inner.len());
    let mut chars = inner.bytes().peekable();
    while let Some(b) = chars.next() {
        if b != b'\\' {
            bytes.push(b);
            continue;
        }
        match chars.next() {
            Some(b'n') => bytes.push(b'\n'),
            Some(b't') => bytes.push(b'\t'),
            Some(b'r') => bytes.push(b'\r'),
            Some(b'a') => bytes.push(7),
            Some(b'b') => bytes.push(8),
            Some(b'f') => bytes.push(12),
            Some(b'v') => bytes.push(11),
            Some(d @ b'0'..=b'7') => {
                let mut value = u32::from(d - b'0');
                for _ in 0..2 {
                    match chars.peek() {
                        Some(&o @ b'0'..=b'7') => {
                            value = value * 8 + u32::from(o - b'0');
                            chars.next();
                        }
                        _ => break,
                    }
                }
                bytes.push(value as u8);
            }
            Some(other) => bytes.push(other),
            None => bytes.push(b'\\'),
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATCH: &str = "diff --git a/src/main.rs b/src/main.rs
index 1111111..2222222 100644
--- a/src/main.rs
+++ b/src/main.rs
@@ -1,3 +1,4 @@
 fn main() {
-    println!(\"old\");
+    println!(\"new\");
+    let x = 1;
 }
diff --git a/notes.txt b/notes.txt
new file mode 100644
index 0000000..3333333
--- /dev/null
+++ b/notes.txt
@@ -0,0 +1 @@
+hello
\\ No newline at end of file
diff --git a/logo.png b/logo.png
new file mode 100644
index 0000000..4444444
GIT binary patch
literal 3
KcmZQz00000

literal 0
HcmV?d00001

";

    #[test]
    fn files_are_listed_with_counts_and_changes() {
        let diff = render(PATCH.as_bytes(), DiffLimits::default());
        let summary: Vec<_> = diff
            .files
            .iter()
            .map(|f| (f.path.as_str(), f.change, f.added, f.removed, f.binary))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("src/main.rs", FileChange::Modified, 2, 1, false),
                ("notes.txt", FileChange::Added, 1, 0, false),
                ("logo.png", FileChange::Added, 0, 0, true),
            ]
        );
        assert_eq!(diff.truncated, None);
        assert!(diff.html.contains("Binary file, not shown."));
    }

    #[test]
    fn rows_carry_side_and_line_numbers_for_comments() {
        let diff = render(PATCH.as_bytes(), DiffLimits::default());
        // The added `let x = 1;` is line 3 of the new file; the removed line is old line 2.
        assert!(diff
            .html
            .contains("id=\"d0-n3\" data-side=\"new\" data-line=\"3\""));
        assert!(diff
            .html
            .contains("id=\"d0-o2\" data-side=\"old\" data-line=\"2\""));
        assert!(diff
            .html
            .contains("id=\"d1-n1\" data-side=\"new\" data-line=\"1\""));
        assert!(diff.html.contains("data-path=\"src/main.rs\""));
    }

    #[test]
    fn rust_is_highlighted_with_classes_and_spans_close_per_row() {
        let diff = render(PATCH.as_bytes(), DiffLimits::default());
        assert!(diff.html.contains("class=\"hl-"), "{}", diff.html);
        assert!(!diff.html.contains("style="), "class-based output only");
        for row in diff.html.lines().filter(|l| l.starts_with("<tr")) {
            assert_eq!(
                row.matches("<span").count(),
                row.matches("</span>").count(),
                "{row}"
            );
        }
        assert!(stylesheet().contains(".hl-"));
    }

    #[test]
    fn hostile_file_names_and_lines_render_inert() {
        let patch = "diff --git a/<script>alert(1)</script>.js b/<script>alert(1)</script>.js
new file mode 100644
--- /dev/null
+++ b/<script>alert(1)</script>.js
@@ -0,0 +1,3 @@
+</td></tr><script>alert(\"x\")</script>
+<a href=\"javascript:alert(1)\">x</a> ' \" onmouseover=alert(1)
+/* <img src=x onerror=alert(1)> */
";
        let diff = render(patch.as_bytes(), DiffLimits::default());
        assert_eq!(diff.files[0].path, "<script>alert(1)</script>.js");
        assert!(!diff.html.contains("<script"), "{}", diff.html);
        assert!(!diff.html.contains("<a "), "{}", diff.html);
        assert!(!diff.html.contains("<img"), "{}", diff.html);
        assert!(!diff.html.contains("\" onmouseover"), "{}", diff.html);
        assert!(diff.html.contains("&lt;script&gt;"));
        // Every tag in the output is one the renderer writes.
        for tag in diff.html.split('<').skip(1) {
            let name: String = tag
                .trim_start_matches('/')
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            assert!(
                ["section", "h3", "span", "code", "table", "tbody", "tr", "td", "p"]
                    .contains(&name.as_str()),
                "unexpected tag <{tag}"
            );
        }
    }

    #[test]
    fn structural_scopes_are_pruned() {
        assert_eq!(
            prune_spans("<span class=\"hl-source hl-rust\"><span class=\"hl-storage hl-type\">let</span> x</span>"),
            "<span class=\"hl-storage hl-type\">let</span> x"
        );
    }

    #[test]
    fn quoted_git_paths_are_unquoted() {
        let patch = "diff --git \"a/sp\\303\\251cial\\tname\" \"b/sp\\303\\251cial\\tname\"
--- \"a/sp\\303\\251cial\\tname\"
+++ \"b/sp\\303\\251cial\\tname\"
@@ -1 +1 @@
-a
+b
";
        let diff = render(patch.as_bytes(), DiffLimits::default());
        assert_eq!(diff.files[0].path, "spécial\tname");
        assert_eq!(git_header_path("a/x y b/x y"), "x y");
    }

    #[test]
    fn huge_diffs_and_lines_are_capped_with_a_note() {
        let mut patch = String::from(
            "diff --git a/big.txt b/big.txt\n--- a/big.txt\n+++ b/big.txt\n@@ -0,0 +1,5000 @@\n",
        );
        for i in 0..5000 {
            patch.push_str(&format!("+line {i}\n"));
        }
        patch.push_str(
            "diff --git a/wide.rs b/wide.rs\n--- a/wide.rs\n+++ b/wide.rs\n@@ -1 +1 @@\n-x\n+",
        );
        patch.push_str(&"y".repeat(1_000_000));
        patch.push('\n');
        let diff = render(
            patch.as_bytes(),
            DiffLimits {
                max_lines: 100,
                max_line_chars: 50,
            },
        );
        assert_eq!(diff.files.len(), 2);
        assert_eq!(diff.files[0].added, 5000);
        assert_eq!(diff.files[1].added, 1);
        assert_eq!(diff.html.matches("<tr class=\"add\"").count(), 100);
        assert!(diff.html.len() < 20_000, "{}", diff.html.len());
        let note = diff.truncated.expect("a note");
        assert!(note.contains("100 of 5002 lines shown"), "{note}");
        assert!(note.contains("longer than 50 characters"), "{note}");
    }

    #[test]
    fn a_hunk_shorter_than_announced_does_not_swallow_the_next_file() {
        let patch = "diff --git a/a.txt b/a.txt
--- a/a.txt
+++ b/a.txt
@@ -1,5 +1,5 @@
-a
+b
diff --git a/b.txt b/b.txt
--- a/b.txt
+++ b/b.txt
@@ -1 +1 @@
-c
+d
";
        let diff = render(patch.as_bytes(), DiffLimits::default());
        let paths: Vec<_> = diff.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["a.txt", "b.txt"]);
        assert_eq!(diff.files[1].added, 1);
    }

    #[test]
    fn empty_and_garbage_input_render_nothing() {
        assert!(render(b"", DiffLimits::default()).files.is_empty());
        let diff = render(b"\xff\xfe<script>\n", DiffLimits::default());
        assert!(diff.files.is_empty());
        assert!(!diff.html.contains("<script"));
    }
}
