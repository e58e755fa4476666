//! What the views do when their files are read or written: resolve a
//! Flyte task's inputs to its cached outputs, key or explanation
//! (`task/`), and run `ops/` (expire, cull, clear, check, incr, decr).

use super::*;
use crate::flyte::explain::{ExplainError, explain};

impl DiskCacheFs {
    /// Computes a resolver's answer from the inputs written to it: (task,
    /// version, inputs, ignored names, what is asked).
    /// `after_miss`: the outputs of a key the cache lacks, from elsewhere
    /// (the remote tier, filesystem/remote.rs).
    pub(super) fn resolve(
        cache: &StoreConn,
        store: &crate::fs::store::Store,
        (task, version, input, ignore, answer): (String, String, Vec<u8>, Vec<String>, ResolverAnswer),
        stale_as_miss: bool,
        after_miss: impl FnOnce(&str) -> Option<Vec<u8>>,
    ) -> Result<Vec<u8>, FsError> {
        let what = format!("task/{}/{}", str_name(&task), str_name(&version));
        let key = cache_key(&task, &version, &input, &ignore).map_err(|e| FsError::InvalidValue {
            what: format!("{what}: the inputs written"),
            reason: e.to_string(),
        })?;
        match answer {
            ResolverAnswer::Key => return Ok(format!("{key}\n").into_bytes()),
            ResolverAnswer::Explain => {
                let explained =
                    explain(Self::single(cache)?, &task, &version, &input, &ignore).map_err(|e| match e {
                        ExplainError::Key(e) => {
                            FsError::InvalidValue { what: format!("{what}: the inputs written"), reason: e.to_string() }
                        }
                        ExplainError::Cache(e) => FsError::cache(what.clone(), e),
                    })?;
                let mut text = serde_json::to_vec_pretty(&explained).unwrap_or_default();
                text.push(b'\n');
                return Ok(text);
            }
            ResolverAnswer::Outputs => {}
        }
        // A get, as flytekit's: its bookkeeping is noted for later.
        let opened = cache.open_raw(&Key::Str(key.clone())).map_err(|e| FsError::cache(what.clone(), e))?;
        store.note_get(cache, &Key::Str(key.clone()), opened.as_ref().map(|(meta, _)| meta.rowid));
        let Some((meta, content)) = opened else {
            return after_miss(&key)
                .ok_or_else(|| FsError::NotFound(format!("{what}: no cached outputs for these inputs ({key})")));
        };
        let not_outputs = |type_name: &str| FsError::InvalidValue {
            what: format!("keys/{}", str_name(&key)),
            reason: format!("a {type_name} value, not serialized outputs"),
        };
        if meta.value_type() != ValueType::Bytes {
            return Err(not_outputs(meta.value_type().name()));
        }
        let outputs = match content {
            RawContent::Inline(Scalar::Bytes(b)) => b,
            RawContent::File(f) => Snapshot::File(f).read_all().map_err(|e| FsError::io(what.clone(), e))?,
            _ => return Err(not_outputs("non-bytes")),
        };
        if stale_as_miss
            && let Ok(map) = <crate::flyte::idl::LiteralMap as prost::Message>::decode(outputs.as_slice())
            && let Some(gone) = crate::flyte::stale::missing_paths(&map).first()
        {
            // A miss, not an error: the caller computes the outputs again.
            return Err(FsError::NotFound(format!(
                "{what}: stale: the outputs name {}, which is gone ({key})",
                gone.display()
            )));
        }
        Ok(outputs)
    }

    pub(super) fn run_check(cache: &StoreConn, fix: bool) -> Result<Vec<u8>, FsError> {
        let warnings = cache.check(fix).map_err(|e| FsError::cache("ops/check", e))?;
        let list: Vec<serde_json::Value> = warnings
            .iter()
            .map(|w| serde_json::json!({"kind": format!("{:?}", w.kind), "message": w.message}))
            .collect();
        let mut text =
            serde_json::to_vec_pretty(&serde_json::json!({"fixed": fix, "warnings": list})).unwrap_or_default();
        text.push(b'\n');
        Ok(text)
    }

    /// One write to a file in `ops/`: one run of its operation.
    pub(super) fn run_op(cache: &StoreConn, op: &Op, data: &[u8]) -> Result<Vec<u8>, FsError> {
        let text = std::str::from_utf8(data)
            .map_err(|_| FsError::InvalidValue { what: "ops".into(), reason: "not text".into() })?
            .trim();
        let removed = |what: &str, n: Result<u64, crate::cache::Error>| -> Result<Vec<u8>, FsError> {
            let n = n.map_err(|e| FsError::cache(format!("ops/{what}"), e))?;
            Ok(format!("{{\"removed\": {n}}}\n").into_bytes())
        };
        match op {
            Op::Expire => removed("expire", cache.expire(None)),
            Op::Cull => removed("cull", cache.cull()),
            Op::Clear => removed("clear", cache.clear()),
            Op::Check => match text {
                "" | "check" => Self::run_check(cache, false),
                "fix" => Self::run_check(cache, true),
                other => Err(FsError::InvalidValue {
                    what: "ops/check".into(),
                    reason: format!("{other:?}: write nothing (or \"check\") to check, \"fix\" to fix"),
                }),
            },
            Op::Remote => Err(FsError::AccessDenied("ops/remote: read only".into())),
            Op::Incr(key) | Op::Decr(key) => {
                let what =
                    format!("ops/{}/{}", if matches!(op, Op::Incr(_)) { "incr" } else { "decr" }, key_to_name(key));
                let delta: i64 = if text.is_empty() {
                    1
                } else {
                    text.parse().map_err(|_| FsError::InvalidValue {
                        what: what.clone(),
                        reason: format!("{text:?} is not an integer delta"),
                    })?
                };
                let result = match op {
                    Op::Incr(_) => cache.incr(key, delta, Some(0)),
                    _ => cache.decr(key, delta, Some(0)),
                }
                .map_err(|e| FsError::cache(what, e))?;
                let value = match result {
                    crate::cache::Number::Int(i) => Value::Int(i),
                    crate::cache::Number::Float(f) => Value::Float(f),
                };
                let mut out = value_content(&value);
                out.push(b'\n');
                Ok(out)
            }
        }
    }
}
