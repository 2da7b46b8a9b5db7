//! Docs drift: fails when a route or an environment variable is added without docs, and
//! when a documented conductor/codexd/status-api route no longer exists.
//!
//! Routes come from the binaries themselves: `<binary> routes --json` prints the table each
//! daemon serves (`{id, kind, method, path, summary, listed}`, hidden routes included),
//! without starting it. Which conductor routes are on the business and which on the control
//! surface comes from a running conductor's `/describe/business` and `/describe/control`.
//!
//! Environment variables: every `"BAA_…"` string literal in `src/` outside `#[cfg(test)]`
//! items, plus any literal passed straight to `env::var(..)` / `env::var_os(..)`, read
//! through a tiny Rust tokenizer (string literals, identifiers, punctuation; comments, char
//! literals and lifetimes skipped). Names ending in `_` are prefixes (the child's env scrub),
//! not variables. Files under `src/conductor/`, `src/codexd/` and `src/status_api/` belong to
//! that binary; `src/common/` and `src/lib.rs` to all three.
//!
//! Where each must be documented:
//! - conductor routes in `docs/api/business-interfaces.md` (the routes `/describe/business`
//!   lists) or `docs/api/control-interfaces.md` (`/describe/control`); routes on neither
//!   surface (hidden ones) may be in either file;
//! - codexd routes in `docs/api/codexd-interfaces.md`, status-api routes in
//!   `docs/api/status-api-interfaces.md`;
//!   each as a Markdown heading `### METHOD /path` (any heading level);
//! - env vars as `` `NAME` `` in the binary's `## baa-…` section of `docs/runtime/environment.md`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
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

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Str(String),
    Ident(String),
    Punct(char),
}

/// Tokenizes Rust source well enough to find string literals and their neighbours.
fn lex(src: &str) -> Vec<Tok> {
    let c: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && c.get(i + 1) == Some(&'/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && c.get(i + 1) == Some(&'*') {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if ch == '"' {
            let mut s = String::new();
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    i += 1;
                    if c.get(i) == Some(&'\n') {
                        // Line continuation: skip the newline and the next line's indent.
                        while i + 1 < c.len() && c[i + 1].is_whitespace() {
                            i += 1;
                        }
                    } else if let Some(&e) = c.get(i) {
                        s.push(match e {
                            'n' => '\n',
                            't' => '\t',
                            other => other,
                        });
                    }
                } else {
                    s.push(c[i]);
                }
                i += 1;
            }
            i += 1;
            out.push(Tok::Str(s));
        } else if ch == '\'' {
            // Char literal ('a', '\n', '\u{..}') or a lifetime ('static).
            if c.get(i + 1) == Some(&'\\') {
                i += 2;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if c.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                i += 1;
                while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                    i += 1;
                }
            }
        } else if ch.is_alphabetic() || ch == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            let word: String = c[start..i].iter().collect();
            // Raw strings: r"..", r#".."#, br"..".
            if (word == "r" || word == "br") && matches!(c.get(i), Some('"') | Some('#')) {
                let mut hashes = 0;
                while c.get(i) == Some(&'#') {
                    hashes += 1;
                    i += 1;
                }
                if c.get(i) == Some(&'"') {
                    i += 1;
                    let mut s = String::new();
                    loop {
                        if i >= c.len() {
                            break;
                        }
                        if c[i] == '"' && (1..=hashes).all(|k| c.get(i + k) == Some(&'#')) {
                            i += 1 + hashes;
                            break;
                        }
                        s.push(c[i]);
                        i += 1;
                    }
                    out.push(Tok::Str(s));
                    continue;
                }
            }
            out.push(Tok::Ident(word));
        } else if ch.is_ascii_digit() {
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_' || c[i] == '.') {
                i += 1;
            }
        } else {
            out.push(Tok::Punct(ch));
            i += 1;
        }
    }
    out
}

/// Drops every item annotated `#[cfg(test)]` (test modules, test-only helpers).
fn strip_cfg_test(toks: Vec<Tok>) -> Vec<Tok> {
    let p = |c: char| Tok::Punct(c);
    let id = |s: &str| Tok::Ident(s.to_string());
    let attr = [
        p('#'),
        p('['),
        id("cfg"),
        p('('),
        id("test"),
        p(')'),
        p(']'),
    ];
    let mut out = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        if toks[i..].starts_with(&attr) {
            i += attr.len();
            // Skip the item: up to its `;`, or its balanced `{ .. }` body.
            while i < toks.len() && toks[i] != p('{') && toks[i] != p(';') {
                i += 1;
            }
            if toks.get(i) == Some(&p('{')) {
                let mut depth = 0;
                while i < toks.len() {
                    if toks[i] == p('{') {
                        depth += 1;
                    } else if toks[i] == p('}') {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    i += 1;
                }
            }
            i += 1;
        } else {
            out.push(toks[i].clone());
            i += 1;
        }
    }
    out
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Env var names read by non-test code in one file.
fn env_vars_in(src: &str) -> BTreeSet<String> {
    let toks = strip_cfg_test(lex(src));
    let mut vars = BTreeSet::new();
    for (i, t) in toks.iter().enumerate() {
        let Tok::Str(s) = t else { continue };
        let is_name = !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            && !s.ends_with('_');
        if !is_name {
            continue;
        }
        let baa = s.starts_with("BAA_");
        let env_call = i >= 2
            && toks[i - 1] == Tok::Punct('(')
            && matches!(&toks[i - 2], Tok::Ident(f) if f == "var" || f == "var_os");
        if baa || env_call {
            vars.insert(s.clone());
        }
    }
    vars
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

#[test]
fn every_env_var_is_documented() {
    let doc = read(ENV_DOC);
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    let mut problems = Vec::new();
    let mut total = 0;
    for f in &files {
        let rel = f
            .strip_prefix(root())
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let binaries: &[&str] = if rel.starts_with("src/conductor/") {
            &["baa-conductor"]
        } else if rel.starts_with("src/codexd/") {
            &["baa-codexd"]
        } else if rel.starts_with("src/status_api/") {
            &["baa-status-api"]
        } else {
            &["baa-conductor", "baa-codexd", "baa-status-api"]
        };
        for var in env_vars_in(&std::fs::read_to_string(f).unwrap()) {
            total += 1;
            for b in binaries {
                if !env_section(&doc, b).contains(&format!("`{var}`")) {
                    problems.push(format!(
                        "{var} (read in {rel}) is not documented: add a `{var}` row to the `## {b}` table of {ENV_DOC}"
                    ));
                }
            }
        }
    }
    assert!(
        total >= 40,
        "only {total} env var reads found under src/; the extractor is broken"
    );
    assert!(
        problems.is_empty(),
        "docs drift:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn env_var_extractor_skips_tests_comments_and_prefixes() {
    let src = "fn a() { env::var(\"PATH\"); let c = 'x'; let l: &'static str = \"BAA_ONE\"; }\n\
               #[cfg(test)]\nmod tests { fn t() { std::env::set_var(\"BAA_TWO\", \"1\"); } }\n\
               const P: &str = \"BAA_\"; // \"BAA_THREE\"\n";
    assert_eq!(
        env_vars_in(src).into_iter().collect::<Vec<_>>(),
        ["BAA_ONE", "PATH"]
    );
}
