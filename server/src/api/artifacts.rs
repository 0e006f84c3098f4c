//! `/api/v1/artifacts`: uploads straight to the store in presigned parts, verification and
//! signing on completion, list, detail, download, delete, deploy as an install job; and
//! `/api/v1/signing/public-key` for provisioning devices.
//!
//! An artifact is registered only after the store holds every part, the object's SHA-256 as
//! the server reads it back equals the one the client declared, and the signature is made:
//! any failure before that leaves no artifact row behind (a refused checksum also removes
//! the object). A truncated upload keeps its parts so the client can send what is missing.

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, SecondsFormat, Utc};
use flotilla_api::artifacts::{
    Artifact, ArtifactList, CompleteUpload, CreateUpload, DeployArtifact, Upload, UploadPart,
};
use flotilla_api::install::{
    self, INSTALL_DOCUMENT_VERSION, INSTALL_OPERATION, InstallDocument, InstallStep,
    SIGNATURE_ALGORITHM,
};
use flotilla_api::{JobDetail, PresignedUrlOptions};
use uuid::Uuid;

use super::job_options::Problems;
use super::{ApiError, ApiJson, jobs};
use crate::app::AppState;
use crate::artifacts::{Artifacts, StoredPart, UPLOAD_URL_LIFETIME};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/artifacts", get(list))
        .route("/artifacts/uploads", post(create_upload))
        .route(
            "/artifacts/uploads/{upload_id}",
            get(upload).delete(abort_upload),
        )
        .route("/artifacts/uploads/{upload_id}/complete", post(complete))
        .route("/artifacts/{id}", get(detail).delete(delete))
        .route("/artifacts/{id}/download", get(download))
        .route("/artifacts/{id}/deploy", post(deploy))
        .route("/signing/public-key", get(public_key))
}

/// Checks a name or version: 1-128 characters, none of them a control character or a path
/// separator, no surrounding spaces, not `.` or `..` (they become file names on devices and
/// in browsers).
fn check_label(problems: &mut Problems, field: &str, value: &str) {
    let message = if !(1..=128).contains(&value.chars().count()) {
        "must be 1-128 characters"
    } else if value.chars().any(char::is_control) {
        "must not contain control characters"
    } else if value.contains(['/', '\\']) {
        "must not contain path separators (/ or \\)"
    } else if value.trim() != value {
        "must not start or end with spaces"
    } else if value == "." || value == ".." {
        "must not be . or .."
    } else {
        return;
    };
    problems.add(field, message);
}

fn valid_content_type(value: &str) -> bool {
    value.len() <= 255
        && value.split_once('/').is_some_and(|(kind, sub)| {
            !kind.is_empty()
                && !sub.is_empty()
                && value.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
        })
}

fn valid_hardware_type(value: &str) -> bool {
    (1..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'))
}

fn parse_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| ApiError::NotFound(format!("no artifact {id:?}")))
}

fn signer(state: &AppState) -> Result<&crate::signing::Signer, ApiError> {
    state.artifacts.signer().ok_or_else(|| {
        ApiError::Unavailable(
            "the server has no signing key (--signing-key or --kms-key-id), so it cannot sign artifacts"
                .into(),
        )
    })
}

/// An upload in progress, as stored.
#[derive(sqlx::FromRow)]
struct UploadRow {
    id: Uuid,
    name: String,
    version: String,
    size: i64,
    content_type: String,
    hardware_types: Vec<String>,
    object_key: String,
    s3_upload_id: String,
    part_size: i64,
    uploader: String,
}

impl UploadRow {
    /// `(part number, offset, size)` of every part.
    fn layout(&self) -> Vec<(i32, u64, u64)> {
        let (size, part) = (self.size as u64, self.part_size as u64);
        (0..size.div_ceil(part))
            .map(|i| {
                let offset = i * part;
                (i as i32 + 1, offset, part.min(size - offset))
            })
            .collect()
    }
}

async fn load_upload(state: &AppState, upload_id: &str) -> Result<UploadRow, ApiError> {
    let id = Uuid::parse_str(upload_id)
        .map_err(|_| ApiError::NotFound(format!("no upload {upload_id:?}")))?;
    sqlx::query_as(
        "select id, name, version, size, content_type, hardware_types, object_key, s3_upload_id,
                part_size, uploader
           from server.artifact_uploads where id = $1",
    )
    .bind(id)
    .fetch_optional(&state.pool)
    .await?
    .ok_or_else(|| ApiError::NotFound(format!("no upload {upload_id:?}")))
}

/// The upload with fresh part URLs; parts the store already holds whole are marked received.
async fn upload_view(
    state: &AppState,
    row: &UploadRow,
    stored: &[StoredPart],
) -> Result<Upload, ApiError> {
    let store = &state.artifacts;
    let mut parts = Vec::new();
    for (number, offset, size) in row.layout() {
        let url = store
            .presign_part(&row.object_key, &row.s3_upload_id, number)
            .await?;
        let received = stored.iter().any(|p| p.number == number && p.size == size);
        parts.push(UploadPart {
            part_number: number as u32,
            offset,
            size,
            url,
            received,
        });
    }
    let expires =
        Utc::now() + chrono::Duration::from_std(UPLOAD_URL_LIFETIME).expect("a short duration");
    Ok(Upload {
        id: row.id.to_string(),
        name: row.name.clone(),
        version: row.version.clone(),
        size: row.size as u64,
        part_size: row.part_size as u64,
        parts,
        urls_expire_at: expires.to_rfc3339_opts(SecondsFormat::Secs, true),
    })
}

/// `POST /artifacts/uploads`: starts a multipart upload and answers its part URLs.
#[utoipa::path(post, path = "/api/v1/artifacts/uploads", operation_id = "artifacts_create_upload", tag = "artifacts", request_body(content = Object, description = "name, version, size, content type, hardware types and SHA-256 of the file"), responses((status = 201, description = "The upload with its presigned part URLs", body = Object), ApiError))]
pub(crate) async fn create_upload(
    State(state): State<AppState>,
    axum::Extension(identity): axum::Extension<crate::auth::Identity>,
    ApiJson(request): ApiJson<CreateUpload>,
) -> Result<(StatusCode, Json<Upload>), ApiError> {
    let mut problems = Problems::default();
    check_label(&mut problems, "name", &request.name);
    check_label(&mut problems, "version", &request.version);
    let max = state.artifacts.max_bytes();
    if request.size == 0 {
        problems.add("size", "the file is empty; an artifact has at least 1 byte");
    } else if request.size > max {
        problems.add(
            "size",
            format!("is {} bytes; at most {max} are accepted", request.size),
        );
    }
    let content_type = request
        .content_type
        .clone()
        .unwrap_or_else(|| "application/octet-stream".into());
    if !valid_content_type(&content_type) {
        problems.add(
            "content_type",
            "must be a MIME type such as application/octet-stream",
        );
    }
    if request.hardware_types.len() > 50 {
        problems.add("hardware_types", "at most 50");
    }
    if let Some(bad) = request
        .hardware_types
        .iter()
        .find(|h| !valid_hardware_type(h))
    {
        problems.add(
            "hardware_types",
            format!("{bad:?} must be 1-128 letters, digits, '.', '-', '_' or ':'"),
        );
    }
    if !problems.0.is_empty() {
        return Err(ApiError::fields(problems.0));
    }
    // Refuse now rather than after a 2 GiB upload.
    signer(&state)?;
    ensure_new(&state, &request.name, &request.version).await?;

    let id = Uuid::new_v4();
    let key = Artifacts::object_key(id);
    let s3_upload_id = state.artifacts.create_upload(&key, &content_type).await?;
    let row = UploadRow {
        id,
        name: request.name,
        version: request.version,
        size: request.size as i64,
        content_type,
        hardware_types: request.hardware_types,
        object_key: key,
        s3_upload_id,
        part_size: Artifacts::part_size(request.size) as i64,
        uploader: identity.user,
    };
    sqlx::query(
        "insert into server.artifact_uploads
             (id, name, version, size, content_type, hardware_types, object_key, s3_upload_id,
              part_size, uploader)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(row.id)
    .bind(&row.name)
    .bind(&row.version)
    .bind(row.size)
    .bind(&row.content_type)
    .bind(&row.hardware_types)
    .bind(&row.object_key)
    .bind(&row.s3_upload_id)
    .bind(row.part_size)
    .bind(&row.uploader)
    .execute(&state.pool)
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(upload_view(&state, &row, &[]).await?),
    ))
}

/// A name and version may be registered once.
async fn ensure_new(state: &AppState, name: &str, version: &str) -> Result<(), ApiError> {
    let exists: bool = sqlx::query_scalar(
        "select exists (select 1 from server.artifacts where name = $1 and version = $2)",
    )
    .bind(name)
    .bind(version)
    .fetch_one(&state.pool)
    .await?;
    if exists {
        return Err(ApiError::Conflict(format!(
            "an artifact {name:?} version {version:?} already exists"
        )));
    }
    Ok(())
}

/// `GET /artifacts/uploads/{id}`: fresh part URLs and which parts arrived (to resume).
#[utoipa::path(get, path = "/api/v1/artifacts/uploads/{upload_id}", operation_id = "artifacts_upload", tag = "artifacts", params(("upload_id" = String, Path, description = "The upload id")), responses((status = 200, description = "The upload with fresh part URLs and the parts received", body = Object), ApiError))]
pub(crate) async fn upload(
    State(state): State<AppState>,
    Path(upload_id): Path<String>,
) -> Result<Json<Upload>, ApiError> {
    let row = load_upload(&state, &upload_id).await?;
    let stored = state
        .artifacts
        .list_parts(&row.object_key, &row.s3_upload_id)
        .await?;
    Ok(Json(upload_view(&state, &row, &stored).await?))
}

/// `DELETE /artifacts/uploads/{id}`: abandons the upload; the store drops its parts.
#[utoipa::path(delete, path = "/api/v1/artifacts/uploads/{upload_id}", operation_id = "artifacts_abort_upload", tag = "artifacts", params(("upload_id" = String, Path, description = "The upload id")), responses((status = 204, description = "Abandoned", body = Object), ApiError))]
pub(crate) async fn abort_upload(
    State(state): State<AppState>,
    Path(upload_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let row = load_upload(&state, &upload_id).await?;
    if let Err(error) = state
        .artifacts
        .abort_upload(&row.object_key, &row.s3_upload_id)
        .await
    {
        // The parts stay in the store, but nothing refers to them any more.
        tracing::warn!(%error, upload.id = %row.id, "aborting upload {}: {error}", row.id);
    }
    delete_upload_row(&state, row.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_upload_row(state: &AppState, id: Uuid) -> Result<(), ApiError> {
    sqlx::query("delete from server.artifact_uploads where id = $1")
        .bind(id)
        .execute(&state.pool)
        .await?;
    Ok(())
}

/// What is wrong with the parts the store holds, if anything.
fn missing_parts(row: &UploadRow, stored: &[StoredPart]) -> Option<String> {
    let layout = row.layout();
    let mut problems = Vec::new();
    for (number, _, size) in &layout {
        match stored.iter().find(|p| p.number == *number) {
            None => problems.push(format!("part {number} is missing")),
            Some(part) if part.size != *size => problems.push(format!(
                "part {number} has {} bytes, expected {size}",
                part.size
            )),
            Some(_) => {}
        }
    }
    if let Some(extra) = stored.iter().find(|p| p.number as usize > layout.len()) {
        problems.push(format!(
            "part {} is beyond the declared size ({} parts)",
            extra.number,
            layout.len()
        ));
    }
    if problems.is_empty() {
        return None;
    }
    let received: u64 = stored.iter().map(|p| p.size).sum();
    let shown: Vec<String> = problems.iter().take(5).cloned().collect();
    let more = problems.len().saturating_sub(5);
    Some(format!(
        "the upload is incomplete: the store holds {received} of {} bytes; {}{}",
        row.size,
        shown.join("; "),
        if more > 0 {
            format!(" (and {more} more)")
        } else {
            String::new()
        }
    ))
}

/// `POST /artifacts/uploads/{id}/complete`: checks the parts, completes the object, verifies
/// its SHA-256, signs it and registers the artifact.
#[utoipa::path(post, path = "/api/v1/artifacts/uploads/{upload_id}/complete", operation_id = "artifacts_complete", tag = "artifacts", params(("upload_id" = String, Path, description = "The upload id")), request_body(content = Object, description = "the parts uploaded"), responses((status = 201, description = "The verified, signed artifact", body = Object), ApiError))]
pub(crate) async fn complete(
    State(state): State<AppState>,
    Path(upload_id): Path<String>,
    ApiJson(request): ApiJson<CompleteUpload>,
) -> Result<(StatusCode, Json<Artifact>), ApiError> {
    let declared = request.sha256.to_ascii_lowercase();
    if declared.len() != 64 || !declared.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::field(
            "sha256",
            "must be 64 hexadecimal characters",
        ));
    }
    let row = load_upload(&state, &upload_id).await?;
    let signer = signer(&state)?.clone();
    let store = &state.artifacts;
    let stored = store.list_parts(&row.object_key, &row.s3_upload_id).await?;
    if let Some(message) = missing_parts(&row, &stored) {
        // The upload stays: the client may send the missing parts and complete again.
        return Err(ApiError::field("parts", message));
    }
    store
        .complete_upload(&row.object_key, &row.s3_upload_id, &stored)
        .await?;

    // From here the object exists; any refusal removes it and the upload.
    let registered = verify_and_register(&state, &row, &declared, &signer).await;
    if registered.is_err() {
        if let Err(error) = store.delete_object(&row.object_key).await {
            tracing::warn!(%error, upload.id = %row.id, "removing the refused object of upload {}: {error}", row.id);
        }
        delete_upload_row(&state, row.id).await?;
    }
    Ok((StatusCode::CREATED, Json(registered?)))
}

async fn verify_and_register(
    state: &AppState,
    row: &UploadRow,
    declared: &str,
    signer: &crate::signing::Signer,
) -> Result<Artifact, ApiError> {
    let (digest, size) = state.artifacts.digest(&row.object_key).await?;
    if size != row.size as u64 {
        return Err(ApiError::field(
            "size",
            format!(
                "the stored file has {size} bytes, not the declared {}",
                row.size
            ),
        ));
    }
    let actual = hex::encode(digest);
    if actual != declared {
        return Err(ApiError::field(
            "sha256",
            format!("the uploaded file's SHA-256 is {actual}, not the declared {declared}"),
        ));
    }
    let signature = signer.sign_digest(&digest).await?;
    use base64::Engine as _;
    let signature = base64::engine::general_purpose::STANDARD.encode(signature);
    let mut tx = state.pool.begin().await?;
    let inserted: Result<ArtifactRow, sqlx::Error> = sqlx::query_as(&format!(
        "insert into server.artifacts
             (id, name, version, size, content_type, hardware_types, sha256, signature,
              signature_algorithm, object_key, uploader)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         returning {ARTIFACT_COLUMNS}"
    ))
    .bind(row.id)
    .bind(&row.name)
    .bind(&row.version)
    .bind(row.size)
    .bind(&row.content_type)
    .bind(&row.hardware_types)
    .bind(&actual)
    .bind(&signature)
    .bind(SIGNATURE_ALGORITHM)
    .bind(&row.object_key)
    .bind(&row.uploader)
    .fetch_one(&mut *tx)
    .await;
    let artifact = match inserted {
        Ok(artifact) => artifact,
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            return Err(ApiError::Conflict(format!(
                "an artifact {:?} version {:?} already exists",
                row.name, row.version
            )));
        }
        Err(other) => return Err(other.into()),
    };
    sqlx::query("delete from server.artifact_uploads where id = $1")
        .bind(row.id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    tracing::info!(artifact.id = %row.id, "artifact {} {} registered ({size} bytes, sha256 {actual})", row.name, row.version);
    Ok(artifact.into())
}

const ARTIFACT_COLUMNS: &str = "id, name, version, size, content_type, hardware_types, sha256, \
     signature, signature_algorithm, object_key, uploader, created_at";

#[derive(sqlx::FromRow)]
struct ArtifactRow {
    id: Uuid,
    name: String,
    version: String,
    size: i64,
    content_type: String,
    hardware_types: Vec<String>,
    sha256: String,
    signature: String,
    signature_algorithm: String,
    object_key: String,
    uploader: String,
    created_at: DateTime<Utc>,
}

impl From<ArtifactRow> for Artifact {
    fn from(row: ArtifactRow) -> Self {
        Self {
            id: row.id.to_string(),
            name: row.name,
            version: row.version,
            size: row.size as u64,
            content_type: row.content_type,
            hardware_types: row.hardware_types,
            sha256: row.sha256,
            signature: row.signature,
            signature_algorithm: row.signature_algorithm,
            uploader: row.uploader,
            created_at: row.created_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        }
    }
}

async fn load(state: &AppState, id: &str) -> Result<ArtifactRow, ApiError> {
    sqlx::query_as(&format!(
        "select {ARTIFACT_COLUMNS} from server.artifacts where id = $1"
    ))
    .bind(parse_id(id)?)
    .fetch_optional(&state.pool)
    .await?
    .ok_or_else(|| ApiError::NotFound(format!("no artifact {id:?}")))
}

/// `GET /artifacts`: newest first.
#[utoipa::path(get, path = "/api/v1/artifacts", operation_id = "artifacts_list", tag = "artifacts", responses((status = 200, description = "Artifacts, newest first", body = Object), ApiError))]
pub(crate) async fn list(State(state): State<AppState>) -> Result<Json<ArtifactList>, ApiError> {
    let rows: Vec<ArtifactRow> = sqlx::query_as(&format!(
        "select {ARTIFACT_COLUMNS} from server.artifacts order by created_at desc, id limit 1000"
    ))
    .fetch_all(&state.pool)
    .await?;
    Ok(Json(ArtifactList {
        artifacts: rows.into_iter().map(Artifact::from).collect(),
    }))
}

#[utoipa::path(get, path = "/api/v1/artifacts/{id}", operation_id = "artifacts_detail", tag = "artifacts", params(("id" = String, Path, description = "The artifact id")), responses((status = 200, description = "The artifact", body = Object), ApiError))]
pub(crate) async fn detail(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Artifact>, ApiError> {
    Ok(Json(load(&state, &id).await?.into()))
}

/// `GET /artifacts/{id}/download`: a redirect to a short-lived presigned URL of the store.
#[utoipa::path(get, path = "/api/v1/artifacts/{id}/download", operation_id = "artifacts_download", tag = "artifacts", params(("id" = String, Path, description = "The artifact id")), responses((status = 307, description = "Redirect to a presigned GET URL", body = Object), ApiError))]
pub(crate) async fn download(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Redirect, ApiError> {
    let row = load(&state, &id).await?;
    let url = state
        .artifacts
        .presign_download(&row.object_key, &row.name)
        .await?;
    Ok(Redirect::temporary(&url))
}

/// `DELETE /artifacts/{id}`: refused while an unfinished job (or, later, rollout) uses it.
#[utoipa::path(delete, path = "/api/v1/artifacts/{id}", operation_id = "artifacts_delete", tag = "artifacts", params(("id" = String, Path, description = "The artifact id")), responses((status = 204, description = "Deleted", body = Object), ApiError))]
pub(crate) async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let artifact_id = parse_id(&id)?;
    let mut tx = state.pool.begin().await?;
    // The row lock keeps a concurrent deploy (whose deployment row references it) waiting.
    let key: Option<String> =
        sqlx::query_scalar("select object_key from server.artifacts where id = $1 for update")
            .bind(artifact_id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some(key) = key else {
        return Err(ApiError::NotFound(format!("no artifact {id:?}")));
    };
    let used = crate::artifacts::references(&state.pool, artifact_id).await?;
    if !used.is_empty() {
        return Err(ApiError::Conflict(format!(
            "the artifact is in use by {}; cancel or wait for them first",
            used.join(", ")
        )));
    }
    sqlx::query("delete from server.artifacts where id = $1")
        .bind(artifact_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    if let Err(error) = state.artifacts.delete_object(&key).await {
        // The record is gone, so no job can use the object any more; it only takes space.
        tracing::warn!(%error, artifact.id = %artifact_id, "deleting the object of artifact {artifact_id}: {error}");
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /artifacts/{id}/deploy`: an install job for the artifact, through the jobs API's own
/// validation and CreateJob.
#[utoipa::path(post, path = "/api/v1/artifacts/{id}/deploy", operation_id = "artifacts_deploy", tag = "artifacts", params(("id" = String, Path, description = "The artifact id")), request_body(content = Object, description = "job options, targets and install handler"), responses((status = 201, description = "The install job as created", body = Object), ApiError))]
pub(crate) async fn deploy(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<DeployArtifact>,
) -> Result<(StatusCode, Json<JobDetail>), ApiError> {
    let artifact = load(&state, &id).await?;
    let DeployArtifact {
        mut job,
        install,
        reboot,
    } = request;
    let mut problems = Problems::default();
    if job.document.is_some() {
        problems.add(
            "document",
            "the server writes the install document of a deployment",
        );
    }
    if job.template_id.is_some() {
        problems.add("template_id", "a deployment does not use a template");
    }
    let document = install_document(&state, &artifact, install, reboot, "install", &mut problems);
    if !problems.0.is_empty() {
        return Err(ApiError::fields(problems.0));
    }
    if let Some(role) = state.artifacts.presigned_url_role_arn() {
        let presigned = job
            .presigned_url
            .get_or_insert_with(PresignedUrlOptions::default);
        presigned.role_arn.get_or_insert_with(|| role.to_owned());
    }
    job.document = Some(serde_json::to_value(&document).expect("a document serializes"));
    let new_job = jobs::validate(&state, job).await?;
    let job_id = new_job.job_id.clone();
    // Recorded first, so that the job is never without its reference; removed again if
    // CreateJob refuses.
    sqlx::query(
        "insert into server.artifact_deployments (artifact_id, job_id) values ($1, $2)
         on conflict do nothing",
    )
    .bind(artifact.id)
    .bind(&job_id)
    .execute(&state.pool)
    .await?;
    if let Err(error) = jobs::create_job(&state.iot, new_job).await {
        sqlx::query(
            "delete from server.artifact_deployments where artifact_id = $1 and job_id = $2",
        )
        .bind(artifact.id)
        .bind(&job_id)
        .execute(&state.pool)
        .await?;
        return Err(error.into());
    }
    Ok((
        StatusCode::CREATED,
        Json(jobs::refreshed(&state, &job_id).await?),
    ))
}

/// The install document that sends `artifact` to devices, checked as the agent will check it
/// (problems reported under `field`).
fn install_document(
    state: &AppState,
    artifact: &ArtifactRow,
    install: InstallStep,
    reboot: bool,
    field: &str,
    problems: &mut Problems,
) -> InstallDocument {
    let document = InstallDocument {
        operation: INSTALL_OPERATION.into(),
        version: INSTALL_DOCUMENT_VERSION.into(),
        artifact: install::Artifact {
            url: state.artifacts.placeholder(&artifact.object_key),
            size: artifact.size as u64,
            sha256: artifact.sha256.clone(),
            signature: artifact.signature.clone(),
            signature_algorithm: Some(artifact.signature_algorithm.clone()),
        },
        install,
        reboot,
        software_version: Some(artifact.version.clone()),
    };
    // The agent's own checks, on the document as devices receive it (the placeholder
    // becomes an https URL on delivery).
    let mut delivered = document.clone();
    delivered.artifact.url = "https://presigned.invalid/".into();
    if let Err(message) = delivered.validate() {
        problems.add(field, message);
    }
    document
}

/// An artifact release of a rollout (fields under `field`): the artifact's install document,
/// with the release's version defaulted to the artifact's.
pub(crate) async fn release_document(
    state: &AppState,
    field: &str,
    release: &mut flotilla_api::Release,
    problems: &mut Problems,
) -> Result<Option<serde_json::Value>, ApiError> {
    let Some(id) = release.artifact_id.clone() else {
        problems.add(
            format!("{field}.artifact_id"),
            "an artifact release names its artifact",
        );
        return Ok(None);
    };
    let artifact = match load(state, &id).await {
        Ok(artifact) => artifact,
        Err(ApiError::NotFound(message)) => {
            problems.add(format!("{field}.artifact_id"), message);
            return Ok(None);
        }
        Err(other) => return Err(other),
    };
    // The canonical spelling, which the delete check looks for.
    release.artifact_id = Some(artifact.id.to_string());
    if release.version.is_empty() {
        release.version = artifact.version.clone();
    } else if release.version != artifact.version {
        problems.add(
            format!("{field}.version"),
            format!(
                "artifact {id} is version {:?}, not {:?}",
                artifact.version, release.version
            ),
        );
    }
    let Some(install) = release.install.clone() else {
        problems.add(
            format!("{field}.install"),
            "an artifact release names the install handler",
        );
        return Ok(None);
    };
    let document = install_document(
        state,
        &artifact,
        install,
        release.reboot,
        &format!("{field}.install"),
        problems,
    );
    Ok(Some(
        serde_json::to_value(&document).expect("a document serializes"),
    ))
}

/// `GET /signing/public-key`: the PEM public key devices trust (the agent's `--trusted-key`).
#[utoipa::path(get, path = "/api/v1/signing/public-key", operation_id = "artifacts_public_key", tag = "artifacts", responses((status = 200, description = "The code-signing public key (PEM)", body = Object), ApiError))]
pub(crate) async fn public_key(State(state): State<AppState>) -> Result<Response, ApiError> {
    let pem = signer(&state)?.public_key_pem().to_owned();
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-pem-file"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"flotilla-signing-key.pem\"",
            ),
        ],
        pem,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_separators_or_control_characters_are_refused() {
        for (value, ok) in [
            ("firmware.bin", true),
            ("app 2.0 (beta)", true),
            ("../etc/passwd", false),
            ("a\\b", false),
            ("tab\there", false),
            ("bell\u{7}", false),
            ("..", false),
            (" padded", false),
            ("", false),
        ] {
            let mut problems = Problems::default();
            check_label(&mut problems, "name", value);
            assert_eq!(problems.0.is_empty(), ok, "{value:?}: {:?}", problems.0);
        }
        assert!(valid_content_type("application/octet-stream"));
        assert!(!valid_content_type("octet-stream"));
        assert!(valid_hardware_type("rpi4:rev-b"));
        assert!(!valid_hardware_type("a b"));
    }
}
