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

/// `du -sb MOUNT/task/T` is the task's bytes; `rm -r MOUNT/task/T/V` clears that version's entries only: the task's
/// other versions and other tasks stay, and flytekit computes the cleared
/// version again.
#[test]
fn rm_r_of_a_version_clears_it_and_only_it() {
    let tmp = tempfile::tempdir().unwrap();
    let side = tmp.path().join("side");
    let m = support::Mounted::with(
        |cache| {
            support::flyte::workflow(cache, &side, &["run", "3", "ada"]);
            // An older version of square beside flytekit's, as a past
            // cache_version left it.
            support::py(
                "import sys, diskcache\nc = diskcache.Cache(sys.argv[1])\n\
                 for k in list(c):\n    if '.square-1-' in k: c[k.replace('.square-1-', '.square-0-')] = c[k]",
                &[cache.to_str().unwrap()],
            );
        },
        &[],
    );
    let task_dir = |t: &str| {
        std::fs::read_dir(m.mnt.join("task"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().ends_with(t))
            .unwrap()
    };
    let square = task_dir(".square");
    assert_eq!(support::listing(&square), ["0", "1"]);
    // `du -sb` of a task and of a version: their values' bytes as
    // python-diskcache returns them.
    let python_bytes = |pattern: &str| -> u64 {
        let out = support::py(
            "import sys, diskcache\nc = diskcache.Cache(sys.argv[1])\n\
             print(sum(len(c[k]) for k in c if sys.argv[2] in k))",
            &[m.cache.to_str().unwrap(), pattern],
        );
        out.trim().parse().unwrap()
    };
    let du = |path: &std::path::Path| -> u64 {
        let out = Command::new("du").arg("-sb").arg(path).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().split_whitespace().next().unwrap().parse().unwrap()
    };
    let (all, v1) = (python_bytes(".square-"), python_bytes(".square-1-"));
    assert!(all > v1 && v1 > 0);
    assert_eq!(du(&square), all, "du -sb task/T");
    assert_eq!(du(&square.join("1")), v1, "du -sb task/T/V");
    let status = Command::new("rm").arg("-r").arg(square.join("1")).status().unwrap();
    assert!(status.success());
    assert_eq!(support::listing(&square), ["0"], "the other version stays");
    assert_eq!(support::listing(&task_dir(".greet")).len(), 1, "the other task stays");
    let keys = support::py(
        "import sys, json, diskcache\nprint(json.dumps(sorted(k.split('-')[1] for k in diskcache.Cache(sys.argv[1]))))",
        &[m.cache.to_str().unwrap()],
    );
    assert_eq!(keys.trim(), r#"["0", "2"]"#, "square v0 and greet v2 are left");
    // flytekit computes square again (greet still hits).
    support::flyte::workflow(&m.cache, &side, &["run", "3", "ada"]);
    assert_eq!(support::flyte::lines(&side), ["square 3", "greet ada", "square 3"]);
}
