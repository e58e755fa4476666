//! `diskcachefs serve` (issue 24, first part): the tree over HTTP and
//! WebDAV, driven by a plain HTTP/1.1 client (tests/support/serve.rs; no
//! curl on a fresh machine), with python-diskcache as the peer on the same
//! directory: what a PUT stores Python reads, what Python stores a GET
//! reads, a PUT cut off mid-body stores nothing, `--read-only` refuses
//! every write with 403, desktop junk never becomes a key, and SIGTERM
//! stops the server with status 0.

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::py;
use support::serve::Server;

fn pyc(cache: &Path, code: &str) -> String {
    py(&format!("import sys, diskcache\nc = diskcache.Cache(sys.argv[1])\n{code}"), &[cache.to_str().unwrap()])
        .trim()
        .to_string()
}

fn new_cache(dir: &Path) -> std::path::PathBuf {
    let cache = dir.join("cache");
    pyc(
        &cache,
        "c['from/python'] = b'written by python'\nc['n'] = 42\nc.set('t', b'tagged', tag='grp')\nc['obj'] = {'when': __import__('datetime').date(2026, 1, 2)}",
    );
    cache
}

#[test]
fn keys_over_webdav_are_the_cache_python_sees() {
    let dir = tempfile::tempdir().unwrap();
    let cache = new_cache(dir.path());
    let s = Server::start(&cache, &[]);
    // What Python stored, read over HTTP: bytes, an int as its text, a
    // pickle through json/.
    assert_eq!(s.get("/keys/from/python"), (200, b"written by python".to_vec()));
    assert_eq!(s.get("/keys/n"), (200, b"42".to_vec()));
    let (status, json) = s.get("/json/obj");
    assert_eq!(status, 200);
    assert_eq!(String::from_utf8_lossy(&json), "{\n  \"when\": \"2026-01-02\"\n}\n");
    // A range.
    let (status, part) = s.request("GET", "/keys/from/python", &[("Range", "bytes=0-6")], b"");
    assert_eq!((status, part.as_slice()), (206, &b"written"[..]));
    // PUT stores a bytes value; into a directory MKCOL made; over a key.
    assert_eq!(s.put("/keys/hello", b"hi there"), 201);
    assert_eq!(s.request("MKCOL", "/keys/dir", &[], b"").0, 201);
    assert_eq!(s.put("/keys/dir/inner", b"nested"), 201);
    assert_eq!(s.put("/keys/from/python", b"replaced"), 204);
    assert_eq!(
        pyc(&cache, "print(c['hello'], c['dir/inner'], c['from/python'], c.check())"),
        "b'hi there' b'nested' b'replaced' []"
    );
    // A PUT into a directory that does not exist is 409 (RFC 4918), and
    // stores nothing.
    assert_eq!(s.put("/keys/nodir/x", b"x"), 409);
    // PROPFIND lists keys/ with its children.
    let (status, listing) = s.request("PROPFIND", "/keys/", &[("Depth", "1")], b"");
    assert_eq!(status, 207);
    let listing = String::from_utf8_lossy(&listing);
    for href in ["/keys/hello", "/keys/dir/", "/keys/from/", "/keys/n"] {
        assert!(listing.contains(&format!("<D:href>{href}</D:href>")), "{href} not in {listing}");
    }
    // MOVE renames the key, DELETE deletes it.
    let dest = format!("http://{}/keys/moved", s.addr);
    assert_eq!(s.request("MOVE", "/keys/hello", &[("Destination", &dest)], b"").0, 201);
    assert_eq!(pyc(&cache, "print(c.get('hello'), c['moved'])"), "None b'hi there'");
    assert_eq!(s.request("DELETE", "/keys/moved", &[], b"").0, 204);
    assert_eq!(s.get("/keys/moved").0, 404);
    assert_eq!(pyc(&cache, "print(c.get('moved'), len(c), c.check())"), "None 5 []");
    // Desktop junk is never a key.
    for junk in ["/keys/.DS_Store", "/keys/._hello", "/keys/dir/Thumbs.db"] {
        assert_eq!(s.put(junk, b"junk"), 403, "{junk}");
    }
    assert_eq!(
        pyc(&cache, "print(sorted(k for k in c if 'DS_Store' in k or k.startswith('._') or 'Thumbs' in k))"),
        "[]"
    );
    assert_eq!(s.stop(), 0);
}

#[test]
fn a_put_cut_off_mid_body_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cache = new_cache(dir.path());
    let s = Server::start(&cache, &[]);
    for path in ["/keys/cut", "/keys/from/python"] {
        let mut c = TcpStream::connect(&s.addr).unwrap();
        let head = format!("PUT {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: 100000\r\n\r\n", s.addr);
        c.write_all(head.as_bytes()).unwrap();
        c.write_all(&[b'a'; 5000]).unwrap();
        drop(c);
    }
    // The server is still up, and neither key changed.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(s.get("/keys/from/python"), (200, b"written by python".to_vec()));
    assert_eq!(pyc(&cache, "print(c.get('cut'), c['from/python'], c.check())"), "None b'written by python' []");
    assert_eq!(s.stop(), 0);
}

#[test]
fn read_only_refuses_every_write_with_403() {
    let dir = tempfile::tempdir().unwrap();
    let cache = new_cache(dir.path());
    let before = pyc(&cache, "print(sorted((k, c[k]) for k in c if k != 'obj'))");
    let s = Server::start(&cache, &["--read-only"]);
    assert_eq!(s.get("/keys/from/python"), (200, b"written by python".to_vec()));
    let dest = format!("http://{}/keys/elsewhere", s.addr);
    for (method, path, headers) in [
        ("PUT", "/keys/new", vec![]),
        ("PUT", "/keys/n", vec![]),
        ("DELETE", "/keys/n", vec![]),
        ("MKCOL", "/keys/d", vec![]),
        ("MOVE", "/keys/n", vec![("Destination", dest.as_str())]),
    ] {
        let body: &[u8] = if method == "PUT" { b"x" } else { b"" };
        let (status, _) = s.request(method, path, &headers, body);
        assert_eq!(status, 403, "{method} {path}");
    }
    assert_eq!(pyc(&cache, "print(sorted((k, c[k]) for k in c if k != 'obj'))"), before);
    assert_eq!(s.stop(), 0);
}

#[test]
fn a_fanout_cache_is_served_as_one_tree() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("fanout");
    py(
        "import sys, diskcache\nc = diskcache.FanoutCache(sys.argv[1], shards=4)\nfor i in range(20): c[f'k{i}'] = f'v{i}'.encode()",
        &[cache.to_str().unwrap()],
    );
    let s = Server::start(&cache, &[]);
    for i in 0..20 {
        assert_eq!(s.get(&format!("/keys/k{i}")), (200, format!("v{i}").into_bytes()));
        assert_eq!(s.put(&format!("/keys/w{i}"), format!("w{i}").as_bytes()), 201);
    }
    let out = py(
        "import sys, diskcache\nc = diskcache.FanoutCache(sys.argv[1], shards=4)\nprint(all(c[f'w{i}'] == f'w{i}'.encode() for i in range(20)), len(c), c.check())",
        &[cache.to_str().unwrap()],
    );
    assert_eq!(out.trim(), "True 40 []");
    assert_eq!(s.stop(), 0);
}

#[test]
fn refusals_come_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let cache = new_cache(dir.path());
    let bin = env!("CARGO_BIN_EXE_diskcachefs");
    let run = |args: &[&str]| Command::new(bin).arg("serve").args(args).output().unwrap();
    // Another address than loopback needs a token; a token must be long.
    let out = run(&[cache.to_str().unwrap(), "--listen", "0.0.0.0:0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("give --token-file"), "{out:?}");
    let short = dir.path().join("short");
    std::fs::write(&short, "abc\n").unwrap();
    let out = run(&[cache.to_str().unwrap(), "--token-file", short.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 16 characters"), "{out:?}");
    // No cache: nothing created.
    let missing = dir.path().join("missing");
    let out = run(&[missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no python-diskcache cache here"), "{out:?}");
    assert!(!missing.exists());
}

/// A PROPPATCH of one property in our namespace: `set` or `remove`.
fn proppatch(s: &Server, path: &str, op: &str, prop: &str) -> String {
    let body = format!(
        r#"<?xml version="1.0" encoding="utf-8"?><D:propertyupdate xmlns:D="DAV:" xmlns:dc="urn:diskcachefs:"><D:{op}><D:prop>{prop}</D:prop></D:{op}></D:propertyupdate>"#
    );
    let (status, out) = s.request("PROPPATCH", path, &[("Content-Type", "application/xml")], body.as_bytes());
    assert_eq!(status, 207, "PROPPATCH {path} {prop}: {}", String::from_utf8_lossy(&out));
    String::from_utf8_lossy(&out).to_string()
}

#[test]
fn tag_expiry_and_type_are_properties() {
    let dir = tempfile::tempdir().unwrap();
    let cache = new_cache(dir.path());
    let s = Server::start(&cache, &[]);
    // PROPFIND shows the attributes a mount shows as xattrs.
    let (status, found) = s.request("PROPFIND", "/keys/t", &[("Depth", "0")], b"");
    assert_eq!(status, 207);
    let found = String::from_utf8_lossy(&found);
    assert!(found.contains(">grp</") && found.contains("urn:diskcachefs:"), "{found}");
    assert!(found.contains(">bytes</"), "the type: {found}");
    // A listing shows them too (read with the listing's batch).
    let (status, listed) = s.request("PROPFIND", "/keys/", &[("Depth", "1")], b"");
    assert_eq!(status, 207);
    let listed = String::from_utf8_lossy(&listed);
    let t = listed.split("<D:href>/keys/t</D:href>").nth(1).expect("t listed").split("</D:response>").next().unwrap();
    assert!(t.contains(">grp</") && t.contains(">bytes</"), "{t}");
    // PROPPATCH sets the tag and the expiry as python-diskcache sees them.
    let out = proppatch(&s, "/keys/n", "set", "<dc:tag>grp2</dc:tag>");
    assert!(out.contains("200 OK"), "{out}");
    proppatch(&s, "/keys/n", "set", "<dc:expire_time>4102444800</dc:expire_time>");
    assert_eq!(pyc(&cache, "print(c.get('n', tag=True, expire_time=True))"), "(42, 4102444800.0, 'grp2')");
    // Removing the tag untags; removing the expiry makes it never expire.
    proppatch(&s, "/keys/n", "remove", "<dc:tag/>");
    proppatch(&s, "/keys/n", "remove", "<dc:expire_time/>");
    assert_eq!(pyc(&cache, "print(c.get('n', tag=True, expire_time=True), c.check())"), "(42, None, None) []");
    // A value the cache cannot take is 409, a name of our namespace that
    // is no attribute 403: nothing changes.
    let out = proppatch(&s, "/keys/from/python", "set", "<dc:type>int</dc:type>");
    assert!(out.contains("409"), "{out}");
    let out = proppatch(&s, "/keys/n", "set", "<dc:owner>x</dc:owner>");
    assert!(out.contains("403"), "{out}");
    assert_eq!(pyc(&cache, "print(repr(c['from/python']), c['n'])"), "b'written by python' 42");
    // All or nothing: a tag set beside a type the value cannot take is
    // undone (424 Failed Dependency), and so is a dead property.
    let out = proppatch(
        &s,
        "/keys/from/python",
        "set",
        "<dc:tag>never</dc:tag><D:displayname>never</D:displayname><dc:type>int</dc:type>",
    );
    assert!(out.contains("409") && out.contains("424"), "{out}");
    assert_eq!(pyc(&cache, "print(c.get('from/python', tag=True))"), "(b'written by python', None)");
    let (_, found) = s.request("PROPFIND", "/keys/from/python", &[("Depth", "0")], b"");
    assert!(!String::from_utf8_lossy(&found).contains("never"), "{}", String::from_utf8_lossy(&found));
    // Another namespace's property (Windows sets Win32 times) is kept by
    // the server, not the cache: PROPFIND shows it, MOVE carries it.
    let out = proppatch(&s, "/keys/n", "set", "<D:displayname>the answer</D:displayname>");
    assert!(out.contains("200 OK"), "{out}");
    let (status, _) = s.request("MOVE", "/keys/n", &[("Destination", &format!("http://{}/keys/m", s.addr))], b"");
    assert_eq!(status, 201);
    let (_, found) = s.request("PROPFIND", "/keys/m", &[("Depth", "0")], b"");
    assert!(String::from_utf8_lossy(&found).contains("the answer"), "{}", String::from_utf8_lossy(&found));
    assert_eq!(s.stop(), 0);
}

#[test]
fn copy_carries_type_tag_and_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    pyc(
        &cache,
        "c.set('src/obj', {'a': [1, 2]}, tag='t1', expire=10**6)\nc.set('src/n', 7)\nc.set('src/s', 'text')\nc.set('src/big', b'z' * 100000)",
    );
    let s = Server::start(&cache, &[]);
    let dest = |p: &str| format!("http://{}/keys/{p}", s.addr);
    for (from, to) in [("/keys/src/obj", "obj2"), ("/keys/src/n", "n2")] {
        let (status, body) = s.request("COPY", from, &[("Destination", &dest(to))], b"");
        assert_eq!(status, 201, "COPY {from}: {}", String::from_utf8_lossy(&body));
    }
    // Into a directory that does not exist: 409, as RFC 4918 has it.
    let (status, _) = s.request("COPY", "/keys/src/n", &[("Destination", &dest("nowhere/n"))], b"");
    assert_eq!(status, 409);
    // A collection: its keys copied one by one.
    let (status, _) = s.request("COPY", "/keys/src/", &[("Destination", &dest("all/"))], b"");
    assert_eq!(status, 201);
    // Overwrite: F onto an existing key is 412 and changes nothing.
    let (status, _) = s.request("COPY", "/keys/src/s", &[("Destination", &dest("n2")), ("Overwrite", "F")], b"");
    assert_eq!(status, 412);
    let out = pyc(
        &cache,
        "import time\nv, e, t = c.get('obj2', tag=True, expire_time=True)\n_, e0 = c.get('src/obj', expire_time=True)\nprint(v, t, e == e0, c['n2'], c['all/s'], len(c['all/big']), c.get('all/obj', tag=True), c.check())",
    );
    assert_eq!(out, "{'a': [1, 2]} t1 True 7 text 100000 ({'a': [1, 2]}, 't1') []");
    assert_eq!(s.stop(), 0);
}

#[test]
fn with_a_token_every_request_must_carry_it() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().unwrap();
    let cache = new_cache(dir.path());
    let token = "0123456789abcdef-token";
    let file = dir.path().join("token");
    std::fs::write(&file, format!("{token}\n")).unwrap();
    let s = Server::start(&cache, &["--token-file", file.to_str().unwrap()]);
    let bearer = format!("Bearer {token}");
    let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("me:{token}")));
    let wrong = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("me:guess"));
    assert_eq!(s.get("/keys/n").0, 401);
    assert_eq!(s.request("GET", "/keys/n", &[("Authorization", &wrong)], b"").0, 401);
    assert_eq!(s.request("PUT", "/keys/sneaky", &[], b"x").0, 401);
    assert_eq!(s.request("GET", "/keys/n", &[("Authorization", &bearer)], b""), (200, b"42".to_vec()));
    assert_eq!(s.request("PUT", "/keys/allowed", &[("Authorization", &basic)], b"ok").0, 201);
    assert_eq!(pyc(&cache, "print(c.get('sneaky'), c['allowed'])"), "None b'ok'");
    assert_eq!(s.stop(), 0);
}

#[test]
fn a_body_over_max_body_is_413_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cache = new_cache(dir.path());
    let s = Server::start(&cache, &["--max-body", "10"]);
    assert_eq!(s.put("/keys/big", b"01234567890"), 413);
    assert_eq!(s.put("/keys/from/python", b"0123456789ab"), 413);
    // Without a length (chunked), counted as it comes.
    let (status, _) = s.request_chunked("PUT", "/keys/chunked", b"0123456789abcdef");
    assert_eq!(status, 413);
    assert_eq!(s.put("/keys/fits", b"0123456789"), 201);
    assert_eq!(
        pyc(&cache, "print(c.get('big'), c.get('chunked'), c['from/python'], c['fits'])"),
        "None None b'written by python' b'0123456789'"
    );
    assert_eq!(s.stop(), 0);
}

/// Bad requests get clear HTTP errors and the server goes on serving: a
/// path that climbs out, a PROPFIND body of a megabyte, `Depth:
/// infinity`, malformed XML, a request head that never ends.
#[test]
fn bad_requests_get_clear_errors_and_the_server_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let cache = new_cache(dir.path());
    let s = Server::start(&cache, &[]);
    let (status, body) = s.request("GET", "/keys/../../../etc/passwd", &[], b"");
    assert!([400, 403, 404].contains(&status) && !String::from_utf8_lossy(&body).contains("root:"), "{status}");
    let huge = format!(
        r#"<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop>{}</D:prop></D:propfind>"#,
        "<D:x/>".repeat(200_000)
    );
    assert_eq!(s.request("PROPFIND", "/keys/", &[("Depth", "1")], huge.as_bytes()).0, 413);
    let (status, body) = s.request("PROPFIND", "/keys/", &[("Depth", "infinity")], b"");
    assert!(status == 501 || status == 403, "{status}");
    assert!(String::from_utf8_lossy(&body).contains("propfind-finite-depth"));
    assert_eq!(s.request("PROPFIND", "/keys/", &[("Depth", "1")], b"<not xml").0, 400);
    // A connection that sends half a request head and stops holds only
    // itself.
    let mut stalled = TcpStream::connect(&s.addr).unwrap();
    stalled.write_all(b"GET /keys/n HTTP/1.1\r\nHost: x\r\n").unwrap();
    assert_eq!(s.get("/keys/n"), (200, b"42".to_vec()));
    // A directory's URL is its page for any client (curl's GET of /).
    let (status, page) = s.get("/");
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&page).contains("href=\"/keys/\""));
    drop(stalled);
    assert_eq!(s.stop(), 0);
}
