//! Stale entries of the Flyte local cache (issue 25, first part): a real
//! flytekit 1.16.31 task returns a FlyteFile, the file is deleted, and
//! flytekit's next run takes the cached entry as a hit and fails. `flyte
//! prune --stale` names and removes exactly that entry; flytekit then
//! computes it again.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn run_task(dir: &Path, side: &Path, tmp: &Path, what: &str, n: u32) -> Output {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/py/flyte_files.py");
    // The task's files (and flytekit's sandbox) under the test's directory.
    Command::new(support::python())
        .arg(script)
        .arg(dir)
        .arg(side)
        .args([what, &n.to_string()])
        .env("TMPDIR", tmp)
        .output()
        .unwrap()
}

fn json_of(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "flytekit failed:\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap()
}

fn prune(dir: &Path, args: &[&str]) -> Vec<serde_json::Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_diskcachefs"))
        .args(["flyte", "prune", "--stale"])
        .args(args)
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn keys(dir: &Path) -> Vec<String> {
    let out = support::py(
        "import sys, json, diskcache\nprint(json.dumps(sorted(diskcache.Cache(sys.argv[1]))))",
        &[dir.to_str().unwrap()],
    );
    serde_json::from_str(out.trim()).unwrap()
}

#[test]
fn a_deleted_flytefile_output_is_stale_and_prune_removes_exactly_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, side) = (tmp.path().join("cache"), tmp.path().join("side"));
    let made = json_of(&run_task(&dir, &side, tmp.path(), "file", 3));
    assert_eq!(made["content"], "xxx");
    assert_eq!(json_of(&run_task(&dir, &side, tmp.path(), "square", 3)), 9);
    // Another file task whose file stays.
    let kept = json_of(&run_task(&dir, &side, tmp.path(), "file", 5));
    let before = keys(&dir);
    assert_eq!(before.len(), 3, "{before:?}");
    assert!(prune(&dir, &["--dry-run"]).is_empty(), "nothing is stale while the files are there");

    let path = made["path"].as_str().unwrap();
    std::fs::remove_file(path).unwrap();
    // flytekit takes the entry as a hit and the run fails: what prune is for.
    let out = run_task(&dir, &side, tmp.path(), "file", 3);
    assert!(!out.status.success(), "flytekit's hit on a deleted file should fail");
    assert_eq!(support::flyte::lines(&side), ["make_file 3", "square 3", "make_file 5"]);

    let listed = prune(&dir, &["--dry-run"]);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["owner"], "flytekit");
    assert_eq!(listed[0]["missing"], serde_json::json!([path]));
    let stale_key = listed[0]["key"].as_str().unwrap().to_string();
    assert!(stale_key.contains("make_file-1-"), "{stale_key}");
    assert_eq!(keys(&dir), before, "--dry-run removes nothing");

    assert_eq!(prune(&dir, &[]), listed);
    let after = keys(&dir);
    assert_eq!(after, before.iter().filter(|k| **k != stale_key).cloned().collect::<Vec<_>>());
    assert!(prune(&dir, &[]).is_empty(), "a second prune finds nothing");
    // flytekit computes it again; the other entries still hit.
    assert_eq!(json_of(&run_task(&dir, &side, tmp.path(), "file", 3))["content"], "xxx");
    assert_eq!(json_of(&run_task(&dir, &side, tmp.path(), "file", 5))["path"], kept["path"]);
    assert_eq!(json_of(&run_task(&dir, &side, tmp.path(), "square", 3)), 9);
    assert_eq!(support::flyte::lines(&side), ["make_file 3", "square 3", "make_file 5", "make_file 3"]);
    let check =
        support::py("import sys, diskcache\nprint(diskcache.Cache(sys.argv[1]).check())", &[dir.to_str().unwrap()]);
    assert_eq!(check.trim(), "[]");
}

/// `--stale-as-miss`: a `.resolve` of inputs whose cached outputs name a
/// file that is gone answers a miss (ENOENT, so the caller computes
/// again); without it, the stale hit is answered as it is stored.
#[test]
fn stale_as_miss_makes_resolve_answer_a_miss() {
    use diskcachefs::flyte::idl::primitive::Value::Integer;
    let inputs = support::flyte::map(vec![("n", support::flyte::prim(Integer(3)))]);
    for stale_as_miss in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let mut made = serde_json::Value::Null;
        let args: &[&str] = if stale_as_miss { &["--stale-as-miss"] } else { &[] };
        let m = support::Mounted::with(
            |cache| made = json_of(&run_task(cache, &tmp.path().join("side"), tmp.path(), "file", 3)),
            args,
        );
        let key = keys(&m.cache).into_iter().find(|k| k.contains(".make_file-1-")).expect("flytekit's entry");
        let task = key.split("-1-").next().unwrap().to_string();
        let resolver = m.mnt.join(format!("task/{task}/1/.resolve"));
        // The file is there: a hit either way.
        assert!(!support::flyte::ask(&resolver, &inputs).unwrap().is_empty());
        std::fs::remove_file(made["path"].as_str().unwrap()).unwrap();
        let answer = support::flyte::ask(&resolver, &inputs);
        if stale_as_miss {
            assert_eq!(support::errno_of(answer), libc::ENOENT, "a stale entry is a miss");
        } else {
            assert!(!answer.unwrap().is_empty(), "without the option, the stored outputs");
        }
    }
}
