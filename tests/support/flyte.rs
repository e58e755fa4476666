//! Shared by the tests that run a flytekit workflow (`tests/py/flyte_workflow.py`)
//! against a cache directory: running it, and making and reading the
//! literal maps its tasks take and return.

use std::path::{Path, PathBuf};
use std::process::Command;

use diskcachefs::flyte::idl::{Literal, LiteralMap, Primitive, Scalar, literal, primitive, scalar};
use prost::Message;

use super::python;

/// Runs the workflow script with `args` on cache directory `dir`; its task
/// bodies append to `side`. Returns the JSON its last line prints.
pub fn workflow(dir: &Path, side: &Path, args: &[&str]) -> serde_json::Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/py/flyte_workflow.py");
    let out = Command::new(python()).arg(script).arg(dir).arg(side).args(args).output().unwrap();
    assert!(out.status.success(), "flytekit {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let last = text.lines().last().unwrap_or("null");
    serde_json::from_str(last).unwrap_or(serde_json::Value::Null)
}

/// A primitive literal.
pub fn prim(p: primitive::Value) -> Literal {
    Literal {
        value: Some(literal::Value::Scalar(Scalar {
            value: Some(scalar::Value::Primitive(Primitive { value: Some(p) })),
        })),
        ..Default::default()
    }
}

/// A serialized literal map.
pub fn map(entries: Vec<(&str, Literal)>) -> Vec<u8> {
    LiteralMap { literals: entries.into_iter().map(|(k, v)| (k.to_string(), v)).collect() }.encode_to_vec()
}

/// The primitive output `o0` of serialized task outputs.
pub fn output(bytes: &[u8]) -> primitive::Value {
    let m = LiteralMap::decode(bytes).unwrap();
    match &m.literals["o0"].value {
        Some(literal::Value::Scalar(Scalar {
            value: Some(scalar::Value::Primitive(Primitive { value: Some(v) })),
        })) => v.clone(),
        other => panic!("unexpected output {other:?}"),
    }
}

/// The lines the task bodies appended to the side-effect file (which
/// bodies ran).
pub fn lines(side: &Path) -> Vec<String> {
    std::fs::read_to_string(side).unwrap_or_default().lines().map(String::from).collect()
}

/// Runs `square(x)` as a cached Flyte 2 task in `home` (as HOME and cwd);
/// its body appends a line to `side` when it really runs.
pub fn flyte2_square(home: &Path, side: &Path, x: i64) -> serde_json::Value {
    flyte2_square_with(home, side, x, &[], &[])
}

/// [`flyte2_square`] with more arguments to tests/py/flyte2_run.py (such as
/// `--persist-runs`) and environment variables (such as
/// `DISKCACHEFS_FLYTE2_EDITED`).
pub fn flyte2_square_with(home: &Path, side: &Path, x: i64, args: &[&str], env: &[(&str, &str)]) -> serde_json::Value {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(root.join(".venv-flyte2/bin/python"))
        .arg(root.join("tests/py/flyte2_run.py"))
        .args(args)
        .arg(side)
        .arg(x.to_string())
        .env("HOME", home)
        .envs(env.iter().copied())
        .current_dir(home)
        .output()
        .expect("run the Flyte 2 SDK (scripts/setup-venv-flyte2)");
    assert!(out.status.success(), "flyte 2 run failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    serde_json::from_str(text.lines().last().unwrap()).unwrap()
}

/// Writes `inputs` to a resolver file (`task/T/V/.resolve`, `.key`) and
/// reads its answer on the same descriptor.
pub fn ask(path: &Path, inputs: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Write};
    let mut f = std::fs::OpenOptions::new().read(true).write(true).open(path)?;
    f.write_all(inputs)?;
    let mut out = Vec::new();
    f.read_to_end(&mut out)?;
    Ok(out)
}

/// `diskcachefs flyte prune --stale ARGS DIR`: the JSON lines it prints.
pub fn prune_stale(dir: &Path, args: &[&str]) -> Vec<serde_json::Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_diskcachefs"))
        .args(["flyte", "prune", "--stale"])
        .args(args)
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}
