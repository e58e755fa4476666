//! The Flyte subcommands: flyte2 (Flyte 2's task cache), flyte-key and literals.

use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use diskcachefs::cache::Cache;

use super::args::{Flyte2Command, FlyteCommand, TaskLookup};
use super::exit::{Failure, miss};
use super::open::{open_existing, require_cache};

pub(crate) fn flyte(action: FlyteCommand) -> Result<ExitCode, Failure> {
    use diskcachefs::flyte::stale::{find_stale, prune_stale};
    match action {
        FlyteCommand::Ls { dir } => {
            let cache = open_existing(&dir)?;
            let summary = diskcachefs::flyte::summary::summarize(&cache)?;
            println!("{}", serde_json::to_string_pretty(&summary)?);
            Ok(ExitCode::SUCCESS)
        }
        FlyteCommand::Prune { dir, stale: _, dry_run } => {
            require_cache(&dir)?;
            let cache = Cache::open(&dir)?;
            let entries = if dry_run { find_stale(&cache)? } else { prune_stale(&cache)? };
            for entry in &entries {
                println!("{}", serde_json::to_string(entry)?);
            }
            Ok(ExitCode::SUCCESS)
        }
        FlyteCommand::Explain { dir, lookup: TaskLookup { task, version, ignore, file } } => {
            let inputs = read_input(file.as_deref())?;
            let cache = open_existing(&dir)?;
            let explained = diskcachefs::flyte::explain::explain(&cache, &task, &version, &inputs, &ignore)
                .map_err(|e| Failure(e.to_string()))?;
            println!("{}", serde_json::to_string_pretty(&explained)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub(crate) fn flyte2(action: Flyte2Command) -> Result<ExitCode, Failure> {
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
        Flyte2Command::Explain { dir, task } => {
            let cache = open_existing(&dir)?;
            for explained in diskcachefs::flyte::flyte2_explain::explain_runs(&cache, task.as_deref())? {
                println!("{}", serde_json::to_string(&explained)?);
            }
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

pub(crate) fn flyte_key(lookup: TaskLookup) -> Result<ExitCode, Failure> {
    let TaskLookup { task, version, ignore, file } = lookup;
    let inputs = read_input(file.as_deref())?;
    let key = diskcachefs::flyte::cache_key(&task, &version, &inputs, &ignore)?;
    println!("{key}");
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn literals(file: Option<PathBuf>) -> Result<ExitCode, Failure> {
    let bytes = read_input(file.as_deref())?;
    let map = diskcachefs::flyte::decode_literal_map(&bytes)?;
    println!("{}", serde_json::to_string_pretty(&diskcachefs::flyte::render::literal_map_to_json(&map))?);
    Ok(ExitCode::SUCCESS)
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
