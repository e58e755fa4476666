//! The `diskcachefs` command line: the engine for scripts and people who do
//! not want to mount, the Flyte key tools, and mount/umount.
//!
//! This file parses the command line and dispatches; the subcommands live in
//! `src/cli/`: their definition in `args.rs`; `mount`, `umount` and `serve` in
//! `mount.rs`, with the mount(8)/fstab form in `fstab.rs`; `keys`, `get`,
//! `set`, `delete`, `stats` and `check` in `cache_commands.rs`; `show` and
//! `audit` in `readable.rs`; `flyte2`,
//! `flyte-key` and `literals` in `flyte.rs`; `completions` and `manpage` in
//! `generated_docs.rs`; `sync` in the library's `remote::cli`.
//!
//! Exit status: 0 success; 1 a miss (`get`, `delete`, `show`) or problems
//! found (`check`, `audit`); 2 an error (bad arguments, unreadable cache, bad input).

mod cli;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser;

use cli::args::{Cli, Command};
use cli::exit::Failure;
use cli::fstab::fstab_arguments;
use cli::mount::log_destination;
use cli::{cache_commands, flyte, generated_docs, mount, readable};

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

/// `argv`: the whole command line, as parsed (the `--daemon` child gets it).
fn run(command: Command, argv: &[OsString]) -> Result<ExitCode, Failure> {
    match command {
        Command::Mount(args) => mount::mount(args, argv),
        Command::Umount { mountpoint, if_mounted } => mount::umount(&mountpoint, if_mounted),
        Command::Serve(args) => mount::serve(args),
        Command::Keys { dir, reverse } => cache_commands::keys(dir, reverse),
        Command::Get { dir, key, name } => cache_commands::get(dir, key, name),
        Command::Set { dir, key, file, expire, tag, name } => cache_commands::set(dir, key, file, expire, tag, name),
        Command::Delete { dir, key, name } => cache_commands::delete(dir, key, name),
        Command::Flyte(action) => flyte::flyte(action),
        Command::Flyte2(action) => flyte::flyte2(action),
        Command::Stats { dir, requests } => cache_commands::stats(dir, requests),
        Command::FlyteKey(lookup) => flyte::flyte_key(lookup),
        Command::Literals { file } => flyte::literals(file),
        Command::Completions { shell } => generated_docs::completions(shell),
        Command::Manpage { subcommand } => generated_docs::manpage(subcommand),
        Command::Sync(args) => Ok(diskcachefs::remote::cli::run(args)),
        Command::Check { dir, fix } => cache_commands::check(dir, fix),
        Command::Show { dir, path } => readable::show(dir, path),
        Command::Audit { dir, allow } => readable::audit(dir, allow),
    }
}
