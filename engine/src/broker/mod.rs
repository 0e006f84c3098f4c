//! The embedded MQTT broker (3.1.1 and 5) devices connect to: rmqtt, running on the engine's
//! tokio runtime, with the engine's answers in its hooks (see `docs/broker.md` for why rmqtt).
//!
//! - Two listeners: plain TCP (development; devices authenticate by client id = thing name,
//!   plus a token when the engine requires one) and TLS with client certificates (devices
//!   authenticate with a certificate the engine's CA issued and attached to their thing).
//! - Authentication ([`Hooks::authenticate`], implemented by [`auth::EngineHooks`]) decides who a
//!   client is: the trusted service identity, or the device of one thing.
//! - Authorization: a device may subscribe and publish only on its own
//!   `$aws/things/{thing}/…` topics; the service identity (an rmqtt superuser) may use any.
//! - Requests on `$aws/things/{thing}/jobs/…` are handed, in order per connection, to the jobs
//!   logic ([`Hooks::handle`]), which answers on `/accepted` or `/rejected` through
//!   [`Broker::publish`].
//! - Lifecycle events: `$aws/events/presence/{connected|disconnected}/{clientId}` with AWS
//!   IoT's payloads, for each device.
//! - Topics with a level starting with `$` after the first (the Jobs API's
//!   `$aws/things/{thing}/jobs/$next/get`) are legal in AWS IoT but refused by rmqtt's topic
//!   parser, so they travel through rmqtt in an internal spelling ([`topic_escape`]) and are
//!   given back their `$` when delivered to a client.

pub mod auth;

pub use auth::device_token;

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use futures::future::BoxFuture;
use rmqtt::codec::types::Publish as PublishPacket;
use rmqtt::context::ServerContext;
use rmqtt::hook::{Handler, HookResult, Parameter, ReturnType, Type};
use rmqtt::net::Builder;
use rmqtt::server::MqttServer;
use rmqtt::session::{Session, SessionState};
use rmqtt::types::{
    AuthResult, ClientId, From, Id, ListenerId, Message, PublishAclResult, QoS, Reason,
    SubscribeAclResult,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::certificates::ServerIdentity;

/// The largest packet accepted: AWS IoT's 128 KiB payload limit plus headers.
pub const MAX_PACKET_SIZE: u32 = 128 * 1024 + 1024;
/// The rmqtt listener ids (they key the listeners' configurations, so they must differ even
/// when both ports are picked by the system).
const PLAIN_LISTENER: ListenerId = 1;
const TLS_LISTENER: ListenerId = 2;

/// Who a connection is, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// The dashboard server (or another trusted service): may use every topic.
    Service,
    /// A device: may use only `$aws/things/{thing}/…`.
    Thing(String),
    /// A client whose certificate has policies: may do what they allow.
    Policy(Arc<Grant>),
}

/// What a certificate's policies grant one connection.
#[derive(Debug, PartialEq, Eq)]
pub struct Grant {
    pub client_id: String,
    /// `arn:aws:iot:{region}:{account}:`, the start of every resource ARN.
    pub arn_prefix: String,
    pub policies: crate::policies::PolicySet,
}

impl Grant {
    /// Whether the policies allow `action` on the resource `arn:aws:iot:…:{resource}`.
    pub fn allows(&self, action: &str, resource: &str) -> bool {
        self.policies.allows(
            action,
            &format!("{}{resource}", self.arn_prefix),
            &self.client_id,
        )
    }
}

impl Identity {
    /// Whether this identity may subscribe to `filter` (as the client spelled it). A policy
    /// must allow `iot:Subscribe` on the filter and `iot:Receive` on the topics it matches,
    /// judged here on the filter itself.
    pub fn may_subscribe(&self, filter: &str) -> bool {
        match self {
            Identity::Policy(grant) => {
                grant.allows("iot:Subscribe", &format!("topicfilter/{filter}"))
                    && grant.allows("iot:Receive", &format!("topic/{filter}"))
            }
            other => other.owns(filter),
        }
    }

    /// Whether this identity may publish to `topic` (as the client spelled it).
    pub fn may_publish(&self, topic: &str) -> bool {
        match self {
            Identity::Policy(grant) => grant.allows("iot:Publish", &format!("topic/{topic}")),
            other => other.owns(topic),
        }
    }

    /// The engine's own rule: the service uses anything, a device its thing's topics.
    fn owns(&self, topic_or_filter: &str) -> bool {
        match self {
            Identity::Service => true,
            Identity::Thing(thing) => topic_or_filter
                .strip_prefix("$aws/things/")
                .and_then(|rest| rest.strip_prefix(thing.as_str()))
                .is_some_and(|rest| rest.starts_with('/')),
            Identity::Policy(_) => false,
        }
    }
}

/// Which listener a client came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerKind {
    Plain,
    Tls,
}

/// What a client presented in CONNECT (and, on the TLS listener, in the handshake).
#[derive(Debug, Clone)]
pub struct ConnectInfo {
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<Vec<u8>>,
    pub peer: String,
    pub listener: ListenerKind,
    /// The client certificate's serial number (hex), verified against the engine's CA.
    pub certificate_serial: Option<String>,
}

/// A client the engine let in.
#[derive(Debug, Clone)]
pub struct Admitted {
    pub identity: Identity,
    /// The certificate it authenticated with, so revoking it can disconnect the client.
    pub certificate_id: Option<String>,
}

/// Why a client was turned away (the CONNACK code it gets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    BadUsernameOrPassword,
    NotAuthorized,
    BadClientId,
    /// The engine could not decide (its database is unreachable).
    Unavailable,
}

/// The engine's side of the broker.
pub trait Hooks: Send + Sync + 'static {
    /// Decides who a connecting client is, or refuses it.
    fn authenticate(&self, info: ConnectInfo) -> BoxFuture<'_, Result<Admitted, Refusal>>;

    /// Whether the engine handles publishes to `topic` (the Jobs device API).
    fn consumes(&self, topic: &str) -> bool;

    /// Handles a consumed publish. Runs before the client's next packet is processed, so a
    /// device's requests are handled in the order it sent them.
    fn handle<'a>(
        &'a self,
        identity: &'a Identity,
        topic: &'a str,
        payload: Bytes,
    ) -> BoxFuture<'a, ()>;
}

/// The TLS listener: where, the broker's certificate, and the CA it trusts for clients.
#[derive(Debug, Clone)]
pub struct TlsListener {
    pub addr: SocketAddr,
    pub identity: ServerIdentity,
    pub client_ca_pem: String,
}

/// The listeners to open.
#[derive(Debug, Clone)]
pub struct BrokerListeners {
    pub mqtt: SocketAddr,
    pub mqtts: Option<TlsListener>,
}

/// A started broker: the addresses bound and the task serving them.
#[derive(Debug)]
pub struct Started {
    pub mqtt_addr: SocketAddr,
    pub mqtts_addr: Option<SocketAddr>,
    pub task: JoinHandle<()>,
}

/// A connected client, as the engine tracks it for revocation and lifecycle events.
#[derive(Debug, Clone)]
struct LiveSession {
    id: Id,
    identity: Identity,
    certificate_id: Option<String>,
    session_identifier: String,
}

/// The broker's shared state. Cheap to clone; [`Broker::publish`] may be called before the
/// broker is started (messages are dropped until then: nobody could have subscribed).
#[derive(Clone, Default)]
pub struct Broker {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Messages the engine publishes, in order, to the task that routes them.
    outbox: OnceLock<mpsc::UnboundedSender<(String, Bytes)>>,
    scx: OnceLock<ServerContext>,
    /// Admitted at authentication, until the session is up (keyed by the connection's id).
    pending: Mutex<HashMap<Id, Admitted>>,
    /// Connected clients by client id.
    live: Mutex<HashMap<String, LiveSession>>,
    /// How many times each client id connected, for the lifecycle events' `versionNumber`.
    versions: Mutex<HashMap<String, u64>>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker").finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Broker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Publishes a message from the engine itself to every matching subscriber, in the order
    /// of the calls. Like AWS IoT publishing on reserved topics, it triggers no hooks.
    pub fn publish(&self, topic: &str, payload: impl Into<Bytes>) {
        if let Some(outbox) = self.inner.outbox.get() {
            // Fails only once the broker stopped, when nobody is left to receive it.
            let _ = outbox.send((topic.to_owned(), payload.into()));
        }
    }

    /// Disconnects every client connected with the certificate `certificate_id`; the engine
    /// calls it when the certificate stops admitting them (deactivated, revoked, detached).
    pub async fn disconnect_certificate(&self, certificate_id: &str) {
        let sessions: Vec<LiveSession> = lock(&self.inner.live)
            .values()
            .filter(|live| live.certificate_id.as_deref() == Some(certificate_id))
            .cloned()
            .collect();
        for live in sessions {
            tracing::info!(client_id = %live.id.client_id, certificate.id = certificate_id, "disconnecting {} whose certificate no longer admits it", live.id.client_id);
            self.close(&live.id).await;
        }
    }

    /// Ends the connection of the session `id`, if it is still the live one.
    async fn close(&self, id: &Id) {
        let Some(scx) = self.inner.scx.get() else {
            return;
        };
        let tx = scx.extends.shared().await.entry(id.clone()).tx();
        if let Some(tx) = tx {
            let _ = tx.unbounded_send(Message::Closed(Reason::from_static(
                "the client's certificate no longer admits it",
            )));
        }
    }

    /// Binds the listeners and starts serving on the current tokio runtime until `shutdown`.
    pub async fn start(
        &self,
        listeners: BrokerListeners,
        hooks: Arc<dyn Hooks>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Started> {
        // The busy check refuses CONNECTs with ServiceUnavailable when the machine is loaded,
        // which a test run or a fleet reconnecting at once easily makes it.
        let scx = ServerContext::new().busy_check_enable(false).build().await;
        let plain = listener_builder("mqtt", listeners.mqtt)
            .bind()
            .with_context(|| format!("binding the MQTT listener to {}", listeners.mqtt))?
            .tcp()?;
        let mqtt_addr = plain.local_addr()?;

        let mut server = MqttServer::new(scx.clone()).listener_by_id(plain, PLAIN_LISTENER);
        let mut files = None;
        let mut mqtts_addr = None;
        if let Some(tls) = listeners.mqtts {
            let written = TlsFiles::write(&tls).context("writing the broker's TLS files")?;
            let listener = listener_builder("mqtts", tls.addr)
                .tls_cert(Some(written.certificate.to_string_lossy()))
                .tls_key(Some(written.key.to_string_lossy()))
                .tls_client_ca_certs(Some(written.client_ca.to_string_lossy()))
                .tls_cross_certificate(true)
                // The certificate's serial number must reach the authentication hook.
                .collect_cert_info(true)
                .bind()
                .with_context(|| format!("binding the MQTTS listener to {}", tls.addr))?
                .tls()
                .context("configuring the MQTTS listener's TLS")?;
            mqtts_addr = Some(listener.local_addr()?);
            server = server.listener_by_id(listener, TLS_LISTENER);
            files = Some(written);
        }

        let register = scx.extends.hook_mgr().register();
        let handler = || {
            Box::new(EngineHandler {
                broker: self.clone(),
                hooks: hooks.clone(),
            })
        };
        for typ in [
            Type::ClientAuthenticate,
            Type::ClientSubscribe,
            Type::ClientUnsubscribe,
            Type::ClientSubscribeCheckAcl,
            Type::MessagePublishCheckAcl,
            Type::MessagePublish,
            Type::MessageDelivered,
            Type::ClientConnected,
            Type::ClientDisconnected,
        ] {
            register.add(typ, handler()).await;
        }
        register.start().await;

        let (outbox, mut queued) = mpsc::unbounded_channel::<(String, Bytes)>();
        let _ = self.inner.outbox.set(outbox);
        let _ = self.inner.scx.set(scx.clone());

        let broker = self.clone();
        let task = tokio::spawn(async move {
            // Keeps the TLS files until the broker stops (rustls read them at bind already).
            let _files = files;
            let system = Id::new(
                scx.node.id(),
                0,
                None,
                None,
                ClientId::from_static("flotilla-engine"),
                None,
            );
            let router_scx = scx.clone();
            let router = async move {
                while let Some((topic, payload)) = queued.recv().await {
                    let packet = Box::new(PublishPacket {
                        dup: false,
                        retain: false,
                        // Delivered at most at QoS 1, as AWS IoT does.
                        qos: QoS::AtLeastOnce,
                        topic: topic_escape::to_internal(&topic).into_owned().into(),
                        packet_id: None,
                        payload,
                        properties: None,
                    });
                    let publish = rmqtt::types::Publish::new(
                        packet,
                        None,
                        None,
                        Some(chrono::Utc::now().timestamp_millis()),
                    );
                    if let Err(error) = SessionState::forwards(
                        &router_scx,
                        From::from_system(system.clone()),
                        publish,
                        false,
                        None,
                    )
                    .await
                    {
                        tracing::debug!(%error, "could not route an engine message: {error}");
                    }
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => {}
                // Runs the accept loops; returns only if every listener failed to start.
                served = server.build().run() => {
                    if let Err(error) = served {
                        tracing::error!(%error, "the MQTT broker stopped: {error}");
                    }
                }
                () = router => {}
            }
            broker.close_all().await;
        });
        Ok(Started {
            mqtt_addr,
            mqtts_addr,
            task,
        })
    }

    /// Ends every connection, so clients of a stopped engine reconnect to its successor.
    async fn close_all(&self) {
        let sessions: Vec<Id> = lock(&self.inner.live)
            .values()
            .map(|live| live.id.clone())
            .collect();
        for id in sessions {
            self.close(&id).await;
        }
    }

    fn connected(&self, session: &Session) {
        let admitted = lock(&self.inner.pending).remove(&session.id);
        let Some(admitted) = admitted else {
            return;
        };
        let client_id = session.id.client_id.to_string();
        let live = LiveSession {
            id: session.id.clone(),
            identity: admitted.identity,
            certificate_id: admitted.certificate_id,
            session_identifier: uuid::Uuid::new_v4().simple().to_string(),
        };
        let version = {
            let mut versions = lock(&self.inner.versions);
            let version = versions.entry(client_id.clone()).or_insert(0);
            *version += 1;
            *version - 1
        };
        lock(&self.inner.live).insert(client_id.clone(), live.clone());
        if live.identity == Identity::Service {
            return;
        }
        let mut event = presence_event(&live, "connected", version);
        if let Some(peer) = session.id.remote_addr {
            event["ipAddress"] = serde_json::json!(peer.ip().to_string());
        }
        self.publish(
            &format!("$aws/events/presence/connected/{client_id}"),
            event.to_string(),
        );
    }

    fn disconnected(&self, session: &Session, reason: &Reason) {
        let client_id = session.id.client_id.to_string();
        let live = {
            let mut live = lock(&self.inner.live);
            match live.get(&client_id) {
                Some(current) if current.id == session.id => live.remove(&client_id),
                _ => None,
            }
        };
        let Some(live) = live else {
            return;
        };
        if live.identity == Identity::Service {
            return;
        }
        let version = lock(&self.inner.versions)
            .get(&client_id)
            .copied()
            .unwrap_or(1)
            .saturating_sub(1);
        let (client_initiated, aws_reason) = disconnect_reason(reason);
        let mut event = presence_event(&live, "disconnected", version);
        event["clientInitiatedDisconnect"] = serde_json::json!(client_initiated);
        event["disconnectReason"] = serde_json::json!(aws_reason);
        self.publish(
            &format!("$aws/events/presence/disconnected/{client_id}"),
            event.to_string(),
        );
    }
}

/// A listener's settings, common to both listeners.
fn listener_builder(name: &str, addr: SocketAddr) -> Builder {
    Builder::new()
        .name(name)
        .laddr(addr)
        .nodelay(true)
        // A restarted engine binds its port again at once: connections the old one closed
        // (TIME_WAIT) must not hold it, as they do without SO_REUSEADDR.
        .reuseaddr(Some(true))
        // rmqtt's default lets a CONNECT without username skip the authentication hook.
        .allow_anonymous(false)
        .max_packet_size(MAX_PACKET_SIZE)
        .max_qos_allowed(rmqtt::codec::types::QoS::AtLeastOnce)
        .handshake_timeout(Duration::from_secs(10))
        .max_inflight(std::num::NonZeroU16::new(64).expect("non-zero"))
        .max_mqueue_len(1024)
}

/// The lifecycle event body common to `connected` and `disconnected`.
fn presence_event(live: &LiveSession, event_type: &str, version: u64) -> serde_json::Value {
    serde_json::json!({
        "clientId": live.id.client_id.to_string(),
        "timestamp": chrono::Utc::now().timestamp_millis(),
        "eventType": event_type,
        "sessionIdentifier": live.session_identifier,
        "principalIdentifier": live
            .certificate_id
            .clone()
            .unwrap_or_else(|| live.id.client_id.to_string()),
        "versionNumber": version,
    })
}

/// Whether the client ended the connection, and AWS IoT's `disconnectReason` for `reason`.
///
/// rmqtt hands the hook the reasons it recorded for the session (`Reason::Reasons`): a
/// DISCONNECT packet among them means the client ended the connection; otherwise the first
/// one decides.
fn disconnect_reason(reason: &Reason) -> (bool, &'static str) {
    match reason {
        Reason::Reasons(reasons) => {
            if reasons
                .iter()
                .any(|r| matches!(r, Reason::ConnectDisconnect(_)))
            {
                (true, "CLIENT_INITIATED_DISCONNECT")
            } else {
                reasons
                    .first()
                    .map_or((false, "SERVER_INITIATED_DISCONNECT"), disconnect_reason)
            }
        }
        Reason::ConnectDisconnect(_) => (true, "CLIENT_INITIATED_DISCONNECT"),
        Reason::ConnectKicked(_) => (false, "DUPLICATE_CLIENTID"),
        Reason::ConnectKeepaliveTimeout => (false, "MQTT_KEEP_ALIVE_TIMEOUT"),
        Reason::ConnectRemoteClose
        | Reason::ConnectReadWriteError
        | Reason::ConnectReadWriteTimeout => (false, "CONNECTION_LOST"),
        Reason::PublishResult(_) | Reason::SubscribeRefused => (false, "FORBIDDEN_ACCESS"),
        Reason::ProtocolError(_) => (false, "CLIENT_ERROR"),
        Reason::Error(_) => (false, "AUTH_ERROR"),
        _ => (false, "SERVER_INITIATED_DISCONNECT"),
    }
}

/// The TLS material rmqtt reads from files, in a private folder removed when dropped.
struct TlsFiles {
    folder: std::path::PathBuf,
    certificate: std::path::PathBuf,
    key: std::path::PathBuf,
    client_ca: std::path::PathBuf,
}

impl TlsFiles {
    fn write(tls: &TlsListener) -> std::io::Result<Self> {
        let folder = std::env::temp_dir().join(format!(
            "flotilla-engine-tls-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(&folder)?;
        let files = Self {
            certificate: folder.join("broker.crt"),
            key: folder.join("broker.key"),
            client_ca: folder.join("client-ca.crt"),
            folder,
        };
        std::fs::write(&files.certificate, &tls.identity.certificate_chain_pem)?;
        std::fs::write(&files.key, &tls.identity.private_key_pem)?;
        std::fs::write(&files.client_ca, &tls.client_ca_pem)?;
        Ok(files)
    }
}

impl Drop for TlsFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.folder);
    }
}

/// The engine's rmqtt hook handler.
struct EngineHandler {
    broker: Broker,
    hooks: Arc<dyn Hooks>,
}

impl EngineHandler {
    async fn authenticate(&self, info: &rmqtt::types::ConnectInfo) -> AuthResult {
        let id = info.id().clone();
        let connect = ConnectInfo {
            client_id: info.client_id().to_string(),
            username: info.username().map(|u| u.to_string()),
            password: info.password().map(|p| p.to_vec()),
            peer: info
                .ipaddress()
                .map(|peer| peer.to_string())
                .unwrap_or_default(),
            listener: if id.lid == TLS_LISTENER {
                ListenerKind::Tls
            } else {
                ListenerKind::Plain
            },
            certificate_serial: info.cert().and_then(|cert| cert.serial.clone()),
        };
        match self.hooks.authenticate(connect).await {
            Ok(admitted) => {
                let superuser = admitted.identity == Identity::Service;
                lock(&self.broker.inner.pending).insert(id, admitted);
                AuthResult::Allow(superuser, None)
            }
            Err(Refusal::BadUsernameOrPassword) => AuthResult::BadUsernameOrPassword,
            Err(Refusal::NotAuthorized | Refusal::BadClientId | Refusal::Unavailable) => {
                AuthResult::NotAuthorized
            }
        }
    }

    /// Who a session is: the service identity is rmqtt's superuser; a client admitted by its
    /// policies is what authentication recorded; anyone else is the device of the thing its
    /// client id names (checked at authentication).
    async fn identity(&self, session: &Session) -> Identity {
        if session.superuser().await.unwrap_or(false) {
            return Identity::Service;
        }
        let recorded = lock(&self.broker.inner.pending)
            .get(&session.id)
            .map(|admitted| admitted.identity.clone())
            .or_else(|| {
                lock(&self.broker.inner.live)
                    .get(&*session.id.client_id)
                    .filter(|live| live.id == session.id)
                    .map(|live| live.identity.clone())
            });
        match recorded {
            Some(identity @ Identity::Policy(_)) => identity,
            _ => Identity::Thing(session.id.client_id.to_string()),
        }
    }
}

/// rmqtt declares [`Handler::hook`] with `async_trait`; spelled out here because the trait
/// leaves `Parameter`'s lifetime elided, which an `async fn` in the impl may not.
impl Handler for EngineHandler {
    fn hook<'life0, 'life1, 'async_trait>(
        &'life0 self,
        param: &'life1 Parameter,
        acc: Option<HookResult>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ReturnType> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(self.on(param, acc))
    }
}

impl EngineHandler {
    async fn on(&self, param: &Parameter<'_>, acc: Option<HookResult>) -> ReturnType {
        match param {
            Parameter::ClientAuthenticate(info) => {
                let result = self.authenticate(info).await;
                (false, Some(HookResult::AuthResult(result)))
            }
            Parameter::ClientSubscribe(_, subscribe) => {
                let escaped = topic_escape::to_internal(&subscribe.topic_filter);
                match escaped {
                    Cow::Owned(filter) => {
                        (true, Some(HookResult::TopicFilter(Some(filter.into()))))
                    }
                    Cow::Borrowed(_) => (true, acc),
                }
            }
            Parameter::ClientUnsubscribe(_, unsubscribe) => {
                let escaped = topic_escape::to_internal(&unsubscribe.topic_filter);
                match escaped {
                    Cow::Owned(filter) => {
                        (true, Some(HookResult::TopicFilter(Some(filter.into()))))
                    }
                    Cow::Borrowed(_) => (true, acc),
                }
            }
            Parameter::MessageDelivered(_, _, publish) => {
                match topic_escape::to_wire(&publish.topic) {
                    Cow::Owned(topic) => {
                        let mut delivered = (*publish).clone();
                        delivered.inner.topic = topic.into();
                        (true, Some(HookResult::Publish(delivered)))
                    }
                    Cow::Borrowed(_) => (true, acc),
                }
            }
            Parameter::ClientSubscribeCheckAcl(session, subscribe) => {
                let identity = self.identity(session).await;
                let filter: &str = &subscribe.topic_filter;
                let result = if identity.may_subscribe(&topic_escape::to_wire(filter)) {
                    SubscribeAclResult::new_success(subscribe.opts.qos(), None)
                } else {
                    tracing::info!(client_id = %session.id.client_id, filter, "refused subscription to {filter}");
                    SubscribeAclResult::new_failure(
                        rmqtt::codec::v5::SubscribeAckReason::NotAuthorized,
                    )
                };
                (false, Some(HookResult::SubscribeAclResult(result)))
            }
            Parameter::MessagePublishCheckAcl(session, publish) => {
                let identity = self.identity(session).await;
                let topic: &str = &publish.topic;
                let result = if identity.may_publish(&topic_escape::to_wire(topic)) {
                    PublishAclResult::allow()
                } else {
                    // AWS IoT disconnects a client that publishes where its policy does not
                    // allow; rmqtt would otherwise acknowledge and drop it on MQTT 3.1.1.
                    tracing::info!(client_id = %session.id.client_id, topic, "disconnecting {}: not authorized to publish to {topic}", session.id.client_id);
                    PublishAclResult::rejected(true, None)
                };
                (false, Some(HookResult::PublishAclResult(result)))
            }
            Parameter::MessagePublish(Some(session), from, publish) if !from.is_system() => {
                let topic: &str = &publish.topic;
                if self.hooks.consumes(topic) {
                    // rmqtt runs this hook before its publish ACL, so the check is made here
                    // too: a request for another thing is not handled (and the ACL hook then
                    // disconnects the client).
                    let identity = self.identity(session).await;
                    if identity.may_publish(topic) {
                        self.hooks
                            .handle(&identity, topic, publish.payload.clone())
                            .await;
                    }
                }
                match topic_escape::to_internal(topic) {
                    Cow::Owned(internal) => {
                        let mut routed = (*publish).clone();
                        routed.inner.topic = internal.into();
                        (true, Some(HookResult::Publish(routed)))
                    }
                    Cow::Borrowed(_) => (true, acc),
                }
            }
            Parameter::ClientConnected(session) => {
                self.broker.connected(session);
                (true, acc)
            }
            Parameter::ClientDisconnected(session, reason) => {
                self.broker.disconnected(session, reason);
                (true, acc)
            }
            _ => (true, acc),
        }
    }
}

/// The internal spelling of topic levels that start with `$` after the first level.
///
/// MQTT reserves a leading `$` only for the first level, and AWS IoT's Jobs API uses `$next`
/// as a job id; rmqtt's topic parser refuses `$` at the start of any later level. Such a level
/// is routed inside rmqtt with its `$` replaced by a private-use character, which no AWS topic
/// uses, and gets its `$` back when the message is delivered.
pub mod topic_escape {
    use std::borrow::Cow;

    /// Stands for `$` at the start of a level other than the first, inside rmqtt.
    const DOLLAR: char = '\u{E024}';

    /// `topic` (or a filter) as rmqtt can route it.
    pub fn to_internal(topic: &str) -> Cow<'_, str> {
        if !topic.contains("/$") {
            return Cow::Borrowed(topic);
        }
        let mut internal = String::with_capacity(topic.len() + 2);
        for (index, level) in topic.split('/').enumerate() {
            if index > 0 {
                internal.push('/');
            }
            match level.strip_prefix('$') {
                Some(rest) if index > 0 => {
                    internal.push(DOLLAR);
                    internal.push_str(rest);
                }
                _ => internal.push_str(level),
            }
        }
        Cow::Owned(internal)
    }

    /// The topic a client sees for the internal `topic`.
    pub fn to_wire(topic: &str) -> Cow<'_, str> {
        if topic.contains(DOLLAR) {
            Cow::Owned(topic.replace(DOLLAR, "$"))
        } else {
            Cow::Borrowed(topic)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollar_levels_after_the_first_round_trip_through_the_internal_spelling() {
        let wire = "$aws/things/a/jobs/$next/get/accepted";
        let internal = topic_escape::to_internal(wire);
        assert!(matches!(internal, Cow::Owned(_)));
        assert!(internal.starts_with("$aws/things/a/jobs/"));
        assert!(!internal[1..].contains('$'));
        assert_eq!(topic_escape::to_wire(&internal), wire);
        assert!(matches!(
            topic_escape::to_internal("$aws/things/a/jobs/notify-next"),
            Cow::Borrowed(_)
        ));
        assert!(matches!(
            topic_escape::to_wire("$aws/things/a/jobs/get"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn a_thing_uses_only_its_own_topics() {
        let thing = Identity::Thing("a".into());
        assert!(thing.may_publish("$aws/things/a/jobs/get"));
        assert!(thing.may_subscribe("$aws/things/a/jobs/+/update/accepted"));
        assert!(!thing.may_publish("$aws/things/ab/jobs/get"));
        assert!(!thing.may_publish("$aws/things/b/jobs/get"));
        assert!(!thing.may_subscribe("$aws/things/+/jobs/get"));
        assert!(!thing.may_publish("$aws/things/a"));
        assert!(!thing.may_subscribe("$aws/events/#"));
        assert!(!thing.may_subscribe("#"));
        assert!(Identity::Service.may_subscribe("$aws/events/#"));
    }

    #[test]
    fn disconnect_reasons_follow_aws() {
        assert_eq!(
            disconnect_reason(&Reason::ConnectDisconnect(None)),
            (true, "CLIENT_INITIATED_DISCONNECT")
        );
        assert_eq!(
            disconnect_reason(&Reason::ConnectKeepaliveTimeout),
            (false, "MQTT_KEEP_ALIVE_TIMEOUT")
        );
        // As rmqtt reports a DISCONNECT packet, and a dropped connection.
        assert_eq!(
            disconnect_reason(&Reason::Reasons(vec![Reason::ConnectDisconnect(None)])),
            (true, "CLIENT_INITIATED_DISCONNECT")
        );
        assert_eq!(
            disconnect_reason(&Reason::Reasons(vec![Reason::ConnectRemoteClose])),
            (false, "CONNECTION_LOST")
        );
    }
}
