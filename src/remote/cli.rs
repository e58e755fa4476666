//! `diskcachefs sync`'s arguments and its run, kept here so that the
//! binary's `src/main.rs` only names them (clap's derive is the one thing
//! of the command line this layer knows; the run itself takes a library
//! [`SyncOptions`]).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use super::share::Selection;
use super::store::{self, StoreOptions};
use super::sync::{Mode, SyncOptions, sync};
use super::tier::TierConfig;

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum ModeArg {
    /// Pull only: nothing is written to the remote (laptops).
    Ro,
    /// Push and pull (CI).
    Rw,
}

/// Push the shareable entries of CACHE_DIR the remote lacks, pull what the
/// remote's log has since this cache's cursor, print a JSON summary
/// (docs/REMOTE.md).
#[derive(clap::Args, Debug)]
pub struct SyncArgs {
    /// The cache directory (made with diskcache's defaults if missing).
    pub dir: PathBuf,
    /// `s3://BUCKET/PREFIX` (AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY) or `redis://HOST:PORT/DB`.
    #[arg(long)]
    pub remote: String,
    /// `ro`: pull only.
    #[arg(long, value_enum, default_value = "rw", alias = "remote-mode")]
    pub mode: ModeArg,
    /// The project's namespace in the store.
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// Sign pushed records and accept only signed ones (HMAC-SHA256; the
    /// file's bytes, trailing whitespace trimmed, are the key).
    #[arg(long)]
    pub signing_key_file: Option<PathBuf>,
    /// Share also the entries with this (str) tag.
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Share also the str keys starting with this.
    #[arg(long = "prefix")]
    pub prefixes: Vec<String>,
    /// S3 endpoint (instead of AWS_ENDPOINT_URL), e.g. http://127.0.0.1:8333.
    #[arg(long)]
    pub endpoint: Option<String>,
    /// S3 region (instead of AWS_REGION).
    #[arg(long)]
    pub region: Option<String>,
    /// Deadline of each call to the remote, in seconds.
    #[arg(long, default_value_t = 2.0)]
    pub timeout: f64,
}

/// Runs `diskcachefs sync`: exit 0 with the summary, or 2 with the summary
/// (its `error` set) and the message on standard error.
pub fn run(args: SyncArgs) -> ExitCode {
    let (summary, result) = match options(&args) {
        Ok((store_opts, opts)) => match store::open(&args.remote, &store_opts) {
            Ok(remote) => sync(&args.dir, remote.as_ref(), &opts),
            Err(e) => (Default::default(), Err(e.into())),
        },
        Err(message) => (Default::default(), Err(super::SyncError::Usage(message))),
    };
    let error = result.as_ref().err().map(ToString::to_string);
    // A run that failed before it could begin still counts its failure.
    let summary = super::Summary { errors: summary.errors.max(u64::from(error.is_some())), ..summary };
    println!("{}", summary.to_json(error.as_deref()));
    match error {
        None => ExitCode::SUCCESS,
        Some(message) => {
            eprintln!("diskcachefs: sync {}: {message}", args.dir.display());
            ExitCode::from(2)
        }
    }
}

fn options(args: &SyncArgs) -> Result<(StoreOptions, SyncOptions), String> {
    let store_opts = store_options(args.timeout, "--timeout", &args.endpoint, &args.region)?;
    let signing_key = signing_key(args.signing_key_file.as_deref(), "--signing-key-file")?;
    Ok((store_opts, sync_options(args.mode, &args.namespace, signing_key, &args.tags, &args.prefixes)))
}

fn store_options(
    timeout: f64,
    flag: &str,
    endpoint: &Option<String>,
    region: &Option<String>,
) -> Result<StoreOptions, String> {
    if !(timeout.is_finite() && timeout > 0.0 && timeout <= 3600.0) {
        return Err(format!("{flag} {timeout}: seconds, more than 0 and at most 3600"));
    }
    Ok(StoreOptions {
        deadline: Duration::from_secs_f64(timeout),
        endpoint: endpoint.clone(),
        region: region.clone(),
        credentials: None,
    })
}

/// The key in a key file: its bytes, trailing whitespace trimmed.
fn signing_key(path: Option<&std::path::Path>, flag: &str) -> Result<Option<Vec<u8>>, String> {
    let Some(path) = path else { return Ok(None) };
    let mut key = std::fs::read(path).map_err(|e| format!("{flag} {}: {e}", path.display()))?;
    while key.last().is_some_and(u8::is_ascii_whitespace) {
        key.pop();
    }
    if key.is_empty() {
        return Err(format!("{flag} {}: the file is empty", path.display()));
    }
    Ok(Some(key))
}

fn sync_options(
    mode: ModeArg,
    namespace: &str,
    signing_key: Option<Vec<u8>>,
    tags: &[String],
    prefixes: &[String],
) -> SyncOptions {
    SyncOptions {
        mode: match mode {
            ModeArg::Ro => Mode::ReadOnly,
            ModeArg::Rw => Mode::ReadWrite,
        },
        namespace: namespace.to_string(),
        signing_key,
        selection: Selection { tags: tags.to_vec(), prefixes: prefixes.to_vec() },
    }
}

/// `diskcachefs mount`'s remote-tier options (docs/REMOTE.md, "Mounted"):
/// the same as `sync`'s, prefixed with `remote-`.
#[derive(clap::Args, Debug, Clone)]
pub struct MountRemoteArgs {
    /// Share entries through this store: `s3://BUCKET/PREFIX`
    /// (AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY) or `redis://HOST:PORT/DB`. A miss in keys/,
    /// task/ or a .resolve asks it; new entries are pushed and pulled in
    /// the background; ops/remote shows its state.
    #[arg(long)]
    pub remote: Option<String>,
    /// `ro`: only read the remote (laptops); `rw`: also push (CI).
    #[arg(long, value_enum, default_value = "rw", requires = "remote")]
    pub remote_mode: ModeArg,
    /// The project's namespace in the store.
    #[arg(long, default_value = "default", requires = "remote")]
    pub remote_namespace: String,
    /// Sign pushed records and accept only signed ones (HMAC-SHA256; the
    /// file's bytes, trailing whitespace trimmed, are the key).
    #[arg(long, requires = "remote")]
    pub remote_signing_key_file: Option<PathBuf>,
    /// Share also the entries with this (str) tag.
    #[arg(long, requires = "remote")]
    pub remote_tag: Vec<String>,
    /// Share also the str keys starting with this.
    #[arg(long, requires = "remote")]
    pub remote_prefix: Vec<String>,
    /// S3 endpoint (instead of AWS_ENDPOINT_URL), e.g. http://127.0.0.1:8333.
    #[arg(long, requires = "remote")]
    pub remote_endpoint: Option<String>,
    /// S3 region (instead of AWS_REGION).
    #[arg(long, requires = "remote")]
    pub remote_region: Option<String>,
    /// Seconds a miss may wait for the remote (all its calls together), and
    /// the deadline of each background call.
    #[arg(long, default_value_t = 2.0, requires = "remote")]
    pub remote_timeout: f64,
    /// Seconds between background pulls of new remote entries (0: none;
    /// misses still ask).
    #[arg(long, default_value_t = 5.0, requires = "remote")]
    pub remote_pull_interval: f64,
    /// Most entries waiting for upload; new ones past it are dropped from
    /// the queue (counted) and queued again once it drains.
    #[arg(long, default_value_t = super::tier::DEFAULT_QUEUE_CAPACITY, requires = "remote")]
    pub remote_queue: usize,
}

impl MountRemoteArgs {
    /// The tier's configuration, `None` without `--remote`; a message
    /// naming the option when one is wrong.
    pub fn tier_config(&self) -> Result<Option<TierConfig>, String> {
        let Some(url) = &self.remote else { return Ok(None) };
        let store = store_options(self.remote_timeout, "--remote-timeout", &self.remote_endpoint, &self.remote_region)?;
        let key = signing_key(self.remote_signing_key_file.as_deref(), "--remote-signing-key-file")?;
        let interval = self.remote_pull_interval;
        if !(interval.is_finite() && (0.0..=86_400.0).contains(&interval)) {
            return Err(format!("--remote-pull-interval {interval}: seconds, 0 (never) to 86400"));
        }
        if self.remote_queue == 0 {
            return Err("--remote-queue 0: at least 1".into());
        }
        // Opened here only to check the URL before mounting.
        store::open(url, &store).map_err(|e| e.to_string())?;
        Ok(Some(TierConfig {
            url: url.clone(),
            store,
            sync: sync_options(self.remote_mode, &self.remote_namespace, key, &self.remote_tag, &self.remote_prefix),
            pull_interval: (interval > 0.0).then(|| Duration::from_secs_f64(interval)),
            queue_capacity: self.remote_queue,
        }))
    }
}
