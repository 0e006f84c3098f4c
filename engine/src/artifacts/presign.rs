//! Presigned URLs of the artifact store: SigV4 query authentication, as S3 and the
//! `aws-sdk-s3` presigner produce them, so a device downloads with a plain HTTP GET and no
//! credentials of its own.
//!
//! The signature is made by the `aws-sigv4` crate with the settings S3 uses (the path signed as
//! sent, no normalization, `UNSIGNED-PAYLOAD`), so a URL the engine hands out is verified by
//! the store exactly as a URL made by the SDK would be.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Encodes all but RFC 3986 unreserved characters.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The same, keeping `/` so an object key keeps its segments in the path.
const UNRESERVED_AND_SLASH: &AsciiSet = &UNRESERVED.remove(b'/');

/// The SigV4 signing name of S3.
const SERVICE: &str = "s3";

/// The longest a SigV4 presigned URL may live (seven days), as at S3.
pub const MAX_EXPIRES: Duration = Duration::from_secs(604_800);

/// Makes presigned URLs of objects in the store with the engine's access key.
#[derive(Clone)]
pub struct Presigner {
    /// `http://host:port` of the store, as devices reach it.
    endpoint: String,
    region: String,
    access_key_id: String,
    secret_access_key: String,
}

impl std::fmt::Debug for Presigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Presigner")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// Why no URL could be made.
#[derive(Debug, thiserror::Error)]
pub enum PresignError {
    #[error("a presigned URL lives 1 second to 7 days, not {0:?}")]
    Lifetime(Duration),
    #[error("signing the URL failed: {0}")]
    Signing(String),
}

impl Presigner {
    /// A presigner for the store at `endpoint` (`http://host:port`, no trailing slash).
    pub fn new(
        endpoint: impl Into<String>,
        region: impl Into<String>,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
    ) -> Self {
        Self {
            endpoint: endpoint.into().trim_end_matches('/').to_owned(),
            region: region.into(),
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
        }
    }

    /// Where the store listens, as URLs name it.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// A URL that lets its holder GET `bucket/key` for `expires_in` from now.
    pub fn get(
        &self,
        bucket: &str,
        key: &str,
        expires_in: Duration,
    ) -> Result<String, PresignError> {
        self.presign("GET", bucket, key, expires_in, SystemTime::now())
    }

    /// A URL that lets its holder PUT `bucket/key` for `expires_in` from now.
    pub fn put(
        &self,
        bucket: &str,
        key: &str,
        expires_in: Duration,
    ) -> Result<String, PresignError> {
        self.presign("PUT", bucket, key, expires_in, SystemTime::now())
    }

    /// A URL for `method` on `bucket/key`, signed as of `at`.
    pub fn presign(
        &self,
        method: &str,
        bucket: &str,
        key: &str,
        expires_in: Duration,
        at: SystemTime,
    ) -> Result<String, PresignError> {
        if expires_in.is_zero() || expires_in > MAX_EXPIRES {
            return Err(PresignError::Lifetime(expires_in));
        }
        let url = format!(
            "{}/{}/{}",
            self.endpoint,
            utf8_percent_encode(bucket, UNRESERVED),
            utf8_percent_encode(key, UNRESERVED_AND_SLASH)
        );
        let host = url
            .split_once("://")
            .map_or(url.as_str(), |(_, rest)| rest)
            .split('/')
            .next()
            .unwrap_or_default()
            .to_owned();

        let mut settings = SigningSettings::default();
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(expires_in);
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        let identity = Credentials::new(
            &self.access_key_id,
            &self.secret_access_key,
            None,
            None,
            "flotilla-engine",
        )
        .into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(SERVICE)
            .time(at)
            .settings(settings)
            .build()
            .map_err(|error| PresignError::Signing(error.to_string()))?
            .into();
        let signable = SignableRequest::new(
            method,
            Cow::Borrowed(url.as_str()),
            [("host", host.as_str())].into_iter(),
            SignableBody::UnsignedPayload,
        )
        .map_err(|error| PresignError::Signing(error.to_string()))?;
        let (_headers, query) = sign(signable, &params)
            .map_err(|error| PresignError::Signing(error.to_string()))?
            .into_parts()
            .0
            .into_parts();
        let query: Vec<String> = query
            .iter()
            .map(|(name, value)| format!("{name}={}", utf8_percent_encode(value, UNRESERVED)))
            .collect();
        Ok(format!("{url}?{}", query.join("&")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn presigner() -> Presigner {
        Presigner::new("http://127.0.0.1:9000/", "us-east-1", "AKID", "secret")
    }

    #[test]
    fn urls_carry_sigv4_query_authentication() {
        let url = presigner()
            .get("firmware", "builds/v1 é.bin", Duration::from_secs(60))
            .expect("a URL");
        assert!(
            url.starts_with("http://127.0.0.1:9000/firmware/builds/v1%20%C3%A9.bin?"),
            "{url}"
        );
        for member in [
            "X-Amz-Algorithm=AWS4-HMAC-SHA256",
            "X-Amz-Credential=AKID%2F",
            "%2Fus-east-1%2Fs3%2Faws4_request",
            "X-Amz-Expires=60",
            "X-Amz-SignedHeaders=host",
            "X-Amz-Signature=",
        ] {
            assert!(url.contains(member), "{member} missing from {url}");
        }
    }

    #[test]
    fn lifetimes_are_bounded() {
        assert!(presigner().get("b", "k", Duration::ZERO).is_err());
        assert!(
            presigner()
                .get("b", "k", MAX_EXPIRES + Duration::from_secs(1))
                .is_err()
        );
        assert!(presigner().get("b", "k", MAX_EXPIRES).is_ok());
    }
}
