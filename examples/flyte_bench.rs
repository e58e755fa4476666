//! The Rust side of `scripts/bench flyte`: computes the key of every input
//! in a vectors file (one JSON object a line, as tests/data/
//! flyte-cache-keys.jsonl) ROUNDS times and prints microseconds per key.
//!
//! cargo run --release --example flyte_bench -- VECTORS ROUNDS

use std::time::Instant;

use base64::Engine;

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: flyte_bench VECTORS ROUNDS");
    let rounds: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(20);
    let text = std::fs::read_to_string(path).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let vectors: Vec<(String, String, Vec<u8>, Vec<String>)> = text
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["task"].as_str().unwrap().to_string(),
                v["version"].as_str().unwrap().to_string(),
                b64.decode(v["inputs"].as_str().unwrap()).unwrap(),
                v["ignore"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect(),
            )
        })
        .collect();
    let start = Instant::now();
    let mut n = 0;
    for _ in 0..rounds {
        for (task, version, inputs, ignore) in &vectors {
            std::hint::black_box(diskcachefs::flyte::cache_key(task, version, inputs, ignore).ok());
            n += 1;
        }
    }
    println!("{:.3}", start.elapsed().as_secs_f64() * 1e6 / n as f64);
}
