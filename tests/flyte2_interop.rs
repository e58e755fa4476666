//! The real Flyte 2 SDK (flyte 2.12.1, its own venv: scripts/setup-venv-flyte2)
//! and flytekit (1.16.31) sharing one Flyte local cache directory through the
//! mount (docs/SEMANTICS.md, "Flyte 2 task cache"; issue 11). The bug: after
//! a Flyte 2 local run, `diskcachefs mount ~/.flyte/local-cache` exited with
//! "an SQLite database but not a python-diskcache cache", and once flytekit
//! had used the directory too, Flyte 2's entries were invisible.

mod support;

use std::process::Command;

use support::flyte::{flyte2_square, lines, workflow};
use support::{Mounted, py};

/// Flyte 2's tables, schema and rows, as text (to compare before and after).
const DUMP_FLYTE2: &str = r#"
import sqlite3, sys
con = sqlite3.connect(sys.argv[1] + '/cache.db')
for name, sql in con.execute("SELECT name, sql FROM sqlite_master WHERE name NOT IN ('Settings', 'Cache') AND name NOT LIKE 'Cache_%' AND name NOT LIKE 'Settings_%' ORDER BY name"):
    print(name, sql)
for t in ('task_cache', 'runs', 'image_cache', 'bundle_cache'):
    for row in con.execute(f'SELECT * FROM {t} ORDER BY 1'):
        print(t, repr(row))
"#;

fn entries(m: &Mounted) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(m.mnt.join("flyte2"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".runs")
        .collect();
    names.sort();
    names
}

#[test]
fn flyte2_and_flytekit_share_the_local_cache_through_the_mount() {
    let home = tempfile::tempdir().unwrap();
    let side = home.path().join("flyte2-ran");
    assert_eq!(flyte2_square(home.path(), &side, 3)["result"], 9);
    assert_eq!(lines(&side).len(), 1, "the first run computes");
    let dir = home.path().join(".flyte/local-cache");
    assert!(dir.join("cache.db").is_file(), "Flyte 2 keeps its cache in ~/.flyte/local-cache");

    let m = Mounted::on(&dir, &[]);
    let names = entries(&m);
    assert_eq!(names.len(), 1, "one Flyte 2 entry: {names:?}");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(m.mnt.join("flyte2").join(format!("{}.json", names[0]))).unwrap())
            .unwrap();
    assert_eq!(json, serde_json::json!({"o0": {"integer": 9}}));
    assert_eq!(flyte2_square(home.path(), &side, 3)["result"], 9);
    assert_eq!(lines(&side).len(), 1, "while mounted, Flyte 2 still hits its entry");

    // rm through the mount: the next Flyte 2 run computes again.
    std::fs::remove_file(m.mnt.join("flyte2").join(&names[0])).unwrap();
    assert!(entries(&m).is_empty());
    assert_eq!(flyte2_square(home.path(), &side, 3)["result"], 9);
    assert_eq!(lines(&side).len(), 2, "after rm, the task body ran again");
    assert_eq!(entries(&m).len(), 1, "and Flyte 2 stored it again");

    // flytekit in the same directory, through python-diskcache.
    let kit_side = home.path().join("flytekit-ran");
    assert_eq!(workflow(&dir, &kit_side, &["square", "4"]), serde_json::json!(16));
    assert_eq!(workflow(&dir, &kit_side, &["square", "4"]), serde_json::json!(16));
    assert_eq!(lines(&kit_side).len(), 1, "flytekit hits its own entry");
    assert_eq!(flyte2_square(home.path(), &side, 3)["result"], 9);
    assert_eq!(lines(&side).len(), 2, "and Flyte 2 its");
    assert!(std::fs::read_dir(m.mnt.join("task")).unwrap().count() > 0, "flytekit's entry in task/");
    drop(m);

    // check --fix leaves Flyte 2's tables and rows byte-identical.
    let before = py(DUMP_FLYTE2, &[dir.to_str().unwrap()]);
    assert!(before.contains("task_cache ("), "{before}");
    let fix = Command::new(env!("CARGO_BIN_EXE_diskcachefs")).arg("check").arg(&dir).arg("--fix").output().unwrap();
    assert!(fix.status.code().is_some_and(|c| c <= 1), "{}", String::from_utf8_lossy(&fix.stderr));
    assert_eq!(py(DUMP_FLYTE2, &[dir.to_str().unwrap()]), before);
    let check = py("import sys, diskcache; print(diskcache.Cache(sys.argv[1]).check())", &[dir.to_str().unwrap()]);
    assert_eq!(check.trim(), "[]");
}
