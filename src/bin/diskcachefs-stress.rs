//! `diskcachefs-stress`: one process of concurrent load on a cache through
//! the Rust engine, for the concurrency tests and soak runs: `--incr` a
//! shared counter and `--set` keys of its own, interleaved, and exit 1 with
//! the first error any operation returned (there must be none).
//!
//! `diskcachefs-stress DIR --name W --incr-key K --incrs N --sets M [--start-at T]`
//!
//! `--verifiable N` instead sets N self-verifying values of mixed sizes
//! (inline and file-backed) on the keys `NAME-0` .. `NAME-9`, for the crash
//! tests: `KEY|VERSION|LENGTH|` then filler bytes `VERSION % 251` up to LENGTH.
//! Each set that returned is acknowledged on standard output, `ack KEY
//! VERSION` a line, flushed, so that a test that kills the process knows
//! which values must survive.

use std::path::PathBuf;
use std::process::ExitCode;

use std::io::Write;

use clap::Parser;
use diskcachefs::cache::{Cache, Key, Value};

#[derive(Parser)]
struct Args {
    dir: PathBuf,
    /// This worker's name: its keys are `NAME-0` .. `NAME-(M-1)`.
    #[arg(long)]
    name: String,
    /// The counter every worker increments.
    #[arg(long, default_value = "counter")]
    incr_key: String,
    #[arg(long, default_value_t = 0)]
    incrs: u64,
    #[arg(long, default_value_t = 0)]
    sets: u64,
    /// Wait until this Unix time before starting, so that several processes
    /// really run at once.
    #[arg(long)]
    start_at: Option<f64>,
    #[arg(long, default_value_t = 0)]
    verifiable: u64,
}

/// A value that says what it is: `KEY|VERSION|LENGTH|` and filler.
fn verifiable_value(key: &str, version: u64, len: usize) -> Vec<u8> {
    let mut v = format!("{key}|{version}|{len}|").into_bytes();
    v.resize(len.max(v.len()), (version % 251) as u8);
    v
}

fn main() -> ExitCode {
    let args = Args::parse();
    let cache = match Cache::open(&args.dir) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}: open: {e}", args.name);
            return ExitCode::from(1);
        }
    };
    if let Some(start) = args.start_at {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        if start > now {
            std::thread::sleep(std::time::Duration::from_secs_f64(start - now));
        }
    }
    let mut seed = std::process::id() as u64 ^ 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for version in 1..=args.verifiable {
        let key = format!("{}-{}", args.name, next() % 10);
        let len = if next() % 2 == 0 { 40 + (next() % 300) as usize } else { 40_000 + (next() % 260_000) as usize };
        let value = Value::Bytes(verifiable_value(&key, version, len));
        if let Err(e) = cache.set(&Key::Str(key.clone()), &value, None, None) {
            eprintln!("{}: set #{version}: {e}", args.name);
            return ExitCode::from(1);
        }
        let mut out = std::io::stdout().lock();
        // A reader gone (the test stopped listening) changes nothing here.
        let _ = writeln!(out, "ack {key} {version}").and_then(|()| out.flush());
    }
    let counter = Key::Str(args.incr_key.clone());
    let steps = args.incrs.max(args.sets);
    for i in 0..steps {
        if i < args.incrs
            && let Err(e) = cache.incr(&counter, 1, Some(0))
        {
            eprintln!("{}: incr #{i}: {e}", args.name);
            return ExitCode::from(1);
        }
        if i < args.sets {
            let key = Key::Str(format!("{}-{i}", args.name));
            let value = Value::Bytes(format!("{}:{i}", args.name).into_bytes());
            if let Err(e) = cache.set(&key, &value, None, None) {
                eprintln!("{}: set #{i}: {e}", args.name);
                return ExitCode::from(1);
            }
        }
    }
    ExitCode::SUCCESS
}
