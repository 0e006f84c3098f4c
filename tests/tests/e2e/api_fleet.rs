//! `/api/v1/things` and `/api/v1/thing-groups` against the engine: listing, searching by name
//! prefix and attributes, paging, details with groups and executions, member counts, and the
//! errors of each.

use flotilla_api::{ThingDetail, ThingGroupDetail, ThingGroupList, ThingList};
use reqwest::StatusCode;
use serde_json::json;

use crate::api_support::{create_group, create_thing, get, post};
use crate::helpers::TestApp;

fn names(list: &ThingList) -> Vec<&str> {
    list.things.iter().map(|t| t.name.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn things_and_groups_are_listed_searched_and_described() {
    let app = TestApp::start_with(0, &[]).await;
    create_thing(&app, "gateway-1", &[("site", "lyon")]).await;
    create_thing(&app, "sensor-a1", &[("site", "lyon"), ("model", "x2")]).await;
    create_thing(&app, "sensor-a2", &[("site", "paris"), ("model", "x2")]).await;
    create_thing(&app, "sensor-b1", &[("site", "lyon"), ("model", "x3")]).await;
    create_group(&app, "lyon", &["gateway-1", "sensor-a1", "sensor-b1"]).await;
    create_group(&app, "paris", &["sensor-a2"]).await;
    create_group(&app, "empty", &[]).await;

    let all: ThingList = get(&app, "/api/v1/things").await.json();
    assert_eq!(
        names(&all),
        ["gateway-1", "sensor-a1", "sensor-a2", "sensor-b1"]
    );
    assert!(all.next_token.is_none());
    let a1 = &all.things[1];
    assert_eq!(a1.attributes["model"], "x2");
    assert!(a1.arn.ends_with(":thing/sensor-a1"), "{}", a1.arn);

    let sensors: ThingList = get(&app, "/api/v1/things?name_prefix=sensor-a")
        .await
        .json();
    assert_eq!(names(&sensors), ["sensor-a1", "sensor-a2"]);
    let lyon: ThingList = get(&app, "/api/v1/things?attr.site=lyon").await.json();
    assert_eq!(names(&lyon), ["gateway-1", "sensor-a1", "sensor-b1"]);
    let both: ThingList = get(&app, "/api/v1/things?attr.site=lyon&attr.model=x2")
        .await
        .json();
    assert_eq!(names(&both), ["sensor-a1"]);
    let combined: ThingList = get(&app, "/api/v1/things?name_prefix=sensor&attr.model=x3")
        .await
        .json();
    assert_eq!(names(&combined), ["sensor-b1"]);
    let none: ThingList = get(&app, "/api/v1/things?attr.site=rome").await.json();
    assert!(none.things.is_empty());

    // Paging one at a time visits every thing once, in order.
    let mut seen = Vec::new();
    let mut path = "/api/v1/things?limit=1".to_owned();
    for _ in 0..10 {
        let page: ThingList = get(&app, &path).await.json();
        assert!(page.things.len() <= 1);
        seen.extend(page.things.iter().map(|t| t.name.clone()));
        match page.next_token {
            Some(token) => {
                path = format!(
                    "/api/v1/things?limit=1&next_token={}",
                    percent_encode(&token)
                )
            }
            None => break,
        }
    }
    assert_eq!(seen, ["gateway-1", "sensor-a1", "sensor-a2", "sensor-b1"]);

    // A thing's detail: attributes, groups and its executions.
    let created = post(
        &app,
        "/api/v1/jobs",
        json!({ "job_id": "fleet-job", "things": ["sensor-a1"], "document": { "op": "x" } }),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let detail: ThingDetail = get(&app, "/api/v1/things/sensor-a1").await.json();
    assert_eq!(detail.thing.name, "sensor-a1");
    assert_eq!(detail.thing.attributes["site"], "lyon");
    assert_eq!(detail.groups, ["lyon"]);
    assert_eq!(detail.executions.len(), 1);
    assert_eq!(detail.executions[0].job_id, "fleet-job");
    assert_eq!(detail.executions[0].status, "QUEUED");
    assert!(detail.executions[0].queued_at.is_some());

    // Groups with member counts, and one group's members.
    let groups: ThingGroupList = get(&app, "/api/v1/thing-groups").await.json();
    let counts: Vec<(&str, i64)> = groups
        .groups
        .iter()
        .map(|g| (g.name.as_str(), g.member_count))
        .collect();
    assert_eq!(counts, [("empty", 0), ("lyon", 3), ("paris", 1)]);
    let prefixed: ThingGroupList = get(&app, "/api/v1/thing-groups?name_prefix=pa")
        .await
        .json();
    assert_eq!(prefixed.groups.len(), 1);
    assert_eq!(prefixed.groups[0].name, "paris");
    let group: ThingGroupDetail = get(&app, "/api/v1/thing-groups/lyon").await.json();
    let mut members = group.members.clone();
    members.sort();
    assert_eq!(members, ["gateway-1", "sensor-a1", "sensor-b1"]);
    assert!(group.arn.ends_with(":thinggroup/lyon"), "{}", group.arn);
    let first: ThingGroupDetail = get(&app, "/api/v1/thing-groups/lyon?limit=2").await.json();
    assert_eq!(first.members.len(), 2);
    assert!(first.next_token.is_some());

    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_errors_are_json_with_stable_codes() {
    let app = TestApp::start_with(0, &["t-1"]).await;
    get(&app, "/api/v1/things/ghost")
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found", None);
    get(&app, "/api/v1/thing-groups/ghost").await.assert_error(
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    );
    for limit in ["0", "251", "many"] {
        get(&app, &format!("/api/v1/things?limit={limit}"))
            .await
            .assert_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                Some("limit"),
            );
        get(&app, &format!("/api/v1/thing-groups?limit={limit}"))
            .await
            .assert_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                Some("limit"),
            );
    }
    get(&app, "/api/v1/things?colour=red").await.assert_error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
        Some("colour"),
    );
    get(&app, "/api/v1/things?attr.=x").await.assert_error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
        Some("attr."),
    );
    get(&app, "/api/v1/things?next_token=garbage")
        .await
        .assert_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            Some("next_token"),
        );
    get(&app, "/api/v1/no-such-thing")
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found", None);
    app.stop().await;
}

/// Percent-encodes a query value.
fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
