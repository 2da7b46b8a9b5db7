//! Issue 20: on a node whose daemons listen on a Tailscale address, commands run on the
//! node itself still reach them over loopback, whether or not Tailscale is up yet.
//! 100.64.0.1 is never an address of the test machine, so its bind fails here exactly as
//! it does on a Mac where launchd starts us before Tailscale.

use serde_json::Value;

use crate::support::conductor;
use crate::support::daemon::{Spawn, STATUS_API};
use crate::support::http::get;
use crate::support::tmp::TempDir;

const TAILNET: &str = "100.64.0.1";

#[test]
fn conductor_on_tailscale_answers_on_loopback_while_the_tailnet_bind_waits() {
    let dir = TempDir::new("tailnet-loopback");
    let d = conductor::spawn(&dir, "mini-main", "primary")
        .env("BAA_CONDUCTOR_LOCAL_API", format!("http://{TAILNET}:0"))
        .env("BAA_CONDUCTOR_LOCAL_API_ALLOWED_HOSTS", TAILNET)
        // The spawn helper's --local-api flag would win over the variable.
        .args(["--local-api", &format!("http://{TAILNET}:0")])
        .start();
    assert!(
        d.addr.starts_with("127.0.0.1:"),
        "announced {}: the loopback listener, the tailnet one being down",
        d.addr
    );
    let port = d.port();
    let health = get(&format!("http://127.0.0.1:{port}/healthz"));
    assert_eq!(health.status, 200, "{}", health.body);
    let localhost = crate::support::http::get_h(
        &format!("http://127.0.0.1:{port}/healthz"),
        &[("Host", &format!("localhost:{port}"))],
    );
    assert_eq!(localhost.status, 200, "{}", localhost.body);

    let runtime = get(&format!("http://127.0.0.1:{port}/v1/runtime")).expect(200)["data"].clone();
    let listeners = runtime["listeners"].as_array().expect("listeners").clone();
    let find = |url: String| -> Value {
        listeners
            .iter()
            .find(|l| l["url"] == url.as_str())
            .cloned()
            .unwrap_or_else(|| panic!("no listener {url} in {listeners:?}"))
    };
    let tailnet = find(format!("http://{TAILNET}:{port}"));
    assert_eq!(tailnet["bound"], false, "{tailnet}");
    assert!(
        tailnet["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{tailnet}"
    );
    let lo = find(format!("http://127.0.0.1:{port}"));
    assert_eq!(lo["bound"], true, "{lo}");
    assert!(lo.get("error").is_none(), "{lo}");
    assert!(
        d.log()
            .contains(&format!("cannot listen on {TAILNET}:{port} yet")),
        "no warning about the tailnet bind:\n{}",
        d.log()
    );
}

#[test]
fn status_api_on_tailscale_answers_on_loopback() {
    let d = Spawn::new(STATUS_API)
        .args(["start", "--host", TAILNET, "--port", "0"])
        .start();
    assert!(d.addr.starts_with("127.0.0.1:"), "announced {}", d.addr);
    let health = get(&d.url("/healthz"));
    assert_eq!(health.status, 200, "{}", health.body);
}

/// A home dir with `.config/baa-conductor/node.env` as install writes it.
fn node_home(tag: &str, conductor_url: &str) -> (TempDir, std::path::PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let home = TempDir::new(tag);
    let config = home.path().join(".config/baa-conductor");
    std::fs::create_dir_all(&config).unwrap();
    let token = config.join("shared-token.txt");
    std::fs::write(&token, format!("{}\n", conductor::TOKEN)).unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let node_env = config.join("node.env");
    std::fs::write(
        &node_env,
        format!(
            "# written by install-mini.sh\nBAA_CONDUCTOR_URL={conductor_url}\nBAA_SHARED_TOKEN_FILE={}\nBAA_RUNTIME_ROOT=/nowhere\n",
            token.display()
        ),
    )
    .unwrap();
    (home, node_env)
}

/// `baa-conductor <args>` from a plain shell: no BAA_* variable (Spawn clears them), HOME
/// as given.
fn plain_shell(home: &TempDir, args: &[&str]) -> crate::support::daemon::Ran {
    Spawn::new(crate::support::daemon::CONDUCTOR)
        .args(args)
        .env("HOME", home.path())
        .cwd(home.path())
        .output()
}

#[test]
fn cli_in_a_plain_shell_finds_the_conductor_and_token_through_node_env() {
    let c = conductor::start("node-env-cli");
    let (home, _) = node_home("node-env-home", &c.d.base);
    let added = plain_shell(
        &home,
        &[
            "task",
            "add",
            "--title",
            "from a plain shell",
            "--prompt",
            "p",
        ],
    );
    assert!(added.status.success(), "{added:?}");
    let listed = plain_shell(&home, &["task", "list"]);
    assert!(listed.status.success(), "{listed:?}");
    assert!(listed.stdout.contains("from a plain shell"), "{listed:?}");
    // On this conductor, not on whatever else listens on the default port.
    let ours = get(&c.url("/v1/tasks")).expect(200);
    assert!(ours.to_string().contains("from a plain shell"), "{ours}");
    // A write needs the token: node.env names its file.
    let scheduled = plain_shell(
        &home,
        &[
            "schedule",
            "add",
            "--name",
            "nightly",
            "--cron",
            "0 3 * * *",
            "--title",
            "t",
            "--prompt",
            "p",
        ],
    );
    assert!(scheduled.status.success(), "{scheduled:?}");
    assert!(
        !scheduled.stderr.contains("warning"),
        "a clean node.env warns of nothing: {scheduled:?}"
    );
}

#[test]
fn cli_unreachable_conductor_names_node_env_as_where_the_url_came_from() {
    // A port nothing listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (home, node_env) = node_home("node-env-down", &format!("http://127.0.0.1:{port}"));
    let r = plain_shell(&home, &["task", "list"]);
    assert_eq!(r.status.code(), Some(1), "{r:?}");
    let want = format!(
        "cannot reach the conductor at http://127.0.0.1:{port} (from BAA_CONDUCTOR_URL in {})",
        node_env.display()
    );
    assert!(r.stderr.contains(&want), "want {want:?} in {r:?}");
    // A bad line is named once, and the good ones still count.
    let mut text = std::fs::read_to_string(&node_env).unwrap();
    text.push_str("not a setting\n");
    std::fs::write(&node_env, text).unwrap();
    let r = plain_shell(&home, &["task", "list"]);
    assert_eq!(
        r.stderr
            .matches(&format!("{}:5: not KEY=VALUE", node_env.display()))
            .count(),
        1,
        "{r:?}"
    );
    assert!(r.stderr.contains(&want), "{r:?}");
}
