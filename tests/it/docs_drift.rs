//! Docs drift: fails when a route or an environment variable is added without docs, and
//! when a documented conductor/codexd/status-api route no longer exists.
//!
//! Routes come from the binaries themselves: `<binary> routes --json` prints the table each
//! daemon serves (`{id, kind, method, path, summary, listed}`, hidden routes included),
//! without starting it. Which conductor routes are on the business and which on the control
//! surface comes from a running conductor's `/describe/business` and `/describe/control`.
//!
//! Environment variables come from the binaries too: `<binary> settings --json` prints the
//! settings table each one parses with (`{flag, env, default, help}` for every variable it
//! reads, including those read elsewhere such as `RUST_LOG`). Each must be documented in
//! that binary's section, and each variable a section documents must be in the table.
//!
//! Where each must be documented:
//! - conductor routes in `docs/api/business-interfaces.md` (the routes `/describe/business`
//!   lists) or `docs/api/control-interfaces.md` (`/describe/control`); routes on neither
//!   surface (hidden ones) may be in either file;
//! - codexd routes in `docs/api/codexd-interfaces.md`, status-api routes in
//!   `docs/api/status-api-interfaces.md`;
//!   each as a Markdown heading `### METHOD /path` (any heading level);
//! - env vars as `` `NAME` `` in the first cell of a row of the binary's `## baa-…` table in
//!   `docs/runtime/environment.md`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::support::conductor;
use crate::support::daemon::{CODEXD, CONDUCTOR, STATUS_API};
use crate::support::http::get;
use crate::support::tmp::TempDir;

const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];
const BUSINESS_DOC: &str = "docs/api/business-interfaces.md";
const CONTROL_DOC: &str = "docs/api/control-interfaces.md";
const CODEXD_DOC: &str = "docs/api/codexd-interfaces.md";
const STATUS_DOC: &str = "docs/api/status-api-interfaces.md";
const ENV_DOC: &str = "docs/runtime/environment.md";

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct RouteRef {
    id: String,
    method: String,
    path: String,
    listed: bool,
}

/// What `<bin> routes --json` printed, run in an empty scratch directory with no `BAA_*`
/// variables but `env`. Asserts it succeeded, said nothing on stderr, left the directory
/// empty, and printed an array of `{id, kind, method, path, summary, listed}`.
fn routes_json(bin: &str, env: &[(&str, &str)]) -> Vec<Value> {
    let scratch = TempDir::new("routes-json");
    let mut cmd = Command::new(bin);
    cmd.args(["routes", "--json"]).current_dir(scratch.path());
    for (k, _) in std::env::vars() {
        if k.starts_with("BAA_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied());
    let out = cmd.output().unwrap_or_else(|e| panic!("run {bin}: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.is_empty(),
        "{bin} routes --json: {} stderr {stderr:?}",
        out.status
    );
    let left: Vec<_> = std::fs::read_dir(scratch.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        left.is_empty(),
        "{bin} routes --json created {left:?} in its cwd"
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{bin} routes --json is not JSON ({e}): {:?}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    let routes = v
        .as_array()
        .unwrap_or_else(|| panic!("{bin} routes --json is not an array: {v}"))
        .clone();
    for r in &routes {
        let keys: Vec<&str> = r
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        assert_eq!(
            keys,
            ["id", "kind", "listed", "method", "path", "summary"],
            "{bin}: {r}"
        );
        assert!(
            ["read", "write", "probe"].contains(&r["kind"].as_str().unwrap_or("")),
            "{bin}: {r}"
        );
        assert!(
            METHODS.contains(&r["method"].as_str().unwrap_or("")),
            "{bin}: {r}"
        );
        assert!(
            r["path"].as_str().is_some_and(|p| p.starts_with('/')),
            "{bin}: {r}"
        );
        assert!(r["listed"].is_boolean(), "{bin}: {r}");
    }
    routes
}

/// `routes_json` as (id, method, path, listed), default configuration.
fn routes_of(bin: &str) -> Vec<RouteRef> {
    let routes: Vec<RouteRef> = routes_json(bin, &[])
        .iter()
        .map(|r| RouteRef {
            id: r["id"].as_str().unwrap_or_default().to_string(),
            method: r["method"].as_str().unwrap_or_default().to_string(),
            path: r["path"].as_str().unwrap_or_default().to_string(),
            listed: r["listed"] == true,
        })
        .collect();
    assert!(!routes.is_empty(), "{bin} routes --json printed no routes");
    routes
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("cannot read {rel}: {e}"))
}

/// The route ids a running conductor lists on one describe surface.
fn surface_ids(c: &conductor::Conductor, path: &str) -> BTreeSet<String> {
    let data = get(&c.url(path)).expect(200)["data"].clone();
    data["endpoints"]
        .as_array()
        .unwrap_or_else(|| panic!("{path}: no endpoints array: {data}"))
        .iter()
        .map(|e| e["id"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// `(method, path)` of every `#… METHOD /path` heading in a doc.
fn documented(rel: &str) -> BTreeSet<(String, String)> {
    let text = std::fs::read_to_string(root().join(rel))
        .unwrap_or_else(|e| panic!("cannot read {rel} ({e}); it must document the routes"));
    text.lines()
        .filter(|l| l.starts_with('#'))
        .filter_map(|l| {
            let mut words = l.trim_start_matches('#').split_whitespace();
            let method = words.next()?;
            let path = words.next()?.trim_matches('`');
            (METHODS.contains(&method) && path.starts_with('/'))
                .then(|| (method.to_string(), path.to_string()))
        })
        .collect()
}

fn key(r: &RouteRef) -> (String, String) {
    (r.method.clone(), r.path.clone())
}

#[test]
fn every_route_is_documented_and_every_documented_route_exists() {
    let mut problems = Vec::new();
    let conductor_routes = routes_of(CONDUCTOR);
    let c = conductor::start("docs-drift");
    let business_ids = surface_ids(&c, "/describe/business");
    let control_ids = surface_ids(&c, "/describe/control");
    // The conductor advertises exactly the listed routes of the table it prints.
    let caps = get(&c.url("/v1/capabilities")).expect(200)["data"].clone();
    let advertised: BTreeSet<String> = ["read_endpoints", "write_endpoints", "diagnostics"]
        .iter()
        .flat_map(|k| caps[*k].as_array().cloned().unwrap_or_default())
        .map(|e| e["id"].as_str().unwrap_or_default().to_string())
        .collect();
    let listed: BTreeSet<String> = conductor_routes
        .iter()
        .filter(|r| r.listed)
        .map(|r| r.id.clone())
        .collect();
    assert_eq!(
        advertised, listed,
        "/v1/capabilities and `baa-conductor routes --json` disagree"
    );
    drop(c);

    let business = documented(BUSINESS_DOC);
    let control = documented(CONTROL_DOC);
    for r in &conductor_routes {
        let heading = format!("### {} {}", r.method, r.path);
        let (in_b, in_c) = (business.contains(&key(r)), control.contains(&key(r)));
        if business_ids.contains(&r.id) && !in_b {
            problems.push(format!("conductor route {} ({heading}) is on the business surface but not documented: add `{heading}` to {BUSINESS_DOC}", r.id));
        }
        if control_ids.contains(&r.id) && !in_c {
            problems.push(format!("conductor route {} ({heading}) is on the control surface but not documented: add `{heading}` to {CONTROL_DOC}", r.id));
        }
        if !in_b && !in_c {
            problems.push(format!("conductor route {} is not documented: add `{heading}` to {BUSINESS_DOC} or {CONTROL_DOC}", r.id));
        }
    }
    let served: BTreeSet<_> = conductor_routes.iter().map(key).collect();
    for (doc, set) in [(BUSINESS_DOC, &business), (CONTROL_DOC, &control)] {
        for (m, path) in set.iter().filter(|k| !served.contains(*k)) {
            problems.push(format!("{doc} documents `{m} {path}`, which the conductor no longer serves (`baa-conductor routes`): remove or fix it"));
        }
    }
    for (daemon, bin, doc) in [
        ("codexd", CODEXD, CODEXD_DOC),
        ("status-api", STATUS_API, STATUS_DOC),
    ] {
        let routes = routes_of(bin);
        let docs = documented(doc);
        for r in routes.iter().filter(|r| !docs.contains(&key(r))) {
            problems.push(format!(
                "{daemon} route {} is not documented: add `### {} {}` to {doc}",
                r.id, r.method, r.path
            ));
        }
        let served: BTreeSet<_> = routes.iter().map(key).collect();
        for (m, path) in docs.iter().filter(|k| !served.contains(*k)) {
            problems.push(format!(
                "{doc} documents `{m} {path}`, which {daemon} no longer serves: remove or fix it"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "docs drift:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn routes_json_prints_each_table_without_starting_a_daemon_or_touching_the_cwd() {
    let ids = |routes: &[Value]| -> Vec<String> {
        routes
            .iter()
            .map(|r| r["id"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    for bin in [CONDUCTOR, CODEXD, STATUS_API] {
        let routes = routes_json(bin, &[]);
        let all = ids(&routes);
        let unique: BTreeSet<_> = all.iter().collect();
        assert_eq!(unique.len(), all.len(), "{bin}: duplicate ids in {all:?}");
        assert!(
            routes.iter().any(|r| r["id"] == "probe.healthz"
                && r["path"] == "/healthz"
                && r["kind"] == "probe"),
            "{bin}: no /healthz probe in {all:?}"
        );
    }
    // Hidden routes are printed, marked as such.
    let conductor = routes_json(CONDUCTOR, &[]);
    let hidden: Vec<_> = conductor
        .iter()
        .filter(|r| r["listed"] == false)
        .map(|r| r["id"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(hidden, ["runs.list", "runs.read", "ws.firefox"]);
    assert_eq!(
        ids(&routes_json(STATUS_API, &[])),
        ["probe.healthz", "status.json", "status.page"]
    );
    // codexd prints the event stream where the configuration puts it, nothing else needed.
    let events = |env: &[(&str, &str)]| -> Value {
        routes_json(CODEXD, env)
            .into_iter()
            .find(|r| r["id"] == "codexd.events")
            .expect("codexd.events in the table")
    };
    assert_eq!(events(&[])["path"], "/v1/codexd/events");
    assert_eq!(
        events(&[("BAA_CODEXD_EVENT_STREAM_PATH", "custom/events/")])["path"],
        "/custom/events"
    );
    // Text form, and a usage error for anything but --json.
    let out = Command::new(STATUS_API).arg("routes").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success()
            && text.lines().any(|l| l.starts_with("GET")
                && l.contains("/v1/status")
                && l.contains("status.json")),
        "{}: {text:?}",
        out.status
    );
    let out = Command::new(CONDUCTOR)
        .args(["routes", "--bogus"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{:?}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(CODEXD)
        .args(["routes", "--json"])
        .env("BAA_CODEXD_EVENT_STREAM_PATH", "/a/:b")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{:?}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The variables `<bin> settings --json` names: every one the binary reads, from the
/// settings table its usage and its parse are built from.
fn settings_env(bin: &str) -> BTreeSet<String> {
    let out = Command::new(bin)
        .args(["settings", "--json"])
        .output()
        .unwrap_or_else(|e| panic!("run {bin}: {e}"));
    assert!(
        out.status.success(),
        "{bin} settings --json: {} {:?}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{bin} settings --json is not JSON: {e}"));
    rows.as_array()
        .unwrap_or_else(|| panic!("{bin} settings --json is not an array: {rows}"))
        .iter()
        .filter_map(|r| r["env"].as_str().map(str::to_string))
        .collect()
}

/// The text of the `## <binary>` section of the environment doc.
fn env_section<'a>(doc: &'a str, binary: &str) -> &'a str {
    let heading = format!("\n## {binary}\n");
    let start = doc
        .find(&heading)
        .unwrap_or_else(|| panic!("{ENV_DOC} has no `## {binary}` section"))
        + heading.len();
    let end = doc[start..].find("\n## ").map_or(doc.len(), |e| start + e);
    &doc[start..end]
}

/// The variables a section documents: every `` `NAME` `` in the first cell of a table row.
fn documented_env(section: &str) -> BTreeSet<String> {
    section
        .lines()
        .filter_map(|l| l.strip_prefix("| "))
        .filter_map(|l| l.split(" | ").next())
        .flat_map(|cell| cell.split('`').skip(1).step_by(2))
        .filter(|name| !name.is_empty() && name.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .map(str::to_string)
        .collect()
}

#[test]
fn every_env_var_is_documented_and_every_documented_one_is_read() {
    let doc = read(ENV_DOC);
    let mut problems = Vec::new();
    for (name, bin) in [
        ("baa-conductor", CONDUCTOR),
        ("baa-codexd", CODEXD),
        ("baa-status-api", STATUS_API),
    ] {
        let read = settings_env(bin);
        assert!(
            read.len() >= 5,
            "{name} settings --json lists only {read:?}"
        );
        let documented = documented_env(env_section(&doc, name));
        for var in read.difference(&documented) {
            problems.push(format!(
                "{var} (in {name} settings --json) is not documented: add a `{var}` row to the `## {name}` table of {ENV_DOC}"
            ));
        }
        for var in documented.difference(&read) {
            problems.push(format!(
                "{var} is documented in `## {name}` of {ENV_DOC} but {name} does not read it (not in its settings table)"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "docs drift:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn documented_env_reads_the_first_cell_of_each_row() {
    let section = "| variable | flag |\n| --- | --- |\n| `BAA_ONE` | `--one` |\n\
                   | `PATH`, `HOME` | — | `BAA_NOT_FIRST_CELL` |\ntext `BAA_PROSE`\n";
    assert_eq!(
        documented_env(section).into_iter().collect::<Vec<_>>(),
        ["BAA_ONE", "HOME", "PATH"]
    );
}

/// `scripts/docs-blocks.sh --lint` on `files`: (exit code, stderr).
fn docs_blocks_lint(files: &[&std::path::Path]) -> (i32, String) {
    let out = Command::new("bash")
        .arg(root().join("scripts/docs-blocks.sh"))
        .arg("--lint")
        .args(files)
        .output()
        .expect("run scripts/docs-blocks.sh");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The docs' shell blocks were not run: a command could stop working, or never have worked
/// (the dev `check-node.sh` example failed as pasted), and nothing noticed. Now every shell
/// block is either run against the dev stack by scripts/walkthrough.sh (`docs: expect`) or
/// says why not (`docs: skip REASON`); an unmarked one fails here, in a plain `cargo test`.
#[test]
fn docs_shell_blocks_were_never_run_so_a_pasted_example_could_fail() {
    let (code, stderr) = docs_blocks_lint(&[]);
    assert_eq!(code, 0, "{stderr}");

    let tmp = TempDir::new("docs-blocks-lint");
    let doc = tmp.path().join("doc.md");
    std::fs::write(
        &doc,
        "# t\n\n<!-- docs: expect ok -->\n```sh\ncurl -s http://127.0.0.1:4317/healthz\n```\n\n\
         ```sh\necho unmarked\n```\n\n<!-- docs: skip -->\n```bash\necho no reason\n```\n\n\
         ```json\n{\"not\": \"shell\"}\n```\n\n```\nbaa-conductor task list\n```\n",
    )
    .unwrap();
    let (code, stderr) = docs_blocks_lint(&[&doc]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("doc.md:8: a shell block with no mark"),
        "{stderr}"
    );
    assert!(
        stderr.contains("doc.md:13: a skip needs its reason"),
        "{stderr}"
    );
    assert!(
        stderr.contains("doc.md:21: a fence without a language"),
        "{stderr}"
    );
    assert!(stderr.contains("3 problem(s)"), "{stderr}");
}
