//! The bytes flytekit 1.16 hashes for a cache key, written directly from a
//! serialized `LiteralMap`, read in place (`borrowed.rs`).
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
//!
//! The input is either what `borrowed::takes` accepted (the client's bytes)
//! or what prost wrote for a map it decoded (`hashed_inputs`): both read
//! in place as prost would decode them. On prost's output the checks run
//! over map values in wire order, which is the sorted order flytekit's
//! checks see; a client's bytes were checked by `takes` as it read them,
//! where a failure only means "not ours" (the caller then asks the prost
//! path), so their order there does not matter.

use prost::Message;

use super::borrowed::{Literal, LiteralType, entry, oneof, pick, repeated};
use super::idl;
use super::key::KeyError;

// ---------------------------------------------------------------------------
// Wire format.

const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;

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

/// Signed 32/64-bit values are varints of their two's complement (64 bit).
fn signed(v: i64) -> u64 {
    v as u64
}

/// Map entries in the order Python protobuf (upb) writes them with
/// `deterministic=True`: upb sorts keys by `memcmp` of their common prefix,
/// reversed, then by length, and encodes the sorted entries back to front.
/// The result is byte order, except that of two keys where one is a prefix
/// of the other, the longer comes first (so an empty key comes last).
fn upb_cmp(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    let common = a.len().min(b.len());
    a[..common].cmp(&b[..common]).then(b.len().cmp(&a.len()))
}

/// Sorts map entries into upb's order and keeps, of entries with one key,
/// the last on the wire (prost's map insert replaces; the sort is stable).
/// Returns how many entries are left at the front.
fn upb_order(entries: &mut [(&[u8], &[u8])]) -> usize {
    // Usually already in order, and then without a repeated key.
    if entries.is_sorted_by(|(a, _), (b, _)| upb_cmp(a, b).is_lt()) {
        return entries.len();
    }
    entries.sort_by(|(a, _), (b, _)| upb_cmp(a, b));
    let mut kept = 0;
    for i in 0..entries.len() {
        if entries.get(i + 1).is_some_and(|next| next.0 == entries[i].0) {
            continue;
        }
        entries[kept] = entries[i];
        kept += 1;
    }
    kept
}

/// The canonical bytes being written, and room for the entries of the maps
/// being written (a stack: a nested map's entries go after its parent's).
struct Encoder<'a> {
    out: Vec<u8>,
    entries: Vec<(&'a [u8], &'a [u8])>,
}

impl<'a> Encoder<'a> {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.out.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.out.push(v as u8);
    }

    fn tag(&mut self, field: u32, wire: u32) {
        self.varint(u64::from(field << 3 | wire));
    }

    fn put_varint(&mut self, field: u32, v: u64) {
        self.tag(field, VARINT);
        self.varint(v);
    }

    fn put_double(&mut self, field: u32, v: f64) {
        self.tag(field, FIXED64);
        self.out.extend_from_slice(&v.to_bits().to_le_bytes());
    }

    fn put_bytes(&mut self, field: u32, data: &[u8]) {
        self.tag(field, LEN);
        self.varint(data.len() as u64);
        self.out.extend_from_slice(data);
    }

    /// A proto3 string/bytes field: omitted when empty.
    fn put_nonempty(&mut self, field: u32, data: &[u8]) {
        if !data.is_empty() {
            self.put_bytes(field, data);
        }
    }

    /// A present sub-message, written in place: its content goes straight
    /// into `out` after one byte kept for its length, which is filled in
    /// afterwards; only a body of 128 bytes or more moves to make room for
    /// a longer varint (no buffer per nested message, and rarely a move).
    fn put_msg(&mut self, field: u32, body: impl FnOnce(&mut Self) -> Result<(), KeyError>) -> Result<(), KeyError> {
        self.tag(field, LEN);
        let at = self.out.len();
        self.out.push(0);
        body(self)?;
        let len = self.out.len() - at - 1;
        if len < 0x80 {
            self.out[at] = len as u8;
        } else {
            // Room for the longer length: one move of the body (`splice`
            // cost more instructions, callgrind).
            let (header, n) = varint_bytes(len as u64);
            let end = self.out.len();
            self.out.resize(end + n - 1, 0);
            self.out.copy_within(at + 1..end, at + n);
            self.out[at..at + n].copy_from_slice(&header[..n]);
        }
        Ok(())
    }

    /// Calls `each` with the key and value of every entry of the map field
    /// `field` of `message`, in upb's order (`upb_order`).
    fn map(
        &mut self,
        message: &'a [u8],
        field: u32,
        mut each: impl FnMut(&mut Self, &'a [u8], &'a [u8]) -> Result<(), KeyError>,
    ) -> Result<(), KeyError> {
        let start = self.entries.len();
        // A plain loop: `extend` through the iterator adapters cost 2% more
        // instructions per key (callgrind).
        for body in repeated(message, field) {
            self.entries.push(entry(body));
        }
        let end = start + upb_order(&mut self.entries[start..]);
        self.entries.truncate(end);
        for i in start..end {
            let (key, value) = self.entries[i];
            each(self, key, value)?;
        }
        self.entries.truncate(start);
        Ok(())
    }

    /// A map of messages: each entry is `{1: key, 2: body(value)}`.
    fn map_of_messages(
        &mut self,
        message: &'a [u8],
        field: u32,
        mut body: impl FnMut(&mut Self, &'a [u8]) -> Result<(), KeyError>,
    ) -> Result<(), KeyError> {
        self.map(message, field, |e, key, value| {
            e.put_msg(field, |e| {
                e.put_bytes(1, key);
                e.put_msg(2, |e| body(e, value))
            })
        })
    }
}

// ---------------------------------------------------------------------------
// LiteralMap and Literal.

/// The hashed bytes for `inputs` minus the ignored variables.
pub fn hashed_inputs(inputs: &idl::LiteralMap, ignore: &[String]) -> Result<Vec<u8>, KeyError> {
    let wire = inputs.encode_to_vec();
    hashed_wire(&wire, ignore)
}

/// The same for a serialized `LiteralMap` that prost wrote (module doc).
fn hashed_wire(inputs: &[u8], ignore: &[String]) -> Result<Vec<u8>, KeyError> {
    // flytekit converts the whole map to its models first, ignored inputs
    // and hashed literals included, so their failures are ours too.
    for e in repeated(inputs, 1) {
        check_literal(entry(e).1)?;
    }
    hashed_checked(inputs, ignore)
}

/// The same for a serialized `LiteralMap` that passed flytekit's checks:
/// one that `borrowed::takes` accepted (it makes them as it reads), or
/// one `hashed_wire` checked.
pub(super) fn hashed_checked(inputs: &[u8], ignore: &[String]) -> Result<Vec<u8>, KeyError> {
    // The serialized input's size is a good guess: the model round trip
    // mostly keeps what it reads.
    let mut e = Encoder { out: Vec::with_capacity(inputs.len() + 16), entries: Vec::with_capacity(16) };
    e.map(inputs, 1, |e, name, literal| {
        if ignore.iter().any(|i| i.as_bytes() == name) {
            return Ok(());
        }
        e.put_msg(1, |e| {
            e.put_bytes(1, name);
            e.put_msg(2, |e| hash_placed(literal, e))
        })
    })?;
    Ok(e.out)
}

/// `_recursive_hash_placement` of the model of `literal`: a literal with a
/// hash is replaced by the hash alone; a collection or map keeps only its
/// (recursively placed) items, dropping its metadata; anything else is the
/// model's own round trip.
fn hash_placed<'a>(body: &'a [u8], e: &mut Encoder<'a>) -> Result<(), KeyError> {
    let literal = Literal::read(body);
    // Literal.from_flyte_idl: `hash=pb2_object.hash if pb2_object.hash else None`.
    let hash = literal.hash.bytes();
    if !hash.is_empty() {
        e.put_bytes(4, hash);
        return Ok(());
    }
    if let Some(c) = literal.collection.message() {
        e.put_msg(2, |e| {
            for item in repeated(c, 1) {
                e.put_msg(1, |e| hash_placed(item, e))?;
            }
            Ok(())
        })
    } else if let Some(m) = literal.map.message() {
        e.put_msg(3, |e| e.map_of_messages(m, 1, |e, v| hash_placed(v, e)))
    } else {
        literal_model(body, literal, e)
    }
}

/// `Literal.from_flyte_idl(pb).to_flyte_idl()`: an empty hash or metadata
/// is absent (`literals.py`, `Literal.from_flyte_idl`).
/// `literal` is `body` read.
fn literal_model<'a>(body: &'a [u8], literal: Literal<'a>, e: &mut Encoder<'a>) -> Result<(), KeyError> {
    if let Some(s) = literal.scalar.message() {
        e.put_msg(1, |e| scalar(s, e))?;
    } else if let Some(c) = literal.collection.message() {
        e.put_msg(2, |e| {
            for item in repeated(c, 1) {
                e.put_msg(1, |e| literal_model_of(item, e))?;
            }
            Ok(())
        })?;
    } else if let Some(m) = literal.map.message() {
        e.put_msg(3, |e| e.map_of_messages(m, 1, |e, v| literal_model_of(v, e)))?;
    }
    e.put_nonempty(4, literal.hash.bytes());
    if literal.has_metadata() {
        e.map(body, 5, |e, k, v| {
            e.put_msg(5, |e| {
                e.put_bytes(1, k);
                e.put_bytes(2, v);
                Ok(())
            })
        })?;
    }
    if let Some(m) = literal.offloaded.message() {
        // LiteralOffloadedMetadata: uri, size_bytes, inferred_type if present.
        let [uri, size_bytes, inferred_type] = pick(m, [1, 2, 3]);
        e.put_msg(8, |e| {
            e.put_nonempty(1, uri.bytes());
            if size_bytes.varint() != 0 {
                e.put_varint(2, size_bytes.varint());
            }
            if let Some(t) = inferred_type.message() {
                e.put_msg(3, |e| literal_type(t, e))?;
            }
            Ok(())
        })?;
    }
    Ok(())
}

fn literal_model_of<'a>(body: &'a [u8], e: &mut Encoder<'a>) -> Result<(), KeyError> {
    literal_model(body, Literal::read(body), e)
}

// ---------------------------------------------------------------------------
// What makes `from_flyte_idl` raise, anywhere in the input: a datetime or
// duration Python cannot represent, and a NaN or infinity in a type's
// metadata or annotations (`MessageToDict` refuses them). An absent
// message checks as its default, which never fails. These run on the prost
// path, for its errors; on the borrowing path `takes` makes the same
// checks as it reads (`borrowed::Check`, one per schema message).

fn check_literal(body: &[u8]) -> Result<(), KeyError> {
    let literal = Literal::read(body);
    match literal.member {
        1 => check_scalar(literal.scalar.bytes()),
        2 => repeated(literal.collection.bytes(), 1).try_for_each(check_literal),
        3 => repeated(literal.map.bytes(), 1).try_for_each(|e| check_literal(entry(e).1)),
        8 => check_type(pick(literal.offloaded.bytes(), [3])[0].bytes()),
        _ => Ok(()),
    }
}

fn check_scalar(s: &[u8]) -> Result<(), KeyError> {
    match oneof(s, &[1, 8, 9]) {
        Some((1, p)) => match oneof(p.bytes(), &[1, 2, 3, 4, 5, 6]) {
            Some((5, t)) => {
                let (seconds, nanos) = seconds_nanos_of(t.bytes());
                datetime_round_trip(seconds, nanos).map(|_| ())
            }
            Some((6, d)) => {
                let (seconds, nanos) = seconds_nanos_of(d.bytes());
                timedelta_round_trip(seconds, nanos).map(|_| ())
            }
            _ => Ok(()),
        },
        Some((8, sd)) => check_sd_type(pick(pick(sd.bytes(), [2])[0].bytes(), [1])[0].bytes()),
        Some((_, u)) => {
            let [value, t] = pick(u.bytes(), [1, 2]);
            check_literal(value.bytes())?;
            check_type(t.bytes())
        }
        None => Ok(()),
    }
}

fn check_sd_type(t: &[u8]) -> Result<(), KeyError> {
    repeated(t, 1).try_for_each(|c| check_type(pick(c, [2])[0].bytes()))
}

fn check_type(body: &[u8]) -> Result<(), KeyError> {
    let t = LiteralType::read(body);
    check_json_struct(t.metadata.bytes())?;
    check_json_struct(pick(t.annotation.bytes(), [1])[0].bytes())?;
    repeated(t.structure.bytes(), 2).try_for_each(|e| check_type(entry(e).1))?;
    match t.member {
        Some((3 | 4, c)) => check_type(c.bytes()),
        Some((10, u)) => repeated(u.bytes(), 1).try_for_each(check_type),
        Some((8, s)) => check_sd_type(s.bytes()),
        _ => Ok(()),
    }
}

fn check_json_struct(s: &[u8]) -> Result<(), KeyError> {
    repeated(s, 1).try_for_each(|e| check_json_value(entry(e).1))
}

fn check_json_value(v: &[u8]) -> Result<(), KeyError> {
    match oneof(v, &[1, 2, 3, 4, 5, 6]) {
        Some((2, f)) if !f.double().is_finite() => Err(not_json(f.double())),
        Some((5, s)) => check_json_struct(s.bytes()),
        Some((6, l)) => repeated(l.bytes(), 1).try_for_each(check_json_value),
        _ => Ok(()),
    }
}

fn not_json(f: f64) -> KeyError {
    KeyError::Unsupported(format!("a type's metadata holds the number {f}, which flytekit cannot convert to JSON"))
}

// ---------------------------------------------------------------------------
// Scalars (`literals.py`, `Scalar.from_flyte_idl` / `to_flyte_idl`).

fn scalar<'a>(s: &'a [u8], e: &mut Encoder<'a>) -> Result<(), KeyError> {
    let Some((member, value)) = oneof(s, &[1, 2, 3, 4, 5, 6, 7, 8, 9]) else { return Ok(()) };
    let body = value.bytes();
    match member {
        1 => e.put_msg(1, |e| primitive(body, e)),
        // Blob always gets metadata and its type back, even if absent.
        2 => e.put_msg(2, |e| {
            let [metadata, uri] = pick(body, [1, 3]);
            let t = pick(metadata.bytes(), [1])[0].bytes();
            e.put_msg(1, |e| e.put_msg(1, |e| blob_type(t, e)))?;
            e.put_nonempty(3, uri.bytes());
            Ok(())
        }),
        3 => e.put_msg(3, |e| {
            let [value, tag] = pick(body, [1, 2]);
            e.put_nonempty(1, value.bytes());
            e.put_nonempty(2, tag.bytes());
            Ok(())
        }),
        // Schema always gets its type back.
        4 => e.put_msg(4, |e| {
            let [uri, t] = pick(body, [1, 3]);
            e.put_nonempty(1, uri.bytes());
            e.put_msg(3, |e| schema_type(t.bytes(), e))
        }),
        5 => e.put_msg(5, |_| Ok(())),
        // Scalar.from_flyte_idl keeps the raw pb2 Error, whose missing
        // to_flyte_idl makes flytekit's key computation raise.
        6 => Err(KeyError::Unsupported(
            "an Error scalar: flytekit 1.16 cannot compute a cache key for it (Scalar.to_flyte_idl fails)".into(),
        )),
        // The generic Struct is passed through unchanged.
        7 => e.put_msg(7, |e| struct_fields(body, false, e)),
        // StructuredDataset always gets metadata and its type back.
        8 => e.put_msg(8, |e| {
            let [uri, metadata] = pick(body, [1, 2]);
            e.put_nonempty(1, uri.bytes());
            let t = pick(metadata.bytes(), [1])[0].bytes();
            e.put_msg(2, |e| e.put_msg(1, |e| structured_dataset_type(t, e)))
        }),
        // Union: value and type are always present.
        _ => e.put_msg(9, |e| {
            let [value, t] = pick(body, [1, 2]);
            e.put_msg(1, |e| literal_model_of(value.bytes(), e))?;
            e.put_msg(2, |e| literal_type(t.bytes(), e))
        }),
    }
}

fn primitive(p: &[u8], e: &mut Encoder<'_>) -> Result<(), KeyError> {
    match oneof(p, &[1, 2, 3, 4, 5, 6]) {
        None => {}
        Some((1, i)) => e.put_varint(1, i.varint()),
        Some((2, f)) => e.put_double(2, f.double()),
        Some((3, s)) => e.put_bytes(3, s.bytes()),
        Some((4, b)) => e.put_varint(4, u64::from(b.varint() != 0)),
        Some((5, t)) => {
            let (seconds, nanos) = seconds_nanos_of(t.bytes());
            let (seconds, nanos) = datetime_round_trip(seconds, nanos)?;
            e.put_msg(5, |e| seconds_nanos(seconds, nanos, e))?;
        }
        Some((_, d)) => {
            let (seconds, nanos) = seconds_nanos_of(d.bytes());
            let (seconds, nanos) = timedelta_round_trip(seconds, nanos)?;
            e.put_msg(6, |e| seconds_nanos(seconds, nanos, e))?;
        }
    }
    Ok(())
}

/// A Timestamp's or Duration's seconds (int64) and nanos (int32).
fn seconds_nanos_of(t: &[u8]) -> (i64, i32) {
    let [seconds, nanos] = pick(t, [1, 2]);
    (seconds.varint() as i64, nanos.int32())
}

fn seconds_nanos(seconds: i64, nanos: i32, e: &mut Encoder<'_>) -> Result<(), KeyError> {
    if seconds != 0 {
        e.put_varint(1, signed(seconds));
    }
    if nanos != 0 {
        e.put_varint(2, signed(i64::from(nanos)));
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

fn blob_type(t: &[u8], e: &mut Encoder<'_>) -> Result<(), KeyError> {
    let [format, dimensionality] = pick(t, [1, 2]);
    e.put_nonempty(1, format.bytes());
    if dimensionality.int32() != 0 {
        e.put_varint(2, signed(i64::from(dimensionality.int32())));
    }
    Ok(())
}

fn schema_type(t: &[u8], e: &mut Encoder<'_>) -> Result<(), KeyError> {
    for c in repeated(t, 3) {
        let [name, column_type] = pick(c, [1, 2]);
        e.put_msg(3, |e| {
            e.put_nonempty(1, name.bytes());
            if column_type.int32() != 0 {
                e.put_varint(2, signed(i64::from(column_type.int32())));
            }
            Ok(())
        })?;
    }
    Ok(())
}

/// StructuredDatasetType: each column's literal type is always present.
fn structured_dataset_type<'a>(t: &'a [u8], e: &mut Encoder<'a>) -> Result<(), KeyError> {
    for c in repeated(t, 1) {
        let [name, column_type] = pick(c, [1, 2]);
        e.put_msg(1, |e| {
            e.put_nonempty(1, name.bytes());
            e.put_msg(2, |e| literal_type(column_type.bytes(), e))
        })?;
    }
    let [format, external_schema_type, external_schema_bytes] = pick(t, [2, 3, 4]);
    e.put_nonempty(2, format.bytes());
    e.put_nonempty(3, external_schema_type.bytes());
    e.put_nonempty(4, external_schema_bytes.bytes());
    Ok(())
}

/// LiteralType, in field-number order (the `type` oneof's members 7, 8 and
/// 10 interleave with metadata 6 and annotation 9).
fn literal_type<'a>(body: &'a [u8], e: &mut Encoder<'a>) -> Result<(), KeyError> {
    let LiteralType { member, metadata, annotation, structure } = LiteralType::read(body);
    match member {
        Some((1, simple)) => e.put_varint(1, signed(i64::from(simple.int32()))),
        Some((2, s)) => e.put_msg(2, |e| schema_type(s.bytes(), e))?,
        Some((3, c)) => e.put_msg(3, |e| literal_type(c.bytes(), e))?,
        Some((4, m)) => e.put_msg(4, |e| literal_type(m.bytes(), e))?,
        Some((5, b)) => e.put_msg(5, |e| blob_type(b.bytes(), e))?,
        _ => {}
    }
    // metadata: `MessageToDict(proto.metadata) or None`, then back through
    // JSON: present only when it has fields.
    if let Some(m) = metadata.message()
        && repeated(m, 1).next().is_some()
    {
        e.put_msg(6, |e| struct_fields(m, true, e))?;
    }
    match member {
        Some((7, values)) => e.put_msg(7, |e| {
            for v in repeated(values.bytes(), 1) {
                e.put_bytes(1, v);
            }
            Ok(())
        })?,
        Some((8, s)) => e.put_msg(8, |e| structured_dataset_type(s.bytes(), e))?,
        _ => {}
    }
    // annotation: `MessageToDict(proto.annotations)` is a dict even when
    // empty, so the annotations Struct is always present.
    if let Some(a) = annotation.message() {
        let annotations = pick(a, [1])[0].bytes();
        e.put_msg(9, |e| e.put_msg(1, |e| struct_fields(annotations, true, e)))?;
    }
    if let Some((10, variants)) = member {
        e.put_msg(10, |e| {
            for v in repeated(variants.bytes(), 1) {
                e.put_msg(1, |e| literal_type(v, e))?;
            }
            Ok(())
        })?;
    }
    if let Some(s) = structure.message() {
        e.put_msg(11, |e| {
            e.put_nonempty(1, pick(s, [1])[0].bytes());
            e.map_of_messages(s, 2, |e, v| literal_type(v, e))
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
fn struct_fields<'a>(s: &'a [u8], via_json: bool, e: &mut Encoder<'a>) -> Result<(), KeyError> {
    e.map_of_messages(s, 1, |e, v| struct_value(v, via_json, e))
}

fn struct_value<'a>(v: &'a [u8], via_json: bool, e: &mut Encoder<'a>) -> Result<(), KeyError> {
    match (oneof(v, &[1, 2, 3, 4, 5, 6]), via_json) {
        (None, false) => {}
        (None, true) | (Some((1, _)), true) => e.put_varint(1, 0),
        (Some((1, n)), false) => e.put_varint(1, signed(i64::from(n.int32()))),
        (Some((2, f)), true) if !f.double().is_finite() => return Err(not_json(f.double())),
        (Some((2, f)), _) => e.put_double(2, f.double()),
        (Some((3, s)), _) => e.put_bytes(3, s.bytes()),
        (Some((4, b)), _) => e.put_varint(4, u64::from(b.varint() != 0)),
        (Some((5, s)), _) => e.put_msg(5, |e| struct_fields(s.bytes(), via_json, e))?,
        (Some((_, l)), _) => e.put_msg(6, |e| {
            for item in repeated(l.bytes(), 1) {
                e.put_msg(1, |e| struct_value(item, via_json, e))?;
            }
            Ok(())
        })?,
    }
    Ok(())
}
