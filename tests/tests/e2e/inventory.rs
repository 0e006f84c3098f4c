//! The fleet inventory (`/api/v1/devices`, `/api/v1/software-versions`, registration,
//! bundles, CSV import, revocation, groups) against the real server in local mode: simulated
//! devices and the real agent connect, report their software in the `flotilla` shadow, run
//! jobs; the registry's attributes and groups arrive by resync.

use std::time::Duration;

use flotilla_api::{
    DeviceBundle, DeviceCertificates, DeviceDetail, DeviceList, ImportResult, RegisteredDevice,
    SoftwareDistribution,
};
use reqwest::StatusCode;
use serde_json::json;

use crate::api_support::{create_group, get, post};
use crate::helpers::{TestApp, eventually};

fn names(list: &DeviceList) -> Vec<&str> {
    list.devices.iter().map(|d| d.name.as_str()).collect()
}

/// `GET path` once it answers a device list with exactly `expected`.
async fn until_devices(app: &TestApp, path: &str, expected: &[&str]) -> DeviceList {
    eventually(
        &format!("{path} to list {expected:?}"),
        Duration::from_secs(30),
        || async {
            let answer = get(app, path).await;
            assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
            let list: DeviceList = answer.json();
            (names(&list) == expected).then_some(list)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_show_connectivity_version_groups_and_last_job() {
    let app = TestApp::start(3).await;
    let all = ["sim-0001", "sim-0002", "sim-0003"];

    // Each simulated device connects and reports the version it runs (1.0.0).
    let online = until_devices(
        &app,
        "/api/v1/devices?connectivity=online&version=1.0.0",
        &all,
    )
    .await;
    assert!(
        online
            .devices
            .iter()
            .all(|d| d.connected && d.last_seen_at.is_some())
    );
    assert!(online.devices.iter().all(|d| d.agent_version.is_some()));

    // Attributes and groups (with their ancestors) come from the registry.
    let iot = &app.server.iot_client;
    for (thing, site) in [
        ("sim-0001", "berlin"),
        ("sim-0002", "berlin"),
        ("sim-0003", "paris"),
    ] {
        iot.update_thing()
            .thing_name(thing)
            .attribute_payload(
                aws_sdk_iot::types::AttributePayload::builder()
                    .attributes("site", site)
                    .build(),
            )
            .send()
            .await
            .expect("UpdateThing");
    }
    create_group(&app, "europe", &[]).await;
    iot.create_thing_group()
        .thing_group_name("germany")
        .parent_group_name("europe")
        .send()
        .await
        .expect("CreateThingGroup");
    iot.add_thing_to_thing_group()
        .thing_group_name("germany")
        .thing_name("sim-0001")
        .send()
        .await
        .expect("AddThingToThingGroup");
    let three_filters = "/api/v1/devices?attr.site=berlin&group=europe&connectivity=online";
    let found = until_devices(&app, three_filters, &["sim-0001"]).await;
    assert_eq!(found.devices[0].groups, ["europe", "germany"]);
    until_devices(
        &app,
        "/api/v1/devices?attr.site=berlin",
        &["sim-0001", "sim-0002"],
    )
    .await;
    until_devices(
        &app,
        "/api/v1/devices?name=sim-000&attr.site=paris",
        &["sim-0003"],
    )
    .await;

    // Keyset pages in name order.
    let first: DeviceList = get(&app, "/api/v1/devices?limit=2").await.json();
    assert_eq!(names(&first), ["sim-0001", "sim-0002"]);
    let after = first.next.expect("a next page");
    let second: DeviceList = get(&app, &format!("/api/v1/devices?limit=2&after={after}"))
        .await
        .json();
    assert_eq!(names(&second), ["sim-0003"]);
    assert_eq!(second.next, None);

    // A job that installs 2.0.0 on sim-0002: its last job and its new version show.
    let created = post(
        &app,
        "/api/v1/jobs",
        json!({ "job_id": "inv-install", "things": ["sim-0002"],
                "document": { "operation": "install", "softwareVersion": "2.0.0" } }),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    until_devices(&app, "/api/v1/devices?last_job=SUCCEEDED", &["sim-0002"]).await;
    until_devices(&app, "/api/v1/devices?version=2.0.0", &["sim-0002"]).await;
    let detail: DeviceDetail = get(&app, "/api/v1/devices/sim-0002").await.json();
    assert_eq!(detail.device.last_job_id.as_deref(), Some("inv-install"));
    assert_eq!(detail.executions[0].job_id, "inv-install");
    assert_eq!(detail.executions[0].status, "SUCCEEDED");
    let versions: Vec<&str> = detail.versions.iter().map(|v| v.version.as_str()).collect();
    assert_eq!(versions, ["2.0.0", "1.0.0"]);
    assert!(detail.connectivity.iter().any(|c| c.connected));

    let distribution: SoftwareDistribution = get(&app, "/api/v1/software-versions").await.json();
    let counts: Vec<(Option<&str>, i64)> = distribution
        .versions
        .iter()
        .map(|v| (v.version.as_deref(), v.devices))
        .collect();
    assert_eq!(counts, [(Some("1.0.0"), 2), (Some("2.0.0"), 1)]);
    let in_germany: SoftwareDistribution = get(&app, "/api/v1/software-versions?group=germany")
        .await
        .json();
    assert_eq!(in_germany.versions.len(), 1);
    assert_eq!(in_germany.versions[0].version.as_deref(), Some("1.0.0"));

    // Bad filters are refused field by field.
    let refused = get(
        &app,
        "/api/v1/devices?connectivity=sometimes&limit=9999&colour=red",
    )
    .await;
    refused.assert_error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
        Some("connectivity"),
    );
    assert_eq!(refused.body["fields"].as_array().map(Vec::len), Some(3));
    get(&app, "/api/v1/devices/nobody").await.assert_error(
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    );

    // A device that goes away shows offline.
    app.server
        .iot_client
        .delete_thing()
        .thing_name("sim-0003")
        .send()
        .await
        .expect("DeleteThing");
    until_devices(&app, "/api/v1/devices", &["sim-0001", "sim-0002"]).await;
    app.stop().await;
}

/// Writes a bundle's files into `folder` as the operator would unpack it, and starts the real
/// agent with its configuration.
fn start_agent(bundle: &DeviceBundle, folder: &std::path::Path) -> tokio::task::JoinHandle<()> {
    std::fs::create_dir_all(folder.join("state")).expect("a state folder");
    std::fs::write(folder.join("device.pem.crt"), &bundle.certificate_pem).expect("writing");
    std::fs::write(folder.join("private.pem.key"), &bundle.private_key_pem).expect("writing");
    std::fs::write(
        folder.join("ca.pem"),
        bundle
            .ca_certificate_pem
            .as_deref()
            .expect("the engine's CA"),
    )
    .expect("writing");
    // The bundle's paths are relative to its folder.
    let config = bundle
        .agent_config
        .replace(
            "\"device.pem.crt\"",
            &format!("{:?}", folder.join("device.pem.crt")),
        )
        .replace(
            "\"private.pem.key\"",
            &format!("{:?}", folder.join("private.pem.key")),
        )
        .replace("\"ca.pem\"", &format!("{:?}", folder.join("ca.pem")))
        + &format!(
            "state_dir = {:?}\nhandler_dir = {:?}\n",
            folder.join("state"),
            folder.join("handlers")
        );
    std::fs::write(folder.join("agent.toml"), config).expect("writing");
    let settings = flotilla_agent::config::Settings::from_file(&folder.join("agent.toml"))
        .expect("the bundle's configuration parses");
    let (agent, device) = settings
        .resolve()
        .expect("the bundle's configuration is complete");
    let device = flotilla_agent::device::Device::new(device).expect("a device");
    tokio::spawn(async move {
        let _ = flotilla_agent::Agent::new(agent, std::sync::Arc::new(device))
            .run()
            .await;
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_device_connects_with_its_bundle_until_revoked() {
    let app = TestApp::start(0).await;
    create_group(&app, "europe", &[]).await;

    // Bad input changes nothing.
    let refused = post(
        &app,
        "/api/v1/devices",
        json!({ "name": "bad name", "attributes": { "site": "" }, "groups": ["nowhere"] }),
    )
    .await;
    refused.assert_error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
        Some("name"),
    );
    let unknown_group = post(
        &app,
        "/api/v1/devices",
        json!({ "name": "pump-1", "groups": ["nowhere"] }),
    )
    .await;
    unknown_group.assert_error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
        Some("groups"),
    );
    let listed: DeviceList = get(&app, "/api/v1/devices").await.json();
    assert!(listed.devices.is_empty(), "{listed:?}");

    let created = post(
        &app,
        "/api/v1/devices",
        json!({ "name": "pump-1", "attributes": { "site": "berlin" }, "groups": ["europe"],
                "software_version": "1.4.2" }),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let registered: RegisteredDevice = created.json();
    post(&app, "/api/v1/devices", json!({ "name": "pump-1" }))
        .await
        .assert_error(StatusCode::CONFLICT, "conflict", None);

    // The bundle comes once.
    let path = format!("/api/v1/device-bundles/{}", registered.bundle_token);
    let bundle: DeviceBundle = get(&app, &path).await.json();
    assert_eq!(bundle.thing_name, "pump-1");
    assert_eq!(bundle.certificate_id, registered.certificate_id);
    get(&app, &path)
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found", None);

    let folder = std::env::temp_dir().join(format!("flotilla-bundle-{}", app.db.name));
    let agent = start_agent(&bundle, &folder);
    let online = until_devices(
        &app,
        "/api/v1/devices?connectivity=online&version=1.4.2&group=europe&attr.site=berlin",
        &["pump-1"],
    )
    .await;
    assert!(online.devices[0].last_seen_at.is_some());
    let certificates: DeviceCertificates = get(&app, "/api/v1/devices/pump-1/certificates")
        .await
        .json();
    assert_eq!(certificates.certificates.len(), 1);
    assert_eq!(certificates.certificates[0].status, "ACTIVE");

    // Revoked: the agent is disconnected and cannot come back.
    let revoked = post(&app, "/api/v1/devices/pump-1/revoke", json!({})).await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.body);
    let revoked: DeviceCertificates = revoked.json();
    assert_eq!(revoked.certificates[0].status, "REVOKED");
    until_devices(&app, "/api/v1/devices?connectivity=offline", &["pump-1"]).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let still: DeviceList = get(&app, "/api/v1/devices?connectivity=online")
        .await
        .json();
    assert!(still.devices.is_empty(), "{still:?}");
    let detail: DeviceDetail = get(&app, "/api/v1/devices/pump-1").await.json();
    assert!(detail.connectivity.len() >= 2, "{:?}", detail.connectivity);
    assert!(!detail.connectivity[0].connected);

    agent.abort();
    let _ = std::fs::remove_dir_all(&folder);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csv_import_of_a_thousand_rows_reports_each_row() {
    let app = TestApp::start(0).await;
    create_group(&app, "imported", &[]).await;

    // A file with bad rows is refused line by line, and registers nothing.
    let bad = "name,attributes,groups\nok-1,site=a,imported\nbad name,site=b,\nok-1,site=c,\nok-4,site,nowhere\n";
    let refused = app
        .http
        .post(app.url("/api/v1/devices/import"))
        .header("content-type", "text/csv")
        .body(bad)
        .send()
        .await
        .expect("import");
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: serde_json::Value = refused.json().await.expect("JSON");
    let fields: Vec<&str> = body["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .filter_map(|f| f["field"].as_str())
        .collect();
    assert_eq!(
        fields,
        ["line 3.name", "line 4.name", "line 5.attributes"],
        "{body}"
    );
    let listed: DeviceList = get(&app, "/api/v1/devices").await.json();
    assert!(listed.devices.is_empty());

    let mut csv = String::from("name,thing_type,attributes,groups,software_version\n");
    for n in 0..1000 {
        csv.push_str(&format!(
            "imp-{n:04},,site=site-{};rack={},imported,1.0.{}\n",
            n % 7,
            n % 13,
            n % 3
        ));
    }
    let started = std::time::Instant::now();
    let response = app
        .http
        .post(app.url("/api/v1/devices/import"))
        .header("content-type", "text/csv")
        .body(csv)
        .timeout(Duration::from_secs(600))
        .send()
        .await
        .expect("import");
    assert_eq!(response.status(), StatusCode::OK);
    let result: ImportResult = response.json().await.expect("an import result");
    eprintln!("imported 1000 devices in {:?}", started.elapsed());
    assert_eq!(result.rows.len(), 1000);
    assert_eq!((result.created, result.failed), (1000, 0));
    for (n, row) in result.rows.iter().enumerate() {
        assert_eq!(row.line, n + 2);
        assert_eq!(row.name, format!("imp-{n:04}"));
        assert_eq!(row.status, "created", "{row:?}");
        assert!(row.bundle_token.is_some() && row.certificate_id.is_some());
    }
    let page: DeviceList = get(
        &app,
        "/api/v1/devices?group=imported&attr.site=site-3&limit=500",
    )
    .await
    .json();
    assert_eq!(page.devices.len(), 143);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dynamic_group_picks_up_a_device_and_a_continuous_job_reaches_it() {
    let app = TestApp::start(2).await;
    until_devices(
        &app,
        "/api/v1/devices?connectivity=online",
        &["sim-0001", "sim-0002"],
    )
    .await;
    let bad_query = post(
        &app,
        "/api/v1/thing-groups",
        json!({ "name": "canary", "query": "shadow.reported.fw:2" }),
    )
    .await;
    bad_query.assert_error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
        Some("query"),
    );
    let created = post(
        &app,
        "/api/v1/thing-groups",
        json!({ "name": "canary", "query": "attributes.ring:canary" }),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    app.server
        .iot_client
        .create_job()
        .job_id("canary-config")
        .document(r#"{"operation":"configure"}"#)
        .targets("arn:aws:iot:us-east-1:000000000000:thinggroup/canary")
        .target_selection(aws_sdk_iot::types::TargetSelection::Continuous)
        .send()
        .await
        .expect("CreateJob");
    // sim-0002 joins the ring: the job reaches it and it runs it.
    app.server
        .iot_client
        .update_thing()
        .thing_name("sim-0002")
        .attribute_payload(
            aws_sdk_iot::types::AttributePayload::builder()
                .attributes("ring", "canary")
                .build(),
        )
        .send()
        .await
        .expect("UpdateThing");
    until_devices(&app, "/api/v1/devices?last_job=SUCCEEDED", &["sim-0002"]).await;
    until_devices(&app, "/api/v1/devices?group=canary", &["sim-0002"]).await;
    let detail: DeviceDetail = get(&app, "/api/v1/devices/sim-0002").await.json();
    assert_eq!(detail.executions[0].job_id, "canary-config");
    // A group that a job still running targets cannot be deleted.
    crate::api_support::delete(&app, "/api/v1/thing-groups/canary")
        .await
        .assert_error(StatusCode::CONFLICT, "conflict", None);
    app.stop().await;
}
