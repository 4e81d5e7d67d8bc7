//! The transport's temporary files in the snapshot directory, named in one place.

use std::path::{Path, PathBuf};

/// Suffix of a backend exported for sending.
const SENDING: &str = ".snap.db.sending";
/// Suffix of a snapshot being received.
const RECEIVING: &str = ".snap.db.receiving";

/// The file a snapshot at `index` for member `to` is exported to.
pub(crate) fn sending(dir: &Path, index: u64, to: u64) -> PathBuf {
    dir.join(format!("{index:016x}-to-{to:x}{SENDING}"))
}

/// The file a snapshot at `index` from member `from` is received into.
pub(crate) fn receiving(dir: &Path, index: u64, from: u64) -> PathBuf {
    dir.join(format!("{index:016x}-from-{from:x}{RECEIVING}"))
}

/// Removes the transport's temporary files left in `dir` by a crash (snapshots being
/// exported, sent or received; a received file the handler has taken over is renamed
/// and therefore kept). Call it at start-up, before the transport runs. Returns how many
/// were removed; a missing directory is no error.
pub fn remove_partial_snapshots(dir: &Path) -> std::io::Result<usize> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    for entry in entries {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.ends_with(SENDING) || name.ends_with(RECEIVING) {
            tracing::info!(path = %path.display(), "removing a partial snapshot file");
            std::fs::remove_file(&path)?;
            removed += 1;
        }
    }
    if removed > 0 {
        oxcd_fs::sync_dir(dir)?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_partial_snapshot_files_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let keep = dir.path().join("000000000000000a-from-2.snap.db");
        for p in [
            sending(dir.path(), 10, 2),
            receiving(dir.path(), 10, 2),
            keep.clone(),
        ] {
            std::fs::write(p, b"x").unwrap();
        }
        assert_eq!(remove_partial_snapshots(dir.path()).unwrap(), 2);
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(left, vec![keep]);
        assert_eq!(
            remove_partial_snapshots(&dir.path().join("none")).unwrap(),
            0
        );
    }
}
