//! Documents made from the command line's definition: shell completion scripts and man pages.

use std::io;
use std::process::ExitCode;

use clap::CommandFactory;

use super::args::Cli;
use super::exit::Failure;

pub(crate) fn completions(shell: clap_complete::Shell) -> Result<ExitCode, Failure> {
    clap_complete::generate(shell, &mut Cli::command(), "diskcachefs", &mut io::stdout());
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn manpage(subcommand: Option<String>) -> Result<ExitCode, Failure> {
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
