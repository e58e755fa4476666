//! Cross-reading: a cache filled by python-diskcache (every key, value and
//! tag type, file-backed values, expiry, queues, statistics) is read
//! completely and correctly by the engine, and a cache filled by the
//! engine is read completely by python-diskcache, whose `Cache.check()`
//! then reports nothing. Both sides describe what they see in the same
//! JSON shape (tests/py/diskcache_ops.py's encoding), which must be equal.

mod support;

use support::{enc_entry, enc_item, enc_key, python};

use std::path::{Path, PathBuf};
use std::process::Command;

use diskcachefs::cache::{Cache, CacheOptions, Key, Scalar, Side, Value};
use serde_json::{Value as Json, json};

fn py(args: &[&str], dir: &Path) -> String {
    let driver = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/py/diskcache_ops.py");
    let out = Command::new(python()).arg(driver).args(args).arg(dir).output().expect("run python driver");
    assert!(out.status.success(), "python {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// What the engine sees, in the Python driver's shape.
fn rust_read(dir: &Path) -> Json {
    // Read-only: reading must not change what Python sees afterwards.
    let cache = Cache::open_with(dir, CacheOptions { read_only: true, ..CacheOptions::default() }).unwrap();
    let mut entries = Vec::new();
    for key in cache.iterkeys(false) {
        let key = key.unwrap();
        let entry = cache.get_entry(&key).unwrap();
        entries.push(json!([enc_key(&key), enc_entry(entry)]));
    }
    let mut queues = serde_json::Map::new();
    for (name, prefix) in [("None", None), ("jobs", Some("jobs"))] {
        queues.insert(format!("{name}-front"), enc_item(cache.peek(prefix, Side::Front).unwrap()));
        queues.insert(format!("{name}-back"), enc_item(cache.peek(prefix, Side::Back).unwrap()));
    }
    json!({"entries": entries, "queues": queues, "len": cache.len().unwrap()})
}

#[test]
fn a_cache_python_filled_is_read_completely_by_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("c");
    py(&["fill"], &d);
    // Statistics were on while python filled it (one hit, one miss).
    {
        let cache = Cache::open_with(&d, CacheOptions { read_only: true, ..CacheOptions::default() }).unwrap();
        assert!(cache.settings().statistics());
        assert_eq!(cache.reset("hits", None).unwrap(), Scalar::Int(1));
        assert_eq!(cache.reset("misses", None).unwrap(), Scalar::Int(1));
    }
    let mine = rust_read(&d);
    let theirs: Json = serde_json::from_str(&py(&["read"], &d)).unwrap();
    assert_eq!(theirs["check"], json!([]), "python's own check");
    let (a, b) = (mine["entries"].as_array().unwrap(), theirs["entries"].as_array().unwrap());
    assert_eq!(a.len(), b.len(), "number of keys");
    for (m, t) in a.iter().zip(b) {
        assert_eq!(m, t, "an entry differs");
    }
    assert_eq!(mine["queues"], theirs["queues"]);
    assert_eq!(mine["len"], theirs["len"]);
    // The fill covered what it claims: pickled keys, file-backed values,
    // an expired entry (a miss), and the \r\n a str file turns into \n.
    let text = a.iter().map(|e| e.to_string()).collect::<String>();
    assert!(text.contains("\"pickle\""));
    assert!(b.iter().any(|e| e[0] == json!(["str", "expired"]) && e[1].is_null()), "the expired entry reads as a miss");
    assert!(!text.contains("\\r\\n") && text.contains("line\\nnext"), "universal newlines in file-backed str");
    let warnings = Cache::open(&d).unwrap().check(false).unwrap();
    assert!(warnings.is_empty(), "engine check of a python cache: {warnings:?}");
}

#[test]
fn a_cache_the_engine_filled_is_read_completely_by_python_and_checks_clean() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("c");
    {
        let cache = Cache::open(&d).unwrap();
        cache.set(&Key::Str("plain".into()), &Value::Bytes(b"bytes value".to_vec()), None, None).unwrap();
        cache.set(&Key::Str("a/b".into()), &Value::Str("str value é".into()), None, None).unwrap();
        cache.set(&Key::Bytes(b"\x00raw".to_vec()), &Value::Int(42), None, Some(&Scalar::Str("t-str".into()))).unwrap();
        cache.set(&Key::Int(-7), &Value::Float(3.25), None, Some(&Scalar::Int(7))).unwrap();
        cache.set(&Key::Float(-1.5), &Value::Int(-9), None, Some(&Scalar::Float(2.5))).unwrap();
        cache
            .set(&Key::Str("big".into()), &Value::Bytes(vec![7; 100_000]), None, Some(&Scalar::Bytes(b"tb".to_vec())))
            .unwrap();
        cache.set(&Key::Str("big-str".into()), &Value::Str("é".repeat(40_000)), None, None).unwrap();
        // A pickle made by the engine's caller: python's `pickle.dumps(None, 5)`.
        cache.set(&Key::Str("none".into()), &Value::Pickle(b"\x80\x05N.".to_vec()), None, None).unwrap();
        cache.set(&Key::Str("expiring".into()), &Value::Bytes(b"soon".to_vec()), Some(3600.0), None).unwrap();
        cache.set(&Key::Str("expired".into()), &Value::Bytes(b"gone".to_vec()), Some(-1.0), None).unwrap();
        let big = std::io::Cursor::new(vec![9u8; 200_000]);
        cache.set_reader(&Key::Str("streamed".into()), &mut big.clone(), None, None).unwrap();
        for i in 0..3 {
            cache.push(&Value::Str(format!("job-{i}")), Some("jobs"), Side::Back, None, None).unwrap();
            cache.push(&Value::Int(i * 10), None, Side::Back, None, None).unwrap();
        }
        cache.push(&Value::Str("urgent".into()), Some("jobs"), Side::Front, None, None).unwrap();
    }
    let theirs: Json = serde_json::from_str(&py(&["read"], &d)).unwrap();
    assert_eq!(theirs["check"], json!([]), "python's Cache.check() on an engine-made cache");
    let mine = rust_read(&d);
    assert_eq!(mine["entries"], theirs["entries"]);
    assert_eq!(mine["queues"], theirs["queues"]);
    // 18 stored; the already-expired one is culled by the next set, as diskcache does.
    assert_eq!(theirs["len"], 17);
    assert_eq!(mine["len"], theirs["len"]);
    assert_eq!(theirs["queues"]["jobs-front"][1], json!(["str", "urgent"]));
    assert_eq!(theirs["queues"]["None-back"][0], json!(["int", 500000000000002i64]));
}
