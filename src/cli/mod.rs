//! The binary's subcommands, one module per family; `main.rs` parses the command line and dispatches here.

pub(crate) mod args;
pub(crate) mod cache_commands;
pub(crate) mod exit;
pub(crate) mod flyte;
pub(crate) mod fstab;
pub(crate) mod generated_docs;
pub(crate) mod mount;
pub(crate) mod open;
pub(crate) mod readable;
