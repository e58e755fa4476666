//! The cache subcommands, run on a cache directory without mounting it: keys, get, set, delete, stats, check.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use diskcachefs::cache::pyrepr::python_float_repr;
use diskcachefs::cache::{Cache, Key, ReadHandle, Scalar, Value};
use diskcachefs::fs::names::{ParsedName, key_to_name, name_to_key};

use super::exit::{Failure, miss};
use super::open::{may_write, open_existing, open_existing_rw, shard_dirs};

pub(crate) fn keys(dir: PathBuf, reverse: bool) -> Result<ExitCode, Failure> {
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    // A FanoutCache's keys, shard after shard, as iterating it does.
    let mut dirs = shard_dirs(&dir).unwrap_or_else(|| vec![dir.clone()]);
    if reverse {
        dirs.reverse();
    }
    for dir in dirs {
        let cache = open_existing(&dir)?;
        for key in cache.iterkeys(reverse) {
            let line = key_to_name(&key?);
            if writeln!(out, "{line}").is_err() {
                return Ok(ExitCode::SUCCESS); // reader went away (| head)
            }
        }
    }
    out.flush().ok();
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn get(dir: PathBuf, key: String, name: bool) -> Result<ExitCode, Failure> {
    let Some((dir, key)) = target(&dir, parse_key(&key, name)?)? else { return Ok(miss()) };
    let cache = open_existing_rw(&dir)?;
    let found = resolve(&cache, key)?;
    let Some(key) = found else { return Ok(miss()) };
    let Some(handle) = cache.read(&key)? else { return Ok(miss()) };
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let result = match handle {
        ReadHandle::File(mut f) => io::copy(&mut f, &mut out).map(|_| ()),
        ReadHandle::Inline(v) => out.write_all(&value_bytes(&v)),
    };
    match result.and_then(|_| out.flush()) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(Failure(format!("writing the value: {e}"))),
    }
}

pub(crate) fn set(
    dir: PathBuf,
    key: String,
    file: Option<PathBuf>,
    expire: Option<f64>,
    tag: Option<String>,
    name: bool,
) -> Result<ExitCode, Failure> {
    let key = parse_key(&key, name)?;
    if let Some(e) = expire
        && !e.is_finite()
    {
        return Err(Failure(format!("--expire {e}: must be a finite number of seconds")));
    }
    let no_key = || Failure("a %sha256: name can only name an existing key".into());
    let (dir, key) = target(&dir, key)?.ok_or_else(no_key)?;
    let cache = Cache::open(&dir)?;
    let key = resolve(&cache, key)?.ok_or_else(no_key)?;
    let tag = tag.map(Scalar::Str);
    match file {
        Some(path) => {
            let mut f = std::fs::File::open(&path).map_err(|e| Failure(format!("{}: {e}", path.display())))?;
            cache.set_bytes_from_reader(&key, &mut f, expire, tag.as_ref())?;
        }
        None => {
            cache.set_bytes_from_reader(&key, &mut io::stdin().lock(), expire, tag.as_ref())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn delete(dir: PathBuf, key: String, name: bool) -> Result<ExitCode, Failure> {
    let Some((dir, key)) = target(&dir, parse_key(&key, name)?)? else { return Ok(miss()) };
    let cache = open_existing_rw(&dir)?;
    let Some(key) = resolve(&cache, key)? else { return Ok(miss()) };
    Ok(if cache.delete(&key)? { ExitCode::SUCCESS } else { miss() })
}

pub(crate) fn stats(dir: PathBuf, requests: bool) -> Result<ExitCode, Failure> {
    if diskcachefs::fs::mount::is_mounted_here(&dir) {
        return mounted_stats(&dir, requests);
    }
    if requests {
        return Err(Failure(format!(
            "{}: not a diskcachefs mount point (requests are counted by a mount; give its mount point)",
            dir.display()
        )));
    }
    let stats = match shard_dirs(&dir) {
        None => diskcachefs::fs::control::stats_json(&open_existing(&dir)?)?,
        Some(dirs) => {
            // A FanoutCache: its totals, and each shard's own report.
            let mut shards = Vec::new();
            let (mut count, mut size, mut volume) = (0, 0, 0);
            for d in &dirs {
                let shard = diskcachefs::fs::control::stats_json(&open_existing(d)?)?;
                count += shard["count"].as_i64().unwrap_or(0);
                size += shard["size"].as_i64().unwrap_or(0);
                volume += shard["volume"].as_i64().unwrap_or(0);
                shards.push(shard);
            }
            serde_json::json!({
                "directory": dir, "fanout_shards": dirs.len(),
                "count": count, "size": size, "volume": volume, "shards": shards,
            })
        }
    };
    io::stdout().write_all(&diskcachefs::fs::control::stats_text(&stats))?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn check(dir: PathBuf, fix: bool) -> Result<ExitCode, Failure> {
    // Checking without fixing needs no write: a cache this user may
    // not write is checked read-only.
    let mut clean = true;
    for dir in shard_dirs(&dir).unwrap_or_else(|| vec![dir.clone()]) {
        let cache = if !fix && !may_write(&dir) { open_existing(&dir)? } else { Cache::open(&dir)? };
        let warnings = cache.check(fix)?;
        for w in &warnings {
            println!("{:?}: {}", w.kind, w.message);
        }
        clean &= warnings.is_empty();
    }
    Ok(if clean { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// `diskcachefs stats MOUNTPOINT`: the mount's `stats` file as it is, or
/// its `requests` section as a table.
fn mounted_stats(mountpoint: &Path, table: bool) -> Result<ExitCode, Failure> {
    let path = mountpoint.join("stats");
    let text = std::fs::read(&path).map_err(|e| Failure(format!("{}: {e}", path.display())))?;
    if !table {
        io::stdout().write_all(&text)?;
        return Ok(ExitCode::SUCCESS);
    }
    let stats: serde_json::Value = serde_json::from_slice(&text)?;
    let empty = serde_json::Map::new();
    let operations = stats["requests"]["operations"].as_object().unwrap_or(&empty);
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "{:<16} {:>10} {:>8} {:>9} {:>8} {:>8} {:>8} {:>9}  errnos",
        "operation", "count", "errors", "mean_us", "p50_us", "p90_us", "p99_us", "max_us"
    )?;
    for (name, op) in operations {
        let latency = &op["latency_us"];
        let errnos: Vec<String> =
            op["errnos"].as_object().map(|m| m.iter().map(|(e, n)| format!("{e}={n}")).collect()).unwrap_or_default();
        let [count, errors, mean, p50, p90, p99, max] = [
            &op["count"],
            &op["errors"],
            &latency["mean"],
            &latency["p50"],
            &latency["p90"],
            &latency["p99"],
            &latency["max"],
        ]
        .map(|v| v.to_string());
        writeln!(
            out,
            "{name:<16} {count:>10} {errors:>8} {mean:>9} {p50:>8} {p90:>8} {p99:>8} {max:>9}  {}",
            errnos.join(" ")
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// A KEY argument: a str key, or with `--name` an escaped name.
fn parse_key(text: &str, as_name: bool) -> Result<ParsedName, Failure> {
    if !as_name {
        return Ok(ParsedName::Key(Key::Str(text.to_string())));
    }
    name_to_key(text.as_bytes()).map_err(|e| Failure(format!("{text:?} is not a key name: {e:?}")))
}

/// The cache directory a key lives in: `dir` itself, or for a FanoutCache
/// the shard python-diskcache's `FanoutCache` uses for it (a `%sha256:`
/// name is looked for in every shard). `None`: a long key's name no shard
/// has.
pub(crate) fn target(dir: &Path, parsed: ParsedName) -> Result<Option<(PathBuf, ParsedName)>, Failure> {
    let Some(dirs) = shard_dirs(dir) else { return Ok(Some((dir.to_path_buf(), parsed))) };
    match parsed {
        ParsedName::Key(key) => {
            let shard = (diskcachefs::cache::fanout::disk_hash(&key) % dirs.len() as u64) as usize;
            Ok(Some((dirs[shard].clone(), ParsedName::Key(key))))
        }
        hashed @ ParsedName::Hashed(_) => {
            for d in dirs {
                if let Some(key) = resolve(&open_existing(&d)?, hashed.clone())? {
                    return Ok(Some((d, ParsedName::Key(key))));
                }
            }
            Ok(None)
        }
    }
}

/// The key a parsed name stands for; a `%sha256:` name is looked up.
fn resolve(cache: &Cache, parsed: ParsedName) -> Result<Option<Key>, Failure> {
    match parsed {
        ParsedName::Key(k) => Ok(Some(k)),
        ParsedName::Hashed(digest) => {
            for key in cache.iterkeys(false) {
                let key = key?;
                if diskcachefs::fs::names::matches_hash(&key, &digest) {
                    return Ok(Some(key));
                }
            }
            Ok(None)
        }
    }
}

/// A value's bytes as a file shows them: bytes as is, str as UTF-8, numbers
/// as Python's `str()`, a pickle as its pickle bytes.
fn value_bytes(value: &Value) -> Vec<u8> {
    match value {
        Value::Bytes(b) | Value::Pickle(b) => b.clone(),
        Value::Str(s) => s.as_bytes().to_vec(),
        Value::Int(i) => i.to_string().into_bytes(),
        Value::Float(f) => python_float_repr(*f).into_bytes(),
        Value::None => Vec::new(),
    }
}
