//! The Device Shadow service's MQTT API, classic and named shadows, as AWS IoT speaks it:
//! `$aws/things/{thing}/shadow[/name/{shadowName}]/{update|get|delete}` with the answers on
//! `…/accepted` and `…/rejected`, and `…/update/delta` and `…/update/documents` after an
//! update.
//!
//! The agent reports the software it runs in the named shadow `flotilla`
//! (`state.reported.software`), which the dashboard reads from `…/update/documents`; see
//! `docs/fleet.md`. Shadows are stored in `engine.shadows` and go with their thing.
//!
//! Updates merge as AWS documents: objects merge key by key, `null` deletes a key (and a
//! `null` section deletes the section), anything else replaces. A request with a `version`
//! that is not the stored one is rejected with 409. Metadata keeps each leaf's update time.

use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::Jobs;
use crate::broker::Identity;

/// AWS's limit on the state document of a shadow (8 KiB in the `state` of a request).
const MAX_STATE_BYTES: usize = 8 * 1024;

/// What a shadow topic asks for: the thing, the shadow name (`None`: the classic shadow) and
/// the operation (`update`, `get` or `delete`).
#[derive(Debug, PartialEq, Eq)]
struct ShadowTopic<'a> {
    thing: &'a str,
    name: Option<&'a str>,
    operation: &'a str,
}

fn split_topic(topic: &str) -> Option<ShadowTopic<'_>> {
    let rest = topic.strip_prefix("$aws/things/")?;
    let (thing, rest) = rest.split_once("/shadow/")?;
    let (name, operation) = match rest.strip_prefix("name/") {
        Some(named) => {
            let (name, operation) = named.split_once('/')?;
            (Some(name), operation)
        }
        None => (None, rest),
    };
    matches!(operation, "update" | "get" | "delete").then_some(ShadowTopic {
        thing,
        name,
        operation,
    })
}

/// Whether a publish is a request to the Device Shadow service.
pub(super) fn is_shadow_request(topic: &str) -> bool {
    split_topic(topic).is_some()
}

/// Shadow names: 1–64 of `[a-zA-Z0-9:_-]`.
fn valid_shadow_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-'))
}

/// A shadow as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
struct ShadowRow {
    state: Value,
    metadata: Value,
    version: i64,
}

/// A rejection: AWS's numeric code and message.
struct Rejected(u16, String);

impl Jobs {
    /// Handles one shadow request and publishes its answers.
    pub(super) async fn handle_shadow_request(
        &self,
        identity: &Identity,
        topic: &str,
        payload: Bytes,
    ) {
        let Some(request) = split_topic(topic) else {
            return;
        };
        if let Identity::Thing(own) = identity
            && own != request.thing
        {
            return;
        }
        let body: Map<String, Value> = if payload.is_empty() {
            Map::new()
        } else {
            match serde_json::from_slice(&payload) {
                Ok(Value::Object(map)) => map,
                _ => {
                    return self.shadow_reply(
                        topic,
                        None,
                        Err(Rejected(400, "Payload contains invalid json".into())),
                    );
                }
            }
        };
        let client_token = body
            .get("clientToken")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let name = request.name.unwrap_or_default();
        let result = if request.name.is_some() && !valid_shadow_name(name) {
            Err(Rejected(400, format!("Invalid shadow name: {name:?}")))
        } else if !self.throttle.admit(request.thing) {
            Err(Rejected(429, "Too Many Requests".into()))
        } else {
            match request.operation {
                "get" => self.get_shadow(request.thing, name).await,
                "delete" => self.delete_shadow(request.thing, name).await,
                _ => {
                    self.update_shadow(topic, request.thing, name, &body, client_token.as_deref())
                        .await
                }
            }
        };
        self.shadow_reply(topic, client_token, result);
    }

    fn shadow_reply(
        &self,
        topic: &str,
        client_token: Option<String>,
        result: Result<Map<String, Value>, Rejected>,
    ) {
        let (suffix, mut body) = match result {
            Ok(body) => ("accepted", body),
            Err(Rejected(code, message)) => {
                let mut body = Map::new();
                body.insert("code".into(), json!(code));
                body.insert("message".into(), json!(message));
                ("rejected", body)
            }
        };
        body.insert("timestamp".into(), json!(chrono::Utc::now().timestamp()));
        if let Some(token) = client_token {
            body.insert("clientToken".into(), json!(token));
        }
        self.broker.publish(
            &format!("{topic}/{suffix}"),
            Value::Object(body).to_string(),
        );
    }

    async fn load_shadow(&self, thing: &str, name: &str) -> Result<Option<ShadowRow>, Rejected> {
        sqlx::query_as(
            "select state, metadata, version from engine.shadows
             where thing_name = $1 and shadow_name = $2",
        )
        .bind(thing)
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(internal)
    }

    async fn get_shadow(&self, thing: &str, name: &str) -> Result<Map<String, Value>, Rejected> {
        let Some(shadow) = self.load_shadow(thing, name).await? else {
            return Err(no_shadow(name));
        };
        let mut state = shadow.state.clone();
        if let Some(delta) = delta(&shadow.state) {
            state["delta"] = delta;
        }
        Ok(object(json!({
            "state": state,
            "metadata": shadow.metadata,
            "version": shadow.version,
        })))
    }

    async fn delete_shadow(&self, thing: &str, name: &str) -> Result<Map<String, Value>, Rejected> {
        let version: Option<i64> = sqlx::query_scalar(
            "delete from engine.shadows where thing_name = $1 and shadow_name = $2
             returning version",
        )
        .bind(thing)
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(internal)?;
        match version {
            Some(version) => Ok(object(json!({ "version": version }))),
            None => Err(no_shadow(name)),
        }
    }

    async fn update_shadow(
        &self,
        topic: &str,
        thing: &str,
        name: &str,
        request: &Map<String, Value>,
        client_token: Option<&str>,
    ) -> Result<Map<String, Value>, Rejected> {
        let Some(Value::Object(update)) = request.get("state") else {
            return Err(Rejected(400, "Missing required node: state".into()));
        };
        if serde_json::to_vec(update).map_or(0, |b| b.len()) > MAX_STATE_BYTES {
            return Err(Rejected(
                413,
                "The payload exceeds the maximum size allowed".into(),
            ));
        }
        for (section, value) in update {
            if !matches!(section.as_str(), "desired" | "reported") {
                return Err(Rejected(400, format!("Invalid state node: {section}")));
            }
            if !matches!(value, Value::Object(_) | Value::Null) {
                return Err(Rejected(
                    400,
                    format!("State node {section} must be an object"),
                ));
            }
        }
        let expected_version = request.get("version").and_then(Value::as_i64);
        let now = chrono::Utc::now().timestamp();
        let mut tx = self.pool.begin().await.map_err(internal)?;
        let exists: bool =
            sqlx::query_scalar("select exists (select 1 from engine.things where thing_name = $1)")
                .bind(thing)
                .fetch_one(&mut *tx)
                .await
                .map_err(internal)?;
        if !exists {
            return Err(Rejected(
                404,
                format!("No thing exists with name: '{thing}'"),
            ));
        }
        let current: Option<ShadowRow> = sqlx::query_as(
            "select state, metadata, version from engine.shadows
             where thing_name = $1 and shadow_name = $2 for update",
        )
        .bind(thing)
        .bind(name)
        .fetch_optional(&mut *tx)
        .await
        .map_err(internal)?;
        let previous = current.clone();
        let (mut state, mut metadata, version) = match current {
            Some(row) => (row.state, row.metadata, row.version),
            None => (json!({}), json!({}), 0),
        };
        if let Some(expected) = expected_version
            && expected != version
        {
            return Err(Rejected(409, "Version conflict".into()));
        }
        for (section, value) in update {
            merge(&mut state, section, value);
            merge(&mut metadata, section, &stamp(value, now));
        }
        let version = version + 1;
        sqlx::query(
            "insert into engine.shadows (thing_name, shadow_name, state, metadata, version)
             values ($1, $2, $3, $4, $5)
             on conflict (thing_name, shadow_name) do update
             set state = excluded.state, metadata = excluded.metadata,
                 version = excluded.version, updated_at = now()",
        )
        .bind(thing)
        .bind(name)
        .bind(&state)
        .bind(&metadata)
        .bind(version)
        .execute(&mut *tx)
        .await
        .map_err(internal)?;
        tx.commit().await.map_err(internal)?;

        let base = topic.trim_end_matches("/update");
        if let Some(delta) = delta(&state) {
            self.broker.publish(
                &format!("{base}/update/delta"),
                json!({
                    "state": delta,
                    "metadata": metadata.get("desired").cloned().unwrap_or(json!({})),
                    "version": version,
                    "timestamp": now,
                })
                .to_string(),
            );
        }
        let document = |state: &Value, metadata: &Value, version: i64| json!({ "state": state, "metadata": metadata, "version": version });
        let mut documents = json!({
            "previous": previous.map(|p| document(&p.state, &p.metadata, p.version)),
            "current": document(&state, &metadata, version),
            "timestamp": now,
        });
        if let Some(token) = client_token {
            documents["clientToken"] = json!(token);
        }
        self.broker
            .publish(&format!("{base}/update/documents"), documents.to_string());
        Ok(object(json!({
            "state": Value::Object(update.clone()),
            "metadata": stamp(&Value::Object(update.clone()), now),
            "version": version,
        })))
    }
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn internal(error: sqlx::Error) -> Rejected {
    tracing::error!(%error, "shadow database error: {error}");
    Rejected(500, "Internal service failure".into())
}

fn no_shadow(name: &str) -> Rejected {
    Rejected(404, format!("No shadow exists with name: '{name}'"))
}

/// Merges `update` into `target[key]`: objects key by key, `null` deletes, else replaces.
fn merge(target: &mut Value, key: &str, update: &Value) {
    let Value::Object(map) = target else {
        *target = json!({});
        return merge(target, key, update);
    };
    match update {
        Value::Null => {
            map.remove(key);
        }
        Value::Object(fields) => {
            let entry = map.entry(key.to_owned()).or_insert_with(|| json!({}));
            if !entry.is_object() {
                *entry = json!({});
            }
            for (field, value) in fields {
                merge(entry, field, value);
            }
            if entry.as_object().is_some_and(Map::is_empty) && !fields.is_empty() {
                map.remove(key);
            }
        }
        other => {
            map.insert(key.to_owned(), other.clone());
        }
    }
}

/// The metadata of `value`: each leaf replaced by `{"timestamp": now}` (nulls stay null, so
/// merging them deletes the metadata too).
fn stamp(value: &Value, now: i64) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, value)| (key.clone(), stamp(value, now)))
                .collect(),
        ),
        Value::Null => Value::Null,
        _ => json!({ "timestamp": now }),
    }
}

/// The fields of `desired` that `reported` does not hold with the same value.
fn delta(state: &Value) -> Option<Value> {
    fn diff(desired: &Value, reported: Option<&Value>) -> Option<Value> {
        match (desired, reported) {
            (Value::Object(want), Some(Value::Object(have))) => {
                let fields: Map<String, Value> = want
                    .iter()
                    .filter_map(|(k, v)| diff(v, have.get(k)).map(|d| (k.clone(), d)))
                    .collect();
                (!fields.is_empty()).then_some(Value::Object(fields))
            }
            (want, Some(have)) if want == have => None,
            (want, _) => Some(want.clone()),
        }
    }
    let desired = state.get("desired")?;
    diff(desired, state.get("reported"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shadow_topics_name_thing_shadow_and_operation() {
        assert_eq!(
            split_topic("$aws/things/t-1/shadow/name/flotilla/update"),
            Some(ShadowTopic {
                thing: "t-1",
                name: Some("flotilla"),
                operation: "update"
            })
        );
        assert_eq!(
            split_topic("$aws/things/t-1/shadow/get"),
            Some(ShadowTopic {
                thing: "t-1",
                name: None,
                operation: "get"
            })
        );
        assert_eq!(split_topic("$aws/things/t-1/shadow/update/accepted"), None);
        assert_eq!(split_topic("$aws/things/t-1/jobs/get"), None);
    }

    #[test]
    fn updates_merge_delete_with_null_and_leave_a_delta() {
        let mut state = json!({});
        merge(
            &mut state,
            "reported",
            &json!({ "software": { "version": "1.0" }, "a": 1 }),
        );
        merge(
            &mut state,
            "desired",
            &json!({ "software": { "version": "2.0" } }),
        );
        merge(&mut state, "reported", &json!({ "a": null }));
        assert_eq!(
            state,
            json!({
                "reported": { "software": { "version": "1.0" } },
                "desired": { "software": { "version": "2.0" } },
            })
        );
        assert_eq!(
            delta(&state),
            Some(json!({ "software": { "version": "2.0" } }))
        );
        merge(
            &mut state,
            "reported",
            &json!({ "software": { "version": "2.0" } }),
        );
        assert_eq!(delta(&state), None);
        merge(&mut state, "desired", &Value::Null);
        assert!(state.get("desired").is_none());
    }
}
