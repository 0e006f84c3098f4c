//! Things: CreateThing, DescribeThing, ListThings, UpdateThing, DeleteThing and
//! ListThingGroupsForThing.

use std::collections::HashMap;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::jobs::{QueryMap, max_results, query_bool, query_long};
use super::{AwsError, ControlState, after_name, body, name_page};
use crate::jobs::{ServiceError, ThingFilter, ThingRow, ThingUpdate};

pub(super) fn router() -> Router<ControlState> {
    Router::new()
        .route("/things", get(list_things))
        .route(
            "/things/{thing_name}",
            post(create_thing)
                .get(describe_thing)
                .patch(update_thing)
                .delete(delete_thing),
        )
        .route(
            "/things/{thing_name}/thing-groups",
            get(list_thing_groups_for_thing),
        )
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateThingRequest {
    thing_type_name: Option<String>,
    attribute_payload: Option<AttributePayload>,
    billing_group_name: Option<String>,
}

/// AWS's `AttributePayload`; `merge` only means something to the update operations.
#[derive(Debug, Default, Deserialize)]
pub(super) struct AttributePayload {
    #[serde(default)]
    pub attributes: HashMap<String, String>,
    #[serde(default)]
    pub merge: bool,
}

async fn create_thing(
    State(state): State<ControlState>,
    Path(thing_name): Path<String>,
    bytes: Bytes,
) -> Result<Json<Value>, AwsError> {
    let request: CreateThingRequest = body(&bytes)?;
    if request.billing_group_name.is_some() {
        return Err(AwsError::invalid(
            "billing groups are not supported by the embedded engine",
        ));
    }
    let attributes = request
        .attribute_payload
        .map(|p| p.attributes)
        .unwrap_or_default();
    let thing = state
        .jobs
        .create_thing(&thing_name, request.thing_type_name, attributes)
        .await?;
    Ok(Json(json!({
        "thingName": thing.thing_name,
        "thingArn": state.jobs.arns.thing(&thing.thing_name),
        "thingId": thing.thing_id.to_string(),
    })))
}

async fn describe_thing(
    State(state): State<ControlState>,
    Path(thing_name): Path<String>,
) -> Result<Json<Value>, AwsError> {
    let thing: ThingRow = state
        .jobs
        .thing(&thing_name)
        .await?
        .ok_or_else(|| ServiceError::not_found(format!("Thing {thing_name} not found")))?;
    Ok(Json(json!({
        "defaultClientId": thing.thing_name,
        "thingName": thing.thing_name,
        "thingId": thing.thing_id.to_string(),
        "thingArn": state.jobs.arns.thing(&thing.thing_name),
        "thingTypeName": thing.thing_type_name,
        "attributes": thing.attributes,
        "version": thing.version,
    })))
}

/// ListThings in name order.
async fn list_things(
    State(state): State<ControlState>,
    Query(query): Query<QueryMap>,
) -> Result<Json<Value>, AwsError> {
    let limit = max_results(&query)?;
    let after = after_name(query.get("nextToken"))?;
    let filter = ThingFilter {
        attribute_name: query.get("attributeName").cloned(),
        attribute_value: query.get("attributeValue").cloned(),
        prefix: query_bool(&query, "usePrefixAttributeValue")?.unwrap_or(false),
        thing_type_name: query.get("thingTypeName").cloned(),
    };
    let mut rows = state
        .jobs
        .list_things(&filter, limit + 1, after.as_deref())
        .await?;
    let next = name_page(&mut rows, limit, |thing| &thing.thing_name);
    let things: Vec<Value> = rows
        .iter()
        .map(|thing| {
            json!({
                "thingName": thing.thing_name,
                "thingTypeName": thing.thing_type_name,
                "thingArn": state.jobs.arns.thing(&thing.thing_name),
                "attributes": thing.attributes,
                "version": thing.version,
            })
        })
        .collect();
    let mut output = json!({ "things": things });
    if let Some(token) = next {
        output["nextToken"] = json!(token);
    }
    Ok(Json(output))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateThingRequest {
    thing_type_name: Option<String>,
    attribute_payload: Option<AttributePayload>,
    expected_version: Option<i64>,
    #[serde(default)]
    remove_thing_type: bool,
}

/// UpdateThing has an empty output.
async fn update_thing(
    State(state): State<ControlState>,
    Path(thing_name): Path<String>,
    bytes: Bytes,
) -> Result<Json<Value>, AwsError> {
    let request: UpdateThingRequest = body(&bytes)?;
    let (attributes, merge) = match request.attribute_payload {
        Some(payload) => (Some(payload.attributes), payload.merge),
        None => (None, false),
    };
    state
        .jobs
        .update_thing(
            &thing_name,
            ThingUpdate {
                thing_type_name: request.thing_type_name,
                remove_thing_type: request.remove_thing_type,
                attributes,
                merge,
                expected_version: request.expected_version,
            },
        )
        .await?;
    Ok(Json(json!({})))
}

/// DeleteThing has an empty output.
async fn delete_thing(
    State(state): State<ControlState>,
    Path(thing_name): Path<String>,
    Query(query): Query<QueryMap>,
) -> Result<Json<Value>, AwsError> {
    let expected_version = query_long(&query, "expectedVersion")?;
    state
        .jobs
        .delete_thing(&thing_name, expected_version)
        .await?;
    Ok(Json(json!({})))
}

/// ListThingGroupsForThing: the groups the thing is directly in, in name order.
async fn list_thing_groups_for_thing(
    State(state): State<ControlState>,
    Path(thing_name): Path<String>,
    Query(query): Query<QueryMap>,
) -> Result<Json<Value>, AwsError> {
    let limit = max_results(&query)?;
    let after = after_name(query.get("nextToken"))?;
    let mut names = state
        .jobs
        .groups_for_thing(&thing_name, limit + 1, after.as_deref())
        .await?;
    let next = name_page(&mut names, limit, String::as_str);
    Ok(Json(super::groups::group_list(&state, &names, next)))
}
