//! Where a task's worktree lives and what its branch is called: one directory per repo
//! under `BAA_WORKTREES_DIR` (`<repo name>-<short hash of its path>`, so two checkouts
//! named `app` never share one), one worktree per task in it, on `<prefix><task_id>`.

use std::path::{Path, PathBuf};

/// The task's branch.
pub fn branch(prefix: &str, task_id: &str) -> String {
    format!("{prefix}{task_id}")
}

/// `<worktrees>/<name>-<hash>`: the directory of one repo's task worktrees.
pub fn repo_dir(worktrees_dir: &Path, repo: &Path) -> PathBuf {
    let name: String = repo
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "repo".into())
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(60)
        .collect();
    let name = name.trim_start_matches('.');
    let name = if name.is_empty() { "repo" } else { name };
    worktrees_dir.join(format!("{name}-{}", short_hash(repo)))
}

/// The task's worktree directory.
pub fn path(worktrees_dir: &Path, repo: &Path, task_id: &str) -> PathBuf {
    repo_dir(worktrees_dir, repo).join(task_id)
}

/// 10 hex digits of FNV-1a over the path's bytes: stable across builds and platforms
/// (std's hasher is not), and enough to tell a node's checkouts apart.
fn short_hash(p: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in p.as_os_str().as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{:010x}", h >> 24)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_repos_of_one_name_get_two_dirs_and_the_hash_is_stable() {
        let w = Path::new("/r/worktrees");
        let a = repo_dir(w, Path::new("/src/app"));
        let b = repo_dir(w, Path::new("/other/app"));
        assert_ne!(a, b);
        assert!(a.starts_with(w) && a.file_name().unwrap().to_str().unwrap().starts_with("app-"));
        assert_eq!(a, repo_dir(w, Path::new("/src/app")));
        assert_eq!(short_hash(Path::new("/src/app")), "36118851a1");
        assert_eq!(
            path(w, Path::new("/src/my repo!"), "task_1")
                .parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()[..8],
            *"my_repo_"
        );
        assert_eq!(branch("baa/", "task_1"), "baa/task_1");
    }
}
