//! Pre-exec validation: shell entrypoints (looking through wrappers such as `env` and `sudo`) and
//! destructive tools whose path arguments, resolved the way the kernel would (symlinks
//! included), leave the workspace.

use std::path::{Path, PathBuf};

use orch_core::Command;

use super::ExecPolicy;

mod args;
mod paths;
mod tools;

use args::parse_args;
use paths::{resolve, too_many_links};
use tools::{
    OptionSpec, DD_SOURCES, DESTRUCTIVE_TOOLS, DOAS_OPTIONS, ENV_OPTIONS, FIND_DELETERS,
    MAX_WRAPPERS, MOVE_OPTIONS, NICE_OPTIONS, NO_VALUES, RSYNC_OPTIONS, SHELLS, SHRED_OPTIONS,
    STDBUF_OPTIONS, STRING_SHELLS, SUDO_OPTIONS, TIMEOUT_OPTIONS, TIME_OPTIONS, TRUNCATE_OPTIONS,
    XARGS_OPTIONS,
};

/// The program a command really runs, after looking through wrappers such as `env` and `sudo`.
struct Invocation {
    /// The program's name without directories, lowercase, without `.exe` (`rm` for `/bin/rm`).
    name: String,
    /// Its arguments.
    args: Vec<String>,
    /// Its working directory, after wrappers such as `env -C`.
    cwd: PathBuf,
    /// Wrappers looked through, outermost first.
    wrappers: Vec<String>,
    /// A wrapper runs it through a shell (`sudo -s`).
    shell_wrapper: Option<String>,
    /// A wrapper adds arguments that cannot be checked here (`xargs -a FILE`).
    hidden_args: Option<String>,
}

/// Where paths are resolved and what they must stay inside.
struct Scope<'a> {
    /// The workspace, absolute with symbolic links resolved.
    root: &'a Path,
    /// The working directory, resolved the same way.
    cwd: PathBuf,
}

pub(super) fn workspace_root(workspace: &Path) -> PathBuf {
    let absolute = std::path::absolute(workspace).unwrap_or_else(|_| workspace.to_path_buf());
    resolve(Path::new("/"), &absolute, true).unwrap_or(absolute)
}

pub(super) fn check_command(
    command: &Command,
    root: &Path,
    policy: &ExecPolicy,
) -> Result<(), String> {
    match command.argv.first() {
        None => return Err(
            "its argv is empty; give the program and its arguments, such as [\"cargo\", \"test\"]"
                .into(),
        ),
        Some(program) if program.is_empty() => {
            return Err(
                "its program name is empty; give the program as the first argv entry".into(),
            );
        }
        Some(_) => {}
    }
    let cwd = match &command.cwd {
        None => root.to_path_buf(),
        Some(dir) => {
            if dir.starts_with('~') || dir.contains('$') {
                return Err(format!(
                    "its cwd `{dir}` would need a shell to expand `~` or `$` and points outside \
                     the workspace; give a cwd relative to the workspace"
                ));
            }
            let resolved =
                resolve(root, Path::new(dir), true).ok_or_else(|| too_many_links(dir))?;
            if !resolved.starts_with(root) {
                return Err(format!(
                    "its cwd `{dir}` resolves to {}, outside the workspace {}; give a cwd relative \
                     to the workspace that stays inside it",
                    resolved.display(),
                    root.display()
                ));
            }
            resolved
        }
    };
    check_argv(&command.argv, &Scope { root, cwd }, policy)
}

fn check_argv(argv: &[String], scope: &Scope<'_>, policy: &ExecPolicy) -> Result<(), String> {
    let invocation = look_through_wrappers(argv, scope)?;
    if !invocation.cwd.starts_with(scope.root) {
        return Err(format!(
            "`{}` changes the working directory to {}, outside the workspace {}; run it in a \
             directory inside the workspace",
            invocation.wrappers.join(" "),
            invocation.cwd.display(),
            scope.root.display()
        ));
    }
    if !policy.allow_shell {
        if let Some(what) = shell_use(&invocation) {
            let through = if invocation.wrappers.is_empty() || invocation.shell_wrapper.is_some() {
                String::new()
            } else {
                format!(" (through `{}`)", invocation.wrappers.join("`, `"))
            };
            return Err(format!(
                "{what}{through}; exec steps are argv arrays, not shell strings: run the program \
                 directly (one command per entry, such as [\"cargo\", \"test\"]), put the script \
                 in a file and run [\"bash\", \"script.sh\"], or set `allow_shell = true` in the \
                 project's .orch.toml"
            ));
        }
    }
    let inner = Scope {
        root: scope.root,
        cwd: invocation.cwd.clone(),
    };
    check_destructive(&invocation, &inner, policy)
}

/// `rm` for `/bin/rm`, `cmd` for `C:\Windows\cmd.exe`.
fn program_name(word: &str) -> String {
    let base = word
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or(word)
        .to_ascii_lowercase();
    match base.strip_suffix(".exe") {
        Some(stem) => stem.to_owned(),
        None => base,
    }
}

/// `NAME=value`, as `env` and `sudo` take before the program.
fn is_assignment(word: &str) -> bool {
    word.split_once('=')
        .is_some_and(|(name, _)| !name.is_empty() && !name.contains('/'))
}

fn look_through_wrappers(argv: &[String], scope: &Scope<'_>) -> Result<Invocation, String> {
    let mut words: Vec<String> = argv.to_vec();
    let mut invocation = Invocation {
        name: String::new(),
        args: Vec::new(),
        cwd: scope.cwd.clone(),
        wrappers: Vec::new(),
        shell_wrapper: None,
        hidden_args: None,
    };
    for _ in 0..MAX_WRAPPERS {
        let Some((program, rest)) = words.split_first() else {
            // A wrapper with nothing after it (`env -i`) runs nothing else.
            invocation.name = invocation.wrappers.pop().unwrap_or_default();
            return Ok(invocation);
        };
        let name = program_name(program);
        let program_at = match name.as_str() {
            "env" => {
                let parsed = parse_args(rest, &ENV_OPTIONS, false);
                if let Some(dir) = parsed.value(&["C", "chdir"]) {
                    invocation.cwd = resolve(&invocation.cwd, Path::new(dir), true)
                        .ok_or_else(|| too_many_links(dir))?;
                }
                let operands = &rest[rest.len() - parsed.operands.len()..];
                if let Some(split) = parsed.value(&["S", "split-string"]) {
                    // `env -S 'sh -c x'` splits the string into words and reads them as its own
                    // command line, so read them again the same way.
                    let mut again = vec![program.clone()];
                    again.extend(shell_words::split(split).map_err(|error| {
                        format!(
                            "its `env -S` string could not be split ({error}); give the words as \
                             separate argv entries"
                        )
                    })?);
                    again.extend(operands.iter().cloned());
                    words = again;
                    continue;
                }
                let skipped = operands
                    .iter()
                    .take_while(|word| *word == "-" || is_assignment(word))
                    .count();
                rest.len() - operands.len() + skipped
            }
            "nice" => first_operand(rest, &NICE_OPTIONS),
            "nohup" | "setsid" => first_operand(rest, &NO_VALUES),
            "stdbuf" => first_operand(rest, &STDBUF_OPTIONS),
            "time" => first_operand(rest, &TIME_OPTIONS),
            // The first operand of `timeout` is the duration.
            "timeout" => first_operand(rest, &TIMEOUT_OPTIONS) + 1,
            "sudo" | "doas" => {
                let spec = if name == "sudo" {
                    &SUDO_OPTIONS
                } else {
                    &DOAS_OPTIONS
                };
                // Operands are read as a program even for `sudo -l` (which only lists): refusing
                // that by mistake is harmless, missing `sudo -k rm -rf /` (which runs rm) is not.
                let parsed = parse_args(rest, spec, false);
                if parsed.has(&["s", "shell", "i", "login"]) {
                    invocation.shell_wrapper = Some(format!("{name} -s"));
                }
                if let Some(dir) = parsed.value(&["D", "chdir"]) {
                    invocation.cwd = resolve(&invocation.cwd, Path::new(dir), true)
                        .ok_or_else(|| too_many_links(dir))?;
                }
                let operands_at = rest.len() - parsed.operands.len();
                operands_at
                    + parsed
                        .operands
                        .iter()
                        .take_while(|word| is_assignment(word))
                        .count()
            }
            "xargs" => {
                let parsed = parse_args(rest, &XARGS_OPTIONS, false);
                if let Some(file) = parsed.value(&["a", "arg-file"]) {
                    invocation.hidden_args = Some(format!("xargs -a {file}"));
                }
                rest.len() - parsed.operands.len()
            }
            "busybox" if rest.first().is_some_and(|applet| !applet.starts_with('-')) => 0,
            _ => break,
        };
        invocation.wrappers.push(name);
        words = rest.get(program_at..).unwrap_or_default().to_vec();
    }
    if invocation.wrappers.len() >= MAX_WRAPPERS {
        return Err(format!(
            "it nests {MAX_WRAPPERS} or more wrappers (`env`, `sudo`, ...); run the program \
             directly"
        ));
    }
    match words.split_first() {
        Some((program, rest)) => {
            invocation.name = program_name(program);
            invocation.args = rest.to_vec();
        }
        None => invocation.name = invocation.wrappers.pop().unwrap_or_default(),
    }
    Ok(invocation)
}

fn first_operand(args: &[String], spec: &OptionSpec) -> usize {
    args.len() - parse_args(args, spec, false).operands.len()
}

/// How the command runs a shell string, if it does.
fn shell_use(invocation: &Invocation) -> Option<String> {
    if let Some(wrapper) = &invocation.shell_wrapper {
        return Some(format!("`{wrapper}` runs the command through a shell"));
    }
    let name = invocation.name.as_str();
    if STRING_SHELLS.contains(&name) {
        return Some(format!("`{name}` is a shell that runs command strings"));
    }
    if SHELLS.contains(&name) {
        return shell_string_flag(name, &invocation.args)
            .map(|flag| format!("`{name} {flag}` runs a shell string"));
    }
    None
}

/// The flag with which a shell is told to run a string (`-c`, `-ec`, `--command`), if any. A
/// shell that runs a script file is not refused: the script's own arguments may contain `-c`.
fn shell_string_flag(name: &str, args: &[String]) -> Option<String> {
    let mut at = 0;
    while at < args.len() {
        let word = args[at].as_str();
        at += 1;
        if word == "--" || word == "-" {
            return None;
        }
        if let Some(long) = word.strip_prefix("--") {
            let (long_name, value) = match long.split_once('=') {
                Some((long_name, value)) => (long_name, Some(value)),
                None => (long, None),
            };
            match long_name {
                "command" | "init-command" => return Some(format!("--{long_name}")),
                "rcfile" | "init-file" if value.is_none() => at += 1,
                _ => {}
            }
            continue;
        }
        let cluster = match (word.strip_prefix('-'), word.strip_prefix('+')) {
            (Some(cluster), _) => {
                if cluster.contains('c') || (name == "fish" && cluster.contains('C')) {
                    return Some(word.to_owned());
                }
                cluster
            }
            (None, Some(cluster)) => cluster,
            (None, None) => return None,
        };
        // `-o errexit` and `-O extglob` take the next word as their value.
        if cluster.ends_with(['o', 'O']) {
            at += 1;
        }
    }
    None
}
/// Check one path argument of a destructive tool; returns where it resolves.
fn check_path(
    scope: &Scope<'_>,
    tool: &str,
    verb: &str,
    arg: &str,
    follow_last: bool,
) -> Result<PathBuf, String> {
    if arg.starts_with('~') {
        return Err(format!(
            "`{tool}` would {verb} `{arg}`: `~` means a home directory, outside the workspace (and \
             no shell expands it); use a path relative to the workspace"
        ));
    }
    if arg.contains('$') {
        return Err(format!(
            "`{tool}` would {verb} `{arg}`: `$` variables such as $HOME point outside the \
             workspace (and no shell expands them); use a path relative to the workspace"
        ));
    }
    // A trailing slash makes the kernel follow a final symbolic link (`rm -r link/`).
    let follow = follow_last || arg.ends_with('/') || arg.ends_with("/.");
    let resolved =
        resolve(&scope.cwd, Path::new(arg), follow).ok_or_else(|| too_many_links(arg))?;
    if resolved == Path::new("/") {
        return Err(format!(
            "`{tool}` would {verb} `{arg}`, which is the filesystem root; only paths inside the \
             workspace {} may be touched",
            scope.root.display()
        ));
    }
    if !resolved.starts_with(scope.root) {
        return Err(format!(
            "`{tool}` would {verb} `{arg}`, which resolves to {}, outside the workspace {}; use a \
             path inside the workspace",
            resolved.display(),
            scope.root.display()
        ));
    }
    Ok(resolved)
}

fn check_destructive(
    invocation: &Invocation,
    scope: &Scope<'_>,
    policy: &ExecPolicy,
) -> Result<(), String> {
    let name = invocation.name.as_str();
    let args = invocation.args.as_slice();
    let is_mkfs = name.starts_with("mkfs");
    if let Some(source) = &invocation.hidden_args {
        if is_mkfs || DESTRUCTIVE_TOOLS.contains(&name) {
            return Err(format!(
                "`{source} {name}` takes the paths `{name}` works on from a file, which cannot be \
                 checked before the run; list the paths in the argv instead"
            ));
        }
    }
    match name {
        "rm" => {
            let parsed = parse_args(args, &NO_VALUES, true);
            let recursive = parsed.has(&["r", "R", "recursive"]);
            for path in &parsed.operands {
                let resolved = check_path(scope, "rm", "delete", path, false)?;
                if recursive && resolved == scope.root {
                    return Err(format!(
                        "`rm -r` would delete `{path}`, the whole workspace {}; delete the files \
                         inside it by name",
                        scope.root.display()
                    ));
                }
            }
        }
        "rmdir" | "unlink" => {
            for path in &parse_args(args, &NO_VALUES, true).operands {
                check_path(scope, name, "delete", path, false)?;
            }
        }
        "dd" => {
            for arg in args {
                if let Some(path) = arg.strip_prefix("of=") {
                    check_path(scope, "dd of=", "overwrite", path, true)?;
                }
                // Reading the kernel's byte sources is how files of zeros or noise are made.
                let harmless_source = |path: &str| DD_SOURCES.contains(&path);
                if let Some(path) = arg
                    .strip_prefix("if=")
                    .filter(|path| !harmless_source(path))
                {
                    check_path(scope, "dd if=", "read", path, true)?;
                }
            }
        }
        "mke2fs" | "mkswap" | "wipefs" => check_every_operand(scope, name, "format", args)?,
        _ if is_mkfs => check_every_operand(scope, name, "format", args)?,
        "shred" => {
            for path in &parse_args(args, &SHRED_OPTIONS, true).operands {
                check_path(scope, "shred", "overwrite", path, true)?;
            }
        }
        "truncate" => {
            for path in &parse_args(args, &TRUNCATE_OPTIONS, true).operands {
                check_path(scope, "truncate", "truncate", path, true)?;
            }
        }
        "chmod" | "chown" | "chgrp" => check_recursive_change(scope, name, args)?,
        "mv" | "cp" => check_move_or_copy(scope, name, args)?,
        "find" => check_find(scope, args, policy)?,
        "git" => check_git(scope, args)?,
        "rsync" => check_rsync(scope, args)?,
        _ => {}
    }
    Ok(())
}

/// Tools whose options vary by variant (`mkfs.ext4 -L label /dev/sdb1`): every word that is not
/// an option is checked as a path; an option value that happens to be checked resolves inside.
fn check_every_operand(
    scope: &Scope<'_>,
    tool: &str,
    verb: &str,
    args: &[String],
) -> Result<(), String> {
    for arg in args.iter().filter(|arg| !arg.starts_with('-')) {
        check_path(scope, tool, verb, arg, true)?;
    }
    Ok(())
}

/// `chmod -R`, `chown -R`, `chgrp -R`: every file operand (after the mode or owner).
fn check_recursive_change(scope: &Scope<'_>, tool: &str, args: &[String]) -> Result<(), String> {
    let mut recursive = false;
    let mut reference = false;
    let mut operands = Vec::new();
    let mut at = 0;
    while at < args.len() {
        let word = args[at].as_str();
        at += 1;
        if word == "--" {
            operands.extend(args[at..].iter().map(String::as_str));
            break;
        }
        if let Some(long) = word.strip_prefix("--") {
            let (long_name, value) = match long.split_once('=') {
                Some((long_name, value)) => (long_name, Some(value)),
                None => (long, None),
            };
            match long_name {
                "recursive" => recursive = true,
                "reference" => {
                    reference = true;
                    at += usize::from(value.is_none());
                }
                "from" => at += usize::from(value.is_none()),
                _ => {}
            }
        } else if word.len() > 1
            && word.starts_with('-')
            && word[1..].chars().all(|c| "RcfvhHLP".contains(c))
        {
            recursive |= word.contains('R');
        } else {
            // Includes modes that look like options, such as `-w`.
            operands.push(word);
        }
    }
    if !recursive {
        return Ok(());
    }
    let files = if reference {
        &operands[..]
    } else {
        operands.get(1..).unwrap_or_default()
    };
    let verb = if tool == "chmod" {
        "change modes under"
    } else {
        "change owners under"
    };
    for path in files {
        check_path(scope, &format!("{tool} -R"), verb, path, true)?;
    }
    Ok(())
}

/// `mv` and `cp` overwrite their target; `mv` also removes its sources from where they were.
fn check_move_or_copy(scope: &Scope<'_>, tool: &str, args: &[String]) -> Result<(), String> {
    let parsed = parse_args(args, &MOVE_OPTIONS, true);
    let (target, sources) = match parsed.value(&["t", "target-directory"]) {
        Some(directory) => (directory, parsed.operands.as_slice()),
        None => match parsed.operands.split_last() {
            Some((target, sources)) if !sources.is_empty() => (target.as_str(), sources),
            // One operand or none: the tool refuses to run.
            _ => return Ok(()),
        },
    };
    check_path(scope, tool, "write to", target, true)?;
    if tool == "mv" {
        for source in sources {
            let resolved = check_path(scope, "mv", "move away", source, false)?;
            if resolved == scope.root {
                return Err(format!(
                    "`mv` would move `{source}`, the whole workspace {}, away; move the files \
                     inside it by name",
                    scope.root.display()
                ));
            }
        }
    }
    Ok(())
}

/// `find ... -delete` and `find ... -exec rm`: the start paths must be inside the workspace, and
/// the `-exec` command is checked like a command of its own.
fn check_find(scope: &Scope<'_>, args: &[String], policy: &ExecPolicy) -> Result<(), String> {
    let mut at = 0;
    while let Some(word) = args.get(at) {
        match word.as_str() {
            "-H" | "-L" | "-P" => at += 1,
            "-D" => at += 2,
            _ if word.starts_with("-O") => at += 1,
            _ => break,
        }
    }
    let is_expression = |word: &String| {
        (word.starts_with('-') && word.len() > 1) || matches!(word.as_str(), "(" | ")" | "!" | ",")
    };
    let mut starts: Vec<&str> = args
        .iter()
        .skip(at)
        .take_while(|word| !is_expression(word))
        .map(String::as_str)
        .collect();
    at += starts.len();
    if starts.is_empty() {
        starts.push(".");
    }
    let expression = args.get(at..).unwrap_or_default();
    let mut deletes = None;
    let mut position = 0;
    while position < expression.len() {
        match expression[position].as_str() {
            "-delete" => deletes = Some("find -delete".to_owned()),
            "-exec" | "-execdir" | "-ok" | "-okdir" => {
                let inner_start = position + 1;
                let inner_end = expression[inner_start..]
                    .iter()
                    .position(|word| word == ";" || word == "+")
                    .map_or(expression.len(), |offset| inner_start + offset);
                let inner = &expression[inner_start..inner_end];
                if !inner.is_empty() {
                    check_argv(inner, scope, policy)?;
                    let program = look_through_wrappers(inner, scope)?.name;
                    if FIND_DELETERS.contains(&program.as_str()) {
                        deletes = Some(format!("find -exec {program}"));
                    }
                }
                position = inner_end;
            }
            _ => {}
        }
        position += 1;
    }
    if let Some(how) = deletes {
        for start in starts {
            check_path(scope, &how, "delete files under", start, true)?;
        }
    }
    Ok(())
}

/// `git push --force` is always refused; `git reset --hard` and `git clean` only outside the
/// workspace (inside it they are how a step starts over).
fn check_git(scope: &Scope<'_>, args: &[String]) -> Result<(), String> {
    let mut directory = scope.cwd.clone();
    let mut work_tree = None;
    let mut at = 0;
    while let Some(word) = args.get(at) {
        at += 1;
        match word.as_str() {
            "-C" => {
                if let Some(dir) = args.get(at) {
                    directory = resolve(&directory, Path::new(dir), true)
                        .ok_or_else(|| too_many_links(dir))?;
                }
                at += 1;
            }
            "-c" | "--git-dir" | "--namespace" | "--config-env" => at += 1,
            "--work-tree" => {
                work_tree = args.get(at).cloned();
                at += 1;
            }
            _ if word.starts_with("--work-tree=") => {
                work_tree = word.strip_prefix("--work-tree=").map(str::to_owned)
            }
            _ if word.starts_with('-') => {}
            _ => {
                at -= 1;
                break;
            }
        }
    }
    let Some(subcommand) = args.get(at) else {
        return Ok(());
    };
    let rest = &args[at + 1..];
    let what = match subcommand.as_str() {
        "push" => {
            if let Some(flag) = push_force_flag(rest) {
                return Err(format!(
                    "`git push {flag}` rewrites the remote's history; push without force (a new \
                     branch, or a pull request) and leave force-pushes to a person"
                ));
            }
            return Ok(());
        }
        "reset" if rest.iter().any(|arg| arg == "--hard") => "git reset --hard",
        "clean" => "git clean",
        _ => return Ok(()),
    };
    if !directory.starts_with(scope.root) {
        return Err(format!(
            "`{what}` would run in {}, outside the workspace {}; run it inside the workspace (drop \
             `-C`, or give a cwd inside the workspace)",
            directory.display(),
            scope.root.display()
        ));
    }
    let inner = Scope {
        root: scope.root,
        cwd: directory,
    };
    if let Some(tree) = work_tree {
        check_path(
            &inner,
            &format!("{what} --work-tree"),
            "discard changes in",
            &tree,
            true,
        )?;
    }
    if what == "git clean" {
        for path in &parse_args(rest, &OptionSpec::new("e", &["exclude"]), true).operands {
            check_path(&inner, what, "delete untracked files under", path, true)?;
        }
    }
    Ok(())
}

/// The force flag of `git push` arguments, if any: `--force`, `-f` (also in a cluster such as
/// `-uf`), `--force-with-lease`, or a `+refspec`.
fn push_force_flag(args: &[String]) -> Option<String> {
    let mut at = 0;
    while let Some(word) = args.get(at) {
        at += 1;
        if word == "--force" || word.starts_with("--force-with-lease") {
            return Some(word.clone());
        }
        if matches!(
            word.as_str(),
            "-o" | "--push-option" | "--repo" | "--receive-pack" | "--exec"
        ) {
            at += 1;
            continue;
        }
        if word.starts_with("--") {
            continue;
        }
        if let Some(cluster) = word.strip_prefix('-') {
            // `-o` takes the rest of the cluster as its value.
            if cluster
                .split('o')
                .next()
                .is_some_and(|flags| flags.contains('f'))
            {
                return Some(word.clone());
            }
            continue;
        }
        if word.starts_with('+') {
            return Some(word.clone());
        }
    }
    None
}

/// `rsync --delete` deletes what its target has that the source lacks; `--remove-source-files`
/// deletes the sources.
fn check_rsync(scope: &Scope<'_>, args: &[String]) -> Result<(), String> {
    let parsed = parse_args(args, &RSYNC_OPTIONS, true);
    let deletes = parsed
        .options
        .iter()
        .any(|(name, _)| name == "del" || name.starts_with("delete"));
    let removes_sources = parsed.has(&["remove-source-files"]);
    let Some((target, sources)) = parsed.operands.split_last() else {
        return Ok(());
    };
    if sources.is_empty() {
        // One operand only lists files.
        return Ok(());
    }
    let check = |tool: &str, verb: &str, path: &str, follow_last: bool| -> Result<(), String> {
        let remote = path.starts_with("rsync://")
            || path
                .split_once(':')
                .is_some_and(|(host, _)| !host.is_empty() && !host.contains('/'));
        if remote {
            return Err(format!(
                "`{tool}` would {verb} `{path}` on another machine, which cannot be checked \
                 against the workspace; sync between paths inside the workspace"
            ));
        }
        check_path(scope, tool, verb, path, follow_last).map(drop)
    };
    if deletes {
        check("rsync --delete", "delete files under", target, true)?;
    }
    if removes_sources {
        for source in sources {
            check("rsync --remove-source-files", "delete", source, false)?;
        }
    }
    Ok(())
}
