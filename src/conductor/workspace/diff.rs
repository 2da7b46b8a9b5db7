//! A task's diff against its base, for review: the committed result (`base..head`, run in
//! the repo, so it still answers after the worktree was removed), or, before there is a
//! result (running, failed), the worktree's working tree against the base with its
//! untracked files named. The patch is capped; the stat is always whole.
//!
//! External diff drivers and textconv filters are off: they run programs named in the
//! repo's config, and a review must only read.

use std::path::Path;

use super::git::{Git, GitError};

/// What `GET /v1/tasks/:id/diff` shows unless `max_bytes` says otherwise.
pub const DEFAULT_MAX_BYTES: usize = 512 * 1024;
/// The most it shows: the git runner keeps no more of a command's output.
pub const MAX_BYTES: usize = crate::host_ops::group::OUTPUT_CAP;
/// Files listed by name in the stat (and untracked files); the counts cover all.
const MAX_FILES: usize = 1000;

/// One file of the stat; `None` counts for a binary file.
#[derive(Debug, Clone, PartialEq)]
pub struct FileStat {
    pub path: String,
    pub insertions: Option<u64>,
    pub deletions: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Stat {
    pub files_changed: u64,
    pub insertions: u64,
    pub deletions: u64,
    /// The first [`MAX_FILES`] files.
    pub files: Vec<FileStat>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Diff {
    /// The unified diff, cut at the cap on a character boundary.
    pub patch: String,
    pub truncated: bool,
    pub stat: Stat,
    /// The working tree of a task without a result, not a commit.
    pub uncommitted: bool,
    /// Untracked files of that working tree (not in `patch`), the first [`MAX_FILES`].
    pub untracked: Vec<String>,
}

const SAFE: &[&str] = &["--no-color", "--no-ext-diff", "--no-textconv"];

/// `git diff base head` in `repo`.
pub fn committed(
    git: &Git,
    repo: &Path,
    base: &str,
    head: &str,
    max_bytes: usize,
) -> Result<Diff, GitError> {
    let range = [base, head, "--"];
    Diff {
        patch: String::new(),
        truncated: false,
        stat: stat(git, repo, &range)?,
        uncommitted: false,
        untracked: Vec::new(),
    }
    .with_patch(git, repo, &range, max_bytes)
}

/// `git diff base` in the worktree: its files (committed on the branch or not) against the
/// base, with the untracked ones listed by name.
pub fn working_tree(
    git: &Git,
    worktree: &Path,
    base: &str,
    max_bytes: usize,
) -> Result<Diff, GitError> {
    let range = [base, "--"];
    let untracked = git.run(
        worktree,
        &["ls-files", "-z", "--others", "--exclude-standard"],
    )?;
    Diff {
        patch: String::new(),
        truncated: false,
        stat: stat(git, worktree, &range)?,
        uncommitted: true,
        untracked: untracked
            .stdout
            .split('\0')
            .filter(|p| !p.is_empty())
            .take(MAX_FILES)
            .map(str::to_string)
            .collect(),
    }
    .with_patch(git, worktree, &range, max_bytes)
}

impl Diff {
    fn with_patch(
        mut self,
        git: &Git,
        dir: &Path,
        range: &[&str],
        max_bytes: usize,
    ) -> Result<Diff, GitError> {
        let args: Vec<&str> = ["diff"].iter().chain(SAFE).chain(range).copied().collect();
        let out = git.run(dir, &args)?;
        let (patch, cut) = cap(out.stdout, max_bytes.min(MAX_BYTES));
        self.patch = patch;
        self.truncated = cut || out.truncated;
        Ok(self)
    }
}

fn stat(git: &Git, dir: &Path, range: &[&str]) -> Result<Stat, GitError> {
    let args: Vec<&str> = ["diff", "--numstat", "-z"]
        .iter()
        .chain(SAFE)
        .chain(range)
        .copied()
        .collect();
    Ok(parse_numstat(&git.run(dir, &args)?.stdout))
}

/// `--numstat -z`: `ins\tdel\tpath\0`, or for a rename `ins\tdel\t\0old\0new\0`; `-`
/// counts for a binary file.
fn parse_numstat(out: &str) -> Stat {
    let mut s = Stat::default();
    let mut tokens = out.split('\0');
    while let Some(t) = tokens.next() {
        let mut cols = t.splitn(3, '\t');
        let (Some(ins), Some(del), Some(path)) = (cols.next(), cols.next(), cols.next()) else {
            continue;
        };
        let path = if path.is_empty() {
            let old = tokens.next().unwrap_or_default();
            let new = tokens.next().unwrap_or_default();
            format!("{old} => {new}")
        } else {
            path.to_string()
        };
        let (ins, del) = (ins.parse::<u64>().ok(), del.parse::<u64>().ok());
        s.files_changed += 1;
        s.insertions += ins.unwrap_or(0);
        s.deletions += del.unwrap_or(0);
        if s.files.len() < MAX_FILES {
            s.files.push(FileStat {
                path,
                insertions: ins,
                deletions: del,
            });
        }
    }
    s
}

/// `s` cut to at most `max` bytes on a character boundary; whether it was cut.
fn cap(mut s: String, max: usize) -> (String, bool) {
    if s.len() <= max {
        return (s, false);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    (s, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace::test_repo::{git_in, TestRepo};

    #[test]
    fn numstat_counts_renames_and_binaries() {
        let s = parse_numstat("3\t1\ta.txt\0-\t-\timg.png\x000\t0\t\0old.rs\0new.rs\0");
        assert_eq!((s.files_changed, s.insertions, s.deletions), (3, 3, 1));
        assert_eq!(s.files[1].insertions, None);
        assert_eq!(s.files[2].path, "old.rs => new.rs");
        assert_eq!(parse_numstat(""), Stat::default());
    }

    #[test]
    fn a_committed_diff_is_capped_with_truncated_and_a_whole_stat() {
        let r = TestRepo::new("diff");
        let git = Git::default();
        let base = r.head();
        let wt = r.root.join("wt");
        r.git(&[
            "worktree",
            "add",
            "-q",
            "-b",
            "baa/t1",
            &wt.display().to_string(),
        ]);
        std::fs::write(wt.join("big.txt"), "line of text\n".repeat(2000)).unwrap();
        std::fs::write(wt.join("README.md"), "hello\nworld\n").unwrap();
        git_in(&wt, &["add", "-A"]);
        git_in(&wt, &["commit", "-q", "-m", "task"]);
        let head = git_in(&wt, &["rev-parse", "HEAD"]).trim().to_string();

        let d = committed(&git, &r.repo, &base, &head, DEFAULT_MAX_BYTES).unwrap();
        assert!(!d.truncated && !d.uncommitted);
        assert!(d.patch.contains("+world") && d.patch.contains("b/big.txt"));
        assert_eq!((d.stat.files_changed, d.stat.insertions), (2, 2001));
        let small = committed(&git, &r.repo, &base, &head, 100).unwrap();
        assert!(small.truncated && small.patch.len() <= 100, "{small:?}");
        assert_eq!(
            small.stat, d.stat,
            "the stat is whole when the patch is cut"
        );
        // Still answered from the repo after the worktree is gone.
        git_in(
            &r.repo,
            &["worktree", "remove", "--force", &wt.display().to_string()],
        );
        assert_eq!(
            committed(&git, &r.repo, &base, &head, 1 << 30)
                .unwrap()
                .patch,
            d.patch
        );
    }

    #[test]
    fn a_working_tree_diff_says_uncommitted_and_names_untracked_files() {
        let r = TestRepo::new("diff-wt");
        let git = Git::default();
        let base = r.head();
        let wt = r.root.join("wt");
        r.git(&[
            "worktree",
            "add",
            "-q",
            "-b",
            "baa/t2",
            &wt.display().to_string(),
        ]);
        std::fs::write(wt.join("README.md"), "changed\n").unwrap();
        std::fs::write(wt.join("new.txt"), "untracked\n").unwrap();
        let d = working_tree(&git, &wt, &base, DEFAULT_MAX_BYTES).unwrap();
        assert!(d.uncommitted);
        assert!(d.patch.contains("+changed"), "{}", d.patch);
        assert_eq!(d.untracked, vec!["new.txt".to_string()]);
        assert_eq!(
            (d.stat.files_changed, d.stat.insertions, d.stat.deletions),
            (1, 1, 1)
        );
    }
}
