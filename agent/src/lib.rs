//! The Flotilla device side: a job agent that speaks the AWS IoT Jobs MQTT API, and a fleet
//! simulator built from it.
//!
//! - [`client`]: request/response over MQTT (`…/accepted`, `…/rejected`, correlated by
//!   `clientToken`) and the agent loop that takes the next job, reports progress and finishes it.
//! - [`documents`]: the job documents a device understands (the seed's, the AWS IoT Device
//!   Client's, Flotilla's install document) and why others are rejected.
//! - [`device`]: runs those documents on the machine, with [`download`] (resumable, verified)
//!   and [`state`] (durable progress, so crashes and reboots resume jobs).
//! - [`config`] and [`cli`]: the agent's TOML file and flags.
//! - [`simulator`]: many simulated devices in one process, each a real MQTT client.
//!
//! The agent works unchanged against AWS IoT Core and Flotilla's embedded engine.

pub mod cli;
pub mod client;
pub mod config;
pub mod device;
pub mod documents;
pub mod download;
pub mod simulator;
pub mod state;

pub use client::{Agent, AgentConfig, JobHandler, Outcome, Progress};
