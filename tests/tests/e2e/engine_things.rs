//! The engine's thing registry, static thing groups, group-targeted (snapshot and continuous)
//! jobs, CancelJobExecution/DeleteJobExecution and event configurations, driven through
//! `aws-sdk-iot` (and a device over MQTT where the device's view matters).

use std::collections::HashMap;

use aws_sdk_iot::types::{
    AttributePayload, Configuration, EventType, JobExecutionStatus, JobStatus, TargetSelection,
    ThingGroupProperties,
};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::test_engine::{REGION, TestEngine, code, received};

const INVALID: &str = "InvalidRequestException";
const NOT_FOUND: &str = "ResourceNotFoundException";
const VERSION_CONFLICT: &str = "VersionConflictException";
const INVALID_TRANSITION: &str = "InvalidStateTransitionException";

/// A thing to create: its name, thing type and attributes.
type ThingSpec = (
    &'static str,
    Option<&'static str>,
    &'static [(&'static str, &'static str)],
);

fn group_arn(name: &str) -> String {
    format!("arn:aws:iot:{REGION}:000000000000:thinggroup/{name}")
}

fn attributes(pairs: &[(&str, &str)]) -> AttributePayload {
    AttributePayload::builder()
        .set_attributes(Some(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        ))
        .build()
}

fn owned(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

async fn create_thing(engine: &TestEngine, name: &str) {
    engine
        .iot
        .create_thing()
        .thing_name(name)
        .send()
        .await
        .expect("CreateThing");
}

async fn create_group(engine: &TestEngine, name: &str, parent: Option<&str>) {
    engine
        .iot
        .create_thing_group()
        .thing_group_name(name)
        .set_parent_group_name(parent.map(str::to_owned))
        .send()
        .await
        .expect("CreateThingGroup");
}

async fn add(engine: &TestEngine, group: &str, thing: &str) {
    engine
        .iot
        .add_thing_to_thing_group()
        .thing_group_name(group)
        .thing_name(thing)
        .send()
        .await
        .expect("AddThingToThingGroup");
}

async fn remove(engine: &TestEngine, group: &str, thing: &str) {
    engine
        .iot
        .remove_thing_from_thing_group()
        .thing_group_name(group)
        .thing_name(thing)
        .send()
        .await
        .expect("RemoveThingFromThingGroup");
}

/// Thing names in a job's executions, from ListJobExecutionsForJob.
async fn executions_of(engine: &TestEngine, job_id: &str) -> Vec<(String, JobExecutionStatus)> {
    let out = engine
        .iot
        .list_job_executions_for_job()
        .job_id(job_id)
        .send()
        .await
        .expect("ListJobExecutionsForJob");
    out.execution_summaries()
        .iter()
        .map(|s| {
            let thing = s
                .thing_arn()
                .and_then(|a| a.rsplit_once("thing/"))
                .map(|(_, n)| n.to_owned())
                .unwrap_or_default();
            let status = s
                .job_execution_summary()
                .and_then(|e| e.status())
                .cloned()
                .expect("a status");
            (thing, status)
        })
        .collect()
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
async fn things_are_listed_updated_and_deleted() {
    let engine = TestEngine::start().await;
    let iot = &engine.iot;
    let things: [ThingSpec; 5] = [
        ("d-1", Some("gateway"), &[("site", "berlin"), ("hw", "r1")]),
        ("d-2", None, &[("site", "berlin-2")]),
        ("d-3", None, &[("site", "paris")]),
        ("d-4", Some("gateway"), &[]),
        ("d-5", None, &[]),
    ];
    for (name, thing_type, pairs) in things {
        iot.create_thing()
            .thing_name(name)
            .set_thing_type_name(thing_type.map(str::to_owned))
            .attribute_payload(attributes(pairs))
            .send()
            .await
            .expect("CreateThing");
    }

    // Two at a time: three pages, each token leading to the next, the last without one.
    let mut names = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = iot
            .list_things()
            .max_results(2)
            .set_next_token(token.clone())
            .send()
            .await
            .expect("ListThings");
        pages += 1;
        assert!(page.things().len() <= 2);
        names.extend(
            page.things()
                .iter()
                .filter_map(|t| t.thing_name())
                .map(str::to_owned),
        );
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names, ["d-1", "d-2", "d-3", "d-4", "d-5"]);

    let listed = iot
        .list_things()
        .max_results(1)
        .send()
        .await
        .expect("ListThings");
    let first = &listed.things()[0];
    assert_eq!(first.thing_arn(), Some(engine.thing_arn("d-1").as_str()));
    assert_eq!(first.thing_type_name(), Some("gateway"));
    assert_eq!(first.version(), 1);
    assert_eq!(
        first
            .attributes()
            .and_then(|a| a.get("hw"))
            .map(String::as_str),
        Some("r1")
    );

    // Filters.
    async fn names_where(
        request: aws_sdk_iot::operation::list_things::builders::ListThingsFluentBuilder,
    ) -> Vec<String> {
        request
            .send()
            .await
            .expect("ListThings")
            .things()
            .iter()
            .filter_map(|t| t.thing_name().map(str::to_owned))
            .collect()
    }
    assert_eq!(
        names_where(
            iot.list_things()
                .attribute_name("site")
                .attribute_value("berlin")
        )
        .await,
        ["d-1"]
    );
    assert_eq!(
        names_where(
            iot.list_things()
                .attribute_name("site")
                .attribute_value("berlin")
                .use_prefix_attribute_value(true)
        )
        .await,
        ["d-1", "d-2"]
    );
    assert_eq!(
        names_where(iot.list_things().attribute_name("site")).await,
        ["d-1", "d-2", "d-3"]
    );
    assert_eq!(
        names_where(iot.list_things().thing_type_name("gateway")).await,
        ["d-1", "d-4"]
    );
    assert_eq!(
        code(iot.list_things().next_token("garbage").send().await),
        INVALID
    );
    assert_eq!(code(iot.list_things().max_results(0).send().await), INVALID);
    assert_eq!(
        code(iot.list_things().attribute_value("x").send().await),
        INVALID
    );

    // UpdateThing: merge, replace, remove an attribute by an empty value, remove the type.
    let describe = |name: &'static str| async move {
        iot.describe_thing()
            .thing_name(name)
            .send()
            .await
            .expect("DescribeThing")
    };
    let mut merge = attributes(&[("hw", "r2")]);
    merge.merge = true;
    iot.update_thing()
        .thing_name("d-1")
        .attribute_payload(merge)
        .expected_version(1)
        .send()
        .await
        .expect("UpdateThing merge");
    let d1 = describe("d-1").await;
    assert_eq!(d1.version(), 2);
    assert_eq!(
        d1.attributes(),
        Some(&owned(&[("site", "berlin"), ("hw", "r2")]))
    );
    iot.update_thing()
        .thing_name("d-1")
        .attribute_payload(attributes(&[("rack", "7"), ("slot", "3")]))
        .send()
        .await
        .expect("UpdateThing replace");
    assert_eq!(
        describe("d-1").await.attributes(),
        Some(&owned(&[("rack", "7"), ("slot", "3")]))
    );
    let mut drop_slot = attributes(&[("slot", "")]);
    drop_slot.merge = true;
    iot.update_thing()
        .thing_name("d-1")
        .attribute_payload(drop_slot)
        .remove_thing_type(true)
        .send()
        .await
        .expect("UpdateThing remove");
    let d1 = describe("d-1").await;
    assert_eq!(d1.attributes(), Some(&owned(&[("rack", "7")])));
    assert_eq!(d1.thing_type_name(), None);
    assert_eq!(d1.version(), 4);

    // Refusals change nothing.
    assert_eq!(
        code(
            iot.update_thing()
                .thing_name("d-1")
                .expected_version(1)
                .thing_type_name("x")
                .send()
                .await
        ),
        VERSION_CONFLICT
    );
    assert_eq!(
        code(
            iot.update_thing()
                .thing_name("d-1")
                .thing_type_name("x")
                .remove_thing_type(true)
                .send()
                .await
        ),
        INVALID
    );
    assert_eq!(
        code(
            iot.update_thing()
                .thing_name("nobody")
                .thing_type_name("x")
                .send()
                .await
        ),
        NOT_FOUND
    );
    assert_eq!(describe("d-1").await.version(), 4);
    assert_eq!(describe("d-1").await.thing_type_name(), None);

    // DeleteThing: a version conflict keeps the thing; an unknown thing is no error.
    assert_eq!(
        code(
            iot.delete_thing()
                .thing_name("d-5")
                .expected_version(9)
                .send()
                .await
        ),
        VERSION_CONFLICT
    );
    describe("d-5").await;
    iot.delete_thing()
        .thing_name("d-5")
        .expected_version(1)
        .send()
        .await
        .expect("DeleteThing");
    assert_eq!(
        code(iot.describe_thing().thing_name("d-5").send().await),
        NOT_FOUND
    );
    iot.delete_thing()
        .thing_name("never-was")
        .send()
        .await
        .expect("DeleteThing of an unknown thing");

    // Deleting a thing removes its pending executions; the job completes once none is left.
    engine
        .create_job("job-del", r#"{"operation":"install"}"#, &["d-2", "d-3"])
        .await;
    let mut events = engine.watch(&["$aws/events/#"]).await;
    iot.delete_thing()
        .thing_name("d-2")
        .send()
        .await
        .expect("DeleteThing");
    let removed = next_on(&mut events, "$aws/events/jobExecution/job-del/removed").await;
    assert_eq!(removed["thingArn"], engine.thing_arn("d-2"));
    assert_eq!(removed["status"], "REMOVED");
    assert_eq!(
        engine.describe_job("job-del").await.status(),
        Some(&JobStatus::InProgress)
    );
    iot.delete_thing()
        .thing_name("d-3")
        .send()
        .await
        .expect("DeleteThing");
    let got = received(&mut events, 2).await;
    let topics: Vec<&str> = got.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        topics,
        [
            "$aws/events/jobExecution/job-del/removed",
            "$aws/events/job/job-del/completed"
        ],
        "{got:?}"
    );
    assert_eq!(got[1].1["jobProcessDetails"]["numberOfRemovedThings"], 2);
    let job = engine.describe_job("job-del").await;
    assert_eq!(job.status(), Some(&JobStatus::Completed));
    assert_eq!(
        job.job_process_details()
            .and_then(|d| d.number_of_removed_things()),
        Some(2)
    );
    assert_eq!(
        executions_of(&engine, "job-del").await,
        [
            ("d-2".to_owned(), JobExecutionStatus::Removed),
            ("d-3".to_owned(), JobExecutionStatus::Removed)
        ]
    );

    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thing_groups_nest_list_and_hold_things() {
    let engine = TestEngine::start().await;
    let iot = &engine.iot;
    let properties = ThingGroupProperties::builder()
        .thing_group_description("the whole fleet")
        .attribute_payload(attributes(&[("owner", "ops")]))
        .build();
    let created = iot
        .create_thing_group()
        .thing_group_name("fleet")
        .thing_group_properties(properties.clone())
        .tags(
            aws_sdk_iot::types::Tag::builder()
                .key("k")
                .value("v")
                .build()
                .expect("a tag"),
        )
        .send()
        .await
        .expect("CreateThingGroup");
    assert_eq!(created.thing_group_arn(), Some(group_arn("fleet").as_str()));
    assert!(created.thing_group_id().is_some());
    // The same group again is the same group; different properties are a conflict.
    let again = iot
        .create_thing_group()
        .thing_group_name("fleet")
        .thing_group_properties(properties)
        .send()
        .await
        .expect("CreateThingGroup again");
    assert_eq!(again.thing_group_id(), created.thing_group_id());
    assert_eq!(
        code(
            iot.create_thing_group()
                .thing_group_name("fleet")
                .send()
                .await
        ),
        "ResourceAlreadyExistsException"
    );
    create_group(&engine, "fleet-eu", Some("fleet")).await;
    create_group(&engine, "fleet-eu-berlin", Some("fleet-eu")).await;
    create_group(&engine, "lab", None).await;
    assert_eq!(
        code(
            iot.create_thing_group()
                .thing_group_name("orphan")
                .parent_group_name("nowhere")
                .send()
                .await
        ),
        INVALID
    );
    assert_eq!(
        code(
            iot.create_thing_group()
                .thing_group_name("bad/name")
                .send()
                .await
        ),
        INVALID
    );

    let berlin = iot
        .describe_thing_group()
        .thing_group_name("fleet-eu-berlin")
        .send()
        .await
        .expect("DescribeThingGroup");
    assert_eq!(
        berlin.thing_group_arn(),
        Some(group_arn("fleet-eu-berlin").as_str())
    );
    assert_eq!(berlin.version(), 1);
    let metadata = berlin.thing_group_metadata().expect("metadata");
    assert_eq!(metadata.parent_group_name(), Some("fleet-eu"));
    assert!(metadata.creation_date().is_some());
    let chain: Vec<(&str, &str)> = metadata
        .root_to_parent_thing_groups()
        .iter()
        .map(|g| (g.group_name().unwrap_or(""), g.group_arn().unwrap_or("")))
        .collect();
    assert_eq!(
        chain,
        [
            ("fleet", group_arn("fleet").as_str()),
            ("fleet-eu", group_arn("fleet-eu").as_str())
        ]
    );
    let fleet = iot
        .describe_thing_group()
        .thing_group_name("fleet")
        .send()
        .await
        .expect("DescribeThingGroup");
    let fleet_properties = fleet.thing_group_properties().expect("properties");
    assert_eq!(
        fleet_properties.thing_group_description(),
        Some("the whole fleet")
    );
    assert_eq!(
        fleet_properties
            .attribute_payload()
            .and_then(|p| p.attributes()),
        Some(&owned(&[("owner", "ops")]))
    );
    assert_eq!(
        code(
            iot.describe_thing_group()
                .thing_group_name("nowhere")
                .send()
                .await
        ),
        NOT_FOUND
    );

    // ListThingGroups: pages of one, and the parent, recursion and prefix filters.
    let mut names = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = iot
            .list_thing_groups()
            .max_results(1)
            .set_next_token(token.clone())
            .send()
            .await
            .expect("ListThingGroups");
        names.extend(
            page.thing_groups()
                .iter()
                .filter_map(|g| g.group_name())
                .map(str::to_owned),
        );
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(names, ["fleet", "fleet-eu", "fleet-eu-berlin", "lab"]);
    async fn groups_where(
        request: aws_sdk_iot::operation::list_thing_groups::builders::ListThingGroupsFluentBuilder,
    ) -> Vec<String> {
        request
            .send()
            .await
            .expect("ListThingGroups")
            .thing_groups()
            .iter()
            .filter_map(|g| g.group_name().map(str::to_owned))
            .collect()
    }
    assert_eq!(
        groups_where(iot.list_thing_groups().parent_group("fleet")).await,
        ["fleet-eu"]
    );
    assert_eq!(
        groups_where(
            iot.list_thing_groups()
                .parent_group("fleet")
                .recursive(true)
        )
        .await,
        ["fleet-eu", "fleet-eu-berlin"]
    );
    assert_eq!(
        groups_where(iot.list_thing_groups().name_prefix_filter("fleet-eu")).await,
        ["fleet-eu", "fleet-eu-berlin"]
    );
    assert_eq!(
        groups_where(iot.list_thing_groups().recursive(false)).await,
        ["fleet", "lab"]
    );
    assert_eq!(
        code(iot.list_thing_groups().parent_group("nowhere").send().await),
        NOT_FOUND
    );

    // UpdateThingGroup.
    let mut merge = attributes(&[("tier", "prod")]);
    merge.merge = true;
    let updated = iot
        .update_thing_group()
        .thing_group_name("fleet")
        .thing_group_properties(
            ThingGroupProperties::builder()
                .thing_group_description("all devices")
                .attribute_payload(merge)
                .build(),
        )
        .expected_version(1)
        .send()
        .await
        .expect("UpdateThingGroup");
    assert_eq!(updated.version(), 2);
    let fleet = iot
        .describe_thing_group()
        .thing_group_name("fleet")
        .send()
        .await
        .expect("DescribeThingGroup");
    let fleet_properties = fleet.thing_group_properties().expect("properties");
    assert_eq!(
        fleet_properties.thing_group_description(),
        Some("all devices")
    );
    assert_eq!(
        fleet_properties
            .attribute_payload()
            .and_then(|p| p.attributes()),
        Some(&owned(&[("owner", "ops"), ("tier", "prod")]))
    );
    assert_eq!(
        code(
            iot.update_thing_group()
                .thing_group_name("fleet")
                .thing_group_properties(ThingGroupProperties::builder().build())
                .expected_version(1)
                .send()
                .await
        ),
        VERSION_CONFLICT
    );

    // Membership, by name and by ARN.
    for thing in ["t-a", "t-b", "t-c"] {
        create_thing(&engine, thing).await;
    }
    add(&engine, "fleet", "t-a").await;
    add(&engine, "fleet", "t-a").await;
    iot.add_thing_to_thing_group()
        .thing_group_arn(group_arn("fleet-eu"))
        .thing_arn(engine.thing_arn("t-b"))
        .send()
        .await
        .expect("AddThingToThingGroup by ARN");
    add(&engine, "fleet-eu-berlin", "t-c").await;
    add(&engine, "lab", "t-a").await;
    assert_eq!(
        code(
            iot.add_thing_to_thing_group()
                .thing_group_name("nowhere")
                .thing_name("t-a")
                .send()
                .await
        ),
        NOT_FOUND
    );
    assert_eq!(
        code(
            iot.add_thing_to_thing_group()
                .thing_group_name("lab")
                .thing_name("nobody")
                .send()
                .await
        ),
        NOT_FOUND
    );
    assert_eq!(
        code(
            iot.add_thing_to_thing_group()
                .thing_name("t-a")
                .send()
                .await
        ),
        INVALID
    );
    assert_eq!(
        code(
            iot.add_thing_to_thing_group()
                .thing_group_name("lab")
                .thing_group_arn(group_arn("fleet"))
                .thing_name("t-a")
                .send()
                .await
        ),
        INVALID
    );

    let direct = iot
        .list_things_in_thing_group()
        .thing_group_name("fleet")
        .send()
        .await
        .expect("ListThingsInThingGroup");
    assert_eq!(direct.things(), ["t-a"]);
    let first = iot
        .list_things_in_thing_group()
        .thing_group_name("fleet")
        .recursive(true)
        .max_results(2)
        .send()
        .await
        .expect("ListThingsInThingGroup");
    assert_eq!(first.things(), ["t-a", "t-b"]);
    let second = iot
        .list_things_in_thing_group()
        .thing_group_name("fleet")
        .recursive(true)
        .max_results(2)
        .next_token(first.next_token().expect("a second page"))
        .send()
        .await
        .expect("ListThingsInThingGroup page 2");
    assert_eq!(second.things(), ["t-c"]);
    assert_eq!(second.next_token(), None);
    assert_eq!(
        code(
            iot.list_things_in_thing_group()
                .thing_group_name("nowhere")
                .send()
                .await
        ),
        NOT_FOUND
    );

    let groups_of = |thing: &'static str| async move {
        iot.list_thing_groups_for_thing()
            .thing_name(thing)
            .send()
            .await
            .expect("ListThingGroupsForThing")
            .thing_groups()
            .iter()
            .map(|g| {
                (
                    g.group_name().unwrap_or("").to_owned(),
                    g.group_arn().unwrap_or("").to_owned(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        groups_of("t-a").await,
        [
            ("fleet".to_owned(), group_arn("fleet")),
            ("lab".to_owned(), group_arn("lab"))
        ]
    );
    let paged = iot
        .list_thing_groups_for_thing()
        .thing_name("t-a")
        .max_results(1)
        .send()
        .await
        .expect("ListThingGroupsForThing");
    let rest = iot
        .list_thing_groups_for_thing()
        .thing_name("t-a")
        .max_results(1)
        .next_token(paged.next_token().expect("a second page"))
        .send()
        .await
        .expect("ListThingGroupsForThing page 2");
    assert_eq!(rest.thing_groups()[0].group_name(), Some("lab"));
    assert_eq!(
        code(
            iot.list_thing_groups_for_thing()
                .thing_name("nobody")
                .send()
                .await
        ),
        NOT_FOUND
    );

    iot.remove_thing_from_thing_group()
        .thing_group_arn(group_arn("lab"))
        .thing_arn(engine.thing_arn("t-a"))
        .send()
        .await
        .expect("RemoveThingFromThingGroup by ARN");
    assert_eq!(
        groups_of("t-a").await,
        [("fleet".to_owned(), group_arn("fleet"))]
    );

    // A group with children cannot be deleted; a leaf can, and its things leave it.
    assert_eq!(
        code(
            iot.delete_thing_group()
                .thing_group_name("fleet-eu")
                .send()
                .await
        ),
        INVALID
    );
    assert_eq!(
        code(
            iot.delete_thing_group()
                .thing_group_name("fleet-eu-berlin")
                .expected_version(5)
                .send()
                .await
        ),
        VERSION_CONFLICT
    );
    iot.delete_thing_group()
        .thing_group_name("fleet-eu-berlin")
        .expected_version(1)
        .send()
        .await
        .expect("DeleteThingGroup");
    assert!(groups_of("t-c").await.is_empty());
    assert_eq!(
        code(
            iot.describe_thing_group()
                .thing_group_name("fleet-eu-berlin")
                .send()
                .await
        ),
        NOT_FOUND
    );
    iot.delete_thing_group()
        .thing_group_name("never-was")
        .send()
        .await
        .expect("DeleteThingGroup of an unknown group");
    iot.delete_thing_group()
        .thing_group_name("fleet-eu")
        .send()
        .await
        .expect("DeleteThingGroup once childless");

    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_target_groups_as_snapshots_and_continuously() {
    let engine = TestEngine::start().await;
    let iot = &engine.iot;
    for thing in ["s-1", "s-2", "s-3", "s-4", "c-1", "c-2", "c-3"] {
        create_thing(&engine, thing).await;
    }
    create_group(&engine, "g-root", None).await;
    create_group(&engine, "g-child", Some("g-root")).await;
    create_group(&engine, "g-other", None).await;
    create_group(&engine, "g-empty", None).await;
    add(&engine, "g-root", "s-1").await;
    add(&engine, "g-child", "s-2").await;
    add(&engine, "g-other", "s-2").await;
    add(&engine, "g-other", "s-3").await;

    // SNAPSHOT: the members of the groups and their subgroups at creation, each once.
    iot.create_job()
        .job_id("job-snap")
        .document(r#"{"operation":"install"}"#)
        .targets(group_arn("g-root"))
        .targets(group_arn("g-other"))
        .targets(engine.thing_arn("s-1"))
        .send()
        .await
        .expect("CreateJob for groups");
    let executions = executions_of(&engine, "job-snap").await;
    assert_eq!(
        executions,
        [
            ("s-1".to_owned(), JobExecutionStatus::Queued),
            ("s-2".to_owned(), JobExecutionStatus::Queued),
            ("s-3".to_owned(), JobExecutionStatus::Queued)
        ]
    );
    let job = engine.describe_job("job-snap").await;
    assert_eq!(job.target_selection(), Some(&TargetSelection::Snapshot));
    assert_eq!(job.targets().len(), 3);
    // A thing joining later is not part of the snapshot.
    add(&engine, "g-root", "s-4").await;
    assert_eq!(
        code(
            iot.describe_job_execution()
                .thing_name("s-4")
                .job_id("job-snap")
                .send()
                .await
        ),
        NOT_FOUND
    );
    // A snapshot of an empty group has nothing to do and completes at once.
    iot.create_job()
        .job_id("job-empty")
        .document("{}")
        .targets(group_arn("g-empty"))
        .send()
        .await
        .expect("CreateJob for an empty group");
    assert_eq!(
        engine.describe_job("job-empty").await.status(),
        Some(&JobStatus::Completed)
    );

    // ListJobs by targeted group, by name or id; a group no job targets lists none.
    let by_group = |name: &'static str| async move {
        let listed = iot
            .list_jobs()
            .thing_group_name(name)
            .send()
            .await
            .expect("ListJobs by group");
        listed
            .jobs()
            .iter()
            .filter_map(|j| j.job_id().map(str::to_owned))
            .collect::<Vec<_>>()
    };
    assert_eq!(by_group("g-other").await, ["job-snap"]);
    assert_eq!(by_group("g-empty").await, ["job-empty"]);
    assert!(by_group("g-child").await.is_empty());
    let other_id = iot
        .describe_thing_group()
        .thing_group_name("g-other")
        .send()
        .await
        .expect("DescribeThingGroup")
        .thing_group_id()
        .expect("an id")
        .to_owned();
    let by_id = iot
        .list_jobs()
        .thing_group_id(other_id)
        .send()
        .await
        .expect("ListJobs by group id");
    assert_eq!(by_id.jobs().len(), 1);
    assert_eq!(by_id.jobs()[0].job_id(), Some("job-snap"));
    // Unknown and malformed targets change nothing.
    assert_eq!(
        code(
            iot.create_job()
                .job_id("job-bad")
                .document("{}")
                .targets(group_arn("nowhere"))
                .send()
                .await
        ),
        NOT_FOUND
    );
    assert_eq!(
        code(
            iot.create_job()
                .job_id("job-bad")
                .document("{}")
                .targets("arn:aws:iot:us-east-1:000000000000:thinggroup/a/b")
                .send()
                .await
        ),
        INVALID
    );
    assert_eq!(
        code(iot.describe_job().job_id("job-bad").send().await),
        NOT_FOUND
    );

    // CONTINUOUS: things joining later get an execution, leaving removes a QUEUED one.
    create_group(&engine, "g-cont", None).await;
    create_group(&engine, "g-cont-sub", Some("g-cont")).await;
    add(&engine, "g-cont", "c-1").await;
    iot.create_job()
        .job_id("job-cont")
        .document(r#"{"operation":"configure"}"#)
        .targets(group_arn("g-cont"))
        .target_selection(TargetSelection::Continuous)
        .send()
        .await
        .expect("CreateJob continuous");
    assert_eq!(
        executions_of(&engine, "job-cont").await,
        [("c-1".to_owned(), JobExecutionStatus::Queued)]
    );
    let (_device, mut device) = engine
        .device("c-2", &["$aws/things/c-2/jobs/notify-next"])
        .await;
    let mut events = engine.watch(&["$aws/events/#"]).await;

    add(&engine, "g-cont", "c-2").await;
    let next = next_on(&mut device, "$aws/things/c-2/jobs/notify-next").await;
    assert_eq!(next["execution"]["jobId"], "job-cont");
    assert_eq!(next["execution"]["status"], "QUEUED");
    assert_eq!(next["execution"]["jobDocument"]["operation"], "configure");
    let execution = engine.execution("c-2", "job-cont").await;
    assert_eq!(execution.status(), Some(&JobExecutionStatus::Queued));
    assert_eq!(execution.execution_number(), Some(1));

    remove(&engine, "g-cont", "c-2").await;
    let removed = next_on(&mut events, "$aws/events/jobExecution/job-cont/removed").await;
    assert_eq!(removed["thingArn"], engine.thing_arn("c-2"));
    let next = next_on(&mut device, "$aws/things/c-2/jobs/notify-next").await;
    assert!(next.get("execution").is_none(), "{next}");
    assert_eq!(
        engine.execution("c-2", "job-cont").await.status(),
        Some(&JobExecutionStatus::Removed)
    );

    // Rejoining queues it again with the next execution number; a subgroup counts too.
    add(&engine, "g-cont-sub", "c-2").await;
    let next = next_on(&mut device, "$aws/things/c-2/jobs/notify-next").await;
    assert_eq!(next["execution"]["jobId"], "job-cont");
    assert_eq!(next["execution"]["executionNumber"], 2);
    let execution = engine.execution("c-2", "job-cont").await;
    assert_eq!(execution.status(), Some(&JobExecutionStatus::Queued));
    assert_eq!(execution.execution_number(), Some(2));
    add(&engine, "g-cont-sub", "c-3").await;
    assert_eq!(
        engine.execution("c-3", "job-cont").await.status(),
        Some(&JobExecutionStatus::Queued)
    );

    // Deleting the subgroup takes its things out of the target.
    iot.delete_thing_group()
        .thing_group_name("g-cont-sub")
        .send()
        .await
        .expect("DeleteThingGroup");
    let next = next_on(&mut device, "$aws/things/c-2/jobs/notify-next").await;
    assert!(next.get("execution").is_none(), "{next}");
    assert_eq!(
        engine.execution("c-3", "job-cont").await.status(),
        Some(&JobExecutionStatus::Removed)
    );

    // With nothing pending, a continuous job is still in progress: it never completes itself.
    iot.cancel_job_execution()
        .job_id("job-cont")
        .thing_name("c-1")
        .send()
        .await
        .expect("CancelJobExecution");
    let job = engine.describe_job("job-cont").await;
    assert_eq!(job.status(), Some(&JobStatus::InProgress));
    let details = job.job_process_details().expect("process details");
    assert_eq!(details.number_of_queued_things(), Some(0));
    assert_eq!(details.number_of_removed_things(), Some(2));
    assert_eq!(details.number_of_canceled_things(), Some(1));

    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_executions_are_canceled_and_deleted() {
    let engine = TestEngine::start().await;
    let iot = &engine.iot;
    for thing in ["e-1", "e-2", "e-3"] {
        create_thing(&engine, thing).await;
    }
    engine
        .create_job(
            "job-x",
            r#"{"operation":"install"}"#,
            &["e-1", "e-2", "e-3"],
        )
        .await;
    engine
        .create_job("job-y", r#"{"operation":"reboot"}"#, &["e-1"])
        .await;
    let mut events = engine
        .watch(&["$aws/events/#", "$aws/things/+/jobs/notify-next"])
        .await;

    // A QUEUED execution is canceled, with the given details; e-1 moves on to job-y.
    iot.cancel_job_execution()
        .job_id("job-x")
        .thing_name("e-1")
        .expected_version(1)
        .status_details("reason", "operator")
        .send()
        .await
        .expect("CancelJobExecution");
    let got = received(&mut events, 2).await;
    let topics: Vec<&str> = got.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        topics,
        [
            "$aws/events/jobExecution/job-x/canceled",
            "$aws/things/e-1/jobs/notify-next"
        ],
        "{got:?}"
    );
    assert_eq!(got[0].1["statusDetails"]["reason"], "operator");
    assert_eq!(got[1].1["execution"]["jobId"], "job-y");
    let e1 = engine.execution("e-1", "job-x").await;
    assert_eq!(e1.status(), Some(&JobExecutionStatus::Canceled));
    assert_eq!(e1.force_canceled(), Some(false));
    assert_eq!(e1.version_number(), 2);
    assert_eq!(
        e1.status_details().and_then(|d| d.details_map()),
        Some(&owned(&[("reason", "operator")]))
    );
    assert_eq!(
        code(
            iot.cancel_job_execution()
                .job_id("job-x")
                .thing_name("e-1")
                .send()
                .await
        ),
        INVALID_TRANSITION
    );

    // e-2's device starts job-x; canceling it then needs force and the right version.
    let (device, mut device_messages) = engine
        .device("e-2", &["$aws/things/e-2/jobs/start-next/accepted"])
        .await;
    device
        .publish(
            "$aws/things/e-2/jobs/start-next",
            rumqttc::QoS::AtLeastOnce,
            false,
            "{}",
        )
        .await
        .expect("publishing start-next");
    let started = next_on(
        &mut device_messages,
        "$aws/things/e-2/jobs/start-next/accepted",
    )
    .await;
    assert_eq!(started["execution"]["status"], "IN_PROGRESS");
    let version = engine.execution("e-2", "job-x").await.version_number();
    assert_eq!(
        code(
            iot.cancel_job_execution()
                .job_id("job-x")
                .thing_name("e-2")
                .send()
                .await
        ),
        INVALID_TRANSITION
    );
    assert_eq!(
        code(
            iot.cancel_job_execution()
                .job_id("job-x")
                .thing_name("e-2")
                .force(true)
                .expected_version(version + 1)
                .send()
                .await
        ),
        VERSION_CONFLICT
    );
    assert_eq!(
        engine.execution("e-2", "job-x").await.status(),
        Some(&JobExecutionStatus::InProgress)
    );
    iot.cancel_job_execution()
        .job_id("job-x")
        .thing_name("e-2")
        .force(true)
        .expected_version(version)
        .send()
        .await
        .expect("forced CancelJobExecution");
    let e2 = engine.execution("e-2", "job-x").await;
    assert_eq!(e2.status(), Some(&JobExecutionStatus::Canceled));
    assert_eq!(e2.force_canceled(), Some(true));
    let next = next_on(&mut events, "$aws/things/e-2/jobs/notify-next").await;
    assert!(next.get("execution").is_none(), "{next}");
    assert_eq!(
        code(
            iot.cancel_job_execution()
                .job_id("job-x")
                .thing_name("nobody")
                .send()
                .await
        ),
        NOT_FOUND
    );
    assert_eq!(
        code(
            iot.cancel_job_execution()
                .job_id("no-job")
                .thing_name("e-1")
                .send()
                .await
        ),
        NOT_FOUND
    );

    // DeleteJobExecution: a pending one only with force and its execution number.
    let delete = |thing: &'static str, number: i64, force: bool| {
        iot.delete_job_execution()
            .job_id("job-x")
            .thing_name(thing)
            .execution_number(number)
            .force(force)
            .send()
    };
    assert_eq!(code(delete("e-3", 1, false).await), INVALID_TRANSITION);
    assert_eq!(code(delete("e-3", 2, true).await), NOT_FOUND);
    assert_eq!(
        engine.execution("e-3", "job-x").await.status(),
        Some(&JobExecutionStatus::Queued)
    );
    delete("e-3", 1, true)
        .await
        .expect("forced DeleteJobExecution");
    // e-3 was the last pending execution of job-x: it completes.
    let got = received(&mut events, 3).await;
    let topics: Vec<&str> = got.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        topics,
        [
            "$aws/events/jobExecution/job-x/deleted",
            "$aws/things/e-3/jobs/notify-next",
            "$aws/events/job/job-x/completed"
        ],
        "{got:?}"
    );
    assert_eq!(got[0].1["thingArn"], engine.thing_arn("e-3"));
    assert_eq!(
        code(
            iot.describe_job_execution()
                .thing_name("e-3")
                .job_id("job-x")
                .send()
                .await
        ),
        NOT_FOUND
    );
    // A finished one needs no force.
    delete("e-1", 1, false).await.expect("DeleteJobExecution");
    let deleted = next_on(&mut events, "$aws/events/jobExecution/job-x/deleted").await;
    assert_eq!(deleted["status"], "CANCELED");
    assert_eq!(
        executions_of(&engine, "job-x").await,
        [("e-2".to_owned(), JobExecutionStatus::Canceled)]
    );
    assert_eq!(
        code(
            iot.delete_job_execution()
                .job_id("job-x")
                .thing_name("e-2")
                .execution_number(1)
                .namespace_id("greengrass")
                .send()
                .await
        ),
        INVALID
    );

    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_off_by_default_and_follow_the_configuration() {
    let engine = TestEngine::start_with_aws_defaults().await;
    let iot = &engine.iot;
    let configured = iot
        .describe_event_configurations()
        .send()
        .await
        .expect("DescribeEventConfigurations");
    let configurations = configured.event_configurations().expect("configurations");
    assert_eq!(configurations.len(), 11);
    assert!(
        configurations.values().all(|c| !c.enabled()),
        "{configurations:?}"
    );
    assert_eq!(
        configurations.get(&EventType::Job).map(|c| c.enabled()),
        Some(false)
    );

    create_thing(&engine, "ev-1").await;
    let mut events = engine.watch(&["$aws/events/#"]).await;
    for job_id in ["job-1", "job-2", "job-3"] {
        engine.create_job(job_id, "{}", &["ev-1"]).await;
    }
    // Disabled: canceling job-1 publishes nothing.
    iot.cancel_job()
        .job_id("job-1")
        .send()
        .await
        .expect("CancelJob");

    let on = Configuration::builder().enabled(true).build();
    iot.update_event_configurations()
        .event_configurations(EventType::Job, on.clone())
        .send()
        .await
        .expect("UpdateEventConfigurations");
    let configured = iot
        .describe_event_configurations()
        .send()
        .await
        .expect("DescribeEventConfigurations");
    let configurations = configured.event_configurations().expect("configurations");
    assert_eq!(
        configurations.get(&EventType::Job).map(|c| c.enabled()),
        Some(true)
    );
    assert_eq!(
        configurations
            .get(&EventType::JobExecution)
            .map(|c| c.enabled()),
        Some(false)
    );
    assert!(configured.last_modified_date().is_some());

    // Jobs only: the first message is job-2's cancellation (nothing from job-1 came before
    // it), with no execution event after it (job-3's comes next once those are enabled too).
    iot.cancel_job()
        .job_id("job-2")
        .send()
        .await
        .expect("CancelJob");
    iot.update_event_configurations()
        .event_configurations(EventType::JobExecution, on)
        .send()
        .await
        .expect("UpdateEventConfigurations");
    iot.cancel_job()
        .job_id("job-3")
        .send()
        .await
        .expect("CancelJob");
    let got = received(&mut events, 3).await;
    let topics: Vec<&str> = got.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        topics,
        [
            "$aws/events/job/job-2/canceled",
            "$aws/events/job/job-3/canceled",
            "$aws/events/jobExecution/job-3/canceled"
        ],
        "{got:?}"
    );

    // Turning a type off stops it; unknown types are refused and change nothing.
    let off = Configuration::builder().enabled(false).build();
    iot.update_event_configurations()
        .event_configurations(EventType::Job, off.clone())
        .send()
        .await
        .expect("UpdateEventConfigurations");
    assert_eq!(
        code(
            iot.update_event_configurations()
                .event_configurations(EventType::from("BOGUS"), off)
                .send()
                .await
        ),
        INVALID
    );
    let configured = iot
        .describe_event_configurations()
        .send()
        .await
        .expect("DescribeEventConfigurations");
    let configurations = configured.event_configurations().expect("configurations");
    assert_eq!(
        configurations.get(&EventType::Job).map(|c| c.enabled()),
        Some(false)
    );
    assert_eq!(
        configurations
            .get(&EventType::JobExecution)
            .map(|c| c.enabled()),
        Some(true)
    );

    engine.stop().await;
}
