//! etcd's data-dir layout, and the lock that keeps two processes off one data dir.
//!
//! ```text
//! <data-dir>/member/         (mode 0700)
//! <data-dir>/member/wal/     the raft WAL (or --wal-dir)
//! <data-dir>/member/snap/db  the backend
//! <data-dir>/member/LOCK     held exclusively while a server runs
//! ```

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::start::StartError;

/// A member's data dir, laid out as etcd lays it out.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
    wal: PathBuf,
}

/// Holds the data dir's `member/LOCK` until dropped.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

impl DataDir {
    /// The layout under `root`; `wal_dir` overrides `<root>/member/wal` (`--wal-dir`).
    pub fn new(root: impl Into<PathBuf>, wal_dir: Option<PathBuf>) -> DataDir {
        let root = root.into();
        let wal = wal_dir.unwrap_or_else(|| root.join("member").join("wal"));
        DataDir { root, wal }
    }

    /// The data dir itself (`--data-dir`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<data-dir>/member`.
    pub fn member(&self) -> PathBuf {
        self.root.join("member")
    }

    /// The WAL directory.
    pub fn wal(&self) -> &Path {
        &self.wal
    }

    /// `<data-dir>/member/snap`.
    pub fn snap(&self) -> PathBuf {
        self.member().join("snap")
    }

    /// The backend file, `<data-dir>/member/snap/db`.
    pub fn backend(&self) -> PathBuf {
        self.snap().join("db")
    }

    /// Where oxcd before 0.2 kept the membership (migrated into the backend on open).
    pub fn legacy_membership(&self) -> PathBuf {
        self.member().join("cluster.json")
    }

    /// Creates the directories (owner-only, as etcd) and proves they are writable.
    pub fn create(&self) -> Result<(), StartError> {
        for dir in [self.root.clone(), self.member(), self.snap()] {
            create_private_dir(&dir)?;
        }
        Ok(())
    }

    /// Takes the exclusive lock on `member/LOCK`; fails at once if another process holds it.
    pub fn lock(&self) -> Result<DataDirLock, StartError> {
        let path = self.member().join("LOCK");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| StartError::DataDir {
                path: path.clone(),
                source,
            })?;
        match file.try_lock() {
            Ok(()) => Ok(DataDirLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(StartError::DataDirLocked(self.member())),
            Err(std::fs::TryLockError::Error(source)) => Err(StartError::DataDir { path, source }),
        }
    }
}

fn create_private_dir(dir: &Path) -> Result<(), StartError> {
    let err = |source| StartError::DataDir {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    }
    // create_dir_all succeeds on an existing read-only dir: prove we can write.
    let probe = dir.join(".oxcd-write-probe");
    std::fs::write(&probe, b"").map_err(err)?;
    std::fs::remove_file(&probe).map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_lock() {
        let tmp = tempfile::tempdir().unwrap();
        let dd = DataDir::new(tmp.path().join("d.etcd"), None);
        assert_eq!(dd.backend(), tmp.path().join("d.etcd/member/snap/db"));
        assert_eq!(dd.wal(), tmp.path().join("d.etcd/member/wal"));
        dd.create().unwrap();
        let held = dd.lock().unwrap();
        assert!(matches!(dd.lock(), Err(StartError::DataDirLocked(_))));
        drop(held);
        dd.lock().unwrap();
        let own_wal = DataDir::new(tmp.path().join("x"), Some(tmp.path().join("w")));
        assert_eq!(own_wal.wal(), tmp.path().join("w"));
    }
}
