//! `task/` through the mount (docs/SEMANTICS.md, "Flyte task cache"): every
//! vector of flytekit's keys resolves through plain file I/O to flytekit's
//! key; a real flytekit workflow run against the mounted cache directory
//! finds outputs stored through the mount (its task bodies do not run), and
//! the outputs it stored are read, rendered and resolved through `task/`; a
//! miss is ENOENT and differs from a hit with empty outputs; malformed
//! inputs are EINVAL and the daemon keeps serving.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use diskcachefs::flyte::idl::primitive;
use support::flyte::{ask, lines, map, output, prim, workflow};
use support::{Mounted, errno_of, python};

/// A str as a directory name in task/ (docs/SEMANTICS.md, "Keys to
/// names": plain when it can be, else `%str:` and percent-encoding).
fn dir_name(s: &str) -> String {
    let plain = !s.is_empty()
        && s != "."
        && s != ".."
        && !s.starts_with('%')
        && !s.contains('/')
        && !s.contains('\0')
        && s.len() <= 255;
    if plain { s.to_string() } else { format!("%str:{}", pct(s.as_bytes(), b"")) }
}

fn pct(bytes: &[u8], also: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| {
            if (0x21..=0x7e).contains(&b) && b != b'%' && b != b'/' && !also.contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The resolver file's name: `.key` or `.resolve`, and the ignored inputs.
fn resolver(kind: &str, ignore: &[String]) -> String {
    if ignore.is_empty() {
        kind.to_string()
    } else {
        let list: Vec<String> = ignore.iter().map(|v| pct(v.as_bytes(), b",")).collect();
        format!("{kind}.ignore={}", list.join(","))
    }
}

#[test]
fn every_vector_resolves_through_files_to_flytekits_key() {
    let m = Mounted::new();
    let text =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/flyte-cache-keys.jsonl"))
            .unwrap();
    let mut count = 0;
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let (task, version) = (v["task"].as_str().unwrap(), v["version"].as_str().unwrap());
        let ignore: Vec<String> = v["ignore"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().into()).collect();
        let inputs = base64::engine::general_purpose::STANDARD.decode(v["inputs"].as_str().unwrap()).unwrap();
        let path = m.mnt.join("task").join(dir_name(task)).join(dir_name(version)).join(resolver(".key", &ignore));
        let got = ask(&path, &inputs).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(String::from_utf8(got).unwrap(), format!("{}\n", v["key"].as_str().unwrap()), "{line}");
        count += 1;
    }
    assert_eq!(count, 318);
}

fn int_input(x: i64) -> Vec<u8> {
    map(vec![("x", prim(primitive::Value::Integer(x)))])
}

#[test]
fn flytekit_and_the_mount_share_the_task_cache() {
    let m = Mounted::new();
    let side = m.root.path().join("side");
    // flytekit runs the workflow against the mounted cache's directory.
    let run = workflow(&m.cache, &side, &["run", "3", "ada"]);
    assert_eq!(lines(&side), ["square 3", "greet ada"]);
    let square = run["square"][0].as_str().unwrap().to_string();
    let greet = run["greet"][0].as_str().unwrap().to_string();

    // What flytekit stored is listed, read and rendered through task/.
    let task = m.mnt.join("task");
    let names: Vec<String> =
        std::fs::read_dir(&task).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert!(names.contains(&dir_name(&square)) && names.contains(&dir_name(&greet)), "task/ lists {names:?}");
    let v1 = task.join(dir_name(&square)).join("1");
    let entries: Vec<String> =
        std::fs::read_dir(&v1).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let entry = v1.join(&entries[0]);
    let key = format!("{square}-1-{}", entries[0]);
    assert_eq!(std::fs::read_link(&entry).unwrap(), Path::new(&format!("../../../keys/{key}")));
    assert_eq!(output(&std::fs::read(&entry).unwrap()), primitive::Value::Integer(9));
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(v1.join(format!("{}.json", entries[0]))).unwrap()).unwrap();
    assert!(json.to_string().contains('9'), "rendered outputs: {json}");
    // The resolver finds it from the inputs; the key is flytekit's.
    assert_eq!(output(&ask(&v1.join(".resolve"), &int_input(3)).unwrap()), primitive::Value::Integer(9));
    assert_eq!(ask(&v1.join(".key"), &int_input(3)).unwrap(), format!("{key}\n").into_bytes());
    // greet ignores `noise`: any value of it resolves to flytekit's entry.
    let greet_in = |noise| {
        map(vec![
            ("name", prim(primitive::Value::StringValue("ada".into()))),
            ("noise", prim(primitive::Value::Integer(noise))),
        ])
    };
    let g2 = task.join(dir_name(&greet)).join("2");
    let ignore = [String::from("noise")];
    assert_eq!(
        output(&ask(&g2.join(resolver(".resolve", &ignore)), &greet_in(98765)).unwrap()),
        primitive::Value::StringValue("hello ada".into())
    );
    assert_eq!(errno_of(ask(&g2.join(".resolve"), &greet_in(98765))), libc::ENOENT, "noise not ignored: a miss");

    // A miss is ENOENT; outputs stored through the mount are flytekit hits.
    assert_eq!(errno_of(ask(&v1.join(".resolve"), &int_input(5))), libc::ENOENT);
    let key5 = String::from_utf8(ask(&v1.join(".key"), &int_input(5)).unwrap()).unwrap();
    let hash5 = key5.trim().rsplit('-').next().unwrap().to_string();
    std::fs::write(v1.join(&hash5), map(vec![("o0", prim(primitive::Value::Integer(1234)))])).unwrap();
    assert_eq!(
        workflow(&m.cache, &side, &["square", "5"]),
        1234,
        "flytekit must return the output stored through the mount"
    );
    assert!(!lines(&side).contains(&"square 5".to_string()), "the task body ran despite the cached output");
    // Empty outputs are a hit (0 bytes), not a miss.
    let key6 = String::from_utf8(ask(&v1.join(".key"), &int_input(6)).unwrap()).unwrap();
    std::fs::write(v1.join(key6.trim().rsplit('-').next().unwrap()), b"").unwrap();
    assert_eq!(ask(&v1.join(".resolve"), &int_input(6)).unwrap(), b"");
    assert_eq!(errno_of(ask(&v1.join(".resolve"), &int_input(7))), libc::ENOENT);

    // rm evicts: flytekit runs the body again.
    std::fs::remove_file(v1.join(&entries[0])).unwrap();
    assert_eq!(workflow(&m.cache, &side, &["square", "3"]), 9);
    assert_eq!(lines(&side).iter().filter(|l| *l == "square 3").count(), 2, "after rm, flytekit ran the body again");

    // Malformed inputs: EINVAL at the read; the daemon keeps serving.
    for junk in [&b"\xff\xff\xff"[..], b"\x0a\x05abc", b"\x0a\xff\xff\xff\xff\x0f"] {
        assert_eq!(errno_of(ask(&v1.join(".resolve"), junk)), libc::EINVAL, "inputs {junk:?}");
        assert_eq!(errno_of(ask(&v1.join(".key"), junk)), libc::EINVAL, "inputs {junk:?}");
    }
    assert_eq!(output(&ask(&v1.join(".resolve"), &int_input(5)).unwrap()), primitive::Value::Integer(1234));
    // rm -r of a task's directory evicts its entries; ops/clear is
    // LocalTaskCache.clear(): flytekit runs the bodies again.
    let greet_dir = task.join(dir_name(&greet));
    let out = Command::new("rm").arg("-r").arg(&greet_dir).output().unwrap();
    assert!(out.status.success(), "rm -r task/greet: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(errno_of(ask(&g2.join(resolver(".resolve", &ignore)), &greet_in(1))), libc::ENOENT);
    std::fs::write(m.mnt.join("ops/clear"), b"\n").unwrap();
    assert_eq!(errno_of(ask(&v1.join(".resolve"), &int_input(5))), libc::ENOENT, "cleared");
    let run = workflow(&m.cache, &side, &["run", "5", "ada"]);
    assert_eq!(run["square"][1], 25);
    assert!(lines(&side).ends_with(&["square 5".to_string(), "greet ada".to_string()]), "{:?}", lines(&side));
    let check = Command::new(python())
        .arg("-c")
        .arg("import sys, diskcache; print(diskcache.Cache(sys.argv[1]).check())")
        .arg(&m.cache)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&check.stdout).trim(), "[]");
}
