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
    assert!(support::flyte::prune_stale(&dir, &["--dry-run"]).is_empty(), "nothing is stale while the files are there");

    let path = made["path"].as_str().unwrap();
    std::fs::remove_file(path).unwrap();
    // flytekit takes the entry as a hit and the run fails: what prune is for.
    let out = run_task(&dir, &side, tmp.path(), "file", 3);
    assert!(!out.status.success(), "flytekit's hit on a deleted file should fail");
    assert_eq!(support::flyte::lines(&side), ["make_file 3", "square 3", "make_file 5"]);

    let listed = support::flyte::prune_stale(&dir, &["--dry-run"]);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["owner"], "flytekit");
    assert_eq!(listed[0]["missing"], serde_json::json!([path]));
    let stale_key = listed[0]["key"].as_str().unwrap().to_string();
    assert!(stale_key.contains("make_file-1-"), "{stale_key}");
    assert_eq!(keys(&dir), before, "--dry-run removes nothing");

    assert_eq!(support::flyte::prune_stale(&dir, &[]), listed);
    let after = keys(&dir);
    assert_eq!(after, before.iter().filter(|k| **k != stale_key).cloned().collect::<Vec<_>>());
    assert!(support::flyte::prune_stale(&dir, &[]).is_empty(), "a second prune finds nothing");
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

/// The views of stale entries: `task/T/V/.stale/` lists exactly the
/// version's stale entries (hidden from the version's listing), each entry
/// link carries `user.flyte.stale` (getfattr follows it to the `keys/`
/// file) naming the paths gone, fresh entries have none, and `rm` of a
/// link in `.stale/` removes that entry only.
#[test]
fn stale_entries_are_listed_and_carry_the_xattr() {
    let tmp = tempfile::tempdir().unwrap();
    let side = tmp.path().join("side");
    let (mut gone, mut kept) = (serde_json::Value::Null, serde_json::Value::Null);
    let m = support::Mounted::with(
        |cache| {
            gone = json_of(&run_task(cache, &side, tmp.path(), "file", 3));
            kept = json_of(&run_task(cache, &side, tmp.path(), "file", 5));
            json_of(&run_task(cache, &side, tmp.path(), "square", 3));
        },
        &[],
    );
    let all = keys(&m.cache);
    let file_keys: Vec<&String> = all.iter().filter(|k| k.contains(".make_file-1-")).collect();
    assert_eq!(file_keys.len(), 2, "{all:?}");
    let task = file_keys[0].split("-1-").next().unwrap().to_string();
    let version = m.mnt.join(format!("task/{task}/1"));
    let stale_dir = version.join(".stale");
    assert!(support::listing(&stale_dir).is_empty(), "nothing is stale while the files are there");
    for k in &file_keys {
        let hash = k.rsplit('-').next().unwrap();
        assert_eq!(support::getxattr(&version.join(hash), "user.flyte.stale"), Err(libc::ENODATA), "{k} is fresh");
    }

    let path = gone["path"].as_str().unwrap();
    std::fs::remove_file(path).unwrap();
    let listed = support::listing(&stale_dir);
    assert_eq!(listed.len(), 1, "{listed:?}");
    let hash = listed[0].clone();
    let stale_key = format!("{task}-1-{hash}");
    assert!(file_keys.contains(&&stale_key));
    assert!(!support::listing(&version).contains(&".stale".to_string()), "hidden from the version's listing");
    let want = format!("{}\n", serde_json::json!([path]));
    let xattr = |p: &std::path::Path| support::getxattr(p, "user.flyte.stale").map(|v| String::from_utf8(v).unwrap());
    assert_eq!(xattr(&version.join(&hash)), Ok(want.clone()), "on the entry's link (followed)");
    assert_eq!(xattr(&stale_dir.join(&hash)), Ok(want.clone()), "on the link in .stale/");
    let other = file_keys.iter().find(|k| **k != &stale_key).unwrap().rsplit('-').next().unwrap();
    assert_eq!(xattr(&version.join(other)), Err(libc::ENODATA), "the other file task's entry is fresh");
    assert_eq!(support::errno_of(std::fs::symlink_metadata(stale_dir.join(other))), libc::ENOENT, "not in .stale/");
    // Not listed (rsync -aX would copy it), and read-only.
    let list = support::sh(&format!("getfattr -d -m - {}", m.keys().join(&stale_key).display()));
    assert!(!String::from_utf8_lossy(&list.stdout).contains("flyte.stale"), "{list:?}");
    assert_ne!(support::setxattr(&m.keys().join(&stale_key), "user.flyte.stale", b"[]"), Ok(()));
    // The link in .stale/ is the entry: it reads the outputs, and sizes as
    // the entry's link does.
    let target = std::fs::read_link(stale_dir.join(&hash)).unwrap();
    assert!(target.to_str().unwrap().starts_with("../../../../keys/"), "{target:?}");
    assert_eq!(std::fs::read(stale_dir.join(&hash)).unwrap(), std::fs::read(m.keys().join(&stale_key)).unwrap());

    // rm of the .stale/ link removes exactly that entry.
    std::fs::remove_file(stale_dir.join(&hash)).unwrap();
    assert!(support::listing(&stale_dir).is_empty());
    let after = keys(&m.cache);
    assert_eq!(after, all.iter().filter(|k| **k != stale_key).cloned().collect::<Vec<_>>());
    assert_eq!(support::errno_of(std::fs::symlink_metadata(version.join(&hash))), libc::ENOENT);
    // flytekit computes it again through the same directory.
    assert_eq!(json_of(&run_task(&m.cache, &side, tmp.path(), "file", 3))["content"], "xxx");
    assert_eq!(support::flyte::lines(&side), ["make_file 3", "make_file 5", "square 3", "make_file 3"]);
    drop(kept);
}

/// `--stale-as-miss` reaches the daemon through `--daemon` and through
/// mount(8)'s `-o stale_as_miss` (what an fstab line gives): with either, a
/// `.resolve` of a stale entry's inputs is a miss.
#[test]
fn stale_as_miss_reaches_the_daemon_through_daemon_and_mount_8() {
    use diskcachefs::flyte::idl::primitive::Value::Integer;
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let made = json_of(&run_task(&cache, &tmp.path().join("side"), tmp.path(), "file", 3));
    std::fs::remove_file(made["path"].as_str().unwrap()).unwrap();
    let key = keys(&cache).into_iter().find(|k| k.contains(".make_file-1-")).expect("flytekit's entry");
    let task = key.split("-1-").next().unwrap().to_string();
    let inputs = support::flyte::map(vec![("n", support::flyte::prim(Integer(3)))]);
    let bin = env!("CARGO_BIN_EXE_diskcachefs");
    for how in ["daemon", "mount8", "neither"] {
        let mnt = tmp.path().join(format!("m-{how}"));
        std::fs::create_dir(&mnt).unwrap();
        let out = match how {
            "mount8" => Command::new("mount")
                .args(["-t", "fuse", &format!("{bin}#{}", cache.display())])
                .arg(&mnt)
                .args(["-o", "stale_as_miss"])
                .output(),
            "daemon" => Command::new(bin).args(["mount", "--daemon", "--stale-as-miss"]).arg(&cache).arg(&mnt).output(),
            _ => Command::new(bin).args(["mount", "--daemon"]).arg(&cache).arg(&mnt).output(),
        }
        .unwrap();
        assert!(out.status.success(), "{how}: {}", String::from_utf8_lossy(&out.stderr));
        let guard = support::UnmountOnDrop(mnt.clone());
        let answer = support::flyte::ask(&mnt.join(format!("task/{task}/1/.resolve")), &inputs);
        drop(guard);
        if how == "neither" {
            assert!(!answer.unwrap().is_empty(), "without the option, the stored outputs");
        } else {
            assert_eq!(support::errno_of(answer), libc::ENOENT, "{how}: a stale entry is a miss");
        }
    }
}
