//! Cross-component end-to-end tests live in `tests/`; this library holds what the
//! benchmarks in `examples/` share.

pub mod load;

use std::path::PathBuf;
use std::time::Duration;

use flotilla_server::app::{IotMode, ServeConfig};

/// A local-mode server on loopback ports for a benchmark: no simulated devices, no signing
/// key, reconciliation once an hour. Each benchmark overrides what it measures.
pub fn bench_local_config(
    database_url: &str,
    artifact_dir: PathBuf,
    simulate: usize,
) -> ServeConfig {
    let loopback = "127.0.0.1:0".parse().expect("a loopback address");
    ServeConfig {
        database_url: database_url.to_owned(),
        listen: loopback,
        iot: IotMode::Local {
            mqtt_listen: loopback,
            mqtts_listen: None,
            engine_listen: loopback,
            s3_listen: loopback,
            artifact_dir,
            simulate,
            register: Vec::new(),
            device_token_secret: None,
        },
        region: "us-east-1".into(),
        static_dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../static"),
        reconcile_every: Duration::from_secs(3600),
        reconcile_budget: 10.0,
        artifacts: Default::default(),
        rollouts: Default::default(),
        auth: Default::default(),
    }
}
