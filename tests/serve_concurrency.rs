//! `diskcachefs serve` under load while python-diskcache writes the same
//! cache (issue 24): 8 WebDAV clients PUT, GET, PROPFIND, COPY and LOCK
//! for 60 s beside a Python process setting and deleting keys. Every
//! answer is one WebDAV prescribes for what was asked (`423 Locked` for a
//! write to another client's lock, `404` for a key Python just deleted);
//! every value read is whole (each carries its own SHA-256); each client
//! reads back what it last stored; `Cache.check()` is clean at the end.

mod support;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use support::serve::Server;
use support::{py, python};

const CLIENTS: usize = 8;
const RUN: Duration = Duration::from_secs(60);

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A value that says whether it is whole: its payload's SHA-256, `:`,
/// the payload.
fn sealed(payload: &[u8]) -> Vec<u8> {
    let mut out = hex(&Sha256::digest(payload)).into_bytes();
    out.push(b':');
    out.extend_from_slice(payload);
    out
}

fn is_whole(value: &[u8]) -> bool {
    value.len() > 65 && value[64] == b':' && hex(&Sha256::digest(&value[65..])).as_bytes() == &value[..64]
}

/// Python's side: sets and deletes sealed values under `py/` (sizes from
/// 10 B to 100 KB, so inline rows and value files both) until the stop
/// file exists; prints how many writes it made.
const WRITER: &str = r#"
import hashlib, os, random, sys, diskcache
c = diskcache.Cache(sys.argv[1])
stop = sys.argv[2]
rnd = random.Random(7)
n = 0
while not os.path.exists(stop):
    k = f'py/k{rnd.randrange(40)}'
    if rnd.random() < 0.15:
        c.delete(k)
    else:
        payload = os.urandom(rnd.choice([10, 500, 5000, 40000, 100000]))
        c.set(k, hashlib.sha256(payload).hexdigest().encode() + b':' + payload)
    n += 1
print(n)
"#;

#[derive(Default)]
struct Tally {
    requests: AtomicU64,
    locked: AtomicU64,
    gone: AtomicU64,
}

#[test]
fn eight_clients_and_python_for_a_minute() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    py("import sys, diskcache\ndiskcache.Cache(sys.argv[1])['py/k0'] = b'x'", &[cache.to_str().unwrap()]);
    let stop = dir.path().join("stop");
    let writer = support::KillOnDrop(
        Command::new(python()).arg("-c").arg(WRITER).arg(&cache).arg(&stop).stdout(Stdio::piped()).spawn().unwrap(),
    );
    let server = Arc::new(Server::start(&cache, &[]));
    let tally = Arc::new(Tally::default());
    let failed = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + RUN;
    let threads: Vec<_> = (0..CLIENTS)
        .map(|t| {
            let (s, tally, failed) = (server.clone(), tally.clone(), failed.clone());
            std::thread::spawn(move || -> Vec<(String, Vec<u8>)> {
                let check = |what: &str, status: u16, allowed: &[u16]| {
                    tally.requests.fetch_add(1, Ordering::Relaxed);
                    if !allowed.contains(&status) {
                        failed.store(true, Ordering::Relaxed);
                        panic!("client {t}: {what}: {status}, not one of {allowed:?}");
                    }
                };
                let mine = |j: usize| format!("/keys/c{t}/v{j}");
                check("MKCOL", s.request("MKCOL", &format!("/keys/c{t}/"), &[], b"").0, &[201]);
                let mut last: Vec<Option<Vec<u8>>> = vec![None; 10];
                let mut i = 0usize;
                while Instant::now() < deadline && !failed.load(Ordering::Relaxed) {
                    i += 1;
                    let j = i % last.len();
                    // PUT then GET of this client's own key: what it stored.
                    let value = sealed(format!("client {t} round {i} ").repeat(1 + i % 700).as_bytes());
                    check("PUT", s.request("PUT", &mine(j), &[], &value).0, &[201, 204]);
                    let (status, got) = s.request("GET", &mine(j), &[], b"");
                    check("GET own", status, &[200]);
                    assert_eq!(got, value, "client {t}: {} read back", mine(j));
                    last[j] = Some(value);
                    // GET of a key Python writes and deletes: whole, or gone.
                    let (status, got) = s.request("GET", &format!("/keys/py/k{}", i % 40), &[], b"");
                    check("GET python's", status, &[200, 404]);
                    if status == 200 {
                        assert!(is_whole(&got) || got == b"x", "client {t}: a torn value of python's ({} bytes)", got.len());
                    } else {
                        tally.gone.fetch_add(1, Ordering::Relaxed);
                    }
                    // PROPFIND of python's directory, and of this client's.
                    check("PROPFIND", s.request("PROPFIND", "/keys/py/", &[("Depth", "1")], b"").0, &[207]);
                    let (status, body) = s.request("PROPFIND", &format!("/keys/c{t}/"), &[("Depth", "1")], b"");
                    check("PROPFIND own", status, &[207]);
                    assert!(String::from_utf8_lossy(&body).contains(&mine(j)), "client {t}: {} not listed", mine(j));
                    if i.is_multiple_of(10) {
                        // COPY of its own key: the copy is whole.
                        let dest = format!("http://{}/keys/c{t}/copy", s.addr);
                        check("COPY", s.request("COPY", &mine(j), &[("Destination", &dest)], b"").0, &[201, 204]);
                        let (status, got) = s.request("GET", &format!("/keys/c{t}/copy"), &[], b"");
                        check("GET copy", status, &[200]);
                        assert_eq!(got, last[j].clone().unwrap(), "client {t}: the copy");
                    }
                    if i.is_multiple_of(25) {
                        // A lock of its own key: another client's PUT without the
                        // token is 423 (the neighbour tries it), then UNLOCK.
                        let body = br#"<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype></D:lockinfo>"#;
                        let (status, answer) = s.request("LOCK", &mine(j), &[("Timeout", "Second-30")], body);
                        check("LOCK", status, &[200]);
                        let answer = String::from_utf8_lossy(&answer);
                        let token = answer.split("<D:href>").nth(1).unwrap().split('<').next().unwrap().to_string();
                        let (status, _) = s.request("PUT", &mine(j), &[], b"not the holder");
                        check("PUT to a locked key", status, &[423]);
                        tally.locked.fetch_add(1, Ordering::Relaxed);
                        let value = sealed(format!("client {t} locked {i}").as_bytes());
                        let if_header = format!("(<{token}>)");
                        check("PUT with the token", s.request("PUT", &mine(j), &[("If", &if_header)], &value).0, &[204]);
                        last[j] = Some(value);
                        let lock_token = format!("<{token}>");
                        check("UNLOCK", s.request("UNLOCK", &mine(j), &[("Lock-Token", &lock_token)], b"").0, &[204]);
                    }
                }
                last.into_iter().enumerate().filter_map(|(j, v)| Some((format!("c{t}/v{j}"), v?))).collect()
            })
        })
        .collect();
    let mut stored = Vec::new();
    let mut panicked = Vec::new();
    for t in threads {
        match t.join() {
            Ok(values) => stored.extend(values),
            Err(e) => panicked.push(e.downcast_ref::<String>().cloned().unwrap_or_else(|| format!("{e:?}"))),
        }
    }
    std::fs::write(&stop, b"").unwrap();
    let out = writer.finish();
    assert!(panicked.is_empty(), "clients failed: {panicked:#?}");
    assert!(out.status.success());
    let python_writes: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    println!(
        "{} requests by {CLIENTS} clients, {} writes by python, {} reads of a key python had deleted, {} PUTs refused 423",
        tally.requests.load(Ordering::Relaxed),
        python_writes,
        tally.gone.load(Ordering::Relaxed),
        tally.locked.load(Ordering::Relaxed)
    );
    assert!(python_writes > 100 && tally.requests.load(Ordering::Relaxed) > 1000, "too little happened to tell");
    assert!(tally.locked.load(Ordering::Relaxed) > 0);
    // What each client stored last, python-diskcache reads whole; the
    // cache is consistent.
    let expected: serde_json::Value =
        stored.iter().map(|(k, v)| (k.clone(), serde_json::json!(hex(v)))).collect::<serde_json::Map<_, _>>().into();
    let want = dir.path().join("want.json");
    std::fs::write(&want, expected.to_string()).unwrap();
    let out = py(
        "import json, sys, diskcache\nc = diskcache.Cache(sys.argv[1])\nwant = json.load(open(sys.argv[2]))\n\
         bad = [k for k, v in want.items() if c.get(k, b'').hex() != v]\n\
         print(json.dumps({'bad': bad, 'check': [str(w) for w in c.check()], 'n': len(want)}))",
        &[cache.to_str().unwrap(), want.to_str().unwrap()],
    );
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(report["bad"], serde_json::json!([]), "values python-diskcache reads otherwise than stored");
    assert_eq!(report["check"], serde_json::json!([]), "Cache.check()");
    assert_eq!(report["n"], serde_json::json!(CLIENTS * 10));
    Arc::try_unwrap(server).ok().expect("the server, held once").stop();
}
