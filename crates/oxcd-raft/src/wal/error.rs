//! WAL error type.

use std::path::{Path, PathBuf};

/// Errors returned by the WAL.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// An I/O operation failed. After a failed write or fsync the WAL refuses
    /// further writes (the on-disk state is unknown; retrying an fsync can
    /// silently lose data).
    #[error("WAL I/O error on {}: {source}", path.display())]
    Io {
        /// File or directory the operation was on.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Damage that is not a torn tail: acknowledged data may be lost, so we
    /// refuse to start instead of guessing.
    #[error(
        "WAL corrupt: {} at offset {offset}: {reason}; refusing to start. \
         Restore the member's data dir from a backup or remove this member and re-add it to the cluster",
        file.display()
    )]
    Corrupt {
        /// Segment file holding the damage.
        file: PathBuf,
        /// Byte offset of the first bad record within `file`.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A record payload could not be decoded even though its crc was valid
    /// (written by an incompatible version?).
    #[error("WAL record undecodable in {} at offset {offset}: {reason}", file.display())]
    Decode {
        /// Segment file.
        file: PathBuf,
        /// Byte offset of the record.
        offset: u64,
        /// Decoder message.
        reason: String,
    },
    /// A previous write or fsync failed; the WAL no longer accepts writes.
    #[error("WAL is failed after an earlier I/O error; restart the member")]
    Poisoned,
    /// Protobuf encoding of a record failed.
    #[error("WAL record encoding failed: {0}")]
    Encode(String),
    /// A single record would exceed the maximum record size.
    #[error("WAL record of {0} bytes exceeds the maximum record size")]
    RecordTooLarge(usize),
}

impl WalError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn corrupt(file: &Path, offset: u64, reason: impl Into<String>) -> Self {
        Self::Corrupt {
            file: file.to_path_buf(),
            offset,
            reason: reason.into(),
        }
    }
}
