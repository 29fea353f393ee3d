//! The worker's side of issue 14: a task's tool recipes checked before its worktree is made,
//! and a parent's view of its children's results (in `context.json`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use orch_core::tools::{judge, ToolProbe, ToolProblem, ToolRecipe};
use orch_core::Task;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// How long `<tool> --version` may take.
const VERSION_TIMEOUT: Duration = Duration::from_secs(10);

/// The most bytes of `--version` output read.
const VERSION_OUTPUT_CAP: usize = 4096;

/// Check every tool of `recipes` as a step would find it: on `path` (the PATH steps get), its
/// checksum, and its version from `<tool> --version` run with a cleared environment (PATH, LANG
/// and the recipe's `env`). The first problem is returned.
pub async fn check_tools(recipes: &[ToolRecipe], path: Option<&str>) -> Result<(), ToolProblem> {
    let shown_path = path.unwrap_or("");
    for recipe in recipes {
        let probe = probe(recipe, path).await;
        judge(recipe, &probe, shown_path)?;
    }
    Ok(())
}

async fn probe(recipe: &ToolRecipe, path: Option<&str>) -> ToolProbe {
    let cwd = std::env::temp_dir();
    let found = which::which_in(&recipe.name, path.map(str::to_owned), &cwd).ok();
    let Some(binary) = found else {
        return ToolProbe::default();
    };
    let mut probe = ToolProbe {
        path: Some(binary.display().to_string()),
        ..ToolProbe::default()
    };
    if recipe.sha256.is_some() {
        let file = binary.clone();
        probe.sha256 = crate::off_async(move || sha256_of(&file)).ok();
    }
    if recipe.version.is_some() {
        match version_output(&binary, recipe, path).await {
            Ok(text) => probe.version_output = Some(text),
            Err(why) => probe.version_error = Some(why),
        }
    }
    probe
}

fn sha256_of(file: &Path) -> std::io::Result<String> {
    use std::io::Read as _;
    let mut reader = std::fs::File::open(file)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = reader.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

async fn version_output(
    binary: &PathBuf,
    recipe: &ToolRecipe,
    path: Option<&str>,
) -> Result<String, String> {
    // Through the one spawn module with a cleared environment: a version check sees none of
    // orch's tokens or keys.
    let mut env: Vec<(String, std::ffi::OsString)> = Vec::new();
    if let Some(path) = path {
        env.push(("PATH".into(), path.into()));
    }
    if let Some(lang) = std::env::var_os("LANG") {
        env.push(("LANG".into(), lang));
    }
    for (name, value) in &recipe.env {
        env.push((name.clone(), value.into()));
    }
    let output = tokio::time::timeout(
        VERSION_TIMEOUT,
        orch_process::Spawn::new(binary)
            .arg("--version")
            .envs(env)
            .output(),
    )
    .await
    .map_err(|_| {
        format!(
            "`{} --version` did not finish within {}s",
            recipe.name,
            VERSION_TIMEOUT.as_secs()
        )
    })?
    .map_err(|e| format!("`{} --version` could not run: {e}", recipe.name))?;
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    if orch_core::tools::parse_version(&text).is_none() {
        text.push('\n');
        text.push_str(&String::from_utf8_lossy(&output.stderr));
    }
    text.truncate(
        (0..=VERSION_OUTPUT_CAP.min(text.len()))
            .rev()
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(0),
    );
    Ok(text)
}

/// What a parent's steps see of its children in `context.json`: each child's id, title,
/// status and reason, and, when its last run's bundle is in this home, that run's result
/// (summary, status, commit, changed files) and where its `result.json` and `report.md` are.
pub fn children_context(home: &Path, children: &[Task]) -> Vec<Value> {
    children
        .iter()
        .map(|child| {
            let mut entry = json!({
                "id": child.id.0,
                "title": child.spec.title.as_str(),
                "key": child.spec.key,
                "status": child.status.as_str(),
                "reason": child.status_reason,
            });
            if child.run_count > 0 {
                let bundle = home
                    .join("runs")
                    .join(child.id.0.to_string())
                    .join(child.run_count.to_string());
                let result_file = bundle.join("result.json");
                if let Some(result) = std::fs::read(&result_file)
                    .ok()
                    .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
                {
                    entry["result"] = json!({
                        "status": result["status"],
                        "summary": result["summary"],
                        "commit": result["commit"],
                        "changed_files": result["changed_files"],
                        "error": result["error"],
                    });
                    entry["result_file"] = json!(result_file);
                    let report = bundle.join("report.md");
                    if report.is_file() {
                        entry["report_file"] = json!(report);
                    }
                }
            }
            entry
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipe(name: &str, version: Option<&str>, sha256: Option<String>) -> ToolRecipe {
        ToolRecipe {
            name: name.into(),
            version: version.map(str::to_owned),
            sha256,
            env: Default::default(),
            network: None,
        }
    }

    #[tokio::test]
    async fn a_real_tool_is_found_versioned_and_hashed() {
        let path = std::env::var("PATH").ok();
        // `git` is what every orch machine has.
        check_tools(&[recipe("git", Some(">=1.0"), None)], path.as_deref())
            .await
            .unwrap();
        let err = check_tools(&[recipe("git", Some(">=999"), None)], path.as_deref())
            .await
            .unwrap_err();
        assert!(matches!(err, ToolProblem::WrongVersion { .. }), "{err}");
        let err = check_tools(
            &[recipe("git", None, Some("0".repeat(64)))],
            path.as_deref(),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, ToolProblem::WrongChecksum { .. }), "{err}");
        let err = check_tools(
            &[recipe("no-such-tool-orch-test", None, None)],
            path.as_deref(),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, ToolProblem::Missing { .. }), "{err}");
    }
}
