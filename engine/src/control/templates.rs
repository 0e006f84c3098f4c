//! Job templates: CreateJobTemplate, DescribeJobTemplate, ListJobTemplates and
//! DeleteJobTemplate for the account's own templates; ListManagedJobTemplates and
//! DescribeManagedJobTemplate for the AWS managed ones.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use serde_json::{Map, Value, json};

use super::jobs::{QueryMap, max_results, next_token, page};
use super::{AwsError, ControlState, body, epoch};
use crate::jobs::PageToken;
use crate::jobs::templates::{
    JobTemplateRow, MANAGED_TEMPLATES, ManagedTemplate, NewJobTemplate, TEMPLATE_CONFIG_MEMBERS,
    managed_template,
};

pub(super) fn router() -> Router<ControlState> {
    Router::new()
        .route("/job-templates", get(list_job_templates))
        .route(
            "/job-templates/{job_template_id}",
            get(describe_job_template)
                .put(create_job_template)
                .delete(delete_job_template),
        )
        .route("/managed-job-templates", get(list_managed_job_templates))
        .route(
            "/managed-job-templates/{template_name}",
            get(describe_managed_job_template),
        )
}

async fn create_job_template(
    State(state): State<ControlState>,
    Path(job_template_id): Path<String>,
    bytes: Bytes,
) -> Result<Json<Value>, AwsError> {
    let Value::Object(mut request) = body::<Value>(&bytes)? else {
        return Err(AwsError::invalid("the request body must be a JSON object"));
    };
    let mut string = |name: &str| -> Result<Option<String>, AwsError> {
        match request.remove(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(AwsError::invalid(format!("{name} must be a string"))),
        }
    };
    let mut new = NewJobTemplate {
        job_template_id,
        job_arn: string("jobArn")?,
        description: string("description")?,
        document: string("document")?,
        document_source: string("documentSource")?,
        config: Map::new(),
    };
    for member in TEMPLATE_CONFIG_MEMBERS {
        if let Some(value) = request.remove(member).filter(|v| !v.is_null()) {
            new.config.insert(member.to_owned(), value);
        }
    }
    let template = state.jobs.create_job_template(new).await?;
    Ok(Json(json!({
        "jobTemplateArn": state.jobs.arns.job_template(&template.job_template_id),
        "jobTemplateId": template.job_template_id,
    })))
}

async fn describe_job_template(
    State(state): State<ControlState>,
    Path(job_template_id): Path<String>,
) -> Result<Json<Value>, AwsError> {
    let template = state.jobs.job_template(&job_template_id).await?;
    let mut output = summary(&state, &template);
    if let Some(document) = &template.document {
        output["document"] = json!(document);
    }
    if let Some(source) = &template.document_source {
        output["documentSource"] = json!(source);
    }
    for member in TEMPLATE_CONFIG_MEMBERS {
        if let Some(value) = template.config.get(member) {
            output[member] = value.clone();
        }
    }
    Ok(Json(output))
}

/// ListJobTemplates, newest first.
async fn list_job_templates(
    State(state): State<ControlState>,
    Query(query): Query<QueryMap>,
) -> Result<Json<Value>, AwsError> {
    let limit = max_results(&query)?;
    let after = next_token(&query)?;
    let mut rows = state
        .jobs
        .list_job_templates(limit + 1, after.as_ref())
        .await?;
    let next = page(&mut rows, limit, |t: &JobTemplateRow| PageToken {
        at: t.created_at,
        id: t.job_template_id.clone(),
    });
    let templates: Vec<Value> = rows.iter().map(|t| summary(&state, t)).collect();
    let mut output = json!({ "jobTemplates": templates });
    if let Some(token) = next {
        output["nextToken"] = json!(token);
    }
    Ok(Json(output))
}

/// DeleteJobTemplate has no output.
async fn delete_job_template(
    State(state): State<ControlState>,
    Path(job_template_id): Path<String>,
) -> Result<(), AwsError> {
    state.jobs.delete_job_template(&job_template_id).await?;
    Ok(())
}

/// AWS's `JobTemplateSummary`, also the head of DescribeJobTemplate's output.
fn summary(state: &ControlState, template: &JobTemplateRow) -> Value {
    json!({
        "jobTemplateArn": state.jobs.arns.job_template(&template.job_template_id),
        "jobTemplateId": template.job_template_id,
        "description": template.description,
        "createdAt": epoch(template.created_at),
    })
}

/// ListManagedJobTemplates. There are few enough to fit one page of any size but the
/// smallest, so `nextToken` is the index of the next template.
async fn list_managed_job_templates(
    State(state): State<ControlState>,
    Query(query): Query<QueryMap>,
) -> Result<Json<Value>, AwsError> {
    let limit = max_results(&query)? as usize;
    let start = match query.get("nextToken") {
        None => 0,
        Some(token) => token
            .parse::<usize>()
            .ok()
            .filter(|i| *i < MANAGED_TEMPLATES.len())
            .ok_or_else(|| AwsError::invalid("nextToken is not a token this API returned"))?,
    };
    let name = query.get("templateName");
    let matching: Vec<&ManagedTemplate> = MANAGED_TEMPLATES
        .iter()
        .skip(start)
        .filter(|t| name.is_none_or(|name| t.name == name.as_str()))
        .collect();
    let templates: Vec<Value> = matching
        .iter()
        .take(limit)
        .map(|t| {
            json!({
                "templateArn": state.jobs.managed_template_arn(t),
                "templateName": t.name,
                "description": t.description,
                "environments": t.environments,
                "templateVersion": t.version,
            })
        })
        .collect();
    let mut output = json!({ "managedJobTemplates": templates });
    if let Some(next) = matching.get(limit) {
        let index = MANAGED_TEMPLATES
            .iter()
            .position(|t| std::ptr::eq(t, *next))
            .expect("a managed template is in the list");
        output["nextToken"] = json!(index.to_string());
    }
    Ok(Json(output))
}

async fn describe_managed_job_template(
    State(state): State<ControlState>,
    Path(template_name): Path<String>,
    Query(query): Query<QueryMap>,
) -> Result<Json<Value>, AwsError> {
    let version = query.get("templateVersion").map(String::as_str);
    let template = managed_template(&template_name, version).ok_or_else(|| {
        AwsError::from(crate::jobs::ServiceError::not_found(format!(
            "no managed job template {template_name}{}",
            version.map(|v| format!(" version {v}")).unwrap_or_default()
        )))
    })?;
    let parameters: Vec<Value> = template
        .parameters
        .iter()
        .map(|p| {
            json!({
                "key": p.key,
                "description": p.description,
                "regex": p.regex,
                "example": p.example,
                "optional": p.optional,
            })
        })
        .collect();
    Ok(Json(json!({
        "templateName": template.name,
        "templateArn": state.jobs.managed_template_arn(template),
        "description": template.description,
        "templateVersion": template.version,
        "environments": template.environments,
        "documentParameters": parameters,
        "document": template.document,
    })))
}
