//! `/api/v1/templates`: the server's job templates in PostgreSQL — versioned (every update is
//! a new version), with typed parameters that are validated before a document is rendered —
//! plus importing the AWS managed templates (ListManagedJobTemplates and
//! DescribeManagedJobTemplate) and, optionally, syncing a version to AWS (CreateJobTemplate).

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, SecondsFormat, Utc};
use flotilla_api::{
    FieldError, ImportedTemplates, PreviewTemplate, RenderedTemplate, SaveTemplate, Template,
    TemplateList, TemplateParameter,
};
use regex::Regex;
use serde_json::Value;
use sqlx::PgPool;

use super::job_options::Problems;
use super::{ApiError, ApiJson, ApiQuery, MAX_DOCUMENT_BYTES, valid_id};
use crate::app::AppState;
use crate::iot::IotError;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/templates", get(list).post(create))
        .route("/templates/import-managed", post(import_managed))
        .route(
            "/templates/{template_id}",
            get(read).put(update).delete(delete),
        )
        .route("/templates/{template_id}/versions", get(versions))
        .route("/templates/{template_id}/preview", post(preview))
        .route("/templates/{template_id}/sync", post(sync))
}

const PLACEHOLDER_PREFIX: &str = "${aws:iot:parameter:";

#[derive(sqlx::FromRow)]
struct VersionRow {
    template_id: String,
    version: i32,
    latest_version: i32,
    description: Option<String>,
    document: Value,
    parameters: Value,
    source: String,
    created_at: DateTime<Utc>,
    aws_job_template_id: Option<String>,
}

impl VersionRow {
    fn into_template(self) -> Template {
        Template {
            template_id: self.template_id,
            version: self.version,
            latest_version: self.latest_version,
            description: self.description,
            document: self.document,
            // Stored only after validation, so they decode.
            parameters: serde_json::from_value(self.parameters).unwrap_or_default(),
            source: self.source,
            created_at: self.created_at.to_rfc3339_opts(SecondsFormat::Millis, true),
            aws_job_template_id: self.aws_job_template_id,
        }
    }
}

const SELECT_VERSION: &str = "select t.template_id, v.version, t.latest_version, v.description,
        v.document, v.parameters, t.source, v.created_at, v.aws_job_template_id
     from server.job_templates t
     join server.job_template_versions v on v.template_id = t.template_id";

/// Version `version` of a template (the latest when `None`).
pub(crate) async fn load(
    pool: &PgPool,
    template_id: &str,
    version: Option<i32>,
) -> Result<Template, ApiError> {
    let row: Option<VersionRow> = sqlx::query_as(&format!(
        "{SELECT_VERSION} where t.template_id = $1 and v.version = coalesce($2, t.latest_version)"
    ))
    .bind(template_id)
    .bind(version)
    .fetch_optional(pool)
    .await?;
    row.map(VersionRow::into_template)
        .ok_or_else(|| match version {
            Some(v) => ApiError::NotFound(format!("template {template_id:?} has no version {v}")),
            None => ApiError::NotFound(format!("no template {template_id:?}")),
        })
}

/// Checks a template's parameter definitions and its document (an object, within the size
/// limit, whose placeholders all name a parameter).
fn check_template(request: &SaveTemplate, problems: &mut Problems) {
    if let Some(description) = &request.description
        && description.chars().count() > 2028
    {
        problems.add("description", "must be at most 2028 characters");
    }
    let mut names = Vec::new();
    for (i, parameter) in request.parameters.iter().enumerate() {
        let field = |name: &str| format!("parameters[{i}].{name}");
        if !valid_id(&parameter.name) {
            problems.add(
                field("name"),
                "must be 1-64 of letters, digits, '-' and '_'",
            );
        }
        if names.contains(&parameter.name.as_str()) {
            problems.add(
                field("name"),
                format!("{:?} is defined twice", parameter.name),
            );
        }
        names.push(&parameter.name);
        match parameter.kind.as_str() {
            "string" => {
                if let Some(pattern) = &parameter.pattern
                    && let Err(error) = Regex::new(&format!("^(?:{pattern})$"))
                {
                    problems.add(
                        field("pattern"),
                        format!("not a regular expression: {error}"),
                    );
                }
            }
            "int" => {
                if parameter.pattern.is_some() {
                    problems.add(field("pattern"), "only string parameters have a pattern");
                }
            }
            "enum" => {
                if parameter.values.is_empty() {
                    problems.add(field("values"), "an enum parameter lists its values");
                }
            }
            _ => problems.add(field("type"), "must be string, int or enum"),
        }
        if parameter.kind != "enum" && !parameter.values.is_empty() {
            problems.add(field("values"), "only enum parameters list values");
        }
        if let (Some(min), Some(max)) = (parameter.min, parameter.max)
            && min > max
        {
            problems.add(field("min"), "must not exceed max");
        }
        if let Some(default) = &parameter.default
            && let Err(message) = check_value(parameter, default)
        {
            problems.add(field("default"), message);
        }
    }
    match &request.document {
        Value::Object(_) => {
            let text = request.document.to_string();
            if text.len() > MAX_DOCUMENT_BYTES {
                problems.add(
                    "document",
                    format!("must be at most {MAX_DOCUMENT_BYTES} bytes"),
                );
            }
            super::check_object_keys(&text, "document", problems);
            for name in placeholders(&text) {
                if !request.parameters.iter().any(|p| p.name == name) {
                    problems.add(
                        "document",
                        format!("the placeholder {PLACEHOLDER_PREFIX}{name}}} names no parameter"),
                    );
                }
            }
        }
        _ => problems.add("document", "must be a JSON object"),
    }
}

/// The parameter names of the placeholders in `text`.
fn placeholders(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(PLACEHOLDER_PREFIX) {
        rest = &rest[start + PLACEHOLDER_PREFIX.len()..];
        match rest.find('}') {
            Some(end) => {
                names.push(rest[..end].to_owned());
                rest = &rest[end..];
            }
            None => break,
        }
    }
    names
}

/// Whether `value` suits `parameter`; the message says why not.
fn check_value(parameter: &TemplateParameter, value: &Value) -> Result<(), String> {
    match parameter.kind.as_str() {
        "int" => {
            let Some(n) = value.as_i64() else {
                return Err("must be a whole number".into());
            };
            if let Some(min) = parameter.min.filter(|min| n < *min) {
                return Err(format!("must be at least {min}"));
            }
            if let Some(max) = parameter.max.filter(|max| n > *max) {
                return Err(format!("must be at most {max}"));
            }
        }
        "enum" => {
            let Some(s) = value.as_str() else {
                return Err("must be a string".into());
            };
            if !parameter.values.iter().any(|v| v == s) {
                return Err(format!("must be one of {}", parameter.values.join(", ")));
            }
        }
        _ => {
            let Some(s) = value.as_str() else {
                return Err("must be a string".into());
            };
            let length = s.chars().count() as i64;
            if let Some(min) = parameter.min.filter(|min| length < *min) {
                return Err(format!("must be at least {min} characters"));
            }
            if let Some(max) = parameter.max.filter(|max| length > *max) {
                return Err(format!("must be at most {max} characters"));
            }
            if let Some(pattern) = &parameter.pattern {
                let matches = Regex::new(&format!("^(?:{pattern})$"))
                    .map(|re| re.is_match(s))
                    .unwrap_or(false);
                if !matches {
                    return Err(format!("must match {pattern}"));
                }
            }
        }
    }
    Ok(())
}

/// Renders `template` with `values`: every parameter checked, placeholders replaced. Field
/// messages are under `field_prefix` (`parameters`).
pub(crate) fn render(
    template: &Template,
    values: &BTreeMap<String, Value>,
    problems: &mut Problems,
) -> Option<Value> {
    let before = problems.0.len();
    for name in values.keys() {
        if !template.parameters.iter().any(|p| &p.name == name) {
            problems.add(
                format!("parameters.{name}"),
                format!("template {:?} has no such parameter", template.template_id),
            );
        }
    }
    let mut resolved: BTreeMap<&str, Value> = BTreeMap::new();
    for parameter in &template.parameters {
        let field = format!("parameters.{}", parameter.name);
        match values.get(&parameter.name).or(parameter.default.as_ref()) {
            Some(value) => match check_value(parameter, value) {
                Ok(()) => {
                    resolved.insert(&parameter.name, value.clone());
                }
                Err(message) => problems.add(field, message),
            },
            None if parameter.required => problems.add(field, "is required"),
            // An optional parameter without a default renders as an empty string, as the
            // AWS managed templates do.
            None => {
                resolved.insert(&parameter.name, Value::String(String::new()));
            }
        }
    }
    if problems.0.len() > before {
        return None;
    }
    let rendered = substitute(template.document.clone(), &resolved);
    let text = rendered.to_string();
    if text.len() > MAX_DOCUMENT_BYTES {
        problems.add(
            "parameters",
            format!("the rendered document is larger than {MAX_DOCUMENT_BYTES} bytes"),
        );
        return None;
    }
    super::check_object_keys(&text, "parameters", problems);
    if problems.0.len() > before {
        return None;
    }
    Some(rendered)
}

/// Replaces placeholders in every string of `value`. A string that is exactly one placeholder
/// of a number becomes that number.
fn substitute(value: Value, values: &BTreeMap<&str, Value>) -> Value {
    match value {
        Value::String(s) => {
            if let Some(name) = s
                .strip_prefix(PLACEHOLDER_PREFIX)
                .and_then(|rest| rest.strip_suffix('}'))
                .filter(|name| !name.contains('}'))
                && let Some(v @ Value::Number(_)) = values.get(name)
            {
                return v.clone();
            }
            let mut out = s;
            for (name, v) in values {
                let text = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                out = out.replace(&format!("{PLACEHOLDER_PREFIX}{name}}}"), &text);
            }
            Value::String(out)
        }
        Value::Array(items) => {
            Value::Array(items.into_iter().map(|v| substitute(v, values)).collect())
        }
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, substitute(v, values)))
                .collect(),
        ),
        other => other,
    }
}

/// Saves a new version of `template_id` (creating the template with version 1). Returns the
/// version saved, or `None` when `only_if_changed` and the latest version is identical.
async fn save_version(
    pool: &PgPool,
    template_id: &str,
    source: &str,
    request: &SaveTemplate,
    create: Option<bool>,
    only_if_changed: bool,
) -> Result<Option<i32>, ApiError> {
    let parameters = serde_json::to_value(&request.parameters).unwrap_or(Value::Array(Vec::new()));
    let mut tx = pool.begin().await?;
    // The row lock orders concurrent updates of one template, so versions never collide.
    let latest: Option<i32> = sqlx::query_scalar(
        "select latest_version from server.job_templates where template_id = $1 for update",
    )
    .bind(template_id)
    .fetch_optional(&mut *tx)
    .await?;
    let version = match (latest, create) {
        (Some(_), Some(true)) => {
            return Err(ApiError::Conflict(format!(
                "template {template_id:?} already exists"
            )));
        }
        (None, Some(false)) => {
            return Err(ApiError::NotFound(format!("no template {template_id:?}")));
        }
        (Some(latest), _) => {
            if only_if_changed {
                let same: Option<bool> = sqlx::query_scalar(
                    "select description is not distinct from $3 and document = $4 and parameters = $5
                         from server.job_template_versions where template_id = $1 and version = $2",
                )
                .bind(template_id)
                .bind(latest)
                .bind(&request.description)
                .bind(&request.document)
                .bind(&parameters)
                .fetch_optional(&mut *tx)
                .await?;
                if same == Some(true) {
                    return Ok(None);
                }
            }
            sqlx::query(
                "update server.job_templates set latest_version = $2, updated_at = now()
                     where template_id = $1",
            )
            .bind(template_id)
            .bind(latest + 1)
            .execute(&mut *tx)
            .await?;
            latest + 1
        }
        (None, _) => {
            sqlx::query(
                "insert into server.job_templates (template_id, source, latest_version)
                     values ($1, $2, 1)",
            )
            .bind(template_id)
            .bind(source)
            .execute(&mut *tx)
            .await?;
            1
        }
    };
    sqlx::query(
        "insert into server.job_template_versions (template_id, version, description, document, parameters)
             values ($1, $2, $3, $4, $5)",
    )
    .bind(template_id)
    .bind(version)
    .bind(&request.description)
    .bind(&request.document)
    .bind(&parameters)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(version))
}

/// Creates a template (version 1).
#[utoipa::path(post, path = "/api/v1/templates", operation_id = "create_template", tag = "templates", request_body = SaveTemplate,
    responses((status = 201, description = "The template", body = Template), ApiError))]
pub(super) async fn create(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<SaveTemplate>,
) -> Result<(StatusCode, Json<Template>), ApiError> {
    let mut problems = Problems::default();
    match &request.template_id {
        Some(id) if valid_id(id) => {}
        Some(_) => problems.add(
            "template_id",
            "must be 1-64 of letters, digits, '-' and '_'",
        ),
        None => problems.add("template_id", "is required"),
    }
    check_template(&request, &mut problems);
    if !problems.0.is_empty() {
        return Err(ApiError::fields(problems.0));
    }
    let template_id = request.template_id.clone().unwrap_or_default();
    save_version(
        &state.pool,
        &template_id,
        "custom",
        &request,
        Some(true),
        false,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(load(&state.pool, &template_id, None).await?),
    ))
}

/// Saves a new version of a template.
#[utoipa::path(put, path = "/api/v1/templates/{template_id}", operation_id = "update_template", tag = "templates", params(("template_id" = String, Path, description = "The template")),
    request_body = SaveTemplate,
    responses((status = 200, description = "The new version", body = Template), ApiError))]
pub(super) async fn update(
    State(state): State<AppState>,
    Path(template_id): Path<String>,
    ApiJson(request): ApiJson<SaveTemplate>,
) -> Result<Json<Template>, ApiError> {
    let mut problems = Problems::default();
    if request
        .template_id
        .as_ref()
        .is_some_and(|id| id != &template_id)
    {
        problems.add("template_id", "a template's id cannot change");
    }
    check_template(&request, &mut problems);
    if !problems.0.is_empty() {
        return Err(ApiError::fields(problems.0));
    }
    save_version(
        &state.pool,
        &template_id,
        "custom",
        &request,
        Some(false),
        false,
    )
    .await?;
    Ok(Json(load(&state.pool, &template_id, None).await?))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct VersionQuery {
    /// The version; the latest when absent.
    version: Option<i32>,
}

/// One version of a template (the latest by default).
#[utoipa::path(get, path = "/api/v1/templates/{template_id}", operation_id = "read_template", tag = "templates",
    params(("template_id" = String, Path, description = "The template"), VersionQuery),
    responses((status = 200, description = "The template", body = Template), ApiError))]
pub(super) async fn read(
    State(state): State<AppState>,
    Path(template_id): Path<String>,
    ApiQuery(query): ApiQuery<VersionQuery>,
) -> Result<Json<Template>, ApiError> {
    Ok(Json(load(&state.pool, &template_id, query.version).await?))
}

/// The latest version of every template.
#[utoipa::path(get, path = "/api/v1/templates", operation_id = "list_templates", tag = "templates",
    responses((status = 200, description = "Every template", body = TemplateList), ApiError))]
pub(super) async fn list(State(state): State<AppState>) -> Result<Json<TemplateList>, ApiError> {
    let rows: Vec<VersionRow> = sqlx::query_as(&format!(
        "{SELECT_VERSION} where v.version = t.latest_version order by t.template_id"
    ))
    .fetch_all(&state.pool)
    .await?;
    Ok(Json(TemplateList {
        templates: rows.into_iter().map(VersionRow::into_template).collect(),
    }))
}

/// Every version of a template, newest first.
#[utoipa::path(get, path = "/api/v1/templates/{template_id}/versions", operation_id = "template_versions", tag = "templates",
    params(("template_id" = String, Path, description = "The template")),
    responses((status = 200, description = "The versions", body = TemplateList), ApiError))]
pub(super) async fn versions(
    State(state): State<AppState>,
    Path(template_id): Path<String>,
) -> Result<Json<TemplateList>, ApiError> {
    let rows: Vec<VersionRow> = sqlx::query_as(&format!(
        "{SELECT_VERSION} where t.template_id = $1 order by v.version desc"
    ))
    .bind(&template_id)
    .fetch_all(&state.pool)
    .await?;
    if rows.is_empty() {
        return Err(ApiError::NotFound(format!("no template {template_id:?}")));
    }
    Ok(Json(TemplateList {
        templates: rows.into_iter().map(VersionRow::into_template).collect(),
    }))
}

/// Deletes a template with all its versions.
#[utoipa::path(delete, path = "/api/v1/templates/{template_id}", operation_id = "delete_template", tag = "templates", params(("template_id" = String, Path, description = "The template")),
    responses((status = 204, description = "Deleted"), ApiError))]
pub(super) async fn delete(
    State(state): State<AppState>,
    Path(template_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let deleted = sqlx::query("delete from server.job_templates where template_id = $1")
        .bind(&template_id)
        .execute(&state.pool)
        .await?;
    if deleted.rows_affected() == 0 {
        return Err(ApiError::NotFound(format!("no template {template_id:?}")));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Renders a version with parameter values, validating them.
#[utoipa::path(post, path = "/api/v1/templates/{template_id}/preview", operation_id = "preview_template", tag = "templates",
    params(("template_id" = String, Path, description = "The template")), request_body = PreviewTemplate,
    responses((status = 200, description = "The rendered document", body = RenderedTemplate), ApiError))]
pub(super) async fn preview(
    State(state): State<AppState>,
    Path(template_id): Path<String>,
    ApiJson(request): ApiJson<PreviewTemplate>,
) -> Result<Json<RenderedTemplate>, ApiError> {
    let template = load(&state.pool, &template_id, request.version).await?;
    let mut problems = Problems::default();
    match render(&template, &request.parameters, &mut problems) {
        Some(document) => Ok(Json(RenderedTemplate {
            template_id: template.template_id,
            version: template.version,
            document,
        })),
        None => Err(ApiError::fields(problems.0)),
    }
}

/// Imports every AWS managed template as a template of source `aws_managed`, named like
/// AWS names it. Importing again adds a version only where AWS's content changed.
#[utoipa::path(post, path = "/api/v1/templates/import-managed", operation_id = "import_managed_templates", tag = "templates",
    responses((status = 200, description = "What was imported", body = ImportedTemplates), ApiError))]
pub(super) async fn import_managed(
    State(state): State<AppState>,
) -> Result<Json<ImportedTemplates>, ApiError> {
    let iot = state.iot.sdk();
    let mut names = Vec::new();
    let mut pages = iot.list_managed_job_templates().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(IotError::from_sdk)?;
        names.extend(
            page.managed_job_templates
                .unwrap_or_default()
                .into_iter()
                .filter_map(|t| t.template_name),
        );
    }
    names.sort();
    names.dedup();
    let mut imported = Vec::new();
    let mut unchanged = Vec::new();
    for name in names {
        let described = iot
            .describe_managed_job_template()
            .template_name(&name)
            .send()
            .await
            .map_err(IotError::from_sdk)?;
        let document: Value = match described.document.as_deref().map(serde_json::from_str) {
            Some(Ok(document @ Value::Object(_))) => document,
            _ => {
                tracing::warn!(template = %name, "managed template {name} has no JSON object document; skipped");
                continue;
            }
        };
        let parameters = described
            .document_parameters
            .unwrap_or_default()
            .into_iter()
            .filter_map(|p| {
                Some(TemplateParameter {
                    name: p.key?,
                    kind: "string".into(),
                    description: p.description,
                    required: !p.optional,
                    default: None,
                    pattern: p.regex,
                    min: None,
                    max: None,
                    values: Vec::new(),
                })
            })
            .collect();
        let request = SaveTemplate {
            template_id: Some(name.clone()),
            description: described.description,
            document,
            parameters,
        };
        let mut problems = Problems::default();
        check_template(&request, &mut problems);
        if let Some(problem) = problems.0.first() {
            tracing::warn!(template = %name, "managed template {name} cannot be imported: {}: {}", problem.field, problem.message);
            continue;
        }
        match save_version(&state.pool, &name, "aws_managed", &request, None, true).await? {
            Some(_) => imported.push(name),
            None => unchanged.push(name),
        }
    }
    Ok(Json(ImportedTemplates {
        imported,
        unchanged,
    }))
}

/// Syncs a version to AWS as a job template (CreateJobTemplate), with the parameters' defaults
/// filled in (AWS's own templates take no parameters). Its AWS id is
/// `{template_id}-v{version}`, so syncing twice is refused by AWS as a conflict.
#[utoipa::path(post, path = "/api/v1/templates/{template_id}/sync", operation_id = "sync_template", tag = "templates",
    params(("template_id" = String, Path, description = "The template"), VersionQuery),
    responses((status = 200, description = "The version, with its AWS job template id", body = Template), ApiError))]
pub(super) async fn sync(
    State(state): State<AppState>,
    Path(template_id): Path<String>,
    ApiQuery(query): ApiQuery<VersionQuery>,
) -> Result<Json<Template>, ApiError> {
    let template = load(&state.pool, &template_id, query.version).await?;
    if template.source == "aws_managed" {
        return Err(ApiError::field(
            "template_id",
            "AWS managed templates exist in AWS already",
        ));
    }
    let mut problems = Problems::default();
    let Some(document) = render(&template, &BTreeMap::new(), &mut problems) else {
        let mut fields: Vec<FieldError> = problems.0;
        fields.push(FieldError {
            field: "template_id".into(),
            message: "only a template whose parameters all have defaults can be synced".into(),
        });
        return Err(ApiError::fields(fields));
    };
    let aws_id = format!("{}-v{}", template.template_id, template.version);
    if aws_id.len() > 64 {
        return Err(ApiError::field(
            "template_id",
            "too long for an AWS job template id with its version",
        ));
    }
    state
        .iot
        .sdk()
        .create_job_template()
        .job_template_id(&aws_id)
        .description(
            template
                .description
                .clone()
                .unwrap_or_else(|| template.template_id.clone()),
        )
        .document(document.to_string())
        .send()
        .await
        .map_err(IotError::from_sdk)?;
    sqlx::query(
        "update server.job_template_versions set aws_job_template_id = $3
             where template_id = $1 and version = $2",
    )
    .bind(&template.template_id)
    .bind(template.version)
    .bind(&aws_id)
    .execute(&state.pool)
    .await?;
    Ok(Json(
        load(&state.pool, &template_id, Some(template.version)).await?,
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn template(document: Value, parameters: Value) -> Template {
        Template {
            template_id: "t".into(),
            version: 1,
            latest_version: 1,
            description: None,
            document,
            parameters: serde_json::from_value(parameters).expect("parameters"),
            source: "custom".into(),
            created_at: String::new(),
            aws_job_template_id: None,
        }
    }

    #[test]
    fn parameters_render_typed() {
        let t = template(
            json!({ "url": "https://x/${aws:iot:parameter:version}.bin", "retries": "${aws:iot:parameter:retries}", "mode": "${aws:iot:parameter:mode}" }),
            json!([
                { "name": "version", "type": "string", "pattern": "[0-9]+\\.[0-9]+" },
                { "name": "retries", "type": "int", "min": 0, "max": 5, "default": 2 },
                { "name": "mode", "type": "enum", "values": ["fast", "safe"] },
            ]),
        );
        let mut problems = Problems::default();
        let values = BTreeMap::from([
            ("version".to_owned(), json!("1.2")),
            ("mode".to_owned(), json!("safe")),
        ]);
        let rendered = render(&t, &values, &mut problems).expect("renders");
        assert_eq!(
            rendered,
            json!({ "url": "https://x/1.2.bin", "retries": 2, "mode": "safe" })
        );

        let bad = BTreeMap::from([
            ("version".to_owned(), json!("one")),
            ("retries".to_owned(), json!(9)),
            ("mode".to_owned(), json!("reckless")),
            ("extra".to_owned(), json!(1)),
        ]);
        let mut problems = Problems::default();
        assert!(render(&t, &bad, &mut problems).is_none());
        let mut fields: Vec<String> = problems.0.into_iter().map(|p| p.field).collect();
        fields.sort();
        assert_eq!(
            fields,
            [
                "parameters.extra",
                "parameters.mode",
                "parameters.retries",
                "parameters.version"
            ]
        );
    }

    #[test]
    fn placeholders_are_found() {
        assert_eq!(
            placeholders(r#"{"a":"${aws:iot:parameter:x} ${aws:iot:parameter:y}"}"#),
            ["x", "y"]
        );
    }
}
