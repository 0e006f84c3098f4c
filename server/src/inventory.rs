//! The fleet inventory: the server's projection of every device in `server.devices`, so the
//! device list and search read PostgreSQL, never AWS per page.
//!
//! It is fed by
//!
//! - the presence lifecycle events `$aws/events/presence/{connected|disconnected}/{clientId}`
//!   (connectivity, last seen, and the connectivity history); an event older than the one
//!   applied (by time, then `versionNumber`; a disconnect wins a tie) does not undo it;
//! - the `flotilla` shadow's `…/shadow/name/flotilla/update/documents`, where the agent
//!   reports the software it runs (installed version and its history);
//! - the job-execution projection, through a trigger (`server.device_last_job`, migration
//!   0020): the last finished execution of each device;
//! - a resync from the registry (ListThings, ListThingGroups, ListThingsInThingGroup with
//!   `recursive`) at start-up and periodically: attributes, thing type and groups, each
//!   device's groups including every ancestor of them, so a group filter needs no recursive
//!   join; devices no longer registered are dropped.
//!
//! The subscriber uses the job-event subscriber's connection settings ([`EventSource`]) with
//! its own client id and filters; on AWS the IoT policy must let it subscribe to them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rumqttc::{AsyncClient, Event, Packet, QoS};
use serde_json::Value;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::iot::{Iot, IotError};
use crate::projection::EventSource;

/// What the inventory subscriber listens to.
pub fn topic_filters() -> Vec<String> {
    vec![
        "$aws/events/presence/connected/+".to_owned(),
        "$aws/events/presence/disconnected/+".to_owned(),
        format!(
            "$aws/things/+/shadow/name/{}/update/documents",
            flotilla_api::install::INVENTORY_SHADOW
        ),
    ]
}

/// One thing the inventory heard.
#[derive(Debug, Clone, PartialEq)]
pub enum InventoryEvent {
    Presence {
        thing_name: String,
        connected: bool,
        at: DateTime<Utc>,
        version: i64,
        reason: Option<String>,
        ip_address: Option<String>,
    },
    Software {
        thing_name: String,
        version: String,
        agent_version: Option<String>,
        at: DateTime<Utc>,
    },
}

/// Reads a presence event or a `flotilla` shadow document; `None` for anything else (or a
/// shadow update that does not touch the reported software).
pub fn parse_event(topic: &str, payload: &[u8]) -> Option<InventoryEvent> {
    let body: Value = serde_json::from_slice(payload).ok()?;
    let parts: Vec<&str> = topic.split('/').collect();
    match parts.as_slice() {
        [
            "$aws",
            "events",
            "presence",
            kind @ ("connected" | "disconnected"),
            client_id,
        ] => {
            let thing_name = body
                .get("clientId")
                .and_then(Value::as_str)
                .unwrap_or(*client_id)
                .to_owned();
            Some(InventoryEvent::Presence {
                thing_name,
                connected: *kind == "connected",
                at: body
                    .get("timestamp")
                    .and_then(Value::as_i64)
                    .and_then(DateTime::from_timestamp_millis)
                    .unwrap_or_else(Utc::now),
                version: body
                    .get("versionNumber")
                    .and_then(Value::as_i64)
                    .unwrap_or(0),
                reason: body
                    .get("disconnectReason")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                ip_address: body
                    .get("ipAddress")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            })
        }
        [
            "$aws",
            "things",
            thing,
            "shadow",
            "name",
            _,
            "update",
            "documents",
        ] => {
            let reported = body.pointer("/current/state/reported")?;
            let version = reported.pointer("/software/version")?.as_str()?.to_owned();
            Some(InventoryEvent::Software {
                thing_name: (*thing).to_owned(),
                version,
                agent_version: reported
                    .pointer("/agent/version")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                at: body
                    .get("timestamp")
                    .and_then(Value::as_i64)
                    .and_then(|t| DateTime::from_timestamp(t, 0))
                    .unwrap_or_else(Utc::now),
            })
        }
        _ => None,
    }
}

/// Applies one event. A device the inventory does not know yet gets a row (the resync fills
/// in its attributes and groups).
pub async fn apply(pool: &PgPool, event: &InventoryEvent) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    match event {
        InventoryEvent::Presence {
            thing_name,
            connected,
            at,
            version,
            reason,
            ip_address,
        } => {
            sqlx::query(
                "insert into server.devices (thing_name, connected, last_seen_at, presence_version)
                 values ($1, $2, $3, $4)
                 on conflict (thing_name) do update
                 set connected = excluded.connected, last_seen_at = excluded.last_seen_at,
                     presence_version = excluded.presence_version
                 where server.devices.last_seen_at is null
                    or (excluded.last_seen_at, excluded.presence_version)
                       > (server.devices.last_seen_at, server.devices.presence_version)
                    or ((excluded.last_seen_at, excluded.presence_version)
                        = (server.devices.last_seen_at, server.devices.presence_version)
                        and not excluded.connected)",
            )
            .bind(thing_name)
            .bind(connected)
            .bind(at)
            .bind(version)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "insert into server.device_presence (thing_name, connected, at, reason, ip_address)
                 values ($1, $2, $3, $4, $5) on conflict do nothing",
            )
            .bind(thing_name)
            .bind(connected)
            .bind(at)
            .bind(reason)
            .bind(ip_address)
            .execute(&mut *tx)
            .await?;
        }
        InventoryEvent::Software {
            thing_name,
            version,
            agent_version,
            at,
        } => {
            let previous: Option<Option<String>> = sqlx::query_scalar(
                "select installed_version from server.devices where thing_name = $1 for update",
            )
            .bind(thing_name)
            .fetch_optional(&mut *tx)
            .await?;
            sqlx::query(
                "insert into server.devices (thing_name, installed_version, agent_version, version_reported_at)
                 values ($1, $2, $3, $4)
                 on conflict (thing_name) do update
                 set installed_version = excluded.installed_version,
                     agent_version = coalesce(excluded.agent_version, server.devices.agent_version),
                     version_reported_at = excluded.version_reported_at
                 where server.devices.version_reported_at is null
                    or server.devices.version_reported_at <= excluded.version_reported_at",
            )
            .bind(thing_name)
            .bind(version)
            .bind(agent_version)
            .bind(at)
            .execute(&mut *tx)
            .await?;
            if previous.flatten().as_deref() != Some(version.as_str()) {
                sqlx::query(
                    "insert into server.device_versions (thing_name, version, reported_at)
                     values ($1, $2, $3) on conflict do nothing",
                )
                .bind(thing_name)
                .bind(version)
                .bind(at)
                .execute(&mut *tx)
                .await?;
            }
        }
    }
    tx.commit().await
}

/// Subscribes to [`topic_filters`] with `source`'s connection settings and applies every
/// event; reconnects with backoff (1 s doubling to 60 s) until `shutdown`. `subscribed` is
/// told once the first subscriptions are acknowledged: lifecycle events are not repeated, so
/// whoever starts devices right away (the simulated fleet) waits for it.
pub async fn run_subscriber(
    source: EventSource,
    pool: PgPool,
    mut subscribed: Option<tokio::sync::oneshot::Sender<()>>,
    shutdown: CancellationToken,
) {
    let source = EventSource {
        client_id_prefix: format!("{}inventory-", source.client_id_prefix),
        filters: topic_filters(),
        ..source
    };
    let (client, mut eventloop) = AsyncClient::new(source.options(), 64);
    let mut backoff = Duration::from_secs(1);
    let mut granted = 0;
    loop {
        let event = tokio::select! {
            () = shutdown.cancelled() => return,
            event = eventloop.poll() => event,
        };
        match event {
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                granted += ack.return_codes.len();
                if granted >= source.filters.len()
                    && let Some(subscribed) = subscribed.take()
                {
                    let _ = subscribed.send(());
                }
            }
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff = Duration::from_secs(1);
                granted = 0;
                for filter in &source.filters {
                    if let Err(error) = client.subscribe(filter, QoS::AtLeastOnce).await {
                        tracing::warn!(%error, "inventory: subscribing to {filter} failed: {error}");
                    }
                }
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                if let Some(event) = parse_event(&publish.topic, &publish.payload)
                    && let Err(error) = apply(&pool, &event).await
                {
                    tracing::warn!(%error, topic = %publish.topic, "inventory: could not apply the event on {}: {error}", publish.topic);
                }
            }
            Ok(_) => {}
            Err(error) => {
                tracing::debug!(%error, "inventory subscriber disconnected: {error}; reconnecting in {backoff:?}");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(60));
            }
        }
    }
}

/// One thing as the registry lists it.
#[derive(Debug, Clone, Default)]
struct Registered {
    thing_type: Option<String>,
    attributes: BTreeMap<String, String>,
    groups: BTreeSet<String>,
}

/// Brings the registry's view (things, attributes, thing types, groups with ancestors) into
/// `server.devices`, and drops devices that are no longer registered. Returns how many
/// devices there are.
pub async fn resync(pool: &PgPool, iot: &Iot) -> Result<usize, ResyncError> {
    let sdk = iot.sdk();
    let mut things: HashMap<String, Registered> = HashMap::new();
    let mut token = None;
    loop {
        let page = sdk
            .list_things()
            .max_results(250)
            .set_next_token(token)
            .send()
            .await
            .map_err(IotError::from_sdk)?;
        for thing in page.things() {
            let Some(name) = thing.thing_name() else {
                continue;
            };
            things.insert(
                name.to_owned(),
                Registered {
                    thing_type: thing.thing_type_name().map(str::to_owned),
                    attributes: thing
                        .attributes()
                        .map(|a| a.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                        .unwrap_or_default(),
                    groups: BTreeSet::new(),
                },
            );
        }
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    // Every group, and for each the things in it or below it: a thing's groups then include
    // the ancestors of its own groups.
    let mut groups = Vec::new();
    let mut token = None;
    loop {
        let page = sdk
            .list_thing_groups()
            .max_results(250)
            .set_next_token(token)
            .send()
            .await
            .map_err(IotError::from_sdk)?;
        groups.extend(
            page.thing_groups()
                .iter()
                .filter_map(|g| g.group_name().map(str::to_owned)),
        );
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    for group in &groups {
        let mut token = None;
        loop {
            let page = match sdk
                .list_things_in_thing_group()
                .thing_group_name(group)
                .recursive(true)
                .max_results(250)
                .set_next_token(token)
                .send()
                .await
                .map_err(IotError::from_sdk)
            {
                Ok(page) => page,
                // Deleted since it was listed.
                Err(IotError::NotFound(_)) => break,
                Err(other) => return Err(other.into()),
            };
            for thing in page.things() {
                if let Some(registered) = things.get_mut(thing) {
                    registered.groups.insert(group.clone());
                }
            }
            token = page.next_token().map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
    }
    store_registry(pool, &things).await?;
    Ok(things.len())
}

/// Writes the registry's view in one transaction.
async fn store_registry(pool: &PgPool, things: &HashMap<String, Registered>) -> sqlx::Result<()> {
    let mut names = Vec::with_capacity(things.len());
    let mut types = Vec::with_capacity(things.len());
    let mut attributes = Vec::with_capacity(things.len());
    let mut groups = Vec::with_capacity(things.len());
    for (name, thing) in things {
        names.push(name.clone());
        types.push(thing.thing_type.clone());
        attributes.push(serde_json::to_value(&thing.attributes).unwrap_or_default());
        // Arrays of arrays must be rectangular in PostgreSQL: pass each as JSON.
        groups.push(serde_json::to_value(&thing.groups).unwrap_or_default());
    }
    let mut tx = pool.begin().await?;
    sqlx::query(
        "insert into server.devices (thing_name, thing_type_name, attributes, groups, synced_at)
         select n, t, a, array(select jsonb_array_elements_text(g) order by 1), now()
         from unnest($1::text[], $2::text[], $3::jsonb[], $4::jsonb[]) as u(n, t, a, g)
         on conflict (thing_name) do update
         set thing_type_name = excluded.thing_type_name, attributes = excluded.attributes,
             groups = excluded.groups, synced_at = excluded.synced_at
         where (server.devices.thing_type_name, server.devices.attributes, server.devices.groups)
               is distinct from (excluded.thing_type_name, excluded.attributes, excluded.groups)",
    )
    .bind(&names)
    .bind(&types)
    .bind(&attributes)
    .bind(&groups)
    .execute(&mut *tx)
    .await?;
    sqlx::query("delete from server.devices where thing_name <> all($1)")
        .bind(&names)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

/// Why a resync failed.
#[derive(Debug, thiserror::Error)]
pub enum ResyncError {
    #[error(transparent)]
    Iot(#[from] IotError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Resyncs at start and then every `every` until `shutdown`.
pub async fn run_resync(pool: PgPool, iot: Iot, every: Duration, shutdown: CancellationToken) {
    loop {
        match resync(&pool, &iot).await {
            Ok(count) => tracing::info!(devices = count, "inventory resynced: {count} devices"),
            Err(error) => tracing::warn!(%error, "inventory resync failed: {error}"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_presence_events_and_software_reports() {
        let connected = br#"{"clientId":"t-1","timestamp":1700000000123,"eventType":"connected",
            "sessionIdentifier":"s","principalIdentifier":"p","ipAddress":"192.0.2.1","versionNumber":3}"#;
        assert_eq!(
            parse_event("$aws/events/presence/connected/t-1", connected),
            Some(InventoryEvent::Presence {
                thing_name: "t-1".into(),
                connected: true,
                at: DateTime::from_timestamp_millis(1_700_000_000_123).expect("a time"),
                version: 3,
                reason: None,
                ip_address: Some("192.0.2.1".into()),
            })
        );
        let documents =
            br#"{"previous":null,"current":{"state":{"reported":{"software":{"version":"2.1.0"},
            "agent":{"version":"0.1.0"}}},"metadata":{},"version":1},"timestamp":1700000000}"#;
        assert_eq!(
            parse_event(
                "$aws/things/t-1/shadow/name/flotilla/update/documents",
                documents
            ),
            Some(InventoryEvent::Software {
                thing_name: "t-1".into(),
                version: "2.1.0".into(),
                agent_version: Some("0.1.0".into()),
                at: DateTime::from_timestamp(1_700_000_000, 0).expect("a time"),
            })
        );
        assert_eq!(parse_event("$aws/events/job/j/completed", b"{}"), None);
        assert_eq!(
            parse_event(
                "$aws/things/t-1/shadow/name/flotilla/update/documents",
                br#"{"current":{"state":{"reported":{}}}}"#
            ),
            None
        );
    }
}
