//! The IoT control-plane REST API (restJson1) on the paths, methods and member names of the
//! AWS API model (`iot.json`), so `aws-sdk-iot` with an endpoint override talks to the engine
//! as it talks to AWS.
//!
//! Errors follow restJson1: the HTTP status of the error shape, the shape's name in the
//! `x-amzn-ErrorType` header and `{"message": …}` as the body. Timestamps are epoch seconds.
//!
//! Every request must carry a valid AWS Signature Version 4 for the configured access key,
//! region and the `iot` service ([`sigv4`]).

mod certificates;
mod event_config;
mod executions;
mod groups;
mod jobs;
mod policies;
mod sigv4;
mod templates;
mod things;

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{OriginalUri, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::EngineConfig;
use crate::jobs::{ErrorKind, Jobs, ServiceError};

/// What the control-plane handlers share.
#[derive(Clone)]
pub struct ControlState {
    pub jobs: Arc<Jobs>,
    pub config: Arc<EngineConfig>,
    pub certificates: Arc<crate::certificates::Certificates>,
    pub policies: crate::policies::Policies,
    pub endpoints: Endpoints,
}

/// The broker's listeners, as DescribeEndpoint reports them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Endpoints {
    pub mqtt: Option<std::net::SocketAddr>,
    pub mqtts: Option<std::net::SocketAddr>,
}

/// The control-plane router.
pub fn router(state: ControlState) -> Router {
    Router::new()
        .merge(things::router())
        .merge(jobs::router())
        .merge(templates::router())
        .merge(groups::router())
        .merge(executions::router())
        .merge(event_config::router())
        .merge(certificates::router())
        .merge(policies::router())
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .with_state(state)
}

/// A restJson1 error response.
#[derive(Debug)]
pub struct AwsError {
    status: StatusCode,
    error_type: &'static str,
    message: String,
}

impl AwsError {
    fn new(status: StatusCode, error_type: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            error_type,
            message: message.into(),
        }
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "InvalidRequestException", message)
    }
}

impl From<ServiceError> for AwsError {
    fn from(error: ServiceError) -> Self {
        let (status, error_type) = match error.kind {
            ErrorKind::InvalidRequest => (StatusCode::BAD_REQUEST, "InvalidRequestException"),
            ErrorKind::ResourceNotFound => (StatusCode::NOT_FOUND, "ResourceNotFoundException"),
            ErrorKind::ResourceAlreadyExists => {
                (StatusCode::CONFLICT, "ResourceAlreadyExistsException")
            }
            ErrorKind::Conflict => (StatusCode::CONFLICT, "ConflictException"),
            ErrorKind::VersionMismatch => (StatusCode::CONFLICT, "VersionConflictException"),
            ErrorKind::LimitExceeded => (StatusCode::GONE, "LimitExceededException"),
            ErrorKind::InvalidQuery => (StatusCode::BAD_REQUEST, "InvalidQueryException"),
            ErrorKind::InvalidStateTransition => {
                (StatusCode::CONFLICT, "InvalidStateTransitionException")
            }
            ErrorKind::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalFailureException",
            ),
        };
        Self::new(status, error_type, error.message)
    }
}

impl IntoResponse for AwsError {
    fn into_response(self) -> Response {
        let mut response =
            (self.status, axum::Json(json!({ "message": self.message }))).into_response();
        response.headers_mut().insert(
            "x-amzn-ErrorType",
            HeaderValue::from_static(self.error_type),
        );
        response
    }
}

/// Decodes a JSON request body; an empty body is `{}` as restJson1 allows.
pub(crate) fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, AwsError> {
    let bytes: &[u8] = if bytes.is_empty() { b"{}" } else { bytes };
    serde_json::from_slice(bytes)
        .map_err(|error| AwsError::invalid(format!("invalid request body: {error}")))
}

/// The `nextToken` of a listing in name order: the page's last name, opaque to callers so
/// its format can change.
pub(crate) fn name_token(name: &str) -> String {
    hex::encode(name)
}

/// The name a `nextToken` from [`name_token`] continues after.
pub(crate) fn after_name(token: Option<&String>) -> Result<Option<String>, AwsError> {
    token
        .map(|token| {
            hex::decode(token)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or_else(|| AwsError::invalid("nextToken is not a token this API returned"))
        })
        .transpose()
}

/// Keeps the first `limit` of `rows` (fetched one more than asked, which tells whether
/// another page follows) and returns the `nextToken` of the next page.
pub(crate) fn name_page<T>(
    rows: &mut Vec<T>,
    limit: i64,
    name: impl Fn(&T) -> &str,
) -> Option<String> {
    if rows.len() as i64 <= limit {
        return None;
    }
    rows.truncate(limit as usize);
    rows.last().map(|row| name_token(name(row)))
}

/// Epoch seconds with milliseconds, as restJson1 encodes timestamps.
pub(crate) fn epoch(t: chrono::DateTime<chrono::Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

/// The largest request body the control plane reads. The largest IoT control-plane request,
/// CreateJob with a 32 KiB job document, fits many times over.
const MAX_BODY: usize = 1024 * 1024;

/// Accepts only requests carrying a valid SigV4 signature for the configured access key,
/// region and service, as AWS IoT does. The body is part of the signature, so it is read
/// (up to [`MAX_BODY`]) before the handler runs and handed on unchanged.
///
/// Refusals are `UnauthorizedException` with the status the IoT model gives it (401) and a
/// message saying what was wrong.
async fn authenticate(State(state): State<ControlState>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = match read_body(&parts.headers, body).await {
        Ok(bytes) => bytes,
        Err(error) => return error.into_response(),
    };
    // The signer signed the target as sent; should this router ever be nested, the original
    // URI is still that target.
    let uri = parts
        .extensions
        .get::<OriginalUri>()
        .map_or(&parts.uri, |original| &original.0);
    let received = sigv4::Received {
        method: parts.method.as_str(),
        uri,
        headers: &parts.headers,
        body: &bytes,
    };
    let trust = sigv4::Trust {
        access_key_id: &state.config.access_key_id,
        secret_access_key: &state.config.secret_access_key,
        region: &state.config.region,
        service: sigv4::SERVICE,
    };
    if let Err(refusal) = sigv4::verify(&received, &trust, chrono::Utc::now()) {
        let message = refusal.to_string();
        let reason = message.lines().next().unwrap_or_default();
        tracing::warn!(
            http.method = %parts.method,
            http.path = uri.path(),
            reason,
            "refused a control-plane request to {} {}: {reason}",
            parts.method,
            uri.path()
        );
        return AwsError::new(StatusCode::UNAUTHORIZED, "UnauthorizedException", message)
            .into_response();
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// Reads a request body of at most [`MAX_BODY`] bytes; anything larger is refused with 413
/// before or while it arrives.
async fn read_body(headers: &HeaderMap, body: Body) -> Result<Bytes, AwsError> {
    let too_large = || {
        AwsError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "InvalidRequestException",
            format!("The request body is larger than the limit of {MAX_BODY} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_BODY as u64) {
        return Err(too_large());
    }
    let mut stream = body.into_data_stream();
    let mut buffer = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|error| {
            AwsError::invalid(format!("could not read the request body: {error}"))
        })?;
        if buffer.len() + chunk.len() > MAX_BODY {
            return Err(too_large());
        }
        buffer.extend_from_slice(&chunk);
    }
    Ok(buffer.freeze())
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::SystemTime;

    use aws_credential_types::Credentials;
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    use aws_sigv4::sign::v4;
    use axum::routing::post;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::broker::Broker;

    const SECRET: &str = "middleware-test-secret";

    fn config() -> EngineConfig {
        EngineConfig {
            region: "eu-central-1".into(),
            account_id: "000000000000".into(),
            access_key_id: "FLOTILLALOCAL".into(),
            secret_access_key: SECRET.into(),
            service_username: "service".into(),
            service_password: "service".into(),
            device_token_secret: None,
            // The middleware never reaches the store.
            artifact_dir: std::env::temp_dir(),
        }
    }

    /// Serves the real middleware in front of a handler that echoes the body it receives.
    /// Refused requests never reach the handler, so the pool is never connected.
    async fn serve() -> SocketAddr {
        let config = Arc::new(config());
        let pool = sqlx::postgres::PgPoolOptions::new()
            .connect_lazy("postgres://unused.invalid/unused")
            .expect("a lazy pool");
        let certificates = crate::certificates::Certificates::in_memory(
            pool.clone(),
            crate::model::Arns {
                region: config.region.clone(),
                account_id: config.account_id.clone(),
            },
            Broker::new(),
        )
        .expect("an in-memory certificate authority");
        let state = ControlState {
            jobs: Arc::new(Jobs::new(pool.clone(), config.clone(), Broker::new())),
            policies: crate::policies::Policies::new(
                pool,
                crate::model::Arns {
                    region: config.region.clone(),
                    account_id: config.account_id.clone(),
                },
            ),
            config,
            certificates: Arc::new(certificates),
            endpoints: Endpoints::default(),
        };
        let app = Router::new()
            .route(
                "/things/{thing_name}",
                post(|body: Bytes| async move { body }),
            )
            .layer(middleware::from_fn_with_state(state.clone(), authenticate))
            .with_state(state);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let addr = listener.local_addr().expect("a bound address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    /// The headers `aws-sigv4` adds to sign `POST {target}` with `body` now.
    fn sign_headers(addr: SocketAddr, target: &str, body: &[u8], secret: &str) -> String {
        let config = config();
        let identity = Credentials::new(&config.access_key_id, secret, None, None, "test").into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&config.region)
            .name("iot")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .expect("complete signing params")
            .into();
        let url = format!("http://{addr}{target}");
        let headers = [("content-type", "application/json")];
        let signable = SignableRequest::new(
            "POST",
            &url,
            headers.iter().copied(),
            SignableBody::Bytes(body),
        )
        .expect("a signable request");
        let (instructions, _) = sign(signable, &params).expect("signed").into_parts();
        instructions
            .headers()
            .map(|(name, value)| format!("{name}: {value}\r\n"))
            .collect()
    }

    /// Sends a raw HTTP/1.1 request and returns the response's status, headers and body.
    async fn send(addr: SocketAddr, head: &str, body: &[u8]) -> (u16, String, String) {
        let mut stream = TcpStream::connect(addr).await.expect("connected");
        stream.write_all(head.as_bytes()).await.expect("head sent");
        // A refusal may come before the server has read the whole body.
        let _ = stream.write_all(body).await;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.expect("a response");
        let response = String::from_utf8(response).expect("a text response");
        let (head, body) = response
            .split_once("\r\n\r\n")
            .expect("a complete response");
        let status = head[9..12].parse().expect("a status code");
        (status, head.to_ascii_lowercase(), body.to_owned())
    }

    fn post_head(addr: SocketAddr, target: &str, length: usize, extra: &str) -> String {
        format!(
            "POST {target} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
             content-length: {length}\r\nconnection: close\r\n{extra}\r\n"
        )
    }

    #[tokio::test]
    async fn a_signed_request_reaches_the_handler_with_its_body() {
        let addr = serve().await;
        let body = br#"{"thingTypeName":"gw","attributePayload":{"attributes":{"k":"v"}}}"#;
        let signature = sign_headers(addr, "/things/a%3Ab", body, SECRET);
        let head = post_head(addr, "/things/a%3Ab", body.len(), &signature);
        let (status, _, echoed) = send(addr, &head, body).await;
        assert_eq!(status, 200);
        assert_eq!(echoed.as_bytes(), body);
    }

    #[tokio::test]
    async fn refusals_are_401_unauthorized_exceptions() {
        let addr = serve().await;
        let body = br#"{}"#;

        let head = post_head(addr, "/things/a%3Ab", body.len(), "");
        let (status, headers, message) = send(addr, &head, body).await;
        assert_eq!(status, 401);
        assert!(headers.contains("x-amzn-errortype: unauthorizedexception"));
        let message: serde_json::Value = serde_json::from_str(&message).expect("JSON");
        assert!(
            message["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("Missing Authentication Token")),
            "{message}"
        );

        let signature = sign_headers(addr, "/things/a%3Ab", body, "wrong secret");
        let head = post_head(addr, "/things/a%3Ab", body.len(), &signature);
        let (status, headers, message) = send(addr, &head, body).await;
        assert_eq!(status, 401);
        assert!(headers.contains("x-amzn-errortype: unauthorizedexception"));
        assert!(message.contains("signature we calculated does not match"));
    }

    #[tokio::test]
    async fn bodies_over_the_limit_are_413() {
        let addr = serve().await;
        let body = vec![b' '; MAX_BODY + 1];
        let signature = sign_headers(addr, "/things/big", &body, SECRET);

        // A declared length over the limit is refused before the body is read; sending no
        // body keeps the server from closing on unread bytes, which would reset the socket.
        let head = post_head(addr, "/things/big", body.len(), &signature);
        let (status, headers, _) = send(addr, &head, b"").await;
        assert_eq!(status, 413);
        assert!(headers.contains("x-amzn-errortype: invalidrequestexception"));

        // Without a declared length the limit applies while the body arrives. The chunks
        // stop one byte past the limit, so the server has read everything when it refuses.
        let head = format!(
            "POST /things/big HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
             transfer-encoding: chunked\r\nconnection: close\r\n{signature}\r\n"
        );
        let mut chunked = Vec::new();
        let chunk = 64 * 1024;
        for size in std::iter::repeat_n(chunk, MAX_BODY / chunk).chain([1]) {
            chunked.extend_from_slice(format!("{size:x}\r\n").as_bytes());
            chunked.extend_from_slice(&body[..size]);
            chunked.extend_from_slice(b"\r\n");
        }
        let (status, _, _) = send(addr, &head, &chunked).await;
        assert_eq!(status, 413);

        // Exactly the limit is read and verified.
        let body = vec![b' '; MAX_BODY];
        let signature = sign_headers(addr, "/things/big", &body, SECRET);
        let head = post_head(addr, "/things/big", body.len(), &signature);
        let (status, _, echoed) = send(addr, &head, &body).await;
        assert_eq!(status, 200);
        assert_eq!(echoed.len(), MAX_BODY);
    }
}
