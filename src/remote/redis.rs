//! A Redis store (`redis://[USER:PASSWORD@]HOST:PORT/DB`) over the `redis`
//! crate's synchronous connections: a few idle connections kept while they
//! work (a call takes one, or makes one, and gives it back), so that
//! concurrent callers (the mount's request threads) never queue behind each
//! other's calls; a connection that failed is dropped. The deadline is each
//! call's connect, read and write timeout, so a frozen server fails a call
//! instead of hanging it.
//!
//! Objects are Redis strings named as the layout names them. A create is
//! `SET NX`; so that names can be listed in order without `SCAN`, each
//! create also adds the name to a sorted set named after its directory
//! (`ns/log/` for `ns/log/NAME`; no object name ends in `/`), in one Lua
//! script, so a name is listed exactly when its object exists. A listing is
//! `ZRANGEBYLEX`.

use std::sync::Mutex;
use std::time::Duration;

use super::store::{RemoteError, RemoteStore, StoreOptions, deadline_for};

/// Creates `KEYS[1]` unless it exists and indexes it in `KEYS[2]`.
const PUT_IF_ABSENT: &str = "if redis.call('SET', KEYS[1], ARGV[1], 'NX') then \
     redis.call('ZADD', KEYS[2], 0, KEYS[1]) return 1 end return 0";

/// Reads `KEYS[1]` unless it is longer than `ARGV[1]`, in one round trip
/// (one deadline): `{1, bytes}`, `{0, length}` when too long, `{2, ''}`
/// when absent (an empty object is present: a `None` value is empty).
const GET_AT_MOST: &str = "local n = redis.call('STRLEN', KEYS[1]) \
     if n > tonumber(ARGV[1]) then return {0, tostring(n)} end \
     if n == 0 and redis.call('EXISTS', KEYS[1]) == 0 then return {2, ''} end \
     return {1, redis.call('GET', KEYS[1])}";

/// Idle connections kept for the next calls.
const IDLE_CONNECTIONS: usize = 8;

pub struct RedisStore {
    /// The URL without its password, for messages.
    url: String,
    client: redis::Client,
    deadline: Duration,
    idle: Mutex<Vec<redis::Connection>>,
}

/// The sorted set that lists `name`: its directory, with the slash.
fn index_of(name: &str) -> &str {
    name.rfind('/').map_or("", |i| &name[..=i])
}

impl RedisStore {
    pub fn open(url: &str, options: &StoreOptions) -> Result<RedisStore, RemoteError> {
        use redis::IntoConnectionInfo as _;
        let bad = |e: redis::RedisError| RemoteError::Config(format!("remote URL: {e}"));
        let info = url.into_connection_info().map_err(bad)?;
        // No `CLIENT SETINFO` round trip at connect: it is one more wait
        // on a frozen server, outside the call's deadline.
        let settings = info.redis_settings().clone().set_skip_set_lib_name();
        let client = redis::Client::open(info.set_redis_settings(settings)).map_err(bad)?;
        let info = client.get_connection_info();
        let shown = format!("redis://{}/{}", info.addr(), info.redis_settings().db());
        Ok(RedisStore { url: shown, client, deadline: options.deadline, idle: Mutex::new(Vec::new()) })
    }

    fn fail(&self, op: &'static str, name: &str, e: redis::RedisError) -> RemoteError {
        let (store, name) = (self.url.clone(), name.to_string());
        if e.is_timeout() {
            RemoteError::Timeout { store, op, name, after: self.deadline }
        } else if e.is_connection_refusal() || e.is_io_error() || e.is_connection_dropped() {
            RemoteError::Unreachable { store, op, name, reason: e.to_string() }
        } else if matches!(e.kind(), redis::ErrorKind::AuthenticationFailed) {
            RemoteError::Denied { store, op, name, reason: e.to_string() }
        } else {
            RemoteError::Protocol { store, op, name, reason: e.to_string() }
        }
    }

    /// Runs `f` on an idle connection, or a new one; an error drops the
    /// connection (its state is unknown after a timeout), success keeps it.
    fn with<T>(
        &self,
        op: &'static str,
        name: &str,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, RemoteError> {
        self.within(self.deadline, op, name, f)
    }

    /// [`Self::with`] with a longer deadline (a call moving a large value).
    fn within<T>(
        &self,
        deadline: Duration,
        op: &'static str,
        name: &str,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, RemoteError> {
        let start = std::time::Instant::now();
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut conn = match idle {
            Some(c) => c,
            None => self.client.get_connection_with_timeout(self.deadline).map_err(|e| self.fail(op, name, e))?,
        };
        // What is left of the call's deadline after connecting bounds
        // each read and write of the command.
        let left = deadline.saturating_sub(start.elapsed()).max(Duration::from_millis(10));
        let timeouts = conn.set_read_timeout(Some(left)).and_then(|()| conn.set_write_timeout(Some(left)));
        let result = timeouts.and_then(|()| f(&mut conn));
        if result.is_ok() {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < IDLE_CONNECTIONS {
                idle.push(conn);
            }
        }
        result.map_err(|e| self.fail(op, name, e))
    }
}

impl RemoteStore for RedisStore {
    fn url(&self) -> &str {
        &self.url
    }

    fn get(&self, name: &str, max_len: u64) -> Result<Option<Vec<u8>>, RemoteError> {
        let (status, payload): (i64, Vec<u8>) =
            self.within(deadline_for(self.deadline, max_len), "GET", name, |c| {
                redis::cmd("EVAL").arg(GET_AT_MOST).arg(1).arg(name).arg(max_len).query(c)
            })?;
        match status {
            1 => Ok(Some(payload)),
            2 => Ok(None),
            _ => Err(RemoteError::TooLarge { store: self.url.clone(), op: "GET", name: name.into(), limit: max_len }),
        }
    }

    fn exists(&self, name: &str) -> Result<bool, RemoteError> {
        self.with("EXISTS", name, |c| redis::cmd("EXISTS").arg(name).query(c))
    }

    fn put_if_absent(&self, name: &str, bytes: &[u8]) -> Result<bool, RemoteError> {
        let deadline = deadline_for(self.deadline, bytes.len() as u64);
        let created: i64 = self.within(deadline, "SET NX", name, |c| {
            redis::cmd("EVAL").arg(PUT_IF_ABSENT).arg(2).arg(name).arg(index_of(name)).arg(bytes).query(c)
        })?;
        Ok(created == 1)
    }

    fn list_after(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<Vec<String>, RemoteError> {
        // Names are printable ASCII, so every name with the prefix sorts
        // below the prefix followed by DEL (0x7f).
        let min = match after {
            Some(a) if a >= prefix => format!("({a}"),
            _ => format!("[{prefix}"),
        };
        let max = format!("[{prefix}\x7f");
        let names: Vec<String> = self.with("LIST", prefix, |c| {
            redis::cmd("ZRANGEBYLEX").arg(index_of(prefix)).arg(min).arg(max).arg("LIMIT").arg(0).arg(limit).query(c)
        })?;
        Ok(names.into_iter().filter(|n| n.starts_with(prefix)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_indexed_by_directory() {
        assert_eq!(index_of("ns/log/0001-ab"), "ns/log/");
        assert_eq!(index_of("ns/log/"), "ns/log/");
        assert_eq!(index_of("top"), "");
    }

    #[test]
    fn urls_are_checked_and_shown_without_passwords() {
        let s = RedisStore::open("redis://:secret@127.0.0.1:6390/3", &StoreOptions::default()).unwrap();
        assert_eq!(s.url(), "redis://127.0.0.1:6390/3");
        assert!(RedisStore::open("redis://127.0.0.1:x/0", &StoreOptions::default()).is_err());
    }
}
