//! How big a change is: `git diff --shortstat base head` for the counts, and the length of
//! the unified diff (`git diff base head`, the same options) for `diff_bytes`. The runner
//! keeps at most 1 MiB of a diff but counts every byte it drains, so the size is exact
//! for any diff and never held whole.

use std::path::Path;

use super::git::{Git, GitError};

/// The diff every workspace size and review reads: never an external diff tool or
/// colors from the repo's or the user's config.
pub const DIFF_ARGS: [&str; 3] = ["diff", "--no-color", "--no-ext-diff"];

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DiffStat {
    pub files_changed: u64,
    pub insertions: u64,
    pub deletions: u64,
    pub diff_bytes: u64,
}

/// The size of `base..head` in the repository (or worktree) `dir`.
pub fn diff_stat(git: &Git, dir: &Path, base: &str, head: &str) -> Result<DiffStat, GitError> {
    let range = [base, head, "--"];
    let args: Vec<&str> = DIFF_ARGS
        .iter()
        .copied()
        .chain(["--shortstat"])
        .chain(range)
        .collect();
    let short = git.run(dir, &args)?;
    let mut stat = parse_shortstat(short.line());
    let args: Vec<&str> = DIFF_ARGS.iter().copied().chain(range).collect();
    stat.diff_bytes = git.run(dir, &args)?.stdout_len;
    Ok(stat)
}

/// ` 2 files changed, 3 insertions(+), 1 deletion(-)` (any part may be missing; empty
/// when nothing changed). git prints it in English under `LC_ALL=C`, which the runner sets.
fn parse_shortstat(line: &str) -> DiffStat {
    let mut s = DiffStat::default();
    for part in line.split(',') {
        let mut words = part.split_whitespace();
        let n: u64 = words.next().and_then(|n| n.parse().ok()).unwrap_or(0);
        match words.next().unwrap_or("") {
            w if w.starts_with("file") => s.files_changed = n,
            w if w.starts_with("insertion") => s.insertions = n,
            w if w.starts_with("deletion") => s.deletions = n,
            _ => {}
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace::test_repo::TestRepo;

    #[test]
    fn shortstat_lines_parse_with_any_part_missing() {
        let s = parse_shortstat(" 2 files changed, 3 insertions(+), 1 deletion(-)");
        assert_eq!((s.files_changed, s.insertions, s.deletions), (2, 3, 1));
        let s = parse_shortstat(" 1 file changed, 4 deletions(-)");
        assert_eq!((s.files_changed, s.insertions, s.deletions), (1, 0, 4));
        assert_eq!(parse_shortstat(""), DiffStat::default());
    }

    #[test]
    fn counts_and_the_exact_diff_size_beyond_the_runners_cap() {
        let r = TestRepo::new("stat");
        let base = r.head();
        std::fs::write(r.repo.join("README.md"), "hello\nworld\n").unwrap();
        // Bigger than the 1 MiB the runner keeps.
        let big = "0123456789abcdef\n".repeat(80_000);
        std::fs::write(r.repo.join("big.txt"), &big).unwrap();
        r.git(&["add", "-A"]);
        r.git(&["commit", "-q", "-m", "two"]);
        let head = r.head();
        let s = diff_stat(&Git::default(), &r.repo, &base, &head).unwrap();
        assert_eq!((s.files_changed, s.insertions, s.deletions), (2, 80_001, 0));
        let full = r.git(&["diff", "--no-color", &base, &head]);
        assert_eq!(s.diff_bytes, full.len() as u64);
        assert!(s.diff_bytes > 1024 * 1024);
        let none = diff_stat(&Git::default(), &r.repo, &head, &head).unwrap();
        assert_eq!(none, DiffStat::default());
    }
}
