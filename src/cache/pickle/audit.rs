//! What a pickle would import, against an allow-list (docs/SEMANTICS.md,
//! "What a pickle would import, and the audit").
//!
//! An allow-list, never a deny-list: the scanners that listed dangerous
//! names (`os.system`, `subprocess.Popen`, ...) were bypassed by names they
//! had not thought of. A name is allowed when it is in the list exactly, or
//! its module is under a `MODULE.*` entry.

use super::read::Reading;

/// The standard library's reducers that make data and call nothing else:
/// what python-diskcache values of plain Python data import.
pub const DEFAULT_ALLOWED: &[&str] = &[
    "builtins.bool",
    "builtins.bytearray",
    "builtins.bytes",
    "builtins.complex",
    "builtins.dict",
    "builtins.float",
    "builtins.frozenset",
    "builtins.int",
    "builtins.list",
    "builtins.object",
    "builtins.range",
    "builtins.set",
    "builtins.slice",
    "builtins.str",
    "builtins.tuple",
    "copyreg._reconstructor",
    "copyreg.__newobj__",
    "copyreg.__newobj_ex__",
    "_codecs.encode",
    "collections.OrderedDict",
    "collections.defaultdict",
    "collections.deque",
    "collections.Counter",
    "datetime.date",
    "datetime.datetime",
    "datetime.time",
    "datetime.timedelta",
    "datetime.timezone",
    "decimal.Decimal",
    "fractions.Fraction",
    "uuid.UUID",
    "uuid.SafeUUID",
    "zoneinfo.ZoneInfo._unpickle",
    "pathlib.PurePosixPath",
    "pathlib.PosixPath",
    "pathlib.PureWindowsPath",
    "pathlib.WindowsPath",
];

/// Names a pickle may import: exact `module.qualname`s and `module.*`
/// prefixes.
#[derive(Clone, Debug, Default)]
pub struct AllowList {
    exact: Vec<String>,
    modules: Vec<String>,
}

impl AllowList {
    /// The built-in list.
    pub fn standard() -> AllowList {
        let mut list = AllowList::default();
        for name in DEFAULT_ALLOWED {
            list.add(name).expect("the built-in names are well-formed");
        }
        list
    }

    /// Adds `MODULE.NAME` or `MODULE.*`.
    pub fn add(&mut self, entry: &str) -> Result<(), String> {
        let bad = || format!("{entry:?} is not MODULE.NAME or MODULE.*");
        if let Some(module) = entry.strip_suffix(".*") {
            if module.is_empty() || module.split('.').any(str::is_empty) {
                return Err(bad());
            }
            self.modules.push(module.to_string());
        } else {
            if !entry.contains('.') || entry.split('.').any(str::is_empty) || entry.contains('*') {
                return Err(bad());
            }
            self.exact.push(entry.to_string());
        }
        Ok(())
    }

    /// Whether `name` (`module.qualname`, as [`Reading::imports`] has them)
    /// is allowed. `module` is known from the pickle, but the recorded name
    /// joins the two with a dot, so a `MODULE.*` entry matches any name
    /// that starts with `MODULE.`.
    pub fn allows(&self, name: &str) -> bool {
        self.exact.iter().any(|e| e == name)
            || self
                .modules
                .iter()
                .any(|m| name.len() > m.len() + 1 && name.starts_with(m.as_str()) && name.as_bytes()[m.len()] == b'.')
    }

    /// The names of `reading` this list does not allow, in order.
    pub fn not_allowed(&self, reading: &Reading) -> Vec<String> {
        reading.imports.iter().filter(|n| !self.allows(n)).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::pickle::read;

    #[test]
    fn standard_list_and_prefixes() {
        let mut list = AllowList::standard();
        assert!(list.allows("datetime.datetime"));
        assert!(!list.allows("os.system"));
        assert!(!list.allows("datetime.datetimex"));
        list.add("numpy.*").unwrap();
        assert!(list.allows("numpy._core.numeric._frombuffer"));
        assert!(!list.allows("numpyx.a"));
        assert!(list.add("*").is_err());
        assert!(list.add("os").is_err());
        assert!(list.add("os..system").is_err());
    }

    #[test]
    fn names_a_call_to_os_system() {
        let reading = read(b"cos\nsystem\n(S'true'\ntR.");
        assert_eq!(AllowList::standard().not_allowed(&reading), vec!["os.system".to_string()]);
    }
}
