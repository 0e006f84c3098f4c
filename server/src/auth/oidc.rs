//! OpenID Connect sign-in (`--auth oidc`): the authorization code flow with PKCE against any
//! OpenID provider found by discovery, browser sessions kept in PostgreSQL, CSRF tokens, and
//! logout (RP-initiated when the provider offers an `end_session_endpoint`).
//!
//! - `GET /api/v1/auth/login?return_to=/#/…` starts a sign-in: a fresh state, nonce and PKCE
//!   verifier go into the browser's session, and the browser is sent to the provider.
//! - `GET /api/v1/auth/callback?code&state` finishes it: the state must be the session's (and is
//!   used once, so a replayed callback finds nothing), the code is exchanged with the PKCE
//!   verifier, and the ID token's signature, issuer, audience, expiry and nonce are checked.
//!   The user's role comes from the groups claim (`--groups-claim`, from the ID token or else
//!   the userinfo endpoint) through `--group-role`/`--default-role`. The session id is then
//!   rotated, so an id planted before sign-in is worth nothing after it.
//! - `POST /api/v1/auth/logout` ends the session and answers the provider's end-session URL.
//!
//! CSRF: a session cookie is sent by the browser whoever made the page that sends the request,
//! so every state-changing request authenticated by it must also carry the session's random
//! CSRF token in `X-CSRF-Token` ([`check_csrf`]). Another site's page can neither read the
//! token (`GET /api/v1/me` answers it, and the same-origin policy keeps the answer from other
//! origins) nor set a custom header on a cross-site request without a CORS preflight, which
//! this server never grants. SameSite=Lax cookies are a second line. Requests with a bearer
//! token carry no ambient credential and need no CSRF token.
//!
//! Every sign-in, accepted or refused, is in the audit log.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use flotilla_api::{LoggedOut, Role};
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreErrorResponseType,
    CoreGenderClaim, CoreIdToken, CoreJsonWebKey, CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm, CoreRevocableToken, CoreRevocationErrorResponse,
    CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AdditionalClaims, AuthorizationCode, Client, ClientId, ClientSecret, CsrfToken,
    EmptyExtraTokenFields, EndSessionUrl, EndpointMaybeSet, EndpointNotSet, EndpointSet,
    IdTokenFields, IssuerUrl, LogoutRequest, Nonce, OAuth2TokenResponse as _, PkceCodeChallenge,
    PkceCodeVerifier, PostLogoutRedirectUrl, ProviderMetadataWithLogout, RedirectUrl, Scope,
    StandardErrorResponse, StandardTokenResponse, TokenResponse as _, UserInfoClaims,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tower_sessions::Session;

use super::{Identity, Via};
use crate::api::{ApiError, ApiQuery};
use crate::app::AppState;

/// The header state-changing requests of a signed-in browser carry the CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The session cookie's name.
pub const COOKIE: &str = "flotilla_session";

/// How long a started sign-in may take at the provider.
const SIGN_IN_TIMEOUT: Duration = Duration::from_secs(600);

/// How long discovery's answer (endpoints and signing keys) is reused.
const DISCOVERY_TTL: Duration = Duration::from_secs(300);

const PENDING: &str = "oidc.pending";
const USER: &str = "oidc.user";

/// A secret whose `Debug` does not show it.
#[derive(Clone)]
pub struct SecretString(pub String);

impl std::fmt::Debug for SecretString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("(hidden)")
    }
}

/// The relying party's settings.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// The provider's issuer URL; `/.well-known/openid-configuration` under it is discovered.
    pub issuer: String,
    pub client_id: String,
    /// Absent for a public client (PKCE alone).
    pub client_secret: Option<SecretString>,
    /// This server's `/api/v1/auth/callback` as browsers reach it; registered at the provider.
    pub redirect_url: String,
    /// Scopes besides `openid`.
    pub scopes: Vec<String>,
    /// The claim that lists the user's groups.
    pub groups_claim: String,
    /// Where the provider sends the browser after logout; the redirect URL's origin when absent.
    pub post_logout_url: Option<String>,
}

impl OidcConfig {
    /// Whether browsers reach the server over HTTPS, so cookies must be `Secure`.
    pub fn https(&self) -> bool {
        self.redirect_url.starts_with("https://")
    }
}

/// The claims besides the standard ones, where the groups claim is.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OtherClaims {
    #[serde(flatten)]
    claims: serde_json::Map<String, Value>,
}

impl AdditionalClaims for OtherClaims {}

type IdFields = IdTokenFields<
    OtherClaims,
    EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;

type OidcClient = Client<
    OtherClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    StandardTokenResponse<IdFields, CoreTokenType>,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// What discovery found.
struct Provider {
    client: OidcClient,
    end_session: Option<EndSessionUrl>,
}

/// The relying party: its settings, an HTTP client and the provider's discovered metadata.
pub struct Oidc {
    pub config: OidcConfig,
    http: openidconnect::reqwest::Client,
    provider: tokio::sync::Mutex<Option<(Instant, Arc<Provider>)>>,
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oidc")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Oidc {
    pub fn new(config: OidcConfig) -> anyhow::Result<Self> {
        // No redirects: a provider's answer must come from the URL discovery named (the
        // openidconnect crate's advice against SSRF).
        let http = openidconnect::reqwest::Client::builder()
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(15))
            .build()?;
        IssuerUrl::new(config.issuer.clone())
            .map_err(|e| anyhow::anyhow!("--oidc-issuer {:?}: {e}", config.issuer))?;
        RedirectUrl::new(config.redirect_url.clone())
            .map_err(|e| anyhow::anyhow!("--oidc-redirect-url {:?}: {e}", config.redirect_url))?;
        Ok(Self {
            config,
            http,
            provider: tokio::sync::Mutex::new(None),
        })
    }

    /// The provider's metadata and keys, discovered at most [`DISCOVERY_TTL`] ago, so a
    /// provider that rotates its keys is followed without a restart.
    async fn provider(&self) -> Result<Arc<Provider>, ApiError> {
        let mut cached = self.provider.lock().await;
        if let Some((at, provider)) = cached.as_ref()
            && at.elapsed() < DISCOVERY_TTL
        {
            return Ok(provider.clone());
        }
        let issuer = IssuerUrl::new(self.config.issuer.clone())
            .map_err(|e| ApiError::Unavailable(format!("the OIDC issuer URL is invalid: {e}")))?;
        let metadata = ProviderMetadataWithLogout::discover_async(issuer, &self.http)
            .await
            .map_err(|error| {
                tracing::error!(%error, issuer = %self.config.issuer, "OpenID provider discovery failed: {error}");
                ApiError::Unavailable(
                    "the identity provider cannot be reached; try again later".into(),
                )
            })?;
        let end_session = metadata.additional_metadata().end_session_endpoint.clone();
        let redirect = RedirectUrl::new(self.config.redirect_url.clone())
            .map_err(|e| ApiError::Unavailable(format!("the OIDC redirect URL is invalid: {e}")))?;
        let client = OidcClient::from_provider_metadata(
            metadata,
            ClientId::new(self.config.client_id.clone()),
            self.config
                .client_secret
                .as_ref()
                .map(|secret| ClientSecret::new(secret.0.clone())),
        )
        .set_redirect_uri(redirect);
        let provider = Arc::new(Provider {
            client,
            end_session,
        });
        *cached = Some((Instant::now(), provider.clone()));
        Ok(provider)
    }
}

/// A sign-in in progress, kept in the session between login and callback.
#[derive(Debug, Serialize, Deserialize)]
struct Pending {
    state: String,
    nonce: String,
    pkce_verifier: String,
    return_to: String,
    started_at: i64,
}

/// The signed-in user, kept in the session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionUser {
    pub user: String,
    pub email: Option<String>,
    pub role: Role,
    pub csrf_token: String,
    /// Unix seconds; the absolute timeout counts from here.
    pub signed_in_at: i64,
    /// The ID token, the `id_token_hint` of logout.
    pub id_token: String,
}

fn session_error(error: tower_sessions::session::Error) -> ApiError {
    tracing::error!(%error, "the session store failed: {error}");
    ApiError::Unavailable("the session store failed; try again".into())
}

/// The session's signed-in user, as an [`Identity`]; `None` without one. A session older than
/// `max_age` is ended and refused.
pub async fn identify(session: &Session, max_age: Duration) -> Result<Option<Identity>, ApiError> {
    let Some(user) = session
        .get::<SessionUser>(USER)
        .await
        .map_err(session_error)?
    else {
        return Ok(None);
    };
    let age = chrono::Utc::now().timestamp() - user.signed_in_at;
    if age < 0 || age as u64 > max_age.as_secs() {
        session.flush().await.map_err(session_error)?;
        return Err(ApiError::Unauthenticated(
            "the session has reached its maximum age; sign in again".into(),
        ));
    }
    Ok(Some(Identity {
        user: user.user,
        email: user.email,
        role: user.role,
        via: Via::Oidc,
        csrf_token: Some(user.csrf_token),
    }))
}

/// Refuses a state-changing request of a signed-in browser without the session's CSRF token.
pub fn check_csrf(identity: &Identity, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = &identity.csrf_token else {
        return Ok(());
    };
    let sent = headers
        .get(CSRF_HEADER)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    if constant_time_eq(sent.as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "this request changes something and must carry the session's CSRF token in the \
             X-CSRF-Token header (GET /api/v1/me answers it)"
                .into(),
        ))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn oidc(state: &AppState) -> Result<&Oidc, ApiError> {
    state.auth.oidc.as_deref().ok_or_else(|| {
        ApiError::NotFound("sign-in with OpenID Connect is not configured (--auth oidc)".into())
    })
}

/// Query of `GET /auth/login`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LoginQuery {
    /// Where to go after signing in: a path of this server (`/#/rollouts`); `/` when absent.
    return_to: Option<String>,
}

/// A path on this server, never another site (`//evil.example` and `/\evil.example` are
/// other sites to a browser).
fn local_path(path: Option<String>) -> String {
    match path {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.starts_with("/\\")
                && !path.chars().any(char::is_control) =>
        {
            path
        }
        _ => "/".to_owned(),
    }
}

/// `GET /auth/login`: sends the browser to the identity provider.
#[utoipa::path(get, path = "/api/v1/auth/login", tag = "auth", params(LoginQuery),
    responses((status = 303, description = "To the identity provider's sign-in page"), ApiError))]
pub(crate) async fn login(
    State(state): State<AppState>,
    session: Session,
    ApiQuery(query): ApiQuery<LoginQuery>,
) -> Result<Response, ApiError> {
    let oidc = oidc(&state)?;
    let provider = oidc.provider().await?;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut request = provider
        .client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .set_pkce_challenge(challenge);
    for scope in &oidc.config.scopes {
        request = request.add_scope(Scope::new(scope.clone()));
    }
    let (url, csrf_state, nonce) = request.url();
    let pending = Pending {
        state: csrf_state.secret().clone(),
        nonce: nonce.secret().clone(),
        pkce_verifier: verifier.secret().clone(),
        return_to: local_path(query.return_to),
        started_at: chrono::Utc::now().timestamp(),
    };
    session
        .insert(PENDING, pending)
        .await
        .map_err(session_error)?;
    Ok(Redirect::to(url.as_str()).into_response())
}

/// Query of `GET /auth/callback`, as the provider sends it.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    /// The provider's refusal (`access_denied` …), instead of a code.
    error: Option<String>,
    error_description: Option<String>,
}

/// `GET /auth/callback`: finishes the sign-in the provider sends the browser back from.
#[utoipa::path(get, path = "/api/v1/auth/callback", tag = "auth", params(CallbackQuery),
    responses((status = 303, description = "Signed in: to the page the sign-in started from"), ApiError))]
pub(crate) async fn callback(
    State(state): State<AppState>,
    session: Session,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiQuery(query): ApiQuery<CallbackQuery>,
) -> Response {
    let result = finish_sign_in(&state, &session, query).await;
    let source = Some(peer.ip().to_string());
    let (actor, role, response, outcome) = match result {
        Ok((user, return_to)) => (
            user.user,
            Some(user.role),
            Redirect::to(&return_to).into_response(),
            "ok",
        ),
        Err((user, error)) => {
            let response = error.into_response();
            let outcome = response
                .extensions()
                .get::<crate::audit::ErrorCode>()
                .map_or("error", |code| code.0);
            (
                user.unwrap_or_else(|| crate::audit::ANONYMOUS.to_owned()),
                None,
                response,
                outcome,
            )
        }
    };
    let entry = crate::audit::NewEntry {
        actor: &actor,
        role: role.map(Role::as_str),
        action: "GET /api/v1/auth/callback",
        target: "/api/v1/auth/callback",
        request: None,
        status: response.status(),
        outcome,
        source: source.as_deref(),
    };
    if let Err(error) = entry.insert(&state.pool).await {
        tracing::error!(%error, "writing the audit log failed: {error}");
    }
    response
}

/// The callback's work: the signed-in user and where to send them, or the refusal and, once
/// known, who was refused.
async fn finish_sign_in(
    state: &AppState,
    session: &Session,
    query: CallbackQuery,
) -> Result<(SessionUser, String), (Option<String>, ApiError)> {
    let oidc = oidc(state).map_err(|e| (None, e))?;
    // Taken out of the session whatever happens next: a state is good for one callback.
    let pending: Pending = session
        .remove(PENDING)
        .await
        .map_err(|e| (None, session_error(e)))?
        .ok_or_else(|| {
            (
                None,
                ApiError::Unauthenticated(
                    "no sign-in is in progress in this browser session (it expired, was already \
                     finished, or this callback is replayed); sign in again"
                        .into(),
                ),
            )
        })?;
    let refuse = |message: String| (None, ApiError::Unauthenticated(message));
    if let Some(error) = query.error {
        return Err(refuse(format!(
            "the identity provider refused the sign-in: {error}{}",
            query
                .error_description
                .map(|d| format!(" ({d})"))
                .unwrap_or_default()
        )));
    }
    let (Some(code), Some(returned_state)) = (query.code, query.state) else {
        return Err((
            None,
            ApiError::Invalid {
                message: "the callback needs code and state".into(),
                fields: Vec::new(),
            },
        ));
    };
    if !constant_time_eq(returned_state.as_bytes(), pending.state.as_bytes()) {
        return Err(refuse(
            "the callback's state is not this browser session's sign-in (forged or replayed); \
             sign in again"
                .into(),
        ));
    }
    let now = chrono::Utc::now().timestamp();
    if now - pending.started_at > SIGN_IN_TIMEOUT.as_secs() as i64 {
        return Err(refuse("the sign-in took too long; sign in again".into()));
    }
    let provider = oidc.provider().await.map_err(|e| (None, e))?;
    let token = provider
        .client
        .exchange_code(AuthorizationCode::new(code))
        .map_err(|e| {
            (
                None,
                ApiError::Unavailable(format!("the identity provider has no token endpoint: {e}")),
            )
        })?
        .set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier))
        .request_async(&oidc.http)
        .await
        .map_err(|error| {
            tracing::warn!(%error, "the token endpoint refused a code: {error}");
            refuse(format!(
                "the identity provider did not accept the sign-in code: {error}"
            ))
        })?;
    let id_token = token
        .id_token()
        .ok_or_else(|| refuse("the identity provider answered no ID token".into()))?;
    let verifier = provider.client.id_token_verifier();
    let claims = id_token
        .claims(&verifier, &Nonce::new(pending.nonce))
        .map_err(|error| {
            tracing::warn!(%error, "refused an ID token: {error}");
            refuse(format!("the ID token is not valid: {error}"))
        })?;
    let email = claims.email().map(|email| email.as_str().to_owned());
    let user = claims
        .preferred_username()
        .map(|name| name.as_str().to_owned())
        .or_else(|| email.clone())
        .unwrap_or_else(|| claims.subject().as_str().to_owned());
    let claim = &oidc.config.groups_claim;
    let mut groups = claims.additional_claims().claims.get(claim).cloned();
    if groups.is_none()
        && let Ok(request) = provider
            .client
            .user_info(token.access_token().clone(), Some(claims.subject().clone()))
    {
        // Some providers put groups only in the userinfo answer.
        let info: Result<UserInfoClaims<OtherClaims, CoreGenderClaim>, _> =
            request.request_async(&oidc.http).await;
        match info {
            Ok(info) => groups = info.additional_claims().claims.get(claim).cloned(),
            Err(error) => tracing::warn!(%error, "the userinfo endpoint failed: {error}"),
        }
    }
    let groups = super::groups_of(groups.as_ref());
    let role = state
        .auth
        .config
        .role_of(groups.iter().map(String::as_str))
        .ok_or_else(|| {
            (
                Some(user.clone()),
                ApiError::Forbidden(format!(
                    "{user} is signed in but none of their groups has a role in Flotilla"
                )),
            )
        })?;
    // A new id for the signed-in session: one planted in the browser before (session
    // fixation) now names nothing.
    session
        .cycle_id()
        .await
        .map_err(|e| (None, session_error(e)))?;
    let signed_in = SessionUser {
        user,
        email,
        role,
        csrf_token: CsrfToken::new_random().secret().clone(),
        signed_in_at: now,
        id_token: id_token.to_string(),
    };
    session
        .insert(USER, signed_in.clone())
        .await
        .map_err(|e| (None, session_error(e)))?;
    tracing::info!(user = %signed_in.user, role = %signed_in.role, "{} signed in as {}", signed_in.user, signed_in.role);
    Ok((signed_in, pending.return_to))
}

/// `POST /auth/logout`: ends the browser's session (it needs the CSRF token, like any change)
/// and answers the provider's end-session URL, where the browser goes next to sign out there
/// too.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth",
    responses((status = 200, description = "Signed out", body = LoggedOut), ApiError))]
pub(crate) async fn logout(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let user = session
        .get::<SessionUser>(USER)
        .await
        .map_err(session_error)?;
    let Some(user) = user else {
        return Ok(Json(LoggedOut {
            end_session_url: None,
        })
        .into_response());
    };
    let identity = Identity {
        user: user.user.clone(),
        email: user.email.clone(),
        role: user.role,
        via: Via::Oidc,
        csrf_token: Some(user.csrf_token.clone()),
    };
    if let Err(refused) = check_csrf(&identity, &headers) {
        let mut response = refused.into_response();
        response.extensions_mut().insert(identity);
        return Ok(response);
    }
    session.flush().await.map_err(session_error)?;
    let end_session_url = match oidc(&state) {
        Ok(oidc) => end_session_url(oidc, &user).await,
        Err(_) => None,
    };
    let mut response = (StatusCode::OK, Json(LoggedOut { end_session_url })).into_response();
    // For the audit hook: who signed out.
    response.extensions_mut().insert(identity);
    Ok(response)
}

async fn end_session_url(oidc: &Oidc, user: &SessionUser) -> Option<String> {
    let provider = oidc.provider().await.ok()?;
    let endpoint = provider.end_session.clone()?;
    let mut request =
        LogoutRequest::from(endpoint).set_client_id(ClientId::new(oidc.config.client_id.clone()));
    if let Ok(token) = user.id_token.parse::<CoreIdToken>() {
        request = request.set_id_token_hint(&token);
    }
    let after = oidc.config.post_logout_url.clone().or_else(|| {
        let url = openidconnect::url::Url::parse(&oidc.config.redirect_url).ok()?;
        Some(format!("{}/", url.origin().ascii_serialization()))
    });
    if let Some(after) = after.and_then(|url| PostLogoutRedirectUrl::new(url).ok()) {
        request = request.set_post_logout_redirect_uri(after);
    }
    Some(request.http_get_url().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_to_stays_on_this_server() {
        assert_eq!(local_path(Some("/#/rollouts".into())), "/#/rollouts");
        assert_eq!(local_path(None), "/");
        for other in [
            "https://evil.example/",
            "//evil.example",
            "/\\evil.example",
            "evil",
            "/\nx",
        ] {
            assert_eq!(local_path(Some(other.into())), "/", "{other}");
        }
    }

    #[test]
    fn csrf_tokens_must_match_exactly() {
        let identity = Identity {
            user: "u".into(),
            email: None,
            role: Role::Operator,
            via: Via::Oidc,
            csrf_token: Some("abc".into()),
        };
        let mut headers = HeaderMap::new();
        assert!(check_csrf(&identity, &headers).is_err());
        headers.insert(CSRF_HEADER, "abd".parse().unwrap());
        assert!(check_csrf(&identity, &headers).is_err());
        headers.insert(CSRF_HEADER, "abc".parse().unwrap());
        assert!(check_csrf(&identity, &headers).is_ok());
        let token = Identity {
            csrf_token: None,
            via: Via::Token,
            ..identity
        };
        assert!(check_csrf(&token, &HeaderMap::new()).is_ok());
    }
}
