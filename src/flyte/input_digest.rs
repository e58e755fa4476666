//! A digest of each input of a task's inputs, so that two lookups (or a
//! lookup and an entry whose inputs were seen) can be compared input by
//! input (docs/FLYTE.md, "Why a lookup missed"). flytekit's key hashes all
//! inputs together; this says which of them differ.
//!
//! Each input's `bytes` digest is the md5 of the canonical bytes flytekit
//! would hash for a map holding that input alone (`canonical.rs`: the model
//! round trip, hash placement, deterministic serialization), so two inputs
//! with equal digests add the same bytes to the key. Its `content` digest
//! is the same after every MessagePack `Binary` in it (a dataclass or
//! pydantic input in flytekit 1.14+) is rewritten with its maps in key
//! order ([`super::msgpack`]): equal `content` with different `bytes` is an
//! input whose content is equal and whose encoding is not.

use std::collections::BTreeMap;

use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};

use super::canonical::hashed_inputs;
use super::idl::{Literal, LiteralMap, literal, primitive, scalar};
use super::key::{KeyError, decode_literal_map};
use super::msgpack;

/// One input's digests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputDigest {
    /// md5 (hex) of the input's canonical bytes.
    pub bytes: String,
    /// md5 (hex) of the same with MessagePack maps in key order (equal to
    /// `bytes` when it holds no MessagePack).
    pub content: String,
    /// The literal's kind (`integer`, `string`, `binary/msgpack`,
    /// `collection`, ...).
    pub kind: String,
    /// The literal carries a hash of its own (a user-hashed literal, e.g.
    /// `Annotated[..., HashMethod]`): flytekit's key takes only the hash.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hashed: bool,
}

/// The digests of a task's inputs: those in the key by name, and the names
/// left out of it (`cache_ignore_input_vars`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputDigests {
    pub inputs: BTreeMap<String, InputDigest>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignored: Vec<String>,
}

/// The digests of serialized inputs; an error where flytekit's key would
/// be one.
pub fn digest_inputs(inputs: &[u8], ignore: &[String]) -> Result<InputDigests, KeyError> {
    let map = decode_literal_map(inputs)?;
    let mut out = InputDigests::default();
    for (name, literal) in map.literals {
        if ignore.contains(&name) {
            out.ignored.push(name);
            continue;
        }
        let bytes = md5_hex(&hashed_inputs(&single(&name, literal.clone()), &[])?);
        let mut normalized = literal.clone();
        let content = if canonical_msgpack(&mut normalized) {
            md5_hex(&hashed_inputs(&single(&name, normalized), &[])?)
        } else {
            bytes.clone()
        };
        let digest = InputDigest { bytes, content, kind: kind(&literal), hashed: !literal.hash.is_empty() };
        out.inputs.insert(name, digest);
    }
    Ok(out)
}

fn single(name: &str, literal: Literal) -> LiteralMap {
    LiteralMap { literals: [(name.to_string(), literal)].into() }
}

fn md5_hex(data: &[u8]) -> String {
    Md5::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

/// Rewrites every MessagePack binary in `literal` in key order; true when
/// there was one.
fn canonical_msgpack(literal: &mut Literal) -> bool {
    let mut found = false;
    let mut stack = vec![literal];
    while let Some(l) = stack.pop() {
        match &mut l.value {
            Some(literal::Value::Scalar(s)) => match &mut s.value {
                Some(scalar::Value::Binary(b)) if b.tag == "msgpack" => {
                    if let Some(c) = msgpack::canonical(&b.value) {
                        b.value = c;
                        found = true;
                    }
                }
                Some(scalar::Value::Union(u)) => stack.extend(u.value.as_mut()),
                _ => {}
            },
            Some(literal::Value::Collection(c)) => stack.extend(c.literals.iter_mut()),
            Some(literal::Value::Map(m)) => stack.extend(m.literals.values_mut()),
            _ => {}
        }
    }
    found
}

/// A literal's kind, as a short name.
pub fn kind(literal: &Literal) -> String {
    let name = match &literal.value {
        Some(literal::Value::Scalar(s)) => match &s.value {
            Some(scalar::Value::Primitive(p)) => match &p.value {
                Some(primitive::Value::Integer(_)) => "integer",
                Some(primitive::Value::FloatValue(_)) => "float",
                Some(primitive::Value::StringValue(_)) => "string",
                Some(primitive::Value::Boolean(_)) => "boolean",
                Some(primitive::Value::Datetime(_)) => "datetime",
                Some(primitive::Value::Duration(_)) => "duration",
                None => "primitive",
            },
            Some(scalar::Value::Binary(b)) if !b.tag.is_empty() => return format!("binary/{}", b.tag),
            Some(scalar::Value::Binary(_)) => "binary",
            Some(scalar::Value::Blob(_)) => "blob",
            Some(scalar::Value::Schema(_)) => "schema",
            Some(scalar::Value::NoneType(_)) => "none",
            Some(scalar::Value::Error(_)) => "error",
            Some(scalar::Value::Generic(_)) => "generic",
            Some(scalar::Value::StructuredDataset(_)) => "structured_dataset",
            Some(scalar::Value::Union(_)) => "union",
            None => "scalar",
        },
        Some(literal::Value::Collection(_)) => "collection",
        Some(literal::Value::Map(_)) => "map",
        Some(literal::Value::OffloadedMetadata(_)) => "offloaded",
        None => "empty",
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::flyte::idl::{Binary, Primitive, Scalar};

    fn scalar_literal(value: scalar::Value) -> Literal {
        Literal { value: Some(literal::Value::Scalar(Scalar { value: Some(value) })), ..Default::default() }
    }

    fn int(i: i64) -> Literal {
        scalar_literal(scalar::Value::Primitive(Primitive { value: Some(primitive::Value::Integer(i)) }))
    }

    fn msgpack(value: &[u8]) -> Literal {
        scalar_literal(scalar::Value::Binary(Binary { value: value.to_vec(), tag: "msgpack".into() }))
    }

    fn inputs(entries: Vec<(&str, Literal)>) -> Vec<u8> {
        LiteralMap { literals: entries.into_iter().map(|(k, v)| (k.to_string(), v)).collect() }.encode_to_vec()
    }

    #[test]
    fn one_input_changed_changes_its_digest_only() {
        let a = digest_inputs(&inputs(vec![("x", int(1)), ("y", int(2))]), &[]).unwrap();
        let b = digest_inputs(&inputs(vec![("x", int(1)), ("y", int(3))]), &[]).unwrap();
        assert_eq!(a.inputs["x"], b.inputs["x"]);
        assert_ne!(a.inputs["y"].bytes, b.inputs["y"].bytes);
        assert_eq!(a.inputs["y"].kind, "integer");
        let ignored = digest_inputs(&inputs(vec![("x", int(1)), ("y", int(2))]), &["y".into()]).unwrap();
        assert_eq!(ignored.ignored, ["y"]);
        assert!(!ignored.inputs.contains_key("y"));
    }

    #[test]
    fn a_literal_with_a_hash_is_marked_and_digested_by_its_hash() {
        let hashed = |value: i64| Literal { hash: "user-hash".into(), ..int(value) };
        let a = digest_inputs(&inputs(vec![("df", hashed(1))]), &[]).unwrap();
        let b = digest_inputs(&inputs(vec![("df", hashed(2))]), &[]).unwrap();
        assert!(a.inputs["df"].hashed);
        // flytekit's key takes the hash alone: so does the digest.
        assert_eq!(a.inputs["df"].bytes, b.inputs["df"].bytes);
        assert!(!digest_inputs(&inputs(vec![("df", int(1))]), &[]).unwrap().inputs["df"].hashed);
    }

    #[test]
    fn reordered_msgpack_keys_are_equal_content_different_bytes() {
        // {"a": 1, "b": 2} and {"b": 2, "a": 1}.
        let ab = [0x82, 0xa1, b'a', 0x01, 0xa1, b'b', 0x02];
        let ba = [0x82, 0xa1, b'b', 0x02, 0xa1, b'a', 0x01];
        let one = digest_inputs(&inputs(vec![("cfg", msgpack(&ab))]), &[]).unwrap();
        let two = digest_inputs(&inputs(vec![("cfg", msgpack(&ba))]), &[]).unwrap();
        assert_ne!(one.inputs["cfg"].bytes, two.inputs["cfg"].bytes);
        assert_eq!(one.inputs["cfg"].content, two.inputs["cfg"].content);
        assert_eq!(one.inputs["cfg"].kind, "binary/msgpack");
        // Different content stays different.
        let other = digest_inputs(&inputs(vec![("cfg", msgpack(&[0x81, 0xa1, b'a', 0x02]))]), &[]).unwrap();
        assert_ne!(one.inputs["cfg"].content, other.inputs["cfg"].content);
    }
}
