//! Static thing groups: CreateThingGroup, DescribeThingGroup, ListThingGroups,
//! UpdateThingGroup, DeleteThingGroup, and membership (AddThingToThingGroup,
//! RemoveThingFromThingGroup, ListThingsInThingGroup, ListThingGroupsForThing).
//!
//! Every membership change (adding or removing a thing, deleting a group with members) is one
//! transaction under the membership lock that also brings continuous jobs in step
//! ([`targets::reconcile_continuous`]); the resulting `removed` events and `notify`/
//! `notify-next` messages go out after the commit.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::targets::{self, GROUP_TREE};
use super::things::{check_attributes, check_version, updated_attributes};
use super::{ErrorKind, Jobs, Result, ServiceError, check_thing_name, dynamic, events};
use crate::model::valid_thing_name;

/// How deep groups may nest (AWS's limit): a root group and six levels below it.
const MAX_DEPTH: i64 = 7;

/// A thing group as stored.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ThingGroupRow {
    pub group_name: String,
    pub group_id: uuid::Uuid,
    pub parent_name: Option<String>,
    pub description: Option<String>,
    pub attributes: Value,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    /// A dynamic group's fleet-indexing query; `None` for a static group.
    pub query_string: Option<String>,
    pub index_name: Option<String>,
    pub query_version: Option<String>,
}

pub(super) const GROUP_COLUMNS: &str = "group_name, group_id, parent_name, description, attributes, \
     version, created_at, query_string, index_name, query_version";

/// What CreateThingGroup needs.
#[derive(Debug, Clone, Default)]
pub struct NewThingGroup {
    pub name: String,
    pub parent: Option<String>,
    pub description: Option<String>,
    pub attributes: HashMap<String, String>,
}

/// What UpdateThingGroup changes.
#[derive(Debug, Clone, Default)]
pub struct GroupUpdate {
    /// A new description; `None` leaves it.
    pub description: Option<String>,
    /// New attributes; `None` leaves them.
    pub attributes: Option<HashMap<String, String>>,
    pub merge: bool,
    pub expected_version: Option<i64>,
}

pub(super) fn check_group_name(name: &str) -> Result<()> {
    if valid_thing_name(name) {
        Ok(())
    } else {
        Err(ServiceError::invalid(format!(
            "thingGroupName must be 1-128 characters of [a-zA-Z0-9:_-], got {name:?}"
        )))
    }
}

/// AWS's `ThingGroupDescription`: at most 2028 printable characters.
pub(super) fn check_description(description: &Option<String>) -> Result<()> {
    match description {
        Some(d) if d.chars().count() > 2028 || d.chars().any(char::is_control) => {
            Err(ServiceError::invalid(
                "thingGroupDescription must be at most 2028 printable characters",
            ))
        }
        _ => Ok(()),
    }
}

pub(super) fn group_not_found(name: &str) -> ServiceError {
    ServiceError::not_found(format!("Thing group {name} not found"))
}

/// How ListThingGroups selects groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupScope {
    /// Every group.
    All,
    /// Groups without a parent.
    Roots,
    /// The direct children of the parent.
    Children,
    /// Every group below the parent.
    Descendants,
}

impl GroupScope {
    fn as_str(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Roots => "roots",
            Self::Children => "children",
            Self::Descendants => "descendants",
        }
    }
}

impl Jobs {
    /// CreateThingGroup. Creating a group that exists with the same parent and properties
    /// returns it; anything else that exists is a conflict.
    pub async fn create_thing_group(&self, new: NewThingGroup) -> Result<ThingGroupRow> {
        check_group_name(&new.name)?;
        if let Some(parent) = &new.parent {
            check_group_name(parent)?;
        }
        check_description(&new.description)?;
        check_attributes(&new.attributes)?;
        let attributes = json!(new.attributes);
        let mut tx = self.pool.begin().await?;
        if let Some(parent) = &new.parent {
            // The model lists no ResourceNotFoundException for CreateThingGroup.
            let depth: Option<i64> = sqlx::query_scalar(
                "with recursive up(name, depth) as (
                     select parent_name, 1::bigint from engine.thing_groups where group_name = $1
                     union all
                     select g.parent_name, up.depth + 1 from engine.thing_groups g join up on g.group_name = up.name)
                 select max(depth) from up",
            )
            .bind(parent)
            .fetch_one(&mut *tx)
            .await?;
            let dynamic_parent: bool = sqlx::query_scalar(
                "select exists (select 1 from engine.thing_groups
                                where group_name = $1 and query_string is not null)",
            )
            .bind(parent)
            .fetch_one(&mut *tx)
            .await?;
            if dynamic_parent {
                return Err(ServiceError::invalid(format!(
                    "{parent} is a dynamic thing group, which cannot have child groups"
                )));
            }
            match depth {
                None => {
                    return Err(ServiceError::invalid(format!(
                        "parent thing group {parent} does not exist"
                    )));
                }
                Some(depth) if depth >= MAX_DEPTH => {
                    return Err(ServiceError::invalid(format!(
                        "thing groups nest at most {MAX_DEPTH} levels deep"
                    )));
                }
                Some(_) => {}
            }
        }
        let inserted: Option<ThingGroupRow> = sqlx::query_as(&format!(
            "insert into engine.thing_groups (group_name, group_id, parent_name, description, attributes)
             values ($1, $2, $3, $4, $5) on conflict (group_name) do nothing
             returning {GROUP_COLUMNS}"
        ))
        .bind(&new.name)
        .bind(uuid::Uuid::new_v4())
        .bind(&new.parent)
        .bind(&new.description)
        .bind(&attributes)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        if let Some(group) = inserted {
            tracing::info!(group = %group.group_name, "created thing group {}", group.group_name);
            return Ok(group);
        }
        let existing = self.thing_group(&new.name).await?;
        if existing.query_string.is_none()
            && existing.parent_name == new.parent
            && existing.description == new.description
            && existing.attributes == attributes
        {
            Ok(existing)
        } else {
            Err(ServiceError::new(
                ErrorKind::ResourceAlreadyExists,
                format!(
                    "Thing group {} already exists with different properties",
                    new.name
                ),
            ))
        }
    }

    /// DescribeThingGroup's group.
    pub async fn thing_group(&self, name: &str) -> Result<ThingGroupRow> {
        check_group_name(name)?;
        sqlx::query_as(&format!(
            "select {GROUP_COLUMNS} from engine.thing_groups where group_name = $1"
        ))
        .bind(name)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| group_not_found(name))
    }

    /// The ancestors of a group, root first (DescribeThingGroup's `rootToParentThingGroups`).
    pub async fn ancestors(&self, name: &str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "with recursive up(name, depth) as (
                 select parent_name, 1 from engine.thing_groups where group_name = $1
                 union all
                 select g.parent_name, up.depth + 1 from engine.thing_groups g join up on g.group_name = up.name)
             select name from up where name is not null order by depth desc",
        )
        .bind(name)
        .fetch_all(&self.pool)
        .await?)
    }

    /// One page of groups in name order, after `after`. `parent` must exist when given.
    pub async fn list_thing_groups(
        &self,
        parent: Option<&str>,
        scope: GroupScope,
        name_prefix: Option<&str>,
        limit: i64,
        after: Option<&str>,
    ) -> Result<Vec<ThingGroupRow>> {
        if let Some(prefix) = name_prefix {
            check_group_name(prefix)?;
        }
        if let Some(parent) = parent {
            self.thing_group(parent).await?;
        }
        let parents: Vec<&str> = parent.into_iter().collect();
        Ok(sqlx::query_as(&format!(
            "{GROUP_TREE}
             select {GROUP_COLUMNS} from engine.thing_groups g
             where ($2::text is null or g.group_name > $2)
               and ($3::text is null or starts_with(g.group_name, $3))
               and case $4
                   when 'roots' then g.parent_name is null
                   when 'children' then g.parent_name = any($1)
                   when 'descendants' then g.group_name in (select group_name from tree)
                                           and g.group_name <> all($1)
                   else true end
             order by g.group_name limit $5"
        ))
        .bind(&parents)
        .bind(after)
        .bind(name_prefix)
        .bind(scope.as_str())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// UpdateThingGroup; returns the new version.
    pub async fn update_thing_group(&self, name: &str, update: GroupUpdate) -> Result<i64> {
        check_group_name(name)?;
        check_description(&update.description)?;
        if let Some(attributes) = &update.attributes {
            check_attributes(attributes)?;
        }
        let mut tx = self.pool.begin().await?;
        let current: ThingGroupRow = sqlx::query_as(&format!(
            "select {GROUP_COLUMNS} from engine.thing_groups where group_name = $1 for update"
        ))
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| group_not_found(name))?;
        check_version(
            &format!("Thing group {name}"),
            update.expected_version,
            current.version,
        )?;
        let attributes = match &update.attributes {
            Some(attributes) => updated_attributes(&current.attributes, attributes, update.merge),
            None => current.attributes.clone(),
        };
        let version: i64 = sqlx::query_scalar(
            "update engine.thing_groups set description = coalesce($2, description),
                 attributes = $3, version = version + 1
             where group_name = $1 returning version",
        )
        .bind(name)
        .bind(&update.description)
        .bind(&attributes)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(version)
    }

    /// DeleteThingGroup. A group with child groups is refused, as on AWS; its things leave it
    /// (and continuous jobs follow). Deleting a group that does not exist succeeds.
    pub async fn delete_thing_group(
        &self,
        name: &str,
        expected_version: Option<i64>,
    ) -> Result<()> {
        check_group_name(name)?;
        let mut tx = self.pool.begin().await?;
        targets::lock_membership(&mut tx).await?;
        let version: Option<i64> = sqlx::query_scalar(
            "select version from engine.thing_groups where group_name = $1 for update",
        )
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(version) = version else {
            return Ok(());
        };
        check_version(&format!("Thing group {name}"), expected_version, version)?;
        let has_children: bool = sqlx::query_scalar(
            "select exists (select 1 from engine.thing_groups where parent_name = $1)",
        )
        .bind(name)
        .fetch_one(&mut *tx)
        .await?;
        if has_children {
            return Err(ServiceError::invalid(format!(
                "Cannot delete thing group : {name} when there are still child groups attached to it"
            )));
        }
        let members: Vec<String> = sqlx::query_scalar(
            "select thing_name from engine.thing_group_members where group_name = $1",
        )
        .bind(name)
        .fetch_all(&mut *tx)
        .await?;
        // The memberships go with the group (on delete cascade); the members' dynamic groups
        // may have looked at it (thingGroupNames).
        sqlx::query("delete from engine.thing_groups where group_name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        let mut changed = dynamic::refresh_things(&mut tx, &members).await?;
        changed.extend(members);
        changed.sort();
        changed.dedup();
        self.finish_membership_change(tx, &changed).await?;
        tracing::info!(group = %name, "deleted thing group {name}");
        Ok(())
    }

    /// AddThingToThingGroup. Adding a member again changes nothing.
    pub async fn add_thing_to_group(&self, group: &str, thing: &str) -> Result<()> {
        self.change_membership(group, thing, true).await
    }

    /// RemoveThingFromThingGroup. Removing a thing that is not a member changes nothing.
    pub async fn remove_thing_from_group(&self, group: &str, thing: &str) -> Result<()> {
        self.change_membership(group, thing, false).await
    }

    async fn change_membership(&self, group: &str, thing: &str, add: bool) -> Result<()> {
        check_group_name(group)?;
        check_thing_name(thing)?;
        let mut tx = self.pool.begin().await?;
        targets::lock_membership(&mut tx).await?;
        let (dynamic, thing_exists): (Option<bool>, bool) = sqlx::query_as(
            "select (select query_string is not null from engine.thing_groups where group_name = $1),
                    exists (select 1 from engine.things where thing_name = $2)",
        )
        .bind(group)
        .bind(thing)
        .fetch_one(&mut *tx)
        .await?;
        match dynamic {
            None => return Err(group_not_found(group)),
            Some(true) => {
                return Err(ServiceError::invalid(format!(
                    "{group} is a dynamic thing group: its query decides its members"
                )));
            }
            Some(false) => {}
        }
        if !thing_exists {
            return Err(ServiceError::not_found(format!("Thing {thing} not found")));
        }
        let changed = if add {
            sqlx::query(
                "insert into engine.thing_group_members (group_name, thing_name) values ($1, $2)
                 on conflict do nothing",
            )
        } else {
            sqlx::query(
                "delete from engine.thing_group_members where group_name = $1 and thing_name = $2",
            )
        }
        .bind(group)
        .bind(thing)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        if changed {
            tracing::info!(group = %group, thing = %thing, add, "thing {thing} {} group {group}", if add { "joined" } else { "left" });
            let mut changed = dynamic::refresh_things(&mut tx, &[thing.to_owned()]).await?;
            changed.push(thing.to_owned());
            changed.sort();
            changed.dedup();
            self.finish_membership_change(tx, &changed).await
        } else {
            tx.commit().await?;
            Ok(())
        }
    }

    /// Brings continuous jobs in step with the changed membership of `things`, commits, and
    /// tells the devices and event subscribers what changed.
    pub(super) async fn finish_membership_change(
        &self,
        mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
        things: &[String],
    ) -> Result<()> {
        if things.is_empty() {
            // Nothing changed: no continuous job needs looking at (or locking).
            tx.commit().await?;
            return Ok(());
        }
        let before = self.next_pending(&mut tx, things).await?;
        let reconciled = targets::reconcile_continuous(&mut tx, &self.arns, things).await?;
        tx.commit().await?;
        for execution in &reconciled.queued {
            tracing::info!(job.id = %execution.job_id, thing = %execution.thing_name, "queued continuous job {} for {}, which joined a target group", execution.job_id, execution.thing_name);
        }
        for execution in &reconciled.removed {
            tracing::info!(job.id = %execution.job_id, thing = %execution.thing_name, "removed the execution of {} for {}, which left its target groups", execution.job_id, execution.thing_name);
            events::execution(self, execution);
        }
        self.announce_changed(&reconciled.removed_things(), before)
            .await;
        // New executions reach their devices as the job's rollout releases them.
        let mut jobs: Vec<&str> = reconciled
            .queued
            .iter()
            .map(|e| e.job_id.as_str())
            .collect();
        jobs.sort_unstable();
        jobs.dedup();
        for job_id in jobs {
            self.advance_rollout_after_change(job_id).await;
        }
        Ok(())
    }

    /// One page of a group's things (with `recursive`, also those of its descendants) in name
    /// order, after `after`.
    pub async fn things_in_group(
        &self,
        group: &str,
        recursive: bool,
        limit: i64,
        after: Option<&str>,
    ) -> Result<Vec<String>> {
        self.thing_group(group).await?;
        let scope = if recursive {
            "array(select group_name from tree)"
        } else {
            "$1"
        };
        Ok(sqlx::query_scalar(&format!(
            "{GROUP_TREE}
             select distinct thing_name from engine.thing_group_members
             where group_name = any({scope}) and ($2::text is null or thing_name > $2)
             order by thing_name limit $3"
        ))
        .bind([group])
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// One page of the groups a thing is directly in, in name order, after `after`.
    pub async fn groups_for_thing(
        &self,
        thing: &str,
        limit: i64,
        after: Option<&str>,
    ) -> Result<Vec<String>> {
        check_thing_name(thing)?;
        if self.thing(thing).await?.is_none() {
            return Err(ServiceError::not_found(format!("Thing {thing} not found")));
        }
        Ok(sqlx::query_scalar(
            "select group_name from engine.thing_group_members
             where thing_name = $1 and ($2::text is null or group_name > $2)
             order by group_name limit $3",
        )
        .bind(thing)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }
}
