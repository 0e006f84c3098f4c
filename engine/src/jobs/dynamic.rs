//! Dynamic thing groups: CreateDynamicThingGroup, UpdateDynamicThingGroup and
//! DeleteDynamicThingGroup, and keeping their members in step with the things.
//!
//! A dynamic group is a row of `engine.thing_groups` with a `query_string` (the subset of the
//! fleet-indexing query language in [`crate::query`]); its members are rows of
//! `engine.thing_group_members` like a static group's, so job targeting and continuous jobs
//! treat both alike. The engine evaluates the query itself, synchronously: when the group is
//! created or its query changes (over every thing), and when a thing is created, its
//! attributes or thing type change, or its static groups change (over that thing). Every such
//! change holds the membership lock and ends in [`Jobs::finish_membership_change`], so
//! continuous jobs targeting a dynamic group reach the things that join it.
//!
//! A query's `thingGroupNames` are the static groups a thing is directly in; dynamic groups do
//! not see each other, so one evaluation never triggers another.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value, json};
use sqlx::PgConnection;

use super::groups::{
    GROUP_COLUMNS, ThingGroupRow, check_description, check_group_name, group_not_found,
};
use super::things::{check_attributes, check_version, updated_attributes};
use super::{ErrorKind, Jobs, Result, ServiceError, targets};
use crate::query::{Indexed, Query};

/// The only index AWS IoT's dynamic groups query.
pub const INDEX_NAME: &str = "AWS_Things";
/// The query version AWS IoT reports when none is given.
pub const QUERY_VERSION: &str = "2017-09-30";

/// What CreateDynamicThingGroup needs.
#[derive(Debug, Clone, Default)]
pub struct NewDynamicThingGroup {
    pub name: String,
    pub description: Option<String>,
    pub attributes: HashMap<String, String>,
    pub query_string: String,
    pub index_name: Option<String>,
    pub query_version: Option<String>,
}

/// What UpdateDynamicThingGroup changes; `None` leaves a member as it is.
#[derive(Debug, Clone, Default)]
pub struct DynamicGroupUpdate {
    pub description: Option<String>,
    pub attributes: Option<HashMap<String, String>>,
    pub merge: bool,
    pub expected_version: Option<i64>,
    pub query_string: Option<String>,
    pub index_name: Option<String>,
    pub query_version: Option<String>,
}

/// Parses a group's query, as `InvalidQueryException` when the engine cannot evaluate it.
pub fn parse_query(text: &str) -> Result<Query> {
    Query::parse(text).map_err(|error| {
        ServiceError::new(
            ErrorKind::InvalidQuery,
            format!("invalid queryString {text:?}: {error}"),
        )
    })
}

fn check_index_name(index_name: Option<&str>) -> Result<()> {
    match index_name {
        None | Some(INDEX_NAME) => Ok(()),
        Some(other) => Err(ServiceError::invalid(format!(
            "indexName {other:?} is not an index; dynamic thing groups query {INDEX_NAME}"
        ))),
    }
}

impl Jobs {
    /// CreateDynamicThingGroup: stores the group and makes every thing its query matches a
    /// member (the group is ACTIVE when this returns).
    pub async fn create_dynamic_thing_group(
        &self,
        new: NewDynamicThingGroup,
    ) -> Result<ThingGroupRow> {
        check_group_name(&new.name)?;
        check_description(&new.description)?;
        check_attributes(&new.attributes)?;
        check_index_name(new.index_name.as_deref())?;
        let query = parse_query(&new.query_string)?;
        let mut tx = self.pool.begin().await?;
        targets::lock_membership(&mut tx).await?;
        let inserted: Option<ThingGroupRow> = sqlx::query_as(&format!(
            "insert into engine.thing_groups (group_name, group_id, description, attributes,
                 query_string, index_name, query_version)
             values ($1, $2, $3, $4, $5, $6, $7) on conflict (group_name) do nothing
             returning {GROUP_COLUMNS}"
        ))
        .bind(&new.name)
        .bind(uuid::Uuid::new_v4())
        .bind(&new.description)
        .bind(json!(new.attributes))
        .bind(&new.query_string)
        .bind(new.index_name.as_deref().unwrap_or(INDEX_NAME))
        .bind(new.query_version.as_deref().unwrap_or(QUERY_VERSION))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(group) = inserted else {
            return Err(ServiceError::new(
                ErrorKind::ResourceAlreadyExists,
                format!("Thing group {} already exists", new.name),
            ));
        };
        let changed = refresh_group(&mut tx, &group.group_name, &query).await?;
        tracing::info!(group = %group.group_name, members = changed.len(), "created dynamic thing group {} with {} members", group.group_name, changed.len());
        self.finish_membership_change(tx, &changed).await?;
        Ok(group)
    }

    /// UpdateDynamicThingGroup; returns the new version. A new query re-evaluates every thing.
    pub async fn update_dynamic_thing_group(
        &self,
        name: &str,
        update: DynamicGroupUpdate,
    ) -> Result<i64> {
        check_group_name(name)?;
        check_description(&update.description)?;
        if let Some(attributes) = &update.attributes {
            check_attributes(attributes)?;
        }
        check_index_name(update.index_name.as_deref())?;
        let query = update
            .query_string
            .as_deref()
            .map(parse_query)
            .transpose()?;
        let mut tx = self.pool.begin().await?;
        targets::lock_membership(&mut tx).await?;
        let current: ThingGroupRow = sqlx::query_as(&format!(
            "select {GROUP_COLUMNS} from engine.thing_groups where group_name = $1 for update"
        ))
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| group_not_found(name))?;
        if current.query_string.is_none() {
            return Err(ServiceError::invalid(format!(
                "{name} is a static thing group; use UpdateThingGroup"
            )));
        }
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
                 attributes = $3, query_string = coalesce($4, query_string),
                 query_version = coalesce($5, query_version), version = version + 1
             where group_name = $1 returning version",
        )
        .bind(name)
        .bind(&update.description)
        .bind(&attributes)
        .bind(&update.query_string)
        .bind(&update.query_version)
        .fetch_one(&mut *tx)
        .await?;
        let changed = match &query {
            Some(query) => refresh_group(&mut tx, name, query).await?,
            None => Vec::new(),
        };
        tracing::info!(group = %name, version, changed = changed.len(), "updated dynamic thing group {name} to version {version}; {} things changed membership", changed.len());
        self.finish_membership_change(tx, &changed).await?;
        Ok(version)
    }

    /// DeleteDynamicThingGroup. Deleting a group that does not exist succeeds, as on AWS; a
    /// static group is refused (DeleteThingGroup deletes it).
    pub async fn delete_dynamic_thing_group(
        &self,
        name: &str,
        expected_version: Option<i64>,
    ) -> Result<()> {
        check_group_name(name)?;
        let mut tx = self.pool.begin().await?;
        targets::lock_membership(&mut tx).await?;
        let current: Option<(i64, Option<String>)> = sqlx::query_as(
            "select version, query_string from engine.thing_groups where group_name = $1 for update",
        )
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((version, query_string)) = current else {
            return Ok(());
        };
        if query_string.is_none() {
            return Err(ServiceError::invalid(format!(
                "{name} is a static thing group; use DeleteThingGroup"
            )));
        }
        check_version(&format!("Thing group {name}"), expected_version, version)?;
        let members: Vec<String> = sqlx::query_scalar(
            "delete from engine.thing_group_members where group_name = $1 returning thing_name",
        )
        .bind(name)
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query("delete from engine.thing_groups where group_name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tracing::info!(group = %name, members = members.len(), "deleted dynamic thing group {name}");
        self.finish_membership_change(tx, &members).await
    }
}

/// A thing as a query sees it.
#[derive(Debug, sqlx::FromRow)]
struct IndexedRow {
    thing_name: String,
    thing_type_name: Option<String>,
    attributes: Value,
    groups: Vec<String>,
}

impl IndexedRow {
    fn matches(&self, query: &Query, empty: &Map<String, Value>) -> bool {
        let attributes = match &self.attributes {
            Value::Object(map) => map,
            _ => empty,
        };
        query.matches(&Indexed {
            thing_name: &self.thing_name,
            thing_type_name: self.thing_type_name.as_deref(),
            attributes,
            thing_group_names: &self.groups,
        })
    }
}

/// Things with the static groups they are directly in; `$1` (a `text[]`) limits them when
/// not null.
const INDEXED_THINGS: &str = "select t.thing_name, t.thing_type_name, t.attributes,
         coalesce(array_agg(m.group_name order by m.group_name)
                  filter (where m.group_name is not null), '{}') as groups
     from engine.things t
     left join engine.thing_group_members m
         on m.thing_name = t.thing_name
        and m.group_name in (select group_name from engine.thing_groups where query_string is null)
     where $1::text[] is null or t.thing_name = any($1)
     group by t.thing_name";

/// Re-evaluates every dynamic group for `things` and updates their memberships; returns the
/// things whose membership changed, sorted. The caller holds the membership lock.
pub(super) async fn refresh_things(
    tx: &mut PgConnection,
    things: &[String],
) -> Result<Vec<String>> {
    if things.is_empty() {
        return Ok(Vec::new());
    }
    let groups: Vec<(String, String)> = sqlx::query_as(
        "select group_name, query_string from engine.thing_groups
         where query_string is not null order by group_name",
    )
    .fetch_all(&mut *tx)
    .await?;
    if groups.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<IndexedRow> = sqlx::query_as(INDEXED_THINGS)
        .bind(things)
        .fetch_all(&mut *tx)
        .await?;
    let empty = Map::new();
    let mut desired: HashSet<(String, String)> = HashSet::new();
    for (group, text) in &groups {
        // Stored queries parsed when they were stored.
        let Ok(query) = Query::parse(text) else {
            tracing::warn!(group = %group, "dynamic thing group {group} has a query the engine no longer parses");
            continue;
        };
        for row in &rows {
            if row.matches(&query, &empty) {
                desired.insert((group.clone(), row.thing_name.clone()));
            }
        }
    }
    let current: HashSet<(String, String)> = sqlx::query_as::<_, (String, String)>(
        "select m.group_name, m.thing_name from engine.thing_group_members m
         join engine.thing_groups g on g.group_name = m.group_name
         where g.query_string is not null and m.thing_name = any($1)",
    )
    .bind(things)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .collect();
    apply(tx, &desired, &current).await
}

/// Evaluates the dynamic group `group` over every thing and updates its members; returns the
/// things that joined or left, sorted. The caller holds the membership lock.
async fn refresh_group(tx: &mut PgConnection, group: &str, query: &Query) -> Result<Vec<String>> {
    let rows: Vec<IndexedRow> = sqlx::query_as(INDEXED_THINGS)
        .bind(None::<Vec<String>>)
        .fetch_all(&mut *tx)
        .await?;
    let empty = Map::new();
    let desired: HashSet<(String, String)> = rows
        .iter()
        .filter(|row| row.matches(query, &empty))
        .map(|row| (group.to_owned(), row.thing_name.clone()))
        .collect();
    let current: HashSet<(String, String)> = sqlx::query_scalar::<_, String>(
        "select thing_name from engine.thing_group_members where group_name = $1",
    )
    .bind(group)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .map(|thing| (group.to_owned(), thing))
    .collect();
    apply(tx, &desired, &current).await
}

/// Inserts the memberships in `desired` but not in `current` and deletes the reverse.
async fn apply(
    tx: &mut PgConnection,
    desired: &HashSet<(String, String)>,
    current: &HashSet<(String, String)>,
) -> Result<Vec<String>> {
    let (join_groups, join_things): (Vec<String>, Vec<String>) =
        desired.difference(current).cloned().unzip();
    let (leave_groups, leave_things): (Vec<String>, Vec<String>) =
        current.difference(desired).cloned().unzip();
    if !join_things.is_empty() {
        sqlx::query(
            "insert into engine.thing_group_members (group_name, thing_name)
             select * from unnest($1::text[], $2::text[]) on conflict do nothing",
        )
        .bind(&join_groups)
        .bind(&join_things)
        .execute(&mut *tx)
        .await?;
    }
    if !leave_things.is_empty() {
        sqlx::query(
            "delete from engine.thing_group_members m
             using unnest($1::text[], $2::text[]) as gone(group_name, thing_name)
             where m.group_name = gone.group_name and m.thing_name = gone.thing_name",
        )
        .bind(&leave_groups)
        .bind(&leave_things)
        .execute(&mut *tx)
        .await?;
    }
    let mut changed: Vec<String> = join_things.into_iter().chain(leave_things).collect();
    changed.sort();
    changed.dedup();
    Ok(changed)
}
