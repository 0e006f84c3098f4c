//! `/api/v1/templates`: the server's versioned job templates with typed parameters.
//!
//! A template's document is a JSON object whose string values may hold placeholders
//! `${aws:iot:parameter:NAME}` (the syntax of the AWS managed templates). Rendering replaces
//! them with the parameters' values; a string that is exactly one placeholder of an `int`
//! parameter becomes a JSON number.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A parameter's type and its constraints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TemplateParameter {
    /// `[A-Za-z0-9_-]`, 1–64 characters.
    pub name: String,
    /// `string`, `int` or `enum`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub description: Option<String>,
    /// A value the parameter must have unless `default` is set.
    #[serde(default = "yes")]
    pub required: bool,
    /// Used when the parameter is not given.
    #[serde(default)]
    pub default: Option<serde_json::Value>,
    /// `string`: a regular expression the whole value must match.
    #[serde(default)]
    pub pattern: Option<String>,
    /// `int`: the smallest value; `string`: the shortest length.
    #[serde(default)]
    pub min: Option<i64>,
    /// `int`: the largest value; `string`: the longest length.
    #[serde(default)]
    pub max: Option<i64>,
    /// `enum`: the allowed values.
    #[serde(default)]
    pub values: Vec<String>,
}

fn yes() -> bool {
    true
}

/// `POST /api/v1/templates` (with `template_id`) and `PUT /api/v1/templates/{id}` (without).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SaveTemplate {
    /// `[A-Za-z0-9_-]`, 1–64 characters; only when creating.
    #[serde(default)]
    pub template_id: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    pub document: serde_json::Value,
    #[serde(default)]
    pub parameters: Vec<TemplateParameter>,
}

/// One version of a template. Every update makes a new version; old ones stay readable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Template {
    pub template_id: String,
    pub version: i32,
    /// The newest version of this template.
    pub latest_version: i32,
    pub description: Option<String>,
    pub document: serde_json::Value,
    pub parameters: Vec<TemplateParameter>,
    /// `custom`, or `aws_managed` for an imported AWS managed template.
    pub source: String,
    /// RFC 3339, when this version was saved.
    pub created_at: String,
    /// The AWS job template id this version was synced to, if it was.
    pub aws_job_template_id: Option<String>,
}

/// `GET /api/v1/templates`: the latest version of every template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TemplateList {
    pub templates: Vec<Template>,
}

/// `POST /api/v1/templates/{id}/preview`: render a version (the latest by default).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PreviewTemplate {
    #[serde(default)]
    pub version: Option<i32>,
    #[serde(default)]
    pub parameters: BTreeMap<String, serde_json::Value>,
}

/// The rendered document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RenderedTemplate {
    pub template_id: String,
    pub version: i32,
    pub document: serde_json::Value,
}

/// `POST /api/v1/templates/import-managed`: which templates were imported or updated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImportedTemplates {
    pub imported: Vec<String>,
    /// Already present with the same content: no new version.
    pub unchanged: Vec<String>,
}
