//! `BAA_RUNTIME_ROOT` (`--root`): the one directory a node's runtime dirs live under —
//! `state/`, `logs/`, `runs/`, `worktrees/` and `tmp/` — so a person starting a daemon by
//! hand sets one variable, not five. Each dir keeps its own setting, which wins over the
//! root (launchd keeps the logs in `~/Library/Logs`, outside the root).
//!
//! Never the current directory: the daemons used to create their dirs wherever they were
//! started, and a `git clean` in a checkout then wiped a node's state. With neither the
//! root nor a dir set, start-up is refused in one line that names the root.

use std::path::PathBuf;

use crate::common::settings::{Error, Resolver, Result, Setting};

pub const RUNTIME_ROOT: Setting = Setting::env("BAA_RUNTIME_ROOT")
    .flag("root", "DIR")
    .help("the runtime root: state/, logs/, runs/, worktrees/ and tmp/ under it, each overridden by its own dir setting; a dir set neither way is refused (never the current directory)");

/// What every refusal ends with, so the reason is the same in all three daemons.
const NEVER_CWD: &str = "runtime dirs never default to the current directory";

/// `<root>/<sub>` when the root is set.
pub fn under(r: &Resolver, sub: &str) -> Option<PathBuf> {
    r.opt_path(&RUNTIME_ROOT).map(|root| root.join(sub))
}

/// Each dir of `dirs` (its own setting, its subdirectory of the root): the setting when
/// given, else the root's subdirectory. Refused when some dir is given neither way.
pub fn dirs<const N: usize>(r: &Resolver, dirs: [(&Setting, &str); N]) -> Result<[PathBuf; N]> {
    // The root is read even when every dir is given, so it counts as read.
    let root = r.opt_path(&RUNTIME_ROOT);
    let found = dirs.map(|(own, sub)| {
        r.opt_path(own)
            .or_else(|| root.as_ref().map(|p| p.join(sub)))
    });
    let missing: Vec<String> = dirs
        .iter()
        .zip(&found)
        .filter(|(_, f)| f.is_none())
        .map(|((own, _), _)| own.both_names())
        .collect();
    if missing.is_empty() {
        return Ok(found.map(|f| f.unwrap_or_default()));
    }
    // Nothing given at all: the root is the one thing to set. Some dirs given: the rest
    // are named too, as either fixes it.
    let others = if missing.len() == N {
        Vec::new()
    } else {
        missing
    };
    Err(not_set(&others))
}

/// The one-line refusal: the root is not set, nor any of `others` (names of the settings
/// that would also have done).
pub fn not_set(others: &[String]) -> Error {
    let root = RUNTIME_ROOT.both_names();
    if others.is_empty() {
        Error::rule(format!(
            "{root} is not set: set it to the directory that holds state/, logs/, runs/, worktrees/ and tmp/ ({NEVER_CWD})"
        ))
    } else {
        Error::rule(format!(
            "{root} is not set, nor {}; set the root or each of these ({NEVER_CWD})",
            others.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::settings::Flags;
    use std::collections::HashMap;
    use std::path::Path;

    const STATE: Setting = Setting::env("T_STATE_DIR").flag("state-dir", "DIR");
    const LOGS: Setting = Setting::env("T_LOGS_DIR").flag("logs-dir", "DIR");
    const TABLE: &[Setting] = &[RUNTIME_ROOT, STATE, LOGS];

    fn resolve(flags: &[(&'static str, &str)], env: &[(&str, &str)]) -> Result<[PathBuf; 2]> {
        let mut f = Flags::default();
        for (k, v) in flags {
            f.set(k, v.to_string());
        }
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = |k: &str| env.get(k).cloned();
        let r = Resolver::new(TABLE, &f, &lookup, Path::new("/cwd"));
        dirs(&r, [(&STATE, "state"), (&LOGS, "logs")])
    }

    #[test]
    fn the_root_implies_each_dir_and_an_explicit_dir_wins() {
        assert_eq!(
            resolve(&[], &[("BAA_RUNTIME_ROOT", "/srv/baa")]),
            Ok([
                PathBuf::from("/srv/baa/state"),
                PathBuf::from("/srv/baa/logs")
            ])
        );
        assert_eq!(
            resolve(&[("root", "rel")], &[("T_LOGS_DIR", "/var/log/baa")]),
            Ok([
                PathBuf::from("/cwd/rel/state"),
                PathBuf::from("/var/log/baa")
            ])
        );
    }

    #[test]
    fn nothing_set_is_one_line_naming_the_root() {
        let e = resolve(&[], &[("BAA_RUNTIME_ROOT", " ")])
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "BAA_RUNTIME_ROOT (or --root) is not set: set it to the directory that holds state/, logs/, runs/, worktrees/ and tmp/ (runtime dirs never default to the current directory)"
        );
        let e = resolve(&[("state-dir", "/s")], &[])
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "BAA_RUNTIME_ROOT (or --root) is not set, nor T_LOGS_DIR (or --logs-dir); set the root or each of these (runtime dirs never default to the current directory)"
        );
    }
}
