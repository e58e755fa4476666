//! `queues/` through the mount (docs/SEMANTICS.md, "Queues"), with
//! python-diskcache as the peer: listing and peeking change nothing, a new
//! file pushes (to the front when named `.front...`), `.pull` pulls exactly
//! once, an empty queue is ENOENT at once, `rm` deletes an item and `mv` to
//! `keys/` claims it; and four consumer processes using plain file I/O plus
//! python-diskcache's `pull`, all at once, against a file pusher and
//! python-diskcache's `push`, receive every item exactly once, in order.

mod support;

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::{Mounted, errno_of, listing, py, python};

/// Runs `code` with `c` = the mounted cache's python-diskcache Cache.
fn pyc(m: &Mounted, code: &str) -> String {
    py(&format!("import sys, diskcache\nc = diskcache.Cache(sys.argv[1])\n{code}"), &[m.cache.to_str().unwrap()])
        .trim()
        .to_string()
}

#[test]
fn queue_files_are_diskcache_queues() {
    let m = Mounted::with(
        |c| {
            drop(py(
                "import sys, diskcache\nc = diskcache.Cache(sys.argv[1])\n\
                 for v in (b'a', b'b', b'c'): c.push(v, prefix='jobs')\nc.push(b'int item')\nc['plain'] = 1",
                &[c.to_str().unwrap()],
            ))
        },
        &[],
    );
    let q = m.mnt.join("queues");
    assert_eq!(listing(&q), ["%int", "jobs"]);
    let jobs = q.join("jobs");
    assert_eq!(listing(&jobs), ["500000000000000", "500000000000001", "500000000000002"]);
    assert_eq!(listing(&q.join("%int")), ["500000000000000"]);
    let first = jobs.join("500000000000000");
    assert_eq!(std::fs::read_link(&first).unwrap(), Path::new("../../keys/jobs-500000000000000"));
    assert_eq!(
        std::fs::read_link(q.join("%int/500000000000000")).unwrap(),
        Path::new("../../keys/%int:500000000000000")
    );
    // Listing and reading are peeks: nothing changes.
    assert_eq!(std::fs::read(&first).unwrap(), b"a");
    assert_eq!(pyc(&m, "print(c.peek(prefix='jobs'), len(c))"), "('jobs-500000000000000', b'a') 5");

    // A new file pushes to the back; `.front...` to the front.
    std::fs::write(jobs.join("anything"), b"d").unwrap();
    std::fs::write(jobs.join(".front-urgent"), b"z").unwrap();
    assert_eq!(
        pyc(&m, "print(c.peek(prefix='jobs'), c.peek(prefix='jobs', side='back'))"),
        "('jobs-499999999999999', b'z') ('jobs-500000000000003', b'd')"
    );
    // A new queue needs no mkdir.
    std::fs::write(q.join("fresh").join("x"), b"new queue").unwrap();
    assert_eq!(pyc(&m, "print(c.pull(prefix='fresh'))"), "('fresh-500000000000000', b'new queue')");

    // .pull takes the front, .pull-back the back; each exactly once.
    assert_eq!(std::fs::read(jobs.join(".pull")).unwrap(), b"z");
    assert_eq!(std::fs::read(jobs.join(".pull-back")).unwrap(), b"d");
    assert_eq!(
        pyc(&m, "print(c.peek(prefix='jobs'), c.peek(prefix='jobs', side='back'))"),
        "('jobs-500000000000000', b'a') ('jobs-500000000000002', b'c')"
    );
    // The pull files are not listed (a backup must never pull).
    assert_eq!(listing(&jobs), ["500000000000000", "500000000000001", "500000000000002"]);
    assert_eq!(errno_of(std::fs::OpenOptions::new().write(true).open(jobs.join(".pull"))), libc::EACCES);

    // rm deletes an item; mv to keys/ claims one, and only once.
    std::fs::remove_file(jobs.join("500000000000001")).unwrap();
    std::fs::rename(jobs.join("500000000000000"), m.keys().join("mine")).unwrap();
    assert_eq!(errno_of(std::fs::rename(jobs.join("500000000000000"), m.keys().join("again"))), libc::ENOENT);
    assert_eq!(
        pyc(&m, "print(c['mine'], c.peek(prefix='jobs'), 'again' in c)"),
        "b'a' ('jobs-500000000000002', b'c') False"
    );

    // Python's pull and the file's pull drain the queue; then ENOENT, at once.
    assert_eq!(std::fs::read(jobs.join(".pull")).unwrap(), b"c");
    let start = Instant::now();
    assert_eq!(errno_of(std::fs::read(jobs.join(".pull"))), libc::ENOENT, "an empty queue");
    assert_eq!(errno_of(std::fs::read(q.join("never-used/.pull"))), libc::ENOENT, "a queue never used");
    assert!(start.elapsed() < Duration::from_secs(5), "pulling from an empty queue must not wait");
    assert!(!listing(&q).contains(&"jobs".to_string()), "an empty queue is not listed");
    // The integer queue through its reserved name.
    std::fs::write(q.join("%int").join("n"), b"second").unwrap();
    assert_eq!(std::fs::read(q.join("%int/.pull")).unwrap(), b"int item");
    assert_eq!(pyc(&m, "print(c.pull())"), "(500000000000001, b'second')");
    assert_eq!(pyc(&m, "print(c.check(), c['plain'])"), "[] 1");
}

/// A consumer using plain file I/O: pulls through `.pull` until the queue
/// is empty after every producer finished; writes what it got, in order.
const FILE_CONSUMER: &str = r#"
import os, sys, time
pull, out, flags = sys.argv[1], sys.argv[2], sys.argv[3:]
got = []
while True:
    try:
        with open(pull, 'rb') as f:
            got.append(f.read().decode())
        continue
    except FileNotFoundError:
        pass
    if all(os.path.exists(p) for p in flags):
        try:
            with open(pull, 'rb') as f:
                got.append(f.read().decode())
            continue
        except FileNotFoundError:
            break
    time.sleep(0.001)
with open(out, 'w') as f:
    f.write('\n'.join(got))
"#;

const PY_CONSUMER: &str = r#"
import os, sys, time, diskcache
c = diskcache.Cache(sys.argv[1])
out, flags = sys.argv[2], sys.argv[3:]
got = []
while True:
    k, v = c.pull(prefix='jobs')
    if k is not None:
        got.append(v.decode())
        continue
    if all(os.path.exists(p) for p in flags):
        k, v = c.pull(prefix='jobs')
        if k is None:
            break
        got.append(v.decode())
        continue
    time.sleep(0.001)
with open(out, 'w') as f:
    f.write('\n'.join(got))
"#;

const FILE_PUSHER: &str = r#"
import sys
d, n, flag = sys.argv[1], int(sys.argv[2]), sys.argv[3]
for i in range(n):
    with open(d + '/item', 'wb') as f:
        f.write(b'f%05d' % i)
open(flag, 'w').close()
"#;

const PY_PUSHER: &str = r#"
import sys, diskcache
c = diskcache.Cache(sys.argv[1])
n, flag = int(sys.argv[2]), sys.argv[3]
for i in range(n):
    c.push(b'p%05d' % i, prefix='jobs')
open(flag, 'w').close()
"#;

#[test]
fn four_file_consumers_and_python_pull_each_item_exactly_once_in_order() {
    const N: usize = 10_000;
    let m = Mounted::new();
    let jobs = m.mnt.join("queues/jobs");
    let dir = m.root.path();
    let (file_done, py_done) = (dir.join("file-pusher.done"), dir.join("py-pusher.done"));
    let flags = [file_done.to_str().unwrap(), py_done.to_str().unwrap()];
    let spawn = |script: &str, args: &[&str]| Command::new(python()).arg("-c").arg(script).args(args).spawn().unwrap();
    let pull = jobs.join(".pull");
    let mut consumers = Vec::new();
    let mut outputs = Vec::new();
    for i in 0..4 {
        let out = dir.join(format!("file-consumer-{i}.txt"));
        let mut args = vec![pull.to_str().unwrap(), out.to_str().unwrap()];
        args.extend(flags);
        consumers.push(spawn(FILE_CONSUMER, &args));
        outputs.push(out);
    }
    let py_out = dir.join("py-consumer.txt");
    let mut args = vec![m.cache.to_str().unwrap(), py_out.to_str().unwrap()];
    args.extend(flags);
    consumers.push(spawn(PY_CONSUMER, &args));
    outputs.push(py_out);
    let n = N.to_string();
    let mut pushers = [
        spawn(FILE_PUSHER, &[jobs.to_str().unwrap(), &n, file_done.to_str().unwrap()]),
        spawn(PY_PUSHER, &[m.cache.to_str().unwrap(), &n, py_done.to_str().unwrap()]),
    ];
    let start = Instant::now();
    for child in pushers.iter_mut().chain(consumers.iter_mut()) {
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "a producer or consumer failed: {status}\n{}", m.log());
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(300), "producers and consumers did not finish in 300 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut counts = Vec::new();
    for (who, out) in outputs.iter().enumerate() {
        let mut text = String::new();
        std::fs::File::open(out).unwrap().read_to_string(&mut text).unwrap();
        let items: Vec<&str> = text.lines().collect();
        counts.push(items.len());
        // In queue order within each consumer: each producer's items
        // arrive in the order they were pushed.
        for producer in ["f", "p"] {
            let mine: Vec<usize> =
                items.iter().filter(|i| i.starts_with(producer)).map(|i| i[1..].parse().unwrap()).collect();
            assert!(mine.windows(2).all(|w| w[0] < w[1]), "consumer {who} got {producer} items out of order");
        }
        for item in items {
            if let Some(prev) = seen.insert(item.to_string(), who) {
                panic!("item {item} received twice (consumers {prev} and {who})");
            }
        }
    }
    let missing: Vec<String> = (0..N)
        .flat_map(|i| [format!("f{i:05}"), format!("p{i:05}")])
        .filter(|item| !seen.contains_key(item))
        .take(10)
        .collect();
    assert!(missing.is_empty(), "items never received (first 10): {missing:?}");
    assert_eq!(seen.len(), 2 * N);
    assert!(counts[..4].iter().all(|c| *c > 0), "every file consumer took part: {counts:?}");
    assert_eq!(pyc(&m, "print(len(c), c.check())"), "0 []");
    eprintln!("items per consumer (4 through files, then python-diskcache): {counts:?}");
}
