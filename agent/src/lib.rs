//! The Flotilla device side: a job agent that speaks the AWS IoT Jobs MQTT API, and a fleet
//! simulator built from it.
//!
//! - [`client`]: request/response over MQTT (`…/accepted`, `…/rejected`, correlated by
//!   `clientToken`) and the agent loop that takes the next job, reports progress and finishes it.
//! - [`simulator`]: many simulated devices in one process, each a real MQTT client.
//!
//! The agent works unchanged against AWS IoT Core and Flotilla's embedded engine.

pub mod client;
pub mod simulator;

pub use client::{Agent, AgentConfig, JobHandler, Outcome, Progress};
