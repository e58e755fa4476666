//! A value as file content, and file content as a value of a given type.
//! (docs/SEMANTICS.md, "Content".)

use crate::cache::{EntryMeta, InlineMeta, Scalar, Value, ValueType};
use crate::fs::pyrepr::python_float_repr;

/// The bytes of an inline value: bytes and pickles as they are, str as
/// UTF-8, numbers as Python's `str()`.
pub fn inline_bytes(value: &Scalar) -> Vec<u8> {
    match value {
        Scalar::Bytes(b) => b.clone(),
        Scalar::Str(s) => s.as_bytes().to_vec(),
        Scalar::Int(i) => i.to_string().into_bytes(),
        Scalar::Float(f) => python_float_repr(*f).into_bytes(),
    }
}

/// The length of an entry's content, from its metadata alone.
pub fn content_len(meta: &EntryMeta) -> u64 {
    match meta.inline {
        InlineMeta::None => meta.size.max(0) as u64,
        InlineMeta::Int(i) => i.to_string().len() as u64,
        InlineMeta::Float(f) => python_float_repr(f).len() as u64,
        InlineMeta::Text(n) | InlineMeta::Blob(n) => n,
    }
}

/// Content as a value of `to`, as Python would read it: `str` must be
/// UTF-8; `int` and `float` parse the text (surrounding white space
/// allowed, as `int()`/`float()` allow).
pub fn convert(data: Vec<u8>, to: ValueType) -> Result<Value, String> {
    let text = |data: Vec<u8>| String::from_utf8(data).map_err(|_| "content is not UTF-8".to_string());
    Ok(match to {
        ValueType::Bytes => Value::Bytes(data),
        ValueType::Pickle => Value::Pickle(data),
        ValueType::Str => Value::Str(text(data)?),
        ValueType::Int => {
            let t = text(data)?;
            let t = t.trim().replace('_', "");
            Value::Int(t.parse().map_err(|_| format!("{:?} is not a 64-bit integer", t))?)
        }
        ValueType::Float => {
            let t = text(data)?;
            let t = t.trim().to_ascii_lowercase();
            let t = t.replace("infinity", "inf");
            Value::Float(t.parse().map_err(|_| format!("{t:?} is not a float"))?)
        }
    })
}
