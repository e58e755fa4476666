//! 1,000 vectors made afresh on every run by scripts/gen-flyte-vectors.py
//! with the real flytekit (random literal maps of every kind, and inputs
//! from flytekit's type engine), with a new seed each run: every key must
//! be flytekit's, and where flytekit raises, we must refuse too; the
//! borrowing path must take every input flytekit has a key for, with the
//! prost path's bytes. A failure prints the seed; rerun with
//! DISKCACHEFS_SEED=<seed>.

mod support;

use support::python;

use std::path::PathBuf;
use std::process::Command;

use base64::Engine;
use diskcachefs::flyte::{cache_key, canonical_bytes_borrowed, canonical_bytes_prost};

#[test]
fn a_thousand_fresh_flytekit_vectors() {
    let seed: u64 = std::env::var("DISKCACHEFS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 % 1_000_000_007
    });
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/gen-flyte-vectors.py");
    let out = Command::new(python()).arg(script).arg(seed.to_string()).arg("1000").output().unwrap();
    assert!(out.status.success(), "generator failed (seed {seed}):\n{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut failures = Vec::new();
    let mut n = 0;
    for line in text.lines() {
        n += 1;
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let inputs = b64.decode(v["inputs"].as_str().unwrap()).unwrap();
        let ignore: Vec<String> = v["ignore"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().into()).collect();
        let got = cache_key(v["task"].as_str().unwrap(), v["version"].as_str().unwrap(), &inputs, &ignore);
        // The borrowing path takes what flytekit has a key for (a client's
        // protobuf never sets a field twice), and agrees with prost.
        let borrowed = canonical_bytes_borrowed(&inputs, &ignore);
        if v["key"].is_string() && borrowed.is_none() {
            failures.push(format!("{line}\n  the borrowing path did not take it"));
        }
        if borrowed.is_some() && borrowed != canonical_bytes_prost(&inputs, &ignore).ok() {
            failures.push(format!("{line}\n  the borrowing and prost paths differ"));
        }
        match (&v["key"], got) {
            (serde_json::Value::String(want), Ok(got)) if *want == got => {}
            (serde_json::Value::Null, Err(_)) => {} // flytekit raised, and so did we
            (want, got) => failures.push(format!("{line}\n  flytekit: {want} {}\n  ours: {got:?}", v["error"])),
        }
    }
    assert_eq!(n, 1000);
    assert!(
        failures.is_empty(),
        "seed {seed}: {} of 1000 differ (rerun with DISKCACHEFS_SEED={seed}):\n{}",
        failures.len(),
        failures[..failures.len().min(3)].join("\n")
    );
}
