//! AWS Application Load Balancer authentication: the ALB signs the user in with the identity
//! provider and passes the user's claims in the `x-amzn-oidc-data` header, a JWT signed with
//! ES256. Its public key is fetched by the token's `kid` from the region's key endpoint
//! (`https://public-keys.auth.elb.REGION.amazonaws.com/KID`) and kept.
//!
//! The ALB pads its base64url segments with `=`, which strict JWT libraries refuse; that, and
//! needing one algorithm only, is why the few lines of verification are here.

use std::collections::HashMap;

use base64::Engine as _;
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey as _;
use serde::Deserialize;
use tokio::sync::Mutex;

/// The header the ALB passes the user's claims in.
pub const HEADER: &str = "x-amzn-oidc-data";

/// How to verify the ALB's tokens.
#[derive(Debug, Clone)]
pub struct AlbConfig {
    /// The key endpoint: a key is fetched from `{public_key_url}/{kid}`.
    pub public_key_url: String,
    /// When set, the token's `signer` (the ALB's ARN) must be this.
    pub alb_arn: Option<String>,
    /// The claim holding the user's groups (a list, or one comma-separated string).
    pub groups_claim: String,
}

/// Why a token was refused.
#[derive(Debug, thiserror::Error)]
pub enum AlbError {
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    #[error("the algorithm must be ES256, not {0:?}")]
    Algorithm(String),
    #[error("signed by {0:?}, not by the configured load balancer")]
    Signer(String),
    #[error("the signature does not verify")]
    Signature,
    #[error("the token has expired")]
    Expired,
    #[error("the ALB public key {kid:?} could not be fetched: {reason}")]
    Key { kid: String, reason: String },
}

/// The user a verified token names.
#[derive(Debug, Clone, PartialEq)]
pub struct AlbClaims {
    pub user: String,
    pub email: Option<String>,
    pub groups: Vec<String>,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: String,
    #[serde(default)]
    signer: Option<String>,
    #[serde(default)]
    exp: Option<i64>,
}

/// Verifies tokens, keeping the keys it fetched.
#[derive(Debug)]
pub struct AlbVerifier {
    config: AlbConfig,
    http: reqwest::Client,
    keys: Mutex<HashMap<String, VerifyingKey>>,
}

fn decode(segment: &str) -> Result<Vec<u8>, AlbError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(segment.trim_end_matches('='))
        .map_err(|_| AlbError::Malformed("a segment is not base64url"))
}

impl AlbVerifier {
    pub fn new(config: AlbConfig) -> Self {
        Self {
            config,
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// The claims of `token` if the ALB signed it and it has not expired at `now` (Unix
    /// seconds).
    pub async fn verify(&self, token: &str, now: i64) -> Result<AlbClaims, AlbError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AlbError::Malformed("not three segments"));
        };
        let head: Header = serde_json::from_slice(&decode(header)?)
            .map_err(|_| AlbError::Malformed("the header is not the ALB's"))?;
        if head.alg != "ES256" {
            return Err(AlbError::Algorithm(head.alg));
        }
        if let Some(expected) = &self.config.alb_arn
            && head.signer.as_deref() != Some(expected.as_str())
        {
            return Err(AlbError::Signer(head.signer.unwrap_or_default()));
        }
        let signature = Signature::from_slice(&decode(signature)?)
            .map_err(|_| AlbError::Malformed("the signature is not an ES256 signature"))?;
        let key = self.key(&head.kid).await?;
        key.verify(format!("{header}.{payload}").as_bytes(), &signature)
            .map_err(|_| AlbError::Signature)?;
        let claims: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&decode(payload)?)
                .map_err(|_| AlbError::Malformed("the payload is not a JSON object"))?;
        let exp = claims
            .get("exp")
            .and_then(serde_json::Value::as_i64)
            .or(head.exp)
            .ok_or(AlbError::Malformed("no exp"))?;
        if exp <= now {
            return Err(AlbError::Expired);
        }
        let text = |name: &str| {
            claims
                .get(name)
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        };
        let email = text("email");
        let user = text("preferred_username")
            .or_else(|| email.clone())
            .or_else(|| text("sub"))
            .ok_or(AlbError::Malformed("no sub"))?;
        let groups = super::groups_of(claims.get(&self.config.groups_claim));
        Ok(AlbClaims {
            user,
            email,
            groups,
        })
    }

    async fn key(&self, kid: &str) -> Result<VerifyingKey, AlbError> {
        // The kid becomes part of a URL: only the characters of the ALB's key ids.
        if kid.is_empty()
            || kid.len() > 128
            || !kid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(AlbError::Malformed("the kid is not a key id"));
        }
        let mut keys = self.keys.lock().await;
        if let Some(key) = keys.get(kid) {
            return Ok(*key);
        }
        let failed = |reason: String| AlbError::Key {
            kid: kid.to_owned(),
            reason,
        };
        let url = format!("{}/{kid}", self.config.public_key_url.trim_end_matches('/'));
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|error| failed(error.to_string()))?;
        let pem = response
            .text()
            .await
            .map_err(|error| failed(error.to_string()))?;
        let key = VerifyingKey::from_public_key_pem(pem.trim())
            .map_err(|error| failed(format!("not a P-256 public key: {error}")))?;
        // Keys are few (one per ALB and rotation) and never change under a kid.
        if keys.len() < 64 {
            keys.insert(kid.to_owned(), key);
        }
        Ok(key)
    }
}
