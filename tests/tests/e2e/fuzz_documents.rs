//! Fuzz targets for the job-document parsers: the agent's (seed download, AWS IoT Device
//! Client, Flotilla install), the engine's document check and managed-template substitution,
//! S3 presigned-URL placeholders, and job configurations. Inputs are the committed corpus
//! (`tests/fuzz-corpus/documents/`), byte mutations of it and arbitrary JSON.

use std::collections::BTreeMap;
use std::time::Duration;

use flotilla_engine::artifacts::{Presigner, parse_s3_url, safe_key, traversing_placeholder};
use flotilla_engine::jobs::job_config::JobConfig;
use flotilla_engine::jobs::templates::{MANAGED_TEMPLATES, check_document, substitute_parameters};
use proptest::prelude::*;
use serde_json::Value;

use crate::fuzz_support::{cases, corpus, json_value, mutate, mutated, runner};

/// The largest document a mutation grows (well past the 32 KiB limit).
const MAX_DOCUMENT: usize = 64 * 1024;

/// Every corpus document and mutations of it: the agent's parser and the engine's check
/// never panic, and agree with each other's limits.
#[test]
fn mutated_documents_are_parsed_or_refused_with_a_reason() {
    let corpus = corpus("documents");
    let check = |bytes: &[u8]| {
        let text = String::from_utf8_lossy(bytes);
        let checked = check_document(&text);
        if checked.is_ok() {
            assert!(text.len() <= 32 * 1024, "a document over 32 KiB passed");
            assert!(serde_json::from_str::<Value>(&text).is_ok_and(|v| v.is_object()));
        }
        if let Ok(value) = serde_json::from_slice::<Value>(bytes) {
            if let Err(reason) = flotilla_agent::documents::parse(&value) {
                assert!(!reason.is_empty());
            }
            if let Some(map) = value.as_object() {
                let _ = JobConfig::validate_new(map, chrono::Utc::now());
            }
        }
    };
    for (_, bytes) in &corpus {
        check(bytes);
    }
    runner(cases(4096))
        .run(&mutated(corpus.len()), |(entry, mutations)| {
            check(&mutate(&corpus[entry].1, &mutations, MAX_DOCUMENT));
            Ok(())
        })
        .expect("no document broke a parser");
}

/// Arbitrary JSON shaped like job documents: the agent's parser never panics, and its verdict
/// survives a round trip through text.
#[test]
fn arbitrary_json_documents_never_break_the_agent_parser() {
    runner(cases(4096))
        .run(&json_value(), |value| {
            let first = flotilla_agent::documents::parse(&value);
            let again: Value =
                serde_json::from_str(&value.to_string()).expect("JSON text parses back");
            // Floats may move in their last digit through text, so only the verdict must hold.
            prop_assert_eq!(
                first.is_ok(),
                flotilla_agent::documents::parse(&again).is_ok()
            );
            if let Some(map) = value.as_object() {
                let _ = JobConfig::validate_new(map, chrono::Utc::now());
                let _ = JobConfig::validate_update(map);
            }
            Ok(())
        })
        .expect("the agent parser is total and deterministic");
}

/// Parameter values of every AWS managed template: a substituted document is always a JSON
/// object within 32 KiB, and each value lands in it intact — a value cannot close its string,
/// inject members or fill another parameter's placeholder.
#[test]
fn managed_template_parameters_cannot_break_out_of_their_strings() {
    let value = prop_oneof![
        ".{0,30}",
        "[a-z/:.]{0,30}",
        Just("https://example.com/fw.bin".to_owned()),
        Just("\"}, \"injected\": {\"a\": \"".to_owned()),
        Just("${aws:iot:parameter:filePath}".to_owned()),
        Just("https://example.com/${aws:iot:parameter:filePath}".to_owned()),
        Just("/tmp/${aws:iot:parameter:runAsUser}".to_owned()),
        Just("\\\"\u{0}\u{2028}".to_owned()),
        "x{0,5000}",
    ];
    let strategy = (
        0..MANAGED_TEMPLATES.len(),
        prop::collection::vec(value, 0..6),
    );
    runner(cases(4096))
        .run(&strategy, |(index, values)| {
            let template = &MANAGED_TEMPLATES[index];
            let given: BTreeMap<String, String> = template
                .parameters
                .iter()
                .zip(values)
                .map(|(p, v)| (p.key.to_owned(), v))
                .collect();
            if let Ok(document) = substitute_parameters(template, &given) {
                prop_assert!(
                    check_document(&document).is_ok(),
                    "{}: {document}",
                    template.name
                );
                let parsed: Value = serde_json::from_str(&document).expect("checked above");
                let mut strings = Vec::new();
                collect_strings(&parsed, &mut strings);
                for (key, value) in &given {
                    prop_assert!(
                        value.is_empty() || strings.iter().any(|s| s.contains(value.as_str())),
                        "{}: {key}={value:?} is not intact in {document}",
                        template.name
                    );
                }
            }
            Ok(())
        })
        .expect("substitution keeps values inside their strings");
}

fn collect_strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| collect_strings(v, out)),
        Value::Object(map) => map.values().for_each(|v| collect_strings(v, out)),
        _ => {}
    }
}

/// S3 URLs made of hostile segments: an object the engine would presign never has a `.`,
/// `..` or empty segment or a backslash, and a placeholder naming one is reported and left
/// unsigned.
#[test]
fn presigned_url_placeholders_never_leave_their_folder() {
    let segment = prop_oneof![
        Just(".".to_owned()),
        Just("..".to_owned()),
        Just("%2e%2E".to_owned()),
        Just("%2F".to_owned()),
        Just("a\\..".to_owned()),
        Just(String::new()),
        "[a-zA-Z0-9_.%-]{1,8}",
        ".{1,4}",
    ];
    let host = prop::sample::select(vec![
        "s3.amazonaws.com/bucket",
        "s3.eu-west-1.amazonaws.com/bucket",
        "s3-eu-west-1.amazonaws.com/b",
        "bucket.s3.amazonaws.com",
        "example.com/bucket",
    ]);
    let presigner = Presigner::new("http://127.0.0.1:9000/", "us-east-1", "AKID", "secret");
    runner(cases(4096))
        .run(
            &(host, prop::collection::vec(segment, 1..6)),
            |(host, segments)| {
                let url = format!("https://{host}/{}", segments.join("/"));
                if let Some(object) = parse_s3_url(&url) {
                    prop_assert!(safe_key(&object.key), "{url} -> {object:?}");
                    prop_assert!(
                        !object.bucket.contains(['/', '\\']) && object.bucket != "..",
                        "{url} -> {object:?}"
                    );
                }
                let document = format!("{{\"url\":\"${{aws:iot:s3-presigned-url:{url}}}\"}}");
                let substituted = flotilla_engine::artifacts::placeholder::substitute(
                    &document,
                    &presigner,
                    Duration::from_secs(60),
                );
                if traversing_placeholder(&document).is_some() {
                    prop_assert_eq!(&substituted, &document, "a traversing key was presigned");
                }
                Ok(())
            },
        )
        .expect("no presigned object leaves its folder");
}
