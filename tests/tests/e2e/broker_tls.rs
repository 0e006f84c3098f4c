//! The broker's mutual-TLS listener and the engine as a certificate authority, driven with real
//! clients: the seed's `device.py` (AWS IoT Device SDK v1), a program on the v2 SDK
//! (awsiotsdk), rumqttc over MQTT 3.1.1 and 5, and `aws-sdk-iot` for the certificate
//! operations. A device connects with a certificate from CreateKeysAndCertificate, attached to
//! its thing; certificates that are revoked, inactive, attached elsewhere, expired or signed by
//! another CA are refused.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_iot::types::{CertificateStatus, JobExecutionStatus};
use chrono::{TimeZone, Utc};
use flotilla_engine::clock::TestClock;
use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, Packet, QoS, SubscribeFilter,
    SubscribeReasonCode, TlsConfiguration, Transport,
};
use serde_json::{Value, json};

use crate::helpers::{DeviceProgram, device_python, eventually, serve_files};
use crate::test_engine::{TestEngine, code, received};

/// A device's credentials as CreateKeysAndCertificate returns them.
struct Credentials {
    certificate_id: String,
    certificate_arn: String,
    certificate_pem: String,
    private_key_pem: String,
}

/// An ACTIVE certificate with a new key pair, not attached to anything.
async fn new_certificate(engine: &TestEngine) -> Credentials {
    let created = engine
        .iot
        .create_keys_and_certificate()
        .set_as_active(true)
        .send()
        .await
        .expect("CreateKeysAndCertificate");
    let keys = created.key_pair().expect("a key pair");
    Credentials {
        certificate_id: created.certificate_id().expect("an id").to_owned(),
        certificate_arn: created.certificate_arn().expect("an ARN").to_owned(),
        certificate_pem: created.certificate_pem().expect("a PEM").to_owned(),
        private_key_pem: keys.private_key().expect("a private key").to_owned(),
    }
}

async fn attach(engine: &TestEngine, thing: &str, credentials: &Credentials) {
    engine
        .iot
        .attach_thing_principal()
        .thing_name(thing)
        .principal(&credentials.certificate_arn)
        .send()
        .await
        .expect("AttachThingPrincipal");
}

/// A thing with an ACTIVE certificate attached, as a device is provisioned on AWS IoT.
async fn provision(engine: &TestEngine, thing: &str) -> Credentials {
    engine.create_thing(thing).await;
    let credentials = new_certificate(engine).await;
    attach(engine, thing, &credentials).await;
    credentials
}

async fn set_status(engine: &TestEngine, credentials: &Credentials, status: CertificateStatus) {
    engine
        .iot
        .update_certificate()
        .certificate_id(&credentials.certificate_id)
        .new_status(status)
        .send()
        .await
        .expect("UpdateCertificate");
}

fn tls(engine: &TestEngine, certificate_pem: &str, private_key_pem: &str) -> Transport {
    // Both of rustls's providers are compiled into the test binary (through different
    // dependencies), so the process must name its default; aws-lc-rs is the broker's.
    let _ = rumqttc::tokio_rustls::rustls::crypto::aws_lc_rs::default_provider().install_default();
    Transport::tls_with_config(TlsConfiguration::Simple {
        ca: engine.engine.ca_certificate_pem.clone().into_bytes(),
        alpn: None,
        client_auth: Some((
            certificate_pem.as_bytes().to_vec(),
            private_key_pem.as_bytes().to_vec(),
        )),
    })
}

/// MQTT 3.1.1 options to connect to the TLS listener as `client_id` with a certificate.
fn options(
    engine: &TestEngine,
    client_id: &str,
    certificate_pem: &str,
    private_key_pem: &str,
) -> MqttOptions {
    let addr = engine
        .engine
        .mqtts_addr
        .expect("the engine has a TLS listener");
    let mut options = MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
    options.set_keep_alive(Duration::from_secs(10));
    options.set_transport(tls(engine, certificate_pem, private_key_pem));
    options
}

/// Connects with `options`; the client once the broker accepted it, or why not.
async fn connect(options: MqttOptions) -> Result<(AsyncClient, EventLoop), ConnectionError> {
    let (client, mut eventloop) = AsyncClient::new(options, 16);
    loop {
        match tokio::time::timeout(Duration::from_secs(10), eventloop.poll())
            .await
            .expect("the broker answers within 10 s")
        {
            Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok((client, eventloop)),
            Ok(_) => {}
            Err(error) => return Err(error),
        }
    }
}

/// Asserts that the broker refuses the connection (at CONNECT, or in the TLS handshake).
#[track_caller]
fn assert_refused(result: Result<(AsyncClient, EventLoop), ConnectionError>, what: &str) {
    match result {
        Err(ConnectionError::ConnectionRefused(_)) | Err(ConnectionError::Tls(_)) => {}
        // A handshake the server aborts can also surface as an I/O error on the client, or
        // as the server's TLS alert (e.g. UnknownCA) read while waiting for CONNACK.
        Err(ConnectionError::Io(_)) => {}
        Err(ConnectionError::MqttState(state))
            if format!("{state:?}").contains("AlertReceived") => {}
        Err(other) => panic!("{what}: expected a refusal, got {other:?}"),
        Ok(_) => panic!("{what}: the broker accepted the connection"),
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

/// Polls until the connection ends, failing after 10 s.
async fn until_disconnected(eventloop: &mut EventLoop) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::timeout_at(deadline, eventloop.poll())
        .await
        .expect("disconnected within 10 s")
        .is_ok()
    {}
}

/// Writes the CA, the certificate and the key for a device program; returns the folder and the
/// environment naming them.
fn credential_files(
    engine: &TestEngine,
    credentials: &Credentials,
) -> (PathBuf, Vec<(&'static str, String)>) {
    let folder =
        std::env::temp_dir().join(format!("flotilla-device-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&folder).expect("a folder for the credentials");
    let write = |name: &str, contents: &str| {
        let path = folder.join(name);
        std::fs::write(&path, contents).expect("writing a credential file");
        path.to_str().expect("a UTF-8 path").to_owned()
    };
    let env = vec![
        (
            "FLOTILLA_ROOT_CA",
            write("root-ca.pem", &engine.engine.ca_certificate_pem),
        ),
        (
            "FLOTILLA_CERTIFICATE",
            write("certificate.pem.crt", &credentials.certificate_pem),
        ),
        (
            "FLOTILLA_PRIVATE_KEY",
            write("private.pem.key", &credentials.private_key_pem),
        ),
    ];
    (folder, env)
}

async fn wait_for_execution(
    engine: &TestEngine,
    thing: &str,
    job_id: &str,
    status: JobExecutionStatus,
) {
    eventually(
        &format!("{thing}'s execution of {job_id} {status:?}"),
        Duration::from_secs(60),
        || async {
            let execution = engine.execution(thing, job_id).await;
            (execution.status() == Some(&status)).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_device_program_runs_a_job_over_mutual_tls() {
    device_python();
    const THING: &str = "iot-jobs-thing";
    let firmware: Vec<u8> = (0..16 * 1024u32).map(|i| (i % 251) as u8).collect();
    let (files, file_server) = serve_files(vec![("firmware.bin", firmware.clone())]).await;
    let engine = TestEngine::start().await;
    let credentials = provision(&engine, THING).await;
    let (folder, env) = credential_files(&engine, &credentials);
    let mqtts = engine.engine.mqtts_addr.expect("a TLS listener");
    let mut device = DeviceProgram::spawn_at(mqtts, "device.py", &env);
    device
        .wait_for_line("Device waiting for job", Duration::from_secs(30))
        .await;

    let target = folder.join("firmware.bin");
    let document = json!({
        "operation": "download",
        "version": "1.0",
        "directory": target.to_str().expect("a UTF-8 path"),
        "files": { "fileName": "firmware.bin", "url": format!("http://{files}/firmware.bin") },
    });
    engine
        .create_job("seed-over-tls", &document.to_string(), &[THING])
        .await;
    device
        .wait_for_line("Job Execution Started", Duration::from_secs(30))
        .await;
    wait_for_execution(
        &engine,
        THING,
        "seed-over-tls",
        JobExecutionStatus::Succeeded,
    )
    .await;
    assert_eq!(std::fs::read(&target).expect("the download"), firmware);

    device.kill().await;
    file_server.abort();
    let _ = std::fs::remove_dir_all(&folder);
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_sdk_device_runs_a_job_over_mutual_tls() {
    device_python();
    const THING: &str = "v2-sdk-thing";
    let engine = TestEngine::start().await;
    let credentials = provision(&engine, THING).await;
    let (folder, mut env) = credential_files(&engine, &credentials);
    env.push(("FLOTILLA_THING", THING.to_owned()));
    let mqtts = engine.engine.mqtts_addr.expect("a TLS listener");
    let mut device = DeviceProgram::spawn_at(mqtts, "device_v2.py", &env);
    device
        .wait_for_line("Device waiting for job", Duration::from_secs(30))
        .await;

    engine
        .create_job("v2-over-tls", r#"{"operation":"reboot"}"#, &[THING])
        .await;
    device
        .wait_for_line("Job Succeeded", Duration::from_secs(30))
        .await;
    wait_for_execution(&engine, THING, "v2-over-tls", JobExecutionStatus::Succeeded).await;

    device.kill().await;
    let _ = std::fs::remove_dir_all(&folder);
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_over_tls_uses_only_its_own_topics() {
    let engine = TestEngine::start().await;
    let credentials = provision(&engine, "tls-a").await;
    engine.create_thing("tls-b").await;
    let (client, mut events) = connect(options(
        &engine,
        "tls-a",
        &credentials.certificate_pem,
        &credentials.private_key_pem,
    ))
    .await
    .expect("tls-a connects with its certificate");

    client
        .subscribe_many([
            SubscribeFilter::new(
                "$aws/things/tls-a/jobs/get/accepted".into(),
                QoS::AtLeastOnce,
            ),
            SubscribeFilter::new(
                "$aws/things/tls-b/jobs/notify-next".into(),
                QoS::AtLeastOnce,
            ),
            SubscribeFilter::new("$aws/things/+/jobs/notify-next".into(), QoS::AtLeastOnce),
            SubscribeFilter::new("$aws/events/#".into(), QoS::AtLeastOnce),
        ])
        .await
        .expect("subscribing");
    let codes = next(&mut events, |p| match p {
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

    client
        .publish(
            "$aws/things/tls-a/jobs/get",
            QoS::AtLeastOnce,
            false,
            json!({"clientToken": "over-tls"}).to_string(),
        )
        .await
        .expect("publishing");
    let reply: Value = next(&mut events, |p| match p {
        Packet::Publish(p) if p.topic == "$aws/things/tls-a/jobs/get/accepted" => {
            serde_json::from_slice(&p.payload).ok()
        }
        _ => None,
    })
    .await;
    assert_eq!(reply["clientToken"], "over-tls");

    // Acting for another thing ends the connection.
    client
        .publish("$aws/things/tls-b/jobs/get", QoS::AtLeastOnce, false, "{}")
        .await
        .expect("publishing");
    until_disconnected(&mut events).await;
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_that_do_not_admit_a_device_are_refused() {
    let clock = Arc::new(TestClock::new(Utc::now()));
    let engine = TestEngine::start_with_clock(clock.clone()).await;

    // Revoked.
    let revoked = provision(&engine, "revoked-thing").await;
    set_status(&engine, &revoked, CertificateStatus::Revoked).await;
    let refused = connect(options(
        &engine,
        "revoked-thing",
        &revoked.certificate_pem,
        &revoked.private_key_pem,
    ))
    .await;
    assert_refused(refused, "a revoked certificate");

    // Inactive, and created inactive.
    let inactive = provision(&engine, "inactive-thing").await;
    set_status(&engine, &inactive, CertificateStatus::Inactive).await;
    assert_refused(
        connect(options(
            &engine,
            "inactive-thing",
            &inactive.certificate_pem,
            &inactive.private_key_pem,
        ))
        .await,
        "an inactive certificate",
    );

    // Attached to another thing: it opens that thing only.
    let other = provision(&engine, "owner-thing").await;
    engine.create_thing("victim-thing").await;
    assert_refused(
        connect(options(
            &engine,
            "victim-thing",
            &other.certificate_pem,
            &other.private_key_pem,
        ))
        .await,
        "a certificate attached to another thing",
    );
    // Not attached at all.
    let unattached = new_certificate(&engine).await;
    assert_refused(
        connect(options(
            &engine,
            "victim-thing",
            &unattached.certificate_pem,
            &unattached.private_key_pem,
        ))
        .await,
        "a certificate attached to no thing",
    );
    // The owner itself gets in, which shows the refusals above are the certificates' doing.
    let (_owner, _owner_events) = connect(options(
        &engine,
        "owner-thing",
        &other.certificate_pem,
        &other.private_key_pem,
    ))
    .await
    .expect("the owner connects");

    // Signed by a CA the engine does not trust: refused in the handshake.
    let foreign_key = rcgen::KeyPair::generate().expect("a key");
    let mut foreign_ca = rcgen::CertificateParams::default();
    foreign_ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    foreign_ca
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Someone else's CA");
    let foreign_issuer = rcgen::Issuer::new(foreign_ca, foreign_key);
    let device_key = rcgen::KeyPair::generate().expect("a key");
    let forged = rcgen::CertificateParams::default()
        .signed_by(&device_key, &foreign_issuer)
        .expect("a certificate of the foreign CA");
    assert_refused(
        connect(options(
            &engine,
            "owner-thing",
            &forged.pem(),
            &device_key.serialize_pem(),
        ))
        .await,
        "a certificate of a foreign CA",
    );

    // Expired by the engine's clock (AWS IoT's certificates end with 2049).
    clock.set(
        Utc.with_ymd_and_hms(2050, 1, 1, 0, 0, 0)
            .single()
            .expect("a date"),
    );
    assert_refused(
        connect(options(
            &engine,
            "owner-thing",
            &other.certificate_pem,
            &other.private_key_pem,
        ))
        .await,
        "an expired certificate",
    );
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_or_deactivating_a_certificate_disconnects_its_devices() {
    let engine = TestEngine::start().await;
    let mut presence = engine.watch(&["$aws/events/presence/#"]).await;
    for (thing, status) in [
        ("to-revoke", CertificateStatus::Revoked),
        ("to-deactivate", CertificateStatus::Inactive),
    ] {
        let credentials = provision(&engine, thing).await;
        let (_client, mut events) = connect(options(
            &engine,
            thing,
            &credentials.certificate_pem,
            &credentials.private_key_pem,
        ))
        .await
        .expect("the device connects");
        let connected = received(&mut presence, 1).await;
        assert_eq!(
            connected[0].0,
            format!("$aws/events/presence/connected/{thing}"),
            "{connected:?}"
        );
        assert_eq!(connected[0].1["clientId"], thing);
        assert_eq!(connected[0].1["eventType"], "connected");
        assert!(connected[0].1["timestamp"].as_i64().is_some());
        assert_eq!(
            connected[0].1["principalIdentifier"],
            credentials.certificate_id
        );

        set_status(&engine, &credentials, status).await;
        until_disconnected(&mut events).await;
        let disconnected = received(&mut presence, 1).await;
        assert_eq!(
            disconnected[0].0,
            format!("$aws/events/presence/disconnected/{thing}"),
            "{disconnected:?}"
        );
        assert_eq!(disconnected[0].1["eventType"], "disconnected");
        assert_eq!(disconnected[0].1["clientInitiatedDisconnect"], false);
    }
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mqtt5_device_over_tls_gets_its_jobs() {
    use rumqttc::v5::mqttbytes::QoS as QoS5;
    use rumqttc::v5::mqttbytes::v5::{Packet as Packet5, SubscribeReasonCode as Code5};
    use rumqttc::v5::{AsyncClient as Client5, Event as Event5, MqttOptions as Options5};

    let engine = TestEngine::start().await;
    let credentials = provision(&engine, "mqtt5-thing").await;
    engine.create_thing("mqtt5-other").await;
    let addr = engine.engine.mqtts_addr.expect("a TLS listener");
    let mut options = Options5::new("mqtt5-thing", addr.ip().to_string(), addr.port());
    options.set_keep_alive(Duration::from_secs(10));
    options.set_transport(tls(
        &engine,
        &credentials.certificate_pem,
        &credentials.private_key_pem,
    ));
    let (client, mut eventloop) = Client5::new(options, 16);
    let mut poll = async || {
        tokio::time::timeout(Duration::from_secs(10), eventloop.poll())
            .await
            .expect("the broker answers within 10 s")
    };
    loop {
        if let Event5::Incoming(Packet5::ConnAck(_)) = poll().await.expect("connects over v5") {
            break;
        }
    }
    client
        .subscribe(
            "$aws/things/mqtt5-thing/jobs/notify-next",
            QoS5::AtLeastOnce,
        )
        .await
        .expect("subscribing");
    client
        .subscribe(
            "$aws/things/mqtt5-other/jobs/notify-next",
            QoS5::AtLeastOnce,
        )
        .await
        .expect("subscribing");
    let mut codes = Vec::new();
    while codes.len() < 2 {
        if let Event5::Incoming(Packet5::SubAck(ack)) = poll().await.expect("connected") {
            codes.extend(ack.return_codes);
        }
    }
    assert_eq!(codes[0], Code5::Success(QoS5::AtLeastOnce));
    assert_ne!(codes[1], Code5::Success(QoS5::AtLeastOnce));
    assert_ne!(codes[1], Code5::Success(QoS5::AtMostOnce));

    engine
        .create_job("mqtt5-job", r#"{"operation":"reboot"}"#, &["mqtt5-thing"])
        .await;
    let notified: Value = loop {
        if let Event5::Incoming(Packet5::Publish(publish)) = poll().await.expect("connected") {
            break serde_json::from_slice(&publish.payload).expect("JSON");
        }
    };
    assert_eq!(notified["execution"]["jobId"], "mqtt5-job");
    client
        .publish(
            "$aws/things/mqtt5-thing/jobs/mqtt5-job/update",
            QoS5::AtLeastOnce,
            false,
            json!({"status": "SUCCEEDED"}).to_string(),
        )
        .await
        .expect("publishing");
    // Keep the connection polled while the engine records the update.
    let driver = tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    wait_for_execution(
        &engine,
        "mqtt5-thing",
        "mqtt5-job",
        JobExecutionStatus::Succeeded,
    )
    .await;
    driver.abort();
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_operations_follow_the_aws_model() {
    let engine = TestEngine::start().await;
    let iot = &engine.iot;
    engine.create_thing("cert-thing").await;

    // CreateKeysAndCertificate: inactive unless asked; a PEM certificate and key pair.
    let created = iot
        .create_keys_and_certificate()
        .send()
        .await
        .expect("CreateKeysAndCertificate");
    let id = created.certificate_id().expect("an id").to_owned();
    assert_eq!(id.len(), 64);
    assert_eq!(
        created.certificate_arn(),
        Some(format!("arn:aws:iot:us-east-1:000000000000:cert/{id}").as_str())
    );
    assert!(
        created
            .certificate_pem()
            .expect("PEM")
            .starts_with("-----BEGIN CERTIFICATE-----")
    );
    let keys = created.key_pair().expect("keys");
    assert!(keys.private_key().expect("private").contains("PRIVATE KEY"));
    assert!(keys.public_key().expect("public").contains("PUBLIC KEY"));

    let described = iot
        .describe_certificate()
        .certificate_id(&id)
        .send()
        .await
        .expect("DescribeCertificate")
        .certificate_description
        .expect("a description");
    assert_eq!(described.status(), Some(&CertificateStatus::Inactive));
    assert_eq!(described.certificate_pem(), created.certificate_pem());
    assert_eq!(described.owned_by(), Some("000000000000"));
    let validity = described.validity().expect("validity");
    assert_eq!(
        validity.not_after().expect("notAfter").secs(),
        Utc.with_ymd_and_hms(2049, 12, 31, 23, 59, 59)
            .single()
            .expect("a date")
            .timestamp()
    );

    // CreateCertificateFromCsr: the device keeps its key.
    let device_key = rcgen::KeyPair::generate().expect("a key");
    let csr = rcgen::CertificateParams::new(Vec::<String>::new())
        .expect("params")
        .serialize_request(&device_key)
        .expect("a CSR")
        .pem()
        .expect("PEM");
    let from_csr = iot
        .create_certificate_from_csr()
        .certificate_signing_request(csr)
        .set_as_active(true)
        .send()
        .await
        .expect("CreateCertificateFromCsr");
    let csr_id = from_csr.certificate_id().expect("an id").to_owned();
    let from_csr_pem = from_csr.certificate_pem().expect("PEM").to_owned();
    let invalid_csr = iot
        .create_certificate_from_csr()
        .certificate_signing_request("not a CSR")
        .send()
        .await;
    assert_eq!(code(invalid_csr), "InvalidRequestException");

    // The CSR's certificate works with the device's own key.
    let arn = from_csr.certificate_arn().expect("an ARN").to_owned();
    iot.attach_thing_principal()
        .thing_name("cert-thing")
        .principal(&arn)
        .send()
        .await
        .expect("AttachThingPrincipal");
    let (_client, _events) = connect(options(
        &engine,
        "cert-thing",
        &from_csr_pem,
        &device_key.serialize_pem(),
    ))
    .await
    .expect("a device with a certificate from its own CSR connects");

    // ListCertificates: newest first by default, paged by marker.
    let mut ids = Vec::new();
    let mut marker = None;
    loop {
        let page = iot
            .list_certificates()
            .page_size(1)
            .set_marker(marker.clone())
            .send()
            .await
            .expect("ListCertificates");
        ids.extend(
            page.certificates()
                .iter()
                .map(|c| c.certificate_id().unwrap_or_default().to_owned()),
        );
        marker = page.next_marker().map(str::to_owned);
        if marker.is_none() {
            break;
        }
    }
    assert_eq!(ids, [csr_id.clone(), id.clone()]);
    let ascending = iot
        .list_certificates()
        .ascending_order(true)
        .send()
        .await
        .expect("ListCertificates");
    let ascending: Vec<&str> = ascending
        .certificates()
        .iter()
        .filter_map(|c| c.certificate_id())
        .collect();
    assert_eq!(ascending, [id.as_str(), csr_id.as_str()]);

    // ListThingPrincipals.
    let principals = iot
        .list_thing_principals()
        .thing_name("cert-thing")
        .send()
        .await
        .expect("ListThingPrincipals");
    assert_eq!(principals.principals(), std::slice::from_ref(&arn));
    let missing_thing = iot
        .list_thing_principals()
        .thing_name("no-such-thing")
        .send()
        .await;
    assert_eq!(code(missing_thing), "ResourceNotFoundException");

    // UpdateCertificate: a revoked certificate stays revoked.
    iot.update_certificate()
        .certificate_id(&id)
        .new_status(CertificateStatus::Revoked)
        .send()
        .await
        .expect("UpdateCertificate");
    let reactivate = iot
        .update_certificate()
        .certificate_id(&id)
        .new_status(CertificateStatus::Active)
        .send()
        .await;
    assert_eq!(code(reactivate), "CertificateStateException");
    let unknown = iot
        .update_certificate()
        .certificate_id("0".repeat(64))
        .new_status(CertificateStatus::Inactive)
        .send()
        .await;
    assert_eq!(code(unknown), "ResourceNotFoundException");
    let malformed = iot
        .describe_certificate()
        .certificate_id("xyz")
        .send()
        .await;
    assert_eq!(code(malformed), "InvalidRequestException");

    // DeleteCertificate: not while ACTIVE, not while attached.
    let active = iot
        .delete_certificate()
        .certificate_id(&csr_id)
        .send()
        .await;
    assert_eq!(code(active), "CertificateStateException");
    iot.update_certificate()
        .certificate_id(&csr_id)
        .new_status(CertificateStatus::Inactive)
        .send()
        .await
        .expect("UpdateCertificate");
    let attached = iot
        .delete_certificate()
        .certificate_id(&csr_id)
        .send()
        .await;
    assert_eq!(code(attached), "DeleteConflictException");
    iot.detach_thing_principal()
        .thing_name("cert-thing")
        .principal(&arn)
        .send()
        .await
        .expect("DetachThingPrincipal");
    iot.delete_certificate()
        .certificate_id(&csr_id)
        .send()
        .await
        .expect("DeleteCertificate");
    let gone = iot
        .describe_certificate()
        .certificate_id(&csr_id)
        .send()
        .await;
    assert_eq!(code(gone), "ResourceNotFoundException");

    // Attaching something that is not a certificate of this account.
    let not_a_certificate = iot
        .attach_thing_principal()
        .thing_name("cert-thing")
        .principal("arn:aws:iam::000000000000:user/someone")
        .send()
        .await;
    assert_eq!(code(not_a_certificate), "InvalidRequestException");

    // DescribeEndpoint names the TLS listener.
    let endpoint = iot
        .describe_endpoint()
        .endpoint_type("iot:Data-ATS")
        .send()
        .await
        .expect("DescribeEndpoint");
    assert_eq!(
        endpoint.endpoint_address(),
        Some(
            engine
                .engine
                .mqtts_addr
                .expect("a TLS listener")
                .to_string()
                .as_str()
        )
    );
    let other_endpoint = iot
        .describe_endpoint()
        .endpoint_type("iot:CredentialProvider")
        .send()
        .await;
    assert_eq!(code(other_endpoint), "InvalidRequestException");
    engine.stop().await;
}

/// The event reader's IoT policy, as docs/aws-mode.md gives it for AWS, for this engine's
/// region and account.
pub(crate) const EVENT_READER_POLICY: &str = r#"{
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": "iot:Connect",
         "Resource": "arn:aws:iot:us-east-1:000000000000:client/flotilla-server-*"},
        {"Effect": "Allow", "Action": "iot:Subscribe",
         "Resource": ["arn:aws:iot:us-east-1:000000000000:topicfilter/$aws/events/job/*",
                      "arn:aws:iot:us-east-1:000000000000:topicfilter/$aws/events/jobExecution/*"]},
        {"Effect": "Allow", "Action": "iot:Receive",
         "Resource": ["arn:aws:iot:us-east-1:000000000000:topic/$aws/events/job/*",
                      "arn:aws:iot:us-east-1:000000000000:topic/$aws/events/jobExecution/*"]}
    ]
}"#;

/// A certificate with the event-reader policy attached (CreatePolicy, AttachPolicy), and the
/// files a client needs to connect with it: (CA, certificate, key).
pub(crate) async fn event_reader(engine: &TestEngine) -> (PathBuf, PathBuf, PathBuf) {
    let credentials = new_certificate(engine).await;
    let policy = format!("event-reader-{}", &credentials.certificate_id[..8]);
    engine
        .iot
        .create_policy()
        .policy_name(&policy)
        .policy_document(EVENT_READER_POLICY)
        .send()
        .await
        .expect("CreatePolicy");
    engine
        .iot
        .attach_policy()
        .policy_name(&policy)
        .target(&credentials.certificate_arn)
        .send()
        .await
        .expect("AttachPolicy");
    let (_folder, env) = credential_files(engine, &credentials);
    let file = |name: &str| {
        PathBuf::from(
            &env.iter()
                .find(|(n, _)| *n == name)
                .expect("a credential file")
                .1,
        )
    };
    (
        file("FLOTILLA_ROOT_CA"),
        file("FLOTILLA_CERTIFICATE"),
        file("FLOTILLA_PRIVATE_KEY"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_with_an_event_reader_policy_reads_job_events_and_nothing_else() {
    let engine = TestEngine::start().await;
    let credentials = new_certificate(&engine).await;
    let iot = &engine.iot;

    // A malformed policy is refused with AWS's error.
    let malformed = iot
        .create_policy()
        .policy_name("broken")
        .policy_document(r#"{"Statement": {"Effect": "Perhaps"}}"#)
        .send()
        .await;
    assert_eq!(code(malformed), "MalformedPolicyException");

    iot.create_policy()
        .policy_name("event-reader")
        .policy_document(EVENT_READER_POLICY)
        .send()
        .await
        .expect("CreatePolicy");
    let got = iot
        .get_policy()
        .policy_name("event-reader")
        .send()
        .await
        .expect("GetPolicy");
    assert_eq!(got.policy_document(), Some(EVENT_READER_POLICY));
    assert_eq!(
        got.policy_arn(),
        Some("arn:aws:iot:us-east-1:000000000000:policy/event-reader")
    );

    // Without a policy, and attached to no thing, the certificate admits nobody.
    assert_refused(
        connect(options(
            &engine,
            "flotilla-server-1",
            &credentials.certificate_pem,
            &credentials.private_key_pem,
        ))
        .await,
        "a certificate without policy or thing",
    );

    iot.attach_policy()
        .policy_name("event-reader")
        .target(&credentials.certificate_arn)
        .send()
        .await
        .expect("AttachPolicy");
    let attached = iot
        .list_attached_policies()
        .target(&credentials.certificate_arn)
        .send()
        .await
        .expect("ListAttachedPolicies");
    let names: Vec<&str> = attached
        .policies()
        .iter()
        .filter_map(|p| p.policy_name())
        .collect();
    assert_eq!(names, ["event-reader"]);

    // Only the client ids the policy names may connect.
    assert_refused(
        connect(options(
            &engine,
            "someone-else",
            &credentials.certificate_pem,
            &credentials.private_key_pem,
        ))
        .await,
        "a client id the policy does not allow",
    );
    let (client, mut events) = connect(options(
        &engine,
        "flotilla-server-1",
        &credentials.certificate_pem,
        &credentials.private_key_pem,
    ))
    .await
    .expect("the event reader connects");
    client
        .subscribe_many([
            SubscribeFilter::new("$aws/events/job/#".into(), QoS::AtLeastOnce),
            SubscribeFilter::new("$aws/events/jobExecution/#".into(), QoS::AtLeastOnce),
            SubscribeFilter::new("$aws/events/presence/#".into(), QoS::AtLeastOnce),
            SubscribeFilter::new("$aws/things/+/jobs/notify".into(), QoS::AtLeastOnce),
        ])
        .await
        .expect("subscribing");
    let codes = next(&mut events, |p| match p {
        Packet::SubAck(ack) => Some(ack.return_codes),
        _ => None,
    })
    .await;
    assert_eq!(
        codes,
        [
            SubscribeReasonCode::Success(QoS::AtLeastOnce),
            SubscribeReasonCode::Success(QoS::AtLeastOnce),
            SubscribeReasonCode::Failure,
            SubscribeReasonCode::Failure,
        ]
    );

    // Job events reach it.
    engine.create_thing("policy-t").await;
    engine
        .create_job("policy-job", r#"{"op":"x"}"#, &["policy-t"])
        .await;
    iot.cancel_job()
        .job_id("policy-job")
        .send()
        .await
        .expect("CancelJob");
    let topic = next(&mut events, |p| match p {
        Packet::Publish(p) if p.topic.starts_with("$aws/events/job/policy-job/") => Some(p.topic),
        _ => None,
    })
    .await;
    assert_eq!(topic, "$aws/events/job/policy-job/canceled");

    // A policy in use cannot be deleted, nor its certificate without forceDelete.
    let in_use = iot.delete_policy().policy_name("event-reader").send().await;
    assert_eq!(code(in_use), "DeleteConflictException");

    // Publishing where the policy does not allow ends the connection.
    client
        .publish(
            "$aws/events/job/forged/completed",
            QoS::AtLeastOnce,
            false,
            "{}",
        )
        .await
        .expect("publishing");
    until_disconnected(&mut events).await;
    set_status(&engine, &credentials, CertificateStatus::Inactive).await;
    let deleting = iot
        .delete_certificate()
        .certificate_id(&credentials.certificate_id)
        .send()
        .await;
    assert_eq!(code(deleting), "DeleteConflictException");

    iot.detach_policy()
        .policy_name("event-reader")
        .target(&credentials.certificate_arn)
        .send()
        .await
        .expect("DetachPolicy");
    iot.delete_policy()
        .policy_name("event-reader")
        .send()
        .await
        .expect("DeletePolicy");
    engine.stop().await;
}
