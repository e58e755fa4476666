//! One-shot synchronisation of a cache directory with a remote store
//! (`diskcachefs sync`): push the shareable local entries the remote lacks,
//! then pull the records the log names since this cache's cursor, writing
//! them with the engine so python-diskcache and flytekit see them.
//!
//! A failure of the store (timeout, unreachable, refused) stops the run at
//! once: with a frozen server a run costs one deadline, not one per entry.
//! A bad object (tampered, malformed, not matching its digest) is counted
//! as rejected and skipped. The cursor is saved only for work completed.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value as Json, json};
use thiserror::Error;

use crate::cache::fanout::shard_of;
use crate::cache::{Cache, Key, OpenError, Value};

use super::layout::{
    self, FLYTE2_KEY_PREFIX, MAX_RECORD_LEN, Record, ShareKind, envelope, key_id, log_name, log_prefix, open_envelope,
    parse_log_name, record_name, sha256_hex, value_bytes, value_from_bytes, value_name,
};
use super::share::{Selection, flyte2_local_uri, local_uri, select};
use super::store::{RemoteError, RemoteStore};
use crate::flyte::flyte2::Flyte2Cache;

/// The side file holding each remote's cursor. Its name contains
/// `cache.db` so that python-diskcache's `Cache.check()` (which skips every
/// path containing `DBNAME`) neither reports nor, with `fix=True`, deletes it.
pub const CURSOR_FILE: &str = "cache.db.remote-cursor.json";

/// How far back a pull lists again before its cursor: writers' clocks
/// differ, and a log name carries its writer's time.
pub const CLOCK_SKEW_MICROS: u64 = 300 * 1_000_000;

/// Entries read from the cache (and names from the log) per batch.
const BATCH: usize = 500;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Pull only: nothing is written to the remote.
    ReadOnly,
    ReadWrite,
}

#[derive(Clone, Debug)]
pub struct SyncOptions {
    pub mode: Mode,
    pub namespace: String,
    /// HMAC key: records pushed are signed, records pulled must be.
    pub signing_key: Option<Vec<u8>>,
    pub selection: Selection,
}

/// What a run did (`diskcachefs sync` prints it as JSON).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Local entries whose record this run created.
    pub pushed: u64,
    /// Remote entries this run stored locally.
    pub pulled: u64,
    /// Shareable local entries the remote had already (a first writer won).
    pub already_remote: u64,
    /// Logged entries this cache had already.
    pub already_local: u64,
    /// Flytekit entries whose outputs name local files: not pushed.
    pub skipped_unshareable: u64,
    /// Remote objects refused: bad signature, malformed, wrong digest,
    /// missing, or a record that does not match its name.
    pub rejected: u64,
    /// Failures: of the store (which end the run) or of one local entry.
    pub errors: u64,
}

impl Summary {
    pub fn to_json(&self, error: Option<&str>) -> Json {
        json!({
            "pushed": self.pushed,
            "pulled": self.pulled,
            "already_remote": self.already_remote,
            "already_local": self.already_local,
            "skipped_unshareable": self.skipped_unshareable,
            "rejected": self.rejected,
            "errors": self.errors,
            "error": error,
        })
    }
}

#[derive(Debug, Error)]
pub enum SyncError {
    #[error(transparent)]
    Remote(#[from] RemoteError),
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error("{0}")]
    Cache(#[from] crate::cache::Error),
    #[error("cursor file {path}: {reason}")]
    Cursor { path: PathBuf, reason: String },
    #[error("{0}")]
    Usage(String),
}

fn now_secs() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// This remote's state in the cursor file.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Cursor {
    /// The last log name pulled.
    pub(super) log_after: Option<String>,
    /// Local entries stored before this time (`store_time`) were pushed.
    pub(super) pushed_until: f64,
}

pub(super) struct CursorFile {
    path: PathBuf,
    /// `STORE_URL#NAMESPACE`.
    id: String,
    all: serde_json::Map<String, Json>,
}

impl CursorFile {
    pub(super) fn load(dir: &Path, id: String) -> Result<(CursorFile, Cursor), SyncError> {
        let path = dir.join(CURSOR_FILE);
        let bad = |reason: String| SyncError::Cursor { path: path.clone(), reason };
        let all = match std::fs::read(&path) {
            Ok(b) => match serde_json::from_slice(&b) {
                Ok(Json::Object(m)) => m,
                Ok(_) => return Err(bad("not a JSON object".into())),
                Err(e) => return Err(bad(format!("not JSON ({e}); remove it to pull everything again"))),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Default::default(),
            Err(e) => return Err(bad(e.to_string())),
        };
        let mine = all.get(&id);
        let cursor = Cursor {
            log_after: mine.and_then(|c| c["log_after"].as_str()).map(str::to_string),
            pushed_until: mine.and_then(|c| c["pushed_until"].as_f64()).unwrap_or(0.0),
        };
        Ok((CursorFile { path, id, all }, cursor))
    }

    /// Writes the file anew (a temporary file renamed over it).
    pub(super) fn save(&mut self, c: &Cursor) -> Result<(), SyncError> {
        self.all.insert(self.id.clone(), json!({"log_after": c.log_after, "pushed_until": c.pushed_until}));
        let tmp = self.path.with_extension(format!("tmp{}", std::process::id()));
        let text = serde_json::to_vec_pretty(&Json::Object(self.all.clone())).expect("JSON");
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &self.path))
            .map_err(|e| SyncError::Cursor { path: self.path.clone(), reason: e.to_string() })
    }
}

/// Runs one push (unless read-only) and one pull. The summary counts what
/// was done even when the run fails.
pub fn sync(dir: &Path, store: &dyn RemoteStore, opts: &SyncOptions) -> (Summary, Result<(), SyncError>) {
    let mut summary = Summary::default();
    let result = run(dir, store, opts, &mut summary);
    if result.is_err() {
        summary.errors += 1;
    }
    (summary, result)
}

fn run(dir: &Path, store: &dyn RemoteStore, opts: &SyncOptions, summary: &mut Summary) -> Result<(), SyncError> {
    if !layout::valid_namespace(&opts.namespace) {
        return Err(SyncError::Usage(format!(
            "namespace {:?}: one name of letters, digits and -_. (not . or ..)",
            opts.namespace
        )));
    }
    if opts.signing_key.as_ref().is_some_and(Vec::is_empty) {
        return Err(SyncError::Usage("the signing key is empty".into()));
    }
    // A FanoutCache: each shard pushed with its own `pushed_until` (in the
    // shard's cursor file), the log pulled once with the cursor file at the
    // top, each entry into its key's shard.
    let shards = crate::cache::fanout::shard_directories(dir);
    let caches = match &shards {
        None => vec![Cache::open(dir)?],
        Some(dirs) => dirs.iter().map(|d| Cache::open(d)).collect::<Result<Vec<_>, _>>()?,
    };
    let id = format!("{}#{}", store.url(), opts.namespace);
    let (mut file, mut cursor) = CursorFile::load(dir, id.clone())?;
    // Entries this run pushed are in the log it pulls next; not again.
    let mut pushed = HashSet::new();
    if opts.mode == Mode::ReadWrite {
        for (n, cache) in caches.iter().enumerate() {
            let mut shard_cursor = match &shards {
                Some(dirs) => Some(CursorFile::load(&dirs[n], id.clone())?),
                None => None,
            };
            let (file, cursor) = match &mut shard_cursor {
                Some((f, c)) => (f, c),
                None => (&mut file, &mut cursor),
            };
            let start = cache.now();
            push(cache, store, opts, cursor.pushed_until, &mut pushed, summary)?;
            // A second of margin: the next run looks again at entries stored
            // while this one listed (the record check makes that cheap).
            cursor.pushed_until = start - 1.0;
            file.save(cursor)?;
        }
    }
    pull(&caches, store, opts, &mut cursor, &mut file, pushed, summary)
}

fn push(
    cache: &Cache,
    store: &dyn RemoteStore,
    opts: &SyncOptions,
    since: f64,
    pushed: &mut HashSet<String>,
    summary: &mut Summary,
) -> Result<(), SyncError> {
    let mut after = 0;
    loop {
        let batch = cache.list_meta(after, BATCH)?;
        let Some(last) = batch.last() else { break };
        after = last.rowid;
        for meta in batch {
            if meta.store_time < since {
                continue;
            }
            let Some(kind) = select(&meta, &opts.selection) else { continue };
            if let Some(id) = push_entry(cache, store, opts, &meta.key, kind, summary)? {
                pushed.insert(id);
            }
        }
    }
    // Flyte 2's rows have no time of their own: every run looks at all of
    // them (one existence check each for those the remote has).
    let flyte2 = Flyte2Cache::new(cache);
    let mut after = 0;
    loop {
        let rows = flyte2.rows_after(after, BATCH)?;
        let Some(&(last, _, _)) = rows.last() else { return Ok(()) };
        after = last;
        for (_, key, outputs) in rows {
            let Some(upload) = prepare_flyte2_row(&key, &outputs, summary) else { continue };
            if let Some(id) = upload.push(store, opts, summary)? {
                pushed.insert(id);
            }
        }
    }
}

/// Pushes one local entry selected as `kind` (docs/REMOTE.md, "Writing an
/// entry"): its key id when this call created the record, `None` when it
/// was not pushed (counted in `summary`: already remote, unshareable, or
/// gone meanwhile). A failure of the store is the caller's to handle.
pub(super) fn push_entry(
    cache: &Cache,
    store: &dyn RemoteStore,
    opts: &SyncOptions,
    key: &Key,
    kind: ShareKind,
    summary: &mut Summary,
) -> Result<Option<String>, SyncError> {
    match prepare_entry(cache, key, kind, summary) {
        Some(upload) => upload.push(store, opts, summary),
        None => Ok(None),
    }
}

/// One entry ready to be written to the store: read from the cache and
/// found shareable, so that the writing needs no cache handle (the
/// mount's pusher writes several at once).
#[derive(Debug)]
pub(super) struct Upload {
    key: Key,
    value: Value,
    expire_time: Option<f64>,
    tag: Option<crate::cache::Scalar>,
    kind: ShareKind,
}

/// Reads a local entry selected as `kind`: `None` when it is gone,
/// unreadable (counted as an error) or unshareable (counted).
pub(super) fn prepare_entry(cache: &Cache, key: &Key, kind: ShareKind, summary: &mut Summary) -> Option<Upload> {
    let entry = match cache.get_entry(key) {
        Ok(Some(e)) => e,
        Ok(None) => return None, // deleted or expired since it was listed
        Err(e) => {
            log::warn!("{key}: not pushed: {e}");
            summary.errors += 1;
            return None;
        }
    };
    if kind == ShareKind::Flyte {
        let Value::Bytes(outputs) = &entry.value else { return None };
        match local_uri(outputs) {
            Ok(None) => {}
            Ok(Some(uri)) => {
                log::info!("{key}: not shared: its outputs name the local file {uri}");
                summary.skipped_unshareable += 1;
                return None;
            }
            // Not flytekit's outputs after all: not a task cache entry.
            Err(_) => return None,
        }
    }
    Some(Upload { key: key.clone(), value: entry.value, expire_time: entry.expire_time, tag: entry.tag, kind })
}

/// A Flyte 2 `task_cache` row as an upload (its outputs checked for local
/// files first).
pub(super) fn prepare_flyte2_row(row_key: &str, outputs: &[u8], summary: &mut Summary) -> Option<Upload> {
    match flyte2_local_uri(outputs) {
        Ok(None) => {}
        Ok(Some(uri)) => {
            log::info!("Flyte 2 entry {row_key}: not shared: its outputs name the local file {uri}");
            summary.skipped_unshareable += 1;
            return None;
        }
        Err(e) => {
            log::warn!("Flyte 2 entry {row_key}: not shared: its value is not Outputs ({e})");
            return None;
        }
    }
    Some(Upload {
        key: Key::Str(format!("{FLYTE2_KEY_PREFIX}{row_key}")),
        value: Value::Bytes(outputs.to_vec()),
        expire_time: None,
        tag: None,
        kind: ShareKind::Flyte2,
    })
}

impl Upload {
    /// The key id of the record it makes.
    pub(super) fn key_id(&self) -> String {
        key_id(&self.key)
    }

    /// Writes the value, the record and its log entry unless the record
    /// exists: the key id when this call created the record.
    pub(super) fn push(
        &self,
        store: &dyn RemoteStore,
        opts: &SyncOptions,
        summary: &mut Summary,
    ) -> Result<Option<String>, SyncError> {
        let ns = &opts.namespace;
        let id = self.key_id();
        let rname = record_name(ns, &id);
        if store.exists(&rname)? {
            summary.already_remote += 1;
            return Ok(None);
        }
        let bytes = value_bytes(&self.value);
        let digest = sha256_hex(&bytes);
        store.put_if_absent(&value_name(ns, &digest), &bytes)?;
        let created = now_secs();
        let record = Record {
            namespace: ns.clone(),
            key: self.key.clone(),
            value_type: self.value.type_name(),
            size: bytes.len() as u64,
            digest,
            expire_time: self.expire_time,
            tag: self.tag.clone(),
            kind: self.kind,
            created,
        };
        if !store.put_if_absent(&rname, &envelope(&record, opts.signing_key.as_deref()))? {
            summary.already_remote += 1;
            return Ok(None);
        }
        let micros = (created * 1e6) as u64;
        store.put_if_absent(&log_name(ns, micros, &id), format!("{id}\n").as_bytes())?;
        summary.pushed += 1;
        Ok(Some(id))
    }
}

fn pull(
    caches: &[Cache],
    store: &dyn RemoteStore,
    opts: &SyncOptions,
    cursor: &mut Cursor,
    file: &mut CursorFile,
    mut seen: HashSet<String>,
    summary: &mut Summary,
) -> Result<(), SyncError> {
    let ns = &opts.namespace;
    let prefix = log_prefix(ns);
    let previous = cursor.log_after.clone();
    // Start a clock-skew window before the cursor: a writer whose clock is
    // behind logs names that sort before entries already pulled.
    let mut after = previous
        .as_deref()
        .and_then(|c| parse_log_name(ns, c))
        .map(|(t, _)| format!("{prefix}{:020}", t.saturating_sub(CLOCK_SKEW_MICROS)));
    loop {
        let names = store.list_after(&prefix, after.as_deref(), BATCH)?;
        let Some(last) = names.last().cloned() else { break };
        for name in &names {
            let Some((_, id)) = parse_log_name(ns, name) else {
                log::warn!("{}: {name}: not a log entry name; ignored", store.url());
                summary.rejected += 1;
                continue;
            };
            if !seen.insert(id.clone()) {
                continue;
            }
            let relisted = previous.as_deref().is_some_and(|p| name.as_str() <= p);
            pull_one(caches, store, opts, name, &id, relisted, summary)?;
        }
        after = Some(last.clone());
        if cursor.log_after.as_deref().is_none_or(|c| last.as_str() > c) {
            cursor.log_after = Some(last);
            file.save(cursor)?;
        }
    }
    Ok(())
}

/// Pulls the entry one log name announces. `relisted`: a name at or before
/// the cursor (the skew window), not counted again when already here.
fn pull_one(
    caches: &[Cache],
    store: &dyn RemoteStore,
    opts: &SyncOptions,
    log: &str,
    id: &str,
    relisted: bool,
    summary: &mut Summary,
) -> Result<(), SyncError> {
    match pull_record(caches, store, opts, id, summary)? {
        Pulled::Stored(_) => summary.pulled += 1,
        Pulled::AlreadyLocal if !relisted => summary.already_local += 1,
        Pulled::Absent => {
            let why = "the record is missing";
            log::warn!("{}: {} (logged as {log}): rejected: {why}", store.url(), record_name(&opts.namespace, id));
            summary.rejected += 1;
        }
        Pulled::AlreadyLocal | Pulled::Rejected | Pulled::Expired => {}
    }
    Ok(())
}

/// What [`pull_record`] found.
#[derive(Debug)]
pub(super) enum Pulled {
    /// Checked and written to the cache: the value.
    Stored(Value),
    /// The cache has the key (the local entry is kept).
    AlreadyLocal,
    /// No record of this key id in the store.
    Absent,
    /// Refused (counted in `rejected`, logged with the reason).
    Rejected,
    /// The record has expired.
    Expired,
}

/// Reads the record of key id `id` and its value, checks them
/// (docs/REMOTE.md, "Reading new entries") and writes the entry to the
/// cache unless it has the key. `caches` is one cache, or a FanoutCache's
/// shards: the entry goes to its key's shard, `Disk.hash(key) % shards`,
/// where python-diskcache's `FanoutCache` looks for it. Counts rejections
/// in `summary`; what was stored is the caller's to count.
pub(super) fn pull_record(
    caches: &[Cache],
    store: &dyn RemoteStore,
    opts: &SyncOptions,
    id: &str,
    summary: &mut Summary,
) -> Result<Pulled, SyncError> {
    let ns = &opts.namespace;
    let rname = record_name(ns, id);
    let reject = |summary: &mut Summary, why: String| {
        log::warn!("{}: {rname}: rejected: {why}", store.url());
        summary.rejected += 1;
        Ok(Pulled::Rejected)
    };
    let Some(bytes) = store.get(&rname, MAX_RECORD_LEN)? else { return Ok(Pulled::Absent) };
    let record = match open_envelope(&bytes, ns, id, opts.signing_key.as_deref()) {
        Ok(r) => r,
        Err(why) => return reject(summary, why.to_string()),
    };
    let cache = &caches[shard_of(&record.key, caches.len())];
    if record.expire_time.is_some_and(|t| t <= cache.now()) {
        return Ok(Pulled::Expired);
    }
    // A Flyte 2 entry goes to Flyte 2's table, under the row's own key.
    let flyte2_key = match (&record.key, record.kind) {
        (Key::Str(k), ShareKind::Flyte2) => match k.strip_prefix(FLYTE2_KEY_PREFIX) {
            Some(row_key) if !row_key.is_empty() => Some(row_key.to_string()),
            _ => return reject(summary, format!("a Flyte 2 record whose key does not start with {FLYTE2_KEY_PREFIX}")),
        },
        (_, ShareKind::Flyte2) => return reject(summary, "a Flyte 2 record with a non-str key".into()),
        _ => None,
    };
    let here = match &flyte2_key {
        Some(k) => Flyte2Cache::new(cache).get(k)?.is_some(),
        None => cache.contains(&record.key)?,
    };
    if here {
        return Ok(Pulled::AlreadyLocal);
    }
    let Some(value) = store.get(&value_name(ns, &record.digest), record.size)? else {
        return reject(summary, format!("its value {} is missing", record.digest));
    };
    if value.len() as u64 != record.size || sha256_hex(&value) != record.digest {
        return reject(summary, format!("its value does not match its sha256 {}", record.digest));
    }
    let value = match value_from_bytes(record.value_type, value) {
        Ok(v) => v,
        Err(why) => return reject(summary, why),
    };
    if let Some(row_key) = &flyte2_key {
        let Value::Bytes(outputs) = &value else {
            return reject(summary, format!("a Flyte 2 entry holding a {} value", value.type_name()));
        };
        match flyte2_local_uri(outputs) {
            Ok(None) => {}
            Ok(Some(uri)) => return reject(summary, format!("its outputs name the local file {uri}")),
            Err(e) => return reject(summary, format!("its outputs are not Flyte 2 Outputs: {e}")),
        }
        let stored = Flyte2Cache::new(cache).insert_if_absent(row_key, outputs)?;
        return Ok(if stored { Pulled::Stored(value) } else { Pulled::AlreadyLocal });
    }
    if record.kind == ShareKind::Flyte {
        // What a writer would not push is not taken either.
        let problem = match &value {
            Value::Bytes(b) => match local_uri(b) {
                Ok(None) => None,
                Ok(Some(uri)) => Some(format!("its outputs name the local file {uri}")),
                Err(e) => Some(format!("its outputs are not a LiteralMap: {e}")),
            },
            other => Some(format!("a flytekit entry holding a {} value", other.type_name())),
        };
        if let Some(why) = problem {
            return reject(summary, why);
        }
    }
    let expire = record.expire_time.map(|t| (t - cache.now()).max(0.001));
    if cache.add(&record.key, &value, expire, record.tag.as_ref())? {
        Ok(Pulled::Stored(value))
    } else {
        Ok(Pulled::AlreadyLocal)
    }
}
