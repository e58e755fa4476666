//! What a pickle would import, against an allow-list (docs/SEMANTICS.md,
//! "What a pickle would import, and the audit").
//!
//! An allow-list, never a deny-list: the scanners that listed dangerous
//! names (`os.system`, `subprocess.Popen`, ...) were bypassed by names they
//! had not thought of. A name is allowed when it is in the list exactly, or
//! its module is under a `MODULE.*` entry.

use super::read::Reading;
use super::tree::{Id, Node, Pickle, folded_getattr};

/// Whether every reference to `builtins.getattr` in `p` is the callable
/// of a call `getattr(GLOBAL, "name")` (and nothing hands it to anything
/// else, which might call it).
fn getattr_only_folded(p: &Pickle) -> bool {
    let is_getattr = |id: &Id| matches!(p.node(*id), Node::Global(g) if g.0 == "builtins" && g.1 == "getattr");
    if is_getattr(&p.root) {
        return false;
    }
    p.nodes.iter().all(|node| match node {
        Node::List(v) | Node::Tuple(v) | Node::Set(v) | Node::FrozenSet(v) => !v.iter().any(is_getattr),
        Node::Dict(pairs) => !pairs.iter().any(|(k, v)| is_getattr(k) || is_getattr(v)),
        Node::Call(c) => {
            let callable_ok = !is_getattr(&c.callable) || folded_getattr(&p.nodes, c.callable, c.args).is_some();
            callable_ok
                && !is_getattr(&c.args)
                && !c.kwargs.iter().chain(c.state.iter()).chain(c.items.iter()).any(is_getattr)
                && !c.entries.iter().any(|(k, v)| is_getattr(k) || is_getattr(v))
        }
        _ => true,
    })
}

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
    "zoneinfo.ZoneInfo",
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
    /// `builtins.getattr` is judged by what it fetches: allowed when every
    /// use of it is a call `getattr(GLOBAL, "name")`, whose
    /// `GLOBAL.name` the reader records and this list judges.
    pub fn not_allowed(&self, reading: &Reading) -> Vec<String> {
        let getattr_folded = reading.result.as_ref().is_ok_and(getattr_only_folded);
        reading
            .imports
            .iter()
            .filter(|n| !(self.allows(n) || (n.as_str() == "builtins.getattr" && getattr_folded)))
            .cloned()
            .collect()
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
    fn getattr_is_judged_by_what_it_fetches() {
        let list = AllowList::standard();
        // getattr(zoneinfo.ZoneInfo, "_unpickle")("UTC", 1), protocol 4.
        let zone = b"\x80\x04\x8c\x08builtins\x8c\x07getattr\x93\x8c\x08zoneinfo\x8c\x08ZoneInfo\x93\x8c\x09_unpickle\x86R\x8c\x03UTC\x4b\x01\x86R.";
        let reading = read(zone);
        assert!(reading.imports.contains(&"zoneinfo.ZoneInfo._unpickle".to_string()), "{:?}", reading.imports);
        assert_eq!(list.not_allowed(&reading), Vec::<String>::new());
        // getattr(os.path, "join")(...): judged as os.path.join.
        let join =
            b"\x80\x04\x8c\x08builtins\x8c\x07getattr\x93\x8c\x02os\x8c\x04path\x93\x8c\x04join\x86R\x8c\x01a\x85R.";
        assert_eq!(list.not_allowed(&read(join)), vec!["os.path".to_string(), "os.path.join".to_string()]);
        // getattr handed to something else is not allowed.
        let handed = b"\x80\x04\x8c\x0bcollections\x8c\x0bdefaultdict\x93\x8c\x08builtins\x8c\x07getattr\x93\x85R.";
        assert!(list.not_allowed(&read(handed)).contains(&"builtins.getattr".to_string()));
    }

    #[test]
    fn names_a_call_to_os_system() {
        let reading = read(b"cos\nsystem\n(S'true'\ntR.");
        assert_eq!(AllowList::standard().not_allowed(&reading), vec!["os.system".to_string()]);
    }
}
