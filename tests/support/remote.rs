//! Shared by the remote-tier tests (tests/remote_redis.rs, tests/remote_s3.rs):
//! a real server started for the test (Debian's `redis-server`, SeaweedFS's
//! S3 server `weed mini` from `.venv-weed`, both bound to 127.0.0.1 on free
//! ports, in a temporary directory) and stopped by its pid on drop, even
//! when the test panics; `diskcachefs sync` runs against it; and the
//! scenarios both backends must pass.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use diskcachefs::cache::{Cache, Key, Scalar, Value};
use diskcachefs::remote::{RemoteStore, StoreOptions, store};

pub const BUCKET: &str = "share";
const S3_KEY: &str = "testkey";
const S3_SECRET: &str = "testsecret";

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    Redis,
    S3,
}

pub struct Server {
    pub kind: Kind,
    /// The remote URL `sync` is given.
    pub url: String,
    /// S3: the endpoint.
    pub endpoint: Option<String>,
    child: Child,
    pub dir: tempfile::TempDir,
    /// How the server was started, to start it again after [`Server::kill`].
    launch: Vec<std::ffi::OsString>,
}

/// Starts `argv` in `dir`, appending to its `server.log` and `server.err`.
fn spawn_server(argv: &[std::ffi::OsString], dir: &Path) -> Child {
    let append = |n: &str| std::fs::OpenOptions::new().create(true).append(true).open(dir.join(n)).unwrap();
    Command::new(&argv[0])
        .args(&argv[1..])
        .current_dir(dir)
        .stdout(append("server.log"))
        .stderr(append("server.err"))
        .spawn()
        .unwrap_or_else(|e| panic!("{argv:?} (scripts/setup-remote-servers installs it): {e}"))
}

/// `n` ports free on 127.0.0.1 right now (all held at once, so distinct).
fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    held.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

fn weed() -> PathBuf {
    std::env::var_os("DISKCACHEFS_WEED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv-weed/bin/weed"))
}

impl Server {
    pub fn start(kind: Kind) -> Server {
        match kind {
            Kind::Redis => Server::redis(),
            Kind::S3 => Server::s3(),
        }
    }

    /// `redis-server` on a free port, nothing persisted.
    pub fn redis() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let port = free_ports(1)[0];
        let launch: Vec<std::ffi::OsString> = [
            "redis-server",
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
        ]
        .iter()
        .map(Into::into)
        .chain([dir.path().as_os_str().to_owned()])
        .collect();
        let child = spawn_server(&launch, dir.path());
        let server = Server {
            kind: Kind::Redis,
            url: format!("redis://127.0.0.1:{port}/0"),
            endpoint: None,
            child,
            dir,
            launch,
        };
        server.wait_ready(Duration::from_secs(10));
        server
    }

    /// SeaweedFS's `weed mini` (master, volume, filer, S3) with one bucket
    /// and one identity, every port chosen here.
    pub fn s3() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("s3.json");
        std::fs::write(
            &config,
            format!(
                r#"{{"identities":[{{"name":"test","credentials":[{{"accessKey":"{S3_KEY}","secretKey":"{S3_SECRET}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
            ),
        )
        .unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let p = free_ports(10);
        // -logdir: weed's own log files (glog) go with the server's
        // directory, removed with it, instead of piling up in /tmp.
        let logdir = format!("-logdir={}", dir.path().display());
        let mut launch: Vec<std::ffi::OsString> = vec![weed().into(), logdir.into(), "mini".into()];
        launch.extend(
            [
                format!("-dir={}", data.display()),
                "-ip=127.0.0.1".into(),
                "-ip.bind=127.0.0.1".into(),
                "-master.telemetry=false".into(),
                "-admin.ui=false".into(),
                "-webdav=false".into(),
                format!("-s3.config={}", config.display()),
                format!("-bucket={BUCKET}"),
                format!("-master.port={}", p[0]),
                format!("-master.port.grpc={}", p[1]),
                format!("-volume.port={}", p[2]),
                format!("-volume.port.grpc={}", p[3]),
                format!("-filer.port={}", p[4]),
                format!("-filer.port.grpc={}", p[5]),
                format!("-s3.port={}", p[6]),
                format!("-s3.port.grpc={}", p[7]),
                format!("-admin.port={}", p[8]),
                format!("-admin.port.grpc={}", p[9]),
                "-s3.port.iceberg=0".into(),
                "-s3.port.lance=0".into(),
            ]
            .map(Into::into),
        );
        let child = spawn_server(&launch, dir.path());
        let endpoint = format!("http://127.0.0.1:{}", p[6]);
        let server =
            Server { kind: Kind::S3, url: format!("s3://{BUCKET}/team"), endpoint: Some(endpoint), child, dir, launch };
        server.wait_ready(Duration::from_secs(30));
        server
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Stops the server (SIGKILL, reaped): its port refuses connections.
    pub fn kill(&mut self) {
        // SAFETY: a signal to the server this guard started.
        unsafe { libc::kill(self.pid(), libc::SIGKILL) };
        let _ = self.child.wait();
    }

    /// Starts the server again as it was started, on the same ports and
    /// directory (Redis keeps nothing; SeaweedFS keeps its data), and
    /// waits until it answers.
    pub fn restart(&mut self) {
        self.child = spawn_server(&self.launch, self.dir.path());
        self.wait_ready(Duration::from_secs(60));
    }

    /// The environment a daemon or `sync` needs for this server (S3's
    /// endpoint and credentials; nothing for Redis).
    pub fn env(&self) -> Vec<(String, String)> {
        match &self.endpoint {
            None => Vec::new(),
            Some(e) => [
                ("AWS_ENDPOINT_URL", e.as_str()),
                ("AWS_ACCESS_KEY_ID", S3_KEY),
                ("AWS_SECRET_ACCESS_KEY", S3_SECRET),
                ("AWS_REGION", "us-east-1"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .to_vec(),
        }
    }

    fn log(&self) -> String {
        let read = |n: &str| std::fs::read_to_string(self.dir.path().join(n)).unwrap_or_default();
        format!("{}{}", read("server.log"), read("server.err"))
    }

    /// Polls until a listing answers (SeaweedFS: the bucket exists and the
    /// identity is loaded, not only the port open).
    fn wait_ready(&self, within: Duration) {
        let start = Instant::now();
        let store = self.store_with(Duration::from_millis(500));
        loop {
            // S3: a listing answers before the volume server takes writes;
            // a write (removed at once) tells.
            match store.list_after("", None, 1).and_then(|_| self.can_write()) {
                Ok(()) => return,
                Err(e) if start.elapsed() > within => {
                    panic!("{:?} server not ready in {within:?}: {e}\n{}", self.kind, self.log())
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// S3: a PUT then a DELETE of `.ready` at the bucket's top, outside
    /// the URL's prefix, so the scenarios never see it.
    fn can_write(&self) -> Result<(), diskcachefs::remote::RemoteError> {
        if self.kind != Kind::S3 {
            return Ok(());
        }
        use rusty_s3::S3Action as _;
        let creds = rusty_s3::Credentials::new(S3_KEY, S3_SECRET);
        let bucket = self.bucket();
        let not_yet = |e: String| diskcachefs::remote::RemoteError::Config(format!("not writable yet: {e}"));
        let url = bucket.put_object(Some(&creds), ".ready").sign(Duration::from_secs(60));
        let resp = ureq::put(url.as_str()).send(&b"ready"[..]).map_err(|e| not_yet(e.to_string()))?;
        if resp.status().as_u16() != 200 {
            return Err(not_yet(resp.status().to_string()));
        }
        let url = bucket.delete_object(Some(&creds), ".ready").sign(Duration::from_secs(60));
        ureq::delete(url.as_str()).call().map_err(|e| not_yet(e.to_string()))?;
        Ok(())
    }

    pub fn options(&self, deadline: Duration) -> StoreOptions {
        StoreOptions {
            deadline,
            endpoint: self.endpoint.clone(),
            region: Some("us-east-1".into()),
            credentials: Some((S3_KEY.into(), S3_SECRET.into())),
        }
    }

    fn store_with(&self, deadline: Duration) -> Box<dyn RemoteStore> {
        store::open(&self.url, &self.options(deadline)).unwrap()
    }

    /// A client of the server, as `sync` makes one.
    pub fn store(&self) -> Box<dyn RemoteStore> {
        self.store_with(Duration::from_secs(5))
    }

    /// Every object name in the store (the test's view of "what was written").
    pub fn all_names(&self) -> Vec<String> {
        match self.kind {
            // SCAN sees every key, indexed or not (the index sets too).
            Kind::Redis => {
                let mut c = redis::Client::open(self.url.as_str()).unwrap().get_connection().unwrap();
                let mut keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut c).unwrap();
                keys.sort();
                keys
            }
            // The whole bucket, not only the URL's prefix.
            Kind::S3 => {
                let bucket = self.bucket();
                let creds = rusty_s3::Credentials::new(S3_KEY, S3_SECRET);
                let mut action = bucket.list_objects_v2(Some(&creds));
                action.with_max_keys(1000);
                use rusty_s3::S3Action as _;
                let url = action.sign(Duration::from_secs(60));
                let text = ureq::get(url.as_str()).call().unwrap().body_mut().read_to_string().unwrap();
                let parsed = rusty_s3::actions::ListObjectsV2::parse_response(&text).unwrap();
                parsed.contents.into_iter().map(|c| c.key).collect()
            }
        }
    }

    fn bucket(&self) -> rusty_s3::Bucket {
        let endpoint = self.endpoint.as_ref().unwrap().parse().unwrap();
        rusty_s3::Bucket::new(endpoint, rusty_s3::UrlStyle::Path, BUCKET, "us-east-1").unwrap()
    }

    /// Replaces an object as someone with write access to the store would,
    /// with no condition (the layout's name, under the URL's prefix).
    pub fn overwrite(&self, name: &str, bytes: &[u8]) {
        match self.kind {
            Kind::Redis => {
                let mut c = redis::Client::open(self.url.as_str()).unwrap().get_connection().unwrap();
                let () = redis::cmd("SET").arg(name).arg(bytes).query(&mut c).unwrap();
            }
            Kind::S3 => {
                use rusty_s3::S3Action as _;
                let creds = rusty_s3::Credentials::new(S3_KEY, S3_SECRET);
                let bucket = self.bucket();
                let url = bucket.put_object(Some(&creds), &format!("team/{name}")).sign(Duration::from_secs(60));
                let resp = ureq::put(url.as_str()).send(bytes).unwrap();
                assert_eq!(resp.status().as_u16(), 200);
            }
        }
    }

    pub fn freeze(&self) {
        // SAFETY: a plain kill(2) of the server this guard started.
        assert_eq!(unsafe { libc::kill(self.pid(), libc::SIGSTOP) }, 0);
    }

    pub fn thaw(&self) {
        // SAFETY: as in freeze.
        assert_eq!(unsafe { libc::kill(self.pid(), libc::SIGCONT) }, 0);
    }

    /// `diskcachefs sync DIR --remote URL ARGS...`: its exit code, summary,
    /// standard error and how long it took.
    pub fn sync(&self, dir: &Path, args: &[&str]) -> Synced {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_diskcachefs"));
        cmd.arg("sync").arg(dir).arg("--remote").arg(&self.url).args(args);
        cmd.envs(self.env());
        let start = Instant::now();
        let out = cmd.output().unwrap();
        let elapsed = start.elapsed();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        let summary = serde_json::from_str(stdout.lines().last().unwrap_or("null"))
            .unwrap_or_else(|e| panic!("sync printed no JSON summary ({e}):\n{stdout}\n{stderr}"));
        Synced { code: out.status.code(), summary, stderr, elapsed }
    }

    /// `sync` that must succeed; its summary.
    pub fn sync_ok(&self, dir: &Path, args: &[&str]) -> serde_json::Value {
        let s = self.sync(dir, args);
        assert_eq!(s.code, Some(0), "sync {args:?} failed: {}\n{}", s.summary, s.stderr);
        s.summary
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let pid = self.pid();
        // SAFETY: signals to the server this guard started (a frozen one
        // is thawed first so that it can die and be reaped).
        unsafe {
            libc::kill(pid, libc::SIGCONT);
            libc::kill(pid, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

pub struct Synced {
    pub code: Option<i32>,
    pub summary: serde_json::Value,
    pub stderr: String,
    pub elapsed: Duration,
}

/// The summary's counts, in a fixed order, for one assertion:
/// `[pushed, pulled, already_remote, already_local, skipped_unshareable, rejected, errors]`.
pub fn counts(summary: &serde_json::Value) -> [u64; 7] {
    ["pushed", "pulled", "already_remote", "already_local", "skipped_unshareable", "rejected", "errors"]
        .map(|k| summary[k].as_u64().unwrap_or_else(|| panic!("no {k} in {summary}")))
}

/// python-diskcache's own `Cache.check()` of a directory: its warnings.
pub fn python_check(dir: &Path) -> String {
    super::py(
        "import sys, warnings, diskcache\nwith warnings.catch_warnings(record=True) as w:\n    warnings.simplefilter('always')\n    diskcache.Cache(sys.argv[1]).check()\nprint([str(x.message) for x in w])",
        &[dir.to_str().unwrap()],
    )
    .trim()
    .to_string()
}

fn s(v: &str) -> Key {
    Key::Str(v.into())
}

// ---- the scenarios, one per test, each against a server of its own ----

/// put_if_absent: the first writer wins, also when eight race; listings
/// resume after a name.
pub fn first_writer_wins(server: &Server) {
    let store = server.store();
    assert!(store.put_if_absent("t/obj", b"one").unwrap());
    assert!(!store.put_if_absent("t/obj", b"two").unwrap());
    assert_eq!(store.get("t/obj", 100).unwrap().as_deref(), Some(&b"one"[..]));
    assert!(store.exists("t/obj").unwrap());
    assert!(!store.exists("t/none").unwrap());
    assert_eq!(store.get("t/none", 100).unwrap(), None);
    assert!(store.get("t/obj", 2).unwrap_err().to_string().contains("larger than"), "a too-large object is refused");

    let store: std::sync::Arc<dyn RemoteStore> = store.into();
    let winners: Vec<usize> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let store = store.clone();
                sc.spawn(move || store.put_if_absent("t/race", format!("writer {i}").as_bytes()).unwrap().then_some(i))
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(winners.len(), 1, "exactly one racing create wins: {winners:?}");
    let got = store.get("t/race", 100).unwrap().unwrap();
    assert_eq!(got, format!("writer {}", winners[0]).into_bytes(), "the winner's bytes are the object's");

    for i in [3, 1, 5, 2, 4] {
        assert!(store.put_if_absent(&format!("t/log/{i:03}"), b"x").unwrap());
    }
    assert_eq!(
        store.list_after("t/log/", None, 10).unwrap(),
        ["t/log/001", "t/log/002", "t/log/003", "t/log/004", "t/log/005"]
    );
    assert_eq!(store.list_after("t/log/", Some("t/log/002"), 2).unwrap(), ["t/log/003", "t/log/004"]);
    assert!(store.list_after("t/log/", Some("t/log/005"), 10).unwrap().is_empty());
}

/// Records signed with a shared key: a clean pull works; a record changed
/// in the store by hand, a value changed by hand, and a reader with
/// another key are each rejected and counted, and nothing bad is stored.
pub fn tampered_objects_are_rejected(server: &Server) {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, c) = (tmp.path().join("a"), tmp.path().join("b"), tmp.path().join("c"));
    let key_file = tmp.path().join("key");
    std::fs::write(&key_file, "team secret\n").unwrap();
    let other_key = tmp.path().join("other");
    std::fs::write(&other_key, "not the team's").unwrap();
    let share = Scalar::Str("share".into());
    let cache = Cache::open(&a).unwrap();
    cache.set(&s("report"), &Value::Bytes(b"the real report".to_vec()), None, Some(&share)).unwrap();
    cache.set(&s("model"), &Value::Str("weights v1".into()), None, Some(&share)).unwrap();
    drop(cache);
    let signed = ["--signing-key-file", key_file.to_str().unwrap(), "--tag", "share"];
    assert_eq!(counts(&server.sync_ok(&a, &signed))[..2], [2, 0]);

    // Another key: both records refused.
    let wrong = server.sync_ok(&c, &["--signing-key-file", other_key.to_str().unwrap()]);
    assert_eq!(counts(&wrong), [0, 0, 0, 0, 0, 2, 0], "{wrong}");

    // The attacker: report's record now names an evil value (uploaded
    // under its own digest), and model's value object is replaced.
    let store = server.store();
    let ns = "default";
    let report_rec = diskcachefs::remote::layout::record_name(ns, &diskcachefs::remote::layout::key_id(&s("report")));
    let text = String::from_utf8(store.get(&report_rec, 1 << 20).unwrap().unwrap()).unwrap();
    let evil = b"an evil report";
    let evil_digest = diskcachefs::remote::layout::sha256_hex(evil);
    store.put_if_absent(&diskcachefs::remote::layout::value_name(ns, &evil_digest), evil).unwrap();
    let real_digest = diskcachefs::remote::layout::sha256_hex(b"the real report");
    let tampered = text.replace(&real_digest, &evil_digest).replace("\\\"size\\\":15", "\\\"size\\\":14");
    assert_ne!(tampered, text);
    server.overwrite(&report_rec, tampered.as_bytes());
    let model_value =
        diskcachefs::remote::layout::value_name(ns, &diskcachefs::remote::layout::sha256_hex(b"weights v1"));
    server.overwrite(&model_value, b"weights vX");

    let got = server.sync_ok(&b, &["--signing-key-file", key_file.to_str().unwrap()]);
    assert_eq!(counts(&got), [0, 0, 0, 0, 0, 2, 0], "{got}");
    let cache = Cache::open(&b).unwrap();
    assert_eq!(cache.get(&s("report")).unwrap(), None, "a tampered record is not stored");
    assert_eq!(cache.get(&s("model")).unwrap(), None, "a tampered value is not stored");
    // Unsigned, the changed record would be taken (that is the threat
    // model): the digest still guards the value.
    let d = tmp.path().join("d");
    let unsigned = server.sync_ok(&d, &[]);
    assert_eq!(counts(&unsigned), [0, 1, 0, 0, 0, 1, 0], "{unsigned}");
    assert_eq!(Cache::open(&d).unwrap().get(&s("report")).unwrap(), Some(Value::Bytes(evil.to_vec())));
}

/// `--mode ro` writes nothing to the store, and pulls what another cache pushed.
pub fn read_only_writes_nothing(server: &Server) {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let cache = Cache::open(&a).unwrap();
    cache.set(&s("cfg/a"), &Value::Bytes(b"1".to_vec()), None, None).unwrap();
    cache.set(&s("cfg/b"), &Value::Int(7), None, None).unwrap();
    drop(cache);
    let ro = server.sync_ok(&a, &["--mode", "ro", "--prefix", "cfg/"]);
    assert_eq!(counts(&ro), [0; 7], "{ro}");
    assert!(server.all_names().is_empty(), "ro wrote: {:?}", server.all_names());

    // B pushes; A, still read-only, pulls it and writes nothing.
    let cache = Cache::open(&b).unwrap();
    cache.set(&s("cfg/c"), &Value::Str("from b".into()), Some(3600.0), Some(&Scalar::Str("t".into()))).unwrap();
    drop(cache);
    assert_eq!(counts(&server.sync_ok(&b, &["--prefix", "cfg/"]))[0], 1);
    let before = server.all_names();
    let ro = server.sync_ok(&a, &["--mode", "ro", "--prefix", "cfg/"]);
    assert_eq!(counts(&ro), [0, 1, 0, 0, 0, 0, 0], "{ro}");
    assert_eq!(server.all_names(), before, "ro wrote to the store");
    let entry = Cache::open(&a).unwrap().get_entry(&s("cfg/c")).unwrap().unwrap();
    assert_eq!(entry.value, Value::Str("from b".into()));
    assert_eq!(entry.tag, Some(Scalar::Str("t".into())), "the tag travels");
    assert!(entry.expire_time.is_some(), "the expiry travels");
    // A second run pulls nothing new.
    assert_eq!(counts(&server.sync_ok(&a, &["--mode", "ro"])), [0; 7]);
    assert_eq!(python_check(&a), "[]");
}

/// Queue items and counters never leave the machine, even when a prefix
/// opts their keys in; an ordinary key under the same prefix does.
pub fn queues_and_counters_stay(server: &Server) {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    super::py(
        "import sys, diskcache\nc = diskcache.Cache(sys.argv[1])\nc.push(b'job 1', prefix='jobs')\nc.push(b'job 2', prefix='jobs')\nc.push(b'anon')\nc.incr('jobs-done')\nc.incr('hits', 5)\nc.set('jobs-config', b'parallel=4')",
        &[a.to_str().unwrap()],
    );
    let got = server.sync_ok(&a, &["--prefix", "jobs", "--prefix", "hits"]);
    assert_eq!(counts(&got), [1, 0, 0, 0, 0, 0, 0], "{got}");
    let records: Vec<String> =
        server.all_names().into_iter().filter(|n| n.contains("/records/") && !n.ends_with('/')).collect();
    let config = diskcachefs::remote::layout::key_id(&s("jobs-config"));
    assert_eq!(records.len(), 1, "{records:?}");
    assert!(records[0].ends_with(&config), "only jobs-config was shared: {records:?}");
}

/// The two-machine story with the real flytekit: a workflow computed
/// against cache A, pushed, pulled into B, is a cache hit on B (the task
/// body does not run); its task whose output is a local file is counted
/// unshareable, not pushed, and runs again on B.
pub fn flytekit_runs_hit_across_caches(server: &Server) {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let (side_a, side_b) = (tmp.path().join("side-a"), tmp.path().join("side-b"));
    let run_a = remote_workflow(&a, &side_a, 6);
    assert_eq!(super::flyte::lines(&side_a), ["square 6", "write 6"]);
    assert_eq!(run_a["square"], 36);

    let pushed = server.sync_ok(&a, &[]);
    assert_eq!(counts(&pushed), [1, 0, 0, 0, 1, 0, 0], "square pushed, write_file unshareable: {pushed}");
    let pulled = server.sync_ok(&b, &[]);
    assert_eq!(counts(&pulled), [0, 1, 0, 0, 0, 0, 0], "{pulled}");

    let run_b = remote_workflow(&b, &side_b, 6);
    assert_eq!(run_b["square"], 36);
    assert_eq!(
        super::flyte::lines(&side_b),
        ["write 6"],
        "on B, square(6) is a cache hit (its body did not run); write_file was not shared, so it ran"
    );
    assert_eq!(python_check(&a), "[]", "A stays clean for diskcache (the cursor file is not an unknown file)");
    assert_eq!(python_check(&b), "[]");
    // Again: nothing new either way (A's pushed entry is on the remote).
    let again = server.sync_ok(&a, &[]);
    assert_eq!(counts(&again)[..2], [0, 0], "{again}");
}

/// Runs tests/py/remote_workflow.py (square and write_file, cached) on DIR.
fn remote_workflow(dir: &Path, side: &Path, x: i64) -> serde_json::Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/py/remote_workflow.py");
    let out = Command::new(super::python()).arg(script).arg(dir).arg(side).arg(x.to_string()).output().unwrap();
    assert!(out.status.success(), "flytekit failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    serde_json::from_str(text.lines().last().unwrap()).unwrap()
}

/// A frozen server (SIGSTOP) fails `sync` within its deadline with a clear
/// error, exit 2; thawed, the same sync works.
pub fn frozen_server_fails_within_deadline(server: &Server) {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    Cache::open(&a).unwrap().set(&s("p/x"), &Value::Bytes(b"x".to_vec()), None, None).unwrap();
    server.freeze();
    let frozen = server.sync(&a, &["--prefix", "p/"]);
    server.thaw();
    assert_eq!(frozen.code, Some(2), "{}\n{}", frozen.summary, frozen.stderr);
    eprintln!("a frozen server failed sync after {:?}: {}", frozen.elapsed, frozen.summary["error"]);
    assert!(frozen.stderr.contains("timed out"), "a clear message: {}", frozen.stderr);
    // Counted: one call failed, and it was given the default 2 s deadline
    // (the message names it; a value's transfer allowance, N / 8 MiB/s,
    // adds nothing measurable to this 1-byte entry): the run stopped at
    // the first failure instead of paying one deadline per call.
    let error = frozen.summary["error"].as_str().unwrap();
    assert_eq!(frozen.summary["errors"], 1, "{}", frozen.summary);
    let after = error.split_once("no answer within ").and_then(|(_, rest)| rest.split_once(" (timed out)"));
    let after = after.unwrap_or_else(|| panic!("a timeout naming its deadline: {error}")).0;
    let secs: f64 = after.strip_suffix('s').and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{after}"));
    assert!((2.0..2.01).contains(&secs), "the call's deadline was {after}, not the default 2 s");
    // The time itself is the promise (docs/REMOTE.md, "Stores and URLs": a
    // run against a dead server costs one deadline), so it stays a bound:
    // at least the deadline (a loaded machine only adds to it), and less
    // than the deadline plus 1.5 s for starting the process and opening
    // the cache on a loaded machine (2.04 s measured here). A deadline not
    // enforced would hang on the frozen server far past it.
    assert!(
        frozen.elapsed >= Duration::from_secs(2) && frozen.elapsed < Duration::from_millis(3500),
        "the default 2 s deadline held (the run failed at the first call that met it): {:?}",
        frozen.elapsed
    );
    let thawed = server.sync_ok(&a, &["--prefix", "p/"]);
    assert_eq!(counts(&thawed)[0], 1, "{thawed}");
}

// ---- mounted with --remote (the tier of src/remote/tier.rs) ----

/// flytekit's key prefix for tests/py/remote_workflow.py's square task.
const SQUARE_TASK: &str = "tests.py.remote_workflow.remote_workflow.square";

/// Mounts `cache` with `--remote` to this server and `args`.
pub fn mount_remote(server: &Server, cache: &Path, args: &[&str]) -> super::Mounted {
    let mut all = vec!["--remote", server.url.as_str()];
    all.extend_from_slice(args);
    super::Mounted::on_with_env(cache, &all, &server.env())
}

/// The mount's `ops/remote`.
pub fn remote_status(m: &super::Mounted) -> serde_json::Value {
    let text = std::fs::read(m.mnt.join("ops/remote")).unwrap();
    serde_json::from_slice(&text).unwrap_or_else(|e| panic!("ops/remote is not JSON ({e})"))
}

/// Polls `done` every 50 ms for up to `within`; panics with `what` and
/// the last status of `m` when it never holds.
pub fn wait_until(m: &super::Mounted, what: &str, within: Duration, mut done: impl FnMut(&serde_json::Value) -> bool) {
    let start = Instant::now();
    loop {
        let status = remote_status(m);
        if done(&status) {
            eprintln!("{what}: after {:?}", start.elapsed());
            return;
        }
        assert!(start.elapsed() < within, "{what}: not within {within:?}: {status:#}\n{}", m.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The names of the daemon's threads (`remote-push`, `remote-pull`, ...).
fn daemon_threads(m: &super::Mounted) -> Vec<String> {
    let tasks = std::fs::read_dir(format!("/proc/{}/task", m.pid())).expect("the daemon's threads");
    tasks.map(|t| std::fs::read_to_string(t.unwrap().path().join("comm")).unwrap().trim().to_string()).collect()
}

pub fn n(status: &serde_json::Value, name: &str) -> u64 {
    status[name].as_u64().unwrap_or_else(|| panic!("no {name} in {status}"))
}

/// The record names in the store.
pub fn record_names(server: &Server) -> Vec<String> {
    server.all_names().into_iter().filter(|n| n.contains("/records/") && !n.ends_with('/')).collect()
}

fn record_of(key: &str) -> String {
    diskcachefs::remote::layout::key_id(&s(key))
}

/// Two (three) machines, each a cache directory mounted with `--remote` on
/// one store: a flytekit run against A's directory (Python writing
/// `cache.db` directly, A mounted) is pushed by A's mount; C, which never
/// pulls in the background, answers `.resolve` from the remote at its
/// miss; B's background pull makes flytekit's own lookup on B a hit (the
/// task body does not run). A value written through A's mount reads
/// through B's within seconds. The file output is never uploaded, nor are
/// queue items, counters or keys outside the shared prefix.
pub fn mounts_share_across_machines(server: &Server) {
    use diskcachefs::flyte::idl::primitive::Value::Integer;
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, c) = (tmp.path().join("a"), tmp.path().join("b"), tmp.path().join("c"));
    let (side_a, side_b) = (tmp.path().join("side-a"), tmp.path().join("side-b"));
    let shared = ["--remote-prefix", "shared/", "--remote-pull-interval", "0.5"];
    let ma = mount_remote(server, &a, &shared);
    let mb = mount_remote(server, &b, &shared);
    let mc = mount_remote(server, &c, &["--remote-prefix", "shared/", "--remote-pull-interval", "0"]);

    let run_a = remote_workflow(&a, &side_a, 6);
    assert_eq!(run_a["square"], 36);
    assert_eq!(super::flyte::lines(&side_a), ["square 6", "write 6"]);
    wait_until(&ma, "A's mount uploads what flytekit wrote to cache.db", Duration::from_secs(15), |s| {
        n(s, "uploads") >= 1 && n(s, "unshareable") >= 1
    });

    // C: the miss in .resolve asks the remote, stores the entry, answers.
    let resolver = mc.mnt.join(format!("task/{SQUARE_TASK}/1/.resolve"));
    let inputs = super::flyte::map(vec![("x", super::flyte::prim(Integer(6)))]);
    let outputs = super::flyte::ask(&resolver, &inputs).expect("C's .resolve answers from the remote");
    assert_eq!(super::flyte::output(&outputs), Integer(36));
    let status = remote_status(&mc);
    assert_eq!((n(&status, "hits"), n(&status, "pulled")), (1, 0), "{status}");
    let square_key = Cache::open(&a)
        .unwrap()
        .iterkeys(false)
        .map(Result::unwrap)
        .find(|k| matches!(k, Key::Str(s) if s.starts_with(SQUARE_TASK)));
    let square_key = square_key.expect("flytekit's key in A");
    assert!(Cache::open(&c).unwrap().get(&square_key).unwrap().is_some(), "the remote hit is in C's cache.db");
    // write_file's outputs name a local file: not shared, a miss on C.
    let write_resolver = mc.mnt.join("task/tests.py.remote_workflow.remote_workflow.write_file/1/.resolve");
    assert_eq!(super::errno_of(super::flyte::ask(&write_resolver, &inputs)), libc::ENOENT);

    // B: the background pull brings it; flytekit's own lookup hits.
    wait_until(&mb, "B's mount pulls the new entry", Duration::from_secs(15), |s| n(s, "pulled") >= 1);
    let run_b = remote_workflow(&b, &side_b, 6);
    assert_eq!(run_b["square"], 36);
    assert_eq!(super::flyte::lines(&side_b), ["write 6"], "square(6) hit on B; write_file ran (not shared)");
    let Key::Str(sk) = &square_key else { unreachable!() };
    let hash = sk.rsplit('-').next().unwrap();
    let listed = super::listing(&mb.mnt.join(format!("task/{SQUARE_TASK}/1")));
    assert!(listed.iter().any(|n| n == hash), "B's task/ lists the pulled entry: {listed:?}");

    // A value written through A's mount reads through B's (pulled) and
    // C's (asked at the miss).
    assert!(ma.keys().join("shared").is_dir(), "the shared prefix's directory is there from the start");
    std::fs::write(ma.keys().join("shared/report"), "from A\n").unwrap();
    let start = Instant::now();
    loop {
        match std::fs::read(mb.keys().join("shared/report")) {
            Ok(v) => {
                assert_eq!(v, b"from A\n");
                break;
            }
            Err(e) => assert!(start.elapsed() < Duration::from_secs(10), "not on B in 10 s: {e}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("written through A, read through B after {:?}", start.elapsed());
    wait_until(&mc, "C reads it at its miss", Duration::from_secs(10), |_| {
        std::fs::read(mc.keys().join("shared/report")).is_ok_and(|v| v == b"from A\n")
    });

    // What never leaves: a counter and queue items under the shared
    // prefix, and a key outside it.
    std::fs::write(ma.mnt.join("ops/incr/%str:shared%2Fcount"), "5").unwrap();
    std::fs::create_dir_all(ma.mnt.join("queues/%str:shared%2Fjobs")).ok();
    std::fs::write(ma.mnt.join("queues/%str:shared%2Fjobs/job"), "job 1").unwrap();
    std::fs::write(ma.keys().join("private"), "mine").unwrap();
    std::fs::write(ma.keys().join("shared/last"), "last").unwrap();
    // shared/last was committed after the others (each write returned
    // after its commit), so A's pusher, which scans in (store_time, rowid)
    // order, passed them before it queued shared/last: anything of theirs
    // it selected went in the same upload round as shared/last or an
    // earlier one. `uploads` counts a round's uploads once all of it is
    // done, so once it counts shared/last (A's third: square,
    // shared/report, shared/last), whatever that scan let through is in
    // the store.
    let want = [record_of(sk), record_of("shared/report"), record_of("shared/last")];
    wait_until(&ma, "A's pusher uploads shared/last, written after what must stay", Duration::from_secs(15), |s| {
        n(s, "uploads") >= 3 && want.iter().all(|w| record_names(server).iter().any(|r| r.ends_with(w.as_str())))
    });
    let records = record_names(server);
    assert_eq!(records.len(), 3, "only square, shared/report and shared/last: {records:?}");
    assert_eq!(n(&remote_status(&ma), "uploads"), 3, "A uploaded only those three: {:#}", remote_status(&ma));
    for m in [&ma, &mb, &mc] {
        let status = remote_status(m);
        assert_eq!((n(&status, "errors"), n(&status, "rejected")), (0, 0), "{status}");
        let stats: serde_json::Value = serde_json::from_slice(&std::fs::read(m.mnt.join("stats")).unwrap()).unwrap();
        assert_eq!(stats["remote"]["url"], status["url"], "stats has the remote section too");
    }
    drop((ma, mb, mc));
    for dir in [&a, &b, &c] {
        assert_eq!(python_check(dir), "[]", "{}", dir.display());
    }
}

/// Runs `op`, a request through `m` while the server is frozen or
/// stopped, and asserts that it answered within the deadline and asked the
/// remote `asks` times (each a miss of a name the mount shares: counted as
/// `misses` when asked, `not_asked` while the store is backing off; a call
/// that failed counts as an error, a `timeout` if `frozen`); returns its
/// result.
///
/// The time is the promise itself (docs/REMOTE.md, "Deadlines": a frozen
/// server costs each request at most its own deadline, and never another's
/// wait), so it stays a bound: the 2 s deadline plus 0.5 s for a loaded
/// machine. A request stuck behind the frozen server would take far longer
/// (the server stays frozen until the test thaws it).
fn within_deadline<T>(m: &super::Mounted, what: &str, asks: u64, frozen: bool, op: impl FnOnce() -> T) -> T {
    let before = remote_status(m);
    let start = Instant::now();
    let result = op();
    let took = start.elapsed();
    let after = remote_status(m);
    assert!(took < Duration::from_millis(2500), "{what} took {took:?}, past the 2 s deadline");
    let delta = |name: &str| n(&after, name) - n(&before, name);
    assert_eq!(delta("hits"), 0, "{what}: the server cannot have answered: {after:#}");
    assert_eq!(delta("misses") + delta("not_asked"), asks, "{what}: misses asked or not: {after:#}");
    // A miss that asked failed, and was counted before it answered (the
    // background threads may add more of either).
    if delta("misses") > 0 {
        let failed = if frozen { "timeouts" } else { "errors" };
        assert!(delta(failed) >= delta("misses"), "{what}: asked, but no call failed ({failed}): {after:#}");
    }
    result
}

/// The server frozen (SIGSTOP), then stopped (killed), mid-run: every
/// request through the mount answers within the deadline, local reads and
/// writes go on, nothing local is lost, `ops/remote` and `stats` count the
/// errors and queue the uploads, which arrive once the server is back.
pub fn mounted_survives_a_frozen_and_a_stopped_server(server: &mut Server) {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let ma = mount_remote(server, &a, &["--remote-prefix", "shared/", "--remote-pull-interval", "0.5"]);
    std::fs::create_dir_all(ma.keys().join("shared")).unwrap();
    std::fs::write(ma.keys().join("shared/before"), "before").unwrap();
    wait_until(&ma, "the first upload", Duration::from_secs(15), |s| n(s, "uploads") >= 1);
    for phase in ["frozen", "stopped"] {
        let errors_before = n(&remote_status(&ma), "errors");
        if phase == "frozen" {
            server.freeze();
        } else {
            server.kill();
        }
        let frozen = phase == "frozen";
        for i in 0..5 {
            let missing = ma.keys().join(format!("shared/missing-{phase}-{i}"));
            let err = within_deadline(&ma, "a miss", 1, frozen, || std::fs::read(&missing)).unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
            // A new file: its LOOKUP is a miss too, then the local create.
            let new = ma.keys().join(format!("shared/{phase}-{i}"));
            within_deadline(&ma, "a write", 1, frozen, || std::fs::write(&new, format!("{phase} {i}"))).unwrap();
            let before = ma.keys().join("shared/before");
            let read = within_deadline(&ma, "a local read", 0, frozen, || std::fs::read(&before)).unwrap();
            assert_eq!(read, b"before");
            within_deadline(&ma, "a listing", 0, frozen, || super::listing(&ma.keys().join("shared")));
        }
        wait_until(&ma, "errors counted and uploads queued", Duration::from_secs(20), |s| {
            n(s, "errors") > errors_before && n(s, "queue_depth") >= 5 && s["last_error"].is_object()
        });
        let stats: serde_json::Value = serde_json::from_slice(&std::fs::read(ma.mnt.join("stats")).unwrap()).unwrap();
        assert!(stats["remote"]["errors"].as_u64().unwrap() > errors_before, "{:#}", stats["remote"]);
        if phase == "frozen" {
            assert!(n(&remote_status(&ma), "timeouts") >= 1, "a frozen server is a timeout");
            server.thaw();
        } else {
            server.restart();
        }
        let want: Vec<String> = (0..5).map(|i| record_of(&format!("shared/{phase}-{i}"))).collect();
        let start = Instant::now();
        while !want.iter().all(|w| record_names(server).iter().any(|r| r.ends_with(w.as_str()))) {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{phase}: queued uploads did not arrive: {:#}",
                remote_status(&ma)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("{phase}: the queued uploads arrived {:?} after the server came back", start.elapsed());
        wait_until(&ma, "the queue drained", Duration::from_secs(10), |s| n(s, "queue_depth") == 0);
    }
    for phase in ["frozen", "stopped"] {
        for i in 0..5 {
            let got = std::fs::read(ma.keys().join(format!("shared/{phase}-{i}"))).unwrap();
            assert_eq!(got, format!("{phase} {i}").into_bytes(), "nothing local is lost");
        }
    }
    drop(ma);
    assert_eq!(python_check(&a), "[]");
}

/// Trust through mounts: with a signing key, a record changed in the store
/// by hand is refused at the miss and counted (the entry is not stored);
/// a `--remote-mode ro` mount writes nothing to the store but reads it.
pub fn mounted_trust_and_read_only(server: &Server) {
    let tmp = tempfile::tempdir().unwrap();
    let (a, c, d) = (tmp.path().join("a"), tmp.path().join("c"), tmp.path().join("d"));
    let key_file = tmp.path().join("key");
    std::fs::write(&key_file, "team secret\n").unwrap();
    let signed = ["--remote-prefix", "shared/", "--remote-signing-key-file", key_file.to_str().unwrap()];
    let ma = mount_remote(server, &a, &signed);
    std::fs::create_dir_all(ma.keys().join("shared")).unwrap();
    std::fs::write(ma.keys().join("shared/report"), "the real report").unwrap();
    std::fs::write(ma.keys().join("shared/ok"), "untouched").unwrap();
    wait_until(&ma, "both uploaded", Duration::from_secs(15), |s| n(s, "uploads") >= 2);

    // The attacker changes report's record to name another value.
    let ns = "default";
    let rec = diskcachefs::remote::layout::record_name(ns, &record_of("shared/report"));
    let store = server.store();
    let text = String::from_utf8(store.get(&rec, 1 << 20).unwrap().unwrap()).unwrap();
    let evil = b"an evil report!";
    let evil_digest = diskcachefs::remote::layout::sha256_hex(evil);
    store.put_if_absent(&diskcachefs::remote::layout::value_name(ns, &evil_digest), evil).unwrap();
    let tampered = text.replace(&diskcachefs::remote::layout::sha256_hex(b"the real report"), &evil_digest);
    assert_ne!(tampered, text);
    server.overwrite(&rec, tampered.as_bytes());

    let mut c_args = signed.to_vec();
    c_args.extend(["--remote-pull-interval", "0"]);
    let mc = mount_remote(server, &c, &c_args);
    let err = std::fs::read(mc.keys().join("shared/report")).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound, "a tampered record is a miss");
    assert_eq!(std::fs::read(mc.keys().join("shared/ok")).unwrap(), b"untouched");
    let status = remote_status(&mc);
    assert_eq!((n(&status, "rejected"), n(&status, "hits")), (1, 1), "{status}");
    assert!(Cache::open(&c).unwrap().get(&s("shared/report")).unwrap().is_none(), "nothing tampered is stored");

    // A read-only mount: reads the store, writes nothing to it.
    let md = mount_remote(
        server,
        &d,
        &["--remote-prefix", "shared/", "--remote-mode", "ro", "--remote-pull-interval", "0.5"],
    );
    assert_eq!(std::fs::read(md.keys().join("shared/ok")).unwrap(), b"untouched");
    let before = server.all_names();
    std::fs::create_dir_all(md.keys().join("shared")).unwrap();
    std::fs::write(md.keys().join("shared/from-d"), "local only").unwrap();
    let written = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    // Uploads are the pusher thread's alone, and a read-only mount has
    // none: its tier's one thread is the puller. Two of its passes ended
    // after the write (so one began after it), and the store is unchanged.
    let threads = daemon_threads(&md);
    assert!(threads.iter().any(|t| t == "remote-pull"), "the puller runs: {threads:?}");
    assert!(!threads.iter().any(|t| t == "remote-push"), "a read-only mount pushes: {threads:?}");
    let mut passes = Vec::new();
    wait_until(&md, "two pulls after the write", Duration::from_secs(15), |s| {
        let at = s["last_pull"].as_f64().unwrap_or(0.0);
        if at > written && !passes.contains(&at.to_bits()) {
            passes.push(at.to_bits());
        }
        passes.len() >= 2
    });
    assert_eq!(server.all_names(), before, "ro wrote to the store");
    let status = remote_status(&md);
    assert_eq!((status["mode"].as_str(), n(&status, "uploads")), (Some("ro"), 0), "{status}");
    assert_eq!(std::fs::read(md.keys().join("shared/from-d")).unwrap(), b"local only");
}

/// Flyte 2's task cache through the remote: a cached Flyte 2 task run on
/// machine A (its own `task_cache` table in A's cache.db) is pushed by A's
/// mount; B's mount pulls it into B's `task_cache` (made as Flyte 2 makes
/// it), and the Flyte 2 SDK on B finds it (the task body does not run); a
/// machine that does not mount gets it with `sync`.
pub fn flyte2_entries_are_shared(server: &Server) {
    use super::flyte::flyte2_square;
    let tmp = tempfile::tempdir().unwrap();
    let home = |n: &str| {
        let h = tmp.path().join(n);
        std::fs::create_dir_all(h.join(".flyte/local-cache")).unwrap();
        h
    };
    let (home_a, home_b, home_c) = (home("a"), home("b"), home("c"));
    let cache_of = |h: &Path| h.join(".flyte/local-cache");
    let side = |n: &str| tmp.path().join(format!("side-{n}"));
    assert_eq!(flyte2_square(&home_a, &side("a"), 3)["result"], 9);
    assert_eq!(super::flyte::lines(&side("a")), ["square(3) ran"]);

    let args = ["--remote-pull-interval", "0.5"];
    let ma = mount_remote(server, &cache_of(&home_a), &args);
    wait_until(&ma, "A pushes the Flyte 2 entry", Duration::from_secs(15), |s| n(s, "uploads") >= 1);
    let mb = mount_remote(server, &cache_of(&home_b), &args);
    wait_until(&mb, "B pulls it", Duration::from_secs(15), |s| n(s, "pulled") >= 1);
    let listed: Vec<String> = super::listing(&mb.mnt.join("flyte2")).into_iter().filter(|n| n != ".runs").collect();
    assert_eq!(listed.len(), 1, "B's flyte2/ shows the pulled entry: {listed:?}");
    assert_eq!(flyte2_square(&home_b, &side("b"), 3)["result"], 9);
    assert!(super::flyte::lines(&side("b")).is_empty(), "a hit on B: square did not run");
    drop((ma, mb));

    let pulled = server.sync_ok(&cache_of(&home_c), &["--mode", "ro"]);
    assert_eq!(counts(&pulled)[1], 1, "{pulled}");
    assert_eq!(flyte2_square(&home_c, &side("c"), 3)["result"], 9);
    assert!(super::flyte::lines(&side("c")).is_empty(), "a hit on C after sync");
    // Another input is computed, and is not a hit anywhere else.
    assert_eq!(flyte2_square(&home_c, &side("c"), 4)["result"], 16);
    assert_eq!(super::flyte::lines(&side("c")), ["square(4) ran"]);
    for h in [&home_a, &home_b, &home_c] {
        assert_eq!(python_check(&cache_of(h)), "[]", "{}", h.display());
    }
}
