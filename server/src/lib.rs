//! Flotilla's dashboard server.
//!
//! - [`cli`]: the `flotilla` command line (serve, migrate).
//! - [`app`]: assembling and starting the server: database, IoT client, the embedded engine in
//!   local mode, the event subscriber, the simulated fleet and the HTTP listener.
//! - [`iot`]: everything the server asks of AWS IoT, through `aws-sdk-iot` only.
//! - [`projection`]: the server's copy of jobs and executions in PostgreSQL, kept current from
//!   `$aws/events` and periodic reconciliation.
//! - [`inventory`]: the fleet inventory (devices with groups, connectivity, installed
//!   software, last job outcome) in PostgreSQL, from lifecycle events, the `flotilla` shadow
//!   and a registry resync.
//! - [`api`]: the JSON API under `/api/v1`.
//! - [`stream`]: `GET /api/v1/stream`, live changes as Server-Sent Events across replicas.
//! - [`ops`]: `/readyz`, `/metrics` and request counting.
//! - [`rollouts`]: staged rollouts (waves, gates, failure policies, webhooks) and their
//!   orchestrator.
//! - [`auth`]: identities (development, oauth2-proxy headers, AWS ALB, API tokens), roles and
//!   the permission of every route.
//! - [`audit`]: the audit hook every API mutation passes through, and the audit log.
//! - [`artifacts`]: the bucket artifacts live in (through `aws-sdk-s3`), and [`signing`]:
//!   ECDSA P-256 code signing with a key file or AWS KMS.

pub mod api;
pub mod app;
pub mod artifacts;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod db;
pub mod inventory;
pub mod iot;
pub mod ops;
pub mod projection;
pub mod rollouts;
pub mod signing;
pub mod stream;
