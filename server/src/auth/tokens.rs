//! Personal API tokens, for scripts and CI pipelines: each acts for its owner in a role no
//! higher than the owner's when it was made, expires, and can be revoked. The secret
//! (`flt_` and 32 random bytes) is shown once; the database keeps its SHA-256.

use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{delete, get};
use axum::{Json, Router};
use base64::Engine as _;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use flotilla_api::{ApiToken, CreateToken, CreatedToken, Role, TokenList};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{Identity, Via};
use crate::api::{ApiError, ApiJson};
use crate::app::AppState;

/// What every secret starts with, so it is recognisable (in a leaked log, to a secret
/// scanner) and told apart from a proxy's own bearer tokens.
pub const PREFIX: &str = "flt_";

const DEFAULT_DAYS: u32 = 90;
const MAX_DAYS: u32 = 365;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/tokens", get(list).post(create))
        .route("/tokens/{token_id}", delete(revoke))
}

/// The request's API token secret, if it sends one of ours.
pub(super) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, secret) = value.trim().split_once(' ')?;
    let secret = secret.trim();
    (scheme.eq_ignore_ascii_case("bearer") && secret.starts_with(PREFIX)).then_some(secret)
}

fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

#[derive(sqlx::FromRow)]
struct TokenRow {
    id: Uuid,
    owner: String,
    name: String,
    role: String,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    last_used_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "id, owner, name, role, created_at, expires_at, last_used_at, revoked_at";

fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl TokenRow {
    fn role(&self) -> Role {
        // The column's check constraint admits only role names.
        Role::parse(&self.role).unwrap_or(Role::Viewer)
    }

    fn into_api(self) -> ApiToken {
        ApiToken {
            id: self.id.to_string(),
            role: self.role(),
            name: self.name,
            owner: self.owner,
            created_at: time(self.created_at),
            expires_at: time(self.expires_at),
            last_used_at: self.last_used_at.map(time),
            revoked_at: self.revoked_at.map(time),
        }
    }
}

/// The identity of a token's secret; a secret that is unknown, expired or revoked is refused.
pub(super) async fn identify(pool: &sqlx::PgPool, secret: &str) -> Result<Identity, ApiError> {
    let row: Option<TokenRow> = sqlx::query_as(&format!(
        "select {COLUMNS} from server.api_tokens where secret_sha256 = $1"
    ))
    .bind(digest(secret))
    .fetch_optional(pool)
    .await?;
    let row = match row {
        Some(row) if row.revoked_at.is_some() => {
            return Err(ApiError::Unauthenticated(
                "the API token was revoked".into(),
            ));
        }
        Some(row) if row.expires_at <= Utc::now() => {
            return Err(ApiError::Unauthenticated(
                "the API token has expired".into(),
            ));
        }
        Some(row) => row,
        None => return Err(ApiError::Unauthenticated("unknown API token".into())),
    };
    // At most one write a minute per token, not one per request.
    sqlx::query(
        "update server.api_tokens set last_used_at = now()
          where id = $1 and (last_used_at is null or last_used_at < now() - interval '1 minute')",
    )
    .bind(row.id)
    .execute(pool)
    .await?;
    Ok(Identity {
        role: row.role(),
        user: row.owner,
        email: None,
        via: Via::Token,
        csrf_token: None,
    })
}

/// `GET /tokens`: the caller's tokens; an admin's lists everyone's.
#[utoipa::path(get, path = "/api/v1/tokens", tag = "auth",
    responses((status = 200, description = "API tokens, newest first, without their secrets", body = TokenList), ApiError))]
pub(crate) async fn list(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
) -> Result<Json<TokenList>, ApiError> {
    let rows: Vec<TokenRow> = sqlx::query_as(&format!(
        "select {COLUMNS} from server.api_tokens
          where $1 or owner = $2
          order by created_at desc, id
          limit 1000"
    ))
    .bind(identity.role == Role::Admin)
    .bind(&identity.user)
    .fetch_all(&state.pool)
    .await?;
    Ok(Json(TokenList {
        tokens: rows.into_iter().map(TokenRow::into_api).collect(),
    }))
}

/// `POST /tokens`: a new token for the caller, in a role no higher than theirs. Its secret is
/// in this answer and nowhere else.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "auth", request_body = CreateToken,
    responses((status = 201, description = "The token and its secret, shown once; `forbidden` for a role above the caller's or when the caller is itself a token", body = CreatedToken),
        ApiError))]
pub(crate) async fn create(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    ApiJson(request): ApiJson<CreateToken>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    if identity.via == Via::Token {
        // Otherwise a leaked token could renew itself forever.
        return Err(ApiError::Forbidden(
            "an API token cannot create tokens; sign in to create one".into(),
        ));
    }
    if request.role > identity.role {
        return Err(ApiError::Forbidden(format!(
            "a token's role can be at most your own ({}), not {}",
            identity.role, request.role
        )));
    }
    let name = request.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::field("name", "must be 1 to 100 characters"));
    }
    let days = request.expires_in_days.unwrap_or(DEFAULT_DAYS);
    if !(1..=MAX_DAYS).contains(&days) {
        return Err(ApiError::field(
            "expires_in_days",
            format!("must be from 1 to {MAX_DAYS}"),
        ));
    }
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    let secret = format!(
        "{PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let row: TokenRow = sqlx::query_as(&format!(
        "insert into server.api_tokens (id, owner, name, role, secret_sha256, expires_at)
         values ($1, $2, $3, $4, $5, $6)
         returning {COLUMNS}"
    ))
    .bind(Uuid::new_v4())
    .bind(&identity.user)
    .bind(name)
    .bind(request.role.as_str())
    .bind(digest(&secret))
    .bind(Utc::now() + Duration::days(i64::from(days)))
    .fetch_one(&state.pool)
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            token: row.into_api(),
            secret,
        }),
    ))
}

/// `DELETE /tokens/{token_id}`: revokes one of the caller's tokens (an admin: anyone's).
#[utoipa::path(delete, path = "/api/v1/tokens/{token_id}", tag = "auth",
    params(("token_id" = String, Path, description = "The token's id")),
    responses((status = 200, description = "The token, revoked", body = ApiToken), ApiError))]
pub(crate) async fn revoke(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    Path(token_id): Path<String>,
) -> Result<Json<ApiToken>, ApiError> {
    let not_found = || ApiError::NotFound(format!("no token {token_id:?}"));
    let id = Uuid::parse_str(&token_id).map_err(|_| not_found())?;
    let row: Option<TokenRow> = sqlx::query_as(&format!(
        "update server.api_tokens set revoked_at = coalesce(revoked_at, now())
          where id = $1 and ($2 or owner = $3)
          returning {COLUMNS}"
    ))
    .bind(id)
    .bind(identity.role == Role::Admin)
    .bind(&identity.user)
    .fetch_optional(&state.pool)
    .await?;
    row.map(|row| Json(row.into_api())).ok_or_else(not_found)
}
