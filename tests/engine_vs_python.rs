//! Differential test: seeded random sequences of 10,000 operations run
//! through python-diskcache 5.6.3 on one directory and through the Rust
//! engine on another must give the same result for every operation and
//! leave the same Cache and Settings tables (value-file names aside), under
//! each eviction policy, with statistics on and off, with expiry, tags,
//! every key and value type, values on both sides of `disk_min_file_size`
//! and a `size_limit` small enough that culling happens.
//!
//! Both sides run on one fake clock (each operation carries its `now`), so
//! expiry and stored times are deterministic. A failure prints the seed;
//! rerun it with DISKCACHEFS_SEED=<seed>.

mod support;

use support::{dec_key, enc_entry, enc_item, enc_key, hex, python, unhex};

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use diskcachefs::cache::{Cache, CacheOptions, Error, Key, Number, Scalar, Side, Value};
use serde_json::{Value as Json, json};

fn driver() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/py/diskcache_ops.py")
}

/// python-diskcache runs on the very SQLite library the engine is built
/// with: `volume()` (and so culling) counts database pages, and SQLite
/// versions lay the same rows out in slightly different page counts (3.40
/// and 3.54 differ by a page now and then). The bundled amalgamation is
/// compiled once into a shared library that Python's sqlite3 module loads
/// through LD_PRELOAD; `pool` checks that it did.
fn same_sqlite() -> &'static Path {
    static LIB: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    LIB.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("sqlite-for-python");
        let lib = dir.join(format!("libsqlite3-{}.so", rusqlite::version()));
        if lib.exists() {
            return lib;
        }
        std::fs::create_dir_all(&dir).unwrap();
        let meta = Command::new(env!("CARGO"))
            .args(["metadata", "--format-version", "1", "--manifest-path"])
            .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .output()
            .expect("cargo metadata");
        let meta: Json = serde_json::from_slice(&meta.stdout).expect("cargo metadata JSON");
        let manifest = meta["packages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "libsqlite3-sys")
            .expect("libsqlite3-sys in the dependency graph")["manifest_path"]
            .as_str()
            .unwrap()
            .to_string();
        let source = Path::new(&manifest).parent().unwrap().join("sqlite3/sqlite3.c");
        // Built under a unique name, then renamed: parallel tests may race.
        let tmp = dir.join(format!("building-{}.so", std::process::id()));
        let status = Command::new("cc")
            .args(["-shared", "-fPIC", "-O1", "-DSQLITE_THREADSAFE=1", "-DSQLITE_ENABLE_STAT4", "-o"])
            .arg(&tmp)
            .arg(&source)
            .args(["-lm", "-lpthread", "-ldl"])
            .status()
            .expect("run cc");
        assert!(status.success(), "compiling {} failed", source.display());
        std::fs::rename(&tmp, &lib).unwrap();
        lib
    })
}

fn py(args: &[&str]) -> String {
    let out = Command::new(python())
        .arg(driver())
        .args(args)
        .env("LD_PRELOAD", same_sqlite())
        .output()
        .expect("run python driver");
    assert!(out.status.success(), "python driver {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// SplitMix64: a small, seedable generator (no RNG dependency).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

struct Pools {
    pickled_values: Vec<String>,
    pickled_keys: Vec<String>,
}

fn gen_key(rng: &mut Rng, pools: &Pools) -> Json {
    match rng.below(10) {
        0..=4 => json!(["str", format!("k{}", rng.below(40))]),
        5 => json!(["str", format!("dir/k{}", rng.below(5))]),
        6 => json!(["bytes", hex(format!("b{}", rng.below(8)).as_bytes())]),
        // Negative numbers: diskcache's integer queue uses the keys between 0
        // and 999999999999999, and a plain key there collides with a push.
        7 => json!(["int", -(rng.below(12) as i64) - 1]),
        8 => json!(["float", -(rng.below(8) as f64) * 0.5 - 0.25]),
        _ => json!(["pickle", rng.pick(&pools.pickled_keys)]),
    }
}

fn gen_value(rng: &mut Rng, pools: &Pools) -> Json {
    // disk_min_file_size is 1024: sizes straddle it.
    let size = match rng.below(4) {
        0 => rng.below(20),
        1 => 1000 + rng.below(48),
        2 => rng.below(3000),
        _ => 2000 + rng.below(6000),
    } as usize;
    match rng.below(7) {
        0 | 1 => json!(["bytes", hex(&vec![b'a' + rng.below(26) as u8; size])]),
        2 => json!(["str", "é".repeat(size / 2) + "z"]),
        3 => json!(["int", rng.below(1000) as i64 - 500]),
        4 => json!(["float", (rng.below(1000) as f64) / 8.0]),
        _ => json!(["pickle", rng.pick(&pools.pickled_values)]),
    }
}

fn gen_tag(rng: &mut Rng) -> Json {
    match rng.below(4) {
        0 => json!(["str", "t1"]),
        1 => json!(["str", "t2"]),
        2 => json!(["int", 7]),
        _ => Json::Null,
    }
}

fn gen_expire(rng: &mut Rng) -> Json {
    match rng.below(3) {
        0 => json!((rng.below(40) as f64) * 0.25 + 0.1),
        _ => Json::Null,
    }
}

fn gen_ops(seed: u64, count: usize, statistics: bool, pools: &Pools) -> Vec<Json> {
    let mut rng = Rng(seed);
    let mut ops = Vec::with_capacity(count + 2);
    for i in 0..count {
        let now = 1_700_000_000.0 + i as f64 * 0.25;
        let prefix = match rng.below(3) {
            0 => Json::Null,
            1 => json!("q1"),
            _ => json!("q2"),
        };
        let side = if rng.below(2) == 0 { "front" } else { "back" };
        let mut op = match rng.below(100) {
            0..=21 => json!({"op": "set", "key": gen_key(&mut rng, pools), "value": gen_value(&mut rng, pools),
                              "expire": gen_expire(&mut rng), "tag": gen_tag(&mut rng)}),
            22..=27 => json!({"op": "add", "key": gen_key(&mut rng, pools), "value": gen_value(&mut rng, pools),
                               "expire": gen_expire(&mut rng), "tag": gen_tag(&mut rng)}),
            28..=45 => json!({"op": "get", "key": gen_key(&mut rng, pools)}),
            46..=50 => json!({"op": "pop", "key": gen_key(&mut rng, pools)}),
            51..=55 => json!({"op": "delete", "key": gen_key(&mut rng, pools)}),
            56..=58 => json!({"op": "contains", "key": gen_key(&mut rng, pools)}),
            59..=64 => json!({"op": if rng.below(2) == 0 { "incr" } else { "decr" }, "key": gen_key(&mut rng, pools),
                               "delta": rng.below(5) as i64 + 1,
                               "default": if rng.below(4) == 0 { Json::Null } else { json!(rng.below(10) as i64) }}),
            65..=68 => json!({"op": "touch", "key": gen_key(&mut rng, pools), "expire": gen_expire(&mut rng)}),
            69 => json!({"op": "expire"}),
            70 => json!({"op": "evict", "tag": gen_tag(&mut rng)}),
            71 => json!({"op": "cull"}),
            72 if rng.below(10) == 0 => json!({"op": "clear"}),
            72..=79 => json!({"op": "push", "value": gen_value(&mut rng, pools), "prefix": prefix, "side": side,
                               "expire": gen_expire(&mut rng), "tag": gen_tag(&mut rng)}),
            80..=85 => json!({"op": "pull", "prefix": prefix, "side": side}),
            86..=89 => json!({"op": "peek", "prefix": prefix, "side": side}),
            90..=92 => json!({"op": "peekitem", "last": rng.below(2) == 0}),
            93..=95 => json!({"op": "len"}),
            96 if statistics => json!({"op": "stats"}),
            _ => json!({"op": "iterkeys", "reverse": rng.below(2) == 0}),
        };
        if op["op"] == "evict" && op["tag"].is_null() {
            op["tag"] = json!(["str", "t1"]);
        }
        op["now"] = json!(now);
        ops.push(op);
    }
    // A final file-backed set, so that a late `clear` cannot leave the end
    // state without a value file to compare (the check below relies on one).
    let size = 4096 + rng.below(4096) as usize;
    ops.push(json!({"op": "set", "key": ["str", "final"], "value": ["bytes", hex(&vec![b'f'; size])],
                    "expire": Json::Null, "tag": gen_tag(&mut rng), "now": 1_700_000_000.0 + count as f64 * 0.25}));
    ops
}

fn decode_value(item: &Json) -> Value {
    let data = &item[1];
    match item[0].as_str().unwrap() {
        "str" => Value::Str(data.as_str().unwrap().into()),
        "bytes" => Value::Bytes(unhex(data.as_str().unwrap())),
        "int" => Value::Int(data.as_i64().unwrap()),
        "float" => Value::Float(data.as_f64().unwrap()),
        "pickle" => Value::Pickle(unhex(data.as_str().unwrap())),
        other => panic!("{other}"),
    }
}

fn decode_tag(item: &Json) -> Option<Scalar> {
    if item.is_null() {
        return None;
    }
    Some(match decode_value(item) {
        Value::Str(s) => Scalar::Str(s),
        Value::Int(i) => Scalar::Int(i),
        other => panic!("tag {other:?}"),
    })
}

fn side(op: &Json) -> Side {
    if op["side"] == "front" { Side::Front } else { Side::Back }
}

fn run_rust(dir: &Path, settings: &[(String, Scalar)], ops: &[Json]) -> Vec<Json> {
    let now = Arc::new(AtomicU64::new(0));
    let clock_now = now.clone();
    let options = CacheOptions {
        settings: settings.to_vec(),
        clock: Arc::new(move || f64::from_bits(clock_now.load(Ordering::SeqCst))),
        ..CacheOptions::default()
    };
    let cache = Cache::open_with(dir, options).unwrap();
    let mut out = Vec::with_capacity(ops.len());
    for op in ops {
        now.store(op["now"].as_f64().unwrap().to_bits(), Ordering::SeqCst);
        let key = || dec_key(&op["key"]);
        let value = || decode_value(&op["value"]);
        let tag = decode_tag(&op["tag"]);
        let expire = op["expire"].as_f64();
        let prefix = op["prefix"].as_str();
        let result: Result<Json, Error> = (|| {
            Ok(match op["op"].as_str().unwrap() {
                "set" => json!(cache.set(&key(), &value(), expire, tag.as_ref())?),
                "add" => json!(cache.add(&key(), &value(), expire, tag.as_ref())?),
                "get" => enc_entry(cache.get_entry(&key())?),
                "pop" => enc_entry(cache.pop(&key())?),
                "delete" => json!(cache.delete(&key())?),
                "contains" => json!(cache.contains(&key())?),
                name @ ("incr" | "decr") => {
                    let delta = op["delta"].as_i64().unwrap();
                    let default = op["default"].as_i64();
                    let n = if name == "incr" {
                        cache.incr(&key(), delta, default)?
                    } else {
                        cache.decr(&key(), delta, default)?
                    };
                    match n {
                        Number::Int(i) => json!(["int", i]),
                        Number::Float(f) => json!(["float", f]),
                    }
                }
                "touch" => json!(cache.touch(&key(), expire)?),
                "expire" => json!(cache.expire(None)?),
                "evict" => json!(cache.evict(&tag.clone().unwrap())?),
                "cull" => json!(cache.cull()?),
                "clear" => json!(cache.clear()?),
                "push" => enc_key(&cache.push(&value(), prefix, side(op), expire, tag.as_ref())?),
                "pull" => enc_item(cache.pull(prefix, side(op))?),
                "peek" => enc_item(cache.peek(prefix, side(op))?),
                "peekitem" => enc_item(cache.peekitem(op["last"].as_bool().unwrap())?),
                "len" => json!(cache.len()?),
                "stats" => {
                    let (h, m) = cache.stats(true, false)?;
                    json!([h, m])
                }
                "iterkeys" => {
                    let keys: Result<Vec<Key>, Error> = cache.iterkeys(op["reverse"].as_bool().unwrap()).collect();
                    Json::Array(keys?.iter().map(enc_key).collect())
                }
                other => panic!("unknown op {other}"),
            })
        })();
        out.push(match result {
            Ok(j) => j,
            Err(Error::KeyNotFound { .. }) => json!({"error": "KeyError"}),
            Err(Error::NotANumber { .. }) => json!({"error": "TypeError"}),
            Err(e) => panic!("engine error on {op}: {e}"),
        });
    }
    out
}

fn differential(policy: &str, statistics: bool) {
    let seed: u64 = std::env::var("DISKCACHEFS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    let pools: Json = serde_json::from_str(&py(&["pool"])).unwrap();
    assert_eq!(pools["sqlite"], rusqlite::version(), "python-diskcache must run on the engine's SQLite");
    let strings = |v: &Json| v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect();
    let pools = Pools { pickled_values: strings(&pools["values"]), pickled_keys: strings(&pools["keys"]) };
    let ops = gen_ops(seed, 10_000, statistics, &pools);

    let dir = tempfile::tempdir().unwrap();
    let (py_dir, rs_dir) = (dir.path().join("python"), dir.path().join("rust"));
    let settings = vec![
        ("eviction_policy".to_string(), Scalar::Str(policy.into())),
        ("disk_min_file_size".to_string(), Scalar::Int(1024)),
        ("size_limit".to_string(), Scalar::Int(120_000)),
        ("statistics".to_string(), Scalar::Int(i64::from(statistics))),
    ];
    let settings_json = json!({"eviction_policy": policy, "disk_min_file_size": 1024, "size_limit": 120_000,
                               "statistics": i64::from(statistics)});
    let ops_file = dir.path().join("ops.json");
    std::fs::write(&ops_file, serde_json::to_string(&ops).unwrap()).unwrap();
    let py_out = dir.path().join("python.json");
    py(&[
        "run",
        py_dir.to_str().unwrap(),
        &settings_json.to_string(),
        ops_file.to_str().unwrap(),
        py_out.to_str().unwrap(),
    ]);
    let expected: Vec<Json> = serde_json::from_str(&std::fs::read_to_string(&py_out).unwrap()).unwrap();
    let actual = run_rust(&rs_dir, &settings, &ops);

    let context = format!("policy {policy}, statistics {statistics}, seed {seed} (rerun with DISKCACHEFS_SEED={seed})");
    assert_eq!(expected.len(), ops.len(), "python answered {} of {} operations; {context}", expected.len(), ops.len());
    assert_eq!(actual.len(), ops.len(), "the engine answered {} of {} operations; {context}", actual.len(), ops.len());
    for (i, (want, got)) in expected.iter().zip(&actual).enumerate() {
        if got != want {
            let state = explain_divergence(&settings, &settings_json, &ops[..i]);
            panic!("op #{i} {} differs; {context}\n  python: {want}\n  rust:   {got}\n{state}", ops[i]);
        }
    }
    let py_dump: Json = serde_json::from_str(&py(&["dump", py_dir.to_str().unwrap()])).unwrap();
    let rs_dump: Json = serde_json::from_str(&py(&["dump", rs_dir.to_str().unwrap()])).unwrap();
    assert_eq!(rs_dump["settings"], py_dump["settings"], "Settings tables differ; {context}");
    let (py_rows, rs_rows) = (py_dump["rows"].as_array().unwrap(), rs_dump["rows"].as_array().unwrap());
    for (a, b) in rs_rows.iter().zip(py_rows) {
        assert_eq!(a, b, "Cache rows differ; {context}");
    }
    assert_eq!(rs_rows.len(), py_rows.len(), "row counts differ; {context}");
    // The ops must have exercised culling, expiry and files, or this test proves little.
    let culls: u64 =
        expected.iter().zip(&ops).filter(|(_, op)| op["op"] == "cull").filter_map(|(r, _)| r.as_u64()).sum();
    assert!(culls > 0 || policy == "none", "no cull removed anything; {context}");
    assert!(py_rows.iter().any(|r| r[12] == true), "no file-backed value at the end; {context}");
}

/// The tables (and page count) each side has after running `ops`.
fn states_after(settings: &[(String, Scalar)], settings_json: &Json, ops: &[Json]) -> (Json, Json) {
    let dir = tempfile::tempdir().unwrap();
    let (py_dir, rs_dir) = (dir.path().join("python"), dir.path().join("rust"));
    let ops_file = dir.path().join("ops.json");
    std::fs::write(&ops_file, serde_json::to_string(ops).unwrap()).unwrap();
    let out = dir.path().join("out.json");
    py(&[
        "run",
        py_dir.to_str().unwrap(),
        &settings_json.to_string(),
        ops_file.to_str().unwrap(),
        out.to_str().unwrap(),
    ]);
    run_rust(&rs_dir, settings, ops);
    let py_dump: Json = serde_json::from_str(&py(&["dump", py_dir.to_str().unwrap()])).unwrap();
    let rs_dump: Json = serde_json::from_str(&py(&["dump", rs_dir.to_str().unwrap()])).unwrap();
    (py_dump, rs_dump)
}

fn same_state(a: &Json, b: &Json) -> bool {
    a["settings"] == b["settings"] && a["rows"] == b["rows"]
}

/// Finds, by bisection over prefixes of the operations before a visible
/// divergence, the first operation after which the two sides' tables
/// differ, and describes it with the page counts just before it (culling
/// depends on them through `volume()`).
fn explain_divergence(settings: &[(String, Scalar)], settings_json: &Json, ops: &[Json]) -> String {
    let (p, r) = states_after(settings, settings_json, ops);
    if same_state(&p, &r) {
        return "  the tables agreed before this operation".into();
    }
    let (mut good, mut bad) = (0usize, ops.len());
    while bad - good > 1 {
        let mid = (good + bad) / 2;
        let (p, r) = states_after(settings, settings_json, &ops[..mid]);
        if same_state(&p, &r) { good = mid } else { bad = mid }
    }
    let (p0, r0) = states_after(settings, settings_json, &ops[..good]);
    let (p1, r1) = states_after(settings, settings_json, &ops[..bad]);
    format!(
        "  the tables first differ after op #{} {}\n  page_count before it: python {}, rust {}; after: python {}, rust {}\n  \
         Settings after: python {}\n                  rust   {}",
        good,
        ops[good],
        p0["page_count"],
        r0["page_count"],
        p1["page_count"],
        r1["page_count"],
        p1["settings"],
        r1["settings"]
    )
}

#[test]
fn least_recently_stored() {
    differential("least-recently-stored", false);
}

#[test]
fn least_recently_used_with_statistics() {
    differential("least-recently-used", true);
}

#[test]
fn least_frequently_used() {
    differential("least-frequently-used", false);
}

#[test]
fn no_eviction_with_statistics() {
    differential("none", true);
}
