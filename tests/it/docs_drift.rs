//! Docs drift: fails when a route or an environment variable is added without docs, and
//! when a documented conductor/codexd/status-api route no longer exists.
//!
//! Tests can only import the `baa` lib crate, not the binaries' route tables, so the sources
//! are read as text through a tiny Rust tokenizer (string literals, identifiers,
//! punctuation; comments, char literals and lifetimes skipped). That is enough to read the
//! three route tables, whatever their layout (`route("id", Kind, "GET", "/path", ..)`,
//! `r(..)` over several lines, or `Route { method: "GET", pattern: "/path", .. }`): every
//! method literal is followed, after commas and `field:` labels, by the path literal (or,
//! for codexd's event stream, the `event_path` variable, resolved to its configured default).
//! The number of routes found is checked against the number of route constructors in the
//! table, so a route written in a new shape fails here instead of slipping through.
//!
//! Environment variables: every `"BAA_…"` string literal in `src/` outside `#[cfg(test)]`
//! items, plus any literal passed straight to `env::var(..)` / `env::var_os(..)`. Names
//! ending in `_` are prefixes (the child's env scrub), not variables. Files under
//! `src/conductor/`, `src/codexd/` and `src/status_api/` belong to that binary;
//! `src/common/` and `src/lib.rs` to all three.
//!
//! Where each must be documented:
//! - conductor routes in `docs/api/business-interfaces.md` (ids listed in `BUSINESS` of
//!   `src/conductor/describe.rs`) or `docs/api/control-interfaces.md` (`CONTROL`); routes in
//!   neither list may be in either file;
//! - codexd routes in `docs/api/codexd-interfaces.md`, status-api routes in
//!   `docs/api/status-api-interfaces.md`;
//!   each as a Markdown heading `### METHOD /path` (any heading level);
//! - env vars as `` `NAME` `` in the binary's `## baa-…` section of `docs/runtime/environment.md`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];
const BUSINESS_DOC: &str = "docs/api/business-interfaces.md";
const CONTROL_DOC: &str = "docs/api/control-interfaces.md";
const CODEXD_DOC: &str = "docs/api/codexd-interfaces.md";
const STATUS_DOC: &str = "docs/api/status-api-interfaces.md";
const ENV_DOC: &str = "docs/runtime/environment.md";

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

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("cannot read {rel}: {e}"))
}

/// The tokens of `src` from the first occurrence of `start` to the first `end` after it.
fn region(rel: &str, start: &str, end: &str) -> Vec<Tok> {
    let src = read(rel);
    let from = src.find(start).unwrap_or_else(|| {
        panic!("{rel}: {start:?} not found; update docs_drift.rs to the new route table")
    });
    let len = src[from..]
        .find(end)
        .unwrap_or_else(|| panic!("{rel}: end of the route table ({end:?}) not found"));
    lex(&src[from..from + len])
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct RouteRef {
    id: String,
    method: String,
    path: String,
}

/// Every (id, method, path) in a route table region. `constructor` is the token sequence
/// that opens one route (`route (`, `r (`, `Route {`); their count must match.
fn routes_in(
    rel: &str,
    toks: &[Tok],
    constructor: &[Tok],
    ident_path: &dyn Fn(&str) -> Option<String>,
) -> Vec<RouteRef> {
    let mut found = Vec::new();
    let mut last_str: Option<String> = None;
    for (i, t) in toks.iter().enumerate() {
        let Tok::Str(s) = t else { continue };
        if !METHODS.contains(&s.as_str()) {
            last_str = Some(s.clone());
            continue;
        }
        let mut j = i + 1;
        loop {
            match (toks.get(j), toks.get(j + 1)) {
                (Some(Tok::Punct(',')), _) => j += 1,
                (Some(Tok::Ident(_)), Some(Tok::Punct(':'))) => j += 2,
                _ => break,
            }
        }
        let path = match toks.get(j) {
            Some(Tok::Str(p)) if p.starts_with('/') => p.clone(),
            Some(Tok::Ident(name)) => ident_path(name).unwrap_or_else(|| {
                panic!("{rel}: route path given by the variable `{name}`; teach docs_drift.rs its value")
            }),
            other => panic!("{rel}: method {s:?} is not followed by a path (got {other:?})"),
        };
        let id = last_str
            .clone()
            .unwrap_or_else(|| panic!("{rel}: no route id before {s} {path}"));
        found.push(RouteRef {
            id,
            method: s.clone(),
            path,
        });
    }
    let constructors = toks
        .windows(constructor.len())
        .filter(|w| *w == constructor)
        .count();
    assert_eq!(
        constructors,
        found.len(),
        "{rel}: {constructors} route constructors ({constructor:?}) but {} method/path pairs were read: {found:#?}\n\
         a route is written in a shape docs_drift.rs cannot read; update the extractor",
        found.len()
    );
    assert!(!found.is_empty(), "{rel}: no routes found");
    found
}

fn p(c: char) -> Tok {
    Tok::Punct(c)
}

fn ident(s: &str) -> Tok {
    Tok::Ident(s.to_string())
}

fn conductor_routes() -> Vec<RouteRef> {
    let rel = "src/conductor/routes.rs";
    let toks = region(rel, "pub static ROUTES", "\n];");
    routes_in(rel, &toks, &[ident("route"), p('(')], &|_| None)
}

fn codexd_routes() -> Vec<RouteRef> {
    let rel = "src/codexd/routes.rs";
    let toks = region(rel, "pub fn table(", "\n}\n");
    // The event stream's path is configurable; the table is documented at its default.
    let cfg = lex(&read("src/codexd/config.rs"));
    let default_event_path = cfg
        .iter()
        .skip_while(|t| **t != Tok::Str("BAA_CODEXD_EVENT_STREAM_PATH".into()))
        .find_map(|t| match t {
            Tok::Str(s) if s.starts_with('/') => Some(s.clone()),
            _ => None,
        })
        .expect("src/codexd/config.rs: default of BAA_CODEXD_EVENT_STREAM_PATH not found");
    routes_in(rel, &toks, &[ident("r"), p('(')], &|name| {
        (name == "event_path").then(|| default_event_path.clone())
    })
}

fn status_api_routes() -> Vec<RouteRef> {
    let rel = "src/status_api/routes.rs";
    let toks = region(rel, "pub static ROUTES", "\n];");
    routes_in(rel, &toks, &[ident("Route"), p('{')], &|_| None)
}

/// The route ids of one surface list in `src/conductor/describe.rs` (`BUSINESS`, `CONTROL`).
fn surface_ids(name: &str) -> BTreeSet<String> {
    let toks = region("src/conductor/describe.rs", &format!("const {name}:"), "];");
    toks.into_iter()
        .filter_map(|t| match t {
            Tok::Str(s) => Some(s),
            _ => None,
        })
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
    let business_ids = surface_ids("BUSINESS");
    let control_ids = surface_ids("CONTROL");
    let business = documented(BUSINESS_DOC);
    let control = documented(CONTROL_DOC);
    let conductor = conductor_routes();
    let all_ids: BTreeSet<&str> = conductor.iter().map(|r| r.id.as_str()).collect();
    for id in business_ids.iter().chain(&control_ids) {
        if !all_ids.contains(id.as_str()) {
            problems.push(format!(
                "src/conductor/describe.rs lists route id {id:?}, which is not in src/conductor/routes.rs"
            ));
        }
    }
    for r in &conductor {
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
    let served: BTreeSet<_> = conductor.iter().map(key).collect();
    for (doc, set) in [(BUSINESS_DOC, &business), (CONTROL_DOC, &control)] {
        for (m, path) in set.iter().filter(|k| !served.contains(*k)) {
            problems.push(format!("{doc} documents `{m} {path}`, which the conductor no longer serves (src/conductor/routes.rs): remove or fix it"));
        }
    }
    for (daemon, routes, doc) in [
        ("codexd", codexd_routes(), CODEXD_DOC),
        ("status-api", status_api_routes(), STATUS_DOC),
    ] {
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
            && toks[i - 1] == p('(')
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
fn extractor_reads_each_table_shape() {
    // The three shapes the route tables use, and the test-only filter of env vars.
    let toks = lex(
        r#"route("a.b", Read, "GET", "/x/:id", "s {x}", h), hidden(route("c", Write, "POST", "/y", "s", h))"#,
    );
    let got = routes_in("inline", &toks, &[ident("route"), p('(')], &|_| None);
    assert_eq!(
        got.iter()
            .map(|r| format!("{} {} {}", r.id, r.method, r.path))
            .collect::<Vec<_>>(),
        ["a.b GET /x/:id", "c POST /y"]
    );
    let toks =
        lex("Route { id: \"s.p\", kind: K, method: \"GET\", pattern: \"/\", summary: \"x\" }");
    let got = routes_in("inline", &toks, &[ident("Route"), p('{')], &|_| None);
    assert_eq!((got[0].id.as_str(), got[0].path.as_str()), ("s.p", "/"));
    let src = "fn a() { env::var(\"PATH\"); let c = 'x'; let l: &'static str = \"BAA_ONE\"; }\n\
               #[cfg(test)]\nmod tests { fn t() { std::env::set_var(\"BAA_TWO\", \"1\"); } }\n\
               const P: &str = \"BAA_\"; // \"BAA_THREE\"\n";
    assert_eq!(
        env_vars_in(src).into_iter().collect::<Vec<_>>(),
        ["BAA_ONE", "PATH"]
    );
}
