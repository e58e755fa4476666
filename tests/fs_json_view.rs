//! The `json/` view, `diskcachefs show`, `diskcachefs audit` and the xattr
//! `user.diskcache.imports`, against docs/SEMANTICS.md, "Values as JSON
//! (`json/`)", "What a pickle would import, and the audit" and "No new
//! pickles from other users".
//!
//! python-diskcache 5.6.3 fills the caches (tests/py/pickle_values.py: a
//! pydantic v2 model, a dataclass, a namedtuple, the standard library's data
//! types, numpy, JSON held in strings, protocols 0 to 5, random values,
//! hand-made malicious pickles) and says, from the Python objects and the
//! spec's tables, what each `json/` file must hold and what the audit must
//! report. The comparison is Python's too (`pickle_values.py --compare`):
//! the exact text (`json.dumps(doc, indent=2, ensure_ascii=False)` and a
//! newline), then the document with strict types, naming the path of the
//! first difference.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value as Json;
use support::{Mounted, cli, errno_of, getxattr, listing, setxattr, sh, walk_files};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/pickle_values.py");
/// A str inside the pydantic model, nowhere else in the cache.
const UNIQUE: &str = "ZEBRA-ONLY-INSIDE-PICKLE-7731";
const IMPORTS: &str = "user.diskcache.imports";
const TYPE: &str = "user.diskcache.type";

/// A cache pickle_values.py filled, and what it says of it.
struct Filled {
    cache: PathBuf,
    /// The file mapping each name in `keys/` to its expected rendering.
    expected_path: PathBuf,
    expected: BTreeMap<String, Json>,
    /// `{"entries": N, "pickles": [record, ...]}` (see the script).
    meta: Json,
}

/// Runs pickle_values.py into `work/NAME` with `args` (`--fanout`,
/// `--data-only`, `--malicious MARKER`, `--random SEED N`).
fn fill(work: &Path, name: &str, args: &[&str]) -> Filled {
    let cache = work.join(name);
    let expected_path = work.join(format!("{name}.expected.json"));
    let meta_path = work.join(format!("{name}.meta.json"));
    let out = Command::new(support::python())
        .arg(SCRIPT)
        .arg(&cache)
        .arg(&expected_path)
        .args(args)
        .arg("--meta")
        .arg(&meta_path)
        .output()
        .expect("run pickle_values.py");
    assert!(out.status.success(), "pickle_values.py {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let expected = serde_json::from_slice(&std::fs::read(&expected_path).unwrap()).unwrap();
    let meta = serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
    Filled { cache, expected_path, expected, meta }
}

/// One pickle of the cache (a key's or a value's), as the script recorded it.
struct Pickle {
    name: String,
    within: String,
    imports: Option<Vec<String>>,
    not_allowed: Vec<String>,
    error: bool,
    /// An entry of a FanoutCache's sub-store (`cache/sub/evil`): not in the
    /// top-level `keys/` and `json/`.
    substore: bool,
}

fn strings(v: &Json) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

fn pickles(meta: &Json) -> Vec<Pickle> {
    meta["pickles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| Pickle {
            name: r["name"].as_str().unwrap().to_string(),
            within: r["in"].as_str().unwrap().to_string(),
            imports: if r["imports"].is_null() { None } else { Some(strings(&r["imports"])) },
            not_allowed: strings(&r["not_allowed"]),
            error: r["error"].as_bool().unwrap(),
            substore: r["substore"].as_bool().unwrap_or(false),
        })
        .collect()
}

/// A name as Python 3 calls it: Python 2's `__builtin__` is `builtins`,
/// `copy_reg` is `copyreg` (the two Python 2 module names Python 3 writes
/// in protocol 0 to 2 pickles, and the spelling of the xattr's and the
/// audit's lists is left open: either is accepted).
fn normalized(name: &str) -> String {
    for (py2, py3) in [("__builtin__.", "builtins."), ("copy_reg.", "copyreg.")] {
        if let Some(rest) = name.strip_prefix(py2) {
            return format!("{py3}{rest}");
        }
    }
    name.to_string()
}

/// Names in their first order, each once, normalized.
fn distinct(names: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for n in names.iter().map(|n| normalized(n)) {
        if !out.contains(&n) {
            out.push(n);
        }
    }
    out
}

/// `--allow MODULE.NAME` or `--allow MODULE.*` (MODULE and its submodules).
fn allowed_by(name: &str, allow: &[&str]) -> bool {
    allow.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => prefix.ends_with('.') && name.starts_with(prefix),
        None => *p == name,
    })
}

fn listxattr(path: &Path) -> Vec<String> {
    let p = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let mut buf = vec![0u8; 65536];
    // SAFETY: the buffer is ours and its length is given.
    let r = unsafe { libc::listxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert!(r >= 0, "listxattr {}: {}", path.display(), std::io::Error::last_os_error());
    buf.truncate(r as usize);
    buf.split(|&b| b == 0).filter(|s| !s.is_empty()).map(|s| String::from_utf8_lossy(s).into_owned()).collect()
}

/// Every file below `dir` (relative paths), sorted.
fn files_below(dir: &Path) -> Vec<String> {
    let mut names = Vec::new();
    walk_files(dir, &mut names);
    names.sort();
    names
}

/// Every file of the mount's `json/`, read whole, each checked as a file
/// of the view: mode `0444`, `stat`'s size exactly what is read, UTF-8, a
/// newline at the end.
fn read_view(m: &Mounted) -> BTreeMap<String, String> {
    read_rendered(&m.mnt.join("json"), &|| m.log())
}

/// [`read_view`] of the directory `json`; `log` the daemon's.
fn read_rendered(json: &Path, log: &dyn Fn() -> String) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut problems = Vec::new();
    for name in files_below(json) {
        let path = json.join(&name);
        let meta = std::fs::metadata(&path).unwrap_or_else(|e| panic!("stat json/{name}: {e}"));
        if meta.mode() & 0o7777 != 0o444 {
            problems.push(format!("json/{name}: mode {:o}, expected 444", meta.mode() & 0o7777));
        }
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("read json/{name}: {e}\n{}", log()));
        if meta.len() != bytes.len() as u64 {
            problems.push(format!("json/{name}: stat says {} bytes, read gives {}", meta.len(), bytes.len()));
        }
        let text = String::from_utf8(bytes).unwrap_or_else(|e| panic!("json/{name} is not UTF-8: {e}"));
        if !text.ends_with('\n') {
            let tail = text.get(text.len().saturating_sub(40)..).unwrap_or(&text);
            problems.push(format!("json/{name} does not end with a newline: {tail:?}"));
        }
        out.insert(name, text);
    }
    assert!(problems.is_empty(), "json/ files:\n{}", problems.join("\n"));
    out
}

/// pickle_values.py's comparison of what the view served with what it
/// must serve: panics with every difference.
fn assert_renderings(work: &Path, filled: &Filled, served: &BTreeMap<String, String>) {
    let actual = work.join(format!("served-{}.json", filled.cache.file_name().unwrap().to_string_lossy()));
    std::fs::write(&actual, serde_json::to_vec(served).unwrap()).unwrap();
    let out = Command::new(support::python())
        .arg(SCRIPT)
        .arg("--compare")
        .arg(&filled.expected_path)
        .arg(&actual)
        .output()
        .expect("run pickle_values.py --compare");
    assert!(out.status.success(), "pickle_values.py --compare failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let problems: Vec<String> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        problems.is_empty(),
        "{} of {} renderings differ from the spec's ({}):\n{}",
        problems.len(),
        filled.expected.len(),
        filled.cache.display(),
        problems.iter().take(60).cloned().collect::<Vec<_>>().join("\n")
    );
}

/// `user.diskcache.imports` of every file in `keys/`: on a pickled value the
/// names it imports, in order (where the script knows them), never listed,
/// not settable; `ENODATA` on every other value.
fn assert_imports_xattrs(m: &Mounted, filled: &Filled) {
    let all = pickles(&filled.meta);
    let values: BTreeMap<&str, &Pickle> =
        all.iter().filter(|p| p.within == "value").map(|p| (p.name.as_str(), p)).collect();
    let mut problems = Vec::new();
    for name in filled.expected.keys() {
        let path = m.keys().join(name);
        match values.get(name.as_str()) {
            // What the xattr says of a pickle the reader refuses is not
            // specified.
            Some(p) if p.error => {}
            Some(p) => match getxattr(&path, IMPORTS) {
                Err(errno) => problems.push(format!("{name}: getxattr {IMPORTS}: errno {errno}")),
                Ok(raw) => match serde_json::from_slice::<Vec<String>>(&raw) {
                    Err(e) => problems.push(format!(
                        "{name}: {IMPORTS} is not a JSON array of strings ({e}): {}",
                        String::from_utf8_lossy(&raw)
                    )),
                    Ok(got) => {
                        let got = distinct(&got);
                        if let Some(want) = &p.imports
                            && got != *want
                        {
                            problems.push(format!("{name}: {IMPORTS} {got:?}, expected {want:?}"));
                        }
                        for n in &p.not_allowed {
                            if !got.contains(n) {
                                problems.push(format!("{name}: {IMPORTS} {got:?} lacks {n}"));
                            }
                        }
                    }
                },
            },
            None => {
                let got = getxattr(&path, IMPORTS);
                if got != Err(libc::ENODATA) {
                    problems.push(format!(
                        "{name} (not a pickled value): getxattr {IMPORTS} is {:?}, expected ENODATA",
                        got.map(|v| String::from_utf8_lossy(&v).into_owned())
                    ));
                }
            }
        }
        if listxattr(&path).iter().any(|x| x == IMPORTS) {
            problems.push(format!("{name}: listxattr lists {IMPORTS}"));
        }
    }
    assert!(problems.is_empty(), "user.diskcache.imports:\n{}", problems.join("\n"));
    // Setting it is EPERM (on a pickled value; the value stays).
    let p = all.iter().find(|p| p.within == "value" && !p.error).expect("a pickled value");
    let path = m.keys().join(&p.name);
    let before = std::fs::read(&path).unwrap();
    assert_eq!(setxattr(&path, IMPORTS, b"[]"), Err(libc::EPERM), "setxattr {IMPORTS} on keys/{}", p.name);
    assert_eq!(std::fs::read(&path).unwrap(), before, "keys/{} after the refused setxattr", p.name);
}

/// `diskcachefs show CACHE NAME` prints what `json/NAME` holds, for every
/// name.
fn assert_show(cache: &Path, served: &BTreeMap<String, String>) {
    let mut problems = Vec::new();
    for (name, text) in served {
        let out = cli(&["show", cache.to_str().unwrap(), name], None);
        if !out.status.success() {
            problems.push(format!("show {name}: {} {}", out.status, String::from_utf8_lossy(&out.stderr)));
        } else if out.stdout != text.as_bytes() {
            problems.push(format!(
                "show {name} prints\n{}\nbut json/{name} holds\n{text}",
                String::from_utf8_lossy(&out.stdout)
            ));
        }
    }
    assert!(problems.is_empty(), "diskcachefs show:\n{}", problems.join("\n"));
}

/// The tree of `json/`: hidden in the root, `keys/` again (the same names
/// and directories), `0555` directories.
fn assert_view_tree(m: &Mounted) {
    let json = m.mnt.join("json");
    assert!(!listing(&m.mnt).contains(&"json".to_string()), "the root lists json: {:?}", listing(&m.mnt));
    let meta = std::fs::metadata(&json).unwrap_or_else(|e| panic!("json/ is not there by name: {e}\n{}", m.log()));
    assert!(meta.is_dir(), "json/ is a directory");
    assert_eq!(meta.mode() & 0o7777, 0o555, "json/'s mode");
    assert_eq!(listing(&json), listing(&m.keys()), "ls json/ and ls keys/");
    assert_eq!(files_below(&json), files_below(&m.keys()), "every file below json/ and below keys/");
    for dir in ["dir", "dir/sub"] {
        let meta = std::fs::metadata(json.join(dir)).unwrap_or_else(|e| panic!("json/{dir}: {e}"));
        assert!(meta.is_dir(), "json/{dir} is a directory");
        assert_eq!(meta.mode() & 0o7777, 0o555, "json/{dir}'s mode");
        assert_eq!(listing(&json.join(dir)), listing(&m.keys().join(dir)), "ls json/{dir}");
    }
}

/// Writing is EACCES; creating, removing, renaming EPERM; the value stays.
fn assert_view_read_only(m: &Mounted) {
    let json = m.mnt.join("json");
    let file = json.join("raw_int");
    let write = std::fs::OpenOptions::new().write(true).open(&file);
    assert_eq!(errno_of(write), libc::EACCES, "open json/raw_int for writing");
    let append = std::fs::OpenOptions::new().append(true).open(&file);
    assert_eq!(errno_of(append), libc::EACCES, "open json/raw_int for appending");
    assert_eq!(errno_of(std::fs::File::create(json.join("new"))), libc::EPERM, "create json/new");
    assert_eq!(errno_of(std::fs::remove_file(&file)), libc::EPERM, "rm json/raw_int");
    assert_eq!(errno_of(std::fs::rename(&file, json.join("moved"))), libc::EPERM, "mv json/raw_int json/moved");
    assert_eq!(errno_of(std::fs::create_dir(json.join("newdir"))), libc::EPERM, "mkdir json/newdir");
    assert_eq!(std::fs::read(&file).unwrap(), b"42\n", "json/raw_int after the refused changes");
    assert_eq!(std::fs::read(m.keys().join("raw_int")).unwrap(), b"42", "keys/raw_int after the refused changes");
    assert!(!json.join("new").exists() && !json.join("moved").exists() && !json.join("newdir").exists());
}

fn renders_python_values(fanout: bool) {
    let work = tempfile::tempdir().unwrap();
    let filled = fill(work.path(), "cache", if fanout { &["--fanout"] } else { &[] });
    if fanout {
        assert!(filled.cache.join("003/cache.db").exists() && !filled.cache.join("cache.db").exists());
    }
    let m = Mounted::on(&filled.cache, &[]);
    assert_view_tree(&m);
    let served = read_view(&m);
    assert_renderings(work.path(), &filled, &served);

    // The str only the pickled model holds: found by grep in json/, in
    // that one file, in the model's field.
    assert!(files_below(&m.keys()).iter().all(|n| !n.contains(UNIQUE)), "no key holds {UNIQUE}");
    let json = m.mnt.join("json");
    let grep = sh(&format!("grep -rlF -- '{UNIQUE}' '{}'", json.display()));
    let found: Vec<String> = String::from_utf8_lossy(&grep.stdout).lines().map(str::to_string).collect();
    assert_eq!(found, [json.join("pydantic_model").display().to_string()], "grep -rl {UNIQUE} json/ ({})", grep.status);
    let model: Json = serde_json::from_str(&served["pydantic_model"]).unwrap();
    assert_eq!(model["note"], UNIQUE, "the model's field: {model}");
    assert_eq!(model["__class__"], "pickle_classes.Outer");
    assert_eq!(model["inner"]["when"], "2026-01-02T03:04:05.000006+01:00");

    assert_imports_xattrs(&m, &filled);
    assert_show(&filled.cache, &served);
    assert_view_read_only(&m);
}

#[test]
fn json_view_renders_python_values() {
    renders_python_values(false);
}

#[test]
fn json_view_renders_python_values_of_a_fanout_cache() {
    renders_python_values(true);
}

/// What a finding must say.
#[derive(Debug, PartialEq)]
enum Finding {
    NotAllowed { not_allowed: BTreeSet<String>, imports: Option<Vec<String>> },
    Error,
}

/// Runs `diskcachefs audit CACHE --allow A...` and checks its report and
/// exit status against the script's records.
fn assert_audit(filled: &Filled, allow: &[&str]) {
    let dir = filled.cache.to_str().unwrap();
    let mut args = vec!["audit", dir];
    for a in allow {
        args.extend(["--allow", a]);
    }
    check_audit_report(filled, allow, &args, &cli(&args, None));
}

/// [`assert_audit`]'s checks of the output of `diskcachefs ARGS`.
fn check_audit_report(filled: &Filled, allow: &[&str], args: &[&str], out: &Output) {
    let dir = filled.cache.to_str().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let ctx = format!(
        "diskcachefs {}: {}\nstdout:\n{stdout}\nstderr:\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Json = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not one JSON document ({e}): {ctx}"));

    let records = pickles(&filled.meta);
    let mut want: BTreeMap<(String, String), Finding> = BTreeMap::new();
    for p in &records {
        let finding = if p.error {
            Finding::Error
        } else {
            let not_allowed: BTreeSet<String> =
                p.not_allowed.iter().filter(|n| !allowed_by(n, allow)).cloned().collect();
            if not_allowed.is_empty() {
                continue;
            }
            Finding::NotAllowed { not_allowed, imports: p.imports.clone() }
        };
        want.insert((p.name.clone(), p.within.clone()), finding);
    }

    assert_eq!(out.status.code(), Some(if want.is_empty() { 0 } else { 1 }), "exit status: {ctx}");
    let cache_said = report["cache"].as_str().unwrap_or_else(|| panic!("no \"cache\": {ctx}"));
    let canonical = std::fs::canonicalize(&filled.cache).unwrap();
    assert!(cache_said == dir || Path::new(cache_said) == canonical, "\"cache\": {cache_said}, expected {dir}: {ctx}");
    // N counts the live entries; whether a FanoutCache's sub-stores' are
    // among them is not said: either.
    let entries = filled.meta["entries"].as_u64().unwrap();
    let top_level = entries - filled.meta["substore_entries"].as_u64().unwrap();
    let n = report["entries"].as_u64().unwrap_or_else(|| panic!("\"entries\" is not a count: {ctx}"));
    assert!(n == entries || n == top_level, "\"entries\": {n}, expected {entries}: {ctx}");
    // P counts the pickles read: at least one per entry that has one (in
    // the top-level cache), at most one per pickled key and value.
    let names: BTreeSet<&str> = records.iter().filter(|p| !p.substore).map(|p| p.name.as_str()).collect();
    let p = report["pickles"].as_u64().unwrap_or_else(|| panic!("\"pickles\" is not a count: {ctx}"));
    assert!(
        (names.len() as u64..=records.len() as u64).contains(&p),
        "\"pickles\": {p}, expected {} entries with a pickle ({} pickles): {ctx}",
        names.len(),
        records.len()
    );

    let mut got: BTreeMap<(String, String), Finding> = BTreeMap::new();
    for f in report["findings"].as_array().unwrap_or_else(|| panic!("no \"findings\" array: {ctx}")) {
        let key = f["key"].as_str().unwrap_or_else(|| panic!("a finding without \"key\": {f}\n{ctx}"));
        // PATH: the entry's path in the mount (`dir/sub/nested_model`,
        // `%pickle:...`, `cache/sub/evil`).
        let name = records
            .iter()
            .find(|p| p.name == key)
            .map(|p| p.name.clone())
            .unwrap_or_else(|| panic!("a finding names {key}, not the path of an entry holding a pickle: {ctx}"));
        let within = f["in"].as_str().unwrap_or_else(|| panic!("a finding without \"in\": {f}\n{ctx}")).to_string();
        let finding = if f.get("error").is_some() {
            assert!(f["error"].as_str().is_some_and(|e| !e.is_empty()), "\"error\" is not a reason: {f}\n{ctx}");
            assert!(f.get("not_allowed").is_none(), "a finding with both error and not_allowed: {f}\n{ctx}");
            Finding::Error
        } else {
            let imports = distinct(&strings(&f["imports"]));
            let not_allowed: BTreeSet<String> = strings(&f["not_allowed"]).iter().map(|n| normalized(n)).collect();
            for n in &not_allowed {
                assert!(imports.contains(n), "{key}: not_allowed {n} is not among its imports {imports:?}\n{ctx}");
            }
            // The imports are compared where the script knows them (the
            // expectation's `imports` is then Some), else only the names
            // not allowed.
            let known = records.iter().any(|p| p.name == name && p.within == within && p.imports.is_some());
            Finding::NotAllowed { not_allowed, imports: known.then_some(imports) }
        };
        assert!(got.insert((name, within), finding).is_none(), "two findings for {key}: {ctx}");
    }
    assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>(), "the entries with findings: {ctx}");
    for (k, w) in &want {
        assert_eq!(&got[k], w, "the finding for {k:?}: {ctx}");
    }
}

#[test]
fn malicious_pickles_render_as_data_and_audit_names_them() {
    for fanout in [false, true] {
        let work = tempfile::tempdir().unwrap();
        let marker = work.path().join("PWNED");
        let marker_arg = marker.to_str().unwrap();
        let mut args = vec!["--malicious", marker_arg];
        if fanout {
            args.push("--fanout");
        }
        let filled = fill(work.path(), "cache", &args);
        let records = pickles(&filled.meta);
        assert!(!marker.exists(), "filling the cache ran a pickle");

        let m = Mounted::on(&filled.cache, &[]);
        assert_eq!(files_below(&m.mnt.join("json")), files_below(&m.keys()));
        let served = read_view(&m);
        // Every malicious value reads as data: the call it would make, by
        // name, with its arguments (e.g. {"__reduce__": "os.system",
        // "__args__": ["touch ..."]}); refused pickles as __error__.
        assert_renderings(work.path(), &filled, &served);
        for p in records.iter().filter(|p| p.within == "value" && !p.not_allowed.is_empty() && !p.substore) {
            for n in &p.not_allowed {
                let alternatives = [n.clone(), n.replacen("builtins.", "__builtin__.", 1)];
                assert!(
                    alternatives.iter().any(|a| served[&p.name].contains(&format!("\"{a}\""))),
                    "json/{} does not name {n}:\n{}",
                    p.name,
                    served[&p.name]
                );
            }
        }
        assert_imports_xattrs(&m, &filled);
        assert_show(&filled.cache, &served);
        // The pickled key that would run a command is a name like any other.
        let key_pickle = records.iter().find(|p| p.within == "key").expect("a malicious pickled key");
        assert!(m.keys().join(&key_pickle.name).exists(), "keys/{}", key_pickle.name);

        // No allow-list: every malicious pickle and every refused one is a
        // finding (a FanoutCache's sub-store's too); python-diskcache's own
        // pickle beside them is not.
        assert_audit(&filled, &[]);
        // Allowing some names hides only the findings that name nothing
        // else; a refused pickle stays a finding whatever is allowed.
        assert_audit(&filled, &["os.system"]);
        assert_audit(&filled, &["builtins.eval", "subprocess.Popen"]);
        // Python 2's `__builtin__.exec` is matched as `builtins.exec`.
        assert_audit(&filled, &["builtins.exec"]);
        assert_audit(&filled, &["os.*", "posix.*", "builtins.eval", "builtins.exec", "subprocess.*"]);
        // Nothing read, shown, listed or audited ran anything.
        assert!(!marker.exists(), "a pickle ran: {} exists", marker.display());
        if fanout {
            // The sub-store FanoutCache.cache('sub') is a tree of its own,
            // json/ included.
            let evil = m.mnt.join("cache/sub/json/evil");
            let text =
                std::fs::read_to_string(&evil).unwrap_or_else(|e| panic!("{}: {e}\n{}", evil.display(), m.log()));
            let doc: Json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}: {text}", evil.display()));
            let cmd = format!("touch {marker_arg}");
            assert_eq!(doc, serde_json::json!({"__reduce__": "os.system", "__args__": [cmd]}), "{}", evil.display());
        }
        drop(m);
    }
}

#[test]
fn audit_allow_lists_and_exit_statuses() {
    let work = tempfile::tempdir().unwrap();
    // Only the standard library's data types (with protocols 0 to 5: Python
    // 2's names `__builtin__` and `copy_reg` among them): clean.
    for (name, args) in [("data", vec!["--data-only"]), ("data-fanout", vec!["--data-only", "--fanout"])] {
        let filled = fill(work.path(), name, &args);
        assert!(pickles(&filled.meta).iter().all(|p| p.not_allowed.is_empty() && !p.error));
        assert_audit(&filled, &[]);
        let out = cli(&["audit", filled.cache.to_str().unwrap()], None);
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        let report: Json = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["findings"], serde_json::json!([]), "{report}");
    }
    // The application's classes and numpy are not in the built-in list.
    let filled = fill(work.path(), "values", &[]);
    assert_audit(&filled, &[]);
    assert_audit(&filled, &["pickle_classes.*"]);
    assert_audit(&filled, &["numpy.*"]);
    assert_audit(&filled, &["pickle_classes.Outer", "pickle_classes.Inner", "numpy.*"]);
    assert_audit(&filled, &["pickle_classes.*", "numpy.*"]);
    let out =
        cli(&["audit", filled.cache.to_str().unwrap(), "--allow", "pickle_classes.*", "--allow", "numpy.*"], None);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    // `MODULE.*` is that module and its submodules: numpy._core.* leaves
    // numpy.dtype and numpy.ndarray out.
    assert_audit(&filled, &["pickle_classes.*", "numpy._core.*"]);

    // A cache that cannot be read: 2.
    let bad = work.path().join("bad");
    std::fs::create_dir(&bad).unwrap();
    std::fs::write(bad.join("cache.db"), b"this is not an SQLite database, it is sixty-four bytes long....").unwrap();
    let out = cli(&["audit", bad.to_str().unwrap()], None);
    assert_eq!(
        out.status.code(),
        Some(2),
        "audit of a cache that cannot be read: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The property test: random nested values (None, bools, ints of any size,
/// floats with NaN and infinities, str with JSON in some, bytes, bytearray,
/// lists, tuples, dicts with str and int keys, sets, frozensets, datetime,
/// date, Decimal, UUID; shared references) pickled with random protocols
/// 0 to 5, each rendered as the spec says.
#[test]
fn random_python_values_render() {
    for (seed, fanout) in [("1", false), ("2", true), ("3", false)] {
        let work = tempfile::tempdir().unwrap();
        let mut args = vec!["--random", seed, "60"];
        if fanout {
            args.push("--fanout");
        }
        let filled = fill(work.path(), "cache", &args);
        assert_eq!(filled.expected.len(), 60);
        let m = Mounted::on(&filled.cache, &[]);
        let served = read_view(&m);
        assert_renderings(work.path(), &filled, &served);
        assert_imports_xattrs(&m, &filled);
    }
}

// ---------------------------------------------------------------------------
// Other users.

/// The unprivileged user of tests/unprivileged.rs (made once per machine).
const USER: &str = "dcfs-unpriv-test";

fn id_of(flag: &str) -> Option<u32> {
    let out = Command::new("id").arg(flag).arg(USER).output().expect("run id");
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).trim().parse().expect("a number from id"))
}

/// [`USER`]'s uid and gid, made if missing (serialized with the other
/// tests that make it, as tests/unprivileged.rs does).
fn test_user() -> (u32, u32) {
    use std::os::fd::AsRawFd;
    let lock_path = std::env::temp_dir().join("diskcachefs-unprivileged-useradd.lock");
    let lock = std::fs::File::options().create(true).append(true).open(&lock_path).unwrap();
    // SAFETY: the descriptor is open; the lock goes with it when `lock` drops.
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
    if id_of("-u").is_none() {
        let out = Command::new("useradd")
            .args(["--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent"])
            .args(["--shell", "/usr/sbin/nologin", USER])
            .output()
            .expect("run useradd (passwd)");
        assert!(
            out.status.success() || out.status.code() == Some(9),
            "useradd {USER}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let ids = (id_of("-u").expect("the test user's uid"), id_of("-g").expect("the test user's gid"));
    drop(lock);
    ids
}

/// `program` run as [`USER`] (uid, gid, no supplementary groups), through
/// util-linux's `setpriv`. With `dac`, the process keeps
/// `CAP_DAC_OVERRIDE` and `CAP_FOWNER` (ambient): the kernel's permission
/// checks (`default_permissions`, files `0644` of the user who mounted)
/// then let its writes through to the daemon, which sees its uid. Without
/// them another user cannot write to the mount at all, so a request by
/// another user that would store something reaches the daemon only from a
/// process such as this one (or root's, on a mount a user made).
fn as_other_user(uid: u32, gid: u32, dac: bool, program: &Path) -> Command {
    let mut c = Command::new("setpriv");
    c.arg(format!("--reuid={uid}")).arg(format!("--regid={gid}")).arg("--clear-groups");
    if dac {
        c.args(["--inh-caps=+dac_override,+fowner", "--ambient-caps=+dac_override,+fowner"]);
    }
    c.arg("--").arg(program);
    c.env_clear().env("PATH", "/usr/local/bin:/usr/bin:/bin").env("LANG", "C").stdin(Stdio::null());
    // SAFETY: umask is async-signal-safe and cannot fail.
    unsafe {
        c.pre_exec(|| {
            libc::umask(0o022);
            Ok(())
        });
    }
    c
}

fn ok(out: Output, what: &str) -> String {
    assert!(out.status.success(), "{what}: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// What the other user's Python does: each step's errno (0 for success),
/// as JSON.
const OTHER_USER_STEPS: &str = r#"
import json, os, sys
keys = sys.argv[1]
PICKLE = b'\x80\x04K\x01.'
TYPE = 'user.diskcache.type'
done = {}
def step(name, f):
    try:
        f()
        done[name] = 0
    except OSError as e:
        done[name] = e.errno
def write(path, data, flags):
    fd = os.open(path, flags)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
# Converting a bytes value that holds a valid pickle to a pickle.
step('set_type_pickle', lambda: os.setxattr(os.path.join(keys, 'plain'), TYPE, b'pickle'))
# Converting to str, the control: other changes are theirs to make.
step('set_type_str', lambda: os.setxattr(os.path.join(keys, 'text'), TYPE, b'str'))
# Their own new key, holding a valid pickle's bytes: stored as bytes.
step('create_own_key', lambda: write(os.path.join(keys, 'mine'), PICKLE, os.O_WRONLY | os.O_CREAT | os.O_EXCL))
step('set_own_key_type_pickle', lambda: os.setxattr(os.path.join(keys, 'mine'), TYPE, b'pickle'))
# Rewriting a pickled value in place with another valid pickle: the commit
# would keep its pickle type.
step('rewrite_pickle', lambda: write(os.path.join(keys, 'owned'), b'\x80\x04K\x02.', os.O_WRONLY | os.O_TRUNC))
print(json.dumps(done))
"#;

#[test]
fn other_users_cannot_store_pickles() {
    use std::os::unix::fs::PermissionsExt;
    for tool in ["setpriv", "setfattr"] {
        assert!(
            Command::new("sh")
                .arg("-c")
                .arg(format!("command -v {tool}"))
                .stdout(Stdio::null())
                .status()
                .unwrap()
                .success(),
            "{tool} is needed (util-linux, attr)"
        );
    }
    let (uid, gid) = test_user();
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    support::py(
        "import sys, diskcache\nc = diskcache.Cache(sys.argv[1])\n\
         c['plain'] = b'\\x80\\x04K\\x01.'\nc['text'] = b'hello'\nc['owned'] = {'a': 1}\nc.close()",
        &[cache.to_str().unwrap()],
    );
    // Mounted by root (the owner), for everyone.
    let m = Mounted::on(&cache, &["--allow-other"]);
    std::fs::set_permissions(m.root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let keys = m.keys();
    let owned_before = std::fs::read(keys.join("owned")).unwrap();
    let type_of = |name: &str| String::from_utf8(getxattr(&keys.join(name), TYPE).unwrap()).unwrap();
    assert_eq!(type_of("owned"), "pickle");
    assert_eq!(type_of("plain"), "bytes");

    // An ordinary other user cannot write to the mount at all.
    let out = as_other_user(uid, gid, false, Path::new("/usr/bin/setfattr"))
        .args(["-n", TYPE, "-v", "pickle"])
        .arg(keys.join("plain"))
        .output()
        .unwrap();
    assert!(!out.status.success(), "setfattr by {USER} without capabilities succeeded");
    assert_eq!(type_of("plain"), "bytes");

    // Another user whose requests reach the daemon: no pickle, the rest as
    // usual.
    let out =
        as_other_user(uid, gid, true, &support::python()).arg("-c").arg(OTHER_USER_STEPS).arg(&keys).output().unwrap();
    let steps: Json = serde_json::from_str(&ok(out, &format!("python as {USER} with CAP_DAC_OVERRIDE"))).unwrap();
    let eperm = libc::EPERM as i64;
    assert_eq!(
        steps,
        serde_json::json!({
            "set_type_pickle": eperm,
            "set_type_str": 0,
            "create_own_key": 0,
            "set_own_key_type_pickle": eperm,
            "rewrite_pickle": eperm,
        }),
        "errnos of {USER}'s requests (EPERM = {eperm})\n{}",
        m.log()
    );
    assert_eq!(type_of("plain"), "bytes", "keys/plain after {USER}'s setxattr");
    assert_eq!(type_of("text"), "str", "keys/text after {USER}'s setxattr");
    assert_eq!(type_of("mine"), "bytes", "{USER}'s own key");
    assert_eq!(std::fs::read(keys.join("mine")).unwrap(), b"\x80\x04K\x01.");
    assert_eq!(type_of("owned"), "pickle", "keys/owned after {USER}'s rewrite");
    assert_eq!(std::fs::read(keys.join("owned")).unwrap(), owned_before, "keys/owned after {USER}'s refused rewrite");

    // The owner (root) does the same: it works.
    assert_eq!(setxattr(&keys.join("plain"), TYPE, b"pickle"), Ok(()), "the owner's setxattr type pickle");
    assert_eq!(setxattr(&keys.join("mine"), TYPE, b"pickle"), Ok(()), "the owner's setxattr type pickle");
    assert_eq!(support::write_closed(&keys.join("owned"), b"\x80\x04K\x02."), Ok(()), "the owner's rewrite");
    for name in ["plain", "mine", "owned"] {
        assert_eq!(type_of(name), "pickle", "keys/{name} after the owner's change");
    }
    let seen = support::py(
        "import sys, diskcache\nc = diskcache.Cache(sys.argv[1])\n\
         print(repr([c[k] for k in ('plain', 'mine', 'owned', 'text')]))\nc.close()",
        &[cache.to_str().unwrap()],
    );
    assert_eq!(seen.trim(), "[1, 1, 2, 'hello']", "python-diskcache reads");
}
