//! The browser page of `diskcachefs serve` (docs/SEMANTICS.md, "The
//! browser page"): listings with sizes, types, tags and expiry, a value's
//! page with its JSON rendering, the cache's stats, a Flyte version's
//! entries with their outputs, and delete buttons that only this server's
//! page can use. Driven by the plain HTTP client and by headless Chromium
//! (Debian's `chromium`, installed by .ci/run), which leaves screenshots
//! in `$CARGO_TARGET_TMPDIR/artifacts/`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::py;
use support::serve::Server;

fn pyc(cache: &Path, code: &str) -> String {
    py(
        &format!("import sys, datetime, diskcache\nc = diskcache.Cache(sys.argv[1])\n{code}"),
        &[cache.to_str().unwrap()],
    )
    .trim()
    .to_string()
}

/// A cache holding a flytekit task entry (square(7) = 49), a pickled
/// value with a tag and an expiry, and a text value under a directory.
fn flyte_and_pickles(work: &Path) -> PathBuf {
    let cache = work.join("cache");
    let side = work.join("side");
    assert_eq!(support::flyte::workflow(&cache, &side, &["square", "7"]), serde_json::json!(49));
    pyc(
        &cache,
        "c.set('report', {'owner': 'ada <lovelace>', 'when': datetime.date(2024, 1, 2), 'unique': 'zq-page-7731'}, tag='grp', expire=3600)\nc['dir/note'] = 'a note'",
    );
    cache
}

fn html(s: &Server, path: &str) -> (u16, String) {
    let (status, body) = s.request("GET", path, &[("Accept", "text/html")], b"");
    (status, String::from_utf8(body).unwrap())
}

/// The form key in a page's delete buttons.
fn form_key(page: &str) -> String {
    let at = page.find("?delete&amp;key=").expect("a delete button") + "?delete&amp;key=".len();
    page[at..].split('"').next().unwrap().to_string()
}

#[test]
fn listings_values_stats_and_flyte_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let cache = flyte_and_pickles(dir.path());
    let s = Server::start(&cache, &[]);
    // The root: its views and the cache's stats.
    let (status, root) = html(&s, "/");
    assert_eq!(status, 200);
    for view in ["/keys/", "/tags/", "/task/", "/json/"] {
        assert!(root.contains(&format!("href=\"{view}\"")), "{view} in {root}");
    }
    let count = pyc(&cache, "print(len(c))");
    assert!(root.contains(&format!("&quot;count&quot;: {count},")), "{root}");
    // keys/: each value with its size, type, tag and expiry.
    let (_, keys) = html(&s, "/keys/");
    let row = keys.lines().find(|l| l.contains(">report</a>")).expect("report's row");
    let expire = pyc(&cache, "print(c.get('report', expire_time=True)[1])");
    assert!(row.contains("<td>pickle</td><td>grp</td>"), "{row}");
    let expire: f64 = expire.parse().unwrap();
    let expected = diskcachefs::flyte::render::rfc3339(expire.floor() as i64, 0).replace('T', " ").replace('Z', "");
    assert!(row.contains(&expected), "expiry {expected} in {row}");
    assert!(keys.contains("href=\"/keys/dir/\""), "{keys}");
    // A value's page: the pickle as JSON (escaped), never unpickled by us.
    let (status, view) = html(&s, "/keys/report?view");
    assert_eq!(status, 200);
    assert!(view.contains("&quot;owner&quot;: &quot;ada &lt;lovelace&gt;&quot;"), "{view}");
    assert!(view.contains("&quot;when&quot;: &quot;2024-01-02&quot;"), "{view}");
    let (_, note) = html(&s, "/keys/dir/note?view");
    assert!(note.contains("<pre id=\"value\">a note</pre>"), "{note}");
    // A browser's GET of a value itself is the value (a download).
    let (status, raw) = s.request("GET", "/keys/dir/note", &[("Accept", "text/html")], b"");
    assert_eq!((status, raw), (200, b"a note".to_vec()));
    // A Flyte version: its entries, each with its outputs as JSON.
    let (_, tasks) = html(&s, "/task/");
    let task = tasks.split("class=\"left\"><a href=\"/task/").nth(1).unwrap().split('"').next().unwrap().to_string();
    let (_, version) = html(&s, &format!("/task/{task}1/"));
    assert!(
        version.contains("<pre class=\"outputs\">{\n  &quot;o0&quot;: {\n    &quot;integer&quot;: 49"),
        "{version}"
    );
    // Not there: 404; a path that climbs out: refused.
    assert_eq!(html(&s, "/keys/nothing?view").0, 404);
    let (status, body) = s.request("GET", "/keys/../../etc/passwd?view", &[], b"");
    assert!([400, 404].contains(&status) && !String::from_utf8_lossy(&body).contains("root:"), "{status}");
    assert_eq!(s.stop(), 0);
}

#[test]
fn delete_buttons_work_only_from_this_servers_page() {
    let dir = tempfile::tempdir().unwrap();
    let cache = flyte_and_pickles(dir.path());
    let s = Server::start(&cache, &[]);
    let (_, keys) = html(&s, "/keys/");
    let key = form_key(&keys);
    // Without the key, with a wrong one, or from another site: 403.
    for (query, site) in
        [("delete", "same-origin"), ("delete&key=00", "same-origin"), (&*format!("delete&key={key}"), "cross-site")]
    {
        let (status, _) = s.request("POST", &format!("/keys/report?{query}"), &[("Sec-Fetch-Site", site)], b"");
        assert_eq!(status, 403, "{query} {site}");
    }
    assert_eq!(pyc(&cache, "print('report' in c)"), "True");
    // Not a value: json/ and stats have no button and refuse.
    let (status, _) = s.request("POST", &format!("/stats?delete&key={key}"), &[], b"");
    assert_eq!(status, 403);
    // The page's own form: the value is gone, back to the listing.
    let (status, _) =
        s.request("POST", &format!("/keys/report?delete&key={key}"), &[("Sec-Fetch-Site", "same-origin")], b"");
    assert_eq!(status, 303);
    assert_eq!(pyc(&cache, "print('report' in c, c.check())"), "False []");
    // A read-only server shows no button and refuses.
    assert_eq!(s.stop(), 0);
    let s = Server::start(&cache, &["--read-only"]);
    let (_, keys) = html(&s, "/keys/dir/");
    assert!(keys.contains(">note</a>") && !keys.contains("<button>delete</button>"), "{keys}");
    let (status, _) = s.request("POST", &format!("/keys/dir/note?delete&key={key}"), &[], b"");
    assert_eq!(status, 403);
    assert_eq!(pyc(&cache, "print(c['dir/note'])"), "a note");
    assert_eq!(s.stop(), 0);
}

/// Headless Chromium's DOM of `url` after loading it.
fn chromium_dom(profile: &Path, url: &str) -> String {
    let out = Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--dump-dom"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .env("HOME", profile)
        .output()
        .expect("chromium is missing: .ci/run installs it (apt-get install chromium)");
    assert!(out.status.success(), "chromium: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn chromium_screenshot(profile: &Path, url: &str, png: &Path) {
    let out = Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--window-size=1280,900"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(url)
        .env("HOME", profile)
        .output()
        .unwrap();
    assert!(out.status.success(), "chromium: {}", String::from_utf8_lossy(&out.stderr));
    let data = std::fs::read(png).unwrap();
    assert!(data.starts_with(b"\x89PNG\r\n\x1a\n"), "{} is no PNG", png.display());
    // A blank page of this size is about 6 KB; a listing is several times it.
    assert!(data.len() > 15_000, "{}: {} bytes, a blank page?", png.display(), data.len());
}

#[test]
fn chromium_shows_the_listing_and_the_outputs_without_javascript() {
    let dir = tempfile::tempdir().unwrap();
    let cache = flyte_and_pickles(dir.path());
    let s = Server::start(&cache, &[]);
    let profile = dir.path().join("chromium");
    std::fs::create_dir_all(&profile).unwrap();
    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let base = format!("http://{}", s.addr);
    // The listing of keys/, as a browser renders it.
    chromium_screenshot(&profile, &format!("{base}/keys/"), &artifacts.join("serve-keys.png"));
    let dom = chromium_dom(&profile, &format!("{base}/keys/"));
    assert!(dom.contains(">report</a>") && dom.contains("<td>pickle</td><td>grp</td>"), "{dom}");
    assert!(!dom.contains("<script"), "the page needs no JavaScript");
    // A Flyte version's page: the entry's outputs as JSON in the DOM.
    let tasks = chromium_dom(&profile, &format!("{base}/task/"));
    let task = tasks.split("class=\"left\"><a href=\"/task/").nth(1).unwrap().split('"').next().unwrap().to_string();
    let url = format!("{base}/task/{task}1/");
    chromium_screenshot(&profile, &url, &artifacts.join("serve-flyte-version.png"));
    let dom = chromium_dom(&profile, &url);
    let at = dom.find("<pre class=\"outputs\">").expect("the outputs") + "<pre class=\"outputs\">".len();
    let json: serde_json::Value =
        serde_json::from_str(&dom[at..].split("</pre>").next().unwrap().replace("&quot;", "\"")).unwrap();
    assert_eq!(json, serde_json::json!({"o0": {"integer": 49}}));
    // The pickled value's page.
    let dom = chromium_dom(&profile, &format!("{base}/keys/report?view"));
    assert!(dom.contains("zq-page-7731"), "{dom}");
    assert_eq!(s.stop(), 0);
}
