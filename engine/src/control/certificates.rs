//! Certificates and principals: CreateKeysAndCertificate, CreateCertificateFromCsr,
//! DescribeCertificate, ListCertificates, UpdateCertificate, DeleteCertificate,
//! AttachThingPrincipal, DetachThingPrincipal, ListThingPrincipals; and DescribeEndpoint, which
//! names the broker's TLS listener devices connect to with those certificates.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::jobs::{QueryMap, max_results, query_bool, query_long};
use super::{AwsError, ControlState, after_name, body, epoch, name_token};
use crate::certificates::{CertificateError, CertificateRow};

pub(super) fn router() -> Router<ControlState> {
    Router::new()
        .route("/keys-and-certificate", post(create_keys_and_certificate))
        .route(
            "/certificates",
            post(create_certificate_from_csr).get(list_certificates),
        )
        .route(
            "/certificates/{certificate_id}",
            get(describe_certificate)
                .put(update_certificate)
                .delete(delete_certificate),
        )
        .route(
            "/things/{thing_name}/principals",
            get(list_thing_principals)
                .put(attach_thing_principal)
                .delete(detach_thing_principal),
        )
        .route("/endpoint", get(describe_endpoint))
}

impl From<CertificateError> for AwsError {
    fn from(error: CertificateError) -> Self {
        let message = error.to_string();
        let (status, error_type) = match error {
            CertificateError::Invalid(_) => (StatusCode::BAD_REQUEST, "InvalidRequestException"),
            CertificateError::NotFound(_) => (StatusCode::NOT_FOUND, "ResourceNotFoundException"),
            CertificateError::State(_) => (StatusCode::NOT_ACCEPTABLE, "CertificateStateException"),
            CertificateError::Malformed(_) => (StatusCode::BAD_REQUEST, "MalformedPolicyException"),
            CertificateError::AlreadyExists(_) => {
                (StatusCode::CONFLICT, "ResourceAlreadyExistsException")
            }
            CertificateError::DeleteConflict(_) => {
                (StatusCode::CONFLICT, "DeleteConflictException")
            }
            CertificateError::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalFailureException",
            ),
        };
        AwsError::new(status, error_type, message)
    }
}

fn set_as_active(query: &QueryMap) -> Result<bool, AwsError> {
    Ok(query_bool(query, "setAsActive")?.unwrap_or(false))
}

async fn create_keys_and_certificate(
    State(state): State<ControlState>,
    Query(query): Query<QueryMap>,
) -> Result<Json<Value>, AwsError> {
    let issued = state
        .certificates
        .create_keys_and_certificate(set_as_active(&query)?)
        .await?;
    let certificate = &issued.certificate;
    Ok(Json(json!({
        "certificateArn": state.certificates.arn(&certificate.certificate_id),
        "certificateId": certificate.certificate_id,
        "certificatePem": certificate.certificate_pem,
        "keyPair": {
            "PublicKey": issued.public_key_pem,
            "PrivateKey": issued.private_key_pem,
        },
    })))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateCertificateFromCsrRequest {
    certificate_signing_request: Option<String>,
}

async fn create_certificate_from_csr(
    State(state): State<ControlState>,
    Query(query): Query<QueryMap>,
    bytes: Bytes,
) -> Result<Json<Value>, AwsError> {
    let request: CreateCertificateFromCsrRequest = body(&bytes)?;
    let csr = request
        .certificate_signing_request
        .ok_or_else(|| AwsError::invalid("certificateSigningRequest is required"))?;
    let certificate = state
        .certificates
        .create_from_csr(&csr, set_as_active(&query)?)
        .await?;
    Ok(Json(json!({
        "certificateArn": state.certificates.arn(&certificate.certificate_id),
        "certificateId": certificate.certificate_id,
        "certificatePem": certificate.certificate_pem,
    })))
}

async fn describe_certificate(
    State(state): State<ControlState>,
    Path(certificate_id): Path<String>,
) -> Result<Json<Value>, AwsError> {
    let certificate = state.certificates.describe(&certificate_id).await?;
    Ok(Json(json!({
        "certificateDescription": {
            "certificateArn": state.certificates.arn(&certificate.certificate_id),
            "certificateId": certificate.certificate_id,
            "status": certificate.status,
            "certificatePem": certificate.certificate_pem,
            "ownedBy": state.config.account_id,
            "creationDate": epoch(certificate.created_at),
            "lastModifiedDate": epoch(certificate.last_modified_at),
            "customerVersion": 1,
            "generationId": certificate.generation_id.to_string(),
            "validity": {
                "notBefore": epoch(certificate.not_before),
                "notAfter": epoch(certificate.not_after),
            },
            "certificateMode": "DEFAULT",
        },
    })))
}

fn summary(state: &ControlState, certificate: &CertificateRow) -> Value {
    json!({
        "certificateArn": state.certificates.arn(&certificate.certificate_id),
        "certificateId": certificate.certificate_id,
        "status": certificate.status,
        "certificateMode": "DEFAULT",
        "creationDate": epoch(certificate.created_at),
    })
}

/// ListCertificates: `pageSize` (1–250, default 25), `marker`, `isAscendingOrder`.
async fn list_certificates(
    State(state): State<ControlState>,
    Query(query): Query<QueryMap>,
) -> Result<Json<Value>, AwsError> {
    let page_size = query_long(&query, "pageSize")?.unwrap_or(25);
    if !(1..=250).contains(&page_size) {
        return Err(AwsError::invalid(format!(
            "pageSize must be between 1 and 250, got {page_size}"
        )));
    }
    let ascending = query_bool(&query, "isAscendingOrder")?.unwrap_or(false);
    let (rows, next) = state
        .certificates
        .list(
            page_size,
            query.get("marker").map(String::as_str),
            ascending,
        )
        .await?;
    let certificates: Vec<Value> = rows.iter().map(|row| summary(&state, row)).collect();
    let mut output = json!({ "certificates": certificates });
    if let Some(marker) = next {
        output["nextMarker"] = json!(marker);
    }
    Ok(Json(output))
}

/// UpdateCertificate has an empty output.
async fn update_certificate(
    State(state): State<ControlState>,
    Path(certificate_id): Path<String>,
    Query(query): Query<QueryMap>,
) -> Result<Json<Value>, AwsError> {
    let new_status = query
        .get("newStatus")
        .ok_or_else(|| AwsError::invalid("newStatus is required"))?;
    state
        .certificates
        .update(&certificate_id, new_status)
        .await?;
    Ok(Json(json!({})))
}

/// DeleteCertificate has an empty output.
async fn delete_certificate(
    State(state): State<ControlState>,
    Path(certificate_id): Path<String>,
    Query(query): Query<QueryMap>,
) -> Result<Json<Value>, AwsError> {
    let force = query_bool(&query, "forceDelete")?.unwrap_or(false);
    state.certificates.delete(&certificate_id, force).await?;
    Ok(Json(json!({})))
}

/// The principal ARN of Attach/DetachThingPrincipal, sent in the `x-amzn-principal` header.
fn principal(headers: &HeaderMap) -> Result<String, AwsError> {
    headers
        .get("x-amzn-principal")
        .and_then(|value| value.to_str().ok())
        .filter(|value| !value.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| AwsError::invalid("principal (the x-amzn-principal header) is required"))
}

async fn attach_thing_principal(
    State(state): State<ControlState>,
    Path(thing_name): Path<String>,
    Query(query): Query<QueryMap>,
    headers: HeaderMap,
) -> Result<Json<Value>, AwsError> {
    match query.get("thingPrincipalType").map(String::as_str) {
        None | Some("NON_EXCLUSIVE_THING") | Some("EXCLUSIVE_THING") => {}
        Some(other) => {
            return Err(AwsError::invalid(format!(
                "thingPrincipalType must be EXCLUSIVE_THING or NON_EXCLUSIVE_THING, got {other:?}"
            )));
        }
    }
    state
        .certificates
        .attach(&thing_name, &principal(&headers)?)
        .await?;
    Ok(Json(json!({})))
}

async fn detach_thing_principal(
    State(state): State<ControlState>,
    Path(thing_name): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, AwsError> {
    state
        .certificates
        .detach(&thing_name, &principal(&headers)?)
        .await?;
    Ok(Json(json!({})))
}

/// ListThingPrincipals: certificate ARNs in id order, `maxResults` (1–250) per page.
async fn list_thing_principals(
    State(state): State<ControlState>,
    Path(thing_name): Path<String>,
    Query(query): Query<QueryMap>,
) -> Result<Json<Value>, AwsError> {
    let limit = max_results(&query)?;
    let after = after_name(query.get("nextToken"))?;
    let mut ids = state
        .certificates
        .thing_principals(&thing_name, limit + 1, after.as_deref())
        .await?;
    let next = if ids.len() as i64 > limit {
        ids.truncate(limit as usize);
        ids.last().map(|id| name_token(id))
    } else {
        None
    };
    let principals: Vec<String> = ids.iter().map(|id| state.certificates.arn(id)).collect();
    let mut output = json!({ "principals": principals });
    if let Some(token) = next {
        output["nextToken"] = json!(token);
    }
    Ok(Json(output))
}

/// DescribeEndpoint: `iot:Data-ATS` (and the legacy `iot:Data`, the default) is the broker's
/// TLS listener as `host:port`; the engine serves no other endpoint type.
async fn describe_endpoint(
    State(state): State<ControlState>,
    Query(query): Query<QueryMap>,
) -> Result<Json<Value>, AwsError> {
    match query.get("endpointType").map(String::as_str) {
        None | Some("iot:Data") | Some("iot:Data-ATS") => {}
        Some(other) => {
            return Err(AwsError::invalid(format!(
                "endpointType {other:?} is not served by the embedded engine; use iot:Data-ATS"
            )));
        }
    }
    let address = state
        .endpoints
        .mqtts
        .or(state.endpoints.mqtt)
        .ok_or_else(|| AwsError::invalid("the engine runs no MQTT listener"))?;
    Ok(Json(json!({ "endpointAddress": address.to_string() })))
}
