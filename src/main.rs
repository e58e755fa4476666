//! The `diskcachefs` command line: the engine for scripts and people who do
//! not want to mount, the Flyte key tools, and (later) mount/umount.
//!
//! Exit status: 0 success; 1 a miss (`get`, `delete`) or problems found
//! (`check`); 2 an error (bad arguments, unreadable cache, bad input).

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use diskcachefs::cache::{Cache, CacheOptions, Key, ReadHandle, Scalar, Value};
use diskcachefs::fs::names::{ParsedName, key_to_name, name_to_key};
use diskcachefs::fs::pyrepr::python_float_repr;

const CACHE_HEADING: &str = "Cache commands";

#[derive(Parser)]
#[command(
    name = "diskcachefs",
    version,
    about = "python-diskcache caches (and Flyte's local task cache) as plain files"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List every key, one escaped name a line, in database order (streams).
    #[command(next_help_heading = CACHE_HEADING)]
    Keys {
        dir: PathBuf,
        /// Descending order.
        #[arg(long)]
        reverse: bool,
    },
    /// Write a key's value to standard output; exit 1 on a miss.
    Get {
        dir: PathBuf,
        key: String,
        /// KEY is an escaped name as `keys` prints it (e.g. `%int:42`).
        #[arg(long)]
        name: bool,
    },
    /// Store FILE (or standard input) as a bytes value, streaming.
    Set {
        dir: PathBuf,
        key: String,
        file: Option<PathBuf>,
        /// Seconds until the entry expires.
        #[arg(long)]
        expire: Option<f64>,
        /// Tag the entry (a str tag).
        #[arg(long)]
        tag: Option<String>,
        #[arg(long)]
        name: bool,
    },
    /// Delete a key; exit 1 if it was not there.
    Delete {
        dir: PathBuf,
        key: String,
        #[arg(long)]
        name: bool,
    },
    /// Count, volume, hits, misses and every setting, as JSON.
    Stats { dir: PathBuf },
    /// diskcache's consistency check; exit 1 when it finds problems.
    Check {
        dir: PathBuf,
        /// Repair what is found, as `Cache.check(fix=True)`.
        #[arg(long)]
        fix: bool,
    },
}

/// A failure to report on standard error with exit status 2.
struct Failure(String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure(e.to_string())
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => code,
        Err(Failure(message)) => {
            eprintln!("diskcachefs: {message}");
            ExitCode::from(2)
        }
    }
}

fn run(command: Command) -> Result<ExitCode, Failure> {
    match command {
        Command::Keys { dir, reverse } => {
            let cache = open_existing(&dir)?;
            let stdout = io::stdout();
            let mut out = io::BufWriter::new(stdout.lock());
            for key in cache.iterkeys(reverse) {
                let line = key_to_name(&key?);
                if writeln!(out, "{line}").is_err() {
                    return Ok(ExitCode::SUCCESS); // reader went away (| head)
                }
            }
            out.flush().ok();
            Ok(ExitCode::SUCCESS)
        }
        Command::Get { dir, key, name } => {
            let key = parse_key(&key, name)?;
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
        Command::Set { dir, key, file, expire, tag, name } => {
            let key = parse_key(&key, name)?;
            if let Some(e) = expire
                && !e.is_finite()
            {
                return Err(Failure(format!("--expire {e}: must be a finite number of seconds")));
            }
            let cache = Cache::open(&dir)?;
            let key =
                resolve(&cache, key)?.ok_or_else(|| Failure("a %sha256: name can only name an existing key".into()))?;
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
        Command::Delete { dir, key, name } => {
            let key = parse_key(&key, name)?;
            let cache = open_existing_rw(&dir)?;
            let Some(key) = resolve(&cache, key)? else { return Ok(miss()) };
            Ok(if cache.delete(&key)? { ExitCode::SUCCESS } else { miss() })
        }
        Command::Stats { dir } => {
            let cache = open_existing(&dir)?;
            let int = |v: Scalar| match v {
                Scalar::Int(n) => serde_json::json!(n),
                other => serde_json::json!(other.to_string()),
            };
            let mut settings = serde_json::Map::new();
            for (name, value) in cache.settings().values {
                if matches!(name.as_str(), "count" | "size" | "hits" | "misses") {
                    continue;
                }
                settings.insert(name, scalar_json(&value));
            }
            let stats = serde_json::json!({
                "directory": cache.directory(),
                "count": int(cache.reset("count", None)?),
                "size": int(cache.reset("size", None)?),
                "volume": cache.volume()?,
                "hits": int(cache.reset("hits", None)?),
                "misses": int(cache.reset("misses", None)?),
                "settings": settings,
            });
            println!("{}", serde_json::to_string_pretty(&stats)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { dir, fix } => {
            let cache = Cache::open(&dir)?;
            let warnings = cache.check(fix)?;
            for w in &warnings {
                println!("{:?}: {}", w.kind, w.message);
            }
            Ok(if warnings.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
    }
}

fn miss() -> ExitCode {
    ExitCode::from(1)
}

/// Opens a cache that must already exist, without writing to it.
fn open_existing(dir: &Path) -> Result<Cache, Failure> {
    require_cache(dir)?;
    Ok(Cache::open_with(dir, CacheOptions { read_only: true, ..CacheOptions::default() })?)
}

/// Opens a cache that must already exist, for use (a get counts as a hit
/// or miss and updates access times, as in python-diskcache).
fn open_existing_rw(dir: &Path) -> Result<Cache, Failure> {
    require_cache(dir)?;
    Ok(Cache::open(dir)?)
}

/// Reading commands never create a cache where there was none.
fn require_cache(dir: &Path) -> Result<(), Failure> {
    if !dir.join(diskcachefs::cache::settings::DBNAME).is_file() {
        return Err(Failure(format!("{}: no python-diskcache cache here (no cache.db)", dir.display())));
    }
    Ok(())
}

/// A KEY argument: a str key, or with `--name` an escaped name.
fn parse_key(text: &str, as_name: bool) -> Result<ParsedName, Failure> {
    if !as_name {
        return Ok(ParsedName::Key(Key::Str(text.to_string())));
    }
    name_to_key(text.as_bytes()).map_err(|e| Failure(format!("{text:?} is not a key name: {e:?}")))
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
    }
}

fn scalar_json(value: &Scalar) -> serde_json::Value {
    match value {
        Scalar::Int(i) => serde_json::json!(i),
        Scalar::Float(f) => serde_json::json!(f),
        Scalar::Str(s) => serde_json::json!(s),
        Scalar::Bytes(b) => serde_json::json!(diskcachefs::fs::names::percent_encode(b)),
    }
}
