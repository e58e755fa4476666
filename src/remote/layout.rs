//! The remote layout (docs/REMOTE.md is its specification): object names,
//! the record that describes one shared entry, its envelope and signature,
//! and how keys, values and tags are encoded in it.
//!
//! ```text
//! NS/values/<sha256 hex of the value's bytes>      the value, written once
//! NS/records/<key id>                               the entry's record (JSON envelope), first writer wins
//! NS/log/<20-digit µs since epoch>-<key id>         one per record, in creation order; holds the key id
//! ```
//!
//! Signing is HMAC-SHA256 (the `hmac` crate over the project's `sha2`)
//! over the record's exact JSON text; the record holds the value's sha256,
//! so a signed record covers its value too.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{KeyInit, Mac};
use serde_json::{Value as Json, json};
use sha2::{Digest, Sha256};

use crate::cache::{Key, Scalar, Value};

/// The record format's version (the envelope's `format`).
pub const FORMAT: &str = "diskcachefs-remote/1";

/// The largest record or log object a reader accepts.
pub const MAX_RECORD_LEN: u64 = 1 << 20;

type HmacSha256 = hmac::Hmac<Sha256>;

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// A namespace is one name part: letters, digits, `-_.`.
pub fn valid_namespace(ns: &str) -> bool {
    super::store::valid_name(ns) && !ns.contains('/')
}

/// The bytes that stand for a key: its type name, a NUL, then its stored
/// form (str: UTF-8; bytes and pickles: themselves; int: 8 bytes
/// big-endian two's complement; float: its IEEE 754 bits, big-endian).
pub fn key_bytes(key: &Key) -> Vec<u8> {
    let mut out = key.type_name().as_bytes().to_vec();
    out.push(0);
    match key {
        Key::Str(s) => out.extend_from_slice(s.as_bytes()),
        Key::Bytes(b) | Key::Pickled(b) => out.extend_from_slice(b),
        Key::Int(i) => out.extend_from_slice(&i.to_be_bytes()),
        Key::Float(f) => out.extend_from_slice(&f.to_bits().to_be_bytes()),
    }
    out
}

/// A key's id: the sha256 (hex) of [`key_bytes`].
pub fn key_id(key: &Key) -> String {
    sha256_hex(&key_bytes(key))
}

pub fn value_name(ns: &str, digest: &str) -> String {
    format!("{ns}/values/{digest}")
}

pub fn record_name(ns: &str, key_id: &str) -> String {
    format!("{ns}/records/{key_id}")
}

pub fn log_prefix(ns: &str) -> String {
    format!("{ns}/log/")
}

/// A log entry's name: creation time in microseconds, zero-padded to 20
/// digits so names sort by time, then the key id (unique: only the
/// record's creator logs it).
pub fn log_name(ns: &str, micros: u64, key_id: &str) -> String {
    format!("{ns}/log/{micros:020}-{key_id}")
}

/// The time and key id of a log entry's name (after the prefix).
pub fn parse_log_name(ns: &str, name: &str) -> Option<(u64, String)> {
    let rest = name.strip_prefix(&log_prefix(ns))?;
    let (t, id) = rest.split_once('-')?;
    if t.len() != 20 || !t.bytes().all(|b| b.is_ascii_digit()) || !is_hex_digest(id) {
        return None;
    }
    Some((t.parse().ok()?, id.to_string()))
}

pub fn is_hex_digest(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Why an entry was shared (the record's `kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShareKind {
    /// A flytekit task cache entry (`{task}-{version}-{md5}`).
    Flyte,
    /// Opted in by its tag (`--tag`).
    Tag,
    /// Opted in by a prefix of its str key (`--prefix`).
    Prefix,
    /// A Flyte 2 `task_cache` row: its key is [`FLYTE2_KEY_PREFIX`] and the
    /// row's key, as a str; its value the row's `Outputs` bytes.
    Flyte2,
}

/// What a Flyte 2 entry's key starts with in a record (`task_cache` rows
/// are not diskcache entries; the prefix keeps their key ids apart).
pub const FLYTE2_KEY_PREFIX: &str = "flyte2/task_cache/";

impl ShareKind {
    pub fn name(self) -> &'static str {
        match self {
            ShareKind::Flyte => "flyte",
            ShareKind::Tag => "tag",
            ShareKind::Prefix => "prefix",
            ShareKind::Flyte2 => "flyte2",
        }
    }

    fn from_name(s: &str) -> Option<ShareKind> {
        Some(match s {
            "flyte" => ShareKind::Flyte,
            "tag" => ShareKind::Tag,
            "prefix" => ShareKind::Prefix,
            "flyte2" => ShareKind::Flyte2,
            _ => return None,
        })
    }
}

/// One shared entry, as its record describes it.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub namespace: String,
    pub key: Key,
    /// The value's Python type: `bytes`, `str`, `int`, `float`, `pickle`, `none`.
    pub value_type: &'static str,
    /// Bytes in the value object.
    pub size: u64,
    /// sha256 hex of the value object.
    pub digest: String,
    /// Absolute expiry (seconds since the epoch), as diskcache stores it.
    pub expire_time: Option<f64>,
    pub tag: Option<Scalar>,
    pub kind: ShareKind,
    /// When the record was made (seconds since the epoch).
    pub created: f64,
}

/// A value's bytes in the value object (its type is in the record).
pub fn value_bytes(value: &Value) -> Vec<u8> {
    match value {
        Value::Bytes(b) | Value::Pickle(b) => b.clone(),
        Value::Str(s) => s.as_bytes().to_vec(),
        Value::Int(i) => i.to_be_bytes().to_vec(),
        Value::Float(f) => f.to_bits().to_be_bytes().to_vec(),
        Value::None => Vec::new(),
    }
}

/// The value a value object holds, given the record's type.
pub fn value_from_bytes(value_type: &str, bytes: Vec<u8>) -> Result<Value, String> {
    let eight = |b: &[u8]| -> Result<[u8; 8], String> {
        b.try_into().map_err(|_| format!("a {value_type} value is 8 bytes, not {}", b.len()))
    };
    Ok(match value_type {
        "bytes" => Value::Bytes(bytes),
        "pickle" => Value::Pickle(bytes),
        "str" => Value::Str(String::from_utf8(bytes).map_err(|_| "a str value is not UTF-8".to_string())?),
        "int" => Value::Int(i64::from_be_bytes(eight(&bytes)?)),
        "float" => Value::Float(f64::from_bits(u64::from_be_bytes(eight(&bytes)?))),
        "none" if bytes.is_empty() => Value::None,
        "none" => return Err("a none value has no bytes".into()),
        other => return Err(format!("unknown value type {other:?}")),
    })
}

fn enc_key(key: &Key) -> Json {
    match key {
        Key::Str(s) => json!({"type": "str", "data": s}),
        Key::Bytes(b) => json!({"type": "bytes", "data": B64.encode(b)}),
        Key::Pickled(b) => json!({"type": "pickle", "data": B64.encode(b)}),
        Key::Int(i) => json!({"type": "int", "data": i}),
        Key::Float(f) => json!({"type": "float", "data": f}),
    }
}

fn dec_key(j: &Json) -> Result<Key, String> {
    let data = &j["data"];
    let b64 = || -> Result<Vec<u8>, String> {
        B64.decode(data.as_str().ok_or("key data is not a string")?).map_err(|e| format!("key data: {e}"))
    };
    Ok(match j["type"].as_str() {
        Some("str") => Key::Str(data.as_str().ok_or("str key data is not a string")?.to_string()),
        Some("bytes") => Key::Bytes(b64()?),
        Some("pickle") => Key::Pickled(b64()?),
        Some("int") => Key::Int(data.as_i64().ok_or("int key data is not an integer")?),
        Some("float") => Key::Float(data.as_f64().ok_or("float key data is not a number")?),
        other => return Err(format!("unknown key type {other:?}")),
    })
}

fn enc_tag(tag: &Option<Scalar>) -> Json {
    match tag {
        None => Json::Null,
        Some(Scalar::Str(s)) => json!({"type": "str", "data": s}),
        Some(Scalar::Bytes(b)) => json!({"type": "bytes", "data": B64.encode(b)}),
        Some(Scalar::Int(i)) => json!({"type": "int", "data": i}),
        Some(Scalar::Float(f)) => json!({"type": "float", "data": f}),
    }
}

fn dec_tag(j: &Json) -> Result<Option<Scalar>, String> {
    if j.is_null() {
        return Ok(None);
    }
    Ok(Some(match dec_key(j)? {
        Key::Str(s) => Scalar::Str(s),
        Key::Bytes(b) => Scalar::Bytes(b),
        Key::Int(i) => Scalar::Int(i),
        Key::Float(f) => Scalar::Float(f),
        Key::Pickled(_) => return Err("a tag cannot be a pickle".into()),
    }))
}

fn value_type_name(s: &str) -> Option<&'static str> {
    ["bytes", "str", "int", "float", "pickle", "none"].into_iter().find(|t| *t == s)
}

impl Record {
    /// The record's JSON text (the part that is signed).
    pub fn to_json(&self) -> String {
        json!({
            "namespace": self.namespace,
            "key": enc_key(&self.key),
            "value": {"type": self.value_type, "size": self.size, "sha256": self.digest},
            "expire_time": self.expire_time,
            "tag": enc_tag(&self.tag),
            "kind": self.kind.name(),
            "created": self.created,
        })
        .to_string()
    }

    pub fn from_json(text: &str) -> Result<Record, String> {
        let j: Json = serde_json::from_str(text).map_err(|e| format!("record is not JSON: {e}"))?;
        let v = &j["value"];
        let digest = v["sha256"].as_str().ok_or("no value.sha256")?.to_string();
        if !is_hex_digest(&digest) {
            return Err(format!("value.sha256 {digest:?} is not 64 lowercase hex digits"));
        }
        Ok(Record {
            namespace: j["namespace"].as_str().ok_or("no namespace")?.to_string(),
            key: dec_key(&j["key"])?,
            value_type: value_type_name(v["type"].as_str().ok_or("no value.type")?).ok_or("unknown value.type")?,
            size: v["size"].as_u64().ok_or("no value.size")?,
            digest,
            expire_time: match &j["expire_time"] {
                Json::Null => None,
                t => Some(t.as_f64().ok_or("expire_time is not a number")?),
            },
            tag: dec_tag(&j["tag"])?,
            kind: ShareKind::from_name(j["kind"].as_str().ok_or("no kind")?).ok_or("unknown kind")?,
            created: j["created"].as_f64().unwrap_or(0.0),
        })
    }
}

/// HMAC-SHA256 of `message` under `key`, hex.
pub fn sign(key: &[u8], message: &[u8]) -> String {
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(message);
    hex(&mac.finalize().into_bytes())
}

/// Whether `sig_hex` is `message`'s HMAC under `key` (constant time).
pub fn verify(key: &[u8], message: &[u8], sig_hex: &str) -> bool {
    let Some(sig) = unhex(sig_hex) else { return false };
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(message);
    mac.verify_slice(&sig).is_ok()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// The record object: `{"format", "record": <the record's JSON text>,
/// "hmac_sha256": <hex of HMAC over that text, or null>}`. The record is a
/// string inside the envelope so that a reader verifies the exact bytes
/// that were signed, with no canonical JSON to agree on.
pub fn envelope(record: &Record, signing_key: Option<&[u8]>) -> Vec<u8> {
    let text = record.to_json();
    let sig = signing_key.map(|k| sign(k, text.as_bytes()));
    json!({"format": FORMAT, "record": text, "hmac_sha256": sig}).to_string().into_bytes()
}

/// Why a record object was not accepted.
#[derive(Debug, PartialEq)]
pub enum Rejection {
    /// Not an envelope, or its record is malformed.
    Malformed(String),
    /// A signing key is set and the signature is missing or wrong.
    BadSignature,
    /// The record is well formed and signed but not the one its name
    /// promises (another namespace, another key).
    Mismatch(String),
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejection::Malformed(m) => write!(f, "malformed record: {m}"),
            Rejection::BadSignature => write!(f, "signature missing or wrong (tampered, or signed with another key)"),
            Rejection::Mismatch(m) => write!(f, "record does not match its name: {m}"),
        }
    }
}

/// Reads the record object stored under `NS/records/<expected_id>`.
pub fn open_envelope(
    bytes: &[u8],
    ns: &str,
    expected_id: &str,
    signing_key: Option<&[u8]>,
) -> Result<Record, Rejection> {
    let j: Json = serde_json::from_slice(bytes).map_err(|e| Rejection::Malformed(format!("not JSON: {e}")))?;
    if j["format"].as_str() != Some(FORMAT) {
        return Err(Rejection::Malformed(format!("format is {}, not {FORMAT:?}", j["format"])));
    }
    let text = j["record"].as_str().ok_or_else(|| Rejection::Malformed("no record text".into()))?;
    if let Some(key) = signing_key {
        let sig = j["hmac_sha256"].as_str().ok_or(Rejection::BadSignature)?;
        if !verify(key, text.as_bytes(), sig) {
            return Err(Rejection::BadSignature);
        }
    }
    let record = Record::from_json(text).map_err(Rejection::Malformed)?;
    if record.namespace != ns {
        return Err(Rejection::Mismatch(format!("namespace {:?}, not {ns:?}", record.namespace)));
    }
    let id = key_id(&record.key);
    if id != expected_id {
        return Err(Rejection::Mismatch(format!("its key's id is {id}")));
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record {
        Record {
            namespace: "team".into(),
            key: Key::Str("flytekit.square-1-0123456789abcdef0123456789abcdef".into()),
            value_type: "bytes",
            size: 3,
            digest: sha256_hex(b"abc"),
            expire_time: Some(1.5e9),
            tag: Some(Scalar::Str("grp".into())),
            kind: ShareKind::Flyte,
            created: 1.7e9,
        }
    }

    #[test]
    fn records_round_trip_signed_and_unsigned() {
        let r = record();
        let id = key_id(&r.key);
        for key in [None, Some(&b"k"[..])] {
            let env = envelope(&r, key);
            assert_eq!(open_envelope(&env, "team", &id, key).unwrap(), r);
        }
        // Unsigned read of a signed record is fine; a signed read of an
        // unsigned one is not.
        assert_eq!(open_envelope(&envelope(&r, Some(b"k")), "team", &id, None).unwrap(), r);
        assert_eq!(open_envelope(&envelope(&r, None), "team", &id, Some(b"k")), Err(Rejection::BadSignature));
    }

    #[test]
    fn tampering_is_rejected() {
        let r = record();
        let id = key_id(&r.key);
        let env = String::from_utf8(envelope(&r, Some(b"k"))).unwrap();
        let bad = env.replace(&r.digest, &sha256_hex(b"evil"));
        assert_eq!(open_envelope(bad.as_bytes(), "team", &id, Some(b"k")), Err(Rejection::BadSignature));
        assert_eq!(open_envelope(env.as_bytes(), "team", &id, Some(b"other")), Err(Rejection::BadSignature));
        // Copied to another key's name, or another namespace.
        assert!(matches!(
            open_envelope(env.as_bytes(), "team", &"0".repeat(64), Some(b"k")),
            Err(Rejection::Mismatch(_))
        ));
        assert!(matches!(open_envelope(env.as_bytes(), "other", &id, Some(b"k")), Err(Rejection::Mismatch(_))));
        assert!(matches!(open_envelope(b"{}", "team", &id, None), Err(Rejection::Malformed(_))));
    }

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn keys_of_different_types_have_different_ids() {
        let ids: Vec<String> =
            [Key::Str("a".into()), Key::Bytes(b"a".to_vec()), Key::Pickled(b"a".to_vec())].iter().map(key_id).collect();
        assert_ne!(ids[0], ids[1]);
        assert_ne!(ids[1], ids[2]);
        assert_eq!(key_id(&Key::Str("a".into())), sha256_hex(b"str\0a"));
    }

    #[test]
    fn values_round_trip() {
        for v in [Value::Bytes(b"x".to_vec()), Value::Str("é".into()), Value::Int(-3), Value::Float(0.1), Value::None]
        {
            assert_eq!(value_from_bytes(v.type_name(), value_bytes(&v)).unwrap(), v);
        }
        assert!(value_from_bytes("int", vec![1]).is_err());
    }

    #[test]
    fn log_names_sort_by_time_and_parse() {
        let id = "a".repeat(64);
        let (a, b) = (log_name("ns", 999, &id), log_name("ns", 1000, &id));
        assert!(a < b);
        assert_eq!(parse_log_name("ns", &b), Some((1000, id.clone())));
        assert_eq!(parse_log_name("ns", "ns/log/12-x"), None);
    }
}
