//! Temporary directories removed on drop, and numbers unique across concurrently running test processes.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// A number unique across this test process and others running at the same time (the pid times 1000, plus a
/// counter of this process).
pub fn nonce() -> u64 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    u64::from(std::process::id()) * 1000 + u64::from(NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A fresh, empty directory under the system temp dir (so inside the agent's default `fill_paths`), removed with
/// everything in it when dropped.
#[derive(Debug)]
pub struct TempDir {
    /// The directory; also [`TempDir::path`].
    pub path: PathBuf,
}

impl TempDir {
    /// `$TMPDIR/chaos-TAG-NONCE`, emptied first if a previous process with the same pid left it behind.
    pub fn new(tag: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("chaos-{tag}-{}", nonce()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create the test directory {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_temp_dir_is_fresh_unique_and_removed_on_drop() {
        let (a, b) = (TempDir::new("dir-test"), TempDir::new("dir-test"));
        assert_ne!(a.path(), b.path());
        std::fs::write(a.path().join("file"), b"x").unwrap();
        let kept = a.path().to_path_buf();
        drop(a);
        assert!(!kept.exists(), "{} is still there", kept.display());
        assert!(b.path().is_dir());
    }
}
