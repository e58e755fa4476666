//! The zero-copy decoder: a serialized `LiteralMap` read in place, fields
//! as slices of the input (strings and bytes as `&[u8]`, sub-messages as
//! the bytes of their body), nothing allocated.
//!
//! It has two parts. [`takes`] walks the whole input once against the
//! schema of `idl.rs` and says whether this reading is exactly prost's:
//! it refuses ("not mine") everything prost refuses (a malformed varint,
//! tag or length, a wrong wire type, invalid UTF-8, nesting near prost's
//! recursion limit) and everything prost reads by merging (a singular
//! field or oneof set twice, a map entry's key or value repeated), as well
//! as groups; and, in the same pass, what flytekit's model conversion
//! raises on (`Check`), whose error only the prost path gives. Then
//! [`Literal`] and [`LiteralType`] (the messages asked most of, each read
//! once into its fields), [`fields`], [`pick`], [`oneof`] and [`repeated`]
//! read a message taken that way (or one prost wrote) for the canonical
//! encoder and the prost path's checks, with prost's meaning: an absent
//! field is its default (an empty slice is an empty message), and of map
//! entries with one key the last wins.

use std::str;

use super::canonical::{datetime_round_trip, timedelta_round_trip};

/// A field's payload, borrowed from the input.
#[derive(Clone, Copy, Debug)]
pub(super) enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    /// Only unknown fields have one (our schema has no fixed32).
    Fixed32,
    Len(&'a [u8]),
}

/// A field as [`pick`] finds it: absent, or its last payload.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Field<'a>(Option<Wire<'a>>);

impl<'a> Field<'a> {
    /// A length-delimited field's bytes (a string, bytes or a message
    /// body); empty when absent, as prost's default.
    pub(super) fn bytes(self) -> &'a [u8] {
        match self.0 {
            Some(Wire::Len(b)) => b,
            _ => &[],
        }
    }

    /// A sub-message's body, if the field is present (a present empty
    /// message differs from an absent one).
    pub(super) fn message(self) -> Option<&'a [u8]> {
        match self.0 {
            Some(Wire::Len(b)) => Some(b),
            _ => None,
        }
    }

    pub(super) fn varint(self) -> u64 {
        match self.0 {
            Some(Wire::Varint(v)) => v,
            _ => 0,
        }
    }

    /// An `int32` field: prost keeps the varint's low 32 bits.
    pub(super) fn int32(self) -> i32 {
        self.varint() as i32
    }

    pub(super) fn double(self) -> f64 {
        match self.0 {
            Some(Wire::Fixed64(bits)) => f64::from_bits(bits),
            _ => 0.0,
        }
    }
}

/// A varint and its length, or `None` where prost's `decode_varint`
/// fails: truncated, or more than 64 bits (a tenth byte above 1). Most
/// are one byte (tags, short lengths), read without the loop.
#[inline]
fn read_varint(buf: &[u8]) -> Option<(u64, usize)> {
    match buf.first() {
        Some(&b) if b < 0x80 => Some((u64::from(b), 1)),
        Some(_) => read_long_varint(buf),
        None => None,
    }
}

fn read_long_varint(buf: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &b) in buf.iter().take(10).enumerate() {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            return (i < 9 || b < 2).then_some((value, i + 1));
        }
    }
    None
}

/// The first field of `buf`: its number, payload and what follows; `None`
/// where prost's `decode_key` or the payload's read fails, and for groups
/// (wire types 3 and 4), which are not ours.
#[inline]
fn next_field(buf: &[u8]) -> Option<(u32, Wire<'_>, &[u8])> {
    let (number, wire_type, rest) = read_key(buf)?;
    let (wire, rest) = read_payload(wire_type, rest)?;
    Some((number, wire, rest))
}

/// A field's key: its number, its wire type and what follows.
#[inline]
fn read_key(buf: &[u8]) -> Option<(u32, u8, &[u8])> {
    let (key, n) = read_varint(buf)?;
    if key > u64::from(u32::MAX) || key < 8 {
        return None; // prost: "invalid key value", "invalid tag value: 0"
    }
    Some(((key >> 3) as u32, (key & 7) as u8, &buf[n..]))
}

/// A length-delimited payload and what follows.
#[inline]
fn read_len(rest: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, n) = read_varint(rest)?;
    let rest = &rest[n..];
    let len = usize::try_from(len).ok().filter(|&l| l <= rest.len())?;
    Some(rest.split_at(len))
}

/// The payload of a field of `wire_type` at the start of `rest`, and what
/// follows.
#[inline]
fn read_payload(wire_type: u8, rest: &[u8]) -> Option<(Wire<'_>, &[u8])> {
    match wire_type {
        0 => {
            let (v, n) = read_varint(rest)?;
            Some((Wire::Varint(v), &rest[n..]))
        }
        1 => {
            let (bits, rest) = rest.split_first_chunk::<8>()?;
            Some((Wire::Fixed64(u64::from_le_bytes(*bits)), rest))
        }
        2 => {
            let (b, rest) = read_len(rest)?;
            Some((Wire::Len(b), rest))
        }
        5 => {
            let (_, rest) = rest.split_first_chunk::<4>()?;
            Some((Wire::Fixed32, rest))
        }
        _ => None,
    }
}

/// The fields of a message in wire order. It stops at the first malformed
/// byte, which a message [`takes`] accepted (or prost wrote) never has.
#[derive(Clone)]
pub(super) struct Fields<'a>(&'a [u8]);

impl<'a> Iterator for Fields<'a> {
    type Item = (u32, Wire<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        match next_field(self.0) {
            Some((number, wire, rest)) => {
                self.0 = rest;
                Some((number, wire))
            }
            None => {
                self.0 = &[];
                None
            }
        }
    }
}

pub(super) fn fields(message: &[u8]) -> Fields<'_> {
    Fields(message)
}

/// The fields numbered `numbers`, in one pass (the last occurrence of
/// each, as prost keeps for a scalar).
pub(super) fn pick<const N: usize>(message: &[u8], numbers: [u32; N]) -> [Field<'_>; N] {
    let mut found = [Field::default(); N];
    for (number, wire) in fields(message) {
        if let Some(i) = numbers.iter().position(|&n| n == number) {
            found[i] = Field(Some(wire));
        }
    }
    found
}

/// Which member of a oneof is set, and its payload (the last on the wire).
pub(super) fn oneof<'a>(message: &'a [u8], members: &[u32]) -> Option<(u32, Field<'a>)> {
    let mut set = None;
    for (number, wire) in fields(message) {
        if members.contains(&number) {
            set = Some((number, Field(Some(wire))));
        }
    }
    set
}

/// Every occurrence of a repeated length-delimited field (a repeated
/// message or string, or a map's entries), in wire order.
pub(super) fn repeated(message: &[u8], number: u32) -> impl Iterator<Item = &[u8]> {
    fields(message).filter_map(move |(n, wire)| match wire {
        Wire::Len(b) if n == number => Some(b),
        _ => None,
    })
}

/// A map entry's key and value (each empty when absent, as prost's default).
pub(super) fn entry(entry: &[u8]) -> (&[u8], &[u8]) {
    let (mut key, mut value): (&[u8], &[u8]) = (&[], &[]);
    for (number, wire) in fields(entry) {
        match (number, wire) {
            (1, Wire::Len(b)) => key = b,
            (2, Wire::Len(b)) => value = b,
            // A wrong wire type reads as the default, as `Field::bytes`.
            (1, _) => key = &[],
            (2, _) => value = &[],
            _ => {}
        }
    }
    (key, value)
}

/// A `LiteralType`'s fields, read in one pass (for the checks and the
/// model), each as [`pick`] or [`oneof`] would find it.
#[derive(Clone, Copy, Default)]
pub(super) struct LiteralType<'a> {
    /// The member of the `type` oneof set last on the wire (its number and
    /// payload).
    pub(super) member: Option<(u32, Field<'a>)>,
    pub(super) metadata: Field<'a>,
    pub(super) annotation: Field<'a>,
    pub(super) structure: Field<'a>,
}

impl<'a> LiteralType<'a> {
    pub(super) fn read(message: &'a [u8]) -> Self {
        let mut t = LiteralType::default();
        for (number, wire) in fields(message) {
            let field = Field(Some(wire));
            match number {
                1..=5 | 7 | 8 | 10 => t.member = Some((number, field)),
                6 => t.metadata = field,
                9 => t.annotation = field,
                11 => t.structure = field,
                _ => {}
            }
        }
        t
    }
}

/// A `Literal`'s fields, read in one pass for everyone who asks (the
/// checks, `_recursive_hash_placement` and the model): each as [`pick`]
/// would find it.
#[derive(Clone, Copy, Default)]
pub(super) struct Literal<'a> {
    pub(super) scalar: Field<'a>,
    pub(super) collection: Field<'a>,
    pub(super) map: Field<'a>,
    pub(super) hash: Field<'a>,
    /// The last metadata entry: whether there are any (they are read with
    /// [`repeated`] when there are, which is rare).
    pub(super) metadata: Field<'a>,
    pub(super) offloaded: Field<'a>,
    /// The member of the `value` oneof set last on the wire (1, 2, 3 or
    /// 8), as [`oneof`] finds it; 0 for none. Both paths' inputs have at
    /// most one.
    pub(super) member: u32,
}

impl<'a> Literal<'a> {
    pub(super) fn read(message: &'a [u8]) -> Self {
        let mut literal = Literal::default();
        for (number, wire) in fields(message) {
            let field = match number {
                1 => &mut literal.scalar,
                2 => &mut literal.collection,
                3 => &mut literal.map,
                4 => &mut literal.hash,
                5 => &mut literal.metadata,
                8 => &mut literal.offloaded,
                _ => continue,
            };
            *field = Field(Some(wire));
            if number != 4 && number != 5 {
                literal.member = number;
            }
        }
        literal
    }

    /// Whether it has metadata entries.
    pub(super) fn has_metadata(&self) -> bool {
        matches!(self.metadata.0, Some(Wire::Len(_)))
    }
}

// ---------------------------------------------------------------------------
// What `takes` checks: idl.rs as data.

#[derive(Clone, Copy)]
enum Kind {
    /// int32, int64, uint64, bool, enums.
    Varint,
    /// double.
    Fixed64,
    Str,
    Bytes,
    Message(&'static Message),
    /// A repeated message, or a map (a repeated entry message).
    Repeated(&'static Message),
    RepeatedStr,
}

struct FieldDef {
    number: u32,
    kind: Kind,
    /// A member of the message's oneof (a message has at most one).
    oneof: bool,
}

struct Message {
    /// By field number (all below 16): a field found without a search.
    slots: [Slot; 16],
    check: Check,
}

/// A field number's definition, ready for the walk.
#[derive(Clone, Copy)]
struct Slot {
    /// `None` for a number the message does not have.
    kind: Option<Kind>,
    /// The wire type prost accepts for it.
    wire_type: u8,
    /// Its bit in `seen`: one per singular field, one for the oneof, none
    /// for a repeated field.
    bit: u32,
}

const fn message(fields: &'static [FieldDef]) -> Message {
    checked(fields, Check::None)
}

const fn checked(fields: &'static [FieldDef], check: Check) -> Message {
    let mut slots = [Slot { kind: None, wire_type: 0, bit: 0 }; 16];
    let mut i = 0;
    while i < fields.len() {
        let def = &fields[i];
        let (wire_type, bit) = match def.kind {
            Varint => (0, 1 << i),
            Fixed64 => (1, 1 << i),
            Str | Bytes | Msg(_) => (2, 1 << i),
            Repeated(_) | RepeatedStr => (2, 0),
        };
        let bit = if def.oneof { 1 << 31 } else { bit };
        slots[def.number as usize] = Slot { kind: Some(def.kind), wire_type, bit };
        i += 1;
    }
    Message { slots, check }
}

/// What flytekit's model conversion raises on, checked where it applies
/// (`canonical.rs`, "What makes `from_flyte_idl` raise"): an input that
/// would fail is not ours, and the prost path gives its error.
#[derive(Clone, Copy, PartialEq)]
enum Check {
    None,
    /// A Timestamp: its datetime must round-trip.
    Datetime,
    /// A Duration: its timedelta must round-trip.
    Timedelta,
    /// A Value that goes through JSON: its number must be finite.
    JsonNumber,
}

const fn f(number: u32, kind: Kind) -> FieldDef {
    FieldDef { number, kind, oneof: false }
}

const fn one(number: u32, kind: Kind) -> FieldDef {
    FieldDef { number, kind, oneof: true }
}

use Kind::{Bytes, Fixed64, Message as Msg, Repeated, RepeatedStr, Str, Varint};

static LITERAL_MAP: Message = message(&[f(1, Repeated(&LITERAL_ENTRY))]);
static LITERAL_ENTRY: Message = message(&[f(1, Str), f(2, Msg(&LITERAL))]);
static STRING_ENTRY: Message = message(&[f(1, Str), f(2, Str)]);
static LITERAL: Message = message(&[
    one(1, Msg(&SCALAR)),
    one(2, Msg(&LITERAL_COLLECTION)),
    one(3, Msg(&LITERAL_MAP)),
    f(4, Str),
    f(5, Repeated(&STRING_ENTRY)),
    one(8, Msg(&OFFLOADED_METADATA)),
]);
static LITERAL_COLLECTION: Message = message(&[f(1, Repeated(&LITERAL))]);
static OFFLOADED_METADATA: Message = message(&[f(1, Str), f(2, Varint), f(3, Msg(&LITERAL_TYPE))]);
static SCALAR: Message = message(&[
    one(1, Msg(&PRIMITIVE)),
    one(2, Msg(&BLOB)),
    one(3, Msg(&BINARY)),
    one(4, Msg(&SCHEMA)),
    one(5, Msg(&VOID)),
    one(6, Msg(&ERROR)),
    one(7, Msg(&STRUCT)),
    one(8, Msg(&STRUCTURED_DATASET)),
    one(9, Msg(&UNION)),
]);
static PRIMITIVE: Message = message(&[
    one(1, Varint),
    one(2, Fixed64),
    one(3, Str),
    one(4, Varint),
    one(5, Msg(&TIMESTAMP)),
    one(6, Msg(&DURATION)),
]);
static TIMESTAMP: Message = checked(&[f(1, Varint), f(2, Varint)], Check::Datetime);
static DURATION: Message = checked(&[f(1, Varint), f(2, Varint)], Check::Timedelta);
static BLOB: Message = message(&[f(1, Msg(&BLOB_METADATA)), f(3, Str)]);
static BLOB_METADATA: Message = message(&[f(1, Msg(&BLOB_TYPE))]);
static BLOB_TYPE: Message = message(&[f(1, Str), f(2, Varint)]);
static BINARY: Message = message(&[f(1, Bytes), f(2, Str)]);
static SCHEMA: Message = message(&[f(1, Str), f(3, Msg(&SCHEMA_TYPE))]);
static SCHEMA_TYPE: Message = message(&[f(3, Repeated(&SCHEMA_COLUMN))]);
static SCHEMA_COLUMN: Message = message(&[f(1, Str), f(2, Varint)]);
static VOID: Message = message(&[]);
static ERROR: Message = message(&[f(1, Str), f(2, Str)]);
static STRUCTURED_DATASET: Message = message(&[f(1, Str), f(2, Msg(&SD_METADATA))]);
static SD_METADATA: Message = message(&[f(1, Msg(&SD_TYPE))]);
static SD_TYPE: Message = message(&[f(1, Repeated(&DATASET_COLUMN)), f(2, Str), f(3, Str), f(4, Bytes)]);
static DATASET_COLUMN: Message = message(&[f(1, Str), f(2, Msg(&LITERAL_TYPE))]);
static UNION: Message = message(&[f(1, Msg(&LITERAL)), f(2, Msg(&LITERAL_TYPE))]);
static LITERAL_TYPE: Message = message(&[
    one(1, Varint),
    one(2, Msg(&SCHEMA_TYPE)),
    one(3, Msg(&LITERAL_TYPE)),
    one(4, Msg(&LITERAL_TYPE)),
    one(5, Msg(&BLOB_TYPE)),
    f(6, Msg(&JSON_STRUCT)),
    one(7, Msg(&ENUM_TYPE)),
    one(8, Msg(&SD_TYPE)),
    f(9, Msg(&TYPE_ANNOTATION)),
    one(10, Msg(&UNION_TYPE)),
    f(11, Msg(&TYPE_STRUCTURE)),
]);
static ENUM_TYPE: Message = message(&[f(1, RepeatedStr)]);
static UNION_TYPE: Message = message(&[f(1, Repeated(&LITERAL_TYPE))]);
static TYPE_ANNOTATION: Message = message(&[f(1, Msg(&JSON_STRUCT))]);
static TYPE_STRUCTURE: Message = message(&[f(1, Str), f(2, Repeated(&LITERAL_TYPE_ENTRY))]);
static LITERAL_TYPE_ENTRY: Message = message(&[f(1, Str), f(2, Msg(&LITERAL_TYPE))]);
static STRUCT: Message = message(&[f(1, Repeated(&VALUE_ENTRY))]);
static VALUE_ENTRY: Message = message(&[f(1, Str), f(2, Msg(&VALUE))]);
static VALUE: Message = message(&value_kinds(&STRUCT, &LIST_VALUE));
static LIST_VALUE: Message = message(&[f(1, Repeated(&VALUE))]);
/// google.protobuf.Value's kinds, nesting `structs` and `lists`.
const fn value_kinds(structs: &'static Message, lists: &'static Message) -> [FieldDef; 6] {
    [one(1, Varint), one(2, Fixed64), one(3, Str), one(4, Varint), one(5, Msg(structs)), one(6, Msg(lists))]
}
/// A Struct that goes through `MessageToDict` and back (a type's metadata
/// and annotations): the same fields, with its numbers checked.
static JSON_STRUCT: Message = message(&[f(1, Repeated(&JSON_VALUE_ENTRY))]);
static JSON_VALUE_ENTRY: Message = message(&[f(1, Str), f(2, Msg(&JSON_VALUE))]);
static JSON_VALUE: Message = checked(&value_kinds(&JSON_STRUCT, &JSON_LIST_VALUE), Check::JsonNumber);
static JSON_LIST_VALUE: Message = message(&[f(1, Repeated(&JSON_VALUE))]);

/// Most strings are ASCII, which is quicker to tell.
fn is_utf8(b: &[u8]) -> bool {
    b.is_ascii() || str::from_utf8(b).is_ok()
}

/// Nesting from which we leave the input to prost: it refuses messages
/// nested more than 100 deep (a map entry is a level), and an unknown
/// field at depth 100.
const MAX_DEPTH: u32 = 96;

/// Whether `inputs` (a serialized `LiteralMap`) is ours: prost decodes it
/// without error and without merging, so reading it in place gives prost's
/// values (module doc).
pub(super) fn takes(inputs: &[u8]) -> bool {
    message_is_ours(inputs, &LITERAL_MAP, 0)
}

fn message_is_ours(mut buf: &[u8], message: &Message, depth: u32) -> bool {
    if depth >= MAX_DEPTH {
        return false;
    }
    // One bit per singular field, and the top bit for the oneof.
    let mut seen = 0u32;
    // Fields 1 and 2 if varints: a Timestamp's or Duration's seconds and nanos.
    let mut varints = [0u64; 2];
    while !buf.is_empty() {
        let Some((number, wire_type, rest)) = read_key(buf) else { return false };
        let slot = message.slots.get(number as usize).and_then(|s| s.kind.map(|kind| (kind, s)));
        let Some((kind, slot)) = slot else {
            // An unknown field: prost skips it, and so do we.
            let Some((_, rest)) = read_payload(wire_type, rest) else { return false };
            buf = rest;
            continue;
        };
        if wire_type != slot.wire_type {
            return false; // a wire type prost refuses for this field
        }
        if seen & slot.bit != 0 {
            return false; // set twice: prost merges or overwrites
        }
        seen |= slot.bit;
        let ok = if wire_type == 2 {
            let Some((b, rest)) = read_len(rest) else { return false };
            buf = rest;
            match kind {
                Str | RepeatedStr => is_utf8(b),
                Msg(m) | Repeated(m) => message_is_ours(b, m, depth + 1),
                _ => true, // bytes
            }
        } else {
            let Some((wire, rest)) = read_payload(wire_type, rest) else { return false };
            buf = rest;
            match wire {
                Wire::Varint(v) => {
                    if let Some(slot) = varints.get_mut(number as usize - 1) {
                        *slot = v;
                    }
                    true
                }
                Wire::Fixed64(bits) => message.check != Check::JsonNumber || f64::from_bits(bits).is_finite(),
                _ => true,
            }
        };
        if !ok {
            return false;
        }
    }
    // As `seconds_nanos_of` reads them: int64 seconds, int32 nanos.
    let (seconds, nanos) = (varints[0] as i64, varints[1] as i32);
    match message.check {
        Check::Datetime => datetime_round_trip(seconds, nanos).is_ok(),
        Check::Timedelta => timedelta_round_trip(seconds, nanos).is_ok(),
        Check::None | Check::JsonNumber => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_are_read_as_prost_reads_them() {
        assert_eq!(read_varint(&[0x00]), Some((0, 1)));
        assert_eq!(read_varint(&[0x96, 0x01]), Some((150, 2)));
        // Non-minimal: prost accepts it.
        assert_eq!(read_varint(&[0x80, 0x00]), Some((0, 2)));
        let max = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(read_varint(&max), Some((u64::MAX, 10)));
        // More than 64 bits, more than 10 bytes, truncated.
        let mut over = max;
        over[9] = 0x02;
        assert_eq!(read_varint(&over), None);
        assert_eq!(read_varint(&[0x80; 11]), None);
        assert_eq!(read_varint(&[0x80]), None);
    }

    #[test]
    fn what_prost_would_merge_or_refuse_is_not_ours() {
        // x: Literal{hash: "a"}, then the same with the hash twice.
        assert!(takes(&[0x0a, 0x08, 0x0a, 0x01, b'x', 0x12, 0x03, 0x22, 0x01, b'a']));
        assert!(!takes(&[0x0a, 0x0b, 0x0a, 0x01, b'x', 0x12, 0x06, 0x22, 0x01, b'a', 0x22, 0x01, b'b']));
        // Two oneof members: scalar, then collection.
        assert!(!takes(&[0x0a, 0x09, 0x0a, 0x01, b'x', 0x12, 0x04, 0x0a, 0x00, 0x12, 0x00]));
        // A map entry's key twice.
        assert!(!takes(&[0x0a, 0x06, 0x0a, 0x01, b'x', 0x0a, 0x01, b'y']));
        // A wrong wire type, invalid UTF-8, a group, tag 0.
        assert!(!takes(&[0x08, 0x01]));
        assert!(!takes(&[0x0a, 0x03, 0x0a, 0x01, 0xff]));
        assert!(!takes(&[0x0b, 0x0c]));
        assert!(!takes(&[0x02, 0x00]));
        // An unknown field is skipped, as prost does.
        assert!(takes(&[0x10, 0x05]));
    }

    /// `field` holding `body` (shorter than 128 bytes).
    fn len(field: u8, body: &[u8]) -> Vec<u8> {
        [&[field << 3 | 2, body.len() as u8][..], body].concat()
    }

    /// A map `{"x": literal}`.
    fn input(literal: &[u8]) -> Vec<u8> {
        len(1, &[len(1, b"x"), len(2, literal)].concat())
    }

    #[test]
    fn what_flytekit_would_raise_on_is_not_ours() {
        // Timestamps of year 9999 and beyond (253_402_300_800 s).
        let timestamp = |seconds: u64| {
            let mut t = vec![0x08];
            let mut v = seconds;
            while v >= 0x80 {
                t.push(v as u8 | 0x80);
                v >>= 7;
            }
            t.push(v as u8);
            input(&len(1, &len(1, &len(5, &t))))
        };
        assert!(takes(&timestamp(253_402_300_799)));
        assert!(!takes(&timestamp(253_402_300_800)));
        // A NaN in a type's metadata (offloaded metadata's inferred type),
        // and in a generic Struct scalar, which does not go through JSON.
        let nan = [&[0x11][..], &f64::NAN.to_bits().to_le_bytes()].concat();
        let fields = len(1, &[len(1, b"k"), len(2, &nan)].concat());
        assert!(!takes(&input(&len(8, &len(3, &len(6, &fields))))));
        assert!(takes(&input(&len(1, &len(7, &fields)))));
    }
}
