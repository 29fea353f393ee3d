//! Pre-exec validation: shell entrypoints and destructive tools aimed outside the workspace are
//! refused before anything of the step runs, with a message that names the command and what to do
//! instead; the same tools aimed inside the workspace run.

mod support_exec;

use std::path::Path;

use expect_test::{expect, Expect};
use orch_core::Command;
use orch_worker::exec::{self, ExecPolicy};
use support_exec::{command, policy, validate_then_run, TestWorkspace};

/// Run the step `[touch ran-first, refused]` the way the worker does (validate all, then run in
/// order) and check that it was refused at the second command, that nothing ran (not even the
/// first command), that the victim file outside the workspace is untouched, and the message.
///
/// Only for commands whose effects, if validation wrongly let them run, stay inside the temp dir.
async fn check_refused(
    workspace: &TestWorkspace,
    policy: &ExecPolicy,
    refused: Command,
    expect: Expect,
) {
    let first = command(&["touch", "ran-first"]);
    let argv = refused.argv.clone();
    let error = match validate_then_run(workspace, &[first, refused], policy).await {
        Err(error) => error,
        Ok(_) => panic!("{argv:?} was not refused"),
    };
    assert_eq!(
        error.index, 1,
        "{argv:?}: the refusal names the command's index"
    );
    assert!(
        !workspace.path("ran-first").exists(),
        "{argv:?}: the step's first command ran"
    );
    for dir in [
        &workspace.root,
        &workspace.top,
        &workspace.top.join("outside"),
    ] {
        assert!(
            !dir.join("marker").exists(),
            "{argv:?}: the refused command ran and made {}/marker",
            dir.display()
        );
    }
    workspace.assert_victim_untouched();
    expect.assert_eq(&workspace.display(&error.to_string()));
}

/// For commands that must never run even if validation is broken (`rm -rf /`): validate only.
fn check_refused_without_running(
    workspace: &TestWorkspace,
    policy: &ExecPolicy,
    refused: Command,
    expect: Expect,
) {
    let argv = refused.argv.clone();
    match exec::validate(&[refused], &workspace.root, policy) {
        Err(error) => expect.assert_eq(&workspace.display(&error.to_string())),
        Ok(()) => panic!("{argv:?} was not refused"),
    }
}

fn check_allowed_without_running(workspace: &TestWorkspace, policy: &ExecPolicy, allowed: Command) {
    let argv = allowed.argv.clone();
    if let Err(error) = exec::validate(&[allowed], &workspace.root, policy) {
        panic!("{argv:?} was refused: {error}");
    }
}

fn in_dir(mut command: Command, cwd: &str) -> Command {
    command.cwd = Some(cwd.to_owned());
    command
}

fn symlink(target: &Path, link: &Path) {
    std::os::unix::fs::symlink(target, link).expect("create a symbolic link");
}

#[tokio::test]
async fn a_shell_running_a_string_is_refused_and_nothing_of_the_step_runs() {
    let workspace = TestWorkspace::new();
    let policy = policy();
    check_refused(&workspace, &policy, command(&["sh", "-c", "touch marker"]), expect![[r#"command 1 (`sh -c 'touch marker'`) refused: `sh -c` runs a shell string; exec steps are argv arrays, not shell strings: run the program directly (one command per entry, such as ["cargo", "test"]), put the script in a file and run ["bash", "script.sh"], or set `allow_shell = true` in the project's .orch.toml"#]]).await;
    check_refused(&workspace, &policy, command(&["/bin/bash", "-ec", "touch marker"]), expect![[r#"command 1 (`/bin/bash -ec 'touch marker'`) refused: `bash -ec` runs a shell string; exec steps are argv arrays, not shell strings: run the program directly (one command per entry, such as ["cargo", "test"]), put the script in a file and run ["bash", "script.sh"], or set `allow_shell = true` in the project's .orch.toml"#]]).await;
    check_refused(&workspace, &policy, command(&["bash", "-o", "pipefail", "--norc", "-c", "touch marker"]), expect![[r#"command 1 (`bash -o pipefail --norc -c 'touch marker'`) refused: `bash -c` runs a shell string; exec steps are argv arrays, not shell strings: run the program directly (one command per entry, such as ["cargo", "test"]), put the script in a file and run ["bash", "script.sh"], or set `allow_shell = true` in the project's .orch.toml"#]]).await;
    check_refused(&workspace, &policy, command(&["dash", "-x", "-c", "touch marker"]), expect![[r#"command 1 (`dash -x -c 'touch marker'`) refused: `dash -c` runs a shell string; exec steps are argv arrays, not shell strings: run the program directly (one command per entry, such as ["cargo", "test"]), put the script in a file and run ["bash", "script.sh"], or set `allow_shell = true` in the project's .orch.toml"#]]).await;
    check_refused(&workspace, &policy, command(&["zsh", "-c", "touch marker"]), expect![[r#"command 1 (`zsh -c 'touch marker'`) refused: `zsh -c` runs a shell string; exec steps are argv arrays, not shell strings: run the program directly (one command per entry, such as ["cargo", "test"]), put the script in a file and run ["bash", "script.sh"], or set `allow_shell = true` in the project's .orch.toml"#]]).await;
    check_refused(&workspace, &policy, command(&["fish", "--command=touch marker"]), expect![[r#"command 1 (`fish '--command=touch marker'`) refused: `fish --command` runs a shell string; exec steps are argv arrays, not shell strings: run the program directly (one command per entry, such as ["cargo", "test"]), put the script in a file and run ["bash", "script.sh"], or set `allow_shell = true` in the project's .orch.toml"#]]).await;
}

#[tokio::test]
async fn a_shell_string_behind_a_wrapper_is_refused() {
    let workspace = TestWorkspace::new();
    let policy = policy();
    let cases: &[&[&str]] = &[
        &["env", "-i", "FOO=1", "sh", "-c", "touch marker"],
        &[
            "/usr/bin/env",
            "-u",
            "HOME",
            "--",
            "bash",
            "-c",
            "touch marker",
        ],
        &["env", "-S", "sh -c 'touch marker'"],
        &["nice", "-n", "5", "sh", "-c", "touch marker"],
        &["nice", "-10", "sh", "-c", "touch marker"],
        &["nohup", "sh", "-c", "touch marker"],
        &[
            "timeout",
            "-s",
            "KILL",
            "--kill-after=1",
            "5s",
            "bash",
            "-c",
            "touch marker",
        ],
        &["stdbuf", "-oL", "-e", "0", "sh", "-c", "touch marker"],
        &["sudo", "-u", "root", "-E", "sh", "-c", "touch marker"],
        &["sudo", "-s", "touch", "marker"],
        &["xargs", "-0", "-n", "1", "sh", "-c", "touch marker"],
        &["busybox", "sh", "-c", "touch marker"],
        &["env", "nice", "timeout", "5", "sh", "-c", "touch marker"],
    ];
    let mut messages = String::new();
    for argv in cases {
        let first = command(&["touch", "ran-first"]);
        let error = validate_then_run(&workspace, &[first, command(argv)], &policy)
            .await
            .expect_err("a wrapped shell string is refused");
        assert!(
            !workspace.path("ran-first").exists() && !workspace.path("marker").exists(),
            "{argv:?} ran"
        );
        let message = error.to_string();
        let reason_end = message
            .find("; exec steps are argv arrays")
            .expect("the reason says what to do instead");
        messages.push_str(&message[..reason_end]);
        messages.push('\n');
    }
    expect![[r#"
        command 1 (`env -i 'FOO=1' sh -c 'touch marker'`) refused: `sh -c` runs a shell string (through `env`)
        command 1 (`/usr/bin/env -u HOME -- bash -c 'touch marker'`) refused: `bash -c` runs a shell string (through `env`)
        command 1 (`env -S 'sh -c '\''touch marker'\'''`) refused: `sh -c` runs a shell string (through `env`)
        command 1 (`nice -n 5 sh -c 'touch marker'`) refused: `sh -c` runs a shell string (through `nice`)
        command 1 (`nice -10 sh -c 'touch marker'`) refused: `sh -c` runs a shell string (through `nice`)
        command 1 (`nohup sh -c 'touch marker'`) refused: `sh -c` runs a shell string (through `nohup`)
        command 1 (`timeout -s KILL '--kill-after=1' 5s bash -c 'touch marker'`) refused: `bash -c` runs a shell string (through `timeout`)
        command 1 (`stdbuf -oL -e 0 sh -c 'touch marker'`) refused: `sh -c` runs a shell string (through `stdbuf`)
        command 1 (`sudo -u root -E sh -c 'touch marker'`) refused: `sh -c` runs a shell string (through `sudo`)
        command 1 (`sudo -s touch marker`) refused: `sudo -s` runs the command through a shell
        command 1 (`xargs -0 -n 1 sh -c 'touch marker'`) refused: `sh -c` runs a shell string (through `xargs`)
        command 1 (`busybox sh -c 'touch marker'`) refused: `sh -c` runs a shell string (through `busybox`)
        command 1 (`env nice timeout 5 sh -c 'touch marker'`) refused: `sh -c` runs a shell string (through `env`, `nice`, `timeout`)
    "#]].assert_eq(&messages);
}

#[tokio::test]
async fn powershell_and_cmd_are_refused_in_every_form() {
    let workspace = TestWorkspace::new();
    let policy = policy();
    check_refused_without_running(
        &workspace,
        &policy,
        command(&["pwsh", "-Command", "Remove-Item x"]),
        expect![[
            r#"command 0 (`pwsh -Command 'Remove-Item x'`) refused: `pwsh` is a shell that runs command strings; exec steps are argv arrays, not shell strings: run the program directly (one command per entry, such as ["cargo", "test"]), put the script in a file and run ["bash", "script.sh"], or set `allow_shell = true` in the project's .orch.toml"#
        ]],
    );
    check_refused_without_running(
        &workspace,
        &policy,
        command(&["powershell.exe", "-EncodedCommand", "ZQBjAGgAbwA="]),
        expect![[
            r#"command 0 (`powershell.exe -EncodedCommand 'ZQBjAGgAbwA='`) refused: `powershell` is a shell that runs command strings; exec steps are argv arrays, not shell strings: run the program directly (one command per entry, such as ["cargo", "test"]), put the script in a file and run ["bash", "script.sh"], or set `allow_shell = true` in the project's .orch.toml"#
        ]],
    );
    check_refused_without_running(
        &workspace,
        &policy,
        command(&["C:\\Windows\\System32\\cmd.exe", "/c", "del x"]),
        expect![[
            r#"command 0 (`'C:\Windows\System32\cmd.exe' /c 'del x'`) refused: `cmd` is a shell that runs command strings; exec steps are argv arrays, not shell strings: run the program directly (one command per entry, such as ["cargo", "test"]), put the script in a file and run ["bash", "script.sh"], or set `allow_shell = true` in the project's .orch.toml"#
        ]],
    );
    check_refused_without_running(
        &workspace,
        &policy,
        command(&["pwsh", "script.ps1"]),
        expect![[
            r#"command 0 (`pwsh script.ps1`) refused: `pwsh` is a shell that runs command strings; exec steps are argv arrays, not shell strings: run the program directly (one command per entry, such as ["cargo", "test"]), put the script in a file and run ["bash", "script.sh"], or set `allow_shell = true` in the project's .orch.toml"#
        ]],
    );
}

#[tokio::test]
async fn interpreters_with_inline_code_and_shells_running_script_files_are_not_refused() {
    let workspace = TestWorkspace::new();
    let policy = policy();
    for argv in [
        &["python3", "-c", "print(1)"][..],
        &["python", "-c", "print(1)"],
        &["node", "-e", "console.log(1)"],
        &["perl", "-e", "print 1"],
        &["bash", "scripts/check.sh", "-c", "passed to the script"],
        &["sh", "-e", "scripts/check.sh"],
        &["env", "FOO=1", "python3", "-c", "print(1)"],
    ] {
        check_allowed_without_running(&workspace, &policy, command(argv));
    }
    // A real run of a script file through `sh`.
    workspace.write("scripts/make-marker.sh", "touch made-by-script\n");
    let records = validate_then_run(
        &workspace,
        &[command(&["sh", "scripts/make-marker.sh"])],
        &policy,
    )
    .await
    .expect("a shell running a script file is allowed");
    assert_eq!(records[0].exit.code, Some(0));
    assert!(workspace.path("made-by-script").exists());
}

#[tokio::test]
async fn allow_shell_lets_shell_strings_run() {
    let workspace = TestWorkspace::new();
    let policy = ExecPolicy {
        allow_shell: true,
        ..policy()
    };
    let records = validate_then_run(
        &workspace,
        &[command(&["sh", "-c", "touch marker && echo done"])],
        &policy,
    )
    .await
    .expect("shell strings are allowed when the project allows them");
    assert!(records[0].exit.success());
    assert!(workspace.path("marker").exists());
}

#[tokio::test]
async fn rm_outside_the_workspace_is_refused_and_deletes_nothing() {
    let workspace = TestWorkspace::new();
    let policy = policy();
    check_refused(&workspace, &policy, command(&["rm", "-rf", "../outside"]), expect!["command 1 (`rm -rf ../outside`) refused: `rm` would delete `../outside`, which resolves to $TMP/outside, outside the workspace $WS; use a path inside the workspace"]).await;
    check_refused(&workspace, &policy, command(&["rm", "../outside/victim"]), expect!["command 1 (`rm ../outside/victim`) refused: `rm` would delete `../outside/victim`, which resolves to $TMP/outside/victim, outside the workspace $WS; use a path inside the workspace"]).await;
    // GNU rm takes options after operands too.
    check_refused(&workspace, &policy, command(&["rm", "keep", "../outside/victim", "-f"]), expect!["command 1 (`rm keep ../outside/victim -f`) refused: `rm` would delete `../outside/victim`, which resolves to $TMP/outside/victim, outside the workspace $WS; use a path inside the workspace"]).await;
    check_refused(&workspace, &policy, in_dir(command(&["rm", "-r", "../../outside"]), "sub"), expect!["command 1 (`rm -r ../../outside`) refused: `rm` would delete `../../outside`, which resolves to $TMP/outside, outside the workspace $WS; use a path inside the workspace"]).await;
    check_refused(&workspace, &policy, command(&["rmdir", "../outside"]), expect!["command 1 (`rmdir ../outside`) refused: `rmdir` would delete `../outside`, which resolves to $TMP/outside, outside the workspace $WS; use a path inside the workspace"]).await;
    check_refused(&workspace, &policy, command(&["unlink", "../outside/victim"]), expect!["command 1 (`unlink ../outside/victim`) refused: `unlink` would delete `../outside/victim`, which resolves to $TMP/outside/victim, outside the workspace $WS; use a path inside the workspace"]).await;
    let victim = workspace.victim.display().to_string();
    check_refused(&workspace, &policy, command(&["rm", "-f", "--", &victim]), expect!["command 1 (`rm -f -- $TMP/outside/victim`) refused: `rm` would delete `$TMP/outside/victim`, which resolves to $TMP/outside/victim, outside the workspace $WS; use a path inside the workspace"]).await;
    check_refused_without_running(&workspace, &policy, command(&["rm", "-rf", "/"]), expect!["command 0 (`rm -rf /`) refused: `rm` would delete `/`, which is the filesystem root; only paths inside the workspace $WS may be touched"]);
    check_refused_without_running(&workspace, &policy, command(&["rm", "-rf", "--no-preserve-root", "/usr/.."]), expect!["command 0 (`rm -rf --no-preserve-root /usr/..`) refused: `rm` would delete `/usr/..`, which is the filesystem root; only paths inside the workspace $WS may be touched"]);
}

#[tokio::test]
async fn rm_r_of_the_whole_workspace_is_refused() {
    let workspace = TestWorkspace::new();
    workspace.write("sub/file", "x");
    let policy = policy();
    check_refused(&workspace, &policy, command(&["rm", "-rf", "."]), expect!["command 1 (`rm -rf .`) refused: `rm -r` would delete `.`, the whole workspace $WS; delete the files inside it by name"]).await;
    check_refused(&workspace, &policy, command(&["rm", "-r", "../ws/"]), expect!["command 1 (`rm -r ../ws/`) refused: `rm -r` would delete `../ws/`, the whole workspace $WS; delete the files inside it by name"]).await;
    check_refused(&workspace, &policy, in_dir(command(&["rm", "--recursive", ".."]), "sub"), expect!["command 1 (`rm --recursive ..`) refused: `rm -r` would delete `..`, the whole workspace $WS; delete the files inside it by name"]).await;
    assert!(workspace.path("sub/file").exists());
}

#[tokio::test]
async fn a_symlink_inside_the_workspace_does_not_hide_a_path_outside() {
    let workspace = TestWorkspace::new();
    symlink(&workspace.top.join("outside"), &workspace.path("link"));
    symlink(Path::new("/"), &workspace.path("root-link"));
    let policy = policy();
    check_refused(&workspace, &policy, command(&["rm", "-f", "link/victim"]), expect!["command 1 (`rm -f link/victim`) refused: `rm` would delete `link/victim`, which resolves to $TMP/outside/victim, outside the workspace $WS; use a path inside the workspace"]).await;
    check_refused(&workspace, &policy, command(&["rm", "-rf", "link/"]), expect!["command 1 (`rm -rf link/`) refused: `rm` would delete `link/`, which resolves to $TMP/outside, outside the workspace $WS; use a path inside the workspace"]).await;
    // The kernel resolves `link` before `..`: this is the temp dir, not the workspace.
    check_refused(&workspace, &policy, command(&["rm", "-rf", "link/../outside"]), expect!["command 1 (`rm -rf link/../outside`) refused: `rm` would delete `link/../outside`, which resolves to $TMP/outside, outside the workspace $WS; use a path inside the workspace"]).await;
    check_refused(&workspace, &policy, command(&["truncate", "-s", "0", "link/victim"]), expect!["command 1 (`truncate -s 0 link/victim`) refused: `truncate` would truncate `link/victim`, which resolves to $TMP/outside/victim, outside the workspace $WS; use a path inside the workspace"]).await;
    check_refused_without_running(&workspace, &policy, command(&["rm", "-rf", "root-link/etc"]), expect!["command 0 (`rm -rf root-link/etc`) refused: `rm` would delete `root-link/etc`, which resolves to /etc, outside the workspace $WS; use a path inside the workspace"]);
    check_refused_without_running(&workspace, &policy, command(&["rm", "-rf", "root-link/"]), expect!["command 0 (`rm -rf root-link/`) refused: `rm` would delete `root-link/`, which is the filesystem root; only paths inside the workspace $WS may be touched"]);

    // Removing the link itself only removes the link.
    let records = validate_then_run(&workspace, &[command(&["rm", "link"])], &policy)
        .await
        .expect("removing a symbolic link inside the workspace is allowed");
    assert_eq!(records[0].exit.code, Some(0));
    assert!(workspace.path("link").symlink_metadata().is_err());
    workspace.assert_victim_untouched();
}

#[tokio::test]
async fn home_and_variable_paths_are_refused_because_no_shell_expands_them() {
    let workspace = TestWorkspace::new();
    let policy = policy();
    check_refused_without_running(&workspace, &policy, command(&["rm", "-rf", "~"]), expect!["command 0 (`rm -rf '~'`) refused: `rm` would delete `~`: `~` means a home directory, outside the workspace (and no shell expands it); use a path relative to the workspace"]);
    check_refused_without_running(&workspace, &policy, command(&["rm", "-rf", "~/.ssh"]), expect!["command 0 (`rm -rf '~/.ssh'`) refused: `rm` would delete `~/.ssh`: `~` means a home directory, outside the workspace (and no shell expands it); use a path relative to the workspace"]);
    check_refused_without_running(&workspace, &policy, command(&["rm", "-rf", "$HOME/.cache"]), expect!["command 0 (`rm -rf '$HOME/.cache'`) refused: `rm` would delete `$HOME/.cache`: `$` variables such as $HOME point outside the workspace (and no shell expands them); use a path relative to the workspace"]);
    check_refused_without_running(&workspace, &policy, command(&["cp", "build.log", "${HOME}/build.log"]), expect!["command 0 (`cp build.log '${HOME}/build.log'`) refused: `cp` would write to `${HOME}/build.log`: `$` variables such as $HOME point outside the workspace (and no shell expands them); use a path relative to the workspace"]);
}

#[tokio::test]
async fn dd_mkfs_shred_and_truncate_outside_the_workspace_are_refused() {
    let workspace = TestWorkspace::new();
    let policy = policy();
    check_refused(&workspace, &policy, command(&["dd", "if=/dev/zero", "of=../outside/victim", "count=1"]), expect!["command 1 (`dd 'if=/dev/zero' 'of=../outside/victim' 'count=1'`) refused: `dd of=` would overwrite `../outside/victim`, which resolves to $TMP/outside/victim, outside the workspace $WS; use a path inside the workspace"]).await;
    check_refused(&workspace, &policy, command(&["dd", "if=../outside/victim", "of=copy"]), expect!["command 1 (`dd 'if=../outside/victim' 'of=copy'`) refused: `dd if=` would read `../outside/victim`, which resolves to $TMP/outside/victim, outside the workspace $WS; use a path inside the workspace"]).await;
    check_refused(&workspace, &policy, command(&["shred", "-u", "-n", "1", "../outside/victim"]), expect!["command 1 (`shred -u -n 1 ../outside/victim`) refused: `shred` would overwrite `../outside/victim`, which resolves to $TMP/outside/victim, outside the workspace $WS; use a path inside the workspace"]).await;
    check_refused(&workspace, &policy, command(&["truncate", "--size=0", "../outside/victim"]), expect!["command 1 (`truncate '--size=0' ../outside/victim`) refused: `truncate` would truncate `../outside/victim`, which resolves to $TMP/outside/victim, outside the workspace $WS; use a path inside the workspace"]).await;
    check_refused_without_running(&workspace, &policy, command(&["mkfs.ext4", "-L", "data", "/dev/sdb1"]), expect!["command 0 (`mkfs.ext4 -L data /dev/sdb1`) refused: `mkfs.ext4` would format `/dev/sdb1`, which resolves to /dev/sdb1, outside the workspace $WS; use a path inside the workspace"]);
    check_refused_without_running(&workspace, &policy, command(&["mkfs", "-t", "ext4", "/dev/sdb"]), expect!["command 0 (`mkfs -t ext4 /dev/sdb`) refused: `mkfs` would format `/dev/sdb`, which resolves to /dev/sdb, outside the workspace $WS; use a path inside the workspace"]);
    check_refused_without_running(&workspace, &policy, command(&["dd", "if=/dev/zero", "of=/dev/sda"]), expect!["command 0 (`dd 'if=/dev/zero' 'of=/dev/sda'`) refused: `dd of=` would overwrite `/dev/sda`, which resolves to /dev/sda, outside the workspace $WS; use a path inside the workspace"]);
}

#[tokio::test]
async fn recursive_chmod_chown_and_chgrp_outside_the_workspace_are_refused() {
    let workspace = TestWorkspace::new();
    let policy = policy();
    check_refused(&workspace, &policy, command(&["chmod", "-R", "000", "../outside"]), expect!["command 1 (`chmod -R 000 ../outside`) refused: `chmod -R` would change modes under `../outside`, which resolves to $TMP/outside, outside the workspace $WS; use a path inside the workspace"]).await;
    check_refused(&workspace, &policy, command(&["chmod", "-R", "-w", "../outside"]), expect!["command 1 (`chmod -R -w ../outside`) refused: `chmod -R` would change modes under `../outside`, which resolves to $TMP/outside, outside the workspace $WS; use a path inside the workspace"]).await;
    check_refused(&workspace, &policy, command(&["chgrp", "--recursive", "nogroup", "../outside"]), expect!["command 1 (`chgrp --recursive nogroup ../outside`) refused: `chgrp -R` would change owners under `../outside`, which resolves to $TMP/outside, outside the workspace $WS; use a path inside the workspace"]).await;
    workspace.write("reference", "");
    check_refused(&workspace, &policy, command(&["chmod", "-R", "--reference=reference", "../outside"]), expect!["command 1 (`chmod -R '--reference=reference' ../outside`) refused: `chmod -R` would change modes under `../outside`, which resolves to $TMP/outside, outside the workspace $WS; use a path inside the workspace"]).await;
    check_refused_without_running(&workspace, &policy, command(&["chown", "-Rh", "nobody:nogroup", "/etc"]), expect!["command 0 (`chown -Rh nobody:nogroup /etc`) refused: `chown -R` would change owners under `/etc`, which resolves to /etc, outside the workspace $WS; use a path inside the workspace"]);
}

#[tokio::test]
async fn mv_and_cp_may_not_write_outside_and_mv_may_not_take_from_outside() {
    let workspace = TestWorkspace::new();
    workspace.write("file", "inside\n");
    let policy = policy();
    check_refused(&workspace, &policy, command(&["cp", "file", "../outside/victim"]), expect!["command 1 (`cp file ../outside/victim`) refused: `cp` would write to `../outside/victim`, which resolves to $TMP/outside/victim, outside the workspace $WS; use a path inside the workspace"]).await;
    check_refused(&workspace, &policy, command(&["cp", "-t", "../outside", "file"]), expect!["command 1 (`cp -t ../outside file`) refused: `cp` would write to `../outside`, which resolves to $TMP/outside, outside the workspace $WS; use a path inside the workspace"]).await;
    check_refused(&workspace, &policy, command(&["mv", "file", "../outside/victim"]), expect!["command 1 (`mv file ../outside/victim`) refused: `mv` would write to `../outside/victim`, which resolves to $TMP/outside/victim, outside the workspace $WS; use a path inside the workspace"]).await;
    check_refused(&workspace, &policy, command(&["mv", "../outside/victim", "here"]), expect!["command 1 (`mv ../outside/victim here`) refused: `mv` would move away `../outside/victim`, which resolves to $TMP/outside/victim, outside the workspace $WS; use a path inside the workspace"]).await;
    check_refused(&workspace, &policy, command(&["mv", ".", "../moved"]), expect!["command 1 (`mv . ../moved`) refused: `mv` would write to `../moved`, which resolves to $TMP/moved, outside the workspace $WS; use a path inside the workspace"]).await;
    assert!(workspace.path("file").exists());
}

#[tokio::test]
async fn find_that_deletes_outside_the_workspace_is_refused() {
    let workspace = TestWorkspace::new();
    let policy = policy();
    check_refused(&workspace, &policy, command(&["find", "../outside", "-name", "victim", "-delete"]), expect!["command 1 (`find ../outside -name victim -delete`) refused: `find -delete` would delete files under `../outside`, which resolves to $TMP/outside, outside the workspace $WS; use a path inside the workspace"]).await;
    check_refused(&workspace, &policy, command(&["find", "-L", "..", "-type", "f", "-exec", "rm", "-f", "{}", "+"]), expect!["command 1 (`find -L .. -type f -exec rm -f {} +`) refused: `find -exec rm` would delete files under `..`, which resolves to $TMP, outside the workspace $WS; use a path inside the workspace"]).await;
    check_refused(&workspace, &policy, command(&["find", ".", "-exec", "sh", "-c", "touch marker", ";"]), expect![[r#"command 1 (`find . -exec sh -c 'touch marker' ';'`) refused: `sh -c` runs a shell string; exec steps are argv arrays, not shell strings: run the program directly (one command per entry, such as ["cargo", "test"]), put the script in a file and run ["bash", "script.sh"], or set `allow_shell = true` in the project's .orch.toml"#]]).await;
    check_refused(&workspace, &policy, command(&["find", ".", "-name", "x", "-execdir", "rm", "-f", "../outside/victim", ";"]), expect!["command 1 (`find . -name x -execdir rm -f ../outside/victim ';'`) refused: `rm` would delete `../outside/victim`, which resolves to $TMP/outside/victim, outside the workspace $WS; use a path inside the workspace"]).await;
    check_refused_without_running(&workspace, &policy, command(&["find", "/", "-name", "*.log", "-exec", "rm", "{}", ";"]), expect!["command 0 (`find / -name '*.log' -exec rm {} ';'`) refused: `find -exec rm` would delete files under `/`, which is the filesystem root; only paths inside the workspace $WS may be touched"]);
}

#[tokio::test]
async fn git_force_push_is_always_refused_even_when_shells_are_allowed() {
    let workspace = TestWorkspace::new();
    let policy = ExecPolicy {
        allow_shell: true,
        ..policy()
    };
    check_refused(&workspace, &policy, command(&["git", "push", "--force", "origin", "main"]), expect!["command 1 (`git push --force origin main`) refused: `git push --force` rewrites the remote's history; push without force (a new branch, or a pull request) and leave force-pushes to a person"]).await;
    check_refused(&workspace, &policy, command(&["git", "push", "-uf", "origin", "main"]), expect!["command 1 (`git push -uf origin main`) refused: `git push -uf` rewrites the remote's history; push without force (a new branch, or a pull request) and leave force-pushes to a person"]).await;
    check_refused(&workspace, &policy, command(&["git", "-C", ".", "push", "--force-with-lease=main:abc123", "origin", "main"]), expect!["command 1 (`git -C . push '--force-with-lease=main:abc123' origin main`) refused: `git push --force-with-lease=main:abc123` rewrites the remote's history; push without force (a new branch, or a pull request) and leave force-pushes to a person"]).await;
    check_refused(&workspace, &policy, command(&["git", "push", "origin", "+main:main"]), expect!["command 1 (`git push origin +main:main`) refused: `git push +main:main` rewrites the remote's history; push without force (a new branch, or a pull request) and leave force-pushes to a person"]).await;
    check_allowed_without_running(
        &workspace,
        &policy,
        command(&["git", "push", "-u", "origin", "main"]),
    );
    check_allowed_without_running(
        &workspace,
        &policy,
        command(&["git", "push", "-o", "ci.skip", "origin", "feature"]),
    );
}

#[tokio::test]
async fn git_reset_hard_and_git_clean_outside_the_workspace_are_refused() {
    let workspace = TestWorkspace::new();
    let policy = policy();
    check_refused(&workspace, &policy, command(&["git", "-C", "../outside", "reset", "--hard"]), expect!["command 1 (`git -C ../outside reset --hard`) refused: `git reset --hard` would run in $TMP/outside, outside the workspace $WS; run it inside the workspace (drop `-C`, or give a cwd inside the workspace)"]).await;
    check_refused(&workspace, &policy, command(&["git", "-C", "..", "clean", "-fdx"]), expect!["command 1 (`git -C .. clean -fdx`) refused: `git clean` would run in $TMP, outside the workspace $WS; run it inside the workspace (drop `-C`, or give a cwd inside the workspace)"]).await;
    check_refused(&workspace, &policy, command(&["git", "--work-tree=..", "reset", "--hard", "HEAD"]), expect!["command 1 (`git '--work-tree=..' reset --hard HEAD`) refused: `git reset --hard --work-tree` would discard changes in `..`, which resolves to $TMP, outside the workspace $WS; use a path inside the workspace"]).await;
    check_refused(&workspace, &policy, command(&["git", "clean", "-fdx", "--", "../outside"]), expect!["command 1 (`git clean -fdx -- ../outside`) refused: `git clean` would delete untracked files under `../outside`, which resolves to $TMP/outside, outside the workspace $WS; use a path inside the workspace"]).await;
    check_refused(&workspace, &policy, command(&["env", "-C", "..", "git", "reset", "--hard"]), expect!["command 1 (`env -C .. git reset --hard`) refused: `env` changes the working directory to $TMP, outside the workspace $WS; run it in a directory inside the workspace"]).await;
}

#[tokio::test]
async fn rsync_delete_outside_the_workspace_is_refused() {
    let workspace = TestWorkspace::new();
    workspace.write("src/file", "x");
    let policy = policy();
    check_refused(&workspace, &policy, command(&["rsync", "-a", "--delete", "src/", "../outside/"]), expect!["command 1 (`rsync -a --delete src/ ../outside/`) refused: `rsync --delete` would delete files under `../outside/`, which resolves to $TMP/outside, outside the workspace $WS; use a path inside the workspace"]).await;
    check_refused(&workspace, &policy, command(&["rsync", "-a", "--exclude", "x", "--delete-after", "src/", "../outside"]), expect!["command 1 (`rsync -a --exclude x --delete-after src/ ../outside`) refused: `rsync --delete` would delete files under `../outside`, which resolves to $TMP/outside, outside the workspace $WS; use a path inside the workspace"]).await;
    check_refused(&workspace, &policy, command(&["rsync", "-a", "--remove-source-files", "../outside/victim", "here"]), expect!["command 1 (`rsync -a --remove-source-files ../outside/victim here`) refused: `rsync --remove-source-files` would delete `../outside/victim`, which resolves to $TMP/outside/victim, outside the workspace $WS; use a path inside the workspace"]).await;
    check_refused_without_running(&workspace, &policy, command(&["rsync", "-a", "--delete", "src/", "backup-host:/srv/app"]), expect!["command 0 (`rsync -a --delete src/ backup-host:/srv/app`) refused: `rsync --delete` would delete files under `backup-host:/srv/app` on another machine, which cannot be checked against the workspace; sync between paths inside the workspace"]);
}

#[tokio::test]
async fn a_working_directory_outside_the_workspace_is_refused() {
    let workspace = TestWorkspace::new();
    std::fs::create_dir(workspace.path("sub")).expect("create sub");
    symlink(&workspace.top.join("outside"), &workspace.path("link"));
    let policy = policy();
    check_refused(&workspace, &policy, in_dir(command(&["touch", "marker"]), ".."), expect!["command 1 (`touch marker`) refused: its cwd `..` resolves to $TMP, outside the workspace $WS; give a cwd relative to the workspace that stays inside it"]).await;
    check_refused(&workspace, &policy, in_dir(command(&["touch", "marker"]), "sub/../../outside"), expect!["command 1 (`touch marker`) refused: its cwd `sub/../../outside` resolves to $TMP/outside, outside the workspace $WS; give a cwd relative to the workspace that stays inside it"]).await;
    check_refused(&workspace, &policy, in_dir(command(&["touch", "marker"]), "link"), expect!["command 1 (`touch marker`) refused: its cwd `link` resolves to $TMP/outside, outside the workspace $WS; give a cwd relative to the workspace that stays inside it"]).await;
    check_refused(&workspace, &policy, in_dir(command(&["touch", "marker"]), "~"), expect!["command 1 (`touch marker`) refused: its cwd `~` would need a shell to expand `~` or `$` and points outside the workspace; give a cwd relative to the workspace"]).await;
    let top = workspace.top.display().to_string();
    check_refused(&workspace, &policy, in_dir(command(&["touch", "marker"]), &top), expect!["command 1 (`touch marker`) refused: its cwd `$TMP` resolves to $TMP, outside the workspace $WS; give a cwd relative to the workspace that stays inside it"]).await;
    check_refused(&workspace, &policy, command(&["env", "--chdir=../outside", "touch", "marker"]), expect!["command 1 (`env '--chdir=../outside' touch marker`) refused: `env` changes the working directory to $TMP/outside, outside the workspace $WS; run it in a directory inside the workspace"]).await;
}

#[tokio::test]
async fn an_empty_argv_is_refused() {
    let workspace = TestWorkspace::new();
    check_refused(&workspace, &policy(), command(&[]), expect![[r#"command 1 (``) refused: its argv is empty; give the program and its arguments, such as ["cargo", "test"]"#]]).await;
}

#[tokio::test]
async fn xargs_feeding_a_destructive_tool_from_a_file_is_refused() {
    let workspace = TestWorkspace::new();
    workspace.write("paths", workspace.victim.display().to_string());
    check_refused(&workspace, &policy(), command(&["xargs", "-a", "paths", "rm", "-f"]), expect!["command 1 (`xargs -a paths rm -f`) refused: `xargs -a paths rm` takes the paths `rm` works on from a file, which cannot be checked before the run; list the paths in the argv instead"]).await;
}

#[tokio::test]
async fn destructive_tools_aimed_inside_the_workspace_run() {
    let workspace = TestWorkspace::new();
    workspace.write("build/out.o", "x");
    workspace.write("sub/a.tmp", "x");
    workspace.write("sub/keep", "x");
    workspace.write("file", "inside\n");
    let policy = policy();
    let step = [
        command(&["rm", "-rf", "build"]),
        command(&["find", ".", "-name", "*.tmp", "-delete"]),
        command(&["chmod", "-R", "u+w", "sub"]),
        command(&["cp", "file", "sub/copy"]),
        command(&["mv", "file", "moved"]),
        command(&["truncate", "-s", "0", "moved"]),
        command(&["dd", "if=/dev/zero", "of=zeros", "bs=16", "count=1"]),
        in_dir(command(&["rm", "-f", "../sub/keep"]), "sub"),
        command(&["cp", "../outside/victim", "copied-in"]),
    ];
    let records = validate_then_run(&workspace, &step, &policy)
        .await
        .expect("paths inside the workspace are allowed");
    for record in &records {
        assert!(
            record.exit.success(),
            "{:?} failed: {:?}",
            record.argv,
            record.exit
        );
    }
    assert!(!workspace.path("build").exists());
    assert!(!workspace.path("sub/a.tmp").exists());
    assert!(!workspace.path("sub/keep").exists());
    assert_eq!(
        std::fs::read(workspace.path("sub/copy")).expect("read copy"),
        b"inside\n"
    );
    assert_eq!(
        std::fs::read(workspace.path("moved")).expect("read moved"),
        b""
    );
    assert_eq!(
        std::fs::read(workspace.path("zeros")).expect("read zeros"),
        vec![0; 16]
    );
    assert_eq!(
        std::fs::read_to_string(workspace.path("copied-in")).expect("read copied-in"),
        support_exec::VICTIM_TEXT
    );
    workspace.assert_victim_untouched();
}

#[tokio::test]
async fn git_reset_hard_and_git_clean_inside_the_workspace_run() {
    let workspace = TestWorkspace::new();
    let git = |args: &[&str]| {
        let status = std::process::Command::new("git")
            .args([
                "-c",
                "user.name=orch test",
                "-c",
                "user.email=test@example.invalid",
                "-c",
                "init.defaultBranch=main",
            ])
            .args(args)
            .current_dir(&workspace.root)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("run git");
        assert!(status.success(), "git {args:?} failed");
    };
    git(&["init", "-q"]);
    workspace.write("tracked", "committed\n");
    git(&["add", "tracked"]);
    git(&["commit", "-q", "-m", "first"]);
    workspace.write("tracked", "changed\n");
    workspace.write("untracked/file", "x");
    let policy = policy();
    let step = [
        command(&["git", "reset", "--hard"]),
        command(&["git", "-C", ".", "clean", "-fd"]),
    ];
    let records = validate_then_run(&workspace, &step, &policy)
        .await
        .expect("git reset --hard inside is allowed");
    for record in &records {
        assert!(
            record.exit.success(),
            "{:?} failed: {:?}",
            record.argv,
            record.exit
        );
    }
    assert_eq!(
        std::fs::read_to_string(workspace.path("tracked")).expect("read tracked"),
        "committed\n"
    );
    assert!(!workspace.path("untracked").exists());
}
