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
    #[arg(long, value_enum, default_value = "rw")]
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
    if !(args.timeout.is_finite() && args.timeout > 0.0 && args.timeout <= 3600.0) {
        return Err(format!("--timeout {}: seconds, more than 0 and at most 3600", args.timeout));
    }
    let signing_key = match &args.signing_key_file {
        None => None,
        Some(path) => {
            let mut key = std::fs::read(path).map_err(|e| format!("--signing-key-file {}: {e}", path.display()))?;
            while key.last().is_some_and(u8::is_ascii_whitespace) {
                key.pop();
            }
            if key.is_empty() {
                return Err(format!("--signing-key-file {}: the file is empty", path.display()));
            }
            Some(key)
        }
    };
    let store_opts = StoreOptions {
        deadline: Duration::from_secs_f64(args.timeout),
        endpoint: args.endpoint.clone(),
        region: args.region.clone(),
        credentials: None,
    };
    let opts = SyncOptions {
        mode: match args.mode {
            ModeArg::Ro => Mode::ReadOnly,
            ModeArg::Rw => Mode::ReadWrite,
        },
        namespace: args.namespace.clone(),
        signing_key,
        selection: Selection { tags: args.tags.clone(), prefixes: args.prefixes.clone() },
    };
    Ok((store_opts, opts))
}
