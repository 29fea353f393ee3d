//! The secret scanner on whole buffers: every known format is redacted and counted under its
//! kind, literal values are redacted, and text without secrets passes through byte for byte.
//!
//! Sample tokens are assembled at run time so that repository secret scanners do not flag this
//! file.

use std::collections::BTreeMap;

use orch_worker::redact::Redactor;

/// Fake secrets, one per kind, as (kind, secret).
fn samples() -> Vec<(&'static str, String)> {
    vec![
        ("github_token", format!("ghp_{}", "a1B2".repeat(9))),
        ("github_token", format!("gho_{}", "Z9y8".repeat(10))),
        ("github_token", format!("ghu_{}", "q".repeat(36))),
        ("github_token", format!("ghs_{}", "0".repeat(40))),
        ("github_token", format!("ghr_{}", "Ab".repeat(18))),
        (
            "github_token",
            format!("github_pat_{}", "11AB_cd".repeat(4)),
        ),
        ("aws_access_key", format!("AKIA{}", "IOSFODNN7EXAMPLE")),
        ("slack_token", format!("xoxb-{}", "1234567890-abcdef")),
        ("slack_token", format!("xoxp-{}", "98765-43210-zz")),
        (
            "stripe_key",
            format!("sk_live_{}", "4eC39HqLyjWDarjtT1zdp7dc"),
        ),
        ("stripe_key", format!("rk_test_{}", "51H8abcdEFGHijkl")),
        (
            "anthropic_key",
            format!("sk-ant-{}", "api03-Ab_cD-ef".repeat(2)),
        ),
        ("openai_key", format!("sk-{}", "Ab12Cd34Ef56Gh78Ij90")),
        ("openai_key", format!("sk-proj-{}", "x_y-z".repeat(5))),
        (
            "google_api_key",
            format!("AIza{}", "SyA1234567890abcdefghijklmnopqrstuv"),
        ),
        (
            "jwt",
            format!(
                "eyJ{}.{}.{}",
                "hbGciOiJIUzI1NiJ9", "eyJzdWIiOiIxMjM0In0", "dBjftJeZ4CVPmB92K27uhbUJU1p1r"
            ),
        ),
    ]
}

fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs
        .iter()
        .map(|(kind, n)| (kind.to_string(), *n))
        .collect()
}

/// Redact `input` with a redactor for `values` and compare output and counts.
fn check(values: &[&str], input: &str, expected: &str, expected_counts: &[(&str, u64)]) {
    let values: Vec<String> = values.iter().map(|value| value.to_string()).collect();
    let (output, found) = Redactor::new(&values).redact(input.as_bytes());
    assert_eq!(
        String::from_utf8_lossy(&output),
        expected,
        "redacting {input:?}"
    );
    assert_eq!(found, counts(expected_counts), "counts for {input:?}");
}

#[test]
fn every_known_token_format_is_redacted_and_counted_under_its_kind() {
    for (kind, secret) in samples() {
        check(
            &[],
            &format!("before {secret} after\n"),
            &format!("before [REDACTED:{kind}] after\n"),
            &[(kind, 1)],
        );
    }
}

#[test]
fn a_token_glued_to_punctuation_is_still_redacted() {
    for (kind, secret) in samples() {
        check(
            &[],
            &format!("X=\"{secret}\","),
            &format!("X=\"[REDACTED:{kind}]\","),
            &[(kind, 1)],
        );
    }
}

#[test]
fn an_anthropic_key_is_counted_once_and_not_also_as_an_openai_key() {
    let key = format!("sk-ant-{}", "a".repeat(30));
    check(
        &[],
        &key,
        "[REDACTED:anthropic_key]",
        &[("anthropic_key", 1)],
    );
}

#[test]
fn sk_dash_inside_an_ordinary_word_is_not_taken_for_an_openai_key() {
    let text = "disk-space-monitoring-enabled-for-all-volumes task-runner-configuration-file\n";
    check(&[], text, text, &[]);
}

#[test]
fn an_authorization_header_keeps_its_name_and_loses_its_credential() {
    check(
        &[],
        "> Authorization: Bearer abc.DEF-123_456~+/=\n",
        "> Authorization: Bearer [REDACTED:bearer_token]\n",
        &[("bearer_token", 1)],
    );
    check(
        &[],
        r#"{"authorization": "bearer opaque-value-42"}"#,
        r#"{"authorization": "bearer [REDACTED:bearer_token]"}"#,
        &[("bearer_token", 1)],
    );
}

#[test]
fn a_pem_private_key_block_is_replaced_whole_and_counted_once() {
    let input = "key follows\n-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\nZZZZ/+==\n\
                 -----END RSA PRIVATE KEY-----\nafter\n";
    check(
        &[],
        input,
        "key follows\n[REDACTED:private_key]\nafter\n",
        &[("private_key", 1)],
    );
}

#[test]
fn a_pem_private_key_escaped_on_one_json_line_is_replaced() {
    let input = r#"{"key": "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk\n-----END OPENSSH PRIVATE KEY-----\n", "x": 1}"#;
    check(
        &[],
        input,
        r#"{"key": "[REDACTED:private_key]\n", "x": 1}"#,
        &[("private_key", 1)],
    );
}

#[test]
fn two_private_key_blocks_are_counted_twice() {
    let block = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
    check(
        &[],
        &format!("{block}mid\n{block}"),
        "[REDACTED:private_key]\nmid\n[REDACTED:private_key]\n",
        &[("private_key", 2)],
    );
}

#[test]
fn an_unterminated_private_key_block_swallows_the_rest_of_the_input() {
    check(
        &[],
        "a\n-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\nmore\n",
        "a\n[REDACTED:private_key]",
        &[("private_key", 1)],
    );
}

#[test]
fn literal_secret_values_are_redacted_longest_first() {
    check(
        &["hunter2hunter2", "hunter2", "abc"],
        "pw=hunter2hunter2 short=hunter2 tiny=abc\n",
        "pw=[REDACTED:secret_value] short=[REDACTED:secret_value] tiny=abc\n",
        &[("secret_value", 2)],
    );
}

#[test]
fn literal_values_with_regex_metacharacters_are_matched_literally() {
    check(
        &["a.b*c(d)"],
        "x a.b*c(d) aXbbc(d)\n",
        "x [REDACTED:secret_value] aXbbc(d)\n",
        &[("secret_value", 1)],
    );
}

#[test]
fn a_multi_line_literal_value_is_redacted_line_by_line() {
    check(
        &["first-line\r\nsecond-line\nxy"],
        "first-line\nsecond-line\nxy\n",
        "[REDACTED:secret_value]\n[REDACTED:secret_value]\nxy\n",
        &[("secret_value", 2)],
    );
}

#[test]
fn binary_data_without_secrets_passes_through_unchanged_byte_for_byte() {
    // A deterministic pseudo-random byte soup covering every byte value, including invalid UTF-8.
    let mut state: u32 = 0x1234_5678;
    let mut input: Vec<u8> = (0..=255u8).collect();
    for _ in 0..100_000 {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        input.push((state >> 24) as u8);
    }
    let redactor = Redactor::new(&["a literal secret".to_string()]);
    let (output, found) = redactor.redact(&input);
    assert!(found.is_empty(), "unexpected redactions: {found:?}");
    assert!(output == input, "binary input was changed");

    let mut stream = redactor.stream();
    let mut streamed = Vec::new();
    for chunk in input.chunks(997) {
        streamed.extend(stream.push(chunk));
    }
    streamed.extend(stream.finish());
    assert!(
        streamed == input,
        "binary input was changed by the stream redactor"
    );
}

#[test]
fn a_secret_inside_non_utf8_bytes_is_redacted() {
    let secret = format!("AKIA{}", "ABCDEFGHIJKLMNOP");
    let mut input = vec![0xff, 0xfe, 0x00];
    input.extend_from_slice(secret.as_bytes());
    input.extend_from_slice(&[0xc3, 0x28]);
    let (output, found) = Redactor::new(&[]).redact(&input);
    let mut expected = vec![0xff, 0xfe, 0x00];
    expected.extend_from_slice(b"[REDACTED:aws_access_key]");
    expected.extend_from_slice(&[0xc3, 0x28]);
    assert_eq!(output, expected);
    assert_eq!(found, counts(&[("aws_access_key", 1)]));
}

#[test]
fn an_aws_secret_key_and_a_password_keep_their_name_and_lose_their_value() {
    let aws_secret = format!("wJalrXUtnFEMI/K7MDENG/{}", "bPxRfiCYEXAMPLEKEY");
    check(
        &[],
        &format!("aws_secret_access_key = {aws_secret}\n"),
        "aws_secret_access_key = [REDACTED:aws_secret_key]\n",
        &[("aws_secret_key", 1)],
    );
    check(
        &[],
        "db?user=me&password=hunter22&x=1 --password=\"s3cr3t!\"\n",
        "db?user=me&password=[REDACTED:password]&x=1 --password=\"[REDACTED:password]\"\n",
        &[("password", 2)],
    );
}

#[test]
fn prose_about_a_password_is_not_redacted() {
    let text = "the password: field is required; reset your password via the link\n";
    check(&[], text, text, &[]);
}
