//! The broker's authentication and authorization on the plain listener: a device is its
//! thing, may use only its own thing's topics and, when the engine has a device-token secret,
//! must present its thing's token. Driven with a real MQTT client (rumqttc).

use std::net::SocketAddr;
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, MqttOptions, Packet, QoS,
    SubscribeReasonCode,
};
use serde_json::{Value, json};

use crate::helpers::TestApp;
use crate::test_engine::{TestEngine, received};

/// Connects as `client_id` and returns the client once the broker accepted it.
async fn connect(
    addr: SocketAddr,
    client_id: &str,
) -> Result<(AsyncClient, EventLoop), ConnectionError> {
    connect_with_password(addr, client_id, None).await
}

/// Connects as `client_id`, with the thing name as user name and `password` if given.
async fn connect_with_password(
    addr: SocketAddr,
    client_id: &str,
    password: Option<String>,
) -> Result<(AsyncClient, EventLoop), ConnectionError> {
    let mut options = MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
    options.set_keep_alive(Duration::from_secs(10));
    if let Some(password) = password {
        options.set_credentials(client_id, password);
    }
    let (client, mut eventloop) = AsyncClient::new(options, 16);
    loop {
        match tokio::time::timeout(Duration::from_secs(10), eventloop.poll())
            .await
            .expect("broker answers")
        {
            Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok((client, eventloop)),
            Ok(_) => {}
            Err(error) => return Err(error),
        }
    }
}

/// The next incoming packet that `pick` accepts, within 10 s.
async fn next<T>(eventloop: &mut EventLoop, mut pick: impl FnMut(Packet) -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let event = tokio::time::timeout_at(deadline, eventloop.poll())
            .await
            .expect("the expected packet within 10 s")
            .expect("the connection stays up");
        if let Event::Incoming(packet) = event
            && let Some(found) = pick(packet)
        {
            return found;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_uses_only_its_own_topics() {
    let app = TestApp::start_with(0, &["thing-a", "thing-b"]).await;
    let mqtt = app.server.mqtt_addr.expect("local mode has a broker");

    // An unregistered client id, and one that is not a valid thing name, are refused.
    for client_id in ["not-registered", "+"] {
        match connect(mqtt, client_id).await {
            Err(ConnectionError::ConnectionRefused(code)) => {
                assert!(
                    matches!(
                        code,
                        ConnectReturnCode::NotAuthorized | ConnectReturnCode::BadClientId
                    ),
                    "{code:?}"
                );
            }
            other => panic!(
                "{client_id:?} should be refused, got {:?}",
                other.map(|_| ())
            ),
        }
    }

    let (a, mut a_events) = connect(mqtt, "thing-a").await.expect("thing-a connects");

    // Its own topics: granted. Another thing's, or a wildcard over all things: refused.
    a.subscribe_many([
        rumqttc::SubscribeFilter::new(
            "$aws/things/thing-a/jobs/get/accepted".into(),
            QoS::AtLeastOnce,
        ),
        rumqttc::SubscribeFilter::new(
            "$aws/things/thing-b/jobs/notify-next".into(),
            QoS::AtLeastOnce,
        ),
        rumqttc::SubscribeFilter::new("$aws/things/+/jobs/notify-next".into(), QoS::AtLeastOnce),
        rumqttc::SubscribeFilter::new("$aws/events/#".into(), QoS::AtLeastOnce),
    ])
    .await
    .unwrap();
    let codes = next(&mut a_events, |p| match p {
        Packet::SubAck(ack) => Some(ack.return_codes),
        _ => None,
    })
    .await;
    assert_eq!(
        codes,
        [
            SubscribeReasonCode::Success(QoS::AtLeastOnce),
            SubscribeReasonCode::Failure,
            SubscribeReasonCode::Failure,
            SubscribeReasonCode::Failure,
        ]
    );

    // Its own request is answered.
    a.publish(
        "$aws/things/thing-a/jobs/get",
        QoS::AtLeastOnce,
        false,
        json!({"clientToken": "t1"}).to_string(),
    )
    .await
    .unwrap();
    let reply: Value = next(&mut a_events, |p| match p {
        Packet::Publish(p) if p.topic == "$aws/things/thing-a/jobs/get/accepted" => {
            serde_json::from_slice(&p.payload).ok()
        }
        _ => None,
    })
    .await;
    assert_eq!(reply["clientToken"], "t1");
    assert_eq!(reply["queuedJobs"], json!([]));

    // Publishing on another thing's topics ends the connection, as on AWS IoT.
    a.publish(
        "$aws/things/thing-b/jobs/get",
        QoS::AtLeastOnce,
        false,
        "{}",
    )
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::timeout_at(deadline, a_events.poll())
        .await
        .expect("disconnected within 10 s")
        .is_ok()
    {}

    app.stop().await;
}

/// With a device-token secret, the plain listener admits a device only with the token of the
/// thing its client id names; nothing else opens it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plain_listener_wants_the_things_own_token() {
    const SECRET: &str = "device-token-test-secret";
    let engine = TestEngine::start_with_device_tokens(SECRET).await;
    for thing in ["thing-a", "thing-b"] {
        engine.create_thing(thing).await;
    }
    let addr = engine.engine.mqtt_addr;
    let token = |thing: &str| flotilla_engine::broker::device_token(SECRET, thing);

    let refused = [
        ("no token", None),
        ("a wrong token", Some("0".repeat(64))),
        ("another thing's token", Some(token("thing-b"))),
        (
            "a token under another secret",
            Some(flotilla_engine::broker::device_token("other", "thing-a")),
        ),
    ];
    for (what, password) in refused {
        match connect_with_password(addr, "thing-a", password).await {
            Err(ConnectionError::ConnectionRefused(code)) => {
                assert_eq!(code, ConnectReturnCode::BadUserNamePassword, "{what}");
            }
            other => panic!("{what} must be refused, got {:?}", other.map(|_| ())),
        }
    }

    // Its own token opens it, and the device gets its jobs.
    let (_client, mut messages) = engine
        .device("thing-a", &["$aws/things/thing-a/jobs/notify-next"])
        .await;
    engine
        .create_job("with-token", r#"{"operation":"noop"}"#, &["thing-a"])
        .await;
    let notified = received(&mut messages, 1).await;
    assert_eq!(notified.len(), 1, "a notify-next for the new job");
    assert_eq!(notified[0].1["execution"]["jobId"], "with-token");
    engine.stop().await;
}
