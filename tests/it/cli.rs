//! The command line all three binaries share, driven through the real binaries: help and
//! version in every spelling, one-line usage errors with a hint and exit 2, errors naming
//! the flag or variable a bad value came from, `settings --json` and `routes --json`, a
//! closed stdout, the single `listening on` line, and runtime dirs that never default to
//! the working directory.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::codexd::{codexd, Dirs};
use crate::support::conductor;
use crate::support::daemon::{wait_for, Spawn, CODEXD, CONDUCTOR, STATUS_API};
use crate::support::tmp::TempDir;

const BINARIES: [(&str, &str); 3] = [
    ("baa-conductor", CONDUCTOR),
    ("baa-codexd", CODEXD),
    ("baa-status-api", STATUS_API),
];

/// The binary with none of the caller's `BAA_*` variables, run in `cwd`.
fn bin(path: &str, cwd: &Path) -> Command {
    let mut cmd = Command::new(path);
    cmd.current_dir(cwd).stdin(Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("BAA_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

fn run(path: &str, args: &[&str]) -> Output {
    let tmp = TempDir::new("cli");
    bin(path, tmp.path())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {path}: {e}"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Asserts a usage/config error: exit 2, nothing on stdout, exactly one stderr line
/// `<name>: <what> (try '<name> --help')`; returns `<what>`.
fn one_line_error(name: &str, out: &Output) -> String {
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(2),
        "stdout {stdout:?} stderr {stderr:?}"
    );
    assert_eq!(stdout, "", "stderr {stderr:?}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected: {stderr:?}");
    let hint = format!(" (try '{name} --help')");
    let what = lines[0]
        .strip_prefix(&format!("{name}: "))
        .and_then(|l| l.strip_suffix(&hint))
        .unwrap_or_else(|| panic!("not `{name}: <what>{hint}`: {stderr:?}"));
    what.to_string()
}

#[test]
fn help_and_version_have_the_same_shape_in_all_three_binaries() {
    let version = env!("CARGO_PKG_VERSION");
    for (name, path) in BINARIES {
        let help = run(path, &["--help"]);
        assert_eq!(help.status.code(), Some(0), "{name} --help: {help:?}");
        let usage = text(&help.stdout);
        assert!(
            usage.starts_with(&format!("{name} {version}: ")),
            "{name}: {usage}"
        );
        for section in [
            "USAGE:",
            "COMMANDS:",
            "settings --json",
            "routes [--json]",
            "FLAGS",
        ] {
            assert!(
                usage.contains(section),
                "{name} usage lacks {section}:\n{usage}"
            );
        }
        for spelling in [&["-h"][..], &["help"], &["start", "--help"]] {
            let out = run(path, spelling);
            assert_eq!(out.status.code(), Some(0), "{name} {spelling:?}");
            assert_eq!(text(&out.stdout), usage, "{name} {spelling:?}");
        }
        for spelling in ["--version", "-V"] {
            let out = run(path, &[spelling]);
            assert_eq!(out.status.code(), Some(0), "{name} {spelling}");
            assert_eq!(text(&out.stdout), format!("{name} {version}\n"));
        }
    }
}

#[test]
fn usage_errors_are_one_line_with_a_hint_and_exit_2() {
    for (name, path) in BINARIES {
        let what = one_line_error(name, &run(path, &["start", "--bogus", "1"]));
        assert_eq!(what, "unknown flag --bogus");
        let what = one_line_error(name, &run(path, &["frobnicate"]));
        assert!(what.starts_with("unknown command \"frobnicate\""), "{what}");
        let what = one_line_error(name, &run(path, &["start", "--json"]));
        assert_eq!(what, "start takes no --json");
    }
    let what = one_line_error("baa-conductor", &run(CONDUCTOR, &[]));
    assert!(what.starts_with("missing command"), "{what}");
    let what = one_line_error("baa-codexd", &run(CODEXD, &["start", "--local-api"]));
    assert_eq!(what, "--local-api needs a value (URL)");
}

#[test]
fn bad_values_name_the_flag_or_the_variable_they_came_from() {
    let tmp = TempDir::new("cli-values");
    let out = bin(CODEXD, tmp.path())
        .args(["start", "--server-strategy", "x"])
        .output()
        .unwrap();
    let what = one_line_error("baa-codexd", &out);
    assert_eq!(
        what,
        "--server-strategy: expected spawn or external, got \"x\""
    );
    let out = bin(CODEXD, tmp.path())
        .arg("start")
        .env("BAA_CODEXD_SERVER_STRATEGY", "x")
        .output()
        .unwrap();
    let what = one_line_error("baa-codexd", &out);
    assert_eq!(
        what,
        "BAA_CODEXD_SERVER_STRATEGY=\"x\": expected spawn or external"
    );
    let out = bin(CONDUCTOR, tmp.path())
        .args(["start", "--lease-ttl-sec", "0"])
        .envs(conductor::dirs_env(tmp.path()))
        .output()
        .unwrap();
    let what = one_line_error("baa-conductor", &out);
    assert_eq!(what, "--lease-ttl-sec: expected an integer >= 1, got \"0\"");
    let out = bin(STATUS_API, tmp.path())
        .env("BAA_STATUS_API_PORT", "70000")
        .output()
        .unwrap();
    let what = one_line_error("baa-status-api", &out);
    assert_eq!(
        what,
        "BAA_STATUS_API_PORT=\"70000\": expected an integer from 0 to 65535"
    );
}

#[test]
fn shared_token_file_readable_by_others_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = TempDir::new("cli-token");
    let file = tmp.join("shared-token.txt");
    std::fs::write(&file, "a-token-long-enough-0123456789\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = bin(CONDUCTOR, tmp.path())
        .args(["config", "--json"])
        .envs(conductor::dirs_env(tmp.path()))
        .env("BAA_SHARED_TOKEN_FILE", &file)
        .output()
        .unwrap();
    let what = one_line_error("baa-conductor", &out);
    let shown = file.display();
    assert!(what.starts_with("BAA_SHARED_TOKEN_FILE: "), "{what}");
    assert!(what.contains("mode 0640"), "{what}");
    assert!(what.contains(&format!("chmod 600 {shown}")), "{what}");
    assert!(
        !what.contains("a-token"),
        "the token is never shown: {what}"
    );

    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = bin(CONDUCTOR, tmp.path())
        .args(["config", "--json"])
        .envs(conductor::dirs_env(tmp.path()))
        .env("BAA_SHARED_TOKEN_FILE", &file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["hasSharedToken"], true, "{v}");
}

#[test]
fn settings_and_routes_print_json_tables() {
    for (name, path) in BINARIES {
        let out = run(path, &["settings", "--json"]);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", text(&out.stderr));
        let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
        let rows = rows.as_array().unwrap_or_else(|| panic!("{name}: {rows}"));
        assert!(rows.len() >= 5, "{name}: {rows:?}");
        for row in rows {
            let mut keys: Vec<&str> = row
                .as_object()
                .map(|o| o.keys().map(String::as_str).collect())
                .unwrap_or_default();
            keys.sort_unstable();
            assert_eq!(keys, ["default", "env", "flag", "help"], "{name}: {row}");
        }
        assert!(
            rows.iter().any(|r| r["env"] == "RUST_LOG"),
            "{name} lists RUST_LOG"
        );
        let out = run(path, &["routes", "--json"]);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", text(&out.stderr));
        let routes: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(
            routes
                .as_array()
                .is_some_and(|r| r.iter().any(|r| r["path"] == "/healthz")),
            "{name}: {routes}"
        );
    }
    let out = run(CODEXD, &["settings", "--json"]);
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    let demo = rows
        .as_array()
        .and_then(|r| r.iter().find(|r| r["env"] == "BAA_CODEXD_DEMO"))
        .cloned();
    assert_eq!(demo.map(|d| d["flag"].clone()), Some(Value::from("--demo")));
}

/// Spawns `path args` with its stdout's read end closed before it can write, and returns
/// its exit status and stderr.
fn into_a_closed_pipe(path: &str, args: &[&str], env: &[(&str, String)]) -> (Option<i32>, String) {
    let tmp = TempDir::new("cli-pipe");
    let mut cmd = bin(path, tmp.path());
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn");
    drop(child.stdout.take());
    let mut stderr = String::new();
    let _ = child
        .stderr
        .take()
        .map(|mut e| e.read_to_string(&mut stderr));
    let status = child.wait().expect("wait");
    (status.code(), stderr)
}

#[test]
fn codexd_status_json_into_a_closed_pipe_exits_quietly() {
    // `baa-codexd status --json | head -3` used to panic on the broken pipe.
    let tmp = TempDir::new("cli-status-pipe");
    let mut d = codexd(&Dirs::under(tmp.path()))
        .env("BAA_CODEXD_SERVER_STRATEGY", "external")
        .start();
    let (code, stderr) = into_a_closed_pipe(
        CODEXD,
        &["status", "--json"],
        &[("BAA_CODEXD_LOCAL_API_BASE", d.base.clone())],
    );
    assert_eq!((code, stderr.as_str()), (Some(0), ""));
    d.terminate(Duration::from_secs(15));

    let state = tmp.child("state");
    for (name, path) in BINARIES {
        for args in [
            &["--help"][..],
            &["settings", "--json"],
            &["routes", "--json"],
        ] {
            let (code, stderr) = into_a_closed_pipe(path, args, &[]);
            assert_eq!((code, stderr.as_str()), (Some(0), ""), "{name} {args:?}");
        }
    }
    let dirs: Vec<(&str, String)> = conductor::dirs_env(&state)
        .iter()
        .map(|(k, v)| (*k, v.display().to_string()))
        .collect();
    let (code, stderr) = into_a_closed_pipe(CONDUCTOR, &["config", "--json"], &dirs);
    assert_eq!((code, stderr.as_str()), (Some(0), ""));
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn conductor_start_in_a_scratch_dir_creates_nothing_there() {
    let scratch = TempDir::new("cli-scratch");
    for (name, path) in [("baa-conductor", CONDUCTOR), ("baa-codexd", CODEXD)] {
        for command in ["start", "config"] {
            let out = bin(path, scratch.path())
                .args([command, "--local-api", "http://127.0.0.1:0"])
                .output()
                .unwrap();
            let what = one_line_error(name, &out);
            assert!(
                what.starts_with("BAA_RUNTIME_ROOT (or --root) is not set"),
                "{name} {command}: {what}"
            );
            assert!(
                what.contains("never default to the current directory"),
                "{what}"
            );
            assert_eq!(
                entries(scratch.path()),
                Vec::<String>::new(),
                "{name} {command}"
            );
        }
    }
    // status-api keeps no files at all.
    let mut d = Spawn::new(STATUS_API)
        .args(["start", "--port", "0"])
        .cwd(scratch.path())
        .start();
    d.terminate(Duration::from_secs(10));
    assert_eq!(entries(scratch.path()), Vec::<String>::new());
}

#[test]
fn one_runtime_root_places_the_dirs_of_the_conductor_and_codexd() {
    let tmp = TempDir::new("cli-root");
    let root = tmp.join("node");
    let config = |path: &str, args: &[&str]| -> Value {
        let out = bin(path, tmp.path())
            .args(args)
            .env("BAA_RUNTIME_ROOT", &root)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{path}: {}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let c = config(
        CONDUCTOR,
        &["config", "--json", "--logs-dir", "/var/log/baa"],
    );
    for (key, want) in [
        ("stateDir", root.join("state")),
        ("logsDir", PathBuf::from("/var/log/baa")),
        ("runsDir", root.join("runs")),
        ("worktreesDir", root.join("worktrees")),
        ("tmpDir", root.join("tmp")),
    ] {
        assert_eq!(c["paths"][key], want.display().to_string(), "{key}: {c}");
    }
    let d = config(CODEXD, &["config", "--json"]);
    assert_eq!(
        d["stateDir"],
        root.join("state/codexd").display().to_string()
    );
    assert_eq!(d["logsDir"], root.join("logs/codexd").display().to_string());
    // `config` creates nothing, under the root or in the cwd.
    assert_eq!(entries(tmp.path()), Vec::<String>::new());
}

#[test]
fn listening_line_is_printed_once() {
    let tmp = TempDir::new("cli-once");
    let c = conductor::spawn(&tmp, "mini-main", "primary").start();
    let x = codexd(&Dirs::under(&tmp.child("codexd")))
        .env("BAA_CODEXD_SERVER_STRATEGY", "external")
        .start();
    let s = Spawn::new(STATUS_API).args(["--port", "0"]).start();
    for (name, mut d) in [
        ("baa-conductor", c),
        ("baa-codexd", x),
        ("baa-status-api", s),
    ] {
        assert!(
            d.base.starts_with("http://127.0.0.1:"),
            "{name}: {}",
            d.base
        );
        let status = d.terminate(Duration::from_secs(20));
        assert_eq!(status.code(), Some(0), "{name}: {}", d.log());
        // The reader ends at EOF, so this collects every later line.
        let mut more = Vec::new();
        while let Ok(line) = d.stdout.recv_timeout(Duration::from_secs(5)) {
            more.push(line);
        }
        assert_eq!(more, Vec::<String>::new(), "{name}: nothing else on stdout");
        let log = wait_for(Duration::from_secs(5), || {
            let log = d.log();
            log.contains("stopped").then_some(log)
        })
        .unwrap_or_else(|| panic!("{name} never logged `stopped`:\n{}", d.log()));
        assert!(
            !log.contains("listening on"),
            "{name} logs it again:\n{log}"
        );
    }
}

/// Issue 20: `start --host` was a host name while the scripts' `--host` is a listen
/// address; the name is `--conductor-host` now, and the old spelling still works, warning.
#[test]
fn conductor_host_flag_is_conductor_host_and_old_host_warns() {
    let dir = crate::support::tmp::TempDir::new("conductor-host-flag");
    let run = |flag: &str| {
        std::process::Command::new(crate::support::daemon::CONDUCTOR)
            .args(["config", flag, "studio"])
            .envs(crate::support::conductor::dirs_env(dir.path()))
            .env_remove("BAA_CONDUCTOR_HOST")
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let new = run("--conductor-host");
    let text = String::from_utf8_lossy(&new.stdout);
    assert!(new.status.success(), "{new:?}");
    assert!(
        text.contains("identity: mini-main@studio(primary)"),
        "{text}"
    );
    assert!(
        !String::from_utf8_lossy(&new.stderr).contains("is now"),
        "{new:?}"
    );
    let old = run("--host");
    assert!(old.status.success(), "{old:?}");
    assert!(
        String::from_utf8_lossy(&old.stdout).contains("identity: mini-main@studio(primary)"),
        "{old:?}"
    );
    assert_eq!(
        String::from_utf8_lossy(&old.stderr)
            .matches("baa-conductor: warning: --host is now --conductor-host")
            .count(),
        1,
        "{old:?}"
    );
}
