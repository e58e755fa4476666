//! `diskcachefs serve`: the tree over HTTP and WebDAV (docs/SEMANTICS.md,
//! "Over HTTP and WebDAV"), for systems without FUSE: the same tree a
//! mount serves ([`DiskCacheFs`], [`WithSubStores`] for a FanoutCache,
//! [`Readable`] for `json/`), behind [`DavTree`] and dav-server's
//! handler, on hyper. Loopback only for now: another address would need
//! authentication, which is not built yet, so it is refused.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use dav_server::DavHandler;
use dav_server::fakels::FakeLs;
use hyper_util::rt::TokioIo;

use crate::cache::CacheOptions;
use crate::fs::dav::DavTree;
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
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("--listen {0}: only a loopback address for now (another would need authentication, not built yet)")]
    NotLoopback(SocketAddr),
    #[error("{0}: no python-diskcache cache here (no cache.db)")]
    NoCache(PathBuf),
    #[error("{0}")]
    Open(String),
    #[error("listening on {0}: {1}")]
    Listen(SocketAddr, std::io::Error),
}

/// Serves until SIGINT or SIGTERM; `ready` gets the URL once the socket
/// listens.
pub fn run(config: &ServeConfig, ready: impl FnOnce(&str)) -> Result<(), ServeError> {
    if !config.listen.ip().is_loopback() {
        return Err(ServeError::NotLoopback(config.listen));
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
    };
    let options = CacheOptions { read_only: config.read_only, timeout: config.timeout, ..CacheOptions::default() };
    let store = Store::open(&config.cache_dir, options.clone()).map_err(|e| ServeError::Open(e.to_string()))?;
    let fs = DiskCacheFs::over(store, fs_config);
    if sharded {
        serve_tree(Readable::new(WithSubStores::new(fs, options)), config, ready)
    } else {
        serve_tree(Readable::new(fs), config, ready)
    }
}

fn serve_tree<T: Tree>(tree: T, config: &ServeConfig, ready: impl FnOnce(&str)) -> Result<(), ServeError> {
    let dav: DavHandler = DavHandler::builder()
        .filesystem(Box::new(DavTree::new(Arc::new(tree), config.read_only)))
        // LOCK is answered (clients such as Finder and Explorer need it)
        // but holds nothing: the cache has no locks of its own to map to.
        .locksystem(FakeLs::new())
        .autoindex(true)
        .build_handler();
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
                    let dav = dav.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req| {
                            let dav = dav.clone();
                            async move { Ok::<_, std::convert::Infallible>(dav.handle(req).await) }
                        });
                        if let Err(e) = hyper::server::conn::http1::Builder::new()
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
