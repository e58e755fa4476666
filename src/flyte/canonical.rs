//! The bytes flytekit 1.16 hashes for a cache key, written directly from a
//! decoded `LiteralMap`.
//!
//! flytekit (`flytekit/core/local_cache.py`, `_calculate_cache_key`):
//! 1. parses the bytes and converts them to its model classes and back
//!    (`ModelLiteralMap.from_flyte_idl(pb).to_flyte_idl()`), which
//!    normalizes what the models do not carry (rules below, each at the
//!    function that applies it, citing `flytekit/models/*.py`);
//! 2. drops `cache_ignore_input_vars`;
//! 3. applies `_recursive_hash_placement` to each input;
//! 4. serializes with `SerializeToString(deterministic=True)`.
//!
//! Python protobuf's encoder (upb) writes fields in field-number order,
//! skips proto3 scalars at their default unless they are a oneof member,
//! writes every present sub-message (even empty), sorts map entries by key
//! and writes both key and value of every entry (even defaults). This
//! module follows those rules by hand; prost's encoder differs on the last.

use std::collections::BTreeMap;

use super::idl;
use super::key::KeyError;

// ---------------------------------------------------------------------------
// Wire format.

const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// `v` as a varint in a buffer of its own: its bytes and how many there
/// are (for a length written after its body, see `put_msg`). `varint`
/// keeps its own loop: pushing directly is the hot path, and going through
/// this buffer cost 3% more instructions per key (callgrind).
fn varint_bytes(mut v: u64) -> ([u8; 10], usize) {
    let mut bytes = [0u8; 10];
    let mut n = 0;
    while v >= 0x80 {
        bytes[n] = (v as u8) | 0x80;
        v >>= 7;
        n += 1;
    }
    bytes[n] = v as u8;
    (bytes, n + 1)
}

fn tag(out: &mut Vec<u8>, field: u32, wire: u32) {
    varint(out, u64::from(field << 3 | wire));
}

fn put_varint(out: &mut Vec<u8>, field: u32, v: u64) {
    tag(out, field, VARINT);
    varint(out, v);
}

fn put_double(out: &mut Vec<u8>, field: u32, v: f64) {
    tag(out, field, FIXED64);
    out.extend_from_slice(&v.to_bits().to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, field: u32, data: &[u8]) {
    tag(out, field, LEN);
    varint(out, data.len() as u64);
    out.extend_from_slice(data);
}

/// A proto3 string/bytes field: omitted when empty.
fn put_nonempty(out: &mut Vec<u8>, field: u32, data: &[u8]) {
    if !data.is_empty() {
        put_bytes(out, field, data);
    }
}

/// A present sub-message, written in place: its content goes straight into
/// `out` after one byte kept for its length, which is filled in afterwards;
/// only a body of 128 bytes or more moves to make room for a longer varint
/// (no buffer per nested message, and rarely a move).
fn put_msg(
    out: &mut Vec<u8>,
    field: u32,
    body: impl FnOnce(&mut Vec<u8>) -> Result<(), KeyError>,
) -> Result<(), KeyError> {
    tag(out, field, LEN);
    let at = out.len();
    out.push(0);
    body(out)?;
    let len = out.len() - at - 1;
    if len < 0x80 {
        out[at] = len as u8;
    } else {
        let (header, n) = varint_bytes(len as u64);
        out.splice(at..at + 1, header[..n].iter().copied());
    }
    Ok(())
}

/// Map entries in the order Python protobuf (upb) writes them with
/// `deterministic=True`: upb sorts keys by `memcmp` of their common prefix,
/// reversed, then by length, and encodes the sorted entries back to front.
/// The result is byte order, except that of two keys where one is a prefix
/// of the other, the longer comes first (so an empty key comes last).
fn upb_order<V>(map: &BTreeMap<String, V>) -> UpbOrder<'_, V> {
    // In byte order a key that is a prefix of any later key is a prefix of
    // the next one; without such a pair the map's own order is upb's.
    let mut keys = map.keys();
    let mut prev = keys.next();
    let mut prefix_pair = false;
    for k in keys {
        if prev.is_some_and(|p| k.as_bytes().starts_with(p.as_bytes())) {
            prefix_pair = true;
            break;
        }
        prev = Some(k);
    }
    if !prefix_pair {
        return UpbOrder::Sorted(map.iter());
    }
    let mut entries: Vec<(&String, &V)> = map.iter().collect();
    entries.sort_by(|(a, _), (b, _)| {
        let common = a.len().min(b.len());
        a.as_bytes()[..common].cmp(&b.as_bytes()[..common]).then(b.len().cmp(&a.len()))
    });
    UpbOrder::Reordered(entries.into_iter())
}

enum UpbOrder<'a, V> {
    Sorted(std::collections::btree_map::Iter<'a, String, V>),
    Reordered(std::vec::IntoIter<(&'a String, &'a V)>),
}

impl<'a, V> Iterator for UpbOrder<'a, V> {
    type Item = (&'a String, &'a V);
    fn next(&mut self) -> Option<Self::Item> {
        match self {
            UpbOrder::Sorted(it) => it.next(),
            UpbOrder::Reordered(it) => it.next(),
        }
    }
}

/// Signed 32/64-bit values are varints of their two's complement (64 bit).
fn signed(v: i64) -> u64 {
    v as u64
}

// ---------------------------------------------------------------------------
// LiteralMap and Literal.

/// The hashed bytes for `inputs` minus the ignored variables.
pub fn hashed_inputs(inputs: &idl::LiteralMap, ignore: &[String]) -> Result<Vec<u8>, KeyError> {
    hashed_inputs_sized(inputs, ignore, 0)
}

/// The same, writing into a buffer of `capacity` bytes to begin with (the
/// serialized input's size is a good guess: the model round trip mostly
/// keeps what it reads).
pub(super) fn hashed_inputs_sized(
    inputs: &idl::LiteralMap,
    ignore: &[String],
    capacity: usize,
) -> Result<Vec<u8>, KeyError> {
    // flytekit converts the whole map to its models first, ignored inputs
    // and hashed literals included, so their failures are ours too.
    for literal in inputs.literals.values() {
        check_literal(literal)?;
    }
    let mut out = Vec::with_capacity(capacity);
    for (name, literal) in upb_order(&inputs.literals) {
        if ignore.iter().any(|i| i == name) {
            continue;
        }
        put_msg(&mut out, 1, |e| {
            put_bytes(e, 1, name.as_bytes());
            put_msg(e, 2, |v| hash_placed(literal, v))
        })?;
    }
    Ok(out)
}

/// `_recursive_hash_placement` of the model of `literal`: a literal with a
/// hash is replaced by the hash alone; a collection or map keeps only its
/// (recursively placed) items, dropping its metadata; anything else is the
/// model's own round trip.
fn hash_placed(literal: &idl::Literal, out: &mut Vec<u8>) -> Result<(), KeyError> {
    use idl::literal::Value;
    // Literal.from_flyte_idl: `hash=pb2_object.hash if pb2_object.hash else None`.
    if !literal.hash.is_empty() {
        put_bytes(out, 4, literal.hash.as_bytes());
        return Ok(());
    }
    match &literal.value {
        Some(Value::Collection(c)) => put_msg(out, 2, |o| {
            for item in &c.literals {
                put_msg(o, 1, |l| hash_placed(item, l))?;
            }
            Ok(())
        }),
        Some(Value::Map(m)) => put_msg(out, 3, |o| {
            for (k, v) in upb_order(&m.literals) {
                put_msg(o, 1, |e| {
                    put_bytes(e, 1, k.as_bytes());
                    put_msg(e, 2, |l| hash_placed(v, l))
                })?;
            }
            Ok(())
        }),
        _ => literal_model(literal, out),
    }
}

/// `Literal.from_flyte_idl(pb).to_flyte_idl()`: an empty hash or metadata
/// is absent (`literals.py`, `Literal.from_flyte_idl`).
fn literal_model(literal: &idl::Literal, out: &mut Vec<u8>) -> Result<(), KeyError> {
    use idl::literal::Value;
    match &literal.value {
        Some(Value::Scalar(s)) => put_msg(out, 1, |o| scalar(s, o))?,
        Some(Value::Collection(c)) => put_msg(out, 2, |o| {
            for item in &c.literals {
                put_msg(o, 1, |l| literal_model(item, l))?;
            }
            Ok(())
        })?,
        Some(Value::Map(m)) => put_msg(out, 3, |o| {
            for (k, v) in upb_order(&m.literals) {
                put_msg(o, 1, |e| {
                    put_bytes(e, 1, k.as_bytes());
                    put_msg(e, 2, |l| literal_model(v, l))
                })?;
            }
            Ok(())
        })?,
        Some(Value::OffloadedMetadata(_)) | None => {}
    }
    put_nonempty(out, 4, literal.hash.as_bytes());
    for (k, v) in upb_order(&literal.metadata) {
        put_msg(out, 5, |e| {
            put_bytes(e, 1, k.as_bytes());
            put_bytes(e, 2, v.as_bytes());
            Ok(())
        })?;
    }
    if let Some(Value::OffloadedMetadata(m)) = &literal.value {
        // LiteralOffloadedMetadata: uri, size_bytes, inferred_type if present.
        put_msg(out, 8, |o| {
            put_nonempty(o, 1, m.uri.as_bytes());
            if m.size_bytes != 0 {
                put_varint(o, 2, m.size_bytes);
            }
            if let Some(t) = &m.inferred_type {
                put_msg(o, 3, |t_out| literal_type(t, t_out))?;
            }
            Ok(())
        })?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// What makes `from_flyte_idl` raise, anywhere in the input: a datetime or
// duration Python cannot represent, and a NaN or infinity in a type's
// metadata or annotations (`MessageToDict` refuses them).

fn check_literal(literal: &idl::Literal) -> Result<(), KeyError> {
    use idl::literal::Value;
    match &literal.value {
        Some(Value::Scalar(s)) => check_scalar(s),
        Some(Value::Collection(c)) => c.literals.iter().try_for_each(check_literal),
        Some(Value::Map(m)) => m.literals.values().try_for_each(check_literal),
        Some(Value::OffloadedMetadata(o)) => o.inferred_type.as_ref().map_or(Ok(()), check_type),
        None => Ok(()),
    }
}

fn check_scalar(s: &idl::Scalar) -> Result<(), KeyError> {
    use idl::scalar::Value;
    match &s.value {
        Some(Value::Primitive(p)) => match &p.value {
            Some(idl::primitive::Value::Datetime(t)) => datetime_round_trip(t.seconds, t.nanos).map(|_| ()),
            Some(idl::primitive::Value::Duration(d)) => timedelta_round_trip(d.seconds, d.nanos).map(|_| ()),
            _ => Ok(()),
        },
        Some(Value::StructuredDataset(sd)) => {
            sd.metadata.as_ref().and_then(|m| m.structured_dataset_type.as_ref()).map_or(Ok(()), check_sd_type)
        }
        Some(Value::Union(u)) => {
            u.value.as_ref().map_or(Ok(()), check_literal)?;
            u.r#type.as_ref().map_or(Ok(()), check_type)
        }
        _ => Ok(()),
    }
}

fn check_sd_type(t: &idl::StructuredDatasetType) -> Result<(), KeyError> {
    t.columns.iter().filter_map(|c| c.literal_type.as_ref()).try_for_each(check_type)
}

fn check_type(t: &idl::LiteralType) -> Result<(), KeyError> {
    use idl::literal_type::Type;
    if let Some(m) = &t.metadata {
        check_json_struct(m)?;
    }
    if let Some(a) = t.annotation.as_ref().and_then(|a| a.annotations.as_ref()) {
        check_json_struct(a)?;
    }
    if let Some(s) = &t.structure {
        s.dataclass_type.values().try_for_each(check_type)?;
    }
    match &t.r#type {
        Some(Type::CollectionType(c)) | Some(Type::MapValueType(c)) => check_type(c),
        Some(Type::UnionType(u)) => u.variants.iter().try_for_each(check_type),
        Some(Type::StructuredDatasetType(s)) => check_sd_type(s),
        _ => Ok(()),
    }
}

fn check_json_struct(s: &idl::Struct) -> Result<(), KeyError> {
    s.fields.values().try_for_each(check_json_value)
}

fn check_json_value(v: &idl::StructValue) -> Result<(), KeyError> {
    use idl::struct_value::Kind;
    match &v.kind {
        Some(Kind::NumberValue(f)) if !f.is_finite() => Err(KeyError::Unsupported(format!(
            "a type's metadata holds the number {f}, which flytekit cannot convert to JSON"
        ))),
        Some(Kind::StructValue(s)) => check_json_struct(s),
        Some(Kind::ListValue(l)) => l.values.iter().try_for_each(check_json_value),
        _ => Ok(()),
    }
}

// ---------------------------------------------------------------------------
// Scalars (`literals.py`, `Scalar.from_flyte_idl` / `to_flyte_idl`).

fn scalar(s: &idl::Scalar, out: &mut Vec<u8>) -> Result<(), KeyError> {
    use idl::scalar::Value;
    match &s.value {
        None => Ok(()),
        Some(Value::Primitive(p)) => put_msg(out, 1, |o| primitive(p, o)),
        // Blob always gets metadata and its type back, even if absent.
        Some(Value::Blob(b)) => put_msg(out, 2, |o| {
            let t = b.metadata.as_ref().and_then(|m| m.r#type.clone()).unwrap_or_default();
            put_msg(o, 1, |m| put_msg(m, 1, |t_out| blob_type(&t, t_out)))?;
            put_nonempty(o, 3, b.uri.as_bytes());
            Ok(())
        }),
        Some(Value::Binary(b)) => put_msg(out, 3, |o| {
            put_nonempty(o, 1, &b.value);
            put_nonempty(o, 2, b.tag.as_bytes());
            Ok(())
        }),
        // Schema always gets its type back.
        Some(Value::Schema(sc)) => put_msg(out, 4, |o| {
            put_nonempty(o, 1, sc.uri.as_bytes());
            let t = sc.r#type.clone().unwrap_or_default();
            put_msg(o, 3, |t_out| schema_type(&t, t_out))
        }),
        Some(Value::NoneType(_)) => put_msg(out, 5, |_| Ok(())),
        // Scalar.from_flyte_idl keeps the raw pb2 Error, whose missing
        // to_flyte_idl makes flytekit's key computation raise.
        Some(Value::Error(_)) => Err(KeyError::Unsupported(
            "an Error scalar: flytekit 1.16 cannot compute a cache key for it (Scalar.to_flyte_idl fails)".into(),
        )),
        // The generic Struct is passed through unchanged.
        Some(Value::Generic(st)) => put_msg(out, 7, |o| struct_fields(st, false, o)),
        // StructuredDataset always gets metadata and its type back.
        Some(Value::StructuredDataset(sd)) => put_msg(out, 8, |o| {
            put_nonempty(o, 1, sd.uri.as_bytes());
            let t = sd.metadata.as_ref().and_then(|m| m.structured_dataset_type.clone()).unwrap_or_default();
            put_msg(o, 2, |m| put_msg(m, 1, |t_out| structured_dataset_type(&t, t_out)))
        }),
        // Union: value and type are always present.
        Some(Value::Union(u)) => put_msg(out, 9, |o| {
            let value = u.value.clone().unwrap_or_default();
            put_msg(o, 1, |v| literal_model(&value, v))?;
            let t = u.r#type.clone().unwrap_or_default();
            put_msg(o, 2, |t_out| literal_type(&t, t_out))
        }),
    }
}

fn primitive(p: &idl::Primitive, out: &mut Vec<u8>) -> Result<(), KeyError> {
    use idl::primitive::Value;
    match &p.value {
        None => {}
        Some(Value::Integer(i)) => put_varint(out, 1, signed(*i)),
        Some(Value::FloatValue(f)) => put_double(out, 2, *f),
        Some(Value::StringValue(s)) => put_bytes(out, 3, s.as_bytes()),
        Some(Value::Boolean(b)) => put_varint(out, 4, u64::from(*b)),
        Some(Value::Datetime(t)) => {
            let (seconds, nanos) = datetime_round_trip(t.seconds, t.nanos)?;
            put_msg(out, 5, |o| seconds_nanos(seconds, nanos, o))?;
        }
        Some(Value::Duration(d)) => {
            let (seconds, nanos) = timedelta_round_trip(d.seconds, d.nanos)?;
            put_msg(out, 6, |o| seconds_nanos(seconds, nanos, o))?;
        }
    }
    Ok(())
}

fn seconds_nanos(seconds: i64, nanos: i32, out: &mut Vec<u8>) -> Result<(), KeyError> {
    if seconds != 0 {
        put_varint(out, 1, signed(seconds));
    }
    if nanos != 0 {
        put_varint(out, 2, signed(i64::from(nanos)));
    }
    Ok(())
}

/// protobuf's `_RoundTowardZero(nanos, 1000)`.
fn micros_toward_zero(nanos: i32) -> i64 {
    i64::from(nanos) / 1000
}

/// `Timestamp.ToDatetime()` then `FromDatetime()`: microseconds only, and a
/// Python datetime's range (years 1 to 9999), else flytekit raises.
pub(crate) fn datetime_round_trip(seconds: i64, nanos: i32) -> Result<(i64, i32), KeyError> {
    let total = i128::from(seconds) * 1_000_000 + i128::from(micros_toward_zero(nanos));
    let secs = total.div_euclid(1_000_000);
    let micros = total.rem_euclid(1_000_000);
    const MIN: i128 = -62_135_596_800; // 0001-01-01T00:00:00
    const MAX: i128 = 253_402_300_799; // 9999-12-31T23:59:59
    if !(MIN..=MAX).contains(&secs) {
        return Err(KeyError::OutOfRange(format!(
            "datetime {seconds}s {nanos}ns is outside Python's datetime range (years 1 to 9999)"
        )));
    }
    Ok((secs as i64, (micros * 1000) as i32))
}

/// `Duration.ToTimedelta()` then `FromTimedelta()`: microseconds only
/// (rounded toward zero), seconds and nanos of one sign, and a Python
/// timedelta's range (999,999,999 days), else flytekit raises.
pub(crate) fn timedelta_round_trip(seconds: i64, nanos: i32) -> Result<(i64, i32), KeyError> {
    let total = i128::from(seconds) * 1_000_000 + i128::from(micros_toward_zero(nanos));
    let floor = total.div_euclid(1_000_000);
    let rem = total.rem_euclid(1_000_000);
    const MAX_DAYS: i128 = 999_999_999;
    if !(-MAX_DAYS * 86_400..=MAX_DAYS * 86_400 + 86_399).contains(&floor) {
        return Err(KeyError::OutOfRange(format!("duration {seconds}s {nanos}ns is outside Python's timedelta range")));
    }
    // Duration._NormalizeDuration: nanos take the sign of the duration.
    let (secs, nanos) = if floor < 0 && rem > 0 { (floor + 1, (rem - 1_000_000) * 1000) } else { (floor, rem * 1000) };
    Ok((secs as i64, nanos as i32))
}

// ---------------------------------------------------------------------------
// Types (`types.py`, `core/types.py`).

fn blob_type(t: &idl::BlobType, out: &mut Vec<u8>) -> Result<(), KeyError> {
    put_nonempty(out, 1, t.format.as_bytes());
    if t.dimensionality != 0 {
        put_varint(out, 2, signed(i64::from(t.dimensionality)));
    }
    Ok(())
}

fn schema_type(t: &idl::SchemaType, out: &mut Vec<u8>) -> Result<(), KeyError> {
    for c in &t.columns {
        put_msg(out, 3, |o| {
            put_nonempty(o, 1, c.name.as_bytes());
            if c.r#type != 0 {
                put_varint(o, 2, signed(i64::from(c.r#type)));
            }
            Ok(())
        })?;
    }
    Ok(())
}

/// StructuredDatasetType: each column's literal type is always present.
fn structured_dataset_type(t: &idl::StructuredDatasetType, out: &mut Vec<u8>) -> Result<(), KeyError> {
    for c in &t.columns {
        put_msg(out, 1, |o| {
            put_nonempty(o, 1, c.name.as_bytes());
            let lt = c.literal_type.clone().unwrap_or_default();
            put_msg(o, 2, |t_out| literal_type(&lt, t_out))
        })?;
    }
    put_nonempty(out, 2, t.format.as_bytes());
    put_nonempty(out, 3, t.external_schema_type.as_bytes());
    put_nonempty(out, 4, &t.external_schema_bytes);
    Ok(())
}

/// LiteralType, in field-number order (the `type` oneof's members 7, 8 and
/// 10 interleave with metadata 6 and annotation 9).
fn literal_type(t: &idl::LiteralType, out: &mut Vec<u8>) -> Result<(), KeyError> {
    use idl::literal_type::Type;
    match &t.r#type {
        Some(Type::Simple(v)) => put_varint(out, 1, signed(i64::from(*v))),
        Some(Type::Schema(s)) => put_msg(out, 2, |o| schema_type(s, o))?,
        Some(Type::CollectionType(c)) => put_msg(out, 3, |o| literal_type(c, o))?,
        Some(Type::MapValueType(m)) => put_msg(out, 4, |o| literal_type(m, o))?,
        Some(Type::Blob(b)) => put_msg(out, 5, |o| blob_type(b, o))?,
        _ => {}
    }
    // metadata: `MessageToDict(proto.metadata) or None`, then back through
    // JSON: present only when it has fields.
    if let Some(m) = &t.metadata
        && !m.fields.is_empty()
    {
        put_msg(out, 6, |o| struct_fields(m, true, o))?;
    }
    match &t.r#type {
        Some(Type::EnumType(e)) => put_msg(out, 7, |o| {
            for v in &e.values {
                put_bytes(o, 1, v.as_bytes());
            }
            Ok(())
        })?,
        Some(Type::StructuredDatasetType(s)) => put_msg(out, 8, |o| structured_dataset_type(s, o))?,
        _ => {}
    }
    // annotation: `MessageToDict(proto.annotations)` is a dict even when
    // empty, so the annotations Struct is always present.
    if let Some(a) = &t.annotation {
        let annotations = a.annotations.clone().unwrap_or_default();
        put_msg(out, 9, |o| put_msg(o, 1, |s| struct_fields(&annotations, true, s)))?;
    }
    if let Some(Type::UnionType(u)) = &t.r#type {
        put_msg(out, 10, |o| {
            for v in &u.variants {
                put_msg(o, 1, |v_out| literal_type(v, v_out))?;
            }
            Ok(())
        })?;
    }
    if let Some(s) = &t.structure {
        put_msg(out, 11, |o| {
            put_nonempty(o, 1, s.tag.as_bytes());
            for (k, v) in upb_order(&s.dataclass_type) {
                put_msg(o, 2, |e| {
                    put_bytes(e, 1, k.as_bytes());
                    put_msg(e, 2, |t_out| literal_type(v, t_out))
                })?;
            }
            Ok(())
        })?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// google.protobuf.Struct.

/// A Struct's fields. `via_json`: it went through `MessageToDict` and
/// `json_format.Parse` (LiteralType metadata, annotations), where a Value
/// with no kind or any null becomes `null_value: 0`, and a NaN or infinite
/// number makes flytekit raise.
fn struct_fields(s: &idl::Struct, via_json: bool, out: &mut Vec<u8>) -> Result<(), KeyError> {
    for (k, v) in upb_order(&s.fields) {
        put_msg(out, 1, |e| {
            put_bytes(e, 1, k.as_bytes());
            put_msg(e, 2, |o| struct_value(v, via_json, o))
        })?;
    }
    Ok(())
}

fn struct_value(v: &idl::StructValue, via_json: bool, out: &mut Vec<u8>) -> Result<(), KeyError> {
    use idl::struct_value::Kind;
    match (&v.kind, via_json) {
        (None, false) => {}
        (None, true) | (Some(Kind::NullValue(_)), true) => put_varint(out, 1, 0),
        (Some(Kind::NullValue(n)), false) => put_varint(out, 1, signed(i64::from(*n))),
        (Some(Kind::NumberValue(f)), true) if !f.is_finite() => {
            return Err(KeyError::Unsupported(format!(
                "a type's metadata holds the number {f}, which flytekit cannot convert to JSON"
            )));
        }
        (Some(Kind::NumberValue(f)), _) => put_double(out, 2, *f),
        (Some(Kind::StringValue(s)), _) => put_bytes(out, 3, s.as_bytes()),
        (Some(Kind::BoolValue(b)), _) => put_varint(out, 4, u64::from(*b)),
        (Some(Kind::StructValue(s)), _) => put_msg(out, 5, |o| struct_fields(s, via_json, o))?,
        (Some(Kind::ListValue(l)), _) => put_msg(out, 6, |o| {
            for item in &l.values {
                put_msg(o, 1, |i| struct_value(item, via_json, i))?;
            }
            Ok(())
        })?,
    }
    Ok(())
}
