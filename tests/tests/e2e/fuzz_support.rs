//! What the fuzz targets share: the committed corpus (`tests/fuzz-corpus/`), byte-level
//! mutations of its entries, arbitrary JSON, and how many cases a run tries.
//!
//! A run is bounded by its case count: small in `cargo test` (and so in `cargo xtask ci`),
//! large under `cargo xtask fuzz`, which sets `FLOTILLA_FUZZ_CASES`.

use std::path::PathBuf;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value;

/// The corpus entries of `tests/fuzz-corpus/{folder}`, by file name, in name order.
pub fn corpus(folder: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz-corpus")
        .join(folder);
    let mut entries: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading the corpus {}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("a corpus entry").path();
            let bytes = std::fs::read(&path).expect("reading a corpus entry");
            let name = path
                .file_name()
                .expect("a file name")
                .to_string_lossy()
                .into_owned();
            (name, bytes)
        })
        .collect();
    entries.sort();
    assert!(!entries.is_empty(), "the corpus {} is empty", dir.display());
    entries
}

/// The number of cases per target: `FLOTILLA_FUZZ_CASES`, else `default`.
pub fn cases(default: u32) -> u32 {
    std::env::var("FLOTILLA_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

/// A test runner for `cases` cases with a seed from `FLOTILLA_FUZZ_SEED` when set (to replay
/// a run), failures printed rather than persisted (the corpus is the memory).
pub fn runner(cases: u32) -> TestRunner {
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    match std::env::var("FLOTILLA_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    {
        Some(seed) => {
            let mut bytes = [0u8; 32];
            bytes[..8].copy_from_slice(&seed.to_le_bytes());
            TestRunner::new_with_rng(
                config,
                proptest::test_runner::TestRng::from_seed(
                    proptest::test_runner::RngAlgorithm::ChaCha,
                    &bytes,
                ),
            )
        }
        None => TestRunner::new(config),
    }
}

/// Fragments that break parsers: escapes, NUL, huge and odd numbers, deep nesting, invalid
/// UTF-8, injection attempts.
const TOKENS: &[&[u8]] = &[
    b"\\u0000",
    b"\"",
    b"\\",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"null",
    b"true",
    b"-0",
    b"1e999",
    b"-1",
    b"18446744073709551616",
    b"9223372036854775808",
    b"0.0000000000000000000000001",
    b"\"\\ud800\"",
    b"\xff\xfe",
    b"\xc3\x28",
    b"${aws:iot:parameter:",
    b"${aws:iot:s3-presigned-url:https://s3.amazonaws.com/b/../../x}",
    b"<script>alert(1)</script>",
    b"' or '1'='1",
    b"\"status\":\"SUCCEEDED\"",
    b"\"expectedVersion\":",
    b"\"statusDetails\":{\"a\":\"b\"}",
    b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
];

/// One edit of a byte string.
#[derive(Debug, Clone)]
pub enum Mutation {
    Flip {
        at: usize,
        bit: u8,
    },
    Insert {
        at: usize,
        token: usize,
    },
    InsertByte {
        at: usize,
        byte: u8,
    },
    Delete {
        at: usize,
        len: usize,
    },
    Duplicate {
        at: usize,
        len: usize,
    },
    Truncate {
        at: usize,
    },
    /// Repeat the whole input, to make it large.
    Grow {
        times: usize,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        (any::<usize>(), 0..TOKENS.len()).prop_map(|(at, token)| Mutation::Insert { at, token }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::InsertByte { at, byte }),
        (any::<usize>(), 1usize..16).prop_map(|(at, len)| Mutation::Delete { at, len }),
        (any::<usize>(), 1usize..64).prop_map(|(at, len)| Mutation::Duplicate { at, len }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        (1usize..64).prop_map(|times| Mutation::Grow { times }),
    ]
}

/// `input` with `mutations` applied, no longer than `max_len`.
pub fn mutate(input: &[u8], mutations: &[Mutation], max_len: usize) -> Vec<u8> {
    let mut out = input.to_vec();
    for m in mutations {
        let at = |i: usize, len: usize| if len == 0 { 0 } else { i % (len + 1) };
        match *m {
            Mutation::Flip { at: i, bit } => {
                if !out.is_empty() {
                    let i = i % out.len();
                    out[i] ^= 1 << bit;
                }
            }
            Mutation::Insert { at: i, token } => {
                let i = at(i, out.len());
                out.splice(i..i, TOKENS[token].iter().copied());
            }
            Mutation::InsertByte { at: i, byte } => {
                let i = at(i, out.len());
                out.insert(i, byte);
            }
            Mutation::Delete { at: i, len } => {
                let i = at(i, out.len());
                let end = (i + len).min(out.len());
                out.drain(i..end);
            }
            Mutation::Duplicate { at: i, len } => {
                let i = at(i, out.len());
                let end = (i + len).min(out.len());
                let copy = out[i..end].to_vec();
                out.splice(i..i, copy);
            }
            Mutation::Truncate { at: i } => {
                let i = at(i, out.len());
                out.truncate(i);
            }
            Mutation::Grow { times } => {
                let copy = out.clone();
                for _ in 0..times {
                    if out.len() >= max_len {
                        break;
                    }
                    out.extend_from_slice(&copy);
                }
            }
        }
    }
    out.truncate(max_len);
    out
}

/// A corpus entry (by index into `corpus`) and up to eight mutations of it.
pub fn mutated(corpus_len: usize) -> impl Strategy<Value = (usize, Vec<Mutation>)> {
    (0..corpus_len, prop::collection::vec(mutation(), 0..8))
}

/// Keys the parsers look for, so arbitrary objects hit their branches.
const KEYS: &[&str] = &[
    "operation",
    "version",
    "directory",
    "files",
    "url",
    "fileName",
    "steps",
    "finalStep",
    "action",
    "name",
    "type",
    "input",
    "handler",
    "args",
    "path",
    "command",
    "runAsUser",
    "ignoreStepFailure",
    "artifact",
    "install",
    "size",
    "sha256",
    "signature",
    "status",
    "statusDetails",
    "expectedVersion",
    "executionNumber",
    "includeJobDocument",
    "includeJobExecutionState",
    "stepTimeoutInMinutes",
    "clientToken",
    "thingName",
];

/// Arbitrary JSON, its object keys mostly the ones the parsers know.
pub fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,40}".prop_map(Value::String),
        prop::sample::select(vec![
            "download",
            "flotilla.install",
            "1.0",
            "runHandler",
            "runCommand",
            "SUCCEEDED",
            "FAILED",
            "IN_PROGRESS",
            "http://x/y",
            "../../etc/passwd",
            "\u{0}",
        ])
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        3 => prop::sample::select(KEYS).prop_map(str::to_owned),
                        1 => ".{0,12}",
                    ],
                    inner
                ),
                0..8
            )
            .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
}
