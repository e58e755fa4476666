//! Stale entries of Flyte 2's task cache (issue 25; docs/FLYTE.md, "Stale
//! entries"): a real Flyte 2 (2.12.1) task returns a `flyte.io.File`, run
//! locally with `cache="auto"` (tests/py/flyte2_files.py). Flyte 2 stores the
//! File as a blob whose URI is the plain absolute path of the task's own file
//! (no copy, no `file://`). With the file deleted, Flyte 2's next run takes
//! the entry as a hit: the run succeeds, the body does not run, and the File
//! names the deleted path. `flyte prune --stale` names and removes exactly
//! that row of `task_cache`; Flyte 2 then computes it again, and its other
//! entries still hit.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::flyte::{flyte2_square, lines};

/// Runs `local_file(n)` (`what` = "local": a file in a fresh temporary
/// folder, under TMPDIR) or `raw_file(n)` ("raw": a file under the run's
/// raw_data_path) as Flyte 2 in `home` (HOME, TMPDIR and cwd); their
/// bodies append a line to `side` when they really run. Returns the JSON
/// line the script prints.
fn file_task(home: &Path, side: &Path, what: &str, n: u32) -> serde_json::Value {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(root.join(".venv-flyte2/bin/python"))
        .arg(root.join("tests/py/flyte2_files.py"))
        .arg(side)
        .args([what, &n.to_string()])
        .env("HOME", home)
        .env("TMPDIR", home)
        .current_dir(home)
        .output()
        .expect("run the Flyte 2 SDK (scripts/setup-venv-flyte2)");
    assert!(out.status.success(), "flyte 2 {what} {n} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap()
}

/// The keys of Flyte 2's `task_cache`, read by Python's sqlite3.
fn keys(dir: &Path) -> Vec<String> {
    let out = support::py(
        "import sys, json, sqlite3\ncon = sqlite3.connect(sys.argv[1] + '/cache.db')\n\
         print(json.dumps([r[0] for r in con.execute('SELECT key FROM task_cache ORDER BY key')]))",
        &[dir.to_str().unwrap()],
    );
    serde_json::from_str(out.trim()).unwrap()
}

/// An entry's outputs as `diskcachefs flyte2 show` renders them.
fn show(dir: &Path, key: &str) -> serde_json::Value {
    let out =
        Command::new(env!("CARGO_BIN_EXE_diskcachefs")).args(["flyte2", "show"]).arg(dir).arg(key).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn blob(path: &str) -> serde_json::Value {
    serde_json::json!({"o0": {"blob": {"uri": path, "format": "", "dimensionality": "SINGLE"}}})
}

#[test]
fn a_deleted_flyte2_file_output_is_stale_and_prune_removes_exactly_it() {
    let home = tempfile::tempdir().unwrap();
    let (home, side) = (home.path(), home.path().join("side"));
    let dir = home.join(".flyte/local-cache");
    let made = file_task(home, &side, "local", 3);
    assert_eq!(made["content"], "xxx");
    let path = made["path"].as_str().unwrap().to_string();
    assert!(path.starts_with(home.to_str().unwrap()), "the task's own file, under TMPDIR: {path}");
    assert_eq!(flyte2_square(home, &side, 3)["result"], 9);
    // Another file task whose file stays (under the run's raw data path).
    let kept = file_task(home, &side, "raw", 5);
    assert_eq!(kept["content"], "yyyyy");
    let kept_path = kept["path"].as_str().unwrap().to_string();
    assert!(kept_path.starts_with(home.join(".flyte-run-data").to_str().unwrap()), "{kept_path}");
    assert_eq!(lines(&side), ["local_file(3) ran", "square(3) ran", "raw_file(5) ran"]);
    let before = keys(&dir);
    assert_eq!(before.len(), 3, "{before:?}");
    // What Flyte 2 stores for a File: a blob naming the path itself.
    let stored: Vec<serde_json::Value> = before.iter().map(|k| show(&dir, k)).collect();
    assert!(stored.contains(&blob(&path)), "{stored:?}");
    assert!(stored.contains(&blob(&kept_path)), "{stored:?}");
    assert!(support::flyte::prune_stale(&dir, &["--dry-run"]).is_empty(), "nothing is stale while the files are there");

    std::fs::remove_file(&path).unwrap();
    // Flyte 2 takes the entry as a hit: the run succeeds, the body does not
    // run, and the File names the deleted path. What prune is for.
    let hit = file_task(home, &side, "local", 3);
    assert_eq!(hit["path"], path.as_str());
    assert_eq!(hit["content"], serde_json::Value::Null);
    assert!(hit["error"].as_str().unwrap().starts_with("FileNotFoundError"), "{hit}");
    assert_eq!(lines(&side), ["local_file(3) ran", "square(3) ran", "raw_file(5) ran"]);

    let listed = support::flyte::prune_stale(&dir, &["--dry-run"]);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["owner"], "flyte2");
    assert_eq!(listed[0]["missing"], serde_json::json!([path]));
    let stale_key = listed[0]["key"].as_str().unwrap().to_string();
    assert_eq!(show(&dir, &stale_key), blob(&path), "the key is the entry of the deleted file");
    assert_eq!(keys(&dir), before, "--dry-run removes nothing");

    assert_eq!(support::flyte::prune_stale(&dir, &[]), listed);
    assert_eq!(keys(&dir), before.iter().filter(|k| **k != stale_key).cloned().collect::<Vec<_>>());
    assert!(support::flyte::prune_stale(&dir, &[]).is_empty(), "a second prune finds nothing");
    // Flyte 2 computes it again (a new file); the other entries still hit.
    let again = file_task(home, &side, "local", 3);
    assert_eq!(again["content"], "xxx");
    assert_ne!(again["path"], path.as_str());
    assert_eq!(file_task(home, &side, "raw", 5), kept);
    assert_eq!(flyte2_square(home, &side, 3)["result"], 9);
    assert_eq!(lines(&side), ["local_file(3) ran", "square(3) ran", "raw_file(5) ran", "local_file(3) ran"]);
    assert_eq!(keys(&dir).len(), 3);

    // A file under the raw data path, deleted, is judged the same way.
    std::fs::remove_file(&kept_path).unwrap();
    let listed = support::flyte::prune_stale(&dir, &["--dry-run"]);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["missing"], serde_json::json!([kept_path]));

    let check =
        support::py("import sys, diskcache\nprint(diskcache.Cache(sys.argv[1]).check())", &[dir.to_str().unwrap()]);
    assert_eq!(check.trim(), "[]");
}

/// The mount's views of Flyte 2's stale entries: `flyte2/.stale/` (hidden
/// from `flyte2/`'s listing) lists exactly the stale entry, its file
/// carries `user.flyte.stale` naming the path gone (fresh entries none),
/// and `rm flyte2/.stale/NAME` removes that entry only, after which Flyte 2
/// computes it again in the mounted directory.
#[test]
fn the_mount_lists_flyte2_stale_entries_with_the_xattr() {
    let home = tempfile::tempdir().unwrap();
    let (home, side) = (home.path(), home.path().join("side"));
    let dir = home.join(".flyte/local-cache");
    let made = file_task(home, &side, "local", 3);
    let path = made["path"].as_str().unwrap().to_string();
    file_task(home, &side, "raw", 5);
    assert_eq!(flyte2_square(home, &side, 3)["result"], 9);
    let m = support::Mounted::on(&dir, &[]);
    let (flyte2, stale_dir) = (m.mnt.join("flyte2"), m.mnt.join("flyte2/.stale"));
    let entries: Vec<String> = support::listing(&flyte2).into_iter().filter(|n| n != ".runs").collect();
    assert_eq!(entries.len(), 3, "{entries:?}");
    assert!(support::listing(&stale_dir).is_empty(), "nothing is stale while the files are there");
    let xattr = |p: &Path| support::getxattr(p, "user.flyte.stale").map(|v| String::from_utf8(v).unwrap());

    std::fs::remove_file(&path).unwrap();
    let listed = support::listing(&stale_dir);
    assert_eq!(listed.len(), 1, "{listed:?}");
    let name = listed[0].clone();
    assert!(entries.contains(&name));
    assert!(!support::listing(&flyte2).contains(&".stale".to_string()), "hidden from flyte2/'s listing");
    let want = format!("{}\n", serde_json::json!([path]));
    assert_eq!(xattr(&flyte2.join(&name)), Ok(want.clone()));
    assert_eq!(xattr(&stale_dir.join(&name)), Ok(want));
    for other in entries.iter().filter(|n| **n != name) {
        assert_eq!(xattr(&flyte2.join(other)), Err(libc::ENODATA), "{other} is fresh");
        assert_eq!(support::errno_of(std::fs::metadata(stale_dir.join(other))), libc::ENOENT, "{other}");
    }
    assert_eq!(std::fs::read(stale_dir.join(&name)).unwrap(), std::fs::read(flyte2.join(&name)).unwrap());

    std::fs::remove_file(stale_dir.join(&name)).unwrap();
    let left: Vec<String> = support::listing(&flyte2).into_iter().filter(|n| n != ".runs").collect();
    assert_eq!(left, entries.iter().filter(|n| **n != name).cloned().collect::<Vec<_>>());
    assert!(support::listing(&stale_dir).is_empty());
    // Flyte 2 computes it again, in the mounted directory.
    assert_eq!(file_task(home, &side, "local", 3)["content"], "xxx");
    assert_eq!(lines(&side), ["local_file(3) ran", "raw_file(5) ran", "square(3) ran", "local_file(3) ran"]);
    let check =
        support::py("import sys, diskcache\nprint(diskcache.Cache(sys.argv[1]).check())", &[dir.to_str().unwrap()]);
    assert_eq!(check.trim(), "[]");
}
