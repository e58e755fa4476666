//! `flyte2/` through the mount (docs/SEMANTICS.md, "Flyte 2 task cache"):
//! Flyte 2's `task_cache` rows as files, their outputs as JSON, `rm` to
//! delete, the run records; on a cache.db that flytekit's diskcache tables
//! share with Flyte 2's.

mod support;

use support::{Mounted, errno_of, py};

/// Flyte 2's tables with two entries (one of them `square(x=2) -> 4`, as a
/// Flyte 2 local run stores it) and one run record, beside a diskcache
/// entry of flytekit's.
const FILL: &str = r#"
import sqlite3, sys, diskcache
con = sqlite3.connect(sys.argv[1] + '/cache.db')
con.executescript('''
CREATE TABLE task_cache (key TEXT PRIMARY KEY, value BLOB);
CREATE TABLE runs (run_name TEXT, action_name TEXT, task_name TEXT, status TEXT, inputs TEXT,
                   outputs TEXT, cache_hit INTEGER, PRIMARY KEY (run_name, action_name));
''')
con.execute("INSERT INTO task_cache VALUES (?, ?)", ('k/Yp+4bW==', bytes.fromhex('0A0C0A026F3012060A040A020804')))
con.execute("INSERT INTO task_cache VALUES (?, ?)", ('Zm9vYmFy', bytes.fromhex('0A0C0A026F3012060A040A020806')))
con.execute("INSERT INTO runs VALUES ('r1', 'a0', 'square', 'SUCCEEDED', '{\"x\": 2}', '{\"o0\": 4}', 0)")
con.commit()
con.close()
diskcache.Cache(sys.argv[1])['flytekit-entry'] = b'x'
"#;

#[test]
fn flyte2_entries_read_render_and_delete_through_the_mount() {
    let m = Mounted::with(
        |dir| {
            std::fs::create_dir_all(dir).unwrap();
            py(FILL, &[dir.to_str().unwrap()]);
        },
        &[],
    );
    let f2 = m.mnt.join("flyte2");
    let mut names: Vec<String> =
        std::fs::read_dir(&f2).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["%str:k%2FYp+4bW==", ".runs", "Zm9vYmFy"]);
    let square = f2.join("%str:k%2FYp+4bW==");
    assert_eq!(
        std::fs::read(&square).unwrap(),
        [0x0A, 0x0C, 0x0A, 0x02, 0x6F, 0x30, 0x12, 0x06, 0x0A, 0x04, 0x0A, 0x02, 0x08, 0x04]
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(f2.join("%str:k%2FYp+4bW==.json")).unwrap()).unwrap();
    assert_eq!(json, serde_json::json!({"o0": {"integer": 4}}));
    let run: serde_json::Value = serde_json::from_slice(&std::fs::read(f2.join(".runs/r1-a0.json")).unwrap()).unwrap();
    assert_eq!((run["task_name"].as_str(), run["inputs"]["x"].as_i64()), (Some("square"), Some(2)));
    // Only rm changes it.
    assert_eq!(errno_of(std::fs::write(f2.join("new"), b"x")), libc::EPERM);
    assert_eq!(errno_of(std::fs::OpenOptions::new().write(true).open(&square)), libc::EACCES);
    std::fs::remove_file(&square).unwrap();
    assert_eq!(errno_of(std::fs::read(&square)), libc::ENOENT);
    let left = py(
        "import sqlite3, sys\ncon = sqlite3.connect(sys.argv[1] + '/cache.db')\nprint([r[0] for r in con.execute('SELECT key FROM task_cache')])",
        &[m.cache.to_str().unwrap()],
    );
    assert_eq!(left.trim(), "['Zm9vYmFy']", "the row is gone from Flyte 2's table, the other kept");
    assert_eq!(std::fs::read(m.keys().join("flytekit-entry")).unwrap(), b"x", "flytekit's entries are beside them");
}
