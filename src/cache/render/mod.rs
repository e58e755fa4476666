//! Any value as one JSON document for a person (docs/SEMANTICS.md, "Values
//! as JSON"): what `json/` in the mount shows and `diskcachefs show`
//! prints.
//!
//! - [`json`]: the document (keys in order, numbers as text) and its
//!   layout.
//! - `pickled`: a pickle read by [`crate::cache::pickle`] as objects,
//!   calls and containers; `stdlib`: the standard library's (and numpy's)
//!   documented formats decoded as data.

pub mod json;
mod pickled;
mod stdlib;

use base64::Engine as _;

use self::json::{Json, parse_container};
use crate::cache::pickle;
use crate::cache::pyrepr::python_float_repr;
use crate::cache::types::Value;

/// A document nests at most this deep (below serde_json's 128, so any
/// JSON reader takes it): a pickle nested deeper renders as an error, a
/// str holding deeper JSON stays a string. The pickle renderer and the
/// JSON-in-str parser are bounded by it too, so nothing recurses without
/// bound.
pub const MAX_DEPTH: usize = 100;
/// A rendering larger than this is refused (a pickle can reference one
/// object many times: a few kilobytes can describe gigabytes of text).
pub const MAX_OUTPUT: usize = 64 << 20;

/// `value`'s document and a newline.
pub fn render_value(value: &Value) -> String {
    let doc = match value {
        Value::None => Json::Null,
        Value::Int(i) => Json::Number(i.to_string()),
        Value::Float(f) => float(*f),
        Value::Str(s) => text(s),
        Value::Bytes(b) => bytes(b, "__bytes__", "__base64__"),
        Value::Pickle(data) => render_pickle(data),
    };
    let mut out = doc.pretty();
    out.push('\n');
    out
}

/// A pickle's document: the object, or `{"__error__": why,
/// "__pickle_bytes__": n}` when the reader refuses it.
pub fn render_pickle(data: &[u8]) -> Json {
    let rendered = pickle::read(data).result.map_err(|e| e.to_string()).and_then(|p| {
        // JSON parsed out of strings may nest the document too deep: then
        // they stay strings.
        let doc = pickled::render(&p, true)?;
        if doc.depth() <= MAX_DEPTH {
            return Ok(doc);
        }
        let doc = pickled::render(&p, false)?;
        if doc.depth() <= MAX_DEPTH { Ok(doc) } else { Err(format!("nested deeper than {MAX_DEPTH}")) }
    });
    rendered.unwrap_or_else(|why| {
        Json::object(vec![("__error__", Json::Str(why)), ("__pickle_bytes__", Json::Number(data.len().to_string()))])
    })
}

/// A float as Python's `repr`; NaN and the infinities, which JSON lacks, as
/// strings.
pub fn float(f: f64) -> Json {
    if f.is_finite() { Json::Number(python_float_repr(f)) } else { Json::Str(python_float_repr(f)) }
}

/// A `str`: parsed when it holds a JSON object or array, and so are the
/// strings inside that do.
pub fn text(s: &str) -> Json {
    match parse_container(s, MAX_DEPTH) {
        Some(doc) => match expand_strings(doc, 0) {
            doc if doc.depth() <= MAX_DEPTH => doc,
            _ => Json::str(s),
        },
        None => Json::str(s),
    }
}

fn expand_strings(doc: Json, depth: usize) -> Json {
    if depth > 8 {
        return doc;
    }
    match doc {
        Json::Str(s) => match parse_container(&s, MAX_DEPTH) {
            Some(inner) => expand_strings(inner, depth + 1),
            None => Json::Str(s),
        },
        Json::Array(items) => Json::Array(items.into_iter().map(|j| expand_strings(j, depth)).collect()),
        Json::Object(fields) => Json::Object(fields.into_iter().map(|(k, v)| (k, expand_strings(v, depth))).collect()),
        other => other,
    }
}

/// Bytes as `{text_key: TEXT}` when UTF-8, else `{b64_key: BASE64}`.
pub fn bytes(b: &[u8], text_key: &str, b64_key: &str) -> Json {
    match std::str::from_utf8(b) {
        Ok(s) => Json::object(vec![(text_key, Json::str(s))]),
        Err(_) => Json::object(vec![(b64_key, Json::Str(base64::engine::general_purpose::STANDARD.encode(b)))]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_level_values() {
        assert_eq!(render_value(&Value::Int(3)), "3\n");
        assert_eq!(render_value(&Value::Float(1e16)), "1e+16\n");
        assert_eq!(render_value(&Value::Float(f64::NAN)), "\"nan\"\n");
        assert_eq!(render_value(&Value::None), "null\n");
        assert_eq!(render_value(&Value::Str("hi".into())), "\"hi\"\n");
        assert_eq!(render_value(&Value::Bytes(vec![0xff])), "{\n  \"__base64__\": \"/w==\"\n}\n");
        assert_eq!(
            render_value(&Value::Str(r#"{"model": "{\"a\": [1]}"}"#.into())),
            "{\n  \"model\": {\n    \"a\": [\n      1\n    ]\n  }\n}\n"
        );
    }

    #[test]
    fn refused_pickles_say_why() {
        let out = render_value(&Value::Pickle(b"\x80\x05\x97.".to_vec()));
        assert!(out.contains("\"__error__\": \"byte 2: out-of-band buffers"), "{out}");
        assert!(out.contains("\"__pickle_bytes__\": 4"), "{out}");
    }

    #[test]
    fn depth_is_bounded() {
        // 137 nested one-tuples (a fuzzer's find: deeper than serde_json reads).
        let mut deep = b"\x80\x04\x8c\x02o`".to_vec();
        deep.extend(std::iter::repeat_n(0x85, 137));
        deep.push(b'.');
        let out = render_value(&Value::Pickle(deep));
        assert!(out.contains("nested deeper than 100"), "{out}");
        let nested = format!("{}{}", "[".repeat(99), "]".repeat(99));
        assert!(serde_json::from_str::<serde_json::Value>(&render_value(&Value::Str(nested.clone()))).is_ok());
        let too_deep = format!("{}{}", "[".repeat(150), "]".repeat(150));
        assert_eq!(render_value(&Value::Str(too_deep.clone())), format!("\"{too_deep}\"\n"));
    }
}
