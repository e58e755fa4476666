//! The command line's definition (clap derive): subcommands, their options and the checks of option values.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub(crate) const CACHE_HEADING: &str = "Cache commands";
pub(crate) const MOUNT_HEADING: &str = "Mounting";

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
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Flyte2Command {
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
    /// Why cached tasks ran again, from the run records (kept with local
    /// persistence on): each action that missed, compared with the nearest
    /// earlier action of its task, as JSON lines (docs/FLYTE.md).
    Explain {
        dir: PathBuf,
        /// Only this task (`env.function`).
        #[arg(long)]
        task: Option<String>,
    },
}

/// A flytekit cache lookup: the task, its cache version, the inputs (a
/// serialized LiteralMap in FILE or on standard input).
#[derive(clap::Args)]
pub(crate) struct TaskLookup {
    /// The task's name, as flytekit names it (`module.function`).
    #[arg(long)]
    pub task: String,
    /// The task's cache_version.
    #[arg(long)]
    pub version: String,
    /// An input to leave out of the key (cache_ignore_input_vars).
    #[arg(long = "ignore")]
    pub ignore: Vec<String>,
    pub file: Option<PathBuf>,
}

#[derive(Subcommand)]
pub(crate) enum FlyteCommand {
    /// What the caches hold, as JSON: flytekit's entries per task and
    /// cache version (entries, bytes, oldest and newest store time), and
    /// Flyte 2's (entries, bytes).
    Ls { dir: PathBuf },
    /// Remove entries (flytekit's and Flyte 2's) whose outputs name local
    /// files or directories that no longer exist; prints each as a JSON
    /// line (owner, key, the missing paths). flytekit and Flyte 2 would
    /// answer them as hits.
    Prune {
        dir: PathBuf,
        /// What to prune: the stale entries (the only kind so far; required).
        #[arg(long, required = true)]
        stale: bool,
        /// Print what would go, remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Why a lookup of these inputs (a serialized LiteralMap, FILE or
    /// standard input) hits or misses, as JSON: the key and its parts, the
    /// same inputs under another cache version, the task's versions, and
    /// which inputs differ from those of entries whose inputs are known
    /// (docs/FLYTE.md, "Why a lookup missed").
    Explain {
        dir: PathBuf,
        #[command(flatten)]
        lookup: TaskLookup,
    },
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Mount CACHE_DIR (created with diskcache's defaults if empty) on MOUNTPOINT.
    #[command(next_help_heading = MOUNT_HEADING)]
    Mount(MountArgs),
    /// Serve CACHE_DIR over HTTP and WebDAV (for systems without FUSE: a
    /// browser, macOS Finder, Windows Explorer, davfs2): the tree a mount
    /// shows. Prints its URL once listening; SIGINT/SIGTERM stop it.
    #[command(next_help_heading = MOUNT_HEADING)]
    Serve(ServeArgs),
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
    /// Housekeeping of the Flyte local caches in DIR's cache.db
    /// (flytekit's entries and Flyte 2's).
    #[command(subcommand, next_help_heading = "Flyte")]
    Flyte(FlyteCommand),
    /// Flyte 2's own task cache in DIR's cache.db (`task_cache`, `runs`).
    #[command(subcommand, next_help_heading = "Flyte")]
    Flyte2(Flyte2Command),
    /// Print the local-cache key flytekit computes for a serialized
    /// LiteralMap of inputs (FILE or standard input).
    #[command(next_help_heading = "Flyte")]
    FlyteKey(TaskLookup),
    /// Print a serialized LiteralMap (FILE or standard input) as readable JSON.
    Literals { file: Option<PathBuf> },
    /// Share entries through S3 or Redis: push what the remote lacks, pull what is new (docs/REMOTE.md).
    Sync(diskcachefs::remote::cli::SyncArgs),
    /// Print a value as readable JSON, pickles decoded as data without
    /// running them (what MOUNT/json/NAME shows); exit 1 on a miss.
    Show {
        dir: PathBuf,
        /// The key's path in the mount's keys/ (`a/b`, `%int:3`).
        path: String,
    },
    /// Report, as JSON, every entry whose pickle would import something
    /// outside the allow-list (a planted pickle runs code when Python
    /// reads it); exit 1 when there is one.
    Audit {
        dir: PathBuf,
        /// Also allow MODULE.NAME, or every name of MODULE with MODULE.*
        /// (repeatable).
        #[arg(long, value_name = "MODULE.NAME")]
        allow: Vec<String>,
    },
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

#[derive(clap::Args, Debug)]
pub(crate) struct ServeArgs {
    pub(crate) cache_dir: PathBuf,
    /// Address and port to listen on (port 0: a free one). Another
    /// address than loopback requires --token-file.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub(crate) listen: std::net::SocketAddr,
    /// A file holding the token every request must carry (as
    /// `Authorization: Bearer TOKEN`, or as the password of HTTP basic
    /// authentication); white space around it is ignored.
    #[arg(long, value_name = "FILE")]
    pub(crate) token_file: Option<PathBuf>,
    /// The largest PUT body taken, in bytes (413 past it).
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 34)]
    pub(crate) max_body: u64,
    /// Refuse every request that writes (403), and never write to
    /// CACHE_DIR.
    #[arg(long)]
    pub(crate) read_only: bool,
    /// Seconds a change waits for another process's write lock.
    #[arg(long, default_value_t = 60.0, value_parser = seconds)]
    pub(crate) timeout: f64,
    #[command(flatten)]
    pub(crate) remote: diskcachefs::remote::cli::MountRemoteArgs,
}

#[derive(clap::Args)]
pub(crate) struct MountArgs {
    pub(crate) cache_dir: PathBuf,
    pub(crate) mountpoint: PathBuf,
    /// Never write to CACHE_DIR (no settings, statistics or access times
    /// either). The kernel then reads files and lists directories without
    /// asking the daemon again, and a watcher tells it of other processes'
    /// changes within a second.
    #[arg(long)]
    pub(crate) read_only: bool,
    /// Make a new cache in CACHE_DIR even though it is a directory that
    /// holds other files (without this, only an empty or missing
    /// directory becomes a new cache).
    #[arg(long)]
    pub(crate) create: bool,
    /// Read every value through the daemon, never through the kernel's
    /// passthrough (which a read-write mount uses for values kept in value
    /// files, as root on Linux 6.9 and later).
    #[arg(long)]
    pub(crate) no_passthrough: bool,
    /// `task/T/V/.resolve` answers a miss (ENOENT) for a cached entry
    /// whose outputs name local files or directories that no longer exist
    /// (a stale entry: docs/FLYTE.md), so the caller computes again.
    #[arg(long)]
    pub(crate) stale_as_miss: bool,
    /// Take requests through FUSE over io_uring where the kernel offers it
    /// (Linux 6.14+, with /sys/module/fuse/parameters/enable_uring set by
    /// root): a queue per CPU, each request answered on the CPU that asked.
    /// The default; where the kernel does not offer it, or refuses the
    /// rings, the mount serves through /dev/fuse and says so in its log and
    /// `stats` (docs/SEMANTICS.md).
    #[arg(long, conflicts_with = "no_io_uring")]
    pub(crate) io_uring: bool,
    /// Take requests through /dev/fuse even where the kernel offers FUSE
    /// over io_uring.
    #[arg(long)]
    pub(crate) no_io_uring: bool,
    /// With --read-only: have the kernel send OPEN, FLUSH, RELEASE and
    /// OPENDIR as on a read-write mount (slower; to compare).
    #[arg(long, requires = "read_only")]
    pub(crate) open_requests: bool,
    /// Return once the mount is ready, leaving the daemon in the
    /// background. The daemon logs to --log-file if given, else to syslog
    /// (/dev/log) if it is there, else to
    /// /var/log/diskcachefs/NAME.log as root and to
    /// $XDG_STATE_HOME/diskcachefs/NAME.log (~/.local/state/diskcachefs/)
    /// otherwise, NAME being MOUNTPOINT escaped as systemd-escape escapes a
    /// path, the name of its diskcachefs@NAME.service (/mnt/cache:
    /// mnt-cache). RUST_LOG=info shows where.
    #[arg(long)]
    pub(crate) daemon: bool,
    /// Let other users use the mount (file modes are then enforced).
    #[arg(long)]
    pub(crate) allow_other: bool,
    /// Seconds the kernel may trust names and attributes; changes made by
    /// other processes show within this time.
    #[arg(long, default_value_t = 1.0, value_parser = seconds)]
    pub(crate) attr_timeout: f64,
    /// Most key inodes the daemon keeps, at least 1: past it, it asks the
    /// kernel to forget the oldest unused ones (memory stays bounded
    /// whatever the number of keys; about 1 KiB each).
    #[arg(long, default_value_t = 100_000, value_parser = at_least_one)]
    pub(crate) max_inodes: usize,
    /// Threads taking FUSE requests from the kernel (1 to 1024).
    #[arg(long, default_value_t = diskcachefs::fs::mount::DEFAULT_THREADS, value_parser = thread_count)]
    pub(crate) threads: usize,
    /// Seconds a change waits for another process's write lock before it
    /// fails with EBUSY (diskcache's `timeout`; reads never wait for it).
    #[arg(long, default_value_t = 60.0, value_parser = seconds)]
    pub(crate) timeout: f64,
    /// With --daemon: where the daemon logs, appended (RUST_LOG sets the
    /// level).
    #[arg(long, conflicts_with = "syslog", requires = "daemon")]
    pub(crate) log_file: Option<PathBuf>,
    /// Log to syslog, as datagrams to /dev/log or to the socket given as
    /// --syslog=SOCKET (facility daemon).
    #[arg(long, value_name = "SOCKET", num_args = 0..=1, require_equals = true,
          default_missing_value = diskcachefs::logging::SYSLOG_SOCKET)]
    pub(crate) syslog: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) remote: diskcachefs::remote::cli::MountRemoteArgs,
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
