//! Why a lookup missed (issue 25, third part): `task/T/V/.explain` and
//! `diskcachefs flyte explain` beside real flytekit 1.16.31 runs of one
//! task at cache versions 1 and 2 (tests/py/flyte_explain.py: a task with
//! an int and a dataclass input, the dataclass serialized as MessagePack).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value as Json;

/// Runs tests/py/flyte_explain.py `cmd x a b` on cache `dir` at cache
/// version `version`; its JSON line.
fn script(dir: &Path, side: &Path, version: &str, cmd: &str, x: i64, a: i64, b: &str) -> Json {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/py/flyte_explain.py");
    let out = Command::new(support::python())
        .arg(script)
        .arg(dir)
        .arg(side)
        .args([cmd, &x.to_string(), &a.to_string(), b])
        .env("EXPLAIN_VERSION", version)
        .output()
        .unwrap();
    assert!(out.status.success(), "flytekit {cmd} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap()
}

/// The serialized inputs flytekit builds for score(x, Cfg(a, b)).
fn inputs(dir: &Path, side: &Path, cmd: &str, x: i64, a: i64, b: &str) -> Vec<u8> {
    support::unhex(script(dir, side, "1", cmd, x, a, b)["inputs"].as_str().unwrap())
}

fn cli_explain(dir: &Path, task: &str, version: &str, file: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_diskcachefs"))
        .args(["flyte", "explain"])
        .arg(dir)
        .args(["--task", task, "--version", version])
        .arg(file)
        .output()
        .unwrap()
}

fn explain_at(resolver: &Path, inputs: &[u8]) -> Json {
    serde_json::from_slice(&support::flyte::ask(resolver, inputs).unwrap()).unwrap()
}

#[test]
fn explain_names_the_version_the_missing_version_and_the_input_that_differs() {
    let tmp = tempfile::tempdir().unwrap();
    let side = tmp.path().join("side");
    let mut task = String::new();
    let m = support::Mounted::with(
        |cache| {
            task = script(cache, &side, "1", "run", 3, 1, "a")["task"].as_str().unwrap().to_string();
            script(cache, &side, "2", "run", 4, 1, "a");
        },
        &[],
    );
    let (dir, mnt) = (m.cache.clone(), m.mnt.clone());
    let at = |version: &str| mnt.join(format!("task/{task}/{version}/.explain"));
    let three = inputs(&dir, &side, "inputs", 3, 1, "a");

    // Cached under version 1, looked up at version 2: the version differs.
    let e = explain_at(&at("1"), &three);
    assert_eq!(e["verdict"], "hit", "{e:#}");
    let e = explain_at(&at("2"), &three);
    assert_eq!(e["verdict"], "version_differs", "{e:#}");
    assert!(e["reason"].as_str().unwrap().contains("version differs"), "{e:#}");
    assert_eq!(e["same_inputs_under"][0]["version"], "1");
    assert_eq!(e["key"], format!("{task}-2-{}", e["inputs_hash"].as_str().unwrap()));
    assert!(e["note"].as_str().unwrap().contains("unknown"), "flytekit's own entries: inputs unknown: {e:#}");

    // A version with no entries lists those that do.
    let nine = inputs(&dir, &side, "inputs", 9, 1, "a");
    let e = explain_at(&at("3"), &nine);
    assert_eq!(e["verdict"], "no_such_version", "{e:#}");
    let versions: Vec<&String> = e["versions"].as_object().unwrap().keys().collect();
    assert_eq!(versions, ["1", "2"]);
    assert_eq!(e["versions"]["1"]["entries"], 1);
    assert!(e["reason"].as_str().unwrap().contains("1 (1 entry), 2 (1 entry)"), "{e:#}");
    // Entries whose inputs are unknown are said to be.
    let e = explain_at(&at("1"), &nine);
    assert_eq!(e["verdict"], "inputs_unknown", "{e:#}");
    assert_eq!((e["known_inputs"].as_u64(), e["unknown_inputs"].as_u64()), (Some(0), Some(2)));

    // Outputs stored through task/ after a .key: their inputs are known.
    let five = inputs(&dir, &side, "inputs", 5, 1, "a");
    let key = String::from_utf8(support::flyte::ask(&mnt.join(format!("task/{task}/2/.key")), &five).unwrap()).unwrap();
    let key = key.trim().to_string();
    let hash = key.rsplit('-').next().unwrap();
    use diskcachefs::flyte::idl::primitive::Value::Integer;
    let outputs = support::flyte::map(vec![("o0", support::flyte::prim(Integer(5)))]);
    std::fs::write(mnt.join(format!("task/{task}/2/{hash}")), &outputs).unwrap();
    // flytekit takes it as a hit (its body does not run).
    assert_eq!(script(&dir, &side, "2", "run", 5, 1, "a")["result"], 5);
    assert_eq!(support::flyte::lines(&side), ["score 3 1 a", "score 4 1 a"]);

    // Inputs that differ from it by one input: that input is named.
    let six = inputs(&dir, &side, "inputs", 6, 1, "a");
    let e = explain_at(&at("2"), &six);
    assert_eq!(e["verdict"], "inputs_differ", "{e:#}");
    assert_eq!(e["nearest"][0]["key"], key.as_str());
    assert_eq!(
        e["nearest"][0]["differs"],
        serde_json::json!([{"input": "x", "how": "value differs", "lookup_kind": "integer", "entry_kind": "integer"}])
    );
    assert!(e["reason"].as_str().unwrap().contains("x (value differs)"), "{e:#}");
    // The same dataclass with its MessagePack keys in another order: equal
    // content, different bytes.
    let reordered = inputs(&dir, &side, "reordered", 5, 1, "a");
    assert_ne!(reordered, five);
    let e = explain_at(&at("2"), &reordered);
    assert_eq!(e["verdict"], "inputs_differ", "{e:#}");
    assert_eq!(e["nearest"][0]["key"], key.as_str());
    assert_eq!(e["nearest"][0]["differs"][0]["input"], "cfg");
    assert_eq!(e["nearest"][0]["differs"][0]["how"], "equal content, different bytes");
    assert_eq!(e["nearest"][0]["differs"].as_array().unwrap().len(), 1, "{e:#}");
    assert_eq!(e["inputs"]["cfg"]["kind"], "binary/msgpack");

    // The CLI says the same, on the directory.
    let file = tmp.path().join("six.bin");
    std::fs::write(&file, &six).unwrap();
    let out = cli_explain(&dir, &task, "2", &file);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cli: Json = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cli["verdict"], "inputs_differ");
    assert_eq!(cli["nearest"], explain_at(&at("2"), &six)["nearest"]);

    // Bad inputs: EINVAL from read, and the CLI's message and exit code.
    assert_eq!(support::errno_of(support::flyte::ask(&at("2"), b"\xff\xff not a literal map")), libc::EINVAL);
    std::fs::write(&file, b"\xff\xff not a literal map").unwrap();
    let bad = cli_explain(&dir, &task, "2", &file);
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("inputs"), "{bad:?}");
    // python-diskcache's check passes with the side record beside its tables.
    let check =
        support::py("import sys, diskcache\nprint(diskcache.Cache(sys.argv[1]).check())", &[dir.to_str().unwrap()]);
    assert_eq!(check.trim(), "[]");
}
