//! The cache's own state as files (docs/SEMANTICS.md, "Stats and
//! settings"): `stats`, a JSON report, and `settings/<name>`, one file per
//! setting whose content is its value and whose rewrite is diskcache's
//! `reset(name, value)`. Also the report `diskcachefs stats` prints.

use serde_json::{Value as Json, json};

use crate::cache::pyrepr::python_float_repr;
use crate::cache::{self, Cache, Scalar, settings::METADATA};
use crate::fs::names::percent_encode;

/// Counters, not settings: shown in `stats`, not under `settings/`.
pub fn is_metadata(name: &str) -> bool {
    METADATA.iter().any(|(m, _)| *m == name)
}

fn scalar_json(value: &Scalar) -> Json {
    match value {
        Scalar::Int(i) => json!(i),
        Scalar::Float(f) => json!(f),
        Scalar::Str(s) => json!(s),
        Scalar::Bytes(b) => json!(percent_encode(b)),
    }
}

/// count, size, volume, hits, misses and every setting, read now.
pub fn stats_json(cache: &Cache) -> Result<Json, cache::Error> {
    let settings = cache.read_settings()?;
    let int = |name: &str| settings.values.get(name).map_or(Json::Null, scalar_json);
    let values: serde_json::Map<String, Json> = settings
        .values
        .iter()
        .filter(|(name, _)| !is_metadata(name))
        .map(|(name, value)| (name.clone(), scalar_json(value)))
        .collect();
    Ok(json!({
        "directory": cache.directory(),
        "count": int("count"),
        "size": int("size"),
        "volume": cache.volume()?,
        "hits": int("hits"),
        "misses": int("misses"),
        "settings": values,
    }))
}

/// The `stats` report as text: JSON indented by two spaces, as
/// `json.dumps(indent=2)` would print it except that an array holding no
/// object stays on one line (a latency histogram is one line, not forty),
/// and a final newline.
pub fn stats_text(stats: &Json) -> Vec<u8> {
    fn write(out: &mut String, value: &Json, depth: usize) {
        let indent = |out: &mut String, depth: usize| out.extend(std::iter::repeat_n("  ", depth));
        match value {
            Json::Object(map) if !map.is_empty() => {
                out.push_str("{\n");
                for (i, (key, v)) in map.iter().enumerate() {
                    indent(out, depth + 1);
                    out.push_str(&Json::from(key.as_str()).to_string());
                    out.push_str(": ");
                    write(out, v, depth + 1);
                    out.push_str(if i + 1 < map.len() { ",\n" } else { "\n" });
                }
                indent(out, depth);
                out.push('}');
            }
            Json::Array(items) if items.iter().any(contains_object) => {
                out.push_str("[\n");
                for (i, v) in items.iter().enumerate() {
                    indent(out, depth + 1);
                    write(out, v, depth + 1);
                    out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
                }
                indent(out, depth);
                out.push(']');
            }
            Json::Array(items) => {
                let inline: Vec<String> = items.iter().map(inline_text).collect();
                out.push('[');
                out.push_str(&inline.join(", "));
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    fn contains_object(value: &Json) -> bool {
        match value {
            Json::Object(map) => !map.is_empty(),
            Json::Array(items) => items.iter().any(contains_object),
            _ => false,
        }
    }
    fn inline_text(value: &Json) -> String {
        match value {
            Json::Array(items) => format!("[{}]", items.iter().map(inline_text).collect::<Vec<_>>().join(", ")),
            other => other.to_string(),
        }
    }
    let mut out = String::new();
    write(&mut out, stats, 0);
    out.push('\n');
    out.into_bytes()
}

/// A setting as file content: its value as Python prints it, and a newline.
pub fn setting_text(value: &Scalar) -> Vec<u8> {
    let mut text = match value {
        Scalar::Int(i) => i.to_string(),
        Scalar::Float(f) => python_float_repr(*f),
        Scalar::Str(s) => s.clone(),
        Scalar::Bytes(b) => percent_encode(b),
    };
    text.push('\n');
    text.into_bytes()
}

/// Parses what was written to a setting's file: an integer, else a finite
/// float, else the text itself (surrounding white space ignored).
pub fn parse_setting(content: &[u8]) -> Result<Scalar, String> {
    let text = std::str::from_utf8(content).map_err(|_| "not UTF-8 text".to_string())?.trim();
    if text.is_empty() {
        return Err("empty".into());
    }
    if let Ok(i) = text.parse::<i64>() {
        return Ok(Scalar::Int(i));
    }
    if let Ok(f) = text.parse::<f64>()
        && f.is_finite()
    {
        return Ok(Scalar::Float(f));
    }
    Ok(Scalar::Str(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_text_is_json_with_arrays_of_numbers_on_one_line() {
        let doc = json!({"a": 1, "h": [[9, 1], [11, 2]], "o": {"x": "y", "e": {}}, "l": [{"k": 1}], "n": []});
        let text = String::from_utf8(stats_text(&doc)).unwrap();
        assert_eq!(serde_json::from_str::<Json>(&text).unwrap(), doc);
        assert!(text.contains("\"h\": [[9, 1], [11, 2]]"), "{text}");
        assert!(text.contains("\"l\": [\n"), "{text}");
        assert!(text.ends_with("}\n"), "{text}");
    }

    #[test]
    fn settings_as_text_and_back() {
        assert_eq!(setting_text(&Scalar::Int(1 << 30)), b"1073741824\n");
        assert_eq!(setting_text(&Scalar::Str("wal".into())), b"wal\n");
        assert_eq!(parse_setting(b"100000000\n"), Ok(Scalar::Int(100_000_000)));
        assert_eq!(parse_setting(b" least-recently-used \n"), Ok(Scalar::Str("least-recently-used".into())));
        assert_eq!(parse_setting(b"2.5"), Ok(Scalar::Float(2.5)));
        assert!(parse_setting(b"\n").is_err());
        assert!(parse_setting(&[0xff]).is_err());
    }
}
