//! The page a browser sees at the server's address (docs/SEMANTICS.md,
//! "The browser page"): a directory of the tree as an HTML table (size,
//! time, type, tag, expiry; a Flyte version's entries with their outputs
//! as JSON), a value's page (`PATH?view`: its JSON rendering where there
//! is one, else its text, else a download link), the cache's `stats` on
//! the root's page, and delete buttons unless `--read-only`. Plain HTML
//! forms, no JavaScript.
//!
//! A GET of a directory that asks for HTML, any `?view`, and a form's
//! `POST PATH?delete` are the page's; everything else (WebDAV clients'
//! GETs of values included) goes to dav-server. A delete must carry the
//! server's form key, which only a page it served holds (another site's
//! form cannot), and is refused when the browser says the request comes
//! from another site.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::time::SystemTime;

use dav_server::davpath::DavPath;
use http::{HeaderMap, Method, StatusCode};

use super::listing::{is_root, list_batch, renders_values};
use super::walk::{Walk, components};
use crate::fs::error::FsError;
use crate::fs::filesystem::{Attr, Kind};
use crate::fs::tree::Tree;

/// Entries on one listing page (`?page=N` for the next).
const PER_PAGE: usize = 500;
/// Most bytes of a value shown on a page (a download link has all).
const MAX_SHOWN: u64 = 1 << 20;
/// Most Flyte entries whose outputs a version's page shows inline, and
/// bytes of each.
const MAX_INLINE: usize = 100;
const MAX_INLINE_BYTES: u64 = 64 << 10;

/// An answer: status, content type, extra headers, body.
pub struct Answer {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub location: Option<String>,
    pub body: String,
}

pub struct Page<T: Tree> {
    tree: Arc<T>,
    read_only: bool,
    /// The form key a delete must carry: random, per server.
    form_key: String,
}

impl<T: Tree> Page<T> {
    pub fn new(tree: Arc<T>, read_only: bool) -> Page<T> {
        Page { tree, read_only, form_key: random_hex(16) }
    }

    /// Whether a request may be the page's (cheap: no tree work): one
    /// that asks for HTML, a directory's URL (ending in `/`), `?view`, a
    /// form's delete.
    pub fn wants(method: &Method, uri: &http::Uri, headers: &HeaderMap) -> bool {
        let query = uri.query();
        let asks_html =
            headers.get(http::header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("text/html"));
        match *method {
            Method::GET | Method::HEAD => asks_html || has(query, "view") || uri.path().ends_with('/'),
            Method::POST => has(query, "delete"),
            _ => false,
        }
    }

    /// The page's answer, or `None` when the request is dav-server's (a
    /// browser's GET of a value without `?view`).
    pub fn answer(&self, method: &Method, uri: &http::Uri, headers: &HeaderMap) -> Option<Answer> {
        let query = uri.query();
        let path = match DavPath::from_uri(uri) {
            Ok(path) => path,
            Err(_) => return Some(error(StatusCode::BAD_REQUEST, "not a path in this tree")),
        };
        let parts = components(path.as_bytes());
        let mut walk = Walk::new(&self.tree);
        if *method == Method::POST {
            return Some(self.delete(&mut walk, &parts, query, headers));
        }
        let attr = match walk.follow(parts.clone()) {
            Ok((_, attr)) => attr,
            Err(e) => return Some(tree_error(&e)),
        };
        if attr.kind == Kind::Directory {
            let page = query.and_then(|q| param(q, "page")).and_then(|p| p.parse().ok()).unwrap_or(0);
            return Some(match self.directory(&mut walk, &parts, attr.ino, page) {
                Ok(body) => html(body),
                Err(e) => tree_error(&e),
            });
        }
        has(query, "view").then(|| match self.value(&mut walk, &parts, &attr) {
            Ok(body) => html(body),
            Err(e) => tree_error(&e),
        })
    }

    fn directory(&self, walk: &mut Walk<T>, parts: &[Vec<u8>], dir: u64, page: usize) -> Result<String, FsError> {
        let title = format!("/{}", display(parts));
        let mut out = head(&title);
        breadcrumbs(&mut out, parts, true);
        if is_root(parts) {
            let mut stats = parts.to_vec();
            stats.push(b"stats".to_vec());
            if let Ok((_, attr)) = walk.follow(stats) {
                let text = read(&self.tree, &attr, MAX_SHOWN)?;
                let _ =
                    write!(out, "<h2>stats</h2><pre id=\"stats\">{}</pre>", escape(&String::from_utf8_lossy(&text)));
            }
        }
        let inline = renders_values(parts);
        out.push_str(
            "<table><thead><tr><th class=\"left\">name</th><th>size</th><th>modified (UTC)</th>\
             <th>type</th><th>tag</th><th>expires (UTC)</th><th></th></tr></thead><tbody>\n",
        );
        let (skip, mut shown, mut more, mut offset) = (page * PER_PAGE, 0usize, false, 0u64);
        let mut seen = 0usize;
        let mut outputs = Vec::new();
        'batches: loop {
            let (entries, next) = list_batch(walk, dir, parts, offset)?;
            for (name, attr) in entries {
                seen += 1;
                if seen <= skip {
                    continue;
                }
                if shown == PER_PAGE {
                    more = true;
                    break 'batches;
                }
                shown += 1;
                self.row(&mut out, parts, &name, &attr);
                if inline && attr.kind == Kind::File && name.ends_with(b".json") && outputs.len() < MAX_INLINE {
                    outputs.push((name.clone(), read(&self.tree, &attr, MAX_INLINE_BYTES)?));
                }
            }
            if next == offset {
                break;
            }
            offset = next;
        }
        out.push_str("</tbody></table>\n");
        if page > 0 {
            let _ = write!(out, "<a href=\"?page={}\">previous page</a> ", page - 1);
        }
        if more {
            let _ = write!(out, "<a href=\"?page={}\">next page</a>", page + 1);
        }
        if !outputs.is_empty() {
            out.push_str("<h2>outputs</h2>\n");
            for (name, json) in outputs {
                let name = String::from_utf8_lossy(&name);
                let _ = writeln!(
                    out,
                    "<h3>{}</h3><pre class=\"outputs\">{}</pre>",
                    escape(name.trim_end_matches(".json")),
                    escape(&String::from_utf8_lossy(&json))
                );
            }
        }
        out.push_str("</body></html>\n");
        Ok(out)
    }

    fn row(&self, out: &mut String, parts: &[Vec<u8>], name: &[u8], attr: &Attr) {
        let dir = attr.kind == Kind::Directory;
        let href = format!("{}{}{}", url_of(parts), encode(name), if dir { "/" } else { "" });
        let shown = format!("{}{}", String::from_utf8_lossy(name), if dir { "/" } else { "" });
        let xattr = |n: &str| {
            self.tree
                .getxattr(attr.ino, OsStr::new(&format!("user.diskcache.{n}")))
                .ok()
                .map(|v| String::from_utf8_lossy(&v).into_owned())
        };
        let (kind, tag, expires) = if dir {
            (String::new(), String::new(), String::new())
        } else {
            let expires = xattr("expire_time").and_then(|t| t.parse::<f64>().ok()).map_or(String::new(), time_text);
            (xattr("type").unwrap_or_default(), xattr("tag").unwrap_or_default(), expires)
        };
        let _ = write!(
            out,
            "<tr><td class=\"left\"><a href=\"{href}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>",
            escape(&shown),
            if dir { String::new() } else { attr.size.to_string() },
            time_text(seconds(attr.mtime)),
            escape(&kind),
            escape(&tag),
            expires,
        );
        if !dir {
            let _ = write!(out, "<a href=\"{href}?view\">view</a> <a href=\"{href}\" download>download</a>");
            // A Flyte entry's `.json` is its rendering, not a value.
            let rendering = renders_values(parts) && name.ends_with(b".json");
            if !self.read_only && deletable(parts) && !rendering {
                let _ = write!(
                    out,
                    " <form method=\"post\" action=\"{href}?delete&amp;key={}\"><button>delete</button></form>",
                    self.form_key
                );
            }
        }
        out.push_str("</td></tr>\n");
    }

    fn value(&self, walk: &mut Walk<T>, parts: &[Vec<u8>], attr: &Attr) -> Result<String, FsError> {
        let title = format!("/{}", display(parts));
        let mut out = head(&title);
        breadcrumbs(&mut out, parts, false);
        let name = format!(
            "{}{}",
            url_of(&parts[..parts.len().saturating_sub(1)]),
            parts.last().map(|n| encode(n)).unwrap_or_default()
        );
        let _ = write!(
            out,
            "<p>{} bytes, modified {} UTC. <a href=\"{name}\" download>download</a></p>",
            attr.size,
            time_text(seconds(attr.mtime))
        );
        for n in ["type", "tag", "expire_time"] {
            if let Ok(v) = self.tree.getxattr(attr.ino, OsStr::new(&format!("user.diskcache.{n}"))) {
                let _ = write!(out, "<p>{n}: {}</p>", escape(&String::from_utf8_lossy(&v)));
            }
        }
        // The JSON rendering of a pickle (json/ beside keys/) or a Flyte
        // entry (NAME.json beside it); text is shown as it is.
        let pickled = self.tree.getxattr(attr.ino, OsStr::new("user.diskcache.type")).is_ok_and(|t| t == b"pickle");
        let rendering = rendering_of(parts)
            .filter(|path| pickled || path.last().is_some_and(|n| n.ends_with(b".json")))
            .and_then(|path| walk.follow(path).ok());
        let shown = match rendering {
            Some((_, json)) if json.kind == Kind::File => match read(&self.tree, &json, MAX_SHOWN) {
                Ok(text) => Some(("json", text, json.size)),
                Err(_) => None,
            },
            _ => None,
        };
        let shown = match shown {
            Some(s) => Some(s),
            None => {
                let text = read(&self.tree, attr, MAX_SHOWN)?;
                std::str::from_utf8(&text).is_ok().then_some(("text", text, attr.size))
            }
        };
        match shown {
            Some((kind, text, size)) => {
                let _ = write!(
                    out,
                    "<h2>as {kind}</h2><pre id=\"value\">{}</pre>",
                    escape(&String::from_utf8_lossy(&text))
                );
                if size > MAX_SHOWN {
                    let _ = write!(out, "<p>the first {MAX_SHOWN} bytes of {size}</p>");
                }
            }
            None => out.push_str("<p>binary data: download it to read it.</p>"),
        }
        out.push_str("</body></html>\n");
        Ok(out)
    }

    fn delete(&self, walk: &mut Walk<T>, parts: &[Vec<u8>], query: Option<&str>, headers: &HeaderMap) -> Answer {
        if self.read_only {
            return error(StatusCode::FORBIDDEN, "the server is read-only");
        }
        let other_site = headers
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v != "same-origin" && v != "none");
        let key = query.and_then(|q| param(q, "key"));
        if other_site || !key.is_some_and(|k| constant_time_eq(k.as_bytes(), self.form_key.as_bytes())) {
            return error(StatusCode::FORBIDDEN, "a delete must come from this server's page");
        }
        let Some((name, dirs)) = parts.split_last() else {
            return error(StatusCode::FORBIDDEN, "not a value");
        };
        if !deletable(dirs) {
            return error(StatusCode::FORBIDDEN, "not a value");
        }
        let done = walk.dir(dirs).and_then(|parent| self.tree.unlink(parent, OsStr::from_bytes(name)));
        match done {
            Ok(()) => Answer {
                status: StatusCode::SEE_OTHER,
                content_type: "text/plain; charset=utf-8",
                location: Some(url_of(dirs)),
                body: "deleted\n".into(),
            },
            Err(e) => tree_error(&e),
        }
    }
}

/// Whether the files of directory `parts` are values a delete button may
/// remove: `keys/`, `task/`, `flyte2/` (never `json/`, `stats`, `ops/`,
/// `settings/`, or a tag's link, whose `rm` untags).
fn deletable(parts: &[Vec<u8>]) -> bool {
    let at = if parts.len() >= 2 && parts[0] == b"cache" { 2 } else { 0 };
    parts.get(at).is_some_and(|p| [&b"keys"[..], b"task", b"flyte2"].contains(&p.as_slice()))
}

/// Where `parts`'s JSON rendering is: `json/P` for `keys/P`, `NAME.json`
/// beside a Flyte entry.
fn rendering_of(parts: &[Vec<u8>]) -> Option<Vec<Vec<u8>>> {
    let (name, dirs) = parts.split_last()?;
    if renders_values(dirs) && !name.ends_with(b".json") {
        let mut path = dirs.to_vec();
        path.push([&name[..], b".json"].concat());
        return Some(path);
    }
    let at = if parts.len() >= 2 && parts[0] == b"cache" { 2 } else { 0 };
    (parts.get(at).is_some_and(|p| p == b"keys")).then(|| {
        let mut path = parts.to_vec();
        path[at] = b"json".to_vec();
        path
    })
}

/// Up to `max` bytes of the value at `attr`.
fn read<T: Tree>(tree: &Arc<T>, attr: &Attr, max: u64) -> Result<Vec<u8>, FsError> {
    let (fh, _) = tree.open(attr.ino, false, false, false)?;
    let mut out = Vec::new();
    let result = loop {
        if out.len() as u64 >= max {
            break Ok(());
        }
        let want = (max - out.len() as u64).min(1 << 20) as u32;
        match tree.read(attr.ino, fh, out.len() as u64, want) {
            Ok(data) if data.is_empty() => break Ok(()),
            Ok(data) => out.extend_from_slice(&data),
            Err(e) => break Err(e),
        }
    };
    let released = tree.release(fh);
    result.and(released).map(|()| out)
}

fn head(title: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{t}</title><style>\
         body{{font-family:sans-serif;margin:1.5em}} table{{border-collapse:collapse}} \
         td,th{{padding:0.2em 0.8em;text-align:right;border-bottom:1px solid #ddd}} .left{{text-align:left}} \
         pre{{background:#f6f6f6;padding:0.8em;overflow:auto;max-height:40em}} form{{display:inline}}\
         </style></head><body><h1>{t}</h1>\n",
        t = escape(title)
    )
}

/// Links to each directory above (and, for a directory, to itself).
fn breadcrumbs(out: &mut String, parts: &[Vec<u8>], is_dir: bool) {
    out.push_str("<p><a href=\"/\">diskcachefs</a>");
    for (i, part) in parts.iter().enumerate() {
        let text = escape(&String::from_utf8_lossy(part));
        if i + 1 == parts.len() && !is_dir {
            let _ = write!(out, " / {text}");
        } else {
            let _ = write!(out, " / <a href=\"{}\">{text}</a>", url_of(&parts[..=i]));
        }
    }
    out.push_str("</p>\n");
}

/// The absolute URL of the directory `parts`, ending in `/`.
fn url_of(parts: &[Vec<u8>]) -> String {
    let mut url = String::from("/");
    for part in parts {
        url.push_str(&encode(part));
        url.push('/');
    }
    url
}

fn html(body: String) -> Answer {
    Answer { status: StatusCode::OK, content_type: "text/html; charset=utf-8", location: None, body }
}

fn error(status: StatusCode, message: &str) -> Answer {
    Answer { status, content_type: "text/plain; charset=utf-8", location: None, body: format!("{message}\n") }
}

fn tree_error(e: &FsError) -> Answer {
    let status = match e.errno() {
        libc::ENOENT | libc::ENOTDIR => StatusCode::NOT_FOUND,
        libc::EACCES | libc::EPERM | libc::EROFS | libc::EISDIR => StatusCode::FORBIDDEN,
        libc::EINVAL => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, &e.to_string())
}

fn display(parts: &[Vec<u8>]) -> String {
    parts.iter().map(|p| String::from_utf8_lossy(p)).collect::<Vec<_>>().join("/")
}

fn seconds(t: SystemTime) -> f64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

/// A Unix time as `YYYY-MM-DD HH:MM:SS`.
fn time_text(t: f64) -> String {
    crate::flyte::render::rfc3339(t.floor() as i64, 0).replace('T', " ").trim_end_matches('Z').to_string()
}

/// HTML's five.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A name percent-encoded for a URL's path (every byte but unreserved
/// ones).
fn encode(name: &[u8]) -> String {
    let mut out = String::with_capacity(name.len());
    for &b in name {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn param<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query.split('&').find_map(|kv| match kv.split_once('=') {
        Some((k, v)) if k == name => Some(v),
        None if kv == name => Some(""),
        _ => None,
    })
}

fn has(query: Option<&str>, name: &str) -> bool {
    query.is_some_and(|q| param(q, name).is_some())
}

/// Whether `a` equals `b`, in a time that does not tell where they differ
/// (a secret compared with what a client sent).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // SAFETY: a buffer of `bytes` bytes, filled by the kernel.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), bytes, 0) };
    assert_eq!(n, bytes as isize, "getrandom");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_in_urls_and_html() {
        assert_eq!(encode(b"a b/%str:x"), "a%20b%2F%25str%3Ax");
        assert_eq!(escape("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
        assert_eq!(param("view&page=3", "page"), Some("3"));
        assert_eq!(param("view&page=3", "view"), Some(""));
        assert_eq!(param("viewer", "view"), None);
    }

    #[test]
    fn renderings_and_deletes() {
        let p = |s: &str| components(s.as_bytes());
        assert_eq!(rendering_of(&p("keys/a/b")), Some(p("json/a/b")));
        assert_eq!(rendering_of(&p("cache/x/keys/k")), Some(p("cache/x/json/k")));
        assert_eq!(rendering_of(&p("task/t/v/abc")), Some(p("task/t/v/abc.json")));
        assert_eq!(rendering_of(&p("flyte2/k")), Some(p("flyte2/k.json")));
        assert_eq!(rendering_of(&p("tags/t/k")), None);
        assert!(deletable(&p("keys/a")) && deletable(&p("cache/x/keys")) && !deletable(&p("json")));
        assert!(!deletable(&[]), "stats");
    }
}
