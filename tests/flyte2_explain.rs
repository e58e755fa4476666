//! Why a Flyte 2 task ran again (issue 25; docs/FLYTE.md, "Why a lookup
//! missed"): `diskcachefs flyte2 explain` over the run records of the real
//! Flyte 2 SDK (2.12.1, local persistence on). A run with equal inputs
//! after the task's source was edited (another "auto" cache version) is
//! said to have missed with equal inputs; a run with another input names
//! it; the first run is the first.

mod support;

use std::process::Command;

use support::flyte::{flyte2_square_with, lines};

#[test]
fn flyte2_explain_names_equal_inputs_and_the_input_that_differs() {
    let home = tempfile::tempdir().unwrap();
    let (home, side) = (home.path(), home.path().join("side"));
    let run = |x: i64, edited: bool| {
        let env: &[(&str, &str)] = if edited { &[("DISKCACHEFS_FLYTE2_EDITED", "1")] } else { &[] };
        flyte2_square_with(home, &side, x, &["--persist-runs"], env)
    };
    run(3, false);
    run(3, false); // a hit: not explained
    run(3, true); // the task edited: a miss with equal inputs
    run(4, true); // another input
    assert_eq!(lines(&side), ["square(3) ran", "square(3) ran", "square(4) ran"]);

    let dir = home.join(".flyte/local-cache");
    let out = Command::new(env!("CARGO_BIN_EXE_diskcachefs")).args(["flyte2", "explain"]).arg(&dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let verdicts: Vec<&str> = lines.iter().map(|l| l["verdict"].as_str().unwrap()).collect();
    assert_eq!(verdicts, ["first_run", "inputs_equal", "inputs_differ"], "{lines:#?}");
    assert!(lines.iter().all(|l| l["task"] == "diskcachefs_flyte2.square"));
    assert!(lines[1]["reason"].as_str().unwrap().contains("cache version"), "{:#}", lines[1]);
    assert_eq!(lines[2]["differs"], serde_json::json!([{"input": "x", "how": "value differs"}]));
    // Only one task's, when asked.
    let none = Command::new(env!("CARGO_BIN_EXE_diskcachefs"))
        .args(["flyte2", "explain"])
        .arg(&dir)
        .args(["--task", "no.such"])
        .output()
        .unwrap();
    assert!(none.status.success() && none.stdout.is_empty(), "{none:?}");
}
