//! The borrowing path against the prost path (issue 12, item 5): wherever
//! the borrowing decoder takes an input, its canonical bytes are the prost
//! path's; what it does not take, and every error, comes from the prost
//! path. Checked on every flytekit vector under several ignore lists, on
//! inputs prost reads by merging, and on vectors mutated by bit flips,
//! truncations and duplicated fields, where the two readings could part.
//! (tests/flyte_fresh_vectors.rs and tests/fuzz_corpus.rs check the same
//! on fresh flytekit vectors and the fuzz corpus.)

use base64::Engine;
use diskcachefs::flyte::{canonical_bytes, canonical_bytes_borrowed, canonical_bytes_prost};
use proptest::prelude::*;

struct Vector {
    inputs: Vec<u8>,
    ignore: Vec<String>,
    names: Vec<String>,
}

/// tests/data/flyte-cache-keys.jsonl (the same file as
/// ../shared/testdata/flyte-cache-keys.jsonl).
fn vectors() -> &'static [Vector] {
    static VECTORS: std::sync::OnceLock<Vec<Vector>> = std::sync::OnceLock::new();
    VECTORS.get_or_init(|| {
        let data =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/flyte-cache-keys.jsonl")).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD;
        data.lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                let inputs = b64.decode(v["inputs"].as_str().unwrap()).unwrap();
                let strings = |a: &serde_json::Value| -> Vec<String> {
                    a.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
                };
                let names = diskcachefs::flyte::decode_literal_map(&inputs).unwrap().literals.into_keys().collect();
                Vector { inputs, ignore: strings(&v["ignore"]), names }
            })
            .collect()
    })
}

/// The two paths agree on `inputs`: the borrowing path's bytes, if it takes
/// them, are the prost path's, and `canonical_bytes` gives the prost
/// path's result, error text included. Returns whether it took them.
fn paths_agree(inputs: &[u8], ignore: &[String]) -> bool {
    let prost = canonical_bytes_prost(inputs, ignore);
    let borrowed = canonical_bytes_borrowed(inputs, ignore);
    if let Some(b) = &borrowed {
        assert_eq!(prost.as_ref().ok(), Some(b), "the paths differ on {}", hex(inputs));
    }
    match (canonical_bytes(inputs, ignore), &prost) {
        (Ok(a), Ok(b)) => assert_eq!(&a, b),
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
        (a, b) => panic!("canonical_bytes {a:?} but the prost path {b:?} on {}", hex(inputs)),
    }
    borrowed.is_some()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn the_borrowing_path_takes_every_flytekit_vector_and_agrees_under_every_ignore_list() {
    let vectors = vectors();
    assert_eq!(vectors.len(), 318);
    for (i, v) in vectors.iter().enumerate() {
        let mut lists = vec![v.ignore.clone(), vec![], v.names.clone(), vec!["absent".to_string()]];
        lists.extend(v.names.iter().map(|n| vec![n.clone()]));
        for ignore in &lists {
            assert!(paths_agree(&v.inputs, ignore), "vector {} (line {}) not taken with ignore {ignore:?}", i, i + 1);
        }
    }
}

/// Entry `name: Literal{..literal}` of a LiteralMap.
fn entry(name: &str, literal: &[u8]) -> Vec<u8> {
    let mut body = vec![0x0a, name.len() as u8];
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(&[0x12, literal.len() as u8]);
    body.extend_from_slice(literal);
    let mut out = vec![0x0a, body.len() as u8];
    out.extend(body);
    out
}

#[test]
fn inputs_prost_reads_by_merging_are_left_to_prost_with_its_result() {
    // Literal{scalar{blob{uri "a"}}} and Literal{scalar{blob{metadata{type{format "csv"}}}}}
    // in one Literal: prost merges them into one blob with both.
    let uri = [0x0a, 0x05, 0x12, 0x03, 0x1a, 0x01, b'a'];
    let format = [0x0a, 0x0d, 0x12, 0x0b, 0x0a, 0x09, 0x0a, 0x07, 0x0a, 0x03, b'c', b's', b'v', 0x10, 0x01];
    let merged = entry("x", &[&uri[..], &format[..]].concat());
    assert!(!paths_agree(&merged, &[]));
    let both = canonical_bytes(&merged, &[]).unwrap();
    assert_ne!(both, canonical_bytes(&entry("x", &uri), &[]).unwrap());
    assert_ne!(both, canonical_bytes(&entry("x", &format), &[]).unwrap());
    // A hash set twice: the last wins.
    let hashes = entry("x", &[0x22, 0x01, b'a', 0x22, 0x01, b'b']);
    assert!(!paths_agree(&hashes, &[]));
    assert_eq!(canonical_bytes(&hashes, &[]).unwrap(), canonical_bytes(&entry("x", &[0x22, 0x01, b'b']), &[]).unwrap());
    // One name twice is no merge: the last entry wins, on both paths.
    let twice = [entry("x", &[0x22, 0x01, b'a']), entry("x", &[0x22, 0x01, b'b'])].concat();
    assert!(paths_agree(&twice, &[]));
    assert_eq!(canonical_bytes(&twice, &[]).unwrap(), canonical_bytes(&entry("x", &[0x22, 0x01, b'b']), &[]).unwrap());
    // An error (an Error scalar) is the prost path's.
    let error = entry("x", &[0x0a, 0x02, 0x32, 0x00]);
    assert!(!paths_agree(&error, &[]));
    assert!(canonical_bytes(&error, &[]).unwrap_err().to_string().contains("an Error scalar"));
}

/// A message's fields (number and wire type, the whole field's bytes,
/// and a length-delimited payload's offset), if `buf` parses as one.
fn fields(buf: &[u8]) -> Option<Vec<(usize, usize, Option<usize>)>> {
    fn varint(buf: &[u8], at: &mut usize) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *buf.get(*at)?;
            *at += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Some(v);
            }
        }
        None
    }
    let mut out = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        let start = at;
        let key = varint(buf, &mut at)?;
        let payload = match key & 7 {
            0 => {
                varint(buf, &mut at)?;
                None
            }
            1 => {
                at += 8;
                None
            }
            2 => {
                let len = varint(buf, &mut at)? as usize;
                let payload = at;
                at = at.checked_add(len)?;
                Some(payload)
            }
            5 => {
                at += 4;
                None
            }
            _ => return None,
        };
        if at > buf.len() {
            return None;
        }
        out.push((start, at, payload));
    }
    Some(out)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// `message` re-serialized with its `*nth` field (counting every field of
/// every nested message that parses as one, depth first) written twice;
/// the lengths around it grow to match.
fn duplicate_field(message: &[u8], nth: &mut usize) -> Vec<u8> {
    let Some(fields) = fields(message) else { return message.to_vec() };
    let mut out = Vec::with_capacity(message.len() * 2);
    for (start, end, payload) in fields {
        let twice = *nth == 0;
        *nth = nth.wrapping_sub(1);
        let field = match payload {
            Some(p) if fields_nonempty(&message[p..end]) => {
                let body = duplicate_field(&message[p..end], nth);
                let key_len = {
                    let mut at = start;
                    while message[at] >= 0x80 {
                        at += 1;
                    }
                    at + 1 - start
                };
                let mut f = message[start..start + key_len].to_vec();
                put_varint(&mut f, body.len() as u64);
                f.extend(body);
                f
            }
            _ => message[start..end].to_vec(),
        };
        if twice {
            out.extend_from_slice(&field);
        }
        out.extend(field);
    }
    out
}

fn fields_nonempty(b: &[u8]) -> bool {
    fields(b).is_some_and(|f| !f.is_empty())
}

#[test]
fn every_field_of_a_vector_duplicated_agrees() {
    let (mut taken, mut left) = (0, 0);
    for v in vectors().iter().step_by(8) {
        for nth in 0.. {
            let mut countdown = nth;
            let input = duplicate_field(&v.inputs, &mut countdown);
            if input == v.inputs {
                break; // fewer fields than nth
            }
            if paths_agree(&input, &v.ignore) {
                taken += 1;
            } else {
                left += 1;
            }
        }
    }
    // Both kinds occur: a repeated map entry or collection item is taken,
    // a repeated singular field is left to prost.
    assert!(taken > 200 && left > 500, "taken {taken}, left to prost {left}");
}

#[test]
fn every_truncation_of_a_vector_agrees() {
    for v in vectors().iter().step_by(4) {
        for cut in 0..v.inputs.len() {
            paths_agree(&v.inputs[..cut], &v.ignore);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Random bytes (which rarely parse).
    #[test]
    fn random_bytes_agree(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        paths_agree(&bytes, &[]);
    }

    /// A vector with bits flipped and bytes replaced.
    #[test]
    fn mutated_vectors_agree(
        index in 0usize..318,
        flips in proptest::collection::vec((any::<usize>(), 0u8..8), 0..4),
        bytes in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..3),
    ) {
        let v = &vectors()[index];
        let mut input = v.inputs.clone();
        if !input.is_empty() {
            let n = input.len();
            for (at, bit) in flips {
                input[at % n] ^= 1 << bit;
            }
            for (at, byte) in bytes {
                input[at % n] = byte;
            }
        }
        paths_agree(&input, &v.ignore);
    }

    /// A vector with fields duplicated, then a bit flipped or the end cut.
    #[test]
    fn vectors_with_duplicated_fields_agree(index in 0usize..318, dups in proptest::collection::vec(any::<usize>(), 1..4), flip in any::<Option<(usize, u8)>>(), cut in any::<Option<usize>>()) {
        let v = &vectors()[index];
        let mut input = v.inputs.clone();
        for nth in dups {
            let mut countdown = nth % (input.len() / 2 + 1);
            input = duplicate_field(&input, &mut countdown);
        }
        if let (Some((at, bit)), false) = (flip, input.is_empty()) {
            let n = input.len();
            input[at % n] ^= 1 << (bit % 8);
        }
        if let Some(cut) = cut {
            input.truncate(cut % (input.len() + 1));
        }
        paths_agree(&input, &v.ignore);
    }
}
