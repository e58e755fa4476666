//! FanoutCache directories (dspy's and Django's layout: shard caches `000/`,
//! `001/`, ..., no `cache.db` at the top) through the engine and the CLI,
//! against python-diskcache's own `FanoutCache` (issue 11, item 3, the
//! engine and CLI part). The bug: such a directory read as an empty cache,
//! and a write made a new `cache.db` beside the shards, which no
//! FanoutCache reads.

mod support;

use diskcachefs::cache::{CacheOptions, FanoutCache};
use support::{cli, dec_key, py};

/// Fills a 16-shard FanoutCache with keys of every kind; prints each key
/// (as the tests' JSON encoding, a pickled key as its pickle) with the
/// shard python-diskcache put it in.
const FILL: &str = r#"
import json, pickle, pickletools, sys, diskcache
fc = diskcache.FanoutCache(sys.argv[1], shards=16)
keys = [f'key-{i}' for i in range(200)] + ['', 'ünïcode', 'a/b/c'] + [b'\x00raw', b'bytes-key'] \
     + [0, 7, -1, -5, 2**40, -2**63, 2**63 - 1] + [1.5, -0.0, 1e300] + [('tuple', 1), 2**64, True]
out = []
for k in keys:
    fc.set(k, f'value of {k!r}'.encode(), tag='t' if isinstance(k, str) else None)
    shard = fc._hash(k) % 16
    if type(k) is str: enc = ['str', k]
    elif type(k) is bytes: enc = ['bytes', k.hex()]
    elif type(k) is int and -2**63 <= k < 2**63: enc = ['int', k]
    elif type(k) is float: enc = ['float', k]
    else: enc = ['pickle', pickletools.optimize(pickle.dumps(k, protocol=fc._shards[0].disk_pickle_protocol)).hex()]
    out.append([enc, shard])
print(json.dumps(out))
"#;

#[test]
fn a_fanout_cache_is_one_cache_to_the_engine_and_the_cli() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("dspy_cache");
    let keys: serde_json::Value = serde_json::from_str(&py(FILL, &[dir.to_str().unwrap()])).unwrap();
    let keys = keys.as_array().unwrap();
    assert!(!dir.join("cache.db").exists() && dir.join("015/cache.db").is_file());

    // Every key's shard is python-diskcache's, and its value is there.
    let fc = FanoutCache::open_existing(&dir, CacheOptions::default()).unwrap();
    assert_eq!(fc.shards().len(), 16);
    for pair in keys {
        let key = dec_key(&pair[0]);
        assert_eq!(fc.shard_index(&key) as u64, pair[1].as_u64().unwrap(), "shard of {key:?}");
        assert!(fc.get(&key).unwrap().is_some(), "{key:?} in its shard");
    }
    assert_eq!(fc.len().unwrap(), keys.len() as i64);
    assert!(fc.check(false).unwrap().is_empty());
    drop(fc);

    // The CLI takes the directory as one cache.
    let d = dir.to_str().unwrap();
    let listed = String::from_utf8(cli(&["keys", d], None).stdout).unwrap();
    assert_eq!(listed.lines().count(), keys.len());
    let got = cli(&["get", d, "key-42"], None);
    assert_eq!(got.stdout, b"value of 'key-42'");
    let stats: serde_json::Value = serde_json::from_slice(&cli(&["stats", d], None).stdout).unwrap();
    assert_eq!((stats["count"].as_u64(), stats["fanout_shards"].as_u64()), (Some(keys.len() as u64), Some(16)));
    assert!(cli(&["set", d, "from-the-cli"], Some(b"hello")).status.success());
    assert!(cli(&["delete", d, "key-7"], None).status.success());
    assert_eq!(cli(&["delete", d, "key-7"], None).status.code(), Some(1));
    assert!(cli(&["check", d], None).status.success());
    assert!(!dir.join("cache.db").exists(), "nothing beside the shards");

    // python-diskcache's FanoutCache reads what the CLI wrote, each key once.
    let seen = py(
        r#"
import sys, diskcache
fc = diskcache.FanoutCache(sys.argv[1], shards=16)
import collections
# Each key once across the shards (by type and value: SQLite's `=` takes 0 and -0.0 as one).
seen = collections.Counter((type(k).__name__, repr(k)) for s in fc._shards for k in s)
twice = [k for k, n in seen.items() if n != 1]
print(fc.get('from-the-cli'), 'key-7' in fc, len(fc), twice, fc.check())
"#,
        &[d],
    );
    assert_eq!(seen.trim(), format!("b'hello' False {} [] []", keys.len()));
}
