//! Fuzz targets for every Jobs MQTT request handler of the engine (get, start-next, describe,
//! update) and for odd topics under a device's `jobs/`, through the real broker: malformed,
//! huge and non-UTF-8 payloads from the committed corpus (`tests/fuzz-corpus/mqtt/`), its
//! mutations and arbitrary JSON. Every request gets exactly one `/accepted` or `/rejected`
//! reply with a JSON body, never `InternalError`, and the engine keeps serving.

use std::time::Duration;

use proptest::prelude::*;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::fuzz_support::{Mutation, cases, corpus, json_value, mutate, mutated, runner};
use crate::test_engine::TestEngine;

const THING: &str = "fuzz-1";
const JOBS: [&str; 3] = ["fuzz-job-1", "fuzz-job-2", "fuzz-job-3"];

/// The broker's limit less room for the topic: the largest payload AWS IoT takes (128 KiB).
const MAX_PAYLOAD: usize = 128 * 1024;

/// The rejection codes of the developer guide other than `InternalError`.
const CODES: [&str; 8] = [
    "InvalidTopic",
    "InvalidJson",
    "InvalidRequest",
    "InvalidStateTransition",
    "ResourceNotFound",
    "VersionMismatch",
    "RequestThrottled",
    "TerminalStateReached",
];

/// A device connected as [`THING`], with every message on its `jobs/#` topics.
struct FuzzDevice {
    client: AsyncClient,
    messages: mpsc::UnboundedReceiver<(String, Vec<u8>)>,
}

impl FuzzDevice {
    async fn connect(engine: &TestEngine) -> Self {
        let addr = engine.engine.mqtt_addr;
        let mut options = MqttOptions::new(THING, addr.ip().to_string(), addr.port());
        options.set_max_packet_size(256 * 1024, 256 * 1024);
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        client
            .subscribe(format!("$aws/things/{THING}/jobs/#"), QoS::AtLeastOnce)
            .await
            .expect("subscribing");
        loop {
            let event = tokio::time::timeout(Duration::from_secs(10), eventloop.poll())
                .await
                .expect("the broker answers")
                .expect("the device connects");
            if let Event::Incoming(Packet::SubAck(_)) = event {
                break;
            }
        }
        let (sender, messages) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::Publish(publish))) => {
                        let message = (publish.topic, publish.payload.to_vec());
                        if sender.send(message).is_err() {
                            break;
                        }
                    }
                    Ok(_) => {}
                    // A drop mid-run fails the waiting request ("the device is connected");
                    // the one at the end, when the engine stops, is expected.
                    Err(_) => break,
                }
            }
        });
        Self { client, messages }
    }

    /// Publishes `payload` on `jobs/{operation}` and returns the reply's suffix and body.
    async fn request(&mut self, operation: &str, payload: Vec<u8>) -> (String, Vec<u8>) {
        let topic = format!("$aws/things/{THING}/jobs/{operation}");
        self.client
            .publish(&topic, QoS::AtLeastOnce, false, payload)
            .await
            .expect("publishing");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let (reply_topic, body) = tokio::time::timeout_at(deadline, self.messages.recv())
                .await
                .unwrap_or_else(|_| panic!("no reply to {topic}"))
                .expect("the device is connected");
            if let Some(suffix) = reply_topic.strip_prefix(&format!("{topic}/")) {
                return (suffix.to_owned(), body);
            }
        }
    }
}

/// The request topics: the four handlers, then odd ones.
fn operation() -> impl Strategy<Value = String> {
    let job = prop::sample::select(vec![
        JOBS[0], JOBS[1], JOBS[2], "$next", "ghost", "", "..", "a b",
    ]);
    prop_oneof![
        4 => Just("get".to_owned()),
        4 => Just("start-next".to_owned()),
        4 => job.clone().prop_map(|job| format!("{job}/get")),
        6 => job.prop_map(|job| format!("{job}/update")),
        1 => "[a-zA-Z0-9_./$-]{0,40}",
        1 => "[a-z]{1,8}/(get|update)/[a-z]{0,8}",
        1 => "\\PC{1,20}/update".prop_filter("no wildcards", |t: &String| !t.contains(['+', '#'])),
        1 => "x{65,80}/get",
    ]
}

/// A payload: a mutated corpus entry, arbitrary JSON, or arbitrary bytes.
fn payload(corpus_len: usize) -> impl Strategy<Value = Payload> {
    prop_oneof![
        3 => mutated(corpus_len).prop_map(|(entry, mutations)| Payload::Mutated(entry, mutations)),
        2 => json_value().prop_map(|value| Payload::Bytes(value.to_string().into_bytes())),
        1 => prop::collection::vec(any::<u8>(), 0..256).prop_map(Payload::Bytes),
        1 => (1usize..MAX_PAYLOAD).prop_map(|len| Payload::Bytes(
            format!("{{\"statusDetails\":{{\"k\":\"{}\"}}}}", "x".repeat(len.saturating_sub(24)))
                .into_bytes()
        )),
    ]
}

#[derive(Debug, Clone)]
enum Payload {
    Mutated(usize, Vec<Mutation>),
    Bytes(Vec<u8>),
}

#[test]
fn every_jobs_request_handler_survives_hostile_requests() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let engine = runtime.block_on(async {
        let engine = TestEngine::start().await;
        engine.create_thing(THING).await;
        for job in JOBS {
            engine
                .create_job(job, r#"{"operation":"install","version":"1"}"#, &[THING])
                .await;
        }
        engine
    });
    let device = std::cell::RefCell::new(runtime.block_on(FuzzDevice::connect(&engine)));
    let corpus: Vec<(String, Vec<u8>)> = ["get", "start-next", "describe", "update"]
        .iter()
        .flat_map(|handler| {
            corpus(&format!("mqtt/{handler}"))
                .into_iter()
                .map(move |(name, bytes)| (format!("{handler}/{name}"), bytes))
        })
        .collect();
    let replies = std::cell::RefCell::new(std::collections::BTreeMap::<String, usize>::new());
    let check = |operation: &str, bytes: Vec<u8>| -> Result<(), TestCaseError> {
        // Below the engine's 100 requests a second per thing, so throttling stays rare.
        std::thread::sleep(Duration::from_millis(12));
        let (suffix, body) = runtime.block_on(device.borrow_mut().request(operation, bytes));
        let body: Value = serde_json::from_slice(&body).map_err(|e| {
            TestCaseError::fail(format!("{operation}: a reply that is not JSON: {e}"))
        })?;
        prop_assert!(body.is_object(), "{operation}: {body}");
        match suffix.as_str() {
            "accepted" => {}
            "rejected" => {
                let code = body["code"].as_str().unwrap_or_default();
                prop_assert!(CODES.contains(&code), "{operation}: {body}");
                prop_assert!(body["message"].is_string(), "{operation}: {body}");
            }
            other => prop_assert!(false, "{operation}: reply on /{other}: {body}"),
        }
        *replies.borrow_mut().entry(suffix).or_default() += 1;
        Ok(())
    };
    // The corpus as it is, each entry on its own handler's topic.
    for (name, bytes) in &corpus {
        let operation = match name.split('/').next() {
            Some("describe") => format!("{}/get", JOBS[0]),
            Some("update") => format!("{}/update", JOBS[1]),
            Some(other) => other.to_owned(),
            None => unreachable!("corpus names have a folder"),
        };
        check(&operation, bytes.clone()).expect("a corpus entry broke a handler");
    }
    runner(cases(96))
        .run(
            &(operation(), payload(corpus.len())),
            |(operation, payload)| {
                let bytes = match payload {
                    Payload::Mutated(entry, mutations) => {
                        mutate(&corpus[entry].1, &mutations, MAX_PAYLOAD)
                    }
                    Payload::Bytes(bytes) => bytes,
                };
                check(&operation, bytes)
            },
        )
        .expect("every hostile request got a proper reply");
    eprintln!("replies: {:?}", replies.borrow());

    // The engine still serves devices and the control plane.
    let (suffix, _) = runtime.block_on(device.borrow_mut().request("get", b"{}".to_vec()));
    assert_eq!(suffix, "accepted");
    runtime.block_on(async {
        for job in JOBS {
            let described = engine.describe_job(job).await;
            assert!(described.job_id.is_some());
        }
        engine.stop().await;
    });
}
