//! nextbest: a real-time personalization sidecar.
//!
//! It answers "which offers should this customer see here, now?" from an in-memory feature
//! snapshot and a hot-loadable offer model, in microseconds, and steps aside with fallback
//! content whenever it cannot do better.
//!
//! # Layout
//! - [`features`]: the customer feature snapshot (CSV, Parquet and the compact `.nbf` form), an
//!   id index that looks customers up without allocating, and the snapshot store a version 4
//!   `.nbf` is copied into and mapped from read-only, so the replicas of a node share one copy.
//! - [`model`]: the offer model as the CVM team writes it: parse, validate (every fault with its
//!   path), compile into the engine form.
//! - [`engine`]: the decision itself: eligibility, scoring (adaptive offers draw from their
//!   posterior with a seed the caller passes, contextual ones from bins of the customer's
//!   features, `engine::contextual`), arbitration, a placement's exploration
//!   (`engine::explore`), explain with each offer's probability of being shown
//!   (`engine::shown`). Pure and synchronous: no I/O, no await, no clock reads (`now` is
//!   passed in).
//! - [`experiment`]: champion/challenger assignment and the one [`experiment::Variant`] type.
//! - [`registry`]: the one immutable [`registry::Snapshot`] every request reads, and the one
//!   commit path ([`registry::Registry::commit`]) every change to it takes, with publish hooks
//!   for state derived from a model, and the audit trail of every model activated.
//! - [`contact`]: feedback events, their durable log, the contact state policies read, the
//!   funnel, and what adaptive offers learn (`contact::adaptive`, one `observe` per event; its
//!   contextual part in `contact::contextual`, the request values decisions recorded for it in
//!   `contact::requests`).
//! - [`fleet`]: replicas sharing their events through Redis Streams (`--redis`): the local log
//!   shipped as an outbox, the other replicas' events applied to the local contact state, the
//!   backlog and lag measured, and admin changes (models, snapshots) shared so every replica
//!   serves the same ones, with what each serves reported and compared.
//! - [`decision_log`]: a sample of decisions with what it takes to make them again (and the
//!   count of every decision not logged, by reason), written off the decision path;
//!   `nextbest replay`, which judges a candidate model on it, and `replay --estimate`
//!   (`decision_log::estimate`), which estimates what the candidate would earn from the
//!   logged decisions' outcomes.
//! - [`metrics`]: the request path's counters, the standard `process_*` figures
//!   ([`metrics::process`]), and [`metrics::prom`], the one writer of the Prometheus text
//!   format that every owner of numbers exports through.
//! - [`server`]: the hyper listeners (public and admin), routes, request/response codecs, and
//!   the single place that maps errors to HTTP statuses.
//! - [`durable`]: replacing a small state file whole (write, sync, rename), the one way every
//!   such file is written.
//! - [`settings`]: the serve flags, checked once into the configurations `main.rs` wires (a
//!   bad value is an error naming its flag).
//! - [`watch`]: the models-folder watcher that hot-reloads on change.
//! - [`rfc3339`]: the one parser of times with an offset (event `ts`, validity windows, `--now`).
//! - [`near`]: the known name a mistyped one meant (features, environment variables).
//! - [`logging`]: the process log (JSON or text on stderr), its stable field names, redaction.
//! - `campaign`: outbound campaigns: the same decision over the whole base, allocated under
//!   capacity, written as a target list, committed back as contacts (with the default
//!   `offline` feature, as Parquet snapshots; `--no-default-features` builds the lean sidecar).
//!
//! The request path reads top to bottom: `server::public::handle` →
//! `server::decide::decide_post` (admission and budget once) → `server::body::read_json_body`
//! → `codec::decode_json` → `server::decide` (`registry.load()` once, `ModelSet::pick`, the
//! contact side once through `contact::decide::DecideContacts`, `engine::decide`, the decision
//! log's sample, one `metrics.decided`) → `codec::encode_decision`.
#![deny(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "offline")]
pub mod campaign;
pub mod contact;
pub mod decision_log;
pub mod durable;
pub mod engine;
pub mod experiment;
pub mod features;
pub mod files;
pub mod fleet;
pub mod folder_lock;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod near;
pub mod private;
pub mod registry;
pub mod rfc3339;
pub mod secrets;
pub mod server;
pub mod settings;
pub mod watch;
