//! Keys as paths without FUSE (docs/SEMANTICS.md, "Keys as paths"):
//! proptest fills a cache with str keys drawn from parts that collide on
//! purpose (empty, `.`, `%`, shared prefixes, keys that are also
//! directories), plus keys of other types and directories made by mkdir,
//! then walks `keys/` through `DiskCacheFs` with replies of random sizes,
//! resuming at every offset. The walk must reach every key exactly once
//! at the path docs/SEMANTICS.md gives it (written out here, not taken
//! from `paths.rs`; with `%self` where the key is also a directory), find
//! exactly the directories the keys and the mkdirs make, each listing in
//! the database's key order, and renaming a random directory must move
//! exactly the keys under it.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::time::Duration;

use diskcachefs::cache::{Cache, Key, Value};
use diskcachefs::fs::filesystem::{Attr, DirReplier, DiskCacheFs, FsConfig, Kind};
use diskcachefs::fs::inode::KEYS_DIR;
use proptest::prelude::*;

struct Page {
    cap: usize,
    entries: Vec<(u64, u64, Kind, String)>,
}

impl DirReplier for Page {
    fn add(&mut self, ino: u64, next_offset: u64, kind: Kind, name: &OsStr, _attr: Option<&Attr>) -> bool {
        if self.entries.len() >= self.cap {
            return true;
        }
        self.entries.push((ino, next_offset, kind, name.to_str().unwrap().to_string()));
        false
    }
}

/// A directory's entries (without `.` and `..`), read `cap` at a time.
fn list(fs: &DiskCacheFs, dir: u64, plus: bool, cap: usize) -> Vec<(u64, Kind, String)> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let mut page = Page { cap, entries: Vec::new() };
        fs.readdir(dir, offset, plus, &mut page).unwrap();
        let Some(last) = page.entries.last() else { return out };
        offset = last.1;
        out.extend(page.entries.into_iter().filter(|e| e.3 != "." && e.3 != "..").map(|(i, _, k, n)| (i, k, n)));
    }
}

/// What one walk of `keys/` found.
#[derive(Default)]
struct Walk {
    /// Every file's path.
    files: Vec<String>,
    /// Every directory's path.
    dirs: Vec<String>,
    /// Each directory's listing, in listing order (`keys/` first).
    order: Vec<Vec<String>>,
}

/// Every file and directory below `dir`, and the listings in order.
fn walk(fs: &DiskCacheFs, dir: u64, at: &str, cap: usize, out: &mut Walk) {
    let entries = list(fs, dir, cap.is_multiple_of(2), cap);
    out.order.push(entries.iter().map(|e| e.2.clone()).collect());
    for (_, kind, name) in entries {
        let path = if at.is_empty() { name.clone() } else { format!("{at}/{name}") };
        let attr = fs.lookup(dir, OsStr::new(&name)).unwrap_or_else(|e| panic!("lookup {path}: {e}"));
        match kind {
            Kind::Directory => {
                assert_eq!(attr.kind, Kind::Directory, "{path}");
                out.dirs.push(path.clone());
                walk(fs, attr.ino, &path, cap, out);
            }
            _ => {
                assert_ne!(attr.kind, Kind::Directory, "{path}");
                out.files.push(path);
            }
        }
        fs.forget(attr.ino, 1);
    }
}

/// A part's name, written out from docs/SEMANTICS.md ("Keys to names",
/// "Keys as paths") for every part `part()` draws (and "renamed"): a
/// usable file name is itself; empty, `.` and a part starting with `%` are
/// `%str:` and the part percent-encoded (`%` is `%25`).
fn doc_part(part: &str) -> &'static str {
    match part {
        "" => "%str:",
        "." => "%str:.",
        "%p" => "%str:%25p",
        "a" => "a",
        "a.c" => "a.c",
        "a-" => "a-",
        "b" => "b",
        "ü" => "ü",
        "renamed" => "renamed",
        other => panic!("no documented name written out for the part {other:?}"),
    }
}

/// A key's path below `keys/` as docs/SEMANTICS.md gives it (not counting
/// `%self`): each part of a str key named, other keys one escaped name.
fn doc_path(key: &Key) -> String {
    match key {
        Key::Str(s) => s.split('/').map(doc_part).collect::<Vec<_>>().join("/"),
        Key::Int(i) => format!("%int:{i}"),
        Key::Bytes(b) if b == b"by/tes" => "%bytes:by%2Ftes".to_string(),
        other => panic!("no documented name written out for {other:?}"),
    }
}

/// The str keys' directory prefixes (`a/b/c` has `a/` and `a/b/`).
fn dir_prefixes(keys: &[Key]) -> BTreeSet<String> {
    keys.iter()
        .filter_map(|k| match k {
            Key::Str(s) => Some(s),
            _ => None,
        })
        .flat_map(|s| s.match_indices('/').map(|(i, _)| s[..=i].to_string()).collect::<Vec<_>>())
        .collect()
}

/// The documented path of each key, given all the keys: a key that is
/// also a directory is `%self` in it.
fn expected_paths(keys: &[Key]) -> BTreeSet<String> {
    let dirs = dir_prefixes(keys);
    keys.iter()
        .map(|k| match k {
            Key::Str(s) if dirs.contains(&format!("{s}/")) => format!("{}/%self", doc_path(k)),
            _ => doc_path(k),
        })
        .collect()
}

/// The documented directories: one for each directory prefix of a key
/// (named part by part), and each one mkdir made (which lasts, holding no
/// key, in the daemon's memory).
fn expected_dirs(keys: &[Key], made: &BTreeSet<String>) -> BTreeSet<String> {
    let mut dirs: BTreeSet<String> =
        dir_prefixes(keys).iter().map(|p| doc_path(&Key::Str(p[..p.len() - 1].to_string()))).collect();
    dirs.extend(made.iter().cloned());
    dirs
}

fn part() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just(".".to_string()),
        Just("%p".to_string()),
        Just("a".to_string()),
        Just("a.c".to_string()),
        Just("a-".to_string()),
        Just("b".to_string()),
        Just("ü".to_string()),
    ]
}

fn str_key() -> impl Strategy<Value = String> {
    proptest::collection::vec(part(), 1..4).prop_map(|parts| parts.join("/"))
}

fn fs_over(dir: &std::path::Path) -> DiskCacheFs {
    let cache = Cache::open(dir).unwrap();
    DiskCacheFs::new(
        cache,
        FsConfig {
            read_only: false,
            ttl: Duration::ZERO,
            uid: 0,
            gid: 0,
            max_inodes: 1_000_000,
            reads_unopened: false,
            passthrough: false,
            watched_ttl: Duration::ZERO,
            stale_as_miss: false,
        },
    )
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn every_key_has_one_path_and_listings_resume_anywhere(
        keys in proptest::collection::btree_set(str_key(), 0..25),
        ints in proptest::collection::btree_set(-3i64..3, 0..3),
        made in proptest::collection::vec(proptest::collection::vec(0usize..3, 1..3), 0..3),
        cap in 1usize..7,
        rename_pick in any::<proptest::sample::Index>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let peer = Cache::open(dir.path()).unwrap();
        let mut all: Vec<Key> = keys.iter().map(|s| Key::Str(s.clone())).collect();
        all.extend(ints.iter().map(|i| Key::Int(*i)));
        all.push(Key::Bytes(b"by/tes".to_vec()));
        for k in &all {
            peer.set(k, &Value::Bytes(format!("{k}").into_bytes()), None, None).unwrap();
        }
        let fs = fs_over(dir.path());
        // Directories made by mkdir, named m0/m1/... beside the keys (no key
        // part starts with m): mkdir makes each new one, and a name made
        // before (an earlier chain's) is EEXIST.
        let mut made_paths = BTreeSet::new();
        for chain in &made {
            let mut parent = KEYS_DIR;
            let mut path = String::new();
            for i in chain {
                let name = format!("m{i}");
                path = if path.is_empty() { name.clone() } else { format!("{path}/{name}") };
                let attr = match fs.mkdir(parent, OsStr::new(&name)) {
                    Ok(a) => {
                        prop_assert!(!made_paths.contains(&path), "mkdir {} made it a second time", path);
                        a
                    }
                    Err(e) => {
                        prop_assert!(made_paths.contains(&path), "mkdir {}: {}", path, e);
                        prop_assert_eq!(e.errno(), libc::EEXIST, "mkdir {} again: {}", path, e);
                        fs.lookup(parent, OsStr::new(&name)).unwrap()
                    }
                };
                prop_assert_eq!(attr.kind, Kind::Directory, "mkdir {}", path);
                parent = attr.ino;
                made_paths.insert(path.clone());
            }
        }

        let mut seen = Walk::default();
        walk(&fs, KEYS_DIR, "", cap, &mut seen);
        let Walk { files, dirs: found_dirs, order } = seen;
        let found: BTreeSet<String> = files.iter().cloned().collect();
        prop_assert_eq!(files.len(), found.len(), "a file listed twice: {:?}", files);
        prop_assert_eq!(&found, &expected_paths(&all), "the files under keys/");
        let found_dir_set: BTreeSet<String> = found_dirs.iter().cloned().collect();
        prop_assert_eq!(found_dirs.len(), found_dir_set.len(), "a directory listed twice: {:?}", found_dirs);
        prop_assert_eq!(&found_dir_set, &expected_dirs(&all, &made_paths), "the directories under keys/");
        for listing in &order {
            let unique: BTreeSet<&String> = listing.iter().collect();
            prop_assert_eq!(unique.len(), listing.len(), "a name listed twice in one directory: {:?}", listing);
        }
        // The top listing is in the peer's iterkeys() order (first parts).
        let mut firsts: Vec<String> = Vec::new();
        // (A directory comes where the first key under it is; a key that is
        // also a directory is inside it, so it places nothing here.)
        for k in peer.iterkeys(false) {
            let k = k.unwrap();
            if let Key::Str(s) = &k
                && !s.contains('/')
                && all.iter().any(|o| matches!(o, Key::Str(t) if t.starts_with(&format!("{s}/"))))
            {
                continue;
            }
            let p = doc_path(&k);
            let first = p.split('/').next().unwrap().to_string();
            if !firsts.contains(&first) {
                firsts.push(first);
            }
        }
        // (The made directories hold no key, so iterkeys() places them
        // nowhere: the order is the keys', and the made ones are there.)
        let top: Vec<String> = order[0].iter().filter(|n| !n.starts_with('m')).cloned().collect();
        prop_assert_eq!(top, firsts, "keys/ in iterkeys() order");
        let made_top: BTreeSet<String> = made_paths.iter().filter(|p| !p.contains('/')).cloned().collect();
        let listed_made: BTreeSet<String> = order[0].iter().filter(|n| n.starts_with('m')).cloned().collect();
        prop_assert_eq!(listed_made, made_top, "the directories mkdir made in keys/");

        // Rename a random top-level directory to a fresh name: exactly the
        // keys under it (and its own key) move.
        let dirs: Vec<String> = list(&fs, KEYS_DIR, false, 100)
            .into_iter()
            .filter(|e| e.1 == Kind::Directory && !e.2.starts_with('m'))
            .map(|e| e.2)
            .collect();
        if !dirs.is_empty() {
            let name = rename_pick.get(&dirs).clone();
            let attr = fs.lookup(KEYS_DIR, OsStr::new(&name)).unwrap();
            // The part this name stands for (doc_part, backwards).
            let old_prefix = ["", ".", "%p", "a", "a.c", "a-", "b", "ü"]
                .into_iter()
                .find(|p| doc_part(p) == name)
                .unwrap_or_else(|| panic!("{name} names no part"))
                .to_string();
            fs.rename(KEYS_DIR, OsStr::new(&name), KEYS_DIR, OsStr::new("renamed"), true).unwrap();
            fs.forget(attr.ino, 1);
            let before: BTreeSet<String> = all
                .iter()
                .filter_map(|k| match k { Key::Str(s) => Some(s.clone()), _ => None })
                .collect();
            let mut want: BTreeSet<String> = BTreeSet::new();
            for s in &before {
                if s.starts_with(&format!("{old_prefix}/")) {
                    want.insert(format!("renamed/{}", &s[old_prefix.len() + 1..]));
                } else if *s == old_prefix {
                    want.insert("renamed".to_string());
                } else {
                    want.insert(s.clone());
                }
            }
            let now: BTreeSet<String> = peer
                .iterkeys(false)
                .filter_map(|k| match k.unwrap() { Key::Str(s) => Some(s), _ => None })
                .collect();
            prop_assert_eq!(&now, &want, "keys after renaming {}", name);
            prop_assert!(peer.check(false).unwrap().is_empty());
            // And the tree shows them so: the files at their new paths, the
            // directories of the new keys, the made ones still there.
            let mut renamed: Vec<Key> = want.into_iter().map(Key::Str).collect();
            renamed.extend(all.iter().filter(|k| !matches!(k, Key::Str(_))).cloned());
            let mut after = Walk::default();
            walk(&fs, KEYS_DIR, "", cap, &mut after);
            let files: BTreeSet<String> = after.files.into_iter().collect();
            prop_assert_eq!(&files, &expected_paths(&renamed), "the files after renaming {}", name);
            let dirs: BTreeSet<String> = after.dirs.into_iter().collect();
            prop_assert_eq!(&dirs, &expected_dirs(&renamed, &made_paths), "the directories after renaming {}", name);
        }
    }
}
