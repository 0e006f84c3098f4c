//! The broker's authorization: a device is its thing, and may use only its own thing's topics.
//! Driven with a real MQTT client (rumqttc) against the engine's listener.

use std::net::SocketAddr;
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, MqttOptions, Packet, QoS,
    SubscribeReasonCode,
};
use serde_json::{Value, json};

use crate::helpers::TestApp;

/// Connects as `client_id` and returns the client once the broker accepted it.
async fn connect(
    addr: SocketAddr,
    client_id: &str,
) -> Result<(AsyncClient, EventLoop), ConnectionError> {
    let mut options = MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
    options.set_keep_alive(Duration::from_secs(10));
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
