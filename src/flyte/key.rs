//! flytekit's local-cache key: `{task}-{version}-{md5}`, where the md5 is
//! `joblib.hash` of the canonical input bytes (`canonical.rs`).
//!
//! The canonical bytes have two paths with one result: the borrowing path
//! reads the client's bytes in place (`borrowed.rs`) and takes nearly all
//! inputs; what it does not take (anything prost would merge or refuse, and
//! any input whose key is an error) goes the prost path: prost decodes it,
//! re-encodes its own values, and those bytes are read in place. Both feed
//! one encoder, so the paths can differ only in how they read the input,
//! which tests/flyte_borrowed.rs checks differentially.

use md5::{Digest, Md5};
use prost::Message;
use thiserror::Error;

use super::borrowed;
use super::canonical::{hashed_checked, hashed_inputs};
use super::idl::LiteralMap;

#[derive(Debug, Error)]
pub enum KeyError {
    #[error("not a serialized flyteidl LiteralMap: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("the inputs hold {0}")]
    Unsupported(String),
    #[error("{0}")]
    OutOfRange(String),
}

/// Decodes a serialized `flyteidl.core.LiteralMap` (bounded nesting:
/// prost refuses messages nested deeper than 100).
pub fn decode_literal_map(bytes: &[u8]) -> Result<LiteralMap, KeyError> {
    Ok(LiteralMap::decode(bytes)?)
}

/// The bytes flytekit hashes for these inputs (`canonical` in the test
/// vectors).
pub fn canonical_bytes(inputs: &[u8], ignore: &[String]) -> Result<Vec<u8>, KeyError> {
    match canonical_bytes_borrowed(inputs, ignore) {
        Some(canonical) => Ok(canonical),
        None => canonical_bytes_prost(inputs, ignore),
    }
}

/// [`canonical_bytes`] by the borrowing path alone (for tests and
/// benchmarks): `None` when it does not take the inputs, which is whenever
/// prost might read them otherwise (a field set twice, an unknown wire
/// shape, deep nesting) and whenever the result would be an error (errors
/// come from the prost path, so they are always the same).
pub fn canonical_bytes_borrowed(inputs: &[u8], ignore: &[String]) -> Option<Vec<u8>> {
    // `takes` also refuses what flytekit's checks would raise on.
    if !borrowed::takes(inputs) {
        return None;
    }
    hashed_checked(inputs, ignore).ok()
}

/// [`canonical_bytes`] by the prost path alone (for tests and benchmarks):
/// prost decodes the inputs as it always would, merging fields set twice.
pub fn canonical_bytes_prost(inputs: &[u8], ignore: &[String]) -> Result<Vec<u8>, KeyError> {
    hashed_inputs(&decode_literal_map(inputs)?, ignore)
}

/// `joblib.hash(data)` of a Python bytes object: the md5 of joblib's
/// protocol-3 pickle of it, which has no memo opcode:
/// `\x80\x03` `C`+len (or `B`+4-byte length) data `.`.
pub fn joblib_hash(data: &[u8]) -> String {
    let mut hex = String::with_capacity(32);
    push_joblib_hash(&mut hex, data);
    hex
}

/// [`joblib_hash`] appended to `out`.
fn push_joblib_hash(out: &mut String, data: &[u8]) {
    let mut md5 = Md5::new();
    md5.update([0x80, 0x03]);
    if data.len() < 256 {
        md5.update([b'C', data.len() as u8]);
    } else {
        md5.update([b'B']);
        md5.update((data.len() as u32).to_le_bytes());
    }
    md5.update(data);
    md5.update(b".");
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // Into bytes first: a `char` pushed is encoded as UTF-8 each time.
    let mut hex = [0u8; 32];
    for (pair, b) in hex.chunks_exact_mut(2).zip(md5.finalize()) {
        pair[0] = HEX[usize::from(b >> 4)];
        pair[1] = HEX[usize::from(b & 15)];
    }
    out.push_str(std::str::from_utf8(&hex).expect("hex digits are ASCII"));
}

/// `{task}-{version}-{joblib_hash(canonical)}`, built in one allocation
/// (`format!` cost a twentieth of a key's instructions, callgrind).
fn key_string(task: &str, version: &str, canonical: &[u8]) -> String {
    let mut key = String::with_capacity(task.len() + version.len() + 34);
    key.push_str(task);
    key.push('-');
    key.push_str(version);
    key.push('-');
    push_joblib_hash(&mut key, canonical);
    key
}

/// flytekit's `_calculate_cache_key(task, version, inputs, ignore)`.
pub fn cache_key(task: &str, version: &str, inputs: &[u8], ignore: &[String]) -> Result<String, KeyError> {
    Ok(key_string(task, version, &canonical_bytes(inputs, ignore)?))
}

/// The same for an already decoded map.
pub fn cache_key_of(task: &str, version: &str, inputs: &LiteralMap, ignore: &[String]) -> Result<String, KeyError> {
    Ok(key_string(task, version, &hashed_inputs(inputs, ignore)?))
}
