//! AWS Signature Version 4 verification of control-plane requests.
//!
//! The dashboard server reaches the engine and AWS IoT through one code path, `aws-sdk-iot`.
//! That path only stays honest if the engine accepts exactly what AWS accepts: a request the
//! engine took but AWS refused (a wrong region, a stale clock, a path a proxy re-encoded, a
//! body changed after signing) would pass every local test and fail in production. So the
//! engine does not just look for its access key: it rebuilds the canonical request the way
//! the signer did, checks the signature with the configured secret, and applies AWS's rules
//! for the credential scope, the 15-minute clock skew and presigned-URL expiry.
//!
//! The canonical request follows the AWS SDK for Rust (`aws-sigv4` with the settings
//! `aws-runtime` uses for every service but S3), which is also what the SigV4 documentation
//! prescribes:
//!
//! - The path is normalized (RFC 3986 dot segments removed, empty segments dropped) and then
//!   percent-encoded *again*. The path on the wire is already encoded once (the thing `a:b`
//!   is requested as `/things/a%3Ab`), so its canonical URI is `/things/a%253Ab`. Only S3
//!   signs the path as sent.
//! - The query is decoded as `application/x-www-form-urlencoded`, every key and value is
//!   re-encoded leaving only RFC 3986 unreserved characters, and the pairs are sorted by
//!   encoded key, then encoded value.
//! - Signed header values lose leading and trailing spaces and runs of spaces become one;
//!   a repeated header's values are joined with `,`.
//! - The payload hash is the hex SHA-256 of the body. A client may also send it as
//!   `x-amz-content-sha256`; the engine then requires it to be the body's real hash, so the
//!   signature always covers the bytes the handler receives.
//!
//! The unit tests sign requests with the `aws-sigv4` crate itself and verify them here, and
//! replay vectors from the AWS SigV4 test suite, so a divergence from the SDK shows up as a
//! failing test rather than as a refused request.

use std::borrow::Cow;

use axum::http::{HeaderMap, HeaderName, Uri, header};
use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode, utf8_percent_encode};
use sha2::{Digest, Sha256};

/// The only signing algorithm AWS IoT accepts for its control plane.
pub(super) const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// The signing name of the AWS IoT control plane.
pub(super) const SERVICE: &str = "iot";

/// How far a request's timestamp may be from the engine's clock, as at AWS.
const MAX_SKEW: TimeDelta = TimeDelta::minutes(15);

/// The longest a presigned URL may live, in seconds, as at AWS (seven days).
const MAX_EXPIRES: i64 = 604_800;

/// ISO 8601 basic format, as in `x-amz-date`.
const BASIC_FORMAT: &str = "%Y%m%dT%H%M%SZ";

/// Encodes all but RFC 3986 unreserved characters, as `aws-smithy-http` does for query
/// strings and labels.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The same, keeping `/` so a path keeps its segments.
const UNRESERVED_AND_SLASH: &AsciiSet = &UNRESERVED.remove(b'/');

type HmacSha256 = Hmac<Sha256>;

/// The one identity the engine trusts, and where it expects requests to be scoped.
#[derive(Clone, Copy)]
pub(super) struct Trust<'a> {
    pub access_key_id: &'a str,
    pub secret_access_key: &'a str,
    pub region: &'a str,
    pub service: &'a str,
}

/// A received request as the verifier needs it.
pub(super) struct Received<'a> {
    pub method: &'a str,
    /// The request target exactly as received: path and query still percent-encoded.
    pub uri: &'a Uri,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

/// Why a request was refused. The messages follow AWS's wording where AWS has one, and say
/// what is wrong without revealing anything the client must not learn (the expected
/// signature or the secret).
#[derive(Debug, thiserror::Error)]
pub(super) enum Refusal {
    #[error(
        "Missing Authentication Token: the request has neither an Authorization header nor \
         X-Amz-* query-string authentication"
    )]
    Unsigned,
    #[error(
        "Only one authentication mechanism allowed; only the X-Amz-Algorithm query parameter \
         or the Authorization header should be specified"
    )]
    TwoMechanisms,
    #[error("Unsupported signing algorithm '{0}': only AWS4-HMAC-SHA256 is accepted")]
    Algorithm(String),
    #[error("{0}")]
    Malformed(String),
    #[error("The security token included in the request is invalid: unknown access key id '{0}'")]
    UnknownAccessKey(String),
    #[error("Credential should be scoped to a valid region: '{got}' is not '{expected}'")]
    WrongRegion { got: String, expected: String },
    #[error("Credential should be scoped to correct service: '{got}' is not '{expected}'")]
    WrongService { got: String, expected: String },
    #[error(
        "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from \
         HTTP: '{scope}' != '{date}'"
    )]
    ScopeDate { scope: String, date: String },
    #[error("Signature expired: {date} is now earlier than {earliest} ({now} - 15 min.)")]
    Expired {
        date: String,
        earliest: String,
        now: String,
    },
    #[error("Signature not yet current: {date} is still later than {latest} ({now} + 15 min.)")]
    NotYetCurrent {
        date: String,
        latest: String,
        now: String,
    },
    #[error("Request has expired: signed at {date} for {expires} seconds, now is {now}")]
    PresignExpired {
        date: String,
        expires: i64,
        now: String,
    },
    #[error("'Host' must be a 'SignedHeader' in the AWS Authorization")]
    HostNotSigned,
    #[error("The signed header '{0}' is not in the request")]
    MissingSignedHeader(String),
    #[error("The provided 'x-amz-content-sha256' header does not match what was computed")]
    ContentHashMismatch,
    #[error(
        "The request signature we calculated does not match the signature you provided. \
         Check your AWS Secret Access Key and signing method. Consult the service \
         documentation for details.\n\nThe Canonical String for this request should have \
         been\n'{canonical_request}'\n\nThe String-to-Sign should have been\n'{string_to_sign}'\n"
    )]
    SignatureMismatch {
        canonical_request: String,
        string_to_sign: String,
    },
}

/// Verifies `request`'s signature against `trust` at time `now`.
pub(super) fn verify(
    request: &Received<'_>,
    trust: &Trust<'_>,
    now: DateTime<Utc>,
) -> Result<(), Refusal> {
    let query = decode_query(request.uri.query().unwrap_or_default());
    let claim = Claim::from_request(request, &query)?;
    if claim.algorithm != ALGORITHM {
        return Err(Refusal::Algorithm(claim.algorithm));
    }

    let scope = Scope::parse(&claim.credential)?;
    if scope.access_key_id != trust.access_key_id {
        return Err(Refusal::UnknownAccessKey(scope.access_key_id.to_owned()));
    }
    if scope.region != trust.region {
        return Err(Refusal::WrongRegion {
            got: scope.region.to_owned(),
            expected: trust.region.to_owned(),
        });
    }
    if scope.service != trust.service {
        return Err(Refusal::WrongService {
            got: scope.service.to_owned(),
            expected: trust.service.to_owned(),
        });
    }

    let date_time = claim.date_time.format(BASIC_FORMAT).to_string();
    let date = &date_time[..8];
    if scope.date != date {
        return Err(Refusal::ScopeDate {
            scope: scope.date.to_owned(),
            date: date.to_owned(),
        });
    }
    check_time(claim.date_time, claim.expires, now)?;

    let signed_headers: Vec<&str> = claim.signed_headers.split(';').collect();
    if signed_headers.iter().any(|name| name.is_empty()) {
        return Err(Refusal::Malformed(format!(
            "SignedHeaders '{}' must be a ';'-separated list of header names",
            claim.signed_headers
        )));
    }
    if !signed_headers.contains(&"host") {
        return Err(Refusal::HostNotSigned);
    }

    let payload_hash = hex::encode(Sha256::digest(request.body));
    if let Some(claimed) = request.headers.get("x-amz-content-sha256")
        && claimed.as_bytes() != payload_hash.as_bytes()
    {
        return Err(Refusal::ContentHashMismatch);
    }

    let canonical_request = canonical_request(
        request,
        &query,
        claim.location,
        &signed_headers,
        &claim.signed_headers,
        &payload_hash,
    )?;
    let scope_string = format!("{date}/{}/{}/aws4_request", trust.region, trust.service);
    let string_to_sign = format!(
        "{ALGORITHM}\n{date_time}\n{scope_string}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );

    let provided = hex::decode(&claim.signature)
        .ok()
        .filter(|bytes| bytes.len() == 32)
        .ok_or_else(|| {
            Refusal::Malformed(format!(
                "Signature '{}' must be 64 hexadecimal digits",
                claim.signature
            ))
        })?;
    let key = signing_key(trust.secret_access_key, date, trust.region, trust.service);
    let mut mac = HmacSha256::new_from_slice(&key).expect("HMAC takes a key of any length");
    mac.update(string_to_sign.as_bytes());
    // `verify_slice` compares in constant time, so response timing leaks nothing about the
    // expected signature.
    mac.verify_slice(&provided)
        .map_err(|_| Refusal::SignatureMismatch {
            canonical_request,
            string_to_sign,
        })
}

/// Where the signature travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Location {
    /// The `Authorization` header.
    Header,
    /// `X-Amz-*` query parameters (a presigned URL).
    Query,
}

/// What a request claims about its signature.
struct Claim {
    location: Location,
    algorithm: String,
    credential: String,
    signed_headers: String,
    signature: String,
    date_time: DateTime<Utc>,
    /// A presigned URL's lifetime in seconds.
    expires: Option<i64>,
}

impl Claim {
    fn from_request(request: &Received<'_>, query: &[(String, String)]) -> Result<Self, Refusal> {
        let mut authorization = request.headers.get_all(header::AUTHORIZATION).iter();
        let by_query = query
            .iter()
            .any(|(key, _)| key == "X-Amz-Algorithm" || key == "X-Amz-Signature");
        match (authorization.next(), by_query) {
            (Some(_), true) => Err(Refusal::TwoMechanisms),
            (None, false) => Err(Refusal::Unsigned),
            (Some(value), false) => {
                if authorization.next().is_some() {
                    return Err(Refusal::Malformed(
                        "The request has more than one Authorization header".to_owned(),
                    ));
                }
                let value = value.to_str().map_err(|_| {
                    Refusal::Malformed("The Authorization header is not ASCII".to_owned())
                })?;
                Self::from_header(value, request.headers)
            }
            (None, true) => Self::from_query(query),
        }
    }

    /// `AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`.
    fn from_header(value: &str, headers: &HeaderMap) -> Result<Self, Refusal> {
        let value = value.trim();
        let (algorithm, parameters) = value.split_once(' ').unwrap_or((value, ""));
        if algorithm != ALGORITHM {
            return Err(Refusal::Algorithm(algorithm.to_owned()));
        }
        let (mut credential, mut signed_headers, mut signature) = (None, None, None);
        for parameter in parameters
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let Some((name, value)) = parameter.split_once('=') else {
                return Err(Refusal::Malformed(format!(
                    "Authorization header requires each component to be of the form \
                     key=value, not '{parameter}'"
                )));
            };
            let slot = match name.trim() {
                "Credential" => &mut credential,
                "SignedHeaders" => &mut signed_headers,
                "Signature" => &mut signature,
                _ => continue,
            };
            *slot = Some(value.trim().to_owned());
        }
        let require = |value: Option<String>, name: &str| {
            value.ok_or_else(|| {
                Refusal::Malformed(format!(
                    "Authorization header requires '{name}' parameter. Authorization header \
                     requires 'Credential', 'SignedHeaders' and 'Signature' parameters"
                ))
            })
        };
        let credential = require(credential, "Credential")?;
        let signed_headers = require(signed_headers, "SignedHeaders")?;
        let signature = require(signature, "Signature")?;

        let date_time = if let Some(value) = headers.get("x-amz-date") {
            let value = value.to_str().unwrap_or_default();
            parse_basic(value).ok_or_else(|| {
                Refusal::Malformed(format!(
                    "X-Amz-Date '{value}' must be in ISO 8601 basic format (YYYYMMDD'T'HHMMSS'Z')"
                ))
            })?
        } else if let Some(value) = headers.get(header::DATE) {
            let value = value.to_str().unwrap_or_default();
            DateTime::parse_from_rfc2822(value)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    Refusal::Malformed(format!("Date header '{value}' is not an HTTP date"))
                })?
        } else {
            return Err(Refusal::Malformed(
                "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' \
                 header"
                    .to_owned(),
            ));
        };

        Ok(Self {
            location: Location::Header,
            algorithm: algorithm.to_owned(),
            credential,
            signed_headers,
            signature,
            date_time,
            expires: None,
        })
    }

    /// `?X-Amz-Algorithm=…&X-Amz-Credential=…&X-Amz-Date=…&X-Amz-Expires=…&…`.
    fn from_query(query: &[(String, String)]) -> Result<Self, Refusal> {
        let param = |name: &str| {
            query
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
                .ok_or_else(|| {
                    Refusal::Malformed(format!(
                        "AWS query-string parameters must include '{name}'. Re-examine the \
                         query-string parameters."
                    ))
                })
        };
        let algorithm = param("X-Amz-Algorithm")?;
        if algorithm != ALGORITHM {
            return Err(Refusal::Algorithm(algorithm));
        }
        let credential = param("X-Amz-Credential")?;
        let signed_headers = param("X-Amz-SignedHeaders")?;
        let signature = param("X-Amz-Signature")?;
        let date = param("X-Amz-Date")?;
        let date_time = parse_basic(&date).ok_or_else(|| {
            Refusal::Malformed(format!(
                "X-Amz-Date '{date}' must be in ISO 8601 basic format (YYYYMMDD'T'HHMMSS'Z')"
            ))
        })?;
        let expires = param("X-Amz-Expires")?;
        let expires = expires
            .parse::<i64>()
            .ok()
            .filter(|seconds| (1..=MAX_EXPIRES).contains(seconds))
            .ok_or_else(|| {
                Refusal::Malformed(format!(
                    "X-Amz-Expires must be a number of seconds from 1 to {MAX_EXPIRES}, not \
                     '{expires}'"
                ))
            })?;
        Ok(Self {
            location: Location::Query,
            algorithm,
            credential,
            signed_headers,
            signature,
            date_time,
            expires: Some(expires),
        })
    }
}

/// `AKID/YYYYMMDD/region/service/aws4_request`.
struct Scope<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
}

impl<'a> Scope<'a> {
    fn parse(credential: &'a str) -> Result<Self, Refusal> {
        let parts: Vec<&str> = credential.split('/').collect();
        let [access_key_id, date, region, service, terminator] = parts[..] else {
            return Err(Refusal::Malformed(format!(
                "Credential should be of the form \
                 <access key id>/<YYYYMMDD>/<region>/<service>/aws4_request, not '{credential}'"
            )));
        };
        if terminator != "aws4_request" {
            return Err(Refusal::Malformed(format!(
                "Credential should be scoped with a valid terminator: 'aws4_request', not \
                 '{terminator}'"
            )));
        }
        Ok(Self {
            access_key_id,
            date,
            region,
            service,
        })
    }
}

fn parse_basic(value: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(value, BASIC_FORMAT)
        .ok()
        .map(|t| t.and_utc())
}

fn format_basic(t: DateTime<Utc>) -> String {
    t.format(BASIC_FORMAT).to_string()
}

/// AWS's rules: a header-signed request must be within 15 minutes of now either way; a
/// presigned URL may not be dated more than 15 minutes ahead and lives `expires` seconds.
fn check_time(
    date_time: DateTime<Utc>,
    expires: Option<i64>,
    now: DateTime<Utc>,
) -> Result<(), Refusal> {
    if date_time > now + MAX_SKEW {
        return Err(Refusal::NotYetCurrent {
            date: format_basic(date_time),
            latest: format_basic(now + MAX_SKEW),
            now: format_basic(now),
        });
    }
    match expires {
        None if date_time < now - MAX_SKEW => Err(Refusal::Expired {
            date: format_basic(date_time),
            earliest: format_basic(now - MAX_SKEW),
            now: format_basic(now),
        }),
        Some(seconds) if now > date_time + TimeDelta::seconds(seconds) => {
            Err(Refusal::PresignExpired {
                date: format_basic(date_time),
                expires: seconds,
                now: format_basic(now),
            })
        }
        _ => Ok(()),
    }
}

/// The canonical request, as `aws-sigv4` builds it.
fn canonical_request(
    request: &Received<'_>,
    query: &[(String, String)],
    location: Location,
    signed_headers: &[&str],
    signed_headers_line: &str,
    payload_hash: &str,
) -> Result<String, Refusal> {
    let mut canonical = format!(
        "{}\n{}\n{}\n",
        request.method,
        canonical_uri(request.uri.path()),
        canonical_query(query, location)
    );
    for name in signed_headers {
        canonical.push_str(name);
        canonical.push(':');
        canonical.push_str(&canonical_header_value(request, name)?);
        canonical.push('\n');
    }
    canonical.push('\n');
    canonical.push_str(signed_headers_line);
    canonical.push('\n');
    canonical.push_str(payload_hash);
    Ok(canonical)
}

/// The canonical URI of a path as received (still percent-encoded once): normalized, then
/// encoded a second time, as AWS prescribes for every service but S3.
fn canonical_uri(path: &str) -> String {
    utf8_percent_encode(&normalize_path(path), UNRESERVED_AND_SLASH).to_string()
}

/// RFC 3986 §5.2.4 dot-segment removal as `aws-sigv4` does it, which also drops empty
/// segments (`//`) and turns an empty path into `/`.
fn normalize_path(path: &str) -> Cow<'_, str> {
    if path.is_empty() {
        return Cow::Borrowed("/");
    }
    let path = if path.starts_with('/') {
        Cow::Borrowed(path)
    } else {
        Cow::Owned(format!("/{path}"))
    };
    if !(path.contains('.') || path.contains("//")) {
        return path;
    }
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            segment => segments.push(segment),
        }
    }
    let mut normalized = format!("/{}", segments.join("/"));
    let ends_with_slash = ["/", "/.", "/./", "/..", "/../"]
        .iter()
        .any(|end| path.ends_with(end));
    if ends_with_slash && !normalized.ends_with('/') {
        normalized.push('/');
    }
    Cow::Owned(normalized)
}

/// Decodes a query string as `application/x-www-form-urlencoded` (`+` is a space), as the
/// signer does before re-encoding it.
fn decode_query(query: &str) -> Vec<(String, String)> {
    let decode = |s: &str| -> String {
        let plus_as_space = s.replace('+', " ");
        percent_decode(plus_as_space.as_bytes())
            .decode_utf8_lossy()
            .into_owned()
    };
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(key), decode(value))
        })
        .collect()
}

/// Every parameter but a presigned URL's own signature, encoded and sorted.
fn canonical_query(query: &[(String, String)], location: Location) -> String {
    let mut pairs: Vec<(String, String)> = query
        .iter()
        .filter(|(key, _)| location == Location::Header || key != "X-Amz-Signature")
        .map(|(key, value)| {
            (
                utf8_percent_encode(key, UNRESERVED).to_string(),
                utf8_percent_encode(value, UNRESERVED).to_string(),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// A signed header's values, each trimmed of spaces with runs of spaces collapsed, joined
/// with `,`. HTTP/2 carries the host as the `:authority` pseudo-header, which lands in the
/// URI rather than in the header map.
fn canonical_header_value(request: &Received<'_>, name: &str) -> Result<String, Refusal> {
    let header_name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
        Refusal::Malformed(format!("SignedHeaders names an invalid header '{name}'"))
    })?;
    let mut values = Vec::new();
    for value in request.headers.get_all(&header_name) {
        let value = std::str::from_utf8(value.as_bytes())
            .map_err(|_| Refusal::Malformed(format!("The signed header '{name}' is not UTF-8")))?;
        values.push(trim_all(value));
    }
    if values.is_empty() {
        match request
            .uri
            .authority()
            .filter(|_| header_name == header::HOST)
        {
            Some(authority) => values.push(Cow::Borrowed(authority.as_str())),
            None => return Err(Refusal::MissingSignedHeader(name.to_owned())),
        }
    }
    Ok(values.join(","))
}

/// Trims spaces (only spaces) from both ends and collapses runs of spaces into one.
fn trim_all(value: &str) -> Cow<'_, str> {
    let value = value.trim_matches(' ');
    if !value.contains("  ") {
        return Cow::Borrowed(value);
    }
    let mut trimmed = String::with_capacity(value.len());
    let mut previous_space = false;
    for c in value.chars() {
        if c == ' ' && previous_space {
            continue;
        }
        previous_space = c == ' ';
        trimmed.push(c);
    }
    Cow::Owned(trimmed)
}

/// kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request").
fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> Vec<u8> {
    let hmac = |key: &[u8], data: &str| -> Vec<u8> {
        let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes a key of any length");
        mac.update(data.as_bytes());
        mac.finalize().into_bytes().to_vec()
    };
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date);
    let k_region = hmac(&k_date, region);
    let k_service = hmac(&k_region, service);
    hmac(&k_service, "aws4_request")
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use aws_credential_types::Credentials;
    use aws_sigv4::http_request::{
        PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
        sign,
    };
    use aws_sigv4::sign::v4;
    use axum::http::{HeaderValue, Request};

    use super::*;

    const AKID: &str = "FLOTILLALOCAL";
    const SECRET: &str = "s3cr3t/with+odd=chars0123456789abcdefghij";
    const REGION: &str = "eu-central-1";

    fn trust() -> Trust<'static> {
        Trust {
            access_key_id: AKID,
            secret_access_key: SECRET,
            region: REGION,
            service: SERVICE,
        }
    }

    fn at(basic: &str) -> DateTime<Utc> {
        parse_basic(basic).expect("a valid test timestamp")
    }

    /// When the test requests are signed.
    fn signed_at() -> DateTime<Utc> {
        at("20260314T092653Z")
    }

    /// What a test sends: method, URL as the SDK builds it (path already encoded once),
    /// headers the SDK sets before signing, and the body.
    struct Send<'a> {
        method: &'a str,
        url: &'a str,
        headers: Vec<(&'a str, &'a str)>,
        body: &'a [u8],
    }

    impl<'a> Send<'a> {
        fn get(url: &'a str) -> Self {
            Self {
                method: "GET",
                url,
                headers: vec![
                    ("x-amz-user-agent", "aws-sdk-rust/1.3.9 api/iot/1.135.0"),
                    (
                        "amz-sdk-invocation-id",
                        "f6d0b4c6-0000-4000-8000-000000000000",
                    ),
                    ("amz-sdk-request", "attempt=1; max=3"),
                ],
                body: b"",
            }
        }

        fn with_body(method: &'a str, url: &'a str, body: &'a [u8]) -> Self {
            let mut send = Self::get(url);
            send.method = method;
            send.body = body;
            send.headers.push(("content-type", "application/json"));
            send
        }
    }

    /// A request as the engine receives it: signed by the real `aws-sigv4` crate, then put
    /// on the wire as hyper does (origin-form target, `Host` header, unsigned `user-agent`).
    struct Wire {
        method: String,
        uri: Uri,
        headers: HeaderMap,
        body: Vec<u8>,
    }

    impl Wire {
        fn received(&self) -> Received<'_> {
            Received {
                method: &self.method,
                uri: &self.uri,
                headers: &self.headers,
                body: &self.body,
            }
        }

        fn verify(&self, now: DateTime<Utc>) -> Result<(), Refusal> {
            verify(&self.received(), &trust(), now)
        }
    }

    fn sdk_sign(send: &Send<'_>, secret: &str, region: &str, settings: SigningSettings) -> Wire {
        sdk_sign_as(send, AKID, secret, region, SERVICE, settings)
    }

    fn sdk_sign_as(
        send: &Send<'_>,
        access_key_id: &str,
        secret: &str,
        region: &str,
        service: &str,
        settings: SigningSettings,
    ) -> Wire {
        let identity = Credentials::new(access_key_id, secret, None, None, "test").into();
        let time = SystemTime::UNIX_EPOCH
            + Duration::from_secs(signed_at().timestamp().try_into().expect("after 1970"));
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(region)
            .name(service)
            .time(time)
            .settings(settings)
            .build()
            .expect("complete signing params")
            .into();
        let signable = SignableRequest::new(
            send.method,
            send.url,
            send.headers.iter().copied(),
            SignableBody::Bytes(send.body),
        )
        .expect("a signable request");
        let (instructions, _signature) = sign(signable, &params).expect("signed").into_parts();

        let mut request = Request::builder().method(send.method).uri(send.url);
        for (name, value) in &send.headers {
            request = request.header(*name, *value);
        }
        let mut request = request.body(()).expect("a valid request");
        instructions.apply_to_request_http1x(&mut request);

        let (parts, ()) = request.into_parts();
        let authority = parts.uri.authority().expect("an absolute URL").to_string();
        let target = parts.uri.path_and_query().expect("a path").as_str();
        let mut headers = parts.headers;
        headers.insert(
            header::HOST,
            HeaderValue::from_str(&authority).expect("a valid host"),
        );
        headers.insert(header::USER_AGENT, HeaderValue::from_static("hyper"));
        Wire {
            method: send.method.to_owned(),
            uri: target.parse().expect("a valid request target"),
            headers,
            body: send.body.to_vec(),
        }
    }

    fn signed(send: &Send<'_>) -> Wire {
        sdk_sign(send, SECRET, REGION, SigningSettings::default())
    }

    /// The URL the SDK requests for a path and query: the engine's endpoint, a port that is
    /// not the scheme's default so the signed host includes it.
    macro_rules! url {
        ($path_and_query:literal) => {
            concat!("http://127.0.0.1:41837", $path_and_query)
        };
    }

    #[test]
    fn sdk_signed_requests_verify() {
        let job = br#"{"targets":["arn:aws:iot:eu-central-1:000000000000:thing/a:b"],"document":"{\"v\":\"2.0 \u00e9\"}"}"#;
        let cases = [
            // DescribeThing for the thing `a:b`: the SDK sends the label encoded once.
            Send::get(url!("/things/a%3Ab")),
            // ListJobExecutionsForJob with query parameters.
            Send::get(url!("/jobs/x/things?maxResults=5&status=QUEUED")),
            // Query values that need encoding, out of order, with an empty value.
            Send::get(url!(
                "/jobs/x/things?status=IN_PROGRESS&nextToken=a%2Bb%2Fc%3D%3D&maxResults=1&z="
            )),
            // Non-ASCII, spaces and a job id the SDK encodes.
            Send::get(url!("/things/caf%C3%A9%20%E2%9C%93")),
            // CreateJob and CreateThing with JSON bodies.
            Send::with_body("PUT", url!("/jobs/rollout-1.2_x~y"), job),
            Send::with_body("POST", url!("/things/a%3Ab"), br#"{"thingTypeName":"gw"}"#),
        ];
        for send in &cases {
            let wire = signed(send);
            assert!(
                wire.verify(signed_at()).is_ok(),
                "{} {}: {:?}",
                send.method,
                send.url,
                wire.verify(signed_at())
            );
            // Within the skew either way.
            wire.verify(signed_at() + TimeDelta::minutes(15))
                .expect("15 minutes late is accepted");
            wire.verify(signed_at() - TimeDelta::minutes(15))
                .expect("15 minutes early is accepted");
        }
    }

    #[test]
    fn the_canonical_uri_is_the_wire_path_encoded_again() {
        assert_eq!(canonical_uri("/things/a%3Ab"), "/things/a%253Ab");
        assert_eq!(canonical_uri("/things/a:b"), "/things/a%3Ab");
        assert_eq!(
            canonical_uri("/things/caf%C3%A9%20x"),
            "/things/caf%25C3%25A9%2520x"
        );
        assert_eq!(canonical_uri("/jobs/x/things"), "/jobs/x/things");
        assert_eq!(canonical_uri(""), "/");
        assert_eq!(canonical_uri("/"), "/");
        assert_eq!(canonical_uri("/a/./b//c/../d"), "/a/b/d");
        assert_eq!(canonical_uri("/a/b/.."), "/a/");
        assert_eq!(canonical_uri("/../a"), "/a");
        assert_eq!(canonical_uri("/a.b/c"), "/a.b/c");
    }

    #[test]
    fn a_signature_over_the_singly_encoded_path_is_refused() {
        // A signer that does not double-encode (as for S3) signs a different canonical URI.
        let mut single = SigningSettings::default();
        single.percent_encoding_mode = PercentEncodingMode::Single;
        let wire = sdk_sign(&Send::get(url!("/things/a%3Ab")), SECRET, REGION, single);
        let refusal = wire
            .verify(signed_at())
            .expect_err("single encoding is refused");
        let Refusal::SignatureMismatch {
            canonical_request, ..
        } = refusal
        else {
            panic!("expected a signature mismatch, got {refusal:?}");
        };
        assert!(canonical_request.starts_with("GET\n/things/a%253Ab\n"));

        // Without characters to encode, both modes sign the same thing.
        let mut single = SigningSettings::default();
        single.percent_encoding_mode = PercentEncodingMode::Single;
        let wire = sdk_sign(&Send::get(url!("/things/ab")), SECRET, REGION, single);
        wire.verify(signed_at()).expect("nothing to double-encode");
    }

    #[test]
    fn sdk_presigned_urls_verify_until_they_expire() {
        let mut settings = SigningSettings::default();
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(Duration::from_secs(300));
        let wire = sdk_sign(
            &Send::get(url!("/jobs/x/things?maxResults=5&status=QUEUED")),
            SECRET,
            REGION,
            settings,
        );
        assert!(
            wire.uri
                .query()
                .unwrap_or_default()
                .contains("X-Amz-Signature=")
        );
        assert!(!wire.headers.contains_key(header::AUTHORIZATION));
        wire.verify(signed_at()).expect("a fresh presigned URL");
        wire.verify(signed_at() + TimeDelta::seconds(300))
            .expect("the last second of a presigned URL");
        assert!(matches!(
            wire.verify(signed_at() + TimeDelta::seconds(301)),
            Err(Refusal::PresignExpired { expires: 300, .. })
        ));
        assert!(matches!(
            wire.verify(signed_at() - TimeDelta::minutes(16)),
            Err(Refusal::NotYetCurrent { .. })
        ));
    }

    fn mismatch(result: Result<(), Refusal>) {
        match result {
            Err(Refusal::SignatureMismatch { .. }) => {}
            other => panic!("expected a signature mismatch, got {other:?}"),
        }
    }

    #[test]
    fn tampering_breaks_the_signature() {
        let body = br#"{"thingTypeName":"gw"}"#;
        let send = Send::with_body("POST", url!("/things/a%3Ab"), body);

        let mut wire = signed(&send);
        wire.body = br#"{"thingTypeName":"xx"}"#.to_vec();
        mismatch(wire.verify(signed_at()));

        let mut wire = signed(&send);
        wire.uri = Uri::from_static("/things/a%3Ac");
        mismatch(wire.verify(signed_at()));

        // The same thing name encoded differently is a different request on the wire.
        let mut wire = signed(&send);
        wire.uri = Uri::from_static("/things/a:b");
        mismatch(wire.verify(signed_at()));

        let mut wire = signed(&send);
        wire.method = "PUT".to_owned();
        mismatch(wire.verify(signed_at()));

        let mut wire = signed(&Send::get(url!(
            "/jobs/x/things?maxResults=5&status=QUEUED"
        )));
        wire.uri = Uri::from_static("/jobs/x/things?maxResults=6&status=QUEUED");
        mismatch(wire.verify(signed_at()));

        let mut wire = signed(&send);
        wire.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-amz-json-1.1"),
        );
        mismatch(wire.verify(signed_at()));

        // Unsigned headers may change: proxies rewrite `user-agent`.
        let mut wire = signed(&send);
        wire.headers
            .insert(header::USER_AGENT, HeaderValue::from_static("proxy/1.0"));
        wire.verify(signed_at()).expect("user-agent is not signed");
    }

    #[test]
    fn a_wrong_secret_is_a_signature_mismatch() {
        let wire = sdk_sign(
            &Send::get(url!("/things/a%3Ab")),
            "not-the-secret",
            REGION,
            SigningSettings::default(),
        );
        let refusal = wire.verify(signed_at()).expect_err("wrong secret");
        let message = refusal.to_string();
        assert!(message.starts_with("The request signature we calculated does not match"));
        // The message helps a client debug its signer but never shows the signature the
        // engine expected.
        let expected = {
            let wire = signed(&Send::get(url!("/things/a%3Ab")));
            let authorization = wire.headers[header::AUTHORIZATION]
                .to_str()
                .unwrap()
                .to_owned();
            authorization
                .rsplit("Signature=")
                .next()
                .unwrap()
                .to_owned()
        };
        assert!(!message.contains(&expected));
        assert!(!message.contains(SECRET));
        assert!(message.contains("/things/a%253Ab"));
    }

    #[test]
    fn stale_and_future_requests_are_refused() {
        let wire = signed(&Send::get(url!("/things/a%3Ab")));
        let refusal = wire
            .verify(signed_at() + TimeDelta::minutes(15) + TimeDelta::seconds(1))
            .expect_err("expired");
        assert!(matches!(refusal, Refusal::Expired { .. }), "{refusal:?}");
        assert_eq!(
            refusal.to_string(),
            "Signature expired: 20260314T092653Z is now earlier than 20260314T092654Z \
             (20260314T094154Z - 15 min.)"
        );
        let refusal = wire
            .verify(signed_at() - TimeDelta::minutes(15) - TimeDelta::seconds(1))
            .expect_err("not yet current");
        assert!(
            matches!(refusal, Refusal::NotYetCurrent { .. }),
            "{refusal:?}"
        );
    }

    #[test]
    fn the_credential_scope_must_match() {
        let send = Send::get(url!("/things/a%3Ab"));
        let defaults = SigningSettings::default;

        let wire = sdk_sign(&send, SECRET, "us-east-1", defaults());
        let refusal = wire.verify(signed_at()).expect_err("wrong region");
        assert!(
            matches!(&refusal, Refusal::WrongRegion { got, .. } if got == "us-east-1"),
            "{refusal:?}"
        );

        let wire = sdk_sign_as(&send, AKID, SECRET, REGION, "execute-api", defaults());
        let refusal = wire.verify(signed_at()).expect_err("wrong service");
        assert!(
            matches!(&refusal, Refusal::WrongService { got, .. } if got == "execute-api"),
            "{refusal:?}"
        );

        let wire = sdk_sign_as(&send, "AKIAOTHER", SECRET, REGION, SERVICE, defaults());
        let refusal = wire.verify(signed_at()).expect_err("unknown key");
        assert!(
            matches!(&refusal, Refusal::UnknownAccessKey(key) if key == "AKIAOTHER"),
            "{refusal:?}"
        );

        // The credential's date must be the request's date.
        let mut wire = signed(&send);
        let authorization = wire.headers[header::AUTHORIZATION].to_str().unwrap();
        let authorization = authorization.replace("/20260314/", "/20260313/");
        wire.headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&authorization).unwrap(),
        );
        assert!(matches!(
            wire.verify(signed_at()),
            Err(Refusal::ScopeDate { .. })
        ));
    }

    #[test]
    fn malformed_and_missing_authentication_is_refused() {
        let send = Send::get(url!("/things/a%3Ab"));
        let with_authorization = |value: &str| {
            let mut wire = signed(&send);
            wire.headers
                .insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
            wire.verify(signed_at())
        };
        let scope = format!("{AKID}/20260314/{REGION}/iot/aws4_request");
        let signature = "0".repeat(64);

        let mut wire = signed(&send);
        wire.headers.remove(header::AUTHORIZATION);
        assert!(matches!(wire.verify(signed_at()), Err(Refusal::Unsigned)));

        assert!(matches!(
            with_authorization(&format!("Credential={AKID}/")),
            Err(Refusal::Algorithm(_))
        ));
        assert!(matches!(
            with_authorization(&format!(
                "AWS4-HMAC-SHA1 Credential={scope}, SignedHeaders=host, Signature={signature}"
            )),
            Err(Refusal::Algorithm(a)) if a == "AWS4-HMAC-SHA1"
        ));
        assert!(matches!(
            with_authorization(&format!("AWS4-HMAC-SHA256 Credential={scope}, Signature={signature}")),
            Err(Refusal::Malformed(m)) if m.contains("'SignedHeaders'")
        ));
        assert!(matches!(
            with_authorization(&format!(
                "AWS4-HMAC-SHA256 Credential={AKID}/20260314/{REGION}/iot/aws5_request, \
                 SignedHeaders=host;x-amz-date, Signature={signature}"
            )),
            Err(Refusal::Malformed(m)) if m.contains("terminator")
        ));
        assert!(matches!(
            with_authorization(&format!(
                "AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders=x-amz-date, \
                 Signature={signature}"
            )),
            Err(Refusal::HostNotSigned)
        ));
        assert!(matches!(
            with_authorization(&format!(
                "AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders=host;x-amz-date;x-missing, \
                 Signature={signature}"
            )),
            Err(Refusal::MissingSignedHeader(h)) if h == "x-missing"
        ));
        assert!(matches!(
            with_authorization(&format!(
                "AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders=host;x-amz-date, \
                 Signature=nothex"
            )),
            Err(Refusal::Malformed(m)) if m.contains("hexadecimal")
        ));

        let mut wire = signed(&send);
        wire.headers.remove("x-amz-date");
        assert!(matches!(
            wire.verify(signed_at()),
            Err(Refusal::Malformed(m)) if m.contains("'X-Amz-Date' or a 'Date'")
        ));

        let mut wire = signed(&send);
        wire.uri = Uri::from_static("/things/a%3Ab?X-Amz-Algorithm=AWS4-HMAC-SHA256");
        assert!(matches!(
            wire.verify(signed_at()),
            Err(Refusal::TwoMechanisms)
        ));
    }

    #[test]
    fn a_content_hash_header_must_match_the_body() {
        let body = br#"{"thingTypeName":"gw"}"#;
        let mut send = Send::with_body("POST", url!("/things/a%3Ab"), body);
        let hash = hex::encode(Sha256::digest(body));
        send.headers.push(("x-amz-content-sha256", &hash));
        signed(&send)
            .verify(signed_at())
            .expect("a true content hash");

        let wrong = hex::encode(Sha256::digest(b"other"));
        let mut send = Send::with_body("POST", url!("/things/a%3Ab"), body);
        send.headers.push(("x-amz-content-sha256", &wrong));
        assert!(matches!(
            signed(&send).verify(signed_at()),
            Err(Refusal::ContentHashMismatch)
        ));

        let mut send = Send::with_body("POST", url!("/things/a%3Ab"), body);
        send.headers
            .push(("x-amz-content-sha256", "UNSIGNED-PAYLOAD"));
        assert!(matches!(
            signed(&send).verify(signed_at()),
            Err(Refusal::ContentHashMismatch)
        ));
    }

    /// A request from the AWS SigV4 test suite (as shipped in the `aws-sigv4` crate).
    struct Vector {
        method: &'static str,
        target: &'static str,
        headers: &'static [(&'static str, &'static str)],
        trust: Trust<'static>,
        now: &'static str,
    }

    const EXAMPLE: Trust<'static> = Trust {
        access_key_id: "AKIDEXAMPLE",
        secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        region: "us-east-1",
        service: "service",
    };

    impl Vector {
        fn verify(&self) -> Result<(), Refusal> {
            let uri: Uri = self.target.parse().expect("a valid target");
            let mut headers = HeaderMap::new();
            for (name, value) in self.headers {
                headers.append(
                    HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    HeaderValue::from_str(value).unwrap(),
                );
            }
            let received = Received {
                method: self.method,
                uri: &uri,
                headers: &headers,
                body: b"",
            };
            verify(&received, &self.trust, at(self.now))
        }
    }

    #[test]
    fn aws_test_suite_vectors_verify() {
        let vectors = [
            // get-vanilla
            Vector {
                method: "GET",
                target: "/",
                headers: &[
                    ("Host", "example.amazonaws.com"),
                    ("X-Amz-Date", "20150830T123600Z"),
                    (
                        "Authorization",
                        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
                    ),
                ],
                trust: EXAMPLE,
                now: "20150830T123600Z",
            },
            // get-vanilla, presigned
            Vector {
                method: "GET",
                target: "/?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20150830%2Fus-east-1%2Fservice%2Faws4_request&X-Amz-Date=20150830T123600Z&X-Amz-SignedHeaders=host&X-Amz-Expires=3600&X-Amz-Signature=e93c787ed7f371d5c6b165c1b38ede9550f4dce4144713e844b25b7192d3865d",
                headers: &[("Host", "example.amazonaws.com")],
                trust: EXAMPLE,
                now: "20150830T133600Z",
            },
            // get-slash-dot-slash-normalized: `/./` signs as `/`.
            Vector {
                method: "GET",
                target: "/./",
                headers: &[
                    ("Host", "example.amazonaws.com"),
                    ("X-Amz-Date", "20150830T123600Z"),
                    (
                        "Authorization",
                        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
                    ),
                ],
                trust: EXAMPLE,
                now: "20150830T123600Z",
            },
            // get-header-key-duplicate: repeated headers join with `,` in order.
            Vector {
                method: "GET",
                target: "/",
                headers: &[
                    ("Host", "example.amazonaws.com"),
                    ("My-Header1", "value2"),
                    ("My-Header1", "value2"),
                    ("My-Header1", "value1"),
                    ("X-Amz-Date", "20150830T123600Z"),
                    (
                        "Authorization",
                        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;my-header1;x-amz-date, Signature=c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea",
                    ),
                ],
                trust: EXAMPLE,
                now: "20150830T123600Z",
            },
            // get-vanilla-query-order-encoded: sorted by encoded key.
            Vector {
                method: "GET",
                target: "/?Param-3=Value3&Param=Value2&%E1%88%B4=Value1",
                headers: &[
                    ("Host", "example.amazonaws.com"),
                    ("X-Amz-Date", "20150830T123600Z"),
                    (
                        "Authorization",
                        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=371d3713e185cc334048618a97f809c9ffe339c62934c032af5a0e595648fcac",
                    ),
                ],
                trust: EXAMPLE,
                now: "20150830T123600Z",
            },
            // double-encode-path (the Rust SDK's own vector): `%3D` on the wire signs as
            // `%253D`, `@` as `%40`.
            Vector {
                method: "POST",
                target: "/test/@connections/JBDvjfGEIAMCERw%3D",
                headers: &[
                    ("X-amz-date", "20150830T123600Z"),
                    (
                        "Authorization",
                        "AWS4-HMAC-SHA256 Credential=ANOTREAL/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=57d157672191bac40bae387e48bbe14b15303c001fdbb01f4abf295dccb09705",
                    ),
                    ("Host", "tj9n5r0m12.execute-api.us-east-1.amazonaws.com"),
                ],
                trust: Trust {
                    access_key_id: "ANOTREAL",
                    secret_access_key: "notrealrnrELgWzOk3IfjzDKtFBhDby",
                    region: "us-east-1",
                    service: "service",
                },
                now: "20150830T123600Z",
            },
        ];
        for vector in &vectors {
            vector
                .verify()
                .unwrap_or_else(|refusal| panic!("{}: {refusal}", vector.target));
        }
    }

    #[test]
    fn canonical_requests_match_the_test_suite() {
        // double-url-encode: a Lambda ARN in the path, encoded once on the wire.
        let uri = Uri::from_static(
            "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-west-2%3A892717189312%3Afunction%3Amy-rusty-fun/invocations",
        );
        let mut headers = HeaderMap::new();
        headers.insert(
            header::HOST,
            HeaderValue::from_static("lambda.us-east-2.amazonaws.com"),
        );
        headers.insert("x-amz-date", HeaderValue::from_static("20210511T154045Z"));
        let received = Received {
            method: "POST",
            uri: &uri,
            headers: &headers,
            body: b"",
        };
        let canonical = canonical_request(
            &received,
            &[],
            Location::Header,
            &["host", "x-amz-date"],
            "host;x-amz-date",
            &hex::encode(Sha256::digest(b"")),
        )
        .unwrap();
        assert_eq!(
            canonical,
            "POST\n\
             /2015-03-31/functions/arn%253Aaws%253Alambda%253Aus-west-2%253A892717189312%253Afunction%253Amy-rusty-fun/invocations\n\
             \n\
             host:lambda.us-east-2.amazonaws.com\n\
             x-amz-date:20210511T154045Z\n\
             \n\
             host;x-amz-date\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex::encode(Sha256::digest(canonical.as_bytes())),
            "684dbb3c92a8b6b1e452e23e523c1ea941c713a4c13500bb9f3bdad1e19afaf7"
        );
    }

    #[test]
    fn header_values_are_trimmed_and_spaces_collapsed() {
        assert_eq!(trim_all("  a   b  c "), "a b c");
        assert_eq!(trim_all("a\tb"), "a\tb");
        assert_eq!(trim_all(""), "");
    }

    #[test]
    fn query_encoding_leaves_only_unreserved_characters() {
        let query = decode_query(
            "k=%21%22%23%24%25%26%27%28%29%2A%2B%2C%2F%3A%3B%3C%3D%3E%3F%40%5B%5C%5D%5E%60%7B%7C%7D-._~+a",
        );
        assert_eq!(
            canonical_query(&query, Location::Header),
            "k=%21%22%23%24%25%26%27%28%29%2A%2B%2C%2F%3A%3B%3C%3D%3E%3F%40%5B%5C%5D%5E%60%7B%7C%7D-._~%20a"
        );
        assert_eq!(
            canonical_query(&decode_query("b=2&a=2&a=1&&c"), Location::Header),
            "a=1&a=2&b=2&c="
        );
    }
}
