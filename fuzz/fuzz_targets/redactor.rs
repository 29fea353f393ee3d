//! The redactor (`orch_worker::redact`), differentially: a stream fed the input in arbitrary
//! chunks writes exactly what redacting the whole input at once writes, with the same counts,
//! and neither output keeps a secret value it was given.
//!
//! Input: a byte `n` whose bits 0-2 pick secret values from [`PALETTE`] and whose bit 3 adds one
//! more from the input (a length byte and that many bytes; few distinct sets, so the compiled
//! redactors are mostly reused from `Redactor::new`'s cache and the target runs fast), then
//! records `[tag, len, bytes...]` that build the input and its chunking: tag 0 starts a new
//! chunk with the bytes, 1 extends the current chunk, 2 starts a chunk of copies of the first
//! byte (`len * 4`, or from `len` 128 on more than `MAX_HELD_BACK`, so the stream's cut is
//! reached; such inputs run slowly, so they are the exception), 3 starts a chunk with secret
//! value `len` followed by 8 bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use orch_worker::redact::{Redactor, MAX_HELD_BACK, TAIL_KEPT};

/// Secret values a run may be given: plain, multi-line, with a CR, one a prefix of another.
const PALETTE: [&str; 3] = [
    "hunter2-secret",
    "db-pass-1234\r\nsecond-line-5678",
    "db-pass-1234-longer",
];

/// Bytes a token format may run on for unbounded lengths (`ghp_` + `[A-Za-z0-9]{36,}`, ...).
fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"._~+/=-".contains(&byte)
}

/// Whether the documented exception may apply: a line long enough to be cut holding a run of
/// token bytes longer than the tail kept back (a token that long may be released in part).
fn may_split_a_long_token(input: &[u8]) -> bool {
    input.split(|&b| b == b'\n').any(|line| {
        line.len() > MAX_HELD_BACK
            && line
                .split(|&b| !is_token_byte(b))
                .any(|run| run.len() >= TAIL_KEPT)
    })
}

fn take<'a>(data: &mut &'a [u8], n: usize) -> &'a [u8] {
    let (head, tail) = data.split_at(n.min(data.len()));
    *data = tail;
    head
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

fuzz_target!(|data: &[u8]| {
    let mut data = data;
    let Some(&count) = take(&mut data, 1).first() else {
        return;
    };
    let mut secrets: Vec<String> = PALETTE
        .iter()
        .enumerate()
        .filter(|(bit, _)| count & (1 << bit) != 0)
        .map(|(_, value)| (*value).to_owned())
        .collect();
    if count & 8 != 0 {
        let len = take(&mut data, 1).first().copied().unwrap_or(0) % 48;
        secrets.push(String::from_utf8_lossy(take(&mut data, usize::from(len))).into_owned());
    }
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    while data.len() >= 2 {
        let (tag, len) = (data[0], data[1]);
        data = &data[2..];
        match tag % 4 {
            0 => chunks.push(take(&mut data, usize::from(len)).to_vec()),
            1 => {
                let bytes = take(&mut data, usize::from(len));
                match chunks.last_mut() {
                    Some(last) => last.extend_from_slice(bytes),
                    None => chunks.push(bytes.to_vec()),
                }
            }
            2 => {
                let byte = take(&mut data, 1).first().copied().unwrap_or(b'x');
                let copies = match usize::from(len) {
                    long @ 128.. => MAX_HELD_BACK + (long - 128) * 64,
                    short => short * 4,
                };
                chunks.push(vec![byte; copies]);
            }
            _ => {
                let mut chunk = match secrets.is_empty() {
                    true => Vec::new(),
                    false => secrets[usize::from(len) % secrets.len()]
                        .as_bytes()
                        .to_vec(),
                };
                chunk.extend_from_slice(take(&mut data, 8));
                chunks.push(chunk);
            }
        }
    }
    let input = chunks.concat();

    let redactor = Redactor::new(&secrets);
    let (whole, whole_counts) = redactor.redact(&input);
    let mut stream = redactor.stream();
    let mut streamed = Vec::new();
    for chunk in &chunks {
        streamed.extend(stream.push(chunk));
        assert!(
            stream.held_back_len() <= MAX_HELD_BACK.max(2 * TAIL_KEPT).max(4 * 48),
            "the stream holds {} bytes back",
            stream.held_back_len()
        );
    }
    streamed.extend(stream.finish());

    if !may_split_a_long_token(&input) {
        if streamed != whole {
            let first = streamed
                .iter()
                .zip(&whole)
                .position(|(a, b)| a != b)
                .unwrap_or(streamed.len().min(whole.len()));
            let from = first.saturating_sub(40);
            panic!(
                "the stream wrote something else than the whole input's redaction, from byte \
                 {first}:\n  stream: {:?}\n  whole:  {:?}",
                String::from_utf8_lossy(&streamed[from..(first + 80).min(streamed.len())]),
                String::from_utf8_lossy(&whole[from..(first + 80).min(whole.len())]),
            );
        }
        assert_eq!(
            stream.counts(),
            &whole_counts,
            "the stream counted differently"
        );
    }

    // Secret values are matched line by line, lines of at least 4 bytes. Only values with a
    // digit are checked: `[REDACTED:kind]` and a kept `Authorization: Bearer ` have none, so a
    // value such as `REDA` may legitimately appear in the output.
    for secret in &secrets {
        for line in secret.split('\n') {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.len() < 4 || !line.bytes().any(|b| b.is_ascii_digit()) {
                continue;
            }
            assert!(
                !contains(&whole, line.as_bytes()),
                "the redaction kept the secret {line:?}"
            );
            assert!(
                !contains(&streamed, line.as_bytes()),
                "the stream kept the secret {line:?}"
            );
        }
    }
});
