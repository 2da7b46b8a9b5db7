//! The conductor's security properties over real HTTP: exec containment, file-op rules,
//! token hygiene, and the listen-address rule at startup. The DNS-rebinding and
//! browser-CSRF guards and the host-op token need no socket: they are handler tests in
//! src/conductor/route_tests.rs.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::conductor::{self, TOKEN};
use crate::support::daemon::{wait_for, Spawn, CONDUCTOR};
use crate::support::http::{get, post_h};
use crate::support::tmp::TempDir;

fn auth_h(_: &conductor::Conductor) -> String {
    format!("Bearer {TOKEN}")
}

#[test]
fn conductor_exec_contains_its_processes() {
    let c = conductor::start("exec");
    let auth = auth_h(&c);
    let h = [("Authorization", auth.as_str())];
    let work = TempDir::new("exec-work");

    let r = post_h(&c.url("/v1/exec"), &json!({"command": "printf 'runtime-host-op'; printf oops >&2; exit 7", "cwd": work.str(), "timeoutMs": 2000}), &h).expect(200)["data"].clone();
    assert_eq!(r["ok"], false, "{r}");
    assert_eq!(r["error"]["code"], "EXEC_FAILED");
    assert_eq!(
        (
            r["result"]["stdout"].clone(),
            r["result"]["stderr"].clone(),
            r["result"]["exitCode"].clone()
        ),
        (json!("runtime-host-op"), json!("oops"), json!(7))
    );

    let r = post_h(
        &c.url("/v1/exec"),
        &json!({"command": "pwd", "cwd": work.str()}),
        &h,
    )
    .expect(200)["data"]
        .clone();
    assert_eq!(
        r["result"]["stdout"].as_str().map(str::trim),
        std::fs::canonicalize(work.path())
            .ok()
            .as_ref()
            .and_then(|p| p.to_str()),
        "{r}"
    );

    // Timeout kills the whole process group, including a background grandchild.
    let pidfile = work.join("bg.pid");
    let cmd = format!("sleep 30 & echo $! > {}; sleep 30", pidfile.display());
    let started = std::time::Instant::now();
    let r = post_h(
        &c.url("/v1/exec"),
        &json!({"command": cmd, "timeoutMs": 500}),
        &h,
    )
    .expect(200)["data"]
        .clone();
    let took = started.elapsed();
    assert_eq!(
        (
            r["ok"].clone(),
            r["error"]["code"].clone(),
            r["result"]["timedOut"].clone()
        ),
        (json!(false), json!("EXEC_TIMEOUT"), json!(true)),
        "{r}"
    );
    assert!(took < Duration::from_secs(6), "timeout took {took:?}");
    let bg: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let gone = wait_for(Duration::from_secs(3), || {
        (!baa::common::proc::pid_alive(bg) || is_zombie(bg)).then_some(())
    });
    assert!(
        gone.is_some(),
        "background process {bg} survived the timeout"
    );

    // Output is capped per stream and flagged.
    let r = post_h(
        &c.url("/v1/exec"),
        &json!({"command": "head -c 3000000 /dev/zero | tr '\\0' a"}),
        &h,
    )
    .expect(200)["data"]
        .clone();
    assert_eq!(r["result"]["truncated"], true);
    assert_eq!(r["result"]["stdout"].as_str().unwrap().len(), 1024 * 1024);

    // Bad input keeps the result shape.
    let r = post_h(
        &c.url("/v1/exec"),
        &json!({"command": ["echo", "hello"]}),
        &h,
    )
    .expect(200)["data"]
        .clone();
    assert_eq!(r["error"]["code"], "INVALID_INPUT");
    assert_eq!(
        r["result"],
        json!({"stdout": "", "stderr": "", "exitCode": null, "signal": null, "durationMs": 0, "timedOut": false, "truncated": false})
    );
    let r = post_h(
        &c.url("/v1/exec"),
        &json!({"command": "true", "cwd": "/definitely/not/here"}),
        &h,
    )
    .expect(200)["data"]
        .clone();
    assert_eq!(r["error"]["code"], "CWD_NOT_FOUND");

    // The daemon's environment (and so its token) never reaches the command.
    let r = post_h(&c.url("/v1/exec"), &json!({"command": "env"}), &h).expect(200)["data"].clone();
    let env = r["result"]["stdout"].as_str().unwrap();
    assert!(!env.contains(TOKEN) && !env.contains("BAA_"), "{env}");
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

#[test]
fn conductor_file_ops_follow_the_seed_contract() {
    let c = conductor::start("files");
    let auth = auth_h(&c);
    let h = [("Authorization", auth.as_str())];
    let work = TempDir::new("files-work");
    let w = post_h(&c.url("/v1/files/write"), &json!({"path": "runtime/demo.txt", "cwd": work.str(), "content": "hello from runtime host ops", "overwrite": false, "createParents": true}), &h).expect(200)["data"].clone();
    assert_eq!(
        (
            w["ok"].clone(),
            w["operation"].clone(),
            w["result"]["created"].clone()
        ),
        (json!(true), json!("files/write"), json!(true)),
        "{w}"
    );
    let dup = post_h(&c.url("/v1/files/write"), &json!({"path": "runtime/demo.txt", "cwd": work.str(), "content": "should not overwrite", "overwrite": false}), &h).expect(200)["data"].clone();
    assert_eq!(
        (dup["ok"].clone(), dup["error"]["code"].clone()),
        (json!(false), json!("FILE_ALREADY_EXISTS"))
    );
    let r = post_h(
        &c.url("/v1/files/read"),
        &json!({"path": "runtime/demo.txt", "cwd": work.str()}),
        &h,
    )
    .expect(200)["data"]
        .clone();
    assert_eq!(
        (
            r["ok"].clone(),
            r["result"]["content"].clone(),
            r["result"]["size"].clone()
        ),
        (json!(true), json!("hello from runtime host ops"), json!(27))
    );
    // The conductor's own state cannot be rewritten through host ops.
    let p = post_h(&c.url("/v1/files/write"), &json!({"path": c.dir.join("state/system-state.json").display().to_string(), "content": "{}", "overwrite": true}), &h).expect(200)["data"].clone();
    assert_eq!(p["error"]["code"], "PROTECTED_PATH", "{p}");
}

#[test]
fn conductor_never_logs_or_exposes_the_token() {
    // At debug every request is logged (the access log), so the log is known to cover the
    // requests that carried the token once their lines are in it.
    let dir = TempDir::new("hygiene");
    let d = conductor::spawn(&dir, "mini-main", "primary")
        .env("BAA_SHARED_TOKEN", TOKEN)
        .env("RUST_LOG", "debug")
        .start();
    let c = conductor::Conductor { d, dir };
    let auth = auth_h(&c);
    post_h(
        &c.url("/v1/exec"),
        &json!({"command": "true"}),
        &[("Authorization", auth.as_str())],
    )
    .expect(200);
    post_h(
        &c.url("/v1/exec"),
        &json!({"command": "true"}),
        &[("Authorization", "Bearer nope-nope-nope-nope")],
    )
    .expect_error(401, "unauthorized");
    for path in [
        "/v1/runtime",
        "/describe",
        "/describe/control",
        "/v1/capabilities",
    ] {
        assert!(
            !get(&c.url(path)).body.contains(TOKEN),
            "{path} shows the token"
        );
    }
    let logged = wait_for(Duration::from_secs(10), || {
        let log = c.d.log();
        [
            "method=POST path=/v1/exec status=200",
            "method=POST path=/v1/exec status=401",
            "method=GET path=/v1/capabilities status=200",
        ]
        .iter()
        .all(|line| log.contains(line))
        .then_some(log)
    });
    let Some(log) = logged else {
        panic!("the requests never reached the log:\n{}", c.d.log())
    };
    assert!(!log.contains(TOKEN), "token in the daemon log");
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", c.d.pid())).unwrap_or_default();
    assert!(
        !String::from_utf8_lossy(&cmdline).contains(TOKEN),
        "token in argv"
    );
    let cfg = std::process::Command::new(CONDUCTOR)
        .args(["config", "--json"])
        .env("BAA_SHARED_TOKEN", TOKEN)
        .envs(conductor::dirs_env(c.dir.path()))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&cfg.stdout);
    assert!(cfg.status.success() && !text.contains(TOKEN), "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["hasSharedToken"], true);
}

#[test]
fn conductor_refuses_public_listen_addresses_at_startup() {
    let dir = TempDir::new("listen");
    for (args, needle) in [
        (
            vec!["--local-api", "http://192.168.1.10:4317"],
            "refusing to listen on 192.168.1.10",
        ),
        (
            vec!["--local-api", "http://0.0.0.0:4317"],
            "refusing to listen on 0.0.0.0",
        ),
        (
            vec!["--local-api", "http://100.71.210.78:4317"],
            "refusing to listen on 100.71.210.78",
        ),
        (
            vec![
                "--local-api",
                "http://192.168.1.10:4317",
                "--local-api-allowed-hosts",
                "192.168.1.10",
            ],
            "not a Tailscale",
        ),
        (vec!["--role", "leader"], "primary or standby"),
    ] {
        let err = Spawn::new(CONDUCTOR)
            .arg("start")
            .args(&args)
            .cwd(dir.path())
            .try_start()
            .err()
            .unwrap_or_else(|| panic!("{args:?} started"));
        assert!(err.contains("exit status: 2"), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    let out = std::process::Command::new(CONDUCTOR)
        .args(["config", "--local-api", "http://127.0.0.1:4317/"])
        .envs(conductor::dirs_env(dir.path()))
        .current_dir(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for line in [
        "identity: mini-main@mini(primary)",
        "codexd_local_api_base: not-configured",
        "local_api_base: http://127.0.0.1:4317",
        "local_api_allowed_hosts: loopback-only",
    ] {
        assert!(text.contains(line), "config lacks {line:?}:\n{text}");
    }
    let usage = std::process::Command::new(CONDUCTOR)
        .arg("frobnicate")
        .output()
        .unwrap();
    assert_eq!(usage.status.code(), Some(2));
}
