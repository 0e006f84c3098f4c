//! Things: CreateThing and DescribeThing.

use std::collections::HashMap;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::post;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AwsError, ControlState, body};
use crate::jobs::{ServiceError, ThingRow};

pub(super) fn router() -> Router<ControlState> {
    Router::new().route(
        "/things/{thing_name}",
        post(create_thing).get(describe_thing),
    )
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateThingRequest {
    thing_type_name: Option<String>,
    attribute_payload: Option<AttributePayload>,
    billing_group_name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct AttributePayload {
    #[serde(default)]
    attributes: HashMap<String, String>,
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
