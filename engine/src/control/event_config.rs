//! The account's event configuration: DescribeEventConfigurations and
//! UpdateEventConfigurations (which `$aws/events/…` types the engine publishes).

use std::collections::HashMap;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{AwsError, ControlState, body, epoch};

pub(super) fn router() -> Router<ControlState> {
    Router::new().route(
        "/event-configurations",
        get(describe_event_configurations).patch(update_event_configurations),
    )
}

async fn describe_event_configurations(
    State(state): State<ControlState>,
) -> Result<Json<Value>, AwsError> {
    let configurations = state.jobs.event_configurations().await?;
    let enabled: Map<String, Value> = configurations
        .enabled
        .iter()
        .map(|(event_type, on)| ((*event_type).to_owned(), json!({ "Enabled": on })))
        .collect();
    let mut output = json!({ "eventConfigurations": enabled });
    if let Some(at) = configurations.last_modified {
        output["lastModifiedDate"] = json!(epoch(at));
    }
    Ok(Json(output))
}

/// AWS's `Configuration`.
#[derive(Debug, Deserialize)]
struct Configuration {
    #[serde(rename = "Enabled", default)]
    enabled: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateEventConfigurationsRequest {
    #[serde(default)]
    event_configurations: HashMap<String, Configuration>,
}

/// UpdateEventConfigurations has an empty output.
async fn update_event_configurations(
    State(state): State<ControlState>,
    bytes: Bytes,
) -> Result<Json<Value>, AwsError> {
    let request: UpdateEventConfigurationsRequest = body(&bytes)?;
    let changes: Vec<(String, bool)> = request
        .event_configurations
        .into_iter()
        .map(|(event_type, configuration)| (event_type, configuration.enabled))
        .collect();
    state.jobs.update_event_configurations(&changes).await?;
    Ok(Json(json!({})))
}
