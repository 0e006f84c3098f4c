//! `/api/v1/devices` and `/api/v1/software-versions`: the fleet inventory
//! ([`crate::inventory`]), searched and paged in PostgreSQL.
//!
//! A search is one statement over `server.devices` with only the filters given: the attribute
//! filter is a jsonb containment (`@>`, GIN index), the group filter an array containment on
//! the groups-with-ancestors column (GIN index), the others equalities on indexed columns;
//! pages are keyset pages in name order (`after` = the last name seen).

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use chrono::{DateTime, Utc};
use flotilla_api::{
    Device, DeviceDetail, DeviceExecution, DeviceList, FieldError, PresenceChange,
    SoftwareDistribution, VersionChange, VersionCount,
};
use serde_json::Value;
use sqlx::{PgPool, Postgres, QueryBuilder};

use super::{ApiError, ApiQuery};
use crate::app::AppState;
use crate::projection::rfc3339;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/devices", get(list))
        .route("/devices/{thing_name}", get(detail))
        .route("/software-versions", get(software_versions))
}

const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 500;
/// The statuses a last job outcome can have.
const OUTCOMES: [&str; 6] = [
    "SUCCEEDED",
    "FAILED",
    "REJECTED",
    "TIMED_OUT",
    "CANCELED",
    "REMOVED",
];

/// A device search, decoded and checked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceSearch {
    /// Names starting with this.
    pub name: Option<String>,
    pub attributes: BTreeMap<String, String>,
    /// Members of this group or of a group below it.
    pub group: Option<String>,
    pub version: Option<String>,
    pub connected: Option<bool>,
    pub last_job: Option<String>,
    pub after: Option<String>,
    pub limit: i64,
}

impl DeviceSearch {
    /// Reads the query string; every problem is reported with its field.
    pub fn from_query(query: &HashMap<String, String>) -> Result<Self, ApiError> {
        let mut search = Self {
            limit: DEFAULT_LIMIT,
            ..Self::default()
        };
        let mut errors = Vec::new();
        let mut error = |field: &str, message: &str| {
            errors.push(FieldError {
                field: field.to_owned(),
                message: message.to_owned(),
            });
        };
        for (key, value) in query {
            match key.as_str() {
                "name" => search.name = Some(value.clone()).filter(|v| !v.is_empty()),
                "group" if !value.is_empty() && value.len() <= 128 => {
                    search.group = Some(value.clone());
                }
                "group" => error(key, "a group name is 1-128 characters"),
                "version" if value.len() <= 128 => {
                    search.version = Some(value.clone()).filter(|v| !v.is_empty());
                }
                "version" => error(key, "a version is at most 128 characters"),
                "connectivity" => match value.as_str() {
                    "online" => search.connected = Some(true),
                    "offline" => search.connected = Some(false),
                    "" => {}
                    _ => error(key, "must be online or offline"),
                },
                "last_job" if value.is_empty() => {}
                "last_job" if OUTCOMES.contains(&value.as_str()) => {
                    search.last_job = Some(value.clone());
                }
                "last_job" => error(
                    key,
                    "must be SUCCEEDED, FAILED, REJECTED, TIMED_OUT, CANCELED or REMOVED",
                ),
                "after" => search.after = Some(value.clone()).filter(|v| !v.is_empty()),
                "limit" => match value.parse::<i64>() {
                    Ok(n) if (1..=MAX_LIMIT).contains(&n) => search.limit = n,
                    _ => error(key, "must be a whole number from 1 to 500"),
                },
                other => match other.strip_prefix("attr.") {
                    Some(name) if !name.is_empty() && name.len() <= 128 => {
                        search.attributes.insert(name.to_owned(), value.clone());
                    }
                    Some(_) => error(key, "an attribute name is 1-128 characters"),
                    None => error(
                        key,
                        "unknown filter; use name, attr.{name}, group, version, connectivity, \
                         last_job, after or limit",
                    ),
                },
            }
        }
        if errors.is_empty() {
            Ok(search)
        } else {
            errors.sort_by(|a, b| a.field.cmp(&b.field));
            Err(ApiError::fields(errors))
        }
    }
}

#[derive(Debug, sqlx::FromRow)]
struct DeviceRow {
    thing_name: String,
    thing_type_name: Option<String>,
    attributes: Value,
    groups: Vec<String>,
    connected: bool,
    last_seen_at: Option<DateTime<Utc>>,
    installed_version: Option<String>,
    agent_version: Option<String>,
    last_job_id: Option<String>,
    last_job_status: Option<String>,
    last_job_at: Option<DateTime<Utc>>,
}

const DEVICE_COLUMNS: &str = "thing_name, thing_type_name, attributes, groups, connected, \
     last_seen_at, installed_version, agent_version, last_job_id, last_job_status, last_job_at";

impl From<DeviceRow> for Device {
    fn from(row: DeviceRow) -> Self {
        let attributes = match row.attributes {
            Value::Object(map) => map
                .into_iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (k, v)
                })
                .collect(),
            _ => BTreeMap::new(),
        };
        Device {
            name: row.thing_name,
            thing_type: row.thing_type_name,
            attributes,
            groups: row.groups,
            connected: row.connected,
            last_seen_at: row.last_seen_at.map(rfc3339),
            installed_version: row.installed_version,
            agent_version: row.agent_version,
            last_job_id: row.last_job_id,
            last_job_status: row.last_job_status,
            last_job_at: row.last_job_at.map(rfc3339),
        }
    }
}

/// `LIKE` pattern of names starting with `prefix`.
fn prefix_pattern(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// One page of the search, and the `after` of the next page.
pub async fn search(
    pool: &PgPool,
    search: &DeviceSearch,
) -> sqlx::Result<(Vec<Device>, Option<String>)> {
    let mut sql: QueryBuilder<'_, Postgres> = QueryBuilder::new(format!(
        "select {DEVICE_COLUMNS} from server.devices where true"
    ));
    if let Some(name) = &search.name {
        sql.push(" and thing_name like ")
            .push_bind(prefix_pattern(name));
    }
    if !search.attributes.is_empty() {
        sql.push(" and attributes @> ")
            .push_bind(serde_json::to_value(&search.attributes).unwrap_or_default());
    }
    if let Some(group) = &search.group {
        sql.push(" and groups @> array[")
            .push_bind(group.clone())
            .push("]::text[]");
    }
    if let Some(version) = &search.version {
        sql.push(" and installed_version = ")
            .push_bind(version.clone());
    }
    if let Some(connected) = search.connected {
        sql.push(" and connected = ").push_bind(connected);
    }
    if let Some(outcome) = &search.last_job {
        sql.push(" and last_job_status = ")
            .push_bind(outcome.clone());
    }
    if let Some(after) = &search.after {
        sql.push(" and thing_name > ").push_bind(after.clone());
    }
    sql.push(" order by thing_name limit ")
        .push_bind(search.limit + 1);
    let mut rows: Vec<DeviceRow> = sql.build_query_as().fetch_all(pool).await?;
    let next = if rows.len() as i64 > search.limit {
        rows.truncate(search.limit as usize);
        rows.last().map(|row| row.thing_name.clone())
    } else {
        None
    };
    Ok((rows.into_iter().map(Device::from).collect(), next))
}

/// `GET /devices`: a page of the inventory, filtered.
#[utoipa::path(get, path = "/api/v1/devices", operation_id = "list_devices", tag = "inventory",
    params(("name" = Option<String>, Query, description = "Only names that start with this"),
        ("attr.{name}" = Option<String>, Query,
            description = "Only devices whose attribute `name` has this value; repeatable with other names"),
        ("group" = Option<String>, Query, description = "Only members of this group or a group below it"),
        ("version" = Option<String>, Query, description = "Only devices that reported this installed version"),
        ("connectivity" = Option<String>, Query, description = "online or offline"),
        ("last_job" = Option<String>, Query, description = "Only devices whose last finished job execution has this status"),
        ("after" = Option<String>, Query, description = "The previous page's `next`"),
        ("limit" = Option<i64>, Query, description = "1-500; 50 when absent")),
    responses((status = 200, description = "A page of devices in name order", body = DeviceList), ApiError))]
pub(super) async fn list(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<HashMap<String, String>>,
) -> Result<Json<DeviceList>, ApiError> {
    let filters = DeviceSearch::from_query(&query)?;
    let (devices, next) = search(&state.pool, &filters).await?;
    Ok(Json(DeviceList { devices, next }))
}

/// A device's execution: job, status, execution number, status details, last update.
type ExecutionRow = (
    String,
    String,
    Option<i64>,
    Option<Value>,
    Option<DateTime<Utc>>,
);

/// `GET /devices/{thing_name}`: one device with its connectivity history, installed versions
/// over time and job executions.
#[utoipa::path(get, path = "/api/v1/devices/{thing_name}", operation_id = "device_detail", tag = "inventory",
    params(("thing_name" = String, Path, description = "The device (thing)")),
    responses((status = 200, description = "The device", body = DeviceDetail), ApiError))]
pub(super) async fn detail(
    State(state): State<AppState>,
    Path(thing_name): Path<String>,
) -> Result<Json<DeviceDetail>, ApiError> {
    let pool = &state.pool;
    let row: Option<DeviceRow> = sqlx::query_as(&format!(
        "select {DEVICE_COLUMNS} from server.devices where thing_name = $1"
    ))
    .bind(&thing_name)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        return Err(ApiError::NotFound(format!("no device {thing_name:?}")));
    };
    let connectivity: Vec<(bool, DateTime<Utc>, Option<String>)> = sqlx::query_as(
        "select connected, at, reason from server.device_presence
         where thing_name = $1 order by at desc limit 100",
    )
    .bind(&thing_name)
    .fetch_all(pool)
    .await?;
    let versions: Vec<(String, DateTime<Utc>)> = sqlx::query_as(
        "select version, reported_at from server.device_versions
         where thing_name = $1 order by reported_at desc limit 100",
    )
    .bind(&thing_name)
    .fetch_all(pool)
    .await?;
    let executions: Vec<ExecutionRow> = sqlx::query_as(
        "select job_id, status, execution_number, status_details, updated_at
             from server.job_executions where thing_name = $1
             order by updated_at desc nulls last limit 100",
    )
    .bind(&thing_name)
    .fetch_all(pool)
    .await?;
    Ok(Json(DeviceDetail {
        device: row.into(),
        connectivity: connectivity
            .into_iter()
            .map(|(connected, at, reason)| PresenceChange {
                connected,
                at: rfc3339(at),
                reason,
            })
            .collect(),
        versions: versions
            .into_iter()
            .map(|(version, at)| VersionChange {
                version,
                reported_at: rfc3339(at),
            })
            .collect(),
        executions: executions
            .into_iter()
            .map(
                |(job_id, status, execution_number, details, updated_at)| DeviceExecution {
                    job_id,
                    status,
                    execution_number,
                    status_details: match details {
                        Some(Value::Object(map)) => map
                            .into_iter()
                            .map(|(k, v)| {
                                let v = match v {
                                    Value::String(s) => s,
                                    other => other.to_string(),
                                };
                                (k, v)
                            })
                            .collect(),
                        _ => BTreeMap::new(),
                    },
                    updated_at: updated_at.map(rfc3339),
                },
            )
            .collect(),
    }))
}

/// `GET /software-versions?group=`: how many devices (and how many of them online) run each
/// version, in the whole fleet or in one group (with its subgroups).
#[utoipa::path(get, path = "/api/v1/software-versions", operation_id = "software_versions", tag = "inventory",
    params(("group" = Option<String>, Query, description = "Only this group and the groups below it")),
    responses((status = 200, description = "Devices per installed version", body = SoftwareDistribution), ApiError))]
pub(super) async fn software_versions(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<HashMap<String, String>>,
) -> Result<Json<SoftwareDistribution>, ApiError> {
    if let Some(key) = query.keys().find(|k| k.as_str() != "group") {
        return Err(ApiError::field(key, "unknown parameter; use group"));
    }
    let group = query.get("group").filter(|g| !g.is_empty()).cloned();
    let rows: Vec<(Option<String>, i64, i64)> = sqlx::query_as(
        "select installed_version, count(*), count(*) filter (where connected)
         from server.devices
         where $1::text is null or groups @> array[$1]::text[]
         group by installed_version order by count(*) desc, installed_version nulls last",
    )
    .bind(&group)
    .fetch_all(&state.pool)
    .await?;
    Ok(Json(SoftwareDistribution {
        group,
        versions: rows
            .into_iter()
            .map(|(version, devices, connected)| VersionCount {
                version,
                devices,
                connected,
            })
            .collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn searches_read_every_filter_and_name_each_bad_one() {
        let search = DeviceSearch::from_query(&query(&[
            ("name", "pump-"),
            ("attr.site", "berlin"),
            ("group", "eu"),
            ("version", "2.1.0"),
            ("connectivity", "online"),
            ("last_job", "FAILED"),
            ("limit", "20"),
        ]))
        .expect("a valid search");
        assert_eq!(search.connected, Some(true));
        assert_eq!(
            search.attributes.get("site").map(String::as_str),
            Some("berlin")
        );
        assert_eq!(search.limit, 20);
        let Err(ApiError::Invalid { fields, .. }) = DeviceSearch::from_query(&query(&[
            ("connectivity", "maybe"),
            ("last_job", "WON"),
            ("limit", "0"),
            ("colour", "red"),
        ])) else {
            panic!("bad filters must be refused");
        };
        let named: Vec<&str> = fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(named, ["colour", "connectivity", "last_job", "limit"]);
    }

    #[test]
    fn name_prefixes_escape_like_wildcards() {
        assert_eq!(prefix_pattern("a_b%"), "a\\_b\\%%");
    }
}
