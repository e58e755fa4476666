//! Every vector made by flytekit 1.16.31 (tests/data/flyte-cache-keys.jsonl,
//! from ../shared/testdata; see its README) must give flytekit's key, and,
//! where the vector records them, the same canonical bytes.

use base64::Engine;
use diskcachefs::flyte::{cache_key, canonical_bytes};

#[test]
fn every_flytekit_vector_gives_flytekits_key() {
    let data =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/flyte-cache-keys.jsonl")).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut failures = Vec::new();
    let mut count = 0;
    for (line_no, line) in data.lines().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let inputs = b64.decode(v["inputs"].as_str().unwrap()).unwrap();
        let ignore: Vec<String> = v["ignore"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().into()).collect();
        let want = v["key"].as_str().unwrap();
        count += 1;
        match cache_key(v["task"].as_str().unwrap(), v["version"].as_str().unwrap(), &inputs, &ignore) {
            Ok(got) if got == want => {}
            Ok(got) => {
                let detail = match v["canonical"].as_str() {
                    Some(c) => {
                        let expected = b64.decode(c).unwrap();
                        let actual = canonical_bytes(&inputs, &ignore).unwrap();
                        format!("canonical want {} got {}", hex(&expected), hex(&actual))
                    }
                    None => String::new(),
                };
                failures.push(format!("line {}: want {want}, got {got}; {detail}", line_no + 1));
            }
            Err(e) => failures.push(format!("line {}: want {want}, got error {e}", line_no + 1)),
        }
    }
    assert_eq!(count, 318);
    assert!(failures.is_empty(), "{} of {count} vectors differ:\n{}", failures.len(), failures.join("\n"));
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
