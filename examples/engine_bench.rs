//! The Rust side of `scripts/bench engine`: the same workloads as
//! `scripts/bench.d/engine.py` runs through python-diskcache, on the same
//! settings, each in a fresh cache directory. Prints one JSON object:
//! workload name -> microseconds per operation.
//!
//! cargo run --release --example engine_bench -- WORKDIR

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use diskcachefs::cache::{Cache, Key, Side, Value};

fn fresh(work: &Path, name: &str) -> Cache {
    let dir = work.join(format!("rust-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    Cache::open(&dir).expect("open bench cache")
}

/// A cheap deterministic sequence of indexes (no RNG dependency).
fn index(i: u64, n: u64) -> u64 {
    i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % n
}

fn per_op(start: Instant, ops: u64) -> f64 {
    start.elapsed().as_secs_f64() * 1e6 / ops as f64
}

fn main() {
    let work = std::env::args().nth(1).expect("usage: engine_bench WORKDIR");
    let work = Path::new(&work);
    let mut results = BTreeMap::new();
    let small = Value::Bytes(vec![b'x'; 1024]);
    let large = Value::Bytes(vec![b'y'; 1 << 20]);

    let cache = fresh(work, "small");
    let n = 10_000;
    let start = Instant::now();
    for i in 0..n {
        cache.set(&Key::Str(format!("key-{i}")), &small, None, None).unwrap();
    }
    results.insert("set 1 KiB", per_op(start, n));
    // First reads (a fresh handle: nothing cached), then repeated reads.
    let cache = cache.try_clone().unwrap();
    let start = Instant::now();
    for i in 0..n {
        let v = cache.get(&Key::Str(format!("key-{i}"))).unwrap();
        assert!(v.is_some());
    }
    results.insert("get 1 KiB, first read of each key", per_op(start, n));
    let gets = 100_000;
    let start = Instant::now();
    for i in 0..gets {
        let v = cache.get(&Key::Str(format!("key-{}", index(i, n)))).unwrap();
        assert!(v.is_some());
    }
    results.insert("get 1 KiB, repeated reads", per_op(start, gets));

    let cache = fresh(work, "large");
    let n = 50;
    let start = Instant::now();
    for i in 0..n {
        cache.set(&Key::Str(format!("big-{i}")), &large, None, None).unwrap();
    }
    results.insert("set 1 MiB (file)", per_op(start, n));
    let gets = 500;
    let start = Instant::now();
    for i in 0..gets {
        let v = cache.get(&Key::Str(format!("big-{}", index(i, n)))).unwrap();
        assert!(v.is_some());
    }
    results.insert("get 1 MiB (file)", per_op(start, gets));

    let cache = fresh(work, "incr");
    let n = 10_000;
    let start = Instant::now();
    for _ in 0..n {
        cache.incr(&Key::Str("counter".into()), 1, Some(0)).unwrap();
    }
    results.insert("incr", per_op(start, n));

    let cache = fresh(work, "queue");
    let n = 5_000;
    let start = Instant::now();
    for _ in 0..n {
        cache.push(&small, Some("q"), Side::Back, None, None).unwrap();
        cache.pull(Some("q"), Side::Front).unwrap().unwrap();
    }
    results.insert("push+pull", per_op(start, n));

    let cache = fresh(work, "iter");
    let n = 100_000u64;
    cache
        .transact(|c| {
            for i in 0..n {
                c.set(&Key::Str(format!("k{i:06}")), &Value::Int(i as i64), None, None)?;
            }
            Ok(())
        })
        .unwrap();
    let start = Instant::now();
    let mut count = 0;
    for key in cache.iterkeys(false) {
        key.unwrap();
        count += 1;
    }
    assert_eq!(count as u64, n);
    results.insert("iterkeys 100,000 (per key)", per_op(start, n));

    println!("{}", serde_json::to_string(&results).unwrap());
}
