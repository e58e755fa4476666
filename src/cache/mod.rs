//! The diskcache-compatible engine: python-diskcache 5.6's `Cache` over the
//! very same directory (`cache.db` plus `XX/YY/*.val` value files), safe to
//! use at the same time as python-diskcache and flytekit processes.
//!
//! Modules follow `diskcache/core.py`'s order: [`settings`] (the format's
//! constants), [`types`] (keys, values, tags), [`disk`] (value files, never
//! SQL), [`core`] (the `Cache` handle and its transactions; never file
//! names), whose operations are spread over private modules by concern
//! (opening, a row's value, reads, writes, queues, bulk removal, check,
//! settings, iteration: see [`core`]'s table), then [`meta`] (what file
//! views need beyond core.py), [`pickle`] (pickles read as data, never
//! run) and [`render`] (any value as a JSON document for a person).
//!
//! ```no_run
//! use diskcachefs::cache::{Cache, Key, Value};
//! let cache = Cache::open(std::path::Path::new("/tmp/demo-cache")).unwrap();
//! cache.set(&Key::Str("greeting".into()), &Value::Str("hello".into()), None, None).unwrap();
//! assert_eq!(cache.get(&Key::Str("greeting".into())).unwrap(), Some(Value::Str("hello".into())));
//! ```

mod bulk;
mod check;
mod config;
pub mod core;
pub mod disk;
pub mod error;
pub mod fanout;
mod iter;
pub mod meta;
mod open;
pub mod pickle;
pub mod pyrepr;
mod queue;
mod read;
mod read_cache;
pub mod render;
mod row;
pub mod settings;
#[cfg(test)]
mod testing;
pub mod types;
mod write;

pub use self::core::{Attr, Cache, CacheOptions, CheckKind, CheckWarning, Clock, KeyIter, ReadHandle, system_clock};
pub use self::error::{Error, OpenError};
pub use self::fanout::FanoutCache;
pub use self::meta::{AccessLog, EntryMeta, InlineMeta, KeyFrom, NewValue, RawContent, RenameOutcome, ValueType};
pub use self::open::statements_run;
pub use self::settings::{EvictionPolicy, Settings};
pub use self::types::{Entry, Key, Number, Scalar, Side, Value};
