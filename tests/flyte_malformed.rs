//! Malformed inputs to the Flyte key: a clear error, in bounded time and
//! memory, never a panic; and the same through the CLI (exit status 2).

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use diskcachefs::flyte::{KeyError, cache_key, decode_literal_map};
use proptest::prelude::*;

fn vectors() -> Vec<Vec<u8>> {
    let data =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/flyte-cache-keys.jsonl")).unwrap();
    data.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            base64::engine::general_purpose::STANDARD.decode(v["inputs"].as_str().unwrap()).unwrap()
        })
        .collect()
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn varint_len(v: u64) -> u64 {
    let mut n = 1;
    let mut v = v >> 7;
    while v > 0 {
        n += 1;
        v >>= 7;
    }
    n
}

#[test]
fn every_truncation_of_every_vector_is_an_error_or_a_key_never_a_panic() {
    let mut errors = 0;
    for input in vectors() {
        for cut in 0..input.len() {
            if cache_key("t", "v", &input[..cut], &[]).is_err() {
                errors += 1;
            }
        }
    }
    assert!(errors > 1000, "truncations should mostly be errors, got {errors}");
}

#[test]
fn wrong_wire_types_and_invalid_utf8_are_decode_errors_that_say_so() {
    // Field 1 (literals) as a varint instead of a length-delimited entry.
    let e = cache_key("t", "v", &[0x08, 0x01], &[]).unwrap_err();
    assert!(matches!(e, KeyError::Decode(_)) && e.to_string().contains("not a serialized flyteidl LiteralMap"), "{e}");
    // A map key that is not UTF-8: entry { key: 0xff }.
    let e = cache_key("t", "v", &[0x0a, 0x03, 0x0a, 0x01, 0xff], &[]).unwrap_err();
    assert!(e.to_string().contains("UTF-8"), "{e}");
    // A length running past the end.
    assert!(cache_key("t", "v", &[0x0a, 0x7f, 0x00], &[]).is_err());
}

#[test]
fn nesting_a_hundred_thousand_deep_is_refused_quickly() {
    // x: Literal{collection{Literal{collection{...}}}} 100,000 levels deep,
    // built from lengths computed inside out (each level is one header).
    let depth = 100_000u64;
    let mut sizes = Vec::with_capacity(depth as usize + 1);
    let mut content = 0u64; // innermost Literal is empty
    sizes.push(content);
    for _ in 0..depth {
        // LiteralCollection { literals: [inner Literal] }, then Literal { collection: that }.
        let collection = 1 + varint_len(content) + content;
        content = 1 + varint_len(collection) + collection;
        sizes.push(content);
    }
    let mut bytes = Vec::new();
    let entry = 3 + 1 + varint_len(content) + content; // key "x" and the value
    bytes.push(0x0a);
    varint(&mut bytes, entry);
    bytes.extend_from_slice(&[0x0a, 0x01, b'x', 0x12]);
    varint(&mut bytes, content);
    for level in (0..depth as usize).rev() {
        let inner = sizes[level];
        let collection = 1 + varint_len(inner) + inner;
        bytes.push(0x12); // Literal.collection
        varint(&mut bytes, collection);
        bytes.push(0x0a); // LiteralCollection.literals
        varint(&mut bytes, inner);
    }
    let start = Instant::now();
    let e = cache_key("t", "v", &bytes, &[]).unwrap_err();
    // Refused at the decoder's depth limit (about 100 levels, prost's),
    // not after descending 100,000 (or overflowing the stack): the error
    // says so.
    assert!(e.to_string().contains("recursion limit"), "{e}");
    // "Bounded time" is the promise, so it stays a bound, and one no load
    // can reach: the refusal takes 0.25 ms here (debug build), the bound is
    // 20,000 times that. What it catches is work that grows faster than
    // the input, such as each level reading its whole body again: for
    // these 776 KiB nested 100,000 deep, some 10^10 steps, minutes.
    let took = start.elapsed();
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[test]
fn a_hundred_mebibytes_of_junk_is_refused() {
    let mut junk = vec![0u8; 100 << 20];
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    for chunk in junk.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    let start = Instant::now();
    let decoded = decode_literal_map(&junk).unwrap_err().to_string();
    let keyed = cache_key("t", "v", &junk, &[]).unwrap_err().to_string();
    // Refused at the first field, not after reading the 100 MiB: its key's
    // wire type (the low 3 bits of the first byte) is 7, which protobuf
    // does not have, and both errors name it.
    assert_eq!(junk[0] & 7, 7);
    for e in [&decoded, &keyed] {
        assert!(e.contains("not a serialized flyteidl LiteralMap") && e.contains("invalid wire type value: 7"), "{e}");
    }
    // A hang guard for the promise of bounded time: both refusals take
    // 0.05 ms here; only many passes over the 100 MiB could take 10 s.
    let took = start.elapsed();
    assert!(took < Duration::from_secs(10), "{took:?}");
    // Through the CLI: exit 2 and a message, from standard input.
    let mut child = Command::new(env!("CARGO_BIN_EXE_diskcachefs"))
        .args(["flyte-key", "--task", "t", "--version", "v"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&junk).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a serialized flyteidl LiteralMap"));
}

#[test]
fn the_cli_prints_keys_and_json_and_refuses_bad_input_with_exit_2() {
    let data =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/flyte-cache-keys.jsonl")).unwrap();
    let v: serde_json::Value = serde_json::from_str(data.lines().nth(1).unwrap()).unwrap();
    let inputs = base64::engine::general_purpose::STANDARD.decode(v["inputs"].as_str().unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("inputs.pb");
    std::fs::write(&file, &inputs).unwrap();
    let run = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_diskcachefs")).args(args).output().unwrap();
    let out = run(&[
        "flyte-key",
        "--task",
        v["task"].as_str().unwrap(),
        "--version",
        v["version"].as_str().unwrap(),
        file.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), format!("{}\n", v["key"].as_str().unwrap()));
    let out = run(&["literals", file.to_str().unwrap()]);
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(json.as_object().unwrap().contains_key("data31"), "{json}");
    std::fs::write(&file, [0x0a, 0x7f]).unwrap();
    for args in [
        vec!["literals", file.to_str().unwrap()],
        vec!["flyte-key", "--task", "t", "--version", "v", file.to_str().unwrap()],
    ] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Random bytes: an error or a key, never a panic.
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = cache_key("t", "v", &bytes, &[]);
    }

    /// A real vector with random bytes flipped: the same.
    #[test]
    fn mutated_vectors_never_panic(index in 0usize..318, flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6)) {
        let mut input = vectors()[index].clone();
        if !input.is_empty() {
            for (at, byte) in flips {
                let n = input.len();
                input[at % n] = byte;
            }
        }
        let _ = cache_key("t", "v", &input, &[]);
    }
}
