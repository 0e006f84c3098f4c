//! The account's event configuration (DescribeEventConfigurations, UpdateEventConfigurations):
//! which `$aws/events/…` event types the engine publishes. As on AWS, every type starts
//! disabled; the configuration is kept in PostgreSQL and mirrored in memory, because the
//! publishers ([`super::events`]) run after a commit and must not query the database.

use std::collections::{BTreeMap, HashSet};
use std::sync::RwLock;

use chrono::{DateTime, Utc};

use super::{Jobs, Result, ServiceError};

/// AWS's `EventType` values, in the model's order.
pub const EVENT_TYPES: [&str; 11] = [
    "THING",
    "THING_GROUP",
    "THING_TYPE",
    "THING_GROUP_MEMBERSHIP",
    "THING_GROUP_HIERARCHY",
    "THING_TYPE_ASSOCIATION",
    "JOB",
    "JOB_EXECUTION",
    "POLICY",
    "CERTIFICATE",
    "CA_CERTIFICATE",
];

/// The event types currently enabled, as the publishers read them.
#[derive(Debug, Default)]
pub(super) struct EnabledEvents(RwLock<HashSet<String>>);

impl EnabledEvents {
    fn replace(&self, enabled: HashSet<String>) {
        *self.0.write().expect("event configuration lock") = enabled;
    }

    pub(super) fn contains(&self, event_type: &str) -> bool {
        self.0
            .read()
            .expect("event configuration lock")
            .contains(event_type)
    }
}

/// The configuration as DescribeEventConfigurations reports it.
#[derive(Debug, Clone)]
pub struct EventConfigurations {
    /// Every event type with whether it is enabled.
    pub enabled: BTreeMap<&'static str, bool>,
    /// When UpdateEventConfigurations last changed anything, if ever.
    pub last_modified: Option<DateTime<Utc>>,
}

impl Jobs {
    /// Reads the stored configuration into memory; the engine calls it once at start-up.
    pub async fn load_event_configurations(&self) -> Result<()> {
        let enabled: Vec<String> =
            sqlx::query_scalar("select event_type from engine.event_configurations where enabled")
                .fetch_all(&self.pool)
                .await?;
        self.enabled_events.replace(enabled.into_iter().collect());
        Ok(())
    }

    /// DescribeEventConfigurations.
    pub async fn event_configurations(&self) -> Result<EventConfigurations> {
        let rows: Vec<(String, bool, DateTime<Utc>)> = sqlx::query_as(
            "select event_type, enabled, updated_at from engine.event_configurations",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut enabled: BTreeMap<&'static str, bool> =
            EVENT_TYPES.iter().map(|t| (*t, false)).collect();
        for (event_type, on, _) in &rows {
            if let Some(known) = EVENT_TYPES.iter().find(|t| **t == event_type) {
                enabled.insert(known, *on);
            }
        }
        Ok(EventConfigurations {
            enabled,
            last_modified: rows.iter().map(|(_, _, at)| *at).max(),
        })
    }

    /// UpdateEventConfigurations: sets the given types on or off and leaves the others.
    pub async fn update_event_configurations(&self, changes: &[(String, bool)]) -> Result<()> {
        if let Some((unknown, _)) = changes
            .iter()
            .find(|(t, _)| !EVENT_TYPES.contains(&t.as_str()))
        {
            return Err(ServiceError::invalid(format!(
                "unknown event type {unknown:?}; expected one of {}",
                EVENT_TYPES.join(", ")
            )));
        }
        let (types, flags): (Vec<String>, Vec<bool>) = changes.iter().cloned().unzip();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "insert into engine.event_configurations (event_type, enabled)
             select * from unnest($1::text[], $2::boolean[])
             on conflict (event_type) do update set enabled = excluded.enabled, updated_at = now()",
        )
        .bind(&types)
        .bind(&flags)
        .execute(&mut *tx)
        .await?;
        let enabled: Vec<String> =
            sqlx::query_scalar("select event_type from engine.event_configurations where enabled")
                .fetch_all(&mut *tx)
                .await?;
        tx.commit().await?;
        self.enabled_events.replace(enabled.into_iter().collect());
        tracing::info!(changes = ?changes, "updated the event configuration: {changes:?}");
        Ok(())
    }
}
