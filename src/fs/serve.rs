//! `diskcachefs serve`: the tree over HTTP and WebDAV (docs/SEMANTICS.md,
//! "Over HTTP and WebDAV"), for systems without FUSE: the same tree a
//! mount serves ([`DiskCacheFs`], [`WithSubStores`] for a FanoutCache,
//! [`Readable`] for `json/`), behind [`DavTree`] and dav-server's
//! handler, on hyper. On a loopback address no authentication is asked
//! by default (every user of the machine can connect: on a shared machine
//! give a token too); on any other address a token is required
//! (`--token-file`), sent as `Authorization: Bearer TOKEN` or as the
//! password of HTTP basic authentication (what Finder and Explorer send),
//! or the server refuses to start.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use dav_server::DavHandler;
use dav_server::memls::MemLs;
use hyper_util::rt::TokioIo;

use crate::cache::CacheOptions;
use crate::fs::dav::{Answer, DavTree, Page};
use crate::fs::filesystem::{DiskCacheFs, FsConfig};
use crate::fs::readable::Readable;
use crate::fs::store::Store;
use crate::fs::substores::WithSubStores;
use crate::fs::tree::Tree;

#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub cache_dir: PathBuf,
    pub listen: SocketAddr,
    pub read_only: bool,
    pub timeout: Duration,
    /// What every request must carry (`--token-file`); required off
    /// loopback.
    pub token: Option<String>,
    /// The largest PUT body taken (`--max-body`).
    pub max_body: u64,
    /// The remote tier under the cache (`--remote`; docs/REMOTE.md), as
    /// for a mount.
    pub remote: Option<crate::remote::TierConfig>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("--listen {0}: not a loopback address, so every request must authenticate: give --token-file FILE")]
    NotLoopback(SocketAddr),
    #[error("{0}: no python-diskcache cache here (no cache.db)")]
    NoCache(PathBuf),
    #[error("{0}")]
    Open(String),
    #[error("listening on {0}: {1}")]
    Listen(SocketAddr, std::io::Error),
    #[error("--remote: {0}")]
    Remote(String),
}

/// Serves until SIGINT or SIGTERM; `ready` gets the URL once the socket
/// listens.
pub fn run(config: &ServeConfig, ready: impl FnOnce(&str)) -> Result<(), ServeError> {
    if !config.listen.ip().is_loopback() && config.token.is_none() {
        return Err(ServeError::NotLoopback(config.listen));
    }
    if config.remote.is_some() && config.read_only {
        return Err(ServeError::Remote(
            "needs a server that writes: what is pulled is written to the cache \
             (--remote-mode ro keeps the remote read-only)"
                .into(),
        ));
    }
    let sharded = crate::cache::fanout::is_fanout_directory(&config.cache_dir);
    if !sharded && !config.cache_dir.join(crate::cache::settings::DBNAME).is_file() {
        return Err(ServeError::NoCache(config.cache_dir.clone()));
    }
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let fs_config = FsConfig {
        read_only: config.read_only,
        ttl: Duration::from_secs(1),
        uid,
        gid,
        max_inodes: 100_000,
        reads_unopened: false,
        passthrough: false,
        watched_ttl: Duration::from_secs(1),
        stale_as_miss: false,
    };
    let options = CacheOptions { read_only: config.read_only, timeout: config.timeout, ..CacheOptions::default() };
    let store = Store::open(&config.cache_dir, options.clone()).map_err(|e| ServeError::Open(e.to_string()))?;
    let fs = DiskCacheFs::over(store, fs_config);
    let tier = match &config.remote {
        None => None,
        Some(remote) => Some(
            crate::remote::RemoteTier::start(&config.cache_dir, remote.clone())
                .map_err(|e| ServeError::Remote(e.to_string()))?,
        ),
    };
    if let Some(tier) = &tier {
        fs.set_remote(tier.clone());
    }
    let served = if sharded {
        serve_tree(Readable::new(WithSubStores::new(fs, options)), config, ready)
    } else {
        serve_tree(Readable::new(fs), config, ready)
    };
    if let Some(tier) = tier {
        tier.stop();
        log::info!("remote at the end: {}", tier.status());
    }
    served
}

fn serve_tree<T: Tree>(tree: T, config: &ServeConfig, ready: impl FnOnce(&str)) -> Result<(), ServeError> {
    let tree = Arc::new(tree);
    let page = Arc::new(Page::new(tree.clone(), config.read_only));
    let dav: DavHandler = DavHandler::builder()
        .filesystem(Box::new(DavTree::new(tree, config.read_only, config.max_body)))
        // WebDAV's locks, held by this server in memory (Finder and
        // Explorer lock before they write): they stop other WebDAV
        // clients (423), not python-diskcache, which has no locks to map
        // them to; a server's restart drops them.
        .locksystem(MemLs::new())
        // A GET reads 1 MiB at a time through the blocking pool (16 KiB by
        // default: 65,536 hops a GiB).
        .read_buf_size(1 << 20)
        .build_handler();
    let token: Option<Arc<str>> = config.token.as_deref().map(Arc::from);
    let runtime = tokio::runtime::Runtime::new().map_err(|e| ServeError::Open(e.to_string()))?;
    runtime.block_on(async move {
        let listener =
            tokio::net::TcpListener::bind(config.listen).await.map_err(|e| ServeError::Listen(config.listen, e))?;
        let addr = listener.local_addr().map_err(|e| ServeError::Listen(config.listen, e))?;
        ready(&format!("http://{addr}/"));
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| ServeError::Open(e.to_string()))?;
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    // hyper writes a response's head and body apart: without
                    // this, Nagle's algorithm holds the body for the
                    // client's delayed ACK (40 ms stalls on small GETs;
                    // docs/PERFORMANCE.md).
                    let _ = stream.set_nodelay(true);
                    let (dav, page, token) = (dav.clone(), page.clone(), token.clone());
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                            let (dav, page) = (dav.clone(), page.clone());
                            let allowed = token.as_deref().is_none_or(|t| authorized(req.headers(), t));
                            async move {
                                if !allowed {
                                    return Ok::<_, std::convert::Infallible>(unauthorized());
                                }
                                if Page::<T>::wants(req.method(), req.uri(), req.headers()) {
                                    let (method, uri, headers) =
                                        (req.method().clone(), req.uri().clone(), req.headers().clone());
                                    let answer = tokio::task::spawn_blocking(move || page.answer(&method, &uri, &headers))
                                        .await
                                        .ok()
                                        .flatten();
                                    if let Some(answer) = answer {
                                        return Ok(page_response(answer));
                                    }
                                }
                                Ok(dav.handle(req).await)
                            }
                        });
                        // A client that opens a connection and sends no
                        // complete request head in 30 s is dropped (it
                        // holds a connection, never the server).
                        if let Err(e) = hyper::server::conn::http1::Builder::new()
                            .timer(hyper_util::rt::TokioTimer::new())
                            .header_read_timeout(Duration::from_secs(30))
                            .serve_connection(TokioIo::new(stream), service)
                            .await
                        {
                            log::debug!("connection: {e}");
                        }
                    });
                }
                _ = tokio::signal::ctrl_c() => break,
                _ = term.recv() => break,
            }
        }
        log::info!("serve: stopping");
        Ok(())
    })
}

fn page_response(answer: Answer) -> hyper::Response<dav_server::body::Body> {
    let mut response = hyper::Response::new(dav_server::body::Body::from(answer.body));
    *response.status_mut() = answer.status;
    let headers = response.headers_mut();
    headers.insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static(answer.content_type));
    // The page is never framed by another site, nor cached.
    headers.insert("x-frame-options", hyper::header::HeaderValue::from_static("DENY"));
    headers.insert(hyper::header::CACHE_CONTROL, hyper::header::HeaderValue::from_static("no-store"));
    if let Some(location) = answer.location.and_then(|l| hyper::header::HeaderValue::from_str(&l).ok()) {
        headers.insert(hyper::header::LOCATION, location);
    }
    response
}

/// Whether `headers` carry `token`: `Bearer TOKEN`, or basic
/// authentication with it as the password (any user name). Compared in
/// constant time.
fn authorized(headers: &hyper::HeaderMap, token: &str) -> bool {
    use base64::Engine as _;
    let Some(value) = headers.get(hyper::header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else { return false };
    let given = if let Some(bearer) = value.strip_prefix("Bearer ") {
        bearer.trim().as_bytes().to_vec()
    } else if let Some(basic) = value.strip_prefix("Basic ") {
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(basic.trim()) else { return false };
        match decoded.iter().position(|b| *b == b':') {
            Some(i) => decoded[i + 1..].to_vec(),
            None => return false,
        }
    } else {
        return false;
    };
    crate::fs::dav::constant_time_eq(&given, token.as_bytes())
}

fn unauthorized() -> hyper::Response<dav_server::body::Body> {
    let mut response = hyper::Response::new(dav_server::body::Body::from("a token is required\n"));
    *response.status_mut() = hyper::StatusCode::UNAUTHORIZED;
    response.headers_mut().insert(
        hyper::header::WWW_AUTHENTICATE,
        hyper::header::HeaderValue::from_static("Basic realm=\"diskcachefs\", charset=\"UTF-8\""),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::authorized;

    #[test]
    fn bearer_and_basic() {
        let mut h = hyper::HeaderMap::new();
        assert!(!authorized(&h, "s3cret"));
        h.insert("authorization", "Bearer s3cret".parse().unwrap());
        assert!(authorized(&h, "s3cret"));
        h.insert("authorization", "Bearer s3cre".parse().unwrap());
        assert!(!authorized(&h, "s3cret"));
        // user:s3cret
        h.insert("authorization", "Basic dXNlcjpzM2NyZXQ=".parse().unwrap());
        assert!(authorized(&h, "s3cret"));
        h.insert("authorization", "Basic dXNlcjp3cm9uZw==".parse().unwrap());
        assert!(!authorized(&h, "s3cret"));
    }
}
