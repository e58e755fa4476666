//! A pickle's tree as a JSON document: containers as arrays and objects,
//! objects as `{"__class__": ...}` with their arguments and state, other
//! calls as `{"__reduce__": ...}`, the standard library's formats as their
//! text (`stdlib`). Bounded in depth and output ([`MAX_DEPTH`],
//! [`MAX_OUTPUT`]); an object inside itself is `{"__cycle__": true}`.

use super::json::Json;
use super::{MAX_DEPTH, MAX_OUTPUT, bytes, float, stdlib, text};
use crate::cache::pickle::tree::{BigInt, folded_getattr};
use crate::cache::pickle::{Call, CallKind, Id, Node, Pickle};

/// `parse_strings`: strs holding JSON shown parsed (`super::text`).
pub(super) fn render(p: &Pickle, parse_strings: bool) -> Result<Json, String> {
    let mut r = Renderer { p, path: Vec::new(), output: 0, parse_strings };
    r.render(p.root)
}

pub(super) struct Renderer<'a> {
    pub p: &'a Pickle,
    /// The nodes being rendered, outermost first: a node met again on its
    /// own path is a cycle.
    path: Vec<Id>,
    /// An estimate of the document's length so far.
    output: usize,
    parse_strings: bool,
}

impl Renderer<'_> {
    pub fn node(&self, id: Id) -> &Node {
        self.p.node(id)
    }

    /// `module.qualname` when `id` is a global, or `getattr` of one
    /// (`module.qualname.attr`).
    pub fn global_name(&self, id: Id) -> Option<String> {
        match self.node(id) {
            Node::Global(g) => Some(format!("{}.{}", g.0, g.1)),
            Node::Call(c)
                if c.kind == CallKind::Reduce && c.state.is_none() && c.items.is_empty() && c.entries.is_empty() =>
            {
                folded_getattr(&self.p.nodes, c.callable, c.args)
            }
            _ => None,
        }
    }

    pub fn tuple(&self, id: Id) -> Option<&[Id]> {
        match self.node(id) {
            Node::Tuple(items) | Node::List(items) => Some(items),
            _ => None,
        }
    }

    pub fn int(&self, id: Id) -> Option<i64> {
        match self.node(id) {
            Node::Int(i) => Some(*i),
            Node::Bool(b) => Some(i64::from(*b)),
            _ => None,
        }
    }

    pub fn str(&self, id: Id) -> Option<&str> {
        match self.node(id) {
            Node::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The bytes a node stands for: bytes, a bytearray, or what protocols
    /// 0 to 2 write for them (`_codecs.encode(text, "latin1")`,
    /// `builtins.bytes()`, `builtins.bytearray(...)`).
    pub fn bytes_of(&self, id: Id) -> Option<Vec<u8>> {
        self.bytes_within(id, 4)
    }

    /// The bytes a `REDUCE` of `_codecs.encode`, `builtins.bytes` or
    /// `builtins.bytearray` makes.
    pub fn call_bytes(&self, c: &Call) -> Option<Vec<u8>> {
        self.call_bytes_within(c, 4)
    }

    /// `bytes_of`, following at most `hops` calls (a call can hold itself
    /// among its arguments: a list appended to after the call was made).
    fn bytes_within(&self, id: Id, hops: usize) -> Option<Vec<u8>> {
        match self.node(id) {
            Node::Bytes(b) | Node::ByteArray(b) => Some(b.clone()),
            Node::Call(c) if hops > 0 => self.call_bytes_within(c, hops - 1),
            _ => None,
        }
    }

    fn call_bytes_within(&self, c: &Call, hops: usize) -> Option<Vec<u8>> {
        if c.kind != CallKind::Reduce {
            return None;
        }
        let args = self.tuple(c.args)?;
        match self.global_name(c.callable)?.as_str() {
            "_codecs.encode" => {
                let s = self.str(*args.first()?)?;
                let encoding = args.get(1).and_then(|e| self.str(*e)).unwrap_or("utf-8");
                latin1_or_utf8(s, encoding)
            }
            "builtins.bytes" | "builtins.bytearray" => match args {
                [] => Some(Vec::new()),
                [b] => self.bytes_within(*b, hops),
                [s, e] => latin1_or_utf8(self.str(*s)?, self.str(*e)?),
                _ => None,
            },
            _ => None,
        }
    }

    fn charge(&mut self, n: usize) -> Result<(), String> {
        self.output += n;
        if self.output > MAX_OUTPUT {
            return Err(format!("the rendering would be over {MAX_OUTPUT} bytes"));
        }
        Ok(())
    }

    pub fn render(&mut self, id: Id) -> Result<Json, String> {
        if self.path.contains(&id) {
            return Ok(Json::object(vec![("__cycle__", Json::Bool(true))]));
        }
        if self.path.len() >= MAX_DEPTH {
            return Err(format!("nested deeper than {MAX_DEPTH}"));
        }
        self.path.push(id);
        let out = self.render_inner(id);
        self.path.pop();
        out
    }

    fn render_inner(&mut self, id: Id) -> Result<Json, String> {
        self.charge(8)?;
        let p = self.p;
        Ok(match p.node(id) {
            Node::None => Json::Null,
            Node::Bool(b) => Json::Bool(*b),
            Node::Int(i) => Json::Number(i.to_string()),
            Node::BigInt(BigInt::Decimal(d)) => {
                self.charge(d.len())?;
                Json::Number(d.clone())
            }
            Node::BigInt(BigInt::Le(b)) => {
                self.charge(b.len() * 3)?;
                big_int(b)
            }
            Node::Float(f) => float(*f),
            Node::Str(s) => {
                self.charge(s.len())?;
                if self.parse_strings { text(s) } else { Json::str(s.clone()) }
            }
            Node::Bytes(b) => {
                self.charge(b.len() * 2)?;
                bytes(b, "__bytes__", "__base64__")
            }
            Node::ByteArray(b) => {
                self.charge(b.len() * 2)?;
                bytes(b, "__bytearray__", "__bytearray_base64__")
            }
            Node::List(items) | Node::Tuple(items) | Node::Set(items) | Node::FrozenSet(items) => self.array(items)?,
            Node::Dict(pairs) => Json::Object(self.entries(pairs)?),
            Node::Global(g) => Json::object(vec![("__global__", Json::Str(format!("{}.{}", g.0, g.1)))]),
            Node::Call(c) => self.call(c)?,
        })
    }

    pub fn array(&mut self, items: &[Id]) -> Result<Json, String> {
        items.iter().map(|i| self.render(*i)).collect::<Result<_, _>>().map(Json::Array)
    }

    /// Dict entries: a key that is not a str becomes the compact JSON of
    /// its rendering; a repeated key keeps its first place, last value.
    pub fn entries(&mut self, pairs: &[(Id, Id)]) -> Result<Vec<(String, Json)>, String> {
        let mut out: Vec<(String, Json)> = Vec::with_capacity(pairs.len());
        for (k, v) in pairs {
            let key = match self.node(*k) {
                Node::Str(s) => s.clone(),
                _ => self.render(*k)?.compact(),
            };
            let value = self.render(*v)?;
            put(&mut out, key, value);
        }
        Ok(out)
    }

    fn call(&mut self, c: &Call) -> Result<Json, String> {
        let name = self.global_name(c.callable);
        if let Some(name) = &name
            && let Some(decoded) = stdlib::decode(self, c, name)
        {
            return decoded;
        }
        let mut fields: Vec<(String, Json)> = Vec::new();
        let callable = match &name {
            Some(n) => Json::str(n.clone()),
            None => self.render(c.callable)?,
        };
        let args = self.tuple(c.args).map(<[Id]>::to_vec);
        match c.kind {
            CallKind::New => {
                fields.push(("__class__".into(), callable));
                match args {
                    Some(a) if a.is_empty() => {}
                    Some(a) => fields.push(("__args__".into(), self.array(&a)?)),
                    None => fields.push(("__args__".into(), self.render(c.args)?)),
                }
            }
            CallKind::Reduce => {
                fields.push(("__reduce__".into(), callable));
                let rendered = match args {
                    Some(a) => self.array(&a)?,
                    None => self.render(c.args)?,
                };
                fields.push(("__args__".into(), rendered));
            }
        }
        self.finish_object(fields, c)
    }

    /// An object's keyword arguments, state and added items after its
    /// class (or callable) and arguments.
    pub fn finish_object(&mut self, mut fields: Vec<(String, Json)>, c: &Call) -> Result<Json, String> {
        if let Some(kwargs) = c.kwargs {
            fields.push(("__kwargs__".into(), self.render(kwargs)?));
        }
        if let Some(state) = c.state {
            self.state(&mut fields, state)?;
        }
        if !c.items.is_empty() {
            fields.push(("__items__".into(), self.array(&c.items)?));
        }
        if !c.entries.is_empty() {
            fields.push(("__entries__".into(), Json::Object(self.entries(&c.entries)?)));
        }
        Ok(Json::Object(fields))
    }

    /// `BUILD`'s state as fields: a dict's items; pydantic v2's four-key
    /// state as the model's fields, extra fields and `__private__`; a
    /// `(dict, slots)` pair as both; anything else as `__state__`.
    fn state(&mut self, fields: &mut Vec<(String, Json)>, state: Id) -> Result<(), String> {
        if let Node::Dict(pairs) = self.node(state) {
            let pairs = pairs.clone();
            let lookup = |r: &Self, name: &str| pairs.iter().find(|(k, _)| r.str(*k) == Some(name)).map(|(_, v)| *v);
            if let (Some(dict), Some(_)) = (lookup(self, "__dict__"), lookup(self, "__pydantic_fields_set__")) {
                let extra = lookup(self, "__pydantic_extra__");
                let private = lookup(self, "__pydantic_private__");
                for part in [Some(dict), extra].into_iter().flatten() {
                    if let Node::Dict(p) = self.node(part) {
                        let p = p.clone();
                        for (k, v) in self.entries(&p)? {
                            put(fields, k, v);
                        }
                    }
                }
                if let Some(private) = private
                    && let Node::Dict(p) = self.node(private)
                    && !p.is_empty()
                {
                    let p = p.clone();
                    fields.push(("__private__".into(), Json::Object(self.entries(&p)?)));
                }
                return Ok(());
            }
            for (k, v) in self.entries(&pairs)? {
                put(fields, k, v);
            }
            return Ok(());
        }
        if let Node::Tuple(parts) = self.node(state)
            && parts.len() == 2
            && parts.iter().all(|p| matches!(self.node(*p), Node::Dict(_) | Node::None))
        {
            for part in parts.clone() {
                if let Node::Dict(p) = self.node(part) {
                    let p = p.clone();
                    for (k, v) in self.entries(&p)? {
                        put(fields, k, v);
                    }
                }
            }
            return Ok(());
        }
        fields.push(("__state__".into(), self.render(state)?));
        Ok(())
    }
}

/// Inserts keeping a repeated key's first place and last value (a Python
/// dict's assignment).
pub(super) fn put(fields: &mut Vec<(String, Json)>, key: String, value: Json) {
    match fields.iter_mut().find(|(k, _)| *k == key) {
        Some(slot) => slot.1 = value,
        None => fields.push((key, value)),
    }
}

/// Text encoded as `_codecs.encode` would: Latin-1 (what pickle writes
/// for bytes under protocols 0-2), else UTF-8.
fn latin1_or_utf8(s: &str, encoding: &str) -> Option<Vec<u8>> {
    match encoding.to_ascii_lowercase().replace(['-', '_'], "").as_str() {
        "latin1" | "iso88591" | "l1" => s.chars().map(|c| u8::try_from(u32::from(c)).ok()).collect(),
        "utf8" => Some(s.as_bytes().to_vec()),
        _ => None,
    }
}

/// Little-endian two's complement as a JSON number; past Python's 4300
/// digits, `{"__int__": "0x..."}` (exact, and linear to write).
fn big_int(le: &[u8]) -> Json {
    let negative = le.last().is_some_and(|b| b & 0x80 != 0);
    let mut magnitude: Vec<u8> = if negative {
        // Two's complement negation.
        let mut m: Vec<u8> = le.iter().map(|b| !b).collect();
        for b in m.iter_mut() {
            let (v, carry) = b.overflowing_add(1);
            *b = v;
            if !carry {
                break;
            }
        }
        m
    } else {
        le.to_vec()
    };
    while magnitude.last() == Some(&0) {
        magnitude.pop();
    }
    let sign = if negative { "-" } else { "" };
    if magnitude.len() > 1786 {
        let hex: String = magnitude.iter().rev().map(|b| format!("{b:02x}")).collect();
        return Json::object(vec![("__int__", Json::Str(format!("{sign}0x{}", hex.trim_start_matches('0'))))]);
    }
    // Repeated division by 10^9 of the big-endian base-256 digits.
    let mut be: Vec<u32> = magnitude.iter().rev().map(|b| u32::from(*b)).collect();
    let mut chunks: Vec<u32> = Vec::new();
    while be.iter().any(|d| *d != 0) {
        let mut rem: u64 = 0;
        for d in be.iter_mut() {
            let cur = (rem << 8) | u64::from(*d);
            *d = (cur / 1_000_000_000) as u32;
            rem = cur % 1_000_000_000;
        }
        chunks.push(rem as u32);
        while be.first() == Some(&0) {
            be.remove(0);
        }
    }
    let mut s = String::from(sign);
    match chunks.split_last() {
        None => s = "0".into(),
        Some((top, rest)) => {
            s.push_str(&top.to_string());
            for c in rest.iter().rev() {
                s.push_str(&format!("{c:09}"));
            }
        }
    }
    Json::Number(s)
}

#[cfg(test)]
mod tests {
    use super::big_int;
    use crate::cache::render::json::Json;

    #[test]
    fn big_ints_in_decimal() {
        let n = |s: &str| Json::Number(s.into());
        assert_eq!(big_int(&[0, 0, 0, 0, 0, 0, 0, 0, 0x40]), n("1180591620717411303424"));
        assert_eq!(big_int(&[0, 0, 0, 0, 0, 0, 0, 0, 0xc0]), n("-1180591620717411303424"));
        assert_eq!(big_int(&[0, 0, 0, 0, 0, 0, 0, 0x80, 0]), n("9223372036854775808"));
        assert_eq!(big_int(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0xff]), n("-9223372036854775809"));
    }
}
