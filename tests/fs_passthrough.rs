//! Reads through passthrough on a read-write mount (docs/SEMANTICS.md,
//! "Passthrough"): the kernel reads value files itself, and the snapshot
//! rule still holds while Python replaces a value. (Root and Linux 6.9+,
//! which every machine here has; the log says which mode is in use.)

mod support;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use support::{Mounted, py};

const SET: &str = "import sys, diskcache\nc = diskcache.Cache(sys.argv[1])\nc.set(sys.argv[2], sys.argv[3].encode() * int(sys.argv[4]))";
const GET: &str =
    "import sys, diskcache\nv = diskcache.Cache(sys.argv[1]).get(sys.argv[2])\nprint(len(v), v[:1].decode())";

fn set(m: &Mounted, key: &str, byte: char, n: usize) {
    py(SET, &[m.cache.to_str().unwrap(), key, &byte.to_string(), &n.to_string()]);
}

fn all(bytes: &[u8], b: u8) -> bool {
    bytes.iter().all(|&x| x == b)
}

/// mmap of `len` bytes of `file`, copied out.
fn mapped(file: &std::fs::File, len: usize) -> Vec<u8> {
    let fd = std::os::fd::AsRawFd::as_raw_fd(file);
    let p = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, fd, 0) };
    assert_ne!(p, libc::MAP_FAILED, "mmap: {}", std::io::Error::last_os_error());
    let out = unsafe { std::slice::from_raw_parts(p as *const u8, len) }.to_vec();
    unsafe { libc::munmap(p, len) };
    out
}

#[test]
fn a_value_file_read_through_passthrough_keeps_the_snapshot_rule_while_python_replaces_it() {
    let (old_len, new_len) = (3 << 20, 1 << 20);
    let mut m = Mounted::new();
    set(&m, "big", 'o', old_len);
    let path = m.keys().join("big");
    let mut reader = std::fs::File::open(&path).unwrap();
    // (Said at INIT, which the first request waits for.)
    assert!(m.log().contains("passthrough: on"), "{}", m.log());
    let mut head = vec![0u8; 64 << 10];
    reader.read_exact(&mut head).unwrap();
    let map_before = mapped(&reader, old_len);
    set(&m, "big", 'n', new_len);
    // A new open gets the new version, whole, within a second; no open
    // ever sees a mix.
    let start = Instant::now();
    loop {
        let now = std::fs::read(&path).unwrap();
        let old = now.len() == old_len && all(&now, b'o');
        let new = now.len() == new_len && all(&now, b'n');
        assert!(old || new, "a mix of two versions: {} bytes", now.len());
        if new {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(1), "the new version not seen within a second");
        std::thread::sleep(Duration::from_millis(10));
    }
    // The reader that had it open reads its version to the end; its
    // mapping, made before and after the change, shows that version too.
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    assert_eq!(head.len() + rest.len(), old_len);
    assert!(all(&head, b'o') && all(&rest, b'o'), "the open reader got bytes of the new version");
    assert!(all(&map_before, b'o') && map_before.len() == old_len);
    assert!(all(&mapped(&reader, old_len), b'o'), "mmap of the open reader after the change");
    // mmap of the new version through a new open.
    let fresh = std::fs::File::open(&path).unwrap();
    let map_new = mapped(&fresh, new_len);
    assert!(all(&map_new, b'n'), "mmap of the new version");
    // A writer while readers read through passthrough: it gets an inode of
    // its own, commits, and the readers keep theirs.
    {
        let mut w = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        w.write_all(b"W").unwrap();
    }
    assert_eq!(py(GET, &[m.cache.to_str().unwrap(), "big"]).trim(), format!("{new_len} W"));
    let mut again = vec![0u8; 16];
    fresh.read_at_all(&mut again, 0);
    assert!(all(&again, b'n'), "a passthrough reader saw a writer's bytes");
    drop((reader, fresh));
    // Every byte above came from the kernel reading the value files: no
    // READ reached the daemon.
    let counts = m.requests_served();
    assert_eq!(counts.get("read").copied().unwrap_or(0), 0, "{counts:?}");
}

trait ReadAtAll {
    fn read_at_all(&self, buf: &mut [u8], offset: u64);
}

impl ReadAtAll for std::fs::File {
    fn read_at_all(&self, buf: &mut [u8], offset: u64) {
        std::os::unix::fs::FileExt::read_exact_at(self, buf, offset).unwrap();
    }
}

#[test]
fn without_passthrough_reads_go_through_the_daemon_and_the_log_says_so() {
    let mut m = Mounted::with(|_| {}, &["--no-passthrough"]);
    set(&m, "big", 'v', 1 << 20);
    let data = std::fs::read(m.keys().join("big")).unwrap();
    assert!(m.log().contains("passthrough: off"), "{}", m.log());
    assert!(data.len() == 1 << 20 && all(&data, b'v'));
    let counts = m.requests_served();
    assert!(counts.get("read").copied().unwrap_or(0) > 0, "{counts:?}");
}
