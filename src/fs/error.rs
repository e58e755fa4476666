//! File-system errors. Each names the path or inode it concerns, and its
//! errno comes from one exhaustive match, where every mapping from a cache
//! error is decided once (and repeated in docs/SEMANTICS.md).

use std::io;

use thiserror::Error;

use crate::cache;

#[derive(Debug, Error)]
pub enum FsError {
    #[error("{0}: no such entry")]
    NotFound(String),
    #[error("{0}: not empty")]
    NotEmpty(String),
    /// An inode that a newer version of its key replaced (kept for its
    /// readers); the kernel looks the name up again on ESTALE.
    #[error("{0}: replaced by a newer version")]
    Stale(String),
    /// Read without OPEN (a read-only mount) for the first time after its
    /// value changed: the kernel has the old version's size, whose bytes
    /// are gone (filesystem/unopened.rs).
    #[error("{0}: changed since the kernel got its size; open it again")]
    Changed(String),
    #[error("{0}: name longer than 255 bytes")]
    NameTooLong(String),
    #[error("{name:?}: {reason}")]
    InvalidName { name: String, reason: String },
    #[error("{0}: the mount is read-only")]
    ReadOnly(String),
    #[error("{0}: not permitted")]
    NotPermitted(String),
    #[error("{0}: read-only file")]
    AccessDenied(String),
    #[error("{0}: already exists")]
    Exists(String),
    #[error("{0}: is a directory")]
    IsDirectory(String),
    #[error("{0}: not a directory")]
    NotDirectory(String),
    #[error("{0}: no such attribute")]
    NoAttribute(String),
    #[error("{0}: attribute not supported")]
    AttributeNotSupported(String),
    #[error("{what}: invalid value: {reason}")]
    InvalidValue { what: String, reason: String },
    #[error("attribute value larger than the buffer")]
    Range,
    #[error("no open file handle {0}")]
    BadHandle(u64),
    #[error("{0}: rename across directories")]
    CrossDevice(String),
    #[error("{what}: {source}")]
    Cache { what: String, source: cache::Error },
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    /// An engine handle for the request could not be opened.
    #[error("{what}: {source}")]
    Open { what: String, source: cache::OpenError },
}

impl FsError {
    pub fn cache(what: impl Into<String>, source: cache::Error) -> FsError {
        FsError::Cache { what: what.into(), source }
    }

    pub fn io(what: impl Into<String>, source: io::Error) -> FsError {
        FsError::Io { what: what.into(), source }
    }

    pub fn open(what: impl Into<String>, source: cache::OpenError) -> FsError {
        FsError::Open { what: what.into(), source }
    }

    /// The same error, its subject followed by `context` (what the failure
    /// means), for the errors that name their subject in `what`.
    pub fn in_context(self, context: &str) -> FsError {
        match self {
            FsError::Cache { what, source } => FsError::Cache { what: format!("{what}: {context}"), source },
            FsError::Io { what, source } => FsError::Io { what: format!("{what}: {context}"), source },
            FsError::Open { what, source } => FsError::Open { what: format!("{what}: {context}"), source },
            other => other,
        }
    }

    /// The errno the kernel passes back to the caller.
    pub fn errno(&self) -> i32 {
        match self {
            FsError::NotFound(_) => libc::ENOENT,
            FsError::NotEmpty(_) => libc::ENOTEMPTY,
            FsError::Stale(_) => libc::ESTALE,
            FsError::Changed(_) => libc::EIO,
            FsError::NameTooLong(_) => libc::ENAMETOOLONG,
            FsError::InvalidName { .. } => libc::EINVAL,
            FsError::ReadOnly(_) => libc::EROFS,
            FsError::NotPermitted(_) => libc::EPERM,
            FsError::AccessDenied(_) => libc::EACCES,
            FsError::Exists(_) => libc::EEXIST,
            FsError::IsDirectory(_) => libc::EISDIR,
            FsError::NotDirectory(_) => libc::ENOTDIR,
            FsError::NoAttribute(_) => libc::ENODATA,
            FsError::AttributeNotSupported(_) => libc::ENOTSUP,
            FsError::InvalidValue { .. } => libc::EINVAL,
            FsError::Range => libc::ERANGE,
            FsError::BadHandle(_) => libc::EBADF,
            FsError::CrossDevice(_) => libc::EXDEV,
            FsError::Io { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
            FsError::Open { source, .. } => match source {
                cache::OpenError::Timeout { .. } => libc::EBUSY,
                _ => libc::EIO,
            },
            FsError::Cache { source, .. } => match source {
                // Another process holds the write lock past the timeout.
                cache::Error::Timeout { .. } => libc::EBUSY,
                // A crafted row pointing outside the cache: refused.
                cache::Error::UnsafeFilename { .. } => libc::EACCES,
                cache::Error::CorruptRow { .. } | cache::Error::Aborted => libc::EIO,
                cache::Error::NotANumber { .. } | cache::Error::BadSetting { .. } => libc::EINVAL,
                cache::Error::Overflow { .. } => libc::EOVERFLOW,
                cache::Error::KeyNotFound { .. } => libc::ENOENT,
                cache::Error::ReadOnly => libc::EROFS,
                // A value file the daemon may not open (made by another
                // user with a mode that shuts it out): EIO, its path in the
                // log; EACCES would blame the caller, whom the file's mode
                // in the mount lets in.
                cache::Error::Io { source, .. }
                    if matches!(source.raw_os_error(), Some(libc::EACCES) | Some(libc::EPERM)) =>
                {
                    libc::EIO
                }
                cache::Error::Io { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
                // SQLITE_FULL is the disk filling up; anything else is EIO.
                cache::Error::Sqlite(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::DiskFull =>
                {
                    libc::ENOSPC
                }
                cache::Error::Sqlite(_) => libc::EIO,
                cache::Error::ShardNotLocked { .. } => libc::EAGAIN,
                cache::Error::Shard(source) => match **source {
                    cache::OpenError::Timeout { .. } => libc::EBUSY,
                    _ => libc::EIO,
                },
            },
        }
    }

    /// The level a failure is logged at: expected conditions (a miss, a
    /// refused name) at debug, what the user should hear of (a timeout, a
    /// full disk, a value changed under a reader) at warn, and EIO that is
    /// no one's doing but the cache's or the daemon's (a corrupt row, an
    /// SQLite failure, an I/O error) at error.
    pub fn level(&self) -> log::Level {
        if self.is_expected() {
            log::Level::Debug
        } else if self.errno() == libc::EIO && !matches!(self, FsError::Changed(_)) {
            log::Level::Error
        } else {
            log::Level::Warn
        }
    }

    /// Expected conditions (a miss, a refused name) log at debug; the rest
    /// are worth a warning.
    pub fn is_expected(&self) -> bool {
        matches!(
            self,
            FsError::NotFound(_)
                | FsError::NoAttribute(_)
                | FsError::Range
                | FsError::Exists(_)
                | FsError::NameTooLong(_)
                | FsError::InvalidName { .. }
                | FsError::ReadOnly(_)
                | FsError::NotPermitted(_)
                | FsError::AccessDenied(_)
                | FsError::AttributeNotSupported(_)
                // The kernel looks the name up again: part of the protocol.
                | FsError::Stale(_)
        )
    }
}

/// An errno's symbolic name (`ENOENT`), as the log and `stats` show it;
/// `E<n>` for one not listed.
pub fn errno_name(errno: i32) -> String {
    const NAMES: &[(i32, &str)] = &[
        (libc::EPERM, "EPERM"),
        (libc::ENOENT, "ENOENT"),
        (libc::EINTR, "EINTR"),
        (libc::EIO, "EIO"),
        (libc::E2BIG, "E2BIG"),
        (libc::EBADF, "EBADF"),
        (libc::EAGAIN, "EAGAIN"),
        (libc::ENOMEM, "ENOMEM"),
        (libc::EACCES, "EACCES"),
        (libc::EBUSY, "EBUSY"),
        (libc::EEXIST, "EEXIST"),
        (libc::EXDEV, "EXDEV"),
        (libc::ENOTDIR, "ENOTDIR"),
        (libc::EISDIR, "EISDIR"),
        (libc::EINVAL, "EINVAL"),
        (libc::ENFILE, "ENFILE"),
        (libc::EMFILE, "EMFILE"),
        (libc::ENOTTY, "ENOTTY"),
        (libc::EFBIG, "EFBIG"),
        (libc::ENOSPC, "ENOSPC"),
        (libc::EROFS, "EROFS"),
        (libc::EMLINK, "EMLINK"),
        (libc::ERANGE, "ERANGE"),
        (libc::ENAMETOOLONG, "ENAMETOOLONG"),
        (libc::ENOSYS, "ENOSYS"),
        (libc::ENOTEMPTY, "ENOTEMPTY"),
        (libc::ELOOP, "ELOOP"),
        (libc::ENODATA, "ENODATA"),
        (libc::EOVERFLOW, "EOVERFLOW"),
        (libc::EOPNOTSUPP, "EOPNOTSUPP"),
        (libc::ETIMEDOUT, "ETIMEDOUT"),
        (libc::ESTALE, "ESTALE"),
        (libc::EDQUOT, "EDQUOT"),
        (libc::ECANCELED, "ECANCELED"),
    ];
    NAMES.iter().find(|(n, _)| *n == errno).map_or_else(|| format!("E{errno}"), |(_, name)| name.to_string())
}
