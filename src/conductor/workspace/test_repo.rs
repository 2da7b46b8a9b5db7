//! A real git repository in a temp dir for the module's unit tests: `root/repo` on
//! branch `main` with one commit.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct TestRepo {
    /// The temp dir (removed on drop).
    pub root: PathBuf,
    /// The repository (its main work tree).
    pub repo: PathBuf,
}

impl TestRepo {
    pub fn new(tag: &str) -> TestRepo {
        let root = std::env::temp_dir().join(baa::common::ids::new_id(&format!("ws-{tag}")));
        let repo = root.join("repo");
        std::fs::create_dir_all(&repo).unwrap();
        let r = TestRepo { root, repo };
        r.git(&["init", "-q", "-b", "main"]);
        std::fs::write(r.repo.join("README.md"), "hello\n").unwrap();
        r.git(&["add", "README.md"]);
        r.git(&["commit", "-q", "-m", "first"]);
        r
    }

    /// Runs git in the repo as a person would (an identity set), panicking on failure.
    #[track_caller]
    pub fn git(&self, args: &[&str]) -> String {
        git_in(&self.repo, args)
    }

    pub fn head(&self) -> String {
        self.git(&["rev-parse", "HEAD"]).trim().to_string()
    }
}

#[track_caller]
pub fn git_in(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "op")
        .env("GIT_AUTHOR_EMAIL", "op@example.com")
        .env("GIT_COMMITTER_NAME", "op")
        .env("GIT_COMMITTER_EMAIL", "op@example.com")
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Drop for TestRepo {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
