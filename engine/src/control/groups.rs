//! Static thing groups: CreateThingGroup, DescribeThingGroup, ListThingGroups,
//! UpdateThingGroup, DeleteThingGroup, AddThingToThingGroup, RemoveThingFromThingGroup and
//! ListThingsInThingGroup; dynamic groups: CreateDynamicThingGroup, UpdateDynamicThingGroup and
//! DeleteDynamicThingGroup, whose queries the engine evaluates ([`crate::query`]).

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post, put};
use serde::Deserialize;
use serde_json::{Value, json};

use super::jobs::{QueryMap, max_results, query_bool, query_long};
use super::things::AttributePayload;
use super::{AwsError, ControlState, after_name, body, epoch, name_page};
use crate::jobs::{
    DynamicGroupUpdate, GroupScope, GroupUpdate, NewDynamicThingGroup, NewThingGroup,
};
use crate::model::Target;

pub(super) fn router() -> Router<ControlState> {
    Router::new()
        .route("/thing-groups", get(list_thing_groups))
        .route(
            "/thing-groups/addThingToThingGroup",
            put(add_thing_to_thing_group),
        )
        .route(
            "/thing-groups/removeThingFromThingGroup",
            put(remove_thing_from_thing_group),
        )
        .route(
            "/thing-groups/{thing_group_name}",
            post(create_thing_group)
                .get(describe_thing_group)
                .patch(update_thing_group)
                .delete(delete_thing_group),
        )
        .route(
            "/thing-groups/{thing_group_name}/things",
            get(list_things_in_thing_group),
        )
        .route(
            "/dynamic-thing-groups/{thing_group_name}",
            post(create_dynamic_thing_group)
                .patch(update_dynamic_thing_group)
                .delete(delete_dynamic_thing_group),
        )
}

/// AWS's `ThingGroupProperties`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ThingGroupProperties {
    thing_group_description: Option<String>,
    attribute_payload: Option<AttributePayload>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateThingGroupRequest {
    parent_group_name: Option<String>,
    #[serde(default)]
    thing_group_properties: ThingGroupProperties,
}

/// A list of AWS's `GroupNameAndArn` with the next page's token.
pub(super) fn group_list(state: &ControlState, names: &[String], next: Option<String>) -> Value {
    let groups: Vec<Value> = names
        .iter()
        .map(|name| json!({ "groupName": name, "groupArn": state.jobs.arns.thing_group(name) }))
        .collect();
    let mut output = json!({ "thingGroups": groups });
    if let Some(token) = next {
        output["nextToken"] = json!(token);
    }
    output
}

/// Tags are accepted and ignored: the engine has no tagging API to read them back.
async fn create_thing_group(
    State(state): State<ControlState>,
    Path(name): Path<String>,
    bytes: Bytes,
) -> Result<Json<Value>, AwsError> {
    let request: CreateThingGroupRequest = body(&bytes)?;
    let properties = request.thing_group_properties;
    let group = state
        .jobs
        .create_thing_group(NewThingGroup {
            name,
            parent: request.parent_group_name,
            description: properties.thing_group_description,
            attributes: properties
                .attribute_payload
                .map(|p| p.attributes)
                .unwrap_or_default(),
        })
        .await?;
    Ok(Json(json!({
        "thingGroupName": group.group_name,
        "thingGroupArn": state.jobs.arns.thing_group(&group.group_name),
        "thingGroupId": group.group_id.to_string(),
    })))
}

async fn describe_thing_group(
    State(state): State<ControlState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, AwsError> {
    let group = state.jobs.thing_group(&name).await?;
    let ancestors = state.jobs.ancestors(&name).await?;
    let root_to_parent: Vec<Value> = ancestors
        .iter()
        .map(|a| json!({ "groupName": a, "groupArn": state.jobs.arns.thing_group(a) }))
        .collect();
    let mut properties = json!({ "attributePayload": { "attributes": group.attributes } });
    if let Some(description) = &group.description {
        properties["thingGroupDescription"] = json!(description);
    }
    let mut metadata = json!({
        "rootToParentThingGroups": root_to_parent,
        "creationDate": epoch(group.created_at),
    });
    if let Some(parent) = &group.parent_name {
        metadata["parentGroupName"] = json!(parent);
    }
    let mut output = json!({
        "thingGroupName": group.group_name,
        "thingGroupId": group.group_id.to_string(),
        "thingGroupArn": state.jobs.arns.thing_group(&group.group_name),
        "version": group.version,
        "thingGroupProperties": properties,
        "thingGroupMetadata": metadata,
    });
    if let Some(query) = &group.query_string {
        // The engine evaluates a query as it is stored, so a dynamic group is always ACTIVE.
        output["queryString"] = json!(query);
        output["indexName"] = json!(group.index_name);
        output["queryVersion"] = json!(group.query_version);
        output["status"] = json!("ACTIVE");
    }
    Ok(Json(output))
}

/// ListThingGroups in name order. Without `parentGroup`, every group is listed, or only the
/// root groups when `recursive` is false; with it, its children, or all its descendants when
/// `recursive` is true.
async fn list_thing_groups(
    State(state): State<ControlState>,
    Query(query): Query<QueryMap>,
) -> Result<Json<Value>, AwsError> {
    let limit = max_results(&query)?;
    let after = after_name(query.get("nextToken"))?;
    let recursive = query_bool(&query, "recursive")?;
    let parent = query.get("parentGroup").map(String::as_str);
    let scope = match (parent, recursive) {
        (None, Some(false)) => GroupScope::Roots,
        (None, _) => GroupScope::All,
        (Some(_), Some(true)) => GroupScope::Descendants,
        (Some(_), _) => GroupScope::Children,
    };
    let mut rows = state
        .jobs
        .list_thing_groups(
            parent,
            scope,
            query.get("namePrefixFilter").map(String::as_str),
            limit + 1,
            after.as_deref(),
        )
        .await?;
    let next = name_page(&mut rows, limit, |group| &group.group_name);
    let names: Vec<String> = rows.into_iter().map(|g| g.group_name).collect();
    Ok(Json(group_list(&state, &names, next)))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateThingGroupRequest {
    #[serde(default)]
    thing_group_properties: ThingGroupProperties,
    expected_version: Option<i64>,
}

async fn update_thing_group(
    State(state): State<ControlState>,
    Path(name): Path<String>,
    bytes: Bytes,
) -> Result<Json<Value>, AwsError> {
    let request: UpdateThingGroupRequest = body(&bytes)?;
    let properties = request.thing_group_properties;
    let (attributes, merge) = match properties.attribute_payload {
        Some(payload) => (Some(payload.attributes), payload.merge),
        None => (None, false),
    };
    let version = state
        .jobs
        .update_thing_group(
            &name,
            GroupUpdate {
                description: properties.thing_group_description,
                attributes,
                merge,
                expected_version: request.expected_version,
            },
        )
        .await?;
    Ok(Json(json!({ "version": version })))
}

/// DeleteThingGroup has an empty output.
async fn delete_thing_group(
    State(state): State<ControlState>,
    Path(name): Path<String>,
    Query(query): Query<QueryMap>,
) -> Result<Json<Value>, AwsError> {
    let expected_version = query_long(&query, "expectedVersion")?;
    state
        .jobs
        .delete_thing_group(&name, expected_version)
        .await?;
    Ok(Json(json!({})))
}

/// The body of AddThingToThingGroup and RemoveThingFromThingGroup: each of the group and the
/// thing by name or by ARN. `overrideDynamicGroups` is ignored: it concerns AWS's limit on
/// the groups a thing is in, which the engine does not enforce.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MembershipRequest {
    thing_group_name: Option<String>,
    thing_group_arn: Option<String>,
    thing_name: Option<String>,
    thing_arn: Option<String>,
}

impl MembershipRequest {
    /// The (group, thing) names the request identifies.
    fn names(self, state: &ControlState) -> Result<(String, String), AwsError> {
        let arns = &state.jobs.arns;
        let group = pick_name(
            "thingGroupName",
            self.thing_group_name,
            self.thing_group_arn,
            |arn| match arns.parse_target(arn) {
                Some(Target::ThingGroup(name)) => Some(name),
                _ => None,
            },
        )?;
        let thing = pick_name(
            "thingName",
            self.thing_name,
            self.thing_arn,
            |arn| match arns.parse_target(arn) {
                Some(Target::Thing(name)) => Some(name),
                _ => None,
            },
        )?;
        Ok((group, thing))
    }
}

/// A name given directly or through an ARN (both may be given if they agree).
fn pick_name(
    member: &str,
    name: Option<String>,
    arn: Option<String>,
    parse: impl Fn(&str) -> Option<String>,
) -> Result<String, AwsError> {
    let from_arn = arn
        .map(|arn| {
            parse(&arn).ok_or_else(|| {
                AwsError::invalid(format!(
                    "{arn:?} is not an ARN of this account and region for {member}"
                ))
            })
        })
        .transpose()?;
    match (name, from_arn) {
        (Some(name), Some(from_arn)) if name != from_arn => Err(AwsError::invalid(format!(
            "{member} and its ARN name different resources"
        ))),
        (Some(name), _) | (None, Some(name)) => Ok(name),
        (None, None) => Err(AwsError::invalid(format!(
            "{member} or its ARN is required"
        ))),
    }
}

/// AddThingToThingGroup has an empty output.
async fn add_thing_to_thing_group(
    State(state): State<ControlState>,
    bytes: Bytes,
) -> Result<Json<Value>, AwsError> {
    let (group, thing) = body::<MembershipRequest>(&bytes)?.names(&state)?;
    state.jobs.add_thing_to_group(&group, &thing).await?;
    Ok(Json(json!({})))
}

/// RemoveThingFromThingGroup has an empty output.
async fn remove_thing_from_thing_group(
    State(state): State<ControlState>,
    bytes: Bytes,
) -> Result<Json<Value>, AwsError> {
    let (group, thing) = body::<MembershipRequest>(&bytes)?.names(&state)?;
    state.jobs.remove_thing_from_group(&group, &thing).await?;
    Ok(Json(json!({})))
}

/// ListThingsInThingGroup in name order.
async fn list_things_in_thing_group(
    State(state): State<ControlState>,
    Path(name): Path<String>,
    Query(query): Query<QueryMap>,
) -> Result<Json<Value>, AwsError> {
    let limit = max_results(&query)?;
    let after = after_name(query.get("nextToken"))?;
    let recursive = query_bool(&query, "recursive")?.unwrap_or(false);
    let mut things = state
        .jobs
        .things_in_group(&name, recursive, limit + 1, after.as_deref())
        .await?;
    let next = name_page(&mut things, limit, String::as_str);
    let mut output = json!({ "things": things });
    if let Some(token) = next {
        output["nextToken"] = json!(token);
    }
    Ok(Json(output))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateDynamicThingGroupRequest {
    #[serde(default)]
    thing_group_properties: ThingGroupProperties,
    index_name: Option<String>,
    query_string: Option<String>,
    query_version: Option<String>,
}

/// Tags are accepted and ignored, as for static groups.
async fn create_dynamic_thing_group(
    State(state): State<ControlState>,
    Path(name): Path<String>,
    bytes: Bytes,
) -> Result<Json<Value>, AwsError> {
    let request: CreateDynamicThingGroupRequest = body(&bytes)?;
    let Some(query_string) = request.query_string else {
        return Err(AwsError::invalid("queryString is required"));
    };
    let properties = request.thing_group_properties;
    let group = state
        .jobs
        .create_dynamic_thing_group(NewDynamicThingGroup {
            name,
            description: properties.thing_group_description,
            attributes: properties
                .attribute_payload
                .map(|p| p.attributes)
                .unwrap_or_default(),
            query_string,
            index_name: request.index_name,
            query_version: request.query_version,
        })
        .await?;
    Ok(Json(json!({
        "thingGroupName": group.group_name,
        "thingGroupArn": state.jobs.arns.thing_group(&group.group_name),
        "thingGroupId": group.group_id.to_string(),
        "indexName": group.index_name,
        "queryString": group.query_string,
        "queryVersion": group.query_version,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateDynamicThingGroupRequest {
    thing_group_properties: Option<ThingGroupProperties>,
    expected_version: Option<i64>,
    index_name: Option<String>,
    query_string: Option<String>,
    query_version: Option<String>,
}

async fn update_dynamic_thing_group(
    State(state): State<ControlState>,
    Path(name): Path<String>,
    bytes: Bytes,
) -> Result<Json<Value>, AwsError> {
    let request: UpdateDynamicThingGroupRequest = body(&bytes)?;
    let Some(properties) = request.thing_group_properties else {
        return Err(AwsError::invalid("thingGroupProperties is required"));
    };
    let (attributes, merge) = match properties.attribute_payload {
        Some(payload) => (Some(payload.attributes), payload.merge),
        None => (None, false),
    };
    let version = state
        .jobs
        .update_dynamic_thing_group(
            &name,
            DynamicGroupUpdate {
                description: properties.thing_group_description,
                attributes,
                merge,
                expected_version: request.expected_version,
                query_string: request.query_string,
                index_name: request.index_name,
                query_version: request.query_version,
            },
        )
        .await?;
    Ok(Json(json!({ "version": version })))
}

/// DeleteDynamicThingGroup has an empty output.
async fn delete_dynamic_thing_group(
    State(state): State<ControlState>,
    Path(name): Path<String>,
    Query(query): Query<QueryMap>,
) -> Result<Json<Value>, AwsError> {
    let expected_version = query_long(&query, "expectedVersion")?;
    state
        .jobs
        .delete_dynamic_thing_group(&name, expected_version)
        .await?;
    Ok(Json(json!({})))
}
