//! An S3-compatible store (`s3://BUCKET/PREFIX`) over `rusty-s3` (request
//! signing, SigV4 presigned URLs) and `ureq` (a blocking HTTP client): no
//! async runtime, every call bounded by the store's deadline (`ureq`'s
//! connect timeout and its global timeout for the whole exchange).
//!
//! Configuration comes from AWS's usual variables: the endpoint from
//! `AWS_ENDPOINT_URL` (or [`StoreOptions::endpoint`]), the region from
//! `AWS_REGION` or `AWS_DEFAULT_REGION`, credentials from
//! `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`).
//! A custom endpoint is addressed path-style (`ENDPOINT/BUCKET/KEY`), as
//! S3-compatible servers expect; AWS itself virtual-host style.

use std::sync::OnceLock;
use std::time::Duration;

use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};

use super::store::{RemoteError, RemoteStore, StoreOptions, deadline_for, random_hex};

/// How long a presigned URL stays valid: far beyond any deadline.
const SIGNED_FOR: Duration = Duration::from_secs(300);

pub struct S3Store {
    url: String,
    bucket: Bucket,
    credentials: Option<Credentials>,
    /// `PREFIX/` (or empty): every name lives under it.
    prefix: String,
    agent: ureq::Agent,
    deadline: Duration,
    /// Whether the server honours `If-None-Match: *` (probed at the first
    /// conditional create).
    conditional: OnceLock<bool>,
}

fn credentials_from_env() -> Result<Option<Credentials>, RemoteError> {
    Ok(match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
        (Some(k), Some(s)) => Some(match env("AWS_SESSION_TOKEN") {
            Some(t) => Credentials::new_with_token(k, s, t),
            None => Credentials::new(k, s),
        }),
        (None, None) => None,
        _ => {
            return Err(RemoteError::Config(
                "S3 credentials: set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or neither".into(),
            ));
        }
    })
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl S3Store {
    /// `rest` is the URL after `s3://`: `BUCKET` or `BUCKET/PREFIX`.
    pub fn open(url: &str, rest: &str, options: &StoreOptions) -> Result<S3Store, RemoteError> {
        let (name, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let prefix = prefix.trim_matches('/');
        if name.is_empty() {
            return Err(RemoteError::Config(format!("remote URL {url:?}: no bucket (s3://BUCKET/PREFIX)")));
        }
        if !prefix.is_empty() && !super::store::valid_name(prefix) {
            return Err(RemoteError::Config(format!(
                "remote URL {url:?}: the prefix {prefix:?} must be /-separated parts of letters, digits and -_."
            )));
        }
        let custom =
            options.endpoint.clone().or_else(|| env("AWS_ENDPOINT_URL_S3")).or_else(|| env("AWS_ENDPOINT_URL"));
        let region = options
            .region
            .clone()
            .or_else(|| env("AWS_REGION"))
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| "us-east-1".to_string());
        let (endpoint, style) = match &custom {
            Some(e) => (e.clone(), UrlStyle::Path),
            None => (format!("https://s3.{region}.amazonaws.com"), UrlStyle::VirtualHost),
        };
        let endpoint = endpoint
            .parse()
            .map_err(|e| RemoteError::Config(format!("S3 endpoint {endpoint:?} (AWS_ENDPOINT_URL): {e}")))?;
        let bucket = Bucket::new(endpoint, style, name.to_string(), region)
            .map_err(|e| RemoteError::Config(format!("S3 bucket {name:?} at {custom:?}: {e}")))?;
        let credentials = match options.credentials.clone() {
            Some((k, s)) => Some(Credentials::new(k, s)),
            None => credentials_from_env()?,
        };
        let agent = ureq::Agent::config_builder()
            .timeout_connect(Some(options.deadline))
            .timeout_global(Some(options.deadline))
            .http_status_as_error(false)
            .max_redirects(0)
            .build()
            .into();
        Ok(S3Store {
            url: url.to_string(),
            bucket,
            credentials,
            prefix: if prefix.is_empty() { String::new() } else { format!("{prefix}/") },
            agent,
            deadline: options.deadline,
            conditional: OnceLock::new(),
        })
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    fn fail(&self, op: &'static str, name: &str, after: Duration, e: ureq::Error) -> RemoteError {
        let (store, name) = (self.url.clone(), name.to_string());
        match e {
            ureq::Error::Timeout(_) => RemoteError::Timeout { store, op, name, after },
            ureq::Error::Io(io)
                if matches!(io.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock) =>
            {
                RemoteError::Timeout { store, op, name, after }
            }
            ureq::Error::BodyExceedsLimit(limit) => RemoteError::TooLarge { store, op, name, limit },
            e @ (ureq::Error::ConnectionFailed | ureq::Error::HostNotFound | ureq::Error::Io(_)) => {
                RemoteError::Unreachable { store, op, name, reason: e.to_string() }
            }
            e => RemoteError::Protocol { store, op, name, reason: e.to_string() },
        }
    }

    /// An answer that is not the one expected: its status and the start
    /// of S3's error document.
    fn status(&self, op: &'static str, name: &str, mut resp: ureq::http::Response<ureq::Body>) -> RemoteError {
        let code = resp.status().as_u16();
        let body = resp.body_mut().with_config().limit(4096).read_to_string().unwrap_or_default();
        let detail = s3_error_code(&body).unwrap_or_default();
        let reason = format!("HTTP {code} {detail}").trim_end().to_string();
        let (store, name) = (self.url.clone(), name.to_string());
        if code == 401 || code == 403 {
            RemoteError::Denied { store, op, name, reason }
        } else {
            RemoteError::Protocol { store, op, name, reason }
        }
    }

    fn put(&self, name: &str, bytes: &[u8], conditional: bool) -> Result<bool, RemoteError> {
        let key = self.key(name);
        let mut action = self.bucket.put_object(self.credentials.as_ref(), &key);
        if conditional {
            action.headers_mut().insert("if-none-match", "*");
        }
        let url = action.sign(SIGNED_FOR);
        let after = deadline_for(self.deadline, bytes.len() as u64);
        let mut req = self.agent.put(url.as_str()).config().timeout_global(Some(after)).build();
        if conditional {
            req = req.header("if-none-match", "*");
        }
        let resp = req.send(bytes).map_err(|e| self.fail("PUT", name, after, e))?;
        match resp.status().as_u16() {
            200..=299 => Ok(true),
            // 412: the object exists; 409: a conditional create racing
            // another on the same name (AWS's ConditionalRequestConflict),
            // which the other one wins.
            412 | 409 if conditional => Ok(false),
            _ => Err(self.status("PUT", name, resp)),
        }
    }

    /// Whether `If-None-Match: *` is honoured: a probe object created
    /// twice under `.probe/`, then removed.
    fn honours_conditional(&self) -> Result<bool, RemoteError> {
        if let Some(known) = self.conditional.get() {
            return Ok(*known);
        }
        let probe = format!(".probe/{}", random_hex());
        self.put(&probe, b"probe", true)?;
        let honoured = !self.put(&probe, b"probe", true)?;
        let url = self.bucket.delete_object(self.credentials.as_ref(), &self.key(&probe)).sign(SIGNED_FOR);
        if let Err(e) = self.agent.delete(url.as_str()).call() {
            log::warn!("{}: could not remove the probe object {probe}: {e}", self.url);
        }
        if !honoured {
            log::warn!(
                "{}: the server ignores If-None-Match: * (conditional create); first-writer-wins is a check \
                 before and a read-back after each create, with a race window between them",
                self.url
            );
        }
        Ok(*self.conditional.get_or_init(|| honoured))
    }
}

/// The `<Code>` of an S3 error document.
fn s3_error_code(body: &str) -> Option<String> {
    let start = body.find("<Code>")? + "<Code>".len();
    let end = body[start..].find("</Code>")? + start;
    Some(body[start..end].to_string())
}

impl RemoteStore for S3Store {
    fn url(&self) -> &str {
        &self.url
    }

    fn get(&self, name: &str, max_len: u64) -> Result<Option<Vec<u8>>, RemoteError> {
        let url = self.bucket.get_object(self.credentials.as_ref(), &self.key(name)).sign(SIGNED_FOR);
        let after = deadline_for(self.deadline, max_len);
        let req = self.agent.get(url.as_str()).config().timeout_global(Some(after)).build();
        let mut resp = req.call().map_err(|e| self.fail("GET", name, after, e))?;
        match resp.status().as_u16() {
            200 => {
                let bytes = resp
                    .body_mut()
                    .with_config()
                    .limit(max_len)
                    .read_to_vec()
                    .map_err(|e| self.fail("GET", name, after, e))?;
                Ok(Some(bytes))
            }
            404 => Ok(None),
            _ => Err(self.status("GET", name, resp)),
        }
    }

    fn exists(&self, name: &str) -> Result<bool, RemoteError> {
        let url = self.bucket.head_object(self.credentials.as_ref(), &self.key(name)).sign(SIGNED_FOR);
        let resp = self.agent.head(url.as_str()).call().map_err(|e| self.fail("HEAD", name, self.deadline, e))?;
        match resp.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(self.status("HEAD", name, resp)),
        }
    }

    fn put_if_absent(&self, name: &str, bytes: &[u8]) -> Result<bool, RemoteError> {
        if self.honours_conditional()? {
            return self.put(name, bytes, true);
        }
        // A store without conditional creates: look first, write, read back.
        if self.exists(name)? {
            return Ok(false);
        }
        self.put(name, bytes, false)?;
        Ok(self.get(name, bytes.len() as u64)?.as_deref() == Some(bytes))
    }

    fn list_after(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<Vec<String>, RemoteError> {
        let full_prefix = self.key(prefix);
        let mut action = self.bucket.list_objects_v2(self.credentials.as_ref());
        action.with_prefix(full_prefix.clone());
        let start = after.map(|a| self.key(a));
        if let Some(s) = &start {
            action.with_start_after(s.clone());
        }
        action.with_max_keys(limit.clamp(1, 1000));
        let url = action.sign(SIGNED_FOR);
        let mut resp = self.agent.get(url.as_str()).call().map_err(|e| self.fail("LIST", prefix, self.deadline, e))?;
        if resp.status().as_u16() != 200 {
            return Err(self.status("LIST", prefix, resp));
        }
        let text = resp
            .body_mut()
            .with_config()
            .limit(16 * 1024 * 1024)
            .read_to_string()
            .map_err(|e| self.fail("LIST", prefix, self.deadline, e))?;
        let parsed = rusty_s3::actions::ListObjectsV2::parse_response(&text).map_err(|e| RemoteError::Protocol {
            store: self.url.clone(),
            op: "LIST",
            name: prefix.to_string(),
            reason: format!("malformed listing: {e}"),
        })?;
        let mut names: Vec<String> = parsed
            .contents
            .into_iter()
            .filter_map(|c| c.key.strip_prefix(&self.prefix).map(str::to_string))
            .filter(|k| k.starts_with(prefix) && after.is_none_or(|a| k.as_str() > a))
            .collect();
        names.sort();
        names.truncate(limit);
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_parsed() {
        let opts = StoreOptions { endpoint: Some("http://127.0.0.1:1".into()), ..Default::default() };
        let s = S3Store::open("s3://b/team/x", "b/team/x", &opts).unwrap();
        assert_eq!(s.key("ns/values/ab"), "team/x/ns/values/ab");
        let s = S3Store::open("s3://b", "b", &opts).unwrap();
        assert_eq!(s.key("ns/values/ab"), "ns/values/ab");
        assert!(S3Store::open("s3:///p", "/p", &opts).err().unwrap().to_string().contains("no bucket"));
        let bad = StoreOptions { endpoint: Some("not a url".into()), ..Default::default() };
        assert!(S3Store::open("s3://b", "b", &bad).err().unwrap().to_string().contains("S3 endpoint"));
    }

    #[test]
    fn error_codes_are_read() {
        assert_eq!(
            s3_error_code("<Error><Code>AccessDenied</Code><Message>x</Message></Error>").as_deref(),
            Some("AccessDenied")
        );
        assert_eq!(s3_error_code("nothing"), None);
    }
}
