//! The embedded MQTT 3.1.1 broker devices connect to.
//!
//! It routes publishes between clients like any broker, but requests on the reserved
//! `$aws/things/{thing}/jobs/…` topics are not routed: they go, in order per connection, to the
//! [`Hooks`] the engine installs, which answer on the matching `/accepted` or `/rejected` topic.
//! Authentication and per-topic authorization are the broker's: a device may only use its own
//! thing's topics; the dashboard's service identity may use any.
//!
//! Packets are framed with `rumqttc`'s codec, so the wire format is the one the client library
//! (and the AWS device SDKs) are tested against.

pub mod topics;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use rumqttc::mqttbytes::v4::{
    ConnAck, ConnectReturnCode, Packet, PubAck, PubComp, PubRec, Publish, SubAck,
    SubscribeReasonCode, UnsubAck,
};
use rumqttc::mqttbytes::{self, QoS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use topics::TopicTree;

/// The largest packet accepted: AWS IoT's 128 KiB payload limit plus headers.
pub const MAX_PACKET_SIZE: usize = 128 * 1024 + 1024;
/// How long a client may take to send CONNECT after opening the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Messages queued for one slow client before it is disconnected.
const OUTBOX_CAPACITY: usize = 1024;

/// Who a connection is, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// The dashboard server (or another trusted service): may use every topic.
    Service,
    /// A device: may use only `$aws/things/{thing}/…`.
    Thing(String),
}

impl Identity {
    /// Whether this identity may publish to `topic` or subscribe to `filter`.
    pub fn may_use(&self, topic_or_filter: &str) -> bool {
        match self {
            Identity::Service => true,
            Identity::Thing(thing) => topic_or_filter
                .strip_prefix("$aws/things/")
                .and_then(|rest| rest.strip_prefix(thing.as_str()))
                .is_some_and(|rest| rest.starts_with('/')),
        }
    }
}

/// What a client presented in CONNECT.
#[derive(Debug, Clone)]
pub struct ConnectInfo {
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub peer: SocketAddr,
}

/// The engine's side of the broker.
pub trait Hooks: Send + Sync + 'static {
    /// Decides who a connecting client is, or refuses it.
    fn authenticate(&self, info: ConnectInfo)
    -> BoxFuture<'_, Result<Identity, ConnectReturnCode>>;

    /// Whether the engine consumes publishes to `topic` instead of routing them to subscribers.
    fn consumes(&self, topic: &str) -> bool;

    /// Handles a consumed publish. Runs before the next packet of the same connection is read,
    /// so a device's requests are handled in the order it sent them.
    fn handle<'a>(
        &'a self,
        identity: &'a Identity,
        topic: &'a str,
        payload: Bytes,
    ) -> BoxFuture<'a, ()>;

    /// Called once a client has connected (`true`) or its connection ended (`false`).
    fn presence(&self, _identity: &Identity, _client_id: &str, _connected: bool) {}
}

/// One message on its way to a subscriber.
#[derive(Debug, Clone)]
struct Delivery {
    topic: Arc<str>,
    payload: Bytes,
    qos: QoS,
}

/// What a connection's writer task is asked to send.
#[derive(Debug)]
enum Outgoing {
    Packet(Packet),
    Deliver(Delivery),
}

/// How a subscription is stored in the topic tree.
#[derive(Debug, Clone)]
struct Subscriber {
    qos: QoS,
    outbox: mpsc::Sender<Outgoing>,
}

/// The broker's shared state. Cheap to clone.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

struct Inner {
    subscriptions: RwLock<TopicTree<Subscriber>>,
    /// The live connection of each client id, so a second CONNECT takes the session over.
    sessions: Mutex<HashMap<String, (u64, CancellationToken)>>,
    next_conn: AtomicU64,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker").finish_non_exhaustive()
    }
}

impl Default for Broker {
    fn default() -> Self {
        Self::new()
    }
}

impl Broker {
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                subscriptions: RwLock::new(TopicTree::default()),
                sessions: Mutex::new(HashMap::new()),
                next_conn: AtomicU64::new(1),
            }),
        }
    }

    /// Publishes a message from the engine itself to every matching subscriber. Like AWS IoT
    /// publishing on reserved topics, it is delivered at most at QoS 1 and triggers no hooks.
    pub fn publish(&self, topic: &str, payload: impl Into<Bytes>) {
        let payload = payload.into();
        let subscribers = self
            .inner
            .subscriptions
            .read()
            .expect("subscriptions lock")
            .matches(topic);
        if subscribers.is_empty() {
            return;
        }
        let topic: Arc<str> = Arc::from(topic);
        for (_, sub) in subscribers {
            let delivery = Delivery {
                topic: topic.clone(),
                payload: payload.clone(),
                qos: sub.qos,
            };
            // A full outbox means the client does not keep up: drop the message for it rather
            // than stall every publisher; its keep-alive or the reconnect logic recovers.
            if sub.outbox.try_send(Outgoing::Deliver(delivery)).is_err() {
                tracing::debug!(topic = %topic, "dropped a message for a slow or closed client");
            }
        }
    }

    /// Accepts connections on `listener` until `shutdown` is cancelled.
    pub async fn serve(
        self,
        listener: TcpListener,
        hooks: Arc<dyn Hooks>,
        shutdown: CancellationToken,
    ) {
        loop {
            let (stream, peer) = tokio::select! {
                () = shutdown.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(%error, "mqtt accept failed: {error}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            let broker = self.clone();
            let hooks = hooks.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                if let Err(error) = broker.connection(stream, peer, hooks, shutdown).await {
                    tracing::debug!(%peer, %error, "mqtt connection closed: {error}");
                }
            });
        }
    }

    async fn connection(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        hooks: Arc<dyn Hooks>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let (mut reader, mut writer) = stream.into_split();
        let mut buffer = BytesMut::with_capacity(4096);

        let connect = match tokio::time::timeout(
            CONNECT_TIMEOUT,
            read_packet(&mut reader, &mut buffer),
        )
        .await
        {
            Ok(Ok(Some(Packet::Connect(connect)))) => connect,
            Ok(Ok(_)) => anyhow::bail!("first packet was not CONNECT"),
            Ok(Err(error)) => return Err(error),
            Err(_) => anyhow::bail!("no CONNECT within {CONNECT_TIMEOUT:?}"),
        };
        if connect.protocol != mqttbytes::Protocol::V4 {
            // This listener speaks MQTT 3.1.1; say so rather than misread a v5 CONNECT.
            let refused = ConnAck::new(ConnectReturnCode::RefusedProtocolVersion, false);
            write_packet(&mut writer, &Packet::ConnAck(refused)).await?;
            anyhow::bail!("refused an MQTT 5 CONNECT");
        }
        let (username, password) = match connect.login {
            Some(login) => (Some(login.username), Some(login.password)),
            None => (None, None),
        };
        let info = ConnectInfo {
            client_id: connect.client_id.clone(),
            username,
            password,
            peer,
        };
        let identity = match hooks.authenticate(info).await {
            Ok(identity) => identity,
            Err(code) => {
                write_packet(&mut writer, &Packet::ConnAck(ConnAck::new(code, false))).await?;
                anyhow::bail!(
                    "refused CONNECT from client id {:?}: {code:?}",
                    connect.client_id
                );
            }
        };
        let client_id = connect.client_id;

        // Take over any earlier session with the same client id, as MQTT requires.
        let conn = self.inner.next_conn.fetch_add(1, Ordering::Relaxed);
        let kicked = shutdown.child_token();
        if let Some((_, previous)) = self
            .inner
            .sessions
            .lock()
            .expect("sessions lock")
            .insert(client_id.clone(), (conn, kicked.clone()))
        {
            previous.cancel();
        }

        let (outbox, inbox) = mpsc::channel(OUTBOX_CAPACITY);
        let writer_task = tokio::spawn(write_loop(writer, inbox));
        outbox
            .send(Outgoing::Packet(Packet::ConnAck(ConnAck::new(
                ConnectReturnCode::Success,
                false,
            ))))
            .await?;
        hooks.presence(&identity, &client_id, true);

        let keep_alive = match connect.keep_alive {
            0 => Duration::from_secs(24 * 3600),
            secs => Duration::from_millis(u64::from(secs) * 1500),
        };
        let mut filters: Vec<String> = Vec::new();
        let result = async {
            loop {
                let packet = tokio::select! {
                    () = kicked.cancelled() => return Ok(()),
                    read = tokio::time::timeout(keep_alive, read_packet(&mut reader, &mut buffer)) => match read {
                        Err(_) => anyhow::bail!("keep-alive expired"),
                        Ok(Err(error)) => return Err(error),
                        Ok(Ok(None)) => return Ok(()),
                        Ok(Ok(Some(packet))) => packet,
                    },
                };
                match packet {
                    Packet::Publish(publish) => {
                        self.on_publish(&identity, &hooks, publish, &outbox).await?;
                    }
                    Packet::Subscribe(subscribe) => {
                        let mut codes = Vec::with_capacity(subscribe.filters.len());
                        for filter in subscribe.filters {
                            if topics::valid_filter(&filter.path) && identity.may_use(&filter.path) {
                                // The broker delivers at most at QoS 1, as AWS IoT does.
                                let qos = match filter.qos {
                                    QoS::AtMostOnce => QoS::AtMostOnce,
                                    _ => QoS::AtLeastOnce,
                                };
                                self.inner.subscriptions.write().expect("subscriptions lock").insert(
                                    &filter.path,
                                    conn,
                                    Subscriber { qos, outbox: outbox.clone() },
                                );
                                filters.push(filter.path);
                                codes.push(SubscribeReasonCode::Success(qos));
                            } else {
                                tracing::info!(client_id, filter = filter.path, "refused subscription to {}", filter.path);
                                codes.push(SubscribeReasonCode::Failure);
                            }
                        }
                        outbox.send(Outgoing::Packet(Packet::SubAck(SubAck::new(subscribe.pkid, codes)))).await?;
                    }
                    Packet::Unsubscribe(unsubscribe) => {
                        {
                            let mut tree = self.inner.subscriptions.write().expect("subscriptions lock");
                            for topic in &unsubscribe.topics {
                                tree.remove(topic, conn);
                            }
                        }
                        filters.retain(|f| !unsubscribe.topics.contains(f));
                        outbox.send(Outgoing::Packet(Packet::UnsubAck(UnsubAck::new(unsubscribe.pkid)))).await?;
                    }
                    Packet::PingReq => outbox.send(Outgoing::Packet(Packet::PingResp)).await?,
                    Packet::PubRel(pubrel) => {
                        outbox.send(Outgoing::Packet(Packet::PubComp(PubComp::new(pubrel.pkid)))).await?;
                    }
                    // Deliveries are at most once: acknowledgements need no bookkeeping.
                    Packet::PubAck(_) | Packet::PubRec(_) | Packet::PubComp(_) => {}
                    Packet::Disconnect => return Ok(()),
                    other => anyhow::bail!("unexpected packet {other:?}"),
                }
            }
        }
        .await;

        // Clean up: subscriptions of this connection, and the session entry if still ours.
        {
            let mut tree = self
                .inner
                .subscriptions
                .write()
                .expect("subscriptions lock");
            for filter in &filters {
                tree.remove(filter, conn);
            }
        }
        {
            let mut sessions = self.inner.sessions.lock().expect("sessions lock");
            if sessions.get(&client_id).is_some_and(|(c, _)| *c == conn) {
                sessions.remove(&client_id);
            }
        }
        hooks.presence(&identity, &client_id, false);
        drop(outbox);
        let _ = writer_task.await;
        result
    }

    async fn on_publish(
        &self,
        identity: &Identity,
        hooks: &Arc<dyn Hooks>,
        publish: Publish,
        outbox: &mpsc::Sender<Outgoing>,
    ) -> anyhow::Result<()> {
        if !topics::valid_topic(&publish.topic) || !identity.may_use(&publish.topic) {
            // AWS IoT disconnects a client that publishes where its policy does not allow.
            anyhow::bail!("not authorized to publish to {:?}", publish.topic);
        }
        if hooks.consumes(&publish.topic) {
            hooks
                .handle(identity, &publish.topic, publish.payload)
                .await;
        } else {
            self.publish(&publish.topic, publish.payload);
        }
        match publish.qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => {
                outbox
                    .send(Outgoing::Packet(Packet::PubAck(PubAck::new(publish.pkid))))
                    .await?
            }
            QoS::ExactlyOnce => {
                outbox
                    .send(Outgoing::Packet(Packet::PubRec(PubRec::new(publish.pkid))))
                    .await?
            }
        }
        Ok(())
    }
}

/// Reads one packet; `None` when the peer closed the connection cleanly.
async fn read_packet(
    reader: &mut (impl AsyncReadExt + Unpin),
    buffer: &mut BytesMut,
) -> anyhow::Result<Option<Packet>> {
    loop {
        match Packet::read(buffer, MAX_PACKET_SIZE) {
            Ok(packet) => return Ok(Some(packet)),
            Err(mqttbytes::Error::InsufficientBytes(_)) => {}
            Err(error) => anyhow::bail!("malformed packet: {error}"),
        }
        if reader.read_buf(buffer).await? == 0 {
            if buffer.is_empty() {
                return Ok(None);
            }
            anyhow::bail!("connection closed mid-packet");
        }
    }
}

async fn write_packet(
    writer: &mut (impl AsyncWriteExt + Unpin),
    packet: &Packet,
) -> anyhow::Result<()> {
    let mut out = BytesMut::new();
    packet.write(&mut out, MAX_PACKET_SIZE)?;
    writer.write_all(&out).await?;
    Ok(())
}

/// Sends everything queued for one connection, numbering QoS 1 deliveries.
async fn write_loop(
    mut writer: tokio::net::tcp::OwnedWriteHalf,
    mut inbox: mpsc::Receiver<Outgoing>,
) {
    let mut next_pkid: u16 = 0;
    let mut out = BytesMut::with_capacity(4096);
    while let Some(first) = inbox.recv().await {
        // Batch whatever is already queued into one write.
        let mut item = Some(first);
        while let Some(outgoing) = item.take().or_else(|| inbox.try_recv().ok()) {
            let packet = match outgoing {
                Outgoing::Packet(packet) => packet,
                Outgoing::Deliver(delivery) => {
                    let mut publish =
                        Publish::from_bytes(&*delivery.topic, delivery.qos, delivery.payload);
                    if delivery.qos != QoS::AtMostOnce {
                        next_pkid = next_pkid.checked_add(1).unwrap_or(1);
                        publish.pkid = next_pkid;
                    }
                    Packet::Publish(publish)
                }
            };
            if let Err(error) = packet.write(&mut out, MAX_PACKET_SIZE) {
                tracing::warn!(%error, "could not encode an outgoing packet: {error}");
            }
            if out.len() > 64 * 1024 {
                break;
            }
        }
        if writer.write_all(&out).await.is_err() {
            return;
        }
        out.clear();
    }
    let _ = writer.shutdown().await;
}
