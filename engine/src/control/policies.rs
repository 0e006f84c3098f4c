//! IoT policies: CreatePolicy, GetPolicy, DeletePolicy, AttachPolicy, DetachPolicy and
//! ListAttachedPolicies, on the paths and members of the AWS model. Targets are certificate
//! ARNs (the engine has no Cognito identities or thing-group policies).

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::routing::{post, put};
use serde::Deserialize;
use serde_json::{Value, json};

use super::jobs::{QueryMap, query_bool, query_long};
use super::{AwsError, ControlState, body, epoch};

pub(super) fn router() -> Router<ControlState> {
    Router::new()
        .route(
            "/policies/{policy_name}",
            post(create_policy).get(get_policy).delete(delete_policy),
        )
        .route(
            "/target-policies/{policy_name}",
            put(attach_policy).post(detach_policy),
        )
        .route("/attached-policies/{target}", post(list_attached_policies))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreatePolicyRequest {
    policy_document: Option<String>,
}

async fn create_policy(
    State(state): State<ControlState>,
    Path(policy_name): Path<String>,
    bytes: Bytes,
) -> Result<Json<Value>, AwsError> {
    let request: CreatePolicyRequest = body(&bytes)?;
    let document = request
        .policy_document
        .ok_or_else(|| AwsError::invalid("policyDocument is required"))?;
    let policy = state.policies.create(&policy_name, &document).await?;
    Ok(Json(json!({
        "policyName": policy.policy_name,
        "policyArn": state.policies.arn(&policy.policy_name),
        "policyDocument": policy.policy_document,
        "policyVersionId": "1",
    })))
}

async fn get_policy(
    State(state): State<ControlState>,
    Path(policy_name): Path<String>,
) -> Result<Json<Value>, AwsError> {
    let policy = state.policies.get(&policy_name).await?;
    Ok(Json(json!({
        "policyName": policy.policy_name,
        "policyArn": state.policies.arn(&policy.policy_name),
        "policyDocument": policy.policy_document,
        "defaultVersionId": "1",
        "creationDate": epoch(policy.created_at),
        "lastModifiedDate": epoch(policy.last_modified_at),
        "generationId": policy.generation_id.to_string(),
    })))
}

/// DeletePolicy has an empty output.
async fn delete_policy(
    State(state): State<ControlState>,
    Path(policy_name): Path<String>,
) -> Result<Json<Value>, AwsError> {
    state.policies.delete(&policy_name).await?;
    Ok(Json(json!({})))
}

#[derive(Debug, Deserialize)]
struct TargetRequest {
    target: Option<String>,
}

fn target(bytes: &Bytes) -> Result<String, AwsError> {
    let request: TargetRequest = body(bytes)?;
    request
        .target
        .filter(|t| !t.is_empty())
        .ok_or_else(|| AwsError::invalid("target is required"))
}

/// AttachPolicy has an empty output.
async fn attach_policy(
    State(state): State<ControlState>,
    Path(policy_name): Path<String>,
    bytes: Bytes,
) -> Result<Json<Value>, AwsError> {
    let target = target(&bytes)?;
    state.policies.attach(&policy_name, &target).await?;
    Ok(Json(json!({})))
}

/// DetachPolicy has an empty output.
async fn detach_policy(
    State(state): State<ControlState>,
    Path(policy_name): Path<String>,
    bytes: Bytes,
) -> Result<Json<Value>, AwsError> {
    let target = target(&bytes)?;
    state.policies.detach(&policy_name, &target).await?;
    Ok(Json(json!({})))
}

/// ListAttachedPolicies: `pageSize` (1–250, default 25) and `marker` (the last name of the
/// previous page); `recursive` changes nothing for a certificate.
async fn list_attached_policies(
    State(state): State<ControlState>,
    Path(target): Path<String>,
    Query(query): Query<QueryMap>,
) -> Result<Json<Value>, AwsError> {
    query_bool(&query, "recursive")?;
    let page_size = query_long(&query, "pageSize")?.unwrap_or(25);
    if !(1..=250).contains(&page_size) {
        return Err(AwsError::invalid(format!(
            "pageSize must be between 1 and 250, got {page_size}"
        )));
    }
    let mut names = state
        .policies
        .attached(
            &target,
            page_size + 1,
            query.get("marker").map(String::as_str),
        )
        .await?;
    let next = if names.len() as i64 > page_size {
        names.truncate(page_size as usize);
        names.last().cloned()
    } else {
        None
    };
    let policies: Vec<Value> = names
        .iter()
        .map(|name| json!({ "policyName": name, "policyArn": state.policies.arn(name) }))
        .collect();
    let mut output = json!({ "policies": policies });
    if let Some(marker) = next {
        output["nextMarker"] = json!(marker);
    }
    Ok(Json(output))
}
