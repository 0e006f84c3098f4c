//! Who is making a request, and whether they may: the identity sources, the roles and the one
//! middleware ([`authorize`]) that enforces [`permissions`] on every route.
//!
//! Identity comes from, in this order:
//!
//! 1. a personal API token (`Authorization: Bearer flt_…`, [`tokens`]) in every mode;
//! 2. the mode's own source: in development, the fixed admin user [`DEV_USER`]; behind
//!    oauth2-proxy, the `X-Forwarded-User`, `-Email` and `-Groups` headers; behind an AWS ALB,
//!    the `x-amzn-oidc-data` JWT ([`alb`]). Proxy headers count only when the connection comes
//!    from a `--trusted-proxy` address; from anywhere else they are refused, since anyone can
//!    send a header. With OpenID Connect ([`oidc`]), the browser's session cookie.
//!
//! Roles come from the user's groups (`--group-role GROUP=ROLE`), the highest one winning.
//! Credentials that are present but wrong (a forged or expired token, headers from an untrusted
//! address) are refused with 401 rather than ignored, and the audit hook records the refusal.

pub mod alb;
pub mod oidc;
pub mod permissions;
pub mod tokens;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, Extension, MatchedPath, Request, State};
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use flotilla_api::{Me, Role};

use crate::api::ApiError;
use crate::app::AppState;
use crate::audit::Actor;
use permissions::Access;

/// The user every request is in development mode.
pub const DEV_USER: &str = "dev-admin";

/// Where identities come from.
#[derive(Debug, Clone, Default)]
pub enum AuthMode {
    /// Every request without a token is [`DEV_USER`], an admin. Local mode on a loopback
    /// address only (or with [`AuthConfig::dev_on_network`]).
    #[default]
    Development,
    /// Behind oauth2-proxy (or any proxy that signs users in and sets `X-Forwarded-User`,
    /// `X-Forwarded-Email` and `X-Forwarded-Groups`).
    Proxy,
    /// Behind an AWS Application Load Balancer with OIDC authentication.
    Alb(alb::AlbConfig),
    /// The server signs users in with an OpenID provider itself, and keeps their sessions.
    Oidc(oidc::OidcConfig),
}

/// How requests are authenticated.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub mode: AuthMode,
    /// The addresses whose identity headers are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Group → role; a user gets the highest role of their groups.
    pub group_roles: Vec<(String, Role)>,
    /// The role of a signed-in user none of whose groups is mapped; without it they are
    /// refused.
    pub default_role: Option<Role>,
    /// Development mode on a non-loopback address: for a demo container only.
    pub dev_on_network: bool,
    /// Browser sessions (OpenID Connect sign-in).
    pub sessions: SessionConfig,
}

/// How long browser sessions last.
#[derive(Debug, Clone, Copy)]
pub struct SessionConfig {
    /// A session unused this long ends.
    pub idle: std::time::Duration,
    /// A session ends this long after sign-in, however much it is used.
    pub max_age: std::time::Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            idle: std::time::Duration::from_secs(60 * 60),
            max_age: std::time::Duration::from_secs(12 * 60 * 60),
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            mode: AuthMode::Development,
            trusted_proxies: Vec::new(),
            group_roles: Vec::new(),
            default_role: None,
            dev_on_network: false,
            sessions: SessionConfig::default(),
        }
    }
}

impl AuthConfig {
    /// Refuses development sign-in where it would hand admin to strangers: in AWS mode, and
    /// on a non-loopback address unless explicitly allowed.
    pub fn check(&self, listen: SocketAddr, aws_mode: bool) -> anyhow::Result<()> {
        if matches!(self.mode, AuthMode::Development) {
            if aws_mode {
                anyhow::bail!(
                    "development sign-in (--auth dev) makes every visitor an admin and is refused \
                     in AWS mode; use --auth proxy or --auth alb"
                );
            }
            if !listen.ip().is_loopback() && !self.dev_on_network {
                anyhow::bail!(
                    "development sign-in (--auth dev) makes every visitor an admin and is refused \
                     on the non-loopback address {listen}; listen on 127.0.0.1, use --auth proxy \
                     or --auth alb, or pass --dev-auth-on-network for a demo on a private network"
                );
            }
        }
        if matches!(self.mode, AuthMode::Proxy | AuthMode::Alb(_))
            && self.trusted_proxies.is_empty()
        {
            anyhow::bail!(
                "--auth proxy and --auth alb need --trusted-proxy: the addresses of the proxy or \
                 load balancer whose identity headers are believed"
            );
        }
        Ok(())
    }

    fn trusts(&self, peer: Option<IpAddr>) -> bool {
        peer.is_some_and(|peer| self.trusted_proxies.iter().any(|net| net.contains(peer)))
    }

    /// The highest role of `groups`, else the default role.
    pub fn role_of<'a>(&self, groups: impl IntoIterator<Item = &'a str>) -> Option<Role> {
        let groups: Vec<&str> = groups.into_iter().collect();
        self.group_roles
            .iter()
            .filter(|(group, _)| groups.contains(&group.as_str()))
            .map(|(_, role)| *role)
            .max()
            .or(self.default_role)
    }
}

/// Which identity source `--auth` selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthKind {
    /// Development sign-in: every request is the admin `dev-admin`.
    Dev,
    /// oauth2-proxy's `X-Forwarded-User`, `-Email` and `-Groups` headers.
    Proxy,
    /// An AWS ALB's `x-amzn-oidc-data` JWT.
    Alb,
    /// OpenID Connect sign-in by the server itself, with sessions in PostgreSQL.
    Oidc,
}

/// The authentication flags of `flotilla serve`.
#[derive(Debug, clap::Args)]
pub struct AuthArgs {
    /// Where identities come from: `dev` (every request is an admin; local mode on a loopback
    /// address only), `proxy` (oauth2-proxy headers), `alb` (an AWS ALB's OIDC header) or
    /// `oidc` (sign-in with an OpenID provider).
    #[arg(long, env = "FLOTILLA_AUTH", value_enum, default_value = "dev")]
    auth: AuthKind,
    /// The proxies or load balancers whose identity headers are believed: addresses or
    /// networks, comma-separated (e.g. `10.0.0.0/16`).
    #[arg(long, env = "FLOTILLA_TRUSTED_PROXIES", value_delimiter = ',')]
    trusted_proxy: Vec<IpNet>,
    /// Roles of identity-provider groups, `GROUP=ROLE`, comma-separated; roles are `viewer`,
    /// `technician`, `operator`, `admin`, and a user gets the highest of their groups'.
    #[arg(long, env = "FLOTILLA_GROUP_ROLES", value_delimiter = ',', value_parser = group_role)]
    group_role: Vec<(String, Role)>,
    /// The role of a signed-in user none of whose groups has one; without it they are refused.
    #[arg(long, env = "FLOTILLA_DEFAULT_ROLE", value_parser = role)]
    default_role: Option<Role>,
    /// The claim that lists the user's groups (`alb`: of the ALB's user claims; `oidc`: of the
    /// ID token, else of the userinfo answer).
    #[arg(long, env = "FLOTILLA_GROUPS_CLAIM", default_value = "groups")]
    groups_claim: String,
    /// `--auth alb`: where the ALB's public keys are fetched from (`URL/KID`). Default:
    /// `https://public-keys.auth.elb.REGION.amazonaws.com`.
    #[arg(long, env = "FLOTILLA_ALB_PUBLIC_KEY_URL")]
    alb_public_key_url: Option<String>,
    /// `--auth alb`: the load balancer's ARN; tokens another ALB signed are refused.
    #[arg(long, env = "FLOTILLA_ALB_ARN")]
    alb_arn: Option<String>,
    /// Allow `--auth dev` on a non-loopback address: every visitor is an admin, so only for
    /// a demo on a private network (the compose file's).
    #[arg(long, env = "FLOTILLA_DEV_AUTH_ON_NETWORK")]
    dev_auth_on_network: bool,
    /// `--auth oidc`: the OpenID provider's issuer URL (discovery reads
    /// `/.well-known/openid-configuration` under it).
    #[arg(long, env = "FLOTILLA_OIDC_ISSUER")]
    oidc_issuer: Option<String>,
    /// `--auth oidc`: this server's client id at the provider.
    #[arg(long, env = "FLOTILLA_OIDC_CLIENT_ID")]
    oidc_client_id: Option<String>,
    /// `--auth oidc`: the client secret; absent for a public client.
    #[arg(long, env = "FLOTILLA_OIDC_CLIENT_SECRET", hide_env_values = true)]
    oidc_client_secret: Option<String>,
    /// `--auth oidc`: `/api/v1/auth/callback` of this server as browsers reach it, registered at
    /// the provider (e.g. `https://flotilla.example.com/api/v1/auth/callback`). Session cookies
    /// are `Secure` when it is https.
    #[arg(long, env = "FLOTILLA_OIDC_REDIRECT_URL")]
    oidc_redirect_url: Option<String>,
    /// `--auth oidc`: scopes to ask for besides `openid`, comma-separated.
    #[arg(
        long,
        env = "FLOTILLA_OIDC_SCOPES",
        value_delimiter = ',',
        default_value = "email,profile"
    )]
    oidc_scopes: Vec<String>,
    /// `--auth oidc`: where the provider sends the browser after logout; the redirect URL's
    /// origin when absent.
    #[arg(long, env = "FLOTILLA_OIDC_POST_LOGOUT_URL")]
    oidc_post_logout_url: Option<String>,
    /// `--auth oidc`: a browser session unused for this many minutes ends.
    #[arg(long, env = "FLOTILLA_SESSION_IDLE_MINUTES", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=43_200))]
    session_idle_minutes: u64,
    /// `--auth oidc`: a browser session ends this many hours after sign-in, however much it
    /// is used.
    #[arg(long, env = "FLOTILLA_SESSION_MAX_HOURS", default_value_t = 12, value_parser = clap::value_parser!(u64).range(1..=720))]
    session_max_hours: u64,
}

impl AuthArgs {
    /// The configuration; `region` names the default ALB key endpoint.
    pub fn into_config(self, region: &str) -> anyhow::Result<AuthConfig> {
        let mode = match self.auth {
            AuthKind::Dev => AuthMode::Development,
            AuthKind::Proxy => AuthMode::Proxy,
            AuthKind::Alb => AuthMode::Alb(alb::AlbConfig {
                public_key_url: self.alb_public_key_url.unwrap_or_else(|| {
                    format!("https://public-keys.auth.elb.{region}.amazonaws.com")
                }),
                alb_arn: self.alb_arn,
                groups_claim: self.groups_claim,
            }),
            AuthKind::Oidc => {
                let missing = |flag: &str| anyhow::anyhow!("--auth oidc needs --{flag}");
                AuthMode::Oidc(oidc::OidcConfig {
                    issuer: self.oidc_issuer.ok_or_else(|| missing("oidc-issuer"))?,
                    client_id: self
                        .oidc_client_id
                        .ok_or_else(|| missing("oidc-client-id"))?,
                    client_secret: self.oidc_client_secret.map(oidc::SecretString),
                    redirect_url: self
                        .oidc_redirect_url
                        .ok_or_else(|| missing("oidc-redirect-url"))?,
                    scopes: self
                        .oidc_scopes
                        .into_iter()
                        .map(|scope| scope.trim().to_owned())
                        .filter(|scope| !scope.is_empty() && scope != "openid")
                        .collect(),
                    groups_claim: self.groups_claim,
                    post_logout_url: self.oidc_post_logout_url,
                })
            }
        };
        Ok(AuthConfig {
            mode,
            trusted_proxies: self.trusted_proxy,
            group_roles: self.group_role,
            default_role: self.default_role,
            dev_on_network: self.dev_auth_on_network,
            sessions: SessionConfig {
                idle: std::time::Duration::from_secs(self.session_idle_minutes * 60),
                max_age: std::time::Duration::from_secs(self.session_max_hours * 3600),
            },
        })
    }
}

fn role(value: &str) -> Result<Role, String> {
    Role::parse(value.trim())
        .ok_or_else(|| format!("{value:?} is no role (viewer, technician, operator, admin)"))
}

fn group_role(value: &str) -> Result<(String, Role), String> {
    let (group, name) = value
        .rsplit_once('=')
        .ok_or_else(|| format!("{value:?} is not GROUP=ROLE"))?;
    let group = group.trim();
    if group.is_empty() {
        return Err(format!("{value:?} names no group"));
    }
    Ok((group.to_owned(), role(name)?))
}

/// An address or a network (`10.0.0.0/8`, `::1`), as `--trusted-proxy` takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    pub fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4 peer may arrive as an IPv4-mapped IPv6 address on a dual-stack socket.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for IpNet {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{value:?} is not an IP address or network (e.g. 10.0.0.0/8)");
        let (addr, prefix) = match value.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (value, None),
        };
        let addr: IpAddr = addr.trim().parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(prefix) => prefix.trim().parse::<u8>().map_err(|_| bad())?,
            None => max,
        };
        if prefix > max {
            return Err(bad());
        }
        Ok(Self { addr, prefix })
    }
}

/// How a request was authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Development,
    Proxy,
    Alb,
    Oidc,
    Token,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Development => "development",
            Self::Proxy => "proxy",
            Self::Alb => "alb",
            Self::Oidc => "oidc",
            Self::Token => "token",
        }
    }
}

/// Who made a request, with the role it acts in. Handlers read it from the request's
/// extensions; the audit hook from the response's.
#[derive(Debug, Clone)]
pub struct Identity {
    pub user: String,
    pub email: Option<String>,
    pub role: Role,
    pub via: Via,
    /// The browser session's CSRF token, for identities from a session cookie.
    pub csrf_token: Option<String>,
}

/// The authentication state requests share.
#[derive(Debug)]
pub struct Auth {
    pub config: AuthConfig,
    alb: Option<alb::AlbVerifier>,
    pub oidc: Option<Box<oidc::Oidc>>,
}

impl Auth {
    pub fn new(config: AuthConfig) -> anyhow::Result<Arc<Self>> {
        let alb = match &config.mode {
            AuthMode::Alb(alb) => Some(alb::AlbVerifier::new(alb.clone())),
            _ => None,
        };
        let oidc = match &config.mode {
            AuthMode::Oidc(oidc) => Some(Box::new(oidc::Oidc::new(oidc.clone())?)),
            _ => None,
        };
        Ok(Arc::new(Self { config, alb, oidc }))
    }

    /// Whether session cookies must be `Secure`: browsers reach the server over HTTPS.
    pub fn secure_cookies(&self) -> bool {
        match &self.config.mode {
            AuthMode::Oidc(oidc) => oidc.https(),
            _ => true,
        }
    }

    /// The request's identity: `None` when it carries no credentials at all.
    async fn identify(
        &self,
        pool: &sqlx::PgPool,
        headers: &HeaderMap,
        peer: Option<IpAddr>,
        session: Option<&tower_sessions::Session>,
    ) -> Result<Option<Identity>, ApiError> {
        if let Some(secret) = tokens::bearer(headers) {
            return tokens::identify(pool, secret).await.map(Some);
        }
        match &self.config.mode {
            AuthMode::Development => Ok(Some(Identity {
                user: DEV_USER.to_owned(),
                email: None,
                role: Role::Admin,
                via: Via::Development,
                csrf_token: None,
            })),
            AuthMode::Proxy => {
                let Some(user) = header(headers, "x-forwarded-user") else {
                    return Ok(None);
                };
                self.refuse_untrusted(peer, "X-Forwarded-User")?;
                let groups = header(headers, "x-forwarded-groups").unwrap_or_default();
                let groups = groups.split(',').map(str::trim).filter(|g| !g.is_empty());
                let role = self.role(&user, groups)?;
                Ok(Some(Identity {
                    email: header(headers, "x-forwarded-email"),
                    user,
                    role,
                    via: Via::Proxy,
                    csrf_token: None,
                }))
            }
            AuthMode::Alb(_) => {
                let Some(token) = header(headers, alb::HEADER) else {
                    return Ok(None);
                };
                self.refuse_untrusted(peer, alb::HEADER)?;
                let verifier = self.alb.as_ref().expect("ALB mode has a verifier");
                let claims = verifier
                    .verify(&token, chrono::Utc::now().timestamp())
                    .await
                    .map_err(|error| {
                        tracing::warn!(%error, "refused an ALB identity: {error}");
                        ApiError::Unauthenticated(format!("the ALB identity is not valid: {error}"))
                    })?;
                let role = self.role(&claims.user, claims.groups.iter().map(String::as_str))?;
                Ok(Some(Identity {
                    user: claims.user,
                    email: claims.email,
                    role,
                    via: Via::Alb,
                    csrf_token: None,
                }))
            }
            AuthMode::Oidc(_) => match session {
                Some(session) => oidc::identify(session, self.config.sessions.max_age).await,
                None => Ok(None),
            },
        }
    }

    fn refuse_untrusted(&self, peer: Option<IpAddr>, what: &str) -> Result<(), ApiError> {
        if self.config.trusts(peer) {
            return Ok(());
        }
        let peer = peer.map_or_else(|| "an unknown address".to_owned(), |p| p.to_string());
        tracing::warn!(%peer, "refused {what} from {peer}, which is no trusted proxy");
        Err(ApiError::Unauthenticated(format!(
            "{what} is only accepted from a trusted proxy, and {peer} is none"
        )))
    }

    fn role<'a>(
        &self,
        user: &str,
        groups: impl IntoIterator<Item = &'a str>,
    ) -> Result<Role, ApiError> {
        self.config.role_of(groups).ok_or_else(|| {
            ApiError::Forbidden(format!(
                "{user} is signed in but none of their groups has a role in Flotilla"
            ))
        })
    }
}

/// A groups claim's groups: a list of strings, or one comma-separated string.
pub fn groups_of(claim: Option<&serde_json::Value>) -> Vec<String> {
    match claim {
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .filter_map(serde_json::Value::as_str)
            .map(str::to_owned)
            .collect(),
        Some(serde_json::Value::String(list)) => list
            .split(',')
            .map(str::trim)
            .filter(|g| !g.is_empty())
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|value| !value.is_empty())
        .map(str::to_owned)
}

/// The middleware on every route: finds who is asking, refuses them unless their role
/// reaches the route's rule, and leaves the [`Identity`] (and the audit hook's [`Actor`]) on
/// the request and the identity on the response.
pub async fn authorize(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let method = request.method().clone();
    let Some(route) = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
    else {
        // Only the fallbacks (the web UI, the API's JSON 404) have no route; nothing to guard.
        return next.run(request).await;
    };
    let needed = match permissions::required(&method, &route) {
        Some(Access::Role(needed)) => needed,
        Some(Access::Public) => return next.run(request).await,
        None => {
            tracing::error!(%method, %route, "no permission rule for {method} {route}; refusing it");
            return ApiError::Forbidden(format!("{method} {route} has no permission rule"))
                .into_response();
        }
    };
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    let session = request
        .extensions()
        .get::<tower_sessions::Session>()
        .cloned();
    let identity = state
        .auth
        .identify(&state.pool, request.headers(), peer, session.as_ref())
        .await;
    let identity = match identity {
        Ok(Some(identity)) => identity,
        Ok(None) => {
            return ApiError::Unauthenticated("sign in, or send an API token".into())
                .into_response();
        }
        Err(error) => return error.into_response(),
    };
    // A change made with a session cookie must prove it comes from the dashboard itself.
    let csrf = if matches!(method, Method::GET | Method::HEAD | Method::OPTIONS) {
        Ok(())
    } else {
        oidc::check_csrf(&identity, request.headers())
    };
    let mut response = if identity.role < needed {
        ApiError::Forbidden(format!(
            "{method} {route} needs the {needed} role; {} is {}",
            identity.user, identity.role
        ))
        .into_response()
    } else if let Err(refused) = csrf {
        refused.into_response()
    } else {
        request
            .extensions_mut()
            .insert(Actor(identity.user.clone()));
        request.extensions_mut().insert(identity.clone());
        next.run(request).await
    };
    response.extensions_mut().insert(identity);
    response
}

/// `GET /me`: who the request was made as.
#[utoipa::path(get, path = "/api/v1/me", tag = "auth",
    responses((status = 200, description = "The caller's identity and role", body = Me), ApiError))]
pub(crate) async fn me(Extension(identity): Extension<Identity>) -> Json<Me> {
    Json(Me {
        user: identity.user,
        email: identity.email,
        role: identity.role,
        via: identity.via.as_str().to_owned(),
        csrf_token: identity.csrf_token,
    })
}

/// The routes of this module: `/me`, `/tokens` and OpenID Connect's `/auth/…`.
pub fn router() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/me", axum::routing::get(me))
        .route("/auth/login", axum::routing::get(oidc::login))
        .route("/auth/callback", axum::routing::get(oidc::callback))
        .route("/auth/logout", axum::routing::post(oidc::logout))
        .merge(tokens::router())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_contain_their_addresses() {
        let net: IpNet = "10.1.0.0/16".parse().unwrap();
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.0.9".parse().unwrap()));
        let one: IpNet = "127.0.0.1".parse().unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        let all: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        assert!(
            "::1"
                .parse::<IpNet>()
                .unwrap()
                .contains("::1".parse().unwrap())
        );
        assert!("10.0.0.0/33".parse::<IpNet>().is_err());
        assert!("nope".parse::<IpNet>().is_err());
    }

    #[test]
    fn group_roles_are_parsed() {
        assert_eq!(
            group_role("fleet=ops=operator"),
            Ok(("fleet=ops".to_owned(), Role::Operator))
        );
        assert!(group_role("fleet").is_err());
        assert!(group_role("=admin").is_err());
        assert!(group_role("fleet=root").is_err());
    }

    #[test]
    fn the_highest_mapped_role_wins() {
        let config = AuthConfig {
            group_roles: vec![("ops".into(), Role::Operator), ("all".into(), Role::Viewer)],
            ..Default::default()
        };
        assert_eq!(config.role_of(["all", "ops"]), Some(Role::Operator));
        assert_eq!(config.role_of(["other"]), None);
        let config = AuthConfig {
            default_role: Some(Role::Viewer),
            ..config
        };
        assert_eq!(config.role_of(["other"]), Some(Role::Viewer));
    }

    #[test]
    fn development_sign_in_is_refused_where_strangers_could_use_it() {
        let dev = AuthConfig::default();
        let loopback = "127.0.0.1:8080".parse().unwrap();
        let any = "0.0.0.0:8080".parse().unwrap();
        assert!(dev.check(loopback, false).is_ok());
        assert!(dev.check(loopback, true).is_err());
        assert!(dev.check(any, false).is_err());
        let demo = AuthConfig {
            dev_on_network: true,
            ..Default::default()
        };
        assert!(demo.check(any, false).is_ok());
        assert!(demo.check(any, true).is_err());
        let proxy = AuthConfig {
            mode: AuthMode::Proxy,
            ..Default::default()
        };
        assert!(proxy.check(any, true).is_err(), "no trusted proxy");
        let proxy = AuthConfig {
            trusted_proxies: vec!["10.0.0.0/8".parse().unwrap()],
            ..proxy
        };
        assert!(proxy.check(any, true).is_ok());
    }
}
