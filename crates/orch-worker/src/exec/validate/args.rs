//! Getopt-style splitting of a command line into options and operands.

use super::tools::OptionSpec;

/// Options and operands of one command line.
pub(super) struct ParsedArgs {
    /// Options in order: name (`n` for `-n`, `signal` for `--signal`) and value.
    pub(super) options: Vec<(String, Option<String>)>,
    /// The other words.
    pub(super) operands: Vec<String>,
}

impl ParsedArgs {
    pub(super) fn has(&self, names: &[&str]) -> bool {
        self.options
            .iter()
            .any(|(name, _)| names.contains(&name.as_str()))
    }

    pub(super) fn value(&self, names: &[&str]) -> Option<&str> {
        self.options
            .iter()
            .rev()
            .find(|(name, _)| names.contains(&name.as_str()))
            .and_then(|(_, value)| value.as_deref())
    }
}

/// Split `args` into options and operands the way getopt does. With `permute` (GNU tools such as
/// `rm`), options may follow operands; without it (wrappers such as `env`), the first operand
/// ends the options, and it and everything after it are operands.
pub(super) fn parse_args(args: &[String], spec: &OptionSpec, permute: bool) -> ParsedArgs {
    let mut parsed = ParsedArgs {
        options: Vec::new(),
        operands: Vec::new(),
    };
    let mut at = 0;
    while at < args.len() {
        let word = args[at].as_str();
        at += 1;
        if word == "--" {
            parsed.operands.extend(args[at..].iter().cloned());
            break;
        }
        if let Some(long) = word.strip_prefix("--") {
            if spec.numeric && !long.is_empty() && long.chars().all(|c| c.is_ascii_digit()) {
                continue;
            }
            match long.split_once('=') {
                Some((name, value)) => parsed
                    .options
                    .push((name.to_owned(), Some(value.to_owned()))),
                None if spec.long_with_value.contains(&long) => {
                    parsed
                        .options
                        .push((long.to_owned(), args.get(at).cloned()));
                    at += 1;
                }
                None => parsed.options.push((long.to_owned(), None)),
            }
            continue;
        }
        if let Some(cluster) = word.strip_prefix('-').filter(|cluster| !cluster.is_empty()) {
            if spec.numeric && cluster.parse::<i64>().is_ok() {
                continue;
            }
            for (offset, short) in cluster.char_indices() {
                if spec.short_with_value.contains(short) {
                    let attached = &cluster[offset + short.len_utf8()..];
                    let value = if attached.is_empty() {
                        at += 1;
                        args.get(at - 1).cloned()
                    } else {
                        Some(attached.to_owned())
                    };
                    parsed.options.push((short.to_string(), value));
                    break;
                }
                parsed.options.push((short.to_string(), None));
            }
            continue;
        }
        if permute {
            parsed.operands.push(word.to_owned());
        } else {
            parsed.operands.extend(args[at - 1..].iter().cloned());
            break;
        }
    }
    parsed
}
