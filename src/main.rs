//! The `diskcachefs` command line: the engine for scripts and people who do
//! not want to mount, the Flyte key tools, and (later) mount/umount.
//!
//! Exit status: 0 success; 1 a miss (`get`, `delete`) or problems found
//! (`check`); 2 an error (bad arguments, unreadable cache, bad input).

use std::ffi::OsString;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use diskcachefs::cache::{Cache, CacheOptions, Key, ReadHandle, Scalar, Value};
use diskcachefs::fs::names::{ParsedName, key_to_name, name_to_key};
use diskcachefs::fs::pyrepr::python_float_repr;

const CACHE_HEADING: &str = "Cache commands";
const MOUNT_HEADING: &str = "Mounting";

/// `--version`: the version and what this build carries.
const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\nbuild: SQLite bundled (rusqlite), FUSE through fuser 0.18 (mount(2) as root, fusermount3 otherwise),",
    "\n       passthrough reads (Linux 6.9+, root), reads without OPEN on read-only mounts,",
    "\n       python-diskcache 5.6 format, flytekit 1.x and Flyte 2 local caches",
);

#[derive(Parser)]
#[command(
    name = "diskcachefs",
    version,
    long_version = LONG_VERSION,
    about = "python-diskcache caches (and Flyte's local task cache) as plain files"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Flyte2Command {
    /// Every entry: its key and stored size, one a line.
    Ls { dir: PathBuf },
    /// An entry's outputs as JSON (exit 1 when missing).
    Show { dir: PathBuf, key: String },
    /// Delete an entry (exit 1 when missing): Flyte 2 computes it again.
    Rm { dir: PathBuf, key: String },
    /// Delete every entry; prints how many.
    Clear { dir: PathBuf },
    /// The run records Flyte 2 keeps, as JSON lines.
    Runs { dir: PathBuf },
}

#[derive(Subcommand)]
enum Command {
    /// Mount CACHE_DIR (created with diskcache's defaults if empty) on MOUNTPOINT.
    #[command(next_help_heading = MOUNT_HEADING)]
    Mount(MountArgs),
    /// Unmount MOUNTPOINT, also a stale mount left by a killed daemon.
    Umount {
        mountpoint: PathBuf,
        /// Exit 0 without a word when MOUNTPOINT is not a mount point (the
        /// unit's ExecStopPost, which clears a crashed daemon's mount).
        #[arg(long)]
        if_mounted: bool,
    },
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
    /// Count, volume, hits, misses and every setting, as JSON. DIR may
    /// also be a mount point: then the mount's own `stats`, with the
    /// requests it has served.
    Stats {
        dir: PathBuf,
        /// With DIR a mount point: the requests it has served as a table
        /// (count, errors, latency percentiles in microseconds, errnos).
        #[arg(long)]
        requests: bool,
    },
    /// Flyte 2's own task cache in DIR's cache.db (`task_cache`, `runs`).
    #[command(subcommand, next_help_heading = "Flyte")]
    Flyte2(Flyte2Command),
    /// Print the local-cache key flytekit computes for a serialized
    /// LiteralMap of inputs (FILE or standard input).
    #[command(next_help_heading = "Flyte")]
    FlyteKey {
        /// The task's name, as flytekit names it (`module.function`).
        #[arg(long)]
        task: String,
        /// The task's cache_version.
        #[arg(long)]
        version: String,
        /// An input to leave out of the key (cache_ignore_input_vars).
        #[arg(long = "ignore")]
        ignore: Vec<String>,
        file: Option<PathBuf>,
    },
    /// Print a serialized LiteralMap (FILE or standard input) as readable JSON.
    Literals { file: Option<PathBuf> },
    /// Share entries through S3 or Redis: push what the remote lacks, pull what is new (docs/REMOTE.md).
    Sync(diskcachefs::remote::cli::SyncArgs),
    /// diskcache's consistency check; exit 1 when it finds problems.
    Check {
        dir: PathBuf,
        /// Repair what is found, as `Cache.check(fix=True)`.
        #[arg(long)]
        fix: bool,
    },
    /// Print a shell completion script (bash, zsh or fish) made from this
    /// command line's definition: `diskcachefs completions bash >
    /// /etc/bash_completion.d/diskcachefs`.
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff) of diskcachefs, or of one of its
    /// subcommands (`diskcachefs-mount(1)`), made from this command line's
    /// definition (`scripts/man` writes them all to target/man/).
    #[command(hide = true)]
    Manpage { subcommand: Option<String> },
}

#[derive(clap::Args)]
struct MountArgs {
    cache_dir: PathBuf,
    mountpoint: PathBuf,
    /// Never write to CACHE_DIR (no settings, statistics or access times
    /// either). The kernel then reads files and lists directories without
    /// asking the daemon again, and a watcher tells it of other processes'
    /// changes within a second.
    #[arg(long)]
    read_only: bool,
    /// Make a new cache in CACHE_DIR even though it is a directory that
    /// holds other files (without this, only an empty or missing
    /// directory becomes a new cache).
    #[arg(long)]
    create: bool,
    /// Read every value through the daemon, never through the kernel's
    /// passthrough (which a read-write mount uses for values kept in value
    /// files, as root on Linux 6.9 and later).
    #[arg(long)]
    no_passthrough: bool,
    /// With --read-only: have the kernel send OPEN, FLUSH, RELEASE and
    /// OPENDIR as on a read-write mount (slower; to compare).
    #[arg(long, requires = "read_only")]
    open_requests: bool,
    /// Return once the mount is ready, leaving the daemon in the
    /// background. The daemon logs to --log-file if given, else to syslog
    /// (/dev/log) if it is there, else to
    /// /var/log/diskcachefs/NAME.log as root and to
    /// $XDG_STATE_HOME/diskcachefs/NAME.log (~/.local/state/diskcachefs/)
    /// otherwise, NAME being MOUNTPOINT escaped as systemd-escape escapes a
    /// path, the name of its diskcachefs@NAME.service (/mnt/cache:
    /// mnt-cache). RUST_LOG=info shows where.
    #[arg(long)]
    daemon: bool,
    /// Let other users use the mount (file modes are then enforced).
    #[arg(long)]
    allow_other: bool,
    /// Seconds the kernel may trust names and attributes; changes made by
    /// other processes show within this time.
    #[arg(long, default_value_t = 1.0, value_parser = seconds)]
    attr_timeout: f64,
    /// Most key inodes the daemon keeps, at least 1: past it, it asks the
    /// kernel to forget the oldest unused ones (memory stays bounded
    /// whatever the number of keys; about 1 KiB each).
    #[arg(long, default_value_t = 100_000, value_parser = at_least_one)]
    max_inodes: usize,
    /// Threads taking FUSE requests from the kernel (1 to 1024).
    #[arg(long, default_value_t = diskcachefs::fs::mount::DEFAULT_THREADS, value_parser = thread_count)]
    threads: usize,
    /// Seconds a change waits for another process's write lock before it
    /// fails with EBUSY (diskcache's `timeout`; reads never wait for it).
    #[arg(long, default_value_t = 60.0, value_parser = seconds)]
    timeout: f64,
    /// With --daemon: where the daemon logs, appended (RUST_LOG sets the
    /// level).
    #[arg(long, conflicts_with = "syslog", requires = "daemon")]
    log_file: Option<PathBuf>,
    /// Log to syslog, as datagrams to /dev/log or to the socket given as
    /// --syslog=SOCKET (facility daemon).
    #[arg(long, value_name = "SOCKET", num_args = 0..=1, require_equals = true,
          default_missing_value = diskcachefs::logging::SYSLOG_SOCKET)]
    syslog: Option<PathBuf>,
    #[command(flatten)]
    remote: diskcachefs::remote::cli::MountRemoteArgs,
}

/// The longest `--timeout` and `--attr-timeout`: a day. Past it a value
/// is a typo, not a wish (and SQLite's busy timeout, in milliseconds in a
/// C int, ends at 24.8 days).
const MAX_SECONDS: f64 = 86_400.0;

/// `--timeout`, `--attr-timeout`: seconds, from 0 to a day.
fn seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s.is_finite() && (0.0..=MAX_SECONDS).contains(&s) => Ok(s),
        Ok(_) => Err(format!("must be a number of seconds from 0 to {MAX_SECONDS} (a day)")),
        Err(e) => Err(e.to_string()),
    }
}

/// `--max-inodes`: any bound from 1 up is taken as given (it used to be
/// raised to 1,000 without a word). 0 is refused: it reads like "no
/// limit", and would in fact have the daemon ask the kernel to drop every
/// name as soon as it is unused (1 does that too, but is asked for).
fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// `--threads`: fuser needs at least one thread; past 1024 a typo would
/// only cost memory (each thread has a request buffer of up to 1 MiB).
fn thread_count(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n @ 1..=1024) => Ok(n),
        Ok(_) => Err("must be between 1 and 1024".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// A failure to report on standard error with exit status 2.
struct Failure(String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure(e.to_string())
    }
}

fn main() -> ExitCode {
    let argv = fstab_arguments(std::env::args_os().collect());
    let cli = Cli::parse_from(&argv);
    diskcachefs::logging::init(log_destination(&cli.command));
    match run(cli.command, &argv) {
        Ok(code) => code,
        Err(Failure(message)) => {
            diskcachefs::logging::report_failure(&message);
            ExitCode::from(2)
        }
    }
}

/// Standard error (the journal's form when it is the journal), or syslog
/// for a mount given `--syslog`: in the foreground, or in the daemon a
/// `--daemon` parent starts (which logs to the terminal itself).
fn log_destination(command: &Command) -> diskcachefs::logging::Destination {
    match command {
        Command::Mount(MountArgs { syslog: Some(socket), daemon, .. })
            if !daemon || std::env::var_os(READY_FD).is_some() =>
        {
            diskcachefs::logging::Destination::Syslog(socket.clone())
        }
        _ => diskcachefs::logging::Destination::stderr(),
    }
}

/// `argv`: the whole command line, as parsed (the `--daemon` child gets it).
fn run(command: Command, argv: &[OsString]) -> Result<ExitCode, Failure> {
    match command {
        Command::Mount(args) => mount(args, argv),
        Command::Umount { mountpoint, if_mounted } => match diskcachefs::fs::mount::unmount(&mountpoint, false) {
            Err(diskcachefs::fs::mount::MountError::NotMounted(_)) if if_mounted => Ok(ExitCode::SUCCESS),
            result => {
                result?;
                Ok(ExitCode::SUCCESS)
            }
        },
        Command::Keys { dir, reverse } => {
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
        Command::Get { dir, key, name } => {
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
        Command::Set { dir, key, file, expire, tag, name } => {
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
        Command::Delete { dir, key, name } => {
            let Some((dir, key)) = target(&dir, parse_key(&key, name)?)? else { return Ok(miss()) };
            let cache = open_existing_rw(&dir)?;
            let Some(key) = resolve(&cache, key)? else { return Ok(miss()) };
            Ok(if cache.delete(&key)? { ExitCode::SUCCESS } else { miss() })
        }
        Command::Flyte2(action) => flyte2(action),
        Command::Stats { dir, requests } => {
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
        Command::FlyteKey { task, version, ignore, file } => {
            let inputs = read_input(file.as_deref())?;
            let key = diskcachefs::flyte::cache_key(&task, &version, &inputs, &ignore)?;
            println!("{key}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Literals { file } => {
            let bytes = read_input(file.as_deref())?;
            let map = diskcachefs::flyte::decode_literal_map(&bytes)?;
            println!("{}", serde_json::to_string_pretty(&diskcachefs::flyte::render::literal_map_to_json(&map))?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "diskcachefs", &mut io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Manpage { subcommand } => {
            let cli = Cli::command();
            let page = match &subcommand {
                None => cli,
                Some(name) => match cli.find_subcommand(name) {
                    Some(sub) => sub.clone().name(format!("diskcachefs-{name}")),
                    None => return Err(Failure(format!("manpage: no subcommand {name:?}"))),
                },
            };
            clap_mangen::Man::new(page).render(&mut io::stdout())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Sync(args) => Ok(diskcachefs::remote::cli::run(args)),
        Command::Check { dir, fix } => {
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
    }
}

/// All of FILE, or of standard input.
fn read_input(file: Option<&Path>) -> Result<Vec<u8>, Failure> {
    use std::io::Read;
    let mut data = Vec::new();
    match file {
        Some(path) => {
            data = std::fs::read(path).map_err(|e| Failure(format!("{}: {e}", path.display())))?;
        }
        None => {
            io::stdin().lock().read_to_end(&mut data).map_err(|e| Failure(format!("standard input: {e}")))?;
        }
    }
    Ok(data)
}

fn miss() -> ExitCode {
    ExitCode::from(1)
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

/// Opens a cache that must already exist, without writing to it.
fn open_existing(dir: &Path) -> Result<Cache, Failure> {
    require_cache(dir)?;
    Ok(Cache::open_with(dir, CacheOptions { read_only: true, ..CacheOptions::default() })?)
}

/// Opens a cache that must already exist, for use (a get counts as a hit
/// or miss and updates access times, as in python-diskcache).
/// A cache this user may not write (read-only media, another user's
/// directory) is opened read-only instead: its gets are then not counted.
fn open_existing_rw(dir: &Path) -> Result<Cache, Failure> {
    require_cache(dir)?;
    if !may_write(dir) {
        return open_existing(dir);
    }
    Ok(Cache::open(dir)?)
}

/// Whether this process may write the cache directory and its `cache.db`
/// (access(2) with W_OK: EROFS on read-only media, EACCES on another's).
fn may_write(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    [dir.to_path_buf(), dir.join(diskcachefs::cache::settings::DBNAME)].iter().all(|p| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            // SAFETY: a NUL-terminated path; access reads it only.
            .is_ok_and(|c| unsafe { libc::access(c.as_ptr(), libc::W_OK) } == 0)
    })
}

fn flyte2(action: Flyte2Command) -> Result<ExitCode, Failure> {
    use diskcachefs::flyte::flyte2::{Flyte2Cache, outputs_json};
    match action {
        Flyte2Command::Ls { dir } => {
            let cache = open_existing(&dir)?;
            for (key, len) in Flyte2Cache::new(&cache).entries()? {
                println!("{key}\t{len}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Flyte2Command::Show { dir, key } => {
            let cache = open_existing(&dir)?;
            let Some(bytes) = Flyte2Cache::new(&cache).get(&key)? else { return Ok(miss()) };
            let json = outputs_json(&bytes).map_err(|e| Failure(format!("{key}: not Flyte 2 Outputs: {e}")))?;
            println!("{}", serde_json::to_string_pretty(&json)?);
            Ok(ExitCode::SUCCESS)
        }
        Flyte2Command::Rm { dir, key } => {
            require_cache(&dir)?;
            let cache = Cache::open(&dir)?;
            Ok(if Flyte2Cache::new(&cache).delete(&key)? { ExitCode::SUCCESS } else { miss() })
        }
        Flyte2Command::Clear { dir } => {
            require_cache(&dir)?;
            let cache = Cache::open(&dir)?;
            println!("{}", Flyte2Cache::new(&cache).clear()?);
            Ok(ExitCode::SUCCESS)
        }
        Flyte2Command::Runs { dir } => {
            let cache = open_existing(&dir)?;
            for (_, run) in Flyte2Cache::new(&cache).runs()? {
                println!("{run}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
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
/// A FanoutCache's shard directories (`000`, `001`, ...), or `None` for a
/// plain cache directory.
fn shard_dirs(dir: &Path) -> Option<Vec<PathBuf>> {
    if !diskcachefs::cache::fanout::is_fanout_directory(dir) {
        return None;
    }
    let mut dirs = Vec::new();
    while dir.join(format!("{:03}", dirs.len())).join(diskcachefs::cache::settings::DBNAME).is_file() {
        dirs.push(dir.join(format!("{:03}", dirs.len())));
    }
    Some(dirs)
}

/// The cache directory a key lives in: `dir` itself, or for a FanoutCache
/// the shard python-diskcache's `FanoutCache` uses for it (a `%sha256:`
/// name is looked for in every shard). `None`: a long key's name no shard
/// has.
fn target(dir: &Path, parsed: ParsedName) -> Result<Option<(PathBuf, ParsedName)>, Failure> {
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

/// Whether `args` is the form mount.fuse3 runs, and only that:
/// `diskcachefs SOURCE MOUNTPOINT` followed by nothing but `-o OPTS`
/// pairs, SOURCE a path (it has a `/`, as an fstab's source has). Any other
/// first word goes to clap, which answers "unrecognized subcommand" (a
/// typo such as `diskcachefs mout ~/cache` used to mount a new empty cache
/// named `mout` over the user's cache).
fn is_mount_8_form(args: &[OsString]) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let [_, source, _mountpoint, rest @ ..] = args else { return false };
    let source = source.as_bytes();
    if source.starts_with(b"-") || !source.contains(&b'/') {
        return false;
    }
    rest.len() % 2 == 0 && rest.chunks(2).all(|pair| pair[0] == "-o")
}

/// `mount -t fuse.diskcachefs CACHE_DIR MOUNTPOINT -o OPTS` (and /etc/fstab)
/// runs `diskcachefs CACHE_DIR MOUNTPOINT -o OPTS` through mount.fuse3.
/// That form becomes `mount CACHE_DIR MOUNTPOINT --daemon` plus every
/// option of `mount`, read from the subcommand's own definition so that a
/// new option is passable at once: `NAME` or `NAME=VALUE`, NAME spelled
/// with `_` or `-` (`max_inodes=500`, `threads=8`, `attr_timeout=5`,
/// `allow_other`, `log_file=/var/log/x`), and `ro` for `--read-only`; clap
/// then checks values as on the command line. Other options (rw, nodev,
/// nofail, _netdev, x-systemd.*, subtype, ...) concern mount(8) or the
/// kernel and are ignored.
fn fstab_arguments(args: Vec<OsString>) -> Vec<OsString> {
    if !is_mount_8_form(&args) {
        return args;
    }
    let cli = Cli::command();
    let mount = cli.find_subcommand("mount").expect("the mount subcommand");
    let mut out = vec![args[0].clone(), "mount".into(), args[1].clone(), args[2].clone(), "--daemon".into()];
    let mut rest = args[3..].iter();
    while let Some(arg) = rest.next() {
        if arg == "-o" {
            let Some(opts) = rest.next() else { break };
            for opt in opts.to_string_lossy().split(',') {
                let (name, value) = match opt.split_once('=') {
                    Some((name, value)) => (name, Some(value)),
                    None => (opt, None),
                };
                let long = if name == "ro" { "read-only".to_string() } else { name.replace('_', "-") };
                // --daemon is implied (mount(8) must not wait for the mount's
                // end); --help and --version would mount nothing.
                let known = !["daemon", "help", "version"].contains(&long.as_str())
                    && mount.get_arguments().any(|a| a.get_long() == Some(&long));
                match value {
                    _ if !known => {}
                    Some(value) => out.push(format!("--{long}={value}").into()),
                    None => out.push(format!("--{long}").into()),
                }
            }
        }
    }
    out
}

fn mount(args: MountArgs, argv: &[OsString]) -> Result<ExitCode, Failure> {
    let mut config = diskcachefs::fs::mount::MountConfig {
        cache_dir: args.cache_dir.clone(),
        mountpoint: args.mountpoint.clone(),
        read_only: args.read_only,
        allow_other: args.allow_other,
        ttl: std::time::Duration::from_secs_f64(args.attr_timeout),
        // The watcher makes long times safe (a day; --attr-timeout 0 still
        // means no caching at all).
        watched_ttl: if args.attr_timeout == 0.0 || args.open_requests {
            std::time::Duration::from_secs_f64(args.attr_timeout)
        } else {
            std::time::Duration::from_secs(86_400)
        },
        open_requests: args.open_requests,
        passthrough: !args.no_passthrough,
        max_inodes: args.max_inodes,
        threads: args.threads,
        timeout: std::time::Duration::from_secs_f64(args.timeout),
        notifier: None,
        remote: args.remote.tier_config()?,
        create: args.create,
        log_file: args.log_file.clone(),
    };
    if let Some(socket) = &args.syslog {
        diskcachefs::logging::check_syslog_socket(socket)?;
    }
    if let Some(log) = &args.log_file {
        check_log_file(log)?;
    }
    // The child that `--daemon` starts has the very same command line (so
    // no option can be lost on the way) and reports readiness on this
    // descriptor, which also tells it that it is the daemon.
    let ready_fd = take_ready_fd();
    if args.daemon && ready_fd.is_none() {
        // The places (mount point, CACHE_DIR) are checked by the daemon in
        // `run`, which tells this parent, a service manager and its log
        // why it will not mount.
        return daemonize(&args, argv);
    }
    // A service manager (systemd's Type=notify, or the Python helper)
    // hears of readiness on $NOTIFY_SOCKET; the --daemon parent above left
    // it to this process, the one that serves.
    let notifier = diskcachefs::service::Notifier::from_env();
    // SAFETY: no thread of ours runs yet (the mount's come later).
    unsafe { std::env::remove_var(diskcachefs::service::NOTIFY_SOCKET) };
    config.notifier = notifier.clone();
    let ready = |result: Result<(), String>| {
        if let Some(notifier) = &notifier {
            let sent = match &result {
                Ok(()) => {
                    notifier.ready(&format!("serving {} at {}", args.cache_dir.display(), args.mountpoint.display()))
                }
                Err(e) => notifier.failed(e),
            };
            if let Err(e) = sent {
                log::warn!("could not tell ${} of the mount: {e}", diskcachefs::service::NOTIFY_SOCKET);
            }
        }
        if let Some(fd) = ready_fd {
            use std::os::fd::FromRawFd;
            // SAFETY: the parent passed us this pipe's write end.
            let mut pipe = unsafe { std::fs::File::from_raw_fd(fd) };
            let _ = match result {
                Ok(()) => pipe.write_all(b"ready"),
                Err(e) => pipe.write_all(e.as_bytes()),
            };
        }
    };
    diskcachefs::fs::mount::run(&config, ready)?;
    Ok(ExitCode::SUCCESS)
}

/// `--log-file`: its directory must be there (a typo would otherwise
/// make directories nobody asked for, or lose every line), and the file
/// writable by this user.
fn check_log_file(log: &Path) -> Result<(), Failure> {
    let dir = match log.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(Failure(format!("--log-file {}: no such directory {}", log.display(), dir.display())));
    }
    if log.is_dir() {
        return Err(Failure(format!("--log-file {}: a directory, not a file", log.display())));
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| Failure(format!("--log-file {}: {e}", log.display())))?;
    Ok(())
}

const READY_FD: &str = "DISKCACHEFS_READY_FD";

/// The ready pipe a `--daemon` parent passed us, taken out of the
/// environment so that nothing the daemon runs inherits it.
fn take_ready_fd() -> Option<i32> {
    let fd = std::env::var(READY_FD).ok().and_then(|v| v.parse().ok());
    // SAFETY: called before any thread of ours starts (the mount's come later).
    unsafe { std::env::remove_var(READY_FD) };
    fd
}

/// Starts the daemon as a child in its own session and returns once it
/// says the mount is ready (exit 0) or why it failed (exit 2). The child
/// runs `argv` unchanged, `--daemon` included: the ready pipe makes it
/// serve instead of starting another child, and every option reaches it
/// as given (the arguments used to be rebuilt by hand, and `--max-inodes`
/// was dropped).
fn daemonize(args: &MountArgs, argv: &[OsString]) -> Result<ExitCode, Failure> {
    use std::io::Read;
    use std::os::fd::FromRawFd;
    use std::os::unix::process::CommandExt;

    // Where the daemon logs (logging.rs, DaemonLog): its standard error
    // is the log file, or nothing when it sends to syslog, which it is
    // told by a `--syslog=SOCKET` after the arguments it was given.
    let mountpoint = args.mountpoint.canonicalize().unwrap_or_else(|_| args.mountpoint.clone());
    let log = diskcachefs::logging::DaemonLog::choose(
        args.log_file.as_deref(),
        args.syslog.as_deref(),
        Path::new(diskcachefs::logging::SYSLOG_SOCKET),
        &std::path::absolute(&mountpoint).unwrap_or(mountpoint.clone()),
    )?;
    let stderr = log.stderr()?;
    let mut fds = [0i32; 2];
    // SAFETY: fds receives two new descriptors.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(Failure(format!("pipe: {}", io::Error::last_os_error())));
    }
    let (read_fd, write_fd) = (fds[0], fds[1]);
    let mut cmd = std::process::Command::new(std::env::current_exe()?);
    cmd.args(&argv[1..]);
    if let diskcachefs::logging::DaemonLog::Syslog(socket) = &log
        && args.syslog.is_none()
    {
        let mut arg = OsString::from("--syslog=");
        arg.push(socket);
        cmd.arg(arg);
    }
    cmd.env(READY_FD, write_fd.to_string());
    cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null());
    cmd.stderr(stderr);
    // SAFETY: setsid and fcntl are async-signal-safe; the read end must not
    // leak into the child, and the child leaves our session.
    unsafe {
        cmd.pre_exec(move || {
            libc::close(read_fd);
            libc::setsid();
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    // SAFETY: our copy of the write end; closing it lets read() see EOF
    // if the child dies before reporting.
    unsafe { libc::close(write_fd) };
    let mut reader = unsafe { std::fs::File::from_raw_fd(read_fd) };
    let mut message = String::new();
    let _ = reader.read_to_string(&mut message);
    if message == "ready" {
        log::info!("daemon {} serving {}, logging to {log}", child.id(), args.mountpoint.display());
        return Ok(ExitCode::SUCCESS);
    }
    if message.is_empty() {
        message = "the daemon exited before the mount was ready".into();
    }
    Err(Failure(message))
}
