//! `/api/v1/things` and `/api/v1/thing-groups`: the fleet as AWS IoT registers it, read
//! through `aws-sdk-iot` (ListThings, DescribeThing, ListThingGroupsForThing,
//! ListJobExecutionsForThing, ListThingGroups, DescribeThingGroup, ListThingsInThingGroup).

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use chrono::SecondsFormat;
use flotilla_api::{
    FieldError, Thing, ThingDetail, ThingExecution, ThingGroup, ThingGroupDetail, ThingGroupList,
    ThingList,
};

use super::{ApiError, ApiQuery};
use crate::app::AppState;
use crate::iot::{IotError, time};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/things", get(list_things))
        .route("/things/{thing_name}", get(thing_detail))
        .route("/thing-groups", get(list_groups))
        .route("/thing-groups/{group_name}", get(group_detail))
}

/// The most upstream pages one filtered listing reads before answering with what it found.
const MAX_UPSTREAM_PAGES: usize = 20;
const DEFAULT_LIMIT: i32 = 50;
const MAX_LIMIT: i32 = 250;

fn rfc3339(t: Option<&aws_sdk_iot::primitives::DateTime>) -> Option<String> {
    time(t).map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// `limit` from the query: 1–250, 50 when absent.
fn limit(query: &HashMap<String, String>) -> Result<i32, ApiError> {
    match query.get("limit") {
        None => Ok(DEFAULT_LIMIT),
        Some(text) => match text.parse::<i32>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            _ => Err(ApiError::field(
                "limit",
                format!("must be a whole number from 1 to {MAX_LIMIT}"),
            )),
        },
    }
}

/// The `attr.{key}={value}` filters of a query.
fn attribute_filters(
    query: &HashMap<String, String>,
) -> Result<BTreeMap<String, String>, ApiError> {
    let mut filters = BTreeMap::new();
    let mut errors = Vec::new();
    for (key, value) in query {
        if let Some(name) = key.strip_prefix("attr.") {
            if !(1..=128).contains(&name.len())
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.,@/:#-".contains(&b))
            {
                errors.push(FieldError {
                    field: key.clone(),
                    message: "an attribute name is 1-128 characters of [a-zA-Z0-9_.,@/:#-]".into(),
                });
            } else if value.len() > 800
                || !value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.,@/:#=[]- ".contains(&b))
            {
                errors.push(FieldError {
                    field: key.clone(),
                    message: "an attribute value is at most 800 characters of \
                              [a-zA-Z0-9_.,@/:#=[]- ]"
                        .into(),
                });
            } else {
                filters.insert(name.to_owned(), value.clone());
            }
        } else if !matches!(key.as_str(), "limit" | "next_token" | "name_prefix") {
            errors.push(FieldError {
                field: key.clone(),
                message: "unknown filter; use name_prefix, attr.{name}, limit or next_token".into(),
            });
        }
    }
    if errors.is_empty() {
        Ok(filters)
    } else {
        Err(ApiError::fields(errors))
    }
}

/// `GET /things`: ListThings with the first attribute filter applied by IoT and the name
/// prefix and any further attributes applied here, page by page.
#[utoipa::path(get, path = "/api/v1/things", tag = "fleet",
    params(("name_prefix" = Option<String>, Query, description = "Only names that start with this"),
        ("attr.{name}" = Option<String>, Query,
            description = "Only things whose attribute `name` has this value; repeatable with other names"),
        ("limit" = Option<i32>, Query, description = "1-250; 50 when absent"),
        ("next_token" = Option<String>, Query, description = "The previous page's `next_token`")),
    responses((status = 200, description = "A page of things", body = ThingList), ApiError))]
pub(super) async fn list_things(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<HashMap<String, String>>,
) -> Result<Json<ThingList>, ApiError> {
    let limit = limit(&query)?;
    let filters = attribute_filters(&query)?;
    let prefix = query.get("name_prefix").cloned().unwrap_or_default();
    let upstream_filter = filters.iter().next();
    let mut next_token = query.get("next_token").cloned().filter(|t| !t.is_empty());
    let mut things = Vec::new();
    for _ in 0..MAX_UPSTREAM_PAGES {
        // Ask for exactly what is missing, so that no matching thing is read and then
        // dropped for lack of room: the next page starts right after the last one read.
        let wanted = limit - things.len() as i32;
        let page = state
            .iot
            .sdk()
            .list_things()
            .max_results(wanted)
            .set_attribute_name(upstream_filter.map(|(k, _)| k.clone()))
            .set_attribute_value(upstream_filter.map(|(_, v)| v.clone()))
            .set_next_token(next_token.take())
            .send()
            .await
            .map_err(|error| match IotError::from_sdk(error) {
                IotError::Invalid(message) => ApiError::field("next_token", message),
                other => other.into(),
            })?;
        for thing in page.things.unwrap_or_default() {
            let name = thing.thing_name.unwrap_or_default();
            let attributes: BTreeMap<String, String> =
                thing.attributes.unwrap_or_default().into_iter().collect();
            let matches = name.starts_with(&prefix)
                && filters
                    .iter()
                    .all(|(k, v)| attributes.get(k).is_some_and(|a| a == v));
            if matches {
                things.push(Thing {
                    arn: thing.thing_arn.unwrap_or_default(),
                    name,
                    thing_type: thing.thing_type_name,
                    attributes,
                    version: thing.version,
                });
            }
        }
        next_token = page.next_token.filter(|t| !t.is_empty());
        if next_token.is_none() || things.len() as i32 >= limit {
            break;
        }
    }
    Ok(Json(ThingList { things, next_token }))
}

/// `GET /things/{name}`: DescribeThing, its groups and its job executions.
#[utoipa::path(get, path = "/api/v1/things/{thing_name}", tag = "fleet",
    params(("thing_name" = String, Path, description = "The thing")),
    responses((status = 200, description = "The thing", body = ThingDetail), ApiError))]
pub(super) async fn thing_detail(
    State(state): State<AppState>,
    Path(thing_name): Path<String>,
) -> Result<Json<ThingDetail>, ApiError> {
    let iot = state.iot.sdk();
    let described = iot
        .describe_thing()
        .thing_name(&thing_name)
        .send()
        .await
        .map_err(IotError::from_sdk)?;
    let mut groups = Vec::new();
    let mut pages = iot
        .list_thing_groups_for_thing()
        .thing_name(&thing_name)
        .max_results(250)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(IotError::from_sdk)?;
        groups.extend(
            page.thing_groups
                .unwrap_or_default()
                .into_iter()
                .filter_map(|g| g.group_name),
        );
    }
    let mut executions = Vec::new();
    let mut pages = iot
        .list_job_executions_for_thing()
        .thing_name(&thing_name)
        .max_results(250)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(IotError::from_sdk)?;
        for item in page.execution_summaries.unwrap_or_default() {
            let summary = item.job_execution_summary;
            executions.push(ThingExecution {
                job_id: item.job_id.unwrap_or_default(),
                status: summary
                    .as_ref()
                    .and_then(|s| s.status.as_ref())
                    .map_or("QUEUED", |s| s.as_str())
                    .to_owned(),
                execution_number: summary.as_ref().and_then(|s| s.execution_number),
                queued_at: rfc3339(summary.as_ref().and_then(|s| s.queued_at.as_ref())),
                started_at: rfc3339(summary.as_ref().and_then(|s| s.started_at.as_ref())),
                updated_at: rfc3339(summary.as_ref().and_then(|s| s.last_updated_at.as_ref())),
            });
        }
    }
    Ok(Json(ThingDetail {
        thing: Thing {
            name: described.thing_name.unwrap_or(thing_name),
            arn: described.thing_arn.unwrap_or_default(),
            thing_type: described.thing_type_name,
            attributes: described
                .attributes
                .unwrap_or_default()
                .into_iter()
                .collect(),
            version: described.version,
        },
        groups,
        executions,
    }))
}

/// How many things are directly in `group` (all pages of ListThingsInThingGroup).
async fn member_count(state: &AppState, group: &str) -> Result<i64, ApiError> {
    let mut count = 0;
    let mut pages = state
        .iot
        .sdk()
        .list_things_in_thing_group()
        .thing_group_name(group)
        .max_results(250)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        count += page
            .map_err(IotError::from_sdk)?
            .things
            .unwrap_or_default()
            .len() as i64;
    }
    Ok(count)
}

/// `GET /thing-groups`: a page of ListThingGroups, each with its member count.
#[utoipa::path(get, path = "/api/v1/thing-groups", tag = "fleet",
    params(("name_prefix" = Option<String>, Query, description = "Only names that start with this"), ("limit" = Option<i32>, Query, description = "1-250; 50 when absent"),
        ("next_token" = Option<String>, Query, description = "The previous page's `next_token`")),
    responses((status = 200, description = "A page of thing groups", body = ThingGroupList), ApiError))]
pub(super) async fn list_groups(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<HashMap<String, String>>,
) -> Result<Json<ThingGroupList>, ApiError> {
    let limit = limit(&query)?;
    if let Some(key) = query
        .keys()
        .find(|k| !matches!(k.as_str(), "limit" | "next_token" | "name_prefix"))
    {
        return Err(ApiError::field(
            key,
            "unknown filter; use name_prefix, limit or next_token",
        ));
    }
    // Checked here so that a bad prefix is not blamed on the page token by IoT's answer.
    if let Some(prefix) = query.get("name_prefix").filter(|p| !p.is_empty())
        && (prefix.len() > 128
            || !prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b":_-".contains(&b)))
    {
        return Err(ApiError::field(
            "name_prefix",
            "a group name prefix is at most 128 characters of [a-zA-Z0-9:_-]",
        ));
    }
    let page = state
        .iot
        .sdk()
        .list_thing_groups()
        .max_results(limit)
        .set_name_prefix_filter(query.get("name_prefix").cloned().filter(|p| !p.is_empty()))
        .set_next_token(query.get("next_token").cloned().filter(|t| !t.is_empty()))
        .send()
        .await
        .map_err(|error| match IotError::from_sdk(error) {
            IotError::Invalid(message) => ApiError::field("next_token", message),
            other => other.into(),
        })?;
    let mut groups = Vec::new();
    for group in page.thing_groups.unwrap_or_default() {
        let name = group.group_name.unwrap_or_default();
        groups.push(ThingGroup {
            member_count: member_count(&state, &name).await?,
            arn: group.group_arn.unwrap_or_default(),
            name,
        });
    }
    Ok(Json(ThingGroupList {
        groups,
        next_token: page.next_token.filter(|t| !t.is_empty()),
    }))
}

/// `GET /thing-groups/{name}`: DescribeThingGroup and a page of its members.
#[utoipa::path(get, path = "/api/v1/thing-groups/{group_name}", tag = "fleet",
    params(("group_name" = String, Path, description = "The thing group"), ("limit" = Option<i32>, Query, description = "1-250; 50 when absent"),
        ("next_token" = Option<String>, Query, description = "The previous page's `next_token`")),
    responses((status = 200, description = "The group and a page of its members", body = ThingGroupDetail), ApiError))]
pub(super) async fn group_detail(
    State(state): State<AppState>,
    Path(group_name): Path<String>,
    ApiQuery(query): ApiQuery<HashMap<String, String>>,
) -> Result<Json<ThingGroupDetail>, ApiError> {
    let limit = limit(&query)?;
    let described = state
        .iot
        .sdk()
        .describe_thing_group()
        .thing_group_name(&group_name)
        .send()
        .await
        .map_err(IotError::from_sdk)?;
    let members = state
        .iot
        .sdk()
        .list_things_in_thing_group()
        .thing_group_name(&group_name)
        .max_results(limit)
        .set_next_token(query.get("next_token").cloned().filter(|t| !t.is_empty()))
        .send()
        .await
        .map_err(|error| match IotError::from_sdk(error) {
            IotError::Invalid(message) => ApiError::field("next_token", message),
            other => other.into(),
        })?;
    let properties = described.thing_group_properties;
    Ok(Json(ThingGroupDetail {
        name: described.thing_group_name.unwrap_or(group_name),
        arn: described.thing_group_arn.unwrap_or_default(),
        description: properties
            .as_ref()
            .and_then(|p| p.thing_group_description.clone()),
        parent: described
            .thing_group_metadata
            .and_then(|m| m.parent_group_name),
        attributes: properties
            .and_then(|p| p.attribute_payload)
            .and_then(|a| a.attributes)
            .unwrap_or_default()
            .into_iter()
            .collect(),
        members: members.things.unwrap_or_default(),
        next_token: members.next_token.filter(|t| !t.is_empty()),
    }))
}
