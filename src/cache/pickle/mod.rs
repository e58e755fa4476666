//! Reading pickles as data, never as code (docs/SEMANTICS.md, "Values as
//! JSON"; docs/RELIABILITY.md, "Pickles").
//!
//! python-diskcache pickles every value that is not `str`, `bytes`, `int`
//! or `float`, and Python's unpickler imports and calls whatever a pickle
//! names (CVE-2025-69872). This reader runs the same machine as CPython's
//! `pickle._Unpickler` — the stack, the marks and the memo modelled exactly,
//! so that memo and `STACK_GLOBAL` tricks that fooled denylist scanners read
//! here as Python would read them — but a global stays a name and a call
//! stays a node holding its callable and arguments. Nothing is imported,
//! nothing is called.
//!
//! - [`tree`]: what a pickle builds ([`Pickle`], an arena of [`Node`]s).
//! - [`read`]: bytes to a [`Pickle`] and the names the pickle would
//!   import, within [`Limits`] whatever the input; `text`: protocol 0's
//!   text arguments as Python decodes them.
//! - [`audit`]: those names against an allow-list.
//! - `compat`: Python 2's names, mapped as Python 3 maps them.

pub mod audit;
mod compat;
pub mod read;
mod text;
pub mod tree;

pub use self::audit::{AllowList, DEFAULT_ALLOWED};
pub use self::read::{Limits, PickleError, Reading, read, read_with};
pub use self::tree::{Call, CallKind, Id, Node, Pickle};
