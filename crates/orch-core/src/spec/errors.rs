//! Error reporting for spec files: turning YAML loader and serde failures into `SpecError`s
//! that point at a line and column, with friendly messages and did-you-mean hints.

use marked_yaml::Node;

use super::{Position, SpecError};

pub(super) fn error(file: &str, at: Position, message: impl Into<String>) -> SpecError {
    SpecError {
        file: file.to_owned(),
        at,
        message: message.into(),
    }
}

pub(super) fn load_error(file: &str, text: &str, err: &marked_yaml::LoadError) -> SpecError {
    use marked_yaml::LoadError as L;
    let (marker, message) = match err {
        L::TopLevelMustBeMapping(m) => (
            Some(*m),
            "the file must be a YAML mapping (`key: value` lines)".to_owned(),
        ),
        L::TopLevelMustBeSequence(m) => (Some(*m), "the file must be a YAML list".to_owned()),
        L::UnexpectedAnchor(m) => (
            Some(*m),
            "YAML anchors and aliases are not supported; write the value out".to_owned(),
        ),
        L::MappingKeyMustBeScalar(m) => (Some(*m), "keys must be plain words".to_owned()),
        L::UnexpectedTag(m) => (
            Some(*m),
            "YAML tags (`!name`) are not supported; remove the tag".to_owned(),
        ),
        L::ScanError(m, scan) => {
            return scan_error(file, text, Position::of_marker(Some(m)), scan.info());
        }
        L::DuplicateKey(inner) => (
            inner.key.span().start().copied(),
            format!(
                "the key `{}` appears twice in this mapping (first at line {}); keep one",
                inner.key.as_str(),
                Position::of_marker(inner.prev_key.span().start()).line
            ),
        ),
    };
    error(
        file,
        within_text(text, Position::of_marker(marker.as_ref())),
        message,
    )
}

/// `at`, or the end of the last line when the parser reports a position past the end of the
/// text (it does for a tag, a missing key or an empty value on a last line without a line break), so an error
/// always points at a line the user can see. Found by the `workflow_spec` fuzz target.
pub(super) fn within_text(text: &str, at: Position) -> Position {
    let line_count = text.lines().count();
    if at.line <= line_count {
        return at;
    }
    let last = text.lines().last().unwrap_or_default();
    Position {
        line: line_count.max(1),
        column: last.chars().count() + 1,
    }
}

/// A YAML syntax error. The scanner's own Display repeats the position as a byte offset and a
/// 0-based column; our prefix already says where, so only its words are kept. Where the scanner
/// stops is often not where the mistake is, so two common mistakes are pointed at directly.
fn scan_error(file: &str, text: &str, at: Position, info: &str) -> SpecError {
    if info.contains("found a tab") {
        // The scanner reports the start of the token it was reading, often a line above the tab.
        let tab = first_tab_in_indentation(text, at.line).unwrap_or(at);
        return error(
            file,
            tab,
            "this is not valid YAML: a tab is used for indentation; indent with spaces",
        );
    }
    if let Some((bracket, open_at)) = unclosed_bracket(text, at) {
        let close = if bracket == '[' { ']' } else { '}' };
        return error(
            file,
            open_at,
            format!(
                "this is not valid YAML: this `{bracket}` is never closed; add a `{close}` \
                 (the parser stopped at line {}, column {}: {info})",
                at.line, at.column
            ),
        );
    }
    let line_count = text.lines().count();
    if at.line > line_count {
        // Past the last line: point at the end of the file's last line instead.
        return error(
            file,
            within_text(text, at),
            format!("this is not valid YAML: {info} before the end of the file"),
        );
    }
    let hint = if info.contains("mapping values are not allowed") {
        "; if a value contains `: `, put the value in quotes"
    } else {
        ""
    };
    error(file, at, format!("this is not valid YAML: {info}{hint}"))
}

/// The innermost flow list or mapping (`[` or `{`) opened before `until` and not closed by then.
///
/// A rough scan that knows about quotes, comments and block scalars (`|`, `>`), used only to
/// explain a file the YAML parser has already refused.
fn unclosed_bracket(text: &str, until: Position) -> Option<(char, Position)> {
    let mut open: Vec<(char, Position)> = Vec::new();
    // While inside a block scalar, the indentation of the line that started it.
    let mut block_scalar_parent: Option<usize> = None;
    for (index, line) in text.lines().enumerate().take(until.line) {
        let indent = line.chars().take_while(|c| *c == ' ').count();
        if let Some(parent) = block_scalar_parent {
            if line.trim().is_empty() || indent > parent {
                continue;
            }
            block_scalar_parent = None;
        }
        let mut quote: Option<char> = None;
        let mut content_end = line.len();
        for (column, (byte, c)) in line.char_indices().enumerate() {
            if index + 1 == until.line && column + 1 >= until.column {
                break;
            }
            if let Some(q) = quote {
                if c == q {
                    quote = None;
                }
                continue;
            }
            let before = &line[..byte];
            let trimmed = before.trim_end();
            // In block context a bracket or quote only means something at the start of a value.
            let starts_value = trimmed.is_empty()
                || (trimmed.len() < before.len()
                    && (trimmed.ends_with(':') || trimmed.ends_with('-')));
            match c {
                '#' if before.is_empty() || before.ends_with(char::is_whitespace) => {
                    content_end = byte;
                    break;
                }
                '"' | '\'' if starts_value || !open.is_empty() => quote = Some(c),
                '[' | '{' if starts_value || !open.is_empty() => {
                    let at = Position {
                        line: index + 1,
                        column: column + 1,
                    };
                    open.push((c, at));
                }
                ']' | '}' if !open.is_empty() => {
                    open.pop();
                }
                _ => {}
            }
        }
        let content = line[..content_end].trim_end();
        if open.is_empty()
            && ["|", "|-", "|+", ">", ">-", ">+"]
                .iter()
                .any(|indicator| content.ends_with(&format!(" {indicator}")))
        {
            block_scalar_parent = Some(indent);
        }
    }
    open.pop()
}

/// The first tab in the leading whitespace of a line at or after `from_line` (1-based).
fn first_tab_in_indentation(text: &str, from_line: usize) -> Option<Position> {
    text.lines()
        .enumerate()
        .skip(from_line.saturating_sub(1))
        .find_map(|(index, line)| {
            let column = line
                .chars()
                .take_while(|c| c.is_whitespace())
                .position(|c| c == '\t')?;
            Some(Position {
                line: index + 1,
                column: column + 1,
            })
        })
}

/// One step of a path such as `tasks[1].steps[0].name`, as `marked_yaml` renders it.
enum PathSegment<'a> {
    Key(&'a str),
    Index(usize),
}

/// Split a rendered path into segments; `None` if it is not in the shape we expect (a map key
/// that itself contains `.` or `[`, say), in which case the caller keeps `marked_yaml`'s marker.
fn path_segments(path: &str) -> Option<Vec<PathSegment<'_>>> {
    let mut segments = Vec::new();
    for part in path.split('.') {
        let (key, mut rest) = part.split_at(part.find('[').unwrap_or(part.len()));
        if !key.is_empty() {
            segments.push(PathSegment::Key(key));
        }
        while !rest.is_empty() {
            let close = rest.find(']')?;
            let index = rest.get(1..close)?.parse().ok()?;
            segments.push(PathSegment::Index(index));
            rest = &rest[close + 1..];
            if !rest.is_empty() && !rest.starts_with('[') {
                return None;
            }
        }
    }
    Some(segments)
}

/// The node at the end of `segments`, if every step exists.
fn node_at<'n>(root: &'n Node, segments: &[PathSegment<'_>]) -> Option<&'n Node> {
    segments
        .iter()
        .try_fold(root, |node, segment| match segment {
            PathSegment::Key(key) => node.as_mapping()?.get_node(key),
            PathSegment::Index(index) => node.as_sequence()?.get(*index),
        })
}

/// Block mappings start, for `marked_yaml`, at the `:` after their first key. Move the start to
/// the first key itself so that an error about a whole mapping (a task, a step) points at the
/// beginning of its first line rather than into the middle of it.
pub(super) fn start_mappings_at_their_first_key(node: &mut Node) {
    match node {
        Node::Scalar(_) => {}
        Node::Sequence(sequence) => {
            for item in sequence.iter_mut() {
                start_mappings_at_their_first_key(item);
            }
        }
        Node::Mapping(mapping) => {
            let first_key = mapping
                .keys()
                .next()
                .and_then(|k| k.span().start().copied());
            let starts_after_key = match (mapping.span().start(), first_key) {
                (Some(start), Some(key)) => {
                    (start.line(), start.column()) > (key.line(), key.column())
                }
                _ => false,
            };
            if starts_after_key {
                mapping.span_mut().set_start(first_key);
            }
            for (_, value) in mapping.iter_mut() {
                start_mappings_at_their_first_key(value);
            }
        }
    }
}

pub(super) fn node_error(file: &str, root: &Node, err: &marked_yaml::FromNodeError) -> SpecError {
    use marked_yaml::Error as E;
    let path = err.path().filter(|p| !p.is_empty() && *p != ".");
    let segments = path.and_then(path_segments);
    // `marked_yaml` finds the node of an error by following the path, but stops at the first
    // `Located` wrapper (its path holds an internal key), so errors inside a task would point at
    // the `tasks` list. Follow the path ourselves and keep its marker only as a fallback.
    let node = segments.as_deref().and_then(|s| node_at(root, s));
    let text = node.and_then(Node::as_scalar).map(|scalar| scalar.as_str());
    let mut at = node.map_or_else(
        || Position::of_marker(err.start_mark().as_ref()),
        |node| Position::of_marker(node.span().start()),
    );
    // An unknown key is reported at the key and under the path of the mapping that holds it.
    let mut shown_path = path.map(str::to_owned);
    let what = match &**err {
        E::NotBoolean(_) => match text {
            Some(text) => format!("expected `true` or `false`, not `{text}`"),
            None => "expected `true` or `false`".to_owned(),
        },
        E::IntegerParseFailure(e, _) => integer_message(e, text),
        E::FloatParseFailure(_, _) => match text {
            Some(text) => format!("expected a number, not `{text}`"),
            None => "expected a number".to_owned(),
        },
        E::UnknownFieldError(field, expected, _) => {
            if let Some(segments) = &segments {
                let parent = &segments[..segments.len().saturating_sub(1)];
                let key = node_at(root, parent)
                    .and_then(Node::as_mapping)
                    .and_then(|m| m.keys().find(|k| k.as_str() == field));
                if let Some(key) = key {
                    at = Position::of_marker(key.span().start());
                }
            }
            shown_path = path
                .and_then(|p| p.rsplit_once('.'))
                .map(|(parent, _)| parent.to_owned());
            unknown_key_message(field, expected)
        }
        E::Other(message, _) => serde_message(message, text),
    };
    let message = match shown_path {
        Some(path) => format!("{path}: {what}"),
        None => what,
    };
    error(file, at, message)
}

fn integer_message(err: &std::num::ParseIntError, text: Option<&str>) -> String {
    use std::num::IntErrorKind as K;
    let Some(text) = text else {
        return "expected a whole number".to_owned();
    };
    let negative = text
        .strip_prefix('-')
        .is_some_and(|digits| !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()));
    match err.kind() {
        K::PosOverflow => format!("`{text}` is too large for this field"),
        K::NegOverflow => format!("`{text}` is too small for this field"),
        K::InvalidDigit if negative => format!("`{text}` is negative; give 0 or more"),
        _ => format!("expected a whole number, not `{text}`"),
    }
}

fn unknown_key_message(field: &str, expected: &[&str]) -> String {
    let close = expected
        .iter()
        .map(|candidate| (edit_distance(field, candidate), *candidate))
        // One typo in a short key, two in a longer one; further off is a different word.
        .filter(|(distance, candidate)| *distance * 3 <= field.len().max(candidate.len()))
        .min();
    let allowed = expected
        .iter()
        .map(|key| format!("`{key}`"))
        .collect::<Vec<_>>()
        .join(", ");
    match close {
        Some((_, candidate)) => {
            format!("unknown key `{field}`; did you mean `{candidate}`? The keys allowed here are: {allowed}")
        }
        None => format!("unknown key `{field}`; the keys allowed here are: {allowed}"),
    }
}

/// Levenshtein distance, for "did you mean" on short keys.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != *cb);
            current.push(substitute.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

/// Reword serde's own messages (`missing field`, `invalid type`) as sentences that say what to
/// write instead.
fn serde_message(message: &str, text: Option<&str>) -> String {
    if let Some(field) = message.strip_prefix("missing field ") {
        return format!("the required key {field} is missing; add it");
    }
    if let Some(rest) = message.strip_prefix("invalid type: ") {
        if let Some((found, expected)) = rest.split_once(", expected ") {
            let expected = match expected {
                "a sequence" => "a list such as `[a, b]`",
                "a string" => "a single value (text)",
                "a boolean" => "`true` or `false`",
                "a map" => "a mapping (`key: value` lines)",
                other if other.starts_with("struct ") => "a mapping (`key: value` lines)",
                other => other,
            };
            let found = match found {
                "sequence" => "a list".to_owned(),
                "map" => "a mapping".to_owned(),
                other => match other.strip_prefix("string ") {
                    Some(quoted) => format!("`{}`", quoted.trim_matches('"')),
                    None => other.to_owned(),
                },
            };
            let hint = match (expected.starts_with("a list"), text) {
                (true, Some(text)) => {
                    let items: Vec<&str> = text
                        .split(|c: char| c == ',' || c.is_whitespace())
                        .filter(|item| !item.is_empty())
                        .collect();
                    format!("; write it as `[{}]`", items.join(", "))
                }
                _ => String::new(),
            };
            return format!("expected {expected}, found {found}{hint}");
        }
    }
    message.to_owned()
}
