//! The pickle machine, without imports or calls.
//!
//! Opcode by opcode as CPython 3.11's `Lib/pickle.py` `_Unpickler.load_*`:
//! `MARK` starts a new stack and keeps the old one on a meta-stack (so an
//! opcode can never reach below its mark), `MEMOIZE` stores at `len(memo)`
//! while `PUT`/`BINPUT` store at their argument (the two mixed as Python
//! mixes them), and a pickle ends at the first `STOP`. Where Python would
//! import (`GLOBAL`, `STACK_GLOBAL`, `INST`) this records the name; where it
//! would call (`REDUCE`, `NEWOBJ`, `OBJ`, `BUILD` of a `__setstate__`,
//! `APPEND` to an object) it builds a [`Call`] node that says so.
//!
//! Bounds (docs/RELIABILITY.md, "Pickles"): the input length, the number of
//! nodes, of references held by containers, and of open marks are capped
//! ([`Limits`]); beyond any of them reading stops with an error. Every
//! length is checked against the bytes left before anything is allocated,
//! and nothing recurses, so no input can panic, hang or exhaust memory.

use std::collections::HashMap;

use super::compat::fix_import;
use super::text::{escape_decode, parse_python_float, raw_unicode_escape_decode};
use super::tree::{BigInt, Call, CallKind, Id, Node, Pickle};
use super::tree::{folded_getattr, kind_name};

/// Why a pickle could not be read, and where.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("byte {offset}: {what}")]
pub struct PickleError {
    pub offset: usize,
    pub what: String,
}

/// What reading found: the names Python would import, in the order it
/// would import them (also when reading stopped with an error: Python
/// imports each before it fails), and the pickle or the error.
#[derive(Debug)]
pub struct Reading {
    pub imports: Vec<String>,
    pub result: Result<Pickle, PickleError>,
}

/// The reader's bounds (docs/RELIABILITY.md, "Pickles").
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_input: usize,
    /// Objects built (each opcode builds at most one).
    pub max_nodes: usize,
    /// References held by containers, calls, the stack and the memo.
    pub max_cells: usize,
    /// Marks open at once.
    pub max_marks: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { max_input: 256 << 20, max_nodes: 1 << 20, max_cells: 4 << 20, max_marks: 10_000 }
    }
}

/// Reads `data` within the default [`Limits`].
pub fn read(data: &[u8]) -> Reading {
    read_with(data, &Limits::default())
}

pub fn read_with(data: &[u8], limits: &Limits) -> Reading {
    let mut machine = Machine {
        data,
        pos: 0,
        op_start: 0,
        limits: *limits,
        nodes: Vec::new(),
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        cells: 0,
        protocol: 0,
        imports: Vec::new(),
    };
    let result = if data.len() > limits.max_input {
        Err(PickleError {
            offset: 0,
            what: format!("{} bytes is more than the reader takes ({})", data.len(), limits.max_input),
        })
    } else {
        machine.run().map(|root| Pickle { nodes: std::mem::take(&mut machine.nodes), root, protocol: machine.protocol })
    };
    Reading { imports: machine.imports, result }
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    op_start: usize,
    limits: Limits,
    nodes: Vec<Node>,
    stack: Vec<Id>,
    /// The stacks below each open mark (Python's `metastack`).
    marks: Vec<Vec<Id>>,
    memo: HashMap<u64, Id>,
    cells: usize,
    protocol: u8,
    imports: Vec<String>,
}

type Step<T> = Result<T, PickleError>;

impl Machine<'_> {
    fn fail<T>(&self, what: impl Into<String>) -> Step<T> {
        Err(PickleError { offset: self.op_start, what: what.into() })
    }

    fn take(&mut self, n: usize) -> Step<&[u8]> {
        if self.data.len() - self.pos < n {
            return self.fail("pickle data was truncated");
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u8(&mut self) -> Step<u8> {
        Ok(self.take(1)?[0])
    }

    fn le<const N: usize>(&mut self) -> Step<[u8; N]> {
        Ok(self.take(N)?.try_into().expect("took N bytes"))
    }

    /// A length from the input, refused when more than the bytes left.
    fn length(&mut self, len: u64) -> Step<usize> {
        match usize::try_from(len) {
            Ok(n) if n <= self.data.len() - self.pos => Ok(n),
            _ => self.fail("pickle data was truncated"),
        }
    }

    /// Bytes up to a newline, without it (Python's `readline()[:-1]`).
    fn line(&mut self) -> Step<&[u8]> {
        let rest = &self.data[self.pos..];
        match rest.iter().position(|b| *b == b'\n') {
            Some(i) => {
                self.pos += i + 1;
                Ok(&rest[..i])
            }
            None => self.fail("pickle data was truncated (no newline)"),
        }
    }

    fn cell(&mut self, n: usize) -> Step<()> {
        self.cells += n;
        if self.cells > self.limits.max_cells {
            return self.fail(format!("more than {} references", self.limits.max_cells));
        }
        Ok(())
    }

    fn new_node(&mut self, node: Node) -> Step<Id> {
        if self.nodes.len() >= self.limits.max_nodes {
            return self.fail(format!("more than {} objects", self.limits.max_nodes));
        }
        self.nodes.push(node);
        Ok((self.nodes.len() - 1) as Id)
    }

    fn push(&mut self, node: Node) -> Step<()> {
        let id = self.new_node(node)?;
        self.push_id(id)
    }

    fn push_id(&mut self, id: Id) -> Step<()> {
        self.cell(1)?;
        self.stack.push(id);
        Ok(())
    }

    fn pop(&mut self) -> Step<Id> {
        match self.stack.pop() {
            Some(id) => Ok(id),
            None => self.fail("stack underflow (nothing above the mark)"),
        }
    }

    fn top(&self) -> Step<Id> {
        match self.stack.last() {
            Some(id) => Ok(*id),
            None => self.fail("stack underflow (nothing above the mark)"),
        }
    }

    /// The items above the top mark, and the mark removed (`pop_mark`).
    fn pop_mark(&mut self) -> Step<Vec<Id>> {
        match self.marks.pop() {
            Some(below) => Ok(std::mem::replace(&mut self.stack, below)),
            None => self.fail("no mark on the stack"),
        }
    }

    fn text(bytes: &[u8]) -> String {
        String::from_utf8_lossy(bytes).into_owned()
    }

    /// Python's `find_class`: the name it would import, recorded.
    fn global(&mut self, module: String, name: String) -> Step<Id> {
        let (module, name) = if self.protocol < 3 { fix_import(&module, &name) } else { (module, name) };
        self.record(format!("{module}.{name}"))?;
        self.new_node(Node::Global(Box::new((module, name))))
    }

    fn record(&mut self, full: String) -> Step<()> {
        if !self.imports.contains(&full) {
            if self.imports.len() >= 10_000 {
                return self.fail("more than 10000 distinct imports");
            }
            self.imports.push(full);
        }
        Ok(())
    }

    fn memo_get(&mut self, index: u64) -> Step<()> {
        match self.memo.get(&index) {
            Some(id) => {
                let id = *id;
                self.push_id(id)
            }
            None => self.fail(format!("memo value not found at index {index}")),
        }
    }

    fn memo_put(&mut self, index: u64) -> Step<()> {
        let top = self.top()?;
        self.cell(1)?;
        self.memo.insert(index, top);
        Ok(())
    }

    fn call(&mut self, kind: CallKind, callable: Id, args: Id, kwargs: Option<Id>) -> Step<Id> {
        self.cell(3)?;
        self.new_node(Node::Call(Box::new(Call {
            kind,
            callable,
            args,
            kwargs,
            state: None,
            items: Vec::new(),
            entries: Vec::new(),
        })))
    }

    fn tuple_of(&mut self, items: Vec<Id>) -> Step<Id> {
        self.cell(items.len())?;
        self.new_node(Node::Tuple(items))
    }

    /// `APPEND`, `APPENDS`, `ADDITEMS` onto the object at `target`.
    fn add_items(&mut self, target: Id, items: Vec<Id>, set: bool) -> Step<()> {
        self.cell(items.len())?;
        let what = match &mut self.nodes[target as usize] {
            Node::List(v) if !set => {
                v.extend(items);
                return Ok(());
            }
            Node::Set(v) if set => {
                v.extend(items);
                return Ok(());
            }
            Node::Call(c) => {
                c.items.extend(items);
                return Ok(());
            }
            other => kind_name(other),
        };
        self.fail(format!("cannot add items to {what}"))
    }

    fn set_items(&mut self, target: Id, items: Vec<Id>) -> Step<()> {
        if !items.len().is_multiple_of(2) {
            return self.fail("odd number of items for SETITEMS");
        }
        self.cell(items.len())?;
        let pairs = items.chunks(2).map(|p| (p[0], p[1]));
        let what = match &mut self.nodes[target as usize] {
            Node::Dict(v) => {
                v.extend(pairs);
                return Ok(());
            }
            Node::Call(c) => {
                c.entries.extend(pairs);
                return Ok(());
            }
            other => kind_name(other),
        };
        self.fail(format!("cannot set items of {what}"))
    }

    fn run(&mut self) -> Step<Id> {
        loop {
            self.op_start = self.pos;
            let op = match self.data.get(self.pos) {
                Some(op) => *op,
                None => return self.fail("pickle data was truncated (no STOP)"),
            };
            self.pos += 1;
            match op {
                b'(' => {
                    if self.marks.len() >= self.limits.max_marks {
                        return self.fail(format!("more than {} marks open", self.limits.max_marks));
                    }
                    let below = std::mem::take(&mut self.stack);
                    self.marks.push(below);
                }
                b'.' => return self.pop(),
                b'0' => {
                    if self.stack.pop().is_none() {
                        self.pop_mark()?;
                    }
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let top = self.top()?;
                    self.push_id(top)?;
                }
                // Numbers.
                b'F' => {
                    let line = Self::text(self.line()?);
                    let f = parse_python_float(&line)
                        .map_or_else(|| self.fail(format!("could not convert {line:?} to float")), Ok)?;
                    self.push(Node::Float(f))?;
                }
                b'G' => {
                    let f = f64::from_be_bytes(self.le::<8>()?);
                    self.push(Node::Float(f))?;
                }
                b'I' => {
                    let line = Self::text(self.line()?);
                    let node = match line.as_str() {
                        "00" => Node::Bool(false),
                        "01" => Node::Bool(true),
                        text => self.int_text(text)?,
                    };
                    self.push(node)?;
                }
                b'L' => {
                    let line = Self::text(self.line()?);
                    let text = line.strip_suffix('L').unwrap_or(&line).to_string();
                    let node = self.int_text(&text)?;
                    self.push(node)?;
                }
                b'J' => {
                    let v = i32::from_le_bytes(self.le::<4>()?);
                    self.push(Node::Int(v.into()))?;
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Node::Int(v.into()))?;
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.le::<2>()?);
                    self.push(Node::Int(v.into()))?;
                }
                0x8a => {
                    let n = self.u8()? as usize;
                    let bytes = self.take(n)?.to_vec();
                    let node = long_node(bytes);
                    self.push(node)?;
                }
                0x8b => {
                    let n = i32::from_le_bytes(self.le::<4>()?);
                    if n < 0 {
                        return self.fail("LONG pickle has negative byte count");
                    }
                    let n = self.length(n as u64)?;
                    let bytes = self.take(n)?.to_vec();
                    self.push(long_node(bytes))?;
                }
                // Constants.
                b'N' => self.push(Node::None)?,
                0x88 => self.push(Node::Bool(true))?,
                0x89 => self.push(Node::Bool(false))?,
                // Strings.
                b'S' => {
                    let line = self.line()?.to_vec();
                    let quoted =
                        line.len() >= 2 && line[0] == line[line.len() - 1] && (line[0] == b'\'' || line[0] == b'"');
                    if !quoted {
                        return self.fail("the STRING opcode argument must be quoted");
                    }
                    let raw = match escape_decode(&line[1..line.len() - 1]) {
                        Some(raw) => raw,
                        None => return self.fail("invalid escape in STRING"),
                    };
                    let node = self.py2_string(raw)?;
                    self.push(node)?;
                }
                b'T' => {
                    let n = i32::from_le_bytes(self.le::<4>()?);
                    if n < 0 {
                        return self.fail("BINSTRING pickle has negative byte count");
                    }
                    let n = self.length(n as u64)?;
                    let raw = self.take(n)?.to_vec();
                    let node = self.py2_string(raw)?;
                    self.push(node)?;
                }
                b'U' => {
                    let n = self.u8()? as usize;
                    let raw = self.take(n)?.to_vec();
                    let node = self.py2_string(raw)?;
                    self.push(node)?;
                }
                b'V' => {
                    let line = self.line()?;
                    let s = raw_unicode_escape_decode(line);
                    self.push(Node::Str(s))?;
                }
                b'X' => {
                    let n = u32::from_le_bytes(self.le::<4>()?);
                    self.counted_str(n.into())?;
                }
                0x8c => {
                    let n = self.u8()?;
                    self.counted_str(n.into())?;
                }
                0x8d => {
                    let n = u64::from_le_bytes(self.le::<8>()?);
                    self.counted_str(n)?;
                }
                b'B' => {
                    let n = u32::from_le_bytes(self.le::<4>()?);
                    let n = self.length(n.into())?;
                    let b = self.take(n)?.to_vec();
                    self.push(Node::Bytes(b))?;
                }
                b'C' => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?.to_vec();
                    self.push(Node::Bytes(b))?;
                }
                0x8e => {
                    let n = u64::from_le_bytes(self.le::<8>()?);
                    let n = self.length(n)?;
                    let b = self.take(n)?.to_vec();
                    self.push(Node::Bytes(b))?;
                }
                0x96 => {
                    let n = u64::from_le_bytes(self.le::<8>()?);
                    let n = self.length(n)?;
                    let b = self.take(n)?.to_vec();
                    self.push(Node::ByteArray(b))?;
                }
                // Containers.
                b'}' => self.push(Node::Dict(Vec::new()))?,
                b']' => self.push(Node::List(Vec::new()))?,
                b')' => self.push(Node::Tuple(Vec::new()))?,
                0x8f => self.push(Node::Set(Vec::new()))?,
                b't' => {
                    let items = self.pop_mark()?;
                    let id = self.tuple_of(items)?;
                    self.push_id(id)?;
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    if self.stack.len() < n {
                        return self.fail("stack underflow (TUPLE of fewer items)");
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    let id = self.tuple_of(items)?;
                    self.push_id(id)?;
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    self.cell(items.len())?;
                    self.push(Node::List(items))?;
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    if !items.len().is_multiple_of(2) {
                        return self.fail("odd number of items for DICT");
                    }
                    self.cell(items.len())?;
                    let pairs = items.chunks(2).map(|p| (p[0], p[1])).collect();
                    self.push(Node::Dict(pairs))?;
                }
                0x91 => {
                    let items = self.pop_mark()?;
                    self.cell(items.len())?;
                    self.push(Node::FrozenSet(items))?;
                }
                b'a' => {
                    let value = self.pop()?;
                    let target = self.top()?;
                    self.add_items(target, vec![value], false)?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    let target = self.top()?;
                    self.add_items(target, items, false)?;
                }
                0x90 => {
                    let items = self.pop_mark()?;
                    let target = self.top()?;
                    self.add_items(target, items, true)?;
                }
                b's' => {
                    let value = self.pop()?;
                    let key = self.pop()?;
                    let target = self.top()?;
                    self.set_items(target, vec![key, value])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let target = self.top()?;
                    self.set_items(target, items)?;
                }
                // The memo.
                b'g' => {
                    let line = Self::text(self.line()?);
                    let index = line
                        .trim()
                        .parse::<u64>()
                        .map_or_else(|_| self.fail(format!("invalid GET index {line:?}")), Ok)?;
                    self.memo_get(index)?;
                }
                b'h' => {
                    let i = self.u8()?;
                    self.memo_get(i.into())?;
                }
                b'j' => {
                    let i = u32::from_le_bytes(self.le::<4>()?);
                    self.memo_get(i.into())?;
                }
                b'p' => {
                    let line = Self::text(self.line()?);
                    let index: i64 =
                        line.trim().parse().map_or_else(|_| self.fail(format!("invalid PUT index {line:?}")), Ok)?;
                    if index < 0 {
                        return self.fail("negative PUT argument");
                    }
                    self.memo_put(index as u64)?;
                }
                b'q' => {
                    let i = self.u8()?;
                    self.memo_put(i.into())?;
                }
                b'r' => {
                    let i = u32::from_le_bytes(self.le::<4>()?);
                    self.memo_put(i.into())?;
                }
                0x94 => {
                    let index = self.memo.len() as u64;
                    self.memo_put(index)?;
                }
                // Imports and calls.
                b'c' => {
                    let module = Self::text(self.line()?);
                    let name = Self::text(self.line()?);
                    let id = self.global(module, name)?;
                    self.push_id(id)?;
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Node::Str(module), Node::Str(name)) =
                        (&self.nodes[module as usize], &self.nodes[name as usize])
                    else {
                        return self.fail("STACK_GLOBAL requires str");
                    };
                    let (module, name) = (module.clone(), name.clone());
                    let id = self.global(module, name)?;
                    self.push_id(id)?;
                }
                b'i' => {
                    let module = Self::text(self.line()?);
                    let name = Self::text(self.line()?);
                    let args = self.pop_mark()?;
                    let class = self.global(module, name)?;
                    let args = self.tuple_of(args)?;
                    let id = self.call(CallKind::New, class, args, None)?;
                    self.push_id(id)?;
                }
                b'o' => {
                    let mut items = self.pop_mark()?;
                    if items.is_empty() {
                        return self.fail("OBJ without a class");
                    }
                    let class = items.remove(0);
                    let args = self.tuple_of(items)?;
                    let id = self.call(CallKind::New, class, args, None)?;
                    self.push_id(id)?;
                }
                0x81 => {
                    let args = self.pop()?;
                    let class = self.pop()?;
                    let id = self.call(CallKind::New, class, args, None)?;
                    self.push_id(id)?;
                }
                0x92 => {
                    let kwargs = self.pop()?;
                    let args = self.pop()?;
                    let class = self.pop()?;
                    let id = self.call(CallKind::New, class, args, Some(kwargs))?;
                    self.push_id(id)?;
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    if let Some(name) = folded_getattr(&self.nodes, callable, args) {
                        // getattr(GLOBAL, "name") imports GLOBAL.name:
                        // recorded, for the audit to judge by that name.
                        self.record(name)?;
                    }
                    let id = self.call(CallKind::Reduce, callable, args, None)?;
                    self.push_id(id)?;
                }
                b'b' => {
                    let state = self.pop()?;
                    let target = self.top()?;
                    self.cell(1)?;
                    let what = match &mut self.nodes[target as usize] {
                        Node::Call(c) => {
                            c.state = Some(state);
                            continue;
                        }
                        other => kind_name(other),
                    };
                    return self.fail(format!("cannot BUILD {what}"));
                }
                // Framing and protocol.
                0x80 => {
                    let proto = self.u8()?;
                    if proto > 5 {
                        return self.fail(format!("unsupported pickle protocol: {proto}"));
                    }
                    self.protocol = proto;
                }
                0x95 => {
                    let n = u64::from_le_bytes(self.le::<8>()?);
                    if n > (self.data.len() - self.pos) as u64 {
                        return self.fail("pickle exhausted before end of frame");
                    }
                }
                // What python-diskcache never writes and Python refuses
                // without a persistent_load, an extension registry entry or
                // buffers: refused here too, by name.
                b'P' | b'Q' => {
                    return self.fail("persistent ids are not supported (python-diskcache never writes them)");
                }
                0x82..=0x84 => return self.fail("extension codes (EXT1/2/4) are not supported"),
                0x97 | 0x98 => {
                    return self.fail("out-of-band buffers are not supported (python-diskcache never writes them)");
                }
                other => return self.fail(format!("invalid load key, {other:#04x}")),
            }
        }
    }

    fn counted_str(&mut self, n: u64) -> Step<()> {
        let n = self.length(n)?;
        let s = Self::text(self.take(n)?);
        self.push(Node::Str(s))
    }

    /// A Python 2 `str` (`STRING`, `BINSTRING`, `SHORT_BINSTRING`): decoded
    /// as ASCII, as python-diskcache's `pickle.load` (encoding "ASCII")
    /// decodes it.
    fn py2_string(&self, raw: Vec<u8>) -> Step<Node> {
        if raw.is_ascii() {
            Ok(Node::Str(String::from_utf8(raw).expect("ASCII is UTF-8")))
        } else {
            self.fail("a Python 2 str that is not ASCII")
        }
    }

    /// `int(text, 0)` of protocol 0's `INT` and `LONG`, for decimal text.
    fn int_text(&self, text: &str) -> Step<Node> {
        let t = text.trim();
        if let Ok(v) = t.parse::<i64>() {
            return Ok(Node::Int(v));
        }
        let digits = t.strip_prefix(['-', '+']).unwrap_or(t);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return self.fail(format!("invalid literal for int(): {text:?}"));
        }
        if digits.len() > 4300 {
            return self.fail("an int of more than 4300 digits (Python's limit)");
        }
        let sign = if t.starts_with('-') { "-" } else { "" };
        let digits = digits.trim_start_matches('0');
        Ok(Node::BigInt(BigInt::Decimal(format!("{sign}{digits}"))))
    }
}

/// `LONG1`/`LONG4` bytes: an `Int` when they fit in 64 bits.
fn long_node(bytes: Vec<u8>) -> Node {
    if bytes.is_empty() {
        return Node::Int(0);
    }
    if bytes.len() <= 8 {
        let fill = if bytes[bytes.len() - 1] & 0x80 != 0 { 0xff } else { 0 };
        let mut b = [fill; 8];
        b[..bytes.len()].copy_from_slice(&bytes);
        return Node::Int(i64::from_le_bytes(b));
    }
    Node::BigInt(BigInt::Le(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(data: &[u8]) -> Pickle {
        read(data).result.unwrap()
    }

    #[test]
    fn memoize_counts_the_memo_as_python_does() {
        // BINPUT 5 then MEMOIZE stores at len(memo) = 1, not 6.
        let p = b"\x80\x04\x8c\x02osq\x05\x8c\x06system\x94h\x05h\x01\x93)R.";
        let r = read(p);
        assert_eq!(r.imports, vec!["os.system".to_string()]);
        let pk = r.result.unwrap();
        let Node::Call(c) = pk.node(pk.root) else { panic!() };
        assert_eq!(c.kind, CallKind::Reduce);
    }

    #[test]
    fn protocol_0_names_are_mapped() {
        let r = read(b"c__builtin__\neval\n(S'1'\ntR.");
        assert_eq!(r.imports, vec!["builtins.eval".to_string()]);
        assert!(r.result.is_ok());
    }

    #[test]
    fn marks_hide_what_is_below() {
        // APPEND with the list below the mark: Python fails.
        assert!(read(b"](K\x01a.").result.is_err());
        assert!(read(b"](K\x01e.").result.is_ok());
    }

    #[test]
    fn imports_before_an_error_are_kept() {
        let r = read(b"cos\nsystem\n\xff");
        assert_eq!(r.imports, vec!["os.system".to_string()]);
        assert!(r.result.is_err());
    }

    #[test]
    fn bounds_hold() {
        let many_marks = vec![b'('; 20_000];
        assert!(read(&many_marks).result.unwrap_err().what.contains("marks"));
        let limits = Limits { max_nodes: 10, ..Limits::default() };
        let list: Vec<u8> = std::iter::repeat_n(b'N', 11).chain([b'.']).collect();
        assert!(read_with(&list, &limits).result.unwrap_err().what.contains("objects"));
        // A huge declared length is refused before allocating.
        assert!(read(b"\x8e\xff\xff\xff\xff\xff\xff\xff\x7f").result.is_err());
        assert!(read(b"\x8b\xff\xff\xff\x7f").result.is_err());
    }

    #[test]
    fn ints() {
        assert_eq!(
            ok(b"\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x40.").nodes[0],
            Node::BigInt(BigInt::Le(vec![0, 0, 0, 0, 0, 0, 0, 0, 0x40]))
        );
        assert_eq!(ok(b"\x8a\x02\xff\x7f.").nodes[0], Node::Int(0x7fff));
        assert_eq!(ok(b"\x8a\x01\xff.").nodes[0], Node::Int(-1));
        assert_eq!(ok(b"I01\n.").nodes[0], Node::Bool(true));
        assert_eq!(ok(b"L-12L\n.").nodes[0], Node::Int(-12));
        assert_eq!(ok(b"F1.5\n.").nodes[0], Node::Float(1.5));
    }

    #[test]
    fn strings() {
        assert_eq!(ok(b"Vab\\u00e9\\u20ac\n.").nodes[0], Node::Str("ab\u{e9}\u{20ac}".into()));
        assert_eq!(ok(b"S'a\\nb\\x41'\n.").nodes[0], Node::Str("a\nbA".into()));
    }
}
