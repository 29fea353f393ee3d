//! Pushing a finished task's branch to the project's remote, in orch's own process (never inside
//! a step's sandbox), through the hardened runner with exactly one door opened: the transport
//! of the remote's scheme, and (for https) a credential helper that reads the forge's token from
//! an environment variable given to this one git process.
//!
//! The token is never in an argument (the helper's text names the variable, not the value), a
//! URL, or any config file: `-c` settings live only in the process, and the runner's cleared
//! environment means nothing but this git (and the helper it starts) sees the variable. Tasks
//! cannot read another process's environment (Landlock denies `ptrace` access across domains).
//!
//! Crash safety: the pushed ref is set to one named commit (`<sha>:refs/heads/<branch>`), so
//! pushing the same commit again after a crash answers "up to date" and changes nothing; a
//! later push of the same branch is guarded by `--force-with-lease` on the commit pushed before
//! (a follow-up run rebased the branch), and never overwrites someone else's push.

use std::path::Path;

use super::git::{git_command, git_failure, git_output, stdout_line, GitOutput, GitScope};
use super::WorkspaceError;

/// The environment variable the credential helper reads the token from.
pub const TOKEN_VAR: &str = "ORCH_FORGE_TOKEN";

/// The user name sent with a token (GitHub ignores it for tokens; this one is documented).
const TOKEN_USER: &str = "x-access-token";

/// A forge token: never printed.
#[derive(Clone)]
pub struct ForgeToken(String);

impl ForgeToken {
    /// Wrap a token (trimmed of the newline a token file usually ends with).
    pub fn new(token: &str) -> ForgeToken {
        ForgeToken(token.trim().to_owned())
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ForgeToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ForgeToken(***)")
    }
}

/// One push: which commit goes to which branch of which remote.
#[derive(Debug, Clone)]
pub struct PushRequest<'a> {
    /// The main checkout (its repository holds the task's branch).
    pub project_dir: &'a Path,
    /// The remote: a name of the main repository's config (`origin`) or a URL.
    pub remote: &'a str,
    /// The commit to push.
    pub commit: &'a str,
    /// The remote branch to set to it.
    pub branch: &'a str,
    /// The commit this orch pushed to that branch before, if any (the lease).
    pub previous: Option<&'a str>,
    /// The token for https remotes.
    pub token: Option<&'a ForgeToken>,
}

/// Resolve the remote's push URL: a URL as given, or the named remote's push URL from the main
/// repository's own config (which tasks cannot write).
pub async fn remote_url(project_dir: &Path, remote: &str) -> Result<String, WorkspaceError> {
    if remote.contains("://") || remote.starts_with('/') {
        return Ok(remote.to_owned());
    }
    let scope = GitScope::Discover { dir: project_dir };
    let args = ["remote", "get-url", "--push", remote];
    let output = git_output(&scope, &args).await?;
    if !output.status.success() {
        return Err(git_failure(&scope, &args, &output));
    }
    Ok(stdout_line(&output.stdout))
}

/// The transport a URL needs (`https`, `http`, `file`), or why orch does not push there.
pub fn transport(url: &str) -> Result<&'static str, String> {
    let scheme = if url.starts_with('/') {
        "file"
    } else {
        url.split_once("://").map_or("", |(scheme, _)| scheme)
    };
    match scheme {
        "https" => Ok("https"),
        "http" => Ok("http"),
        "file" => Ok("file"),
        _ => Err(format!(
            "orch pushes over https with the forge's token (or to a file:// repository); the \
             remote's URL `{}` is not one (set its push URL to the https address)",
            redact_url(url)
        )),
    }
}

/// A URL with any user info replaced, for messages.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// The credential helper: answers `get` with the token read from [`TOKEN_VAR`], never stores
/// or erases anything. Its text holds the variable's name only.
pub fn credential_helper() -> String {
    format!(
        "!orch_credential() {{ test \"$1\" = get || return 0; \
         printf 'username={TOKEN_USER}\\npassword=%s\\n' \"${TOKEN_VAR}\"; }}; orch_credential"
    )
}

/// The arguments of the push (after the runner's locked settings). No secret is among them.
pub fn push_args(
    url: &str,
    transport: &str,
    commit: &str,
    branch: &str,
    previous: Option<&str>,
    with_token: bool,
) -> Vec<String> {
    let mut args = vec![
        "-c".to_owned(),
        format!("protocol.{transport}.allow=always"),
    ];
    if with_token {
        // An empty value first empties the helper list (the runner's own empty entry included),
        // so only orch's helper is asked.
        args.extend([
            "-c".to_owned(),
            "credential.helper=".to_owned(),
            "-c".to_owned(),
            format!("credential.helper={}", credential_helper()),
        ]);
    }
    args.extend([
        "push".to_owned(),
        "--porcelain".to_owned(),
        "--no-verify".to_owned(),
    ]);
    let target = format!("refs/heads/{branch}");
    if let Some(previous) = previous {
        args.push(format!("--force-with-lease={target}:{previous}"));
    }
    args.push(url.to_owned());
    args.push(format!("{commit}:{target}"));
    args
}

/// Push `request.commit` to `request.branch` of the remote. Pushing a commit the branch is at
/// already succeeds and changes nothing.
pub async fn push_branch(request: &PushRequest<'_>) -> Result<(), WorkspaceError> {
    check_branch_name(request.branch)?;
    if !request.commit.chars().all(|c| c.is_ascii_hexdigit()) || request.commit.len() < 40 {
        return Err(WorkspaceError::Git {
            args: "push".into(),
            dir: request.project_dir.to_owned(),
            stderr: format!("`{}` is not a full commit id", request.commit),
        });
    }
    let url = remote_url(request.project_dir, request.remote).await?;
    let transport = transport(&url).map_err(|stderr| WorkspaceError::Git {
        args: "push".into(),
        dir: request.project_dir.to_owned(),
        stderr,
    })?;
    let with_token = request.token.is_some() && transport != "file";
    let args = push_args(
        &url,
        transport,
        request.commit,
        request.branch,
        request.previous,
        with_token,
    );
    let scope = GitScope::Discover {
        dir: request.project_dir,
    };
    let mut command = git_command(&scope, &args);
    if let (true, Some(token)) = (with_token, request.token) {
        command = command.envs([(TOKEN_VAR, token.expose())]);
    }
    let output = command
        .output()
        .await
        .map_err(|source| WorkspaceError::Io {
            context: format!("run `git push` in {}", request.project_dir.display()),
            source: std::io::Error::other(source),
        })?;
    let output = GitOutput {
        status: output.status,
        stdout: output.stdout,
        stderr: output.stderr,
    };
    if output.status.success() {
        return Ok(());
    }
    // The message is git's: it names the URL (without credentials: none are in it) and the ref.
    let shown: Vec<String> = args
        .iter()
        .map(|a| {
            if a.starts_with("credential.helper=!") {
                "credential.helper=<orch>".to_owned()
            } else {
                a.clone()
            }
        })
        .collect();
    // `--porcelain` puts the refusal of each ref (`!	<ref>	[rejected] (stale info)`) on
    // stdout; add it to git's stderr so the error says why.
    let mut failure = git_failure(&scope, &shown, &output);
    if let WorkspaceError::Git { stderr, .. } = &mut failure {
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            if line.starts_with('!') {
                stderr.push_str("; ");
                stderr.push_str(&line.replace('\t', " "));
            }
        }
    }
    Err(failure)
}

/// A branch name orch pushes: what git accepts, without option-like or range syntax.
fn check_branch_name(branch: &str) -> Result<(), WorkspaceError> {
    let valid = !branch.is_empty()
        && !branch.starts_with('-')
        && !branch.starts_with('/')
        && !branch.ends_with('/')
        && !branch.ends_with(".lock")
        && !branch.contains("..")
        && !branch.contains("//")
        && !branch.contains("@{")
        && branch
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if valid {
        Ok(())
    } else {
        Err(WorkspaceError::Git {
            args: "push".into(),
            dir: std::path::PathBuf::new(),
            stderr: format!("`{branch}` is not a branch name orch pushes"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::process::Command;

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@t"])
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn repo_with_commit(dir: &Path) -> String {
        git(dir, &["init", "-q", "-b", "main"]);
        std::fs::write(dir.join("a.txt"), "one\n").unwrap();
        git(dir, &["add", "a.txt"]);
        git(dir, &["commit", "-q", "-m", "one"]);
        git(dir, &["rev-parse", "HEAD"])
    }

    #[tokio::test]
    async fn a_branch_is_pushed_to_a_bare_remote_and_a_repeat_changes_nothing() {
        let root = tempfile::tempdir().unwrap();
        let project = root.path().join("project");
        let remote = root.path().join("remote.git");
        std::fs::create_dir_all(&project).unwrap();
        let first = repo_with_commit(&project);
        git(root.path(), &["init", "-q", "--bare", "remote.git"]);
        let url = format!("file://{}", remote.display());
        git(&project, &["remote", "add", "origin", &url]);
        let token = ForgeToken::new("ghp_neverused0123456789");
        let push = |commit: &str, previous: Option<&str>| {
            let commit = commit.to_owned();
            let previous = previous.map(str::to_owned);
            let project = project.clone();
            let token = token.clone();
            async move {
                push_branch(&PushRequest {
                    project_dir: &project,
                    remote: "origin",
                    commit: &commit,
                    branch: "orch/task-1",
                    previous: previous.as_deref(),
                    token: Some(&token),
                })
                .await
            }
        };
        push(&first, None).await.unwrap();
        assert_eq!(
            git(&remote, &["rev-parse", "refs/heads/orch/task-1"]),
            first
        );
        // The same commit again (a crash before the push was recorded): harmless.
        push(&first, None).await.unwrap();
        // A follow-up commit, pushed with the lease of the first.
        std::fs::write(project.join("a.txt"), "two\n").unwrap();
        git(&project, &["commit", "-q", "-am", "two"]);
        let second = git(&project, &["rev-parse", "HEAD"]);
        push(&second, Some(&first)).await.unwrap();
        assert_eq!(
            git(&remote, &["rev-parse", "refs/heads/orch/task-1"]),
            second
        );
        // A lease on a commit the remote is no longer at is refused: someone else pushed.
        let stale = push(&first, Some(&first)).await.unwrap_err();
        assert!(
            stale.to_string().contains("stale info") || stale.to_string().contains("rejected"),
            "{stale}"
        );
        assert_eq!(
            git(&remote, &["rev-parse", "refs/heads/orch/task-1"]),
            second
        );
    }

    #[test]
    fn no_argument_holds_the_token_and_odd_remotes_are_refused() {
        let args = push_args(
            "https://github.com/octo/w.git",
            "https",
            &"a".repeat(40),
            "orch/1-fix",
            None,
            true,
        );
        let text = args.join(" ");
        assert!(text.contains(TOKEN_VAR), "{text}");
        assert!(!text.contains("ghp_"), "{text}");
        assert!(transport("git@github.com:octo/w.git")
            .unwrap_err()
            .contains("https"));
        assert!(transport("https://user:secret@x/y").is_ok());
        assert!(!transport("ssh://user:hunter2@x/y")
            .unwrap_err()
            .contains("hunter2"));
        assert!(check_branch_name("--upload-pack=x").is_err());
        assert!(check_branch_name("orch/12-fix-it").is_ok());
    }

    /// A real https-like push (plain http on 127.0.0.1) to a server that asks for credentials:
    /// git gets the token from orch's helper and sends it, and nothing else carried it.
    #[tokio::test]
    async fn the_token_reaches_the_server_through_the_helper_only() {
        let root = tempfile::tempdir().unwrap();
        let project = root.path().join("project");
        std::fs::create_dir_all(&project).unwrap();
        let commit = repo_with_commit(&project);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let mut authorizations = Vec::new();
            for _ in 0..2 {
                let Ok((stream, _)) = listener.accept() else {
                    break;
                };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap_or(0) > 0 {
                    if line == "\r\n" {
                        break;
                    }
                    if let Some(value) = line.strip_prefix("Authorization: ") {
                        authorizations.push(value.trim().to_owned());
                    }
                    line.clear();
                }
                let mut stream = stream;
                let answer = if authorizations.is_empty() {
                    "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"t\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                } else {
                    "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                };
                let _ = stream.write_all(answer.as_bytes());
            }
            authorizations
        });
        let token = ForgeToken::new("ghp_secret0123456789abcdef\n");
        let url = format!("http://127.0.0.1:{port}/octo/w.git");
        let error = push_branch(&PushRequest {
            project_dir: &project,
            remote: &url,
            commit: &commit,
            branch: "orch/1",
            previous: None,
            token: Some(&token),
        })
        .await
        .unwrap_err();
        let message = error.to_string();
        assert!(!message.contains("ghp_secret"), "{message}");
        let authorizations = server.join().unwrap();
        use base64::Engine as _;
        let expected = base64::engine::general_purpose::STANDARD
            .encode("x-access-token:ghp_secret0123456789abcdef");
        assert_eq!(authorizations, vec![format!("Basic {expected}")]);
        // Nothing was written to the repository's config.
        let config = std::fs::read_to_string(project.join(".git/config")).unwrap();
        assert!(
            !config.contains("ghp_") && !config.contains("credential"),
            "{config}"
        );
    }
}
