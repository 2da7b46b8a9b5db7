//! How many task worktrees there are and how much disk they use: one bounded walk of the
//! worktrees dir, made by the janitor on its pass (never on a request, since a few
//! worktrees of a large repo are hundreds of thousands of entries).
//!
//! The walk never follows a symlink (a task may have made one to `/`), counts what `du`
//! would (allocated blocks, not apparent sizes) and stops after `max_entries`, saying the
//! figures are then `approximate`.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Enough for a few dozen worktrees of a 10,000-file repo; a walk this long takes about a
/// second on a laptop disk.
pub const MAX_ENTRIES: u64 = 2_000_000;

/// What one walk found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    /// Task worktrees: directories at `<worktrees>/<repo>-<hash>/<task_id>`.
    pub count: u64,
    /// Disk use of everything under the worktrees dir, in bytes.
    pub bytes: u64,
    /// Entries looked at.
    pub entries: u64,
    /// The walk stopped at its bound: `count` and `bytes` are at least this much.
    pub approximate: bool,
    /// How long the walk took.
    pub took_ms: u64,
}

/// Walks `dir`; `None` when `stopping` said to give up midway (the conductor is stopping).
pub fn measure(dir: &Path, max_entries: u64, stopping: &dyn Fn() -> bool) -> Option<Usage> {
    let started = Instant::now();
    let mut u = Usage::default();
    // (directory, depth below `dir`): an explicit stack, so a deep tree cannot overflow ours.
    let mut stack: Vec<(PathBuf, u32)> = vec![(dir.to_path_buf(), 0)];
    'walk: while let Some((d, depth)) = stack.pop() {
        // A directory removed (or unreadable) since it was listed counts as nothing.
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            if u.entries >= max_entries {
                u.approximate = true;
                break 'walk;
            }
            u.entries += 1;
            if u.entries % 1024 == 0 && stopping() {
                return None;
            }
            // `DirEntry::metadata` does not follow a symlink: a link is counted as itself.
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            u.bytes += meta.blocks() * 512;
            if meta.file_type().is_dir() {
                if depth == 1 {
                    u.count += 1;
                }
                stack.push((entry.path(), depth + 1));
            }
        }
    }
    u.took_ms = started.elapsed().as_millis() as u64;
    Some(u)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(baa::common::ids::new_id(&format!("usage-{tag}")));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn counts_task_worktrees_and_their_disk_use_without_following_links() {
        let root = scratch("count");
        let w = root.join("worktrees");
        for (repo, task) in [("app-1", "t1"), ("app-1", "t2"), ("lib-2", "t3")] {
            let t = w.join(repo).join(task);
            std::fs::create_dir_all(t.join("src")).unwrap();
            std::fs::write(t.join("src/main.rs"), vec![b'x'; 10_000]).unwrap();
        }
        // A link to a big tree outside: counted as a link, never walked.
        let outside = root.join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("big"), vec![b'y'; 1_000_000]).unwrap();
        std::os::unix::fs::symlink(&outside, w.join("app-1/t1/link")).unwrap();
        let u = measure(&w, MAX_ENTRIES, &|| false).unwrap();
        assert_eq!(u.count, 3, "{u:?}");
        assert!(!u.approximate);
        // Three files of 10 kB take at least 30 kB on any filesystem; the 1 MB file
        // behind the link is not counted.
        assert!(u.bytes >= 30_000 && u.bytes < 1_000_000, "{u:?}");
        // repo dirs 2 + task dirs 3 + src 3 + files 3 + link 1
        assert_eq!(u.entries, 12, "{u:?}");

        let capped = measure(&w, 4, &|| false).unwrap();
        assert!(capped.approximate && capped.entries == 4, "{capped:?}");

        let none = measure(&root.join("missing"), MAX_ENTRIES, &|| false).unwrap();
        assert_eq!((none.count, none.bytes, none.entries), (0, 0, 0));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_stop_ends_a_long_walk() {
        let root = scratch("stop");
        let w = root.join("worktrees/app-1/t1");
        std::fs::create_dir_all(&w).unwrap();
        for i in 0..1100 {
            std::fs::write(w.join(format!("f{i}")), "x").unwrap();
        }
        assert_eq!(measure(&root, MAX_ENTRIES, &|| true), None);
        assert_eq!(
            measure(&root, MAX_ENTRIES, &|| false).unwrap().entries,
            1103
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}
