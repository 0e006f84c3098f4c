//! The thing registry beyond creation: ListThings, UpdateThing and DeleteThing.
//!
//! Deleting a thing ends its part in every job: its pending (QUEUED or IN_PROGRESS)
//! executions become REMOVED — AWS counts "things that have been deleted" among a job's
//! `numberOfRemovedThings` — with the `removed` event, and a snapshot job left with nothing
//! pending completes. Finished executions stay as the job's history.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use super::{
    EXECUTION_COLUMNS, ErrorKind, ExecutionRow, Jobs, Result, ServiceError, ThingRow,
    check_thing_name, complete_if_done, dynamic, events, targets, valid_attribute,
};

/// What ListThings filters on.
#[derive(Debug, Clone, Default)]
pub struct ThingFilter {
    pub attribute_name: Option<String>,
    pub attribute_value: Option<String>,
    /// Match `attribute_value` as a prefix (`usePrefixAttributeValue`).
    pub prefix: bool,
    pub thing_type_name: Option<String>,
}

/// What UpdateThing changes.
#[derive(Debug, Clone, Default)]
pub struct ThingUpdate {
    pub thing_type_name: Option<String>,
    pub remove_thing_type: bool,
    /// New attributes; `None` leaves them as they are.
    pub attributes: Option<HashMap<String, String>>,
    /// Merge `attributes` into the stored ones instead of replacing them.
    pub merge: bool,
    pub expected_version: Option<i64>,
}

/// Checks attribute names and values against AWS's patterns.
pub(super) fn check_attributes(attributes: &HashMap<String, String>) -> Result<()> {
    match attributes.iter().find(|(k, v)| !valid_attribute(k, v)) {
        Some((name, _)) => Err(ServiceError::invalid(format!(
            "attribute {name:?}: names are 1-128 characters of [a-zA-Z0-9_.,@/:#-], values at most 800"
        ))),
        None => Ok(()),
    }
}

/// The attributes after an update: `update` merged into or replacing `stored`. An empty value
/// removes an attribute, as the model documents.
pub(super) fn updated_attributes(
    stored: &Value,
    update: &HashMap<String, String>,
    merge: bool,
) -> Value {
    let mut attributes = match (merge, stored) {
        (true, Value::Object(stored)) => stored.clone(),
        _ => Map::new(),
    };
    for (name, value) in update {
        if value.is_empty() {
            attributes.remove(name);
        } else {
            attributes.insert(name.clone(), json!(value));
        }
    }
    Value::Object(attributes)
}

/// `expectedVersion` against the stored version.
pub(super) fn check_version(what: &str, expected: Option<i64>, version: i64) -> Result<()> {
    match expected {
        Some(expected) if expected != version => Err(ServiceError::new(
            ErrorKind::VersionMismatch,
            format!("{what} is at version {version}, not the expected {expected}"),
        )),
        _ => Ok(()),
    }
}

impl Jobs {
    /// One page of things in name order, after `after`.
    pub async fn list_things(
        &self,
        filter: &ThingFilter,
        limit: i64,
        after: Option<&str>,
    ) -> Result<Vec<ThingRow>> {
        if filter.attribute_value.is_some() && filter.attribute_name.is_none() {
            return Err(ServiceError::invalid("attributeValue needs attributeName"));
        }
        if let Some(name) = &filter.attribute_name {
            let value = filter.attribute_value.as_deref().unwrap_or_default();
            if !valid_attribute(name, value) {
                return Err(ServiceError::invalid(
                    "attributeName or attributeValue does not match AWS's attribute patterns",
                ));
            }
        }
        if let Some(thing_type) = &filter.thing_type_name {
            check_thing_name(thing_type).map_err(|_| {
                ServiceError::invalid("thingTypeName must be 1-128 characters of [a-zA-Z0-9:_-]")
            })?;
        }
        Ok(sqlx::query_as(
            "select thing_name, thing_id, thing_type_name, attributes, version from engine.things
             where ($1::text is null or thing_name > $1)
               and ($2::text is null or thing_type_name = $2)
               and ($3::text is null or attributes ? $3)
               and ($4::text is null or attributes ->> $3 = $4
                    or ($5 and starts_with(attributes ->> $3, $4)))
             order by thing_name limit $6",
        )
        .bind(after)
        .bind(&filter.thing_type_name)
        .bind(&filter.attribute_name)
        .bind(&filter.attribute_value)
        .bind(filter.prefix)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// UpdateThing.
    pub async fn update_thing(&self, name: &str, update: ThingUpdate) -> Result<ThingRow> {
        check_thing_name(name)?;
        if update.remove_thing_type && update.thing_type_name.is_some() {
            return Err(ServiceError::invalid(
                "thingTypeName and removeThingType cannot be given together",
            ));
        }
        if let Some(attributes) = &update.attributes {
            check_attributes(attributes)?;
        }
        let mut tx = self.pool.begin().await?;
        // New attributes may move the thing in or out of dynamic groups: a membership change,
        // so the membership lock comes first (before the thing's row, as DeleteThing takes them).
        targets::lock_membership_shared(&mut tx).await?;
        let current: ThingRow = sqlx::query_as(
            "select thing_name, thing_id, thing_type_name, attributes, version
             from engine.things where thing_name = $1 for update",
        )
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| ServiceError::not_found(format!("Thing {name} not found")))?;
        check_version(
            &format!("Thing {name}"),
            update.expected_version,
            current.version,
        )?;
        let attributes = match &update.attributes {
            Some(attributes) => updated_attributes(&current.attributes, attributes, update.merge),
            None => current.attributes.clone(),
        };
        let thing_type_name = if update.remove_thing_type {
            None
        } else {
            update.thing_type_name.or(current.thing_type_name.clone())
        };
        let updated: ThingRow = sqlx::query_as(
            "update engine.things set thing_type_name = $2, attributes = $3, version = version + 1
             where thing_name = $1
             returning thing_name, thing_id, thing_type_name, attributes, version",
        )
        .bind(name)
        .bind(&thing_type_name)
        .bind(&attributes)
        .fetch_one(&mut *tx)
        .await?;
        let changed = if updated.attributes != current.attributes
            || updated.thing_type_name != current.thing_type_name
        {
            dynamic::refresh_things(&mut tx, &[name.to_owned()]).await?
        } else {
            Vec::new()
        };
        self.finish_membership_change(tx, &changed).await?;
        tracing::info!(thing = %name, version = updated.version, "updated thing {name} to version {}", updated.version);
        Ok(updated)
    }

    /// DeleteThing. Deleting a thing that does not exist succeeds, as on AWS.
    pub async fn delete_thing(&self, name: &str, expected_version: Option<i64>) -> Result<()> {
        check_thing_name(name)?;
        let mut tx = self.pool.begin().await?;
        // The thing leaves its groups, so this is a membership change.
        targets::lock_membership(&mut tx).await?;
        let version: Option<i64> = sqlx::query_scalar(
            "select version from engine.things where thing_name = $1 for update",
        )
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(version) = version else {
            return Ok(());
        };
        check_version(&format!("Thing {name}"), expected_version, version)?;
        // Job rows first, then executions, the order of every other path.
        let job_ids: Vec<String> = sqlx::query_scalar(
            "select j.job_id from engine.jobs j
             where exists (select 1 from engine.job_executions e
                           where e.job_id = j.job_id and e.thing_name = $1
                             and e.status in ('QUEUED', 'IN_PROGRESS'))
             order by j.job_id for update of j",
        )
        .bind(name)
        .fetch_all(&mut *tx)
        .await?;
        let removed: Vec<ExecutionRow> = sqlx::query_as(&format!(
            "update engine.job_executions set status = 'REMOVED',
                 version_number = version_number + 1, last_updated_at = now()
             where thing_name = $1 and job_id = any($2) and status in ('QUEUED', 'IN_PROGRESS')
             returning {EXECUTION_COLUMNS}"
        ))
        .bind(name)
        .bind(&job_ids)
        .fetch_all(&mut *tx)
        .await?;
        let mut completed = Vec::new();
        for job_id in &job_ids {
            completed.extend(complete_if_done(&mut *tx, job_id).await?);
        }
        // Memberships go with the thing (on delete cascade).
        sqlx::query("delete from engine.things where thing_name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(thing = %name, removed = removed.len(), "deleted thing {name} and removed {} pending executions", removed.len());

        for execution in &removed {
            events::execution(self, execution);
        }
        for job in &completed {
            self.announce_completed(job).await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn attributes_merge_replace_and_drop_empty_values() {
        let stored = json!({ "site": "berlin", "hw": "r1" });
        assert_eq!(
            updated_attributes(&stored, &update(&[("hw", "r2"), ("site", "")]), true),
            json!({ "hw": "r2" })
        );
        assert_eq!(
            updated_attributes(&stored, &update(&[("rack", "7"), ("slot", "")]), false),
            json!({ "rack": "7" })
        );
    }

    #[test]
    fn versions_conflict_only_when_expected_differs() {
        assert!(check_version("Thing t", None, 3).is_ok());
        assert!(check_version("Thing t", Some(3), 3).is_ok());
        let conflict = check_version("Thing t", Some(2), 3).expect_err("a conflict");
        assert_eq!(conflict.kind, ErrorKind::VersionMismatch);
    }
}
