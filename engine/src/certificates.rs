//! The engine as a certificate authority, and the device certificates it issues.
//!
//! On first start the engine makes a CA key pair and keeps it in PostgreSQL
//! (`engine.certificate_authority`), so certificates survive restarts. The CA signs
//!
//! - device certificates: CreateKeysAndCertificate (the engine makes the key pair) and
//!   CreateCertificateFromCsr (the device keeps its key), with AWS's id (the SHA-256 of the
//!   DER), ARN, statuses (ACTIVE, INACTIVE, REVOKED) and validity (until 2049-12-31, as AWS
//!   IoT's own certificates);
//! - the broker's TLS server certificate, made anew at every start.
//!
//! A certificate admits a device only while it is ACTIVE, within its validity by the engine's
//! [`Clock`], and attached to the thing the device connects as (AttachThingPrincipal). The
//! broker's TLS handshake proves the device holds the key of a certificate this CA signed;
//! [`Certificates::admit`] checks the rest on every CONNECT. Deactivating or revoking a
//! certificate disconnects the sessions that use it ([`crate::broker::Broker::disconnect_certificate`]).

use std::net::IpAddr;
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use crate::broker::Broker;
use crate::clock::Clock;
use crate::model::{Arns, valid_thing_name};

/// Why a certificate operation failed, in the terms of the IoT API's error shapes.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    /// `InvalidRequestException` (400).
    #[error("{0}")]
    Invalid(String),
    /// `ResourceNotFoundException` (404).
    #[error("{0}")]
    NotFound(String),
    /// `CertificateStateException` (406): the certificate's status forbids the operation.
    #[error("{0}")]
    State(String),
    /// `DeleteConflictException` (409): the certificate is still attached to a thing or a
    /// policy, or a policy to a certificate.
    #[error("{0}")]
    DeleteConflict(String),
    /// `MalformedPolicyException` (400): a policy document that is not a valid policy.
    #[error("{0}")]
    Malformed(String),
    /// `ResourceAlreadyExistsException` (409).
    #[error("{0}")]
    AlreadyExists(String),
    /// `InternalFailureException` (500); the cause was logged where it happened.
    #[error("internal error")]
    Internal,
}

impl From<sqlx::Error> for CertificateError {
    fn from(error: sqlx::Error) -> Self {
        tracing::error!(%error, "engine certificate store error: {error}");
        Self::Internal
    }
}

impl From<rcgen::Error> for CertificateError {
    fn from(error: rcgen::Error) -> Self {
        tracing::error!(%error, "certificate authority error: {error}");
        Self::Internal
    }
}

type Result<T, E = CertificateError> = std::result::Result<T, E>;

/// A certificate's status, as AWS spells it (only those the engine uses).
pub const STATUSES: [&str; 3] = ["ACTIVE", "INACTIVE", "REVOKED"];

/// A certificate as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CertificateRow {
    pub certificate_id: String,
    pub serial_number: String,
    pub certificate_pem: String,
    pub status: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub last_modified_at: DateTime<Utc>,
    pub generation_id: uuid::Uuid,
}

const CERTIFICATE_COLUMNS: &str = "certificate_id, serial_number, certificate_pem, status, \
     not_before, not_after, created_at, last_modified_at, generation_id";

/// A new certificate with the key pair the engine made for it.
#[derive(Debug, Clone)]
pub struct IssuedKeys {
    pub certificate: CertificateRow,
    pub public_key_pem: String,
    pub private_key_pem: String,
}

/// The broker's TLS identity: its certificate chain and key, in PEM.
#[derive(Debug, Clone)]
pub struct ServerIdentity {
    pub certificate_chain_pem: String,
    pub private_key_pem: String,
}

/// Why a device's certificate did not admit it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No certificate of this CA has the presented serial number (e.g. it was deleted).
    Unknown,
    /// INACTIVE or REVOKED.
    NotActive(String),
    /// Past its notAfter (or before its notBefore) by the engine's clock.
    Expired,
    /// Not attached to the thing the device connects as, and no policy admits it.
    NotAttached,
}

/// The certificate authority and the certificate registry. One per engine.
pub struct Certificates {
    pool: PgPool,
    clock: Arc<dyn Clock>,
    arns: Arns,
    broker: Broker,
    ca_certificate_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for Certificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificates").finish_non_exhaustive()
    }
}

/// AWS IoT's certificates are valid until the end of 2049; so are the engine's.
fn aws_not_after() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2049, 12, 31, 23, 59, 59)
        .single()
        .expect("a valid date")
}

fn to_offset(t: DateTime<Utc>) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(t.timestamp())
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// A random positive serial number, and its hex form as [`normalize_serial`] writes it.
fn random_serial() -> (SerialNumber, String) {
    let mut bytes = *uuid::Uuid::new_v4().as_bytes();
    // Positive and without a leading zero byte, so its DER and hex forms are unambiguous.
    bytes[0] = (bytes[0] & 0x7f) | 0x10;
    (SerialNumber::from_slice(&bytes), hex::encode(bytes))
}

/// A serial number's hex digits, lowercase, without separators or leading zeros, so the
/// broker's and the registry's spellings compare equal.
pub fn normalize_serial(serial: &str) -> String {
    let digits: String = serial
        .chars()
        .filter(char::is_ascii_hexdigit)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let trimmed = digits.trim_start_matches('0');
    if trimmed.is_empty() {
        "0".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// AWS's certificate id: 64 hex digits (optionally prefixed `0x`).
fn valid_certificate_id(id: &str) -> bool {
    let id = id.strip_prefix("0x").unwrap_or(id);
    id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Certificates {
    /// Loads the CA from the database, making it on first start. Two engines starting on one
    /// empty database at once agree on one CA: the insert that loses is dropped and the
    /// winner's CA read back.
    pub async fn load_or_create(
        pool: PgPool,
        clock: Arc<dyn Clock>,
        arns: Arns,
        broker: Broker,
    ) -> Result<Self> {
        let stored: Option<(String, String)> = sqlx::query_as(
            "select certificate_pem, private_key_pem from engine.certificate_authority",
        )
        .fetch_optional(&pool)
        .await?;
        let (certificate_pem, key_pem) = match stored {
            Some(stored) => stored,
            None => {
                let (certificate_pem, key_pem) = new_authority(&arns)?;
                sqlx::query(
                    "insert into engine.certificate_authority (certificate_pem, private_key_pem)
                     values ($1, $2) on conflict do nothing",
                )
                .bind(&certificate_pem)
                .bind(&key_pem)
                .execute(&pool)
                .await?;
                sqlx::query_as(
                    "select certificate_pem, private_key_pem from engine.certificate_authority",
                )
                .fetch_one(&pool)
                .await?
            }
        };
        let key = KeyPair::from_pem(&key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(&certificate_pem, key)?;
        Ok(Self {
            pool,
            clock,
            arns,
            broker,
            ca_certificate_pem: certificate_pem,
            issuer,
        })
    }

    /// A registry with a new CA that is not stored: for tests of code that needs a registry but
    /// never reaches the database.
    #[cfg(test)]
    pub(crate) fn in_memory(pool: PgPool, arns: Arns, broker: Broker) -> Result<Self> {
        let (certificate_pem, key_pem) = new_authority(&arns)?;
        let issuer = Issuer::from_ca_cert_pem(&certificate_pem, KeyPair::from_pem(&key_pem)?)?;
        Ok(Self {
            pool,
            clock: Arc::new(crate::clock::SystemClock),
            arns,
            broker,
            ca_certificate_pem: certificate_pem,
            issuer,
        })
    }

    /// The CA certificate devices must trust to verify the broker (and the broker trusts to
    /// verify devices), in PEM.
    pub fn ca_certificate_pem(&self) -> &str {
        &self.ca_certificate_pem
    }

    /// A certificate's ARN.
    pub fn arn(&self, certificate_id: &str) -> String {
        format!(
            "arn:aws:iot:{}:{}:cert/{certificate_id}",
            self.arns.region, self.arns.account_id
        )
    }

    /// A TLS server certificate for the broker, valid for `hosts` (names or IP addresses) and
    /// the loopback names, signed by the CA.
    pub fn server_identity(&self, hosts: &[String]) -> Result<ServerIdentity> {
        let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
        for host in hosts {
            if !names.contains(host) {
                names.push(host.clone());
            }
        }
        let mut params = CertificateParams::default();
        params.subject_alt_names = names
            .iter()
            .filter_map(|name| match name.parse::<IpAddr>() {
                Ok(ip) => Some(SanType::IpAddress(ip)),
                Err(_) => name.clone().try_into().ok().map(SanType::DnsName),
            })
            .collect();
        params.distinguished_name = dn("Flotilla engine MQTT broker");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.serial_number = Some(random_serial().0);
        let now = Utc::now();
        params.not_before = to_offset(now - chrono::Duration::hours(1));
        params.not_after = to_offset(now + chrono::Duration::days(825));
        let key = KeyPair::generate()?;
        let certificate = params.signed_by(&key, &self.issuer)?;
        Ok(ServerIdentity {
            certificate_chain_pem: format!("{}{}", certificate.pem(), self.ca_certificate_pem),
            private_key_pem: key.serialize_pem(),
        })
    }

    /// Signs a device certificate for `public_key` and stores it.
    async fn issue(
        &self,
        public_key: &impl rcgen::PublicKeyData,
        set_as_active: bool,
    ) -> Result<CertificateRow> {
        let (serial, serial_hex) = random_serial();
        let mut params = CertificateParams::default();
        // AWS IoT's certificates name no device: the thing is bound by AttachThingPrincipal.
        params.distinguished_name = dn("AWS IoT Certificate");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.serial_number = Some(serial);
        // The TLS handshake checks validity by the real time; the engine's clock may run ahead
        // of it in tests, so the certificate starts at the earlier of the two.
        let not_before = self.clock.now().min(Utc::now()) - chrono::Duration::minutes(5);
        let not_before = Utc
            .timestamp_opt(not_before.timestamp(), 0)
            .single()
            .unwrap_or(not_before);
        let not_after = aws_not_after();
        params.not_before = to_offset(not_before);
        params.not_after = to_offset(not_after);
        let certificate = params.signed_by(public_key, &self.issuer)?;
        let certificate_id = hex::encode(Sha256::digest(certificate.der()));
        let status = if set_as_active { "ACTIVE" } else { "INACTIVE" };
        let row: CertificateRow = sqlx::query_as(&format!(
            "insert into engine.certificates
                 (certificate_id, serial_number, certificate_pem, status, not_before, not_after,
                  generation_id)
             values ($1, $2, $3, $4, $5, $6, $7)
             returning {CERTIFICATE_COLUMNS}"
        ))
        .bind(&certificate_id)
        .bind(normalize_serial(&serial_hex))
        .bind(certificate.pem())
        .bind(status)
        .bind(not_before)
        .bind(not_after)
        .bind(uuid::Uuid::new_v4())
        .fetch_one(&self.pool)
        .await?;
        tracing::info!(certificate.id = %certificate_id, status, "issued certificate {certificate_id} ({status})");
        Ok(row)
    }

    /// CreateKeysAndCertificate: a new key pair and a certificate for it.
    pub async fn create_keys_and_certificate(&self, set_as_active: bool) -> Result<IssuedKeys> {
        let key = KeyPair::generate()?;
        let certificate = self.issue(&key, set_as_active).await?;
        Ok(IssuedKeys {
            certificate,
            public_key_pem: key.public_key_pem(),
            private_key_pem: key.serialize_pem(),
        })
    }

    /// CreateCertificateFromCsr: a certificate for the key of a PEM certificate signing
    /// request. Only the key is taken from the request; the subject and extensions are the
    /// engine's, as AWS IoT's are.
    pub async fn create_from_csr(
        &self,
        csr_pem: &str,
        set_as_active: bool,
    ) -> Result<CertificateRow> {
        if csr_pem.len() > 4096 {
            return Err(CertificateError::Invalid(
                "certificateSigningRequest is longer than 4096 characters".into(),
            ));
        }
        let csr = CertificateSigningRequestParams::from_pem(csr_pem).map_err(|error| {
            CertificateError::Invalid(format!(
                "certificateSigningRequest is not a valid PEM certificate signing request: {error}"
            ))
        })?;
        self.issue(&csr.public_key, set_as_active).await
    }

    /// DescribeCertificate.
    pub async fn describe(&self, certificate_id: &str) -> Result<CertificateRow> {
        let id = checked_id(certificate_id)?;
        sqlx::query_as(&format!(
            "select {CERTIFICATE_COLUMNS} from engine.certificates where certificate_id = $1"
        ))
        .bind(&id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| not_found(&id))
    }

    /// ListCertificates: a page of `page_size` in creation order (newest first unless
    /// `ascending`), after the certificate the `marker` names. Returns the page and the marker
    /// of the next one.
    pub async fn list(
        &self,
        page_size: i64,
        marker: Option<&str>,
        ascending: bool,
    ) -> Result<(Vec<CertificateRow>, Option<String>)> {
        let after: Option<(DateTime<Utc>, String)> = match marker {
            None => None,
            Some(marker) => {
                let id = hex::decode(marker)
                    .ok()
                    .and_then(|bytes| String::from_utf8(bytes).ok())
                    .filter(|id| valid_certificate_id(id))
                    .ok_or_else(|| {
                        CertificateError::Invalid("marker is not a marker this API returned".into())
                    })?;
                let created: Option<DateTime<Utc>> = sqlx::query_scalar(
                    "select created_at from engine.certificates where certificate_id = $1",
                )
                .bind(&id)
                .fetch_optional(&self.pool)
                .await?;
                // If the marker's certificate was deleted meanwhile, start over: nothing is
                // lost, as the API promises no snapshot.
                created.map(|created| (created, id))
            }
        };
        let (comparison, order) = if ascending {
            (">", "asc")
        } else {
            ("<", "desc")
        };
        let mut rows: Vec<CertificateRow> = sqlx::query_as(&format!(
            "select {CERTIFICATE_COLUMNS} from engine.certificates
             where $1::timestamptz is null or (created_at, certificate_id) {comparison} ($1, $2)
             order by created_at {order}, certificate_id {order}
             limit $3"
        ))
        .bind(after.as_ref().map(|(created, _)| *created))
        .bind(after.as_ref().map(|(_, id)| id.clone()))
        .bind(page_size + 1)
        .fetch_all(&self.pool)
        .await?;
        let next = if rows.len() as i64 > page_size {
            rows.truncate(page_size as usize);
            rows.last().map(|row| hex::encode(&row.certificate_id))
        } else {
            None
        };
        Ok((rows, next))
    }

    /// UpdateCertificate. A revoked certificate stays revoked. Leaving ACTIVE disconnects the
    /// devices connected with the certificate.
    pub async fn update(&self, certificate_id: &str, new_status: &str) -> Result<()> {
        let id = checked_id(certificate_id)?;
        if !STATUSES.contains(&new_status) {
            return Err(CertificateError::Invalid(format!(
                "newStatus must be one of ACTIVE, INACTIVE or REVOKED, got {new_status:?}"
            )));
        }
        let mut tx = self.pool.begin().await?;
        let current: Option<String> = sqlx::query_scalar(
            "select status from engine.certificates where certificate_id = $1 for update",
        )
        .bind(&id)
        .fetch_optional(&mut *tx)
        .await?;
        let current = current.ok_or_else(|| not_found(&id))?;
        if current == "REVOKED" && new_status != "REVOKED" {
            return Err(CertificateError::State(format!(
                "Certificate {id} is revoked; a revoked certificate cannot be reactivated"
            )));
        }
        sqlx::query(
            "update engine.certificates
             set status = $2, last_modified_at = now(), generation_id = $3
             where certificate_id = $1",
        )
        .bind(&id)
        .bind(new_status)
        .bind(uuid::Uuid::new_v4())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        tracing::info!(certificate.id = %id, from = current, to = new_status, "certificate {id}: {current} -> {new_status}");
        if new_status != "ACTIVE" {
            self.broker.disconnect_certificate(&id).await;
        }
        Ok(())
    }

    /// DeleteCertificate: only an inactive or revoked certificate attached to no thing, and,
    /// unless `force`, to no policy.
    pub async fn delete(&self, certificate_id: &str, force: bool) -> Result<()> {
        let id = checked_id(certificate_id)?;
        let mut tx = self.pool.begin().await?;
        let status: Option<String> = sqlx::query_scalar(
            "select status from engine.certificates where certificate_id = $1 for update",
        )
        .bind(&id)
        .fetch_optional(&mut *tx)
        .await?;
        let status = status.ok_or_else(|| not_found(&id))?;
        if status == "ACTIVE" {
            return Err(CertificateError::State(format!(
                "Certificate {id} is ACTIVE; deactivate it before deleting it"
            )));
        }
        let attached: i64 = sqlx::query_scalar(
            "select count(*) from engine.thing_principals where certificate_id = $1",
        )
        .bind(&id)
        .fetch_one(&mut *tx)
        .await?;
        if attached > 0 {
            return Err(CertificateError::DeleteConflict(format!(
                "Certificate {id} is attached to {attached} thing(s); detach it first"
            )));
        }
        let policies: i64 = sqlx::query_scalar(
            "select count(*) from engine.policy_targets where certificate_id = $1",
        )
        .bind(&id)
        .fetch_one(&mut *tx)
        .await?;
        if policies > 0 && !force {
            return Err(CertificateError::DeleteConflict(format!(
                "Certificate {id} has {policies} polic(ies) attached; detach them or use forceDelete"
            )));
        }
        sqlx::query("delete from engine.certificates where certificate_id = $1")
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The certificate id a principal ARN names, if it is a certificate of this account.
    fn principal_certificate(&self, principal: &str) -> Result<String> {
        let prefix = format!(
            "arn:aws:iot:{}:{}:cert/",
            self.arns.region, self.arns.account_id
        );
        principal
            .strip_prefix(&prefix)
            .filter(|id| valid_certificate_id(id))
            .map(|id| id.trim_start_matches("0x").to_ascii_lowercase())
            .ok_or_else(|| {
                CertificateError::Invalid(format!(
                    "principal must be a certificate ARN of this account ({prefix}…), got {principal:?}"
                ))
            })
    }

    async fn require_thing(&self, thing_name: &str) -> Result<()> {
        if !valid_thing_name(thing_name) {
            return Err(CertificateError::Invalid(format!(
                "thingName must be 1-128 characters of [a-zA-Z0-9:_-], got {thing_name:?}"
            )));
        }
        let exists: bool =
            sqlx::query_scalar("select exists (select 1 from engine.things where thing_name = $1)")
                .bind(thing_name)
                .fetch_one(&self.pool)
                .await?;
        if exists {
            Ok(())
        } else {
            Err(CertificateError::NotFound(format!(
                "Thing {thing_name} not found"
            )))
        }
    }

    /// AttachThingPrincipal (idempotent).
    pub async fn attach(&self, thing_name: &str, principal: &str) -> Result<()> {
        let id = self.principal_certificate(principal)?;
        self.require_thing(thing_name).await?;
        self.describe(&id).await?;
        // A concurrent DeleteThing or DeleteCertificate makes the insert fail on its foreign
        // key: the same not-found a moment later would have given.
        sqlx::query(
            "insert into engine.thing_principals (thing_name, certificate_id)
             values ($1, $2) on conflict do nothing",
        )
        .bind(thing_name)
        .bind(&id)
        .execute(&self.pool)
        .await
        .map_err(|error| match &error {
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
                CertificateError::NotFound(format!(
                    "Thing {thing_name} or certificate {id} not found"
                ))
            }
            _ => error.into(),
        })?;
        Ok(())
    }

    /// DetachThingPrincipal. Detaching disconnects the thing's sessions that use the
    /// certificate, as it no longer admits them.
    pub async fn detach(&self, thing_name: &str, principal: &str) -> Result<()> {
        let id = self.principal_certificate(principal)?;
        self.require_thing(thing_name).await?;
        self.describe(&id).await?;
        sqlx::query(
            "delete from engine.thing_principals where thing_name = $1 and certificate_id = $2",
        )
        .bind(thing_name)
        .bind(&id)
        .execute(&self.pool)
        .await?;
        self.broker.disconnect_certificate(&id).await;
        Ok(())
    }

    /// ListThingPrincipals: the ARNs of the thing's certificates in id order, after `after`.
    pub async fn thing_principals(
        &self,
        thing_name: &str,
        limit: i64,
        after: Option<&str>,
    ) -> Result<Vec<String>> {
        self.require_thing(thing_name).await?;
        let ids: Vec<String> = sqlx::query_scalar(
            "select certificate_id from engine.thing_principals
             where thing_name = $1 and ($2::text is null or certificate_id > $2)
             order by certificate_id limit $3",
        )
        .bind(thing_name)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(ids)
    }

    /// Whether the certificate with `serial` (as the TLS handshake presented it) admits a
    /// client now: registered, ACTIVE and within its validity. On success, its id, whether it
    /// is attached to the thing `client_id` names, and the documents of its policies; the
    /// broker decides from those what the client may do.
    pub async fn admit(
        &self,
        serial: &str,
        client_id: &str,
    ) -> Result<std::result::Result<Admission, Refusal>> {
        /// Id, status, validity, whether it is attached to the thing, its policies.
        type Row = (
            String,
            String,
            DateTime<Utc>,
            DateTime<Utc>,
            bool,
            Vec<String>,
        );
        let row: Option<Row> = sqlx::query_as(
            "select c.certificate_id, c.status, c.not_before, c.not_after,
                    exists (select 1 from engine.thing_principals p
                            where p.certificate_id = c.certificate_id and p.thing_name = $2),
                    array(select p.policy_document from engine.policy_targets t
                          join engine.policies p using (policy_name)
                          where t.certificate_id = c.certificate_id order by p.policy_name)
             from engine.certificates c where c.serial_number = $1",
        )
        .bind(normalize_serial(serial))
        .bind(client_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some((certificate_id, status, not_before, not_after, attached, policies)) = row else {
            return Ok(Err(Refusal::Unknown));
        };
        let now = self.clock.now();
        Ok(if status != "ACTIVE" {
            Err(Refusal::NotActive(status))
        } else if now > not_after || now + chrono::Duration::minutes(10) < not_before {
            Err(Refusal::Expired)
        } else {
            Ok(Admission {
                certificate_id,
                attached,
                policies,
            })
        })
    }
}

/// A certificate that admits its client, and what decides what the client may do.
#[derive(Debug, Clone)]
pub struct Admission {
    pub certificate_id: String,
    /// Attached to the thing the client id names.
    pub attached: bool,
    /// The documents of the policies attached to the certificate.
    pub policies: Vec<String>,
}

fn dn(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}

/// A new CA: its certificate and PKCS#8 key, in PEM.
fn new_authority(arns: &Arns) -> Result<(String, String)> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(&format!(
        "Flotilla engine CA {} {}",
        arns.account_id, arns.region
    ));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.serial_number = Some(random_serial().0);
    let now = Utc::now();
    params.not_before = to_offset(now - chrono::Duration::hours(1));
    params.not_after = to_offset(
        Utc.with_ymd_and_hms(2060, 1, 1, 0, 0, 0)
            .single()
            .expect("a valid date"),
    );
    let certificate = params.self_signed(&key)?;
    Ok((certificate.pem(), key.serialize_pem()))
}

fn checked_id(certificate_id: &str) -> Result<String> {
    if valid_certificate_id(certificate_id) {
        Ok(certificate_id.trim_start_matches("0x").to_ascii_lowercase())
    } else {
        Err(CertificateError::Invalid(format!(
            "certificateId must be 64 hexadecimal characters, got {certificate_id:?}"
        )))
    }
}

fn not_found(id: &str) -> CertificateError {
    CertificateError::NotFound(format!("Certificate {id} not found"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_compare_in_any_spelling() {
        assert_eq!(normalize_serial("00:1A:2b"), "1a2b");
        assert_eq!(normalize_serial("1a2b"), "1a2b");
        assert_eq!(normalize_serial("0x001A2B"), "1a2b");
        assert_eq!(normalize_serial("00"), "0");
    }

    #[test]
    fn certificate_ids_are_64_hex_digits() {
        let id = "a".repeat(64);
        assert!(valid_certificate_id(&id));
        assert!(valid_certificate_id(&format!("0x{id}")));
        assert!(!valid_certificate_id(&"a".repeat(63)));
        assert!(!valid_certificate_id(&"g".repeat(64)));
    }
}
