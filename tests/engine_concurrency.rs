//! Several processes on one cache at once: 2 python-diskcache and 2 Rust
//! engine processes each increment one counter 2,000 times and set 1,000
//! keys of their own, all at the same time. Nothing may be lost: the
//! counter ends at exactly 8,000, every key is there with its value, no
//! process saw an error, and python-diskcache's `Cache.check()` is clean.

mod support;

use support::python;

use std::process::{Child, Command, Stdio};

const PYTHON_WORKER: &str = r#"
import sys, time, diskcache
directory, name, incrs, sets, start_at = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
cache = diskcache.Cache(directory)
time.sleep(max(0.0, start_at - time.time()))
for i in range(max(incrs, sets)):
    if i < incrs:
        cache.incr('counter', 1, default=0)
    if i < sets:
        cache.set(f'{name}-{i}', f'{name}:{i}'.encode())
"#;

const PYTHON_VERIFY: &str = r#"
import sys, json, diskcache
cache = diskcache.Cache(sys.argv[1])
names = sys.argv[2:]
missing = [f'{n}-{i}' for n in names for i in range(1000) if cache.get(f'{n}-{i}') != f'{n}:{i}'.encode()]
print(json.dumps({'counter': cache.get('counter'), 'missing': missing[:10], 'missing_count': len(missing),
                  'len': len(cache), 'check': [str(w.message) for w in cache.check()]}))
"#;

#[test]
fn two_python_and_two_rust_processes_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cache_dir = dir.path().join("cache");
    // Create the cache first so that all four start on the same settings.
    diskcachefs::cache::Cache::open(&cache_dir).unwrap();
    let stress = env!("CARGO_BIN_EXE_diskcachefs-stress");
    let spawn = |cmd: &mut Command| -> Child {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn worker")
    };
    // All four start at the same moment, after Python's slower start-up.
    let start_at =
        (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64() + 2.0).to_string();
    let mut workers = Vec::new();
    for name in ["py1", "py2"] {
        workers.push((
            name,
            spawn(
                Command::new(python())
                    .args(["-c", PYTHON_WORKER])
                    .arg(&cache_dir)
                    .args([name, "2000", "1000", &start_at]),
            ),
        ));
    }
    for name in ["rs1", "rs2"] {
        workers.push((
            name,
            spawn(Command::new(stress).arg(&cache_dir).args([
                "--name",
                name,
                "--incrs",
                "2000",
                "--sets",
                "1000",
                "--start-at",
                &start_at,
            ])),
        ));
    }
    for (name, child) in workers {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "worker {name} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.stderr.is_empty(), "worker {name} reported: {}", String::from_utf8_lossy(&out.stderr));
    }

    let out = Command::new(python())
        .args(["-c", PYTHON_VERIFY])
        .arg(&cache_dir)
        .args(["py1", "py2", "rs1", "rs2"])
        .output()
        .unwrap();
    assert!(out.status.success(), "verify failed: {}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["counter"], 8000, "lost increments: {report}");
    assert_eq!(report["missing_count"], 0, "lost keys: {report}");
    assert_eq!(report["len"], 4001, "entry count: {report}");
    assert_eq!(report["check"], serde_json::json!([]), "Cache.check() warnings: {report}");

    // And the Rust engine agrees.
    let cache = diskcachefs::cache::Cache::open(&cache_dir).unwrap();
    assert_eq!(
        cache.get(&diskcachefs::cache::Key::Str("counter".into())).unwrap(),
        Some(diskcachefs::cache::Value::Int(8000))
    );
    assert_eq!(cache.check(false).unwrap(), vec![]);
}

/// python-diskcache's `set` of an existing key rewrites its row in place.
/// An open that read the row's columns and then its value in two
/// statements once served the value of another version, or an empty one
/// when a file value or a delete came between (found by
/// tests/serve_concurrency.rs). Each version here says what it is: the
/// value read whole, of the length its columns give, never empty.
#[test]
fn an_open_while_python_rewrites_the_key_reads_one_whole_version() {
    use diskcachefs::cache::meta::RawContent;
    use diskcachefs::cache::{Cache, Key, Scalar};
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let stop = dir.path().join("stop");
    let writer = support::KillOnDrop(
        Command::new(python())
            .arg("-c")
            .arg(
                "import os, sys, diskcache\nc = diskcache.Cache(sys.argv[1])\ni = 0\n\
             while not os.path.exists(sys.argv[2]):\n    i += 1\n    n = (10, 300, 40000)[i % 3]\n    \
             if i % 7 == 0: c.delete('k')\n    c.set('k', (b'%08d:' % n) + b'v' * n)\n",
            )
            .arg(dir.path())
            .arg(&stop)
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let key = Key::Str("k".into());
    let (mut reads, mut misses) = (0, 0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(4);
    while std::time::Instant::now() < deadline {
        let Some((meta, content)) = cache.open_raw(&key).unwrap() else {
            misses += 1;
            continue;
        };
        let data = match content {
            RawContent::Inline(Scalar::Bytes(b)) => b,
            RawContent::File(mut f) => {
                let mut b = Vec::new();
                f.read_to_end(&mut b).unwrap();
                assert_eq!(b.len() as i64, meta.size, "a value file's length is its size column");
                b
            }
            RawContent::Null => panic!("an empty read of a bytes value: another version's columns"),
            RawContent::Inline(other) => panic!("read {other:?} of a bytes value"),
        };
        let n: usize = std::str::from_utf8(&data[..8]).unwrap().parse().unwrap();
        assert_eq!(data.len(), 9 + n, "a whole version");
        reads += 1;
    }
    std::fs::write(&stop, b"").unwrap();
    assert!(writer.finish().status.success());
    println!("{reads} reads, {misses} misses");
    assert!(reads > 1000, "too few reads to tell: {reads}");
}
