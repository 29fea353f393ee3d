//! The secret scanner: redacts known token formats, private keys and the values of environment
//! variables marked secret, from every log and bundle file before it is stored.
//!
//! One combined `regex::bytes` pattern (so non-UTF-8 output is scanned too) holds every format as
//! an alternative, in priority order: the leftmost match wins, and at the same position the
//! earlier alternative wins (so `sk-ant-...` counts as `anthropic_key`, never as `openai_key`).
//! A match is replaced by `[REDACTED:<kind>]`. A PEM private key is the one secret that spans
//! lines: its BEGIN marker opens a block, and everything up to and including the END marker is
//! replaced by a single `[REDACTED:private_key]` (an unterminated block swallows the rest of the
//! input: over-redacting is the safe failure).
//!
//! Streaming bound: [`StreamRedactor`] releases complete lines; a line longer than
//! [`MAX_HELD_BACK`] is released in pieces, keeping the last [`TAIL_KEPT`] bytes back. A match that
//! starts before the cut is redacted whole, so every secret of at most [`TAIL_KEPT`] bytes (every
//! known token format in practice, and literal values up to that length or longer, see
//! [`Redactor::new`]) is caught wherever the chunks and the cut fall. Only a token longer than
//! that, split by a cut, may have its tail released unredacted.

use std::collections::BTreeMap;
use std::sync::Arc;

use regex::bytes::Regex;

mod spec;
pub use spec::{redact_field, redact_spec, spec_redactor, Redaction};

/// Most bytes of a partial line a [`StreamRedactor`] holds before it releases a piece of it.
pub const MAX_HELD_BACK: usize = 64 * 1024;

/// Bytes of a long partial line kept back when a piece of it is released; longer than any token
/// format matched, so a token straddling the cut is still seen whole.
pub const TAIL_KEPT: usize = 512;

/// Kind name used for literal secret values given to [`Redactor::new`].
const SECRET_VALUE_KIND: &str = "secret_value";

/// Kind name used for PEM private key blocks.
const PRIVATE_KEY_KIND: &str = "private_key";

/// Shortest literal secret redacted; shorter values would redact ordinary text.
const MIN_SECRET_LEN: usize = 4;

/// The known token formats, in priority order, as (kind, pattern).
///
/// Only `openai_key` requires a word boundary before it: its `sk-` prefix is common inside words
/// (`disk-space-...`), whereas the other prefixes are distinctive enough that missing a token
/// glued to a word would cost more than a rare false positive.
///
/// A pattern may hold one group named `keep`: what it matches is kept verbatim before the
/// replacement (a header or key name), only the credential after it is replaced. Formats that
/// have no recognisable shape of their own (an AWS secret access key is 40 base64 characters, a
/// password anything) are caught only after the name that introduces them.
const TOKEN_FORMATS: [(&str, &str); 11] = [
    (
        "github_token",
        r"gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,}",
    ),
    ("aws_access_key", r"AKIA[0-9A-Z]{16}"),
    (
        "aws_secret_key",
        r#"(?P<keep>(?i:aws_secret_access_key|aws_secret_key|secretaccesskey)["']?[ \t]*[:=][ \t]*["']?)[A-Za-z0-9/+=]{40}"#,
    ),
    ("slack_token", r"xox[abprs]-[A-Za-z0-9-]{10,}"),
    ("stripe_key", r"(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}"),
    ("anthropic_key", r"sk-ant-[A-Za-z0-9_-]{20,}"),
    ("openai_key", r"(?-u:\b)sk-(?:proj-)?[A-Za-z0-9_-]{20,}"),
    ("google_api_key", r"AIza[0-9A-Za-z_-]{35}"),
    (
        "jwt",
        r"eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}",
    ),
    // The header name and scheme are kept, only the credential is replaced; the optional quotes
    // and `=` also catch the header in JSON or key=value dumps.
    (
        "bearer_token",
        r#"(?P<keep>(?i:authorization)["']?[ \t]*[:=][ \t]*["']?(?i:bearer)[ \t]+)[A-Za-z0-9._~+/=-]+"#,
    ),
    // `password=...` in a URL query, a config line or a command line (`--password=...`); only
    // with `=`, so prose such as "the password: field" is left alone.
    (
        "password",
        r#"(?P<keep>(?i:password|passwd)["']?[ \t]*=[ \t]*["']?)[^\s"'&;,]{4,}"#,
    ),
];

/// Start of a PEM private key block (also OpenSSH and PGP private keys).
const PRIVATE_KEY_BEGIN: &str = r"-----BEGIN [A-Z ]*PRIVATE KEY(?: BLOCK)?-----";

/// End of a PEM private key block.
const PRIVATE_KEY_END: &str = r"-----END [A-Z ]*PRIVATE KEY(?: BLOCK)?-----";

/// One alternative of the combined pattern.
#[derive(Debug)]
struct Alternative {
    /// Capture group index of the whole alternative.
    group: usize,
    /// Kind name, as counted and written in the replacement.
    kind: &'static str,
    /// Capture group kept verbatim before the replacement (the `Authorization: Bearer ` prefix).
    keep_group: Option<usize>,
    /// This alternative is a PEM BEGIN marker: the block runs until the END marker.
    opens_private_key: bool,
}

#[derive(Debug)]
struct Patterns {
    /// Every alternative, `(?P<a0>...)|(?P<a1>...)|...`, in priority order.
    combined: Regex,
    alternatives: Vec<Alternative>,
    private_key_end: Regex,
    /// Bytes a stream keeps back of a long line: [`TAIL_KEPT`], or more for long literal values.
    tail_kept: usize,
    /// Partial-line length above which a stream releases a piece.
    max_held_back: usize,
}

/// Redacts secrets. Cheap to clone; build one per run.
#[derive(Debug, Clone)]
pub struct Redactor {
    patterns: Arc<Patterns>,
}

/// Where a scan is between two calls: inside a private key block or not, and what it counted.
#[derive(Debug, Default)]
struct ScanState {
    in_private_key: bool,
    counts: BTreeMap<String, u64>,
    /// Replace each byte of a secret by `*` (line ends kept) instead of a `[REDACTED:kind]`
    /// marker, so the output has the input's length ([`Redactor::mask`]).
    mask: bool,
}

/// `bytes` with every byte but line ends replaced by `*`.
fn push_masked(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend(bytes.iter().map(|&b| if b == b'\n' { b } else { b'*' }));
}

impl Redactor {
    /// A redactor for the known token formats plus these literal secret values (values shorter
    /// than 4 bytes are ignored: they would redact ordinary text).
    ///
    /// A value spanning several lines is matched line by line (each line of at least 4 bytes is a
    /// literal of its own), because the stream redactor releases output at line ends and could
    /// not hold a whole multi-line value back. Such a value is counted once per line.
    pub fn new(secret_values: &[String]) -> Redactor {
        // Compiling the combined pattern costs milliseconds (hundreds in a debug build) and a
        // worker builds a redactor per run, so redactors are kept per set of secret values. A
        // process sees few distinct sets (one per project configuration), and the cache is
        // bounded anyway. A `std::sync::Mutex` is right here: it is held only for a map lookup,
        // never across an await.
        static CACHE: std::sync::OnceLock<
            std::sync::Mutex<std::collections::HashMap<Vec<String>, Redactor>>,
        > = std::sync::OnceLock::new();
        let cache = CACHE.get_or_init(Default::default);
        let key = secret_values.to_vec();
        if let Some(hit) = cache.lock().ok().and_then(|map| map.get(&key).cloned()) {
            return hit;
        }
        let built = Redactor::compile(secret_values);
        if let Ok(mut map) = cache.lock() {
            if map.len() >= 64 {
                map.clear();
            }
            map.insert(key, built.clone());
        }
        built
    }

    fn compile(secret_values: &[String]) -> Redactor {
        let mut literals: Vec<&str> = secret_values
            .iter()
            .flat_map(|value| value.split('\n'))
            .map(|line| line.strip_suffix('\r').unwrap_or(line))
            .filter(|line| line.len() >= MIN_SECRET_LEN)
            .collect();
        // Longest first, so a value that has another as a prefix is redacted whole.
        literals.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        literals.dedup();
        let longest_literal = literals.first().map_or(0, |literal| literal.len());

        let mut sources: Vec<(&'static str, String)> = Vec::new();
        // The PEM BEGIN marker comes first: once a key block opens, nothing inside it matters.
        sources.push((PRIVATE_KEY_KIND, PRIVATE_KEY_BEGIN.to_string()));
        if !literals.is_empty() {
            let escaped: Vec<String> = literals
                .iter()
                .map(|literal| regex::escape(literal))
                .collect();
            sources.push((SECRET_VALUE_KIND, escaped.join("|")));
        }
        for (kind, pattern) in &TOKEN_FORMATS {
            sources.push((kind, (*pattern).to_string()));
        }
        // Each alternative's `keep` group gets a name of its own (`k<index>`): a regex may not
        // name two groups alike.
        let sources: Vec<(&'static str, String)> = sources
            .into_iter()
            .enumerate()
            .map(|(index, (kind, pattern))| {
                (
                    kind,
                    pattern.replace("(?P<keep>", &format!("(?P<k{index}>")),
                )
            })
            .collect();

        let combined_source: Vec<String> = sources
            .iter()
            .enumerate()
            .map(|(index, (_, pattern))| format!("(?P<a{index}>{pattern})"))
            .collect();
        let combined = Regex::new(&combined_source.join("|"))
            // Literal values are escaped and the formats are constants covered by tests.
            .expect("the combined secret pattern is valid");

        let group_of = |name: &str| {
            combined
                .capture_names()
                .position(|candidate| candidate == Some(name))
        };
        let alternatives = sources
            .iter()
            .enumerate()
            .map(|(index, (kind, _))| Alternative {
                group: group_of(&format!("a{index}")).expect("every alternative is a named group"),
                kind,
                keep_group: group_of(&format!("k{index}")),
                opens_private_key: *kind == PRIVATE_KEY_KIND,
            })
            .collect();

        let tail_kept = TAIL_KEPT.max(longest_literal);
        Redactor {
            patterns: Arc::new(Patterns {
                combined,
                alternatives,
                private_key_end: Regex::new(PRIVATE_KEY_END).expect("the PEM END pattern is valid"),
                tail_kept,
                max_held_back: MAX_HELD_BACK.max(2 * tail_kept),
            }),
        }
    }

    /// Redact a whole buffer. Returns the redacted bytes and the count per kind of secret
    /// (`github_token`, `private_key`, `secret_value`, ...).
    pub fn redact(&self, input: &[u8]) -> (Vec<u8>, BTreeMap<String, u64>) {
        let mut state = ScanState::default();
        let mut out = Vec::with_capacity(input.len());
        self.redact_into(input, input.len(), &mut state, &mut out);
        (out, state.counts)
    }

    /// Redact a UTF-8 text: like [`Redactor::redact`], for strings (titles, prompts, argv).
    pub fn redact_text(&self, text: &str) -> (String, BTreeMap<String, u64>) {
        let (redacted, counts) = self.redact(text.as_bytes());
        if counts.is_empty() {
            return (text.to_owned(), counts);
        }
        // Matches begin and end at ASCII bytes or whole literal values (UTF-8 strings), so the
        // result is still UTF-8 and nothing is lost here.
        (String::from_utf8_lossy(&redacted).into_owned(), counts)
    }

    /// Like [`Redactor::redact`], but every byte of a secret becomes `*` (line ends kept), so the
    /// output is exactly as long as the input. For files appended to by offset (a remote
    /// worker's streamed pieces), where a shorter or longer file would break the offsets.
    pub fn mask(&self, input: &[u8]) -> (Vec<u8>, BTreeMap<String, u64>) {
        let mut state = ScanState {
            mask: true,
            ..ScanState::default()
        };
        let mut out = Vec::with_capacity(input.len());
        self.redact_into(input, input.len(), &mut state, &mut out);
        (out, state.counts)
    }

    /// A streaming redactor for output that arrives in chunks (a secret may be split across
    /// chunks; a private key spans lines).
    pub fn stream(&self) -> StreamRedactor {
        StreamRedactor {
            redactor: self.clone(),
            held_back: Vec::new(),
            state: ScanState::default(),
        }
    }

    /// Scan `buf`, writing to `out` the redacted form of everything before `limit`. A match that
    /// starts before `limit` is consumed whole even if it runs past it; bytes after `limit` are
    /// only context. Returns how many bytes of `buf` were consumed (at least `limit`).
    fn redact_into(
        &self,
        buf: &[u8],
        limit: usize,
        state: &mut ScanState,
        out: &mut Vec<u8>,
    ) -> usize {
        let patterns = &self.patterns;
        let mut locations = patterns.combined.capture_locations();
        let mut position = 0;
        while position < limit {
            if state.in_private_key {
                match patterns.private_key_end.find_at(buf, position) {
                    Some(end) if end.start() < limit => {
                        if state.mask {
                            // The END line is kept, like the BEGIN line (see below).
                            push_masked(out, &buf[position..end.start()]);
                            out.extend_from_slice(&buf[end.start()..end.end()]);
                        }
                        position = end.end();
                        state.in_private_key = false;
                    }
                    // Key material up to the limit is dropped; the END marker may come later.
                    _ => {
                        if state.mask {
                            push_masked(out, &buf[position..limit]);
                        }
                        return limit;
                    }
                }
                continue;
            }
            let found = patterns
                .combined
                .captures_read_at(&mut locations, buf, position);
            let Some(found) = found.filter(|found| found.start() < limit) else {
                out.extend_from_slice(&buf[position..limit]);
                return limit;
            };
            out.extend_from_slice(&buf[position..found.start()]);
            let alternative = patterns
                .alternatives
                .iter()
                .find(|alternative| locations.get(alternative.group).is_some())
                .expect("a match of the combined pattern matched one of its alternatives");
            let kept_end = match alternative
                .keep_group
                .and_then(|group| locations.get(group))
            {
                Some((start, end)) => {
                    out.extend_from_slice(&buf[start..end]);
                    end
                }
                None => found.start(),
            };
            if state.mask && alternative.opens_private_key {
                // A masked key block keeps its BEGIN line: a rescan of masked text (the daemon
                // scans a stored tail again with the next piece) must still see that what
                // follows is key material.
                out.extend_from_slice(&buf[found.start()..found.end()]);
            } else if state.mask {
                push_masked(out, &buf[kept_end..found.end()]);
            } else {
                out.extend_from_slice(b"[REDACTED:");
                out.extend_from_slice(alternative.kind.as_bytes());
                out.push(b']');
            }
            *state
                .counts
                .entry(alternative.kind.to_string())
                .or_default() += 1;
            state.in_private_key = alternative.opens_private_key;
            // No alternative matches the empty string (literals have at least 4 bytes), so this
            // always advances.
            position = found.end();
        }
        position
    }
}

/// Redacts a byte stream chunk by chunk. Output is released line by line (or in pieces of a
/// bounded size for very long lines), so memory stays bounded whatever the input.
#[derive(Debug)]
pub struct StreamRedactor {
    redactor: Redactor,
    /// Input not yet released: the partial last line (at most [`MAX_HELD_BACK`] bytes between
    /// calls, for literal values of sane length).
    held_back: Vec<u8>,
    state: ScanState,
}

impl StreamRedactor {
    /// Feed a chunk; returns the redacted bytes that are ready to be written.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let already_held = self.held_back.len();
        self.held_back.extend_from_slice(chunk);

        // No format spans a line end (literal values are split into lines), so complete lines can
        // be scanned without looking at what follows.
        if let Some(last_newline) = chunk.iter().rposition(|&byte| byte == b'\n') {
            let complete = already_held + last_newline + 1;
            let consumed = self.redactor.redact_into(
                &self.held_back[..complete],
                complete,
                &mut self.state,
                &mut out,
            );
            self.held_back.drain(..consumed);
        }

        let patterns = &self.redactor.patterns;
        if self.held_back.len() > patterns.max_held_back {
            // Scan the whole partial line but release only up to the cut: a match starting
            // before the cut is seen whole because the tail kept is longer than any format.
            let cut = self.held_back.len() - patterns.tail_kept;
            let consumed =
                self.redactor
                    .redact_into(&self.held_back, cut, &mut self.state, &mut out);
            self.held_back.drain(..consumed);
        }
        // A huge chunk grows the buffer once; give that memory back rather than keep it forever.
        if self.held_back.capacity() > 4 * patterns.max_held_back {
            self.held_back.shrink_to(2 * patterns.max_held_back);
        }
        out
    }

    /// End of stream: returns whatever is still held back, redacted.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let all = self.held_back.len();
        self.redactor
            .redact_into(&self.held_back, all, &mut self.state, &mut out);
        self.held_back.clear();
        self.held_back.shrink_to(MAX_HELD_BACK);
        out
    }

    /// Redactions made so far: kind -> count.
    pub fn counts(&self) -> &BTreeMap<String, u64> {
        &self.state.counts
    }

    /// Bytes held back, waiting for the end of their line (at most [`MAX_HELD_BACK`] between
    /// calls); for tests and metrics.
    pub fn held_back_len(&self) -> usize {
        self.held_back.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking_keeps_the_length_and_hides_every_byte_of_the_secret() {
        let token = format!("ghp_{}", "a1B2".repeat(9));
        let input = format!("x {token} y\npassword=hunter22 z\n");
        let (masked, counts) = Redactor::new(&[]).mask(input.as_bytes());
        assert_eq!(masked.len(), input.len());
        let masked = String::from_utf8(masked).unwrap();
        assert!(!masked.contains(&token), "{masked}");
        assert!(masked.contains("password=******** z"), "{masked}");
        assert_eq!(counts.get("github_token"), Some(&1));
    }

    #[test]
    fn a_masked_private_key_keeps_its_marker_lines_so_a_rescan_still_masks_what_follows() {
        let redactor = Redactor::new(&[]);
        let first = "-----BEGIN PRIVATE KEY-----\nAAAA\n";
        let (masked, _) = redactor.mask(first.as_bytes());
        assert_eq!(masked, b"-----BEGIN PRIVATE KEY-----\n****\n");
        let mut again = masked.clone();
        again.extend_from_slice(b"BBBB\n-----END PRIVATE KEY-----\nafter\n");
        let (masked, _) = redactor.mask(&again);
        assert_eq!(
            String::from_utf8(masked).unwrap(),
            "-----BEGIN PRIVATE KEY-----\n****\n****\n-----END PRIVATE KEY-----\nafter\n"
        );
    }
}
