//! The exit statuses besides success: a failure (2, its message on standard error) and a miss (1).

use std::process::ExitCode;

/// A failure to report on standard error with exit status 2.
pub(crate) struct Failure(pub(crate) String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure(e.to_string())
    }
}

pub(crate) fn miss() -> ExitCode {
    ExitCode::from(1)
}
