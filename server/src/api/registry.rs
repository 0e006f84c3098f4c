//! Changing the fleet: registering devices (one, or many from a CSV file), their one-time
//! credential bundles, revoking a device's certificates, and static and dynamic thing groups
//! with their members. Everything goes through `aws-sdk-iot`, so it works the same against
//! the engine and AWS:
//!
//! - registration: CreateThing, CreateKeysAndCertificate (active), AttachThingPrincipal, the
//!   device policy [`DEVICE_POLICY`] (created once; it lets a certificate connect as the thing
//!   it is attached to and use that thing's topics) with AttachPolicy, AddThingToThingGroup;
//! - revocation: UpdateCertificate REVOKED for every certificate of the thing (the engine
//!   disconnects a device whose certificate is revoked; AWS refuses its next connection);
//! - groups: CreateThingGroup / CreateDynamicThingGroup, DeleteThingGroup /
//!   DeleteDynamicThingGroup (refused while a job that is not finished targets the group),
//!   AddThingToThingGroup / RemoveThingFromThingGroup.
//!
//! Input is checked before anything is created; problems come back field by field (for CSV
//! files, as `line {n}.{column}`) and change nothing. The inventory's copy of attributes and
//! groups follows at once for the devices touched, and fully with the next resync.

use std::collections::{BTreeSet, HashMap};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use chrono::{Duration, Utc};
use flotilla_api::{
    AddMembers, CreateGroup, DeviceBundle, DeviceCertificate, DeviceCertificates, FieldError,
    ImportResult, ImportedRow, MembersChanged, RegisterDevice, RegisteredDevice,
};
use futures::StreamExt;

use super::devices::{DeviceSearch, search};
use super::{ApiError, ApiJson};
use crate::app::AppState;
use crate::iot::{IotError, time};
use crate::projection::rfc3339;

/// The IoT policy attached to every certificate the server issues.
pub const DEVICE_POLICY: &str = "flotilla-device";
/// How long a bundle waits to be downloaded.
const BUNDLE_HOURS: i64 = 24;
/// The most rows one CSV import takes.
const MAX_IMPORT_ROWS: usize = 10_000;
/// The most devices one "add from a search" adds.
const MAX_SEARCH_MEMBERS: i64 = 10_000;
/// Registrations run at once during an import.
const IMPORT_CONCURRENCY: usize = 4;
/// Amazon Root CA 1, which AWS IoT's ATS endpoints chain to.
const AWS_ROOT_CA_URL: &str = "https://www.amazontrust.com/repository/AmazonRootCA1.pem";

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/devices", post(register))
        .route("/devices/import", post(import))
        .route("/devices/{thing_name}/certificates", get(certificates))
        .route("/devices/{thing_name}/revoke", post(revoke))
        .route("/device-bundles/{token}", get(bundle))
        .route("/thing-groups", post(create_group))
        .route("/thing-groups/{group_name}", delete(delete_group))
        .route("/thing-groups/{group_name}/members", post(add_members))
        .route(
            "/thing-groups/{group_name}/members/{thing_name}",
            delete(remove_member),
        )
}

fn valid_name(name: &str) -> bool {
    flotilla_engine::model::valid_thing_name(name)
}

/// Every problem of a registration, each under `prefix` + its field.
fn check_registration(device: &RegisterDevice, prefix: &str) -> Vec<FieldError> {
    let mut problems = Vec::new();
    let mut problem = |field: &str, message: String| {
        problems.push(FieldError {
            field: format!("{prefix}{field}"),
            message,
        });
    };
    if !valid_name(&device.name) {
        problem(
            "name",
            "must be 1-128 characters of letters, digits and :_-".into(),
        );
    }
    if let Some(thing_type) = &device.thing_type
        && !valid_name(thing_type)
    {
        problem(
            "thing_type",
            "must be 1-128 characters of letters, digits and :_-".into(),
        );
    }
    if device.attributes.len() > 50 {
        problem("attributes", "at most 50 attributes".into());
    }
    for (key, value) in &device.attributes {
        if !flotilla_engine::jobs::valid_attribute(key, value) || value.is_empty() {
            problem(
                &format!("attributes.{key}"),
                "names are 1-128 characters of letters, digits and _.,@/:#-; values 1-800 of \
                 letters, digits, spaces and _.,@/:#=[]-"
                    .into(),
            );
        }
    }
    for group in &device.groups {
        if !valid_name(group) {
            problem(
                "groups",
                format!("{group:?} is not a group name (1-128 of letters, digits and :_-)"),
            );
        }
    }
    if let Some(version) = &device.software_version
        && (version.is_empty()
            || version.len() > 128
            || version
                .chars()
                .any(|c| c.is_control() || c == '"' || c == '\\'))
    {
        problem(
            "software_version",
            "must be 1-128 printable characters without quotes or backslashes".into(),
        );
    }
    problems
}

/// The groups among `groups` that do not exist, or are dynamic (their members come from
/// their query), each with what is wrong.
async fn check_groups(
    state: &AppState,
    groups: &BTreeSet<String>,
) -> Result<Vec<(String, String)>, ApiError> {
    let mut bad = Vec::new();
    for group in groups {
        match state
            .iot
            .sdk()
            .describe_thing_group()
            .thing_group_name(group)
            .send()
            .await
            .map_err(IotError::from_sdk)
        {
            Ok(described) if described.query_string.is_some() => bad.push((
                group.clone(),
                format!("{group} is a dynamic group: its query decides its members"),
            )),
            Ok(_) => {}
            Err(IotError::NotFound(_)) => {
                bad.push((group.clone(), format!("there is no thing group {group}")));
            }
            Err(other) => return Err(other.into()),
        }
    }
    Ok(bad)
}

/// Whether thing `name` is registered.
async fn thing_exists(state: &AppState, name: &str) -> Result<bool, ApiError> {
    match state
        .iot
        .sdk()
        .describe_thing()
        .thing_name(name)
        .send()
        .await
        .map_err(IotError::from_sdk)
    {
        Ok(_) => Ok(true),
        Err(IotError::NotFound(_)) => Ok(false),
        Err(other) => Err(other.into()),
    }
}

/// Creates [`DEVICE_POLICY`] if it does not exist yet.
async fn ensure_device_policy(state: &AppState) -> Result<(), ApiError> {
    let sdk = state.iot.sdk();
    match sdk
        .get_policy()
        .policy_name(DEVICE_POLICY)
        .send()
        .await
        .map_err(IotError::from_sdk)
    {
        Ok(_) => return Ok(()),
        Err(IotError::NotFound(_)) => {}
        Err(other) => return Err(other.into()),
    }
    let document = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "iot:Connect",
             "Resource": "arn:aws:iot:*:*:client/${iot:ClientId}"},
            {"Effect": "Allow", "Action": ["iot:Publish", "iot:Receive"],
             "Resource": "arn:aws:iot:*:*:topic/$aws/things/${iot:ClientId}/*"},
            {"Effect": "Allow", "Action": "iot:Subscribe",
             "Resource": "arn:aws:iot:*:*:topicfilter/$aws/things/${iot:ClientId}/*"}
        ]
    });
    match sdk
        .create_policy()
        .policy_name(DEVICE_POLICY)
        .policy_document(document.to_string())
        .send()
        .await
        .map_err(IotError::from_sdk)
    {
        // Another request created it meanwhile.
        Ok(_) | Err(IotError::AlreadyExists(_)) => Ok(()),
        Err(other) => Err(other.into()),
    }
}

/// Registers one checked device and stores its bundle.
async fn register_one(
    state: &AppState,
    device: &RegisterDevice,
) -> Result<RegisteredDevice, ApiError> {
    let sdk = state.iot.sdk();
    let mut attributes = aws_sdk_iot::types::AttributePayload::builder();
    for (key, value) in &device.attributes {
        attributes = attributes.attributes(key, value);
    }
    sdk.create_thing()
        .thing_name(&device.name)
        .set_thing_type_name(device.thing_type.clone())
        .attribute_payload(attributes.build())
        .send()
        .await
        .map_err(IotError::from_sdk)?;
    let issued = async {
        let keys = sdk
            .create_keys_and_certificate()
            .set_as_active(true)
            .send()
            .await
            .map_err(IotError::from_sdk)?;
        let (Some(certificate_id), Some(certificate_arn), Some(certificate_pem), Some(key)) = (
            keys.certificate_id,
            keys.certificate_arn,
            keys.certificate_pem,
            keys.key_pair.and_then(|k| k.private_key),
        ) else {
            return Err(ApiError::from(IotError::Upstream(
                "CreateKeysAndCertificate answered without a certificate or key".into(),
            )));
        };
        sdk.attach_thing_principal()
            .thing_name(&device.name)
            .principal(&certificate_arn)
            .send()
            .await
            .map_err(IotError::from_sdk)?;
        sdk.attach_policy()
            .policy_name(DEVICE_POLICY)
            .target(&certificate_arn)
            .send()
            .await
            .map_err(IotError::from_sdk)?;
        for group in &device.groups {
            sdk.add_thing_to_thing_group()
                .thing_group_name(group)
                .thing_name(&device.name)
                .send()
                .await
                .map_err(IotError::from_sdk)?;
        }
        Ok::<_, ApiError>((certificate_id, certificate_pem, key))
    }
    .await;
    let (certificate_id, certificate_pem, private_key_pem) = match issued {
        Ok(issued) => issued,
        Err(error) => {
            // Leave no half-registered thing behind (its certificate, if any, stays
            // unattached and can be deleted by an administrator).
            let _ = sdk.delete_thing().thing_name(&device.name).send().await;
            return Err(error);
        }
    };
    let (endpoint, port) = endpoint(state).await?;
    let mut config = format!(
        "thing_name = \"{}\"\nendpoint = \"{endpoint}\"\nport = {port}\n\
         certificate = \"device.pem.crt\"\nprivate_key = \"private.pem.key\"\nca = \"ca.pem\"\n",
        device.name
    );
    if let Some(version) = &device.software_version {
        config.push_str(&format!("software_version = \"{version}\"\n"));
    }
    let bundle = DeviceBundle {
        thing_name: device.name.clone(),
        certificate_id: certificate_id.clone(),
        certificate_pem,
        private_key_pem,
        ca_certificate_pem: state.enrolment.ca_certificate_pem.clone(),
        ca_url: state
            .enrolment
            .ca_certificate_pem
            .is_none()
            .then(|| AWS_ROOT_CA_URL.to_owned()),
        endpoint,
        port,
        agent_config: config,
    };
    let token = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let expires_at = Utc::now() + Duration::hours(BUNDLE_HOURS);
    sqlx::query(
        "insert into server.device_bundles (token, thing_name, bundle, expires_at)
         values ($1, $2, $3, $4)",
    )
    .bind(&token)
    .bind(&device.name)
    .bind(serde_json::to_value(&bundle).unwrap_or_default())
    .bind(expires_at)
    .execute(&state.pool)
    .await?;
    // The inventory knows the device at once. A resync that read the thing before it joined
    // its groups may have inserted it first: what registration just did is newer.
    sqlx::query(
        "insert into server.devices (thing_name, thing_type_name, attributes, groups)
         values ($1, $2, $3, $4)
         on conflict (thing_name) do update
         set thing_type_name = excluded.thing_type_name, attributes = excluded.attributes,
             groups = excluded.groups",
    )
    .bind(&device.name)
    .bind(&device.thing_type)
    .bind(serde_json::to_value(&device.attributes).unwrap_or_default())
    .bind(with_ancestors(state, &device.groups).await?)
    .execute(&state.pool)
    .await?;
    tracing::info!(thing = %device.name, certificate.id = %certificate_id, "registered device {}", device.name);
    Ok(RegisteredDevice {
        name: device.name.clone(),
        certificate_id,
        bundle_token: token,
        bundle_expires_at: rfc3339(expires_at),
    })
}

/// `groups` and all their ancestors, sorted.
async fn with_ancestors(state: &AppState, groups: &[String]) -> Result<Vec<String>, ApiError> {
    let mut all = BTreeSet::new();
    for group in groups {
        let described = state
            .iot
            .sdk()
            .describe_thing_group()
            .thing_group_name(group)
            .send()
            .await
            .map_err(IotError::from_sdk)?;
        all.insert(group.clone());
        if let Some(metadata) = described.thing_group_metadata {
            for ancestor in metadata.root_to_parent_thing_groups.unwrap_or_default() {
                if let Some(name) = ancestor.group_name {
                    all.insert(name);
                }
            }
        }
    }
    Ok(all.into_iter().collect())
}

/// Where devices connect: the data endpoint's host and port (8883 unless it names one).
async fn endpoint(state: &AppState) -> Result<(String, u16), ApiError> {
    let address = state.iot.data_endpoint().await?;
    Ok(match address.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => {
            let host = if host == "0.0.0.0" { "127.0.0.1" } else { host };
            (host.to_owned(), port.parse().unwrap_or(8883))
        }
        _ => (address, 8883),
    })
}

/// `POST /devices`: registers a device and hands out a one-time bundle.
#[utoipa::path(post, path = "/api/v1/devices", operation_id = "register_device", tag = "inventory", request_body = RegisterDevice,
    responses((status = 201, description = "Registered; fetch the bundle once", body = RegisteredDevice), ApiError))]
pub(super) async fn register(
    State(state): State<AppState>,
    ApiJson(device): ApiJson<RegisterDevice>,
) -> Result<(StatusCode, Json<RegisteredDevice>), ApiError> {
    let mut problems = check_registration(&device, "");
    let groups: BTreeSet<String> = device.groups.iter().cloned().collect();
    if problems.is_empty() {
        for (_, message) in check_groups(&state, &groups).await? {
            problems.push(FieldError {
                field: "groups".into(),
                message,
            });
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::fields(problems));
    }
    if thing_exists(&state, &device.name).await? {
        return Err(ApiError::Conflict(format!(
            "a device named {} is already registered",
            device.name
        )));
    }
    ensure_device_policy(&state).await?;
    let registered = register_one(&state, &device).await?;
    Ok((StatusCode::CREATED, Json(registered)))
}

/// One CSV record: its fields, and the line it starts on.
type Record = (usize, Vec<String>);

/// Splits CSV text (RFC 4180: quoted fields with `""` for a quote, CRLF or LF) into records;
/// an unterminated quote is an error at its line.
fn parse_csv(text: &str) -> Result<Vec<Record>, FieldError> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let (mut line, mut start) = (1, 1);
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => {
                if c == '\n' {
                    line += 1;
                }
                field.push(c);
            }
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\r') if chars.peek() == Some(&'\n') => {}
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                if !(record.len() == 1 && record[0].is_empty()) {
                    records.push((start, std::mem::take(&mut record)));
                }
                record.clear();
                line += 1;
                start = line;
            }
            (false, c) => field.push(c),
        }
    }
    if quoted {
        return Err(FieldError {
            field: format!("line {start}"),
            message: "a quoted field is not closed".into(),
        });
    }
    if !field.is_empty() || !record.is_empty() {
        record.push(field);
        records.push((start, record));
    }
    Ok(records)
}

/// The columns a CSV import knows; `name` is required.
const COLUMNS: [&str; 5] = [
    "name",
    "thing_type",
    "attributes",
    "groups",
    "software_version",
];

/// Reads the rows of a CSV import into registrations, or every problem found.
fn import_rows(text: &str) -> Result<Vec<(usize, RegisterDevice)>, Vec<FieldError>> {
    let records = parse_csv(text).map_err(|e| vec![e])?;
    let Some(((_, header), rows)) = records.split_first() else {
        return Err(vec![FieldError {
            field: "line 1".into(),
            message: "the file is empty; the first line names the columns".into(),
        }]);
    };
    let mut problems = Vec::new();
    let columns: Vec<String> = header.iter().map(|c| c.trim().to_owned()).collect();
    for column in &columns {
        if !COLUMNS.contains(&column.as_str()) {
            problems.push(FieldError {
                field: format!("line 1.{column}"),
                message: format!("unknown column; the columns are {}", COLUMNS.join(", ")),
            });
        }
    }
    if !columns.iter().any(|c| c == "name") {
        problems.push(FieldError {
            field: "line 1".into(),
            message: "a name column is required".into(),
        });
    }
    if rows.len() > MAX_IMPORT_ROWS {
        problems.push(FieldError {
            field: "file".into(),
            message: format!("at most {MAX_IMPORT_ROWS} rows per import"),
        });
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut devices = Vec::with_capacity(rows.len());
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (line, values) in rows {
        let prefix = format!("line {line}.");
        if values.len() != columns.len() {
            problems.push(FieldError {
                field: format!("line {line}"),
                message: format!(
                    "{} fields where the header has {}",
                    values.len(),
                    columns.len()
                ),
            });
            continue;
        }
        let mut device = RegisterDevice::default();
        for (column, value) in columns.iter().zip(values) {
            let value = value.trim();
            match column.as_str() {
                "name" => device.name = value.to_owned(),
                "thing_type" => {
                    device.thing_type = Some(value.to_owned()).filter(|v| !v.is_empty())
                }
                "software_version" => {
                    device.software_version = Some(value.to_owned()).filter(|v| !v.is_empty());
                }
                "groups" => {
                    device.groups = value
                        .split(';')
                        .map(str::trim)
                        .filter(|g| !g.is_empty())
                        .map(str::to_owned)
                        .collect();
                }
                _ => {
                    for pair in value.split(';').map(str::trim).filter(|p| !p.is_empty()) {
                        match pair.split_once('=') {
                            Some((key, value)) => {
                                device
                                    .attributes
                                    .insert(key.trim().to_owned(), value.trim().to_owned());
                            }
                            None => problems.push(FieldError {
                                field: format!("{prefix}attributes"),
                                message: format!("{pair:?} is not key=value"),
                            }),
                        }
                    }
                }
            }
        }
        problems.extend(check_registration(&device, &prefix));
        if let Some(first) = seen.insert(device.name.clone(), *line) {
            problems.push(FieldError {
                field: format!("{prefix}name"),
                message: format!("{} is also on line {first}", device.name),
            });
        }
        devices.push((*line, device));
    }
    if problems.is_empty() {
        Ok(devices)
    } else {
        Err(problems)
    }
}

/// `POST /devices/import`: registers every row of a CSV file (`text/csv`; columns `name`,
/// `thing_type`, `attributes` as `key=value;…`, `groups` as `a;b`, `software_version`). A file
/// with a bad row, a duplicate name, an unknown group or an already registered name is
/// refused with every problem by line and nothing is registered; otherwise each row's result
/// is reported.
#[utoipa::path(post, path = "/api/v1/devices/import", operation_id = "import_devices", tag = "inventory",
    request_body(content = String, content_type = "text/csv", description = "The devices, one per line after a header line"),
    responses((status = 200, description = "Each row's result, in file order", body = ImportResult), ApiError))]
pub(super) async fn import(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Json<ImportResult>, ApiError> {
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::field("file", "the file must be UTF-8 text"))?;
    let devices = import_rows(text).map_err(ApiError::fields)?;
    // Groups and names against the registry, before anything is created.
    let groups: BTreeSet<String> = devices
        .iter()
        .flat_map(|(_, d)| d.groups.iter().cloned())
        .collect();
    let bad_groups = check_groups(&state, &groups).await?;
    let mut problems: Vec<FieldError> = Vec::new();
    for (line, device) in &devices {
        for (group, message) in &bad_groups {
            if device.groups.contains(group) {
                problems.push(FieldError {
                    field: format!("line {line}.groups"),
                    message: message.clone(),
                });
            }
        }
    }
    // Owned items and a cloned state: the handler's future must be Send, which borrowed
    // closures in a stream do not manage.
    let names: Vec<(usize, String)> = devices
        .iter()
        .map(|(line, device)| (*line, device.name.clone()))
        .collect();
    let existing: Vec<(usize, bool)> = futures::stream::iter(names)
        .map(|(line, name)| {
            let state = state.clone();
            async move { (line, thing_exists(&state, &name).await) }
        })
        .buffered(8)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .map(|(line, exists)| exists.map(|e| (line, e)))
        .collect::<Result<_, _>>()?;
    for (line, exists) in existing {
        if exists {
            problems.push(FieldError {
                field: format!("line {line}.name"),
                message: "a device with this name is already registered".into(),
            });
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::fields(problems));
    }
    ensure_device_policy(&state).await?;
    let rows: Vec<ImportedRow> = futures::stream::iter(devices)
        .map(|(line, device)| {
            let state = state.clone();
            async move {
                match register_one(&state, &device).await {
                    Ok(registered) => ImportedRow {
                        line,
                        name: device.name.clone(),
                        status: "created".into(),
                        message: None,
                        certificate_id: Some(registered.certificate_id),
                        bundle_token: Some(registered.bundle_token),
                    },
                    Err(error) => ImportedRow {
                        line,
                        name: device.name.clone(),
                        status: "failed".into(),
                        message: Some(match &error {
                            ApiError::Database(_) => "internal error".into(),
                            other => other.to_string(),
                        }),
                        certificate_id: None,
                        bundle_token: None,
                    },
                }
            }
        })
        .buffered(IMPORT_CONCURRENCY)
        .collect()
        .await;
    let created = rows.iter().filter(|r| r.status == "created").count();
    tracing::info!(
        created,
        rows = rows.len(),
        "imported {created} of {} devices",
        rows.len()
    );
    Ok(Json(ImportResult {
        created,
        failed: rows.len() - created,
        rows,
    }))
}

/// `GET /device-bundles/{token}`: the bundle, once; afterwards (or after a day) it is gone.
#[utoipa::path(get, path = "/api/v1/device-bundles/{token}", operation_id = "device_bundle", tag = "inventory",
    params(("token" = String, Path, description = "The registration's bundle token")),
    responses((status = 200, description = "The device's credentials and agent configuration", body = DeviceBundle), ApiError))]
pub(super) async fn bundle(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Json<DeviceBundle>, ApiError> {
    let bundle: Option<serde_json::Value> = sqlx::query_scalar(
        "delete from server.device_bundles where token = $1 and expires_at > now()
         returning bundle",
    )
    .bind(&token)
    .fetch_optional(&state.pool)
    .await?;
    let bundle = bundle.ok_or_else(|| {
        ApiError::NotFound("no such bundle: it was downloaded already or has expired".into())
    })?;
    serde_json::from_value(bundle)
        .map(Json)
        .map_err(|error| ApiError::Unavailable(format!("the stored bundle is unreadable: {error}")))
}

/// The certificates attached to `thing`, with their status.
async fn thing_certificates(
    state: &AppState,
    thing: &str,
) -> Result<Vec<DeviceCertificate>, ApiError> {
    let sdk = state.iot.sdk();
    let principals = sdk
        .list_thing_principals()
        .thing_name(thing)
        .send()
        .await
        .map_err(IotError::from_sdk)?
        .principals
        .unwrap_or_default();
    let mut certificates = Vec::new();
    for principal in principals {
        let Some((_, id)) = principal.rsplit_once("cert/") else {
            continue;
        };
        let described = sdk
            .describe_certificate()
            .certificate_id(id)
            .send()
            .await
            .map_err(IotError::from_sdk)?;
        let description = described.certificate_description;
        certificates.push(DeviceCertificate {
            certificate_id: id.to_owned(),
            status: description
                .as_ref()
                .and_then(|d| d.status.as_ref())
                .map(|s| s.as_str().to_owned())
                .unwrap_or_default(),
            created_at: description
                .as_ref()
                .and_then(|d| time(d.creation_date.as_ref()))
                .map(rfc3339),
        });
    }
    Ok(certificates)
}

/// `GET /devices/{thing_name}/certificates`: the device's certificates (from IoT).
#[utoipa::path(get, path = "/api/v1/devices/{thing_name}/certificates", operation_id = "device_certificates", tag = "inventory",
    params(("thing_name" = String, Path, description = "The device (thing)")),
    responses((status = 200, description = "The device's certificates", body = DeviceCertificates), ApiError))]
pub(super) async fn certificates(
    State(state): State<AppState>,
    Path(thing_name): Path<String>,
) -> Result<Json<DeviceCertificates>, ApiError> {
    Ok(Json(DeviceCertificates {
        certificates: thing_certificates(&state, &thing_name).await?,
    }))
}

/// `POST /devices/{thing_name}/revoke`: revokes every certificate of the device, which then
/// cannot connect with them.
#[utoipa::path(post, path = "/api/v1/devices/{thing_name}/revoke", operation_id = "revoke_device", tag = "inventory",
    params(("thing_name" = String, Path, description = "The device (thing)")),
    responses((status = 200, description = "The device's certificates after revocation", body = DeviceCertificates), ApiError))]
pub(super) async fn revoke(
    State(state): State<AppState>,
    Path(thing_name): Path<String>,
) -> Result<Json<DeviceCertificates>, ApiError> {
    let sdk = state.iot.sdk();
    for certificate in thing_certificates(&state, &thing_name).await? {
        if certificate.status != "REVOKED" {
            sdk.update_certificate()
                .certificate_id(&certificate.certificate_id)
                .new_status(aws_sdk_iot::types::CertificateStatus::Revoked)
                .send()
                .await
                .map_err(IotError::from_sdk)?;
            tracing::info!(thing = %thing_name, certificate.id = %certificate.certificate_id, "revoked certificate {} of {thing_name}", certificate.certificate_id);
        }
    }
    Ok(Json(DeviceCertificates {
        certificates: thing_certificates(&state, &thing_name).await?,
    }))
}

/// `POST /thing-groups`: a static group, or a dynamic one when `query` is given. The query is
/// checked against the query language the dashboard offers before IoT sees it.
#[utoipa::path(post, path = "/api/v1/thing-groups", operation_id = "create_thing_group", tag = "fleet", request_body = CreateGroup,
    responses((status = 201, description = "Created", body = CreateGroup), ApiError))]
pub(super) async fn create_group(
    State(state): State<AppState>,
    ApiJson(group): ApiJson<CreateGroup>,
) -> Result<(StatusCode, Json<CreateGroup>), ApiError> {
    let mut problems = Vec::new();
    if !valid_name(&group.name) {
        problems.push(FieldError {
            field: "name".into(),
            message: "must be 1-128 characters of letters, digits and :_-".into(),
        });
    }
    if let Some(parent) = &group.parent
        && !valid_name(parent)
    {
        problems.push(FieldError {
            field: "parent".into(),
            message: "must be a group name".into(),
        });
    }
    if let Some(query) = &group.query {
        if group.parent.is_some() {
            problems.push(FieldError {
                field: "parent".into(),
                message: "a dynamic group has no parent".into(),
            });
        }
        if let Err(error) = flotilla_engine::query::Query::parse(query) {
            problems.push(FieldError {
                field: "query".into(),
                message: error.to_string(),
            });
        }
    }
    if group
        .description
        .as_ref()
        .is_some_and(|d| d.chars().count() > 2028 || d.chars().any(char::is_control))
    {
        problems.push(FieldError {
            field: "description".into(),
            message: "at most 2028 printable characters".into(),
        });
    }
    if !problems.is_empty() {
        return Err(ApiError::fields(problems));
    }
    let sdk = state.iot.sdk();
    match sdk
        .describe_thing_group()
        .thing_group_name(&group.name)
        .send()
        .await
        .map_err(IotError::from_sdk)
    {
        Ok(_) => {
            return Err(ApiError::Conflict(format!(
                "a thing group named {} exists already",
                group.name
            )));
        }
        Err(IotError::NotFound(_)) => {}
        Err(other) => return Err(other.into()),
    }
    let properties = aws_sdk_iot::types::ThingGroupProperties::builder()
        .set_thing_group_description(group.description.clone())
        .build();
    match &group.query {
        Some(query) => {
            sdk.create_dynamic_thing_group()
                .thing_group_name(&group.name)
                .query_string(query)
                .thing_group_properties(properties)
                .send()
                .await
                .map_err(IotError::from_sdk)?;
        }
        None => {
            sdk.create_thing_group()
                .thing_group_name(&group.name)
                .set_parent_group_name(group.parent.clone())
                .thing_group_properties(properties)
                .send()
                .await
                .map_err(IotError::from_sdk)?;
        }
    }
    Ok((StatusCode::CREATED, Json(group)))
}

/// `DELETE /thing-groups/{group_name}`: refused while a job that has not finished targets
/// it, or while it has child groups.
#[utoipa::path(delete, path = "/api/v1/thing-groups/{group_name}", operation_id = "delete_thing_group", tag = "fleet",
    params(("group_name" = String, Path, description = "The thing group")),
    responses((status = 204, description = "Deleted"), ApiError))]
pub(super) async fn delete_group(
    State(state): State<AppState>,
    Path(group_name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let running: Vec<String> = sqlx::query_scalar(
        "select job_id from server.jobs
         where status in ('IN_PROGRESS', 'SCHEDULED')
           and exists (select 1 from unnest(targets) t where t like '%:thinggroup/' || $1)
         order by job_id limit 5",
    )
    .bind(&group_name)
    .fetch_all(&state.pool)
    .await?;
    if !running.is_empty() {
        return Err(ApiError::Conflict(format!(
            "thing group {group_name} is the target of jobs that have not finished: {}",
            running.join(", ")
        )));
    }
    let sdk = state.iot.sdk();
    let described = sdk
        .describe_thing_group()
        .thing_group_name(&group_name)
        .send()
        .await
        .map_err(IotError::from_sdk)?;
    if described.query_string.is_some() {
        sdk.delete_dynamic_thing_group()
            .thing_group_name(&group_name)
            .send()
            .await
            .map_err(IotError::from_sdk)?;
    } else {
        sdk.delete_thing_group()
            .thing_group_name(&group_name)
            .send()
            .await
            .map_err(IotError::from_sdk)?;
    }
    // The inventory forgets the group (descendants were refused above, so it is a leaf).
    sqlx::query(
        "update server.devices set groups = array_remove(groups, $1) where groups @> array[$1]",
    )
    .bind(&group_name)
    .execute(&state.pool)
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /thing-groups/{group_name}/members`: adds the named things and every device a search
/// finds (at most 10,000). Unknown things are refused by name before anything changes.
#[utoipa::path(post, path = "/api/v1/thing-groups/{group_name}/members", operation_id = "add_group_members", tag = "fleet",
    params(("group_name" = String, Path, description = "A static thing group")),
    request_body = AddMembers,
    responses((status = 200, description = "The things added", body = MembersChanged), ApiError))]
pub(super) async fn add_members(
    State(state): State<AppState>,
    Path(group_name): Path<String>,
    ApiJson(request): ApiJson<AddMembers>,
) -> Result<Json<MembersChanged>, ApiError> {
    let mut things: BTreeSet<String> = BTreeSet::new();
    let mut problems = Vec::new();
    for (index, thing) in request.things.iter().enumerate() {
        if valid_name(thing) {
            things.insert(thing.clone());
        } else {
            problems.push(FieldError {
                field: format!("things[{index}]"),
                message: format!("{thing:?} is not a thing name"),
            });
        }
    }
    if let Some(filters) = &request.search {
        let query: HashMap<String, String> = filters
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "after" | "limit"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        match DeviceSearch::from_query(&query) {
            Ok(mut found) => {
                found.limit = MAX_SEARCH_MEMBERS;
                let (devices, more) = search(&state.pool, &found).await?;
                if more.is_some() {
                    problems.push(FieldError {
                        field: "search".into(),
                        message: format!(
                            "the search finds more than {MAX_SEARCH_MEMBERS} devices; narrow it"
                        ),
                    });
                }
                things.extend(devices.into_iter().map(|d| d.name));
            }
            Err(ApiError::Invalid { fields, .. }) => {
                problems.extend(fields.into_iter().map(|f| FieldError {
                    field: format!("search.{}", f.field),
                    message: f.message,
                }));
            }
            Err(other) => return Err(other),
        }
    }
    if things.is_empty() && problems.is_empty() {
        problems.push(FieldError {
            field: "things".into(),
            message: "name at least one thing, or a search that finds some".into(),
        });
    }
    if problems.is_empty() {
        let single: BTreeSet<String> = [group_name.clone()].into();
        for (_, message) in check_groups(&state, &single).await? {
            problems.push(FieldError {
                field: "group_name".into(),
                message,
            });
        }
    }
    if problems.is_empty() {
        for (index, thing) in request.things.iter().enumerate() {
            if !thing_exists(&state, thing).await? {
                problems.push(FieldError {
                    field: format!("things[{index}]"),
                    message: format!("there is no thing {thing}"),
                });
            }
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::fields(problems));
    }
    let things: Vec<String> = things.into_iter().collect();
    let sdk = state.iot.sdk();
    for thing in &things {
        sdk.add_thing_to_thing_group()
            .thing_group_name(&group_name)
            .thing_name(thing)
            .send()
            .await
            .map_err(IotError::from_sdk)?;
    }
    let groups = with_ancestors(&state, std::slice::from_ref(&group_name)).await?;
    sqlx::query(
        "update server.devices
         set groups = array(select distinct g from unnest(groups || $2::text[]) g order by g)
         where thing_name = any($1)",
    )
    .bind(&things)
    .bind(&groups)
    .execute(&state.pool)
    .await?;
    Ok(Json(MembersChanged {
        group: group_name,
        things,
    }))
}

/// `DELETE /thing-groups/{group_name}/members/{thing_name}`.
#[utoipa::path(delete, path = "/api/v1/thing-groups/{group_name}/members/{thing_name}", operation_id = "remove_group_member", tag = "fleet",
    params(("group_name" = String, Path, description = "A static thing group"),
        ("thing_name" = String, Path, description = "A member")),
    responses((status = 204, description = "Removed (or was not a member)"), ApiError))]
pub(super) async fn remove_member(
    State(state): State<AppState>,
    Path((group_name, thing_name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let sdk = state.iot.sdk();
    sdk.remove_thing_from_thing_group()
        .thing_group_name(&group_name)
        .thing_name(&thing_name)
        .send()
        .await
        .map_err(IotError::from_sdk)?;
    // The thing's groups as IoT now has them, with their ancestors.
    let direct: Vec<String> = sdk
        .list_thing_groups_for_thing()
        .thing_name(&thing_name)
        .send()
        .await
        .map_err(IotError::from_sdk)?
        .thing_groups
        .unwrap_or_default()
        .into_iter()
        .filter_map(|g| g.group_name)
        .collect();
    let groups = with_ancestors(&state, &direct).await?;
    sqlx::query("update server.devices set groups = $2 where thing_name = $1")
        .bind(&thing_name)
        .bind(&groups)
        .execute(&state.pool)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_records_keep_quotes_commas_and_line_numbers() {
        let text = "name,attributes\r\n\"a,1\",\"site=x;note=say \"\"hi\"\"\"\n\nb,\n";
        let records = parse_csv(text).expect("valid CSV");
        assert_eq!(
            records,
            vec![
                (1, vec!["name".to_owned(), "attributes".to_owned()]),
                (
                    2,
                    vec!["a,1".to_owned(), "site=x;note=say \"hi\"".to_owned()]
                ),
                (4, vec!["b".to_owned(), String::new()]),
            ]
        );
        assert!(parse_csv("name\n\"open\n").is_err());
    }

    #[test]
    fn import_rows_report_every_problem_by_line() {
        let rows = import_rows("name,attributes,groups\nd-1,site=berlin;hw=2,eu;lab\nd-2,,\n")
            .expect("valid rows");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].1.groups, ["eu", "lab"]);
        assert_eq!(
            rows[0].1.attributes.get("hw").map(String::as_str),
            Some("2")
        );
        let problems =
            import_rows("name,attributes,colour\nbad name,x,1\n").expect_err("bad header");
        assert_eq!(problems[0].field, "line 1.colour");
        let problems = import_rows("name,attributes\nbad name,x\nd-1,a=b\nd-1,a=b\nd-3\n")
            .expect_err("bad rows");
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            ["line 2.attributes", "line 2.name", "line 4.name", "line 5"]
        );
    }
}
