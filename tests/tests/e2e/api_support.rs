//! Typed request helpers for the `/api/v1` tests, and registering a fleet through the
//! server's own IoT client.

use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::helpers::TestApp;

/// An answer: its status and its body as JSON (`Null` when empty).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
}

impl Answer {
    /// The body decoded as `T`, failing the test with the body when it does not decode.
    #[track_caller]
    pub fn json<T: DeserializeOwned>(&self) -> T {
        serde_json::from_value(self.body.clone())
            .unwrap_or_else(|e| panic!("decoding {}: {e}", self.body))
    }

    /// Asserts an error answer: `status`, the stable `code`, and (if given) that the first
    /// field message is about `field`.
    #[track_caller]
    pub fn assert_error(&self, status: StatusCode, code: &str, field: Option<&str>) {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(self.body["code"], code, "{}", self.body);
        assert!(self.body["message"].as_str().is_some_and(|m| !m.is_empty()));
        if let Some(field) = field {
            let fields: Vec<&str> = self.body["fields"]
                .as_array()
                .map(|f| f.iter().filter_map(|f| f["field"].as_str()).collect())
                .unwrap_or_default();
            assert!(
                fields.contains(&field),
                "expected a message on {field}: {}",
                self.body
            );
        }
    }
}

async fn answer(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.expect("sending the request");
    let status = response.status();
    let text = response.text().await.expect("reading the body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    };
    Answer { status, body }
}

pub async fn get(app: &TestApp, path: &str) -> Answer {
    answer(app.http.get(app.url(path))).await
}

pub async fn post(app: &TestApp, path: &str, body: Value) -> Answer {
    answer(app.http.post(app.url(path)).json(&body)).await
}

pub async fn put(app: &TestApp, path: &str, body: Value) -> Answer {
    answer(app.http.put(app.url(path)).json(&body)).await
}

pub async fn delete(app: &TestApp, path: &str) -> Answer {
    answer(app.http.delete(app.url(path))).await
}

/// Registers a thing with attributes (CreateThing).
pub async fn create_thing(app: &TestApp, name: &str, attributes: &[(&str, &str)]) {
    let mut payload = aws_sdk_iot::types::AttributePayload::builder();
    for (k, v) in attributes {
        payload = payload.attributes(*k, *v);
    }
    app.server
        .iot_client
        .create_thing()
        .thing_name(name)
        .attribute_payload(payload.build())
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateThing {name}: {e:?}"));
}

/// Creates thing group `group` with `members` (CreateThingGroup, AddThingToThingGroup).
pub async fn create_group(app: &TestApp, group: &str, members: &[&str]) {
    let iot = &app.server.iot_client;
    iot.create_thing_group()
        .thing_group_name(group)
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateThingGroup {group}: {e:?}"));
    for thing in members {
        iot.add_thing_to_thing_group()
            .thing_group_name(group)
            .thing_name(*thing)
            .send()
            .await
            .unwrap_or_else(|e| panic!("AddThingToThingGroup {group} {thing}: {e:?}"));
    }
}

/// The jobs IoT has, by id (ListJobs), to prove a refused request created nothing.
pub async fn iot_job_ids(app: &TestApp) -> Vec<String> {
    let out = app
        .server
        .iot_client
        .list_jobs()
        .send()
        .await
        .expect("ListJobs");
    let mut ids: Vec<String> = out
        .jobs
        .unwrap_or_default()
        .into_iter()
        .filter_map(|j| j.job_id)
        .collect();
    ids.sort();
    ids
}
