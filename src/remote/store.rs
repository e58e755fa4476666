//! The remote store as the rest of the crate sees it: a small synchronous
//! object store ([`RemoteStore`]) with a deadline on every call, and the URL
//! that names one (`s3://BUCKET/PREFIX`, `redis://HOST:PORT/DB`).
//!
//! Every backend is synchronous and owns its sockets: a caller (a CLI run
//! today, a FUSE request thread later) waits at most the call's deadline
//! and never on a runtime it does not own. A frozen server fails the call
//! with [`RemoteError::Timeout`]; nothing retries behind the caller's back.

use std::time::Duration;

use thiserror::Error;

/// The default deadline of one call (connect plus request plus response).
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(2);

/// How much longer than its deadline a call moving a body of `len` bytes
/// may take: at least 8 MiB/s, so a large value is not cut off by the
/// deadline meant for a small request.
pub fn deadline_for(deadline: Duration, len: u64) -> Duration {
    deadline + Duration::from_secs_f64(len as f64 / (8.0 * 1024.0 * 1024.0))
}

/// What went wrong with a call, each message naming the store and the
/// object. Every variant but [`RemoteError::Config`] is a failure of the
/// store, not of the object: a caller stops talking to that store.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// The call did not finish within its deadline (a frozen or overloaded
    /// server, a black-holed route).
    #[error("{store}: {op} {name}: no answer within {after:?} (timed out)")]
    Timeout { store: String, op: &'static str, name: String, after: Duration },
    /// No connection (refused, reset, unreachable, DNS).
    #[error("{store}: {op} {name}: cannot reach the server: {reason}")]
    Unreachable { store: String, op: &'static str, name: String, reason: String },
    /// The server refused the credentials or the operation.
    #[error("{store}: {op} {name}: access denied ({reason})")]
    Denied { store: String, op: &'static str, name: String, reason: String },
    /// Any other answer the client cannot use (an unexpected status, a
    /// malformed listing, a Redis error reply).
    #[error("{store}: {op} {name}: {reason}")]
    Protocol { store: String, op: &'static str, name: String, reason: String },
    /// An object larger than the caller allowed (a record or value that
    /// does not match what names it).
    #[error("{store}: {op} {name}: larger than the {limit} bytes expected")]
    TooLarge { store: String, op: &'static str, name: String, limit: u64 },
    /// A bad URL, option or credential setting, found before any call.
    #[error("{0}")]
    Config(String),
}

/// A flat namespace of immutable objects, as S3 and Redis both provide.
///
/// Names are `/`-separated paths of printable ASCII (the layout's, see
/// docs/REMOTE.md); an implementation maps them under its own prefix.
/// Every call honours the store's deadline.
pub trait RemoteStore: Send + Sync {
    /// The store's URL, for messages (no credentials in it).
    fn url(&self) -> &str;

    /// The object's bytes, `None` when absent. An object longer than
    /// `max_len` is [`RemoteError::TooLarge`] (its bytes are not read); the
    /// deadline grows with `max_len` ([`deadline_for`]).
    fn get(&self, name: &str, max_len: u64) -> Result<Option<Vec<u8>>, RemoteError>;

    /// Whether the object exists.
    fn exists(&self, name: &str) -> Result<bool, RemoteError>;

    /// Creates the object unless it exists: `true` when this call created
    /// it, `false` when it was there (its bytes untouched; the first writer
    /// wins). Atomic where the store has a conditional create (S3
    /// `If-None-Match: *`, Redis `SET NX`); on an S3 store that ignores the
    /// condition, a check before and a read-back after (docs/REMOTE.md).
    fn put_if_absent(&self, name: &str, bytes: &[u8]) -> Result<bool, RemoteError>;

    /// Up to `limit` names that start with `prefix` and sort (bytewise)
    /// after `after`, in order: a listing that resumes from its last name.
    fn list_after(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<Vec<String>, RemoteError>;
}

/// How to reach a store beyond its URL.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Every call's deadline (connect and I/O alike).
    pub deadline: Duration,
    /// S3: the endpoint (`http://HOST:PORT`); else `AWS_ENDPOINT_URL`, else
    /// AWS's regional endpoint. A custom endpoint is addressed path-style.
    pub endpoint: Option<String>,
    /// S3: the region; else `AWS_REGION`, `AWS_DEFAULT_REGION`, `us-east-1`.
    pub region: Option<String>,
    /// S3: access key id and secret; else `AWS_ACCESS_KEY_ID` and
    /// `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`), else unsigned.
    pub credentials: Option<(String, String)>,
}

impl Default for StoreOptions {
    fn default() -> StoreOptions {
        StoreOptions { deadline: DEFAULT_DEADLINE, endpoint: None, region: None, credentials: None }
    }
}

/// Opens the store a URL names. No call is made yet: a wrong endpoint or
/// credential shows at the first call.
pub fn open(url: &str, options: &StoreOptions) -> Result<Box<dyn RemoteStore>, RemoteError> {
    if let Some(rest) = url.strip_prefix("s3://") {
        Ok(Box::new(super::s3::S3Store::open(url, rest, options)?))
    } else if url.starts_with("redis://") {
        Ok(Box::new(super::redis::RedisStore::open(url, options)?))
    } else {
        Err(RemoteError::Config(format!("remote URL {url:?}: expected s3://BUCKET/PREFIX or redis://HOST:PORT/DB")))
    }
}

/// Whether a name is one the layout may use: non-empty `/`-separated parts
/// of ASCII letters, digits and `-_.`, none `.` or `..`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.split('/').all(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        })
}

/// Eight random bytes as hex (probe names).
pub(crate) fn random_hex() -> String {
    let mut buf = [0u8; 8];
    // SAFETY: getrandom writes at most `buf.len()` bytes into the buffer we own.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n != buf.len() as isize {
        // Not cryptographic, only unique: the time and the pid will do.
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        buf = ((t as u64) ^ u64::from(std::process::id()).rotate_left(40)).to_be_bytes();
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(valid_name("ns/records/ab12"));
        assert!(valid_name("a.b-c_d"));
        for bad in ["", "/a", "a/", "a//b", "a/../b", "a/./b", "a b", "ä", "a\nb"] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn bad_urls_are_refused_clearly() {
        let err = open("http://x", &StoreOptions::default()).err().unwrap();
        assert!(err.to_string().contains("expected s3://BUCKET/PREFIX or redis://HOST:PORT/DB"), "{err}");
    }

    #[test]
    fn big_bodies_get_more_time() {
        assert_eq!(deadline_for(DEFAULT_DEADLINE, 0), DEFAULT_DEADLINE);
        assert_eq!(deadline_for(DEFAULT_DEADLINE, 80 * 1024 * 1024), DEFAULT_DEADLINE + Duration::from_secs(10));
    }
}
