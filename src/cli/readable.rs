//! `show` (a value as the JSON document `json/` shows) and `audit` (what
//! the cache's pickles would import, against an allow-list): pickles read
//! as data, never run (docs/SEMANTICS.md, "Values as JSON").

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use diskcachefs::cache::pickle::{self, AllowList};
use diskcachefs::cache::render::json::Json;
use diskcachefs::cache::render::render_value;
use diskcachefs::cache::{Cache, Key, Value, ValueType};
use diskcachefs::fs::names::ParsedName;
use diskcachefs::fs::paths::{PathKey, hashed_leaf_matches, key_path, path_to_key};

use super::cache_commands::target;
use super::exit::{Failure, miss};
use super::open::{open_existing, shard_dirs};

pub(crate) fn show(dir: PathBuf, path: String) -> Result<ExitCode, Failure> {
    let Some((cache, key)) = find(&dir, &path)? else { return Ok(miss()) };
    let Some(value) = cache.get(&key)? else { return Ok(miss()) };
    let mut out = io::stdout().lock();
    match out.write_all(render_value(&value).as_bytes()).and_then(|_| out.flush()) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(Failure(format!("writing the value: {e}"))),
    }
}

/// The cache (a FanoutCache's shard) and key that `path` in `keys/` names.
fn find(dir: &Path, path: &str) -> Result<Option<(Cache, Key)>, Failure> {
    let bad = |e| Failure(format!("{path:?} is not a path in keys/: {e:?}"));
    match path_to_key(path).map_err(bad)? {
        PathKey::Key(key) => {
            let Some((dir, ParsedName::Key(key))) = target(dir, ParsedName::Key(key))? else { return Ok(None) };
            Ok(Some((open_existing(&dir)?, key)))
        }
        PathKey::Hashed { prefix, digest } => {
            for shard in shard_dirs(dir).unwrap_or_else(|| vec![dir.to_path_buf()]) {
                let cache = open_existing(&shard)?;
                let mut found = None;
                for key in cache.iterkeys(false) {
                    let key = key?;
                    if hashed_leaf_matches(&key, &prefix, &digest) {
                        found = Some(key);
                        break;
                    }
                }
                if let Some(key) = found {
                    return Ok(Some((cache, key)));
                }
            }
            Ok(None)
        }
    }
}

pub(crate) fn audit(dir: PathBuf, allow: Vec<String>) -> Result<ExitCode, Failure> {
    let mut list = AllowList::standard();
    for entry in &allow {
        list.add(entry).map_err(|e| Failure(format!("--allow {e}")))?;
    }
    let mut report = Report::default();
    let shards = shard_dirs(&dir);
    let sharded = shards.is_some();
    for shard in shards.unwrap_or_else(|| vec![dir.clone()]) {
        audit_cache(&open_existing(&shard)?, "", &list, &mut report)?;
    }
    if sharded {
        // A FanoutCache's sub-stores (cache/NAME, deque/NAME, index/NAME),
        // at their paths in the mount.
        for (path, sub) in sub_stores(&dir) {
            audit_cache(&open_existing(&sub)?, &format!("{path}/"), &list, &mut report)?;
        }
    }
    let found = !report.findings.is_empty();
    let doc = Json::object(vec![
        ("cache", Json::Str(dir.display().to_string())),
        ("entries", Json::Number(report.entries.to_string())),
        ("pickles", Json::Number(report.pickles.to_string())),
        ("findings", Json::Array(report.findings)),
    ]);
    let mut out = io::stdout().lock();
    writeln!(out, "{}", doc.pretty())?;
    Ok(if found { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

#[derive(Default)]
struct Report {
    entries: u64,
    pickles: u64,
    findings: Vec<Json>,
}

/// A FanoutCache's sub-store directories, with their paths in the mount
/// (`cache/NAME`): every directory holding a `cache.db` below `cache/`,
/// `deque/` and `index/`.
fn sub_stores(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut found = Vec::new();
    let mut todo: Vec<(String, PathBuf)> =
        ["cache", "deque", "index"].iter().map(|k| (k.to_string(), dir.join(k))).collect();
    while let Some((path, d)) = todo.pop() {
        if d.join(diskcachefs::cache::settings::DBNAME).is_file() {
            found.push((path, d));
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push((format!("{path}/{}", e.file_name().to_string_lossy()), e.path()));
            }
        }
    }
    found.sort();
    found
}

/// Every live entry of one cache: its key if pickled, its value if pickled.
/// `at`: where the cache's keys are in the mount (empty for keys/).
fn audit_cache(cache: &Cache, at: &str, list: &AllowList, report: &mut Report) -> Result<(), Failure> {
    let mut after = 0;
    loop {
        let page = cache.list_meta(after, 1000)?;
        let Some(last) = page.last() else { return Ok(()) };
        after = last.rowid;
        for meta in page {
            report.entries += 1;
            if let Key::Pickled(data) = &meta.key {
                report.pickles += 1;
                judge(at, &meta.key, "key", data, list, report);
            }
            if meta.value_type() != ValueType::Pickle {
                continue;
            }
            // Gone since the listing (a peer deleted it): nothing to judge.
            if let Some(Value::Pickle(data)) = cache.get(&meta.key)? {
                report.pickles += 1;
                judge(at, &meta.key, "value", &data, list, report);
            }
        }
    }
}

fn judge(at: &str, key: &Key, part: &str, data: &[u8], list: &AllowList, report: &mut Report) {
    let reading = pickle::read(data);
    let not_allowed = list.not_allowed(&reading);
    let names = |v: &[String]| Json::Array(v.iter().map(|n| Json::str(n.clone())).collect());
    let mut fields = vec![
        ("key", Json::Str(format!("{at}{}", key_path(key)))),
        ("in", Json::str(part)),
        ("imports", names(&reading.imports)),
    ];
    match (&reading.result, not_allowed.is_empty()) {
        (Ok(_), true) => return,
        (Ok(_), false) => fields.push(("not_allowed", names(&not_allowed))),
        (Err(e), _) => {
            if !not_allowed.is_empty() {
                fields.push(("not_allowed", names(&not_allowed)));
            }
            fields.push(("error", Json::Str(e.to_string())));
        }
    }
    report.findings.push(Json::object(fields));
}
