//! A directory of its own for a test's files, removed when the test ends, passed or
//! failed (its `Drop` runs while a failed assertion unwinds). Tests of one process run
//! in parallel threads, so each gets a fresh name: `ctgate-TAG-PID-N` in the temporary
//! directory.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// A test's directory (see the module doc).
pub(crate) struct TestDir(PathBuf);

impl TestDir {
    /// A new, empty directory for a test; `tag` says whose it is.
    pub(crate) fn new(tag: &str) -> TestDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("ctgate-{tag}-{}-{n}", std::process::id()));
        // A leftover of an earlier process with the same pid (killed before its drop).
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TestDir(dir)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `body` to the file `name` in the directory; returns its path.
    pub(crate) fn file(&self, name: &str, body: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, body).unwrap();
        p
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::TestDir;

    #[test]
    fn a_test_dir_and_its_files_are_gone_when_it_is_dropped() {
        let (a, b) = (TestDir::new("testdir"), TestDir::new("testdir"));
        assert_ne!(a.path(), b.path());
        let f = a.file("x.txt", "x");
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "x");
        let p = a.path().to_path_buf();
        drop(a);
        assert!(!p.exists() && !f.exists());
        assert!(b.path().is_dir());
    }
}
