//! Reducers whose formats are documented, decoded as data: `datetime`'s
//! packed bytes, `Decimal`, `UUID`, `Fraction`, the `collections`
//! containers, protocol 0-2 sets and bytes, `copyreg`'s constructors, and
//! numpy's arrays and scalars. Each decoder answers `None` when the call
//! is not in the shape it knows, and the call is then shown as a call.

use super::json::Json;
use super::pickled::{Renderer, put};
use super::{bytes, float};
use crate::cache::pickle::{Call, CallKind, Id, Node};

pub(super) fn decode(r: &mut Renderer, c: &Call, name: &str) -> Option<Result<Json, String>> {
    let args: Vec<Id> = r.tuple(c.args)?.to_vec();
    let plain = c.state.is_none() && c.items.is_empty() && c.entries.is_empty() && c.kwargs.is_none();
    if let Some((class, class_args)) = instance(r, c, name, &args)
        && class == "uuid.UUID"
        && class_args.is_empty()
        && c.items.is_empty()
        && c.entries.is_empty()
    {
        let Node::Dict(state) = r.node(c.state?) else { return None };
        let int = state.iter().find(|(k, _)| r.str(*k) == Some("int"))?.1;
        return Some(Ok(Json::Str(uuid(r, int)?)));
    }
    match (c.kind, name) {
        (CallKind::Reduce, "builtins.getattr") if plain => {
            let fetched = crate::cache::pickle::tree::folded_getattr(&r.p.nodes, c.callable, c.args)?;
            Some(Ok(Json::object(vec![("__global__", Json::Str(fetched))])))
        }
        (CallKind::Reduce, "datetime.datetime" | "datetime.date" | "datetime.time") if plain => {
            let packed = r.bytes_of(*args.first()?)?;
            let tz = args.get(1).copied();
            datetime(r, name, &packed, tz)
        }
        (CallKind::Reduce, "datetime.timedelta") if plain => {
            let (d, s, us) = (r.int(*args.first()?)?, r.int(*args.get(1)?)?, r.int(*args.get(2)?)?);
            Some(Ok(Json::Str(timedelta_str(d, s, us))))
        }
        (CallKind::Reduce, "datetime.timezone") if plain => Some(Ok(Json::Str(timezone_str(r, &args)?))),
        (CallKind::Reduce, "decimal.Decimal") if plain && args.len() == 1 => Some(Ok(Json::str(r.str(args[0])?))),
        (CallKind::Reduce, "fractions.Fraction") if plain => match args.as_slice() {
            [s] => Some(Ok(Json::str(r.str(*s)?))),
            [n, d] => {
                let (n, d) = (r.int(*n)?, r.int(*d)?);
                Some(Ok(Json::Str(if d == 1 { n.to_string() } else { format!("{n}/{d}") })))
            }
            _ => None,
        },
        (CallKind::Reduce, "collections.OrderedDict" | "collections.defaultdict" | "collections.Counter")
            if c.state.is_none() && c.items.is_empty() =>
        {
            // OrderedDict(), defaultdict(factory) then SETITEMS; Counter({...});
            // or OrderedDict([(k, v), ...]).
            let mut fields = Vec::new();
            let first = args.first().copied();
            if let Some(first) = first {
                match r.node(first) {
                    Node::Dict(pairs) => {
                        let pairs = pairs.clone();
                        fields = match r.entries(&pairs) {
                            Ok(f) => f,
                            Err(e) => return Some(Err(e)),
                        };
                    }
                    Node::List(pairs) if name == "collections.OrderedDict" => {
                        let mut flat = Vec::new();
                        for pair in pairs.clone() {
                            let [k, v] = r.tuple(pair)? else { return None };
                            flat.push((*k, *v));
                        }
                        fields = match r.entries(&flat) {
                            Ok(f) => f,
                            Err(e) => return Some(Err(e)),
                        };
                    }
                    _ if name == "collections.defaultdict" => {}
                    _ => return None,
                }
            }
            match r.entries(&c.entries) {
                Ok(more) => more.into_iter().for_each(|(k, v)| put(&mut fields, k, v)),
                Err(e) => return Some(Err(e)),
            }
            Some(Ok(Json::Object(fields)))
        }
        (CallKind::Reduce, "collections.deque") if c.entries.is_empty() => {
            let mut items: Vec<Id> = match args.first() {
                Some(first) => r.tuple(*first)?.to_vec(),
                None => Vec::new(),
            };
            items.extend(&c.items);
            Some(r.array(&items))
        }
        (CallKind::Reduce, "builtins.set" | "builtins.frozenset") if plain => match args.as_slice() {
            [] => Some(Ok(Json::Array(Vec::new()))),
            [items] => {
                let items = r.tuple(*items)?.to_vec();
                Some(r.array(&items))
            }
            _ => None,
        },
        (CallKind::Reduce, "_codecs.encode" | "builtins.bytes") if plain => {
            Some(Ok(bytes(&r.call_bytes(c)?, "__bytes__", "__base64__")))
        }
        (CallKind::Reduce, "builtins.bytearray") if plain => {
            Some(Ok(bytes(&r.call_bytes(c)?, "__bytearray__", "__bytearray_base64__")))
        }
        // copyreg._reconstructor(cls, base, state) and copyreg.__newobj__(cls,
        // *args): protocols 0-1 and explicit reduces making an instance.
        (CallKind::Reduce, "copyreg._reconstructor" | "copyreg.__newobj__") => {
            let (class, class_args) = instance(r, c, name, &args)?;
            let mut fields = vec![("__class__".to_string(), Json::Str(class))];
            if !class_args.is_empty() {
                match r.array(&class_args) {
                    Ok(j) => fields.push(("__args__".into(), j)),
                    Err(e) => return Some(Err(e)),
                }
            }
            Some(r.finish_object(fields, c))
        }
        (CallKind::Reduce, "numpy._core.numeric._frombuffer" | "numpy.core.numeric._frombuffer")
            if plain && args.len() == 4 =>
        {
            let data = r.bytes_of(args[0])?;
            let dtype = dtype(r, args[1])?;
            let shape = shape(r, args[2])?;
            let fortran = r.str(args[3]) == Some("F");
            Some(Ok(ndarray(&dtype, &shape, fortran, Some(&data))))
        }
        (CallKind::Reduce, "numpy._core.multiarray._reconstruct" | "numpy.core.multiarray._reconstruct")
            if c.items.is_empty() =>
        {
            // BUILD((version, shape, dtype, is_fortran, data)).
            let state = r.tuple(c.state?)?.to_vec();
            let [_, shape_id, dtype_id, fortran, data] = state.as_slice() else { return None };
            let dtype = dtype(r, *dtype_id)?;
            let shape = shape(r, *shape_id)?;
            let fortran = matches!(r.node(*fortran), Node::Bool(true));
            Some(Ok(ndarray(&dtype, &shape, fortran, r.bytes_of(*data).as_deref())))
        }
        (CallKind::Reduce, "numpy._core.multiarray.scalar" | "numpy.core.multiarray.scalar")
            if plain && args.len() == 2 =>
        {
            let dtype = dtype(r, args[0])?;
            let data = r.bytes_of(args[1])?;
            let values = dtype.decode(&data)?;
            Some(Ok(values.into_iter().next()?))
        }
        _ => None,
    }
}

/// The class and constructor arguments of an instance, however the pickle
/// made it: `NEWOBJ` (protocols 2+), `copyreg._reconstructor(cls, base,
/// state)` (protocols 0-1: `state` is what `base` is made from, a tuple's
/// items for a namedtuple, `None` for `object`), `copyreg.__newobj__(cls,
/// *args)`.
fn instance(r: &Renderer, c: &Call, name: &str, args: &[Id]) -> Option<(String, Vec<Id>)> {
    match (c.kind, name, args) {
        (CallKind::New, _, _) => Some((name.to_string(), args.to_vec())),
        (CallKind::Reduce, "copyreg._reconstructor", [class, _base, state]) => {
            let class_args = match r.node(*state) {
                Node::None => Vec::new(),
                Node::Tuple(items) | Node::List(items) => items.clone(),
                _ => vec![*state],
            };
            Some((r.global_name(*class)?, class_args))
        }
        (CallKind::Reduce, "copyreg.__newobj__", [class, rest @ ..]) => Some((r.global_name(*class)?, rest.to_vec())),
        _ => None,
    }
}

fn datetime(r: &mut Renderer, name: &str, b: &[u8], tz: Option<Id>) -> Option<Result<Json, String>> {
    let naive = match (name, b.len()) {
        ("datetime.date", 4) => {
            return Some(Ok(Json::Str(format!(
                "{:04}-{:02}-{:02}",
                u16::from(b[0]) << 8 | u16::from(b[1]),
                b[2],
                b[3]
            ))));
        }
        ("datetime.datetime", 10) => {
            let year = u16::from(b[0]) << 8 | u16::from(b[1]);
            let us = u32::from(b[7]) << 16 | u32::from(b[8]) << 8 | u32::from(b[9]);
            format!("{year:04}-{:02}-{:02}T{}", b[2] & 0x7f, b[3], clock(b[4], b[5], b[6], us))
        }
        ("datetime.time", 6) => {
            let us = u32::from(b[3]) << 16 | u32::from(b[4]) << 8 | u32::from(b[5]);
            clock(b[0] & 0x7f, b[1], b[2], us)
        }
        _ => return None,
    };
    let Some(tz) = tz else { return Some(Ok(Json::Str(naive))) };
    if let Some(offset) = timezone_offset(r, tz) {
        return Some(Ok(Json::Str(format!("{naive}{}", iso_offset(offset)))));
    }
    if let Node::Call(z) = r.node(tz)
        && r.global_name(z.callable).as_deref() == Some("zoneinfo.ZoneInfo._unpickle")
        && let Some(key) = r.tuple(z.args).and_then(|a| a.first()).and_then(|k| r.str(*k))
    {
        return Some(Ok(Json::Str(format!("{naive}[{key}]"))));
    }
    let rendered = match r.render(tz) {
        Ok(j) => j,
        Err(e) => return Some(Err(e)),
    };
    Some(Ok(Json::object(vec![("__class__", Json::str(name)), ("isoformat", Json::Str(naive)), ("tzinfo", rendered)])))
}

/// `HH:MM:SS[.ffffff]`.
fn clock(h: u8, m: u8, s: u8, us: u32) -> String {
    if us == 0 { format!("{h:02}:{m:02}:{s:02}") } else { format!("{h:02}:{m:02}:{s:02}.{us:06}") }
}

/// A `timedelta` node's (days, seconds, microseconds).
fn timedelta(r: &Renderer, id: Id) -> Option<(i64, i64, i64)> {
    let Node::Call(c) = r.node(id) else { return None };
    if r.global_name(c.callable).as_deref() != Some("datetime.timedelta") {
        return None;
    }
    let a = r.tuple(c.args)?;
    Some((r.int(*a.first()?)?, r.int(*a.get(1)?)?, r.int(*a.get(2)?)?))
}

/// A `datetime.timezone` node's offset in microseconds.
fn timezone_offset(r: &Renderer, id: Id) -> Option<i64> {
    let Node::Call(c) = r.node(id) else { return None };
    if r.global_name(c.callable).as_deref() != Some("datetime.timezone") {
        return None;
    }
    let (d, s, us) = timedelta(r, *r.tuple(c.args)?.first()?)?;
    Some((d * 86_400 + s) * 1_000_000 + us)
}

/// `str(timezone)`: its name, `UTC`, or `UTC±HH:MM[:SS[.ffffff]]`.
fn timezone_str(r: &Renderer, args: &[Id]) -> Option<String> {
    if let Some(name) = args.get(1) {
        return r.str(*name).map(str::to_string);
    }
    let (d, s, us) = timedelta(r, *args.first()?)?;
    let total = (d * 86_400 + s) * 1_000_000 + us;
    if total == 0 {
        return Some("UTC".into());
    }
    Some(format!("UTC{}", offset_text(total)))
}

/// `±HH:MM[:SS[.ffffff]]` of an offset in microseconds.
fn offset_text(total_us: i64) -> String {
    let sign = if total_us < 0 { '-' } else { '+' };
    let t = total_us.unsigned_abs();
    let (secs, us) = (t / 1_000_000, t % 1_000_000);
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = format!("{sign}{h:02}:{m:02}");
    if s != 0 || us != 0 {
        out.push_str(&format!(":{s:02}"));
    }
    if us != 0 {
        out.push_str(&format!(".{us:06}"));
    }
    out
}

/// The offset `isoformat()` appends (`+00:00` for UTC).
fn iso_offset(total_us: i64) -> String {
    offset_text(total_us)
}

/// `str(timedelta(days, seconds, microseconds))` (normalized as Python
/// keeps it: 0 <= seconds < 86400, 0 <= microseconds < 10**6).
fn timedelta_str(days: i64, seconds: i64, us: i64) -> String {
    let (hh, mm, ss) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    let mut s = format!("{hh}:{mm:02}:{ss:02}");
    if days != 0 {
        let plural = if days.abs() != 1 { "s" } else { "" };
        s = format!("{days} day{plural}, {s}");
    }
    if us != 0 {
        s.push_str(&format!(".{us:06}"));
    }
    s
}

/// `str(UUID(int=n))`.
fn uuid(r: &Renderer, int: Id) -> Option<String> {
    let mut be = [0u8; 16];
    match r.node(int) {
        Node::Int(i) if *i >= 0 => be[8..].copy_from_slice(&i.to_be_bytes()),
        Node::BigInt(crate::cache::pickle::tree::BigInt::Decimal(d)) => be = d.parse::<u128>().ok()?.to_be_bytes(),
        Node::BigInt(crate::cache::pickle::tree::BigInt::Le(le)) => {
            let significant = le.iter().rposition(|b| *b != 0).map_or(0, |p| p + 1);
            if significant > 16 || le.last().is_some_and(|b| b & 0x80 != 0) {
                return None;
            }
            for (i, b) in le[..significant].iter().enumerate() {
                be[15 - i] = *b;
            }
        }
        _ => return None,
    }
    let hex: String = be.iter().map(|b| format!("{b:02x}")).collect();
    Some(format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..]))
}

/// A numpy dtype: kind (`b`, `i`, `u`, `f`, `c`, ...), item size, byte order.
struct Dtype {
    kind: char,
    size: usize,
    big_endian: bool,
    /// What the dtype is called (`float64`), or its text when the kind is
    /// not one decoded here.
    name: String,
}

impl Dtype {
    /// The items of `data`, when this dtype is a number decoded here.
    fn decode(&self, data: &[u8]) -> Option<Vec<Json>> {
        if self.size == 0 || !data.len().is_multiple_of(self.size) {
            return None;
        }
        data.chunks(self.size)
            .map(|chunk| {
                let mut b = chunk.to_vec();
                if self.big_endian {
                    b.reverse();
                }
                let word = |n: usize| -> [u8; 8] {
                    let fill = if matches!(self.kind, 'i') && b[n - 1] & 0x80 != 0 { 0xff } else { 0 };
                    let mut w = [fill; 8];
                    w[..n].copy_from_slice(&b[..n]);
                    w
                };
                Some(match (self.kind, self.size) {
                    ('b', 1) => Json::Bool(b[0] != 0),
                    ('i', 1 | 2 | 4 | 8) => Json::Number(i64::from_le_bytes(word(self.size)).to_string()),
                    ('u', 1 | 2 | 4 | 8) => Json::Number(u64::from_le_bytes(word(self.size)).to_string()),
                    ('f', 4) => float(f64::from(f32::from_le_bytes(b[..4].try_into().ok()?))),
                    ('f', 8) => float(f64::from_le_bytes(b[..8].try_into().ok()?)),
                    _ => return None,
                })
            })
            .collect()
    }
}

/// `numpy.dtype(text, align, copy)` with `BUILD((3, order, ...))`.
fn dtype(r: &Renderer, id: Id) -> Option<Dtype> {
    let Node::Call(c) = r.node(id) else { return None };
    if !matches!(r.global_name(c.callable)?.as_str(), "numpy.dtype") {
        return None;
    }
    let text = r.str(*r.tuple(c.args)?.first()?)?.to_string();
    let order = c.state.and_then(|s| r.tuple(s)).and_then(|s| s.get(1)).and_then(|o| r.str(*o)).unwrap_or("|");
    let kind = text.chars().next()?;
    let size: usize = text[kind.len_utf8()..].parse().ok()?;
    let name = match kind {
        'b' if size == 1 => "bool".to_string(),
        'i' => format!("int{}", size * 8),
        'u' => format!("uint{}", size * 8),
        'f' => format!("float{}", size * 8),
        'c' => format!("complex{}", size * 8),
        _ => format!("{order}{text}"),
    };
    Some(Dtype { kind, size, big_endian: order == ">", name })
}

/// numpy's most dimensions (`NPY_MAXDIMS`): a longer shape is not an
/// array numpy made (and would nest the values past any bound).
const MAX_DIMS: usize = 64;

fn shape(r: &Renderer, id: Id) -> Option<Vec<usize>> {
    let dims = r.tuple(id)?;
    if dims.len() > MAX_DIMS {
        return None;
    }
    dims.iter().map(|d| r.int(*d).and_then(|d| usize::try_from(d).ok())).collect()
}

/// Arrays of at most this many numbers show their values.
const MAX_VALUES: usize = 1000;

fn ndarray(dtype: &Dtype, shape: &[usize], fortran: bool, data: Option<&[u8]>) -> Json {
    let mut fields = vec![
        ("__class__", Json::str("numpy.ndarray")),
        ("dtype", Json::Str(dtype.name.clone())),
        ("shape", Json::Array(shape.iter().map(|d| Json::Number(d.to_string())).collect())),
    ];
    let count = shape.iter().try_fold(1usize, |a, d| a.checked_mul(*d));
    let values = match (count, data) {
        (Some(n), Some(data)) if n <= MAX_VALUES && data.len() == n * dtype.size => dtype.decode(data),
        _ => None,
    };
    if let Some(flat) = values {
        fields.push(("values", nest(&flat, shape, fortran)));
    }
    Json::object(fields)
}

/// `tolist()`: flat items in C or Fortran order as nested arrays.
fn nest(flat: &[Json], shape: &[usize], fortran: bool) -> Json {
    fn build(flat: &[Json], shape: &[usize], strides: &[usize], dim: usize, offset: usize) -> Json {
        if dim == shape.len() {
            return flat[offset].clone();
        }
        Json::Array((0..shape[dim]).map(|i| build(flat, shape, strides, dim + 1, offset + i * strides[dim])).collect())
    }
    let mut strides = vec![0; shape.len()];
    let mut step = 1;
    let order: Vec<usize> = if fortran { (0..shape.len()).collect() } else { (0..shape.len()).rev().collect() };
    for d in order {
        strides[d] = step;
        step *= shape[d];
    }
    if shape.is_empty() {
        return flat.first().cloned().unwrap_or(Json::Null);
    }
    build(flat, shape, &strides, 0, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_texts() {
        assert_eq!(timedelta_str(1, 7384, 5), "1 day, 2:03:04.000005");
        assert_eq!(timedelta_str(-1, 86399, 0), "-1 day, 23:59:59");
        assert_eq!(timedelta_str(0, 0, 0), "0:00:00");
        assert_eq!(offset_text(3_600_000_000), "+01:00");
        assert_eq!(offset_text(-(5 * 3600 + 30 * 60) * 1_000_000), "-05:30");
        assert_eq!(offset_text(0), "+00:00");
    }
}
