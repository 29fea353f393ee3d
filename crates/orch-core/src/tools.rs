//! Tool recipes: the tools a task declares it needs (`tools:` in a task or workflow file, or
//! `--tool` on `orch task add`), and the pure judgement of what a worker found for each.
//!
//! The worker resolves each tool as the task's steps would (the PATH steps get), runs
//! `<tool> --version` and hashes the binary; [`judge`] decides from those facts. A tool that is
//! missing or does not match fails the task for good (another attempt on the same worker finds
//! the same binary), before its worktree is made.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// One tool a task needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolRecipe {
    /// The program's name as steps call it (looked up on the PATH steps get), such as `git`.
    pub name: String,
    /// A version requirement such as `>=1.2`, `^2`, `>=1.2, <2`; a bare version (`2.15.0`,
    /// `1.7`) means exactly that version (`=`). Compared with the first version number
    /// `<name> --version` prints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The SHA-256 of the binary, 64 hexadecimal digits (an optional `sha256:` prefix).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Environment variables the tool needs; they are set for the version check.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Whether the tool needs the network (recorded with the task; informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<bool>,
}

/// What a worker found for one tool.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ToolProbe {
    /// Where the program was found on the steps' PATH (`None`: not found).
    pub path: Option<String>,
    /// What `--version` printed (stdout, else stderr), when a version was asked for.
    pub version_output: Option<String>,
    /// Why `--version` could not be run, if it could not.
    pub version_error: Option<String>,
    /// The binary's SHA-256 in lowercase hex, when a checksum was asked for.
    pub sha256: Option<String>,
}

/// Why a tool does not fit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToolProblem {
    /// Not on the PATH.
    #[error("tool `{name}` is not installed: no `{name}` on the PATH steps get ({path})")]
    Missing {
        /// The tool.
        name: String,
        /// The PATH searched.
        path: String,
    },
    /// Its version does not meet the requirement.
    #[error("tool `{name}` at {at} is version {found}, but the task needs `{required}`")]
    WrongVersion {
        /// The tool.
        name: String,
        /// Where it was found.
        at: String,
        /// The version it reported.
        found: String,
        /// The requirement.
        required: String,
    },
    /// No version could be read.
    #[error(
        "tool `{name}` at {at}: cannot tell its version ({why}), but the task needs `{required}`"
    )]
    NoVersion {
        /// The tool.
        name: String,
        /// Where it was found.
        at: String,
        /// What went wrong.
        why: String,
        /// The requirement.
        required: String,
    },
    /// Its checksum differs.
    #[error("tool `{name}` at {at} has sha256 {found}, but the task needs {expected}")]
    WrongChecksum {
        /// The tool.
        name: String,
        /// Where it was found.
        at: String,
        /// The binary's hash.
        found: String,
        /// The declared hash.
        expected: String,
    },
}

impl ToolRecipe {
    /// Check the recipe's own fields (at submission): a plain program name, a version
    /// requirement that parses, a well-formed checksum, sane environment names.
    pub fn validate(&self) -> Result<(), String> {
        let name = &self.name;
        let plain = !name.is_empty()
            && name.len() <= 100
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._+-".contains(c))
            && !name.starts_with(['.', '-']);
        if !plain {
            return Err(format!(
                "tool name `{name}` must be a plain program name (letters, digits, `.`, `_`, `+`, `-`; no path), looked up on the PATH steps get"
            ));
        }
        if let Some(version) = &self.version {
            requirement(version).map_err(|e| {
                format!("tool `{name}`: version requirement `{version}` does not parse ({e}); write it like `>=1.2`, `^2` or `1.7.0`")
            })?;
        }
        if let Some(sha) = &self.sha256 {
            if normalized_sha256(sha).is_none() {
                return Err(format!(
                    "tool `{name}`: sha256 `{sha}` is not 64 hexadecimal digits (an optional `sha256:` prefix)"
                ));
            }
        }
        for key in self.env.keys() {
            let ok = !key.is_empty()
                && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !key.starts_with(|c: char| c.is_ascii_digit());
            if !ok {
                return Err(format!(
                    "tool `{name}`: environment variable name `{key}` must use only letters, digits and `_` and not start with a digit"
                ));
            }
        }
        Ok(())
    }

    /// The declared checksum in lowercase hex, without a prefix.
    pub fn expected_sha256(&self) -> Option<String> {
        self.sha256.as_deref().and_then(normalized_sha256)
    }
}

/// A version requirement; a bare version means exactly it.
pub fn requirement(text: &str) -> Result<semver::VersionReq, semver::Error> {
    let text = text.trim();
    if text.starts_with(|c: char| c.is_ascii_digit()) {
        semver::VersionReq::parse(&format!("={text}"))
    } else {
        semver::VersionReq::parse(text)
    }
}

fn normalized_sha256(text: &str) -> Option<String> {
    let hex = text.trim();
    let hex = hex.strip_prefix("sha256:").unwrap_or(hex);
    (hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit())).then(|| hex.to_lowercase())
}

/// The first version number in what a tool printed, read leniently: `git version 2.39.2`,
/// `jq-1.6`, `v18.19.0`, `rustc 1.83.0 (90b35a623 2024-11-26)`, `Python 3.11`; missing minor
/// or patch numbers are 0, a pre-release suffix is kept when it parses.
pub fn parse_version(output: &str) -> Option<semver::Version> {
    let bytes = output.as_bytes();
    let mut best: Option<semver::Version> = None;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit()
            && (i == 0 || !bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'v')
        {
            let start = i;
            let mut end = i;
            while end < bytes.len() && (bytes[end].is_ascii_digit() || bytes[end] == b'.') {
                end += 1;
            }
            let numbers: Vec<&str> = output[start..end]
                .trim_end_matches('.')
                .split('.')
                .filter(|s| !s.is_empty())
                .collect();
            let parsed: Option<Vec<u64>> = numbers.iter().map(|n| n.parse().ok()).collect();
            if let Some(parsed) = parsed {
                let mut version = semver::Version::new(
                    parsed.first().copied().unwrap_or(0),
                    parsed.get(1).copied().unwrap_or(0),
                    parsed.get(2).copied().unwrap_or(0),
                );
                if numbers.len() == 3 && bytes.get(end) == Some(&b'-') {
                    let tail: String = output[end + 1..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '.')
                        .collect();
                    if let Ok(pre) = semver::Prerelease::new(&tail) {
                        version.pre = pre;
                    }
                }
                if numbers.len() >= 2 {
                    return Some(version);
                }
                if best.is_none() {
                    best = Some(version);
                }
            }
            i = end;
        } else {
            i += 1;
        }
    }
    best
}

/// Whether what the worker found for `recipe` fits; `search_path` is the PATH it searched
/// (for the message).
pub fn judge(recipe: &ToolRecipe, probe: &ToolProbe, search_path: &str) -> Result<(), ToolProblem> {
    let name = recipe.name.clone();
    let Some(at) = probe.path.clone() else {
        return Err(ToolProblem::Missing {
            name,
            path: search_path.to_owned(),
        });
    };
    if let Some(expected) = recipe.expected_sha256() {
        let found = probe.sha256.clone().unwrap_or_default();
        if found != expected {
            return Err(ToolProblem::WrongChecksum {
                name,
                at,
                found,
                expected,
            });
        }
    }
    if let Some(required) = &recipe.version {
        let Ok(req) = requirement(required) else {
            return Err(ToolProblem::NoVersion {
                name,
                at,
                why: "the requirement does not parse".into(),
                required: required.clone(),
            });
        };
        let output = probe.version_output.as_deref().unwrap_or_default();
        let Some(found) = parse_version(output) else {
            let why = probe.version_error.clone().unwrap_or_else(|| {
                let shown: String = output.trim().chars().take(80).collect();
                format!(
                    "`{} --version` printed no version number: {shown:?}",
                    recipe.name
                )
            });
            return Err(ToolProblem::NoVersion {
                name,
                at,
                why,
                required: required.clone(),
            });
        };
        // A pre-release only matches a requirement naming one; compare the release itself too,
        // so `1.2.0-rc1` meets `>=1.0`.
        let release = semver::Version::new(found.major, found.minor, found.patch);
        if !req.matches(&found) && !req.matches(&release) {
            return Err(ToolProblem::WrongVersion {
                name,
                at,
                found: found.to_string(),
                required: required.clone(),
            });
        }
    }
    Ok(())
}

impl fmt::Display for ToolRecipe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(version) = &self.version {
            write!(f, " {version}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipe(version: Option<&str>, sha256: Option<&str>) -> ToolRecipe {
        ToolRecipe {
            name: "git".into(),
            version: version.map(str::to_owned),
            sha256: sha256.map(str::to_owned),
            env: BTreeMap::new(),
            network: None,
        }
    }

    #[test]
    fn versions_are_read_leniently() {
        let cases = [
            ("git version 2.39.2", "2.39.2"),
            ("jq-1.6", "1.6.0"),
            ("v18.19.0\n", "18.19.0"),
            ("rustc 1.83.0 (90b35a623 2024-11-26)", "1.83.0"),
            ("Python 3.11", "3.11.0"),
            ("tool 5", "5.0.0"),
            ("sha1 2024-11-26 tool 1.2.3-rc1", "2024.0.0"),
            ("mytool 1.2.3-rc.1 (build)", "1.2.3-rc.1"),
        ];
        for (output, expected) in cases {
            let found = parse_version(output).map(|v| v.to_string());
            if output.starts_with("sha1") {
                // A date is not a dotted version; the first dotted number wins.
                assert_eq!(found.as_deref(), Some("1.2.3-rc1"), "{output}");
                continue;
            }
            assert_eq!(found.as_deref(), Some(expected), "{output}");
        }
        assert_eq!(parse_version("no digits here"), None);
    }

    #[test]
    fn a_bare_version_is_exact_and_operators_are_semver() {
        let probe = |out: &str| ToolProbe {
            path: Some("/usr/bin/git".into()),
            version_output: Some(out.into()),
            ..ToolProbe::default()
        };
        assert!(judge(
            &recipe(Some(">=1.2"), None),
            &probe("git version 2.39.2"),
            "/usr/bin"
        )
        .is_ok());
        assert!(judge(
            &recipe(Some("2.39"), None),
            &probe("git version 2.39.2"),
            "/usr/bin"
        )
        .is_ok());
        let err = judge(
            &recipe(Some("2.40.0"), None),
            &probe("git version 2.39.2"),
            "/usr/bin",
        )
        .unwrap_err();
        expect_test::expect![
            "tool `git` at /usr/bin/git is version 2.39.2, but the task needs `2.40.0`"
        ]
        .assert_eq(&err.to_string());
        assert!(judge(
            &recipe(Some(">=1.0"), None),
            &probe("git 1.2.0-rc1"),
            "/usr/bin"
        )
        .is_ok());
        let err = judge(&recipe(Some(">=1"), None), &probe("nothing"), "/usr/bin").unwrap_err();
        assert!(matches!(err, ToolProblem::NoVersion { .. }), "{err}");
    }

    #[test]
    fn a_missing_tool_or_a_wrong_checksum_is_said() {
        let err = judge(&recipe(None, None), &ToolProbe::default(), "/usr/bin:/bin").unwrap_err();
        expect_test::expect![
            "tool `git` is not installed: no `git` on the PATH steps get (/usr/bin:/bin)"
        ]
        .assert_eq(&err.to_string());
        let sha = "a".repeat(64);
        let probe = ToolProbe {
            path: Some("/usr/bin/git".into()),
            sha256: Some("b".repeat(64)),
            ..ToolProbe::default()
        };
        let err = judge(
            &recipe(None, Some(&format!("sha256:{}", sha.to_uppercase()))),
            &probe,
            "",
        )
        .unwrap_err();
        assert!(
            matches!(err, ToolProblem::WrongChecksum { ref expected, .. } if *expected == sha),
            "{err}"
        );
    }

    #[test]
    fn recipes_are_validated() {
        assert!(recipe(Some(">=1.2, <2"), Some(&"0".repeat(64)))
            .validate()
            .is_ok());
        let bad = |r: ToolRecipe| r.validate().unwrap_err();
        assert!(bad(recipe(Some(">>1"), None)).contains("does not parse"));
        assert!(bad(recipe(None, Some("abc"))).contains("64 hexadecimal"));
        let mut path = recipe(None, None);
        path.name = "/usr/bin/git".into();
        assert!(bad(path).contains("plain program name"));
        let mut env = recipe(None, None);
        env.env.insert("A B".into(), "x".into());
        assert!(bad(env).contains("environment variable"));
    }
}
