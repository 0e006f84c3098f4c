//! The engine's fleet pieces: dynamic thing groups evaluated on thing attributes and static
//! groups (and feeding continuous jobs), and the `$aws/events/presence/…` lifecycle events,
//! driven through `aws-sdk-iot` and devices over MQTT.

use std::time::Duration;

use aws_sdk_iot::types::{
    AttributePayload, JobExecutionStatus, TargetSelection, ThingGroupProperties,
};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::test_engine::{REGION, TestEngine, code, received};

fn group_arn(name: &str) -> String {
    format!("arn:aws:iot:{REGION}:000000000000:thinggroup/{name}")
}

fn attributes(pairs: &[(&str, &str)], merge: bool) -> AttributePayload {
    AttributePayload::builder()
        .set_attributes(Some(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        ))
        .merge(merge)
        .build()
}

async fn create_thing(engine: &TestEngine, name: &str, pairs: &[(&str, &str)]) {
    engine
        .iot
        .create_thing()
        .thing_name(name)
        .attribute_payload(attributes(pairs, false))
        .send()
        .await
        .expect("CreateThing");
}

async fn set_attribute(engine: &TestEngine, thing: &str, name: &str, value: &str) {
    engine
        .iot
        .update_thing()
        .thing_name(thing)
        .attribute_payload(attributes(&[(name, value)], true))
        .send()
        .await
        .expect("UpdateThing");
}

async fn members(engine: &TestEngine, group: &str) -> Vec<String> {
    engine
        .iot
        .list_things_in_thing_group()
        .thing_group_name(group)
        .send()
        .await
        .expect("ListThingsInThingGroup")
        .things()
        .to_vec()
}

/// The next message on `topic`, skipping others, within 10 s.
async fn next_on(messages: &mut mpsc::UnboundedReceiver<(String, Value)>, topic: &str) -> Value {
    loop {
        let got = received(messages, 1).await;
        let (received_topic, body) = got
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no message on {topic} within 10 s"));
        if received_topic == topic {
            return body;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_groups_follow_attributes_and_feed_continuous_jobs() {
    let engine = TestEngine::start().await;
    let iot = &engine.iot;
    create_thing(&engine, "d-1", &[("site", "berlin"), ("rack", "4")]).await;
    create_thing(&engine, "d-2", &[("site", "paris"), ("rack", "9")]).await;
    create_thing(&engine, "d-3", &[("site", "paris"), ("rack", "2")]).await;
    iot.create_thing_group()
        .thing_group_name("lab")
        .send()
        .await
        .expect("CreateThingGroup");
    iot.add_thing_to_thing_group()
        .thing_group_name("lab")
        .thing_name("d-2")
        .send()
        .await
        .expect("AddThingToThingGroup");

    // Queries the engine cannot evaluate are refused, and nothing is created.
    for query in [
        "shadow.reported.fw:1",
        "attributes.site:",
        "(attributes.site:berlin",
        "berlin",
    ] {
        assert_eq!(
            code(
                iot.create_dynamic_thing_group()
                    .thing_group_name("bad")
                    .query_string(query)
                    .send()
                    .await
            ),
            "InvalidQueryException",
            "{query}"
        );
    }
    assert_eq!(
        code(
            iot.describe_thing_group()
                .thing_group_name("bad")
                .send()
                .await
        ),
        "ResourceNotFoundException"
    );

    let created = iot
        .create_dynamic_thing_group()
        .thing_group_name("berlin-or-lab")
        .query_string("attributes.site:berlin OR (thingGroupNames:lab AND attributes.rack>5)")
        .thing_group_properties(
            ThingGroupProperties::builder()
                .thing_group_description("Berlin, and the lab's big racks")
                .build(),
        )
        .send()
        .await
        .expect("CreateDynamicThingGroup");
    assert_eq!(created.index_name(), Some("AWS_Things"));
    assert_eq!(members(&engine, "berlin-or-lab").await, ["d-1", "d-2"]);
    let described = iot
        .describe_thing_group()
        .thing_group_name("berlin-or-lab")
        .send()
        .await
        .expect("DescribeThingGroup");
    assert_eq!(
        described.query_string(),
        Some("attributes.site:berlin OR (thingGroupNames:lab AND attributes.rack>5)")
    );
    assert_eq!(described.status().map(|s| s.as_str()), Some("ACTIVE"));

    // Its members come from its query only.
    assert_eq!(
        code(
            iot.add_thing_to_thing_group()
                .thing_group_name("berlin-or-lab")
                .thing_name("d-3")
                .send()
                .await
        ),
        "InvalidRequestException"
    );
    assert_eq!(
        code(
            iot.create_thing_group()
                .thing_group_name("child")
                .parent_group_name("berlin-or-lab")
                .send()
                .await
        ),
        "InvalidRequestException"
    );

    iot.create_job()
        .job_id("job-dyn")
        .document(r#"{"operation":"install","version":"2.0.0"}"#)
        .targets(group_arn("berlin-or-lab"))
        .target_selection(TargetSelection::Continuous)
        .send()
        .await
        .expect("CreateJob continuous on a dynamic group");
    assert_eq!(
        engine.execution("d-1", "job-dyn").await.status(),
        Some(&JobExecutionStatus::Queued)
    );

    // d-3 moves to Berlin: it joins the group and the continuous job reaches it.
    let (_device, mut device) = engine
        .device("d-3", &["$aws/things/d-3/jobs/notify-next"])
        .await;
    set_attribute(&engine, "d-3", "site", "berlin").await;
    let next = next_on(&mut device, "$aws/things/d-3/jobs/notify-next").await;
    assert_eq!(next["execution"]["jobId"], "job-dyn");
    assert_eq!(next["execution"]["jobDocument"]["version"], "2.0.0");
    assert_eq!(
        members(&engine, "berlin-or-lab").await,
        ["d-1", "d-2", "d-3"]
    );

    // d-1 leaves Berlin, d-2 leaves the lab: their queued executions are removed.
    let mut events = engine.watch(&["$aws/events/jobExecution/#"]).await;
    set_attribute(&engine, "d-1", "site", "paris").await;
    iot.remove_thing_from_thing_group()
        .thing_group_name("lab")
        .thing_name("d-2")
        .send()
        .await
        .expect("RemoveThingFromThingGroup");
    for _ in 0..2 {
        next_on(&mut events, "$aws/events/jobExecution/job-dyn/removed").await;
    }
    assert_eq!(members(&engine, "berlin-or-lab").await, ["d-3"]);
    for thing in ["d-1", "d-2"] {
        assert_eq!(
            engine.execution(thing, "job-dyn").await.status(),
            Some(&JobExecutionStatus::Removed),
            "{thing}"
        );
    }

    // A new query re-evaluates every thing; a new thing is evaluated when created.
    let version = iot
        .update_dynamic_thing_group()
        .thing_group_name("berlin-or-lab")
        .query_string("attributes.rack:[1 TO 4]")
        .thing_group_properties(ThingGroupProperties::builder().build())
        .send()
        .await
        .expect("UpdateDynamicThingGroup")
        .version;
    assert_eq!(version, 2);
    assert_eq!(members(&engine, "berlin-or-lab").await, ["d-1", "d-3"]);
    create_thing(&engine, "d-4", &[("rack", "3")]).await;
    assert_eq!(
        members(&engine, "berlin-or-lab").await,
        ["d-1", "d-3", "d-4"]
    );
    assert_eq!(
        engine.execution("d-4", "job-dyn").await.status(),
        Some(&JobExecutionStatus::Queued)
    );
    assert_eq!(
        code(
            iot.update_dynamic_thing_group()
                .thing_group_name("lab")
                .query_string("attributes.rack:1")
                .thing_group_properties(ThingGroupProperties::builder().build())
                .send()
                .await
        ),
        "InvalidRequestException"
    );

    iot.delete_dynamic_thing_group()
        .thing_group_name("berlin-or-lab")
        .send()
        .await
        .expect("DeleteDynamicThingGroup");
    assert_eq!(
        code(
            iot.describe_thing_group()
                .thing_group_name("berlin-or-lab")
                .send()
                .await
        ),
        "ResourceNotFoundException"
    );
    assert_eq!(
        engine.execution("d-4", "job-dyn").await.status(),
        Some(&JobExecutionStatus::Removed)
    );
    engine.stop().await;
}

/// Thing attribute updates and membership changes racing AssociateTargetsWithJob on a
/// continuous job must not deadlock (they take the membership lock and job rows in one order).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_changes_and_target_association_do_not_deadlock() {
    let engine = TestEngine::start().await;
    let iot = &engine.iot;
    for i in 0..8 {
        create_thing(&engine, &format!("r-{i}"), &[("site", "x")]).await;
    }
    for group in ["ga", "gb"] {
        iot.create_thing_group()
            .thing_group_name(group)
            .send()
            .await
            .expect("CreateThingGroup");
    }
    iot.create_dynamic_thing_group()
        .thing_group_name("dyn-y")
        .query_string("attributes.site:y")
        .send()
        .await
        .expect("CreateDynamicThingGroup");
    iot.create_job()
        .job_id("job-race")
        .document(r#"{"operation":"noop"}"#)
        .targets(group_arn("dyn-y"))
        .target_selection(TargetSelection::Continuous)
        .send()
        .await
        .expect("CreateJob");
    let changes = async {
        for i in 0..8 {
            set_attribute(&engine, &format!("r-{i}"), "site", "y").await;
            iot.add_thing_to_thing_group()
                .thing_group_name("ga")
                .thing_name(format!("r-{i}"))
                .send()
                .await
                .expect("AddThingToThingGroup");
        }
    };
    let associations = async {
        for group in ["ga", "gb", "ga"] {
            iot.associate_targets_with_job()
                .job_id("job-race")
                .targets(group_arn(group))
                .send()
                .await
                .expect("AssociateTargetsWithJob");
        }
    };
    tokio::time::timeout(Duration::from_secs(60), async {
        tokio::join!(changes, associations)
    })
    .await
    .expect("no deadlock");
    for i in 0..8 {
        assert_eq!(
            engine
                .execution(&format!("r-{i}"), "job-race")
                .await
                .status(),
            Some(&JobExecutionStatus::Queued)
        );
    }
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_disconnect_and_a_reconnect_publish_lifecycle_events_like_aws() {
    let engine = TestEngine::start().await;
    engine.create_thing("presence-1").await;
    let mut presence = engine.watch(&["$aws/events/presence/#"]).await;
    let addr = engine.engine.mqtt_addr;

    for round in 0..2_u64 {
        let mut options = MqttOptions::new("presence-1", addr.ip().to_string(), addr.port());
        options.set_keep_alive(Duration::from_secs(10));
        let (client, mut eventloop) = AsyncClient::new(options, 16);
        loop {
            let event = tokio::time::timeout(Duration::from_secs(10), eventloop.poll())
                .await
                .expect("the broker answers")
                .expect("the device connects");
            if matches!(event, Event::Incoming(Packet::ConnAck(_))) {
                break;
            }
        }
        let connected = next_on(&mut presence, "$aws/events/presence/connected/presence-1").await;
        assert_eq!(connected["clientId"], "presence-1");
        assert_eq!(connected["eventType"], "connected");
        assert_eq!(connected["principalIdentifier"], "presence-1");
        assert_eq!(connected["versionNumber"], round, "{connected}");
        assert!(connected["timestamp"].as_i64().is_some());
        assert!(connected["ipAddress"].as_str().is_some());
        let session = connected["sessionIdentifier"]
            .as_str()
            .expect("a session identifier")
            .to_owned();

        // A DISCONNECT packet, then the socket closes (as clients do after it).
        client.disconnect().await.expect("DISCONNECT");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match tokio::time::timeout_at(deadline, eventloop.poll()).await {
                Ok(Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect))) | Ok(Err(_)) => break,
                Ok(Ok(_)) => {}
                Err(_) => panic!("the DISCONNECT was not sent within 10 s"),
            }
        }
        drop(eventloop);
        let disconnected = next_on(
            &mut presence,
            "$aws/events/presence/disconnected/presence-1",
        )
        .await;
        assert_eq!(disconnected["eventType"], "disconnected");
        assert_eq!(disconnected["sessionIdentifier"], session.as_str());
        assert_eq!(disconnected["clientInitiatedDisconnect"], true);
        assert_eq!(
            disconnected["disconnectReason"],
            "CLIENT_INITIATED_DISCONNECT"
        );
        assert_eq!(disconnected["versionNumber"], round);
    }

    // A connection that just drops is CONNECTION_LOST, not the client's doing.
    {
        let mut options = MqttOptions::new("presence-1", addr.ip().to_string(), addr.port());
        options.set_keep_alive(Duration::from_secs(10));
        let (_client, mut eventloop) = AsyncClient::new(options, 16);
        loop {
            let event = tokio::time::timeout(Duration::from_secs(10), eventloop.poll())
                .await
                .expect("the broker answers")
                .expect("the device connects");
            if matches!(event, Event::Incoming(Packet::ConnAck(_))) {
                break;
            }
        }
        next_on(&mut presence, "$aws/events/presence/connected/presence-1").await;
    }
    let dropped = next_on(
        &mut presence,
        "$aws/events/presence/disconnected/presence-1",
    )
    .await;
    assert_eq!(dropped["clientInitiatedDisconnect"], false);
    assert_eq!(dropped["disconnectReason"], "CONNECTION_LOST");
    engine.stop().await;
}
