//! The streaming secret scanner: secrets split across chunks at any point are still redacted,
//! private keys are tracked across lines and chunks, output is released at line ends, and memory
//! stays bounded for endless input without newlines.

use std::collections::BTreeMap;

use orch_worker::redact::{Redactor, StreamRedactor, MAX_HELD_BACK, TAIL_KEPT};

/// Push every chunk, then finish; returns everything released.
fn run(stream: &mut StreamRedactor, chunks: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in chunks {
        out.extend(stream.push(chunk));
    }
    out.extend(stream.finish());
    out
}

fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs
        .iter()
        .map(|(kind, n)| (kind.to_string(), *n))
        .collect()
}

#[test]
fn a_secret_split_across_two_chunks_at_every_position_is_still_redacted() {
    let github = format!("ghp_{}", "k".repeat(36));
    let cases: Vec<(Vec<String>, String, &str)> = vec![
        (vec![], format!("token {github} used\n"), "github_token"),
        (
            vec![],
            format!("id=AKIA{}!", "QWERTYUIOPASDFGH"),
            "aws_access_key",
        ),
        (
            vec![],
            "Authorization: Bearer tok.en-123\n".to_string(),
            "bearer_token",
        ),
        (
            vec!["correct horse".to_string()],
            "pw: correct horse battery\n".to_string(),
            "secret_value",
        ),
    ];
    for (values, input, kind) in cases {
        let redactor = Redactor::new(&values);
        let (expected, _) = redactor.redact(input.as_bytes());
        for split in 0..=input.len() {
            let (first, second) = input.as_bytes().split_at(split);
            let mut stream = redactor.stream();
            let out = run(&mut stream, &[first, second]);
            assert_eq!(
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&expected),
                "split at {split} of {input:?}"
            );
            assert_eq!(
                stream.counts(),
                &counts(&[(kind, 1)]),
                "split at {split} of {input:?}"
            );
        }
    }
}

#[test]
fn a_secret_fed_one_byte_at_a_time_is_still_redacted() {
    let input = format!("a sk-ant-{} b\n", "Q".repeat(25));
    let mut stream = Redactor::new(&[]).stream();
    let chunks: Vec<&[u8]> = input.as_bytes().chunks(1).collect();
    let out = run(&mut stream, &chunks);
    assert_eq!(
        String::from_utf8_lossy(&out),
        "a [REDACTED:anthropic_key] b\n"
    );
}

#[test]
fn output_is_released_up_to_the_last_newline_and_the_partial_line_is_held_back() {
    let mut stream = Redactor::new(&[]).stream();
    assert_eq!(stream.push(b"one\ntw"), b"one\n");
    assert_eq!(stream.held_back_len(), 2);
    assert_eq!(stream.push(b"o\nthree"), b"two\n");
    assert_eq!(stream.finish(), b"three");
    assert_eq!(stream.held_back_len(), 0);
}

#[test]
fn a_private_key_block_split_across_chunks_is_replaced_whole() {
    let input =
        "before\n-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAsecretsecret\nline2+/==\n\
                 -----END RSA PRIVATE KEY-----\nafter\n";
    let redactor = Redactor::new(&[]);
    for split in 0..=input.len() {
        for second_split in (split..=input.len()).step_by(7) {
            let bytes = input.as_bytes();
            let mut stream = redactor.stream();
            let out = run(
                &mut stream,
                &[
                    &bytes[..split],
                    &bytes[split..second_split],
                    &bytes[second_split..],
                ],
            );
            assert_eq!(
                String::from_utf8_lossy(&out),
                "before\n[REDACTED:private_key]\nafter\n",
                "splits at {split} and {second_split}"
            );
            assert_eq!(stream.counts(), &counts(&[("private_key", 1)]));
        }
    }
}

#[test]
fn key_material_inside_a_block_is_never_released_even_before_the_end_marker_arrives() {
    let mut stream = Redactor::new(&[]).stream();
    let mut out = stream.push(b"-----BEGIN PRIVATE KEY-----\nSECRETMATERIAL\n");
    out.extend(stream.push(b"MORESECRET\n"));
    assert_eq!(String::from_utf8_lossy(&out), "[REDACTED:private_key]");
    out.extend(stream.push(b"-----END PRIVATE KEY-----\nvisible\n"));
    assert_eq!(
        String::from_utf8_lossy(&out),
        "[REDACTED:private_key]\nvisible\n"
    );
}

#[test]
fn a_ten_megabyte_line_without_newline_keeps_the_buffer_bounded() {
    let redactor = Redactor::new(&[]);
    let mut stream = redactor.stream();
    let chunk = vec![b'x'; 4096];
    let mut released = 0;
    for _ in 0..(10 * 1024 * 1024 / chunk.len()) {
        released += stream.push(&chunk).len();
        assert!(
            stream.held_back_len() <= MAX_HELD_BACK + chunk.len(),
            "held back {} bytes",
            stream.held_back_len()
        );
    }
    released += stream.finish().len();
    assert_eq!(released, 10 * 1024 * 1024);
}

#[test]
fn a_single_ten_megabyte_chunk_without_newline_leaves_at_most_the_tail_held_back() {
    let mut stream = Redactor::new(&[]).stream();
    let out = stream.push(&vec![b'y'; 10 * 1024 * 1024]);
    assert!(
        stream.held_back_len() <= TAIL_KEPT,
        "held back {} bytes",
        stream.held_back_len()
    );
    assert_eq!(out.len() + stream.finish().len(), 10 * 1024 * 1024);
}

#[test]
fn a_token_straddling_the_long_line_cut_is_still_redacted() {
    let token = format!("ghp_{}", "T".repeat(40));
    let redactor = Redactor::new(&[]);
    // Place the token at every offset around the first cut of a long line.
    let first_cut = MAX_HELD_BACK + 1 - TAIL_KEPT;
    for offset in (first_cut - token.len() - 2)..(first_cut + 2) {
        let mut input = vec![b'.'; offset];
        input.extend_from_slice(token.as_bytes());
        input.extend(vec![b'.'; MAX_HELD_BACK]);
        let mut stream = redactor.stream();
        let chunks: Vec<&[u8]> = input.chunks(1000).collect();
        let out = run(&mut stream, &chunks);
        assert!(
            !out.windows(token.len())
                .any(|window| window == token.as_bytes()),
            "token leaked at offset {offset}"
        );
        assert_eq!(
            stream.counts(),
            &counts(&[("github_token", 1)]),
            "offset {offset}"
        );
        assert_eq!(
            out.len(),
            input.len() - token.len() + "[REDACTED:github_token]".len()
        );
    }
}

#[test]
fn stream_and_whole_buffer_redaction_agree_on_mixed_input() {
    let google = format!("AIza{}", "B".repeat(35));
    let slack = format!("xoxb-{}", "1".repeat(12));
    let input = format!(
        "l1 {google}\nl2 {slack}\n-----BEGIN PRIVATE KEY-----\nAAA\n-----END PRIVATE KEY-----\nl3 s3cr3t!\n",
    );
    let redactor = Redactor::new(&["s3cr3t!".to_string()]);
    let (expected, expected_counts) = redactor.redact(input.as_bytes());
    for size in [1, 2, 3, 5, 8, 13, 64] {
        let mut stream = redactor.stream();
        let chunks: Vec<&[u8]> = input.as_bytes().chunks(size).collect();
        assert_eq!(run(&mut stream, &chunks), expected, "chunks of {size}");
        assert_eq!(stream.counts(), &expected_counts, "chunks of {size}");
    }
}
