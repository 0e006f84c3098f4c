//! Authentication and authorization: the permission of every route for every role (a matrix
//! generated from the router), identity headers only from trusted proxies, AWS ALB tokens
//! verified against the load balancer's key, personal API tokens, and development sign-in.

use std::time::Duration;

use base64::Engine as _;
use flotilla_api::{CreatedToken, Me, Role, TokenList};
use flotilla_server::auth::permissions::{Access, required, served_routes};
use flotilla_server::auth::{AuthConfig, AuthMode, alb::AlbConfig};
use p256::ecdsa::SigningKey;
use p256::ecdsa::signature::Signer as _;
use p256::pkcs8::EncodePublicKey as _;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::Digest as _;

use crate::api_support::{delete, get, post};
use crate::helpers::{ROLE_GROUPS, TestApp, proxy_auth, proxy_client, serve_files};

/// What one request answered: its status and error code.
async fn status_of(request: reqwest::RequestBuilder) -> (StatusCode, String) {
    let response = request
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("sending the request");
    let status = response.status();
    // The live stream never ends; its status is all there is to see.
    if response
        .headers()
        .get("content-type")
        .is_some_and(|t| t.to_str().is_ok_and(|t| t.starts_with("text/event-stream")))
    {
        return (status, String::new());
    }
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (status, body["code"].as_str().unwrap_or_default().to_owned())
}

/// The identity `request` (a `GET /api/v1/me`) answers.
async fn me(request: reqwest::RequestBuilder) -> Me {
    let response = request.send().await.expect("GET /me");
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.expect("JSON")
}

/// `route` with every `{parameter}` replaced by an id nothing has.
fn with_placeholders(route: &str) -> String {
    route
        .split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                "matrix-none"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Every route of the real router, called anonymously and in every role: anonymous callers
/// get 401, roles below the route's rule 403, the others through (to whatever the handler
/// makes of a placeholder id and an empty body). A route without a rule fails the test, and
/// every refused mutation is in the audit log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_authorization_matrix_covers_every_route_role_and_anonymous() {
    let app = TestApp::start_with_auth(&[], proxy_auth()).await;
    let routes = served_routes(&flotilla_server::app::router_for_inspection().await);
    assert!(routes.len() >= 50, "too few routes: {routes:?}");
    let mut callers: Vec<(String, reqwest::Client, Option<Role>)> =
        vec![("anonymous".into(), reqwest::Client::new(), None)];
    for (group, role) in ROLE_GROUPS {
        callers.push((
            format!("matrix-{role}"),
            proxy_client(&format!("matrix-{role}"), group),
            Some(role),
        ));
    }
    let (mut problems, mut refused_mutations) = (Vec::new(), [0usize; 2]);
    for (method, route) in &routes {
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("a method");
        let Some(access) = required(&method, route) else {
            problems.push(format!("{method} {route} has no permission rule"));
            continue;
        };
        let path = with_placeholders(route);
        for (who, client, role) in &callers {
            let mut request = client.request(method.clone(), app.url(&path));
            if method != Method::GET {
                request = request.json(&json!({}));
            }
            let (status, code) = status_of(request).await;
            let expected = match (access, role) {
                (Access::Public, _) => None,
                (Access::Role(_), None) => Some((StatusCode::UNAUTHORIZED, "unauthenticated")),
                (Access::Role(needed), Some(role)) if *role < needed => {
                    Some((StatusCode::FORBIDDEN, "forbidden"))
                }
                (Access::Role(_), Some(_)) => None,
            };
            match expected {
                Some((want, want_code)) => {
                    if status != want || code != want_code {
                        problems.push(format!(
                            "{method} {route} as {who}: {status} {code}, expected {want} {want_code}"
                        ));
                    }
                    if method != Method::GET {
                        refused_mutations[usize::from(want == StatusCode::FORBIDDEN)] += 1;
                    }
                }
                None => {
                    if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
                        problems.push(format!(
                            "{method} {route} as {who}: refused with {status} {code}"
                        ));
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(
        refused_mutations[0] > 20 && refused_mutations[1] > 20,
        "{refused_mutations:?}"
    );

    // Every refused mutation was recorded, with who tried and in which role.
    for (outcome, count) in [
        ("unauthenticated", refused_mutations[0]),
        ("forbidden", refused_mutations[1]),
    ] {
        let page: flotilla_api::AuditPage =
            get(&app, &format!("/api/v1/audit?outcome={outcome}&limit=500"))
                .await
                .json();
        assert_eq!(page.entries.len(), count, "{outcome}");
        for entry in &page.entries {
            if outcome == "forbidden" {
                assert!(entry.actor.starts_with("matrix-"), "{entry:?}");
                assert!(entry.role.is_some(), "{entry:?}");
            } else {
                assert_eq!(entry.actor, "anonymous");
                assert_eq!(entry.role, None);
            }
            assert_eq!(entry.source.as_deref(), Some("127.0.0.1"));
        }
    }
    app.stop().await;
}

/// oauth2-proxy's headers are believed only from a trusted proxy; a user gets the highest role
/// of their groups, no role without a mapped group, and cannot escalate with a token; a
/// technician runs a template on one device and nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_identities_count_only_from_trusted_proxies() {
    let app = TestApp::start_with_auth(&["d-1", "d-2"], proxy_auth()).await;

    let me = me(
        proxy_client("ana", "staff,flotilla-viewers,flotilla-operators").get(app.url("/api/v1/me")),
    )
    .await;
    assert_eq!(
        me,
        Me {
            user: "ana".into(),
            email: Some("ana@example.com".into()),
            role: Role::Operator,
            via: "proxy".into(),
            csrf_token: None,
        }
    );
    let (status, code) = status_of(proxy_client("bob", "staff").get(app.url("/api/v1/me"))).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::FORBIDDEN, "forbidden")
    );

    // No escalation through a token.
    let operator = proxy_client("ana", "flotilla-operators");
    let (status, code) = status_of(
        operator
            .post(app.url("/api/v1/tokens"))
            .json(&json!({"name": "root", "role": "admin"})),
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::FORBIDDEN, "forbidden")
    );

    // A technician: a template on one device, not a raw document, not two devices.
    let template = post(
        &app,
        "/api/v1/templates",
        json!({"template_id": "reboot", "document": {"operation": "reboot"}}),
    )
    .await;
    assert_eq!(template.status, StatusCode::CREATED, "{}", template.body);
    let technician = proxy_client("tess", "flotilla-technicians");
    for (body, want) in [
        (
            json!({"job_id": "t-raw", "things": ["d-1"], "document": {"operation": "reboot"}}),
            StatusCode::FORBIDDEN,
        ),
        (
            json!({"job_id": "t-two", "things": ["d-1", "d-2"], "template_id": "reboot"}),
            StatusCode::FORBIDDEN,
        ),
        (
            json!({"job_id": "t-one", "things": ["d-1"], "template_id": "reboot"}),
            StatusCode::CREATED,
        ),
    ] {
        let (status, _) = status_of(technician.post(app.url("/api/v1/jobs")).json(&body)).await;
        assert_eq!(status, want, "{body}");
    }
    assert!(app.job("t-one").await.is_some());
    assert!(app.job("t-raw").await.is_none());
    app.stop().await;

    // The same headers from an address that is no trusted proxy are refused, and recorded.
    let untrusted = AuthConfig {
        trusted_proxies: vec!["10.9.9.9".parse().expect("an address")],
        ..proxy_auth()
    };
    let app = TestApp::start_with_auth(&["d-1"], untrusted).await;
    let (status, code) = status_of(
        app.http
            .post(app.url("/api/v1/jobs"))
            .json(&json!({"things": ["d-1"], "document": {}})),
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNAUTHORIZED, "unauthenticated")
    );
    let recorded: Vec<(String, String, i32)> =
        sqlx::query_as("select actor, outcome, status from server.audit_log")
            .fetch_all(&mut connect(&app).await)
            .await
            .expect("reading the audit log");
    assert_eq!(
        recorded,
        [("anonymous".to_owned(), "unauthenticated".to_owned(), 401)]
    );
    app.stop().await;
}

async fn connect(app: &TestApp) -> sqlx::PgConnection {
    use sqlx::Connection as _;
    sqlx::PgConnection::connect(&app.db.url)
        .await
        .expect("connecting to the test database")
}

/// Personal API tokens: scoped to a role, shown once and stored hashed, refused once expired
/// or revoked; a token cannot make tokens; a forged token is refused even where development
/// sign-in would have let the request through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_tokens_are_role_scoped_expiring_revocable_and_stored_hashed() {
    let app = TestApp::start_with(0, &["d-1"]).await;
    let created = post(
        &app,
        "/api/v1/tokens",
        json!({"name": "ci", "role": "viewer", "expires_in_days": 7}),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let created: CreatedToken = created.json();
    assert!(created.secret.starts_with("flt_"));
    assert_eq!(created.token.role, Role::Viewer);
    assert_eq!(created.token.owner, "dev-admin");

    // Shown once: the list has no secret, the database only its SHA-256.
    let listed = get(&app, "/api/v1/tokens").await;
    assert!(!listed.body.to_string().contains(&created.secret));
    let list: TokenList = listed.json();
    assert_eq!(list.tokens, std::slice::from_ref(&created.token));
    let stored: (String,) =
        sqlx::query_as("select secret_sha256 from server.api_tokens where id = $1::uuid")
            .bind(&created.token.id)
            .fetch_one(&mut connect(&app).await)
            .await
            .expect("the token row");
    assert_eq!(
        stored.0,
        hex::encode(sha2::Sha256::digest(created.secret.as_bytes()))
    );

    let bearer = |secret: &str, method: Method, path: &str| {
        app.http.request(method, app.url(path)).bearer_auth(secret)
    };
    let me = me(bearer(&created.secret, Method::GET, "/api/v1/me")).await;
    assert_eq!(
        (me.user.as_str(), me.role, me.via.as_str()),
        ("dev-admin", Role::Viewer, "token")
    );
    let (status, _) = status_of(bearer(&created.secret, Method::GET, "/api/v1/jobs")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, code) = status_of(
        bearer(&created.secret, Method::POST, "/api/v1/jobs")
            .json(&json!({"things": ["d-1"], "document": {}})),
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::FORBIDDEN, "forbidden")
    );
    let (status, _) = status_of(
        bearer(&created.secret, Method::POST, "/api/v1/tokens")
            .json(&json!({"name": "more", "role": "viewer"})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a token made a token");

    // Forged: refused, not taken for the development admin.
    let forged = format!("flt_{}", "A".repeat(43));
    let (status, code) = status_of(
        bearer(&forged, Method::POST, "/api/v1/jobs")
            .json(&json!({"things": ["d-1"], "document": {}})),
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNAUTHORIZED, "unauthenticated")
    );

    // Expired, then revoked.
    sqlx::query("update server.api_tokens set expires_at = now() - interval '1 second'")
        .execute(&mut connect(&app).await)
        .await
        .expect("expiring the token");
    let (status, _) = status_of(bearer(&created.secret, Method::GET, "/api/v1/jobs")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    sqlx::query("update server.api_tokens set expires_at = now() + interval '1 day'")
        .execute(&mut connect(&app).await)
        .await
        .expect("renewing the token");
    let (status, _) = status_of(bearer(&created.secret, Method::GET, "/api/v1/jobs")).await;
    assert_eq!(status, StatusCode::OK);
    let revoked = delete(&app, &format!("/api/v1/tokens/{}", created.token.id)).await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.body);
    let (status, _) = status_of(bearer(&created.secret, Method::GET, "/api/v1/jobs")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Bad input changes nothing.
    for body in [
        json!({"name": "", "role": "viewer"}),
        json!({"name": "x", "role": "root"}),
        json!({"name": "x", "role": "viewer", "expires_in_days": 0}),
    ] {
        let answer = post(&app, "/api/v1/tokens", body).await;
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            answer.body
        );
    }
    let list: TokenList = get(&app, "/api/v1/tokens").await.json();
    assert_eq!(list.tokens.len(), 1);

    // The forged attempt is audited as anonymous.
    let page: flotilla_api::AuditPage = get(&app, "/api/v1/audit?outcome=unauthenticated")
        .await
        .json();
    assert_eq!(page.entries.len(), 1, "{page:?}");
    assert_eq!(page.entries[0].actor, "anonymous");
    app.stop().await;
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A token as an ALB makes it: ES256 over `header.payload`, base64url segments (padded with
/// `=` when `padded`, as the ALB does).
fn alb_token(key: &SigningKey, header: &Value, payload: &Value, padded: bool) -> String {
    let encode = |value: &Value| {
        let text = b64(value.to_string().as_bytes());
        if padded {
            let pad = (4 - text.len() % 4) % 4;
            format!("{text}{}", "=".repeat(pad))
        } else {
            text
        }
    };
    let signed = format!("{}.{}", encode(header), encode(payload));
    let signature: p256::ecdsa::Signature = key.sign(signed.as_bytes());
    format!("{signed}.{}", b64(&signature.to_bytes()))
}

/// Behind an AWS ALB: the `x-amzn-oidc-data` JWT is verified with the key fetched by its
/// `kid`; a forged, expired, foreign or malformed token is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alb_identities_are_verified_against_the_load_balancers_key() {
    let key = SigningKey::from_slice(&[7; 32]).expect("a P-256 key");
    let other = SigningKey::from_slice(&[9; 32]).expect("a P-256 key");
    let pem = key
        .verifying_key()
        .to_public_key_pem(p256::pkcs8::LineEnding::LF)
        .expect("PEM");
    let kid = "6a1b7e8c-4d2f-4a5b-9c3d-1e2f3a4b5c6d";
    let (keys, _server) = serve_files(vec![(kid, pem.into_bytes())]).await;
    let arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/flotilla/50dc6c495c0c9188";
    let auth = AuthConfig {
        mode: AuthMode::Alb(AlbConfig {
            public_key_url: format!("http://{keys}"),
            alb_arn: Some(arn.into()),
            groups_claim: "groups".into(),
        }),
        ..proxy_auth()
    };
    let app = TestApp::start_with_auth(&[], auth).await;
    let now = chrono::Utc::now().timestamp();
    let header = json!({"alg": "ES256", "kid": kid, "signer": arn, "iss": "https://idp.example", "client": "flotilla", "exp": now + 60});
    let payload = json!({"sub": "1234", "email": "olga@example.com", "groups": ["flotilla-operators"], "exp": now + 60, "iss": "https://idp.example"});
    let me_with = |token: String| {
        reqwest::Client::new()
            .get(app.url("/api/v1/me"))
            .header("x-amzn-oidc-data", token)
    };

    for padded in [true, false] {
        let me = me(me_with(alb_token(&key, &header, &payload, padded))).await;
        assert_eq!(
            me,
            Me {
                user: "olga@example.com".into(),
                email: Some("olga@example.com".into()),
                role: Role::Operator,
                via: "alb".into(),
                csrf_token: None,
            }
        );
    }

    let mut expired = payload.clone();
    expired["exp"] = json!(now - 1);
    let mut foreign = header.clone();
    foreign["signer"] =
        json!("arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/other/1");
    let mut unknown_key = header.clone();
    unknown_key["kid"] = json!("0000-unknown");
    let mut traversal = header.clone();
    traversal["kid"] = json!("../etc/passwd");
    let mut none = header.clone();
    none["alg"] = json!("none");
    let good = alb_token(&key, &header, &payload, false);
    let mut parts: Vec<&str> = good.split('.').collect();
    let tampered_payload = b64(json!({"sub": "1234", "email": "olga@example.com", "groups": ["flotilla-admins"], "exp": now + 60}).to_string().as_bytes());
    parts[1] = &tampered_payload;
    let tampered = parts.join(".");
    for (what, token) in [
        (
            "signed by another key",
            alb_token(&other, &header, &payload, false),
        ),
        ("expired", alb_token(&key, &header, &expired, false)),
        (
            "another load balancer",
            alb_token(&key, &foreign, &payload, false),
        ),
        (
            "an unknown key",
            alb_token(&key, &unknown_key, &payload, false),
        ),
        (
            "a path for a key id",
            alb_token(&key, &traversal, &payload, false),
        ),
        ("alg none", alb_token(&key, &none, &payload, false)),
        ("a changed payload", tampered),
        ("garbage", "not.a.jwt".to_owned()),
    ] {
        let (status, code) = status_of(me_with(token)).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::UNAUTHORIZED, "unauthenticated"),
            "{what}"
        );
    }
    app.stop().await;
}

/// Development sign-in makes every request the admin `dev-admin`, and is refused in AWS mode
/// and on a non-loopback address unless allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn development_sign_in_is_an_admin_on_loopback_only() {
    let app = TestApp::start_with(0, &[]).await;
    let me: Me = get(&app, "/api/v1/me").await.json();
    assert_eq!(
        (me.user.as_str(), me.role, me.via.as_str()),
        ("dev-admin", Role::Admin, "development")
    );
    let mut config = crate::helpers::local_config(&app.db, "-open", 0, &[], Default::default());
    config.listen = "0.0.0.0:0".parse().expect("an address");
    let refused = flotilla_server::app::start(config)
        .await
        .expect_err("development sign-in on every interface");
    assert!(
        refused.to_string().contains("--dev-auth-on-network"),
        "{refused:#}"
    );
    let _ = std::fs::remove_dir_all(crate::helpers::artifact_dir(&app.db, "-open"));
    let _ = std::fs::remove_file(
        std::env::temp_dir().join(format!("flotilla-test-signing-{}-open.pem", app.db.name)),
    );
    app.stop().await;
}

/// A browser without JavaScript: follows nothing by itself, and keeps the session cookie.
struct Browser {
    http: reqwest::Client,
    cookie: Option<String>,
}

impl Browser {
    fn new() -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(30))
                .build()
                .expect("an HTTP client"),
            cookie: None,
        }
    }

    /// Sends `request` with the session cookie; keeps a new one the answer sets, checking its
    /// attributes.
    async fn send(&mut self, mut request: reqwest::RequestBuilder) -> reqwest::Response {
        if let Some(cookie) = &self.cookie {
            request = request.header("cookie", format!("flotilla_session={cookie}"));
        }
        let response = request.send().await.expect("sending the request");
        for set in response.headers().get_all("set-cookie") {
            let set = set.to_str().expect("an ASCII cookie");
            if let Some(rest) = set.strip_prefix("flotilla_session=") {
                let value = rest.split(';').next().unwrap_or_default();
                // An empty value removes the cookie; a session id must be well guarded.
                if !value.is_empty() {
                    assert!(set.contains("HttpOnly"), "{set}");
                    assert!(set.contains("SameSite=Lax"), "{set}");
                    assert!(set.contains("Path=/"), "{set}");
                    assert!(!set.contains("Secure"), "http needs no Secure: {set}");
                }
                self.cookie = (!value.is_empty()).then(|| value.to_owned());
            }
        }
        response
    }
}

fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .unwrap_or_else(|| panic!("no Location in {response:?}"))
        .to_owned()
}

/// `url`'s query parameter `name`.
fn query_param(url: &str, name: &str) -> Option<String> {
    reqwest::Url::parse(url)
        .ok()?
        .query_pairs()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// Starts a sign-in at the server: the provider's authorization URL.
async fn start_sign_in(app: &TestApp, browser: &mut Browser) -> String {
    let response = browser
        .send(
            browser
                .http
                .get(app.url("/api/v1/auth/login?return_to=%2F%23%2Frollouts")),
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    location(&response)
}

/// Signs `sub` in at the provider: the callback URL it sends the browser back to.
async fn authorize_at_provider(browser: &Browser, authorization_url: &str, sub: &str) -> String {
    let response = browser
        .http
        .post(authorization_url)
        .form(&[("sub", sub)])
        .send()
        .await
        .expect("POST to the provider");
    assert!(response.status().is_redirection(), "{response:?}");
    location(&response)
}

/// The answer to `GET {callback}`, and its error code.
async fn call_back(browser: &mut Browser, callback: &str) -> (StatusCode, String, String) {
    let response = browser.send(browser.http.get(callback)).await;
    let status = response.status();
    let location = response
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let code = body["code"].as_str().unwrap_or_default().to_owned();
    let detail = if location.is_empty() {
        format!("{code}: {}", body["message"].as_str().unwrap_or_default())
    } else {
        location
    };
    (status, code, detail)
}

/// The full authorization code flow against a real OpenID provider, without a browser: PKCE
/// and nonce sent, the session id rotated at sign-in, the groups claim mapped to roles (no
/// role: refused), the CSRF token required of the session's changes but not of bearer tokens,
/// a replayed callback, a forged state and a foreign nonce refused, logout ending the session
/// with the provider's end-session URL, and every sign-in audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_sign_in_against_a_real_provider() {
    let provider = crate::helpers::OpenIdProvider::start(&[
        json!({"sub": "olga", "email": "olga@example.com", "groups": ["staff", "flotilla-operators"]}),
        json!({"sub": "vic", "email": "vic@example.com", "groups": "flotilla-viewers"}),
        json!({"sub": "nobody", "email": "nobody@example.com", "groups": ["staff"]}),
    ])
    .await;
    let listen = crate::helpers::free_loopback_addr();
    let oidc = flotilla_server::auth::oidc::OidcConfig {
        issuer: provider.issuer.clone(),
        client_id: "flotilla".into(),
        client_secret: Some(flotilla_server::auth::oidc::SecretString("s3cret".into())),
        redirect_url: format!("http://{listen}/api/v1/auth/callback"),
        scopes: vec!["email".into(), "profile".into()],
        groups_claim: "groups".into(),
        post_logout_url: None,
    };
    let app = TestApp::start_configured(&[], |config| {
        config.listen = listen;
        config.auth = AuthConfig {
            mode: AuthMode::Oidc(oidc),
            ..proxy_auth()
        };
    })
    .await;

    // Signing in: the server sends the browser to the provider with PKCE, state and nonce.
    let mut browser = Browser::new();
    let authorization = start_sign_in(&app, &mut browser).await;
    assert!(
        authorization.starts_with(&format!("{}/oauth2/authorize?", provider.issuer)),
        "{authorization}"
    );
    assert_eq!(
        query_param(&authorization, "code_challenge_method").as_deref(),
        Some("S256")
    );
    for param in ["code_challenge", "state", "nonce"] {
        assert!(query_param(&authorization, param).is_some(), "{param}");
    }
    let before = browser
        .cookie
        .clone()
        .expect("a session cookie before sign-in");
    let callback = authorize_at_provider(&browser, &authorization, "olga").await;
    let (status, _, to) = call_back(&mut browser, &callback).await;
    assert_eq!(
        (status, to.as_str()),
        (StatusCode::SEE_OTHER, "/#/rollouts")
    );
    let session = browser.cookie.clone().expect("a session cookie");
    assert_ne!(session, before, "the session id is rotated at sign-in");

    let me_response = browser.send(browser.http.get(app.url("/api/v1/me"))).await;
    assert_eq!(me_response.status(), StatusCode::OK);
    let me: Me = me_response.json().await.expect("JSON");
    assert_eq!(
        (
            me.user.as_str(),
            me.email.as_deref(),
            me.role,
            me.via.as_str()
        ),
        (
            "olga@example.com",
            Some("olga@example.com"),
            Role::Operator,
            "oidc"
        )
    );
    let csrf = me.csrf_token.clone().expect("a CSRF token");

    // The id from before sign-in names nothing now.
    let with_cookie = |path: &str, cookie: &str| {
        reqwest::Client::new()
            .get(app.url(path))
            .header("cookie", format!("flotilla_session={cookie}"))
    };
    let (status, code) = status_of(with_cookie("/api/v1/me", &before)).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNAUTHORIZED, "unauthenticated")
    );

    // Changes need the CSRF token.
    let template = |id: &str| json!({"template_id": id, "document": {"operation": "reboot"}});
    for header in [None, Some("wrong")] {
        let mut request = browser
            .http
            .post(app.url("/api/v1/templates"))
            .json(&template("no-csrf"));
        if let Some(header) = header {
            request = request.header("x-csrf-token", header);
        }
        let response = browser.send(request).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{header:?}");
    }
    let created = browser
        .send(
            browser
                .http
                .post(app.url("/api/v1/templates"))
                .header("x-csrf-token", &csrf)
                .json(&template("with-csrf")),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    // A bearer token is no ambient credential: no CSRF token needed.
    let token = browser
        .send(
            browser
                .http
                .post(app.url("/api/v1/tokens"))
                .header("x-csrf-token", &csrf)
                .json(&json!({"name": "ci", "role": "operator"})),
        )
        .await;
    assert_eq!(token.status(), StatusCode::CREATED);
    let token: CreatedToken = token.json().await.expect("JSON");
    let (status, _) = status_of(
        reqwest::Client::new()
            .post(app.url("/api/v1/templates"))
            .bearer_auth(&token.secret)
            .json(&template("by-token")),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);

    // The callback again: its state was used up.
    let (status, code, _) = call_back(&mut browser, &callback).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNAUTHORIZED, "unauthenticated")
    );

    // Groups to roles: a comma-separated claim too; no mapped group, no entry.
    let mut viewer = Browser::new();
    let authorization = start_sign_in(&app, &mut viewer).await;
    let callback = authorize_at_provider(&viewer, &authorization, "vic").await;
    assert_eq!(
        call_back(&mut viewer, &callback).await.0,
        StatusCode::SEE_OTHER
    );
    let me: Me = viewer
        .send(viewer.http.get(app.url("/api/v1/me")))
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(
        (me.user.as_str(), me.role),
        ("vic@example.com", Role::Viewer)
    );
    let mut stranger = Browser::new();
    let authorization = start_sign_in(&app, &mut stranger).await;
    let callback = authorize_at_provider(&stranger, &authorization, "nobody").await;
    let (status, code, _) = call_back(&mut stranger, &callback).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::FORBIDDEN, "forbidden")
    );
    let (status, _) = status_of(with_cookie(
        "/api/v1/me",
        &stranger.cookie.clone().unwrap_or_default(),
    ))
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // A forged state is refused, and uses up the sign-in it tried to finish.
    let mut forger = Browser::new();
    let authorization = start_sign_in(&app, &mut forger).await;
    let callback = authorize_at_provider(&forger, &authorization, "olga").await;
    let state = query_param(&callback, "state").expect("a state");
    let forged = callback.replace(&format!("state={state}"), "state=forged");
    let (status, code, _) = call_back(&mut forger, &forged).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNAUTHORIZED, "unauthenticated")
    );
    let (status, _, _) = call_back(&mut forger, &callback).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // A code issued for another sign-in (another nonce), delivered with this session's state:
    // the ID token's nonce is not this session's.
    let mut first = Browser::new();
    let first_authorization = start_sign_in(&app, &mut first).await;
    let mut second = Browser::new();
    let second_authorization = start_sign_in(&app, &mut second).await;
    let first_callback = authorize_at_provider(&first, &first_authorization, "olga").await;
    let swapped = format!(
        "{}?code={}&state={}",
        app.url("/api/v1/auth/callback"),
        query_param(&first_callback, "code").expect("a code"),
        query_param(&second_authorization, "state").expect("a state"),
    );
    let (status, code, detail) = call_back(&mut second, &swapped).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNAUTHORIZED, "unauthenticated"),
        "{detail}"
    );
    assert!(detail.to_lowercase().contains("nonce"), "{detail}");

    // Every sign-in is on record, refused ones too.
    let audit: flotilla_api::AuditPage = viewer
        .send(
            viewer
                .http
                .get(app.url("/api/v1/audit?target=/api/v1/auth/callback&limit=500")),
        )
        .await
        .json()
        .await
        .expect("JSON");
    let outcomes: Vec<(&str, &str)> = audit
        .entries
        .iter()
        .rev()
        .map(|e| (e.actor.as_str(), e.outcome.as_str()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("olga@example.com", "ok"),
            ("anonymous", "unauthenticated"),
            ("vic@example.com", "ok"),
            ("nobody@example.com", "forbidden"),
            ("anonymous", "unauthenticated"),
            ("anonymous", "unauthenticated"),
            ("anonymous", "unauthenticated"),
        ]
    );

    // Logout: needs the CSRF token, ends the session, and names the provider's logout.
    let refused = browser
        .send(browser.http.post(app.url("/api/v1/auth/logout")))
        .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let out = browser
        .send(
            browser
                .http
                .post(app.url("/api/v1/auth/logout"))
                .header("x-csrf-token", &csrf),
        )
        .await;
    assert_eq!(out.status(), StatusCode::OK);
    let out: flotilla_api::LoggedOut = out.json().await.expect("JSON");
    let end = out.end_session_url.expect("an end-session URL");
    assert!(
        end.starts_with(&format!("{}/oauth2/end_session?", provider.issuer)),
        "{end}"
    );
    assert!(query_param(&end, "id_token_hint").is_some(), "{end}");
    assert_eq!(
        query_param(&end, "post_logout_redirect_uri"),
        Some(format!("http://{listen}/"))
    );
    let (status, _) = status_of(with_cookie("/api/v1/me", &session)).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the session outlived logout"
    );
    app.stop().await;
}
