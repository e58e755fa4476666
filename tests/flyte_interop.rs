//! Interop with the real flytekit: a workflow of cached tasks run locally
//! by flytekit fills a cache directory; the Rust `LocalTaskCache` finds
//! every output; outputs set from Rust are hits in flytekit (the task body,
//! which appends to a side-effect file, does not run); `clear` from either
//! side empties the cache for both.

mod support;

use support::flyte::{lines, map, output, prim, workflow};

use diskcachefs::flyte::LocalTaskCache;
use diskcachefs::flyte::idl::primitive;

#[test]
fn flytekit_and_the_rust_local_task_cache_share_one_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, side) = (tmp.path().join("local-cache"), tmp.path().join("side"));

    // flytekit runs the workflow: both bodies run once and are cached.
    let run = workflow(&dir, &side, &["run", "3", "ada"]);
    assert_eq!(run["square"][1], 9);
    assert_eq!(run["greet"][1], "hello ada");
    assert_eq!(lines(&side), ["square 3", "greet ada"]);
    let square = run["square"][0].as_str().unwrap().to_string();
    let greet = run["greet"][0].as_str().unwrap().to_string();

    // Rust finds every output flytekit stored.
    let cache = LocalTaskCache::initialize(Some(&dir)).unwrap();
    let got = cache.get(&square, "1", &map(vec![("x", prim(primitive::Value::Integer(3)))]), &[]).unwrap();
    assert_eq!(output(&got.expect("square(3) cached by flytekit")), primitive::Value::Integer(9));
    // greet ignores `noise`: any value of it finds the same entry.
    let inputs = map(vec![
        ("name", prim(primitive::Value::StringValue("ada".into()))),
        ("noise", prim(primitive::Value::Integer(12345))),
    ]);
    let got = cache.get(&greet, "2", &inputs, &["noise".to_string()]).unwrap();
    assert_eq!(output(&got.expect("greet(ada) cached by flytekit")), primitive::Value::StringValue("hello ada".into()));
    assert!(cache.get(&square, "1", &map(vec![("x", prim(primitive::Value::Integer(4)))]), &[]).unwrap().is_none());

    // Outputs stored from Rust are hits in flytekit: the body does not run.
    let outputs = map(vec![("o0", prim(primitive::Value::Integer(1234)))]);
    cache.set(&square, "1", &map(vec![("x", prim(primitive::Value::Integer(5)))]), &[], &outputs).unwrap();
    assert_eq!(workflow(&dir, &side, &["square", "5"]), 1234, "flytekit must return the output set from Rust");
    assert!(!lines(&side).contains(&"square 5".to_string()), "the task body ran despite the cached output");

    // clear from Rust empties it for flytekit...
    cache.clear().unwrap();
    assert_eq!(workflow(&dir, &side, &["square", "3"]), 9);
    assert_eq!(lines(&side).iter().filter(|l| *l == "square 3").count(), 2, "after clear, flytekit ran the body again");
    // ...and clear from flytekit empties it for Rust.
    let x3 = map(vec![("x", prim(primitive::Value::Integer(3)))]);
    assert!(cache.get(&square, "1", &x3, &[]).unwrap().is_some());
    workflow(&dir, &side, &["clear"]);
    assert!(cache.get(&square, "1", &x3, &[]).unwrap().is_none());
}
