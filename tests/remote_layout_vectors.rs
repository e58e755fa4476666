//! Golden vectors of the remote layout (docs/REMOTE.md): what another
//! version of diskcachefs, or another implementation, wrote to a bucket
//! must still read, and what we write must still be what they read. The
//! unit tests in src/remote/layout.rs only round-trip, so a change to a
//! field name or to what a key id hashes would pass them and orphan every
//! stored entry; here each expectation is a literal, and each literal is
//! also computed a second way, by Python from docs/REMOTE.md's words
//! (`PY`: hashlib, hmac, json, base64, struct; no diskcachefs code), so
//! neither our output nor Python's alone made it.
//!
//! The entries: a flytekit task-cache entry (unsigned and signed), a str
//! key shared by `--prefix` (non-ASCII, with a tag and an expiry, signed),
//! a Flyte 2 `task_cache` row (signed), and a bytes key shared by `--tag`
//! with a pickle value (unsigned). What each test pins:
//! - `key_ids_and_object_names`: the key bytes (type name, NUL, the
//!   stored bytes: UTF-8, 8 bytes big-endian for int and float) and key
//!   ids for every key type; the names `NS/records/<id>`,
//!   `NS/values/<sha256>`, `NS/log/<20 digits>-<id>`. Second computation:
//!   Python's `struct.pack(">q"/">d")` and `hashlib.sha256`.
//! - `value_objects`: the bytes of each value type and their sha256.
//!   Python's `struct` and `hashlib.sha256`.
//! - `records_and_envelopes_byte_for_byte`: each record's JSON text
//!   (field names, nesting, key order, base64 of bytes keys, how floats
//!   print, UTF-8 not escaped), its HMAC-SHA256 and the whole envelope.
//!   Python's `json.dumps(sort_keys=True, separators=(",", ":"),
//!   ensure_ascii=False)`, `base64.b64encode`, `hmac.new(key, text, sha256)`.
//! - `records_written_today_are_read_back`: the writer and the reader
//!   agree, with and without a key (the round trip, for completeness).
//! - `literal_records_are_read`: the literal envelopes above, and one
//!   written as a Python writer following docs/REMOTE.md would
//!   (`json.dumps` defaults: spaces, its own key order, `\u00e9`, an
//!   integer `created`), are read by today's code into the literal record;
//!   the reader verifies the HMAC over the exact text, not a re-encoding.
//! - `sync_writes_and_reads_the_pinned_objects`: through `sync` itself (an
//!   in-memory store): what a push writes is exactly the pinned objects
//!   (values, records as above but for `created` and the HMAC over it,
//!   Python's HMAC of the text written; the log entry is the id and a
//!   newline; nothing else), and a store holding the literal objects, as
//!   an older version left them, is pulled into a cache (a Flyte 2 row into
//!   `task_cache`), the unsigned record refused by a reader with a key.

mod support;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use diskcachefs::cache::{Cache, Key, Scalar, Value};
use diskcachefs::flyte::flyte2::Flyte2Cache;
use diskcachefs::remote::layout::{
    self, FORMAT, Record, Rejection, ShareKind, envelope, key_bytes, key_id, log_name, open_envelope, parse_log_name,
    record_name, sha256_hex, sign, value_bytes, value_from_bytes, value_name,
};
use diskcachefs::remote::share::Selection;
use diskcachefs::remote::{Mode, RemoteError, RemoteStore, SyncOptions, store, sync};
use serde_json::Value as Json;

const NS: &str = "myproject";
const SIGNING_KEY: &[u8] = b"team-secret-2026";

const FLYTE_KEY: &str = "wf.square-1-9f0c2f3a1b4d5e6f708192a3b4c5d6e7";
const PREFIX_KEY: &str = "team/report-é.csv";
/// A Flyte 2 row key: base64 of a sha256 (`/`, `=` and all).
const FLYTE2_ROW: &str = "QD7dsDuRtCiM1OBpnvzFMu/wL6j9mVM2pQvIGwwo1vM=";
const FLYTE2_KEY: &str = "flyte2/task_cache/QD7dsDuRtCiM1OBpnvzFMu/wL6j9mVM2pQvIGwwo1vM=";
const TAG_KEY: &[u8] = b"\x00\xffmodel-v1";

const FLYTE_ID: &str = "5590f309e4ba6b5b2d3a17685a7b75cf9234fbf5298a83deb71fd32e5cf62195";
const PREFIX_ID: &str = "8913d4442550e521e060ed96f117a7731ba0eeed10391794421b1ec52cfa43d6";
const FLYTE2_ID: &str = "2e2b76d2406474a7b3cec80cab28caf9e4f49aa818a0c043489b24828678d79d";
const TAG_ID: &str = "ad0587c0f231d32d03ff299fa672e289840c3ec1a531a938bfc433527446b5fb";

/// flytekit outputs: LiteralMap {o0: 25}.
const FLYTE_VALUE: &[u8] = b"\x0a\x0c\x0a\x02o0\x12\x06\x0a\x04\x0a\x02\x08\x19";
const FLYTE_DIGEST: &str = "6fdf882f964680228ca2f2c0069f376cf81846aaf0402959ecb591645d976cc2";
const PREFIX_VALUE: &str = "total: 42\n";
const PREFIX_DIGEST: &str = "64c88073987e24e83cd15676b4048bc82f4bcc1cbac21d33595a91e5d168d649";
/// Flyte 2 outputs: `flyteidl2.task.Outputs` [o0: 36].
const FLYTE2_VALUE: &[u8] = b"\x0a\x0c\x0a\x02o0\x12\x06\x0a\x04\x0a\x02\x08\x24";
const FLYTE2_DIGEST: &str = "38a51b21e1af41d7fb64ea972105bdfe298260ddabaf29590c775f24c5038f64";
/// `pickle.dumps(42, protocol=5)`.
const TAG_VALUE: &[u8] = b"\x80\x05K*.";
const TAG_DIGEST: &str = "b7c8a7bf822f2bdf7aa1184fc92930c5991e8062007e075c072101275ed291ea";

const FLYTE_RECORD: &str = concat!(
    r#"{"created":1796190000.5,"expire_time":null,"#,
    r#""key":{"data":"wf.square-1-9f0c2f3a1b4d5e6f708192a3b4c5d6e7","type":"str"},"kind":"flyte","#,
    r#""namespace":"myproject","tag":null,"#,
    r#""value":{"sha256":"6fdf882f964680228ca2f2c0069f376cf81846aaf0402959ecb591645d976cc2","size":14,"#,
    r#""type":"bytes"}}"#,
);
const FLYTE_ENVELOPE: &str = concat!(
    r#"{"format":"diskcachefs-remote/1","hmac_sha256":null,"record":"{\"created\":1796190000.5,"#,
    r#"\"expire_time\":null,\"key\":{\"data\":\"wf.square-1-9f0c2f3a1b4d5e6f708192a3b4c5d6e7\","#,
    r#"\"type\":\"str\"},\"kind\":\"flyte\",\"namespace\":\"myproject\",\"tag\":null,"#,
    r#"\"value\":{\"sha256\":\"6fdf882f964680228ca2f2c0069f376cf81846aaf0402959ecb591645d976cc2\","#,
    r#"\"size\":14,\"type\":\"bytes\"}}"}"#,
);
const FLYTE_HMAC: &str = "fc9934f015c32cea86c94c977e495b59d0db75d27bce3b77165994ba58f8b873";
const FLYTE_SIGNED_ENVELOPE: &str = concat!(
    r#"{"format":"diskcachefs-remote/1","#,
    r#""hmac_sha256":"fc9934f015c32cea86c94c977e495b59d0db75d27bce3b77165994ba58f8b873","#,
    r#""record":"{\"created\":1796190000.5,\"expire_time\":null,"#,
    r#"\"key\":{\"data\":\"wf.square-1-9f0c2f3a1b4d5e6f708192a3b4c5d6e7\",\"type\":\"str\"},"#,
    r#"\"kind\":\"flyte\",\"namespace\":\"myproject\",\"tag\":null,"#,
    r#"\"value\":{\"sha256\":\"6fdf882f964680228ca2f2c0069f376cf81846aaf0402959ecb591645d976cc2\","#,
    r#"\"size\":14,\"type\":\"bytes\"}}"}"#,
);

const PREFIX_RECORD: &str = concat!(
    r#"{"created":1796190001.25,"expire_time":4102444800.25,"key":{"data":"team/report-é.csv","#,
    r#""type":"str"},"kind":"prefix","namespace":"myproject","tag":{"data":"reports","type":"str"},"#,
    r#""value":{"sha256":"64c88073987e24e83cd15676b4048bc82f4bcc1cbac21d33595a91e5d168d649","size":10,"#,
    r#""type":"str"}}"#,
);
const PREFIX_HMAC: &str = "a9696e77741706ab07e1d2dbeb3aa8dc000db1bc250fd4ea2812093db0f7a20c";
const PREFIX_SIGNED_ENVELOPE: &str = concat!(
    r#"{"format":"diskcachefs-remote/1","#,
    r#""hmac_sha256":"a9696e77741706ab07e1d2dbeb3aa8dc000db1bc250fd4ea2812093db0f7a20c","#,
    r#""record":"{\"created\":1796190001.25,\"expire_time\":4102444800.25,"#,
    r#"\"key\":{\"data\":\"team/report-é.csv\",\"type\":\"str\"},\"kind\":\"prefix\","#,
    r#"\"namespace\":\"myproject\",\"tag\":{\"data\":\"reports\",\"type\":\"str\"},"#,
    r#"\"value\":{\"sha256\":\"64c88073987e24e83cd15676b4048bc82f4bcc1cbac21d33595a91e5d168d649\","#,
    r#"\"size\":10,\"type\":\"str\"}}"}"#,
);

const FLYTE2_RECORD: &str = concat!(
    r#"{"created":1796190002.75,"expire_time":null,"#,
    r#""key":{"data":"flyte2/task_cache/QD7dsDuRtCiM1OBpnvzFMu/wL6j9mVM2pQvIGwwo1vM=","type":"str"},"#,
    r#""kind":"flyte2","namespace":"myproject","tag":null,"#,
    r#""value":{"sha256":"38a51b21e1af41d7fb64ea972105bdfe298260ddabaf29590c775f24c5038f64","size":14,"#,
    r#""type":"bytes"}}"#,
);
const FLYTE2_HMAC: &str = "8017deaf580850f98e04f8da734ff250f3a830b8ef3baa47fc3df48794b66f82";
const FLYTE2_SIGNED_ENVELOPE: &str = concat!(
    r#"{"format":"diskcachefs-remote/1","#,
    r#""hmac_sha256":"8017deaf580850f98e04f8da734ff250f3a830b8ef3baa47fc3df48794b66f82","#,
    r#""record":"{\"created\":1796190002.75,\"expire_time\":null,"#,
    r#"\"key\":{\"data\":\"flyte2/task_cache/QD7dsDuRtCiM1OBpnvzFMu/wL6j9mVM2pQvIGwwo1vM=\","#,
    r#"\"type\":\"str\"},\"kind\":\"flyte2\",\"namespace\":\"myproject\",\"tag\":null,"#,
    r#"\"value\":{\"sha256\":\"38a51b21e1af41d7fb64ea972105bdfe298260ddabaf29590c775f24c5038f64\","#,
    r#"\"size\":14,\"type\":\"bytes\"}}"}"#,
);

const TAG_RECORD: &str = concat!(
    r#"{"created":1796190003.0,"expire_time":null,"key":{"data":"AP9tb2RlbC12MQ==","type":"bytes"},"#,
    r#""kind":"tag","namespace":"myproject","tag":{"data":"weights","type":"str"},"#,
    r#""value":{"sha256":"b7c8a7bf822f2bdf7aa1184fc92930c5991e8062007e075c072101275ed291ea","size":5,"#,
    r#""type":"pickle"}}"#,
);
const TAG_ENVELOPE: &str = concat!(
    r#"{"format":"diskcachefs-remote/1","hmac_sha256":null,"record":"{\"created\":1796190003.0,"#,
    r#"\"expire_time\":null,\"key\":{\"data\":\"AP9tb2RlbC12MQ==\",\"type\":\"bytes\"},"#,
    r#"\"kind\":\"tag\",\"namespace\":\"myproject\",\"tag\":{\"data\":\"weights\",\"type\":\"str\"},"#,
    r#"\"value\":{\"sha256\":\"b7c8a7bf822f2bdf7aa1184fc92930c5991e8062007e075c072101275ed291ea\","#,
    r#"\"size\":5,\"type\":\"pickle\"}}"}"#,
);

/// The prefix entry's record as Python's `json.dumps` writes it by default
/// (another writer's choices: spaces, insertion order, ASCII escapes, an
/// integer time), signed.
const FOREIGN_ENVELOPE: &str = concat!(
    r#"{"format": "diskcachefs-remote/1", "record": "{\"namespace\": \"myproject\", \"kind\": \"prefix\", "#,
    r#"\"key\": {\"type\": \"str\", \"data\": \"team/report-\\u00e9.csv\"}, \"value\": {\"type\": \"str\", "#,
    r#"\"sha256\": \"64c88073987e24e83cd15676b4048bc82f4bcc1cbac21d33595a91e5d168d649\", \"size\": 10}, "#,
    r#"\"tag\": {\"type\": \"str\", \"data\": \"reports\"}, \"expire_time\": 4102444800.25, "#,
    r#"\"created\": 1796190001}", "#,
    r#""hmac_sha256": "ef40dc8e1435950384eba8e6437ffdaf84da542d50b25aa51b7e51665e37e3c9"}"#,
);

/// The second computation: docs/REMOTE.md's rules in Python, from the same
/// inputs, with no diskcachefs code. `sys.argv[1:]`: record texts to sign.
const PY: &str = r#"
import base64, hashlib, hmac, json, struct, sys

NS = "myproject"
SIGNING_KEY = b"team-secret-2026"

def key_bytes(t, data):
    raw = {"str": lambda: data.encode("utf-8"), "int": lambda: struct.pack(">q", data),
           "float": lambda: struct.pack(">d", data)}.get(t, lambda: data)()
    return t.encode("ascii") + b"\0" + raw

def value_bytes(t, data):
    return {"bytes": lambda: data, "pickle": lambda: data, "str": lambda: data.encode("utf-8"),
            "int": lambda: struct.pack(">q", data), "float": lambda: struct.pack(">d", data),
            "none": lambda: b""}[t]()

def enc(t, data):
    if t in ("bytes", "pickle"):
        data = base64.b64encode(data).decode("ascii")
    return {"type": t, "data": data}

def sign(text):
    return hmac.new(SIGNING_KEY, text.encode("utf-8"), hashlib.sha256).hexdigest()

KEYS = {
    "flyte": ("str", "wf.square-1-9f0c2f3a1b4d5e6f708192a3b4c5d6e7"),
    "prefix": ("str", "team/report-\u00e9.csv"),
    "flyte2": ("str", "flyte2/task_cache/QD7dsDuRtCiM1OBpnvzFMu/wL6j9mVM2pQvIGwwo1vM="),
    "tag": ("bytes", b"\x00\xffmodel-v1"),
    "int": ("int", -2),
    "float": ("float", 0.1),
    "pickle": ("pickle", bytes.fromhex("80059505000000000000008c0161942e")),
}
VALUES = {
    "flyte": ("bytes", bytes.fromhex("0a0c0a026f3012060a040a020819")),
    "prefix": ("str", "total: 42\n"),
    "flyte2": ("bytes", bytes.fromhex("0a0c0a026f3012060a040a020824")),
    "tag": ("pickle", bytes.fromhex("80054b2a2e")),
    "int": ("int", -7),
    "float": ("float", 2.5),
    "none": ("none", None),
}
# name: key and value (of the above), expire_time, tag, kind, created, signed
RECORDS = {
    "flyte": ("flyte", None, None, "flyte", 1796190000.5, False),
    "flyte_signed": ("flyte", None, None, "flyte", 1796190000.5, True),
    "prefix_signed": ("prefix", 4102444800.25, ("str", "reports"), "prefix", 1796190001.25, True),
    "flyte2_signed": ("flyte2", None, None, "flyte2", 1796190002.75, True),
    "tag": ("tag", None, ("str", "weights"), "tag", 1796190003.0, False),
}

def compact(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

def record(name, style=compact):
    k, expire, tag, kind, created, _ = RECORDS[name]
    vt, vd = VALUES[k]
    vb = value_bytes(vt, vd)
    return style({
        "namespace": NS,
        "kind": kind,
        "key": enc(*KEYS[k]),
        "value": {"type": vt, "sha256": hashlib.sha256(vb).hexdigest(), "size": len(vb)},
        "tag": None if tag is None else enc(*tag),
        "expire_time": expire,
        "created": int(created) if style is json.dumps else created,
    })

out = {"key_bytes": {}, "key_ids": {}, "value_bytes": {}, "value_sha256": {}, "records": {}, "hmacs": {},
       "envelopes": {}}
for name, (t, data) in KEYS.items():
    out["key_bytes"][name] = key_bytes(t, data).hex()
    out["key_ids"][name] = hashlib.sha256(key_bytes(t, data)).hexdigest()
for name, (t, data) in VALUES.items():
    out["value_bytes"][name] = value_bytes(t, data).hex()
    out["value_sha256"][name] = hashlib.sha256(value_bytes(t, data)).hexdigest()
for name, spec in RECORDS.items():
    text = record(name)
    sig = sign(text) if spec[-1] else None
    out["records"][name] = text
    out["hmacs"][name] = sig
    out["envelopes"][name] = compact({"format": "diskcachefs-remote/1", "record": text, "hmac_sha256": sig})
foreign = record("prefix_signed", json.dumps)
out["foreign_envelope"] = json.dumps({"format": "diskcachefs-remote/1", "record": foreign, "hmac_sha256": sign(foreign)})
out["log_name"] = f"{NS}/log/{1796190000500000:020d}-{out['key_ids']['flyte']}"
out["hmac_of_args"] = [sign(a) for a in sys.argv[1:]]
print(json.dumps(out))
"#;

fn python(texts_to_sign: &[&str]) -> Json {
    serde_json::from_str(&support::py(PY, texts_to_sign)).unwrap()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// One pinned entry: the record, and what it must look like stored.
struct Pinned {
    /// Its name in `PY`'s `RECORDS`.
    py: &'static str,
    record: Record,
    id: &'static str,
    value: Value,
    value_bytes: &'static [u8],
    text: &'static str,
    hmac: Option<&'static str>,
    envelope: &'static str,
    /// Its log entry's name, as a writer at `created` names it.
    log: &'static str,
}

impl Pinned {
    fn signing_key(&self) -> Option<&'static [u8]> {
        self.hmac.map(|_| SIGNING_KEY)
    }
}

fn str_key(s: &str) -> Key {
    Key::Str(s.to_string())
}

fn pinned() -> Vec<Pinned> {
    let flyte = Record {
        namespace: NS.into(),
        key: str_key(FLYTE_KEY),
        value_type: "bytes",
        size: 14,
        digest: FLYTE_DIGEST.into(),
        expire_time: None,
        tag: None,
        kind: ShareKind::Flyte,
        created: 1796190000.5,
    };
    let flyte_log =
        "myproject/log/00001796190000500000-5590f309e4ba6b5b2d3a17685a7b75cf9234fbf5298a83deb71fd32e5cf62195";
    vec![
        Pinned {
            py: "flyte",
            record: flyte.clone(),
            id: FLYTE_ID,
            value: Value::Bytes(FLYTE_VALUE.to_vec()),
            value_bytes: FLYTE_VALUE,
            text: FLYTE_RECORD,
            hmac: None,
            envelope: FLYTE_ENVELOPE,
            log: flyte_log,
        },
        Pinned {
            py: "flyte_signed",
            record: flyte,
            id: FLYTE_ID,
            value: Value::Bytes(FLYTE_VALUE.to_vec()),
            value_bytes: FLYTE_VALUE,
            text: FLYTE_RECORD,
            hmac: Some(FLYTE_HMAC),
            envelope: FLYTE_SIGNED_ENVELOPE,
            log: flyte_log,
        },
        Pinned {
            py: "prefix_signed",
            record: Record {
                namespace: NS.into(),
                key: str_key(PREFIX_KEY),
                value_type: "str",
                size: 10,
                digest: PREFIX_DIGEST.into(),
                expire_time: Some(4102444800.25),
                tag: Some(Scalar::Str("reports".into())),
                kind: ShareKind::Prefix,
                created: 1796190001.25,
            },
            id: PREFIX_ID,
            value: Value::Str(PREFIX_VALUE.into()),
            value_bytes: PREFIX_VALUE.as_bytes(),
            text: PREFIX_RECORD,
            hmac: Some(PREFIX_HMAC),
            envelope: PREFIX_SIGNED_ENVELOPE,
            log: "myproject/log/00001796190001250000-8913d4442550e521e060ed96f117a7731ba0eeed10391794421b1ec52cfa43d6",
        },
        Pinned {
            py: "flyte2_signed",
            record: Record {
                namespace: NS.into(),
                key: str_key(FLYTE2_KEY),
                value_type: "bytes",
                size: 14,
                digest: FLYTE2_DIGEST.into(),
                expire_time: None,
                tag: None,
                kind: ShareKind::Flyte2,
                created: 1796190002.75,
            },
            id: FLYTE2_ID,
            value: Value::Bytes(FLYTE2_VALUE.to_vec()),
            value_bytes: FLYTE2_VALUE,
            text: FLYTE2_RECORD,
            hmac: Some(FLYTE2_HMAC),
            envelope: FLYTE2_SIGNED_ENVELOPE,
            log: "myproject/log/00001796190002750000-2e2b76d2406474a7b3cec80cab28caf9e4f49aa818a0c043489b24828678d79d",
        },
        Pinned {
            py: "tag",
            record: Record {
                namespace: NS.into(),
                key: Key::Bytes(TAG_KEY.to_vec()),
                value_type: "pickle",
                size: 5,
                digest: TAG_DIGEST.into(),
                expire_time: None,
                tag: Some(Scalar::Str("weights".into())),
                kind: ShareKind::Tag,
                created: 1796190003.0,
            },
            id: TAG_ID,
            value: Value::Pickle(TAG_VALUE.to_vec()),
            value_bytes: TAG_VALUE,
            text: TAG_RECORD,
            hmac: None,
            envelope: TAG_ENVELOPE,
            log: "myproject/log/00001796190003000000-ad0587c0f231d32d03ff299fa672e289840c3ec1a531a938bfc433527446b5fb",
        },
    ]
}

#[test]
fn key_ids_and_object_names() {
    let py = python(&[]);
    // (name in PY's KEYS, key, key bytes, key id)
    let vectors: [(&str, Key, &str, &str); 7] = [
        (
            "flyte",
            str_key(FLYTE_KEY),
            "7374720077662e7371756172652d312d3966306332663361316234643565366637303831393261336234633564366537",
            FLYTE_ID,
        ),
        ("prefix", str_key(PREFIX_KEY), "737472007465616d2f7265706f72742dc3a92e637376", PREFIX_ID),
        (
            "flyte2",
            str_key(FLYTE2_KEY),
            "73747200666c797465322f7461736b5f63616368652f51443764734475527443694d314f42706e767a464d752f774c366a39\
             6d564d32705176494777776f31764d3d",
            FLYTE2_ID,
        ),
        ("tag", Key::Bytes(TAG_KEY.to_vec()), "62797465730000ff6d6f64656c2d7631", TAG_ID),
        (
            "int",
            Key::Int(-2),
            "696e7400fffffffffffffffe",
            "bf5570e95efa445536a935d4875a444b1ee208077d286cd2a7b2643761e7dfea",
        ),
        (
            "float",
            Key::Float(0.1),
            "666c6f6174003fb999999999999a",
            "4ef8db36af27ed38e6615ecab301061d03e14cef1349dbcc76120fb0b8c0032f",
        ),
        (
            "pickle",
            Key::Pickled(unhex("80059505000000000000008c0161942e")),
            "7069636b6c650080059505000000000000008c0161942e",
            "6339158d72cafda47c2c43b6b9f5f21767fb949b6f5957314f154dc7e139c83f",
        ),
    ];
    for (name, key, bytes, id) in &vectors {
        assert_eq!(py["key_bytes"][name], *bytes, "Python's key bytes of {name}");
        assert_eq!(py["key_ids"][name], *id, "Python's key id of {name}");
        assert_eq!(layout::hex(&key_bytes(key)), *bytes, "key bytes of {key:?}");
        assert_eq!(key_id(key), *id, "key id of {key:?}");
    }
    assert_eq!(FLYTE2_KEY, format!("{}{FLYTE2_ROW}", layout::FLYTE2_KEY_PREFIX));

    assert_eq!(
        record_name(NS, FLYTE_ID),
        "myproject/records/5590f309e4ba6b5b2d3a17685a7b75cf9234fbf5298a83deb71fd32e5cf62195"
    );
    assert_eq!(
        value_name(NS, FLYTE_DIGEST),
        "myproject/values/6fdf882f964680228ca2f2c0069f376cf81846aaf0402959ecb591645d976cc2"
    );
    for p in pinned() {
        let micros = (p.record.created * 1e6) as u64;
        assert_eq!(log_name(NS, micros, p.id), p.log);
        assert_eq!(parse_log_name(NS, p.log), Some((micros, p.id.to_string())));
    }
    assert_eq!(py["log_name"], pinned()[0].log);
    // Names a store takes: the flyte2 key's `/` and `=` never reach one.
    for name in [record_name(NS, FLYTE2_ID), value_name(NS, FLYTE2_DIGEST), pinned()[3].log.to_string()] {
        assert!(store::valid_name(&name), "{name}");
    }
}

#[test]
fn value_objects() {
    let py = python(&[]);
    let vectors: [(&str, Value, &str, &str); 7] = [
        ("flyte", Value::Bytes(FLYTE_VALUE.to_vec()), "0a0c0a026f3012060a040a020819", FLYTE_DIGEST),
        ("prefix", Value::Str(PREFIX_VALUE.into()), "746f74616c3a2034320a", PREFIX_DIGEST),
        ("flyte2", Value::Bytes(FLYTE2_VALUE.to_vec()), "0a0c0a026f3012060a040a020824", FLYTE2_DIGEST),
        ("tag", Value::Pickle(TAG_VALUE.to_vec()), "80054b2a2e", TAG_DIGEST),
        ("int", Value::Int(-7), "fffffffffffffff9", "1d4ced977de58bc7354d8e37ce7e6af71cd79ee2a57d428eeebf5d5dcdabf2ec"),
        (
            "float",
            Value::Float(2.5),
            "4004000000000000",
            "6a5b19b9001b326f6da29cb890708c96f9a49c1ad911f7b707a2c154d559733e",
        ),
        ("none", Value::None, "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    ];
    for (name, value, bytes, digest) in vectors {
        assert_eq!(py["value_bytes"][name], bytes, "Python's bytes of {name}");
        assert_eq!(py["value_sha256"][name], digest, "Python's sha256 of {name}");
        assert_eq!(layout::hex(&value_bytes(&value)), bytes, "{value:?}");
        assert_eq!(sha256_hex(&unhex(bytes)), digest);
        assert_eq!(value_from_bytes(value.type_name(), unhex(bytes)).unwrap(), value);
    }
}

#[test]
fn records_and_envelopes_byte_for_byte() {
    let py = python(&[]);
    assert_eq!(FORMAT, "diskcachefs-remote/1");
    for p in pinned() {
        assert_eq!(py["records"][p.py], p.text, "Python's record text of {}", p.py);
        assert_eq!(py["hmacs"][p.py], serde_json::json!(p.hmac), "Python's HMAC of {}", p.py);
        assert_eq!(py["envelopes"][p.py], p.envelope, "Python's envelope of {}", p.py);
        assert_eq!(p.record.to_json(), p.text, "record text of {}", p.py);
        if let Some(hmac) = p.hmac {
            assert_eq!(sign(SIGNING_KEY, p.text.as_bytes()), hmac, "HMAC of {}", p.py);
        }
        assert_eq!(String::from_utf8(envelope(&p.record, p.signing_key())).unwrap(), p.envelope, "{}", p.py);
        assert_eq!(key_id(&p.record.key), p.id);
    }
}

#[test]
fn records_written_today_are_read_back() {
    for p in pinned() {
        let r = &p.record;
        for key in [None, Some(SIGNING_KEY)] {
            assert_eq!(open_envelope(&envelope(r, key), NS, p.id, key).as_ref(), Ok(r), "{} with {key:?}", p.py);
        }
        let signed = envelope(r, Some(SIGNING_KEY));
        assert_eq!(open_envelope(&signed, NS, p.id, Some(b"another key")), Err(Rejection::BadSignature));
        assert_eq!(open_envelope(&envelope(r, None), NS, p.id, Some(SIGNING_KEY)), Err(Rejection::BadSignature));
    }
}

#[test]
fn literal_records_are_read() {
    let py = python(&[]);
    for p in pinned() {
        let bytes = p.envelope.as_bytes();
        assert_eq!(open_envelope(bytes, NS, p.id, None), Ok(p.record.clone()), "{}", p.py);
        assert_eq!(Record::from_json(p.text), Ok(p.record.clone()), "{}", p.py);
        let with_key = open_envelope(bytes, NS, p.id, Some(SIGNING_KEY));
        if p.hmac.is_some() {
            assert_eq!(with_key, Ok(p.record.clone()), "{}", p.py);
            assert_eq!(open_envelope(bytes, NS, p.id, Some(b"another key")), Err(Rejection::BadSignature));
        } else {
            assert_eq!(with_key, Err(Rejection::BadSignature), "{}: unsigned, read with a key", p.py);
        }
    }
    // Another writer's JSON: the same record, but for `created`.
    assert_eq!(py["foreign_envelope"], FOREIGN_ENVELOPE);
    let mut want = pinned()[2].record.clone();
    want.created = 1796190001.0;
    assert_eq!(open_envelope(FOREIGN_ENVELOPE.as_bytes(), NS, PREFIX_ID, Some(SIGNING_KEY)), Ok(want));
    // Its HMAC is over its own text: the compact re-encoding does not verify.
    let recompacted = FOREIGN_ENVELOPE.replace(
        "ef40dc8e1435950384eba8e6437ffdaf84da542d50b25aa51b7e51665e37e3c9",
        "a9696e77741706ab07e1d2dbeb3aa8dc000db1bc250fd4ea2812093db0f7a20c",
    );
    assert_eq!(open_envelope(recompacted.as_bytes(), NS, PREFIX_ID, Some(SIGNING_KEY)), Err(Rejection::BadSignature));
}

/// A store in memory, for `sync` (the layout, not a backend, is under test).
#[derive(Default)]
struct MemStore(Mutex<BTreeMap<String, Vec<u8>>>);

impl MemStore {
    fn objects(&self) -> BTreeMap<String, Vec<u8>> {
        self.0.lock().unwrap().clone()
    }
}

impl RemoteStore for MemStore {
    fn url(&self) -> &str {
        "mem://vectors"
    }

    fn get(&self, name: &str, max_len: u64) -> Result<Option<Vec<u8>>, RemoteError> {
        match self.0.lock().unwrap().get(name) {
            Some(b) if b.len() as u64 > max_len => {
                Err(RemoteError::TooLarge { store: self.url().into(), op: "GET", name: name.into(), limit: max_len })
            }
            found => Ok(found.cloned()),
        }
    }

    fn exists(&self, name: &str) -> Result<bool, RemoteError> {
        Ok(self.0.lock().unwrap().contains_key(name))
    }

    fn put_if_absent(&self, name: &str, bytes: &[u8]) -> Result<bool, RemoteError> {
        let mut objects = self.0.lock().unwrap();
        if objects.contains_key(name) {
            return Ok(false);
        }
        objects.insert(name.into(), bytes.to_vec());
        Ok(true)
    }

    fn list_after(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<Vec<String>, RemoteError> {
        let objects = self.0.lock().unwrap();
        Ok(objects
            .keys()
            .filter(|n| n.starts_with(prefix) && after.is_none_or(|a| n.as_str() > a))
            .take(limit)
            .cloned()
            .collect())
    }
}

fn options(mode: Mode, signing_key: Option<&[u8]>) -> SyncOptions {
    SyncOptions {
        mode,
        namespace: NS.into(),
        signing_key: signing_key.map(<[u8]>::to_vec),
        selection: Selection { tags: vec!["weights".into()], prefixes: vec!["team/".into()] },
    }
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

/// What Flyte 2 and diskcache leave in a cache.db that the engine cannot
/// write as such: a `task_cache` row, and an absolute expiry.
const FILL: &str = r#"
import sqlite3, sys
con = sqlite3.connect(sys.argv[1] + '/cache.db')
con.execute('CREATE TABLE task_cache (key TEXT PRIMARY KEY, value BLOB)')
con.execute('INSERT INTO task_cache VALUES (?, ?)', (sys.argv[2], bytes.fromhex('0a0c0a026f3012060a040a020824')))
cur = con.execute('UPDATE Cache SET expire_time = 4102444800.25 WHERE key = ? AND raw = 1', (sys.argv[3],))
assert cur.rowcount == 1
con.commit()
"#;

#[test]
fn sync_writes_and_reads_the_pinned_objects() {
    let tmp = tempfile::tempdir().unwrap();
    let pinned = pinned();
    // Every kind, signed (the flyte, prefix and flyte2 records as pinned;
    // the tag record's text is the same signed or not).
    let pushed: Vec<&Pinned> = pinned.iter().skip(1).collect();

    // Push: a cache holding the four entries, and one nobody shares.
    let a = tmp.path().join("a");
    {
        let cache = Cache::open(&a).unwrap();
        for p in &pushed {
            if p.record.kind != ShareKind::Flyte2 {
                cache.set(&p.record.key, &p.value, None, p.record.tag.as_ref()).unwrap();
            }
        }
        cache.set(&str_key("local/only"), &Value::Bytes(b"x".to_vec()), None, None).unwrap();
    }
    support::py(FILL, &[a.to_str().unwrap(), FLYTE2_ROW, PREFIX_KEY]);
    let store = MemStore::default();
    let before = now();
    let (summary, result) = sync(&a, &store, &options(Mode::ReadWrite, Some(SIGNING_KEY)));
    let after = now();
    result.unwrap();
    assert_eq!((summary.pushed, summary.rejected, summary.errors), (4, 0, 0), "{summary:?}");

    let objects = store.objects();
    let mut want: Vec<String> = pushed.iter().map(|p| format!("myproject/records/{}", p.id)).collect();
    want.extend(pushed.iter().map(|p| format!("myproject/values/{}", p.record.digest)));
    want.sort();
    let (logs, others): (Vec<&String>, Vec<&String>) = objects.keys().partition(|n| n.starts_with("myproject/log/"));
    assert_eq!(others, want.iter().collect::<Vec<_>>());
    assert_eq!(logs.len(), 4, "{logs:?}");

    let mut written = Vec::new();
    for p in &pushed {
        assert_eq!(objects[&format!("myproject/values/{}", p.record.digest)], p.value_bytes, "{}", p.py);
        let bytes = &objects[&format!("myproject/records/{}", p.id)];
        let env: Json = serde_json::from_slice(bytes).unwrap();
        let text = env["record"].as_str().unwrap().to_string();
        let hmac = env["hmac_sha256"].as_str().unwrap().to_string();
        // Written now, not at the pinned time: the text and the envelope
        // are the pinned ones but for `created` and the HMAC over it.
        let created = text.strip_prefix(r#"{"created":"#).and_then(|t| t.split_once(',')).unwrap().0.to_string();
        let t: f64 = created.parse().unwrap();
        assert!((before..=after).contains(&t), "{created} not in {before}..{after}");
        let pinned_created = p.text.strip_prefix(r#"{"created":"#).and_then(|t| t.split_once(',')).unwrap().0;
        assert_eq!(text.replacen(&created, pinned_created, 1), p.text, "{}", p.py);
        let pinned_hmac = p.hmac.map_or("null".to_string(), |h| format!("\"{h}\""));
        let want = p
            .envelope
            .replacen(&format!(r#"{{\"created\":{pinned_created},"#), &format!(r#"{{\"created\":{created},"#), 1)
            .replacen(&format!(r#""hmac_sha256":{pinned_hmac}"#), &format!(r#""hmac_sha256":"{hmac}""#), 1);
        assert_eq!(String::from_utf8(bytes.clone()).unwrap(), want, "{}", p.py);
        // Its log entry: named by its time and id, holding the id.
        let log = logs.iter().find(|n| n.ends_with(p.id)).unwrap();
        let (micros, id) = parse_log_name(NS, log).unwrap();
        assert_eq!(log.len(), "myproject/log/".len() + 20 + 1 + 64, "{log}");
        assert!((micros as f64 - t * 1e6).abs() <= 1.0, "{log} at {created}");
        assert_eq!(id, p.id);
        assert_eq!(objects[*log], format!("{}\n", p.id).into_bytes());
        written.push((text, hmac));
    }
    // Signed over exactly the text written, as Python's hmac computes it.
    let py = python(&written.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>());
    for (i, (_, hmac)) in written.iter().enumerate() {
        assert_eq!(py["hmac_of_args"][i], hmac.as_str(), "{}", pushed[i].py);
    }

    // Pull: a store as an older version left it, from the literals alone.
    let old = MemStore::default();
    for p in &pushed {
        let name = format!("myproject/values/{}", p.record.digest);
        assert!(old.put_if_absent(&name, p.value_bytes).unwrap());
        let record = format!("myproject/records/{}", p.id);
        assert!(old.put_if_absent(&record, p.envelope.as_bytes()).unwrap());
        assert!(old.put_if_absent(p.log, format!("{}\n", p.id).as_bytes()).unwrap());
    }
    // With the key: the unsigned tag record is refused.
    let b = tmp.path().join("b");
    let (summary, result) = sync(&b, &old, &options(Mode::ReadOnly, Some(SIGNING_KEY)));
    result.unwrap();
    assert_eq!((summary.pulled, summary.rejected, summary.errors), (3, 1, 0), "{summary:?}");
    let cache = Cache::open(&b).unwrap();
    assert_eq!(cache.get(&str_key(FLYTE_KEY)).unwrap(), Some(Value::Bytes(FLYTE_VALUE.to_vec())));
    let entry = cache.get_entry(&str_key(PREFIX_KEY)).unwrap().unwrap();
    assert_eq!((entry.value, entry.tag), (Value::Str(PREFIX_VALUE.into()), Some(Scalar::Str("reports".into()))));
    assert!((entry.expire_time.unwrap() - 4102444800.25).abs() < 1e-3, "{:?}", entry.expire_time);
    assert_eq!(Flyte2Cache::new(&cache).get(FLYTE2_ROW).unwrap(), Some(FLYTE2_VALUE.to_vec()));
    assert_eq!(cache.get(&Key::Bytes(TAG_KEY.to_vec())).unwrap(), None);
    // Without one, all four.
    let c = tmp.path().join("c");
    let (summary, result) = sync(&c, &old, &options(Mode::ReadOnly, None));
    result.unwrap();
    assert_eq!((summary.pulled, summary.rejected, summary.errors), (4, 0, 0), "{summary:?}");
    let entry = Cache::open(&c).unwrap().get_entry(&Key::Bytes(TAG_KEY.to_vec())).unwrap().unwrap();
    assert_eq!((entry.value, entry.tag), (Value::Pickle(TAG_VALUE.to_vec()), Some(Scalar::Str("weights".into()))));
    assert_eq!(old.objects().len(), 12, "a read-only sync wrote to the store");
}
