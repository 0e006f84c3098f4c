//! `flotilla-agent`: the device job agent.
//!
//! This first version connects, takes jobs and reports on them over the AWS IoT Jobs MQTT API;
//! it executes no document types yet, so it answers every job REJECTED with that reason rather
//! than pretending to install anything.

use std::sync::Arc;

use clap::Parser;
use flotilla_agent::{Agent, AgentConfig, JobHandler, Outcome, Progress};
use futures::future::BoxFuture;
use serde_json::Value;

/// Runs AWS IoT jobs on this device.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The thing name (also the MQTT client id).
    #[arg(long, env = "FLOTILLA_THING_NAME")]
    thing_name: String,
    /// The MQTT endpoint host.
    #[arg(long, env = "FLOTILLA_ENDPOINT", default_value = "127.0.0.1")]
    endpoint: String,
    /// The MQTT endpoint port.
    #[arg(long, env = "FLOTILLA_PORT", default_value_t = 18830)]
    port: u16,
}

struct NoHandlers;

impl JobHandler for NoHandlers {
    fn run<'a>(
        &'a self,
        _job_id: &'a str,
        _document: &'a Value,
        _progress: Progress<'a>,
    ) -> BoxFuture<'a, Outcome> {
        Box::pin(async {
            Outcome::Rejected("this agent build executes no job document types yet".into())
        })
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let config = AgentConfig::new(args.thing_name, args.endpoint, args.port);
    Agent::new(config, Arc::new(NoHandlers)).run().await
}
