//! A JSON document that keeps what a person reads: object keys in their
//! order, numbers as their text; written as Python's `json.dumps(doc,
//! indent=2, ensure_ascii=False)` lays it out, and read back from text
//! (the JSON a `str` value may hold) without reordering anything.
//!
//! (serde_json's `Value` sorts keys and turns numbers into `f64`.)

#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    /// A number's JSON text (`1180591620717411303424`, `1e-05`).
    Number(String),
    Str(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    pub fn str(s: impl Into<String>) -> Json {
        Json::Str(s.into())
    }

    pub fn object(fields: Vec<(&str, Json)>) -> Json {
        Json::Object(fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    }

    /// How deep arrays and objects nest (a scalar is 0).
    pub fn depth(&self) -> usize {
        let mut deepest = 0;
        let mut todo = vec![(self, 0)];
        while let Some((j, d)) = todo.pop() {
            deepest = deepest.max(d);
            match j {
                Json::Array(items) => todo.extend(items.iter().map(|i| (i, d + 1))),
                Json::Object(fields) => todo.extend(fields.iter().map(|(_, v)| (v, d + 1))),
                _ => {}
            }
        }
        deepest
    }

    /// The document, indented by two spaces, without a final newline.
    pub fn pretty(&self) -> String {
        let mut out = String::new();
        self.write(&mut out, Some(0));
        out
    }

    /// One line, `json.dumps(x, separators=(",", ":"), ensure_ascii=False)`.
    pub fn compact(&self) -> String {
        let mut out = String::new();
        self.write(&mut out, None);
        out
    }

    fn write(&self, out: &mut String, indent: Option<usize>) {
        let newline = |out: &mut String, level: usize| {
            out.push('\n');
            for _ in 0..level {
                out.push_str("  ");
            }
        };
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Number(n) => out.push_str(n),
            Json::Str(s) => write_str(out, s),
            Json::Array(items) if items.is_empty() => out.push_str("[]"),
            Json::Object(fields) if fields.is_empty() => out.push_str("{}"),
            Json::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    if let Some(level) = indent {
                        newline(out, level + 1);
                    }
                    item.write(out, indent.map(|l| l + 1));
                }
                if let Some(level) = indent {
                    newline(out, level);
                }
                out.push(']');
            }
            Json::Object(fields) => {
                out.push('{');
                for (i, (key, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    if let Some(level) = indent {
                        newline(out, level + 1);
                    }
                    write_str(out, key);
                    out.push_str(if indent.is_some() { ": " } else { ":" });
                    value.write(out, indent.map(|l| l + 1));
                }
                if let Some(level) = indent {
                    newline(out, level);
                }
                out.push('}');
            }
        }
    }
}

/// A JSON string as Python's encoder writes it with `ensure_ascii=False`:
/// `"`, `\` and control characters escaped, the rest as UTF-8.
fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Parses `text` when it is one JSON object or array (white space around
/// it allowed), keeping key order and number text; `None` for anything
/// else, including nesting deeper than `max_depth`.
pub fn parse_container(text: &str, max_depth: usize) -> Option<Json> {
    let t = text.trim_start_matches([' ', '\t', '\n', '\r']);
    if !t.starts_with(['{', '[']) {
        return None;
    }
    let mut p = Parser { s: text.as_bytes(), i: 0, max_depth };
    p.ws();
    let value = p.value(0)?;
    p.ws();
    (p.i == p.s.len()).then_some(value)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    max_depth: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while matches!(self.s.get(self.i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn eat(&mut self, b: u8) -> Option<()> {
        (self.s.get(self.i) == Some(&b)).then(|| self.i += 1)
    }

    fn value(&mut self, depth: usize) -> Option<Json> {
        if depth > self.max_depth {
            return None;
        }
        match *self.s.get(self.i)? {
            b'{' => {
                self.i += 1;
                let mut fields = Vec::new();
                self.ws();
                if self.eat(b'}').is_some() {
                    return Some(Json::Object(fields));
                }
                loop {
                    self.ws();
                    let key = self.string()?;
                    self.ws();
                    self.eat(b':')?;
                    self.ws();
                    let value = self.value(depth + 1)?;
                    fields.push((key, value));
                    self.ws();
                    if self.eat(b',').is_some() {
                        continue;
                    }
                    self.eat(b'}')?;
                    return Some(Json::Object(fields));
                }
            }
            b'[' => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.eat(b']').is_some() {
                    return Some(Json::Array(items));
                }
                loop {
                    self.ws();
                    items.push(self.value(depth + 1)?);
                    self.ws();
                    if self.eat(b',').is_some() {
                        continue;
                    }
                    self.eat(b']')?;
                    return Some(Json::Array(items));
                }
            }
            b'"' => self.string().map(Json::Str),
            b't' => self.word("true", Json::Bool(true)),
            b'f' => self.word("false", Json::Bool(false)),
            b'n' => self.word("null", Json::Null),
            _ => self.number(),
        }
    }

    fn word(&mut self, w: &str, value: Json) -> Option<Json> {
        self.s[self.i..].starts_with(w.as_bytes()).then(|| {
            self.i += w.len();
            value
        })
    }

    fn number(&mut self) -> Option<Json> {
        let start = self.i;
        self.eat(b'-');
        let digits = |p: &mut Parser| {
            let from = p.i;
            while matches!(p.s.get(p.i), Some(b'0'..=b'9')) {
                p.i += 1;
            }
            p.i > from
        };
        if self.eat(b'0').is_none() && !digits(self) {
            return None;
        }
        if self.eat(b'.').is_some() && !digits(self) {
            return None;
        }
        if matches!(self.s.get(self.i), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.s.get(self.i), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if !digits(self) {
                return None;
            }
        }
        Some(Json::Number(std::str::from_utf8(&self.s[start..self.i]).ok()?.to_string()))
    }

    fn hex4(&mut self) -> Option<u32> {
        let h = std::str::from_utf8(self.s.get(self.i..self.i + 4)?).ok()?;
        let v = u32::from_str_radix(h, 16).ok()?;
        self.i += 4;
        Some(v)
    }

    fn string(&mut self) -> Option<String> {
        self.eat(b'"')?;
        let mut out = Vec::new();
        loop {
            let b = *self.s.get(self.i)?;
            self.i += 1;
            match b {
                b'"' => return String::from_utf8(out).ok(),
                b'\\' => {
                    let e = *self.s.get(self.i)?;
                    self.i += 1;
                    let c = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            let code = if (0xd800..0xdc00).contains(&hi) && self.s[self.i..].starts_with(b"\\u") {
                                self.i += 2;
                                let lo = self.hex4()?;
                                if !(0xdc00..0xe000).contains(&lo) {
                                    return None;
                                }
                                0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00)
                            } else {
                                hi
                            };
                            char::from_u32(code).unwrap_or('\u{fffd}')
                        }
                        _ => return None,
                    };
                    let mut buf = [0; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                0..0x20 => return None,
                b => out.push(b),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pretty_matches_python_layout() {
        // json.dumps({"a": [1, {}], "b": {"c": "é\n"}, "d": []}, indent=2, ensure_ascii=False)
        let doc = parse_container(r#"{"a": [1, {}], "b": {"c": "é\n"}, "d": []}"#, 10).unwrap();
        assert_eq!(
            doc.pretty(),
            "{\n  \"a\": [\n    1,\n    {}\n  ],\n  \"b\": {\n    \"c\": \"é\\n\"\n  },\n  \"d\": []\n}"
        );
        assert_eq!(doc.compact(), r#"{"a":[1,{}],"b":{"c":"é\n"},"d":[]}"#);
    }

    #[test]
    fn parses_only_containers_and_keeps_order() {
        assert!(parse_container("1", 10).is_none());
        assert!(parse_container("\"x\"", 10).is_none());
        assert!(parse_container("{\"a\": 1} x", 10).is_none());
        assert!(parse_container("[01]", 10).is_none());
        let d = parse_container(" {\"z\": 1.50, \"a\": \"\\ud83d\\ude00\"} ", 10).unwrap();
        assert_eq!(
            d,
            Json::Object(vec![("z".into(), Json::Number("1.50".into())), ("a".into(), Json::Str("😀".into()))])
        );
        assert!(parse_container(&"[".repeat(50), 10).is_none());
        assert!(parse_container(&format!("{}{}", "[".repeat(11), "]".repeat(11)), 10).is_some());
        assert!(parse_container(&format!("{}{}", "[".repeat(12), "]".repeat(12)), 10).is_none());
    }
}
