//! End-to-end tests: the real server in local mode (embedded engine, MQTT broker, simulated
//! devices) on ephemeral ports and its own database, driven through the HTTP API.

mod agent;
mod api_audit;
mod api_fleet;
mod api_jobs;
mod api_support;
mod api_templates;
mod artifacts;
mod auth;
mod aws_mode;
mod aws_moto;
mod broker_tls;
mod browser;
mod deploy;
mod device_isolation;
mod engine_api;
mod engine_fleet;
mod engine_mqtt;
mod engine_rollout;
mod engine_templates;
mod engine_things;
mod faults;
mod fuzz_documents;
mod fuzz_mqtt;
mod fuzz_support;
mod helpers;
mod hostile_input;
mod inventory;
mod jobs;
mod openapi;
mod projection;
mod replicas;
mod rollouts;
mod schemathesis;
mod seed_device;
mod test_engine;
