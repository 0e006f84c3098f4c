//! The server's side of artifacts: the bucket it keeps them in, reached through `aws-sdk-s3`
//! only (the engine's artifact store in local mode, S3 in AWS mode), and the signer.
//!
//! The server never holds an artifact's bytes in memory: uploads go from the browser to the
//! store through presigned `UploadPart` URLs, and verification streams the stored object back
//! through SHA-256 in blocks. The routes are in [`crate::api`]; this module is the storage
//! and the hook that says what still uses an artifact.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use aws_sdk_s3::presigning::PresigningConfig;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use crate::signing::Signer;

/// The default largest artifact: 5 GiB, the most one S3 PutObject or CopyObject handles.
pub const DEFAULT_MAX_BYTES: u64 = 5 * 1024 * 1024 * 1024;

/// The smallest part S3 accepts (except the last); parts are at least this big.
const MIN_PART_SIZE: u64 = 8 * 1024 * 1024;

/// S3's limit on the parts of one upload.
const MAX_PARTS: u64 = 10_000;

/// How long the part URLs of an upload work (a `GET` of the upload gives fresh ones).
pub const UPLOAD_URL_LIFETIME: Duration = Duration::from_secs(6 * 3600);

/// An upload neither completed nor abandoned for this long is abandoned by the server: the
/// store drops its parts (a browser closed mid-upload leaves them otherwise).
pub const ABANDONED_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);

/// How long a download link from `GET /artifacts/{id}/download` works.
pub const DOWNLOAD_URL_LIFETIME: Duration = Duration::from_secs(15 * 60);

/// Settings of `flotilla serve` for artifacts and signing.
#[derive(Debug, Clone)]
pub struct ArtifactConfig {
    /// The bucket artifacts live in (created at start-up in local mode).
    pub bucket: String,
    /// A local PKCS#8 signing key.
    pub signing_key: Option<PathBuf>,
    /// An AWS KMS key id or ARN to sign with instead.
    pub kms_key_id: Option<String>,
    /// The largest artifact accepted, in bytes.
    pub max_bytes: u64,
    /// The IAM role AWS IoT assumes to presign the URLs in install jobs
    /// (`presignedUrlConfig.roleArn`); AWS mode needs it.
    pub presigned_url_role_arn: Option<String>,
    /// Unfinished uploads older than this are swept ([`ABANDONED_AFTER`]).
    pub abandoned_after: Duration,
}

impl Default for ArtifactConfig {
    fn default() -> Self {
        Self {
            bucket: "flotilla-artifacts".into(),
            signing_key: None,
            kms_key_id: None,
            max_bytes: DEFAULT_MAX_BYTES,
            presigned_url_role_arn: None,
            abandoned_after: ABANDONED_AFTER,
        }
    }
}

/// The flags of `flotilla serve` for artifacts and signing (flattened into its arguments).
#[derive(Debug, clap::Args)]
pub struct ArtifactArgs {
    /// The bucket artifacts are kept in. Local mode creates it in the engine's store; in AWS
    /// mode it must exist.
    #[arg(
        long,
        env = "FLOTILLA_ARTIFACT_BUCKET",
        default_value = "flotilla-artifacts"
    )]
    artifact_bucket: String,
    /// The largest artifact accepted, in bytes.
    #[arg(long, env = "FLOTILLA_ARTIFACT_MAX_BYTES", default_value_t = DEFAULT_MAX_BYTES)]
    artifact_max_bytes: u64,
    /// The code-signing key: a PKCS#8 (or SEC1) PEM P-256 private key, as `flotilla keys
    /// generate` writes it.
    #[arg(long, env = "FLOTILLA_SIGNING_KEY", conflicts_with = "kms_key_id")]
    signing_key: Option<PathBuf>,
    /// Sign with this AWS KMS key (id, ARN or alias; ECC_NIST_P256) instead of a key file.
    #[arg(long, env = "FLOTILLA_KMS_KEY_ID")]
    kms_key_id: Option<String>,
    /// The IAM role AWS IoT assumes to presign the artifact URLs of install jobs
    /// (presignedUrlConfig.roleArn); needed in AWS mode.
    #[arg(long, env = "FLOTILLA_PRESIGNED_URL_ROLE_ARN")]
    presigned_url_role_arn: Option<String>,
}

impl From<ArtifactArgs> for ArtifactConfig {
    fn from(args: ArtifactArgs) -> Self {
        Self {
            bucket: args.artifact_bucket,
            signing_key: args.signing_key,
            kms_key_id: args.kms_key_id,
            max_bytes: args.artifact_max_bytes,
            presigned_url_role_arn: args.presigned_url_role_arn,
            abandoned_after: ABANDONED_AFTER,
        }
    }
}

/// The artifact bucket, the signer and the limits. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Artifacts(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    s3: aws_sdk_s3::Client,
    bucket: String,
    region: String,
    signer: Option<Signer>,
    max_bytes: u64,
    presigned_url_role_arn: Option<String>,
    abandoned_after: Duration,
}

/// A failed call to the store; the message is for the log, not for clients.
#[derive(Debug, thiserror::Error)]
#[error("S3 {operation}: {message}")]
pub struct StoreError {
    operation: &'static str,
    message: String,
}

impl StoreError {
    fn new<E: std::error::Error + 'static>(operation: &'static str, error: E) -> Self {
        Self {
            operation,
            message: aws_sdk_s3::error::DisplayErrorContext(error).to_string(),
        }
    }
}

/// One part the store holds.
#[derive(Debug, Clone)]
pub struct StoredPart {
    pub number: i32,
    pub size: u64,
    pub e_tag: Option<String>,
}

impl Artifacts {
    /// Sets up the bucket (`create_bucket` in local mode, where the store starts empty) and the
    /// signer. `kms` is the KMS client when `config.kms_key_id` is set.
    pub async fn start(
        s3: aws_sdk_s3::Client,
        region: &str,
        config: &ArtifactConfig,
        kms: Option<aws_sdk_kms::Client>,
        create_bucket: bool,
    ) -> anyhow::Result<Self> {
        let signer = match (&config.signing_key, &config.kms_key_id, kms) {
            (Some(path), _, _) => Some(Signer::from_key_file(path)?),
            (None, Some(key_id), Some(kms)) => Some(Signer::from_kms(kms, key_id.clone()).await?),
            _ => {
                tracing::warn!(
                    "no signing key (--signing-key or --kms-key-id): artifacts cannot be completed"
                );
                None
            }
        };
        if create_bucket {
            let created = s3.create_bucket().bucket(&config.bucket).send().await;
            if let Err(error) = created {
                let exists = error.as_service_error().is_some_and(|e| {
                    e.is_bucket_already_owned_by_you() || e.is_bucket_already_exists()
                });
                if !exists {
                    return Err(StoreError::new("CreateBucket", error))
                        .with_context(|| format!("creating bucket {}", config.bucket));
                }
            }
        }
        Ok(Self(Arc::new(Inner {
            s3,
            bucket: config.bucket.clone(),
            region: region.to_owned(),
            signer,
            max_bytes: config.max_bytes,
            presigned_url_role_arn: config.presigned_url_role_arn.clone(),
            abandoned_after: config.abandoned_after,
        })))
    }

    /// Abandons the uploads nobody finished within `abandoned_after`, until `shutdown`: the
    /// store drops their parts and the rows go. Replicas may all run it: each upload is taken
    /// by one of them (`skip locked`).
    pub async fn run_sweeper(self, pool: PgPool, shutdown: tokio_util::sync::CancellationToken) {
        let every = (self.0.abandoned_after / 2).min(Duration::from_secs(3600));
        loop {
            match self.sweep_abandoned(&pool).await {
                Ok(0) => {}
                Ok(n) => tracing::info!("abandoned {n} unfinished uploads"),
                Err(error) => tracing::warn!(%error, "sweeping abandoned uploads: {error}"),
            }
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// One sweep: aborts every upload older than `abandoned_after` in the store and deletes
    /// its row; returns how many.
    pub async fn sweep_abandoned(&self, pool: &PgPool) -> anyhow::Result<u64> {
        let mut swept = 0;
        loop {
            let mut tx = pool.begin().await?;
            let old: Vec<(Uuid, String, String)> = sqlx::query_as(
                "select id, object_key, s3_upload_id from server.artifact_uploads
                  where created_at < now() - make_interval(secs => $1)
                  order by created_at
                  limit 100
                  for update skip locked",
            )
            .bind(self.0.abandoned_after.as_secs_f64())
            .fetch_all(&mut *tx)
            .await?;
            if old.is_empty() {
                return Ok(swept);
            }
            for (id, key, upload_id) in &old {
                if let Err(error) = self.abort_upload(key, upload_id).await {
                    // The row goes anyway: a store that lost the upload must not keep it here.
                    tracing::warn!(%error, upload.id = %id, "aborting abandoned upload {id}: {error}");
                }
                sqlx::query("delete from server.artifact_uploads where id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            swept += old.len() as u64;
        }
    }

    pub fn signer(&self) -> Option<&Signer> {
        self.0.signer.as_ref()
    }

    pub fn max_bytes(&self) -> u64 {
        self.0.max_bytes
    }

    pub fn presigned_url_role_arn(&self) -> Option<&str> {
        self.0.presigned_url_role_arn.as_deref()
    }

    /// Where an artifact's object lives in the bucket.
    pub fn object_key(id: Uuid) -> String {
        format!("artifacts/{id}")
    }

    /// The `${aws:iot:s3-presigned-url:…}` placeholder of an object: IoT (or the engine) turns
    /// it into a fresh presigned GET URL each time a device receives the job document.
    pub fn placeholder(&self, key: &str) -> String {
        format!(
            "${{aws:iot:s3-presigned-url:https://s3.{}.amazonaws.com/{}/{key}}}",
            self.0.region, self.0.bucket
        )
    }

    /// The part size for a file of `size` bytes: [`MIN_PART_SIZE`], or larger (whole MiB) so
    /// that the file fits in S3's 10,000 parts.
    pub fn part_size(size: u64) -> u64 {
        const MIB: u64 = 1024 * 1024;
        MIN_PART_SIZE.max(size.div_ceil(MAX_PARTS).div_ceil(MIB) * MIB)
    }

    /// CreateMultipartUpload; returns the S3 upload id.
    pub async fn create_upload(&self, key: &str, content_type: &str) -> Result<String, StoreError> {
        let out = self
            .0
            .s3
            .create_multipart_upload()
            .bucket(&self.0.bucket)
            .key(key)
            .content_type(content_type)
            .send()
            .await
            .map_err(|e| StoreError::new("CreateMultipartUpload", e))?;
        out.upload_id.ok_or_else(|| StoreError {
            operation: "CreateMultipartUpload",
            message: "no upload id in the answer".into(),
        })
    }

    /// A presigned UploadPart URL.
    pub async fn presign_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: i32,
    ) -> Result<String, StoreError> {
        let presigned = self
            .0
            .s3
            .upload_part()
            .bucket(&self.0.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(part_number)
            .presigned(presigning(UPLOAD_URL_LIFETIME)?)
            .await
            .map_err(|e| StoreError::new("UploadPart (presign)", e))?;
        Ok(presigned.uri().to_owned())
    }

    /// The parts the store holds for an upload, in part-number order.
    pub async fn list_parts(
        &self,
        key: &str,
        upload_id: &str,
    ) -> Result<Vec<StoredPart>, StoreError> {
        let mut parts = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let out = self
                .0
                .s3
                .list_parts()
                .bucket(&self.0.bucket)
                .key(key)
                .upload_id(upload_id)
                .set_part_number_marker(marker.clone())
                .send()
                .await
                .map_err(|e| StoreError::new("ListParts", e))?;
            parts.extend(out.parts().iter().filter_map(|p| {
                Some(StoredPart {
                    number: p.part_number()?,
                    size: u64::try_from(p.size().unwrap_or_default()).unwrap_or_default(),
                    e_tag: p.e_tag().map(str::to_owned),
                })
            }));
            match out.next_part_number_marker() {
                Some(next) if out.is_truncated() == Some(true) => marker = Some(next.to_owned()),
                _ => break,
            }
        }
        parts.sort_by_key(|p| p.number);
        parts.dedup_by_key(|p| p.number);
        Ok(parts)
    }

    /// CompleteMultipartUpload with `parts` (all of them, in order).
    pub async fn complete_upload(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[StoredPart],
    ) -> Result<(), StoreError> {
        use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
        let completed = CompletedMultipartUpload::builder()
            .set_parts(Some(
                parts
                    .iter()
                    .map(|p| {
                        CompletedPart::builder()
                            .part_number(p.number)
                            .set_e_tag(p.e_tag.clone())
                            .build()
                    })
                    .collect(),
            ))
            .build();
        self.0
            .s3
            .complete_multipart_upload()
            .bucket(&self.0.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(completed)
            .send()
            .await
            .map_err(|e| StoreError::new("CompleteMultipartUpload", e))?;
        Ok(())
    }

    /// AbortMultipartUpload: the store drops the parts it holds.
    pub async fn abort_upload(&self, key: &str, upload_id: &str) -> Result<(), StoreError> {
        self.0
            .s3
            .abort_multipart_upload()
            .bucket(&self.0.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
            .map_err(|e| StoreError::new("AbortMultipartUpload", e))?;
        Ok(())
    }

    /// Reads the stored object through SHA-256: its digest and its size.
    pub async fn digest(&self, key: &str) -> Result<([u8; 32], u64), StoreError> {
        let out = self
            .0
            .s3
            .get_object()
            .bucket(&self.0.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| StoreError::new("GetObject", e))?;
        let mut body = out.body;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = body
            .try_next()
            .await
            .map_err(|e| StoreError::new("GetObject (body)", e))?
        {
            size += chunk.len() as u64;
            hasher.update(&chunk);
        }
        Ok((hasher.finalize().into(), size))
    }

    /// DeleteObject.
    pub async fn delete_object(&self, key: &str) -> Result<(), StoreError> {
        self.0
            .s3
            .delete_object()
            .bucket(&self.0.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| StoreError::new("DeleteObject", e))?;
        Ok(())
    }

    /// A presigned GET of the object that saves as `file_name`.
    pub async fn presign_download(&self, key: &str, file_name: &str) -> Result<String, StoreError> {
        // RFC 6266: an ASCII fallback and the exact name percent-encoded.
        let ascii: String = file_name
            .chars()
            .map(|c| {
                if c.is_ascii_graphic() && c != '"' && c != '\\' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let encoded =
            percent_encoding::utf8_percent_encode(file_name, percent_encoding::NON_ALPHANUMERIC);
        let presigned = self
            .0
            .s3
            .get_object()
            .bucket(&self.0.bucket)
            .key(key)
            .response_content_disposition(format!(
                "attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}"
            ))
            .presigned(presigning(DOWNLOAD_URL_LIFETIME)?)
            .await
            .map_err(|e| StoreError::new("GetObject (presign)", e))?;
        Ok(presigned.uri().to_owned())
    }
}

fn presigning(lifetime: Duration) -> Result<PresigningConfig, StoreError> {
    PresigningConfig::expires_in(lifetime).map_err(|e| StoreError::new("presign", e))
}

/// What still uses an artifact, as sentences for a 409: its jobs that are not finished, and
/// whatever [`rollout_references`] reports.
pub async fn references(pool: &PgPool, artifact_id: Uuid) -> sqlx::Result<Vec<String>> {
    let jobs: Vec<(String, String)> = sqlx::query_as(
        "select d.job_id, j.status
           from server.artifact_deployments d
           join server.jobs j on j.job_id = d.job_id
          where d.artifact_id = $1 and j.status not in ('COMPLETED', 'CANCELED')
          order by d.job_id",
    )
    .bind(artifact_id)
    .fetch_all(pool)
    .await?;
    let mut found: Vec<String> = jobs
        .into_iter()
        .map(|(job, status)| format!("job {job} ({status})"))
        .collect();
    found.extend(rollout_references(pool, artifact_id).await?);
    Ok(found)
}

/// The unfinished rollouts that install this artifact, or would roll back to it, as sentences.
pub async fn rollout_references(pool: &PgPool, artifact_id: Uuid) -> sqlx::Result<Vec<String>> {
    let rollouts: Vec<(String, String)> = sqlx::query_as(
        "select rollout_id, state
           from server.rollouts
          where state <> all($2)
            and (release ->> 'artifact_id' = $1 or previous_release ->> 'artifact_id' = $1)
          order by rollout_id",
    )
    .bind(artifact_id.to_string())
    .bind(&crate::rollouts::model::FINISHED[..])
    .fetch_all(pool)
    .await?;
    Ok(rollouts
        .into_iter()
        .map(|(rollout, state)| format!("rollout {rollout} ({state})"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_fit_s3s_limits() {
        const MIB: u64 = 1024 * 1024;
        assert_eq!(Artifacts::part_size(1), 8 * MIB);
        assert_eq!(Artifacts::part_size(2048 * MIB), 8 * MIB);
        let huge = 200 * 1024 * MIB;
        let part = Artifacts::part_size(huge);
        assert!(huge.div_ceil(part) <= MAX_PARTS);
        assert_eq!(part % MIB, 0);
    }
}
