//! The fuzz targets in CI (issue 7, item 4), briefly: every input of the
//! committed corpus and of the crash regressions (`fuzz/corpus/TARGET/`,
//! `fuzz/regressions/TARGET/`), then random and mutated inputs for each
//! target. The long runs are `cargo +nightly fuzz run TARGET` in `fuzz/`
//! (docs/RELIABILITY.md).

use std::path::PathBuf;

use diskcachefs::flyte::{canonical_bytes_borrowed, canonical_bytes_prost};
use diskcachefs::fuzzing::TARGETS;
use proptest::prelude::*;

fn inputs(target: &str) -> Vec<Vec<u8>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut out = Vec::new();
    // The corpus of every target must be there; crash regressions only
    // where a crash was found (but `fuzz/regressions/` itself must be: a
    // moved directory would otherwise drop them all without a word).
    assert!(root.join("regressions").is_dir(), "fuzz/regressions/ is missing");
    for dir in ["corpus", "regressions"] {
        let path = root.join(dir).join(target);
        let entries = match std::fs::read_dir(&path) {
            Ok(entries) => entries,
            Err(e) if dir == "regressions" && e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => panic!("{}: {e}", path.display()),
        };
        for e in entries.flatten() {
            // (A fuzzer running beside the tests may replace files.)
            if let Ok(data) = std::fs::read(e.path()) {
                out.push(data);
            }
        }
    }
    out
}

#[test]
fn every_corpus_input_passes_every_target() {
    for (name, target) in TARGETS {
        let corpus = inputs(name);
        assert!(!corpus.is_empty(), "no corpus for {name}");
        for input in &corpus {
            target(input);
        }
    }
}

/// The literal_map corpus through both paths of the Flyte key: where the
/// borrowing path takes an input, its bytes are the prost path's
/// (tests/flyte_borrowed.rs has the mutations).
#[test]
fn the_borrowing_and_prost_paths_agree_on_the_literal_map_corpus() {
    let corpus = inputs("literal_map");
    let mut taken = 0;
    for input in &corpus {
        if let Some(borrowed) = canonical_bytes_borrowed(input, &[]) {
            assert_eq!(canonical_bytes_prost(input, &[]).ok(), Some(borrowed), "{input:02x?}");
            taken += 1;
        }
    }
    assert!(taken > corpus.len() / 10, "the borrowing path took {taken} of {}", corpus.len());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn random_inputs_pass_every_target(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        for (_, target) in TARGETS {
            target(&data);
        }
    }

    /// Corpus inputs with a few bytes changed: close to valid, where bugs hide.
    #[test]
    fn mutated_corpus_inputs_pass_every_target(pick in any::<usize>(), edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6)) {
        static CORPORA: std::sync::OnceLock<Vec<Vec<Vec<u8>>>> = std::sync::OnceLock::new();
        let corpora = CORPORA.get_or_init(|| TARGETS.iter().map(|(name, _)| inputs(name)).collect());
        for ((_, target), corpus) in TARGETS.iter().zip(corpora) {
            let mut input = corpus[pick % corpus.len()].clone();
            if input.is_empty() {
                continue;
            }
            for (at, byte) in &edits {
                let i = at % input.len();
                input[i] = *byte;
            }
            target(&input);
        }
    }
}
