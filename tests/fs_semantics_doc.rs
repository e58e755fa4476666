//! docs/SEMANTICS.md, exercised as written (in the spirit of mountpoint-s3's
//! semantics_doc_test): the examples of its tables and the rules of its
//! "Write", "Delete, rename, times, modes", "Extended attributes",
//! "Expiry", "Read-only mounts", "Errors from the cache" and "Not supported"
//! sections, each through a real mount with python-diskcache as the peer.
//! The names table is parsed from the document itself, so the document and
//! the mount cannot drift apart unseen.

mod support;

use std::ffi::CString;
use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::{Mounted, errno_of, getxattr, py, setxattr, sh};

fn doc() -> String {
    std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/SEMANTICS.md")).unwrap()
}

/// Runs `code` with `c` = the cache at `m.cache` and `sys.argv[2:]` = args.
fn pyc(m: &Mounted, code: &str, args: &[&str]) -> String {
    let script = format!("import sys, diskcache\nc = diskcache.Cache(sys.argv[1])\n{code}");
    let mut all = vec![m.cache.to_str().unwrap()];
    all.extend_from_slice(args);
    py(&script, &all).trim().to_string()
}

/// python-diskcache's `get(key, expire_time=True, tag=True)`, as repr.
fn get(m: &Mounted, key: &str) -> String {
    pyc(m, "import ast\nprint(repr(c.get(ast.literal_eval(sys.argv[2]), expire_time=True, tag=True)))", &[key])
}

/// store_time and access_time of a str key, as Python's repr.
fn times(m: &Mounted, key: &str) -> String {
    pyc(
        m,
        "print(c._sql('SELECT store_time, access_time FROM Cache WHERE key = ?', (sys.argv[2],)).fetchone())",
        &[key],
    )
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

fn last_errno(r: libc::c_int) -> i32 {
    if r < 0 { std::io::Error::last_os_error().raw_os_error().unwrap() } else { 0 }
}

fn removexattr(path: &Path, name: &str) -> i32 {
    let n = CString::new(name).unwrap();
    last_errno(unsafe { libc::removexattr(cstr(path).as_ptr(), n.as_ptr()) })
}

fn listxattr(path: &Path) -> Vec<String> {
    let mut buf = vec![0u8; 4096];
    let r = unsafe { libc::listxattr(cstr(path).as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert!(r >= 0, "listxattr {}: {}", path.display(), std::io::Error::last_os_error());
    buf.truncate(r as usize);
    buf.split(|&b| b == 0).filter(|s| !s.is_empty()).map(|s| String::from_utf8_lossy(s).to_string()).collect()
}

fn renameat2(from: &Path, to: &Path, flags: libc::c_uint) -> i32 {
    let r = unsafe { libc::renameat2(libc::AT_FDCWD, cstr(from).as_ptr(), libc::AT_FDCWD, cstr(to).as_ptr(), flags) };
    last_errno(r)
}

fn listing(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect()
}

/// The backticked spans of a markdown table cell, leaving out remarks in
/// parentheses ("`%float:1.5` (Python's `repr`)").
fn code_spans(cell: &str) -> Vec<String> {
    let (mut text, mut depth, mut in_code) = (String::new(), 0, false);
    for ch in cell.chars() {
        match ch {
            '(' if !in_code => depth += 1,
            ')' if !in_code && depth > 0 => depth -= 1,
            _ if depth == 0 => {
                in_code ^= ch == '`';
                text.push(ch);
            }
            _ => {}
        }
    }
    text.split('`').skip(1).step_by(2).map(String::from).collect()
}

#[test]
fn the_names_table_is_what_the_mount_shows() {
    let text = doc();
    let section = text.split("## Keys to names").nth(1).expect("SEMANTICS.md has a 'Keys to names' section");
    let section = section.split("\n## ").next().unwrap();
    // (Python literal of the key, documented name) for every row whose
    // cells pair up; placeholders (`...`, `<...>`) are left to other tests.
    let mut pairs = Vec::new();
    for row in section.lines().filter(|l| l.starts_with('|')).skip(2) {
        let cells: Vec<&str> = row.split('|').collect();
        let (keys, names) = (code_spans(cells[1]), code_spans(cells[2]));
        if keys.len() != names.len() {
            continue;
        }
        for (k, n) in keys.into_iter().zip(names) {
            if !n.contains("...") && !n.contains('<') {
                pairs.push((k, n));
            }
        }
    }
    let m = Mounted::new();
    let keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
    // Each key the doc writes as a Python literal is set to b'doc:' + that
    // literal; spans that are not literals (`%`) are skipped.
    let stored = pyc(
        &m,
        "import ast, json\nok = []\nfor src in json.loads(sys.argv[2]):\n    try:\n        key = ast.literal_eval(src)\n    except Exception:\n        continue\n    c[key] = ('doc:' + src).encode()\n    ok.append(src)\nprint(json.dumps(ok))",
        &[&serde_json::to_string(&keys).unwrap()],
    );
    let stored: Vec<String> = serde_json::from_str(&stored).unwrap();
    let checked: Vec<&(String, String)> = pairs.iter().filter(|(k, _)| stored.contains(k)).collect();
    assert!(checked.len() >= 8, "too few examples parsed from the names table: {checked:?}");
    let names = listing(&m.keys());
    for (key, name) in &checked {
        let content = std::fs::read(m.keys().join(name));
        assert_eq!(
            content.as_ref().ok().map(|c| String::from_utf8_lossy(c).to_string()),
            Some(format!("doc:{key}")),
            "the doc says key {key} is named {name:?}; keys/ lists {names:?} (read: {content:?})"
        );
    }
    assert_eq!(names.len(), checked.len(), "one name per key: {names:?}");

    // "touch 'keys/%int:7' makes the int key 7"; non-canonical spellings do
    // not exist; malformed is EINVAL; over 255 bytes is ENAMETOOLONG.
    let out = sh(&format!("touch '{}'", m.keys().join("%int:7").display()));
    assert!(out.status.success(), "touch %int:7: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(get(&m, "7"), "(b'', None, None)", "touch 'keys/%int:7' should make the int key 7 with an empty value");
    assert_eq!(pyc(&m, "print(repr(c.get('%int:7')))", &[]), "None", "%int:7 is not the str key '%int:7'");
    std::fs::write(m.keys().join("abc"), b"v").unwrap();
    for alias in ["%int:007", "%int:+7", "%str:abc", "%float:7"] {
        let e = errno_of(std::fs::metadata(m.keys().join(alias)));
        assert_eq!(e, libc::ENOENT, "stat keys/{alias}: a non-canonical spelling must not exist (errno {e})");
    }
    for bad in ["%int:x", "%nosuchtype:1", "%bytes:%zz", "%float:abc", "%noseparator"] {
        let e = errno_of(std::fs::write(m.keys().join(bad), b"x"));
        assert_eq!(e, libc::EINVAL, "creating keys/{bad}: a malformed escaped name (errno {e})");
    }
    for len in [256, 300, 1000] {
        let e = errno_of(std::fs::write(m.keys().join("n".repeat(len)), b"x"));
        assert_eq!(e, libc::ENAMETOOLONG, "creating a {len}-byte name (errno {e})");
        let e = errno_of(std::fs::metadata(m.keys().join("n".repeat(len))));
        assert_eq!(e, libc::ENAMETOOLONG, "stat of a {len}-byte name (errno {e})");
    }
    std::fs::write(m.keys().join("n".repeat(255)), b"x").unwrap();
    assert_eq!(get(&m, &format!("'{}'", "n".repeat(255))), "(b'x', None, None)");
    // A long key's %sha256 name reads and is the key_type of its key.
    pyc(&m, "c[('long',) * 100] = b'long'", &[]);
    let long: Vec<String> = listing(&m.keys()).into_iter().filter(|n| n.starts_with("%sha256:")).collect();
    assert_eq!(long.len(), 1, "a pickled key over 255 bytes is one %sha256 name: {:?}", listing(&m.keys()));
    assert_eq!(long[0].len(), "%sha256:".len() + 64);
    assert_eq!(std::fs::read(m.keys().join(&long[0])).unwrap(), b"long");
    assert_eq!(getxattr(&m.keys().join(&long[0]), "user.diskcache.key_type").unwrap(), b"pickle");
}

#[test]
fn the_content_table_and_stat_table_hold() {
    let m = Mounted::with(
        |c| {
            py(
                "import sys, diskcache\nc = diskcache.Cache(sys.argv[1])\nc['b'] = b'\\x00\\xff'\nc['s'] = 'caf\\u00e9'\nc['i'] = 42\nc['f'] = 1e16\nc['p'] = {'x': 1}\nc['t'] = 'a\\r\\nb' * 20000",
                &[c.to_str().unwrap()],
            );
        },
        &[],
    );
    let k = m.keys();
    for (name, content, kind) in [
        ("b", &b"\x00\xff"[..], "bytes"),
        ("s", "café".as_bytes(), "str"),
        ("i", b"42", "int"),
        ("f", b"1e+16", "float"),
    ] {
        assert_eq!(std::fs::read(k.join(name)).unwrap(), content, "content of {name}");
        assert_eq!(getxattr(&k.join(name), "user.diskcache.type").unwrap(), kind.as_bytes(), "type of {name}");
    }
    let pickled = pyc(&m, "import pickle\nprint(pickle.dumps({'x': 1}, protocol=5).hex())", &[]);
    let hex: String = std::fs::read(k.join("p")).unwrap().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, pickled, "a pickled value's file is its pickle bytes");
    assert_eq!(getxattr(&k.join("p"), "user.diskcache.type").unwrap(), b"pickle");
    // A file-backed str is shown as stored; python-diskcache translates \r\n.
    assert_eq!(std::fs::read(k.join("t")).unwrap(), "a\r\nb".repeat(20000).as_bytes());
    assert_eq!(pyc(&m, "print(c['t'] == 'a\\nb' * 20000)", &[]), "True");

    // Modes: 0644 files, 0755 directories; owner: the user who mounted.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    for (path, mode) in [
        (k.join("b"), libc::S_IFREG | 0o644),
        (k.clone(), libc::S_IFDIR | 0o755),
        (m.mnt.clone(), libc::S_IFDIR | 0o755),
    ] {
        let md = std::fs::metadata(&path).unwrap();
        assert_eq!((md.mode(), md.uid(), md.gid()), (mode, uid, gid), "mode and owner of {}", path.display());
    }
    drop(m);

    // Read-only: 0444 and 0555.
    let m = Mounted::with(
        |c| drop(py("import sys, diskcache; diskcache.Cache(sys.argv[1])['k'] = b'v'", &[c.to_str().unwrap()])),
        &["--read-only"],
    );
    for (path, mode) in [(m.keys().join("k"), libc::S_IFREG | 0o444), (m.keys(), libc::S_IFDIR | 0o555)] {
        let md = std::fs::metadata(&path).unwrap();
        assert_eq!(md.mode(), mode, "read-only mode of {}: {:o}", path.display(), md.mode());
    }
}

#[test]
fn the_xattr_table_holds() {
    let m = Mounted::new();
    let k = m.keys();
    let f = k.join("x");
    std::fs::write(&f, b"42\n").unwrap();
    // Always there: type and key_type; expire_time and tag absent.
    assert_eq!(getxattr(&f, "user.diskcache.type").unwrap(), b"bytes");
    assert_eq!(getxattr(&f, "user.diskcache.key_type").unwrap(), b"str");
    assert_eq!(getxattr(&f, "user.diskcache.expire_time"), Err(libc::ENODATA), "never expires: absent");
    assert_eq!(getxattr(&f, "user.diskcache.tag"), Err(libc::ENODATA), "untagged: absent");
    let listed = listxattr(&f);
    for name in ["user.diskcache.type", "user.diskcache.key_type"] {
        assert!(listed.contains(&name.to_string()), "listxattr lacks {name}: {listed:?}");
    }

    // expire_time: absolute Unix time as Python's float repr, exactly.
    setxattr(&f, "user.diskcache.expire_time", b"4102444800.5").unwrap();
    assert_eq!(getxattr(&f, "user.diskcache.expire_time").unwrap(), b"4102444800.5");
    assert_eq!(get(&m, "'x'"), "(b'42\\n', 4102444800.5, None)");
    let listed = listxattr(&f);
    assert!(listed.contains(&"user.diskcache.expire_time".to_string()), "listxattr: {listed:?}");
    assert_eq!(removexattr(&f, "user.diskcache.expire_time"), 0, "remove expire_time");
    assert_eq!(get(&m, "'x'"), "(b'42\\n', None, None)", "removing expire_time: never expires");
    // A past time (the doc's own example, 1795572677.5, is Nov 2026) expires the entry.
    std::fs::write(k.join("past"), b"p").unwrap();
    setxattr(&k.join("past"), "user.diskcache.expire_time", b"1000000000.5").unwrap();
    assert_eq!(get(&m, "'past'"), "(None, None, None)", "a past expire_time expires the entry");
    assert_eq!(errno_of(std::fs::read(k.join("past"))), libc::ENOENT, "an expired entry is not readable");

    // tag: str as text; other types (and a str starting with %) escaped.
    for (text, python) in [
        ("grp", "'grp'"),
        ("%int:3", "3"),
        ("%float:2.5", "2.5"),
        ("%bytes:%01t", "b'\\x01t'"),
        ("%str:%25t", "'%t'"),
        ("with space", "'with space'"),
    ] {
        setxattr(&f, "user.diskcache.tag", text.as_bytes()).unwrap_or_else(|e| panic!("set tag {text}: errno {e}"));
        assert_eq!(get(&m, "'x'"), format!("(b'42\\n', None, {python})"), "tag set as {text:?}");
        assert_eq!(getxattr(&f, "user.diskcache.tag").unwrap(), text.as_bytes(), "tag read back");
    }
    pyc(&m, "c.set('py', b'', tag='%p')", &[]);
    assert_eq!(getxattr(&k.join("py"), "user.diskcache.tag").unwrap(), b"%str:%25p", "a str tag starting with %");
    assert_eq!(removexattr(&f, "user.diskcache.tag"), 0);
    assert_eq!(get(&m, "'x'"), "(b'42\\n', None, None)", "removing the tag untags");
    assert_eq!(setxattr(&f, "user.diskcache.tag", b"%int:x"), Err(libc::EINVAL), "a malformed escaped tag");

    // type: conversions as Python's int()/float() would parse the content.
    for (content, kind, python) in [
        (&b"42\n"[..], "int", "42"),
        (b" -7 ", "int", "-7"),
        (b"1_000", "int", "1000"),
        (b"1e3\n", "float", "1000.0"),
        (b"2.5", "float", "2.5"),
        ("café".as_bytes(), "str", "'café'"),
        (b"raw", "bytes", "b'raw'"),
    ] {
        std::fs::write(&f, content).unwrap();
        setxattr(&f, "user.diskcache.type", kind.as_bytes())
            .unwrap_or_else(|e| panic!("type={kind} on {content:?}: errno {e}"));
        assert_eq!(get(&m, "'x'"), format!("({python}, None, None)"), "type={kind} on content {content:?}");
        assert_eq!(getxattr(&f, "user.diskcache.type").unwrap(), kind.as_bytes());
    }
    let pickle = pyc(&m, "import pickle\nprint(pickle.dumps({'d': [1]}, protocol=5).hex())", &[]);
    let bytes: Vec<u8> =
        (0..pickle.len()).step_by(2).map(|i| u8::from_str_radix(&pickle[i..i + 2], 16).unwrap()).collect();
    std::fs::write(&f, &bytes).unwrap();
    setxattr(&f, "user.diskcache.type", b"pickle").unwrap();
    assert_eq!(get(&m, "'x'"), "({'d': [1]}, None, None)", "type=pickle: the content is the pickle");
    for (content, kind) in
        [(&b"\xff\xfe"[..], "str"), (b"4 2", "int"), (b"0x10", "int"), (b"one", "float"), (b"", "int")]
    {
        std::fs::write(&f, content).unwrap();
        assert_eq!(
            setxattr(&f, "user.diskcache.type", kind.as_bytes()),
            Err(libc::EINVAL),
            "type={kind} on {content:?}"
        );
        assert_eq!(
            get(&m, "'x'"),
            format!("({}, None, None)", py_bytes(content)),
            "a refused conversion changes nothing"
        );
    }
    assert_eq!(setxattr(&f, "user.diskcache.type", b"list"), Err(libc::EINVAL));
    // Removing the type makes the value bytes (a copy of a file without it).
    std::fs::write(&f, b"abc").unwrap();
    setxattr(&f, "user.diskcache.type", b"str").unwrap();
    assert_eq!(get(&m, "'x'"), "('abc', None, None)");
    assert_eq!(removexattr(&f, "user.diskcache.type"), 0, "remove type");
    assert_eq!(get(&m, "'x'"), "(b'abc', None, None)", "removing the type stores bytes");
    assert_eq!(getxattr(&f, "user.diskcache.type").unwrap(), b"bytes");

    // key_type: accepted and ignored when it names a type, else EINVAL.
    assert_eq!(setxattr(&f, "user.diskcache.key_type", b"int"), Ok(()), "key_type naming a type is accepted");
    assert_eq!(getxattr(&f, "user.diskcache.key_type").unwrap(), b"str", "... and ignored");
    assert_eq!(setxattr(&f, "user.diskcache.key_type", b"nonsense"), Err(libc::EINVAL));
    assert_eq!(removexattr(&f, "user.diskcache.key_type"), 0, "remove key_type: accepted");
    assert_eq!(getxattr(&f, "user.diskcache.key_type").unwrap(), b"str", "... and ignored");

    // Other names, sizes.
    assert_eq!(getxattr(&f, "user.other"), Err(libc::ENODATA));
    assert_eq!(getxattr(&f, "user.diskcache.nope"), Err(libc::ENODATA));
    assert_eq!(setxattr(&f, "user.other", b"v"), Err(libc::ENOTSUP));
    let name = CString::new("user.diskcache.key_type").unwrap();
    let mut small = [0u8; 2];
    let r = unsafe { libc::getxattr(cstr(&f).as_ptr(), name.as_ptr(), small.as_mut_ptr().cast(), small.len()) };
    assert_eq!(last_errno(r as i32), libc::ERANGE, "getxattr into a 2-byte buffer");
    let r = unsafe { libc::getxattr(cstr(&f).as_ptr(), name.as_ptr(), std::ptr::null_mut(), 0) };
    assert_eq!(r, 3, "getxattr size query of key_type 'str'");

    // An xattr set on a file still open for writing applies at commit.
    let mut w = OpenOptions::new().write(true).create(true).truncate(true).open(k.join("open")).unwrap();
    w.write_all(b"3.5").unwrap();
    setxattr(&k.join("open"), "user.diskcache.type", b"float").unwrap();
    setxattr(&k.join("open"), "user.diskcache.tag", b"later").unwrap();
    drop(w);
    assert_eq!(get(&m, "'open'"), "(3.5, None, 'later')", "xattrs set while open apply to the commit");
    let check = pyc(&m, "print(c.check())", &[]);
    assert_eq!(check, "[]");
}

fn py_bytes(b: &[u8]) -> String {
    let mut s = String::from("b'");
    for &c in b {
        match c {
            b'\'' | b'\\' => s.push_str(&format!("\\{}", c as char)),
            0x20..=0x7e => s.push(c as char),
            _ => s.push_str(&format!("\\x{c:02x}")),
        }
    }
    s.push('\'');
    s
}

#[test]
fn the_write_rules_hold() {
    let m = Mounted::new();
    let k = m.keys();
    pyc(
        &m,
        "c.set('kept', 'a str', tag='t', expire=3600)\nc['trunc'] = b'old'\nc['untouched'] = 'text'\nc['cw'] = b''",
        &[],
    );
    let kept_expire = pyc(&m, "print(repr(c.get('kept', expire_time=True)[1]))", &[]);

    // create commits an empty value.
    drop(std::fs::File::create(k.join("created")).unwrap());
    assert_eq!(get(&m, "'created'"), "(b'', None, None)", "create commits an empty value");
    // O_TRUNC commits an empty value.
    drop(OpenOptions::new().write(true).truncate(true).open(k.join("trunc")).unwrap());
    assert_eq!(get(&m, "'trunc'"), "(b'', None, None)", "open(O_TRUNC) commits an empty value");
    // Opened for writing, never written: not committed.
    let before = times(&m, "untouched");
    drop(OpenOptions::new().write(true).open(k.join("untouched")).unwrap());
    drop(OpenOptions::new().append(true).open(k.join("untouched")).unwrap());
    assert_eq!(get(&m, "'untouched'"), "('text', None, None)", "opened for writing, never written");
    assert_eq!(times(&m, "untouched"), before, "... and its store_time is unchanged");
    // Rewriting keeps tag, expiry and type (content valid for it).
    std::fs::write(k.join("kept"), b"new").unwrap();
    assert_eq!(get(&m, "'kept'"), format!("('new', {kept_expire}, 't')"), "rewritten content keeps tag, expiry, type");

    // fsync commits; so does each close. (Checked by reading through the
    // mount, in this process: spawning Python while a writer is open would
    // close the child's inherited copy of the descriptor at exec, which is
    // a FLUSH, i.e. a commit, by itself.)
    let mut w = OpenOptions::new().write(true).create(true).truncate(true).open(k.join("synced")).unwrap();
    w.write_all(b"first").unwrap();
    w.sync_all().unwrap();
    assert_eq!(std::fs::read(k.join("synced")).unwrap(), b"first", "fsync commits");
    w.write_all(b"+more").unwrap();
    drop(w);
    assert_eq!(get(&m, "'synced'"), "(b'first+more', None, None)", "close commits");

    // Two writers on one key: each commits its own whole value; last wins.
    let mut w1 = OpenOptions::new().read(true).write(true).open(k.join("cw")).unwrap();
    let mut w2 = OpenOptions::new().read(true).write(true).open(k.join("cw")).unwrap();
    w1.write_all(b"AAAA").unwrap();
    w2.write_all(b"BB").unwrap();
    drop(w1);
    assert_eq!(std::fs::read(k.join("cw")).unwrap(), b"AAAA", "first writer's commit (read through the mount)");
    drop(w2);
    assert_eq!(get(&m, "'cw'"), "(b'BB', None, None)", "second writer commits its own whole value, not a merge");

    // Deleted while a writer has it open: the writer's commits are dropped.
    let mut w = OpenOptions::new().write(true).create(true).truncate(true).open(k.join("unlinked")).unwrap();
    w.write_all(b"before").unwrap();
    w.flush().unwrap();
    std::fs::remove_file(k.join("unlinked")).unwrap();
    w.write_all(b"after").unwrap();
    w.sync_all().ok();
    drop(w);
    assert_eq!(get(&m, "'unlinked'"), "(None, None, None)", "a deleted entry's writer must not bring it back");
    assert!(!listing(&k).contains(&"unlinked".to_string()));

    assert_eq!(pyc(&m, "print(c.check())", &[]), "[]");
}

fn show(b: &[u8]) -> String {
    format!("{} bytes {:?}", b.len(), String::from_utf8_lossy(&b[..b.len().min(8)]))
}

/// "An open file is a snapshot: a reader sees the whole value as it was
/// when it opened the file, never a mix of an old and a new value, even if
/// another process replaces or deletes the entry meanwhile." Read as `cat`
/// and Python's `f.read()` do (fstat for the size, then read to EOF).
#[test]
fn an_open_file_is_a_snapshot() {
    let m = Mounted::new();
    let k = m.keys();
    let mut failures = Vec::new();
    for (name, old, new) in [
        ("shrunk inline", vec![b'o'; 10], vec![b'n'; 5]),
        ("grown inline", vec![b'o'; 10], vec![b'n'; 20]),
        ("shrunk file", vec![b'o'; 100_000], vec![b'n'; 60_000]),
        ("grown file", vec![b'o'; 60_000], vec![b'n'; 100_000]),
        ("deleted", vec![b'o'; 50_000], vec![]),
    ] {
        let set = "c[sys.argv[2]] = sys.argv[3].encode() * int(sys.argv[4])";
        pyc(&m, set, &[name, "o", &old.len().to_string()]);
        std::thread::sleep(Duration::from_millis(1100)); // past the attribute timeout: a fresh open
        let mut r = std::fs::File::open(k.join(name)).unwrap();
        let mut head = [0u8; 3];
        r.read_exact(&mut head).unwrap();
        if new.is_empty() {
            pyc(&m, "c.delete(sys.argv[2])", &[name]);
        } else {
            pyc(&m, set, &[name, "n", &new.len().to_string()]);
        }
        let mut rest = Vec::new();
        let read = r.read_to_end(&mut rest);
        let first = [&head[..], &rest[..]].concat();
        r.seek(SeekFrom::Start(0)).unwrap();
        let mut again = Vec::new();
        let reread = r.read_to_end(&mut again);
        if read.is_err() || reread.is_err() || first != old || again != old {
            failures.push(format!(
                "{name}: opened on {}; the value then replaced by {}; the reader read {} ({read:?}), \
                 after a seek to 0 {} ({reread:?})",
                show(&old),
                if new.is_empty() { "a delete".to_string() } else { show(&new) },
                show(&first),
                show(&again),
            ));
        }
    }
    assert!(failures.is_empty(), "a reader did not see its whole snapshot:\n{}", failures.join("\n"));
}

#[test]
fn delete_rename_times_and_modes_hold() {
    let m = Mounted::new();
    let k = m.keys();
    pyc(
        &m,
        "c.set('a', b'va', tag='ta', expire=3600)\nc['c'] = b'vc'\nc['d'] = b'vd'\nc.set('e', b'x', expire=0.001)",
        &[],
    );
    let a = get(&m, "'a'");
    let a_times = times(&m, "a");

    // mv keeps value, tag, expiry and times; an existing target is replaced.
    std::fs::rename(k.join("a"), k.join("b")).unwrap();
    assert_eq!(get(&m, "'b'"), a, "mv keeps value, tag and expiry");
    assert_eq!(times(&m, "b"), a_times, "mv keeps store_time and access_time");
    assert_eq!(get(&m, "'a'"), "(None, None, None)");
    std::fs::rename(k.join("b"), k.join("c")).unwrap();
    assert_eq!(get(&m, "'c'"), a, "mv onto an existing key replaces it");
    assert_eq!(pyc(&m, "print(len(c))", &[]), "3", "c, d and the expired e");
    // RENAME_NOREPLACE, RENAME_EXCHANGE, and renames out of keys/.
    assert_eq!(renameat2(&k.join("c"), &k.join("d"), libc::RENAME_NOREPLACE), libc::EEXIST);
    assert_eq!(renameat2(&k.join("c"), &k.join("d"), libc::RENAME_EXCHANGE), libc::EINVAL);
    assert_eq!(get(&m, "'d'"), "(b'vd', None, None)", "refused renames change nothing");
    assert_eq!(renameat2(&k.join("c"), &k.join("fresh"), libc::RENAME_NOREPLACE), 0);
    assert_eq!(errno_of(std::fs::rename(k.join("fresh"), m.mnt.join("fresh"))), libc::EXDEV, "rename out of keys/");
    assert_eq!(get(&m, "'fresh'"), a);
    // A rename into keys/ from another file system: mv copies.
    let outside = m.root.path().join("outside");
    std::fs::write(&outside, b"from outside").unwrap();
    let out = sh(&format!("mv '{}' '{}'", outside.display(), k.join("moved").display()));
    assert!(out.status.success(), "mv from outside: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(get(&m, "'moved'"), "(b'from outside', None, None)");

    // rm deletes; a missing or expired entry is ENOENT.
    std::fs::remove_file(k.join("d")).unwrap();
    assert_eq!(get(&m, "'d'"), "(None, None, None)");
    assert_eq!(errno_of(std::fs::remove_file(k.join("d"))), libc::ENOENT, "rm of a missing entry");
    assert_eq!(errno_of(std::fs::remove_file(k.join("e"))), libc::ENOENT, "rm of an expired entry");

    // touch -d sets store_time (mtime); touch -a -d sets access_time (atime).
    let out = sh(&format!("touch -m -d '@981173106.5' '{}'", k.join("fresh").display()));
    assert!(out.status.success(), "touch -m: {}", String::from_utf8_lossy(&out.stderr));
    let out = sh(&format!("touch -a -d '@981173000.25' '{}'", k.join("fresh").display()));
    assert!(out.status.success(), "touch -a: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(times(&m, "fresh"), "(981173106.5, 981173000.25)", "(store_time, access_time) after touch -d");
    std::thread::sleep(Duration::from_millis(1100));
    let md = std::fs::metadata(k.join("fresh")).unwrap();
    assert_eq!(
        (md.mtime(), md.mtime_nsec(), md.atime(), md.atime_nsec()),
        (981173106, 500_000_000, 981173000, 250_000_000)
    );

    // chmod and chown succeed and change nothing.
    let out = sh(&format!("chmod 600 '{0}' && chown 1234:1234 '{0}'", k.join("fresh").display()));
    assert!(out.status.success(), "chmod/chown: {}", String::from_utf8_lossy(&out.stderr));
    let md = std::fs::metadata(k.join("fresh")).unwrap();
    assert_eq!((md.mode() & 0o7777, md.uid()), (0o644, unsafe { libc::geteuid() }), "chmod/chown change nothing");
    assert_eq!(get(&m, "'fresh'"), a, "chmod/chown leave the entry alone");

    // Not supported.
    assert_eq!(errno_of(std::fs::hard_link(k.join("fresh"), k.join("hard"))), libc::EPERM, "link");
    assert_eq!(errno_of(std::os::unix::fs::symlink("fresh", k.join("sym"))), libc::EPERM, "symlink in keys/");
    let fifo = cstr(&k.join("fifo"));
    assert_eq!(last_errno(unsafe { libc::mknod(fifo.as_ptr(), libc::S_IFIFO | 0o644, 0) }), libc::EPERM, "mknod fifo");
    // Directories in keys/ are parts of str keys (docs/SEMANTICS.md, "Keys as paths").
    std::fs::create_dir(k.join("dir")).expect("mkdir in keys/");
    assert_eq!(errno_of(std::fs::create_dir(k.join("dir"))), libc::EEXIST, "mkdir of an existing directory");
    std::fs::remove_dir(k.join("dir")).expect("rmdir of an empty directory in keys/");
    assert_eq!(errno_of(std::fs::create_dir(m.mnt.join("dir"))), libc::EPERM, "mkdir in the root");
    assert_eq!(errno_of(std::fs::remove_dir(&k)), libc::EPERM, "rmdir keys/");
    assert_eq!(errno_of(std::fs::write(m.mnt.join("file"), b"x")), libc::EPERM, "create in the root");
    // The views exist: mkdir of their names is EEXIST, of the hidden ones too.
    for view in ["queues", "task", "tags", "ops", "settings"] {
        assert_eq!(errno_of(std::fs::create_dir(m.mnt.join(view))), libc::EEXIST, "mkdir {view}");
    }
    assert_eq!(std::fs::read(k.join("fresh")).unwrap(), b"va", "the daemon keeps serving");
    assert_eq!(pyc(&m, "print(c.check())", &[]), "[]");
    // Last: "mknod (other than regular files): EPERM" -- a regular one creates.
    let reg = cstr(&k.join("mknod"));
    assert_eq!(last_errno(unsafe { libc::mknod(reg.as_ptr(), libc::S_IFREG | 0o644, 0) }), 0, "mknod regular");
    assert_eq!(get(&m, "'mknod'"), "(b'', None, None)", "mknod of a regular file creates an empty entry");
}

#[test]
fn an_entry_that_expires_while_mounted_is_gone_within_a_second() {
    let m = Mounted::new();
    pyc(&m, "c.set('soon', b'v', expire=1)\nc['stay'] = b's'", &[]);
    assert_eq!(std::fs::read(m.keys().join("soon")).unwrap(), b"v");
    let deadline = pyc(&m, "print(c.get('soon', expire_time=True)[1])", &[]).parse::<f64>().unwrap();
    let now = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    while now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let start = Instant::now();
    loop {
        let listed = listing(&m.keys());
        let gone = !listed.contains(&"soon".to_string())
            && errno_of(std::fs::metadata(m.keys().join("soon"))) == libc::ENOENT
            && errno_of(std::fs::read(m.keys().join("soon"))) == libc::ENOENT;
        if gone {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_millis(1100),
            "expired entry still there 1 s after expiry: {listed:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // "the row stays until diskcache's expire/cull removes it".
    assert_eq!(pyc(&m, "print(c._sql('SELECT COUNT(*) FROM Cache').fetchone()[0])", &[]), "2");
}

#[test]
fn a_read_only_mount_refuses_every_change_and_creates_nothing() {
    // No cache: the mount fails and creates nothing.
    let root = tempfile::tempdir().unwrap();
    let (cache, mnt) = (root.path().join("none"), root.path().join("mnt"));
    std::fs::create_dir(&mnt).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_diskcachefs"))
        .arg("mount")
        .arg(&cache)
        .arg(&mnt)
        .arg("--read-only")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            if support::is_mounted(&mnt) {
                let _ = std::process::Command::new("umount").arg("-l").arg(&mnt).status();
            }
            panic!("a read-only mount of a missing cache is still running after 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success(), "a read-only mount of a missing cache must fail");
    assert!(!cache.exists(), "a read-only mount created the cache directory");
    assert!(!support::is_mounted(&mnt));

    let m = Mounted::with(
        |c| {
            drop(py(
                "import sys, diskcache; diskcache.Cache(sys.argv[1]).set('k', b'v', tag='t')",
                &[c.to_str().unwrap()],
            ))
        },
        &["--read-only"],
    );
    let k = m.keys();
    let f = k.join("k");
    assert_eq!(errno_of(OpenOptions::new().write(true).open(&f)), libc::EROFS, "open for writing");
    assert_eq!(errno_of(OpenOptions::new().write(true).truncate(true).open(&f)), libc::EROFS, "O_TRUNC");
    assert_eq!(errno_of(std::fs::File::create(k.join("new"))), libc::EROFS, "create");
    assert_eq!(errno_of(std::fs::rename(&f, k.join("k2"))), libc::EROFS, "rename");
    assert_eq!(errno_of(std::fs::remove_file(&f)), libc::EROFS, "unlink");
    let out = sh(&format!("truncate -s 0 '{}'", f.display()));
    assert!(!out.status.success(), "truncate on a read-only mount succeeded");
    let out = sh(&format!("touch -d @1 '{}'", f.display()));
    assert!(!out.status.success(), "touch -d on a read-only mount succeeded");
    assert_eq!(setxattr(&f, "user.diskcache.expire_time", b"1"), Err(libc::EROFS), "setxattr");
    assert_eq!(removexattr(&f, "user.diskcache.tag"), libc::EROFS, "removexattr");
    assert_eq!(errno_of(std::fs::create_dir(m.mnt.join("tags/new"))), libc::EROFS, "mkdir in tags/");
    assert_eq!(errno_of(std::fs::remove_dir(m.mnt.join("tags/t"))), libc::EROFS, "rmdir tags/t");
    assert_eq!(std::fs::read(&f).unwrap(), b"v", "reads still work");
    assert_eq!(get(&m, "'k'"), "(b'v', None, 't')");
}

#[test]
fn errors_from_a_crafted_cache_are_the_documented_errnos() {
    let m = Mounted::with(
        |c| {
            py(
                "import sys, diskcache\nc = diskcache.Cache(sys.argv[1])\nc['outside'] = b'o' * 50000\nc['badmode'] = b'm'\nc['badfile'] = b'f' * 50000\nc['fine'] = b'ok'\nc._sql(\"UPDATE Cache SET filename = '../secret.val' WHERE key = 'outside'\")\nc._sql(\"UPDATE Cache SET mode = 9 WHERE key IN ('badmode', 'badfile')\")",
                &[c.to_str().unwrap()],
            );
            std::fs::write(c.parent().unwrap().join("secret.val"), b"must not be served").unwrap();
        },
        &[],
    );
    let k = m.keys();
    assert_eq!(errno_of(std::fs::read(k.join("outside"))), libc::EACCES, "a value file outside the cache directory");
    let mut wrong = Vec::new();
    for name in ["badmode", "badfile"] {
        let e = errno_of(std::fs::read(k.join(name)));
        if e != libc::EIO {
            let content =
                std::fs::read(k.join(name)).map(|c| String::from_utf8_lossy(&c[..c.len().min(8)]).to_string());
            wrong.push(format!("{name} (mode 9): errno {e}, read {content:?}"));
        }
    }
    assert_eq!(std::fs::read(k.join("fine")).unwrap(), b"ok", "the daemon keeps serving");
    let log = m.log();
    assert!(log.contains("outside") || log.contains("secret"), "EACCES is logged; daemon log:\n{log}");
    assert_eq!(std::fs::read(m.root.path().join("secret.val")).unwrap(), b"must not be served");
    assert!(wrong.is_empty(), "rows python-diskcache could not have written must be EIO: {wrong:?}");
}

/// "Changes made by python-diskcache ... are visible within one second":
/// new keys (also after the mount answered that the name did not exist),
/// deletions, new values of another length, tags and expiry.
#[test]
fn peer_changes_are_visible_within_a_second() {
    let m = Mounted::new();
    let k = m.keys();
    pyc(&m, "c['gone'] = b'here'\nc.set('meta', b'm')\nc['size'] = b'12345'", &[]);
    // The mount sees each first, so the kernel has them cached.
    assert_eq!(errno_of(std::fs::metadata(k.join("late"))), libc::ENOENT);
    assert_eq!(std::fs::read(k.join("gone")).unwrap(), b"here");
    assert_eq!(std::fs::metadata(k.join("size")).unwrap().len(), 5);
    assert_eq!(getxattr(&k.join("meta"), "user.diskcache.tag"), Err(libc::ENODATA));
    pyc(
        &m,
        "c['late'] = b'new'\ndel c['gone']\nc['size'] = b'1234567890'\nc.set('meta', b'm', tag='t', expire=7200)",
        &[],
    );
    let start = Instant::now();
    loop {
        let late = std::fs::read(k.join("late")).ok();
        let gone = errno_of(std::fs::metadata(k.join("gone")));
        let size = std::fs::metadata(k.join("size")).map(|md| md.len()).ok();
        let content = std::fs::read(k.join("size")).ok();
        let tag = getxattr(&k.join("meta"), "user.diskcache.tag");
        let expire = getxattr(&k.join("meta"), "user.diskcache.expire_time").is_ok();
        let listed = listing(&k);
        let ok = late.as_deref() == Some(&b"new"[..])
            && gone == libc::ENOENT
            && size == Some(10)
            && content.as_deref() == Some(&b"1234567890"[..])
            && tag == Ok(b"t".to_vec())
            && expire
            && listed.contains(&"late".to_string())
            && !listed.contains(&"gone".to_string());
        if ok {
            break;
        }
        let state = format!(
            "late={late:?} stat(gone) errno={gone} size={size:?} content={content:?} tag={tag:?} expire set={expire} \
             listing={listed:?}"
        );
        assert!(start.elapsed() < Duration::from_millis(1000), "peer changes not all visible within 1 s: {state}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// "Culling applies as in python-diskcache": the same writes through the
/// mount and with `cache.set` into a twin cache leave the same keys.
#[test]
fn culling_matches_cache_set() {
    let setup = |c: &Path| {
        py("import sys, diskcache; diskcache.Cache(sys.argv[1], size_limit=300_000)", &[c.to_str().unwrap()]);
    };
    let m = Mounted::with(setup, &[]);
    let twin = m.root.path().join("twin");
    setup(&twin);
    let keys = "import sys, diskcache; print(sorted(diskcache.Cache(sys.argv[1])))";
    for i in 0..5 {
        let name = format!("k{i}");
        std::fs::write(m.keys().join(&name), vec![b'x'; 100_000]).unwrap();
        py(
            "import sys, diskcache; diskcache.Cache(sys.argv[1])[sys.argv[2]] = b'x' * 100_000",
            &[twin.to_str().unwrap(), &name],
        );
        let (mounted, set) = (py(keys, &[m.cache.to_str().unwrap()]), py(keys, &[twin.to_str().unwrap()]));
        assert_eq!(mounted, set, "keys left after writing {name} through the mount (left) and with cache.set (right)");
    }
    assert_eq!(pyc(&m, "print(c.check())", &[]), "[]");
}

/// Tenet 2, "The mount never writes what python-diskcache cannot read",
/// against the `user.diskcache.type` conversions ("content must parse as
/// one, as Python's int()/float() would"; "pickle: the content becomes a
/// pickled value"), and the errors table's other side: a row
/// python-diskcache itself writes is never EIO.
#[test]
fn conversions_never_store_what_python_cannot_read() {
    let m = Mounted::with(
        |c| {
            drop(py(
                "import sys, diskcache; diskcache.Cache(sys.argv[1])['nan'] = float('nan')",
                &[c.to_str().unwrap()],
            ))
        },
        &[],
    );
    let k = m.keys();
    let mut failures = Vec::new();
    // python-diskcache stores a NaN float as NULL (SQLite has no NaN) and
    // reads it back as None: a row it writes, so not EIO.
    if let Err(e) = std::fs::read(k.join("nan")) {
        failures.push(format!("keys/nan (set by python-diskcache as float('nan')): read failed: {e}"));
    }
    // (content, type, what python-diskcache must then return: a Python
    // expression compared with ==, or None when EINVAL is the only answer)
    let cases: [(&[u8], &str, Option<&str>); 4] = [
        (b"not a pickle", "pickle", None),
        (b"\x80\x05K", "pickle", None), // a truncated pickle
        // NaN is refused (docs/SEMANTICS.md: SQLite stores it as NULL,
        // which Python reads back as None, not the float).
        (b"nan", "float", None),
        (b"111111111111111111111111111111", "int", Some("v == 111111111111111111111111111111")),
    ];
    for (i, (content, kind, want)) in cases.iter().enumerate() {
        let name = format!("c{i}");
        std::fs::write(k.join(&name), content).unwrap();
        let set = setxattr(&k.join(&name), "user.diskcache.type", kind.as_bytes());
        let got = pyc(
            &m,
            "import math\ntry:\n    v = c[sys.argv[2]]\n    print(repr(v), eval(sys.argv[3]))\nexcept Exception as e:\n    print('python-diskcache failed:', repr(e))",
            &[&name, want.unwrap_or("False")],
        );
        let readable = std::fs::read(k.join(&name)).map(|_| ()).map_err(|e| e.to_string());
        let ok = match set {
            // Refused only where no value of that type is expected.
            Err(e) => want.is_none() && e == libc::EINVAL && got.ends_with(" False") && got.starts_with("b'"),
            Ok(()) => want.is_some() && got.ends_with(" True") && readable.is_ok(),
        };
        if !ok {
            failures.push(format!(
                "type={kind} on content {:?}: setxattr {set:?} (Err = errno), then python-diskcache c[{name:?}] -> {got}, \
                 read through the mount: {readable:?}",
                String::from_utf8_lossy(content)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
