//! What a pickle builds, as data: an arena of [`Node`]s, each a value, a
//! container, a global's name or a call Python would make (with what the
//! pickle did to its result after). `read.rs` builds it; `audit.rs` and
//! `crate::cache::render` read it.

/// A node's index in [`Pickle::nodes`].
pub type Id = u32;

/// What a pickle builds, as data.
#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    None,
    Bool(bool),
    Int(i64),
    /// An int beyond 64 bits: little-endian two's complement (`LONG1`,
    /// `LONG4`), or its decimal text (`INT`, `LONG` of protocol 0).
    BigInt(BigInt),
    Float(f64),
    /// Text (invalid UTF-8, as Python's `surrogatepass` could hold,
    /// replaced by U+FFFD).
    Str(String),
    Bytes(Vec<u8>),
    ByteArray(Vec<u8>),
    List(Vec<Id>),
    Tuple(Vec<Id>),
    Dict(Vec<(Id, Id)>),
    Set(Vec<Id>),
    FrozenSet(Vec<Id>),
    /// A class or function Python would import: `(module, qualname)`.
    Global(Box<(String, String)>),
    /// What Python would get by calling something.
    Call(Box<Call>),
}

#[derive(Clone, Debug, PartialEq)]
pub enum BigInt {
    Le(Vec<u8>),
    Decimal(String),
}

/// How a [`Call`] came about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallKind {
    /// `REDUCE`: `callable(*args)`.
    Reduce,
    /// `NEWOBJ`, `NEWOBJ_EX`, `OBJ`, `INST`: an instance of the class
    /// `callable`, made with `args` (and `kwargs`).
    New,
}

/// A call Python would make, and what the pickle did to its result after.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    pub kind: CallKind,
    pub callable: Id,
    /// Usually a [`Node::Tuple`]; whatever the pickle put there.
    pub args: Id,
    pub kwargs: Option<Id>,
    /// `BUILD`'s argument (the last one, when several).
    pub state: Option<Id>,
    /// Added by `APPEND`, `APPENDS`, `ADDITEMS`.
    pub items: Vec<Id>,
    /// Added by `SETITEM`, `SETITEMS`.
    pub entries: Vec<(Id, Id)>,
}

/// A pickle read as data: its nodes, the one `STOP` returned, and what it
/// would import.
#[derive(Clone, Debug)]
pub struct Pickle {
    pub nodes: Vec<Node>,
    pub root: Id,
    pub protocol: u8,
}

impl Pickle {
    pub fn node(&self, id: Id) -> &Node {
        &self.nodes[id as usize]
    }
}

/// `module.qualname.attr` when `callable(*args)` is `builtins.getattr`
/// of a global and a constant name (how Python 3.12+ pickles an Enum
/// member, and `zoneinfo` its zones).
pub fn folded_getattr(nodes: &[Node], callable: Id, args: Id) -> Option<String> {
    let Node::Global(g) = &nodes[callable as usize] else { return None };
    if g.0 != "builtins" || g.1 != "getattr" {
        return None;
    }
    let Node::Tuple(a) = &nodes[args as usize] else { return None };
    match a.as_slice() {
        [target, attr] => match (&nodes[*target as usize], &nodes[*attr as usize]) {
            (Node::Global(t), Node::Str(attr)) => Some(format!("{}.{}.{attr}", t.0, t.1)),
            _ => None,
        },
        _ => None,
    }
}

pub(super) fn kind_name(node: &Node) -> &'static str {
    match node {
        Node::None => "None",
        Node::Bool(_) => "a bool",
        Node::Int(_) | Node::BigInt(_) => "an int",
        Node::Float(_) => "a float",
        Node::Str(_) => "a str",
        Node::Bytes(_) => "bytes",
        Node::ByteArray(_) => "a bytearray",
        Node::List(_) => "a list",
        Node::Tuple(_) => "a tuple",
        Node::Dict(_) => "a dict",
        Node::Set(_) => "a set",
        Node::FrozenSet(_) => "a frozenset",
        Node::Global(_) => "a class",
        Node::Call(_) => "an object",
    }
}
