//! `diskcachefs flyte ls` (issue 25, second part): flytekit's entries per
//! task and cache version, counted and sized as python-diskcache returns
//! them, beside a real flytekit 1.16.31 workflow's runs.

mod support;

use std::process::Command;

#[test]
fn flyte_ls_sums_each_task_and_version_as_python_sees_them() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, side) = (tmp.path().join("cache"), tmp.path().join("side"));
    for (x, name) in [(3, "ada"), (4, "bob")] {
        support::flyte::workflow(&dir, &side, &["run", &x.to_string(), name]);
    }
    // A key of another program in the same cache is not a task's.
    support::py("import sys, diskcache\ndiskcache.Cache(sys.argv[1])['other'] = b'x' * 99", &[dir.to_str().unwrap()]);
    let out = Command::new(env!("CARGO_BIN_EXE_diskcachefs")).args(["flyte", "ls"]).arg(&dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // What Python sees: each flytekit key's value length, by task and version.
    let python = support::py(
        "import sys, json, re, diskcache\nc = diskcache.Cache(sys.argv[1])\nout = {}\n\
         for k in c:\n    m = re.fullmatch(r'([^-]+)-(.+)-([0-9a-f]{32})', k)\n    if not m: continue\n    \
         v = out.setdefault(m[1], {}).setdefault(m[2], [0, 0])\n    v[0] += 1\n    v[1] += len(c[k])\n\
         print(json.dumps(out))",
        &[dir.to_str().unwrap()],
    );
    let python: serde_json::Value = serde_json::from_str(python.trim()).unwrap();
    let tasks = summary["flytekit"].as_object().unwrap();
    assert_eq!(tasks.len(), 2, "{summary}");
    for (task, versions) in python.as_object().unwrap() {
        let mine = &summary["flytekit"][task];
        let (mut entries, mut bytes) = (0, 0);
        for (version, counts) in versions.as_object().unwrap() {
            let v = &mine["versions"][version];
            assert_eq!(v["entries"], counts[0], "{task} {version}: {summary}");
            assert_eq!(v["bytes"], counts[1], "{task} {version}: {summary}");
            assert!(v["oldest"].as_f64().unwrap() <= v["newest"].as_f64().unwrap());
            entries += counts[0].as_u64().unwrap();
            bytes += counts[1].as_u64().unwrap();
        }
        assert_eq!((mine["entries"].as_u64(), mine["bytes"].as_u64()), (Some(entries), Some(bytes)), "{task}");
        assert_eq!(entries, 2, "two runs, two entries of {task}");
    }
    assert_eq!(summary["flyte2"]["entries"], 0);
}
